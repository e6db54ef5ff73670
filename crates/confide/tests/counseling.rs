//! What counseling needs beyond text, as the users and an attacker see it: voice notes and
//! other attachments, screenshot notices, referrals with consent, and verification by a
//! short code (`docs/endpoint.md`, "Typed content", "Referrals", "Verification with a short
//! code").
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use crate::common;

use common::{Service, World, connect, lossy, pair};
use confide::{
    Address, CommandError, ConversationId, Endpoint, EndpointConfig, Event, ReceivedReferral,
    ReferralError, Role, ShortCode, StartError, Urgency, Verification,
};
use confide_attachment::{AttachmentDecryptor, AttachmentPointer, BlobId, ContentType};
use confide_crypto::{Duration, identity::IdentityKeyPair};

fn settle(world: &mut World, d: Duration) {
    let until = world.now().saturating_add(d);
    world.run_until(until);
}

/// Client (0) and counselor (1) with an established conversation: the client wrote, the
/// counselor answered. Returns (client's conversation, counselor's conversation).
fn established(seed: u8) -> (World, Service, ConversationId, ConversationId) {
    let (mut world, service) = pair(seed, lossy(0, 0, 0));
    let conv = connect(&mut world);
    world.send(0, conv, b"hello, is anyone there?");
    settle(&mut world, Duration::from_secs(5));
    let counselor_conv = world.endpoint(1).conversations()[0];
    world.send(1, counselor_conv, b"yes, I'm here");
    settle(&mut world, Duration::from_secs(5));
    (world, service, conv, counselor_conv)
}

fn events(world: &World, n: usize) -> &[Event] {
    &world.live[n].events
}

/// A voice note: the pointer travels end to end, the blob decrypts with it, and unsend tells
/// the recipient to erase it.
#[test]
fn a_voice_note_arrives_as_an_attachment_and_unsend_erases_it() {
    let (mut world, _service, conv, counselor_conv) = established(41);
    let audio: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
    let (blob, encrypted) = confide_attachment::encrypt(&mut world.rng, &audio).unwrap();
    let blob_id = BlobId::random(&mut world.rng);
    let pointer = AttachmentPointer::new(
        blob_id,
        &encrypted,
        ContentType::VoiceNote,
        Some(Duration::from_millis(3_200)),
    )
    .unwrap();
    let id = world.command(0, |e, now, rng| {
        e.send_attachment(rng, now, conv, &pointer).unwrap()
    });
    settle(&mut world, Duration::from_secs(5));
    let received = events(&world, 1)
        .iter()
        .find_map(|e| match e {
            Event::Attachment {
                conversation,
                id: got,
                sender_role,
                pointer,
                ..
            } if *conversation == counselor_conv && *got == id => {
                assert_eq!(*sender_role, Role::Client);
                Some(pointer.clone())
            }
            _ => None,
        })
        .expect("the counselor got the voice note");
    assert_eq!(received, pointer);
    assert_eq!(received.duration(), Some(Duration::from_millis(3_200)));
    let mut decryptor = AttachmentDecryptor::for_pointer(&received).unwrap();
    let mut plain = Vec::new();
    let mut input = &blob[..];
    while let Some(out) = decryptor.push(&mut input).unwrap() {
        plain.extend_from_slice(out);
    }
    decryptor.finish().unwrap();
    assert_eq!(plain, audio);
    // The sender saw it delivered like a text.
    assert!(world.live[0].delivered >= 1);

    world.command(0, |e, now, rng| e.unsend(rng, now, conv, id).unwrap());
    settle(&mut world, Duration::from_secs(5));
    assert!(
        events(&world, 1)
            .iter()
            .any(|e| matches!(e, Event::Deleted { id: got, .. } if *got == id)),
        "the recipient is told to erase the voice note"
    );
}

#[test]
fn a_screenshot_notice_reaches_the_peer_as_its_own_kind() {
    let (mut world, _service, conv, counselor_conv) = established(42);
    let id = world.command(0, |e, now, rng| {
        e.send_screenshot_notice(rng, now, conv).unwrap()
    });
    settle(&mut world, Duration::from_secs(5));
    assert!(events(&world, 1).iter().any(|e| matches!(
        e,
        Event::ScreenshotTaken { conversation, id: got, sender_role: Role::Client, .. }
            if *conversation == counselor_conv && *got == id
    )));
    // Not a text: nothing reached the counselor's text log.
    assert_eq!(world.live[1].received.len(), 1);
}

fn enter(world: &mut World, n: usize, conversation: ConversationId, code: &ShortCode) {
    world.command(n, |e, now, rng| {
        e.enter_code(rng, now, conversation, code).unwrap();
    });
}

#[test]
fn the_same_code_verifies_both_sides_and_the_verification_is_stored() {
    let (mut world, _service, conv, counselor_conv) = established(43);
    assert_eq!(world.endpoint(0).verification(conv), None);
    let code = ShortCode::generate(&mut world.rng);
    // The counselor reads it out; the client types it, with a space.
    let typed = ShortCode::parse(&code.to_string()).unwrap();
    enter(&mut world, 1, counselor_conv, &code);
    settle(&mut world, Duration::from_secs(5));
    assert!(
        !events(&world, 1)
            .iter()
            .any(|e| matches!(e, Event::CodeVerified { .. })),
        "nothing is verified before the client entered the code"
    );
    enter(&mut world, 0, conv, &typed);
    settle(&mut world, Duration::from_secs(5));
    for (n, c) in [(0, conv), (1, counselor_conv)] {
        assert!(
            events(&world, n)
                .iter()
                .any(|e| matches!(e, Event::CodeVerified { conversation } if *conversation == c)),
            "side {n} verified"
        );
        assert_eq!(world.endpoint(n).verification(c), Some(Verification::Code));
    }
    // Stored: a load of the persisted records says the same.
    let loaded = Endpoint::load_records(&world.key, b"account", &world.stores[0]).unwrap();
    assert_eq!(loaded.verification(conv), Some(Verification::Code));
}

#[test]
fn different_codes_fail_on_both_sides_and_attempts_run_out() {
    let (mut world, _service, conv, counselor_conv) = established(44);
    let left = world.endpoint(0).code_attempts_left(conv).unwrap();
    assert_eq!(left, confide::consts::MAX_CODE_FAILURES);
    for attempt in 1..=left {
        enter(
            &mut world,
            1,
            counselor_conv,
            &ShortCode::parse("111111").unwrap(),
        );
        enter(&mut world, 0, conv, &ShortCode::parse("111112").unwrap());
        settle(&mut world, Duration::from_secs(5));
        for (n, c) in [(0, conv), (1, counselor_conv)] {
            let mismatches: Vec<u8> = events(&world, n)
                .iter()
                .filter_map(|e| match e {
                    Event::CodeMismatch {
                        conversation,
                        attempts_left,
                    } if *conversation == c => Some(*attempts_left),
                    _ => None,
                })
                .collect();
            assert_eq!(
                mismatches.len(),
                usize::from(attempt),
                "side {n} told plainly, once per attempt: {:?}",
                events(&world, n)
            );
            assert_eq!(*mismatches.last().unwrap(), left - attempt);
            assert_eq!(world.endpoint(n).verification(c), None);
        }
    }
    let refused = world.command(0, |e, now, rng| {
        e.enter_code(rng, now, conv, &ShortCode::parse("111111").unwrap())
    });
    assert_eq!(
        refused,
        Err(CommandError::CodeAttemptsExhausted {
            max: confide::consts::MAX_CODE_FAILURES
        })
    );
    // The count is stored: a restarted app does not get fresh attempts.
    let loaded = Endpoint::load_records(&world.key, b"account", &world.stores[0]).unwrap();
    assert_eq!(loaded.code_attempts_left(conv), Some(0));
    assert!(
        !events(&world, 0)
            .iter()
            .chain(events(&world, 1))
            .any(|e| matches!(e, Event::CodeVerified { .. }))
    );
}

/// A crisis service (node 2), certified as a counselor by the same service.
fn add_party(world: &mut World, service: &Service, name: &[u8]) -> (usize, Vec<u8>, Address) {
    let (e, identity) = service.endpoint(
        &mut world.rng,
        name,
        Role::Counselor,
        EndpointConfig::default(),
    );
    let n = world.add(e, identity);
    let bundle = world.endpoint(n).published_bundles().one_time[0].clone();
    (n, bundle, Address::new(name).unwrap())
}

fn referral_event(world: &World, conv: ConversationId) -> (confide::MessageId, ReceivedReferral) {
    events(world, 0)
        .iter()
        .find_map(|e| match e {
            Event::Referral {
                conversation,
                id,
                sender_role: Role::Counselor,
                referral,
                ..
            } if *conversation == conv => Some((*id, referral.clone())),
            _ => None,
        })
        .expect("the client got the referral")
}

#[test]
fn an_urgent_referral_accepted_starts_a_verified_conversation_and_the_referrer_learns_only_that() {
    let (mut world, service, conv, counselor_conv) = established(45);
    let (crisis, crisis_bundle, crisis_address) = add_party(&mut world, &service, b"crisis-line");
    let sent = world.command(1, |e, now, rng| {
        e.refer(
            rng,
            now,
            counselor_conv,
            &crisis_bundle,
            Urgency::Urgent,
            b"They can talk with you tonight.",
        )
        .unwrap()
    });
    settle(&mut world, Duration::from_secs(5));
    let (id, referral) = referral_event(&world, conv);
    assert_eq!(id, sent);
    assert_eq!(referral.urgency, Urgency::Urgent);
    assert_eq!(referral.role, Role::Counselor);
    assert_eq!(referral.address, crisis_address);
    assert_eq!(referral.note.as_bytes(), b"They can talk with you tonight.");
    assert!(!format!("{referral:?}").contains("tonight"));

    let started = world.command(0, |e, now, rng| {
        e.accept_referral(
            rng,
            now,
            conv,
            id,
            &referral,
            Some(b"I have not slept for days."),
        )
        .unwrap()
    });
    assert_eq!(started.peer_role, Role::Counselor);
    assert_eq!(
        world.endpoint(0).verification(started.conversation),
        Some(Verification::Referral)
    );
    settle(&mut world, Duration::from_secs(5));
    // Stored as such: a load of the persisted records says the same.
    let loaded = Endpoint::load_records(&world.key, b"account", &world.stores[0]).unwrap();
    assert_eq!(
        loaded.verification(started.conversation),
        Some(Verification::Referral)
    );
    // The crisis service got the client's summary in a new conversation.
    let crisis_texts: Vec<&[u8]> = world.live[crisis]
        .received
        .iter()
        .map(|(_, t)| t.as_slice())
        .collect();
    assert_eq!(crisis_texts, [&b"I have not slept for days."[..]]);
    // The referrer learned "accepted" and nothing of the summary.
    assert!(events(&world, 1).iter().any(|e| matches!(
        e,
        Event::ReferralAnswered { conversation, referral, accepted: true }
            if *conversation == counselor_conv && *referral == sent
    )));
    assert!(
        !world.live[1]
            .received
            .iter()
            .any(|(_, t)| t.starts_with(b"I have not slept")),
        "the summary goes to the new party only"
    );
}

#[test]
fn a_declined_referral_starts_nothing_and_says_declined() {
    let (mut world, service, conv, counselor_conv) = established(46);
    let (_, crisis_bundle, _) = add_party(&mut world, &service, b"crisis-line");
    let sent = world.command(1, |e, now, rng| {
        e.refer(
            rng,
            now,
            counselor_conv,
            &crisis_bundle,
            Urgency::Routine,
            b"",
        )
        .unwrap()
    });
    settle(&mut world, Duration::from_secs(5));
    let (id, _) = referral_event(&world, conv);
    world.command(0, |e, now, rng| {
        e.decline_referral(rng, now, conv, id).unwrap()
    });
    settle(&mut world, Duration::from_secs(5));
    assert_eq!(world.endpoint(0).conversations(), [conv]);
    assert!(events(&world, 1).iter().any(|e| matches!(
        e,
        Event::ReferralAnswered { referral, accepted: false, .. } if *referral == sent
    )));
}

#[test]
fn a_referral_naming_an_uncertified_or_unfit_party_is_refused_when_sent() {
    let (mut world, service, _conv, counselor_conv) = established(47);
    // Certified by another service the counselor's app does not trust.
    let other = Service::with_root_key_id(&mut world.rng, 2, Duration::from_days(365));
    let (stranger, identity) = other.endpoint(
        &mut world.rng,
        b"stranger",
        Role::Counselor,
        EndpointConfig::default(),
    );
    let _ = identity;
    let stranger_bundle = stranger.published_bundles().one_time[0].clone();
    // Certified, but as a client.
    let (_, other_client) = {
        let (e, identity) = service.endpoint(
            &mut world.rng,
            b"another-client",
            Role::Client,
            EndpointConfig::default(),
        );
        (identity, e.published_bundles().one_time[0].clone())
    };
    // The client being referred, to itself.
    let own_bundle = world.endpoint(0).published_bundles().one_time[1].clone();
    let cases = [
        (stranger_bundle, "another service"),
        (other_client, "a client"),
        (own_bundle, "the referred client"),
        (vec![0x01, 0x00], "garbage"),
    ];
    for (party, what) in cases {
        let before = world.endpoint(1).outbox_len();
        let refused = world.command(1, |e, now, rng| {
            e.refer(rng, now, counselor_conv, &party, Urgency::Urgent, b"")
        });
        assert!(
            matches!(refused, Err(CommandError::Referral(_))),
            "{what}: {refused:?}"
        );
        assert_eq!(
            world.endpoint(1).outbox_len(),
            before,
            "{what}: nothing sent"
        );
    }
    // A client cannot refer at all.
    let (_, bundle, _) = add_party(&mut world, &service, b"crisis-line");
    let client_conv = world.endpoint(0).conversations()[0];
    let refused = world.command(0, |e, now, rng| {
        e.refer(rng, now, client_conv, &bundle, Urgency::Routine, b"")
    });
    assert_eq!(refused, Err(CommandError::NotAllowedToRefer));
}

/// The counselor's app trusts a partner service the client's app does not: its referral to
/// the partner's counselor reaches the client, which refuses it (typed event, nothing shown,
/// nothing started), and the conversation goes on.
#[test]
fn a_referral_the_recipient_cannot_verify_is_refused_on_arrival() {
    let mut world = World::new(48, lossy(0, 0, 0));
    let service = Service::new(&mut world.rng);
    let partner = Service::with_root_key_id(&mut world.rng, 2, Duration::from_days(365));
    let (client, ci) = service.endpoint(
        &mut world.rng,
        b"client-1",
        Role::Client,
        EndpointConfig::default(),
    );
    let mut both = service.roots.clone();
    let (id, key) = partner.root();
    both.add_root(id, key).unwrap();
    let ki = IdentityKeyPair::generate(&mut world.rng);
    let counselor = Endpoint::new(
        &mut world.rng,
        common::T0,
        ki.clone(),
        Address::new(b"counselor-1").unwrap(),
        service.certificate(b"counselor-1", &ki, Role::Counselor),
        both,
        EndpointConfig::default(),
    )
    .unwrap();
    world.add(client, ci);
    world.add(counselor, ki);
    let conv = connect(&mut world);
    world.send(0, conv, b"hello");
    settle(&mut world, Duration::from_secs(5));
    let counselor_conv = world.endpoint(1).conversations()[0];
    let (partner_counselor, _) = partner.endpoint(
        &mut world.rng,
        b"partner-counselor",
        Role::Counselor,
        EndpointConfig::default(),
    );
    let party = partner_counselor.published_bundles().one_time[0].clone();
    world.command(1, |e, now, rng| {
        e.refer(rng, now, counselor_conv, &party, Urgency::Urgent, b"")
            .unwrap()
    });
    settle(&mut world, Duration::from_secs(5));
    assert!(
        events(&world, 0).iter().any(|e| matches!(
            e,
            Event::ReferralRefused {
                conversation,
                reason: ReferralError::Certificate(_)
            } if *conversation == conv
        )),
        "the client is told a referral was refused"
    );
    assert!(
        !events(&world, 0)
            .iter()
            .any(|e| matches!(e, Event::Referral { .. }))
    );
    assert_eq!(world.endpoint(0).conversations(), [conv]);
    // The conversation goes on.
    world.send(1, counselor_conv, b"still here");
    settle(&mut world, Duration::from_secs(5));
    assert!(
        world.live[0]
            .received
            .iter()
            .any(|(_, t)| t == b"still here")
    );
}

/// A referral accepted after the party's certificate ran out (beyond its grace) starts
/// nothing: the party is checked again when the client accepts.
#[test]
fn accepting_checks_the_party_again() {
    let (mut world, service, conv, counselor_conv) = established(49);
    let identity = IdentityKeyPair::generate(&mut world.rng);
    let expires = world.now().saturating_add(Duration::from_days(1));
    let now = world.now();
    let crisis = Endpoint::new(
        &mut world.rng,
        now,
        identity.clone(),
        Address::new(b"crisis-line").unwrap(),
        service.certificate_until(b"crisis-line", &identity, Role::Counselor, expires),
        service.roots.clone(),
        EndpointConfig::default(),
    )
    .unwrap();
    let party = crisis.published_bundles().one_time[0].clone();
    world.command(1, |e, now, rng| {
        e.refer(rng, now, counselor_conv, &party, Urgency::Routine, b"")
            .unwrap()
    });
    settle(&mut world, Duration::from_secs(5));
    let (id, referral) = referral_event(&world, conv);
    let later = world.now().saturating_add(Duration::from_days(9));
    let _ = world.sim.run_until(&mut world.rng, later, 1_000_000);
    world.handle_events();
    assert!(world.now() >= later);
    let refused = world.command(0, |e, now, rng| {
        e.accept_referral(rng, now, conv, id, &referral, None)
    });
    assert!(
        matches!(
            refused,
            Err(StartError::Referral(ReferralError::Certificate(_)))
        ),
        "{refused:?}"
    );
    assert_eq!(world.endpoint(0).conversations(), [conv]);
}

mod code_exchange_properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// Whatever the network does (delays, reordering, duplicates, loss that the
        /// retransmissions repair) and whichever side enters its code first, both sides reach
        /// the same verdict: verified when the codes are equal, a mismatch on both otherwise.
        #[test]
        fn both_sides_reach_the_same_verdict(
            seed in 50u8..250,
            reorder in 0u32..60,
            dup in 0u32..30,
            loss in 0u32..20,
            counselor_first in any::<bool>(),
            gap_ms in 0u64..3_000,
            same in any::<bool>(),
        ) {
            let (mut world, _service) = pair(seed, lossy(loss, dup, reorder));
            let conv = connect(&mut world);
            world.send(0, conv, b"hello");
            // Until the first frame arrives: at 18% loss its first four copies can all be lost,
            // and the retransmission backoff then passes 30 s (seed 164, found by this test).
            let limit = world.now().saturating_add(Duration::from_secs(600));
            prop_assert!(world.run_while(limit, |w| !w.endpoint(1).conversations().is_empty()));
            settle(&mut world, Duration::from_secs(30));
            let counselor_conv = world.endpoint(1).conversations()[0];
            let code = ShortCode::parse("482913").unwrap();
            let other = ShortCode::parse(if same { "482913" } else { "482914" }).unwrap();
            let order = if counselor_first {
                [(1, counselor_conv, code), (0, conv, other)]
            } else {
                [(0, conv, other), (1, counselor_conv, code)]
            };
            for (i, (n, c, code)) in order.iter().enumerate() {
                if i == 1 {
                    settle(&mut world, Duration::from_millis(gap_ms));
                }
                enter(&mut world, *n, *c, code);
            }
            settle(&mut world, Duration::from_secs(120));
            for (n, c) in [(0, conv), (1, counselor_conv)] {
                let verified = events(&world, n)
                    .iter()
                    .filter(|e| matches!(e, Event::CodeVerified { conversation } if *conversation == c))
                    .count();
                let mismatched = events(&world, n)
                    .iter()
                    .filter(|e| matches!(e, Event::CodeMismatch { conversation, .. } if *conversation == c))
                    .count();
                prop_assert_eq!((verified, mismatched), if same { (1, 0) } else { (0, 1) }, "side {}", n);
            }
        }
    }
}
