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

/// Kind byte of a symmetric envelope (`docs/sealed-sender.md` §9). It shares the first byte
/// with [`ENVELOPE_VERSION`] (`0x01`, a public-key envelope), so a recipient tells the two
/// apart from the first byte alone.
pub const SYMMETRIC_ENVELOPE_KIND: u8 = 0x02;

/// Length of a symmetric envelope's tag. Reason: 128 bits, so tags of unrelated epochs do
/// not collide in practice (a recipient holding a million expected tags meets a collision
/// with probability about 2^-88 per envelope) and cannot be guessed; short, because every
/// symmetric envelope carries one.
pub const ENVELOPE_TAG_LEN: usize = 16;

/// Bytes a symmetric envelope adds to its payload: kind, tag, the length of the part carried
/// unencrypted (`u32`) and the AEAD tag.
pub const SYMMETRIC_ENVELOPE_OVERHEAD: usize = 1 + ENVELOPE_TAG_LEN + 4 + TAG_LEN;

/// How many of the last bytes of a symmetric envelope's clear part its AEAD binds
/// (`docs/sealed-sender.md` §9.3): the clear part's own authentication tag.
///
/// Reason: the clear part is AEAD output already (a session message's ciphertext and its
/// 16-byte tag, under a key the relay does not have). Binding its tag ties the envelope to
/// that one ciphertext (any other ciphertext under that tag is a forgery of the clear part's
/// own AEAD), and spares a Poly1305 pass over the whole text on each side. A clear part
/// shorter than this is bound whole.
pub const SYMMETRIC_CLEAR_BOUND_LEN: usize = 16;

/// The symmetric envelope length for a payload of `payload_len` bytes, or `None` above
/// [`MAX_PAYLOAD_LEN`].
#[must_use]
pub const fn symmetric_envelope_len(payload_len: usize) -> Option<usize> {
    if payload_len > MAX_PAYLOAD_LEN {
        return None;
    }
    payload_len.checked_add(SYMMETRIC_ENVELOPE_OVERHEAD)
}

/// How many envelope indices past the highest one received a [`TagWindow`](crate::TagWindow)
/// expects. Reason: an envelope that arrives before up to 32 earlier ones of its epoch (a
/// burst reordered or lost by the network) is still found by its tag; one further ahead is
/// refused now and found when the transport retransmits it after the earlier ones arrived
/// (the window moves on with them), so this bounds memory (32 tags an epoch), not delivery.
pub const TAG_WINDOW_AHEAD: u64 = 32;

/// How many indices below the highest one received a [`TagWindow`](crate::TagWindow) still
/// accepts (once each). Reason: a lost envelope is retransmitted with the same bytes after
/// the transport's backoff, which grows to an hour, while later envelopes of the epoch keep
/// arriving; an epoch lasts at most [`SYMMETRIC_EPOCH_MAX_AGE`], and 1,024 envelopes an hour
/// in one direction of one conversation is far beyond a typed conversation. The window's
/// memory is a 128-byte bitmap plus one tag per missing index.
pub const TAG_WINDOW_BEHIND: u64 = 1_024;

/// The longest a sender uses one symmetric epoch before it sends a public-key envelope
/// (with its certificate) again, which starts the next epoch. Reason: the symmetric path
/// carries no certificate, so this bounds how long a recipient goes without re-checking the
/// sender's certificate chain against its current trust roots (a revoked server key, a
/// removed root, a renewed certificate) in a conversation in use, for the price of one
/// public-key envelope (about 640 bytes more) per direction per hour of conversation.
pub const SYMMETRIC_EPOCH_MAX_AGE: confide_crypto::Duration =
    confide_crypto::Duration::from_hours(1);

/// The most symmetric envelopes one epoch seals (indices `0 .. 100,000`). Reason: far beyond
/// what one conversation sends in [`SYMMETRIC_EPOCH_MAX_AGE`]; bounds what one epoch's keys
/// protect and keeps every index far from any overflow.
pub const MAX_SYMMETRIC_EPOCH_ENVELOPES: u64 = 100_000;

/// The most epochs a [`TagDirectory`](crate::TagDirectory) keeps per conversation; the least
/// recently used (installed, or an envelope opened in it) is dropped first. Reason: a sender starts an epoch with every public-key
/// envelope, and until the recipient's acknowledgement of one of them comes back (a round
/// trip, longer on a lossy link) every frame it sends is such an envelope; the recipient must
/// still hold the epoch the sender then promotes (the newest acknowledged one) when its
/// symmetric envelopes arrive. Measured on a link losing 20% and duplicating and reordering
/// 10% of frames (`crates/confide/tests/e2e.rs`): with 2 epochs most symmetric envelopes were
/// refused, with 8 about 3%, with 32 about 2%. A window costs 213 bytes in the conversation's
/// stored record, so 8 bound that at 1.7 KB, reached only on such links.
pub const MAX_EPOCHS_PER_CONVERSATION: usize = 8;

/// Version byte of a stored [`TagWindow`](crate::TagWindow).
pub const TAG_WINDOW_STATE_VERSION: u8 = 1;

/// Length of the bitmap of a stored [`TagWindow`](crate::TagWindow): one bit per index of
/// [`TAG_WINDOW_BEHIND`].
pub(crate) const TAG_WINDOW_BITMAP_LEN: usize = 128;

const _: () = assert!(TAG_WINDOW_BITMAP_LEN as u64 * 8 == TAG_WINDOW_BEHIND);

/// Length of a stored [`TagWindow`](crate::TagWindow): version, tag key, message root, next
/// index, bitmap, accept-until time, server key id.
pub const TAG_WINDOW_STATE_LEN: usize = 1 + 32 + 32 + 8 + TAG_WINDOW_BITMAP_LEN + 8 + 4;
