//! Forward secrecy and post-compromise security, checked against the serialized state an
//! attacker would steal.
//!
//! To find a message's key without reaching into the crate, the test searches a state
//! snapshot for it: every 32-byte window `w` is tried as a message key and as a chain key
//! (message key `HMAC-SHA256(w, 0x01)`), and the one that opens the message's ciphertext
//! (ChaCha20-Poly1305, zero nonce, associated data = label || Alice's keys || Bob's keys ||
//! ratchet header) is the key. A snapshot taken after decryption must yield no such key.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use crate::common;

use common::{Pair, ratchet_part, text};
use confide_crypto::{
    aead,
    identity::IdentityPublicKey,
    kdf::{hmac_sha256, labels},
    secret::AeadKey,
};
use confide_session::{DecryptError, SessionRecord};

/// How a key for a message was found in a snapshot.
#[derive(Debug, PartialEq, Eq)]
enum Found {
    /// A stored message key (a skipped key), at this offset.
    MessageKey(usize),
    /// A chain key from which the message key is one step away, at this offset.
    ChainKey(usize),
}

fn opens(key: [u8; 32], aad: &[u8], ciphertext: &[u8]) -> bool {
    aead::open(&AeadKey::new(key), &[0; aead::NONCE_LEN], aad, ciphertext).is_ok()
}

/// Searches `state` for a key that opens message `bytes` sent from `initiator` to
/// `responder` (the session's roles, which fix the associated data).
fn find_key(
    state: &[u8],
    bytes: &[u8],
    initiator: &IdentityPublicKey,
    responder: &IdentityPublicKey,
) -> Vec<(Found, [u8; 32])> {
    let m = ratchet_part(bytes);
    let aad = [
        labels::ASSOCIATED_DATA,
        &initiator.key_bytes(),
        &responder.key_bytes(),
        &m.header_bytes(),
    ]
    .concat();
    let mut out = Vec::new();
    for (at, w) in state.windows(32).enumerate() {
        let w: [u8; 32] = w.try_into().unwrap();
        if opens(w, &aad, m.ciphertext()) {
            out.push((Found::MessageKey(at), w));
        }
        let mk = *hmac_sha256(&w, labels::MESSAGE_KEY_SEED);
        if opens(mk, &aad, m.ciphertext()) {
            out.push((Found::ChainKey(at), mk));
        }
    }
    out
}

fn contains_window(state: &[u8], key: &[u8; 32]) -> bool {
    state.windows(32).any(|w| w == key)
}

#[test]
fn decrypted_message_keys_leave_the_state() {
    let mut p = Pair::established(60);
    let (alice, bob) = (p.alice.id.public(), p.bob.id.public());
    let msgs: Vec<_> = (0..5).map(|i| p.a_sends(&text(i))).collect();
    // Message 0 starts Alice's new chain; Bob's state before it holds only the root key,
    // from which the chain needs a DH with Alice's new ratchet key: nothing to find.
    assert!(find_key(&p.b.to_bytes(), &msgs[0], &alice, &bob).is_empty());
    p.b_gets(&msgs[0]).unwrap();

    // Now Bob's state holds the receiving chain key from which message 1's key derives.
    let before = p.b.to_bytes();
    let found = find_key(&before, &msgs[1], &alice, &bob);
    assert_eq!(found.len(), 1, "exactly one chain key opens message 1");
    let Found::ChainKey(at) = found[0].0 else {
        panic!("expected a chain key, found {:?}", found[0].0)
    };
    let mk1 = found[0].1;
    let ck1: [u8; 32] = before[at..at + 32].try_into().unwrap();
    assert!(find_key(&before, &msgs[0], &alice, &bob).is_empty());

    // Bob reads message 3 first: keys for 1 and 2 are stored as skipped keys.
    assert_eq!(&p.b_gets(&msgs[3]).unwrap().plaintext[..], &text(3)[..]);
    let mid = p.b.to_bytes();
    assert!(!contains_window(&mid, &ck1), "old chain key kept");
    for i in [1, 2] {
        let f = find_key(&mid, &msgs[i], &alice, &bob);
        assert_eq!(f.len(), 1);
        assert!(matches!(f[0].0, Found::MessageKey(_)), "skipped key {i}");
    }
    assert!(find_key(&mid, &msgs[3], &alice, &bob).is_empty());
    assert!(contains_window(&mid, &mk1));

    // Reading 1: its skipped key is erased; 2's is still there (so the search works).
    assert_eq!(&p.b_gets(&msgs[1]).unwrap().plaintext[..], &text(1)[..]);
    let after = p.b.to_bytes();
    assert!(!contains_window(&after, &mk1), "message key 1 kept");
    for i in [0, 1, 3] {
        assert!(
            find_key(&after, &msgs[i], &alice, &bob).is_empty(),
            "key {i}"
        );
    }
    assert_eq!(find_key(&after, &msgs[2], &alice, &bob).len(), 1);
    // Message 4 is still ahead: the current chain key derives it, as it must.
    assert_eq!(find_key(&after, &msgs[4], &alice, &bob).len(), 1);

    // A record restored from the later snapshot cannot read 0, 1 or 3 again, on any path.
    let mut stolen = SessionRecord::from_bytes(&after).unwrap();
    for i in [0, 1, 3] {
        assert_eq!(
            p.bob.decrypt(&mut stolen, &msgs[i]).unwrap_err(),
            DecryptError::Duplicate
        );
    }
    assert_eq!(
        &p.bob.decrypt(&mut stolen, &msgs[2]).unwrap().plaintext[..],
        &text(2)[..]
    );
}

#[test]
fn sent_message_keys_leave_the_senders_state() {
    let mut p = Pair::established(61);
    let (alice, bob) = (p.alice.id.public(), p.bob.id.public());
    let before = p.a.to_bytes();
    let m = p.a_sends(b"sent and forgotten");
    // Alice's state before sending does not hold this chain yet (the ratchet step is lazy);
    // after sending, the key that encrypted it is gone too.
    assert!(find_key(&before, &m, &alice, &bob).is_empty());
    let after = p.a.to_bytes();
    assert!(find_key(&after, &m, &alice, &bob).is_empty());
    // Control: the next message's key is derivable from Alice's state.
    let mut probe = p.clone();
    let next = probe.a_sends(b"next");
    assert_eq!(find_key(&after, &next, &alice, &bob).len(), 1);
}

#[test]
fn old_chains_are_unreadable_after_a_ratchet_turn() {
    let mut p = Pair::established(62);
    let (alice, bob) = (p.alice.id.public(), p.bob.id.public());
    let mut history = Vec::new();
    for turn in 0..4 {
        let m = p.a_sends(&text(turn));
        p.b_gets(&m).unwrap();
        let r = p.b_sends(&text(100 + turn));
        p.a_gets(&r).unwrap();
        history.push((m, r));
    }
    for state in [p.a.to_bytes(), p.b.to_bytes()] {
        for (m, r) in &history {
            assert!(find_key(&state, m, &alice, &bob).is_empty());
            assert!(find_key(&state, r, &alice, &bob).is_empty());
        }
    }
}

#[test]
fn post_compromise_security_after_one_round_trip() {
    let mut p = Pair::established(63);
    let m = p.a_sends(b"before the theft");
    p.b_gets(&m).unwrap();
    // Eve copies Bob's state (record and store).
    let mut eve_record = SessionRecord::from_bytes(&p.b.to_bytes()).unwrap();
    let mut eve = p.bob.clone();

    // Until the round trip completes, Eve reads what Alice sends on the current chain.
    let m1 = p.a_sends(b"read by eve 1");
    assert_eq!(
        &eve.decrypt(&mut eve_record, &m1).unwrap().plaintext[..],
        b"read by eve 1"
    );
    p.b_gets(&m1).unwrap();
    // Bob replies with a new ratchet key; Alice has not seen it yet and keeps her chain.
    let reply = p.b_sends(b"bob heals");
    let m2 = p.a_sends(b"read by eve 2");
    assert_eq!(
        &eve.decrypt(&mut eve_record, &m2).unwrap().plaintext[..],
        b"read by eve 2"
    );
    p.b_gets(&m2).unwrap();

    // Alice receives the reply and answers: a new chain from a DH Eve does not know.
    p.a_gets(&reply).unwrap();
    let healed: Vec<_> = (0..3)
        .map(|i| p.a_sends(format!("private {i}").as_bytes()))
        .collect();
    let eve_before = eve_record.to_bytes();
    for h in &healed {
        assert_eq!(
            eve.decrypt(&mut eve_record, h).unwrap_err(),
            DecryptError::Authentication
        );
        assert_eq!(eve_record.to_bytes(), eve_before);
    }
    for (i, h) in healed.iter().enumerate() {
        assert_eq!(
            &p.b_gets(h).unwrap().plaintext[..],
            format!("private {i}").as_bytes()
        );
    }
    // Nor does the stolen state contain any key for them.
    let (alice, bob) = (p.alice.id.public(), p.bob.id.public());
    for h in &healed {
        assert!(find_key(&eve_before, h, &alice, &bob).is_empty());
    }
}

#[test]
fn stolen_sender_state_cannot_read_replies_after_healing() {
    // The same from the other side: Eve steals Alice's state.
    let mut p = Pair::established(64);
    let mut eve_record = SessionRecord::from_bytes(&p.a.to_bytes()).unwrap();
    let mut eve = p.alice.clone();
    let r1 = p.b_sends(b"eve reads this");
    assert!(eve.decrypt(&mut eve_record, &r1).is_ok());
    p.a_gets(&r1).unwrap();
    let m = p.a_sends(b"alice turns");
    p.b_gets(&m).unwrap();
    let r2 = p.b_sends(b"healed");
    assert_eq!(
        eve.decrypt(&mut eve_record, &r2).unwrap_err(),
        DecryptError::Authentication
    );
    assert_eq!(&p.a_gets(&r2).unwrap().plaintext[..], b"healed");
}
