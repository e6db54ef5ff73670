//! Sealed-sender benchmarks: `seal` and `open` of a 1 KiB payload beside their floor, the raw
//! primitives doing the same cryptographic work, measured in one run.
//!
//! Naming convention (as in `session.rs`): group `sealed/<operation>`, function ids
//! `confide` and `floor`, parameter `1KiB`. After the criterion groups, a short same-process
//! timing prints the confide/floor ratio of each operation (target: at most 1.3x).
//!
//! Floors:
//! * seal: one X25519 key generation, two X25519 agreements, two HKDF-SHA256 (64 bytes of
//!   output each: the static layer's key and the epoch seed), ChaCha20-Poly1305 over the 96-byte sender key and over the 512-byte
//!   certificate region plus payload.
//! * open: two X25519 agreements, the same two HKDFs, the two AEAD decryptions, and the two
//!   Ed25519 `verify_strict` calls of the chain (root over the server certificate, server over
//!   the sender certificate) with keys already parsed.
//!
//! * symmetric (group `sealed/roundtrip`, ids `public_key`, `symmetric`, `symmetric_floor`,
//!   parameters `100B` and `1KiB`): one envelope sealed and opened, the way the two kinds are
//!   used in a conversation. Public key: `seal` + `open`. Symmetric: `SymmetricSealer::seal`
//!   and `TagDirectory::open` in a directory holding the windows of 1,000 conversations. Its
//!   floor: the tag HMAC and the key/nonce HKDF on each side, the new tag's HMAC on the
//!   recipient's side, and the two AEADs. The report prints envelope sizes and ratios.
//!
//! Set `CONFIDE_BENCH_QUICK=1` for the short CI mode.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::hint::black_box;
use std::time::Duration;

use chacha20::ChaCha20Rng;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, aead::AeadInOut};
use confide_crypto::{
    Timestamp,
    identity::IdentityKeyPair,
    kdf::labels,
    secret::{EnvelopeSecret, SecretBytes},
    signing::SigningKey,
};
use confide_sealed::{
    EpochSeed, Role, SENDER_CERTIFICATE_REGION_LEN, SenderCertificate, SenderClaims,
    ServerCertificate, ServerKey, SymmetricSealer, TagDirectory, TagWindow, TrustRoots, open, seal,
};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use rand_core::SeedableRng;

const NOW: Timestamp = Timestamp::from_millis(1_750_000_000_000);
const PAYLOAD_LEN: usize = 1024;

struct Fixture {
    roots: TrustRoots,
    sender: IdentityKeyPair,
    recipient: IdentityKeyPair,
    cert: SenderCertificate,
    payload: Vec<u8>,
    envelope: Vec<u8>,
    /// Raw-primitive inputs for the floors.
    raw: RawKeys,
}

struct RawKeys {
    sender_secret: x25519_dalek::StaticSecret,
    recipient_secret: x25519_dalek::StaticSecret,
    recipient_public: x25519_dalek::PublicKey,
    recipient_key_bytes: [u8; 64],
    ephemeral_public: x25519_dalek::PublicKey,
    sender_public: x25519_dalek::PublicKey,
    root_key: ed25519_dalek::VerifyingKey,
    server_key: ed25519_dalek::VerifyingKey,
    server_message: Vec<u8>,
    server_signature: ed25519_dalek::Signature,
    sender_message: Vec<u8>,
    sender_signature: ed25519_dalek::Signature,
    sealed_sender_key: Vec<u8>,
    sealed_content: Vec<u8>,
}

fn identity(seed: u8) -> IdentityKeyPair {
    IdentityKeyPair::from_secret_bytes(&SecretBytes::new([seed; 64]))
}

fn x25519_secret(id: &IdentityKeyPair) -> x25519_dalek::StaticSecret {
    x25519_dalek::StaticSecret::from(*id.agreement().secret().to_secret_bytes().expose())
}

fn fixture() -> Fixture {
    let root = SigningKey::from_seed(&[1; 32]);
    let server_signing = SigningKey::from_seed(&[2; 32]);
    let mut roots = TrustRoots::new();
    roots.add_root(1, root.verifying_key()).unwrap();
    let server_cert = ServerCertificate::issue(
        1,
        &root,
        100,
        &server_signing.verifying_key(),
        Timestamp::MAX,
    );
    let server = ServerKey::new(server_signing, server_cert.clone()).unwrap();
    let sender = identity(3);
    let recipient = identity(4);
    let cert = SenderCertificate::issue(
        &server,
        &SenderClaims {
            address: b"counselor-0017",
            device_id: 1,
            identity: sender.public(),
            role: Role::Counselor,
            display_name: Some("Dr. Rivera"),
        },
        Timestamp::MAX,
    )
    .unwrap();
    let payload = vec![0x5a; PAYLOAD_LEN];
    let envelope = seal(
        &mut ChaCha20Rng::from_seed([9; 32]),
        &sender,
        &cert,
        &recipient.public(),
        &payload,
    )
    .unwrap();

    let sig = |bytes: &[u8]| {
        ed25519_dalek::Signature::from_bytes(&bytes[bytes.len() - 64..].try_into().unwrap())
    };
    let with_label = |label: &[u8], bytes: &[u8]| [label, &bytes[..bytes.len() - 64]].concat();
    let raw = RawKeys {
        sender_secret: x25519_secret(&sender),
        recipient_secret: x25519_secret(&recipient),
        recipient_public: x25519_dalek::PublicKey::from(
            recipient.public().agreement_key().to_bytes(),
        ),
        recipient_key_bytes: recipient.public().key_bytes(),
        ephemeral_public: x25519_dalek::PublicKey::from(
            <[u8; 32]>::try_from(&envelope[1..33]).unwrap(),
        ),
        sender_public: x25519_dalek::PublicKey::from(sender.public().agreement_key().to_bytes()),
        root_key: ed25519_dalek::VerifyingKey::from_bytes(&root.verifying_key().to_bytes())
            .unwrap(),
        server_key: ed25519_dalek::VerifyingKey::from_bytes(&server_cert.server_key().to_bytes())
            .unwrap(),
        server_message: with_label(labels::SERVER_CERTIFICATE, server_cert.as_bytes()),
        server_signature: sig(server_cert.as_bytes()),
        sender_message: with_label(labels::SENDER_CERTIFICATE, cert.as_bytes()),
        sender_signature: sig(cert.as_bytes()),
        sealed_sender_key: envelope[33..33 + 112].to_vec(),
        sealed_content: envelope[33 + 112..].to_vec(),
    };
    Fixture {
        roots,
        sender,
        recipient,
        cert,
        payload,
        envelope,
        raw,
    }
}

fn hkdf<const N: usize>(salt: Option<&[u8]>, ikm: &[u8], info: &[&[u8]]) -> [u8; N] {
    let mut out = [0u8; N];
    hkdf::Hkdf::<sha2::Sha256>::new(salt, ikm)
        .expand_multi_info(info, &mut out)
        .unwrap();
    out
}

fn aead_seal_nonce(key: &[u8; 32], nonce: &[u8; 12], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let mut buf = plaintext.to_vec();
    ChaCha20Poly1305::new(key.into())
        .encrypt_in_place(nonce.into(), aad, &mut buf)
        .unwrap();
    buf
}

fn aead_open_nonce(
    key: &[u8; 32],
    nonce: &[u8; 12],
    aad: &[u8],
    ciphertext: &[u8],
) -> Option<Vec<u8>> {
    let mut buf = ciphertext.to_vec();
    ChaCha20Poly1305::new(key.into())
        .decrypt_in_place(nonce.into(), aad, &mut buf)
        .ok()?;
    Some(buf)
}

fn aead_seal(key: &[u8; 32], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    aead_seal_nonce(key, &[0u8; 12], aad, plaintext)
}

fn aead_open(key: &[u8; 32], aad: &[u8], ciphertext: &[u8]) -> Option<Vec<u8>> {
    aead_open_nonce(key, &[0u8; 12], aad, ciphertext)
}

/// The cryptographic work of `seal`, done directly with the primitives. Key material is
/// fixed rather than derived, so AEAD outputs are not meant to open; the work is the same.
fn floor_seal(f: &Fixture, rng: &mut ChaCha20Rng) -> Vec<u8> {
    let r = &f.raw;
    let e = x25519_dalek::StaticSecret::random_from_rng(rng);
    let e_pub = x25519_dalek::PublicKey::from(&e);
    let dh1 = e.diffie_hellman(&r.recipient_public);
    let okm: [u8; 64] = hkdf(
        None,
        dh1.as_bytes(),
        &[
            labels::SEALED_EPHEMERAL,
            &[1],
            e_pub.as_bytes(),
            r.recipient_public.as_bytes(),
        ],
    );
    let k1: [u8; 32] = okm[32..].try_into().unwrap();
    let c1 = aead_seal(&k1, e_pub.as_bytes(), &[0u8; 96]);
    let dh2 = r.sender_secret.diffie_hellman(&r.recipient_public);
    let okm2: [u8; 64] = hkdf(
        Some(&okm[..32]),
        dh2.as_bytes(),
        &[
            labels::SEALED_STATIC,
            &[1],
            e_pub.as_bytes(),
            &c1,
            &r.recipient_key_bytes,
        ],
    );
    let k2: [u8; 32] = okm2[..32].try_into().unwrap();
    let mut content = vec![0u8; SENDER_CERTIFICATE_REGION_LEN];
    content.extend_from_slice(&f.payload);
    let c2 = aead_seal(&k2, &c1, &content);
    [e_pub.as_bytes().as_slice(), &c1, &c2].concat()
}

/// The cryptographic work of `open`, done directly with the primitives.
fn floor_open(f: &Fixture) -> bool {
    let r = &f.raw;
    let dh1 = r.recipient_secret.diffie_hellman(&r.ephemeral_public);
    let e_pub = r.ephemeral_public.as_bytes();
    let okm: [u8; 64] = hkdf(
        None,
        dh1.as_bytes(),
        &[
            labels::SEALED_EPHEMERAL,
            &[1],
            e_pub,
            r.recipient_public.as_bytes(),
        ],
    );
    let k1: [u8; 32] = okm[32..].try_into().unwrap();
    let l1 = aead_open(&k1, r.ephemeral_public.as_bytes(), &r.sealed_sender_key);
    let dh2 = r.recipient_secret.diffie_hellman(&r.sender_public);
    let okm2: [u8; 64] = hkdf(
        Some(&okm[..32]),
        dh2.as_bytes(),
        &[
            labels::SEALED_STATIC,
            &[1],
            e_pub,
            &r.sealed_sender_key,
            &r.recipient_key_bytes,
        ],
    );
    let k2: [u8; 32] = okm2[..32].try_into().unwrap();
    let l2 = aead_open(&k2, &r.sealed_sender_key, &r.sealed_content);
    let v1 = r
        .root_key
        .verify_strict(&r.server_message, &r.server_signature)
        .is_ok();
    let v2 = r
        .server_key
        .verify_strict(&r.sender_message, &r.sender_signature)
        .is_ok();
    // Keys here are not the derived ones, so the AEADs fail after doing their full work
    // (tag computed over the whole ciphertext); the signatures verify.
    l1.is_none() && l2.is_none() && v1 && v2
}

fn do_seal(f: &Fixture, rng: &mut ChaCha20Rng) -> Vec<u8> {
    seal(rng, &f.sender, &f.cert, &f.recipient.public(), &f.payload).unwrap()
}

fn do_open(f: &Fixture) -> usize {
    open(&f.recipient, &f.roots, NOW, &f.envelope)
        .unwrap()
        .payload
        .len()
}

fn bench_seal(c: &mut Criterion) {
    let f = fixture();
    assert!(floor_open(&f));
    let mut g = c.benchmark_group("sealed/seal");
    let mut rng = ChaCha20Rng::from_seed([3; 32]);
    g.bench_function(BenchmarkId::new("confide", "1KiB"), |b| {
        b.iter(|| do_seal(black_box(&f), &mut rng))
    });
    g.bench_function(BenchmarkId::new("floor", "1KiB"), |b| {
        b.iter(|| floor_seal(black_box(&f), &mut rng))
    });
    g.finish();
}

fn bench_open(c: &mut Criterion) {
    let f = fixture();
    let mut g = c.benchmark_group("sealed/open");
    g.bench_function(BenchmarkId::new("confide", "1KiB"), |b| {
        b.iter(|| do_open(black_box(&f)))
    });
    g.bench_function(BenchmarkId::new("floor", "1KiB"), |b| {
        b.iter(|| floor_open(black_box(&f)))
    });
    g.finish();
}

/// Conversations whose windows the recipient's directory holds in the symmetric benchmark.
const CONVERSATIONS: u32 = 1_000;

/// One sender's current epoch and a recipient directory holding 1,000 conversations' windows.
struct Symmetric {
    sealer: SymmetricSealer,
    directory: TagDirectory<u32>,
    roots: TrustRoots,
}

fn epoch_keys(n: u32) -> (EpochSeed, EnvelopeSecret) {
    let mut seed = [0u8; 32];
    seed[..4].copy_from_slice(&n.to_be_bytes());
    (EpochSeed::new(seed), EnvelopeSecret::new([0x77; 32]))
}

fn window(n: u32) -> TagWindow {
    let (seed, secret) = epoch_keys(n);
    TagWindow::new(&seed, &secret, Timestamp::MAX, 100).unwrap()
}

impl Symmetric {
    fn new() -> Self {
        let mut directory = TagDirectory::new();
        for n in 0..CONVERSATIONS {
            directory.install(n, window(n));
        }
        let (seed, secret) = epoch_keys(CONVERSATIONS / 2);
        Self {
            sealer: SymmetricSealer::new(&seed, &secret, NOW).unwrap(),
            directory,
            roots: TrustRoots::new(),
        }
    }

    /// Seal and open one envelope; starts the epoch again before it runs out of indices.
    fn roundtrip(&mut self, payload: &[u8]) -> usize {
        if self.sealer.next_index() >= 90_000 {
            let n = CONVERSATIONS / 2;
            let (seed, secret) = epoch_keys(n);
            self.sealer = SymmetricSealer::new(&seed, &secret, NOW).unwrap();
            self.directory.restore(n, vec![window(n)]);
        }
        let envelope = self.sealer.seal(NOW, payload).unwrap();
        let (_, opened) = self.directory.open(NOW, &self.roots, &envelope).unwrap();
        opened.len()
    }
}

/// The symmetric path's cryptographic work, done directly with the primitives.
fn floor_symmetric(payload: &[u8], index: u64) -> usize {
    let tag_key = [0x11u8; 32];
    let root = [0x22u8; 32];
    let mac = |key: &[u8], i: u64| {
        use hmac::{KeyInit as _, Mac};
        let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
        m.update(labels::SYMMETRIC_TAG);
        m.update(&i.to_be_bytes());
        m.finalize().into_bytes()
    };
    // The epoch's AEAD key and nonce base are derived once per epoch (when the sealer and
    // the window are made), so per envelope only the nonce `iv XOR i` is formed.
    let keys: [u8; 44] = hkdf(None, &root, &[labels::SYMMETRIC_KEYS, &[2]]);
    let key: [u8; 32] = keys[..32].try_into().unwrap();
    let nonce = |i: u64| -> [u8; 12] {
        let mut n: [u8; 12] = keys[32..].try_into().unwrap();
        for (b, c) in n[4..].iter_mut().zip(i.to_be_bytes()) {
            *b ^= c;
        }
        n
    };
    // Sender: tag, nonce, AEAD.
    let tag = mac(&tag_key, index);
    let aad = [&[2u8][..], &tag[..16], &[0u8; 4]].concat();
    let ciphertext = aead_seal_nonce(&key, &nonce(index), &aad, payload);
    // Recipient: the tag entering the window, nonce, AEAD.
    let entering = mac(&tag_key, index + 32);
    let opened = aead_open_nonce(&key, &nonce(index), &aad, &ciphertext).map_or(0, |p| p.len());
    opened + usize::from(entering[0])
}

fn bench_roundtrip(c: &mut Criterion) {
    let f = fixture();
    let mut rng = ChaCha20Rng::from_seed([5; 32]);
    let mut sym = Symmetric::new();
    let mut g = c.benchmark_group("sealed/roundtrip");
    for (name, len) in [("100B", 100usize), ("1KiB", 1024)] {
        let payload = vec![0x5a; len];
        g.bench_function(BenchmarkId::new("public_key", name), |b| {
            b.iter(|| {
                let e = seal(
                    &mut rng,
                    &f.sender,
                    &f.cert,
                    &f.recipient.public(),
                    &payload,
                )
                .unwrap();
                open(&f.recipient, &f.roots, NOW, &e).unwrap().payload.len()
            })
        });
        g.bench_function(BenchmarkId::new("symmetric", name), |b| {
            b.iter(|| sym.roundtrip(black_box(&payload)))
        });
        let mut index = 0u64;
        g.bench_function(BenchmarkId::new("symmetric_floor", name), |b| {
            b.iter(|| {
                index += 1;
                floor_symmetric(black_box(&payload), index)
            })
        });
    }
    g.finish();
}

#[path = "common/timing.rs"]
mod timing;
use timing::median_time;

/// Interleaved same-process timing of each operation and its floor; prints the ratios.
fn report_ratios(_c: &mut Criterion) {
    let f = fixture();
    let mut rng = ChaCha20Rng::from_seed([4; 32]);
    let (rounds, iters) = (15, 40);
    let mut pairs = [(Duration::ZERO, Duration::ZERO); 2];
    for _ in 0..3 {
        pairs[0].0 += median_time(rounds, iters, || {
            black_box(do_seal(&f, &mut rng));
        });
        pairs[0].1 += median_time(rounds, iters, || {
            black_box(floor_seal(&f, &mut rng));
        });
        pairs[1].0 += median_time(rounds, iters, || {
            black_box(do_open(&f));
        });
        pairs[1].1 += median_time(rounds, iters, || {
            black_box(floor_open(&f));
        });
    }
    let mut sym = Symmetric::new();
    let payload = vec![0x5a; PAYLOAD_LEN];
    let (mut public_key, mut symmetric, mut sym_floor) =
        (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let mut index = 0u64;
    for _ in 0..3 {
        public_key += median_time(rounds, iters, || {
            let e = do_seal(&f, &mut rng);
            black_box(open(&f.recipient, &f.roots, NOW, &e).unwrap().payload.len());
        });
        symmetric += median_time(rounds, iters * 20, || {
            black_box(sym.roundtrip(&payload));
        });
        sym_floor += median_time(rounds, iters * 20, || {
            index += 1;
            black_box(floor_symmetric(&payload, index));
        });
    }
    println!(
        "sealed/roundtrip/1KiB: public key {:.1} us, symmetric {:.2} us ({:.0}x faster), \
         symmetric floor {:.2} us, ratio {:.2}x",
        public_key.as_secs_f64() * 1e6 / 3.0,
        symmetric.as_secs_f64() * 1e6 / 3.0,
        public_key.as_secs_f64() / symmetric.as_secs_f64(),
        sym_floor.as_secs_f64() * 1e6 / 3.0,
        symmetric.as_secs_f64() / sym_floor.as_secs_f64(),
    );
    for len in [20usize, 100, 1024] {
        println!(
            "sealed/size/{len}B payload: public key {} bytes, symmetric {} bytes",
            confide_sealed::envelope_len(len).unwrap(),
            confide_sealed::symmetric_envelope_len(len).unwrap()
        );
    }
    for (name, (confide, floor)) in ["seal", "open"].iter().zip(pairs) {
        println!(
            "sealed/{name}/1KiB: confide {:.1} us, floor {:.1} us, ratio {:.2}x (target <= 1.30x)",
            confide.as_secs_f64() * 1e6 / 3.0,
            floor.as_secs_f64() * 1e6 / 3.0,
            confide.as_secs_f64() / floor.as_secs_f64()
        );
    }
}

criterion_group! {
    name = benches;
    config = common::ci_mode(Criterion::default());
    targets = bench_seal, bench_open, bench_roundtrip, report_ratios
}
criterion_main!(benches);
