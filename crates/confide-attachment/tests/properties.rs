//! Properties of the stream over random inputs: any split of the input round-trips, and any
//! truncation, reordering, splice, extension or bit flip is refused, with only plaintext of
//! authenticated chunks released (always a prefix of the true plaintext).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use crate::common;

use common::*;
use confide_attachment::{AttachmentDecryptor, AttachmentEncryptor, CHUNK_LEN};
use proptest::prelude::*;

/// Up to four chunks: every case crosses chunk boundaries and the padding rules.
const MAX_LEN: usize = 3 * CHUNK_LEN + 5_000;

fn config() -> ProptestConfig {
    // Each case encrypts and decrypts up to 260 KB several times; 48 cases keep the file at a
    // few seconds.
    ProptestConfig {
        cases: 48,
        ..ProptestConfig::default()
    }
}

/// Encrypts with the plaintext given in pieces of the given sizes (cycled).
fn encrypt_in_pieces(
    seed: u8,
    data: &[u8],
    pieces: &[usize],
) -> (Vec<u8>, confide_attachment::EncryptedAttachment) {
    let mut enc = AttachmentEncryptor::new(&mut rng(seed), data.len() as u64).unwrap();
    let mut blob = Vec::new();
    let mut rest = data;
    let mut sizes = pieces.iter().copied().cycle();
    loop {
        let n = sizes.next().unwrap_or(rest.len()).min(rest.len());
        let (mut piece, later) = rest.split_at(n);
        rest = later;
        while let Some(ct) = enc.push(&mut piece).unwrap() {
            blob.extend_from_slice(ct);
        }
        assert!(piece.is_empty());
        if rest.is_empty() {
            break;
        }
    }
    while let Some(ct) = enc.push(&mut &[][..]).unwrap() {
        blob.extend_from_slice(ct);
    }
    (blob, enc.finish().unwrap())
}

fn refused(
    key_seed_blob: (&confide_attachment::EncryptedAttachment, &[u8]),
    data: &[u8],
    pieces: &[usize],
) -> bool {
    let (sealed, blob) = key_seed_blob;
    let out = run(
        AttachmentDecryptor::for_pointer(&pointer(sealed)).unwrap(),
        blob,
        pieces,
    );
    assert!(
        data.starts_with(&out.released),
        "released plaintext is a prefix of the truth"
    );
    out.result.is_err()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_split_round_trips(
        seed in any::<u64>(),
        len in 0..MAX_LEN,
        enc_pieces in proptest::collection::vec(1..100_000usize, 0..6),
        dec_pieces in proptest::collection::vec(1..100_000usize, 0..6),
    ) {
        let data = plaintext(seed, len);
        let (blob, sealed) = encrypt_in_pieces(1, &data, &enc_pieces);
        prop_assert_eq!(blob.len() as u64, sealed.ciphertext_len);
        let out = run(AttachmentDecryptor::for_pointer(&pointer(&sealed)).unwrap(), &blob, &dec_pieces);
        prop_assert_eq!(out.result, Ok(()));
        prop_assert!(out.released == data);
        // The same plaintext in one piece gives the same blob (the split changes nothing).
        let (again, _) = seal(1, &data);
        prop_assert!(again == blob);
    }

    #[test]
    fn any_truncation_is_refused(seed in any::<u64>(), len in 0..MAX_LEN, cut in any::<prop::sample::Index>(), pieces in proptest::collection::vec(1..70_000usize, 0..4)) {
        let data = plaintext(seed, len);
        let (blob, sealed) = seal(2, &data);
        let cut = cut.index(blob.len());
        prop_assert!(refused((&sealed, &blob[..cut]), &data, &pieces));
    }

    #[test]
    fn any_extension_is_refused(seed in any::<u64>(), len in 0..MAX_LEN, extra in proptest::collection::vec(any::<u8>(), 1..40)) {
        let data = plaintext(seed, len);
        let (mut blob, sealed) = seal(3, &data);
        blob.extend_from_slice(&extra);
        prop_assert!(refused((&sealed, &blob), &data, &[]));
    }

    #[test]
    fn any_bit_flip_is_refused(seed in any::<u64>(), len in 0..MAX_LEN, at in any::<prop::sample::Index>(), bit in 0..8u8) {
        let data = plaintext(seed, len);
        let (mut blob, sealed) = seal(4, &data);
        let at = at.index(blob.len());
        blob[at] ^= 1 << bit;
        prop_assert!(refused((&sealed, &blob), &data, &[]));
        // Without the digest check too: the AEAD alone refuses it.
        let out = open(&sealed.key, len as u64, &blob);
        prop_assert!(out.result.is_err());
        prop_assert!(data.starts_with(&out.released));
    }

    #[test]
    fn any_reorder_of_chunks_is_refused(seed in any::<u64>(), len in (CHUNK_LEN + 1)..MAX_LEN, a in any::<prop::sample::Index>(), b in any::<prop::sample::Index>()) {
        let data = plaintext(seed, len);
        let (blob, sealed) = seal(5, &data);
        let ranges = chunk_ranges(&blob);
        let (i, j) = (a.index(ranges.len()), b.index(ranges.len()));
        prop_assume!(i != j);
        // Move chunk i (without the header) to position j.
        let mut chunks: Vec<&[u8]> = ranges.iter().map(|r| &blob[r.clone()]).collect();
        chunks[0] = &chunks[0][confide_attachment::HEADER_LEN..];
        let moved = chunks.remove(i);
        chunks.insert(j, moved);
        let mut reordered = blob[..confide_attachment::HEADER_LEN].to_vec();
        for c in chunks {
            reordered.extend_from_slice(c);
        }
        prop_assert!(refused((&sealed, &reordered), &data, &[]));
        prop_assert!(open(&sealed.key, len as u64, &reordered).result.is_err());
    }

    #[test]
    fn any_splice_from_another_attachment_is_refused(seed in any::<u64>(), len in 0..MAX_LEN, at in any::<prop::sample::Index>()) {
        // Another attachment of the same length (so the same chunk layout): any one of its
        // chunks in place of ours.
        let data = plaintext(seed, len);
        let other = plaintext(seed ^ 1, len);
        let (blob, sealed) = seal(6, &data);
        let (blob2, _) = seal(7, &other);
        let ranges = chunk_ranges(&blob);
        let i = at.index(ranges.len());
        let mut spliced = blob.clone();
        let r = ranges[i].clone();
        let start = if i == 0 { confide_attachment::HEADER_LEN } else { r.start };
        spliced[start..r.end].copy_from_slice(&blob2[start..r.end]);
        prop_assert!(open(&sealed.key, len as u64, &spliced).result.is_err());
        prop_assert!(refused((&sealed, &spliced), &data, &[]));
    }
}
