//! Certified first contact: a prekey bundle travels with its owner's certificate, and the
//! initiator knows (and can insist on) the peer's certified role before anything is encrypted.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use crate::common;

use chacha20::ChaCha20Rng;
use common::{Service, T0};
use confide::{
    Address, CertifiedBundle, CertifiedBundleError, EndpointConfig, Event, ExpectedIdentity,
    Output, Role, StartError,
};
use confide_crypto::{Duration, identity::IdentityKeyPair};
use confide_sealed::{CertificateError, SenderCertificate};
use rand_core::SeedableRng;

fn certificate(
    service: &Service,
    name: &[u8],
    identity: &IdentityKeyPair,
    role: Role,
    valid: Duration,
) -> SenderCertificate {
    service.certificate_until(name, identity, role, T0.saturating_add(valid))
}

#[test]
fn the_certified_role_is_known_before_anything_is_encrypted() {
    let mut rng = ChaCha20Rng::from_seed([1; 32]);
    let service = Service::new(&mut rng);
    let (mut client, _) =
        service.endpoint(&mut rng, b"client", Role::Client, EndpointConfig::default());
    let (counselor, _) = service.endpoint(
        &mut rng,
        b"counselor",
        Role::Counselor,
        EndpointConfig::default(),
    );
    let bundle = counselor.published_bundles().one_time[0].clone();
    let address = counselor.address().clone();
    let peer = client
        .inspect_bundle(T0, &address, &bundle, ExpectedIdentity::TrustOnFirstUse)
        .unwrap();
    assert_eq!(peer.role, Role::Counselor);
    assert!(peer.safety_number.ct_equals(&confide::SafetyNumber::new(
        &client.identity(),
        &counselor.identity()
    )));
    // Inspecting changed nothing.
    assert_eq!(client.open_conversation_count(), 0);
    let started = client
        .start_conversation(
            &mut rng,
            T0,
            address,
            &bundle,
            ExpectedIdentity::TrustOnFirstUse,
        )
        .unwrap();
    assert_eq!(started.peer_role, Role::Counselor);
    assert_eq!(
        client.peer_role(started.conversation),
        Some(Role::Counselor)
    );
    // Starting encrypted nothing: no frame leaves before the app sends.
    client.confirm_persisted();
    loop {
        match client.poll_output() {
            Output::Transmit(_) => panic!("a frame left before the first message"),
            Output::Timeout(_) => break,
            _ => {}
        }
    }
}

#[test]
fn a_bundle_that_its_certificate_does_not_vouch_for_is_refused_and_changes_nothing() {
    let mut rng = ChaCha20Rng::from_seed([2; 32]);
    let service = Service::new(&mut rng);
    let (mut client, _) =
        service.endpoint(&mut rng, b"client", Role::Client, EndpointConfig::default());
    let (counselor, counselor_identity) = service.endpoint(
        &mut rng,
        b"counselor",
        Role::Counselor,
        EndpointConfig::default(),
    );
    let address = counselor.address().clone();
    let genuine = counselor.published_bundles().last_resort;
    let genuine_parsed = CertifiedBundle::from_bytes(&genuine).unwrap();
    let bundle = genuine_parsed.bundle().clone();
    let token = genuine_parsed.delivery_token().clone();

    // Mallory, a certified client of the same service, dresses up as the counselor.
    let (mallory, mallory_identity) = service.endpoint(
        &mut rng,
        b"mallory",
        Role::Client,
        EndpointConfig::default(),
    );
    let mallory_cert = certificate(
        &service,
        b"mallory",
        &mallory_identity,
        Role::Counselor,
        Duration::from_days(30),
    );
    // Her certificate with the counselor's bundle: the identities differ.
    assert_eq!(
        CertifiedBundle::new(mallory_cert.clone(), bundle.clone(), token.clone()),
        Err(CertifiedBundleError::IdentityMismatch)
    );
    // Her own certified bundle, offered for the counselor's address.
    let hers = mallory.published_bundles().last_resort;
    // A certificate for the right identity but another address.
    let elsewhere = CertifiedBundle::new(
        certificate(
            &service,
            b"somewhere-else",
            &counselor_identity,
            Role::Counselor,
            Duration::from_days(30),
        ),
        bundle.clone(),
        token.clone(),
    )
    .unwrap()
    .to_bytes();
    // A certificate from another service, which we do not trust.
    let other_service = Service::new(&mut rng);
    let untrusted = CertifiedBundle::new(
        certificate(
            &other_service,
            b"counselor",
            &counselor_identity,
            Role::Counselor,
            Duration::from_days(30),
        ),
        bundle.clone(),
        token.clone(),
    )
    .unwrap()
    .to_bytes();
    // A certificate that expired longer ago than the grace period.
    let expired = CertifiedBundle::new(
        certificate(
            &service,
            b"counselor",
            &counselor_identity,
            Role::Counselor,
            Duration::from_days(1),
        ),
        bundle.clone(),
        token.clone(),
    )
    .unwrap()
    .to_bytes();
    let late = T0.saturating_add(
        Duration::from_days(1).saturating_add(confide::consts::SENDER_CERTIFICATE_GRACE),
    );
    // A bare bundle with no certificate, and the genuine one with a trailing byte.
    let bare = bundle.to_bytes();
    let mut trailing = genuine.clone();
    trailing.push(0);

    let cases: Vec<(&str, Vec<u8>, confide_crypto::Timestamp, StartError)> = vec![
        (
            "another party's certified bundle",
            hers,
            T0,
            StartError::Certified(CertifiedBundleError::AddressMismatch),
        ),
        (
            "a certificate for another address",
            elsewhere,
            T0,
            StartError::Certified(CertifiedBundleError::AddressMismatch),
        ),
        (
            "an untrusted service",
            untrusted,
            T0,
            // Both services name root key id 1: the signature is what fails.
            StartError::Certified(CertifiedBundleError::Certificate(
                CertificateError::BadRootSignature,
            )),
        ),
        (
            "expired beyond grace",
            expired,
            late,
            StartError::Certified(CertifiedBundleError::Certificate(
                CertificateError::SenderExpired,
            )),
        ),
        (
            "no certificate",
            bare,
            T0,
            StartError::Certified(CertifiedBundleError::Malformed),
        ),
        (
            "trailing byte",
            trailing,
            T0,
            StartError::Certified(CertifiedBundleError::Malformed),
        ),
    ];
    let _ = client
        .export_state(&mut rng, &confide::StorageKey::new([5; 32]), b"account")
        .unwrap();
    client.confirm_persisted();
    assert!(!client.needs_persist());
    for (what, bytes, now, expected) in cases {
        let inspected = client
            .inspect_bundle(now, &address, &bytes, ExpectedIdentity::TrustOnFirstUse)
            .map(|p| p.role);
        assert_eq!(inspected, Err(expected), "{what}: inspect");
        let started = client.start_conversation(
            &mut rng,
            now,
            address.clone(),
            &bytes,
            ExpectedIdentity::TrustOnFirstUse,
        );
        assert_eq!(started.map(|s| s.peer_role), Err(expected), "{what}: start");
        assert_eq!(client.open_conversation_count(), 0, "{what}");
        assert!(!client.needs_persist(), "{what}: nothing changed");
    }
    // The genuine bundle still works, within the grace period too.
    let within_grace = T0.saturating_add(Duration::from_days(300));
    let started = client
        .start_conversation(
            &mut rng,
            within_grace,
            Address::new(b"counselor").unwrap(),
            &genuine,
            ExpectedIdentity::TrustOnFirstUse,
        )
        .unwrap();
    assert_eq!(started.peer_role, Role::Counselor);
}

#[test]
fn a_renewed_certificate_asks_for_new_bundles_that_carry_it() {
    let mut rng = ChaCha20Rng::from_seed([3; 32]);
    let service = Service::new(&mut rng);
    let (mut counselor, identity) = service.endpoint(
        &mut rng,
        b"counselor",
        Role::Counselor,
        EndpointConfig::default(),
    );
    while !matches!(counselor.poll_output(), Output::Timeout(_)) {}
    let renewed = certificate(
        &service,
        b"counselor",
        &identity,
        Role::Counselor,
        Duration::from_days(400),
    );
    counselor.set_certificate(&mut rng, T0, renewed).unwrap();
    let mut events = Vec::new();
    loop {
        match counselor.poll_output() {
            Output::Event(e) => events.push(e),
            Output::Timeout(_) => break,
            _ => {}
        }
    }
    assert!(events.contains(&Event::BundlesChanged));
    let published = counselor.published_bundles();
    for bytes in published.one_time.iter().chain([&published.last_resort]) {
        let certified = CertifiedBundle::from_bytes(bytes).unwrap();
        assert_eq!(
            certified.certificate().expires_at(),
            T0.saturating_add(Duration::from_days(400))
        );
    }
}

/// Polls until the deadline, persisting when asked; returns the frames.
fn drain(
    e: &mut confide::Endpoint,
    rng: &mut ChaCha20Rng,
    stored: &mut Vec<u8>,
) -> Vec<confide::Transmit> {
    let key = confide::StorageKey::new([6; 32]);
    let mut out = Vec::new();
    loop {
        match e.poll_output() {
            Output::Transmit(tx) => out.push(tx),
            Output::Event(Event::PersistRequired) => {
                *stored = e.export_state(rng, &key, b"account").unwrap();
                e.confirm_persisted();
            }
            Output::Timeout(_) => return out,
            _ => {}
        }
    }
}

#[test]
fn every_frame_carries_its_recipients_delivery_token_across_restarts() {
    let mut rng = ChaCha20Rng::from_seed([4; 32]);
    let service = Service::new(&mut rng);
    let (mut client, _) =
        service.endpoint(&mut rng, b"client", Role::Client, EndpointConfig::default());
    let (mut counselor, _) = service.endpoint(
        &mut rng,
        b"counselor",
        Role::Counselor,
        EndpointConfig::default(),
    );
    let (mut client_stored, mut counselor_stored) = (Vec::new(), Vec::new());
    drain(&mut client, &mut rng, &mut client_stored);
    drain(&mut counselor, &mut rng, &mut counselor_stored);
    let client_verifier = client.delivery_token_verifier();
    let counselor_verifier = counselor.delivery_token_verifier();
    let checks = |tx: &confide::Transmit, verifier: &confide_sealed::TokenVerifier| {
        tx.token
            .as_ref()
            .is_some_and(|t| confide_sealed::relay_check(verifier, t.expose()))
    };

    let bundle = counselor.published_bundles().one_time[0].clone();
    let conv = client
        .start_conversation(
            &mut rng,
            T0,
            counselor.address().clone(),
            &bundle,
            ExpectedIdentity::TrustOnFirstUse,
        )
        .unwrap()
        .conversation;
    let mut now = T0;
    let mut to_counselor = Vec::new();
    let mut to_client = Vec::new();
    for round in 0..3 {
        client
            .send(&mut rng, now, conv, format!("client {round}").as_bytes())
            .unwrap();
        let out = drain(&mut client, &mut rng, &mut client_stored);
        assert!(!out.is_empty());
        for tx in &out {
            // The first frame already carries the counselor's token, from its bundle.
            assert!(
                checks(tx, &counselor_verifier),
                "round {round}: client frame"
            );
            assert!(!checks(tx, &client_verifier));
        }
        to_counselor.extend(out);
        for tx in to_counselor.drain(..) {
            counselor.handle_input(
                &mut rng,
                confide::Input::Receive {
                    bytes: &tx.frame,
                    now,
                },
            );
        }
        let out = drain(&mut counselor, &mut rng, &mut counselor_stored);
        assert!(!out.is_empty(), "the counselor acknowledges");
        for tx in &out {
            // The counselor learned the client's token from the client's first frame.
            assert!(
                checks(tx, &client_verifier),
                "round {round}: counselor frame"
            );
        }
        to_client.extend(out);
        let reply_conv = counselor.conversations()[0];
        counselor
            .send(
                &mut rng,
                now,
                reply_conv,
                format!("counselor {round}").as_bytes(),
            )
            .unwrap();
        let out = drain(&mut counselor, &mut rng, &mut counselor_stored);
        assert!(out.iter().all(|tx| checks(tx, &client_verifier)));
        to_client.extend(out);
        for tx in to_client.drain(..) {
            client.handle_input(
                &mut rng,
                confide::Input::Receive {
                    bytes: &tx.frame,
                    now,
                },
            );
        }
        for tx in drain(&mut client, &mut rng, &mut client_stored) {
            assert!(checks(&tx, &counselor_verifier));
            to_counselor.push(tx);
        }
        now = now.saturating_add(Duration::from_secs(5));
    }
    // Tokens survive an export and import on both sides.
    let key = confide::StorageKey::new([6; 32]);
    let mut restored = confide::Endpoint::import_state(&key, b"account", &client_stored).unwrap();
    restored
        .send(&mut rng, now, conv, b"after a restart")
        .unwrap();
    let out = drain(&mut restored, &mut rng, &mut client_stored);
    assert!(!out.is_empty());
    assert!(out.iter().all(|tx| checks(tx, &counselor_verifier)));
    assert_eq!(
        restored.delivery_token_verifier().to_bytes(),
        client_verifier.to_bytes()
    );
}
