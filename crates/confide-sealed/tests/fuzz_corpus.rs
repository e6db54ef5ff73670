//! Replays every file of the sealed fuzz corpora through the fuzz targets' decoders.
//!
//! Set `CONFIDE_REGENERATE_CORPUS=1` to (re)write the seed corpora from the fixed fixture.
//! The fuzz targets (fuzz/fuzz_targets/sealed_*.rs) rebuild the same recipient and trust roots
//! from the same seeds, so seeded envelopes open there and fuzzing starts deep.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
mod symmetric_fuzz_logic;

use std::path::PathBuf;

use chacha20::ChaCha20Rng;
use common::*;
use confide_crypto::{Timestamp, kdf::sha256};
use confide_sealed::{
    ENVELOPE_OVERHEAD, Role, SealedEnvelope, SenderCertificate, SenderClaims, ServerCertificate,
    open, seal,
};
use rand_core::SeedableRng;

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}

fn write_corpus(target: &str, items: &[Vec<u8>]) {
    let dir = corpus_dir(target);
    std::fs::create_dir_all(&dir).unwrap();
    for item in items {
        let name = hex::encode(&sha256(&[item])[..8]);
        std::fs::write(dir.join(name), item).unwrap();
    }
}

fn read_corpus(target: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(corpus_dir(target)).unwrap() {
        out.push(std::fs::read(entry.unwrap().path()).unwrap());
    }
    assert!(!out.is_empty(), "corpus {target} is empty");
    out
}

/// Identity seed, address, role, display name, expiry.
type CertCase<'a> = (u8, &'a [u8], Role, Option<&'a str>, Timestamp);

fn sample_certificates() -> Vec<SenderCertificate> {
    let server = server_key();
    let max_name = "m".repeat(confide_sealed::MAX_DISPLAY_NAME_LEN);
    let max_address = [0xa5u8; confide_sealed::MAX_SENDER_ADDRESS_LEN];
    let cases: Vec<CertCase<'_>> = vec![
        (
            0x03,
            SENDER_ADDRESS,
            Role::Counselor,
            Some(SENDER_NAME),
            NOW.saturating_add(SENDER_LIFETIME),
        ),
        (
            0x10,
            b"client-pseudonym-7",
            Role::Client,
            None,
            NOW.saturating_add(SENDER_LIFETIME),
        ),
        (
            0x11,
            b"intake",
            Role::Bot,
            Some("Intake assistant"),
            Timestamp::MAX,
        ),
        (
            0x12,
            b"\x00\x01",
            Role::Other(9),
            None,
            NOW.saturating_add(SENDER_LIFETIME),
        ),
        (
            0x13,
            &max_address,
            Role::Counselor,
            Some(&max_name),
            Timestamp::MAX,
        ),
        (0x14, b"expired", Role::Client, Some("Jo"), NOW),
        (
            0x15,
            b"u",
            Role::Counselor,
            Some("Zoë Ünal"),
            NOW.saturating_add(SENDER_LIFETIME),
        ),
    ];
    cases
        .into_iter()
        .map(|(seed, address, role, name, expires)| {
            SenderCertificate::issue(
                &server,
                &SenderClaims {
                    address,
                    device_id: u32::from(seed),
                    identity: identity(seed).public(),
                    role,
                    display_name: name,
                },
                expires,
            )
            .unwrap()
        })
        .collect()
}

fn generate() {
    let certs = sample_certificates();
    write_corpus(
        "sealed_sender_certificate",
        &certs
            .iter()
            .map(|c| c.as_bytes().to_vec())
            .collect::<Vec<_>>(),
    );
    let servers = vec![
        server_certificate(NOW.saturating_add(SERVER_LIFETIME))
            .as_bytes()
            .to_vec(),
        server_certificate(NOW).as_bytes().to_vec(),
        server_certificate(Timestamp::MAX).as_bytes().to_vec(),
        ServerCertificate::issue(
            2,
            &root_key(),
            0xDEAD_0001,
            &server_signing_key().verifying_key(),
            Timestamp::MAX,
        )
        .as_bytes()
        .to_vec(),
    ];
    write_corpus("sealed_server_certificate", &servers);
    let seeds = [0x03u8, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15];
    let mut envelopes = Vec::new();
    for (i, (cert, seed)) in certs.iter().zip(seeds).enumerate() {
        let payload: Vec<u8> = (0..[0usize, 1, 64, 300, 1024, 17, 2048][i])
            .map(|j| (j * 7) as u8)
            .collect();
        let env = seal(
            &mut ChaCha20Rng::from_seed([0x70 + i as u8; 32]),
            &identity(seed),
            cert,
            &recipient().public(),
            &payload,
        )
        .unwrap();
        envelopes.push(env);
    }
    write_corpus("sealed_envelope", &envelopes);
}

#[test]
fn replay_sealed_envelope_corpus() {
    if std::env::var_os("CONFIDE_REGENERATE_CORPUS").is_some() {
        generate();
    }
    let recipient = recipient();
    let roots = roots();
    let mut opened_count = 0;
    for data in read_corpus("sealed_envelope") {
        if let Ok(env) = SealedEnvelope::from_bytes(&data) {
            assert_eq!(env.to_bytes(), data);
        }
        if let Ok(opened) = open(&recipient, &roots, NOW, &data) {
            assert_eq!(opened.payload.len() + ENVELOPE_OVERHEAD, data.len());
            opened_count += 1;
        }
    }
    assert!(
        opened_count > 0,
        "the seed corpus should hold envelopes that open"
    );
}

#[test]
fn replay_sealed_sender_certificate_corpus() {
    let roots = roots();
    for data in read_corpus("sealed_sender_certificate") {
        if let Ok(cert) = SenderCertificate::from_bytes(&data) {
            assert_eq!(cert.as_bytes(), &data[..]);
            let _ = cert.validate(&roots, NOW);
        }
    }
}

#[test]
fn replay_sealed_server_certificate_corpus() {
    let roots = roots();
    for data in read_corpus("sealed_server_certificate") {
        if let Ok(cert) = ServerCertificate::from_bytes(&data) {
            assert_eq!(cert.as_bytes(), &data[..]);
            let _ = cert.validate(&roots, NOW);
        }
    }
}

/// Seeds of `sealed_symmetric`: envelopes of the fixture epoch (indices 0, 1, 2, 40, with
/// payloads of 0, 1, 100 and 1,024 bytes), a public-key envelope (not symmetric), and stored
/// windows (fresh; after 0 and 2; after 0..40 except 5).
fn symmetric_seeds() -> Vec<Vec<u8>> {
    use symmetric_fuzz_logic::{
        NOW as T, SELECT_ENVELOPE, SELECT_WINDOW, fixture_sealer, fixture_window,
    };
    let with = |sel: u8, bytes: &[u8]| [&[sel][..], bytes].concat();
    let mut sealer = fixture_sealer();
    let mut envelopes = Vec::new();
    for i in 0..41u64 {
        let len = match i {
            0 => 0,
            1 => 1,
            2 => 100,
            _ => 1024,
        };
        let payload: Vec<u8> = (0..len).map(|j| (j * 3) as u8).collect();
        envelopes.push(sealer.seal(T, &payload).unwrap());
    }
    let mut out: Vec<Vec<u8>> = [0usize, 1, 2, 40]
        .iter()
        .map(|&i| with(SELECT_ENVELOPE, &envelopes[i]))
        .collect();
    out.push(with(
        SELECT_ENVELOPE,
        &seal(
            &mut ChaCha20Rng::from_seed([0x7f; 32]),
            &sender(),
            &sender_certificate(),
            &recipient().public(),
            b"public-key",
        )
        .unwrap(),
    ));
    let roots = confide_sealed::TrustRoots::new();
    let mut window = fixture_window();
    out.push(with(SELECT_WINDOW, &window.to_bytes()));
    window.open(T, &roots, &envelopes[0]).unwrap();
    window.open(T, &roots, &envelopes[2]).unwrap();
    out.push(with(SELECT_WINDOW, &window.to_bytes()));
    for (i, e) in envelopes.iter().enumerate().take(41).skip(3) {
        if i != 5 {
            window.open(T, &roots, e).unwrap();
        }
    }
    out.push(with(SELECT_WINDOW, &window.to_bytes()));
    out
}

#[test]
fn replay_sealed_symmetric_corpus() {
    if std::env::var_os("CONFIDE_REGENERATE_CORPUS").is_some() {
        write_corpus("sealed_symmetric", &symmetric_seeds());
    }
    let mut opened = 0;
    let mut windows = 0;
    for data in read_corpus("sealed_symmetric") {
        symmetric_fuzz_logic::symmetric_input(&data);
        if data.first() == Some(&symmetric_fuzz_logic::SELECT_ENVELOPE) {
            let mut d = confide_sealed::TagDirectory::new();
            d.install(1u8, symmetric_fuzz_logic::fixture_window());
            opened += usize::from(
                d.open(
                    symmetric_fuzz_logic::NOW,
                    &confide_sealed::TrustRoots::new(),
                    &data[1..],
                )
                .is_ok(),
            );
        } else if confide_sealed::TagWindow::from_bytes(&data[1..]).is_ok() {
            windows += 1;
        }
    }
    assert!(opened >= 1, "the seed corpus holds envelopes that open");
    assert!(
        windows >= 3,
        "the seed corpus holds stored windows that decode"
    );
}
