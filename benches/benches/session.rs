//! Session benchmarks: Confide, the floor (raw primitives doing the same cryptographic work)
//! and vodozemac's Olm, measured in one run.
//!
//! Naming convention (read by `bench-table`, see `docs/benchmarks.md`): criterion group
//! `<area>/<operation>`, function id `confide`, `floor`, `vodozemac` (and `pq_part` for the
//! post-quantum share of an operation), optional parameter such as `1KiB`. Raw primitive
//! timings go in the group `primitive`, one function id each.
//!
//! Environment variables:
//! * `CONFIDE_BENCH_QUICK=1`: the short CI mode (0.3 s warm-up, 1 s measurement, 10 samples
//!   per benchmark, 10,000 bootstrap resamples, no plots);
//! * `CONFIDE_BENCH_CPU_TIME=1`: measure the benchmark thread's CPU time
//!   (`CLOCK_THREAD_CPUTIME_ID`) instead of wall-clock time, so that other processes
//!   competing for the CPU do not inflate the results.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::hint::black_box;

use chacha20::ChaCha20Rng;
use confide_crypto::{
    Timestamp,
    identity::IdentityKeyPair,
    kdf::labels,
    kem::{KemCiphertext, KemKeyPair, KemPublicKey},
    padding::padded_len,
    secret::SecretBytes,
};
use confide_session::{
    ExpectedIdentity, IdentityChangePolicy, PreKeyBundle, PreKeyStore, Session, SessionRecord,
    message::RATCHET_HEADER_LEN, storage::StorageKey,
};
use criterion::{BatchSize, BenchmarkId, Criterion, measurement::Measurement};
use rand_core::{Rng, SeedableRng};
use vodozemac::olm::{Account, OlmMessage, Session as OlmSession, SessionConfig, SessionPickle};

const NOW: Timestamp = Timestamp::from_millis(1_700_000_000_000);
/// Plaintext sizes of the chain benchmarks, with their parameter names.
const SIZES: [(usize, &str); 3] = [(64, "64B"), (1024, "1KiB"), (65_536, "64KiB")];
/// Plaintext of the setup, ping-pong and skipped-key benchmarks (a short chat message).
const CHAT_LEN: usize = 64;
/// Skipped messages before the one that arrives first.
const SKIPPED: usize = 100;
/// Length of the AEAD associated data of every Confide message: label, two identities'
/// 64-byte key pairs, the 42-byte ratchet header.
const MESSAGE_AAD_LEN: usize = labels::ASSOCIATED_DATA.len() + 64 + 64 + RATCHET_HEADER_LEN;
/// Associated data of an encrypted state blob (magic, version, kind, salt).
const STATE_AAD_LEN: usize = 4 + 1 + 1 + 32;

fn rng(seed: u8) -> ChaCha20Rng {
    ChaCha20Rng::from_seed([seed; 32])
}

fn padded(len: usize) -> usize {
    padded_len(len).unwrap()
}

// ---------------------------------------------------------------------------------------------
// The floor: raw primitives (x25519-dalek, ed25519-dalek, chacha20poly1305, hmac, hkdf, sha2,
// ML-KEM-768 through confide_crypto::kem), no protocol logic, no encoding.
// ---------------------------------------------------------------------------------------------
mod floor {
    use super::*;
    use chacha20poly1305::{
        ChaCha20Poly1305, Nonce,
        aead::{AeadInOut, Buffer},
    };
    use hmac::{Hmac, Mac};
    use sha2::{Digest, Sha256};
    use x25519_dalek::{PublicKey, StaticSecret};

    pub(crate) type Key = [u8; 32];

    /// X25519 key generation: 32 random bytes and one base-point multiplication.
    pub(crate) fn keygen(rng: &mut ChaCha20Rng) -> (StaticSecret, PublicKey) {
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        let secret = StaticSecret::from(seed);
        let public = PublicKey::from(&secret);
        (secret, public)
    }

    pub(crate) fn dh(secret: &StaticSecret, public: &PublicKey) -> Key {
        secret.diffie_hellman(public).to_bytes()
    }

    pub(crate) fn hmac(key: &[u8], data: &[u8]) -> Key {
        let mut mac = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(key).unwrap();
        mac.update(data);
        mac.finalize().into_bytes().into()
    }

    /// One symmetric-ratchet step: message key and next chain key (2 HMAC).
    pub(crate) fn chain_step(chain: &Key) -> (Key, Key) {
        (hmac(chain, &[1]), hmac(chain, &[2]))
    }

    /// HKDF-SHA256 extract and expand to `N` bytes.
    pub(crate) fn hkdf<const N: usize>(salt: &[u8], ikm: &[u8], info: &[u8]) -> [u8; N] {
        let mut out = [0u8; N];
        hkdf::Hkdf::<Sha256>::new(Some(salt), ikm)
            .expand(info, &mut out)
            .unwrap();
        out
    }

    pub(crate) fn sha256(data: &[u8]) -> Key {
        Sha256::digest(data).into()
    }

    fn cipher(key: &Key) -> ChaCha20Poly1305 {
        <ChaCha20Poly1305 as chacha20poly1305::KeyInit>::new(key.into())
    }

    /// Pads `plaintext` to `padded_len` (copy, marker, zeros) and seals it in place.
    pub(crate) fn pad_seal(key: &Key, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let total = padded(plaintext.len());
        let mut buf = Vec::with_capacity(total + 16);
        buf.extend_from_slice(plaintext);
        buf.push(0x80);
        buf.resize(total, 0);
        cipher(key)
            .encrypt_in_place(&Nonce::from([0u8; 12]), aad, &mut buf as &mut dyn Buffer)
            .unwrap();
        buf
    }

    /// Seals `plaintext` as is (already padded, or state bytes).
    pub(crate) fn seal(key: &Key, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut buf = Vec::with_capacity(plaintext.len() + 16);
        buf.extend_from_slice(plaintext);
        cipher(key)
            .encrypt_in_place(&Nonce::from([0u8; 12]), aad, &mut buf as &mut dyn Buffer)
            .unwrap();
        buf
    }

    /// Copies the ciphertext into a fresh buffer and opens it there.
    pub(crate) fn open(key: &Key, aad: &[u8], ciphertext: &[u8]) -> Vec<u8> {
        let mut buf = ciphertext.to_vec();
        cipher(key)
            .decrypt_in_place(&Nonce::from([0u8; 12]), aad, &mut buf as &mut dyn Buffer)
            .unwrap();
        buf
    }

    /// Fixed inputs of the handshake floors (keys of the same kinds and sizes as a real
    /// bundle and prekey message).
    pub(crate) struct Handshake {
        // Responder (bundle owner).
        pub(crate) resp_sign_public: [u8; 32],
        pub(crate) binding_msg: Vec<u8>,
        pub(crate) binding_sig: ed25519_dalek::Signature,
        pub(crate) spk_msg: Vec<u8>,
        pub(crate) spk_sig: ed25519_dalek::Signature,
        pub(crate) kem_msg: Vec<u8>,
        pub(crate) kem_sig: ed25519_dalek::Signature,
        pub(crate) resp_identity: (StaticSecret, PublicKey),
        pub(crate) spk: (StaticSecret, PublicKey),
        pub(crate) opk: (StaticSecret, PublicKey),
        pub(crate) kem: KemKeyPair,
        pub(crate) kem_public_bytes: Vec<u8>,
        // Initiator.
        pub(crate) init_sign_public: [u8; 32],
        pub(crate) init_binding_msg: Vec<u8>,
        pub(crate) init_binding_sig: ed25519_dalek::Signature,
        pub(crate) init_identity: (StaticSecret, PublicKey),
        pub(crate) base: (StaticSecret, PublicKey),
        pub(crate) ratchet: (StaticSecret, PublicKey),
        pub(crate) kem_ciphertext: KemCiphertext,
        pub(crate) info: Vec<u8>,
        /// A first message sealed under the key the responder floor derives.
        pub(crate) first_ciphertext: Vec<u8>,
    }

    impl Handshake {
        pub(crate) fn new() -> Self {
            use ed25519_dalek::Signer;
            let mut rng = rng(40);
            let mut seed = [0u8; 32];
            rng.fill_bytes(&mut seed);
            let resp_sign = ed25519_dalek::SigningKey::from_bytes(&seed);
            rng.fill_bytes(&mut seed);
            let init_sign = ed25519_dalek::SigningKey::from_bytes(&seed);
            let resp_identity = keygen(&mut rng);
            let init_identity = keygen(&mut rng);
            let spk = keygen(&mut rng);
            let opk = keygen(&mut rng);
            let base = keygen(&mut rng);
            let ratchet = keygen(&mut rng);
            let kem = KemKeyPair::generate(&mut rng);
            let kem_public_bytes = kem.public_key().as_bytes().to_vec();
            let (kem_ciphertext, _) = kem.public_key().encapsulate(&mut rng);
            // Signed messages of the same lengths as Confide's.
            let binding_msg = [labels::IDENTITY_BINDING, resp_identity.1.as_bytes()].concat();
            let init_binding_msg = [labels::IDENTITY_BINDING, init_identity.1.as_bytes()].concat();
            let spk_msg = [labels::SIGNED_PREKEY, &[0, 0, 0, 1], spk.1.as_bytes()].concat();
            let kem_msg = [labels::KEM_PREKEY, &[0, 0, 0, 2, 1], &kem_public_bytes[..]].concat();
            // The HKDF info of the handshake: label, two 64-byte identities, base key,
            // signed prekey, two SHA-256 digests.
            let info = [labels::HANDSHAKE, &[0x11; 64 + 64 + 32 + 32 + 32 + 32]].concat();
            let mut h = Self {
                resp_sign_public: resp_sign.verifying_key().to_bytes(),
                binding_sig: resp_sign.sign(&binding_msg),
                binding_msg,
                spk_sig: resp_sign.sign(&spk_msg),
                spk_msg,
                kem_sig: resp_sign.sign(&kem_msg),
                kem_msg,
                resp_identity,
                spk,
                opk,
                kem,
                kem_public_bytes,
                init_sign_public: init_sign.verifying_key().to_bytes(),
                init_binding_sig: init_sign.sign(&init_binding_msg),
                init_binding_msg,
                init_identity,
                base,
                ratchet,
                kem_ciphertext,
                info,
                first_ciphertext: Vec::new(),
            };
            let key = h.responder_message_key();
            h.first_ciphertext = pad_seal(&key, &[0x22; MESSAGE_AAD_LEN], &[0x33; CHAT_LEN]);
            h
        }

        fn root(&self, dhs: [Key; 4], kem_secret: &[u8], kem_public: &[u8]) -> Key {
            let mut ikm = Vec::with_capacity(32 * 6);
            ikm.extend_from_slice(&[0xFF; 32]);
            for d in &dhs {
                ikm.extend_from_slice(d);
            }
            ikm.extend_from_slice(kem_secret);
            black_box(sha256(kem_public));
            black_box(sha256(self.kem_ciphertext.as_bytes()));
            hkdf::<32>(&[0; 32], &ikm, &self.info)
        }

        /// Initiator: parse and verify the bundle's identity (point decompression and one
        /// Ed25519 verification), verify the two prekey signatures, parse the KEM key, one
        /// keygen, four DH, ML-KEM encapsulation, two SHA-256, HKDF; then the first sending
        /// chain: keygen, DH, HKDF, two HMAC, pad and seal of 256 bytes.
        pub(crate) fn initiator(&self, rng: &mut ChaCha20Rng, plaintext: &[u8]) -> Vec<u8> {
            let vk = ed25519_dalek::VerifyingKey::from_bytes(&self.resp_sign_public).unwrap();
            vk.verify_strict(&self.binding_msg, &self.binding_sig)
                .unwrap();
            vk.verify_strict(&self.spk_msg, &self.spk_sig).unwrap();
            vk.verify_strict(&self.kem_msg, &self.kem_sig).unwrap();
            let kem_public = KemPublicKey::from_bytes(&self.kem_public_bytes).unwrap();
            let base = keygen(rng);
            let dhs = [
                dh(&self.init_identity.0, &self.spk.1),
                dh(&base.0, &self.resp_identity.1),
                dh(&base.0, &self.spk.1),
                dh(&base.0, &self.opk.1),
            ];
            let (_ct, ss) = kem_public.encapsulate(rng);
            let root = self.root(dhs, ss.expose(), kem_public.as_bytes());
            let ratchet = keygen(rng);
            let okm = hkdf::<64>(&root, &dh(&ratchet.0, &self.spk.1), labels::ROOT_STEP);
            let (mk, _next) = chain_step(okm[32..].try_into().unwrap());
            pad_seal(&mk, &[0x22; MESSAGE_AAD_LEN], plaintext)
        }

        fn responder_message_key(&self) -> Key {
            let vk = ed25519_dalek::VerifyingKey::from_bytes(&self.init_sign_public).unwrap();
            vk.verify_strict(&self.init_binding_msg, &self.init_binding_sig)
                .unwrap();
            let dhs = [
                dh(&self.spk.0, &self.init_identity.1),
                dh(&self.resp_identity.0, &self.base.1),
                dh(&self.spk.0, &self.base.1),
                dh(&self.opk.0, &self.base.1),
            ];
            let ss = self.kem.decapsulate(&self.kem_ciphertext);
            let root = self.root(dhs, ss.expose(), self.kem.public_key().as_bytes());
            let okm = hkdf::<64>(&root, &dh(&self.spk.0, &self.ratchet.1), labels::ROOT_STEP);
            chain_step(okm[32..].try_into().unwrap()).0
        }

        /// Responder: parse the initiator's identity (decompression and one Ed25519
        /// verification), four DH, ML-KEM decapsulation (from the stored 64-byte seed, as
        /// confide_crypto keeps it), two SHA-256, HKDF; then the first receiving chain: DH,
        /// HKDF, two HMAC, open of 256 bytes.
        pub(crate) fn responder(&self) -> Vec<u8> {
            let key = self.responder_message_key();
            open(&key, &[0x22; MESSAGE_AAD_LEN], &self.first_ciphertext)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Fixtures.
// ---------------------------------------------------------------------------------------------

/// A counselor's prekey store with one-time keys, a client identity, a bundle.
struct ConfideSetup {
    store: PreKeyStore,
    client: IdentityKeyPair,
    bundle_bytes: Vec<u8>,
}

impl ConfideSetup {
    fn new(rng: &mut ChaCha20Rng) -> Self {
        let mut store = PreKeyStore::new(IdentityKeyPair::generate(rng), rng, NOW);
        store.generate_one_time_prekeys(rng, 1);
        store.generate_one_time_kem_prekeys(rng, 1);
        let bundle_bytes = store.bundles()[0].to_bytes();
        assert!(bundle_bytes.len() > 1400, "bundle has a one-time prekey");
        Self {
            store,
            client: IdentityKeyPair::generate(rng),
            bundle_bytes,
        }
    }

    /// The initiator's whole side: parse and verify the bundle, start, encrypt the first message.
    fn initiate(&self, rng: &mut ChaCha20Rng, plaintext: &[u8]) -> (SessionRecord, Vec<u8>) {
        let own = self.client.public();
        let bundle = PreKeyBundle::from_bytes(&self.bundle_bytes)
            .unwrap()
            .verify(ExpectedIdentity::TrustOnFirstUse, &own)
            .unwrap();
        let mut record =
            SessionRecord::with_session(Session::initiate(rng, &self.client, &bundle).unwrap());
        let first = record.encrypt(rng, plaintext).unwrap();
        (record, first)
    }
}

/// Two established Confide records: the client initiated, the counselor replied, the client
/// read the reply (so the client's messages are ratchet messages, and its next send starts a
/// new chain).
struct ConfidePair {
    client: SessionRecord,
    client_store: PreKeyStore,
    counselor: SessionRecord,
    counselor_store: PreKeyStore,
}

impl ConfidePair {
    fn new(rng: &mut ChaCha20Rng) -> Self {
        let setup = ConfideSetup::new(rng);
        let (mut client, first) = setup.initiate(rng, b"hello");
        let mut counselor_store = setup.store;
        let mut counselor = SessionRecord::new();
        counselor
            .decrypt(
                &mut counselor_store,
                &first,
                NOW,
                IdentityChangePolicy::Refuse,
            )
            .unwrap();
        let reply = counselor.encrypt(rng, b"hi").unwrap();
        let mut client_store = PreKeyStore::new(setup.client, rng, NOW);
        client
            .decrypt(&mut client_store, &reply, NOW, IdentityChangePolicy::Refuse)
            .unwrap();
        Self {
            client,
            client_store,
            counselor,
            counselor_store,
        }
    }
}

fn olm_config() -> SessionConfig {
    SessionConfig::version_1()
}

/// Olm: Alice's account, Bob's account with one published one-time key.
struct OlmSetup {
    alice: Account,
    bob: Account,
    one_time_key: vodozemac::Curve25519PublicKey,
}

impl OlmSetup {
    fn new() -> Self {
        let alice = Account::new();
        let mut bob = Account::new();
        bob.generate_one_time_keys(1);
        let one_time_key = *bob.one_time_keys().values().next().unwrap();
        bob.mark_keys_as_published();
        Self {
            alice,
            bob,
            one_time_key,
        }
    }

    fn initiate(
        &self,
        otk: vodozemac::Curve25519PublicKey,
        plaintext: &[u8],
    ) -> (OlmSession, (usize, Vec<u8>)) {
        let mut session = self
            .alice
            .create_outbound_session(olm_config(), self.bob.curve25519_key(), otk)
            .unwrap();
        let first = session.encrypt(plaintext).unwrap().to_parts();
        (session, first)
    }

    fn accept(&self, bob: &mut Account, first: &(usize, Vec<u8>)) -> OlmSession {
        let OlmMessage::PreKey(m) = OlmMessage::from_parts(first.0, &first.1).unwrap() else {
            panic!("first Olm message is a prekey message");
        };
        bob.create_inbound_session(olm_config(), self.alice.curve25519_key(), &m)
            .unwrap()
            .session
    }
}

fn clone_account(a: &Account) -> Account {
    Account::from_pickle(a.pickle())
}

fn clone_olm(s: &OlmSession) -> OlmSession {
    OlmSession::from_pickle(s.pickle())
}

fn olm_decrypt(s: &mut OlmSession, m: &(usize, Vec<u8>)) -> Vec<u8> {
    s.decrypt(&OlmMessage::from_parts(m.0, &m.1).unwrap())
        .unwrap()
}

/// Two established Olm sessions in the same position as [`ConfidePair`].
struct OlmPair {
    alice: OlmSession,
    bob: OlmSession,
}

impl OlmPair {
    fn new() -> Self {
        let setup = OlmSetup::new();
        let (mut alice, first) = setup.initiate(setup.one_time_key, b"hello");
        let mut bob_account = clone_account(&setup.bob);
        let mut bob = setup.accept(&mut bob_account, &first);
        let reply = bob.encrypt(b"hi").unwrap().to_parts();
        olm_decrypt(&mut alice, &reply);
        Self { alice, bob }
    }
}

// ---------------------------------------------------------------------------------------------
// Benchmarks.
// ---------------------------------------------------------------------------------------------

fn setup<M: Measurement>(c: &mut Criterion<M>) {
    let mut r = rng(1);
    let cs = ConfideSetup::new(&mut r);
    let fh = floor::Handshake::new();
    let olm = OlmSetup::new();
    let otk = olm.one_time_key;
    let pt = [0x41u8; CHAT_LEN];
    let (_, confide_first) = cs.initiate(&mut r, &pt);
    let (_, olm_first) = olm.initiate(otk, &pt);
    let kem_pair = KemKeyPair::generate(&mut r);
    let kem_public = kem_pair.public_key().as_bytes().to_vec();
    let (kem_ct, _) = kem_pair.public_key().encapsulate(&mut r);
    let encaps = |r: &mut ChaCha20Rng| {
        KemPublicKey::from_bytes(&kem_public)
            .unwrap()
            .encapsulate(r)
    };

    {
        let mut g = c.benchmark_group("session/setup_initiator");
        g.bench_function("confide", |b| {
            b.iter(|| cs.initiate(&mut r, black_box(&pt)))
        });
        g.bench_function("floor", |b| b.iter(|| fh.initiator(&mut r, black_box(&pt))));
        g.bench_function("pq_part", |b| b.iter(|| encaps(&mut r)));
        g.bench_function("vodozemac", |b| {
            b.iter(|| olm.initiate(otk, black_box(&pt)))
        });
        g.finish();
    }
    {
        let mut g = c.benchmark_group("session/setup_responder");
        g.bench_function("confide", |b| {
            b.iter_batched(
                || cs.store.clone(),
                |mut store| {
                    let mut record = SessionRecord::new();
                    let got = record
                        .decrypt(
                            &mut store,
                            &confide_first,
                            NOW,
                            IdentityChangePolicy::Refuse,
                        )
                        .unwrap();
                    (store, record, got)
                },
                BatchSize::SmallInput,
            );
        });
        g.bench_function("floor", |b| b.iter(|| fh.responder()));
        g.bench_function("pq_part", |b| b.iter(|| kem_pair.decapsulate(&kem_ct)));
        g.bench_function("vodozemac", |b| {
            b.iter_batched(
                || clone_account(&olm.bob),
                |mut bob| {
                    let s = olm.accept(&mut bob, &olm_first);
                    (bob, s)
                },
                BatchSize::SmallInput,
            );
        });
        g.finish();
    }
    {
        let mut g = c.benchmark_group("session/setup_full");
        g.bench_function("confide", |b| {
            b.iter_batched(
                || cs.store.clone(),
                |mut store| {
                    let (a, first) = cs.initiate(&mut r, &pt);
                    let mut record = SessionRecord::new();
                    let got = record
                        .decrypt(&mut store, &first, NOW, IdentityChangePolicy::Refuse)
                        .unwrap();
                    (store, a, record, got)
                },
                BatchSize::SmallInput,
            );
        });
        g.bench_function("floor", |b| {
            b.iter(|| (fh.initiator(&mut r, black_box(&pt)), fh.responder()));
        });
        g.bench_function("pq_part", |b| {
            b.iter(|| (encaps(&mut r), kem_pair.decapsulate(&kem_ct)));
        });
        g.bench_function("vodozemac", |b| {
            b.iter_batched(
                || clone_account(&olm.bob),
                |mut bob| {
                    let (a, first) = olm.initiate(otk, &pt);
                    let s = olm.accept(&mut bob, &first);
                    (bob, a, s)
                },
                BatchSize::SmallInput,
            );
        });
        g.finish();
    }
}

fn chain<M: Measurement>(c: &mut Criterion<M>) {
    let aad = [0x22u8; MESSAGE_AAD_LEN];
    {
        let mut g = c.benchmark_group("session/chain_encrypt");
        for (len, name) in SIZES {
            let pt = vec![0x41u8; len];
            let mut r = rng(2);
            let mut pair = ConfidePair::new(&mut r);
            // The first send after the reply performs the DH step; measure the chain after it.
            pair.client.encrypt(&mut r, &pt).unwrap();
            g.bench_function(BenchmarkId::new("confide", name), |b| {
                b.iter(|| pair.client.encrypt(&mut r, black_box(&pt)).unwrap());
            });
            let mut ck = [7u8; 32];
            g.bench_function(BenchmarkId::new("floor", name), |b| {
                b.iter(|| {
                    let (mk, next) = floor::chain_step(&ck);
                    ck = next;
                    floor::pad_seal(&mk, &aad, black_box(&pt))
                });
            });
            let mut olm = OlmPair::new();
            olm.alice.encrypt(&pt).unwrap();
            g.bench_function(BenchmarkId::new("vodozemac", name), |b| {
                b.iter(|| olm.alice.encrypt(black_box(&pt)).unwrap().to_parts());
            });
        }
        g.finish();
    }
    {
        let mut g = c.benchmark_group("session/chain_decrypt");
        for (len, name) in SIZES {
            let pt = vec![0x41u8; len];
            let mut r = rng(3);
            let ConfidePair {
                mut client,
                mut counselor,
                mut counselor_store,
                ..
            } = ConfidePair::new(&mut r);
            // Start the client's new chain so every measured message is within it.
            let m = client.encrypt(&mut r, &pt).unwrap();
            counselor
                .decrypt(&mut counselor_store, &m, NOW, IdentityChangePolicy::Refuse)
                .unwrap();
            g.bench_function(BenchmarkId::new("confide", name), |b| {
                b.iter_batched(
                    || client.encrypt(&mut r, &pt).unwrap(),
                    |m| {
                        counselor
                            .decrypt(&mut counselor_store, &m, NOW, IdentityChangePolicy::Refuse)
                            .unwrap()
                    },
                    BatchSize::SmallInput,
                );
            });
            // Floor: derive the same message key each time so the fixed ciphertext opens.
            let ck = [7u8; 32];
            let ct = floor::pad_seal(&floor::chain_step(&ck).0, &aad, &pt);
            g.bench_function(BenchmarkId::new("floor", name), |b| {
                b.iter(|| {
                    let (mk, next) = floor::chain_step(black_box(&ck));
                    (floor::open(&mk, &aad, &ct), next)
                });
            });
            let OlmPair { mut alice, mut bob } = OlmPair::new();
            olm_decrypt(&mut bob, &alice.encrypt(&pt).unwrap().to_parts());
            g.bench_function(BenchmarkId::new("vodozemac", name), |b| {
                b.iter_batched(
                    || alice.encrypt(&pt).unwrap().to_parts(),
                    |m| olm_decrypt(&mut bob, &m),
                    BatchSize::SmallInput,
                );
            });
        }
        g.finish();
    }
}

fn ping_pong<M: Measurement>(c: &mut Criterion<M>) {
    let pt = [0x41u8; CHAT_LEN];
    let aad = [0x22u8; MESSAGE_AAD_LEN];
    let mut g = c.benchmark_group("session/ping_pong");
    let mut r = rng(4);
    let ConfidePair {
        mut client,
        mut client_store,
        mut counselor,
        mut counselor_store,
    } = ConfidePair::new(&mut r);
    g.bench_function("confide", |b| {
        b.iter(|| {
            let m = client.encrypt(&mut r, &pt).unwrap();
            counselor
                .decrypt(&mut counselor_store, &m, NOW, IdentityChangePolicy::Refuse)
                .unwrap();
            let m = counselor.encrypt(&mut r, &pt).unwrap();
            client
                .decrypt(&mut client_store, &m, NOW, IdentityChangePolicy::Refuse)
                .unwrap()
        });
    });
    // Floor: per direction, the sender generates a ratchet key, does one DH, one HKDF root
    // step, two HMAC and pad+seal; the receiver does one DH, one HKDF, two HMAC and an open.
    let mut root = [9u8; 32];
    let a = floor::keygen(&mut r);
    let bk = floor::keygen(&mut r);
    let fixed_key = [5u8; 32];
    let fixed_ct = floor::pad_seal(&fixed_key, &aad, &pt);
    let mut one_way = |r: &mut ChaCha20Rng, their: &x25519_dalek::PublicKey| {
        let ours = floor::keygen(r);
        let okm = floor::hkdf::<64>(&root, &floor::dh(&ours.0, their), labels::ROOT_STEP);
        let (mk, _) = floor::chain_step(okm[32..].try_into().unwrap());
        let ct = floor::pad_seal(&mk, &aad, &pt);
        let okm2 = floor::hkdf::<64>(&okm[..32], &floor::dh(&bk.0, &ours.1), labels::ROOT_STEP);
        let (mk2, _) = floor::chain_step(okm2[32..].try_into().unwrap());
        // Opening needs the sender's key; open the fixed ciphertext under its key after
        // deriving mk2 (same work: key derivation plus one 256-byte open).
        black_box(mk2);
        let opened = floor::open(&fixed_key, &aad, &fixed_ct);
        root = okm2[..32].try_into().unwrap();
        (ct, opened)
    };
    g.bench_function("floor", |b| {
        b.iter(|| (one_way(&mut r, &bk.1), one_way(&mut r, &a.1)));
    });
    let OlmPair { mut alice, mut bob } = OlmPair::new();
    g.bench_function("vodozemac", |b| {
        b.iter(|| {
            let m = alice.encrypt(pt).unwrap().to_parts();
            olm_decrypt(&mut bob, &m);
            let m = bob.encrypt(pt).unwrap().to_parts();
            olm_decrypt(&mut alice, &m)
        });
    });
    g.finish();
}

fn skipped<M: Measurement>(c: &mut Criterion<M>) {
    let pt = [0x41u8; CHAT_LEN];
    let aad = [0x22u8; MESSAGE_AAD_LEN];
    let mut g = c.benchmark_group("session/skipped_100");
    let mut r = rng(5);
    let ConfidePair {
        mut client,
        counselor,
        mut counselor_store,
        ..
    } = ConfidePair::new(&mut r);
    // The client's next send starts a new chain: messages 0..=100 of it; 100 arrives first.
    let messages: Vec<Vec<u8>> = (0..=SKIPPED)
        .map(|_| client.encrypt(&mut r, &pt).unwrap())
        .collect();
    let last = messages.last().unwrap().clone();
    g.bench_function("confide", |b| {
        b.iter_batched(
            || counselor.clone(),
            |mut rec| {
                let got = rec
                    .decrypt(
                        &mut counselor_store,
                        &last,
                        NOW,
                        IdentityChangePolicy::Refuse,
                    )
                    .unwrap();
                (rec, got)
            },
            BatchSize::SmallInput,
        );
    });
    // Floor: one DH and HKDF for the new chain, 101 chain steps (2 HMAC each), one open.
    let root = [9u8; 32];
    let ours = floor::keygen(&mut r);
    let theirs = floor::keygen(&mut r);
    let derive = || {
        let okm = floor::hkdf::<64>(&root, &floor::dh(&ours.0, &theirs.1), labels::ROOT_STEP);
        let mut ck: floor::Key = okm[32..].try_into().unwrap();
        let mut keys = Vec::with_capacity(SKIPPED);
        for _ in 0..SKIPPED {
            let (mk, next) = floor::chain_step(&ck);
            keys.push(mk);
            ck = next;
        }
        (floor::chain_step(&ck).0, keys)
    };
    let ct = floor::pad_seal(&derive().0, &aad, &pt);
    g.bench_function("floor", |b| {
        b.iter(|| {
            let (mk, keys) = derive();
            (floor::open(&mk, &aad, &ct), keys)
        });
    });
    let OlmPair { mut alice, bob } = OlmPair::new();
    let olm_messages: Vec<(usize, Vec<u8>)> = (0..=SKIPPED)
        .map(|_| alice.encrypt(pt).unwrap().to_parts())
        .collect();
    let olm_last = olm_messages.last().unwrap().clone();
    g.bench_function("vodozemac", |b| {
        b.iter_batched(
            || clone_olm(&bob),
            |mut s| {
                let got = olm_decrypt(&mut s, &olm_last);
                (s, got)
            },
            BatchSize::SmallInput,
        );
    });
    g.finish();
}

fn state<M: Measurement>(c: &mut Criterion<M>) {
    let mut r = rng(6);
    let ConfidePair {
        mut client,
        mut client_store,
        mut counselor,
        mut counselor_store,
    } = ConfidePair::new(&mut r);
    // A few turns so both chains and the previous-key list are populated.
    for _ in 0..3 {
        let m = client.encrypt(&mut r, b"turn").unwrap();
        counselor
            .decrypt(&mut counselor_store, &m, NOW, IdentityChangePolicy::Refuse)
            .unwrap();
        let m = counselor.encrypt(&mut r, b"turn").unwrap();
        client
            .decrypt(&mut client_store, &m, NOW, IdentityChangePolicy::Refuse)
            .unwrap();
    }
    let record = client;
    let plain = record.to_bytes();
    let key = StorageKey::new([8; 32]);
    let blob = record.to_encrypted(&mut r, &key, b"slot");

    let OlmPair { mut alice, mut bob } = OlmPair::new();
    for _ in 0..3 {
        olm_decrypt(&mut bob, &alice.encrypt(b"turn").unwrap().to_parts());
        olm_decrypt(&mut alice, &bob.encrypt(b"turn").unwrap().to_parts());
    }
    let pickle_key = [8u8; 32];
    let pickled = alice.pickle().encrypt(&pickle_key);

    // Floors of the encrypted forms: two HKDF (key and key check), the AEAD over the state.
    let salt = [3u8; 32];
    let state_aad = [0x44u8; STATE_AAD_LEN];
    let derive_keys = |salt: &[u8]| {
        (
            floor::hkdf::<32>(salt, key.expose(), labels::STATE_ENCRYPTION),
            floor::hkdf::<16>(salt, key.expose(), labels::STATE_KEY_CHECK),
        )
    };
    let floor_blob = floor::seal(&derive_keys(&salt).0, &state_aad, &plain);

    {
        let mut g = c.benchmark_group("session/state_to_bytes");
        g.bench_function("confide", |b| b.iter(|| black_box(&record).to_bytes()));
        g.bench_function("floor", |b| b.iter(|| black_box(&plain[..]).to_vec()));
        g.finish();
    }
    {
        let mut g = c.benchmark_group("session/state_from_bytes");
        g.bench_function("confide", |b| {
            b.iter(|| SessionRecord::from_bytes(black_box(&plain)).unwrap());
        });
        g.bench_function("floor", |b| b.iter(|| black_box(&plain[..]).to_vec()));
        g.finish();
    }
    {
        let mut g = c.benchmark_group("session/state_encrypt");
        g.bench_function("confide", |b| {
            b.iter(|| black_box(&record).to_encrypted(&mut r, &key, b"slot"));
        });
        g.bench_function("floor", |b| {
            b.iter(|| {
                let copy = black_box(&plain[..]).to_vec();
                let salt: [u8; 32] = confide_crypto::random_array(&mut r);
                let (k, check) = derive_keys(&salt);
                (floor::seal(&k, &state_aad, &copy), check)
            });
        });
        g.bench_function("vodozemac", |b| {
            b.iter(|| black_box(&alice).pickle().encrypt(&pickle_key));
        });
        g.finish();
    }
    {
        let mut g = c.benchmark_group("session/state_decrypt");
        g.bench_function("confide", |b| {
            b.iter(|| SessionRecord::from_encrypted(&key, b"slot", black_box(&blob)).unwrap());
        });
        g.bench_function("floor", |b| {
            b.iter(|| {
                let (k, check) = derive_keys(&salt);
                (floor::open(&k, &state_aad, black_box(&floor_blob)), check)
            });
        });
        g.bench_function("vodozemac", |b| {
            b.iter(|| {
                OlmSession::from_pickle(
                    SessionPickle::from_encrypted(black_box(&pickled), &pickle_key).unwrap(),
                )
            });
        });
        g.finish();
    }
    eprintln!(
        "state sizes: confide record {} B plain, {} B encrypted; vodozemac pickle {} B",
        plain.len(),
        blob.len(),
        pickled.len()
    );
}

fn primitives<M: Measurement>(c: &mut Criterion<M>) {
    let mut r = rng(7);
    let a = floor::keygen(&mut r);
    let bk = floor::keygen(&mut r);
    let aad = [0x22u8; MESSAGE_AAD_LEN];
    let mut g = c.benchmark_group("primitive");
    g.bench_function("x25519_dh", |b| {
        b.iter(|| floor::dh(&a.0, black_box(&bk.1)))
    });
    g.bench_function("x25519_keygen", |b| b.iter(|| floor::keygen(&mut r)));
    let kem = KemKeyPair::generate(&mut r);
    let kem_public = kem.public_key().as_bytes().to_vec();
    let parsed = KemPublicKey::from_bytes(&kem_public).unwrap();
    let (ct, _) = parsed.encapsulate(&mut r);
    let seed = SecretBytes::new(*kem.seed().expose());
    g.bench_function("mlkem768_parse_public", |b| {
        b.iter(|| KemPublicKey::from_bytes(black_box(&kem_public)).unwrap());
    });
    g.bench_function("mlkem768_encaps", |b| b.iter(|| parsed.encapsulate(&mut r)));
    g.bench_function("mlkem768_decaps", |b| {
        b.iter(|| kem.decapsulate(black_box(&ct)))
    });
    g.bench_function("mlkem768_expand_seed", |b| {
        b.iter(|| KemKeyPair::from_seed(black_box(seed.clone())));
    });
    {
        // Decapsulation with an already expanded key (what storing the 2,400-byte expanded
        // key instead of the 64-byte seed would cost).
        use ml_kem::{Decapsulate, MlKem768, array::Array};
        let dk = ml_kem::DecapsulationKey::<MlKem768>::from_seed(Array::from(*kem.seed().expose()));
        let ct_array = Array::from(*ct.as_bytes());
        g.bench_function("mlkem768_decaps_expanded", |b| {
            b.iter(|| dk.decapsulate(black_box(&ct_array)));
        });
    }
    {
        use ed25519_dalek::Signer;
        let sk = ed25519_dalek::SigningKey::from_bytes(&[4; 32]);
        let msg = [0x55u8; 64];
        let sig = sk.sign(&msg);
        let vk = sk.verifying_key();
        g.bench_function("ed25519_verify_strict_64B", |b| {
            b.iter(|| vk.verify_strict(black_box(&msg), &sig).unwrap());
        });
        let vk_bytes = vk.to_bytes();
        g.bench_function("ed25519_decompress", |b| {
            b.iter(|| ed25519_dalek::VerifyingKey::from_bytes(black_box(&vk_bytes)).unwrap());
        });
    }
    let key = [6u8; 32];
    for (len, _) in SIZES {
        let p = padded(len);
        let block = vec![0x41u8; p];
        let sealed = floor::seal(&key, &aad, &block);
        g.bench_function(BenchmarkId::new("aead_seal", format!("{p}B")), |b| {
            b.iter(|| floor::seal(&key, &aad, black_box(&block)));
        });
        g.bench_function(BenchmarkId::new("aead_open", format!("{p}B")), |b| {
            b.iter(|| floor::open(&key, &aad, black_box(&sealed)));
        });
    }
    g.bench_function("hmac_sha256_32B", |b| {
        b.iter(|| floor::hmac(&key, black_box(&[0x11; 32])));
    });
    g.bench_function("hkdf_sha256_64B", |b| {
        b.iter(|| floor::hkdf::<64>(&key, black_box(&[0x12; 32]), labels::ROOT_STEP));
    });
    g.finish();
}

/// The benchmark thread's CPU time in nanoseconds (`CLOCK_THREAD_CPUTIME_ID`).
mod cpu_time {
    use criterion::{
        Throughput,
        measurement::{Measurement, ValueFormatter},
    };
    use rustix::time::{ClockId, clock_gettime};

    pub(crate) struct ThreadCpuTime;

    impl ThreadCpuTime {
        fn now_ns() -> u64 {
            let t = clock_gettime(ClockId::ThreadCPUTime);
            (t.tv_sec as u64) * 1_000_000_000 + t.tv_nsec as u64
        }
    }

    impl Measurement for ThreadCpuTime {
        type Intermediate = u64;
        type Value = u64;

        fn start(&self) -> u64 {
            Self::now_ns()
        }

        fn end(&self, start: u64) -> u64 {
            Self::now_ns().saturating_sub(start)
        }

        fn add(&self, a: &u64, b: &u64) -> u64 {
            a + b
        }

        fn zero(&self) -> u64 {
            0
        }

        fn to_f64(&self, v: &u64) -> f64 {
            *v as f64
        }

        fn formatter(&self) -> &dyn ValueFormatter {
            &NanosFormatter
        }
    }

    struct NanosFormatter;

    impl ValueFormatter for NanosFormatter {
        fn scale_values(&self, typical: f64, values: &mut [f64]) -> &'static str {
            let (factor, unit) = if typical < 1e3 {
                (1.0, "ns")
            } else if typical < 1e6 {
                (1e-3, "us")
            } else if typical < 1e9 {
                (1e-6, "ms")
            } else {
                (1e-9, "s")
            };
            for v in values {
                *v *= factor;
            }
            unit
        }

        fn scale_throughputs(&self, _: f64, t: &Throughput, values: &mut [f64]) -> &'static str {
            let (n, unit) = match t {
                Throughput::Bytes(n) | Throughput::BytesDecimal(n) => (*n as f64, "B/s"),
                Throughput::Elements(n) => (*n as f64, "elem/s"),
                _ => (1.0, "/s"),
            };
            for v in values {
                *v = n * 1e9 / *v;
            }
            unit
        }

        fn scale_for_machines(&self, _: &mut [f64]) -> &'static str {
            "ns"
        }
    }
}

fn configure<M: Measurement>(c: Criterion<M>) -> Criterion<M> {
    common::ci_mode(c).configure_from_args()
}

fn run_all<M: Measurement>(c: &mut Criterion<M>) {
    primitives(c);
    setup(c);
    chain(c);
    ping_pong(c);
    skipped(c);
    state(c);
}

fn main() {
    if std::env::var_os("CONFIDE_BENCH_CPU_TIME").is_some() {
        let mut c = configure(Criterion::default().with_measurement(cpu_time::ThreadCpuTime));
        run_all(&mut c);
        c.final_summary();
    } else {
        let mut c = configure(Criterion::default());
        run_all(&mut c);
        c.final_summary();
    }
}
