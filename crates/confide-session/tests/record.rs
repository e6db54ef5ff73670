//! Session records: a new session archives the old one, in-flight messages still decrypt,
//! the archive is bounded, and simultaneous initiation converges.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use crate::common;

use common::{NOW, Pair, Party, rng, text};
use confide_session::{
    DecryptError, Session, SessionMessage, SessionRecord, Side, consts::MAX_ARCHIVED_SESSIONS,
};

/// Alice starts a fresh session to Bob (e.g. after reinstalling with her identity backed up)
/// and makes it current on her side; returns its first message.
fn alice_restarts(p: &mut Pair, pt: &[u8]) -> Vec<u8> {
    let bundle = p.bob.store.last_resort_bundle().unwrap();
    let session = p.alice.initiate(&mut p.rng, &bundle);
    p.a.promote(session);
    p.a_sends(pt)
}

#[test]
fn new_session_archives_the_old_one_and_in_flight_messages_still_decrypt() {
    let mut p = Pair::established(70);
    let old_base = p.b.current().unwrap().base_key();
    let in_flight: Vec<_> = (0..3).map(|i| p.a_sends(&text(i))).collect();
    let first_new = alice_restarts(&mut p, b"new session");
    assert_eq!(p.a.archived_count(), 1);

    let got = p.b_gets(&first_new).unwrap();
    assert!(got.new_session);
    assert_eq!(p.b.archived_count(), 1);
    let new_base = p.b.current().unwrap().base_key();
    assert_ne!(new_base, old_base);
    // The record names both sessions, current and archived, and no other.
    assert!(p.b.has_session(&new_base) && p.b.has_session(&old_base));
    let unrelated = confide_crypto::x25519::X25519KeyPair::generate(&mut p.rng).public_key();
    assert!(!p.b.has_session(&unrelated));

    // A message of the old session decrypts from the archive and makes it current again.
    assert_eq!(
        &p.b_gets(&in_flight[1]).unwrap().plaintext[..],
        &text(1)[..]
    );
    assert_eq!(p.b.current().unwrap().base_key(), old_base);
    assert_eq!(p.b.archived_count(), 1);
    // The new session's messages still decrypt (and promote it back).
    let second_new = p.a_sends(b"second on new");
    assert_eq!(
        &p.b_gets(&second_new).unwrap().plaintext[..],
        b"second on new"
    );
    assert_eq!(p.b.current().unwrap().base_key(), new_base);
    // Remaining old messages, and duplicates across sessions.
    for i in [2, 0] {
        assert_eq!(
            &p.b_gets(&in_flight[i]).unwrap().plaintext[..],
            &text(i)[..]
        );
    }
    for m in in_flight.iter().chain([&first_new, &second_new]) {
        assert_eq!(p.b_gets(m).unwrap_err(), DecryptError::Duplicate);
    }
    // Bob answers on whatever is current; Alice finds it in her record too.
    let r = p.b_sends(b"reply");
    assert_eq!(&p.a_gets(&r).unwrap().plaintext[..], b"reply");
}

#[test]
fn archive_is_bounded() {
    let mut p = Pair::established(71);
    let mut old_messages = Vec::new();
    // MAX_ARCHIVED_SESSIONS + 2 restarts, each leaving a message in flight on the session it
    // replaces.
    for i in 0..MAX_ARCHIVED_SESSIONS + 2 {
        old_messages.push(p.a_sends(&text(i)));
        let first = alice_restarts(&mut p, b"restart");
        assert!(p.b_gets(&first).unwrap().new_session);
        assert_eq!(p.b.archived_count(), (i + 1).min(MAX_ARCHIVED_SESSIONS));
        assert_eq!(p.a.archived_count(), (i + 1).min(MAX_ARCHIVED_SESSIONS));
    }
    assert_eq!(p.b.archived_count(), MAX_ARCHIVED_SESSIONS);
    // The two oldest sessions are gone: their messages fail and change nothing.
    for m in &old_messages[..2] {
        let before = p.bob_state();
        assert!(p.b_gets(m).is_err());
        assert_eq!(p.bob_state(), before);
    }
    // The oldest one still archived works.
    assert_eq!(
        &p.b_gets(&old_messages[2]).unwrap().plaintext[..],
        &text(2)[..]
    );
    // Restored records respect the bound too.
    let restored = SessionRecord::from_bytes(&p.b.to_bytes()).unwrap();
    assert_eq!(restored.archived_count(), MAX_ARCHIVED_SESSIONS);
}

#[test]
fn simultaneous_initiation_converges() {
    let mut rng = rng(72);
    let mut alice = Party::new(&mut rng, 1, 1);
    let mut bob = Party::new(&mut rng, 1, 1);
    // Each fetches the other's bundle and writes first.
    let mut a = SessionRecord::with_session(alice.initiate(&mut rng, &bob.store.bundles()[0]));
    let mut b = SessionRecord::with_session(bob.initiate(&mut rng, &alice.store.bundles()[0]));
    let from_a = a.encrypt(&mut rng, b"hi bob").unwrap();
    let from_b = b.encrypt(&mut rng, b"hi alice").unwrap();
    assert!(bob.decrypt(&mut b, &from_a).unwrap().new_session);
    assert!(alice.decrypt(&mut a, &from_b).unwrap().new_session);
    assert_eq!(a.archived_count(), 1);
    assert_eq!(b.archived_count(), 1);

    // They keep talking, sometimes at the same time; everything arrives exactly once.
    let mut n = 0usize;
    for round in 0..8 {
        let both = round % 3 == 0;
        let ma = a.encrypt(&mut rng, &text(n)).unwrap();
        let mb = if both {
            Some(b.encrypt(&mut rng, &text(n + 1)).unwrap())
        } else {
            None
        };
        assert_eq!(
            &bob.decrypt(&mut b, &ma).unwrap().plaintext[..],
            &text(n)[..]
        );
        if let Some(mb) = mb {
            assert_eq!(
                &alice.decrypt(&mut a, &mb).unwrap().plaintext[..],
                &text(n + 1)[..]
            );
        }
        let rb = b.encrypt(&mut rng, &text(n + 2)).unwrap();
        assert_eq!(
            &alice.decrypt(&mut a, &rb).unwrap().plaintext[..],
            &text(n + 2)[..]
        );
        assert_eq!(
            alice.decrypt(&mut a, &rb).unwrap_err(),
            DecryptError::Duplicate
        );
        n += 3;
    }
    // After a plain exchange both sides use the same session.
    let m = a.encrypt(&mut rng, b"settled?").unwrap();
    bob.decrypt(&mut b, &m).unwrap();
    let r = b.encrypt(&mut rng, b"settled").unwrap();
    alice.decrypt(&mut a, &r).unwrap();
    let (sa, sb) = (a.current().unwrap(), b.current().unwrap());
    assert_eq!(sa.base_key(), sb.base_key());
    assert_ne!(sa.role(), sb.role());
    assert!(matches!(
        (sa.role(), sb.role()),
        (Side::Initiator, Side::Responder) | (Side::Responder, Side::Initiator)
    ));
    assert!(!sa.awaiting_reply() && !sb.awaiting_reply());
}

/// spec.md §10: when no session decrypts a message, the record reports `Duplicate` if any
/// session said so, else the first session's error (current, else the newest archived one),
/// and `NoSession` without sessions.
#[test]
fn error_when_no_session_decrypts() {
    let mut p = Pair::established(77);
    let old_message = p.a_sends(b"on the first session");
    p.b_gets(&old_message).unwrap();
    let first_session = p.b.current().unwrap().clone();
    let first_new = alice_restarts(&mut p, b"second session");
    assert!(p.b_gets(&first_new).unwrap().new_session);
    let second_session = p.b.current().unwrap().clone();
    assert_eq!(p.b.archived_count(), 1);

    let mut tampered = old_message.clone();
    *tampered.last_mut().unwrap() ^= 1;
    // spec.md §6.1: kind 0x01, n at offset 38.
    assert_eq!(old_message[1], 0x01);
    let mut far = old_message.clone();
    let n = u32::from_be_bytes(far[38..42].try_into().unwrap()) + 5_000;
    far[38..42].copy_from_slice(&n.to_be_bytes());
    for (what, bytes) in [
        ("repeat", old_message.clone()),
        ("tampered", tampered),
        ("far ahead", far),
    ] {
        let message = SessionMessage::from_bytes(&bytes).unwrap();
        let on = |s: &Session| s.clone().decrypt(&message, NOW).unwrap_err();
        let (current, archived) = (on(&second_session), on(&first_session));
        let expected = if current == DecryptError::Duplicate || archived == DecryptError::Duplicate
        {
            DecryptError::Duplicate
        } else {
            current
        };
        let before = p.b.to_bytes();
        assert_eq!(p.b_gets(&bytes).unwrap_err(), expected, "{what}");
        assert_eq!(p.b.to_bytes(), before);
        if what == "repeat" {
            // The rule matters here: the current session alone would not say Duplicate.
            assert_ne!(current, DecryptError::Duplicate);
            assert_eq!(archived, DecryptError::Duplicate);
        }
        // Without a current session, the newest archived session's error (or Duplicate).
        let mut only_archived = vec![confide_session::state::SESSION_STATE_VERSION, 0x00, 0x01];
        only_archived.extend_from_slice(&first_session.to_bytes());
        let mut record = SessionRecord::from_bytes(&only_archived).unwrap();
        assert!(record.current().is_none());
        assert_eq!(
            p.bob.decrypt(&mut record, &bytes).unwrap_err(),
            on(&first_session),
            "{what}, archive only"
        );
    }
    let mut empty = SessionRecord::new();
    assert_eq!(
        p.bob.decrypt(&mut empty, &old_message).unwrap_err(),
        DecryptError::NoSession
    );
}

/// `SessionMessage::ciphertext_len` names exactly the message's AEAD output, which ends its
/// encoding (`docs/spec.md` §6): what a symmetric envelope carries without encrypting it
/// again. For the prekey form (before the first reply) and the ratchet form, short and long.
#[test]
fn the_ciphertext_ends_every_message_and_ciphertext_len_says_how_long_it_is() {
    for (mut p, prekey) in [(Pair::new(71), true), (Pair::established(72), false)] {
        for len in [0usize, 5, 300, 5000] {
            let message = p.a.encrypt_message(&mut p.rng, &vec![7u8; len]).unwrap();
            let bytes = message.to_bytes();
            let expected = confide_crypto::padding::padded_len(len).unwrap() + 16;
            assert_eq!(message.ciphertext_len(), expected, "{len} bytes");
            let ciphertext = match &message {
                SessionMessage::Ratchet(m) => m.ciphertext(),
                SessionMessage::PreKey(m) => m.message().ciphertext(),
                _ => unreachable!(),
            };
            assert_eq!(ciphertext.len(), expected);
            assert!(bytes.ends_with(ciphertext), "{len} bytes");
            assert_eq!(matches!(message, SessionMessage::PreKey(_)), prekey);
            // The encoding is what `encrypt` returns: it decrypts at the peer.
            let plaintext =
                p.b.decrypt(
                    &mut p.bob.store,
                    &bytes,
                    NOW,
                    confide_session::IdentityChangePolicy::Refuse,
                )
                .unwrap()
                .plaintext;
            assert_eq!(plaintext.len(), len);
        }
    }
}
