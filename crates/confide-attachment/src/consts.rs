//! Every limit and fixed size of the attachment format, each with its reason.

use confide_crypto::Duration;

/// Version byte of the stream header (`docs/attachments.md` §3). A decryptor refuses any
/// other value, so a future format can change anything after this byte.
pub const STREAM_VERSION: u8 = 1;

/// Version byte of an encoded [`AttachmentPointer`](crate::AttachmentPointer).
pub const POINTER_VERSION: u8 = 1;

/// Length of the random salt in the stream header. Reason: the chunk key is derived from the
/// attachment key and this salt, so even an attachment key used twice (a caller bug; every
/// key is meant to be fresh) gives unrelated chunk keys unless 256 random bits repeat, and no
/// nonce is ever used twice under one chunk key.
pub const SALT_LEN: usize = 32;

/// Length of the stream header: the version byte and the salt.
pub const HEADER_LEN: usize = 1 + SALT_LEN;

/// Length of the Poly1305 tag that ends every chunk.
pub const TAG_LEN: usize = 16;

/// Length of a ChaCha20-Poly1305 nonce.
pub const NONCE_LEN: usize = 12;

/// Body bytes (plaintext and padding) per chunk; only the final chunk may be shorter.
///
/// Reason: 64 KiB bounds what an encryptor or decryptor holds in memory (one chunk) while the
/// per-chunk overhead stays at 16 bytes in 65,536 (0.02%) and about 1,600 chunks for the
/// largest attachment; it is the chunk size of age's STREAM format, and the unit of the relay's
/// resumable upload (a dropped signal costs at most one chunk).
pub const CHUNK_LEN: usize = 64 * 1024;

/// Length of a full chunk on the wire: its body and its tag.
pub const CHUNK_CIPHERTEXT_LEN: usize = CHUNK_LEN + TAG_LEN;

/// The largest attachment plaintext, in bytes (100 MiB).
///
/// Reason: the largest attachment a counseling chat needs (a voice note of an hour at Opus's
/// 32 kbit/s is about 14 MiB; a scanned document or photo a few MiB), the limit mainstream
/// messengers apply to files, and what the relay's blob store quota is sized for. Every size
/// computation stays far below `u64` and `usize` overflow with it.
pub const MAX_PLAINTEXT_LEN: u64 = 100 * 1024 * 1024;

/// The smallest size bucket, in bytes: one full chunk.
///
/// Reason: most voice notes are short (under half a minute, well under 64 KiB at voice
/// bitrates), so every one of them, and every small image or file, is the same one-chunk blob
/// on the relay; above this the buckets grow by the Padmé rule ([`bucket_len`](crate::bucket_len)).
pub const MIN_BUCKET_LEN: u64 = CHUNK_LEN as u64;

/// Length of a blob id.
pub const BLOB_ID_LEN: usize = 16;

/// Length of an attachment key.
pub const KEY_LEN: usize = 32;

/// Length of the ciphertext digest (SHA-256).
pub const DIGEST_LEN: usize = 32;

/// Length of a blob delete token, and of its SHA-256 that the relay keeps.
///
/// Reason: 256 bits derived from the attachment key cannot be guessed, and its hash tells
/// the relay nothing about the key.
pub const DELETE_TOKEN_LEN: usize = 32;

/// Length of an encoded pointer: version, blob id, key, digest, plaintext length (8),
/// content type (1), duration (4).
pub const POINTER_LEN: usize = 1 + BLOB_ID_LEN + KEY_LEN + DIGEST_LEN + 8 + 1 + 4;

/// The longest duration a pointer may carry (24 hours).
///
/// Reason: no voice note is this long (100 MiB of Opus at its lowest voice bitrate is under
/// 40 hours, and apps stop recording long before); a larger value is malformed, and the bound
/// keeps the field in a `u32` of milliseconds with room to spare.
pub const MAX_DURATION: Duration = Duration::from_millis(24 * 60 * 60 * 1000);
