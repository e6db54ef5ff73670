//! Shared harness: a small service (trust root, server key), endpoints, and a simulation that
//! plays the app's part of the run loop (persisting when asked, crashing on demand).
#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::needless_range_loop
)]

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;

use chacha20::ChaCha20Rng;
use confide::{
    Address, ConversationId, Endpoint, EndpointConfig, Event, ExpectedIdentity, Input, Output,
    Role, StorageKey,
};
use confide_crypto::{CryptoRng, Duration, Timestamp, identity::IdentityKeyPair};
use confide_sealed::TrustRoots;
use confide_session::SessionMessage;
use confide_sim::{LinkConfig, NodeId, SimNetwork, Simulation};
use confide_transport::{Frame, driver::SansIoEndpoint};
use rand_core::SeedableRng;

pub use confide_test_support::service::{Service, T0};

/// Every frame a node put on the wire, in order.
pub type WireLog = Rc<RefCell<Vec<(Address, Vec<u8>)>>>;

/// An endpoint as the simulation sees it, logging what it transmits.
pub struct Node {
    pub endpoint: Endpoint,
    pub wire: WireLog,
}

impl SansIoEndpoint for Node {
    type Event = Event;

    fn handle_input<R: CryptoRng + ?Sized>(&mut self, rng: &mut R, input: Input<'_>) {
        self.endpoint.handle_input(rng, input);
    }

    fn poll_output(&mut self) -> Output {
        let output = self.endpoint.poll_output();
        if let Output::Transmit(tx) = &output {
            self.wire
                .borrow_mut()
                .push((tx.to.clone(), tx.frame.clone()));
        }
        output
    }
}

/// What an app remembers, committed together with the endpoint state.
#[derive(Default, Clone)]
pub struct AppLog {
    /// Texts received: (conversation, text).
    pub received: Vec<(ConversationId, Vec<u8>)>,
    /// Texts sent and accepted by the endpoint.
    pub sent: Vec<Vec<u8>>,
    /// Texts acknowledged by the peer.
    pub delivered: usize,
    /// Every other event.
    pub events: Vec<Event>,
}

/// An incremental store as an app keeps one: sealed records by key.
pub type RecordStore = std::collections::BTreeMap<Vec<u8>, Vec<u8>>;

/// Applies a change set to a record store (one transaction).
pub fn apply_changes(store: &mut RecordStore, changes: &confide::ChangeSet) {
    for key in changes.deletes() {
        store.remove(key);
    }
    for (key, value) in changes.puts() {
        store.insert(key.to_vec(), value.to_vec());
    }
}

/// The plaintext of a snapshot of `endpoint` (every record, in key order).
pub fn state_plaintext(
    endpoint: &mut Endpoint,
    rng: &mut ChaCha20Rng,
    key: &StorageKey,
) -> Vec<u8> {
    let blob = endpoint.export_state(rng, key, b"account").unwrap();
    confide_session::storage::open(
        key,
        confide_session::storage::StateKind::Endpoint,
        b"account",
        &blob,
    )
    .unwrap()
    .to_vec()
}

pub struct World {
    pub sim: Simulation<Node>,
    pub rng: ChaCha20Rng,
    pub key: StorageKey,
    pub nodes: Vec<NodeId>,
    pub identities: Vec<IdentityKeyPair>,
    /// Each node's record store, as of its last confirmed change set.
    pub stores: Vec<RecordStore>,
    /// After confirmed change sets, check that the store loads to the live state: the first
    /// 16 of each node, then every 64th (a full check costs a snapshot and a load of the whole
    /// state, which with a day's outbox made most of the large runs' time).
    /// On by default.
    pub verify_records: bool,
    /// Confirmed change sets so far, per node.
    pub persists: Vec<u64>,
    /// The app log as of that snapshot.
    pub committed: Vec<AppLog>,
    /// The app log including what was not persisted yet.
    pub live: Vec<AppLog>,
    /// When true, a node does not persist when asked (the app is slow); see `persist_now`.
    pub defer_persist: Vec<bool>,
    pub wire: Vec<WireLog>,
    /// Stats summed over crashed incarnations.
    pub authentication_failures: u64,
    pub crashes: usize,
}

impl World {
    pub fn new(seed: u8, link: LinkConfig) -> Self {
        let rng = ChaCha20Rng::from_seed([seed; 32]);
        let mut net = SimNetwork::new(u64::from(seed) + 1000);
        net.set_default_link(link);
        Self {
            sim: Simulation::new(net, T0),
            rng,
            key: StorageKey::new([seed ^ 0x5a; 32]),
            nodes: Vec::new(),
            identities: Vec::new(),
            stores: Vec::new(),
            verify_records: true,
            persists: Vec::new(),
            committed: Vec::new(),
            live: Vec::new(),
            defer_persist: Vec::new(),
            wire: Vec::new(),
            authentication_failures: 0,
            crashes: 0,
        }
    }

    pub fn add(&mut self, endpoint: Endpoint, identity: IdentityKeyPair) -> usize {
        let wire: WireLog = Rc::default();
        let address = endpoint.address().clone();
        let id = self.sim.add_node(
            address,
            Node {
                endpoint,
                wire: wire.clone(),
            },
        );
        self.nodes.push(id);
        self.identities.push(identity);
        self.stores.push(RecordStore::new());
        self.persists.push(0);
        self.committed.push(AppLog::default());
        self.live.push(AppLog::default());
        self.defer_persist.push(false);
        self.wire.push(wire);
        let n = self.nodes.len() - 1;
        // Drain the new node's first outputs (PersistRequired, BundlesChanged).
        self.command(n, |_, _, _| ());
        n
    }

    pub fn endpoint(&self, n: usize) -> &Endpoint {
        &self.sim.endpoint(self.nodes[n]).unwrap().endpoint
    }

    /// Runs a command on node `n` and handles the resulting events.
    pub fn command<T>(
        &mut self,
        n: usize,
        f: impl FnOnce(&mut Endpoint, Timestamp, &mut ChaCha20Rng) -> T,
    ) -> T {
        let out = self
            .sim
            .command(&mut self.rng, self.nodes[n], |node, rng, now| {
                f(&mut node.endpoint, now, rng)
            })
            .unwrap();
        self.handle_events();
        out
    }

    pub fn persist_now(&mut self, n: usize) {
        let key = self.key.clone();
        self.persists[n] += 1;
        let verify =
            self.verify_records && (self.persists[n] <= 16 || self.persists[n].is_multiple_of(64));
        let mut store = std::mem::take(&mut self.stores[n]);
        self.sim
            .command(&mut self.rng, self.nodes[n], |node, rng, _| {
                let changes = node.endpoint.take_changes(rng, &key, b"account").unwrap();
                apply_changes(&mut store, &changes);
                node.endpoint.confirm_persisted();
                if verify {
                    // Right after a confirmed change set nothing is pending, so a snapshot of
                    // the live endpoint changes nothing about its persistence.
                    let live = state_plaintext(&mut node.endpoint, rng, &key);
                    node.endpoint.confirm_persisted();
                    let mut loaded = Endpoint::load_records(&key, b"account", &store).unwrap();
                    assert!(
                        state_plaintext(&mut loaded, rng, &key) == live,
                        "the record store does not load to the live state"
                    );
                }
            })
            .unwrap();
        self.stores[n] = store;
        self.committed[n] = self.live[n].clone();
    }

    /// Replaces node `n` by a load of its record store as of the last confirmed change set;
    /// unpersisted app state is lost with it.
    pub fn crash(&mut self, n: usize) {
        let key = self.key.clone();
        let lost = self.endpoint(n).stats();
        self.authentication_failures += lost.authentication_failures();
        let store = &self.stores[n];
        self.sim
            .command(&mut self.rng, self.nodes[n], |node, _, _| {
                node.endpoint = Endpoint::load_records(&key, b"account", store).unwrap();
            })
            .unwrap();
        self.live[n] = self.committed[n].clone();
        self.crashes += 1;
        self.handle_events();
    }

    /// Node `n`'s record store with its app log (a backup of the phone to restore later).
    pub fn backup(&self, n: usize) -> (RecordStore, AppLog) {
        (self.stores[n].clone(), self.committed[n].clone())
    }

    /// A snapshot blob of node `n` as last stored (loaded from its store, so the live
    /// endpoint is not touched).
    pub fn snapshot_blob(&mut self, n: usize) -> Vec<u8> {
        let mut loaded = Endpoint::load_records(&self.key, b"account", &self.stores[n]).unwrap();
        loaded
            .export_state(&mut self.rng, &self.key, b"account")
            .unwrap()
    }

    /// Replaces node `n` by a load of an *older* store (a phone restored from its backup):
    /// the app log goes back with it.
    pub fn restore(&mut self, n: usize, backup: &(RecordStore, AppLog)) {
        let key = self.key.clone();
        let lost = self.endpoint(n).stats();
        self.authentication_failures += lost.authentication_failures();
        let store = &backup.0;
        self.sim
            .command(&mut self.rng, self.nodes[n], |node, _, _| {
                node.endpoint = Endpoint::load_records(&key, b"account", store).unwrap();
            })
            .unwrap();
        self.stores[n] = backup.0.clone();
        self.live[n] = backup.1.clone();
        self.committed[n] = backup.1.clone();
        self.handle_events();
    }

    pub fn handle_events(&mut self) {
        loop {
            let events = self.sim.take_events();
            if events.is_empty() {
                return;
            }
            for (node, event) in events {
                let n = self.nodes.iter().position(|x| *x == node).unwrap();
                match event {
                    Event::PersistRequired => {
                        if !self.defer_persist[n] {
                            self.persist_now(n);
                        }
                    }
                    Event::Message {
                        conversation, text, ..
                    } => {
                        self.live[n]
                            .received
                            .push((conversation, text.as_bytes().to_vec()));
                    }
                    Event::Delivered { .. } => self.live[n].delivered += 1,
                    other => self.live[n].events.push(other),
                }
            }
        }
    }

    /// Steps the simulation until nothing is due at or before `limit`.
    pub fn run_until(&mut self, limit: Timestamp) {
        while let Some(t) = self.sim.next_deadline() {
            if t > limit {
                break;
            }
            self.sim.step(&mut self.rng);
            self.handle_events();
        }
    }

    /// Steps until `done` holds or `limit` passes; returns whether `done` held.
    pub fn run_while(&mut self, limit: Timestamp, mut done: impl FnMut(&Self) -> bool) -> bool {
        while !done(self) {
            match self.sim.next_deadline() {
                Some(t) if t <= limit => {
                    self.sim.step(&mut self.rng);
                    self.handle_events();
                }
                _ => return done(self),
            }
        }
        true
    }

    pub fn now(&self) -> Timestamp {
        self.sim.now()
    }

    /// Sends a text from `n` and records it in the app log.
    pub fn send(&mut self, n: usize, conversation: ConversationId, text: &[u8]) {
        // Recorded first: the app stores its outgoing text with the state that holds it.
        self.live[n].sent.push(text.to_vec());
        self.command(n, |e, now, rng| {
            e.send(rng, now, conversation, text).unwrap()
        });
    }

    /// Checks the wire log of every node: no two different session ciphertexts under the same
    /// (ratchet key, index), i.e. no message key was ever used twice.
    pub fn assert_no_key_reuse(&self, roots: &TrustRoots) {
        // (ratchet key, fork nonce, index, sender) -> ciphertext
        type KeyName = ([u8; 32], [u8; 32], u32, [u8; 32]);
        let mut seen: BTreeMap<KeyName, Vec<u8>> = BTreeMap::new();
        // Symmetric envelopes (docs/sealed-sender.md §9): their session messages cannot be
        // read here without the session's envelope secret; their key and nonce are named by
        // their tag, so a tag seen with two different envelopes is a reuse.
        let mut tags: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for (sender, log) in self.wire.iter().enumerate() {
            for (to, frame) in log.borrow().iter() {
                let Some(recipient) = self
                    .nodes
                    .iter()
                    .position(|n| self.sim.address(*n) == Some(to))
                else {
                    continue;
                };
                let Frame::Data { payload, .. } = Frame::from_bytes(frame).unwrap() else {
                    panic!("unexpected frame kind");
                };
                if payload.first() == Some(&confide_sealed::SYMMETRIC_ENVELOPE_KIND) {
                    let tag = payload[..1 + confide_sealed::ENVELOPE_TAG_LEN].to_vec();
                    let prev = tags.entry(tag).or_insert_with(|| payload.clone());
                    assert_eq!(
                        prev, &payload,
                        "a symmetric envelope key was used for two different envelopes"
                    );
                    continue;
                }
                let opened = confide_sealed::open_with_grace(
                    &self.identities[recipient],
                    roots,
                    T0,
                    Duration::from_days(3650),
                    &payload,
                )
                .expect("every frame on the wire opens for its recipient");
                if opened.payload.get(1) == Some(&0x20) {
                    // A reset request: outside the ratchet, no message key.
                    continue;
                }
                let m = match SessionMessage::from_bytes(session_bytes(&opened.payload)).unwrap() {
                    SessionMessage::Ratchet(m) => m,
                    SessionMessage::PreKey(p) => p.message().clone(),
                    _ => panic!("unknown session message kind"),
                };
                let sender_key = self.identities[sender].public().agreement_key().to_bytes();
                // A message key is named by the chain (ratchet key and, on a forked chain,
                // the fork's nonce) and the index in it.
                let fork = m.fork().map_or([0; 32], |f| f.nonce());
                let k = (m.ratchet_key().to_bytes(), fork, m.index(), sender_key);
                let ct = m.ciphertext().to_vec();
                if let Some(prev) = seen.get(&k) {
                    assert_eq!(
                        prev, &ct,
                        "a message key was used for two different ciphertexts"
                    );
                } else {
                    seen.insert(k, ct);
                }
            }
        }
    }
}

/// A lossy link: `loss`, `dup`, `reorder` in percent, 20-200 ms delay.
pub fn lossy(loss: u32, dup: u32, reorder: u32) -> LinkConfig {
    LinkConfig::perfect(Duration::from_millis(20))
        .with_delay(Duration::from_millis(20), Duration::from_millis(200))
        .with_loss(loss * 10_000)
        .with_duplication(dup * 10_000)
        .with_reordering(reorder * 10_000)
}

/// Client (node 0) starts a conversation with the counselor (node 1) from one of its bundles.
/// Returns the client's conversation id.
pub fn connect(world: &mut World) -> ConversationId {
    let bundle = world.endpoint(1).published_bundles().one_time[0].clone();
    let counselor = world.endpoint(1).address().clone();
    world.command(0, |e, now, rng| {
        e.start_conversation(
            rng,
            now,
            counselor,
            &bundle,
            ExpectedIdentity::TrustOnFirstUse,
        )
        .unwrap()
        .conversation
    })
}

/// A client and a counselor over `link`.
pub fn pair(seed: u8, link: LinkConfig) -> (World, Service) {
    let mut world = World::new(seed, link);
    let service = Service::new(&mut world.rng);
    let (c, ci) = service.endpoint(
        &mut world.rng,
        b"client-1",
        Role::Client,
        EndpointConfig::default(),
    );
    let (k, ki) = service.endpoint(
        &mut world.rng,
        b"counselor-1",
        Role::Counselor,
        EndpointConfig::default(),
    );
    world.add(c, ci);
    world.add(k, ki);
    (world, service)
}

/// Sends `per_side` messages each way, one every `gap`, and runs until every one is
/// delivered (or `limit` of virtual time passes). The counselor answers on the conversation
/// the client's first message created. Optional `between` runs after every send.
pub fn exchange(
    world: &mut World,
    per_side: usize,
    gap: Duration,
    limit: Duration,
    mut between: impl FnMut(&mut World, usize),
) -> ConversationId {
    let client_conv = connect(world);
    let mut plan: [VecDeque<Vec<u8>>; 2] = [
        (0..per_side)
            .map(|i| format!("client {i}").into_bytes())
            .collect(),
        (0..per_side)
            .map(|i| format!("counselor {i}").into_bytes())
            .collect(),
    ];
    let mut step = 0usize;
    while plan.iter().any(|p| !p.is_empty()) {
        let mut sent = false;
        for side in 0..2 {
            let conv = if side == 0 {
                Some(client_conv)
            } else {
                world.endpoint(1).conversations().first().copied()
            };
            let (Some(conv), Some(text)) = (conv, plan[side].front().cloned()) else {
                continue;
            };
            // Keep well inside the transport's outbox limit.
            if world.endpoint(side).outbox_len() >= 900 {
                continue;
            }
            plan[side].pop_front();
            world.send(side, conv, &text);
            sent = true;
            between(world, step);
            step += 1;
        }
        let before = world.now();
        let next = before.saturating_add(gap);
        world.run_until(next);
        // Nobody could send and nothing was due within `gap` (the counselor waits for the
        // first frame, whose retransmission wait is longer): without this the loop would spin
        // on the same state forever. Step to the next event; with none left, stop.
        if !sent && world.now() == before {
            if world.sim.next_deadline().is_none() {
                break;
            }
            world.sim.step(&mut world.rng);
            world.handle_events();
        }
    }
    let deadline = world.now().saturating_add(limit);
    let n = per_side;
    world.run_while(deadline, |w| {
        w.live[0].delivered >= n && w.live[1].delivered >= n
    });
    client_conv
}

/// Every sent text arrived exactly once, and nothing else arrived.
pub fn assert_exactly_once(world: &World, log: fn(&World, usize) -> &AppLog) {
    for (from, to) in [(0usize, 1usize), (1, 0)] {
        let mut sent = log(world, from).sent.clone();
        let mut got: Vec<Vec<u8>> = log(world, to)
            .received
            .iter()
            .map(|(_, t)| t.clone())
            .collect();
        sent.sort();
        got.sort();
        assert_eq!(
            sent.len(),
            got.len(),
            "node {to} received a different number of texts"
        );
        assert_eq!(
            sent, got,
            "node {to} did not receive exactly what node {from} sent"
        );
    }
}

/// The session message inside an envelope payload: after acknowledgements that rode in front
/// of it (kind `0x23`) and after the sender's delivery token when the payload carries one
/// (kind `0x21`, `docs/endpoint.md`).
pub fn session_bytes(payload: &[u8]) -> &[u8] {
    let payload = match confide::AcknowledgementPayload::split_in_front(payload) {
        Ok((_, inner)) => inner,
        Err(_) => payload,
    };
    if payload.get(1) == Some(&confide::consts::KIND_TOKEN_AND_SESSION) {
        payload.get(2 + 16..).unwrap_or_default()
    } else {
        payload
    }
}

/// The records of a snapshot plaintext (`docs/endpoint.md`, "Stored state"): version, count,
/// then each record's key and plaintext.
#[allow(dead_code)]
pub fn snapshot_records(plain: &[u8]) -> std::collections::BTreeMap<Vec<u8>, Vec<u8>> {
    let mut r = confide_crypto::codec::Reader::new(plain);
    assert_eq!(r.u8().unwrap(), confide::consts::ENDPOINT_STATE_VERSION);
    let n = r.u32().unwrap();
    let mut records = std::collections::BTreeMap::new();
    for _ in 0..n {
        let key = r.var16("key", 64).unwrap().to_vec();
        let value = r.var32("value", usize::MAX).unwrap().to_vec();
        assert!(records.insert(key, value).is_none());
    }
    r.finish().unwrap();
    records
}

/// Key of the counters record (which holds the drop counters, last).
#[allow(dead_code)]
pub const COUNTERS_RECORD: &[u8] = &[2];
