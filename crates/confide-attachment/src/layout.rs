//! Size buckets and the chunk layout they imply: everything here is a function of the
//! plaintext length alone, which the pointer carries, so encryptor and decryptor agree on
//! every chunk boundary before the first byte.

use crate::consts::{CHUNK_LEN, HEADER_LEN, MAX_PLAINTEXT_LEN, MIN_BUCKET_LEN, TAG_LEN};

/// The padded body length (the size bucket) of a plaintext of `plaintext_len` bytes, or
/// `None` above [`MAX_PLAINTEXT_LEN`].
///
/// * At most [`MIN_BUCKET_LEN`] (one chunk): exactly [`MIN_BUCKET_LEN`].
/// * Above: the Padmé rule (Nikitin et al., PETS 2019), as for messages
///   (`confide_crypto::padding`) but without a marker byte: with `L = plaintext_len`,
///   `E = floor(log2 L)`, `S = floor(log2 E) + 1`, `L` is rounded up to a multiple of
///   `2^(E - S)`. It leaks O(log log L) bits of the length and costs at most 1/32 (3.1%) of the
///   plaintext: `S = 5` for every length from 64 KiB to the maximum, and the rounding adds
///   less than `2^(E - S) <= L / 2^S`.
#[must_use]
pub fn bucket_len(plaintext_len: u64) -> Option<u64> {
    if plaintext_len > MAX_PLAINTEXT_LEN {
        return None;
    }
    if plaintext_len <= MIN_BUCKET_LEN {
        return Some(MIN_BUCKET_LEN);
    }
    let e = u64::BITS
        .checked_sub(1)?
        .checked_sub(plaintext_len.leading_zeros())?;
    let s = u32::BITS.checked_sub(e.leading_zeros())?;
    let low_bits = e.checked_sub(s)?;
    let mask = 1u64.checked_shl(low_bits)?.checked_sub(1)?;
    Some(plaintext_len.checked_add(mask)? & !mask)
}

/// Number of chunks of the stream of a plaintext of `plaintext_len` bytes.
#[must_use]
pub fn chunk_count(plaintext_len: u64) -> Option<u64> {
    bucket_len(plaintext_len)?
        .checked_add(CHUNK_LEN as u64 - 1)?
        .checked_div(CHUNK_LEN as u64)
}

/// Length of the whole blob (header and every chunk with its tag) for a plaintext of
/// `plaintext_len` bytes: all the blob store ever learns of the attachment's size.
#[must_use]
pub fn ciphertext_len(plaintext_len: u64) -> Option<u64> {
    let tags = chunk_count(plaintext_len)?.checked_mul(TAG_LEN as u64)?;
    bucket_len(plaintext_len)?
        .checked_add(tags)?
        .checked_add(HEADER_LEN as u64)
}

/// The chunk layout of one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    pub(crate) plaintext_len: u64,
    pub(crate) bucket_len: u64,
    pub(crate) chunk_count: u64,
}

/// Where one chunk's body lies in the padded body, and how much of it is plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChunkSpan {
    /// Body bytes (plaintext and padding) of the chunk: at most [`CHUNK_LEN`].
    pub(crate) body_len: usize,
    /// Of those, the plaintext bytes (the rest is zero padding).
    pub(crate) plaintext_len: usize,
    /// Whether this is the final chunk.
    pub(crate) is_final: bool,
}

impl Layout {
    /// The layout for `plaintext_len`, or `None` above the limit.
    pub(crate) fn new(plaintext_len: u64) -> Option<Self> {
        Some(Self {
            plaintext_len,
            bucket_len: bucket_len(plaintext_len)?,
            chunk_count: chunk_count(plaintext_len)?,
        })
    }

    /// The span of chunk `index`, or `None` past the final chunk.
    pub(crate) fn chunk(&self, index: u64) -> Option<ChunkSpan> {
        if index >= self.chunk_count {
            return None;
        }
        let start = index.checked_mul(CHUNK_LEN as u64)?;
        let body_len = self.bucket_len.checked_sub(start)?.min(CHUNK_LEN as u64);
        let plaintext_len = self.plaintext_len.saturating_sub(start).min(body_len);
        Some(ChunkSpan {
            body_len: usize::try_from(body_len).ok()?,
            plaintext_len: usize::try_from(plaintext_len).ok()?,
            is_final: index.checked_add(1)? == self.chunk_count,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn buckets() {
        assert_eq!(bucket_len(0), Some(65_536));
        assert_eq!(bucket_len(65_536), Some(65_536));
        // 65,537 = 2^16 + 1: E = 16, S = 5, multiples of 2^11.
        assert_eq!(bucket_len(65_537), Some(65_536 + 2_048));
        assert_eq!(bucket_len(1_000_000), Some(1_015_808));
        assert_eq!(bucket_len(MAX_PLAINTEXT_LEN), Some(MAX_PLAINTEXT_LEN));
        assert_eq!(bucket_len(MAX_PLAINTEXT_LEN + 1), None);
        assert_eq!(chunk_count(0), Some(1));
        assert_eq!(chunk_count(65_537), Some(2));
        assert_eq!(ciphertext_len(5), Some(33 + 65_536 + 16));
        assert_eq!(ciphertext_len(65_537), Some(33 + 67_584 + 32));
    }

    #[test]
    fn chunk_spans_cover_the_bucket() {
        let layout = Layout::new(70_000).unwrap();
        let first = layout.chunk(0).unwrap();
        assert_eq!(
            (first.body_len, first.plaintext_len, first.is_final),
            (65_536, 65_536, false)
        );
        let last = layout.chunk(1).unwrap();
        assert_eq!(last.body_len as u64, layout.bucket_len - 65_536);
        assert_eq!(last.plaintext_len, 70_000 - 65_536);
        assert!(last.is_final);
        assert_eq!(layout.chunk(2), None);
    }

    proptest! {
        #[test]
        fn bucket_bounds(len in 0..=MAX_PLAINTEXT_LEN) {
            let bucket = bucket_len(len).unwrap();
            prop_assert!(bucket >= len && bucket >= MIN_BUCKET_LEN);
            // At most 1/32 above the plaintext (S = 5 for every length over one chunk).
            prop_assert!(len <= MIN_BUCKET_LEN || (bucket - len) * 32 <= len);
            prop_assert_eq!(bucket_len(bucket), Some(bucket), "a bucket is its own bucket");
            let layout = Layout::new(len).unwrap();
            let (mut body, mut plain) = (0u64, 0u64);
            for i in 0..layout.chunk_count {
                let span = layout.chunk(i).unwrap();
                prop_assert!(span.body_len > 0);
                body += span.body_len as u64;
                plain += span.plaintext_len as u64;
            }
            prop_assert_eq!((body, plain), (bucket, len));
        }

        #[test]
        fn buckets_are_monotonic(a in 0..=MAX_PLAINTEXT_LEN, b in 0..=MAX_PLAINTEXT_LEN) {
            let (x, y) = (a.min(b), a.max(b));
            prop_assert!(bucket_len(x) <= bucket_len(y));
        }
    }
}
