//! Public keys from the wire must use the canonical X25519 encoding: a set top bit or a
//! value at or above p = 2^255 - 19 is refused at parse time, so no key has two encodings.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use crate::common;

use common::Pair;
use confide_session::{PreKeyBundle, SessionMessage};

/// Offset of the ratchet key in a ratchet message: version, kind.
const RATCHET_KEY_AT: usize = 2;

#[test]
fn ratchet_keys_with_the_top_bit_set_are_refused() {
    let mut p = Pair::established(201);
    let m = p.a_sends(b"hello");
    assert!(!common::is_prekey(&m));
    assert!(SessionMessage::from_bytes(&m).is_ok());
    let mut high = m.clone();
    high[RATCHET_KEY_AT + 31] |= 0x80;
    assert!(
        SessionMessage::from_bytes(&high).is_err(),
        "a non-canonical ratchet key is refused"
    );
    // And the session never sees it: state unchanged, the original still decrypts.
    let before = p.bob_state();
    assert!(p.b_gets(&high).is_err());
    assert_eq!(before, p.bob_state());
    assert_eq!(&p.b_gets(&m).unwrap().plaintext[..], b"hello");
}

#[test]
fn ratchet_keys_at_or_above_p_are_refused() {
    let mut p = Pair::established(202);
    let m = p.a_sends(b"hello");
    for low in [0xed_u8, 0xf0, 0xff] {
        let mut key = [0xffu8; 32];
        key[0] = low;
        key[31] = 0x7f;
        let mut bad = m.clone();
        bad[RATCHET_KEY_AT..RATCHET_KEY_AT + 32].copy_from_slice(&key);
        assert!(SessionMessage::from_bytes(&bad).is_err(), "{low:#x}");
    }
}

/// Offset of the signed prekey in a bundle: version, identity (128), signed prekey id (4).
const SIGNED_PREKEY_AT: usize = 1 + 128 + 4;

#[test]
fn bundles_with_a_non_canonical_signed_prekey_are_refused() {
    let p = Pair::new(203);
    let bundle = p.bob.store.bundles()[0].to_bytes();
    assert!(PreKeyBundle::from_bytes(&bundle).is_ok());
    let mut high = bundle.clone();
    high[SIGNED_PREKEY_AT + 31] |= 0x80;
    assert!(PreKeyBundle::from_bytes(&high).is_err(), "top bit set");
    let mut above_p = bundle.clone();
    let mut key = [0xffu8; 32];
    key[31] = 0x7f;
    above_p[SIGNED_PREKEY_AT..SIGNED_PREKEY_AT + 32].copy_from_slice(&key);
    assert!(PreKeyBundle::from_bytes(&above_p).is_err(), "at or above p");
}

#[test]
fn identities_with_a_non_canonical_agreement_key_are_refused() {
    use confide_crypto::{codec::Reader, identity::IdentityPublicKey};
    let p = Pair::new(204);
    let bytes = p.bob.store.identity().public().to_bytes();
    assert!(IdentityPublicKey::read(&mut Reader::new(&bytes)).is_ok());
    let mut high = bytes;
    // Signing key (32), then the agreement key (32): set the agreement key's top bit.
    high[32 + 31] |= 0x80;
    assert!(IdentityPublicKey::read(&mut Reader::new(&high)).is_err());
}
