//! The session layer's checks: the `session_*` fuzz targets, confide-session's corpus replay
//! and its conversation proptest all call these, so the three cannot drift apart.
//!
//! Every function panics (through `assert!`) exactly when it finds a violated property; a
//! return means the input was handled correctly.

use std::sync::OnceLock;

use chacha20::ChaCha20Rng;
use confide_crypto::{
    Timestamp,
    identity::{IdentityKeyPair, IdentityPublicKey},
    secret::SecretBytes,
};
use confide_session::{
    DecryptError, ExpectedIdentity, IdentityChangePolicy, KnownIdentities, PreKeyBundle,
    PreKeyStore, RecordEncryptError, Session, SessionMessage, SessionRecord,
    consts::MAX_SKIPPED_KEY_RATCHET_STEPS, storage::StorageKey,
};
use rand_core::SeedableRng;

const NOW: Timestamp = Timestamp::from_millis(1_700_000_000_000);

/// Selector bytes of the `session_state` target (first input byte modulo 4).
pub const STATE_RECORD: u8 = 0;
/// See [`STATE_RECORD`].
pub const STATE_PREKEY_STORE: u8 = 1;
/// See [`STATE_RECORD`].
pub const STATE_SESSION: u8 = 2;
/// See [`STATE_RECORD`]: our identity (128 bytes), the peer's (128 bytes), then a session
/// record in its compact form with those identities known.
pub const STATE_COMPACT_RECORD: u8 = 3;

fn fixed_identity() -> &'static IdentityKeyPair {
    static ID: OnceLock<IdentityKeyPair> = OnceLock::new();
    ID.get_or_init(|| IdentityKeyPair::from_secret_bytes(&SecretBytes::new([0x42; 64])))
}

/// `session_bundle`: strict parse, canonical re-encoding, then verification; a bundle that
/// verifies must start a session.
pub fn session_bundle(data: &[u8]) {
    let Ok(bundle) = PreKeyBundle::from_bytes(data) else {
        return;
    };
    assert_eq!(bundle.to_bytes(), data, "bundle re-encoding differs");
    let own = fixed_identity();
    let identity = *bundle.identity();
    let tofu = bundle
        .clone()
        .verify(ExpectedIdentity::TrustOnFirstUse, &own.public());
    let exact = bundle.verify(ExpectedIdentity::Exactly(&identity), &own.public());
    assert_eq!(
        tofu.is_ok(),
        exact.is_ok(),
        "verification depends on the mode"
    );
    if let Ok(verified) = tofu {
        let mut rng = ChaCha20Rng::from_seed([0x11; 32]);
        // A low-order signed or one-time prekey may be refused, but never with a panic.
        if let Ok(mut session) = Session::initiate(&mut rng, own, &verified) {
            let m = session.encrypt(&mut rng, b"fuzz").unwrap();
            let bytes = m.to_bytes();
            assert_eq!(SessionMessage::from_bytes(&bytes).unwrap(), m);
        }
    }
}

/// `session_message`: strict parse and canonical re-encoding.
pub fn session_message(data: &[u8]) {
    let Ok(message) = SessionMessage::from_bytes(data) else {
        return;
    };
    assert_eq!(message.to_bytes(), data, "message re-encoding differs");
    let body = match &message {
        SessionMessage::Ratchet(m) => m.clone(),
        SessionMessage::PreKey(p) => p.message().clone(),
        _ => return,
    };
    assert_eq!(body.header_bytes()[2..34], body.ratchet_key().to_bytes());
    assert!(!format!("{message:?}").is_empty());
}

/// `session_state`: the first byte selects the state type; a state that decodes re-encodes
/// to the same bytes and can be used without panicking. A compact record also converts to the
/// full form and back unchanged.
pub fn session_state(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let mut rng = ChaCha20Rng::from_seed([0x22; 32]);
    match selector % 4 {
        STATE_RECORD => {
            let Ok(mut record) = SessionRecord::from_bytes(rest) else {
                return;
            };
            if rest.first() == Some(&confide_session::state::SESSION_STATE_VERSION) {
                assert_eq!(&record.to_bytes()[..], rest, "record re-encoding differs");
            } else {
                // Version 3 is read (no envelope secret) and written back as the current one.
                let again = record.to_bytes();
                let upgraded = SessionRecord::from_bytes(&again).expect("upgraded record reads");
                assert_eq!(
                    upgraded.to_bytes(),
                    again,
                    "upgraded record re-encoding differs"
                );
            }
            let _ = record.encrypt(&mut rng, b"fuzz");
            let _ = record.prune_skipped_keys(NOW);
        }
        STATE_COMPACT_RECORD => {
            let Some((local, rest)) = rest.split_at_checked(128) else {
                return;
            };
            let Some((remote, body)) = rest.split_at_checked(128) else {
                return;
            };
            let (Ok(local), Ok(remote)) = (
                IdentityPublicKey::from_bytes(local),
                IdentityPublicKey::from_bytes(remote),
            ) else {
                return;
            };
            let known = KnownIdentities {
                local: &local,
                remote: &remote,
            };
            let Ok(mut record) = SessionRecord::from_bytes_compact(body, known) else {
                return;
            };
            assert_eq!(
                &record.to_bytes_compact(known)[..],
                body,
                "compact record re-encoding differs"
            );
            let full = SessionRecord::from_bytes(&record.to_bytes()).expect("full form reads");
            assert_eq!(
                &full.to_bytes_compact(known)[..],
                body,
                "compact and full forms disagree"
            );
            let _ = record.encrypt(&mut rng, b"fuzz");
        }
        STATE_PREKEY_STORE => {
            let Ok(store) = PreKeyStore::from_bytes(rest) else {
                return;
            };
            let again = store.to_bytes();
            if rest.first() == Some(&confide_session::state::STATE_VERSION) {
                assert_eq!(&again[..], rest, "store re-encoding differs");
            } else {
                // An older version is read and written back as the current one, canonically.
                let upgraded = PreKeyStore::from_bytes(&again).expect("upgraded store reads");
                assert_eq!(
                    upgraded.to_bytes(),
                    again,
                    "upgraded store re-encoding differs"
                );
            }
            let _ = store.bundles();
            let _ = store.last_resort_bundle();
        }
        _ => {
            let Ok(mut session) = Session::from_bytes(rest) else {
                return;
            };
            if rest.first() == Some(&confide_session::state::SESSION_STATE_VERSION) {
                assert_eq!(&session.to_bytes()[..], rest, "session re-encoding differs");
            } else {
                assert!(
                    session.envelope_secret().is_none(),
                    "version 3 has no envelope secret"
                );
                let again = session.to_bytes();
                let upgraded = Session::from_bytes(&again).expect("upgraded session reads");
                assert_eq!(
                    upgraded.to_bytes(),
                    again,
                    "upgraded session re-encoding differs"
                );
            }
            let before = session.to_bytes();
            if session.encrypt(&mut rng, b"fuzz").is_err() {
                assert_eq!(
                    session.to_bytes(),
                    before,
                    "failed encrypt changed the session"
                );
            }
        }
    }
}

/// Messages each side may send in one interaction run: far below `MAX_FORWARD_JUMP` and
/// `MAX_SKIPPED_KEYS`, so every authentic message must decrypt.
pub const SIM_MAX_SENDS: usize = 200;

/// Retired remote ratchet keys a receiver surely still remembers (one below
/// `MAX_REMEMBERED_RATCHET_KEYS`, because the initiator also retires the responder's signed
/// prekey). A replay from an older chain may also fail as an authentication error.
const SURELY_REMEMBERED: usize = 15;

/// Offset of the first prekey-naming field (signed prekey id) in a prekey message:
/// version, kind, identity (128), base key (32).
const PREKEY_ENVELOPE_START: usize = 2 + 128 + 32;
/// Offset of the one-time-prekey flag: after the two ids (4 + 4) and the KEM ciphertext.
const PREKEY_FLAG_AT: usize = PREKEY_ENVELOPE_START + 8 + 1088;

/// Two parties in conversation over a hostile network: the state machine the
/// `session_interaction` target and the conversation proptest drive.
pub struct Sim {
    rng: ChaCha20Rng,
    ids: [IdentityPublicKey; 2],
    stores: [PreKeyStore; 2],
    records: [SessionRecord; 2],
    /// `queues[d]`: copies in flight from party `d` to party `1 - d`, as (id, bytes).
    queues: [Vec<(usize, Vec<u8>)>; 2],
    sent: [Vec<Vec<u8>>; 2],
    delivered: [Vec<bool>; 2],
    /// Ratchet keys of direction `d`, in the order the receiver first decrypted under them.
    chains: [Vec<[u8; 32]>; 2],
    /// Ratchet keys of direction `d`, in the order the sender first used them.
    send_order: [Vec<[u8; 32]>; 2],
    storage_key: StorageKey,
    /// Undelivered messages refused because their skipped key aged out.
    pub aged_out: usize,
    /// Successful deliveries so far (for tests that want to see progress).
    pub deliveries: usize,
    /// Rejected duplicates so far.
    pub duplicates: usize,
    /// Rejected modified messages so far.
    pub rejected_flips: usize,
}

impl Default for Sim {
    fn default() -> Self {
        Self::new()
    }
}

impl Clone for Sim {
    fn clone(&self) -> Self {
        Self {
            rng: ChaCha20Rng::deserialize_state(&self.rng.serialize_state()),
            ids: self.ids,
            stores: self.stores.clone(),
            records: self.records.clone(),
            queues: self.queues.clone(),
            sent: self.sent.clone(),
            delivered: self.delivered.clone(),
            chains: self.chains.clone(),
            send_order: self.send_order.clone(),
            storage_key: self.storage_key.clone(),
            aged_out: self.aged_out,
            deliveries: self.deliveries,
            duplicates: self.duplicates,
            rejected_flips: self.rejected_flips,
        }
    }
}

/// What party `d` says in its message number `id`.
pub fn sim_plaintext(d: usize, id: usize) -> Vec<u8> {
    let mut v = format!("{}{id}:", if d == 0 { "A" } else { "B" }).into_bytes();
    v.resize(v.len() + (id * 41) % 290, b'x');
    v
}

impl Sim {
    fn build() -> Self {
        let mut rng = ChaCha20Rng::from_seed([0x5e; 32]);
        let a = IdentityKeyPair::generate(&mut rng);
        let b = IdentityKeyPair::generate(&mut rng);
        let a_store = PreKeyStore::new(a.clone(), &mut rng, NOW);
        let mut b_store = PreKeyStore::new(b.clone(), &mut rng, NOW);
        b_store.generate_one_time_prekeys(&mut rng, 1);
        b_store.generate_one_time_kem_prekeys(&mut rng, 1);
        let bundle = PreKeyBundle::from_bytes(&b_store.bundles()[0].to_bytes())
            .unwrap()
            .verify(ExpectedIdentity::Exactly(&b.public()), &a.public())
            .unwrap();
        let session = Session::initiate(&mut rng, &a, &bundle).unwrap();
        Self {
            rng,
            ids: [a.public(), b.public()],
            stores: [a_store, b_store],
            records: [SessionRecord::with_session(session), SessionRecord::new()],
            queues: [Vec::new(), Vec::new()],
            sent: [Vec::new(), Vec::new()],
            delivered: [Vec::new(), Vec::new()],
            chains: [Vec::new(), Vec::new()],
            send_order: [Vec::new(), Vec::new()],
            storage_key: StorageKey::new([0x77; 32]),
            aged_out: 0,
            deliveries: 0,
            duplicates: 0,
            rejected_flips: 0,
        }
    }

    /// Alice has initiated to Bob; nothing is in flight. Built once, cloned per run.
    pub fn new() -> Self {
        static TEMPLATE: OnceLock<Sim> = OnceLock::new();
        TEMPLATE.get_or_init(Self::build).clone()
    }

    /// Party `d` writes its next message.
    pub fn send(&mut self, d: usize) {
        if self.sent[d].len() >= SIM_MAX_SENDS {
            return;
        }
        let id = self.sent[d].len();
        match self.records[d].encrypt(&mut self.rng, &sim_plaintext(d, id)) {
            Ok(bytes) => {
                let key = ratchet_key_of(&bytes);
                if !self.send_order[d].contains(&key) {
                    self.send_order[d].push(key);
                }
                self.sent[d].push(bytes.clone());
                self.delivered[d].push(false);
                self.queues[d].push((id, bytes));
            }
            Err(RecordEncryptError::NoSession) => {
                assert!(
                    d == 1 && self.records[1].current().is_none(),
                    "lost session"
                );
            }
            Err(e) => panic!("encrypt failed: {e:?}"),
        }
    }

    fn take(&mut self, d: usize, index: usize) -> Option<(usize, Vec<u8>)> {
        let q = &mut self.queues[d];
        if q.is_empty() {
            return None;
        }
        let i = index % q.len();
        Some(q.remove(i))
    }

    /// Delivers in-flight copy `index` of direction `d`.
    pub fn deliver(&mut self, d: usize, index: usize) {
        if let Some((id, bytes)) = self.take(d, index) {
            self.receive(d, id, &bytes, None);
        }
    }

    /// Loses in-flight copy `index` of direction `d`.
    pub fn drop_message(&mut self, d: usize, index: usize) {
        let _ = self.take(d, index);
    }

    /// The network repeats sent message `index` of direction `d`.
    pub fn duplicate(&mut self, d: usize, index: usize) {
        if self.sent[d].is_empty() {
            return;
        }
        let id = index % self.sent[d].len();
        self.queues[d].push((id, self.sent[d][id].clone()));
    }

    /// An attacker flips one bit of a copy of in-flight (or else sent) message `index`.
    pub fn flip(&mut self, d: usize, index: usize, bit: usize) {
        let (id, mut bytes) = if self.queues[d].is_empty() {
            if self.sent[d].is_empty() {
                return;
            }
            let id = index % self.sent[d].len();
            (id, self.sent[d][id].clone())
        } else {
            self.queues[d][index % self.queues[d].len()].clone()
        };
        let bit = bit % (bytes.len() * 8);
        bytes[bit / 8] ^= 1 << (bit % 8);
        self.receive(d, id, &bytes, Some(bit / 8));
    }

    /// Party `p` saves and restores its state (mode selects the form).
    pub fn snapshot(&mut self, p: usize, mode: u8) {
        match mode % 4 {
            0 => {
                let bytes = self.records[p].to_bytes();
                let restored = SessionRecord::from_bytes(&bytes).unwrap();
                assert_eq!(restored.to_bytes(), bytes, "record round trip differs");
                self.records[p] = restored;
            }
            1 => {
                let blob = self.records[p].to_encrypted(&mut self.rng, &self.storage_key, b"slot");
                let restored =
                    SessionRecord::from_encrypted(&self.storage_key, b"slot", &blob).unwrap();
                assert_eq!(restored.to_bytes(), self.records[p].to_bytes());
                self.records[p] = restored;
            }
            2 => {
                let Some(current) = self.records[p].current() else {
                    return;
                };
                // Restoring only the current session is what an app that stores sessions
                // separately does; the archive is empty in this simulation.
                let bytes = current.to_bytes();
                let restored = Session::from_bytes(&bytes).unwrap();
                assert_eq!(restored.to_bytes(), bytes, "session round trip differs");
                assert_eq!(self.records[p].archived_count(), 0);
                self.records[p] = SessionRecord::with_session(restored);
            }
            _ => {
                let bytes = self.stores[p].to_bytes();
                let restored = PreKeyStore::from_bytes(&bytes).unwrap();
                assert_eq!(restored.to_bytes(), bytes, "store round trip differs");
                self.stores[p] = restored;
            }
        }
    }

    fn receive(&mut self, d: usize, id: usize, bytes: &[u8], flipped_at: Option<usize>) {
        let r = 1 - d;
        let record_before = self.records[r].to_bytes();
        let store_before = self.stores[r].to_bytes();
        let had_session = self.records[r].current().is_some();
        let result = self.records[r].decrypt(
            &mut self.stores[r],
            bytes,
            NOW,
            IdentityChangePolicy::Refuse,
        );
        match result {
            Ok(got) => {
                if let Some(at) = flipped_at {
                    // Only the prekey envelope fields that name the responder's prekeys
                    // (signed/KEM/one-time ids and the KEM ciphertext) are not re-checked once
                    // the session exists; the authenticated body inside is the original.
                    let original = SessionMessage::from_bytes(&self.sent[d][id]).unwrap();
                    let SessionMessage::PreKey(p) = original else {
                        panic!("a modified ratchet message was accepted (byte {at})");
                    };
                    let records = usize::from(p.message().fork().is_some())
                        + usize::from(p.message().previous_fork().is_some());
                    let fork_bytes = if records == 0 { 0 } else { 1 + 40 * records };
                    let body_start = self.sent[d][id].len()
                        - (32 + 4 + 4 + fork_bytes + 4 + p.message().ciphertext().len());
                    assert!(had_session, "a modified prekey message started a session");
                    assert!(
                        (PREKEY_ENVELOPE_START..body_start).contains(&at) && at != PREKEY_FLAG_AT,
                        "a modified prekey message was accepted (byte {at})"
                    );
                }
                assert_eq!(
                    &got.plaintext[..],
                    &sim_plaintext(d, id)[..],
                    "wrong plaintext"
                );
                assert!(!self.delivered[d][id], "message {d}/{id} surfaced twice");
                assert_eq!(got.remote_identity, self.ids[d], "wrong sender");
                assert_eq!(got.new_session, !had_session, "wrong new-session flag");
                self.delivered[d][id] = true;
                self.deliveries += 1;
                let key = ratchet_key_of(bytes);
                if !self.chains[d].contains(&key) {
                    self.chains[d].push(key);
                }
            }
            Err(e) => {
                assert_eq!(
                    self.records[r].to_bytes(),
                    record_before,
                    "failure changed record"
                );
                assert_eq!(
                    self.stores[r].to_bytes(),
                    store_before,
                    "failure changed store"
                );
                if flipped_at.is_some() {
                    self.rejected_flips += 1;
                    return;
                }
                let key = ratchet_key_of(bytes);
                if !self.delivered[d][id] {
                    // Skipped keys age out after MAX_SKIPPED_KEY_RATCHET_STEPS peer ratchet
                    // steps: a message that stayed in flight that long may be lost.
                    let later = self.send_order[d]
                        .iter()
                        .skip_while(|k| **k != key)
                        .skip(1)
                        .filter(|k| self.chains[d].contains(k))
                        .count();
                    // A branch of a forked chain that the receiver never heard from before
                    // the chain was closed by the sender's next ratchet step (its successor
                    // overtook it) cannot be recovered: see docs/spec.md, chain forks.
                    let superseded = fork_of(bytes).is_some_and(|(nonce, start)| {
                        self.sent[d].iter().any(|m| {
                            ratchet_key_of(m) == key
                                && fork_of(m).is_some_and(|(n, s)| n != nonce && s > start)
                        })
                    });
                    assert!(
                        e == DecryptError::Duplicate
                            && (later >= MAX_SKIPPED_KEY_RATCHET_STEPS as usize || superseded),
                        "authentic message {d}/{id} refused: {e:?}"
                    );
                    self.aged_out += 1;
                    return;
                }
                let age = self.chains[d]
                    .iter()
                    .rev()
                    .position(|k| *k == key)
                    .expect("a delivered message's chain is known");
                if age <= SURELY_REMEMBERED {
                    assert_eq!(e, DecryptError::Duplicate, "replay of {d}/{id}");
                } else {
                    assert!(
                        matches!(e, DecryptError::Duplicate | DecryptError::Authentication),
                        "replay of {d}/{id}: {e:?}"
                    );
                }
                self.duplicates += 1;
            }
        }
    }

    /// Delivers everything still in flight, then checks that both sides can still talk.
    pub fn finish(&mut self) {
        while !self.queues[0].is_empty() || !self.queues[1].is_empty() {
            for d in 0..2 {
                if !self.queues[d].is_empty() {
                    self.deliver(d, 0);
                }
            }
        }
        for d in [0, 1, 0] {
            let before = self.sent[d].len();
            if before >= SIM_MAX_SENDS {
                continue;
            }
            self.send(d);
            if self.sent[d].len() > before {
                self.deliver(d, self.queues[d].len() - 1);
                assert!(
                    self.delivered[d][before],
                    "fresh message {d}/{before} not delivered"
                );
            }
        }
    }

    /// Messages sent in direction `d` that were delivered.
    pub fn delivered_count(&self, d: usize) -> usize {
        self.delivered[d].iter().filter(|x| **x).count()
    }

    /// Messages sent in direction `d`.
    pub fn sent_count(&self, d: usize) -> usize {
        self.sent[d].len()
    }

    /// Runs the operations encoded in `data` (see [`session_interaction`]).
    pub fn run(&mut self, data: &[u8]) {
        let mut it = data.iter().copied();
        while let Some(op) = it.next() {
            let mut arg = || usize::from(it.next().unwrap_or(0));
            match op % 10 {
                0 | 1 => self.send(0),
                2 | 3 => self.send(1),
                4 | 5 => {
                    let a = arg();
                    self.deliver(a & 1, a >> 1);
                }
                6 => {
                    let a = arg();
                    self.drop_message(a & 1, a >> 1);
                }
                7 => {
                    let a = arg();
                    self.duplicate(a & 1, a >> 1);
                }
                8 => {
                    let a = arg();
                    let bit = (arg() << 8) | arg();
                    self.flip(a & 1, a >> 1, bit);
                }
                _ => {
                    let a = arg();
                    self.snapshot(a & 1, (a >> 1) as u8);
                }
            }
        }
    }
}

/// The fork (nonce, start) a message's chain runs on, if forked.
fn fork_of(bytes: &[u8]) -> Option<([u8; 32], u32)> {
    let body = match SessionMessage::from_bytes(bytes).unwrap() {
        SessionMessage::Ratchet(m) => m,
        SessionMessage::PreKey(p) => p.message().clone(),
        _ => panic!("unknown message kind"),
    };
    body.fork().map(|f| (f.nonce(), f.start()))
}

fn ratchet_key_of(bytes: &[u8]) -> [u8; 32] {
    match SessionMessage::from_bytes(bytes).unwrap() {
        SessionMessage::Ratchet(m) => m.ratchet_key().to_bytes(),
        SessionMessage::PreKey(p) => p.message().ratchet_key().to_bytes(),
        _ => panic!("unknown message kind"),
    }
}

/// `session_interaction`: each byte is an operation (`op % 10`: 0-1 Alice sends, 2-3 Bob
/// sends, 4-5 deliver, 6 drop, 7 duplicate, 8 flip a bit, 9 save/restore), most followed by
/// one argument byte (bit 0 = direction or party, the rest = which message or mode); a flip
/// takes two more bytes for the bit position. Then everything in flight is delivered.
pub fn session_interaction(data: &[u8]) {
    let mut sim = Sim::new();
    sim.run(data);
    sim.finish();
}

/// The storage key of the `session_storage_blob` target (its seeds are sealed under it).
pub const STORAGE_BLOB_KEY: [u8; 32] = [0x33; 32];
/// The slot of the `session_storage_blob` target.
pub const STORAGE_BLOB_SLOT: &[u8] = b"fuzz slot";
/// The record name under which the target opens its raw input as a record blob.
pub const STORAGE_BLOB_RECORD: &[u8] = b"fuzz record";

/// `session_storage_blob`: the two decoders of encrypted state at rest (`storage::open`,
/// version 2, and `RecordSealer::open`, version 3) on the raw input: no panic, and a blob
/// that opens opens under its own slot and record only. Then the input sealed both ways
/// (as the state, and for the record blob also as the record's name) opens to itself, and
/// with any one byte changed (the position taken from the input) opens no more.
pub fn session_storage_blob(data: &[u8]) {
    use confide_session::storage::{self, RecordSealer, StateKind};
    let key = StorageKey::new(STORAGE_BLOB_KEY);
    let sealer = RecordSealer::new(&key, StateKind::EndpointRecord, STORAGE_BLOB_SLOT);
    if let Ok(plain) = sealer.open(STORAGE_BLOB_RECORD, data) {
        assert!(
            sealer.open(b"another record", data).is_err(),
            "record bound"
        );
        let other = RecordSealer::new(&key, StateKind::EndpointRecord, b"another slot");
        assert!(other.open(STORAGE_BLOB_RECORD, data).is_err(), "slot bound");
        assert_eq!(
            sealer
                .open(STORAGE_BLOB_RECORD, data)
                .map(|p| p.to_vec())
                .ok(),
            Some(plain.to_vec()),
            "opening is deterministic"
        );
    }
    if let Ok(plain) = storage::open(&key, StateKind::EndpointRecord, STORAGE_BLOB_SLOT, data) {
        assert!(
            storage::open(&key, StateKind::EndpointRecord, b"another slot", data).is_err(),
            "slot bound"
        );
        drop(plain);
    }
    let mut rng = ChaCha20Rng::from_seed([0x34; 32]);
    let at = usize::from(data.first().copied().unwrap_or(0));
    let record = sealer.seal(&mut rng, data, data);
    assert_eq!(
        sealer.open(data, &record).map(|p| p.to_vec()).ok(),
        Some(data.to_vec()),
        "a sealed record opens"
    );
    let v2 = storage::seal(&mut rng, &key, StateKind::EndpointRecord, data, data);
    assert_eq!(
        storage::open(&key, StateKind::EndpointRecord, data, &v2)
            .map(|p| p.to_vec())
            .ok(),
        Some(data.to_vec()),
        "a sealed blob opens"
    );
    let flipped = |blob: &[u8]| {
        let mut b = blob.to_vec();
        let i = at % b.len();
        if let Some(byte) = b.get_mut(i) {
            *byte ^= 0x01;
        }
        b
    };
    assert!(
        sealer.open(data, &flipped(&record)).is_err(),
        "a changed record"
    );
    assert!(
        storage::open(&key, StateKind::EndpointRecord, data, &flipped(&v2)).is_err(),
        "a changed blob"
    );
}
