//! Months in the field: backups restored, certificates expiring and renewed, keys shredded on
//! schedule, conversations closed and started again, a thousand clients reaching an offline
//! counselor through a directory. Each test drives endpoints by hand through explicit
//! mailboxes (a relay that stores frames until the owner comes online), so every step is
//! visible.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use crate::common;

use std::collections::VecDeque;

use chacha20::ChaCha20Rng;
use common::{Service, T0};
use confide::{
    AckPolicy, CommandError, ConversationId, DropReason, Endpoint, EndpointConfig, Event,
    ExpectedIdentity, Input, MessageId, Output, RetentionPolicy, Role, StorageKey, Transmit,
};
use confide_crypto::{Duration, Timestamp, identity::IdentityKeyPair};
use confide_policy::{RetentionDuration, StartRule};
use confide_sealed::SenderCertificate;
use confide_transport::Frame;
use rand_core::SeedableRng;

/// One app: its endpoint, its stored state, and what it saw.
struct App {
    e: Endpoint,
    key: StorageKey,
    stored: Vec<u8>,
    events: Vec<Event>,
    mailbox: VecDeque<Vec<u8>>,
}

impl App {
    fn new(e: Endpoint) -> Self {
        Self {
            e,
            key: StorageKey::new([3; 32]),
            stored: Vec::new(),
            events: Vec::new(),
            mailbox: VecDeque::new(),
        }
    }

    /// The run loop's step 2: persist when asked, collect frames and events.
    fn drain(&mut self, rng: &mut ChaCha20Rng) -> Vec<Transmit> {
        let mut out = Vec::new();
        loop {
            match self.e.poll_output() {
                Output::Transmit(tx) => out.push(tx),
                Output::Event(Event::PersistRequired) => {
                    self.stored = self.e.export_state(rng, &self.key, b"account").unwrap();
                    self.e.confirm_persisted();
                }
                Output::Event(ev) => self.events.push(ev),
                Output::Timeout(_) => return out,
                _ => {}
            }
        }
    }

    /// Handles everything in the mailbox at `now`, draining after every 64 frames (a busy
    /// app batches its inputs; frames still wait for the state that produced them).
    fn receive_all(&mut self, rng: &mut ChaCha20Rng, now: Timestamp) -> Vec<Transmit> {
        let mut out = Vec::new();
        let mut batch = 0;
        while let Some(frame) = self.mailbox.pop_front() {
            self.e
                .handle_input(rng, Input::Receive { bytes: &frame, now });
            batch += 1;
            if batch % 64 == 0 {
                out.extend(self.drain(rng));
            }
        }
        out.extend(self.drain(rng));
        out
    }

    fn timeout(&mut self, rng: &mut ChaCha20Rng, now: Timestamp) -> Vec<Transmit> {
        self.e.handle_input(rng, Input::Timeout { now });
        self.drain(rng)
    }

    fn texts(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Message { text, .. } => {
                    Some(String::from_utf8_lossy(text.as_bytes()).into_owned())
                }
                _ => None,
            })
            .collect()
    }

    fn delivered(&self) -> Vec<MessageId> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Delivered { id, .. } => Some(*id),
                _ => None,
            })
            .collect()
    }

    fn resets(&self) -> usize {
        self.events
            .iter()
            .filter(|e| matches!(e, Event::SessionReset { .. }))
            .count()
    }

    /// Texts of ours the peer reported lost (`PeerRestored`).
    fn reported_lost(&self) -> Vec<MessageId> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::PeerRestored { possibly_lost, .. } => Some(possibly_lost.clone()),
                _ => None,
            })
            .flatten()
            .collect()
    }
}

/// A service, a counselor and `clients` clients with certificates valid for `valid`.
struct Town {
    rng: ChaCha20Rng,
    service: Service,
    counselor: App,
    clients: Vec<App>,
    identities: Vec<IdentityKeyPair>,
    now: Timestamp,
}

impl Town {
    fn new(seed: u8, clients: usize, valid: Duration) -> Self {
        Self::with_counselor_config(seed, clients, valid, EndpointConfig::default())
    }

    /// As [`Town::new`], with the counselor's endpoint configured by `config`.
    fn with_counselor_config(
        seed: u8,
        clients: usize,
        valid: Duration,
        counselor_config: EndpointConfig,
    ) -> Self {
        let mut rng = ChaCha20Rng::from_seed([seed; 32]);
        let service = Service::new(&mut rng);
        let make = |name: &[u8], role: Role, rng: &mut ChaCha20Rng| {
            let identity = IdentityKeyPair::generate(rng);
            let cert = cert(&service, name, &identity, role, T0.saturating_add(valid));
            let config = if role == Role::Counselor {
                counselor_config
            } else {
                EndpointConfig::default()
            };
            let e = Endpoint::new(
                rng,
                T0,
                identity.clone(),
                confide::Address::new(name).unwrap(),
                cert,
                service.roots.clone(),
                config,
            )
            .unwrap();
            (App::new(e), identity)
        };
        let (mut counselor, counselor_identity) = make(b"counselor", Role::Counselor, &mut rng);
        counselor.drain(&mut rng);
        let mut apps = Vec::new();
        let mut identities = vec![counselor_identity];
        for i in 0..clients {
            let (mut app, id) = make(format!("client-{i}").as_bytes(), Role::Client, &mut rng);
            app.drain(&mut rng);
            apps.push(app);
            identities.push(id);
        }
        Self {
            rng,
            service,
            counselor,
            clients: apps,
            identities,
            now: T0,
        }
    }

    /// Client `i` starts a conversation from `bundle`.
    /// One client and the counselor, the client's conversation started from the counselor's
    /// first one-time bundle (nothing sent yet).
    fn started(seed: u8, valid: Duration) -> (Self, ConversationId) {
        let mut town = Self::new(seed, 1, valid);
        let bundle = town.counselor.e.published_bundles().one_time[0].clone();
        let conv = town.start(0, &bundle);
        (town, conv)
    }

    fn start(&mut self, i: usize, bundle: &[u8]) -> ConversationId {
        let addr = self.counselor.e.address().clone();
        let now = self.now;
        let c = &mut self.clients[i];
        let conv =
            c.e.start_conversation(
                &mut self.rng,
                now,
                addr,
                bundle,
                ExpectedIdentity::TrustOnFirstUse,
            )
            .unwrap()
            .conversation;
        c.drain(&mut self.rng);
        conv
    }

    fn client_send(&mut self, i: usize, conv: ConversationId, text: &str) -> MessageId {
        let now = self.now;
        let c = &mut self.clients[i];
        let id = c.e.send(&mut self.rng, now, conv, text.as_bytes()).unwrap();
        let out = c.drain(&mut self.rng);
        self.route(out);
        id
    }

    fn counselor_send(&mut self, conv: ConversationId, text: &str) -> MessageId {
        let now = self.now;
        let id = self
            .counselor
            .e
            .send(&mut self.rng, now, conv, text.as_bytes())
            .unwrap();
        let out = self.counselor.drain(&mut self.rng);
        self.route(out);
        id
    }

    /// Puts frames in their recipients' mailboxes.
    fn route(&mut self, frames: Vec<Transmit>) {
        for tx in frames {
            if &tx.to == self.counselor.e.address() {
                self.counselor.mailbox.push_back(tx.frame);
            } else if let Some(c) = self.clients.iter_mut().find(|c| c.e.address() == &tx.to) {
                c.mailbox.push_back(tx.frame);
            }
        }
    }

    /// Everyone online handles mail and timers until nothing moves, at `self.now`.
    fn settle(&mut self, online: &[bool]) {
        for _ in 0..50 {
            let mut moved = false;
            let now = self.now;
            if online[0] {
                let mut out = self.counselor.receive_all(&mut self.rng, now);
                out.extend(self.counselor.timeout(&mut self.rng, now));
                moved |= !out.is_empty();
                self.route(out);
            }
            for i in 0..self.clients.len() {
                if !online.get(i + 1).copied().unwrap_or(true) {
                    continue;
                }
                let mut out = self.clients[i].receive_all(&mut self.rng, now);
                out.extend(self.clients[i].timeout(&mut self.rng, now));
                moved |= !out.is_empty();
                self.route(out);
            }
            if !moved {
                return;
            }
        }
    }

    fn advance(&mut self, d: Duration) {
        self.now = self.now.saturating_add(d);
    }
}

fn cert(
    service: &Service,
    name: &[u8],
    identity: &IdentityKeyPair,
    role: Role,
    expires: Timestamp,
) -> SenderCertificate {
    service.certificate_until(name, identity, role, expires)
}

fn all_online(town: &Town) -> Vec<bool> {
    vec![true; town.clients.len() + 1]
}

/// Key of a message key on the wire: sender, chain (ratchet key and fork nonce), index.
type WireKey = ([u8; 32], [u8; 32], [u8; 32], u32);

/// Opens every frame for its recipient and checks that no message key encrypted two
/// different ciphertexts.
fn assert_no_key_reuse(
    town: &Town,
    wire: &[(usize, usize, Vec<u8>)],
    seen: &mut std::collections::BTreeMap<WireKey, Vec<u8>>,
) {
    for (from, to, frame) in wire {
        let Frame::Data { payload, .. } = Frame::from_bytes(frame).unwrap() else {
            panic!("unexpected frame kind");
        };
        if payload.first() == Some(&confide_sealed::SYMMETRIC_ENVELOPE_KIND) {
            // Not readable without the session's envelope secret; its tag names its key and
            // nonce, checked for reuse by the endpoints' own tests (wire_sizes.rs).
            continue;
        }
        let opened = confide_sealed::open_with_grace(
            &town.identities[*to],
            &town.service.roots,
            T0,
            Duration::from_days(3650),
            &payload,
        )
        .unwrap();
        if opened.payload.get(1) == Some(&0x20) {
            continue; // a reset request: no message key
        }
        let m = match confide_session::SessionMessage::from_bytes(common::session_bytes(
            &opened.payload,
        ))
        .unwrap()
        {
            confide_session::SessionMessage::Ratchet(m) => m,
            confide_session::SessionMessage::PreKey(p) => p.message().clone(),
            _ => panic!("unknown session message"),
        };
        let key = (
            town.identities[*from].public().agreement_key().to_bytes(),
            m.ratchet_key().to_bytes(),
            m.fork().map_or([0; 32], |f| f.nonce()),
            m.index(),
        );
        let ct = m.ciphertext().to_vec();
        if let Some(prev) = seen.get(&key) {
            assert_eq!(prev, &ct, "a message key encrypted two different messages");
        } else {
            seen.insert(key, ct);
        }
    }
}

/// A town whose routing also logs (sender, recipient, frame) for the key-reuse check.
struct LoggedTown {
    town: Town,
    wire: Vec<(usize, usize, Vec<u8>)>,
}

impl LoggedTown {
    fn node_of(&self, address: &confide::Address) -> usize {
        if address == self.town.counselor.e.address() {
            0
        } else {
            1 + self
                .town
                .clients
                .iter()
                .position(|c| c.e.address() == address)
                .unwrap()
        }
    }

    /// Runs everyone until quiet, logging every frame handed to the relay.
    fn settle(&mut self) {
        for _ in 0..50 {
            let now = self.town.now;
            let mut frames = Vec::new();
            let out = self.town.counselor.receive_all(&mut self.town.rng, now);
            frames.extend(out.into_iter().map(|t| (0, t)));
            let out = self.town.counselor.timeout(&mut self.town.rng, now);
            frames.extend(out.into_iter().map(|t| (0, t)));
            for i in 0..self.town.clients.len() {
                let out = self.town.clients[i].receive_all(&mut self.town.rng, now);
                frames.extend(out.into_iter().map(|t| (i + 1, t)));
                let out = self.town.clients[i].timeout(&mut self.town.rng, now);
                frames.extend(out.into_iter().map(|t| (i + 1, t)));
            }
            if frames.is_empty() {
                return;
            }
            for (from, tx) in frames {
                let to = self.node_of(&tx.to);
                self.wire.push((from, to, tx.frame.clone()));
                self.town.route(vec![tx]);
            }
        }
    }

    fn send(&mut self, node: usize, conv: ConversationId, text: &str) -> MessageId {
        let now = self.town.now;
        let app = if node == 0 {
            &mut self.town.counselor
        } else {
            &mut self.town.clients[node - 1]
        };
        let id = app
            .e
            .send(&mut self.town.rng, now, conv, text.as_bytes())
            .unwrap();
        let out = app.drain(&mut self.town.rng);
        for tx in out {
            let to = self.node_of(&tx.to);
            self.wire.push((node, to, tx.frame.clone()));
            self.town.route(vec![tx]);
        }
        id
    }
}

fn conversation_pair(seed: u8) -> (LoggedTown, ConversationId, ConversationId) {
    let (town, conv) = Town::started(seed, Duration::from_days(300));
    let mut lt = LoggedTown {
        town,
        wire: Vec::new(),
    };
    lt.send(1, conv, "hello");
    lt.settle();
    let counselor_conv = lt.town.counselor.e.conversations()[0];
    (lt, conv, counselor_conv)
}

// ---- restore safety ------------------------------------------------------------------------

#[test]
fn restoring_an_older_backup_reuses_no_key_and_both_sides_recover() {
    for seed in 0..6u8 {
        let (mut lt, conv, cconv) = conversation_pair(40 + seed);
        for i in 0..3 {
            lt.send(1, conv, &format!("before backup {i}"));
            lt.send(0, cconv, &format!("reply before backup {i}"));
            lt.settle();
        }
        // The phone backs up here.
        let backup = lt.town.clients[0].stored.clone();
        let delivered_before_backup = lt.town.counselor.delivered().len();
        // Life goes on: texts both ways (on more ratchet steps for odd seeds).
        for i in 0..4 {
            lt.send(1, conv, &format!("after backup {i}"));
            if seed % 2 == 1 {
                lt.settle();
            }
            lt.send(0, cconv, &format!("counselor after backup {i}"));
            lt.settle();
        }
        let delivered_to_client: Vec<MessageId> = lt.town.counselor.delivered();
        // The phone is restored from the backup.
        let key = lt.town.clients[0].key.clone();
        lt.town.clients[0].e = Endpoint::import_state(&key, b"account", &backup).unwrap();
        lt.town.clients[0].events.clear();
        lt.town.clients[0].drain(&mut lt.town.rng);
        // Both sides keep writing.
        for i in 0..3 {
            lt.send(1, conv, &format!("restored client {i}"));
            lt.send(0, cconv, &format!("to the restored client {i}"));
            lt.town.advance(Duration::from_secs(1));
            lt.settle();
        }
        lt.town.advance(Duration::from_mins(10));
        lt.settle();
        lt.town.advance(Duration::from_mins(10));
        lt.settle();

        let mut seen = std::collections::BTreeMap::new();
        assert_no_key_reuse(&lt.town, &lt.wire, &mut seen);
        let counselor_texts = lt.town.counselor.texts();
        let client_texts = lt.town.clients[0].texts();
        for i in 0..3 {
            let t = format!("restored client {i}");
            assert_eq!(
                counselor_texts.iter().filter(|x| **x == t).count(),
                1,
                "seed {seed}: {t} arrives exactly once; counselor saw {counselor_texts:?}, stats {:?} client events {:?} counselor events {:?}",
                lt.town.counselor.e.stats(),
                lt.town.clients[0].events,
                lt.town.counselor.events
            );
            let t = format!("to the restored client {i}");
            assert!(
                client_texts.contains(&t),
                "seed {seed}: {t} reaches the restored client; client saw {client_texts:?}, stats {:?}",
                lt.town.clients[0].e.stats()
            );
        }
        // The reset is reported on both sides, and the counselor learns exactly which of its
        // texts the restored phone lost: those it acknowledged after the backup.
        assert_eq!(
            lt.town.counselor.resets(),
            1,
            "seed {seed}: one reset at the counselor"
        );
        assert_eq!(
            lt.town.clients[0].resets(),
            1,
            "seed {seed}: one reset at the client"
        );
        let mut lost = lt.town.counselor.reported_lost();
        lost.sort();
        let mut expected: Vec<MessageId> = delivered_to_client[delivered_before_backup..].to_vec();
        expected.sort();
        assert_eq!(
            lost, expected,
            "seed {seed}: the texts the restored phone lost are listed"
        );
        assert!(
            lt.town.clients[0].reported_lost().is_empty(),
            "seed {seed}: the counselor lost nothing"
        );
        // Nothing went silently: every refusal was counted or reported.
        assert_eq!(
            lt.town
                .counselor
                .e
                .stats()
                .dropped(DropReason::SessionAuthentication),
            0
        );
    }
}

#[test]
fn a_cold_start_from_the_latest_state_needs_no_reset() {
    let (mut lt, conv, cconv) = conversation_pair(60);
    for round in 0..5 {
        lt.send(1, conv, &format!("client {round}"));
        // The counselor answers while the client's app is closed ...
        lt.send(0, cconv, &format!("counselor {round}a"));
        lt.send(0, cconv, &format!("counselor {round}b"));
        // ... and the app starts again from its latest stored state, then writes at once.
        let key = lt.town.clients[0].key.clone();
        let stored = lt.town.clients[0].stored.clone();
        lt.town.clients[0].e = Endpoint::import_state(&key, b"account", &stored).unwrap();
        lt.send(1, conv, &format!("client {round} after restart"));
        lt.settle();
    }
    assert_eq!(lt.town.counselor.resets(), 0);
    assert_eq!(lt.town.clients[0].resets(), 0);
    assert!(
        lt.town.counselor.reported_lost().is_empty(),
        "a cold start loses nothing"
    );
    assert_eq!(lt.town.counselor.e.stats().dropped_total(), 0);
    assert_eq!(lt.town.clients[0].e.stats().dropped_total(), 0);
    assert_eq!(lt.town.counselor.texts().len(), 1 + 10);
    assert_eq!(lt.town.clients[0].texts().len(), 10);
    let mut seen = std::collections::BTreeMap::new();
    assert_no_key_reuse(&lt.town, &lt.wire, &mut seen);
}

// ---- directory -----------------------------------------------------------------------------

#[test]
fn a_thousand_clients_reach_an_offline_counselor_through_the_directory() {
    const CLIENTS: usize = 1_000;
    let mut town = Town::new(7, CLIENTS, Duration::from_days(300));
    // The directory: one-time bundles handed out once each, then the last-resort bundle.
    let published = town.counselor.e.published_bundles();
    let mut one_time: VecDeque<Vec<u8>> = published.one_time.into_iter().collect();
    let last_resort = published.last_resort;
    assert!(!last_resort.is_empty());
    let mut handed_out_last_resort = 0;
    let mut convs = Vec::new();
    for i in 0..CLIENTS {
        let bundle = one_time.pop_front().unwrap_or_else(|| {
            handed_out_last_resort += 1;
            last_resort.clone()
        });
        let conv = town.start(i, &bundle);
        convs.push(conv);
        town.client_send(i, conv, &format!("hello from {i}"));
    }
    assert!(
        handed_out_last_resort > CLIENTS / 2,
        "the one-time bundles ran out"
    );
    // The counselor comes online and reads its mail.
    town.advance(Duration::from_hours(8));
    let online = all_online(&town);
    town.settle(&online);
    assert_eq!(town.counselor.e.open_conversation_count(), CLIENTS);
    let texts = town.counselor.texts();
    assert_eq!(texts.len(), CLIENTS, "every first message arrived");
    for i in 0..CLIENTS {
        assert_eq!(
            town.clients[i].delivered().len(),
            1,
            "client {i} learned its message was delivered"
        );
    }
    assert_eq!(town.counselor.e.stats().dropped_total(), 0);
    // And it answers everyone.
    let cconvs = town.counselor.e.conversations();
    for c in cconvs {
        town.counselor_send(c, "I'm here");
    }
    town.settle(&online);
    for i in 0..CLIENTS {
        assert_eq!(town.clients[i].texts(), vec!["I'm here".to_string()]);
    }
}

// ---- certificates ---------------------------------------------------------------------------

#[test]
fn a_message_sealed_before_the_certificate_expired_is_accepted_within_the_grace_period() {
    let (mut town, conv) = Town::started(9, Duration::from_days(2));
    town.advance(Duration::from_days(1));
    town.client_send(0, conv, "sent on the last valid day");
    // The counselor is offline for four days: the client's certificate expires meanwhile.
    town.advance(Duration::from_days(4));
    let mut online = all_online(&town);
    online[1] = false; // the client is offline too: nothing re-sealed
    town.settle(&online);
    assert_eq!(
        town.counselor.texts(),
        vec!["sent on the last valid day".to_string()]
    );
    // Beyond the grace period a frame under the expired certificate is refused and counted.
    let frame = town.counselor.mailbox.clone();
    assert!(frame.is_empty());
}

#[test]
fn an_expired_certificate_is_refused_after_grace_and_renewal_reseals_waiting_frames() {
    let mut town = Town::new(10, 1, Duration::from_days(2));
    // Only the client's certificate runs out in this story.
    let counselor_cert = cert(
        &town.service,
        b"counselor",
        &town.identities[0].clone(),
        Role::Counselor,
        T0.saturating_add(Duration::from_days(300)),
    );
    let now = town.now;
    town.counselor
        .e
        .set_certificate(&mut town.rng, now, counselor_cert)
        .unwrap();
    town.counselor.drain(&mut town.rng);
    let bundle = town.counselor.e.published_bundles().one_time[0].clone();
    let conv = town.start(0, &bundle);
    let id = town.client_send(0, conv, "waiting for a long time");
    let stale = town.counselor.mailbox.pop_front().unwrap();
    // The app is warned ahead of expiry.
    let now = town.now;
    town.clients[0].timeout(&mut town.rng, now);
    assert!(
        town.clients[0]
            .events
            .iter()
            .any(|e| matches!(e, Event::CertificateExpiring { .. }))
    );
    // Three days on, the certificate has expired: sending is refused with a typed error.
    town.advance(Duration::from_days(3));
    let now = town.now;
    let refused = town.clients[0].e.send(&mut town.rng, now, conv, b"x");
    assert!(matches!(
        refused,
        Err(CommandError::CertificateExpired { .. })
    ));
    // Renewal re-seals the waiting frame under the new certificate, same frame id.
    let identity = town.identities[1].clone();
    let renewed = cert(
        &town.service,
        b"client-0",
        &identity,
        Role::Client,
        now.saturating_add(Duration::from_days(30)),
    );
    assert_eq!(
        town.clients[0].e.certificate_expires_at(),
        T0.saturating_add(Duration::from_days(2))
    );
    town.clients[0]
        .e
        .set_certificate(&mut town.rng, now, renewed)
        .unwrap();
    let out = town.clients[0].drain(&mut town.rng);
    let Frame::Data { id: old_id, .. } = Frame::from_bytes(&stale).unwrap() else {
        panic!()
    };
    assert!(out.iter().any(|tx| matches!(Frame::from_bytes(&tx.frame),
        Ok(Frame::Data { id: fid, .. }) if fid == old_id)));
    town.counselor.mailbox.clear();
    town.route(out);
    assert!(
        town.clients[0]
            .e
            .send(&mut town.rng, now, conv, b"ok again")
            .is_ok()
    );
    let out = town.clients[0].drain(&mut town.rng);
    town.route(out);
    // The counselor comes online after the old certificate's grace period: the old copy is
    // refused and counted, the re-sealed one is accepted.
    town.advance(Duration::from_days(7));
    let now = town.now;
    town.counselor
        .e
        .handle_input(&mut town.rng, Input::Receive { bytes: &stale, now });
    town.counselor.drain(&mut town.rng);
    assert_eq!(
        town.counselor
            .e
            .stats()
            .dropped(DropReason::CertificateExpired),
        1
    );
    let online = all_online(&town);
    town.settle(&online);
    assert_eq!(
        town.counselor.texts(),
        vec![
            "waiting for a long time".to_string(),
            "ok again".to_string()
        ]
    );
    assert!(
        town.clients[0].delivered().contains(&id),
        "client events {:?}",
        town.clients[0].events
    );
}

#[test]
fn a_late_acknowledgement_turns_a_failure_into_delivered() {
    let (mut town, conv) = Town::started(11, Duration::from_days(300));
    let id = town.client_send(0, conv, "are you there?");
    // The counselor stays offline for eight days: the client gives up after seven.
    let mut online = all_online(&town);
    online[0] = false;
    for _ in 0..8 {
        town.advance(Duration::from_days(1));
        town.settle(&online);
    }
    assert!(town.clients[0].events.contains(&Event::DeliveryFailed {
        conversation: conv,
        id
    }));
    // Its mail was kept by the relay; it comes online and answers.
    town.settle(&all_online(&town));
    assert_eq!(town.counselor.texts(), vec!["are you there?".to_string()]);
    assert_eq!(
        town.clients[0].delivered(),
        vec![id],
        "the last word is Delivered"
    );
}

// ---- acknowledgements: no oracle, and timing the app chooses ----------------------------

/// A frame with `frame`'s id and `payload`.
fn reframe(frame: &[u8], payload: Vec<u8>) -> Vec<u8> {
    let Frame::Data { id, .. } = Frame::from_bytes(frame).unwrap() else {
        panic!()
    };
    Frame::Data { id, payload }.to_bytes().unwrap()
}

fn payload_of(frame: &[u8]) -> Vec<u8> {
    let Frame::Data { payload, .. } = Frame::from_bytes(frame).unwrap() else {
        panic!()
    };
    payload
}

#[test]
fn a_relay_cannot_make_the_recipient_acknowledge_on_demand() {
    let (mut town, conv) = Town::started(12, Duration::from_days(300));
    town.client_send(0, conv, "something only my counselor may know");
    let original = town.counselor.mailbox.front().unwrap().clone();
    town.settle(&all_online(&town));
    assert_eq!(town.counselor.texts().len(), 1);
    assert_eq!(town.clients[0].delivered().len(), 1);
    let stats_before = town.counselor.e.stats();

    // Garbage, and the genuine envelope with one bit flipped, under the delivered frame id:
    // no acknowledgement, no event, nothing shown.
    let garbage: Vec<u8> = (0..payload_of(&original).len())
        .map(|i| (i * 7 + 3) as u8)
        .collect();
    let mut flipped = payload_of(&original);
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    for payload in [garbage, flipped] {
        town.advance(Duration::from_secs(10));
        let now = town.now;
        town.counselor
            .mailbox
            .push_back(reframe(&original, payload));
        let out = town.counselor.receive_all(&mut town.rng, now);
        assert!(out.is_empty(), "an altered copy was answered");
    }
    let stats = town.counselor.e.stats();
    assert_eq!(
        stats.dropped(DropReason::AlteredDuplicate),
        stats_before.dropped(DropReason::AlteredDuplicate) + 2
    );
    assert_eq!(town.counselor.texts().len(), 1);

    // The byte-identical envelope (a lost acknowledgement, or a replay): answered at most once
    // per MIN_REACKNOWLEDGE_INTERVAL.
    town.advance(Duration::from_secs(10));
    let now = town.now;
    town.counselor.mailbox.push_back(original.clone());
    town.counselor.mailbox.push_back(original.clone());
    town.counselor.mailbox.push_back(original.clone());
    let out = town.counselor.receive_all(&mut town.rng, now);
    assert_eq!(out.len(), 1, "three copies at once get one answer");
    assert_eq!(town.counselor.e.stats().unanswered_duplicates(), 2);
    town.advance(confide_transport::consts::MIN_REACKNOWLEDGE_INTERVAL);
    let now = town.now;
    town.counselor.mailbox.push_back(original.clone());
    assert_eq!(town.counselor.receive_all(&mut town.rng, now).len(), 1);
    assert_eq!(town.counselor.texts().len(), 1, "never shown twice");

    // A copy changed only between the dedup digest's head and tail counts as the byte-identical
    // copy (docs/endpoint.md): within the same limits, and never opened or shown.
    let mut middle = payload_of(&original);
    let at = confide::consts::DEDUP_DIGEST_HEAD;
    assert!(middle.len() > at + confide::consts::DEDUP_DIGEST_TAIL);
    middle[at] ^= 1;
    let altered_before = town
        .counselor
        .e
        .stats()
        .dropped(DropReason::AlteredDuplicate);
    town.counselor
        .mailbox
        .push_back(reframe(&original, middle.clone()));
    assert!(
        town.counselor.receive_all(&mut town.rng, now).is_empty(),
        "within MIN_REACKNOWLEDGE_INTERVAL of the last answer"
    );
    town.advance(confide_transport::consts::MIN_REACKNOWLEDGE_INTERVAL);
    let now = town.now;
    town.counselor.mailbox.push_back(reframe(&original, middle));
    assert_eq!(town.counselor.receive_all(&mut town.rng, now).len(), 1);
    assert_eq!(
        town.counselor
            .e
            .stats()
            .dropped(DropReason::AlteredDuplicate),
        altered_before
    );
    assert_eq!(town.counselor.texts().len(), 1, "never shown twice");
}

/// A symmetric envelope carries the session ciphertext in clear and binds only its last 16
/// bytes, the session's own tag (docs/sealed-sender.md §9.3). A change to that tag is refused
/// at the envelope; a change before it opens the envelope and is refused by the session. That
/// refusal must not be taken for a peer out of sync: a relay would then make us reset the
/// session (the design this test first caught, when the envelope bound only the tag and the
/// endpoint answered every session failure with a reset request). Either way nothing is
/// shown, acknowledged or sent, nothing is recorded, no event reaches the conversation (the
/// relay could repeat a changed copy at will: only a counter moves), and the genuine frame
/// after them is received as if the altered ones never came.
#[test]
fn a_change_inside_the_clear_session_ciphertext_is_refused_without_a_reset() {
    let (mut town, conv) = Town::started(14, Duration::from_days(300));
    town.client_send(0, conv, "first, in a public-key envelope");
    town.settle(&all_online(&town));
    town.client_send(0, conv, "second, in a symmetric envelope");
    let original = town.counselor.mailbox.pop_front().unwrap();
    let payload = payload_of(&original);
    assert_eq!(payload[0], confide_sealed::SYMMETRIC_ENVELOPE_KIND);
    let clear_len = u32::from_be_bytes(payload[17..21].try_into().unwrap()) as usize;
    assert!(clear_len > 16, "the session ciphertext travels in clear");
    let now = town.now;
    let events_before = town.counselor.events.len();
    for (at, refused_by) in [
        (21 + clear_len / 2, DropReason::SessionAuthentication),
        (21, DropReason::SessionAuthentication),
        // The same changed copy again: the tag was not used up, and it is refused again.
        (21, DropReason::SessionAuthentication),
        (21 + clear_len - 1, DropReason::EnvelopeRefused),
        (21 + clear_len - 16, DropReason::EnvelopeRefused),
    ] {
        let mut altered = payload.clone();
        altered[at] ^= 0x40;
        let before = town.counselor.e.stats();
        town.counselor
            .mailbox
            .push_back(reframe(&original, altered));
        let out = town.counselor.receive_all(&mut town.rng, now);
        assert!(
            out.is_empty(),
            "nothing is sent for an altered frame (byte {at}): no acknowledgement, no reset request"
        );
        assert_eq!(town.counselor.texts().len(), 1);
        let stats = town.counselor.e.stats();
        for reason in DropReason::ALL {
            let expected = u64::from(reason == refused_by);
            assert_eq!(
                stats.dropped(reason) - before.dropped(reason),
                expected,
                "byte {at}: {reason:?}"
            );
        }
    }
    // Counted only: nothing the relay can repeat at will reaches the conversation's events.
    assert_eq!(
        town.counselor.events.len(),
        events_before,
        "no event for a changed copy"
    );
    // The genuine frame, same id: received and acknowledged as a new one.
    town.counselor.mailbox.push_back(original);
    let out = town.counselor.receive_all(&mut town.rng, now);
    assert_eq!(out.len(), 1, "acknowledged");
    assert_eq!(
        town.counselor.texts(),
        vec![
            "first, in a public-key envelope".to_string(),
            "second, in a symmetric envelope".to_string()
        ]
    );
    // And the conversation goes on in the same session: no reset happened.
    town.settle(&all_online(&town));
    assert!(
        town.counselor
            .events
            .iter()
            .chain(town.clients[0].events.iter())
            .all(|e| !matches!(e, Event::SessionReset { .. })),
        "no session reset"
    );
}

#[test]
fn a_resealed_copy_of_a_received_frame_is_acknowledged_once_more_and_not_shown_again() {
    let (mut town, conv) = Town::started(13, Duration::from_days(300));
    let id = town.client_send(0, conv, "hello");
    // The counselor receives it, but its acknowledgement is lost.
    let now = town.now;
    let lost_ack = town.counselor.receive_all(&mut town.rng, now);
    assert_eq!(lost_ack.len(), 1);
    assert_eq!(town.counselor.texts(), vec!["hello".to_string()]);
    // The client renews its certificate: the waiting frame is re-sealed (new bytes, same id).
    let renewed = cert(
        &town.service,
        b"client-0",
        &town.identities[1].clone(),
        Role::Client,
        now.saturating_add(Duration::from_days(400)),
    );
    town.clients[0]
        .e
        .set_certificate(&mut town.rng, now, renewed)
        .unwrap();
    let out = town.clients[0].drain(&mut town.rng);
    town.route(out);
    town.advance(Duration::from_secs(5));
    town.settle(&all_online(&town));
    assert_eq!(town.clients[0].delivered(), vec![id]);
    assert_eq!(town.counselor.texts(), vec!["hello".to_string()]);
    assert_eq!(town.counselor.e.stats().dropped_total(), 0);
}

#[test]
fn batched_acknowledgements_leave_together_inside_the_window() {
    let window = Duration::from_secs(6);
    let config = EndpointConfig {
        acknowledgements: AckPolicy::Batched { window },
        ..EndpointConfig::default()
    };
    let mut town = Town::with_counselor_config(14, 1, Duration::from_days(300), config);
    let bundle = town.counselor.e.published_bundles().one_time[0].clone();
    let conv = town.start(0, &bundle);
    let ids: Vec<MessageId> = (0..3)
        .map(|i| town.client_send(0, conv, &format!("text {i}")))
        .collect();
    let start = town.now;
    let out = town.counselor.receive_all(&mut town.rng, start);
    assert!(out.is_empty(), "no acknowledgement leaves at once");
    let due = town.counselor.e.poll_timeout().unwrap();
    assert!(
        due >= start.saturating_add(Duration::from_secs(3)),
        "{due:?}"
    );
    assert!(due <= start.saturating_add(window));
    // Nothing before the moment, one frame acknowledging all three at it.
    let early = town
        .counselor
        .timeout(&mut town.rng, due.saturating_sub(Duration::from_millis(1)));
    assert!(early.is_empty());
    let out = town.counselor.timeout(&mut town.rng, due);
    assert_eq!(out.len(), 1);
    town.now = due;
    town.route(out);
    let now = town.now;
    town.clients[0].receive_all(&mut town.rng, now);
    let mut delivered = town.clients[0].delivered();
    let mut sent = ids.clone();
    delivered.sort();
    sent.sort();
    assert_eq!(delivered, sent);
}

#[test]
fn a_reply_carries_the_waiting_acknowledgements() {
    // With batched acknowledgements, a reply written inside the window takes the waiting
    // acknowledgements along: no acknowledgement frame of its own leaves, and the client
    // learns of delivery from the reply (docs/endpoint.md, "Acknowledgements").
    let window = Duration::from_secs(6);
    let config = EndpointConfig {
        acknowledgements: AckPolicy::Batched { window },
        ..EndpointConfig::default()
    };
    let mut town = Town::with_counselor_config(17, 1, Duration::from_days(300), config);
    let bundle = town.counselor.e.published_bundles().one_time[0].clone();
    let conv = town.start(0, &bundle);
    let ids: Vec<MessageId> = (0..2)
        .map(|i| town.client_send(0, conv, &format!("text {i}")))
        .collect();
    let now = town.now;
    assert!(town.counselor.receive_all(&mut town.rng, now).is_empty());
    let cconv = town.counselor.e.conversations()[0];
    town.advance(Duration::from_secs(1));
    let now = town.now;
    let reply = town
        .counselor
        .e
        .send(&mut town.rng, now, cconv, b"I'm here.")
        .unwrap();
    let out = town.counselor.drain(&mut town.rng);
    assert_eq!(out.len(), 1, "only the reply leaves");
    // The batch is empty now: when its moment passes only the reply goes out again (a
    // retransmission, byte for byte), no acknowledgement frame.
    let later = now.saturating_add(window);
    let again = town.counselor.timeout(&mut town.rng, later);
    assert!(
        again.iter().all(|tx| tx.frame == out[0].frame),
        "{} frames, not all the reply",
        again.len()
    );
    town.route(out);
    let acks = town.clients[0].receive_all(&mut town.rng, now);
    let mut delivered = town.clients[0].delivered();
    delivered.sort();
    let mut sent = ids.clone();
    sent.sort();
    assert_eq!(delivered, sent, "the reply acknowledged both texts");
    assert_eq!(town.clients[0].texts(), vec!["I'm here.".to_string()]);
    // And the reply itself is acknowledged as usual.
    town.route(acks);
    town.counselor.receive_all(&mut town.rng, now);
    assert_eq!(town.counselor.delivered(), vec![reply]);
    assert_eq!(town.clients[0].e.stats().dropped_total(), 0);
}

#[test]
fn a_reacknowledgement_does_not_ride_on_a_reply() {
    // A retransmitted text tells the counselor its acknowledgement may have been lost in an
    // epoch the client dropped: that re-acknowledgement must go on its own, public-key, not on
    // a reply that may be sealed in the same lost epoch.
    let window = Duration::from_secs(10);
    let config = EndpointConfig {
        acknowledgements: AckPolicy::Batched { window },
        ..EndpointConfig::default()
    };
    let mut town = Town::with_counselor_config(18, 1, Duration::from_days(300), config);
    let bundle = town.counselor.e.published_bundles().one_time[0].clone();
    let conv = town.start(0, &bundle);
    let id = town.client_send(0, conv, "are you there?");
    let start = town.now;
    assert!(town.counselor.receive_all(&mut town.rng, start).is_empty());
    // The client retransmits (the acknowledgement is still in the counselor's batch) and the
    // counselor receives the copy.
    town.advance(Duration::from_millis(2_500));
    let now = town.now;
    let again = town.clients[0].timeout(&mut town.rng, now);
    assert!(!again.is_empty(), "the client retransmits");
    town.route(again);
    let out = town.counselor.receive_all(&mut town.rng, now);
    assert!(out.is_empty(), "the re-acknowledgement waits in the batch");
    let cconv = town.counselor.e.conversations()[0];
    town.counselor
        .e
        .send(&mut town.rng, now, cconv, b"yes")
        .unwrap();
    let out = town.counselor.drain(&mut town.rng);
    town.route(out);
    town.clients[0].receive_all(&mut town.rng, now);
    assert_eq!(town.clients[0].texts(), vec!["yes".to_string()]);
    assert!(
        town.clients[0].delivered().is_empty(),
        "the reply carried no acknowledgement"
    );
    // The batch leaves at its moment (by the end of the window), in a frame of its own.
    while let Some(due) = town.counselor.e.poll_timeout() {
        if due > start.saturating_add(window) {
            break;
        }
        let out = town.counselor.timeout(&mut town.rng, due);
        town.route(out);
        let out = town.clients[0].receive_all(&mut town.rng, due);
        town.route(out);
    }
    assert_eq!(town.clients[0].delivered(), vec![id]);
}

#[test]
fn app_driven_acknowledgements_wait_for_the_app_and_survive_a_restart() {
    let config = EndpointConfig {
        acknowledgements: AckPolicy::AppDriven,
        ..EndpointConfig::default()
    };
    let mut town = Town::with_counselor_config(15, 1, Duration::from_days(300), config);
    let bundle = town.counselor.e.published_bundles().one_time[0].clone();
    let conv = town.start(0, &bundle);
    let id = town.client_send(0, conv, "read me when you can");
    let now = town.now;
    assert!(town.counselor.receive_all(&mut town.rng, now).is_empty());
    town.advance(Duration::from_secs(1));
    let now = town.now;
    assert!(town.counselor.timeout(&mut town.rng, now).is_empty());
    // The app restarts from its stored state: the waiting acknowledgement is still there.
    let restored =
        Endpoint::import_state(&town.counselor.key, b"account", &town.counselor.stored).unwrap();
    town.counselor.e = restored;
    town.counselor.drain(&mut town.rng);
    town.counselor.e.send_acknowledgements(&mut town.rng, now);
    let out = town.counselor.drain(&mut town.rng);
    // The resume frame after the import, and one acknowledgement.
    town.route(out);
    town.clients[0].receive_all(&mut town.rng, now);
    assert_eq!(town.clients[0].delivered(), vec![id]);
}

#[test]
fn an_acknowledgement_window_out_of_bounds_is_refused() {
    let mut rng = ChaCha20Rng::from_seed([16; 32]);
    let service = Service::new(&mut rng);
    for window in [
        Duration::from_millis(0),
        confide::consts::MAX_ACK_BATCH_WINDOW.saturating_add(Duration::from_millis(1)),
    ] {
        let identity = IdentityKeyPair::generate(&mut rng);
        let c = cert(
            &service,
            b"counselor",
            &identity,
            Role::Counselor,
            T0.saturating_add(Duration::from_days(1)),
        );
        let refused = Endpoint::new(
            &mut rng,
            T0,
            identity,
            confide::Address::new(b"counselor").unwrap(),
            c,
            service.roots.clone(),
            EndpointConfig {
                acknowledgements: AckPolicy::Batched { window },
                ..EndpointConfig::default()
            },
        );
        assert!(matches!(
            refused,
            Err(confide::NewEndpointError::InvalidAckPolicy)
        ));
    }
}

// ---- key shredding and expiry --------------------------------------------------------------

fn hour_timer() -> RetentionPolicy {
    RetentionPolicy::Expire {
        after: RetentionDuration::new(Duration::from_hours(1)).unwrap(),
        start: StartRule::AfterSend,
    }
}

#[test]
fn skipped_keys_are_shredded_on_schedule_and_expired_texts_leave_the_outbox() {
    let (mut lt, conv, cconv) = conversation_pair(12);
    let now = lt.town.now;
    lt.town.clients[0]
        .e
        .set_timer(&mut lt.town.rng, now, conv, hour_timer())
        .unwrap();
    let out = lt.town.clients[0].drain(&mut lt.town.rng);
    lt.town.route(out);
    lt.settle();
    // The counselor writes three texts; the second is held back by the network.
    lt.send(0, cconv, "one");
    lt.send(0, cconv, "two");
    lt.send(0, cconv, "three");
    let held_back = lt.town.clients[0].mailbox.remove(1).unwrap();
    let arrival = lt.town.now;
    lt.settle();
    assert_eq!(
        lt.town.clients[0].texts(),
        vec!["one".to_string(), "three".to_string()]
    );
    // The client schedules the shredding of the key it skipped for "two".
    let deadline = lt.town.clients[0].e.poll_timeout().unwrap();
    let latest = arrival
        .saturating_add(Duration::from_hours(1))
        .saturating_add(confide_policy::limits::MAX_CLOCK_SKEW)
        .saturating_add(Duration::from_millis(1));
    assert!(deadline <= latest, "the shredding deadline is scheduled");
    lt.town.now = latest;
    let out = lt.town.clients[0].timeout(&mut lt.town.rng, latest);
    lt.town.route(out);
    // "two" finally arrives: its key is gone, so it cannot even be decrypted.
    let before = lt.town.clients[0].e.stats();
    lt.town.clients[0].e.handle_input(
        &mut lt.town.rng,
        Input::Receive {
            bytes: &held_back,
            now: latest,
        },
    );
    lt.town.clients[0].drain(&mut lt.town.rng);
    let after = lt.town.clients[0].e.stats();
    assert!(
        after.dropped_total() > before.dropped_total()
            || after.duplicate_frames() > before.duplicate_frames()
    );
    assert!(!lt.town.clients[0].texts().contains(&"two".to_string()));

    // A text to an offline peer leaves the outbox once its timer has run out.
    lt.send(1, conv, "expires unread");
    assert_eq!(lt.town.clients[0].e.outbox_len(), 1);
    lt.town.counselor.mailbox.clear();
    lt.town.advance(Duration::from_hours(2));
    let now = lt.town.now;
    lt.town.clients[0].timeout(&mut lt.town.rng, now);
    assert_eq!(
        lt.town.clients[0].e.outbox_len(),
        0,
        "expired texts leave the outbox"
    );
}

// ---- lifetimes -----------------------------------------------------------------------------

#[test]
fn a_closed_conversation_shrinks_and_the_same_peer_can_start_again() {
    let mut town = Town::new(13, 1, Duration::from_days(300));
    let online = all_online(&town);
    for round in 0..3 {
        let published = town.counselor.e.published_bundles();
        let bundle = published
            .one_time
            .first()
            .cloned()
            .unwrap_or(published.last_resort);
        let conv = town.start(0, &bundle);
        town.client_send(0, conv, &format!("round {round}"));
        town.settle(&online);
        let cconv = town
            .counselor
            .e
            .conversation_with(town.clients[0].e.address())
            .unwrap();
        town.counselor_send(cconv, &format!("answer {round}"));
        town.settle(&online);
        let now = town.now;
        town.clients[0].e.close(&mut town.rng, now, conv).unwrap();
        let out = town.clients[0].drain(&mut town.rng);
        town.route(out);
        town.settle(&online);
        assert_eq!(
            town.counselor.e.closed_by(cconv),
            Some(confide::Party::Peer)
        );
        assert_eq!(town.counselor.e.open_conversation_count(), 0);
        // After the close retransmission period both sides shrink it to a tombstone.
        town.advance(Duration::from_days(2));
        town.settle(&online);
        assert!(
            town.clients[0].e.conversations().is_empty(),
            "round {round}"
        );
        assert!(town.counselor.e.conversations().is_empty(), "round {round}");
        assert_eq!(town.clients[0].e.closed_by(conv), Some(confide::Party::Us));
    }
    assert_eq!(town.counselor.texts().len(), 3);
    assert_eq!(town.clients[0].texts().len(), 3);
}

#[test]
fn an_unanswered_session_goes_stale_and_is_renewed_without_duplicates() {
    let mut town = Town::new(14, 1, Duration::from_days(300));
    let old_bundle = town.counselor.e.published_bundles().one_time[0].clone();
    let conv = town.start(0, &old_bundle);
    let first = town.client_send(0, conv, "first try");
    // The relay lost it and the counselor never answers; a week later the client's
    // transport gives up on it (a typed event, not silence).
    town.counselor.mailbox.clear();
    let mut online = all_online(&town);
    online[0] = false;
    town.advance(Duration::from_days(8));
    town.settle(&online);
    assert!(town.clients[0].events.contains(&Event::DeliveryFailed {
        conversation: conv,
        id: first
    }));
    // Nearly two weeks in, the client writes again; that text is lost as well.
    town.advance(Duration::from_days(5));
    let waiting = town.client_send(0, conv, "still waiting");
    town.counselor.mailbox.clear();
    town.advance(Duration::from_days(1));
    town.settle(&online);
    town.counselor.mailbox.clear();
    let now = town.now;
    assert_eq!(
        town.clients[0]
            .e
            .send(&mut town.rng, now, conv, b"second try"),
        Err(CommandError::SessionStale)
    );
    // The app fetches a new bundle and renews; the waiting text goes out again in it.
    let fresh = town.counselor.e.published_bundles().one_time[1].clone();
    town.clients[0]
        .e
        .renew_session(&mut town.rng, now, conv, &fresh)
        .unwrap();
    let out = town.clients[0].drain(&mut town.rng);
    town.route(out);
    town.client_send(0, conv, "second try");
    town.settle(&all_online(&town));
    let mut texts = town.counselor.texts();
    texts.sort();
    assert_eq!(
        texts,
        vec!["second try".to_string(), "still waiting".to_string()]
    );
    assert!(town.clients[0].delivered().contains(&waiting));
    assert_eq!(town.clients[0].delivered().len(), 2);
}

#[test]
fn message_events_carry_send_time_and_sequence() {
    let (mut lt, conv, _) = conversation_pair(15);
    for i in 0..3 {
        lt.town.advance(Duration::from_secs(60));
        lt.send(1, conv, &format!("m{i}"));
    }
    lt.settle();
    let seqs: Vec<(u64, Timestamp)> = lt
        .town
        .counselor
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Message { seq, sent_at, .. } => Some((*seq, *sent_at)),
            _ => None,
        })
        .collect();
    assert_eq!(
        seqs.iter().map(|s| s.0).collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );
    assert!(seqs.windows(2).all(|w| w[0].1 <= w[1].1));
    assert_eq!(seqs[1].1, T0.saturating_add(Duration::from_secs(60)));
}
