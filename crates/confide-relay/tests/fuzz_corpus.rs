//! Replays the `relay_request` fuzz corpus (the reference relay's protocol) through the fuzz
//! target's check (`confide_test_support::fuzzing::relay_request`). With
//! `CONFIDE_REGENERATE_CORPUS=1` it first (re)writes the seed corpus.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use confide_attachment::{BlobDeleteToken, BlobId};
use confide_relay::protocol::{BundleKind, ErrorCode, Request, RequestBody, ServerMessage};
use confide_test_support::{corpus, fuzzing};
use confide_transport::{Address, Frame, FrameId, RelayToken};
use confide_wire::Timestamp;

fn seeds() -> Vec<Vec<u8>> {
    let mailbox = Address::new(b"counselor-mailbox").unwrap();
    let frame = Frame::Data {
        id: FrameId::from_bytes([1; 16]),
        payload: b"opaque sealed envelope".to_vec(),
    }
    .to_bytes()
    .unwrap();
    let bodies = vec![
        RequestBody::CreateMailbox {
            address: mailbox.clone(),
            owner_key: [2; 32],
            verifier: Some([3; 32]),
            signature: [4; 64],
        },
        RequestBody::Authenticate {
            address: mailbox.clone(),
            signature: [5; 64],
        },
        RequestBody::Send {
            to: mailbox.clone(),
            token: Some(RelayToken::new([6; 16])),
            frame: frame.clone(),
        },
        RequestBody::Send {
            to: mailbox.clone(),
            token: None,
            frame: frame.clone(),
        },
        RequestBody::Confirm {
            ids: vec![FrameId::from_bytes([1; 16]), FrameId::from_bytes([7; 16])],
        },
        RequestBody::SetVerifier { verifier: None },
        RequestBody::UploadBundles {
            one_time: vec![vec![8; 40], vec![9; 40]],
            last_resort: Some(vec![10; 40]),
        },
        RequestBody::FetchBundle { address: mailbox },
        RequestBody::BundleCount,
        RequestBody::RequestCertificate {
            device_id: 1,
            identity: [11; 128],
        },
        RequestBody::Ping,
        RequestBody::RegisterPush {
            url: b"http://push.internal:8080/wake/7f3a".to_vec(),
        },
        RequestBody::RegisterPush { url: Vec::new() },
        RequestBody::PutBlob {
            blob_id: BlobId::from_bytes([14; 16]),
            offset: 0,
            total_len: 65_585,
            delete_token_hash: [15; 32],
            bytes: vec![16; 64],
        },
        RequestBody::PutBlob {
            blob_id: BlobId::from_bytes([14; 16]),
            offset: 64,
            total_len: 65_585,
            delete_token_hash: [15; 32],
            bytes: Vec::new(),
        },
        RequestBody::BlobStatus {
            blob_id: BlobId::from_bytes([14; 16]),
        },
        RequestBody::GetBlob {
            blob_id: BlobId::from_bytes([14; 16]),
            offset: 1_000,
        },
        RequestBody::DeleteBlob {
            blob_id: BlobId::from_bytes([14; 16]),
            delete_token: BlobDeleteToken::new([17; 32]),
        },
    ];
    let mut out: Vec<Vec<u8>> = bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| {
            Request {
                id: u32::try_from(i).unwrap() + 1,
                body,
            }
            .to_bytes()
            .unwrap()
        })
        .collect();
    for m in [
        ServerMessage::Hello {
            challenge: [12; 32],
        },
        ServerMessage::Error {
            id: 3,
            code: ErrorCode::TokenRefused,
        },
        ServerMessage::Stored {
            id: 3,
            frame_id: FrameId::from_bytes([1; 16]),
        },
        ServerMessage::Bundle {
            id: 4,
            kind: BundleKind::OneTime,
            bundle: vec![8; 40],
        },
        ServerMessage::Certificate {
            id: 5,
            expires_at: Timestamp::from_millis(1_750_000_000_000),
            certificate: vec![13; 100],
        },
        ServerMessage::Deliver { frame },
        ServerMessage::BlobStored {
            id: 14,
            stored_len: 64,
        },
        ServerMessage::BlobStatus {
            id: 15,
            stored_len: 64,
            total_len: 65_585,
        },
        ServerMessage::BlobData {
            id: 16,
            offset: 1_000,
            last: true,
            bytes: vec![18; 48],
        },
        ServerMessage::BlobRefused {
            id: 17,
            code: ErrorCode::BlobOffsetMismatch,
            stored_len: 64,
        },
        ServerMessage::Error {
            id: 18,
            code: ErrorCode::DeleteTokenRefused,
        },
    ] {
        out.push(m.to_bytes().unwrap());
    }
    out
}

#[test]
fn relay_request_corpus_replays() {
    if corpus::regenerate_requested() {
        corpus::write("relay_request", &seeds());
    }
    let inputs = corpus::replay("relay_request", fuzzing::relay_request);
    assert!(
        inputs.iter().any(|i| Request::from_bytes(i).is_ok()),
        "the seed corpus holds valid requests"
    );
}

#[test]
fn seeds_decode_and_reencode() {
    for seed in seeds() {
        fuzzing::relay_request(&seed);
        assert!(Request::from_bytes(&seed).is_ok() || ServerMessage::from_bytes(&seed).is_ok());
    }
}
