//! The incremental encryptor.

use core::fmt;

use confide_crypto::{CryptoRng, random_array};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::{
    AttachmentKey, BlobDeleteToken, CiphertextDigest, EncryptError,
    chunk::ChunkCipher,
    consts::{CHUNK_CIPHERTEXT_LEN, HEADER_LEN, MAX_PLAINTEXT_LEN, SALT_LEN, STREAM_VERSION},
    layout::Layout,
};

/// What the sender keeps of an encrypted attachment to build its
/// [`AttachmentPointer`](crate::AttachmentPointer): the key, the digest of the blob and the
/// sizes.
#[derive(Clone, PartialEq, Eq)]
pub struct EncryptedAttachment {
    /// The attachment's key.
    pub key: AttachmentKey,
    /// SHA-256 of the whole blob.
    pub digest: CiphertextDigest,
    /// Plaintext bytes.
    pub plaintext_len: u64,
    /// Blob bytes (what the relay stores).
    pub ciphertext_len: u64,
}

impl fmt::Debug for EncryptedAttachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            key: _,
            digest,
            plaintext_len,
            ciphertext_len,
        } = self;
        f.debug_struct("EncryptedAttachment")
            .field("key", &"[REDACTED]")
            .field("digest", digest)
            .field("plaintext_len", plaintext_len)
            .field("ciphertext_len", ciphertext_len)
            .finish()
    }
}

impl EncryptedAttachment {
    /// The token that deletes the blob from the relay ([`BlobDeleteToken::derive`]).
    #[must_use]
    pub fn delete_token(&self) -> BlobDeleteToken {
        BlobDeleteToken::derive(&self.key)
    }
}

/// Encrypts one attachment chunk by chunk, holding at most one chunk.
///
/// The plaintext length is declared up front (it fixes the size bucket and every chunk
/// boundary, and is bound into the chunk key); the plaintext then comes in pieces of any
/// size through [`push`](Self::push), which hands out each chunk's ciphertext as soon as the
/// chunk is full. Concatenated in order, the outputs are the blob. Once the declared length is
/// in, further calls (with empty input) hand out the padding chunks, up to the final one;
/// then [`finish`](Self::finish) gives the key and digest for the pointer.
///
/// ```
/// use confide_attachment::AttachmentEncryptor;
/// # use rand_core::SeedableRng;
/// # let mut rng = chacha20::ChaCha20Rng::from_seed([1; 32]);
/// let audio = vec![0x4f; 100_000];
/// let mut encryptor = AttachmentEncryptor::new(&mut rng, audio.len() as u64).unwrap();
/// let mut blob = Vec::new();
/// for piece in audio.chunks(4096) {
///     let mut input = piece;
///     while let Some(ciphertext) = encryptor.push(&mut input).unwrap() {
///         blob.extend_from_slice(ciphertext); // upload it
///     }
/// }
/// while let Some(padding) = encryptor.push(&mut &[][..]).unwrap() {
///     blob.extend_from_slice(padding);
/// }
/// let sealed = encryptor.finish().unwrap();
/// assert_eq!(sealed.ciphertext_len, blob.len() as u64);
/// ```
pub struct AttachmentEncryptor {
    key: AttachmentKey,
    cipher: ChunkCipher,
    layout: Layout,
    header: [u8; HEADER_LEN],
    /// Index of the chunk being filled (equals the chunk count when all are out).
    index: u64,
    /// Plaintext bytes taken so far.
    taken: u64,
    /// The chunk being filled (plaintext, wiped on drop), or the last chunk handed out (then
    /// ciphertext, with the header in front for chunk 0). Allocated once at full size so it
    /// never moves.
    buffer: Zeroizing<Vec<u8>>,
    /// Whether `buffer` holds a chunk already handed out.
    handed_out: bool,
    hasher: Sha256,
}

impl fmt::Debug for AttachmentEncryptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Key, cipher and buffered plaintext stay out; sizes and progress only.
        f.debug_struct("AttachmentEncryptor")
            .field("plaintext_len", &self.layout.plaintext_len)
            .field("chunk", &self.index)
            .field("chunks", &self.layout.chunk_count)
            .field("taken", &self.taken)
            .finish_non_exhaustive()
    }
}

impl AttachmentEncryptor {
    /// Starts an attachment of exactly `plaintext_len` bytes under a fresh random key and
    /// salt (draws: 32 bytes of key, then 32 of salt).
    pub fn new<R: CryptoRng + ?Sized>(
        rng: &mut R,
        plaintext_len: u64,
    ) -> Result<Self, EncryptError> {
        let layout = Layout::new(plaintext_len).ok_or(EncryptError::TooLong {
            len: plaintext_len,
            max: MAX_PLAINTEXT_LEN,
        })?;
        let key = AttachmentKey::random(rng);
        let salt: [u8; SALT_LEN] = random_array(rng);
        Ok(Self::with_key_and_salt(key, salt, layout))
    }

    fn with_key_and_salt(key: AttachmentKey, salt: [u8; SALT_LEN], layout: Layout) -> Self {
        let cipher = ChunkCipher::derive(&key, STREAM_VERSION, &salt, layout.plaintext_len);
        let mut header = [0u8; HEADER_LEN];
        let (version, rest) = header.split_at_mut(1);
        version.fill(STREAM_VERSION);
        rest.copy_from_slice(&salt);
        let mut buffer = Zeroizing::new(Vec::with_capacity(HEADER_LEN + CHUNK_CIPHERTEXT_LEN));
        buffer.extend_from_slice(&header);
        Self {
            key,
            cipher,
            layout,
            header,
            index: 0,
            taken: 0,
            buffer,
            handed_out: false,
            hasher: Sha256::new(),
        }
    }

    /// The stream header (version and salt): the first [`HEADER_LEN`] bytes of the blob, also
    /// at the front of the first output of [`push`](Self::push).
    #[must_use]
    pub fn header(&self) -> &[u8; HEADER_LEN] {
        &self.header
    }

    /// The token that deletes the blob from the relay ([`BlobDeleteToken::derive`]): known
    /// from the start, so an upload can hand the relay its hash with the first bytes.
    #[must_use]
    pub fn delete_token(&self) -> BlobDeleteToken {
        BlobDeleteToken::derive(&self.key)
    }

    /// Plaintext bytes of the declared length not yet given.
    #[must_use]
    pub fn plaintext_remaining(&self) -> u64 {
        self.layout.plaintext_len.saturating_sub(self.taken)
    }

    /// Takes plaintext from the front of `input` (advancing it) until a chunk is full, and
    /// returns that chunk's ciphertext; `None` when `input` ran out first (give more) or every
    /// chunk is out. Once the declared length is in, each call returns the next chunk
    /// (padding), input empty, until the final one.
    ///
    /// Refuses, taking nothing, input longer than what remains of the declared length.
    #[must_use = "the ciphertext must be stored or uploaded"]
    pub fn push(&mut self, input: &mut &[u8]) -> Result<Option<&[u8]>, EncryptError> {
        let room = self.plaintext_remaining();
        if !u64::try_from(input.len()).is_ok_and(|len| len <= room) {
            return Err(EncryptError::TooMuchPlaintext {
                offered: input.len(),
                room,
            });
        }
        let Some(span) = self.layout.chunk(self.index) else {
            return Ok(None);
        };
        if self.handed_out {
            // The previous chunk's ciphertext (and header) has been taken; start afresh.
            self.buffer.clear();
            self.handed_out = false;
        }
        let prefix = if self.index == 0 { HEADER_LEN } else { 0 };
        let filled = self.buffer.len().saturating_sub(prefix);
        let plaintext_room = span.plaintext_len.saturating_sub(filled);
        let (now, later) = input.split_at(plaintext_room.min(input.len()));
        self.buffer.extend_from_slice(now);
        *input = later;
        self.taken = self.taken.saturating_add(now.len() as u64);
        if self.buffer.len().saturating_sub(prefix) < span.plaintext_len {
            return Ok(None);
        }
        // The chunk's plaintext is complete: zero padding to the chunk's body length, then seal.
        self.buffer.resize(prefix.saturating_add(span.body_len), 0);
        let tag = match self.buffer.get_mut(prefix..) {
            Some(body) => self.cipher.seal(self.index, span.is_final, body),
            None => return Ok(None),
        };
        self.buffer.extend_from_slice(&tag);
        self.hasher.update(self.buffer.as_slice());
        self.index = self.index.saturating_add(1);
        self.handed_out = true;
        Ok(Some(self.buffer.as_slice()))
    }

    /// The key, digest and sizes for the pointer, once every chunk is out.
    pub fn finish(&self) -> Result<EncryptedAttachment, EncryptError> {
        if self.index < self.layout.chunk_count {
            return Err(EncryptError::Incomplete {
                plaintext_missing: self.plaintext_remaining(),
                chunks_missing: self.layout.chunk_count.saturating_sub(self.index),
            });
        }
        Ok(EncryptedAttachment {
            key: self.key.clone(),
            digest: CiphertextDigest::from_bytes(self.hasher.clone().finalize().into()),
            plaintext_len: self.layout.plaintext_len,
            ciphertext_len: crate::layout::ciphertext_len(self.layout.plaintext_len)
                .unwrap_or(u64::MAX),
        })
    }
}

/// Encrypts a whole attachment held in memory: the blob and what the pointer needs. For
/// small attachments and tests; large ones go through [`AttachmentEncryptor`] so that only
/// one chunk is ever in memory.
pub fn encrypt<R: CryptoRng + ?Sized>(
    rng: &mut R,
    plaintext: &[u8],
) -> Result<(Vec<u8>, EncryptedAttachment), EncryptError> {
    let mut encryptor = AttachmentEncryptor::new(rng, plaintext.len() as u64)?;
    let capacity = crate::layout::ciphertext_len(plaintext.len() as u64).unwrap_or(0);
    let mut blob = Vec::with_capacity(usize::try_from(capacity).unwrap_or(0));
    let mut input = plaintext;
    while let Some(ciphertext) = encryptor.push(&mut input)? {
        blob.extend_from_slice(ciphertext);
    }
    Ok((blob, encryptor.finish()?))
}

/// Test fixtures only (feature `dangerous-test-fixtures`): an encryptor with a given key and
/// salt, for the known-answer vectors, the fuzz check's re-encryption and the bounded-memory
/// test. A key and salt must never encrypt two different plaintexts (the nonces would repeat).
#[cfg(feature = "dangerous-test-fixtures")]
pub fn dangerous_encryptor_with_key_and_salt(
    key: AttachmentKey,
    salt: [u8; SALT_LEN],
    plaintext_len: u64,
) -> Result<AttachmentEncryptor, EncryptError> {
    let layout = Layout::new(plaintext_len).ok_or(EncryptError::TooLong {
        len: plaintext_len,
        max: MAX_PLAINTEXT_LEN,
    })?;
    Ok(AttachmentEncryptor::with_key_and_salt(key, salt, layout))
}
