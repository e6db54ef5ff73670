//! Encrypted attachments for Confide: voice notes, images and files.
//!
//! Each attachment is encrypted under its own random 32-byte [`AttachmentKey`] as a stream of
//! fixed-size chunks ([`CHUNK_LEN`], 64 KiB) with ChaCha20-Poly1305 in the STREAM construction
//! (Hoang, Reyhanitabar, Rogaway, Vizár): every chunk is authenticated at its index, the final
//! one is marked, and the chunk key is derived from the attachment key, a random salt in the
//! stream header and the plaintext length. Truncation, reordering, splicing chunks between
//! attachments, extension after the final chunk and a wrong length are all refused. The
//! plaintext is padded inside the stream to a size bucket ([`bucket_len`]), so the relay's
//! blob store learns the bucket only.
//!
//! * [`AttachmentEncryptor`] and [`AttachmentDecryptor`] work incrementally and hold at most
//!   one chunk, whatever the attachment's size; the decryptor hands out plaintext only of
//!   chunks that authenticated and reports the end only once the final chunk verified.
//! * [`AttachmentPointer`] is what a message carries: blob id, key, ciphertext digest,
//!   plaintext size, [`ContentType`] and duration, in a 94-byte canonical encoding.
//!
//! The format byte by byte, with vectors and the threat model: `docs/attachments.md`.
//!
//! This crate is sans-IO: it never reads a clock, the operating system's random source, a file
//! or a socket; the caller passes a [`CryptoRng`](confide_crypto::CryptoRng) and moves the
//! bytes (upload, download, storage).
//!
//! A client records a voice note and sends it to a counselor:
//!
//! ```
//! use confide_attachment::{
//!     AttachmentDecryptor, AttachmentEncryptor, AttachmentPointer, BlobId, ContentType,
//! };
//! use confide_crypto::Duration;
//! # use rand_core::SeedableRng;
//! # let mut rng = chacha20::ChaCha20Rng::from_seed([3; 32]);
//! let voice_note: Vec<u8> = (0..150_000u32).map(|i| (i % 251) as u8).collect();
//!
//! // The client encrypts chunk by chunk and uploads each piece to the relay's blob store.
//! let mut encryptor = AttachmentEncryptor::new(&mut rng, voice_note.len() as u64).unwrap();
//! let mut uploaded = Vec::new();
//! let mut input = &voice_note[..];
//! while let Some(ciphertext) = encryptor.push(&mut input).unwrap() {
//!     uploaded.extend_from_slice(ciphertext);
//! }
//! let sealed = encryptor.finish().unwrap();
//! // The blob store sees the 151,552-byte bucket (in three chunks), not 150,000 bytes.
//! assert_eq!(uploaded.len(), 33 + 151_552 + 3 * 16);
//!
//! // The message to the counselor carries the pointer (inside the end-to-end encryption).
//! let blob_id = BlobId::random(&mut rng);
//! let pointer = AttachmentPointer::new(
//!     blob_id,
//!     &sealed,
//!     ContentType::VoiceNote,
//!     Some(Duration::from_secs(9)),
//! )
//! .unwrap();
//! let in_message = pointer.to_bytes();
//! assert!(format!("{pointer:?}").contains(r#"key: "[REDACTED]""#));
//!
//! // The counselor parses it strictly, downloads the blob and decrypts as it arrives.
//! let received = AttachmentPointer::from_bytes(&in_message).unwrap();
//! let mut decryptor = AttachmentDecryptor::for_pointer(&received).unwrap();
//! let mut played = Vec::new();
//! for piece in uploaded.chunks(10_000) {
//!     let mut input = piece;
//!     while let Some(plaintext) = decryptor.push(&mut input).unwrap() {
//!         played.extend_from_slice(plaintext);
//!     }
//! }
//! decryptor.finish().unwrap(); // whole and authentic only now
//! assert_eq!(played, voice_note);
//!
//! // A relay that drops the last chunk is caught.
//! let mut cut = AttachmentDecryptor::for_pointer(&received).unwrap();
//! let mut input = &uploaded[..uploaded.len() - 1000];
//! while cut.push(&mut input).unwrap().is_some() {}
//! assert!(cut.finish().is_err());
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod chunk;
pub mod consts;
mod decrypt;
mod encrypt;
mod error;
mod ids;
mod layout;
mod pointer;

pub use consts::{
    CHUNK_LEN, DELETE_TOKEN_LEN, HEADER_LEN, MAX_DURATION, MAX_PLAINTEXT_LEN, MIN_BUCKET_LEN,
    POINTER_LEN,
};
pub use decrypt::{AttachmentDecryptor, decrypt};
#[cfg(feature = "dangerous-test-fixtures")]
pub use encrypt::dangerous_encryptor_with_key_and_salt;
pub use encrypt::{AttachmentEncryptor, EncryptedAttachment, encrypt};
pub use error::{DecryptError, EncryptError, PointerError};
pub use ids::{AttachmentKey, BlobDeleteToken, BlobId, CiphertextDigest};
pub use layout::{bucket_len, chunk_count, ciphertext_len};
pub use pointer::{AttachmentPointer, ContentType};
