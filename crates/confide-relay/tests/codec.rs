//! Property tests of the relay protocol codec: every request and relay message round-trips,
//! and arbitrary bytes never panic a decoder (whatever decodes re-encodes to the same bytes).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use confide_attachment::{BlobDeleteToken, BlobId};
use confide_relay::protocol::{
    BundleKind, ErrorCode, Request, RequestBody, ServerMessage, check_length, frame_id_of,
};
use confide_transport::{Address, Frame, FrameId, RelayToken};
use confide_wire::Timestamp;
use proptest::prelude::*;

fn address() -> impl Strategy<Value = Address> {
    proptest::collection::vec(any::<u8>(), 1..=64).prop_map(|b| Address::new(&b).unwrap())
}

fn bytes32() -> impl Strategy<Value = [u8; 32]> {
    any::<[u8; 32]>()
}

fn sig() -> impl Strategy<Value = [u8; 64]> {
    (any::<[u8; 32]>(), any::<[u8; 32]>()).prop_map(|(a, b)| {
        let mut s = [0; 64];
        s[..32].copy_from_slice(&a);
        s[32..].copy_from_slice(&b);
        s
    })
}

fn frame() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<[u8; 16]>(),
        proptest::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(|(id, p)| {
            Frame::Data {
                id: FrameId::from_bytes(id),
                payload: p,
            }
            .to_bytes()
            .unwrap()
        })
}

fn bundle() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 1..200)
}

fn body() -> impl Strategy<Value = RequestBody> {
    prop_oneof![
        (address(), bytes32(), proptest::option::of(bytes32()), sig()).prop_map(
            |(address, owner_key, verifier, signature)| RequestBody::CreateMailbox {
                address,
                owner_key,
                verifier,
                signature
            }
        ),
        (address(), sig())
            .prop_map(|(address, signature)| RequestBody::Authenticate { address, signature }),
        (address(), proptest::option::of(any::<[u8; 16]>()), frame()).prop_map(
            |(to, token, frame)| RequestBody::Send {
                to,
                token: token.map(RelayToken::new),
                frame
            }
        ),
        proptest::collection::vec(any::<[u8; 16]>(), 1..20).prop_map(|ids| RequestBody::Confirm {
            ids: ids.into_iter().map(FrameId::from_bytes).collect()
        }),
        proptest::option::of(bytes32()).prop_map(|verifier| RequestBody::SetVerifier { verifier }),
        (
            proptest::collection::vec(bundle(), 0..5),
            proptest::option::of(bundle())
        )
            .prop_map(|(one_time, last_resort)| RequestBody::UploadBundles {
                one_time,
                last_resort
            }),
        address().prop_map(|address| RequestBody::FetchBundle { address }),
        Just(RequestBody::BundleCount),
        (any::<u32>(), proptest::collection::vec(any::<u8>(), 128)).prop_map(|(device_id, id)| {
            RequestBody::RequestCertificate {
                device_id,
                identity: id.try_into().unwrap(),
            }
        }),
        Just(RequestBody::Ping),
        proptest::collection::vec(any::<u8>(), 0..=confide_relay::consts::MAX_PUSH_URL_LEN)
            .prop_map(|url| RequestBody::RegisterPush { url }),
        (
            any::<[u8; 16]>(),
            any::<u64>(),
            1..=u64::MAX,
            bytes32(),
            proptest::collection::vec(any::<u8>(), 0..300)
        )
            .prop_map(|(id, offset, total_len, delete_token_hash, bytes)| {
                RequestBody::PutBlob {
                    blob_id: BlobId::from_bytes(id),
                    offset,
                    total_len,
                    delete_token_hash,
                    bytes,
                }
            }),
        any::<[u8; 16]>().prop_map(|id| RequestBody::BlobStatus {
            blob_id: BlobId::from_bytes(id)
        }),
        (any::<[u8; 16]>(), any::<u64>()).prop_map(|(id, offset)| RequestBody::GetBlob {
            blob_id: BlobId::from_bytes(id),
            offset
        }),
        (any::<[u8; 16]>(), bytes32()).prop_map(|(id, t)| RequestBody::DeleteBlob {
            blob_id: BlobId::from_bytes(id),
            delete_token: BlobDeleteToken::new(t)
        }),
    ]
}

fn server_message() -> impl Strategy<Value = ServerMessage> {
    prop_oneof![
        bytes32().prop_map(|challenge| ServerMessage::Hello { challenge }),
        any::<u32>().prop_map(|id| ServerMessage::Ok { id }),
        (any::<u32>(), 1u16..0x20).prop_map(|(id, c)| ServerMessage::Error {
            id,
            code: ErrorCode::from_wire(c)
        }),
        (any::<u32>(), any::<[u8; 16]>()).prop_map(|(id, f)| ServerMessage::Stored {
            id,
            frame_id: FrameId::from_bytes(f)
        }),
        (any::<u32>(), any::<bool>(), bundle()).prop_map(|(id, one, bundle)| {
            ServerMessage::Bundle {
                id,
                kind: if one {
                    BundleKind::OneTime
                } else {
                    BundleKind::LastResort
                },
                bundle,
            }
        }),
        (any::<u32>(), any::<u32>(), any::<bool>()).prop_map(|(id, one_time, last_resort)| {
            ServerMessage::BundleCount {
                id,
                one_time,
                last_resort,
            }
        }),
        (
            any::<u32>(),
            any::<u64>(),
            proptest::collection::vec(any::<u8>(), 0..400)
        )
            .prop_map(|(id, t, certificate)| ServerMessage::Certificate {
                id,
                expires_at: Timestamp::from_millis(t),
                certificate
            }),
        frame().prop_map(|frame| ServerMessage::Deliver { frame }),
        (any::<u32>(), any::<u64>())
            .prop_map(|(id, stored_len)| ServerMessage::BlobStored { id, stored_len }),
        (any::<u32>(), any::<u64>(), any::<u64>()).prop_map(|(id, stored_len, total_len)| {
            ServerMessage::BlobStatus {
                id,
                stored_len,
                total_len,
            }
        }),
        (
            any::<u32>(),
            any::<u64>(),
            any::<bool>(),
            proptest::collection::vec(any::<u8>(), 0..300)
        )
            .prop_map(|(id, offset, last, bytes)| ServerMessage::BlobData {
                id,
                offset,
                last,
                bytes
            }),
        (any::<u32>(), 1u16..0x20, any::<u64>()).prop_map(|(id, c, stored_len)| {
            ServerMessage::BlobRefused {
                id,
                code: ErrorCode::from_wire(c),
                stored_len,
            }
        }),
    ]
}

proptest! {
    #[test]
    fn requests_round_trip(id in any::<u32>(), body in body()) {
        let request = Request { id, body };
        let bytes = request.to_bytes().unwrap();
        prop_assert_eq!(Request::from_bytes(&bytes).unwrap(), request);
    }

    #[test]
    fn relay_messages_round_trip(msg in server_message()) {
        let bytes = msg.to_bytes().unwrap();
        prop_assert_eq!(ServerMessage::from_bytes(&bytes).unwrap(), msg);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_decode_canonically(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(r) = Request::from_bytes(&bytes) {
            prop_assert_eq!(r.to_bytes().unwrap(), bytes.clone());
        }
        if let Ok(m) = ServerMessage::from_bytes(&bytes) {
            prop_assert_eq!(m.to_bytes().unwrap(), bytes.clone());
        }
        let _ = frame_id_of(&bytes);
        if let Some(prefix) = bytes.get(..4) {
            let _ = check_length(prefix.try_into().unwrap());
        }
    }

    #[test]
    fn mutated_requests_never_panic(id in any::<u32>(), body in body(), at in any::<usize>(), to in any::<u8>()) {
        let mut bytes = Request { id, body }.to_bytes().unwrap();
        let i = at % bytes.len();
        bytes[i] = to;
        if let Ok(r) = Request::from_bytes(&bytes) {
            prop_assert_eq!(r.to_bytes().unwrap(), bytes);
        }
    }
}

#[test]
fn a_request_starts_with_version_type_and_id() {
    let bytes = Request {
        id: 0x0102_0304,
        body: RequestBody::Ping,
    }
    .to_bytes()
    .unwrap();
    assert_eq!(bytes, [0x01, 0x0A, 0x01, 0x02, 0x03, 0x04]);
    let err = Request::from_bytes(&[0x01, 0x0A, 0, 0, 0, 5, 0]).unwrap_err();
    assert_eq!((err.id, err.code), (5, ErrorCode::Malformed));
    let err = Request::from_bytes(&[0x02, 0x0A, 0, 0, 0, 5]).unwrap_err();
    assert_eq!((err.id, err.code), (0, ErrorCode::UnsupportedVersion));
}

#[test]
fn register_push_is_type_0x0b_with_a_u16_length_and_at_most_512_bytes() {
    let bytes = Request {
        id: 7,
        body: RequestBody::RegisterPush {
            url: b"http://gw/a".to_vec(),
        },
    }
    .to_bytes()
    .unwrap();
    let mut expected = vec![0x01, 0x0B, 0, 0, 0, 7, 0x00, 0x0B];
    expected.extend_from_slice(b"http://gw/a");
    assert_eq!(bytes, expected);
    // Empty (removes the registration) is one encoding: a zero length.
    let empty = Request {
        id: 7,
        body: RequestBody::RegisterPush { url: Vec::new() },
    }
    .to_bytes()
    .unwrap();
    assert_eq!(empty, [0x01, 0x0B, 0, 0, 0, 7, 0, 0]);
    assert!(Request::from_bytes(&empty).is_ok());
    let max = confide_relay::consts::MAX_PUSH_URL_LEN;
    let mut long = vec![0x01, 0x0B, 0, 0, 0, 7];
    long.extend_from_slice(&u16::try_from(max + 1).unwrap().to_be_bytes());
    long.extend(std::iter::repeat_n(b'a', max + 1));
    let err = Request::from_bytes(&long).unwrap_err();
    assert_eq!((err.id, err.code), (7, ErrorCode::Malformed));
    // A length longer than the bytes that follow, and trailing bytes, are refused.
    let err = Request::from_bytes(&[0x01, 0x0B, 0, 0, 0, 7, 0, 2, b'a']).unwrap_err();
    assert_eq!(err.code, ErrorCode::Malformed);
    let err = Request::from_bytes(&[0x01, 0x0B, 0, 0, 0, 7, 0, 0, 0]).unwrap_err();
    assert_eq!(err.code, ErrorCode::Malformed);
    assert_eq!(ErrorCode::from_wire(0x0013), ErrorCode::InvalidPushUrl);
    assert_eq!(ErrorCode::PushUnavailable.to_wire(), 0x0014);
    let shown = format!(
        "{:?}",
        Request {
            id: 7,
            body: RequestBody::RegisterPush {
                url: b"http://secret/".to_vec()
            }
        }
    );
    assert_eq!(shown, "Request { id: 7, kind: RegisterPush, .. }");
}

#[test]
fn the_relay_reads_only_a_frame_header() {
    let f = Frame::Data {
        id: FrameId::from_bytes([7; 16]),
        payload: vec![1, 2, 3],
    }
    .to_bytes()
    .unwrap();
    assert_eq!(frame_id_of(&f), Some(FrameId::from_bytes([7; 16])));
    assert_eq!(frame_id_of(&f[..f.len() - 1]), None, "length must match");
    assert_eq!(check_length([0, 0, 0, 0]), None);
    assert_eq!(check_length([0, 0x10, 0, 0]), Some(1 << 20));
    assert_eq!(check_length([0, 0x10, 0, 1]), None);
}

#[test]
fn blob_messages_have_the_documented_layout_and_limits() {
    // `docs/relay.md` §4.3: GetBlob with id 9 of blob 0x0e.. from offset 65,536.
    let get = Request {
        id: 9,
        body: RequestBody::GetBlob {
            blob_id: BlobId::from_bytes([0x0e; 16]),
            offset: 65_536,
        },
    };
    let mut expected = vec![0x01, 0x0e, 0, 0, 0, 9];
    expected.extend_from_slice(&[0x0e; 16]);
    expected.extend_from_slice(&[0, 0, 0, 0, 0, 1, 0, 0]);
    assert_eq!(get.to_bytes().unwrap(), expected);

    // PutBlob: id, offset, total_len, hash, u32 length; at most MAX_BLOB_PUT_LEN bytes and a
    // total length of at least 1.
    let put = |bytes: Vec<u8>, total_len: u64| Request {
        id: 1,
        body: RequestBody::PutBlob {
            blob_id: BlobId::from_bytes([1; 16]),
            offset: 0,
            total_len,
            delete_token_hash: [2; 32],
            bytes,
        },
    };
    let max = confide_relay::consts::MAX_BLOB_PUT_LEN;
    let full = put(vec![3; max], 1 << 20).to_bytes().unwrap();
    assert_eq!(full.len(), 6 + 16 + 8 + 8 + 32 + 4 + max);
    assert!(full.len() <= confide_relay::consts::MAX_MESSAGE_LEN);
    assert_eq!(
        Request::from_bytes(&full).unwrap(),
        put(vec![3; max], 1 << 20)
    );
    assert!(put(vec![3; max + 1], 1 << 20).to_bytes().is_err());
    let mut over = full.clone();
    over[70..74].copy_from_slice(&u32::try_from(max + 1).unwrap().to_be_bytes());
    over.push(3);
    assert_eq!(
        Request::from_bytes(&over).unwrap_err().code,
        ErrorCode::Malformed
    );
    assert!(put(vec![], 0).to_bytes().is_err());
    let mut zero_total = put(vec![], 1).to_bytes().unwrap();
    zero_total[37] = 0;
    assert_eq!(
        Request::from_bytes(&zero_total).unwrap_err(),
        confide_relay::protocol::RequestDecodeError {
            id: 1,
            code: ErrorCode::Malformed
        }
    );

    // BlobRefused: type 0x8b, id, code 0x0017, stored length.
    let refused = ServerMessage::BlobRefused {
        id: 4,
        code: ErrorCode::BlobOffsetMismatch,
        stored_len: 40_000,
    };
    assert_eq!(
        refused.to_bytes().unwrap(),
        [
            0x01, 0x8b, 0, 0, 0, 4, 0x00, 0x17, 0, 0, 0, 0, 0, 0, 0x9c, 0x40
        ]
    );
    // BlobData carries at most BLOB_DATA_LEN bytes.
    let data = |n: usize| ServerMessage::BlobData {
        id: 1,
        offset: 0,
        last: true,
        bytes: vec![0; n],
    };
    let len = confide_relay::consts::BLOB_DATA_LEN;
    assert!(data(len).to_bytes().is_ok());
    assert!(data(len + 1).to_bytes().is_err());

    // The delete token never shows.
    let delete = Request {
        id: 2,
        body: RequestBody::DeleteBlob {
            blob_id: BlobId::from_bytes([1; 16]),
            delete_token: BlobDeleteToken::new([0xAB; 32]),
        },
    };
    assert_eq!(
        format!("{delete:?}"),
        "Request { id: 2, kind: DeleteBlob, .. }"
    );
    for code in 0x0016..=0x001C {
        assert_eq!(ErrorCode::from_wire(code).to_wire(), code);
        assert!(!matches!(ErrorCode::from_wire(code), ErrorCode::Other(_)));
    }
}

#[test]
fn debug_shows_no_content() {
    let r = Request {
        id: 3,
        body: RequestBody::Send {
            to: Address::new(b"secret mailbox").unwrap(),
            token: Some(RelayToken::new([9; 16])),
            frame: vec![1; 30],
        },
    };
    let shown = format!("{r:?}");
    assert_eq!(shown, "Request { id: 3, kind: Send, .. }");
    let m = ServerMessage::Deliver { frame: vec![1; 30] };
    assert_eq!(format!("{m:?}"), "Deliver { len: 30 }");
}
