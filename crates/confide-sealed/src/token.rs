//! Delivery tokens: abuse control without identifying the sender.
//!
//! A recipient holds a secret [`ProfileKey`] and derives a [`DeliveryToken`] from it, which it
//! shares with its contacts inside their end-to-end encrypted sessions. It registers the
//! token's [`TokenVerifier`] (a hash) with the relay for its mailbox. A sender presents the
//! token with each sealed envelope; the relay checks it with [`relay_check`] against the
//! mailbox's verifier. The relay learns that the sender knows the token (is a contact), not
//! which contact. To cut a contact off, the recipient rotates its profile key, registers the
//! new verifier and shares the new token with everyone else.

use core::fmt;

use confide_crypto::{
    CryptoError,
    kdf::{hkdf_sha256, labels, sha256},
    secret::ct_eq,
};

use crate::consts::{DELIVERY_TOKEN_LEN, MAILBOX_VERIFIER_LABEL, PROFILE_KEY_LEN};

confide_crypto::define_secret!(
    /// A recipient-held secret from which its delivery token is derived. Rotating it revokes
    /// every token handed out so far.
    pub struct ProfileKey(PROFILE_KEY_LEN);
);

confide_crypto::define_secret!(
    /// The access key a recipient shares with its contacts; a sender presents it to the
    /// relay with each sealed envelope for that recipient.
    pub struct DeliveryToken(DELIVERY_TOKEN_LEN);
);

impl DeliveryToken {
    /// `HKDF-SHA256(salt = none, ikm = profile key, info = "Confide_v1_DeliveryToken")`,
    /// [`DELIVERY_TOKEN_LEN`] bytes.
    pub fn derive(profile_key: &ProfileKey) -> Result<Self, CryptoError> {
        let mut out = [0u8; DELIVERY_TOKEN_LEN];
        hkdf_sha256(None, profile_key.expose(), labels::DELIVERY_TOKEN, &mut out)?;
        Ok(Self::new(out))
    }

    /// The verifier the relay stores for the mailbox.
    #[must_use]
    pub fn verifier(&self) -> TokenVerifier {
        TokenVerifier(sha256(&[MAILBOX_VERIFIER_LABEL, self.expose()]))
    }
}

/// What the relay stores per mailbox: `SHA-256("Confide_v1_MailboxVerifier" || token)`.
/// Knowing it does not let anyone produce a token.
#[derive(Clone, Copy)]
pub struct TokenVerifier([u8; 32]);

impl TokenVerifier {
    /// From its 32-byte encoding.
    #[must_use]
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32-byte encoding.
    #[must_use]
    pub const fn to_bytes(&self) -> [u8; 32] {
        self.0
    }
}

impl PartialEq for TokenVerifier {
    fn eq(&self, other: &Self) -> bool {
        ct_eq(&self.0, &other.0)
    }
}

impl Eq for TokenVerifier {}

impl fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A verifier is stable per mailbox, so it could link requests: not printed.
        f.write_str("TokenVerifier(..)")
    }
}

/// The relay's check: whether `presented` (the bytes a sender sent) is the token behind
/// `verifier`. A wrong length is refused at once (lengths are public); otherwise the token is
/// hashed and the hashes compared in constant time. Nothing about the sender is involved.
#[must_use]
pub fn relay_check(verifier: &TokenVerifier, presented: &[u8]) -> bool {
    if presented.len() != DELIVERY_TOKEN_LEN {
        return false;
    }
    let computed = sha256(&[MAILBOX_VERIFIER_LABEL, presented]);
    ct_eq(&computed, &verifier.0)
}
