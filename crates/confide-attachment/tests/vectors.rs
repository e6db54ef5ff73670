//! Known-answer vectors of the attachment format (`docs/test-vectors/attachment/vectors.json`,
//! described in `docs/attachments.md` §7): each blob is made by the library from a seeded RNG
//! and also recomputed here from the primitives, following the document step by step.
//!
//! `CONFIDE_REGENERATE_VECTORS=1 cargo test -p confide-attachment --test vectors` rewrites the
//! file.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use chacha20poly1305::{ChaCha20Poly1305, KeyInit, Nonce, aead::AeadInOut};
use confide_attachment::{
    AttachmentEncryptor, AttachmentPointer, BlobId, CHUNK_LEN, ContentType, bucket_len,
};
use confide_crypto::{
    Duration,
    kdf::{hkdf_sha256, hkdf_sha256_multi, labels, sha256},
};
use confide_test_support::vectors::{RecordingRng, check_json};
use serde_json::{Value, json};

/// Plaintext byte `i` of every vector is `i mod 251`.
fn plaintext(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// The blob for `plaintext` under `key` and `salt`, from the primitives alone (§3, §4).
fn blob_from_primitives(key: &[u8; 32], salt: &[u8; 32], plaintext: &[u8]) -> (Vec<u8>, Value) {
    blob_with_padding(key, salt, plaintext, 0)
}

/// As [`blob_from_primitives`], with every padding byte set to `pad` (0 in a conforming blob).
fn blob_with_padding(
    key: &[u8; 32],
    salt: &[u8; 32],
    plaintext: &[u8],
    pad: u8,
) -> (Vec<u8>, Value) {
    let len = plaintext.len() as u64;
    let mut chunk_key = [0u8; 32];
    hkdf_sha256_multi(
        Some(&salt[..]),
        key,
        &[b"Confide_v1_Attachment_ChunkKey", &[1], &len.to_be_bytes()],
        &mut chunk_key,
    )
    .unwrap();
    assert_eq!(
        labels::ATTACHMENT_CHUNK_KEY,
        b"Confide_v1_Attachment_ChunkKey"
    );
    let cipher = ChaCha20Poly1305::new((&chunk_key).into());
    let mut body = plaintext.to_vec();
    body.resize(bucket_len(len).unwrap() as usize, pad);
    let mut blob = vec![1u8];
    blob.extend_from_slice(salt);
    let count = body.len().div_ceil(CHUNK_LEN);
    let mut chunks = Vec::new();
    for (i, chunk) in body.chunks_mut(CHUNK_LEN).enumerate() {
        let mut nonce = [0u8; 12];
        nonce[3..11].copy_from_slice(&(i as u64).to_be_bytes());
        nonce[11] = u8::from(i + 1 == count);
        let tag = cipher
            .encrypt_inout_detached(&Nonce::from(nonce), &[], chunk.into())
            .unwrap();
        chunks.push(json!({
            "index": i,
            "nonce": hex::encode(nonce),
            "body_len": chunk.len(),
            "ciphertext_first_32": hex::encode(&chunk[..32]),
            "tag": hex::encode(tag),
        }));
        blob.extend_from_slice(chunk);
        blob.extend_from_slice(&tag);
    }
    let derived = json!({ "chunk_key": hex::encode(chunk_key), "chunks": chunks });
    (blob, derived)
}

fn case(
    rng: &mut RecordingRng,
    len: usize,
    content_type: ContentType,
    duration: Option<Duration>,
) -> Value {
    let data = plaintext(len);
    let mut encryptor = AttachmentEncryptor::new(rng, len as u64).unwrap();
    let header = *encryptor.header();
    let mut blob = Vec::new();
    let mut input = &data[..];
    while let Some(ciphertext) = encryptor.push(&mut input).unwrap() {
        blob.extend_from_slice(ciphertext);
    }
    let sealed = encryptor.finish().unwrap();
    let blob_id = BlobId::random(rng);
    let pointer = AttachmentPointer::new(blob_id, &sealed, content_type, duration).unwrap();

    let mut salt = [0u8; 32];
    salt.copy_from_slice(&header[1..]);
    let (recomputed, derived) = blob_from_primitives(sealed.key.expose(), &salt, &data);
    assert!(
        recomputed == blob,
        "the document's construction gives the library's blob"
    );
    assert_eq!(sealed.digest.as_bytes(), &sha256(&[&blob]));
    assert_eq!(
        &confide_attachment::decrypt(&pointer, &blob).unwrap()[..],
        &data[..]
    );
    // §5.1: the blob delete token, from the primitives, and the hash the relay keeps.
    let mut delete_token = [0u8; 32];
    hkdf_sha256(
        None,
        sealed.key.expose(),
        b"Confide_v1_Attachment_BlobDeleteToken",
        &mut delete_token,
    )
    .unwrap();
    assert_eq!(
        labels::ATTACHMENT_BLOB_DELETE_TOKEN,
        b"Confide_v1_Attachment_BlobDeleteToken"
    );
    assert_eq!(pointer.delete_token().expose(), &delete_token);
    assert_eq!(sealed.delete_token(), pointer.delete_token());
    let delete_token_hash = sha256(&[&delete_token]);
    assert_eq!(pointer.delete_token().hash(), delete_token_hash);

    json!({
        "plaintext_len": len,
        "bucket_len": bucket_len(len as u64),
        "chunk_count": derived["chunks"].as_array().unwrap().len(),
        "ciphertext_len": blob.len(),
        "key": hex::encode(sealed.key.expose()),
        "header": hex::encode(header),
        "chunk_key": derived["chunk_key"],
        "chunks": derived["chunks"],
        "blob_sha256": hex::encode(sealed.digest.as_bytes()),
        "blob_id": hex::encode(blob_id.as_bytes()),
        "content_type": content_type.code(),
        "duration_ms": duration.map(Duration::as_millis),
        "pointer": hex::encode(&pointer.to_bytes()[..]),
        "delete_token": hex::encode(delete_token),
        "delete_token_sha256": hex::encode(delete_token_hash),
    })
}

#[test]
fn attachment_vectors() {
    let mut rng = RecordingRng::new("attachment", [0x61; 32]);
    let cases = vec![
        case(&mut rng, 0, ContentType::File, None),
        case(
            &mut rng,
            5,
            ContentType::VoiceNote,
            Some(Duration::from_millis(1_500)),
        ),
        case(&mut rng, CHUNK_LEN + 1, ContentType::Image, None),
        case(
            &mut rng,
            200_000,
            ContentType::Other(9),
            Some(Duration::from_secs(12)),
        ),
    ];
    let buckets: Vec<Value> = [
        0u64,
        65_536,
        65_537,
        100_000,
        1_000_000,
        10_000_000,
        104_857_600,
    ]
    .iter()
    .map(|&len| {
        json!({
            "plaintext_len": len,
            "bucket_len": bucket_len(len),
            "ciphertext_len": confide_attachment::ciphertext_len(len),
        })
    })
    .collect();
    let generated = json!({
        "description": "Attachment streams and pointers (docs/attachments.md). Plaintext byte i is i mod 251. Each case draws 32 bytes of key, 32 of salt, then 16 of blob id from the RNG, in that order.",
        "rng": { "name": rng.name, "algorithm": "ChaCha20Rng::from_seed", "seed": hex::encode([0x61u8; 32]), "draws": rng.draws },
        "cases": cases,
        "buckets": buckets,
    });
    check_json("attachment/vectors.json", &generated);
}

#[test]
fn authentic_chunks_with_non_zero_padding_are_refused() {
    // A key holder (a non-conforming sender) pads with 0x01: every chunk authenticates, but
    // the decryptor refuses the chunk that holds padding (one encoding per attachment).
    let key = [0x71u8; 32];
    let salt = [0x72u8; 32];
    for (len, padded_chunk) in [(10usize, 0u64), (CHUNK_LEN + 1, 1)] {
        let data = plaintext(len);
        let (blob, _) = blob_with_padding(&key, &salt, &data, 1);
        let (good, _) = blob_from_primitives(&key, &salt, &data);
        let attachment_key = confide_attachment::AttachmentKey::new(key);
        for (blob, expected) in [
            (&good, Ok(())),
            (
                &blob,
                Err(confide_attachment::DecryptError::BadPadding {
                    index: padded_chunk,
                }),
            ),
        ] {
            let mut decryptor =
                confide_attachment::AttachmentDecryptor::new(&attachment_key, len as u64).unwrap();
            let mut input = &blob[..];
            let outcome = loop {
                match decryptor.push(&mut input) {
                    Ok(Some(_)) => {}
                    Ok(None) => break decryptor.finish(),
                    Err(e) => break Err(e),
                }
            };
            assert_eq!(outcome, expected, "len {len}");
        }
    }
}
