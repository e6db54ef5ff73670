//! "Safe for months in the field": one counselor and 220 clients over 60 simulated days on a
//! lossy network with a store-and-forward relay, driven the way a real app runs the documented
//! run loop (on `PersistRequired`, commit the endpoint's change set into the app's embedded
//! SQLite store (`confide_store::SqliteStore`), publish bundles on `BundlesChanged`, renew
//! certificates, renew stale sessions), with random crashes (a load of the database, sometimes
//! mid-turn so unpersisted work is lost), restores of OLDER backups (a copy of the database
//! hours to days old written back into it, clients and the counselor), certificate renewals (early, late and lapsed),
//! prekey exhaustion and refills (bursts of new clients while the counselor is offline), and
//! closures followed by re-contact.
//!
//! Checks, strictly:
//! 1. every frame on the wire is opened with its recipient's identity and parsed: no
//!    (sender, ratchet key, fork record, index) ever carried two different ciphertexts;
//! 2. after a calm-down period (everyone online, persisting promptly, certificates valid),
//!    every text in a sender's stored log was received exactly once by its peer's stored log,
//!    or was reported to the sender by a typed event (`DeliveryFailed`, its conversation's
//!    closure, or `PeerRestored` naming it in `possibly_lost`). Anything else fails;
//! 3. nothing panics. Counters are printed.
//!
//! `CONFIDE_FIELD_SEED` (u64), `CONFIDE_FIELD_CLIENTS` and `CONFIDE_FIELD_DAYS` override the
//! defaults for local runs; a failure prints the seed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::too_many_lines,
    clippy::cast_possible_truncation,
    missing_docs
)]

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::rc::Rc;
use std::time::Instant;

use chacha20::ChaCha20Rng;
use confide::{
    Address, CommandError, ConversationId, DropReason, Endpoint, EndpointConfig, EndpointStats,
    Event, ExpectedIdentity, Input, MessageId, Output, Role, StorageKey, Transmit,
};
use confide_crypto::{Duration, Timestamp, identity::IdentityKeyPair};
use confide_session::{SessionMessage, prekeys::KemPreKeyKind};
use confide_sim::{LinkConfig, SimNetwork};
use confide_store::{SqliteStore, Store};
use confide_test_support::service::Service;
use confide_transport::Frame;
use rand_core::{Rng, SeedableRng};

const T0_MS: u64 = 1_750_000_000_000;
const SEC: u64 = 1_000;
const MIN: u64 = 60 * SEC;
const HOUR: u64 = 60 * MIN;
const DAY: u64 = 24 * HOUR;
/// Certificates are issued for this long.
const CERT_VALIDITY: u64 = 30 * DAY;
/// The relay drops mail older than this (`RELAY_RETENTION_ASSUMED`).
const RELAY_RETENTION: u64 = 7 * DAY;
/// Daily backups kept per device.
const BACKUPS_KEPT: usize = 6;
/// Link delays.
const MIN_DELAY: u64 = 40;
const MAX_DELAY: u64 = 400;
/// The counselor fetches its mailbox this often while online (batching).
const COUNSELOR_SYNC: u64 = 30 * SEC;
/// Longest calm-down: the give-up time plus margin.
const CALM_DOWN: u64 = 9 * DAY;

fn ts(ms: u64) -> Timestamp {
    Timestamp::from_millis(ms)
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn hash128(bytes: &[u8]) -> u128 {
    let mut a = DefaultHasher::new();
    0xa5u8.hash(&mut a);
    bytes.hash(&mut a);
    let mut b = DefaultHasher::new();
    0x5au8.hash(&mut b);
    bytes.hash(&mut b);
    (u128::from(a.finish()) << 64) | u128::from(b.finish())
}

// ---- the service ---------------------------------------------------------------------------

// `confide_test_support::service::Service`, its server key certified for 400 days (the longest
// run is 60 days plus the calm-down).

// ---- what an app stores ----------------------------------------------------------------------

#[derive(Clone)]
struct SentText {
    conversation: ConversationId,
    id: MessageId,
    text: Rc<str>,
    to: usize,
}

/// What the app knows, stored together with the endpoint state of the same moment.
#[derive(Clone, Default)]
struct AppLog {
    sent: Vec<SentText>,
    received: Vec<(ConversationId, Rc<str>)>,
    delivered: BTreeSet<MessageId>,
    failed: BTreeSet<MessageId>,
    possibly_lost: BTreeSet<MessageId>,
    closed: BTreeSet<ConversationId>,
    /// Counselor: conversations with a client text not answered yet.
    unanswered: BTreeSet<ConversationId>,
}

/// A stored state: the records of the app's SQLite store at one moment (`records` is `None`
/// for the latest one, which is the store itself), with the app log of the same moment.
#[derive(Clone)]
struct Snapshot {
    at: u64,
    records: Option<Rc<Vec<confide_store::Record>>>,
    log: AppLog,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum CertStyle {
    /// Renews days before expiry, when the app is opened.
    Early,
    /// Renews only after `CertificateExpiring`, 0 to 4 days later (sometimes after expiry).
    Late,
    /// Ignores expiry until a send is refused with `CertificateExpired`, renews days later.
    Lapse,
}

/// The person using a client app (not stored by the app: survives crashes and restores).
#[derive(Default)]
struct User {
    texts_left: u32,
    /// Engaged (writing) from this time on.
    engaged_from: u64,
    close_after: bool,
    close_wanted: bool,
    conversations_started: u32,
}

struct Node {
    name: Vec<u8>,
    address: Address,
    identity: IdentityKeyPair,
    role: Role,
    endpoint: Endpoint,
    online: bool,
    timer: Option<u64>,
    live: AppLog,
    /// The app's database (in memory: the same SQL and transactions as a file, without the
    /// fsyncs), which every `PersistRequired` commits a change set into.
    store: SqliteStore,
    latest: Snapshot,
    backups: VecDeque<Snapshot>,
    persist_wanted: bool,
    publish_wanted: bool,
    cert_style: CertStyle,
    renew_at: Option<u64>,
    renew_wanted: bool,
    /// Texts the user typed that the endpoint refused for now (certificate expired).
    drafts: VecDeque<Rc<str>>,
    user: User,
    /// Counters of replaced incarnations (what they counted beyond their stored state).
    lost_stats: [u64; DropReason::ALL.len() + 1],
}

fn stats_array(s: &EndpointStats) -> [u64; DropReason::ALL.len() + 1] {
    let mut a = [0u64; DropReason::ALL.len() + 1];
    for (i, r) in DropReason::ALL.iter().enumerate() {
        a[i] = s.dropped(*r);
    }
    a[DropReason::ALL.len()] = s.duplicate_frames();
    a
}

// ---- the directory ---------------------------------------------------------------------------

/// Hands each one-time bundle to exactly one requester (tracking handed-out key ids across
/// re-uploads), then the last-resort bundle to everyone.
#[derive(Default)]
struct Directory {
    one_time: VecDeque<Vec<u8>>,
    last_resort: Vec<u8>,
    handed_otk: HashSet<u32>,
    handed_kem: HashSet<u32>,
}

fn bundle_ids(bytes: &[u8]) -> (Option<u32>, Option<u32>) {
    let certified = confide::CertifiedBundle::from_bytes(bytes).unwrap();
    let b = certified.bundle();
    let kem = (b.kem_kind() == KemPreKeyKind::OneTime).then(|| b.kem_prekey_id());
    (b.one_time_prekey_id(), kem)
}

impl Directory {
    fn publish(&mut self, published: confide::PublishedBundles) {
        self.one_time = published
            .one_time
            .into_iter()
            .filter(|b| {
                let (otk, kem) = bundle_ids(b);
                !otk.is_some_and(|i| self.handed_otk.contains(&i))
                    && !kem.is_some_and(|i| self.handed_kem.contains(&i))
            })
            .collect();
        self.last_resort = published.last_resort;
    }

    /// A bundle and whether it was a one-time bundle.
    fn fetch(&mut self) -> (Vec<u8>, bool) {
        match self.one_time.pop_front() {
            Some(b) => {
                let (otk, kem) = bundle_ids(&b);
                if let Some(i) = otk {
                    self.handed_otk.insert(i);
                }
                if let Some(i) = kem {
                    self.handed_kem.insert(i);
                }
                (b, true)
            }
            None => (self.last_resort.clone(), false),
        }
    }
}

// ---- the wire check --------------------------------------------------------------------------

#[derive(Hash, PartialEq, Eq)]
struct KeyId {
    sender: usize,
    ratchet_key: [u8; 32],
    fork: Option<(u32, [u8; 32], u32)>,
    index: u32,
}

#[derive(Default)]
struct WireCheck {
    frames: u64,
    unique_frames: u64,
    session_messages: u64,
    prekey_messages: u64,
    forked_messages: u64,
    reset_requests: u64,
    seen_frames: HashSet<u128>,
    /// Tags of symmetric envelopes (docs/sealed-sender.md §9): a tag names its key and
    /// nonce, so one seen in two different frames is a reuse.
    symmetric_tags: HashSet<Vec<u8>>,
    symmetric_frames: u64,
    keys: HashMap<KeyId, u128>,
    violations: Vec<String>,
}

// ---- the world -------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Action {
    Online(usize, u64),
    Offline(usize),
    ClientWrite(usize),
    ClientClose(usize),
    CounselorReply,
    CounselorSync,
    Crash(usize),
    Restore(usize, u64),
    Renew(usize),
}

#[derive(Default, Debug)]
struct Counters {
    texts_sent: u64,
    conversations_started: u64,
    recontacts: u64,
    client_closes: u64,
    counselor_closes: u64,
    crashes: u64,
    crashes_mid_turn: u64,
    client_restores: u64,
    counselor_restores: u64,
    restore_age_max_h: u64,
    renewals: u64,
    late_renewals: u64,
    cert_refusals: u64,
    stale_renewals: u64,
    one_time_bundles: u64,
    last_resort_bundles: u64,
    bundle_uploads: u64,
    session_resets: u64,
    peer_restored: u64,
    delivery_failed: u64,
    identity_changes: u64,
    relay_expired: u64,
    relay_deduplicated: u64,
    change_sets: u64,
    change_set_bytes_max: usize,
    frame_drops: BTreeMap<&'static str, u64>,
}

struct World {
    seed: u64,
    rng: ChaCha20Rng,
    chaos: ChaCha20Rng,
    service: Service,
    key: StorageKey,
    net: SimNetwork,
    now: u64,
    nodes: Vec<Node>,
    by_address: BTreeMap<Address, usize>,
    relay: Vec<VecDeque<(u64, Vec<u8>)>>,
    inflight_to: BTreeMap<usize, u64>,
    timers: BTreeSet<(u64, usize)>,
    actions: BTreeMap<(u64, u64), Action>,
    action_seq: u64,
    directory: Vec<Directory>,
    wire: WireCheck,
    counters: Counters,
    text_seq: u64,
    calm: bool,
    end: u64,
    /// Every `Event::Message` ever shown, by text (across incarnations; diagnostics only).
    ever_received: HashMap<Rc<str>, u32>,
    /// `CONFIDE_FIELD_TRACE=<node name>`: print that node's events and actions.
    trace: Option<String>,
}

const COUNSELOR: usize = 0;

impl World {
    fn chance(&mut self, percent: u64) -> bool {
        self.chaos.next_u64() % 100 < percent
    }

    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.chaos.next_u64() % (hi - lo + 1)
    }

    fn schedule(&mut self, at: u64, action: Action) {
        self.action_seq += 1;
        self.actions.insert((at, self.action_seq), action);
    }

    fn add_node(&mut self, name: &[u8], role: Role, cert_expires: u64, style: CertStyle) -> usize {
        let identity = IdentityKeyPair::generate(&mut self.rng);
        let cert = self
            .service
            .certificate_until(name, &identity, role, ts(cert_expires));
        let address = Address::new(name).unwrap();
        let endpoint = Endpoint::new(
            &mut self.rng,
            ts(self.now),
            identity.clone(),
            address.clone(),
            cert,
            self.service.roots.clone(),
            EndpointConfig::default(),
        )
        .unwrap();
        let n = self.nodes.len();
        self.nodes.push(Node {
            name: name.to_vec(),
            address: address.clone(),
            identity,
            role,
            endpoint,
            online: false,
            timer: None,
            live: AppLog::default(),
            store: SqliteStore::open_in_memory(b"account").unwrap(),
            latest: Snapshot {
                at: 0,
                records: None,
                log: AppLog::default(),
            },
            backups: VecDeque::new(),
            persist_wanted: false,
            publish_wanted: false,
            cert_style: style,
            renew_at: None,
            renew_wanted: false,
            drafts: VecDeque::new(),
            user: User::default(),
            lost_stats: [0; DropReason::ALL.len() + 1],
        });
        self.by_address.insert(address, n);
        self.relay.push(VecDeque::new());
        self.directory.push(Directory::default());
        // The app's first turn: persist the new identity, then publish.
        self.pump(n);
        self.end_turn(n);
        n
    }

    // ---- the run loop, app side ------------------------------------------------------------

    /// Step 2 of the run loop: poll until `Timeout`. `PersistRequired` is remembered and
    /// honoured at the end of the turn (the app batches its inputs of one instant).
    fn pump(&mut self, n: usize) {
        loop {
            match self.nodes[n].endpoint.poll_output() {
                Output::Transmit(tx) => self.transmit(n, &tx),
                Output::Event(Event::PersistRequired) => self.nodes[n].persist_wanted = true,
                Output::Event(e) => self.on_event(n, e),
                Output::Timeout(t) => {
                    self.set_timer(n, t.map(Timestamp::as_millis));
                    return;
                }
                _ => panic!("unknown output"),
            }
        }
    }

    fn set_timer(&mut self, n: usize, t: Option<u64>) {
        if let Some(old) = self.nodes[n].timer.take() {
            self.timers.remove(&(old, n));
        }
        self.nodes[n].timer = t;
        if let Some(t) = t
            && self.nodes[n].online
        {
            self.timers.insert((t, n));
        }
    }

    /// Ends a turn: store the state (with the app log of the same moment) when asked, release
    /// the frames, publish bundles after the keys behind them are stored.
    fn end_turn(&mut self, n: usize) {
        while self.nodes[n].persist_wanted {
            self.nodes[n].persist_wanted = false;
            let now = self.now;
            let node = &mut self.nodes[n];
            let changes = node
                .endpoint
                .take_changes(&mut self.rng, &self.key, b"account")
                .unwrap();
            self.counters.change_sets += 1;
            self.counters.change_set_bytes_max = self
                .counters
                .change_set_bytes_max
                .max(changes.written_bytes());
            node.store.commit(&changes).unwrap();
            node.endpoint.confirm_persisted();
            node.latest = Snapshot {
                at: now,
                records: None,
                log: node.live.clone(),
            };
            // A daily backup (the first stored state of each day): a copy of the database.
            if node.backups.back().is_none_or(|b| b.at / DAY != now / DAY) {
                node.backups.push_back(Snapshot {
                    records: Some(Rc::new(node.store.records().unwrap())),
                    ..node.latest.clone()
                });
                if node.backups.len() > BACKUPS_KEPT {
                    node.backups.pop_front();
                }
            }
            self.pump(n);
        }
        if self.nodes[n].publish_wanted {
            self.nodes[n].publish_wanted = false;
            let published = self.nodes[n].endpoint.published_bundles();
            self.directory[n].publish(published);
            self.counters.bundle_uploads += 1;
        }
    }

    fn transmit(&mut self, n: usize, tx: &Transmit) {
        let to = *self
            .by_address
            .get(&tx.to)
            .expect("frames go to known mailboxes");
        self.check_frame(n, to, &tx.frame);
        let from = self.nodes[n].address.clone();
        self.net.send(&from, &tx.to, &tx.frame, ts(self.now));
        let latest = self.now + 3 * MAX_DELAY + 10;
        let e = self.inflight_to.entry(to).or_insert(latest);
        *e = (*e).max(latest);
    }

    fn traced(&self, n: usize, event: &Event) -> bool {
        let Some(trace) = &self.trace else {
            return false;
        };
        if self.nodes[n].name == trace.as_bytes() {
            return true;
        }
        let conversation = match event {
            Event::ConversationStarted { conversation, .. }
            | Event::Message { conversation, .. }
            | Event::Delivered { conversation, .. }
            | Event::DeliveryFailed { conversation, .. }
            | Event::ConversationClosed { conversation, .. }
            | Event::SessionReset { conversation, .. }
            | Event::PeerRestored { conversation, .. }
            | Event::FrameDropped { conversation, .. } => *conversation,
            _ => return false,
        };
        self.nodes[n]
            .endpoint
            .peer_address(conversation)
            .is_some_and(|a| a.as_bytes() == trace.as_bytes())
    }

    fn trace(&self, n: usize, what: &str) {
        let t = self.now - T0_MS;
        eprintln!(
            "[d{} {:02}:{:02}:{:02}.{:03}] {}: {what}",
            t / DAY,
            t % DAY / HOUR,
            t % HOUR / MIN,
            t % MIN / SEC,
            t % SEC,
            String::from_utf8_lossy(&self.nodes[n].name)
        );
    }

    fn on_event(&mut self, n: usize, event: Event) {
        let now = self.now;
        if self.traced(n, &event) {
            let text = match &event {
                Event::Message { text, id, .. } => {
                    format!(
                        "Message {:?} {id:?}",
                        String::from_utf8_lossy(text.as_bytes())
                    )
                }
                other => format!("{other:?}"),
            };
            self.trace(n, &text);
        }
        match event {
            Event::ConversationStarted { .. } => {}
            Event::Message {
                conversation, text, ..
            } => {
                let text: Rc<str> = String::from_utf8(text.as_bytes().to_vec()).unwrap().into();
                *self.ever_received.entry(text.clone()).or_default() += 1;
                let node = &mut self.nodes[n];
                node.live.received.push((conversation, text));
                if node.role == Role::Counselor {
                    node.live.unanswered.insert(conversation);
                }
            }
            Event::Delivered { id, .. } => {
                self.nodes[n].live.delivered.insert(id);
            }
            Event::DeliveryFailed { id, .. } => {
                self.counters.delivery_failed += 1;
                self.nodes[n].live.failed.insert(id);
            }
            Event::ConversationClosed { conversation, .. } => {
                self.nodes[n].live.closed.insert(conversation);
            }
            Event::BundlesChanged => self.nodes[n].publish_wanted = true,
            Event::SessionReset { .. } => {
                self.counters.session_resets += 1;
            }
            Event::PeerRestored { possibly_lost, .. } => {
                self.counters.peer_restored += 1;
                self.nodes[n].live.possibly_lost.extend(possibly_lost);
            }
            Event::FrameDropped { reason, .. } => {
                *self
                    .counters
                    .frame_drops
                    .entry(reason.as_str())
                    .or_default() += 1;
            }
            Event::CertificateExpiring { .. } => match self.nodes[n].cert_style {
                CertStyle::Early => {
                    let at = now + self.between(0, 6 * HOUR);
                    self.plan_renewal(n, at);
                }
                CertStyle::Late => {
                    let at = now + self.between(0, 4 * DAY);
                    self.plan_renewal(n, at);
                }
                CertStyle::Lapse => {}
            },
            Event::IdentityChanged { .. } => self.counters.identity_changes += 1,
            _ => {}
        }
    }

    fn plan_renewal(&mut self, n: usize, at: u64) {
        if self.nodes[n].renew_at.is_none() {
            self.nodes[n].renew_at = Some(at);
            self.schedule(at, Action::Renew(n));
        }
    }

    fn renew(&mut self, n: usize) {
        let node = &mut self.nodes[n];
        node.renew_at = None;
        node.renew_wanted = false;
        let late = self.now >= node.endpoint.certificate_expires_at().as_millis();
        let cert = self.service.certificate_until(
            &node.name,
            &node.identity,
            node.role,
            ts(self.now + CERT_VALIDITY),
        );
        node.endpoint
            .set_certificate(&mut self.rng, ts(self.now), cert)
            .unwrap();
        self.counters.renewals += 1;
        if late {
            self.counters.late_renewals += 1;
        }
        self.pump(n);
        // The app retries what was refused.
        let drafts: Vec<Rc<str>> = self.nodes[n].drafts.drain(..).collect();
        for text in drafts {
            self.write(n, text);
        }
    }

    // ---- app commands ------------------------------------------------------------------------

    /// Sends `text` in `conversation`, as an app does: renew a stale session with a fresh
    /// bundle, keep the text as a draft while the certificate is expired.
    fn app_send(&mut self, n: usize, conversation: ConversationId, text: Rc<str>) -> bool {
        let now = ts(self.now);
        for _ in 0..2 {
            let result =
                self.nodes[n]
                    .endpoint
                    .send(&mut self.rng, now, conversation, text.as_bytes());
            match result {
                Ok(id) => {
                    if self.trace.as_deref().is_some_and(|t| {
                        self.nodes[n].name == t.as_bytes()
                            || self.nodes[n]
                                .endpoint
                                .peer_address(conversation)
                                .is_some_and(|a| a.as_bytes() == t.as_bytes())
                    }) {
                        self.trace(n, &format!("send {text} {id:?} in {conversation}"));
                    }
                    let to = *self
                        .by_address
                        .get(self.nodes[n].endpoint.peer_address(conversation).unwrap())
                        .unwrap();
                    self.nodes[n].live.sent.push(SentText {
                        conversation,
                        id,
                        text,
                        to,
                    });
                    self.counters.texts_sent += 1;
                    self.pump(n);
                    return true;
                }
                Err(CommandError::SessionStale) => self.renew_stale(n, conversation),
                Err(CommandError::CertificateExpired { .. }) => {
                    self.counters.cert_refusals += 1;
                    self.nodes[n].drafts.push_back(text);
                    if self.nodes[n].cert_style == CertStyle::Lapse {
                        let at = self.now + self.between(DAY, 4 * DAY);
                        self.plan_renewal(n, at);
                    }
                    return false;
                }
                Err(CommandError::Closed { .. }) => return false,
                Err(e) => panic!("seed {}: unexpected refusal of a send: {e:?}", self.seed),
            }
        }
        panic!("seed {}: renewed session still stale", self.seed);
    }

    /// After `SessionStale`: fetch a fresh bundle of the peer and renew the session.
    fn renew_stale(&mut self, n: usize, conversation: ConversationId) {
        let peer = *self
            .by_address
            .get(self.nodes[n].endpoint.peer_address(conversation).unwrap())
            .unwrap();
        let (bundle, _) = self.fetch_bundle(peer);
        self.nodes[n]
            .endpoint
            .renew_session(&mut self.rng, ts(self.now), conversation, &bundle)
            .unwrap();
        self.counters.stale_renewals += 1;
        self.pump(n);
    }

    /// `close`, renewing a stale session first if needed.
    fn app_close(&mut self, n: usize, conversation: ConversationId) -> Result<(), CommandError> {
        let mut r = self.nodes[n]
            .endpoint
            .close(&mut self.rng, ts(self.now), conversation);
        if r == Err(CommandError::SessionStale) {
            self.renew_stale(n, conversation);
            r = self.nodes[n]
                .endpoint
                .close(&mut self.rng, ts(self.now), conversation);
        }
        r
    }

    fn fetch_bundle(&mut self, peer: usize) -> (Vec<u8>, bool) {
        let (bundle, one_time) = self.directory[peer].fetch();
        if one_time {
            self.counters.one_time_bundles += 1;
        } else {
            self.counters.last_resort_bundles += 1;
        }
        (bundle, one_time)
    }

    /// A client's user writes `text` to the counselor (starting a conversation if none is
    /// open: first contact or re-contact).
    fn write(&mut self, n: usize, text: Rc<str>) {
        if n == COUNSELOR {
            return;
        }
        let counselor = self.nodes[COUNSELOR].address.clone();
        let conversation = match self.nodes[n].endpoint.conversation_with(&counselor) {
            Some(c) => c,
            None => {
                let (bundle, _) = self.fetch_bundle(COUNSELOR);
                let expected = self.nodes[COUNSELOR].identity.public();
                let c = self.nodes[n]
                    .endpoint
                    .start_conversation(
                        &mut self.rng,
                        ts(self.now),
                        counselor,
                        &bundle,
                        ExpectedIdentity::Exactly(&expected),
                    )
                    .unwrap()
                    .conversation;
                self.counters.conversations_started += 1;
                if self.nodes[n].user.conversations_started > 0 {
                    self.counters.recontacts += 1;
                }
                self.nodes[n].user.conversations_started += 1;
                self.pump(n);
                c
            }
        };
        if !self.app_send(n, conversation, text.clone()) && self.nodes[n].drafts.is_empty() {
            // Closed under us (the counselor's close arrived this turn): write again, which
            // starts a new conversation.
            if self.nodes[n]
                .endpoint
                .conversation_with(&self.nodes[COUNSELOR].address)
                .is_none()
            {
                self.write(n, text);
            }
        }
    }

    fn new_text(&mut self, n: usize) -> Rc<str> {
        self.text_seq += 1;
        format!(
            "{}#{}",
            String::from_utf8_lossy(&self.nodes[n].name),
            self.text_seq
        )
        .into()
    }

    // ---- inputs --------------------------------------------------------------------------------

    /// Feeds the node its mail from the relay (one batch).
    fn take_mail(&mut self, n: usize) {
        while let Some((at, frame)) = self.relay[n].pop_front() {
            if self.now.saturating_sub(at) > RELAY_RETENTION {
                self.counters.relay_expired += 1;
                continue;
            }
            self.nodes[n].endpoint.handle_input(
                &mut self.rng,
                Input::Receive {
                    bytes: &frame,
                    now: ts(self.now),
                },
            );
            self.pump(n);
        }
    }

    fn fire_timer(&mut self, n: usize) {
        self.nodes[n]
            .endpoint
            .handle_input(&mut self.rng, Input::Timeout { now: ts(self.now) });
        self.pump(n);
    }

    /// Replaces the endpoint by a load of `snapshot` (a crash restart: the app's database as
    /// it is; or a restore: the backup's records, written back into the database first).
    fn replace(&mut self, n: usize, snapshot: Snapshot) {
        let before = stats_array(&self.nodes[n].endpoint.stats());
        let endpoint = match &snapshot.records {
            None => confide_store::load(&self.nodes[n].store, &self.key)
                .unwrap()
                .expect("the database holds the account"),
            Some(records) => {
                let mut endpoint = Endpoint::load_records(
                    &self.key,
                    b"account",
                    records.iter().map(|(k, v)| (k, v)),
                )
                .unwrap();
                confide_store::persist_all(
                    &mut endpoint,
                    &mut self.nodes[n].store,
                    &mut self.rng,
                    &self.key,
                )
                .unwrap();
                endpoint
            }
        };
        let after = stats_array(&endpoint.stats());
        let node = &mut self.nodes[n];
        for i in 0..before.len() {
            node.lost_stats[i] += before[i].saturating_sub(after[i]);
        }
        node.endpoint = endpoint;
        node.live = snapshot.log.clone();
        node.latest = snapshot;
        node.persist_wanted = false;
        // After a restart the app re-uploads its bundles (the stored keys are the truth).
        node.publish_wanted = true;
        self.pump(n);
        self.end_turn(n);
    }

    // ---- actions -------------------------------------------------------------------------------

    fn act(&mut self, action: Action) {
        if let Some(t) = &self.trace {
            let n = match action {
                Action::Online(n, _)
                | Action::Offline(n)
                | Action::ClientWrite(n)
                | Action::ClientClose(n)
                | Action::Crash(n)
                | Action::Restore(n, _)
                | Action::Renew(n) => n,
                _ => COUNSELOR,
            };
            if self.nodes[n].name == t.as_bytes()
                || matches!(action, Action::Crash(0) | Action::Restore(0, _))
            {
                self.trace(n, &format!("{action:?}"));
            }
        }
        match action {
            Action::Online(n, until) => self.go_online(n, until),
            Action::Offline(n) => self.go_offline(n),
            Action::ClientWrite(n) => {
                if !self.nodes[n].online || self.calm {
                    return;
                }
                let user = &self.nodes[n].user;
                if user.texts_left == 0 || self.now < user.engaged_from {
                    return;
                }
                let left = u64::from(user.texts_left);
                let k = self.between(1, 2).min(left) as u32;
                for _ in 0..k {
                    let text = self.new_text(n);
                    if self.nodes[n].drafts.is_empty() {
                        self.write(n, text);
                    } else {
                        self.nodes[n].drafts.push_back(text);
                    }
                }
                let user = &mut self.nodes[n].user;
                user.texts_left -= k;
                if user.texts_left == 0 && user.close_after {
                    let at = self.now + self.between(DAY, 3 * DAY);
                    self.schedule(at, Action::ClientClose(n));
                }
                self.end_turn(n);
            }
            Action::ClientClose(n) => {
                if self.calm {
                    return;
                }
                if !self.nodes[n].online {
                    self.nodes[n].user.close_wanted = true;
                    return;
                }
                self.client_close(n);
            }
            Action::CounselorReply => {
                if self.nodes[COUNSELOR].online && !self.calm {
                    self.counselor_reply();
                }
            }
            Action::CounselorSync => {
                if self.nodes[COUNSELOR].online {
                    self.take_mail(COUNSELOR);
                    self.end_turn(COUNSELOR);
                    let at = self.now + COUNSELOR_SYNC;
                    self.schedule(at, Action::CounselorSync);
                }
            }
            Action::Crash(n) => {
                if !self.nodes[n].online || self.calm {
                    return;
                }
                if self.chance(50) {
                    // Mid-turn: the app handles its mail (and its user writes) but dies before
                    // storing anything.
                    self.counters.crashes_mid_turn += 1;
                    self.take_mail(n);
                    if n != COUNSELOR && self.nodes[n].user.texts_left > 0 {
                        let text = self.new_text(n);
                        self.write(n, text);
                    }
                }
                self.counters.crashes += 1;
                let snapshot = self.nodes[n].latest.clone();
                self.replace(n, snapshot);
            }
            Action::Restore(n, age) => {
                if self.calm {
                    return;
                }
                if !self.nodes[n].online {
                    // Restored when the phone is next used.
                    let at = self.now + HOUR;
                    self.schedule(at, Action::Restore(n, age));
                    return;
                }
                let cutoff = self.now.saturating_sub(age);
                let node = &self.nodes[n];
                let Some(backup) = node
                    .backups
                    .iter()
                    .rev()
                    .find(|b| b.at <= cutoff)
                    .or_else(|| node.backups.front())
                    .cloned()
                else {
                    return;
                };
                if backup.at >= node.latest.at {
                    return;
                }
                let age_h = (self.now - backup.at) / HOUR;
                self.counters.restore_age_max_h = self.counters.restore_age_max_h.max(age_h);
                if n == COUNSELOR {
                    self.counters.counselor_restores += 1;
                } else {
                    self.counters.client_restores += 1;
                }
                eprintln!(
                    "restore: {} to a backup {age_h} h old (day {})",
                    String::from_utf8_lossy(&self.nodes[n].name),
                    (self.now - T0_MS) / DAY
                );
                // The user keeps the backup from now on (the newer backups are gone with the
                // phone).
                self.nodes[n].backups.retain(|b| b.at <= backup.at);
                self.replace(n, backup);
            }
            Action::Renew(n) => {
                if self.nodes[n].renew_at.is_some_and(|t| t > self.now) {
                    return;
                }
                if self.nodes[n].online {
                    self.renew(n);
                    self.end_turn(n);
                } else {
                    self.nodes[n].renew_at = None;
                    self.nodes[n].renew_wanted = true;
                }
            }
        }
    }

    fn client_close(&mut self, n: usize) {
        self.nodes[n].user.close_wanted = false;
        let counselor = self.nodes[COUNSELOR].address.clone();
        let Some(conversation) = self.nodes[n].endpoint.conversation_with(&counselor) else {
            return;
        };
        match self.app_close(n, conversation) {
            Ok(()) => {
                self.counters.client_closes += 1;
                self.nodes[n].live.closed.insert(conversation);
                self.pump(n);
                // Many come back days later.
                if self.chance(70) {
                    let texts = self.between(2, 4) as u32;
                    let from = self.now + self.between(2 * DAY, 8 * DAY);
                    let user = &mut self.nodes[n].user;
                    user.texts_left = texts;
                    user.engaged_from = from;
                    user.close_after = false;
                }
                self.end_turn(n);
            }
            Err(CommandError::CertificateExpired { .. }) => {
                self.nodes[n].user.close_wanted = true;
            }
            Err(CommandError::Closed { .. } | CommandError::Session) => {}
            Err(e) => panic!("seed {}: unexpected refusal of close: {e:?}", self.seed),
        }
    }

    fn counselor_reply(&mut self) {
        self.take_mail(COUNSELOR);
        let unanswered: Vec<ConversationId> = self.nodes[COUNSELOR]
            .live
            .unanswered
            .iter()
            .copied()
            .collect();
        for conversation in unanswered {
            if self.nodes[COUNSELOR]
                .endpoint
                .closed_by(conversation)
                .is_some()
                || !self.nodes[COUNSELOR]
                    .endpoint
                    .conversations()
                    .contains(&conversation)
            {
                self.nodes[COUNSELOR].live.unanswered.remove(&conversation);
                continue;
            }
            self.text_seq += 1;
            let text: Rc<str> = format!("counselor#{}", self.text_seq).into();
            if self.app_send(COUNSELOR, conversation, text) {
                self.nodes[COUNSELOR].live.unanswered.remove(&conversation);
            }
        }
        // Now and then the counselor ends a case that went quiet.
        let open: Vec<ConversationId> = self.nodes[COUNSELOR]
            .endpoint
            .conversations()
            .into_iter()
            .filter(|c| {
                self.nodes[COUNSELOR].endpoint.closed_by(*c).is_none()
                    && !self.nodes[COUNSELOR].live.unanswered.contains(c)
            })
            .collect();
        for conversation in open {
            if self.chaos.next_u64() % 1000 < 4 {
                match self.app_close(COUNSELOR, conversation) {
                    Ok(()) => {
                        self.counters.counselor_closes += 1;
                        self.nodes[COUNSELOR].live.closed.insert(conversation);
                        self.pump(COUNSELOR);
                    }
                    Err(CommandError::CertificateExpired { .. }) => {}
                    Err(e) => panic!("seed {}: counselor close refused: {e:?}", self.seed),
                }
            }
        }
        self.end_turn(COUNSELOR);
    }

    fn go_online(&mut self, n: usize, until: u64) {
        if self.nodes[n].online {
            return;
        }
        self.nodes[n].online = true;
        let t = self.nodes[n].timer;
        self.set_timer(n, t);
        // The app starts: time passed, then the mail.
        self.fire_timer(n);
        let node = &self.nodes[n];
        let expires = node.endpoint.certificate_expires_at().as_millis();
        let early = node.cert_style == CertStyle::Early && expires < self.now + 6 * DAY;
        if (early || node.renew_wanted || self.calm)
            && (!self.calm || expires < self.now + 12 * DAY)
        {
            self.renew(n);
        }
        if n == COUNSELOR {
            self.schedule(self.now + COUNSELOR_SYNC, Action::CounselorSync);
            if !self.calm {
                let at = self.now + self.between(15 * MIN, 40 * MIN);
                self.schedule(at, Action::CounselorReply);
            }
        } else {
            self.take_mail(n);
            let user = &self.nodes[n].user;
            if user.close_wanted {
                self.client_close(n);
            }
            let user = &self.nodes[n].user;
            if !self.calm && user.texts_left > 0 && self.now >= user.engaged_from {
                let write_at = self.between(
                    self.now + 10 * SEC,
                    until.saturating_sub(SEC).max(self.now + 10 * SEC),
                );
                if self.chance(75) {
                    self.schedule(write_at, Action::ClientWrite(n));
                }
            }
        }
        // A crash now and then, while the app runs.
        let crash_percent = if n == COUNSELOR { 8 } else { 3 };
        if !self.calm && self.chance(crash_percent) {
            let at = self.between(self.now + SEC, until.max(self.now + 2 * SEC));
            self.schedule(at, Action::Crash(n));
        }
        self.end_turn(n);
        if until != u64::MAX {
            self.schedule(until, Action::Offline(n));
        }
    }

    fn go_offline(&mut self, n: usize) {
        if !self.nodes[n].online || self.calm {
            return;
        }
        if n == COUNSELOR {
            self.take_mail(n);
        }
        self.end_turn(n);
        self.nodes[n].online = false;
        let t = self.nodes[n].timer;
        self.set_timer(n, t);
        // The next time the app is opened.
        let (start, len) = if n == COUNSELOR {
            self.next_counselor_session()
        } else {
            let user = &self.nodes[n].user;
            let engaged = user.texts_left > 0 || user.close_wanted;
            let gap = if engaged && self.now + 12 * HOUR >= user.engaged_from {
                self.between(3 * HOUR, 10 * HOUR)
            } else {
                self.between(18 * HOUR, 60 * HOUR)
            };
            (self.now + gap, self.between(5 * MIN, 30 * MIN))
        };
        if start < self.end {
            self.schedule(start, Action::Online(n, start + len));
        }
    }

    /// Twice a day (not on day 6 of each week): around 09:00 for two hours and around 18:00
    /// for an hour and a half.
    fn next_counselor_session(&mut self) -> (u64, u64) {
        let mut day = (self.now - T0_MS) / DAY;
        loop {
            for (hour, len) in [(9, 2 * HOUR), (18, 90 * MIN)] {
                let jitter = self.between(0, 2 * HOUR);
                let start = T0_MS + day * DAY + hour * HOUR + jitter - HOUR;
                if start > self.now + 10 * MIN && day % 7 != 6 {
                    return (start, len);
                }
            }
            day += 1;
        }
    }

    // ---- the network ---------------------------------------------------------------------------

    fn deliver(&mut self) {
        self.net.deliver_due(ts(self.now));
        let dests: Vec<(usize, u64)> = self.inflight_to.iter().map(|(a, b)| (*a, *b)).collect();
        for (to, until) in dests {
            let address = self.nodes[to].address.clone();
            while let Some(frame) = self.net.take_mail(&address) {
                // The relay keeps one copy of a frame while it waits in a mailbox (a
                // retransmission of bytes it still holds adds nothing).
                if self.relay[to].iter().any(|(_, f)| *f == frame) {
                    self.counters.relay_deduplicated += 1;
                    continue;
                }
                self.relay[to].push_back((self.now, frame));
            }
            if until < self.now {
                self.inflight_to.remove(&to);
            }
        }
    }

    /// One step of the event loop: the network, due timers and due actions at the earliest
    /// pending time. Returns false when nothing is pending before `limit`.
    fn step(&mut self, limit: u64) -> bool {
        let t_net = self.net.next_event_time().map(Timestamp::as_millis);
        let t_timer = self.timers.first().map(|(t, _)| *t);
        let t_action = self.actions.first_key_value().map(|((t, _), _)| *t);
        let Some(t) = [t_net, t_timer, t_action].into_iter().flatten().min() else {
            return false;
        };
        if t > limit {
            return false;
        }
        self.now = self.now.max(t);
        if t_net.is_some_and(|x| x <= self.now) {
            self.deliver();
            // Clients read their mail as it comes (push); the counselor syncs in batches.
            for n in 1..self.nodes.len() {
                if self.nodes[n].online && !self.relay[n].is_empty() {
                    self.take_mail(n);
                    self.end_turn(n);
                }
            }
        }
        while let Some(&(t, n)) = self.timers.first() {
            if t > self.now {
                break;
            }
            self.timers.remove(&(t, n));
            self.nodes[n].timer = None;
            self.fire_timer(n);
            self.end_turn(n);
        }
        while let Some(entry) = self.actions.first_entry() {
            if entry.key().0 > self.now {
                break;
            }
            let action = entry.remove();
            self.act(action);
        }
        true
    }

    // ---- check 1: no key used twice ------------------------------------------------------------

    fn check_frame(&mut self, from: usize, to: usize, frame: &[u8]) {
        let w = &mut self.wire;
        w.frames += 1;
        if !w.seen_frames.insert(hash128(frame)) {
            return; // a retransmission of identical bytes
        }
        w.unique_frames += 1;
        let Ok(Frame::Data { payload, .. }) = Frame::from_bytes(frame) else {
            w.violations
                .push(format!("malformed frame from node {from}"));
            return;
        };
        if payload.first() == Some(&confide_sealed::SYMMETRIC_ENVELOPE_KIND) {
            // Its session message is not readable here (it needs the session's envelope
            // secret); the endpoints' own checks cover it.
            w.symmetric_frames += 1;
            let tag = payload
                .get(..1 + confide_sealed::ENVELOPE_TAG_LEN)
                .unwrap_or_default()
                .to_vec();
            if !w.symmetric_tags.insert(tag) {
                w.violations.push(format!(
                    "symmetric envelope tag from node {from} to {to} used twice"
                ));
            }
            return;
        }
        let opened = match confide_sealed::open_with_grace(
            &self.nodes[to].identity,
            &self.service.roots,
            ts(self.now),
            Duration::from_days(3650),
            &payload,
        ) {
            Ok(o) => o,
            Err(e) => {
                w.violations.push(format!(
                    "frame from node {from} to {to} did not open: {e:?}"
                ));
                return;
            }
        };
        if *opened.sender.identity() != self.nodes[from].identity.public() {
            w.violations
                .push(format!("frame from node {from} carries another identity"));
        }
        if opened.payload.get(1) == Some(&confide::consts::KIND_RESET_REQUEST) {
            w.reset_requests += 1;
            return;
        }
        // Acknowledgements may ride in front (kind 0x23), then the token (0x21).
        let payload = match confide::AcknowledgementPayload::split_in_front(&opened.payload) {
            Ok((_, inner)) => inner,
            Err(_) => &opened.payload[..],
        };
        let inner = if payload.get(1) == Some(&confide::consts::KIND_TOKEN_AND_SESSION) {
            payload.get(2 + 16..).unwrap_or_default()
        } else {
            payload
        };
        let m = match SessionMessage::from_bytes(inner) {
            Ok(SessionMessage::Ratchet(m)) => m,
            Ok(SessionMessage::PreKey(p)) => {
                w.prekey_messages += 1;
                p.message().clone()
            }
            Ok(_) => {
                w.violations.push("unknown session message kind".into());
                return;
            }
            Err(e) => {
                w.violations.push(format!(
                    "session message from node {from} did not parse: {e:?}"
                ));
                return;
            }
        };
        w.session_messages += 1;
        if m.fork().is_some() {
            w.forked_messages += 1;
        }
        let key = KeyId {
            sender: from,
            ratchet_key: m.ratchet_key().to_bytes(),
            fork: m.fork().map(|f| (f.base_index(), f.nonce(), f.start())),
            index: m.index(),
        };
        let ct = hash128(m.ciphertext());
        match w.keys.get(&key) {
            Some(prev) if *prev != ct => w.violations.push(format!(
                "KEY REUSE: node {from} ({}) sent two ciphertexts under ratchet key {:02x?}.., \
                 fork {:?}, index {} (day {})",
                String::from_utf8_lossy(&self.nodes[from].name),
                &key.ratchet_key[..4],
                key.fork.map(|(b, n, s)| (b, n[0], s)),
                key.index,
                (self.now - T0_MS) / DAY,
            )),
            Some(_) => {}
            None => {
                w.keys.insert(key, ct);
            }
        }
    }
}

// ---- the scenario ------------------------------------------------------------------------------

fn run(seed: u64, clients: usize, days: u64) {
    let started = Instant::now();
    eprintln!("field simulation: seed {seed}, {clients} clients, {days} days");
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let chaos = ChaCha20Rng::seed_from_u64(seed ^ 0x00c4_a05c_4a05);
    let service = Service::with_server_validity(&mut rng, Duration::from_days(400));
    let mut key = [0u8; 32];
    rng.fill_bytes(&mut key);
    let mut net = SimNetwork::new(seed.wrapping_add(17));
    net.set_default_link(
        LinkConfig::perfect(Duration::from_millis(MIN_DELAY))
            .with_delay(
                Duration::from_millis(MIN_DELAY),
                Duration::from_millis(MAX_DELAY),
            )
            .with_loss(50_000)
            .with_duplication(20_000)
            .with_reordering(50_000),
    );
    let end = T0_MS + days * DAY;
    let mut w = World {
        seed,
        rng,
        chaos,
        service,
        key: StorageKey::new(key),
        net,
        now: T0_MS,
        nodes: Vec::new(),
        by_address: BTreeMap::new(),
        relay: Vec::new(),
        inflight_to: BTreeMap::new(),
        timers: BTreeSet::new(),
        actions: BTreeMap::new(),
        action_seq: 0,
        directory: Vec::new(),
        wire: WireCheck::default(),
        counters: Counters::default(),
        text_seq: 0,
        calm: false,
        end,
        ever_received: HashMap::new(),
        trace: std::env::var("CONFIDE_FIELD_TRACE").ok(),
    };

    // The counselor: renews late (after the warning), comes online twice a day.
    let c = w.add_node(
        b"counselor",
        Role::Counselor,
        T0_MS + 20 * DAY,
        CertStyle::Late,
    );
    assert_eq!(c, COUNSELOR);
    let (start, len) = w.next_counselor_session();
    w.schedule(start, Action::Online(COUNSELOR, start + len));
    // Two restores of older backups for the counselor.
    w.schedule(
        T0_MS + 19 * DAY + 10 * HOUR,
        Action::Restore(COUNSELOR, 30 * HOUR),
    );
    w.schedule(
        T0_MS + (days * 3 / 4) * DAY + 18 * HOUR,
        Action::Restore(COUNSELOR, 8 * HOUR),
    );

    // Clients: two bursts at night while the counselor is offline (one-time prekeys run out),
    // the rest spread over the period.
    let burst1 = clients / 2;
    let burst2 = clients / 4;
    for i in 0..clients {
        let name = format!("client-{i:03}");
        let arrival = if i == 0 {
            T0_MS + 2 * DAY + 10 * HOUR
        } else if i <= burst1 {
            T0_MS + (days / 5) * DAY + 22 * HOUR + w.between(0, 4 * HOUR)
        } else if i <= burst1 + burst2 {
            T0_MS + (days * 2 / 3) * DAY + 23 * HOUR + w.between(0, 3 * HOUR)
        } else {
            T0_MS + w.between(0, (days - 8) * DAY)
        };
        let style = match (i, w.between(0, 99)) {
            (0, _) => CertStyle::Lapse,
            (_, 0..=69) => CertStyle::Early,
            (_, 70..=94) => CertStyle::Late,
            _ => CertStyle::Lapse,
        };
        let cert_expires = if i == 0 {
            // Half a day after it arrives: its 8 texts, one or two a turn, outlast the
            // certificate whatever the counselor's pace, so every seed sees a send refused
            // for a lapsed certificate (`cert_refusals`).
            arrival + 12 * HOUR
        } else {
            arrival + w.between(5 * DAY, 30 * DAY)
        };
        let n = w.add_node(name.as_bytes(), Role::Client, cert_expires, style);
        let texts = if i == 0 { 8 } else { w.between(2, 6) as u32 };
        let close_after = w.chance(35);
        w.nodes[n].user = User {
            texts_left: texts,
            engaged_from: arrival,
            close_after,
            close_wanted: false,
            conversations_started: 0,
        };
        let len = w.between(10 * MIN, 30 * MIN);
        w.schedule(arrival, Action::Online(n, arrival + len));
        // A few phones are restored from a backup hours or days old.
        if i % 25 == 7 || i == 0 {
            let at = arrival + w.between(2 * DAY, 8 * DAY);
            let age = w.between(6 * HOUR, 3 * DAY);
            if at < end - 2 * DAY {
                w.schedule(at, Action::Restore(n, age));
            }
        }
    }
    eprintln!("setup: {:.1?}", started.elapsed());

    // The field period.
    let mut steps = 0u64;
    let mut last_day = 0;
    while w.step(end) {
        steps += 1;
        let day = (w.now - T0_MS) / DAY;
        if day != last_day && day.is_multiple_of(10) {
            last_day = day;
            eprintln!(
                "day {day}: {:.1?}, steps {steps}, texts {}, frames {}",
                started.elapsed(),
                w.counters.texts_sent,
                w.wire.frames
            );
        }
    }
    w.now = w.now.max(end);
    eprintln!(
        "field period done: {:.1?}, steps {steps}",
        started.elapsed()
    );

    // Calm-down: everyone online for good, persisting promptly, valid certificates; no new
    // texts, crashes or restores. Drafts refused earlier are sent once renewed.
    w.calm = true;
    w.actions.clear();
    for n in 0..w.nodes.len() {
        if w.nodes[n].online {
            w.take_mail(n);
            w.end_turn(n);
            let expires = w.nodes[n].endpoint.certificate_expires_at().as_millis();
            if expires < w.now + 12 * DAY || !w.nodes[n].drafts.is_empty() {
                w.renew(n);
                w.end_turn(n);
            }
        } else {
            w.go_online(n, u64::MAX);
        }
        if w.nodes[n].user.close_wanted {
            w.client_close(n);
        }
    }
    w.schedule(w.now + COUNSELOR_SYNC, Action::CounselorSync);
    let calm_end = w.now + CALM_DOWN;
    let mut next_check = w.now;
    loop {
        if w.now >= next_check {
            next_check = w.now + HOUR;
            let quiet = w.net.in_flight_len() == 0
                && w.relay.iter().all(VecDeque::is_empty)
                && w.nodes.iter().all(|n| n.endpoint.outbox_len() == 0);
            if quiet {
                break;
            }
            if std::env::var("CONFIDE_FIELD_DEBUG_CALM").is_ok() {
                let busy: Vec<String> = w
                    .nodes
                    .iter()
                    .filter(|n| n.endpoint.outbox_len() > 0)
                    .map(|n| {
                        format!(
                            "{}:{} {:?}",
                            String::from_utf8_lossy(&n.name),
                            n.endpoint.outbox_len(),
                            n.endpoint.stats()
                        )
                    })
                    .collect();
                eprintln!(
                    "calm check: in flight {}, busy {busy:?}",
                    w.net.in_flight_len()
                );
            }
        }
        if !w.step(calm_end) {
            break;
        }
        if w.actions.is_empty() {
            w.schedule(w.now + COUNSELOR_SYNC, Action::CounselorSync);
        }
    }
    for n in 0..w.nodes.len() {
        w.take_mail(n);
        w.end_turn(n);
    }
    let calm_days = (w.now - end) as f64 / DAY as f64;
    eprintln!(
        "calm-down done after {calm_days:.2} simulated days: {:.1?}",
        started.elapsed()
    );

    report_and_check(&w, started);
}

fn report_and_check(w: &World, started: Instant) {
    let seed = w.seed;
    // Totals of the endpoints' counters (current incarnations plus replaced ones).
    let mut totals = [0u64; DropReason::ALL.len() + 1];
    for node in &w.nodes {
        let s = stats_array(&node.endpoint.stats());
        for i in 0..totals.len() {
            totals[i] += s[i] + node.lost_stats[i];
        }
    }
    eprintln!("counters: {:#?}", w.counters);
    eprintln!(
        "wire: frames {}, unique {}, session messages {} (prekey {}, forked {}), reset requests {}, distinct keys {}",
        w.wire.frames,
        w.wire.unique_frames,
        w.wire.session_messages,
        w.wire.prekey_messages,
        w.wire.forked_messages,
        w.wire.reset_requests,
        w.wire.keys.len()
    );
    eprintln!("network: {:?}", w.net.stats());
    let mut stats_line = String::new();
    for (i, r) in DropReason::ALL.iter().enumerate() {
        if totals[i] > 0 {
            stats_line.push_str(&format!("{}={} ", r.as_str(), totals[i]));
        }
    }
    eprintln!(
        "endpoint stats (sum): {stats_line}duplicate_frames={}",
        totals[DropReason::ALL.len()]
    );
    eprintln!(
        "counselor stats: {:?}, conversations {} (open {})",
        w.nodes[COUNSELOR].endpoint.stats(),
        w.nodes[COUNSELOR].endpoint.conversations().len(),
        w.nodes[COUNSELOR].endpoint.open_conversation_count()
    );

    // ---- check 1 ----
    let mut failures: Vec<String> = w.wire.violations.clone();

    // ---- check 2 ----
    let mut by_recipient: HashMap<(usize, &str), u32> = HashMap::new();
    let mut anywhere: HashMap<&str, u32> = HashMap::new();
    for (r, node) in w.nodes.iter().enumerate() {
        for (_, text) in &node.live.received {
            *by_recipient.entry((r, text)).or_default() += 1;
            *anywhere.entry(text).or_default() += 1;
        }
    }
    let (mut delivered, mut excused_failed, mut excused_closed, mut excused_reset) =
        (0u64, 0u64, 0u64, 0u64);
    let mut excused_unknown = 0u64;
    let mut silent = 0u64;
    for (s, node) in w.nodes.iter().enumerate() {
        for t in &node.live.sent {
            let here = by_recipient.get(&(t.to, &*t.text)).copied().unwrap_or(0);
            let all = anywhere.get(&*t.text).copied().unwrap_or(0);
            if all != here {
                failures.push(format!("{} arrived at another node than its peer", t.text));
            }
            if here > 1 {
                failures.push(format!(
                    "DUPLICATE: {} (from {}) is {} times in {}'s log",
                    t.text,
                    String::from_utf8_lossy(&node.name),
                    here,
                    String::from_utf8_lossy(&w.nodes[t.to].name)
                ));
            } else if here == 1 {
                delivered += 1;
            } else if node.live.failed.contains(&t.id) {
                excused_failed += 1;
            } else if node.live.closed.contains(&t.conversation)
                || node.endpoint.closed_by(t.conversation).is_some()
            {
                excused_closed += 1;
            } else if node.live.possibly_lost.contains(&t.id) {
                excused_reset += 1;
            } else if !peer_knows_sender(&w.nodes[t.to].endpoint, &node.address)
                && node
                    .live
                    .sent
                    .iter()
                    .skip_while(|x| x.id != t.id)
                    .skip(1)
                    .filter(|later| later.to == t.to)
                    .all(|later| {
                        by_recipient
                            .get(&(later.to, &*later.text))
                            .copied()
                            .unwrap_or(0)
                            == 0
                    })
            {
                // The peer restored a backup older than the whole conversation, so it cannot
                // know the conversation to send a resume frame, and nothing the sender wrote
                // since reached it (it has written nothing since): it learns at its next text
                // (docs/endpoint.md, Backups).
                excused_unknown += 1;
            } else {
                silent += 1;
                failures.push(format!(
                    "SILENTLY LOST: {} from {} (node {s}) in {} to {}: sender saw Delivered: {}, \
                     sender outbox {}, shown by the peer in any incarnation {} times, peer \
                     conversation open: {}",
                    t.text,
                    String::from_utf8_lossy(&node.name),
                    t.conversation,
                    String::from_utf8_lossy(&w.nodes[t.to].name),
                    node.live.delivered.contains(&t.id),
                    node.endpoint.outbox_len(),
                    w.ever_received.get(&*t.text).copied().unwrap_or(0),
                    w.nodes[t.to]
                        .endpoint
                        .conversation_with(&node.address)
                        .is_some(),
                ));
            }
        }
    }
    let sent_total: usize = w.nodes.iter().map(|n| n.live.sent.len()).sum();
    let received_total: usize = w.nodes.iter().map(|n| n.live.received.len()).sum();
    eprintln!(
        "texts in final logs: sent {sent_total}, received {received_total}; delivered exactly \
         once {delivered}, DeliveryFailed {excused_failed}, closed conversation \
         {excused_closed}, SessionReset possibly_lost {excused_reset}, peer restored to before \
         the conversation (learnt at the next text) {excused_unknown}, silently lost {silent}"
    );
    if w.counters.identity_changes > 0 {
        failures.push(format!(
            "{} IdentityChanged events (no identity ever changes here)",
            w.counters.identity_changes
        ));
    }
    eprintln!("runtime: {:.1?}", started.elapsed());

    // The scenario really exercised what it claims to.
    let c = &w.counters;
    let mut coverage = Vec::new();
    if c.crashes < 10 {
        coverage.push("crashes");
    }
    if c.client_restores < 3 || c.counselor_restores < 1 {
        coverage.push("older-snapshot restores");
    }
    if c.renewals < 50 || c.late_renewals < 1 || c.cert_refusals < 1 {
        coverage.push("certificate renewals / lapses");
    }
    if c.last_resort_bundles < 1 || c.bundle_uploads < 5 {
        coverage.push("prekey exhaustion and refill");
    }
    if c.client_closes + c.counselor_closes < 10 || c.recontacts < 5 {
        coverage.push("closures and re-contacts");
    }
    if w.wire.forked_messages == 0 {
        coverage.push("forked chains on the wire");
    }
    for f in failures.iter().take(40) {
        eprintln!("FAILURE: {f}");
    }
    assert!(
        failures.is_empty(),
        "seed {seed}: {} failures (first: {})",
        failures.len(),
        failures[0]
    );
    assert!(
        coverage.is_empty(),
        "seed {seed}: the scenario did not exercise {coverage:?}"
    );
}

#[test]
fn field_simulation_200_clients_60_days() {
    let seed = env_or("CONFIDE_FIELD_SEED", 0x00f1_e1d7);
    let clients = env_or("CONFIDE_FIELD_CLIENTS", 220) as usize;
    let days = env_or("CONFIDE_FIELD_DAYS", 60);
    run(seed, clients, days);
}

/// Whether `endpoint` has any conversation (open or closed) with `address`.
fn peer_knows_sender(endpoint: &Endpoint, address: &Address) -> bool {
    endpoint
        .conversations()
        .iter()
        .any(|c| endpoint.peer_address(*c) == Some(address))
}
