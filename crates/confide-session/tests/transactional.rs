//! Decryption is transactional: whatever goes wrong, the record and the prekey store keep
//! every byte, and the conversation carries on.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use crate::common;

use common::{NOW, Pair, Party, rng, text};
use confide_crypto::codec::DecodeError;
use confide_session::{
    DecryptError, ExpectedIdentity, IdentityChangePolicy, PreKeyBundle, Session, SessionRecord,
    consts::MAX_FORWARD_JUMP,
};

/// Delivers `bytes` to Bob under `policy`, expects `expected`, checks that nothing changed
/// and that Alice and Bob can still exchange a message each way.
fn refused_without_change(
    p: &mut Pair,
    bytes: &[u8],
    policy: IdentityChangePolicy,
    expected: &dyn Fn(&DecryptError) -> bool,
    what: &str,
) {
    let before = p.bob_state();
    let err =
        p.b.decrypt(&mut p.bob.store, bytes, NOW, policy)
            .expect_err(what);
    assert!(expected(&err), "{what}: unexpected error {err:?}");
    assert_eq!(p.bob_state(), before, "{what}: state changed");
    if !what.starts_with("too far") {
        still_talking(p, what);
    }
}

/// Alice and Bob still exchange a message each way. Bob's reply is delivered, but Alice's
/// next message (which would start a new chain) is not sent here: each such round trip is a
/// peer ratchet step for Bob, and skipped keys age out after
/// `MAX_SKIPPED_KEY_RATCHET_STEPS` of them, which would end this test's check that refused
/// attempts consumed no stored key. Alice's messages stay on one chain instead.
fn still_talking(p: &mut Pair, what: &str) {
    let m = p.a_sends(what.as_bytes());
    assert_eq!(&p.b_gets(&m).unwrap().plaintext[..], what.as_bytes());
    let r = p.b_sends(what.as_bytes());
    let mut alice = p.a.clone();
    assert_eq!(
        &p.alice.decrypt(&mut alice, &r).unwrap().plaintext[..],
        what.as_bytes()
    );
}

/// A new session from Alice's second install (same identity) to Bob's last-resort bundle
/// with the one-time key of `bundle_index`: its first message.
fn second_install_message(p: &mut Pair, bundle_index: usize) -> Vec<u8> {
    let bundle = p.bob.store.bundles()[bundle_index].clone();
    let session = p.alice.initiate(&mut p.rng, &bundle);
    SessionRecord::with_session(session)
        .encrypt(&mut p.rng, b"second install")
        .unwrap()
}

#[test]
fn every_failure_kind_leaves_state_untouched() {
    let mut p = Pair::established(30);
    // Make Bob's state non-trivial: skipped keys in the current chain.
    let pending: Vec<_> = (0..4).map(|i| p.a_sends(&text(i))).collect();
    p.b_gets(&pending[3]).unwrap();
    assert_eq!(p.b.current().unwrap().skipped_key_count(), 3);
    let refuse = IdentityChangePolicy::Refuse;

    // Parse errors.
    let good = p.a_sends(b"good");
    for (bytes, what) in [
        (Vec::new(), "empty"),
        (good[..good.len() - 1].to_vec(), "truncated"),
        ([&good[..], &[0]].concat(), "trailing byte"),
        ([&[2u8][..], &good[1..]].concat(), "unknown version"),
        (
            [&good[..1], &[9u8][..], &good[2..]].concat(),
            "unknown kind",
        ),
    ] {
        refused_without_change(
            &mut p,
            &bytes,
            refuse,
            &|e| matches!(e, DecryptError::Decode(_)),
            what,
        );
    }
    // The error says where the input ran out, and nothing about its content: one byte of
    // the 32-byte ratchet key is present.
    assert_eq!(
        p.b_gets(&good[..3]).unwrap_err(),
        DecryptError::Decode(DecodeError::UnexpectedEnd {
            offset: 2,
            needed: 31
        })
    );

    // Authentication: tampered body, tampered header, and a skipped key's message tampered.
    for (bytes, what) in [
        (flip(&good, good.len() - 1), "tampered tag"),
        (flip(&good, 2 + 32 + 4 + 4 + 4 + 10), "tampered ciphertext"),
        (flip(&good, 2 + 32 + 2), "tampered previous_chain_len"),
        (flip(&pending[1], pending[1].len() - 20), "tampered skipped"),
    ] {
        refused_without_change(
            &mut p,
            &bytes,
            refuse,
            &|e| *e == DecryptError::Authentication,
            what,
        );
    }
    // A forged message claiming a new ratchet key.
    let mut forged = good.clone();
    forged[2..34].copy_from_slice(&[9; 32]);
    refused_without_change(
        &mut p,
        &forged,
        refuse,
        &|e| *e == DecryptError::Authentication,
        "forged ratchet key",
    );
    // A low-order ratchet key.
    let mut low = good.clone();
    low[2..34].copy_from_slice(&[0; 32]);
    refused_without_change(
        &mut p,
        &low,
        refuse,
        &|e| *e == DecryptError::Agreement,
        "low-order ratchet key",
    );
    // The good message (and the skipped ones) were never consumed by any of this.
    assert_eq!(&p.b_gets(&good).unwrap().plaintext[..], b"good");
    for (i, m) in pending.iter().enumerate().take(3) {
        assert_eq!(&p.b_gets(m).unwrap().plaintext[..], &text(i)[..]);
    }

    // Too far ahead.
    let far: Vec<_> = (0..MAX_FORWARD_JUMP + 2)
        .map(|_| p.a_sends(b"far"))
        .collect();
    refused_without_change(
        &mut p,
        far.last().unwrap(),
        refuse,
        &|e| matches!(e, DecryptError::TooFarAhead { .. }),
        "too far ahead",
    );
    // Messages within reach still arrive, which brings the refused one into reach too.
    let mid = far.len() / 2;
    assert_eq!(&p.b_gets(&far[mid]).unwrap().plaintext[..], b"far");
    assert_eq!(
        &p.b_gets(far.last().unwrap()).unwrap().plaintext[..],
        b"far"
    );
    still_talking(&mut p, "after the jump");

    // Duplicate (and the prekey message of the session, repeated).
    refused_without_change(
        &mut p,
        &good,
        refuse,
        &|e| *e == DecryptError::Duplicate,
        "duplicate",
    );

    // Another identity starting a session.
    let mut rng = rng(31);
    let mallory = Party::new(&mut rng, 0, 0);
    let bundle = p.bob.store.last_resort_bundle().unwrap();
    let from_mallory = SessionRecord::with_session(mallory.initiate(&mut rng, &bundle))
        .encrypt(&mut rng, b"hi")
        .unwrap();
    refused_without_change(
        &mut p,
        &from_mallory,
        refuse,
        &|e| *e == DecryptError::IdentityChanged,
        "identity changed",
    );

    // A replayed initial message: accepted once (in another record), then replayed where the
    // app would accept a new identity.
    p.bob
        .decrypt(&mut SessionRecord::new(), &from_mallory)
        .unwrap();
    refused_without_change(
        &mut p,
        &from_mallory,
        IdentityChangePolicy::Accept,
        &|e| *e == DecryptError::ReplayedInitialMessage,
        "replayed initial message",
    );

    // Unknown prekeys: a second install of Alice names prekeys Bob does not have.
    // Prekey layout: version, kind, identity(128), base(32), spk_id(4), kem_id(4),
    // kem_ct(1088), flag, [otk_id(4)], body.
    let spk_id_at = 2 + 128 + 32;
    let kem_id_at = spk_id_at + 4;
    let otk_id_at = kem_id_at + 4 + 1088 + 1;
    let m = second_install_message(&mut p, 0);
    for (at, expected, what) in [
        (
            spk_id_at,
            DecryptError::UnknownSignedPreKey,
            "unknown signed prekey",
        ),
        (
            kem_id_at,
            DecryptError::UnknownKemPreKey,
            "unknown KEM prekey",
        ),
        (
            otk_id_at,
            DecryptError::UnknownOneTimePreKey,
            "unknown one-time prekey",
        ),
    ] {
        let mut bad = m.clone();
        bad[at..at + 4].copy_from_slice(&0x7fff_0000u32.to_be_bytes());
        refused_without_change(&mut p, &bad, refuse, &|e| *e == expected, what);
    }

    // Our own identity.
    let twin = Party::with_identity(&mut rng, &p.bob.id);
    let verified = PreKeyBundle::from_bytes(&p.bob.store.bundles()[0].to_bytes())
        .unwrap()
        .verify(ExpectedIdentity::TrustOnFirstUse, &mallory.id.public())
        .unwrap();
    let from_self =
        SessionRecord::with_session(Session::initiate(&mut rng, &twin.id, &verified).unwrap())
            .encrypt(&mut rng, b"me")
            .unwrap();
    refused_without_change(
        &mut p,
        &from_self,
        IdentityChangePolicy::Accept,
        &|e| *e == DecryptError::OwnIdentity,
        "own identity",
    );

    // The untampered second-install message is accepted after all that, and archives the
    // first session; the old session's messages still decrypt.
    let old = p.a_sends(b"old session");
    let got = p.b_gets(&m).unwrap();
    assert!(got.new_session);
    assert_eq!(p.b.archived_count(), 1);
    assert_eq!(&p.b_gets(&old).unwrap().plaintext[..], b"old session");
}

#[test]
fn forged_reply_does_not_end_the_prekey_phase() {
    let mut p = Pair::new(32);
    let first = p.a_sends(b"hi");
    p.b_gets(&first).unwrap();
    let reply = p.b_sends(b"reply");
    let before = p.alice_state();
    for at in [2, 40, reply.len() - 1] {
        let err = p.a_gets(&flip(&reply, at)).unwrap_err();
        assert!(
            matches!(err, DecryptError::Authentication | DecryptError::Decode(_)),
            "{err:?}"
        );
        assert_eq!(p.alice_state(), before);
        assert!(p.a.current().unwrap().awaiting_reply());
    }
    p.a_gets(&reply).unwrap();
    assert!(!p.a.current().unwrap().awaiting_reply());
}

#[test]
fn failures_on_a_session_level_api_change_nothing() {
    // Session::decrypt directly (without a record) is transactional too.
    let mut p = Pair::established(33);
    let m = p.a_sends(b"direct");
    let mut session = p.b.current().unwrap().clone();
    let before = session.to_bytes();
    let parsed = confide_session::SessionMessage::from_bytes(&flip(&m, m.len() - 1)).unwrap();
    assert_eq!(
        session.decrypt(&parsed, NOW).unwrap_err(),
        DecryptError::Authentication
    );
    assert_eq!(session.to_bytes(), before);
    let good = confide_session::SessionMessage::from_bytes(&m).unwrap();
    assert_eq!(&session.decrypt(&good, NOW).unwrap()[..], b"direct");
    assert_eq!(
        session.decrypt(&good, NOW).unwrap_err(),
        DecryptError::Duplicate
    );
}

fn flip(bytes: &[u8], at: usize) -> Vec<u8> {
    let mut b = bytes.to_vec();
    b[at] ^= 0x04;
    b
}
