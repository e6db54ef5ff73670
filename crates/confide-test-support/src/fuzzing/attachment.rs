//! The checks of the `attachment_pointer` and `attachment_stream` fuzz targets, shared with
//! the corpus replay of confide-attachment (`tests/fuzz_corpus.rs`).
//!
//! A stream input is a 4-byte big-endian plaintext length, a 1-byte piece size, then the
//! blob, decrypted under the fixture key [`STREAM_KEY`]; the seed corpus holds blobs
//! encrypted under it, so mutations start past the header and the first chunk.

use confide_attachment::{
    AttachmentDecryptor, AttachmentKey, AttachmentPointer, DecryptError,
    dangerous_encryptor_with_key_and_salt,
};

/// The fixture key the stream target decrypts under.
pub const STREAM_KEY: [u8; 32] = [0x41; 32];

/// `attachment_pointer`: the strict pointer decoder never panics, whatever it accepts
/// re-encodes to exactly the input, and its `Debug` does not depend on the key (it prints the
/// same with the key's bits inverted).
pub fn attachment_pointer(data: &[u8]) {
    if let Ok(pointer) = AttachmentPointer::from_bytes(data) {
        assert_eq!(
            &pointer.to_bytes()[..],
            data,
            "pointer encoding is canonical"
        );
        let other_key = pointer.key().expose().map(|b| !b);
        let other = AttachmentPointer::from_parts(
            *pointer.blob_id(),
            AttachmentKey::new(other_key),
            *pointer.digest(),
            pointer.plaintext_len(),
            pointer.content_type(),
            pointer.duration(),
        )
        .expect("only the key differs");
        assert_eq!(
            format!("{pointer:?}"),
            format!("{other:?}"),
            "Debug depends on the key"
        );
    }
}

/// Splits a stream input into (plaintext length, piece size, blob).
#[must_use]
pub fn split_stream_input(data: &[u8]) -> Option<(u64, usize, &[u8])> {
    let (len, rest) = data.split_first_chunk::<4>()?;
    let (&piece, blob) = rest.split_first()?;
    Some((
        u64::from(u32::from_be_bytes(*len)),
        usize::from(piece).max(1),
        blob,
    ))
}

/// Frames a stream input the way [`split_stream_input`] reads it (for the seed corpus).
#[must_use]
pub fn join_stream_input(plaintext_len: u32, piece: u8, blob: &[u8]) -> Vec<u8> {
    let mut out = plaintext_len.to_be_bytes().to_vec();
    out.push(piece);
    out.extend_from_slice(blob);
    out
}

/// `attachment_stream`: the decryptor never panics, whatever the blob and however it is
/// split; plaintext is released only as a prefix that adds up to the declared length when,
/// and only when, the stream verifies to its end; after a refusal everything is refused;
/// and a stream that verifies is the one encoding of its plaintext (re-encrypting with its
/// salt under the fixture key gives back exactly the blob).
pub fn attachment_stream(data: &[u8]) {
    let Some((plaintext_len, piece, blob)) = split_stream_input(data) else {
        return;
    };
    let key = AttachmentKey::new(STREAM_KEY);
    let Ok(mut decryptor) = AttachmentDecryptor::new(&key, plaintext_len) else {
        return;
    };
    let mut released = Vec::new();
    let mut refused = None;
    'feed: for mut chunk in blob.chunks(piece) {
        loop {
            match decryptor.push(&mut chunk) {
                Ok(Some(plaintext)) => released.extend_from_slice(plaintext),
                Ok(None) => break,
                Err(e) => {
                    refused = Some(e);
                    break 'feed;
                }
            }
        }
        assert!(
            chunk.is_empty(),
            "push stops only when its input is used up"
        );
    }
    if let Some(error) = refused {
        assert_ne!(error, DecryptError::Refused, "the first failure says why");
        assert_eq!(decryptor.push(&mut &[0u8][..]), Err(DecryptError::Refused));
        assert_eq!(decryptor.finish(), Err(DecryptError::Refused));
        return;
    }
    match decryptor.finish() {
        Ok(()) => {
            assert_eq!(
                released.len() as u64,
                plaintext_len,
                "the whole plaintext came out"
            );
            assert_eq!(blob.len() as u64, decryptor.ciphertext_len());
            let mut salt = [0u8; 32];
            salt.copy_from_slice(&blob[1..33]);
            let mut encryptor = dangerous_encryptor_with_key_and_salt(key, salt, plaintext_len)
                .expect("a length that decrypted is within the limit");
            let mut again = Vec::new();
            let mut input = &released[..];
            while let Some(ciphertext) = encryptor.push(&mut input).expect("declared length") {
                again.extend_from_slice(ciphertext);
            }
            assert!(again == blob, "one encoding per attachment");
        }
        Err(DecryptError::Truncated { received, expected }) => {
            assert_eq!(received, blob.len() as u64);
            assert!(received < expected);
            assert!(released.len() as u64 <= plaintext_len);
        }
        Err(other) => panic!("finish after a clean feed: {other:?}"),
    }
}
