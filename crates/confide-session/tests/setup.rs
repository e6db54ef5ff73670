//! Session setup: bundles, verification, the hybrid handshake, prekey consumption and replays.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use crate::common;

use chacha20::ChaCha20Rng;
use common::{NOW, Pair, Party, is_prekey, rng};
use confide_crypto::identity::IdentityKeyPair;
use confide_session::{
    BundleError, DecryptError, ExpectedIdentity, IdentityChangePolicy, KemPreKeyKind, PreKeyBundle,
    PreKeyStore, Session, SessionRecord, Side,
    consts::{MAX_RETAINED_SIGNED_PREKEYS, MAX_SEEN_BASE_KEYS_PER_SIGNED_PREKEY},
};

/// Runs a first message from `alice` over `bundle` into a fresh record of `bob`; returns
/// Bob's record.
fn first_contact(
    rng: &mut chacha20::ChaCha20Rng,
    alice: &Party,
    bob: &mut Party,
    bundle: &PreKeyBundle,
) -> (SessionRecord, SessionRecord) {
    let mut a = SessionRecord::with_session(alice.initiate(rng, bundle));
    let m = a.encrypt(rng, b"first").unwrap();
    assert!(is_prekey(&m));
    let mut b = SessionRecord::new();
    let got = bob.decrypt(&mut b, &m).unwrap();
    assert_eq!(&got.plaintext[..], b"first");
    assert!(got.new_session);
    assert_eq!(got.remote_identity, alice.id.public());
    let reply = b.encrypt(rng, b"reply").unwrap();
    assert!(!is_prekey(&reply));
    let mut alice_store = alice.clone();
    let got = alice_store.decrypt(&mut a, &reply).unwrap();
    assert_eq!(&got.plaintext[..], b"reply");
    assert!(!got.new_session);
    assert_eq!(got.remote_identity, bob.id.public());
    (a, b)
}

#[test]
fn setup_with_and_without_one_time_prekeys() {
    let mut rng = rng(1);
    let alice = Party::new(&mut rng, 0, 0);
    // Two one-time X25519 prekeys, one one-time KEM prekey: bundles are
    // [one-time KEM + OTK, last-resort KEM + the leftover OTK, the bare last-resort bundle].
    // Only the last may be handed out more than once, and it holds no one-time key.
    let mut bob = Party::new(&mut rng, 2, 1);
    let bundles = bob.store.bundles();
    assert_eq!(bundles.len(), 3);
    assert_eq!(
        bundles[2].to_bytes(),
        bob.store.last_resort_bundle().unwrap().to_bytes()
    );
    assert_eq!(bundles[2].one_time_prekey_id(), None);
    assert_eq!(bundles[0].kem_kind(), KemPreKeyKind::OneTime);
    assert!(bundles[0].one_time_prekey_id().is_some());
    assert_eq!(bundles[1].kem_kind(), KemPreKeyKind::LastResort);
    assert!(bundles[1].one_time_prekey_id().is_some());
    let bare = bob.store.last_resort_bundle().unwrap();
    assert_eq!(bare.kem_kind(), KemPreKeyKind::LastResort);
    assert_eq!(bare.one_time_prekey_id(), None);

    // One-time KEM + one-time X25519: both consumed.
    first_contact(&mut rng, &alice, &mut bob, &bundles[0]);
    assert_eq!(bob.store.one_time_prekey_count(), 1);
    assert_eq!(bob.store.one_time_kem_prekey_count(), 0);
    // Last-resort KEM + one-time X25519: the OTK is consumed, the last-resort key is not.
    first_contact(&mut rng, &alice, &mut bob, &bundles[1]);
    assert_eq!(bob.store.one_time_prekey_count(), 0);
    assert_eq!(bob.store.one_time_kem_prekey_count(), 0);
    // No one-time keys at all, several times over the same last-resort bundle.
    for _ in 0..2 {
        first_contact(&mut rng, &alice, &mut bob, &bare);
    }
    // The store now only publishes the last-resort bundle.
    let left = bob.store.bundles();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].to_bytes(), bare.to_bytes());
}

#[test]
fn one_time_kem_without_one_time_x25519() {
    let mut rng = rng(2);
    let alice = Party::new(&mut rng, 0, 0);
    let mut bob = Party::new(&mut rng, 0, 2);
    let bundles = bob.store.bundles();
    assert_eq!(bundles.len(), 3);
    assert_eq!(bundles[0].one_time_prekey_id(), None);
    assert_eq!(bundles[0].kem_kind(), KemPreKeyKind::OneTime);
    first_contact(&mut rng, &alice, &mut bob, &bundles[1]);
    assert_eq!(bob.store.one_time_kem_prekey_count(), 1);
    assert_eq!(bob.store.bundles().len(), 2);
}

#[test]
fn bundle_verification_refusals() {
    let mut rng = rng(3);
    let alice = Party::new(&mut rng, 0, 0);
    let bob = Party::new(&mut rng, 1, 1);
    let carol = IdentityKeyPair::generate(&mut rng);
    let bytes = bob.store.bundles()[0].to_bytes();
    let parse = |b: &[u8]| PreKeyBundle::from_bytes(b).unwrap();

    // Accepted: TOFU and the exact identity.
    assert!(
        parse(&bytes)
            .verify(ExpectedIdentity::TrustOnFirstUse, &alice.id.public())
            .is_ok()
    );
    assert!(
        parse(&bytes)
            .verify(
                ExpectedIdentity::Exactly(&bob.id.public()),
                &alice.id.public()
            )
            .is_ok()
    );
    // Another identity than expected.
    assert_eq!(
        parse(&bytes)
            .verify(
                ExpectedIdentity::Exactly(&carol.public()),
                &alice.id.public()
            )
            .unwrap_err(),
        BundleError::UnexpectedIdentity
    );
    // Our own bundle.
    assert_eq!(
        parse(&bytes)
            .verify(ExpectedIdentity::TrustOnFirstUse, &bob.id.public())
            .unwrap_err(),
        BundleError::OwnIdentity
    );

    // Layout: version(1) identity(128) spk_id(4) spk(32) spk_sig(64) kem_id(4) kind(1)
    // kem(1184) kem_sig(64) ...
    let spk_sig_at = 1 + 128 + 4 + 32;
    let kem_sig_at = spk_sig_at + 64 + 4 + 1 + 1184;
    for (at, expected) in [
        (spk_sig_at + 10, BundleError::BadSignedPreKeySignature),
        // The signed prekey itself: the signature no longer matches it.
        (1 + 128 + 4 + 3, BundleError::BadSignedPreKeySignature),
        // The signed prekey id is signed too.
        (1 + 128 + 3, BundleError::BadSignedPreKeySignature),
        (kem_sig_at + 20, BundleError::BadKemPreKeySignature),
        // The KEM prekey id is signed.
        (spk_sig_at + 64 + 3, BundleError::BadKemPreKeySignature),
    ] {
        let mut b = bytes.clone();
        b[at] ^= 0x01;
        assert_eq!(
            parse(&b)
                .verify(ExpectedIdentity::TrustOnFirstUse, &alice.id.public())
                .unwrap_err(),
            expected,
            "flip at {at}"
        );
    }

    // A bundle whose KEM prekey is signed by someone else (carol signs her own key, then
    // the key and signature are pasted into bob's bundle).
    let carol_store = confide_session::PreKeyStore::new(carol.clone(), &mut rng, NOW);
    let carol_bytes = carol_store.last_resort_bundle().unwrap().to_bytes();
    let mut mixed = bytes.clone();
    let kem_at = spk_sig_at + 64;
    let kem_len = 4 + 1 + 1184 + 64;
    mixed[kem_at..kem_at + kem_len].copy_from_slice(&carol_bytes[kem_at..kem_at + kem_len]);
    assert_eq!(
        parse(&mixed)
            .verify(ExpectedIdentity::TrustOnFirstUse, &alice.id.public())
            .unwrap_err(),
        BundleError::BadKemPreKeySignature
    );
}

#[test]
fn initiator_sends_prekey_messages_until_reply() {
    let mut p = Pair::new(4);
    let session = p.a.current().unwrap();
    assert_eq!(session.role(), Side::Initiator);
    assert!(session.awaiting_reply());
    let early: Vec<Vec<u8>> = (0..3).map(|i| p.a_sends(&[i; 5])).collect();
    assert!(early.iter().all(|m| is_prekey(m)));
    // Bob gets the second one first: it starts the session; the others continue it.
    let got = p.b_gets(&early[1]).unwrap();
    assert!(got.new_session);
    assert_eq!(p.b.current().unwrap().role(), Side::Responder);
    assert!(!p.b.current().unwrap().awaiting_reply());
    // Alice keeps sending prekey messages while no reply has arrived.
    let more = p.a_sends(b"still waiting");
    assert!(is_prekey(&more));
    for (m, want) in [(&early[0], vec![0; 5]), (&early[2], vec![2; 5])] {
        let got = p.b_gets(m).unwrap();
        assert!(!got.new_session);
        assert_eq!(&got.plaintext[..], &want[..]);
    }
    assert_eq!(&p.b_gets(&more).unwrap().plaintext[..], b"still waiting");
    // One prekey was consumed, once.
    assert_eq!(p.bob.store.one_time_prekey_count(), 2);
    assert_eq!(p.bob.store.one_time_kem_prekey_count(), 2);

    let reply = p.b_sends(b"here");
    assert!(!is_prekey(&reply));
    p.a_gets(&reply).unwrap();
    assert!(!p.a.current().unwrap().awaiting_reply());
    for i in 0..3 {
        let m = p.a_sends(&[i]);
        assert!(!is_prekey(&m), "ratchet messages after the reply");
        assert_eq!(&p.b_gets(&m).unwrap().plaintext[..], &[i]);
    }
}

#[test]
fn one_time_prekey_consumed_only_after_authentication() {
    let mut p = Pair::new(5);
    let first = p.a_sends(b"first");
    let count = p.bob.store.one_time_prekey_count();
    let kem_count = p.bob.store.one_time_kem_prekey_count();
    let store_before = p.bob.store.to_bytes();
    let record_before = p.b.to_bytes();
    // Tamper with the encrypted body (last byte of the tag) and with the KEM ciphertext.
    for at in [first.len() - 1, 2 + 128 + 32 + 8 + 500] {
        let mut bad = first.clone();
        bad[at] ^= 0x80;
        assert_eq!(p.b_gets(&bad).unwrap_err(), DecryptError::Authentication);
        assert_eq!(p.bob.store.one_time_prekey_count(), count);
        assert_eq!(p.bob.store.one_time_kem_prekey_count(), kem_count);
        assert_eq!(p.bob.store.to_bytes(), store_before);
        assert_eq!(p.b.to_bytes(), record_before);
        assert!(p.b.current().is_none());
    }
    // The authentic message still works and consumes the keys now.
    assert_eq!(&p.b_gets(&first).unwrap().plaintext[..], b"first");
    assert_eq!(p.bob.store.one_time_prekey_count(), count - 1);
    assert_eq!(p.bob.store.one_time_kem_prekey_count(), kem_count - 1);
}

#[test]
fn replayed_initial_message_is_detected() {
    let mut p = Pair::new(6);
    let first = p.a_sends(b"only once");
    assert_eq!(&p.b_gets(&first).unwrap().plaintext[..], b"only once");

    // Same record: the session exists, so the repeat is a duplicate.
    let (rec, store) = p.bob_state();
    assert_eq!(p.b_gets(&first).unwrap_err(), DecryptError::Duplicate);
    assert_eq!(p.bob_state(), (rec.clone(), store.clone()));

    // A fresh record with the same store (e.g. the conversation was deleted, or the attacker
    // replays to another device state): the message used one-time keys, which are gone, so
    // the replay is refused without the store having to remember its base key.
    let mut fresh = SessionRecord::new();
    assert_eq!(
        p.bob.decrypt(&mut fresh, &first).unwrap_err(),
        DecryptError::UnknownKemPreKey
    );
    assert!(fresh.current().is_none());
    assert_eq!(*p.bob.store.to_bytes(), store);

    // The same over the last-resort bundle with no one-time key at all.
    let mut rng = rng(60);
    let alice2 = Party::new(&mut rng, 0, 0);
    let bare = p.bob.store.last_resort_bundle().unwrap();
    let mut a2 = SessionRecord::with_session(alice2.initiate(&mut rng, &bare));
    let m = a2.encrypt(&mut rng, b"no one-time keys").unwrap();
    let mut b2 = SessionRecord::new();
    assert!(p.bob.decrypt(&mut b2, &m).unwrap().new_session);
    let store = p.bob.store.to_bytes();
    let mut b3 = SessionRecord::new();
    assert_eq!(
        p.bob.decrypt(&mut b3, &m).unwrap_err(),
        DecryptError::ReplayedInitialMessage
    );
    assert_eq!(
        p.bob.decrypt(&mut b2, &m).unwrap_err(),
        DecryptError::Duplicate
    );
    assert_eq!(p.bob.store.to_bytes(), store);
}

#[test]
fn used_one_time_keys_are_unknown_to_a_second_initiator() {
    let mut rng = rng(7);
    let mut bob = Party::new(&mut rng, 2, 1);
    let bundles = bob.store.bundles();
    // Two initiators got the same bundle from a misbehaving directory.
    for (bundle, expected) in [
        (&bundles[0], DecryptError::UnknownKemPreKey),
        (&bundles[1], DecryptError::UnknownOneTimePreKey),
    ] {
        let x = Party::new(&mut rng, 0, 0);
        let y = Party::new(&mut rng, 0, 0);
        let mx = SessionRecord::with_session(x.initiate(&mut rng, bundle))
            .encrypt(&mut rng, b"x")
            .unwrap();
        let my = SessionRecord::with_session(y.initiate(&mut rng, bundle))
            .encrypt(&mut rng, b"y")
            .unwrap();
        bob.decrypt(&mut SessionRecord::new(), &mx).unwrap();
        let store = bob.store.to_bytes();
        let mut fresh = SessionRecord::new();
        assert_eq!(bob.decrypt(&mut fresh, &my).unwrap_err(), expected);
        assert_eq!(bob.store.to_bytes(), store);
        assert!(fresh.current().is_none());
    }
}

#[test]
fn signed_prekey_rotation_keeps_recent_keys() {
    let mut rng = rng(8);
    let alice = Party::new(&mut rng, 0, 0);
    let mut bob = Party::new(&mut rng, 0, 0);
    let old = bob.store.last_resort_bundle().unwrap();
    let mut in_flight = Vec::new();
    for _ in 0..2 {
        in_flight.push(
            SessionRecord::with_session(alice.initiate(&mut rng, &old))
                .encrypt(&mut rng, b"old bundle")
                .unwrap(),
        );
    }
    // Accept one before rotation, so its base key is remembered.
    bob.decrypt(&mut SessionRecord::new(), &in_flight[0])
        .unwrap();
    for _ in 0..MAX_RETAINED_SIGNED_PREKEYS - 1 {
        bob.store.rotate_signed_prekey(&mut rng, NOW);
        bob.store.rotate_last_resort_kem_prekey(&mut rng, NOW);
    }
    assert_ne!(
        bob.store.last_resort_bundle().unwrap().signed_prekey_id(),
        old.signed_prekey_id()
    );
    // Still retained: a message in flight decrypts, the replay is still refused.
    let mut kept = bob.clone();
    assert!(
        kept.decrypt(&mut SessionRecord::new(), &in_flight[1])
            .is_ok()
    );
    assert_eq!(
        kept.decrypt(&mut SessionRecord::new(), &in_flight[0])
            .unwrap_err(),
        DecryptError::ReplayedInitialMessage
    );
    // One more rotation retires it: both are now unknown.
    bob.store.rotate_signed_prekey(&mut rng, NOW);
    bob.store.rotate_last_resort_kem_prekey(&mut rng, NOW);
    for m in &in_flight {
        assert_eq!(
            bob.decrypt(&mut SessionRecord::new(), m).unwrap_err(),
            DecryptError::UnknownSignedPreKey
        );
    }
    // The current bundle works.
    let fresh = bob.store.last_resort_bundle().unwrap();
    let m = SessionRecord::with_session(alice.initiate(&mut rng, &fresh))
        .encrypt(&mut rng, b"new bundle")
        .unwrap();
    assert!(bob.decrypt(&mut SessionRecord::new(), &m).is_ok());
}

#[test]
fn identity_change_needs_the_apps_consent() {
    let mut p = Pair::established(9);
    let mut rng = rng(90);
    let mallory = Party::new(&mut rng, 0, 0);
    let bundle = p.bob.store.last_resort_bundle().unwrap();
    let m = SessionRecord::with_session(mallory.initiate(&mut rng, &bundle))
        .encrypt(&mut rng, b"it's me, alice, new phone")
        .unwrap();
    let (rec, store) = p.bob_state();
    assert_eq!(p.b_gets(&m).unwrap_err(), DecryptError::IdentityChanged);
    assert_eq!(p.bob_state(), (rec, store));
    // The app shows the change and the user accepts it.
    let got =
        p.b.decrypt(&mut p.bob.store, &m, NOW, IdentityChangePolicy::Accept)
            .unwrap();
    assert!(got.new_session);
    assert_eq!(got.remote_identity, mallory.id.public());
    assert_eq!(p.b.remote_identity(), Some(&mallory.id.public()));
    assert_eq!(p.b.archived_count(), 1);
}

#[test]
fn own_identity_is_refused() {
    let mut rng = rng(10);
    let mut bob = Party::new(&mut rng, 1, 1);
    // Bob's other device (same identity) tries to start a session with this one.
    let twin = Party::with_identity(&mut rng, &bob.id);
    let outsider = IdentityKeyPair::generate(&mut rng);
    // The twin would refuse its own bundle; pretend it is someone else to build the message.
    let verified = PreKeyBundle::from_bytes(&bob.store.bundles()[0].to_bytes())
        .unwrap()
        .verify(ExpectedIdentity::TrustOnFirstUse, &outsider.public())
        .unwrap();
    let m = SessionRecord::with_session(Session::initiate(&mut rng, &twin.id, &verified).unwrap())
        .encrypt(&mut rng, b"me")
        .unwrap();
    let store = bob.store.to_bytes();
    let mut fresh = SessionRecord::new();
    assert_eq!(
        bob.decrypt(&mut fresh, &m).unwrap_err(),
        DecryptError::OwnIdentity
    );
    assert_eq!(bob.store.to_bytes(), store);
    assert!(fresh.current().is_none());
}

#[test]
fn ratchet_message_without_session() {
    let mut p = Pair::established(11);
    let m = p.a_sends(b"hi");
    let mut fresh = SessionRecord::new();
    assert_eq!(
        p.bob.decrypt(&mut fresh, &m).unwrap_err(),
        DecryptError::NoSession
    );
    assert_eq!(
        fresh.encrypt(&mut p.rng, b"x").unwrap_err(),
        confide_session::RecordEncryptError::NoSession
    );
    // Erasing a record ends the conversation on this side.
    p.b.erase();
    assert_eq!(p.b_gets(&m).unwrap_err(), DecryptError::NoSession);
    assert!(p.b.current().is_none());
}

#[test]
fn oversized_plaintext_is_refused_without_change() {
    let mut p = Pair::established(12);
    let before = p.a.to_bytes();
    let big = vec![0u8; confide_crypto::padding::MAX_PLAINTEXT_LEN + 1];
    assert!(matches!(
        p.a.encrypt(&mut p.rng, &big).unwrap_err(),
        confide_session::RecordEncryptError::Encrypt(confide_session::EncryptError::TooLong { .. })
    ));
    assert_eq!(p.a.to_bytes(), before);
    let max = vec![7u8; confide_crypto::padding::MAX_PLAINTEXT_LEN];
    let m = p.a_sends(&max);
    assert_eq!(&p.b_gets(&m).unwrap().plaintext[..], &max[..]);
}

/// spec.md §3.2: the exact order, ids and kinds of `bundles()` / `one_time_bundles()`.
#[test]
fn bundles_order_ids_and_pairing() {
    let mut rng = rng(70);
    // new: signed prekey id 1, last-resort KEM id 2; then X25519 one-time 3, 4, 5; KEM one-time
    // 6, 7.
    let bob = Party::new(&mut rng, 3, 2);
    let shape = |b: &PreKeyBundle| {
        (
            b.signed_prekey_id(),
            b.kem_prekey_id(),
            b.kem_kind(),
            b.one_time_prekey_id(),
        )
    };
    let one = KemPreKeyKind::OneTime;
    let last = KemPreKeyKind::LastResort;
    let one_time: Vec<_> = bob.store.one_time_bundles().iter().map(shape).collect();
    assert_eq!(
        one_time,
        [
            (1, 6, one, Some(3)),
            (1, 7, one, Some(4)),
            (1, 2, last, Some(5))
        ]
    );
    let all: Vec<_> = bob.store.bundles().iter().map(shape).collect();
    assert_eq!(all[..3], one_time[..]);
    assert_eq!(all[3], (1, 2, last, None));
    assert_eq!(all.len(), 4);

    // More KEM prekeys than X25519 ones: the surplus KEM bundles carry no OPK.
    let carol = Party::new(&mut rng, 1, 3);
    let shapes: Vec<_> = carol.store.bundles().iter().map(shape).collect();
    assert_eq!(
        shapes,
        [
            (1, 4, one, Some(3)),
            (1, 5, one, None),
            (1, 6, one, None),
            (1, 2, last, None)
        ]
    );

    // After a rotation only the newest signed and last-resort prekeys are published.
    let mut dave = Party::new(&mut rng, 1, 0);
    dave.store.rotate_signed_prekey(&mut rng, NOW); // id 4
    dave.store.rotate_last_resort_kem_prekey(&mut rng, NOW); // id 5
    let shapes: Vec<_> = dave.store.bundles().iter().map(shape).collect();
    assert_eq!(shapes, [(4, 5, last, Some(3)), (4, 5, last, None)]);
}

/// spec.md §4 and §4.1: only initial messages that used no one-time key are recorded in the
/// seen list, so a replayed prekey message is `UnknownKemPreKey` (checked first) if it used a
/// one-time KEM prekey, `UnknownOneTimePreKey` if it used only a one-time X25519 prekey, and
/// `ReplayedInitialMessage` if it used neither; in every case nothing changes.
#[test]
fn replay_verdict_depends_only_on_the_keys_it_used() {
    let mut rng = rng(71);
    // Every kind of bundle: one-time KEM with and without an OPK, last-resort KEM with an OPK,
    // and the bare last-resort bundle.
    for (one_time, one_time_kem) in [(1, 2), (1, 0)] {
        let mut bob = Party::new(&mut rng, one_time, one_time_kem);
        replays_of_every_bundle(&mut rng, &mut bob);
    }
}

fn replays_of_every_bundle(rng: &mut chacha20::ChaCha20Rng, bob: &mut Party) {
    let bundles = bob.store.bundles();
    for bundle in &bundles {
        let alice = Party::new(rng, 0, 0);
        let m = SessionRecord::with_session(alice.initiate(rng, bundle))
            .encrypt(rng, b"once")
            .unwrap();
        let mut first = SessionRecord::new();
        assert!(bob.decrypt(&mut first, &m).unwrap().new_session);
        // The session is gone (another record): a replay, refused by what it consumed.
        let expected = if bundle.kem_kind() == KemPreKeyKind::OneTime {
            DecryptError::UnknownKemPreKey
        } else if bundle.one_time_prekey_id().is_some() {
            DecryptError::UnknownOneTimePreKey
        } else {
            DecryptError::ReplayedInitialMessage
        };
        let store = bob.store.to_bytes();
        let mut fresh = SessionRecord::new();
        assert_eq!(
            bob.decrypt(&mut fresh, &m).unwrap_err(),
            expected,
            "bundle {:?}/{:?}",
            bundle.kem_kind(),
            bundle.one_time_prekey_id()
        );
        assert_eq!(bob.store.to_bytes(), store);
        // The session is there: a duplicate.
        assert_eq!(
            bob.decrypt(&mut first, &m).unwrap_err(),
            DecryptError::Duplicate
        );
    }
}

/// Replays of initial messages stay refused however many sessions were started since: a base
/// key is never forgotten while its signed prekey accepts initial messages. Far more initial
/// messages without one-time keys than the old total bound (10,000) arrive under one signed
/// prekey; once its list is full they are refused (`ReplayListFull`, nothing changes) instead
/// of the oldest entry being forgotten, and the replay of the very first one is refused.
#[test]
fn replay_of_the_first_initial_message_stays_refused_after_many_sessions() {
    let mut rng = rng(61);
    let mut bob = Party::new(&mut rng, 0, 0);
    let alice = Party::new(&mut rng, 0, 0);
    let bare = bob.store.last_resort_bundle().unwrap();
    let spk = bare.signed_prekey_id();
    let verified = alice.verify(&bare);
    let initial = |rng: &mut ChaCha20Rng| {
        SessionRecord::with_session(Session::initiate(rng, &alice.id, &verified).unwrap())
            .encrypt(rng, b"hello")
            .unwrap()
    };
    let first = initial(&mut rng);
    assert!(
        bob.decrypt(&mut SessionRecord::new(), &first)
            .unwrap()
            .new_session
    );
    let (mut accepted, mut full) = (1usize, 0usize);
    for _ in 0..10_001 {
        let m = initial(&mut rng);
        match bob.decrypt(&mut SessionRecord::new(), &m) {
            Ok(d) => {
                assert!(d.new_session);
                accepted += 1;
            }
            Err(e) => {
                assert_eq!(
                    e,
                    DecryptError::ReplayListFull {
                        signed_prekey_id: spk
                    }
                );
                full += 1;
            }
        }
    }
    assert_eq!(accepted, MAX_SEEN_BASE_KEYS_PER_SIGNED_PREKEY);
    assert_eq!(full, 10_001 + 1 - accepted);
    assert_eq!(bob.store.seen_base_key_count(spk), accepted);
    // The replay of the first message is still refused, as is one of the last accepted.
    let store = bob.store.to_bytes();
    let mut fresh = SessionRecord::new();
    assert_eq!(
        bob.decrypt(&mut fresh, &first).unwrap_err(),
        DecryptError::ReplayedInitialMessage
    );
    assert!(fresh.current().is_none());
    assert_eq!(bob.store.to_bytes(), store);
    // The refusal says what to do: after a rotation, new initial messages are accepted again
    // (under the new signed prekey), and the old list still refuses the replay.
    bob.store.rotate_signed_prekey(&mut rng, NOW);
    let renewed = alice.verify(&bob.store.last_resort_bundle().unwrap());
    let m = SessionRecord::with_session(Session::initiate(&mut rng, &alice.id, &renewed).unwrap())
        .encrypt(&mut rng, b"after rotation")
        .unwrap();
    assert!(
        bob.decrypt(&mut SessionRecord::new(), &m)
            .unwrap()
            .new_session
    );
    assert_eq!(
        bob.decrypt(&mut SessionRecord::new(), &first).unwrap_err(),
        DecryptError::ReplayedInitialMessage
    );
    // The list survives a round trip of the store, strictly parsed.
    let restored = PreKeyStore::from_bytes(&bob.store.to_bytes()).unwrap();
    assert_eq!(restored.to_bytes(), bob.store.to_bytes());
    assert_eq!(restored.seen_base_key_count(spk), accepted);
}

/// A version-1 store (insertion order, no per-prekey bound) is read without losing a base key,
/// even one holding more than today's per-prekey bound under one signed prekey; it is written
/// back as the current version, reads again, and that signed prekey accepts no further initial message
/// without one-time keys, while its replays stay refused.
#[test]
fn version_1_store_with_an_over_full_list_upgrades_without_forgetting() {
    let mut rng = rng(62);
    let mut bob = Party::new(&mut rng, 0, 0);
    let alice = Party::new(&mut rng, 0, 0);
    let bare = bob.store.last_resort_bundle().unwrap();
    let spk = bare.signed_prekey_id();
    let verified = alice.verify(&bare);
    let first =
        SessionRecord::with_session(Session::initiate(&mut rng, &alice.id, &verified).unwrap())
            .encrypt(&mut rng, b"first")
            .unwrap();
    assert!(
        bob.decrypt(&mut SessionRecord::new(), &first)
            .unwrap()
            .new_session
    );
    // Version 1 bytes: the layout of version 2, version byte 1, entries in insertion order,
    // here more than the per-prekey bound under one signed prekey (the accepted one last).
    let v2 = version_2_bytes(&bob.store.to_bytes());
    let seen_at = v2.len() - 4 - 36;
    let accepted_entry = v2[seen_at + 4..].to_vec();
    let over = MAX_SEEN_BASE_KEYS_PER_SIGNED_PREKEY + 10;
    let mut v1 = v2[..seen_at].to_vec();
    v1[0] = 1;
    v1.extend_from_slice(&u32::try_from(over).unwrap().to_be_bytes());
    for i in 0..over - 1 {
        let mut key = [0xee; 32];
        key[..4].copy_from_slice(&u32::try_from(i).unwrap().to_be_bytes());
        v1.extend_from_slice(&spk.to_be_bytes());
        v1.extend_from_slice(&key);
    }
    v1.extend_from_slice(&accepted_entry);
    let upgraded = PreKeyStore::from_bytes(&v1).unwrap();
    assert_eq!(upgraded.seen_base_key_count(spk), over);
    let v2_again = upgraded.to_bytes();
    assert_eq!(v2_again[0], confide_session::state::STATE_VERSION);
    let reread = PreKeyStore::from_bytes(&v2_again).unwrap();
    assert_eq!(reread.to_bytes(), v2_again);
    bob.store = reread;
    assert_eq!(
        bob.decrypt(&mut SessionRecord::new(), &first).unwrap_err(),
        DecryptError::ReplayedInitialMessage
    );
    let next =
        SessionRecord::with_session(Session::initiate(&mut rng, &alice.id, &verified).unwrap())
            .encrypt(&mut rng, b"next")
            .unwrap();
    let store = bob.store.to_bytes();
    assert_eq!(
        bob.decrypt(&mut SessionRecord::new(), &next).unwrap_err(),
        DecryptError::ReplayListFull {
            signed_prekey_id: spk
        }
    );
    assert_eq!(bob.store.to_bytes(), store);
}

/// The version-2 encoding of a store given in the current encoding (version 3): the same
/// fields without the X25519 public keys that version 3 stores after each secret.
fn version_2_bytes(v3: &[u8]) -> Vec<u8> {
    assert_eq!(v3[0], confide_session::state::STATE_VERSION);
    let mut out = vec![2u8];
    let mut at = 1;
    let copy = |out: &mut Vec<u8>, at: &mut usize, n: usize| {
        out.extend_from_slice(&v3[*at..*at + n]);
        *at += n;
    };
    let count16 = |at: usize| usize::from(u16::from_be_bytes([v3[at], v3[at + 1]]));
    copy(&mut out, &mut at, 64 + 4); // identity secret, next id
    let signed = count16(at);
    copy(&mut out, &mut at, 2);
    for _ in 0..signed {
        copy(&mut out, &mut at, 4 + 32); // id, secret
        at += 32; // public key: not in version 2
        copy(&mut out, &mut at, 64 + 8); // signature, created at
    }
    let last_resort = count16(at);
    copy(&mut out, &mut at, 2 + last_resort * (4 + 64 + 64 + 8));
    let one_time = count16(at);
    copy(&mut out, &mut at, 2);
    for _ in 0..one_time {
        copy(&mut out, &mut at, 4 + 32);
        at += 32;
    }
    let rest = v3.len() - at;
    copy(&mut out, &mut at, rest); // one-time KEM prekeys and seen base keys: unchanged
    out
}

/// A version-2 store (X25519 secrets without their public keys) reads with the same keys,
/// serves the same bundles, and is written back as the current version, which stores each
/// public key after its secret.
#[test]
fn version_2_store_upgrades_with_the_same_keys() {
    let mut rng = rng(63);
    let bob = Party::new(&mut rng, 5, 3);
    let current = bob.store.to_bytes();
    let v2 = version_2_bytes(&current);
    // One signed prekey and five one-time prekeys: 32 bytes each fewer.
    assert_eq!(current.len() - v2.len(), 6 * 32);
    let upgraded = PreKeyStore::from_bytes(&v2).unwrap();
    assert_eq!(upgraded.to_bytes(), current);
    let bundles =
        |s: &PreKeyStore| -> Vec<Vec<u8>> { s.bundles().iter().map(|b| b.to_bytes()).collect() };
    assert_eq!(bundles(&upgraded), bundles(&bob.store));
    // Through storage encryption (the authenticated path) as well.
    let key = confide_session::storage::StorageKey::random(&mut rng);
    let v2_blob = confide_session::storage::seal(
        &mut rng,
        &key,
        confide_session::storage::StateKind::PreKeyStore,
        b"bob",
        &v2,
    );
    let opened = PreKeyStore::from_encrypted(&key, b"bob", &v2_blob).unwrap();
    assert_eq!(opened.to_bytes(), current);
}

/// From plain bytes, a stored X25519 public key that is not its secret's is refused; the
/// current version stores it only to spare the computation on the authenticated path.
#[test]
fn stored_prekey_public_key_must_match_its_secret_in_plain_bytes() {
    let mut rng = rng(64);
    let bob = Party::new(&mut rng, 1, 0);
    let mut bytes = bob.store.to_bytes().to_vec();
    // The signed prekey's public key: after version, identity secret, next id, count, id,
    // secret.
    let public_at = 1 + 64 + 4 + 2 + 4 + 32;
    bytes[public_at] ^= 1;
    assert!(PreKeyStore::from_bytes(&bytes).is_err());
    bytes[public_at] ^= 1;
    assert!(PreKeyStore::from_bytes(&bytes).is_ok());
}

/// `PreKeyStore::revision` is what an incremental store compares to know whether the prekey
/// store must be written again: it moves with every change (new keys, rotations, a consumed
/// one-time key, a remembered base key) and with nothing else, and starts at 0 when loaded.
#[test]
fn the_revision_moves_with_every_change_and_only_then() {
    let mut rng = rng(9);
    let alice = Party::new(&mut rng, 0, 0);
    let mut bob = Party::new(&mut rng, 2, 1);
    let mut last = bob.store.revision();
    let mut moved = |store: &PreKeyStore, expect: bool, what: &str| {
        let now = store.revision();
        assert_eq!(now != last, expect, "{what}");
        last = now;
    };
    // Reading changes nothing.
    let bundles = bob.store.bundles();
    let _ = bob.store.one_time_bundles();
    let _ = bob.store.last_resort_bundle();
    let _ = bob.store.to_bytes();
    moved(&bob.store, false, "reading");
    // New keys, rotations.
    assert_eq!(bob.store.generate_one_time_prekeys(&mut rng, 1), 1);
    moved(&bob.store, true, "one-time prekeys");
    assert_eq!(bob.store.generate_one_time_prekeys(&mut rng, 0), 0);
    moved(&bob.store, false, "no new key");
    bob.store.rotate_signed_prekey(&mut rng, NOW);
    moved(&bob.store, true, "signed prekey rotation");
    bob.store.rotate_last_resort_kem_prekey(&mut rng, NOW);
    moved(&bob.store, true, "last-resort rotation");
    // A first message consumes its one-time keys; a first message without one-time keys is
    // remembered (its base key). Both change the store.
    first_contact(&mut rng, &alice, &mut bob, &bundles[0]);
    moved(&bob.store, true, "one-time keys consumed");
    let bare = bob.store.last_resort_bundle().unwrap();
    first_contact(&mut rng, &alice, &mut bob, &bare);
    moved(&bob.store, true, "base key remembered");
    // A store read back starts over.
    let loaded = PreKeyStore::from_bytes(&bob.store.to_bytes()).unwrap();
    assert_eq!(loaded.revision(), 0);
}
