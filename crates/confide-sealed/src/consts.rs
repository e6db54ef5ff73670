//! Every limit and fixed size of the sealed-sender formats, each with its reason.

use confide_crypto::{aead::TAG_LEN, identity::IDENTITY_PUBLIC_KEY_LEN, signing::SIGNATURE_LEN};

/// The largest payload [`seal`](crate::seal) accepts, in bytes (256 KiB). Reason: a session
/// message is at most about 140 KiB (128 KiB of padded plaintext plus headers and a KEM
/// ciphertext); the margin lets the session layer grow without a new envelope version while
/// still bounding what a recipient decrypts per envelope.
pub const MAX_PAYLOAD_LEN: usize = 256 * 1024;

/// The longest sender address, in bytes. Reason: an address is an opaque account handle
/// (a UUID is 16 bytes, a pseudonymous handle a few dozen); 64 bytes leaves room and keeps
/// the certificate region small.
pub const MAX_SENDER_ADDRESS_LEN: usize = 64;

/// The longest display name, in bytes of UTF-8. Reason: a name shown in a chat header; a
/// bound keeps certificates small and stops a server from shipping a paragraph as a "name".
pub const MAX_DISPLAY_NAME_LEN: usize = 64;

/// The most root keys a [`TrustRoots`](crate::TrustRoots) holds. Reason: rotation needs two
/// or three at once; a small bound keeps lookup trivial and a bad configuration obvious.
pub const MAX_TRUST_ROOTS: usize = 16;

/// The most revoked server key ids a [`TrustRoots`](crate::TrustRoots) holds. Reason:
/// server keys are short-lived and revocation is rare; the bound keeps the configuration
/// small enough to ship inside an app.
pub const MAX_REVOKED_SERVER_KEYS: usize = 1024;

/// Version byte of a server certificate.
pub const SERVER_CERTIFICATE_VERSION: u8 = 1;

/// Version byte of a sender certificate.
pub const SENDER_CERTIFICATE_VERSION: u8 = 1;

/// Version byte of a sealed envelope.
pub const ENVELOPE_VERSION: u8 = 1;

/// Version byte of an encoded trust configuration.
pub const TRUST_CONFIG_VERSION: u8 = 1;

/// Signed part of a server certificate: version, root key id, server key id, server key, expiry.
pub(crate) const SERVER_CERTIFICATE_BODY_LEN: usize = 1 + 4 + 4 + 32 + 8;

/// Encoded length of a server certificate (fixed): its signed body and the root's signature.
pub const SERVER_CERTIFICATE_LEN: usize = SERVER_CERTIFICATE_BODY_LEN + SIGNATURE_LEN;

/// The longest encoded sender certificate: version, address (length-prefixed), device id,
/// identity, role, name flag, name (length-prefixed), expiry, server certificate, signature.
pub const MAX_SENDER_CERTIFICATE_LEN: usize = 1
    + (2 + MAX_SENDER_ADDRESS_LEN)
    + 4
    + IDENTITY_PUBLIC_KEY_LEN
    + 1
    + 1
    + (2 + MAX_DISPLAY_NAME_LEN)
    + 8
    + SERVER_CERTIFICATE_LEN
    + SIGNATURE_LEN;

/// Size of the certificate region inside an envelope's plaintext: a `u16` length, the
/// certificate and zero bytes up to this size. Reason: every envelope carries a region of
/// the same size whatever the sender's address, name or role, so the envelope length depends
/// only on the payload length.
pub const SENDER_CERTIFICATE_REGION_LEN: usize = 512;

const _: () = assert!(SENDER_CERTIFICATE_REGION_LEN >= 2 + MAX_SENDER_CERTIFICATE_LEN);

/// Plaintext of the ephemeral layer: the sender's X25519 identity agreement key (32) and the
/// recipient's identity key bytes (64: signing key then agreement key).
pub const SEALED_SENDER_KEY_PLAINTEXT_LEN: usize = 32 + 64;

/// Ciphertext of the ephemeral layer, with its tag.
pub const SEALED_SENDER_KEY_LEN: usize = SEALED_SENDER_KEY_PLAINTEXT_LEN + TAG_LEN;

/// Bytes an envelope adds to its payload: version, ephemeral key, ephemeral-layer ciphertext,
/// certificate region and the static layer's tag.
pub const ENVELOPE_OVERHEAD: usize =
    1 + 32 + SEALED_SENDER_KEY_LEN + SENDER_CERTIFICATE_REGION_LEN + TAG_LEN;

/// Length of a [`DeliveryToken`](crate::DeliveryToken). Reason: 128 bits cannot be guessed,
/// and a token travels with every sealed message, so it is kept short.
pub const DELIVERY_TOKEN_LEN: usize = 16;

/// Length of a [`ProfileKey`](crate::ProfileKey), the recipient-held secret tokens come from.
pub const PROFILE_KEY_LEN: usize = 32;

/// Hash prefix of a [`TokenVerifier`](crate::TokenVerifier). Unique among Confide labels and
/// not a prefix of any of them.
pub const MAILBOX_VERIFIER_LABEL: &[u8] = b"Confide_v1_MailboxVerifier";

/// The envelope length for a payload of `payload_len` bytes, or `None` above
/// [`MAX_PAYLOAD_LEN`]. The length depends on nothing else.
#[must_use]
pub const fn envelope_len(payload_len: usize) -> Option<usize> {
    if payload_len > MAX_PAYLOAD_LEN {
        return None;
    }
    payload_len.checked_add(ENVELOPE_OVERHEAD)
}
