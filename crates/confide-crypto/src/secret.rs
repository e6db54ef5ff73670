//! Typed secrets: the vocabulary crate's [`SecretBytes`], [`define_secret!`](crate::define_secret)
//! and [`ct_eq`] (re-exported), and the secret types of the primitives here.

pub use confide_wire::secret::{SecretBytes, ct_eq};

use crate::define_secret;

define_secret!(
    /// The 32-byte output of a key agreement or KEM: input keying material for a KDF only.
    pub struct SharedSecret(32);
);

define_secret!(
    /// A 32-byte symmetric key for ChaCha20-Poly1305.
    pub struct AeadKey(32);
);

define_secret!(
    /// The 32-byte secret a session exports for its conversation's symmetric sealed-sender
    /// envelopes (confide-session derives it, confide-sealed uses it): known to both sides of
    /// the session and to nobody else.
    pub struct EnvelopeSecret(32);
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let shown = format!("{:?}", SharedSecret::new([0xAB; 32]));
        assert_eq!(shown, "SharedSecret([REDACTED])");
    }

    #[test]
    fn equality_is_by_value() {
        assert_eq!(AeadKey::new([1; 32]), AeadKey::new([1; 32]));
        assert_ne!(AeadKey::new([1; 32]), AeadKey::new([2; 32]));
    }
}
