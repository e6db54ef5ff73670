//! The exact `Debug` output of the key types, pinned: secrets print as `[REDACTED]`, public
//! keys as `(..)` (they would identify a person). The hand-written impls name every field, so
//! a new one needs a decision.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use chacha20::ChaCha20Rng;
use confide_crypto::{
    identity::IdentityKeyPair,
    kem::KemKeyPair,
    secret::{AeadKey, SharedSecret},
    signing::SigningKey,
    x25519::X25519KeyPair,
};
use rand_core::SeedableRng;

#[test]
fn debug_of_key_types_is_pinned() {
    let mut rng = ChaCha20Rng::from_seed([0x21; 32]);
    let identity = IdentityKeyPair::generate(&mut rng);
    assert_eq!(format!("{identity:?}"), "IdentityKeyPair([REDACTED])");
    assert_eq!(format!("{:?}", identity.public()), "IdentityPublicKey(..)");
    assert_eq!(
        format!("{:?}", SigningKey::generate(&mut rng)),
        "SigningKey([REDACTED])"
    );
    let x = X25519KeyPair::generate(&mut rng);
    assert_eq!(
        format!("{x:?}"),
        "X25519KeyPair { secret: X25519Secret([REDACTED]), public: X25519PublicKey(..) }"
    );
    assert_eq!(
        format!("{:?}", KemKeyPair::generate(&mut rng)),
        "KemKeyPair([REDACTED])"
    );
    assert_eq!(
        format!("{:?}", SharedSecret::new([7; 32])),
        "SharedSecret([REDACTED])"
    );
    assert_eq!(
        format!("{:?}", AeadKey::new([7; 32])),
        "AeadKey([REDACTED])"
    );
    let mut writer = confide_crypto::codec::Writer::new();
    writer.bytes(b"serialised state");
    assert_eq!(format!("{writer:?}"), "Writer { len: 16, .. }");
}
