//! The pointer's encoding: canonical, strict, and the key never printed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use crate::common;

use common::*;
use confide_attachment::{
    AttachmentKey, AttachmentPointer, BlobId, CiphertextDigest, ContentType, MAX_DURATION,
    MAX_PLAINTEXT_LEN, POINTER_LEN, PointerError,
};
use confide_crypto::{Duration, codec::DecodeError};
use proptest::prelude::*;

fn sample(content_type: ContentType, duration: Option<Duration>) -> AttachmentPointer {
    AttachmentPointer::from_parts(
        BlobId::from_bytes([0x11; 16]),
        AttachmentKey::new([0x22; 32]),
        CiphertextDigest::from_bytes([0x33; 32]),
        1_234_567,
        content_type,
        duration,
    )
    .unwrap()
}

#[test]
fn layout_is_as_specified() {
    let p = sample(
        ContentType::VoiceNote,
        Some(Duration::from_millis(0x0102_0304)),
    );
    let bytes = p.to_bytes();
    assert_eq!(bytes.len(), POINTER_LEN);
    let mut expected = vec![1u8];
    expected.extend_from_slice(&[0x11; 16]);
    expected.extend_from_slice(&[0x22; 32]);
    expected.extend_from_slice(&[0x33; 32]);
    expected.extend_from_slice(&1_234_567u64.to_be_bytes());
    expected.push(1);
    expected.extend_from_slice(&[1, 2, 3, 4]);
    assert_eq!(&bytes[..], &expected[..]);
    assert_eq!(AttachmentPointer::from_bytes(&bytes).unwrap(), p);
}

#[test]
fn strict_parsing() {
    let good = sample(ContentType::Image, None).to_bytes();
    assert!(AttachmentPointer::from_bytes(&good).is_ok());
    // Trailing byte, short input, unknown version.
    let mut long = good.to_vec();
    long.push(0);
    assert_eq!(
        AttachmentPointer::from_bytes(&long),
        Err(DecodeError::TrailingBytes { count: 1 })
    );
    assert!(matches!(
        AttachmentPointer::from_bytes(&good[..POINTER_LEN - 1]),
        Err(DecodeError::UnexpectedEnd { .. })
    ));
    let mut v2 = good.to_vec();
    v2[0] = 2;
    assert!(matches!(
        AttachmentPointer::from_bytes(&v2),
        Err(DecodeError::UnknownVersion { found: 2, .. })
    ));
    // Content type 0; an image with a duration; a voice note without; over the size limit.
    let at_type = POINTER_LEN - 5;
    let mut zero_type = good.to_vec();
    zero_type[at_type] = 0;
    assert!(AttachmentPointer::from_bytes(&zero_type).is_err());
    let mut image_with_duration = good.to_vec();
    image_with_duration[POINTER_LEN - 1] = 1;
    assert!(AttachmentPointer::from_bytes(&image_with_duration).is_err());
    let mut voice_without = good.to_vec();
    voice_without[at_type] = 1;
    assert!(AttachmentPointer::from_bytes(&voice_without).is_err());
    let mut too_long = good.to_vec();
    too_long[at_type - 8..at_type].copy_from_slice(&(MAX_PLAINTEXT_LEN + 1).to_be_bytes());
    assert!(matches!(
        AttachmentPointer::from_bytes(&too_long),
        Err(DecodeError::TooLong { .. })
    ));
    let mut over_duration = sample(ContentType::VoiceNote, Some(MAX_DURATION))
        .to_bytes()
        .to_vec();
    assert!(AttachmentPointer::from_bytes(&over_duration).is_ok());
    let millis = u32::try_from(MAX_DURATION.as_millis() + 1).unwrap();
    over_duration[POINTER_LEN - 4..].copy_from_slice(&millis.to_be_bytes());
    assert!(AttachmentPointer::from_bytes(&over_duration).is_err());
}

#[test]
fn unknown_content_types_are_kept_as_files() {
    let p = sample(ContentType::Other(200), Some(Duration::from_secs(3)));
    let back = AttachmentPointer::from_bytes(&p.to_bytes()).unwrap();
    assert_eq!(back.content_type(), ContentType::Other(200));
    assert_eq!(back.duration(), Some(Duration::from_secs(3)));
    // `Other` may not spell a known code (one encoding per value) nor 0.
    for code in 0..=3 {
        assert_eq!(
            AttachmentPointer::from_parts(
                BlobId::from_bytes([0; 16]),
                AttachmentKey::new([0; 32]),
                CiphertextDigest::from_bytes([0; 32]),
                0,
                ContentType::Other(code),
                None
            ),
            Err(PointerError::InvalidContentType { code })
        );
    }
}

#[test]
fn construction_rules() {
    let make = |t, d| {
        AttachmentPointer::from_parts(
            BlobId::from_bytes([0; 16]),
            AttachmentKey::new([0; 32]),
            CiphertextDigest::from_bytes([0; 32]),
            10,
            t,
            d,
        )
    };
    assert_eq!(
        make(ContentType::VoiceNote, None),
        Err(PointerError::DurationMissing)
    );
    assert_eq!(
        make(ContentType::File, Some(Duration::from_secs(1))),
        Err(PointerError::DurationNotAllowed)
    );
    assert!(matches!(
        make(ContentType::VoiceNote, Some(Duration::from_millis(0))),
        Err(PointerError::DurationOutOfRange { .. })
    ));
}

#[test]
fn the_size_limit_is_inclusive() {
    let make = |len| {
        AttachmentPointer::from_parts(
            BlobId::from_bytes([0; 16]),
            AttachmentKey::new([0; 32]),
            CiphertextDigest::from_bytes([0; 32]),
            len,
            ContentType::File,
            None,
        )
    };
    let largest = make(MAX_PLAINTEXT_LEN).unwrap();
    assert_eq!(
        AttachmentPointer::from_bytes(&largest.to_bytes()).unwrap(),
        largest
    );
    assert_eq!(
        make(MAX_PLAINTEXT_LEN + 1),
        Err(PointerError::TooLong {
            len: MAX_PLAINTEXT_LEN + 1,
            max: MAX_PLAINTEXT_LEN
        })
    );
}

#[test]
fn debug_redacts_the_key() {
    let p = sample(ContentType::File, None);
    let shown = format!("{p:?}");
    assert!(shown.contains("[REDACTED]"), "{shown}");
    assert!(!shown.contains("2222"), "{shown}");
    assert!(!shown.contains("34, 34"), "{shown}");
    assert!(shown.contains("1111"), "the blob id is shown: {shown}");
}

#[test]
fn the_delete_token_is_one_per_key_shared_by_every_pointer_holder_and_redacted() {
    let p = sample(ContentType::File, None);
    let token = p.delete_token();
    let parsed = AttachmentPointer::from_bytes(&p.to_bytes()).unwrap();
    assert_eq!(
        parsed.delete_token(),
        token,
        "a recipient derives the same token"
    );
    assert_eq!(p.key().blob_delete_token(), token);
    assert_ne!(token.expose(), p.key().expose(), "not the key itself");
    assert_ne!(token.hash(), *token.expose());
    let other = AttachmentPointer::from_parts(
        *p.blob_id(),
        AttachmentKey::new([0x23; 32]),
        *p.digest(),
        p.plaintext_len(),
        ContentType::File,
        None,
    )
    .unwrap();
    assert_ne!(other.delete_token(), token, "another key, another token");
    assert_eq!(format!("{token:?}"), "BlobDeleteToken([REDACTED])");
}

#[test]
fn a_pointer_from_an_encryption_decrypts_its_blob() {
    let data = plaintext(1, 2_000);
    let (blob, sealed) = seal(1, &data);
    let p = AttachmentPointer::new(
        BlobId::random(&mut rng(2)),
        &sealed,
        ContentType::VoiceNote,
        Some(Duration::from_secs(2)),
    )
    .unwrap();
    let parsed = AttachmentPointer::from_bytes(&p.to_bytes()).unwrap();
    assert_eq!(parsed.ciphertext_len(), blob.len() as u64);
    assert_eq!(
        &confide_attachment::decrypt(&parsed, &blob).unwrap()[..],
        &data[..]
    );
}

proptest! {
    #[test]
    fn decoding_is_canonical(
        mut bytes in proptest::collection::vec(any::<u8>(), POINTER_LEN..=POINTER_LEN),
        content_type in 0..6u8,
        millis in prop_oneof![Just(0u32), 0..100_000u32, any::<u32>()],
        len in prop_oneof![0..=MAX_PLAINTEXT_LEN, any::<u64>()],
    ) {
        // Mostly well-formed, so both acceptance and each refusal are reached.
        bytes[0] = 1;
        bytes[81..89].copy_from_slice(&len.to_be_bytes());
        bytes[89] = content_type;
        bytes[90..].copy_from_slice(&millis.to_be_bytes());
        if let Ok(p) = AttachmentPointer::from_bytes(&bytes) {
            prop_assert_eq!(&p.to_bytes()[..], &bytes[..]);
        }
        confide_test_support::fuzzing::attachment_pointer(&bytes);
    }
}
