//! What a message carries to name an attachment (`docs/attachments.md` §5).

use core::fmt;

use confide_crypto::{
    Duration,
    codec::{DecodeError, Reader, Writer},
};
use zeroize::Zeroizing;

use crate::{
    AttachmentKey, BlobDeleteToken, BlobId, CiphertextDigest, EncryptedAttachment, PointerError,
    consts::{MAX_DURATION, MAX_PLAINTEXT_LEN, POINTER_LEN, POINTER_VERSION},
};

/// What kind of content an attachment holds: how an app may present it.
///
/// Unknown values are kept, not refused ([`ContentType::Other`]): a newer peer's kind (video,
/// say) still arrives, and an app that does not know it offers it as an opaque file, never
/// renders it. Value `0` is invalid, so an all-zero field is never mistaken for content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ContentType {
    /// A voice note: Opus audio in an Ogg container (RFC 7845). Carries a duration. Code `1`.
    VoiceNote,
    /// An image (JPEG, PNG or WebP, told apart by its magic bytes). Code `2`.
    Image,
    /// Any other file, offered for saving, never rendered. Code `3`.
    File,
    /// A code this build does not know (`4..=255`): treat as [`ContentType::File`]. It may
    /// carry a duration.
    Other(u8),
}

impl ContentType {
    /// The wire code.
    #[must_use]
    pub const fn code(self) -> u8 {
        match self {
            Self::VoiceNote => 1,
            Self::Image => 2,
            Self::File => 3,
            Self::Other(code) => code,
        }
    }

    /// From a wire code; `None` for `0`. A known code always gives its own variant, and
    /// pointers refuse `Other` of `0..=3` (one value, one encoding).
    #[must_use]
    pub const fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => None,
            1 => Some(Self::VoiceNote),
            2 => Some(Self::Image),
            3 => Some(Self::File),
            other => Some(Self::Other(other)),
        }
    }
}

/// The reference to one attachment that travels inside an end-to-end encrypted message: where
/// the blob is (its id on the relay), how to decrypt it (key and plaintext length), which
/// bytes it must be (the digest), and what it is (content type, duration for audio).
///
/// Built with [`AttachmentPointer::new`], which checks the rules of `docs/attachments.md` §5;
/// encoded in 94 bytes by [`to_bytes`](Self::to_bytes) and parsed strictly by
/// [`from_bytes`](Self::from_bytes). Its `Debug` prints everything but the key.
#[derive(Clone, PartialEq, Eq)]
pub struct AttachmentPointer {
    blob_id: BlobId,
    key: AttachmentKey,
    digest: CiphertextDigest,
    plaintext_len: u64,
    content_type: ContentType,
    duration: Option<Duration>,
}

impl fmt::Debug for AttachmentPointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            blob_id,
            key: _,
            digest,
            plaintext_len,
            content_type,
            duration,
        } = self;
        f.debug_struct("AttachmentPointer")
            .field("blob_id", blob_id)
            .field("key", &"[REDACTED]")
            .field("digest", digest)
            .field("plaintext_len", plaintext_len)
            .field("content_type", content_type)
            .field("duration", duration)
            .finish()
    }
}

fn check(
    plaintext_len: u64,
    content_type: ContentType,
    duration: Option<Duration>,
) -> Result<(), PointerError> {
    if plaintext_len > MAX_PLAINTEXT_LEN {
        return Err(PointerError::TooLong {
            len: plaintext_len,
            max: MAX_PLAINTEXT_LEN,
        });
    }
    if let ContentType::Other(code) = content_type
        && ContentType::from_code(code) != Some(content_type)
    {
        return Err(PointerError::InvalidContentType { code });
    }
    match (content_type, duration) {
        (ContentType::VoiceNote, None) => Err(PointerError::DurationMissing),
        (ContentType::Image | ContentType::File, Some(_)) => Err(PointerError::DurationNotAllowed),
        (_, Some(d)) if d.as_millis() == 0 || d > MAX_DURATION => {
            Err(PointerError::DurationOutOfRange {
                millis: d.as_millis(),
                max_millis: MAX_DURATION.as_millis(),
            })
        }
        _ => Ok(()),
    }
}

impl AttachmentPointer {
    /// A pointer to the blob `blob_id` holding `attachment`: a voice note needs a duration
    /// (1 ms to [`MAX_DURATION`]), an image or file must have none, an unknown type may.
    pub fn new(
        blob_id: BlobId,
        attachment: &EncryptedAttachment,
        content_type: ContentType,
        duration: Option<Duration>,
    ) -> Result<Self, PointerError> {
        Self::from_parts(
            blob_id,
            attachment.key.clone(),
            attachment.digest,
            attachment.plaintext_len,
            content_type,
            duration,
        )
    }

    /// A pointer from its fields, checked as in [`new`](Self::new).
    pub fn from_parts(
        blob_id: BlobId,
        key: AttachmentKey,
        digest: CiphertextDigest,
        plaintext_len: u64,
        content_type: ContentType,
        duration: Option<Duration>,
    ) -> Result<Self, PointerError> {
        check(plaintext_len, content_type, duration)?;
        Ok(Self {
            blob_id,
            key,
            digest,
            plaintext_len,
            content_type,
            duration,
        })
    }

    /// The relay's id of the blob.
    #[must_use]
    pub fn blob_id(&self) -> &BlobId {
        &self.blob_id
    }

    /// The attachment's key.
    #[must_use]
    pub fn key(&self) -> &AttachmentKey {
        &self.key
    }

    /// The token that deletes the blob from the relay: derived from the key, so the sender
    /// and every recipient of the pointer hold it (`docs/attachments.md` §5.1).
    #[must_use]
    pub fn delete_token(&self) -> BlobDeleteToken {
        BlobDeleteToken::derive(&self.key)
    }

    /// SHA-256 of the blob.
    #[must_use]
    pub fn digest(&self) -> &CiphertextDigest {
        &self.digest
    }

    /// Plaintext bytes.
    #[must_use]
    pub fn plaintext_len(&self) -> u64 {
        self.plaintext_len
    }

    /// Blob bytes: what to download.
    #[must_use]
    pub fn ciphertext_len(&self) -> u64 {
        crate::layout::ciphertext_len(self.plaintext_len).unwrap_or(u64::MAX)
    }

    /// What the attachment is.
    #[must_use]
    pub fn content_type(&self) -> ContentType {
        self.content_type
    }

    /// Its duration (audio).
    #[must_use]
    pub fn duration(&self) -> Option<Duration> {
        self.duration
    }

    /// The canonical encoding ([`POINTER_LEN`] bytes; it holds the key, so it is wiped when
    /// dropped).
    #[must_use]
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut w = Writer::with_capacity(POINTER_LEN);
        // Checked at construction: a duration is at most MAX_DURATION, which fits a u32.
        let millis = self.duration.map_or(0, Duration::as_millis);
        w.u8(POINTER_VERSION)
            .bytes(self.blob_id.as_bytes())
            .bytes(self.key.expose())
            .bytes(self.digest.as_bytes())
            .u64(self.plaintext_len)
            .u8(self.content_type.code())
            .u32(u32::try_from(millis).unwrap_or(u32::MAX));
        w.into_zeroizing()
    }

    /// Parses the canonical encoding strictly: version 1, every field in its domain
    /// (`docs/attachments.md` §5), no trailing bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        if version != POINTER_VERSION {
            return Err(DecodeError::UnknownVersion {
                what: "attachment pointer",
                found: version,
            });
        }
        let blob_id = BlobId::from_bytes(r.array()?);
        let key = AttachmentKey::from_slice(r.bytes(AttachmentKey::LEN)?).ok_or(
            DecodeError::InvalidValue {
                field: "attachment key",
            },
        )?;
        let digest = CiphertextDigest::from_bytes(r.array()?);
        let plaintext_len = r.u64()?;
        let content_type = ContentType::from_code(r.u8()?).ok_or(DecodeError::InvalidValue {
            field: "attachment content type",
        })?;
        let millis = r.u32()?;
        r.finish()?;
        let duration = (millis != 0).then(|| Duration::from_millis(u64::from(millis)));
        Self::from_parts(blob_id, key, digest, plaintext_len, content_type, duration).map_err(|e| {
            match e {
                PointerError::TooLong { len, max } => DecodeError::TooLong {
                    field: "attachment plaintext length",
                    len: usize::try_from(len).unwrap_or(usize::MAX),
                    max: usize::try_from(max).unwrap_or(usize::MAX),
                },
                // A decoded content type is canonical (`from_code`), so only the length and
                // duration rules can fail here.
                _ => DecodeError::InvalidValue {
                    field: "attachment duration",
                },
            }
        })
    }
}
