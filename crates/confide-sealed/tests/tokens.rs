//! Delivery tokens: derivation, the relay's check, rotation.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use chacha20::ChaCha20Rng;
use confide_sealed::{DELIVERY_TOKEN_LEN, DeliveryToken, ProfileKey, TokenVerifier, relay_check};
use rand_core::SeedableRng;

#[test]
fn the_relay_accepts_the_token_and_nothing_else() {
    let mut rng = ChaCha20Rng::from_seed([1; 32]);
    let profile = ProfileKey::random(&mut rng);
    let token = DeliveryToken::derive(&profile).unwrap();
    let verifier = token.verifier();
    assert!(relay_check(&verifier, token.expose()));
    // Derivation is deterministic: every contact holding the profile key presents the same token.
    assert_eq!(DeliveryToken::derive(&profile).unwrap(), token);
    // Wrong lengths and every single-bit flip are refused.
    assert!(!relay_check(&verifier, &[]));
    assert!(!relay_check(
        &verifier,
        &token.expose()[..DELIVERY_TOKEN_LEN - 1]
    ));
    let mut long = token.expose().to_vec();
    long.push(0);
    assert!(!relay_check(&verifier, &long));
    for i in 0..DELIVERY_TOKEN_LEN {
        for bit in 0..8 {
            let mut t = *token.expose();
            t[i] ^= 1 << bit;
            assert!(!relay_check(&verifier, &t));
        }
    }
    // The verifier itself is not a token.
    assert!(!relay_check(
        &verifier,
        &verifier.to_bytes()[..DELIVERY_TOKEN_LEN]
    ));
}

#[test]
fn rotating_the_profile_key_revokes_old_tokens() {
    let mut rng = ChaCha20Rng::from_seed([2; 32]);
    let old = DeliveryToken::derive(&ProfileKey::random(&mut rng)).unwrap();
    let new = DeliveryToken::derive(&ProfileKey::random(&mut rng)).unwrap();
    let verifier = new.verifier();
    assert!(relay_check(&verifier, new.expose()));
    assert!(!relay_check(&verifier, old.expose()));
    let stored = TokenVerifier::from_bytes(verifier.to_bytes());
    assert_eq!(stored, verifier);
}

#[test]
fn debug_output_is_redacted() {
    let token = DeliveryToken::derive(&ProfileKey::new([7; 32])).unwrap();
    let shown = format!(
        "{token:?} {:?} {:?}",
        token.verifier(),
        ProfileKey::new([7; 32])
    );
    assert!(!shown.contains(&hex::encode(token.expose())));
    assert!(!shown.contains("07, 07") && !shown.contains("7, 7"));
    assert!(shown.contains("REDACTED"));
}

// Added for a survivor of `cargo mutants -p confide-sealed` (docs/mutants.md).
#[test]
fn verifiers_are_equal_exactly_when_their_tokens_are() {
    let a = DeliveryToken::derive(&ProfileKey::new([1; 32])).unwrap();
    let b = DeliveryToken::derive(&ProfileKey::new([2; 32])).unwrap();
    assert_eq!(a.verifier(), a.verifier());
    assert_ne!(a.verifier(), b.verifier());
    let mut flipped = a.verifier().to_bytes();
    flipped[31] ^= 1;
    assert_ne!(TokenVerifier::from_bytes(flipped), a.verifier());
}
