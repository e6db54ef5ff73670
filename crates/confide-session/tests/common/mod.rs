//! Helpers shared by the integration tests: seeded parties and a two-party conversation.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use chacha20::ChaCha20Rng;
use confide_crypto::{Timestamp, identity::IdentityKeyPair};
use confide_session::{
    DecryptError, Decrypted, ExpectedIdentity, IdentityChangePolicy, PreKeyBundle, PreKeyStore,
    Session, SessionMessage, SessionRecord, VerifiedPreKeyBundle,
};
use rand_core::SeedableRng;

/// The fixed "current time" of every test.
pub const NOW: Timestamp = Timestamp::from_millis(1_700_000_000_000);

/// A deterministic random source.
pub fn rng(seed: u8) -> ChaCha20Rng {
    ChaCha20Rng::from_seed([seed; 32])
}

/// One person: an identity and a prekey store.
#[derive(Clone)]
pub struct Party {
    pub id: IdentityKeyPair,
    pub store: PreKeyStore,
}

impl Party {
    pub fn new(rng: &mut ChaCha20Rng, one_time: usize, one_time_kem: usize) -> Self {
        let id = IdentityKeyPair::generate(rng);
        let mut store = PreKeyStore::new(id.clone(), rng, NOW);
        assert_eq!(store.generate_one_time_prekeys(rng, one_time), one_time);
        assert_eq!(
            store.generate_one_time_kem_prekeys(rng, one_time_kem),
            one_time_kem
        );
        Self { id, store }
    }

    /// A party sharing `id` but with fresh prekeys (another install of the same person).
    pub fn with_identity(rng: &mut ChaCha20Rng, id: &IdentityKeyPair) -> Self {
        let store = PreKeyStore::new(id.clone(), rng, NOW);
        Self {
            id: id.clone(),
            store,
        }
    }

    /// Verifies `bundle` (as published bytes) on behalf of `self`.
    pub fn verify(&self, bundle: &PreKeyBundle) -> VerifiedPreKeyBundle {
        PreKeyBundle::from_bytes(&bundle.to_bytes())
            .unwrap()
            .verify(
                ExpectedIdentity::Exactly(bundle.identity()),
                &self.id.public(),
            )
            .unwrap()
    }

    /// Starts a session to `bundle`.
    pub fn initiate(&self, rng: &mut ChaCha20Rng, bundle: &PreKeyBundle) -> Session {
        Session::initiate(rng, &self.id, &self.verify(bundle)).unwrap()
    }

    /// Decrypts into `record` with this party's store.
    pub fn decrypt(
        &mut self,
        record: &mut SessionRecord,
        bytes: &[u8],
    ) -> Result<Decrypted, DecryptError> {
        record.decrypt(&mut self.store, bytes, NOW, IdentityChangePolicy::Refuse)
    }
}

/// An exact copy of a random source (the type is not `Clone`).
pub fn clone_rng(rng: &ChaCha20Rng) -> ChaCha20Rng {
    ChaCha20Rng::deserialize_state(&rng.serialize_state())
}

/// Alice (initiator) and Bob (responder) with their records for each other.
pub struct Pair {
    pub rng: ChaCha20Rng,
    pub alice: Party,
    pub bob: Party,
    pub a: SessionRecord,
    pub b: SessionRecord,
}

impl Clone for Pair {
    fn clone(&self) -> Self {
        Self {
            rng: clone_rng(&self.rng),
            alice: self.alice.clone(),
            bob: self.bob.clone(),
            a: self.a.clone(),
            b: self.b.clone(),
        }
    }
}

impl Pair {
    /// Alice has initiated from Bob's first bundle; nothing was sent yet.
    pub fn new(seed: u8) -> Self {
        let mut rng = rng(seed);
        let alice = Party::new(&mut rng, 0, 0);
        let bob = Party::new(&mut rng, 3, 3);
        let bundle = bob.store.bundles()[0].clone();
        let a = SessionRecord::with_session(alice.initiate(&mut rng, &bundle));
        Self {
            rng,
            alice,
            bob,
            a,
            b: SessionRecord::new(),
        }
    }

    /// Both sides have sent and received once, so both are in the ratchet phase.
    pub fn established(seed: u8) -> Self {
        let mut p = Self::new(seed);
        let m = p.a_sends(b"hello bob");
        assert_eq!(&p.b_gets(&m).unwrap().plaintext[..], b"hello bob");
        let m = p.b_sends(b"hello alice");
        assert_eq!(&p.a_gets(&m).unwrap().plaintext[..], b"hello alice");
        p
    }

    pub fn a_sends(&mut self, pt: &[u8]) -> Vec<u8> {
        self.a.encrypt(&mut self.rng, pt).unwrap()
    }

    pub fn b_sends(&mut self, pt: &[u8]) -> Vec<u8> {
        self.b.encrypt(&mut self.rng, pt).unwrap()
    }

    pub fn b_gets(&mut self, bytes: &[u8]) -> Result<Decrypted, DecryptError> {
        self.bob.decrypt(&mut self.b, bytes)
    }

    pub fn a_gets(&mut self, bytes: &[u8]) -> Result<Decrypted, DecryptError> {
        self.alice.decrypt(&mut self.a, bytes)
    }

    /// Bob's whole persistent state: record and store bytes.
    pub fn bob_state(&self) -> (Vec<u8>, Vec<u8>) {
        (
            self.b.to_bytes().to_vec(),
            self.bob.store.to_bytes().to_vec(),
        )
    }

    /// Alice's whole persistent state: record and store bytes.
    pub fn alice_state(&self) -> (Vec<u8>, Vec<u8>) {
        (
            self.a.to_bytes().to_vec(),
            self.alice.store.to_bytes().to_vec(),
        )
    }
}

/// Plaintext number `i`, varied in length (some beyond the smallest padding bucket).
pub fn text(i: usize) -> Vec<u8> {
    let mut v = format!("message {i}:").into_bytes();
    v.resize(v.len() + (i * 53) % 300, b'a' + (i % 26) as u8);
    v
}

/// Whether `bytes` is a prekey message.
pub fn is_prekey(bytes: &[u8]) -> bool {
    matches!(
        SessionMessage::from_bytes(bytes).unwrap(),
        SessionMessage::PreKey(_)
    )
}

/// The ratchet body of a session message.
pub fn ratchet_part(bytes: &[u8]) -> confide_session::RatchetMessage {
    match SessionMessage::from_bytes(bytes).unwrap() {
        SessionMessage::Ratchet(m) => m,
        SessionMessage::PreKey(p) => p.message().clone(),
        _ => panic!("unknown message kind"),
    }
}

/// Asserts that `shown` (a Debug rendering) contains no 8-byte window of `secret`, in hex
/// (either case) or as a decimal byte list.
pub fn assert_no_leak(shown: &str, secret: &[u8], what: &str) {
    let lower = shown.to_lowercase();
    for w in secret.windows(8) {
        let hex_w = hex::encode(w);
        assert!(
            !lower.contains(&hex_w),
            "{what}: Debug shows secret bytes {hex_w}"
        );
        let list = format!("{w:?}");
        let list = list.trim_start_matches('[').trim_end_matches(']');
        assert!(
            !shown.contains(list),
            "{what}: Debug shows secret bytes [{list}]"
        );
    }
}
