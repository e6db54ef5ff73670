//! The incremental decryptor.

use core::fmt;

use confide_crypto::secret::ct_eq;
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

use crate::{
    AttachmentKey, AttachmentPointer, CiphertextDigest, DecryptError,
    chunk::ChunkCipher,
    consts::{
        CHUNK_CIPHERTEXT_LEN, HEADER_LEN, MAX_PLAINTEXT_LEN, SALT_LEN, STREAM_VERSION, TAG_LEN,
    },
    layout::{Layout, ciphertext_len},
};

/// Where the decryptor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading the header.
    Header,
    /// Reading chunks.
    Chunks,
    /// The final chunk verified.
    Complete,
    /// A failure refused the stream.
    Refused,
}

/// Decrypts one attachment chunk by chunk, holding at most one chunk.
///
/// Ciphertext comes in pieces of any size through [`push`](Self::push); each time a chunk is
/// complete and authenticates at its position, its plaintext (without padding) is handed out.
/// Only [`finish`](Self::finish) says the attachment is whole: it succeeds only once the final
/// chunk has verified (and, for a pointer, the blob's digest matched). After any failure
/// every call is refused; an app must then discard what it was handed.
///
/// A download that breaks off resumes at [`ciphertext_received`](Self::ciphertext_received):
/// keep the decryptor and push the rest.
///
/// ```
/// use confide_attachment::{AttachmentDecryptor, encrypt};
/// # use rand_core::SeedableRng;
/// # let mut rng = chacha20::ChaCha20Rng::from_seed([1; 32]);
/// let (blob, sealed) = encrypt(&mut rng, b"a short voice note").unwrap();
/// let mut decryptor = AttachmentDecryptor::new(&sealed.key, sealed.plaintext_len).unwrap();
/// let mut plaintext = Vec::new();
/// let mut input = &blob[..];
/// while let Some(chunk) = decryptor.push(&mut input).unwrap() {
///     plaintext.extend_from_slice(chunk);
/// }
/// decryptor.finish().unwrap();
/// assert_eq!(plaintext, b"a short voice note");
/// // Truncated: refused at the end.
/// let mut cut = AttachmentDecryptor::new(&sealed.key, sealed.plaintext_len).unwrap();
/// let mut input = &blob[..blob.len() - 1];
/// while cut.push(&mut input).unwrap().is_some() {}
/// assert!(cut.finish().is_err());
/// ```
pub struct AttachmentDecryptor {
    key: AttachmentKey,
    cipher: Option<ChunkCipher>,
    layout: Layout,
    phase: Phase,
    header: [u8; HEADER_LEN],
    header_filled: usize,
    /// Index of the chunk being read.
    index: u64,
    /// The chunk being read (ciphertext), or the last chunk handed out (plaintext, wiped
    /// before reuse and on drop). Allocated once at full size so it never moves.
    buffer: Zeroizing<Vec<u8>>,
    handed_out: bool,
    received: u64,
    hasher: Sha256,
    expected_digest: Option<CiphertextDigest>,
}

impl fmt::Debug for AttachmentDecryptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Key, cipher and plaintext stay out; sizes and progress only.
        f.debug_struct("AttachmentDecryptor")
            .field("plaintext_len", &self.layout.plaintext_len)
            .field("phase", &self.phase)
            .field("chunk", &self.index)
            .field("chunks", &self.layout.chunk_count)
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}

impl AttachmentDecryptor {
    /// A decryptor for the stream of a `plaintext_len`-byte attachment under `key` (both from
    /// the pointer; the length is bound into the chunk key, so a wrong one is refused at the
    /// first chunk). Checks no digest: see [`for_pointer`](Self::for_pointer).
    pub fn new(key: &AttachmentKey, plaintext_len: u64) -> Result<Self, DecryptError> {
        let layout = Layout::new(plaintext_len).ok_or(DecryptError::TooLong {
            len: plaintext_len,
            max: MAX_PLAINTEXT_LEN,
        })?;
        Ok(Self {
            key: key.clone(),
            cipher: None,
            layout,
            phase: Phase::Header,
            header: [0; HEADER_LEN],
            header_filled: 0,
            index: 0,
            buffer: Zeroizing::new(Vec::with_capacity(CHUNK_CIPHERTEXT_LEN)),
            handed_out: false,
            received: 0,
            hasher: Sha256::new(),
            expected_digest: None,
        })
    }

    /// A decryptor for the blob `pointer` names: its key and length, and the final chunk is
    /// refused unless the whole blob's SHA-256 equals the pointer's digest.
    pub fn for_pointer(pointer: &AttachmentPointer) -> Result<Self, DecryptError> {
        let mut out = Self::new(pointer.key(), pointer.plaintext_len())?;
        out.expected_digest = Some(*pointer.digest());
        Ok(out)
    }

    /// Ciphertext bytes taken so far: where a broken-off download resumes.
    #[must_use]
    pub fn ciphertext_received(&self) -> u64 {
        self.received
    }

    /// Length of the whole blob this decryptor expects.
    #[must_use]
    pub fn ciphertext_len(&self) -> u64 {
        ciphertext_len(self.layout.plaintext_len).unwrap_or(u64::MAX)
    }

    /// Whether the final chunk has verified.
    #[must_use]
    pub fn is_complete(&self) -> bool {
        self.phase == Phase::Complete
    }

    fn refuse(&mut self, error: DecryptError) -> DecryptError {
        self.phase = Phase::Refused;
        self.buffer.zeroize();
        self.cipher = None;
        error
    }

    /// Takes ciphertext from the front of `input` (advancing it) until a chunk is complete,
    /// and returns that chunk's plaintext (empty for a chunk of padding only) once it
    /// authenticated; `None` when `input` ran out first (give more) or the stream is
    /// complete. Bytes offered after the final chunk are refused.
    #[must_use = "the plaintext of a verified chunk is handed out only once"]
    pub fn push(&mut self, input: &mut &[u8]) -> Result<Option<&[u8]>, DecryptError> {
        match self.phase {
            Phase::Refused => return Err(DecryptError::Refused),
            Phase::Complete if input.is_empty() => return Ok(None),
            Phase::Complete => {
                let extra = input.len();
                return Err(self.refuse(DecryptError::TrailingData { extra }));
            }
            Phase::Header => {
                let want = HEADER_LEN.saturating_sub(self.header_filled);
                let (now, later) = input.split_at(want.min(input.len()));
                if let Some(dst) = self
                    .header
                    .get_mut(self.header_filled..self.header_filled.saturating_add(now.len()))
                {
                    dst.copy_from_slice(now);
                }
                self.header_filled = self.header_filled.saturating_add(now.len());
                self.received = self.received.saturating_add(now.len() as u64);
                *input = later;
                if self.header_filled < HEADER_LEN {
                    return Ok(None);
                }
                let header = self.header;
                let (version, salt) = header.split_at(1);
                let version = version.first().copied().unwrap_or_default();
                if version != STREAM_VERSION {
                    return Err(self.refuse(DecryptError::UnknownVersion { found: version }));
                }
                let mut salt_array = [0u8; SALT_LEN];
                salt_array.copy_from_slice(salt);
                self.cipher = Some(ChunkCipher::derive(
                    &self.key,
                    version,
                    &salt_array,
                    self.layout.plaintext_len,
                ));
                if self.expected_digest.is_some() {
                    self.hasher.update(self.header);
                }
                self.phase = Phase::Chunks;
            }
            Phase::Chunks => {}
        }
        self.next_chunk(input)
    }

    fn next_chunk(&mut self, input: &mut &[u8]) -> Result<Option<&[u8]>, DecryptError> {
        let Some(span) = self.layout.chunk(self.index) else {
            return Ok(None);
        };
        if self.handed_out {
            // Wipe the plaintext handed out last time before reading the next chunk.
            self.buffer.zeroize();
            self.handed_out = false;
        }
        let chunk_len = span.body_len.saturating_add(TAG_LEN);
        let want = chunk_len.saturating_sub(self.buffer.len());
        let (now, later) = input.split_at(want.min(input.len()));
        self.buffer.extend_from_slice(now);
        self.received = self.received.saturating_add(now.len() as u64);
        *input = later;
        if self.buffer.len() < chunk_len {
            return Ok(None);
        }
        if self.expected_digest.is_some() {
            self.hasher.update(self.buffer.as_slice());
        }
        if let (true, Some(expected)) = (span.is_final, self.expected_digest) {
            let found: [u8; 32] = core::mem::take(&mut self.hasher).finalize().into();
            if !ct_eq(&found, expected.as_bytes()) {
                return Err(self.refuse(DecryptError::DigestMismatch));
            }
        }
        let index = self.index;
        let opened = match (
            &self.cipher,
            self.buffer.split_at_mut_checked(span.body_len),
        ) {
            (Some(cipher), Some((body, tag))) => cipher.open(index, span.is_final, body, tag),
            _ => Err(chacha20poly1305::aead::Error),
        };
        if opened.is_err() {
            return Err(self.refuse(DecryptError::ChunkRefused { index }));
        }
        let padding_is_zero = self
            .buffer
            .get(span.plaintext_len..span.body_len)
            .is_some_and(|padding| padding.iter().all(|b| *b == 0));
        if !padding_is_zero {
            return Err(self.refuse(DecryptError::BadPadding { index }));
        }
        self.buffer.truncate(span.plaintext_len);
        self.handed_out = true;
        self.index = index.saturating_add(1);
        if span.is_final {
            self.phase = Phase::Complete;
            self.cipher = None;
        }
        Ok(Some(self.buffer.as_slice()))
    }

    /// Succeeds only if the final chunk verified (and the digest matched, for a pointer);
    /// otherwise says why the attachment is not whole.
    pub fn finish(&self) -> Result<(), DecryptError> {
        match self.phase {
            Phase::Complete => Ok(()),
            Phase::Refused => Err(DecryptError::Refused),
            Phase::Header | Phase::Chunks => Err(DecryptError::Truncated {
                received: self.received,
                expected: self.ciphertext_len(),
            }),
        }
    }
}

/// Decrypts a whole blob held in memory against its pointer (key, length and digest). For
/// small attachments and tests; large ones go through [`AttachmentDecryptor`].
pub fn decrypt(
    pointer: &AttachmentPointer,
    blob: &[u8],
) -> Result<Zeroizing<Vec<u8>>, DecryptError> {
    let mut decryptor = AttachmentDecryptor::for_pointer(pointer)?;
    let mut plaintext = Zeroizing::new(Vec::with_capacity(
        usize::try_from(pointer.plaintext_len()).unwrap_or(0),
    ));
    let mut input = blob;
    while let Some(chunk) = decryptor.push(&mut input)? {
        plaintext.extend_from_slice(chunk);
    }
    decryptor.finish()?;
    Ok(plaintext)
}
