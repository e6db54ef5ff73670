//! The Double Ratchet as the two users see it: turns, loss, reordering, duplicates and limits.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use crate::common;

use common::{NOW, Pair, ratchet_part, text};
use confide_crypto::{Duration, Timestamp};
use confide_session::{
    DecryptError, IdentityChangePolicy, SessionRecord,
    consts::{MAX_FORWARD_JUMP, MAX_REMEMBERED_RATCHET_KEYS, MAX_SKIPPED_KEYS},
};

#[test]
fn ping_pong_steps_the_ratchet_every_turn() {
    let mut p = Pair::established(20);
    let mut seen_a = vec![p.a.current().unwrap().current_ratchet_key()];
    let mut seen_b = vec![p.b.current().unwrap().current_ratchet_key()];
    for turn in 0..10 {
        // Several messages per turn share one ratchet key.
        let msgs: Vec<_> = (0..3).map(|i| p.a_sends(&text(turn * 10 + i))).collect();
        let key = ratchet_part(&msgs[0]).ratchet_key();
        assert!(msgs.iter().all(|m| ratchet_part(m).ratchet_key() == key));
        assert_eq!(
            msgs.iter()
                .map(|m| ratchet_part(m).index())
                .collect::<Vec<_>>(),
            [0, 1, 2]
        );
        let ka = p.a.current().unwrap().current_ratchet_key();
        assert_eq!(ka, key);
        assert!(!seen_a.contains(&ka), "Alice reused a ratchet key");
        seen_a.push(ka);
        for (i, m) in msgs.iter().enumerate() {
            assert_eq!(
                &p.b_gets(m).unwrap().plaintext[..],
                &text(turn * 10 + i)[..]
            );
        }
        let r = p.b_sends(&text(1000 + turn));
        let kb = p.b.current().unwrap().current_ratchet_key();
        assert_eq!(ratchet_part(&r).ratchet_key(), kb);
        assert!(!seen_b.contains(&kb), "Bob reused a ratchet key");
        seen_b.push(kb);
        assert_eq!(&p.a_gets(&r).unwrap().plaintext[..], &text(1000 + turn)[..]);
    }
}

#[test]
fn out_of_order_within_and_across_chains() {
    let mut p = Pair::established(21);
    // Chain 1: five messages; Bob sees 4, 0, 2.
    let c1: Vec<_> = (0..5).map(|i| p.a_sends(&text(i))).collect();
    for i in [4, 0, 2] {
        assert_eq!(&p.b_gets(&c1[i]).unwrap().plaintext[..], &text(i)[..]);
    }
    assert_eq!(p.b.current().unwrap().skipped_key_count(), 2);
    // Bob answers, Alice starts chain 2, which announces previous_chain_len = 5.
    let r = p.b_sends(b"r");
    p.a_gets(&r).unwrap();
    let c2: Vec<_> = (0..3).map(|i| p.a_sends(&text(10 + i))).collect();
    assert_eq!(ratchet_part(&c2[0]).previous_chain_len(), 5);
    // Chain 2's last message first, then the leftovers of chain 1, then the rest.
    assert_eq!(&p.b_gets(&c2[2]).unwrap().plaintext[..], &text(12)[..]);
    assert_eq!(p.b.current().unwrap().skipped_key_count(), 4);
    for i in [3, 1] {
        assert_eq!(&p.b_gets(&c1[i]).unwrap().plaintext[..], &text(i)[..]);
    }
    for i in [1, 0] {
        assert_eq!(&p.b_gets(&c2[i]).unwrap().plaintext[..], &text(10 + i)[..]);
    }
    assert_eq!(p.b.current().unwrap().skipped_key_count(), 0);
    // Everything again: all duplicates.
    for m in c1.iter().chain(&c2) {
        assert_eq!(p.b_gets(m).unwrap_err(), DecryptError::Duplicate);
    }
}

#[test]
fn previous_chain_len_covers_a_chain_whose_tail_was_never_seen() {
    let mut p = Pair::established(22);
    let c1: Vec<_> = (0..4).map(|i| p.a_sends(&text(i))).collect();
    p.b_gets(&c1[0]).unwrap();
    let r = p.b_sends(b"r");
    p.a_gets(&r).unwrap();
    let c2 = p.a_sends(b"chain two");
    // Chain 2 arrives before messages 1..3 of chain 1: their keys are derived and stored.
    p.b_gets(&c2).unwrap();
    assert_eq!(p.b.current().unwrap().skipped_key_count(), 3);
    for i in [3, 2, 1] {
        assert_eq!(&p.b_gets(&c1[i]).unwrap().plaintext[..], &text(i)[..]);
    }
}

#[test]
fn lost_messages_do_not_block_the_conversation() {
    let mut p = Pair::established(23);
    for round in 0..5 {
        let msgs: Vec<_> = (0..6).map(|i| p.a_sends(&text(round * 6 + i))).collect();
        // Only odd ones arrive.
        for i in (1..6).step_by(2) {
            assert_eq!(
                &p.b_gets(&msgs[i]).unwrap().plaintext[..],
                &text(round * 6 + i)[..]
            );
        }
        // Bob's reply is lost entirely; the next one arrives.
        let _lost = p.b_sends(b"lost");
        let r = p.b_sends(b"arrives");
        assert_eq!(&p.a_gets(&r).unwrap().plaintext[..], b"arrives");
    }
    // Lost messages leave skipped keys behind (3 per round from Alice, 1 per round from Bob).
    assert_eq!(p.b.current().unwrap().skipped_key_count(), 5 * 3);
    assert_eq!(p.a.current().unwrap().skipped_key_count(), 5);
}

#[test]
fn duplicates_are_reported_as_such() {
    let mut p = Pair::established(24);
    let m0 = p.a_sends(b"0");
    let m1 = p.a_sends(b"1");
    p.b_gets(&m1).unwrap();
    p.b_gets(&m0).unwrap(); // from a skipped key
    for m in [&m0, &m1] {
        let before = p.bob_state();
        assert_eq!(p.b_gets(m).unwrap_err(), DecryptError::Duplicate);
        assert_eq!(p.bob_state(), before);
    }
    // After a ratchet turn, the old chain's messages are still duplicates.
    let r = p.b_sends(b"r");
    p.a_gets(&r).unwrap();
    let m2 = p.a_sends(b"2");
    p.b_gets(&m2).unwrap();
    for m in [&m0, &m1, &m2] {
        assert_eq!(p.b_gets(m).unwrap_err(), DecryptError::Duplicate);
    }
    assert_eq!(p.a_gets(&r).unwrap_err(), DecryptError::Duplicate);
}

#[test]
fn forward_jump_limit_is_exact() {
    let mut p = Pair::established(25);
    let jump = MAX_FORWARD_JUMP as usize;
    // Messages 0 ..= jump + 2 of one chain; Bob reads message 0, so he expects 1 next.
    let msgs: Vec<_> = (0..=jump + 2)
        .map(|i| p.a_sends(&i.to_be_bytes()))
        .collect();
    p.b_gets(&msgs[0]).unwrap();
    // Index jump + 2 would skip jump + 1 keys: refused, nothing changes.
    let before = p.bob_state();
    assert_eq!(
        p.b_gets(&msgs[jump + 2]).unwrap_err(),
        DecryptError::TooFarAhead {
            ahead: u64::from(MAX_FORWARD_JUMP) + 1,
            max: MAX_FORWARD_JUMP
        }
    );
    assert_eq!(p.bob_state(), before);
    // Index jump + 1 skips exactly MAX_FORWARD_JUMP keys: accepted.
    assert_eq!(
        &p.b_gets(&msgs[jump + 1]).unwrap().plaintext[..],
        &(jump + 1).to_be_bytes()
    );
    assert_eq!(p.b.current().unwrap().skipped_key_count(), jump);
    // And now the refused one is the next message.
    assert_eq!(
        &p.b_gets(&msgs[jump + 2]).unwrap().plaintext[..],
        &(jump + 2).to_be_bytes()
    );
    // The skipped ones all still decrypt, in any order.
    for i in [1, jump, 1000, 7] {
        assert_eq!(&p.b_gets(&msgs[i]).unwrap().plaintext[..], &i.to_be_bytes());
    }
    assert_eq!(p.b.current().unwrap().skipped_key_count(), jump - 4);
}

#[test]
fn forward_jump_limit_in_a_new_chain() {
    // Alice has heard Bob's reply, so her next message starts a new chain; the jump is
    // measured from that chain's start.
    let mut p = Pair::established(26);
    let msgs: Vec<_> = (0..=MAX_FORWARD_JUMP as usize + 1)
        .map(|i| p.a_sends(&i.to_be_bytes()))
        .collect();
    let before = p.bob_state();
    assert_eq!(
        p.b_gets(msgs.last().unwrap()).unwrap_err(),
        DecryptError::TooFarAhead {
            ahead: u64::from(MAX_FORWARD_JUMP) + 1,
            max: MAX_FORWARD_JUMP
        }
    );
    assert_eq!(p.bob_state(), before);
    assert!(p.b_gets(&msgs[MAX_FORWARD_JUMP as usize]).is_ok());
    assert_eq!(
        p.b.current().unwrap().skipped_key_count(),
        MAX_FORWARD_JUMP as usize
    );
}

#[test]
fn skipped_keys_are_capped_oldest_first() {
    let mut p = Pair::established(27);
    // Chain A1: 2001 messages. Bob reads 1000 and 2000: 1999 skipped keys (0..999, 1001..1999).
    let a1: Vec<_> = (0..=2000usize)
        .map(|i| p.a_sends(&i.to_be_bytes()))
        .collect();
    p.b_gets(&a1[1000]).unwrap();
    p.b_gets(&a1[2000]).unwrap();
    assert_eq!(p.b.current().unwrap().skipped_key_count(), 1999);
    // A turn, then Alice's chain A2 message 2 arrives first: two more keys; the cap is
    // MAX_SKIPPED_KEYS, so the oldest (A1 message 0) is evicted.
    let r = p.b_sends(b"r");
    p.a_gets(&r).unwrap();
    let a2: Vec<_> = (0..3usize)
        .map(|i| p.a_sends(&(10_000 + i).to_be_bytes()))
        .collect();
    p.b_gets(&a2[2]).unwrap();
    assert_eq!(p.b.current().unwrap().skipped_key_count(), MAX_SKIPPED_KEYS);
    // The evicted one fails (as a duplicate: its chain is known and its key is gone) and
    // changes nothing; newer skipped ones still decrypt.
    let before = p.bob_state();
    assert_eq!(p.b_gets(&a1[0]).unwrap_err(), DecryptError::Duplicate);
    assert_eq!(p.bob_state(), before);
    assert_eq!(
        &p.b_gets(&a1[1]).unwrap().plaintext[..],
        &1usize.to_be_bytes()
    );
    assert_eq!(
        &p.b_gets(&a1[1999]).unwrap().plaintext[..],
        &1999usize.to_be_bytes()
    );
    assert_eq!(
        &p.b_gets(&a2[0]).unwrap().plaintext[..],
        &10_000usize.to_be_bytes()
    );
    assert_eq!(
        p.b.current().unwrap().skipped_key_count(),
        MAX_SKIPPED_KEYS - 3
    );
}

#[test]
fn pruning_erases_skipped_keys() {
    let mut p = Pair::established(28);
    let early: Vec<_> = (0..3).map(|i| p.a_sends(&text(i))).collect();
    let t1 = NOW;
    // Message 3 arrives at t1: keys 0..2 are stored with time t1.
    let m3 = p.a_sends(&text(3));
    p.b_gets(&m3).unwrap();
    // Message 6 arrives an hour later: keys 4 and 5 are stored then.
    let later: Vec<_> = (4..7).map(|i| p.a_sends(&text(i))).collect();
    let t2 = t1.saturating_add(Duration::from_hours(1));
    p.b.decrypt(
        &mut p.bob.store,
        &later[2],
        t2,
        IdentityChangePolicy::Refuse,
    )
    .unwrap();
    assert_eq!(p.b.current().unwrap().skipped_key_count(), 5);
    // Nothing is older than t1.
    assert_eq!(p.b.prune_skipped_keys(t1), 0);
    // Prune everything stored before t2: the three early keys go.
    assert_eq!(p.b.prune_skipped_keys(t2), 3);
    assert_eq!(p.b.current().unwrap().skipped_key_count(), 2);
    for m in &early {
        assert_eq!(p.b_gets(m).unwrap_err(), DecryptError::Duplicate);
    }
    // A restored copy cannot bring them back either.
    let mut restored = confide_session::SessionRecord::from_bytes(&p.b.to_bytes()).unwrap();
    for m in &early {
        assert!(p.bob.decrypt(&mut restored, m).is_err());
    }
    assert_eq!(&p.b_gets(&later[0]).unwrap().plaintext[..], &text(4)[..]);
    // Pruning in the future erases the rest.
    assert_eq!(p.b.prune_skipped_keys(Timestamp::MAX), 1);
    assert_eq!(p.b_gets(&later[1]).unwrap_err(), DecryptError::Duplicate);
    // The conversation continues.
    let m = p.a_sends(b"still here");
    assert_eq!(&p.b_gets(&m).unwrap().plaintext[..], b"still here");
}

// Added for survivors of `cargo mutants -p confide-session` (docs/mutants.md).
#[test]
fn the_last_remembered_ratchet_keys_are_bounded_and_a_long_session_still_restores() {
    let mut p = Pair::established(30);
    let turns = MAX_REMEMBERED_RATCHET_KEYS + 8;
    let mut from_alice = Vec::new();
    let mut sizes = Vec::new();
    for turn in 0..turns {
        let m = p.a_sends(&text(turn));
        p.b_gets(&m).unwrap();
        from_alice.push(m);
        let r = p.b_sends(&text(1000 + turn));
        p.a_gets(&r).unwrap();
        // Bob's stored record reads back after every turn, byte for byte.
        let bytes = p.b.to_bytes();
        let restored = SessionRecord::from_bytes(&bytes)
            .unwrap_or_else(|e| panic!("turn {turn}: stored record refused: {e}"));
        assert_eq!(restored.to_bytes(), bytes, "turn {turn}");
        sizes.push(bytes.len());
    }
    // Once the list of previous ratchet keys is full, the record stops growing.
    let full = sizes[MAX_REMEMBERED_RATCHET_KEYS + 1];
    assert!(
        sizes[MAX_REMEMBERED_RATCHET_KEYS + 1..]
            .iter()
            .all(|&s| s == full),
        "{sizes:?}"
    );
    // Alice's ratchet key of turn i retired when Bob received turn i + 1, so the last
    // MAX_REMEMBERED_RATCHET_KEYS retired keys are those of turns turns-1-MAX ..= turns-2. A
    // replay on the oldest remembered key is a duplicate; one older is not recognised.
    let oldest_remembered = turns - 1 - MAX_REMEMBERED_RATCHET_KEYS;
    assert_eq!(
        p.b_gets(&from_alice[oldest_remembered]).unwrap_err(),
        DecryptError::Duplicate
    );
    let forgotten = p.b_gets(&from_alice[oldest_remembered - 1]).unwrap_err();
    assert_ne!(forgotten, DecryptError::Duplicate);
}
