//! The stream as an attacker on the relay (or a careless caller) sees it: what is refused,
//! what is released, and what never leaks.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use crate::common;

use common::*;
use confide_attachment::{
    AttachmentDecryptor, AttachmentEncryptor, AttachmentKey, CHUNK_LEN, CiphertextDigest,
    DecryptError, EncryptError, HEADER_LEN, MAX_PLAINTEXT_LEN, ciphertext_len, decrypt,
};

#[test]
fn round_trips_at_chunk_boundaries() {
    for len in [
        0,
        1,
        CHUNK_LEN - 1,
        CHUNK_LEN,
        CHUNK_LEN + 1,
        3 * CHUNK_LEN + 17,
    ] {
        let data = plaintext(len as u64, len);
        let (blob, sealed) = seal(1, &data);
        assert_eq!(blob.len() as u64, ciphertext_len(len as u64).unwrap());
        assert_eq!(sealed.ciphertext_len, blob.len() as u64);
        assert_eq!(sealed.digest, CiphertextDigest::of(&blob));
        let out = open(&sealed.key, len as u64, &blob);
        assert_eq!(out.result, Ok(()), "len {len}");
        assert_eq!(out.released, data, "len {len}");
        assert_eq!(&decrypt(&pointer(&sealed), &blob).unwrap()[..], &data[..]);
    }
}

#[test]
fn the_relay_sees_only_the_bucket() {
    // Two voice notes of different lengths in one bucket give blobs of one length.
    let (a, _) = seal(1, &plaintext(1, 3_000));
    let (b, _) = seal(2, &plaintext(2, 60_000));
    assert_eq!(a.len(), b.len());
    let (c, _) = seal(3, &plaintext(3, 150_000));
    let (d, _) = seal(4, &plaintext(4, 151_552));
    assert_eq!(c.len(), d.len());
    // Padding is inside the authenticated stream: no plaintext-looking zeros at the end.
    assert!(a[a.len() - 64..].iter().any(|b| *b != 0));
}

#[test]
fn every_attachment_has_its_own_key_and_salt() {
    let mut rng = rng(7);
    let data = plaintext(1, 1_000);
    let (a, sa) = confide_attachment::encrypt(&mut rng, &data).unwrap();
    let (b, sb) = confide_attachment::encrypt(&mut rng, &data).unwrap();
    assert_ne!(sa.key, sb.key);
    assert_ne!(a[..HEADER_LEN], b[..HEADER_LEN]);
    assert_ne!(a[HEADER_LEN..], b[HEADER_LEN..]);
}

#[test]
fn truncation_is_refused_and_releases_only_verified_chunks() {
    let data = plaintext(5, 2 * CHUNK_LEN + 100);
    let (blob, sealed) = seal(1, &data);
    let ranges = chunk_ranges(&blob);
    assert_eq!(ranges.len(), 3);
    // Cut at a chunk boundary: the first two chunks verify and are released, but the stream
    // is not whole.
    let out = open(&sealed.key, data.len() as u64, &blob[..ranges[1].end]);
    assert_eq!(out.released, data[..2 * CHUNK_LEN]);
    assert_eq!(
        out.result,
        Err(DecryptError::Truncated {
            received: ranges[1].end as u64,
            expected: blob.len() as u64
        })
    );
    // Cut inside the header, inside a chunk, one byte short.
    for cut in [0, HEADER_LEN - 1, HEADER_LEN + 10, blob.len() - 1] {
        let out = open(&sealed.key, data.len() as u64, &blob[..cut]);
        assert!(matches!(out.result, Err(DecryptError::Truncated { .. })));
        assert!(data.starts_with(&out.released));
    }
}

#[test]
fn a_non_final_chunk_cannot_pass_as_the_end() {
    // The relay serves the first chunk of a two-chunk blob under a pointer claiming one chunk's
    // worth of plaintext: the length is in the key, and the chunk's flag says "not final".
    let data = plaintext(6, CHUNK_LEN + 1);
    let (blob, sealed) = seal(1, &data);
    let first = &blob[..chunk_ranges(&blob)[0].end];
    let out = open(&sealed.key, CHUNK_LEN as u64, first);
    assert_eq!(out.result, Err(DecryptError::ChunkRefused { index: 0 }));
    assert!(out.released.is_empty());
}

#[test]
fn extension_after_the_final_chunk_is_refused() {
    let data = plaintext(7, 10);
    let (blob, sealed) = seal(1, &data);
    let mut longer = blob.clone();
    longer.push(0);
    let out = open(&sealed.key, 10, &longer);
    assert_eq!(out.result, Err(DecryptError::TrailingData { extra: 1 }));
    // Appending a whole chunk of another attachment, the same.
    let (other, _) = seal(2, &data);
    let mut spliced = blob.clone();
    spliced.extend_from_slice(&other[HEADER_LEN..]);
    assert!(open(&sealed.key, 10, &spliced).result.is_err());
    // And `decrypt` refuses trailing bytes too.
    assert_eq!(
        decrypt(&pointer(&sealed), &longer).map(|_| ()),
        Err(DecryptError::TrailingData { extra: 1 })
    );
}

#[test]
fn reordered_chunks_are_refused() {
    let data = plaintext(8, 3 * CHUNK_LEN);
    let (blob, sealed) = seal(1, &data);
    let r = chunk_ranges(&blob);
    let mut swapped = blob[..HEADER_LEN].to_vec();
    swapped.extend_from_slice(&blob[r[1].clone()]);
    swapped.extend_from_slice(&blob[HEADER_LEN..r[0].end]);
    swapped.extend_from_slice(&blob[r[2].clone()]);
    let out = open(&sealed.key, data.len() as u64, &swapped);
    assert_eq!(out.result, Err(DecryptError::ChunkRefused { index: 0 }));
    assert!(out.released.is_empty());
}

#[test]
fn chunks_spliced_from_another_attachment_are_refused() {
    // Same length, same bucket, different attachment: its chunk 1 in our chunk 1's place.
    let a = plaintext(9, 2 * CHUNK_LEN);
    let b = plaintext(10, 2 * CHUNK_LEN);
    let (blob_a, sealed_a) = seal(1, &a);
    let (blob_b, sealed_b) = seal(2, &b);
    let r = chunk_ranges(&blob_a);
    let mut spliced = blob_a[..r[0].end].to_vec();
    spliced.extend_from_slice(&blob_b[r[1].clone()]);
    let out = open(&sealed_a.key, a.len() as u64, &spliced);
    assert_eq!(out.result, Err(DecryptError::ChunkRefused { index: 1 }));
    assert_eq!(out.released, a[..CHUNK_LEN]);
    // Even under the same key (a caller that reused one), a different salt separates them.
    let mut enc = confide_attachment::dangerous_encryptor_with_key_and_salt(
        sealed_a.key.clone(),
        [0x55; 32],
        b.len() as u64,
    )
    .unwrap();
    let mut blob_c = Vec::new();
    let mut input = &b[..];
    while let Some(ct) = enc.push(&mut input).unwrap() {
        blob_c.extend_from_slice(ct);
    }
    let mut spliced = blob_a[..r[0].end].to_vec();
    spliced.extend_from_slice(&blob_c[r[1].clone()]);
    let out = open(&sealed_a.key, a.len() as u64, &spliced);
    assert_eq!(out.result, Err(DecryptError::ChunkRefused { index: 1 }));
    let _ = sealed_b;
}

#[test]
fn a_wrong_key_or_length_is_refused_at_the_first_chunk() {
    let data = plaintext(11, 5_000);
    let (blob, sealed) = seal(1, &data);
    let out = open(&AttachmentKey::new([1; 32]), 5_000, &blob);
    assert_eq!(out.result, Err(DecryptError::ChunkRefused { index: 0 }));
    // Same bucket, one byte off: refused (the length is bound into the chunk key).
    let out = open(&sealed.key, 4_999, &blob);
    assert_eq!(out.result, Err(DecryptError::ChunkRefused { index: 0 }));
    assert!(out.released.is_empty());
}

#[test]
fn header_tampering_is_refused() {
    let data = plaintext(12, 100);
    let (blob, sealed) = seal(1, &data);
    let mut bad = blob.clone();
    bad[0] = 2;
    assert_eq!(
        open(&sealed.key, 100, &bad).result,
        Err(DecryptError::UnknownVersion { found: 2 })
    );
    let mut bad = blob.clone();
    bad[HEADER_LEN - 1] ^= 0x01;
    assert_eq!(
        open(&sealed.key, 100, &bad).result,
        Err(DecryptError::ChunkRefused { index: 0 })
    );
}

#[test]
fn the_digest_binds_the_exact_blob() {
    let data = plaintext(13, 70_000);
    let (blob, sealed) = seal(1, &data);
    let mut p = pointer(&sealed);
    // A pointer whose digest is not the blob's: refused at the final chunk, before its
    // plaintext is released.
    p = confide_attachment::AttachmentPointer::from_parts(
        *p.blob_id(),
        p.key().clone(),
        CiphertextDigest::from_bytes([0; 32]),
        p.plaintext_len(),
        p.content_type(),
        None,
    )
    .unwrap();
    let out = run(AttachmentDecryptor::for_pointer(&p).unwrap(), &blob, &[]);
    assert_eq!(out.result, Err(DecryptError::DigestMismatch));
    assert_eq!(out.released, data[..CHUNK_LEN]);
}

#[test]
fn the_decryptor_resumes_where_a_download_broke_off() {
    let data = plaintext(14, 200_000);
    let (blob, sealed) = seal(1, &data);
    let mut decryptor = AttachmentDecryptor::for_pointer(&pointer(&sealed)).unwrap();
    let mut got = Vec::new();
    let mut input = &blob[..100_001];
    while let Some(p) = decryptor.push(&mut input).unwrap() {
        got.extend_from_slice(p);
    }
    // The connection dropped; the app asks the relay for the rest from this offset.
    let offset = decryptor.ciphertext_received() as usize;
    assert_eq!(offset, 100_001);
    assert!(!decryptor.is_complete());
    let mut input = &blob[offset..];
    while let Some(p) = decryptor.push(&mut input).unwrap() {
        got.extend_from_slice(p);
    }
    assert!(decryptor.is_complete());
    decryptor.finish().unwrap();
    assert_eq!(got, data);
    assert_eq!(decryptor.ciphertext_len(), blob.len() as u64);
}

#[test]
fn caller_misuse_of_the_encryptor_is_refused_and_changes_nothing() {
    let mut enc = AttachmentEncryptor::new(&mut rng(1), 10).unwrap();
    let mut too_much = &[1u8; 11][..];
    assert_eq!(
        enc.push(&mut too_much).map(|o| o.map(<[u8]>::len)),
        Err(EncryptError::TooMuchPlaintext {
            offered: 11,
            room: 10
        })
    );
    assert_eq!(too_much.len(), 11, "nothing was taken");
    let mut five = &[1u8; 5][..];
    assert_eq!(enc.push(&mut five).unwrap(), None);
    assert_eq!(
        enc.finish(),
        Err(EncryptError::Incomplete {
            plaintext_missing: 5,
            chunks_missing: 1
        })
    );
    assert_eq!(enc.plaintext_remaining(), 5);
    assert!(matches!(
        AttachmentEncryptor::new(&mut rng(1), MAX_PLAINTEXT_LEN + 1),
        Err(EncryptError::TooLong { .. })
    ));
    assert!(matches!(
        AttachmentDecryptor::new(&AttachmentKey::new([0; 32]), MAX_PLAINTEXT_LEN + 1),
        Err(DecryptError::TooLong { .. })
    ));
}

#[test]
fn nothing_secret_in_debug_or_errors() {
    let data = b"I am scared to talk about this".to_vec();
    let mut enc = AttachmentEncryptor::new(&mut rng(1), data.len() as u64).unwrap();
    let mut input = &data[..];
    let _ = enc.push(&mut input).unwrap().map(<[u8]>::to_vec);
    let sealed = enc.finish().unwrap();
    let key_hex = hex::encode(sealed.key.expose());
    let key_dec = format!("{:?}", sealed.key.expose());
    let mut dec = AttachmentDecryptor::new(&sealed.key, data.len() as u64).unwrap();
    for shown in [
        format!("{enc:?}"),
        format!("{sealed:?}"),
        format!("{dec:?}"),
        format!("{:?}", pointer(&sealed)),
        format!("{:?}", sealed.key),
    ] {
        assert!(!shown.contains(&key_hex), "{shown}");
        assert!(!shown.contains(&key_dec[1..20]), "{shown}");
        assert!(!shown.contains("scared"), "{shown}");
    }
    assert_eq!(format!("{:?}", sealed.key), "AttachmentKey([REDACTED])");
    let err = dec.push(&mut &[0u8; HEADER_LEN + 300][..]).unwrap_err();
    assert!(!format!("{err} {err:?}").contains(&key_hex));
}

#[test]
fn a_header_arriving_in_small_pieces_is_read_whole() {
    // A slow link delivers a few bytes at a time: the decryptor must wait for all 33 header
    // bytes before deriving the chunk key.
    let data = plaintext(15, 1_000);
    let (blob, sealed) = seal(1, &data);
    for pieces in [&[1usize][..], &[7], &[32, 1, 65_000], &[HEADER_LEN - 1, 2]] {
        let out = run(
            AttachmentDecryptor::for_pointer(&pointer(&sealed)).unwrap(),
            &blob,
            pieces,
        );
        assert_eq!(out.result, Ok(()), "pieces {pieces:?}");
        assert_eq!(out.released, data, "pieces {pieces:?}");
    }
}
