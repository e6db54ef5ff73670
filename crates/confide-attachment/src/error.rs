//! One error type per operation. Peer (or relay) misbehaviour, [`DecryptError`], is kept apart
//! from caller misuse, [`EncryptError`] and [`PointerError`]. None carries key or plaintext
//! bytes: only indices, counts and versions.

use thiserror::Error;

/// Why an attachment stream was refused. After any of these the decryptor refuses everything
/// ([`DecryptError::Refused`]); plaintext it released before came from chunks that
/// authenticated, but the attachment as a whole must be discarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecryptError {
    /// The plaintext length given (from the pointer) is over
    /// [`MAX_PLAINTEXT_LEN`](crate::MAX_PLAINTEXT_LEN).
    #[error("attachment of {len} bytes exceeds the maximum of {max}")]
    TooLong {
        /// The length given.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// The stream header names a version this build does not know.
    #[error("unknown attachment stream version {found}")]
    UnknownVersion {
        /// The version byte found.
        found: u8,
    },
    /// A chunk did not authenticate at its position: wrong key or length, a tampered, reordered
    /// or spliced chunk, or a chunk from another attachment.
    #[error("chunk {index} of the attachment did not authenticate")]
    ChunkRefused {
        /// Zero-based index of the chunk.
        index: u64,
    },
    /// A chunk authenticated but its padding was not all zero bytes (a non-conforming
    /// encryptor; there is one encoding per attachment).
    #[error("chunk {index} of the attachment has non-zero padding")]
    BadPadding {
        /// Zero-based index of the chunk.
        index: u64,
    },
    /// The blob's SHA-256 differs from the pointer's digest.
    #[error("attachment ciphertext does not match the pointer's digest")]
    DigestMismatch,
    /// Bytes arrived after the final chunk.
    #[error("{extra} bytes after the final chunk of the attachment")]
    TrailingData {
        /// How many bytes were offered after the end.
        extra: usize,
    },
    /// The stream ended before its final chunk.
    #[error("attachment truncated: {received} of {expected} ciphertext bytes")]
    Truncated {
        /// Ciphertext bytes received.
        received: u64,
        /// Ciphertext bytes the pointer's plaintext length implies.
        expected: u64,
    },
    /// An earlier failure already refused this stream.
    #[error("attachment stream already refused")]
    Refused,
}

/// Why the encryptor refused its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EncryptError {
    /// The declared plaintext length is over [`MAX_PLAINTEXT_LEN`](crate::MAX_PLAINTEXT_LEN).
    #[error("attachment of {len} bytes exceeds the maximum of {max}")]
    TooLong {
        /// The length declared.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// More plaintext was offered than declared; nothing of it was taken.
    #[error("{offered} bytes offered with only {room} of the declared length left")]
    TooMuchPlaintext {
        /// Bytes offered in the call.
        offered: usize,
        /// Bytes of the declared length not yet taken.
        room: u64,
    },
    /// [`finish`](crate::AttachmentEncryptor::finish) before every chunk was taken out.
    #[error(
        "attachment incomplete: {plaintext_missing} plaintext bytes and {chunks_missing} chunks missing"
    )]
    Incomplete {
        /// Declared plaintext bytes not yet given.
        plaintext_missing: u64,
        /// Chunks not yet taken out (padding chunks come out once all plaintext is in).
        chunks_missing: u64,
    },
}

/// Why a pointer could not be built: the values break a rule of `docs/attachments.md` §5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PointerError {
    /// The plaintext length is over [`MAX_PLAINTEXT_LEN`](crate::MAX_PLAINTEXT_LEN).
    #[error("attachment of {len} bytes exceeds the maximum of {max}")]
    TooLong {
        /// The length given.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// `ContentType::Other` with a code that is invalid (`0`) or names a known type.
    #[error("content type code {code} is invalid or names a known type")]
    InvalidContentType {
        /// The code given.
        code: u8,
    },
    /// A voice note without a duration (the app shows it before downloading).
    #[error("a voice note needs a duration")]
    DurationMissing,
    /// A duration on an image or file.
    #[error("only audio carries a duration")]
    DurationNotAllowed,
    /// A zero duration, or one over [`MAX_DURATION`](crate::MAX_DURATION).
    #[error("duration of {millis} ms is outside 1..={max_millis} ms")]
    DurationOutOfRange {
        /// The duration given.
        millis: u64,
        /// The limit.
        max_millis: u64,
    },
}
