//! Replays every file of the sealed fuzz corpora through the fuzz targets' checks
//! (`confide_test_support::fuzzing::sealed_*`).
//!
//! Set `CONFIDE_REGENERATE_CORPUS=1` to (re)write the seed corpora from the fixed fixture
//! (`confide_test_support::sealed_fixture`), which the checks also use, so seeded envelopes
//! open there and fuzzing starts deep.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Once;

use chacha20::ChaCha20Rng;
use confide_crypto::Timestamp;
use confide_sealed::{Role, SenderCertificate, SenderClaims, ServerCertificate, open, seal};
use confide_test_support::sealed_fixture::*;
use confide_test_support::{corpus, fuzzing};
use rand_core::SeedableRng;

/// Rewrites the seed corpora once per run when `CONFIDE_REGENERATE_CORPUS=1`.
fn regenerate_when_asked() {
    static ONCE: Once = Once::new();
    if corpus::regenerate_requested() {
        ONCE.call_once(generate);
    }
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

/// Seeds of `sealed_symmetric`: envelopes of the fixture epoch (indices 0, 1, 2, 40, with
/// payloads of 0, 1, 100 and 1,024 bytes), a public-key envelope (not symmetric), and stored
/// windows (fresh; after 0 and 2; after 0..40 except 5).
fn symmetric_seeds() -> Vec<Vec<u8>> {
    use confide_test_support::fuzzing::symmetric::{
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
        // Index 2 carries its last 60 bytes unencrypted, as the endpoint carries a session
        // message's ciphertext.
        let clear_len = if i == 2 { 60 } else { 0 };
        envelopes.push(
            sealer
                .seal_with_clear_suffix(T, &payload, clear_len)
                .unwrap(),
        );
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

fn generate() {
    corpus::write("sealed_symmetric", &symmetric_seeds());
    let certs = sample_certificates();
    corpus::write(
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
    corpus::write("sealed_server_certificate", &servers);
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
    corpus::write("sealed_envelope", &envelopes);
}

#[test]
fn replay_sealed_envelope_corpus() {
    regenerate_when_asked();
    let seeds = corpus::replay("sealed_envelope", fuzzing::sealed_envelope);
    let (recipient, roots) = (recipient(), roots());
    assert!(
        seeds
            .iter()
            .any(|data| open(&recipient, &roots, NOW, data).is_ok()),
        "the seed corpus should hold envelopes that open"
    );
}

#[test]
fn replay_sealed_sender_certificate_corpus() {
    regenerate_when_asked();
    let seeds = corpus::replay(
        "sealed_sender_certificate",
        fuzzing::sealed_sender_certificate,
    );
    assert!(
        seeds
            .iter()
            .any(|d| SenderCertificate::from_bytes(d).is_ok())
    );
}

#[test]
fn replay_sealed_server_certificate_corpus() {
    regenerate_when_asked();
    let seeds = corpus::replay(
        "sealed_server_certificate",
        fuzzing::sealed_server_certificate,
    );
    assert!(
        seeds
            .iter()
            .any(|d| ServerCertificate::from_bytes(d).is_ok())
    );
}

#[test]
fn replay_sealed_symmetric_corpus() {
    use confide_test_support::fuzzing::symmetric::{NOW as T, SELECT_ENVELOPE, fixture_window};
    regenerate_when_asked();
    let seeds = corpus::replay("sealed_symmetric", fuzzing::sealed_symmetric);
    let mut opened = 0;
    let mut windows = 0;
    for data in &seeds {
        if data.first() == Some(&SELECT_ENVELOPE) {
            let mut d = confide_sealed::TagDirectory::new();
            d.install(1u8, fixture_window());
            opened += usize::from(
                d.open(T, &confide_sealed::TrustRoots::new(), &data[1..])
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
