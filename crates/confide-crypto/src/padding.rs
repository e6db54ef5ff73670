//! Length-hiding padding.
//!
//! A plaintext of `n` bytes is sent as `n + 1 + p` bytes: the plaintext, one `0x80` marker,
//! then `p` zero bytes, where the total is [`padded_len`]`(n)`:
//!
//! * at least [`MIN_PADDED_LEN`] (256) bytes, so every short chat message ("ok", "I am scared",
//!   a two-line answer) has the same length on the wire;
//! * above that, the Padmé rule (Nikitin et al., PETS 2019): with `L = n + 1`,
//!   `E = floor(log2 L)`, `S = floor(log2 E) + 1`, the low `E - S` bits of the length are
//!   rounded up to zero. This leaks O(log log L) bits of the length and costs at most about
//!   12% (3% at 64 KiB).
//!
//! Unpadding is strict: the bytes after the marker must all be zero and the total length
//! must be exactly `padded_len` of the recovered plaintext length, so there is one padded form
//! per plaintext.

use crate::CryptoError;

/// Every padded plaintext is at least this long. Reason: hide the length of short messages,
/// which are most chat messages, at a cost of at most one 256-byte AEAD block run.
pub const MIN_PADDED_LEN: usize = 256;

/// The largest plaintext that can be padded. Reason: a chat message (and an attachment's
/// key and digest, never the attachment itself) fits with room to spare, and the bound keeps
/// memory per message small on phones.
pub const MAX_PLAINTEXT_LEN: usize = 128 * 1024;

/// The padded length for a plaintext of `len` bytes, or `None` if `len` is over the maximum.
#[must_use]
pub fn padded_len(len: usize) -> Option<usize> {
    if len > MAX_PLAINTEXT_LEN {
        return None;
    }
    let l = len.checked_add(1)?;
    if l <= MIN_PADDED_LEN {
        return Some(MIN_PADDED_LEN);
    }
    let e = usize::BITS.checked_sub(1)?.checked_sub(l.leading_zeros())?; // floor(log2 l)
    let s = u32::BITS.checked_sub(e.leading_zeros())?; // floor(log2 e) + 1
    let last_bits = e.checked_sub(s)?;
    let mask = (1usize << last_bits).checked_sub(1)?;
    Some(l.checked_add(mask)? & !mask)
}

/// Pads `plaintext` as described in the module documentation.
pub fn pad(plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let total = padded_len(plaintext.len()).ok_or(CryptoError::TooLong {
        len: plaintext.len(),
        max: MAX_PLAINTEXT_LEN,
    })?;
    // Leave room for the AEAD tag so sealing in place never reallocates.
    let mut out = Vec::with_capacity(total.saturating_add(crate::aead::TAG_LEN));
    out.extend_from_slice(plaintext);
    out.push(0x80);
    out.resize(total, 0);
    Ok(out)
}

/// Removes padding in place, strictly. On error `padded` is left unchanged.
pub fn unpad_in_place(padded: &mut Vec<u8>) -> Result<(), CryptoError> {
    let marker = padded
        .iter()
        .rposition(|b| *b != 0)
        .ok_or(CryptoError::BadPadding)?;
    if padded.get(marker) != Some(&0x80) || padded_len(marker) != Some(padded.len()) {
        return Err(CryptoError::BadPadding);
    }
    padded.truncate(marker);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn buckets() {
        assert_eq!(padded_len(0), Some(256));
        assert_eq!(padded_len(255), Some(256));
        assert_eq!(padded_len(256), Some(272));
        assert_eq!(padded_len(1024), Some(1088));
        assert_eq!(padded_len(65536), Some(67584));
        assert_eq!(padded_len(MAX_PLAINTEXT_LEN + 1), None);
    }

    #[test]
    fn non_canonical_padding_refused() {
        let mut p = pad(b"hi").unwrap();
        p.push(0);
        assert!(unpad_in_place(&mut p).is_err());
        let mut p = pad(b"hi").unwrap();
        p[2] = 0x81;
        assert!(unpad_in_place(&mut p).is_err());
        let mut p = vec![0u8; 256];
        assert!(unpad_in_place(&mut p).is_err());
    }

    proptest! {
        #[test]
        fn round_trip(v in proptest::collection::vec(any::<u8>(), 0..5000)) {
            let mut p = pad(&v).unwrap();
            prop_assert_eq!(Some(p.len()), padded_len(v.len()));
            prop_assert!(p.len() >= MIN_PADDED_LEN);
            prop_assert!(p.len() * 100 <= (v.len() + 1).max(MIN_PADDED_LEN) * 113);
            unpad_in_place(&mut p).unwrap();
            prop_assert_eq!(p, v);
        }

        #[test]
        fn padded_len_is_monotonic(a in 0usize..MAX_PLAINTEXT_LEN, b in 0usize..MAX_PLAINTEXT_LEN) {
            let (x, y) = (a.min(b), a.max(b));
            prop_assert!(padded_len(x) <= padded_len(y));
        }
    }
}
