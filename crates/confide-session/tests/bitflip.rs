//! Single-bit flips, truncations and trailing bytes: never accepted, never a state change.
//!
//! Coverage: every bit of every byte of a ratchet message and of a bundle's signed part and
//! signatures; for prekey messages, whose every attempt runs the whole handshake (ML-KEM
//! decapsulation included, about 5 ms in a debug build), every bit of the identity, base
//! key, ids, flag and ratchet header, one rotating bit of every ciphertext byte (the same AEAD
//! check the ratchet test covers bit by bit), and one rotating bit of every 7th KEM
//! ciphertext byte. The ML-KEM public key of a bundle (1,184 bytes, covered by the KEM
//! signature as a whole) gets one rotating bit per byte.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use crate::common;

use std::ops::Range;

use common::{NOW, Pair, Party, rng};
use confide_crypto::kem::{KEM_CIPHERTEXT_LEN, KEM_PUBLIC_KEY_LEN};
use confide_session::{
    DecryptError, ExpectedIdentity, IdentityChangePolicy, PreKeyBundle, Session, SessionRecord,
};

/// Prekey message layout offsets: version, kind, identity(128), base key(32), signed prekey
/// id(4), KEM prekey id(4), KEM ciphertext(1088), flag(1), one-time id(4), ratchet body.
const BASE_KEY_AT: usize = 2 + 128;
const KEM_CT_AT: usize = BASE_KEY_AT + 32 + 8;
const FLAG_AT: usize = KEM_CT_AT + KEM_CIPHERTEXT_LEN;
const BODY_AT: usize = FLAG_AT + 1 + 4;

/// Flips each listed (byte, bit) of `bytes` and delivers the result to Bob: it must fail and
/// leave Bob's record and store byte-for-byte unchanged.
fn assert_flips_refused(p: &mut Pair, bytes: &[u8], positions: impl Iterator<Item = (usize, u8)>) {
    let before = p.bob_state();
    let mut tried = 0;
    for (at, bit) in positions {
        let mut b = bytes.to_vec();
        b[at] ^= 1 << bit;
        let res = p.b_gets(&b);
        assert!(res.is_err(), "flip of byte {at} bit {bit} was accepted");
        assert_eq!(
            p.bob_state(),
            before,
            "flip of byte {at} bit {bit} changed state"
        );
        tried += 1;
    }
    assert!(tried > 0);
}

fn all_bits(range: Range<usize>) -> impl Iterator<Item = (usize, u8)> {
    range.flat_map(|at| (0..8).map(move |bit| (at, bit)))
}

/// One bit per byte, the bit position rotating with the byte offset so that every position
/// is exercised across the range.
fn rotating_bit(range: impl Iterator<Item = usize>) -> impl Iterator<Item = (usize, u8)> {
    range.enumerate().map(|(i, at)| (at, (i % 8) as u8))
}

fn assert_truncations_and_trailing_refused(p: &mut Pair, bytes: &[u8]) {
    let before = p.bob_state();
    for len in 0..bytes.len() {
        assert!(
            matches!(p.b_gets(&bytes[..len]), Err(DecryptError::Decode(_))),
            "truncation to {len}"
        );
    }
    for extra in [0u8, 1, 0xff] {
        assert!(matches!(
            p.b_gets(&[bytes, &[extra]].concat()),
            Err(DecryptError::Decode(_))
        ));
    }
    assert_eq!(p.bob_state(), before);
}

#[test]
fn ratchet_message_every_bit() {
    let mut p = Pair::established(40);
    let m = p.a_sends(b"every bit matters");
    assert_flips_refused(&mut p, &m, all_bits(0..m.len()));
    assert_truncations_and_trailing_refused(&mut p, &m);
    // The original was never consumed.
    assert_eq!(&p.b_gets(&m).unwrap().plaintext[..], b"every bit matters");
}

/// A first message (with a one-time prekey) and Bob without any session.
fn first_message(seed: u8) -> (Pair, Vec<u8>) {
    let mut p = Pair::new(seed);
    let m = p.a_sends(b"first contact");
    assert_eq!(m.len(), BODY_AT + 32 + 12 + 256 + 16);
    assert_eq!(m[FLAG_AT], 1);
    (p, m)
}

#[test]
fn prekey_message_identity_base_key_ids_and_flag() {
    let (mut p, m) = first_message(41);
    let positions = all_bits(0..KEM_CT_AT).chain(all_bits(FLAG_AT..BODY_AT));
    assert_flips_refused(&mut p, &m, positions);
    assert_eq!(&p.b_gets(&m).unwrap().plaintext[..], b"first contact");
}

#[test]
fn prekey_message_kem_ciphertext_every_seventh_byte() {
    let (mut p, m) = first_message(42);
    let positions = rotating_bit((KEM_CT_AT..FLAG_AT).step_by(7).chain([FLAG_AT - 1]));
    assert_flips_refused(&mut p, &m, positions);
    assert_eq!(&p.b_gets(&m).unwrap().plaintext[..], b"first contact");
}

#[test]
fn prekey_message_body_header() {
    let (mut p, m) = first_message(43);
    // Ratchet key, previous chain length, index, ciphertext length.
    assert_flips_refused(&mut p, &m, all_bits(BODY_AT..BODY_AT + 44));
}

#[test]
fn prekey_message_body_ciphertext() {
    let (mut p, m) = first_message(44);
    assert_flips_refused(&mut p, &m, rotating_bit(BODY_AT + 44..m.len()));
    assert_truncations_and_trailing_refused(&mut p, &m);
    assert_eq!(&p.b_gets(&m).unwrap().plaintext[..], b"first contact");
}

/// Once Bob has the session, a later prekey message of it is matched by (identity, base key),
/// and its whole header must be the one that created the session: a flip of any header bit
/// (identity, base key, signed prekey id, KEM prekey id, KEM ciphertext, one-time flag and
/// id) is refused and changes nothing, even though the embedded ratchet message still
/// authenticates. The fields that only name Bob's prekeys are refused as
/// `AlteredPreKeyMessage`. The unaltered repeat decrypts, exactly once.
#[test]
fn prekey_message_to_an_existing_session_is_accepted_only_unaltered() {
    let (mut p, first) = first_message(45);
    p.b_gets(&first).unwrap();
    let m = p.a_sends(b"second");
    assert!(common::is_prekey(&m));
    let naming_prekeys = BASE_KEY_AT + 32..FLAG_AT;
    let one_time_id = FLAG_AT + 1..BODY_AT;
    for (at, bit) in all_bits(naming_prekeys.clone()).chain(all_bits(one_time_id.clone())) {
        let mut b = m.clone();
        b[at] ^= 1 << bit;
        let before = p.bob_state();
        assert_eq!(
            p.b_gets(&b).unwrap_err(),
            DecryptError::AlteredPreKeyMessage,
            "byte {at} bit {bit}"
        );
        assert_eq!(p.bob_state(), before, "byte {at} bit {bit} changed state");
    }
    // Every other header bit (version, kind, identity, base key, flag) is refused too.
    let rest = all_bits(0..BASE_KEY_AT + 32).chain(all_bits(FLAG_AT..FLAG_AT + 1));
    assert_flips_refused(&mut p, &m, rest);
    // The authentic repeat is accepted once.
    let got = p.b_gets(&m).unwrap();
    assert_eq!(&got.plaintext[..], b"second");
    assert!(!got.new_session);
    assert_eq!(p.b_gets(&m).unwrap_err(), DecryptError::Duplicate);
}

/// The same holds for an archived session: the header is checked on the session the prekey
/// message names, wherever it is in the record.
#[test]
fn altered_prekey_message_for_an_archived_session_is_refused() {
    let (mut p, first) = first_message(46);
    p.b_gets(&first).unwrap();
    let m = p.a_sends(b"late");
    // A second session from Alice makes the first one archived at Bob.
    let bundle = p.bob.store.bundles()[0].clone();
    p.a = SessionRecord::with_session(p.alice.initiate(&mut p.rng, &bundle));
    let newer = p.a_sends(b"new session");
    assert!(p.b_gets(&newer).unwrap().new_session);
    assert_eq!(p.b.archived_count(), 1);
    let mut altered = m.clone();
    altered[KEM_CT_AT + 100] ^= 0x10;
    let before = p.bob_state();
    assert_eq!(
        p.b_gets(&altered).unwrap_err(),
        DecryptError::AlteredPreKeyMessage
    );
    assert_eq!(p.bob_state(), before);
    assert_eq!(&p.b_gets(&m).unwrap().plaintext[..], b"late");
}

/// Bundle layout: version(1) identity(128) spk_id(4) spk(32) spk_sig(64) kem_id(4) kind(1)
/// kem(1184) kem_sig(64) flag(1) otk_id(4) otk(32).
const BUNDLE_OTK_ID_AT: usize = 1 + 128 + 4 + 32 + 64 + 4 + 1 + KEM_PUBLIC_KEY_LEN + 64 + 1;
const BUNDLE_OTK_AT: usize = BUNDLE_OTK_ID_AT + 4;

fn bundle_fixture(seed: u8) -> (Party, Party, Vec<u8>) {
    let mut rng = rng(seed);
    let alice = Party::new(&mut rng, 0, 0);
    let bob = Party::new(&mut rng, 1, 1);
    let bytes = bob.store.bundles()[0].to_bytes();
    assert_eq!(bytes.len(), BUNDLE_OTK_AT + 32);
    (alice, bob, bytes)
}

fn parse_and_verify(bytes: &[u8], own: &Party) -> bool {
    PreKeyBundle::from_bytes(bytes)
        .ok()
        .and_then(|b| {
            b.verify(ExpectedIdentity::TrustOnFirstUse, &own.id.public())
                .ok()
        })
        .is_some()
}

fn assert_bundle_flips_refused(positions: impl Iterator<Item = (usize, u8)>, seed: u8) {
    let (alice, _bob, bytes) = bundle_fixture(seed);
    assert!(parse_and_verify(&bytes, &alice));
    for (at, bit) in positions {
        let mut b = bytes.clone();
        b[at] ^= 1 << bit;
        assert!(
            !parse_and_verify(&b, &alice),
            "bundle flip of byte {at} bit {bit} verified"
        );
    }
}

#[test]
fn bundle_signed_part_every_bit_before_kem_key() {
    assert_bundle_flips_refused(all_bits(0..1 + 128 + 4 + 32 + 64 + 4 + 1), 46);
}

#[test]
fn bundle_kem_key_every_byte() {
    let start = 1 + 128 + 4 + 32 + 64 + 4 + 1;
    assert_bundle_flips_refused(rotating_bit(start..start + KEM_PUBLIC_KEY_LEN), 47);
}

#[test]
fn bundle_kem_signature_and_flag_every_bit() {
    let start = 1 + 128 + 4 + 32 + 64 + 4 + 1 + KEM_PUBLIC_KEY_LEN;
    assert_bundle_flips_refused(all_bits(start..BUNDLE_OTK_ID_AT), 48);
}

#[test]
fn bundle_truncations_and_trailing_bytes() {
    let (alice, bob, bytes) = bundle_fixture(49);
    for len in 0..bytes.len() {
        assert!(
            PreKeyBundle::from_bytes(&bytes[..len]).is_err(),
            "len {len}"
        );
    }
    assert!(PreKeyBundle::from_bytes(&[&bytes[..], &[0]].concat()).is_err());
    // Without the one-time prekey the flag is the last byte.
    let bare = bob.store.last_resort_bundle().unwrap().to_bytes();
    assert_eq!(bare.len(), BUNDLE_OTK_ID_AT);
    assert!(PreKeyBundle::from_bytes(&[&bare[..], &[0]].concat()).is_err());
    assert!(parse_and_verify(&bare, &alice));
}

/// The one-time prekey is not signed (as in X3DH and PQXDH: the signature would have to be
/// made when the key is generated and adds 64 bytes per key for no gain, since DH1..DH3 and
/// the KEM secret already authenticate Bob). A bundle with a flipped one-time part therefore
/// verifies, and the damage shows at Bob: the session fails there, nothing is consumed.
/// The single exception is bit 7 of the key's last byte, which X25519 would ignore (RFC 7748
/// section 5): that encoding is not canonical and the bundle is refused when parsed (so no key
/// has two encodings). Covered: every bit of the id and of the key's last byte, one rotating
/// bit of each other key byte.
#[test]
fn bundle_one_time_prekey_flips_fail_at_the_responder() {
    let (alice, mut bob, bytes) = bundle_fixture(50);
    let mut rng = rng(51);
    let store_before = bob.store.to_bytes();
    let positions = all_bits(BUNDLE_OTK_ID_AT..BUNDLE_OTK_AT)
        .chain(rotating_bit(BUNDLE_OTK_AT..BUNDLE_OTK_AT + 31))
        .chain(all_bits(BUNDLE_OTK_AT + 31..BUNDLE_OTK_AT + 32));
    let mut same_key = 0;
    for (at, bit) in positions {
        let mut b = bytes.clone();
        b[at] ^= 1 << bit;
        let Ok(parsed) = PreKeyBundle::from_bytes(&b) else {
            assert_eq!(
                (at, bit),
                (BUNDLE_OTK_AT + 31, 7),
                "only the top bit is refused"
            );
            same_key += 1;
            continue;
        };
        let verified = parsed
            .verify(ExpectedIdentity::TrustOnFirstUse, &alice.id.public())
            .unwrap();
        let Ok(session) = Session::initiate(&mut rng, &alice.id, &verified) else {
            // A flip that makes the key low order is refused by the initiator already.
            continue;
        };
        let m = SessionRecord::with_session(session)
            .encrypt(&mut rng, b"hi")
            .unwrap();
        let mut record = SessionRecord::new();
        let res = record.decrypt(&mut bob.store, &m, NOW, IdentityChangePolicy::Refuse);
        if at < BUNDLE_OTK_AT {
            assert_eq!(res.unwrap_err(), DecryptError::UnknownOneTimePreKey);
        } else {
            assert_eq!(res.unwrap_err(), DecryptError::Authentication, "{at}/{bit}");
        }
        assert_eq!(bob.store.to_bytes(), store_before);
        assert!(record.current().is_none());
    }
    assert_eq!(same_key, 1);
}

/// `Session::decrypt` on its own (without the record, which routes a prekey message by its
/// base key) refuses a prekey message of another session between the same two identities as
/// `Authentication`, before comparing any header, and changes nothing.
#[test]
fn a_session_refuses_a_prekey_message_of_another_session_between_the_same_peers() {
    let (mut p, first) = first_message(47);
    p.b_gets(&first).unwrap();
    let mut bobs = Session::from_bytes(&p.b.current().unwrap().to_bytes()).unwrap();
    // A second session from Alice: the same identities, another base key.
    let bundle = p.bob.store.bundles()[0].clone();
    p.a = SessionRecord::with_session(p.alice.initiate(&mut p.rng, &bundle));
    let other = p.a_sends(b"another session");
    let parsed = confide_session::SessionMessage::from_bytes(&other).unwrap();
    assert!(matches!(parsed, confide_session::SessionMessage::PreKey(_)));
    let before = bobs.to_bytes();
    assert_eq!(
        bobs.decrypt(&parsed, NOW).unwrap_err(),
        DecryptError::Authentication
    );
    assert_eq!(bobs.to_bytes(), before, "a refused message changes nothing");
    // Its own first message passes the identity and header checks and is refused only as
    // the duplicate it is (it was received before the session was copied).
    let own = confide_session::SessionMessage::from_bytes(&first).unwrap();
    assert_eq!(
        bobs.decrypt(&own, NOW).unwrap_err(),
        DecryptError::Duplicate
    );
}
