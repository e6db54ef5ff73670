//! The relay protocol's messages and their strict codec (sans-IO: no sockets here).
//!
//! A TCP stream carries messages back to back, each a 4-byte big-endian length `L`
//! (1..=[`MAX_MESSAGE_LEN`]) then `L` bytes of body. A body starts with the version byte
//! [`PROTOCOL_VERSION`] and a type byte. Requests (client to relay, types `0x01..=0x0F`)
//! carry a `u32` request id chosen by the client, which the relay echoes in its response.
//! Relay messages (types `0x80..=0x8B`) are responses (carrying the request id) and two
//! pushes: `Hello` (first message of every connection, carrying the challenge) and
//! `Deliver` (a stored frame for the authenticated owner). Every request has one response,
//! except `GetBlob`, answered by a stream of `BlobData` messages that ends with the one
//! flagged last (or with a refusal). The byte layouts are in
//! `docs/relay.md`; every decoder refuses unknown versions and types, out-of-range lengths and
//! flags, and trailing bytes, so each value has exactly one encoding.

use core::fmt;

use confide_attachment::{BlobDeleteToken, BlobId};
use confide_transport::{Address, FrameId, RelayToken};
use confide_wire::Timestamp;
use confide_wire::codec::{DecodeError, EncodeError, Reader, Writer};

use crate::consts::{
    BLOB_DATA_LEN, CHALLENGE_LEN, DELETE_TOKEN_LEN, MAX_ADDRESS, MAX_BLOB_PUT_LEN, MAX_BUNDLE_LEN,
    MAX_BUNDLES_PER_UPLOAD, MAX_CONFIRM_IDS, MAX_MESSAGE_LEN, MAX_PUSH_URL_LEN, MAX_SEND_FRAME_LEN,
    PROTOCOL_VERSION,
};

/// Length of an Ed25519 public key (a mailbox owner's key).
pub const OWNER_KEY_LEN: usize = 32;
/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// Length of a token verifier (`SHA-256("Confide_v1_MailboxVerifier" || token)`).
pub const VERIFIER_LEN: usize = 32;
/// Length of an encoded identity public key (`confide_crypto::identity`).
pub const IDENTITY_LEN: usize = confide_crypto::identity::IDENTITY_PUBLIC_KEY_LEN;
/// Largest sender certificate the relay returns.
pub const MAX_CERTIFICATE_LEN: usize = confide_sealed::MAX_SENDER_CERTIFICATE_LEN;

/// Domain-separation label of the signature that authenticates a connection as a mailbox's
/// owner (see [`authenticate_message`]).
pub const AUTHENTICATE_LABEL: &[u8] = b"Confide_v1_RelayAuthenticate";
/// Domain-separation label of the signature that creates a mailbox (see [`create_message`]).
pub const CREATE_LABEL: &[u8] = b"Confide_v1_RelayCreateMailbox";

const T_CREATE: u8 = 0x01;
const T_AUTHENTICATE: u8 = 0x02;
const T_SEND: u8 = 0x03;
const T_CONFIRM: u8 = 0x04;
const T_SET_VERIFIER: u8 = 0x05;
const T_UPLOAD: u8 = 0x06;
const T_FETCH_BUNDLE: u8 = 0x07;
const T_BUNDLE_COUNT: u8 = 0x08;
const T_CERTIFICATE: u8 = 0x09;
const T_PING: u8 = 0x0A;
const T_REGISTER_PUSH: u8 = 0x0B;
const T_PUT_BLOB: u8 = 0x0C;
const T_BLOB_STATUS: u8 = 0x0D;
const T_GET_BLOB: u8 = 0x0E;
const T_DELETE_BLOB: u8 = 0x0F;

const T_HELLO: u8 = 0x80;
const T_OK: u8 = 0x81;
const T_ERROR: u8 = 0x82;
const T_STORED: u8 = 0x83;
const T_BUNDLE: u8 = 0x84;
const T_BUNDLE_COUNT_REPLY: u8 = 0x85;
const T_CERTIFICATE_REPLY: u8 = 0x86;
const T_DELIVER: u8 = 0x87;
const T_BLOB_STORED: u8 = 0x88;
const T_BLOB_STATUS_REPLY: u8 = 0x89;
const T_BLOB_DATA: u8 = 0x8A;
const T_BLOB_REFUSED: u8 = 0x8B;

/// A request from a client, with the id the relay echoes in its response.
#[derive(Clone, PartialEq, Eq)]
pub struct Request {
    /// Chosen by the client; echoed in the response.
    pub id: u32,
    /// What is asked.
    pub body: RequestBody,
}

/// What a client asks the relay.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestBody {
    /// Create a mailbox owned by `owner_key` and authenticate this connection as its owner.
    /// `signature` is the owner key's signature over [`create_message`]. Creating a mailbox
    /// that exists with the same owner key only authenticates.
    CreateMailbox {
        /// The mailbox address.
        address: Address,
        /// The owner's Ed25519 public key.
        owner_key: [u8; OWNER_KEY_LEN],
        /// The token verifier; `None`: anyone may send to the mailbox.
        verifier: Option<[u8; VERIFIER_LEN]>,
        /// Signature over [`create_message`].
        signature: [u8; SIGNATURE_LEN],
    },
    /// Authenticate this connection as the owner of `address`: `signature` is the owner
    /// key's signature over [`authenticate_message`]. The relay then delivers stored frames.
    Authenticate {
        /// The mailbox address.
        address: Address,
        /// Signature over [`authenticate_message`].
        signature: [u8; SIGNATURE_LEN],
    },
    /// Store `frame` (an encoded transport frame) for the mailbox `to`. Needs no
    /// authentication.
    Send {
        /// The destination mailbox.
        to: Address,
        /// The destination's delivery token, if the sender has one.
        token: Option<RelayToken>,
        /// The encoded transport frame, at most `MAX_FRAME_LEN` bytes.
        frame: Vec<u8>,
    },
    /// The owner received these frames: delete them.
    Confirm {
        /// Frame ids, 1..=[`MAX_CONFIRM_IDS`].
        ids: Vec<FrameId>,
    },
    /// The owner replaces its mailbox's token verifier (rotating its delivery token).
    SetVerifier {
        /// The new verifier; `None`: anyone may send.
        verifier: Option<[u8; VERIFIER_LEN]>,
    },
    /// The owner adds one-time bundles and, optionally, replaces its last-resort bundle.
    UploadBundles {
        /// One-time bundles (0..=[`MAX_BUNDLES_PER_UPLOAD`], each 1..=[`MAX_BUNDLE_LEN`]
        /// bytes).
        one_time: Vec<Vec<u8>>,
        /// A new last-resort bundle, if any.
        last_resort: Option<Vec<u8>>,
    },
    /// Anyone: take a bundle of `address` (a one-time bundle, each handed out once, then the
    /// last-resort bundle).
    FetchBundle {
        /// Whose bundle.
        address: Address,
    },
    /// The owner asks how many one-time bundles are left.
    BundleCount,
    /// The owner asks for a client sender certificate for its mailbox address.
    RequestCertificate {
        /// The device id to certify.
        device_id: u32,
        /// The encoded identity public key to certify.
        identity: [u8; IDENTITY_LEN],
    },
    /// Keeps the connection alive; answered with `Ok`.
    Ping,
    /// The owner registers where the relay's push hook wakes it when mail arrives while it
    /// has no connection (an `http://` URL of a push gateway the operator allows), or removes
    /// the registration (an empty `url`).
    RegisterPush {
        /// The URL's bytes, 0..=[`MAX_PUSH_URL_LEN`]; empty: remove the registration.
        url: Vec<u8>,
    },
    /// The owner appends `bytes` to the blob `blob_id` at `offset`, which must be the blob's
    /// stored length (0 creates the blob). Answered with a receipt, `BlobStored`, once the
    /// bytes are durably committed.
    PutBlob {
        /// The blob's id (drawn at random by the uploader).
        blob_id: BlobId,
        /// Where `bytes` go: the stored length.
        offset: u64,
        /// The blob's whole length, 1..=[`MAX_BLOB_LEN`](crate::consts::MAX_BLOB_LEN); fixed
        /// when the blob is created, repeated in every put.
        total_len: u64,
        /// `SHA-256` of the blob's delete token; fixed when the blob is created, repeated in
        /// every put.
        delete_token_hash: [u8; DELETE_TOKEN_LEN],
        /// The bytes, 0..=[`MAX_BLOB_PUT_LEN`].
        bytes: Vec<u8>,
    },
    /// Anyone: how much of the blob is stored, and its whole length (to resume an upload).
    BlobStatus {
        /// The blob's id.
        blob_id: BlobId,
    },
    /// Anyone: the bytes of a complete blob from `offset` on, streamed as `BlobData`
    /// messages of at most [`BLOB_DATA_LEN`] bytes, the last one flagged.
    GetBlob {
        /// The blob's id.
        blob_id: BlobId,
        /// The first byte wanted (0..=the blob's length).
        offset: u64,
    },
    /// Anyone holding the delete token: delete the blob.
    DeleteBlob {
        /// The blob's id.
        blob_id: BlobId,
        /// The token whose SHA-256 the uploader gave when it created the blob.
        delete_token: BlobDeleteToken,
    },
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self { id, body } = self;
        f.debug_struct("Request")
            .field("id", id)
            .field("kind", &body.kind())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Addresses, keys, tokens, bundles and frames are never printed: only the kind.
        f.debug_struct("RequestBody")
            .field("kind", &self.kind())
            .finish_non_exhaustive()
    }
}

impl RequestBody {
    /// The request's kind, for counters and logs (carries nothing identifying).
    #[must_use]
    pub const fn kind(&self) -> RequestKind {
        match self {
            Self::CreateMailbox { .. } => RequestKind::CreateMailbox,
            Self::Authenticate { .. } => RequestKind::Authenticate,
            Self::Send { .. } => RequestKind::Send,
            Self::Confirm { .. } => RequestKind::Confirm,
            Self::SetVerifier { .. } => RequestKind::SetVerifier,
            Self::UploadBundles { .. } => RequestKind::UploadBundles,
            Self::FetchBundle { .. } => RequestKind::FetchBundle,
            Self::BundleCount => RequestKind::BundleCount,
            Self::RequestCertificate { .. } => RequestKind::RequestCertificate,
            Self::Ping => RequestKind::Ping,
            Self::RegisterPush { .. } => RequestKind::RegisterPush,
            Self::PutBlob { .. } => RequestKind::PutBlob,
            Self::BlobStatus { .. } => RequestKind::BlobStatus,
            Self::GetBlob { .. } => RequestKind::GetBlob,
            Self::DeleteBlob { .. } => RequestKind::DeleteBlob,
        }
    }
}

/// The kind of a request, without its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RequestKind {
    /// [`RequestBody::CreateMailbox`].
    CreateMailbox,
    /// [`RequestBody::Authenticate`].
    Authenticate,
    /// [`RequestBody::Send`].
    Send,
    /// [`RequestBody::Confirm`].
    Confirm,
    /// [`RequestBody::SetVerifier`].
    SetVerifier,
    /// [`RequestBody::UploadBundles`].
    UploadBundles,
    /// [`RequestBody::FetchBundle`].
    FetchBundle,
    /// [`RequestBody::BundleCount`].
    BundleCount,
    /// [`RequestBody::RequestCertificate`].
    RequestCertificate,
    /// [`RequestBody::Ping`].
    Ping,
    /// [`RequestBody::RegisterPush`].
    RegisterPush,
    /// [`RequestBody::PutBlob`].
    PutBlob,
    /// [`RequestBody::BlobStatus`].
    BlobStatus,
    /// [`RequestBody::GetBlob`].
    GetBlob,
    /// [`RequestBody::DeleteBlob`].
    DeleteBlob,
}

/// Whether a bundle handed out is a one-time or the last-resort bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BundleKind {
    /// A one-time bundle: this requester is the only one to get it.
    OneTime,
    /// The last-resort bundle (no one-time bundle was left).
    LastResort,
}

impl BundleKind {
    const fn to_wire(self) -> u8 {
        match self {
            Self::OneTime => 1,
            Self::LastResort => 2,
        }
    }

    fn from_wire(b: u8) -> Result<Self, DecodeError> {
        match b {
            1 => Ok(Self::OneTime),
            2 => Ok(Self::LastResort),
            _ => Err(DecodeError::InvalidValue {
                field: "bundle kind",
            }),
        }
    }
}

/// Why the relay refused a request: the code in an `Error` response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// `0x0001`: the request body does not decode (unknown type, bad length or flag,
    /// trailing bytes).
    Malformed,
    /// `0x0002`: the request's version byte is not [`PROTOCOL_VERSION`].
    UnsupportedVersion,
    /// `0x0003`: the request needs an authenticated owner and this connection is not one.
    NotAuthenticated,
    /// `0x0004`: no such mailbox, or the signature does not verify (deliberately one code).
    AuthenticationFailed,
    /// `0x0005`: this connection is already authenticated (one mailbox per connection).
    AlreadyAuthenticated,
    /// `0x0006`: the mailbox exists with another owner key.
    MailboxTaken,
    /// `0x0007`: no mailbox at the destination address.
    NoSuchMailbox,
    /// `0x0008`: the mailbox requires a delivery token and the one presented (or its absence)
    /// does not match.
    TokenRefused,
    /// `0x0009`: the bytes sent are not a transport frame (version, kind, length).
    InvalidFrame,
    /// `0x000A`: the mailbox holds [`MAX_FRAMES_PER_MAILBOX`](crate::consts::MAX_FRAMES_PER_MAILBOX)
    /// undelivered frames.
    MailboxFull,
    /// `0x000B`: the mailbox holds
    /// [`MAX_BYTES_PER_MAILBOX`](crate::consts::MAX_BYTES_PER_MAILBOX) undelivered bytes.
    MailboxBytesFull,
    /// `0x000C`: too many requests on this connection, or sends to this mailbox.
    RateLimited,
    /// `0x000D`: the upload would exceed
    /// [`MAX_ONE_TIME_BUNDLES`](crate::consts::MAX_ONE_TIME_BUNDLES).
    TooManyBundles,
    /// `0x000E`: the address has no bundle at all.
    NoBundle,
    /// `0x000F`: the identity key in a certificate request does not decode.
    InvalidIdentity,
    /// `0x0010`: this relay has no server key (or its server certificate expired), so it
    /// issues no certificates.
    IssuerUnavailable,
    /// `0x0011`: the length prefix was 0 or over [`MAX_MESSAGE_LEN`], or a body did not arrive
    /// in time: the relay closes the connection after this error (request id 0).
    FramingViolation,
    /// `0x0012`: the relay's storage failed; nothing was stored. Try again later.
    Internal,
    /// `0x0013`: the push URL is not `http://host[:port][/path]` of printable ASCII, or not
    /// to a push gateway this relay allows; nothing was stored.
    InvalidPushUrl,
    /// `0x0014`: this relay runs without a push hook, so it stores no push registration.
    PushUnavailable,
    /// `0x0015`: the connection was refused on accept: the relay serves
    /// [`MAX_CONNECTIONS`](crate::consts::MAX_CONNECTIONS) already, or the source address has
    /// [`MAX_CONNECTIONS_PER_IP`](crate::consts::MAX_CONNECTIONS_PER_IP) open or opened more
    /// than
    /// [`NEW_CONNECTIONS_PER_IP_PER_MINUTE`](crate::consts::NEW_CONNECTIONS_PER_IP_PER_MINUTE)
    /// in the last minute.
    /// Sent with request id 0 instead of `Hello`; the relay then closes the connection.
    TooManyConnections,
    /// `0x0016`: no such blob: never created, deleted, or past its retention.
    NoSuchBlob,
    /// `0x0017`: a `PutBlob` offset that is not the blob's stored length, or a `GetBlob`
    /// offset past its end. Sent as [`ServerMessage::BlobRefused`], which carries the stored
    /// length to resume at.
    BlobOffsetMismatch,
    /// `0x0018`: a blob longer than [`MAX_BLOB_LEN`](crate::consts::MAX_BLOB_LEN), or a put
    /// that would go past the blob's `total_len`.
    BlobTooLarge,
    /// `0x0019`: the blob id exists with another `total_len`, another delete-token hash, or
    /// another owner.
    BlobExists,
    /// `0x001A`: `GetBlob` of a blob whose upload has not completed.
    BlobIncomplete,
    /// `0x001B`: creating the blob would exceed one of the owner's blob quotas
    /// ([`MAX_BLOB_BYTES_PER_OWNER`](crate::consts::MAX_BLOB_BYTES_PER_OWNER),
    /// [`MAX_BLOB_BYTES_IN_FLIGHT_PER_OWNER`](crate::consts::MAX_BLOB_BYTES_IN_FLIGHT_PER_OWNER),
    /// [`MAX_BLOBS_PER_OWNER`](crate::consts::MAX_BLOBS_PER_OWNER)).
    BlobQuotaExceeded,
    /// `0x001C`: `DeleteBlob` with a token whose SHA-256 is not the blob's delete-token hash.
    DeleteTokenRefused,
    /// A code this build does not know (from a newer relay).
    Other(u16),
}

impl ErrorCode {
    /// The code on the wire.
    #[must_use]
    pub const fn to_wire(self) -> u16 {
        match self {
            Self::Malformed => 0x0001,
            Self::UnsupportedVersion => 0x0002,
            Self::NotAuthenticated => 0x0003,
            Self::AuthenticationFailed => 0x0004,
            Self::AlreadyAuthenticated => 0x0005,
            Self::MailboxTaken => 0x0006,
            Self::NoSuchMailbox => 0x0007,
            Self::TokenRefused => 0x0008,
            Self::InvalidFrame => 0x0009,
            Self::MailboxFull => 0x000A,
            Self::MailboxBytesFull => 0x000B,
            Self::RateLimited => 0x000C,
            Self::TooManyBundles => 0x000D,
            Self::NoBundle => 0x000E,
            Self::InvalidIdentity => 0x000F,
            Self::IssuerUnavailable => 0x0010,
            Self::FramingViolation => 0x0011,
            Self::Internal => 0x0012,
            Self::InvalidPushUrl => 0x0013,
            Self::PushUnavailable => 0x0014,
            Self::TooManyConnections => 0x0015,
            Self::NoSuchBlob => 0x0016,
            Self::BlobOffsetMismatch => 0x0017,
            Self::BlobTooLarge => 0x0018,
            Self::BlobExists => 0x0019,
            Self::BlobIncomplete => 0x001A,
            Self::BlobQuotaExceeded => 0x001B,
            Self::DeleteTokenRefused => 0x001C,
            Self::Other(code) => code,
        }
    }

    /// The code for a wire value (unknown values become [`ErrorCode::Other`]).
    #[must_use]
    pub const fn from_wire(code: u16) -> Self {
        match code {
            0x0001 => Self::Malformed,
            0x0002 => Self::UnsupportedVersion,
            0x0003 => Self::NotAuthenticated,
            0x0004 => Self::AuthenticationFailed,
            0x0005 => Self::AlreadyAuthenticated,
            0x0006 => Self::MailboxTaken,
            0x0007 => Self::NoSuchMailbox,
            0x0008 => Self::TokenRefused,
            0x0009 => Self::InvalidFrame,
            0x000A => Self::MailboxFull,
            0x000B => Self::MailboxBytesFull,
            0x000C => Self::RateLimited,
            0x000D => Self::TooManyBundles,
            0x000E => Self::NoBundle,
            0x000F => Self::InvalidIdentity,
            0x0010 => Self::IssuerUnavailable,
            0x0011 => Self::FramingViolation,
            0x0012 => Self::Internal,
            0x0013 => Self::InvalidPushUrl,
            0x0014 => Self::PushUnavailable,
            0x0015 => Self::TooManyConnections,
            0x0016 => Self::NoSuchBlob,
            0x0017 => Self::BlobOffsetMismatch,
            0x0018 => Self::BlobTooLarge,
            0x0019 => Self::BlobExists,
            0x001A => Self::BlobIncomplete,
            0x001B => Self::BlobQuotaExceeded,
            0x001C => Self::DeleteTokenRefused,
            other => Self::Other(other),
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?} (0x{:04x})", self.to_wire())
    }
}

/// A message from the relay.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerMessage {
    /// First message of every connection: the challenge owners sign.
    Hello {
        /// Random, fresh per connection.
        challenge: [u8; CHALLENGE_LEN],
    },
    /// The request succeeded (requests with no other answer).
    Ok {
        /// The request's id.
        id: u32,
    },
    /// The request was refused; nothing changed.
    Error {
        /// The request's id (0 if the request was too short to carry one or had an unknown
        /// version, and for a framing violation).
        id: u32,
        /// Why.
        code: ErrorCode,
    },
    /// Relay receipt: the frame is committed to the relay's storage (or was already
    /// delivered to its owner).
    Stored {
        /// The Send's id.
        id: u32,
        /// The frame's id.
        frame_id: FrameId,
    },
    /// A bundle from the directory.
    Bundle {
        /// The request's id.
        id: u32,
        /// One-time or last-resort.
        kind: BundleKind,
        /// The opaque bundle.
        bundle: Vec<u8>,
    },
    /// How many bundles the owner has left.
    BundleCount {
        /// The request's id.
        id: u32,
        /// One-time bundles left.
        one_time: u32,
        /// Whether a last-resort bundle is stored.
        last_resort: bool,
    },
    /// A client certificate.
    Certificate {
        /// The request's id.
        id: u32,
        /// When it expires.
        expires_at: Timestamp,
        /// The encoded `SenderCertificate`.
        certificate: Vec<u8>,
    },
    /// Push: a stored frame for the authenticated owner (confirm it to have it deleted).
    Deliver {
        /// The encoded transport frame, as sent.
        frame: Vec<u8>,
    },
    /// Blob receipt: the put's bytes are durably committed; the blob's stored length now.
    BlobStored {
        /// The PutBlob's id.
        id: u32,
        /// Bytes of the blob stored.
        stored_len: u64,
    },
    /// How much of a blob is stored.
    BlobStatus {
        /// The request's id.
        id: u32,
        /// Bytes stored.
        stored_len: u64,
        /// The blob's whole length (complete when equal to `stored_len`).
        total_len: u64,
    },
    /// One piece of a `GetBlob` answer.
    BlobData {
        /// The GetBlob's id.
        id: u32,
        /// Where in the blob `bytes` start.
        offset: u64,
        /// Whether this is the answer's last piece (it ends at the blob's end).
        last: bool,
        /// 0..=[`BLOB_DATA_LEN`] bytes.
        bytes: Vec<u8>,
    },
    /// A blob request refused with a code that comes with the blob's stored length
    /// ([`ErrorCode::BlobOffsetMismatch`]): where a `PutBlob` must continue, or where a
    /// `GetBlob` past the end ends.
    BlobRefused {
        /// The request's id.
        id: u32,
        /// Why.
        code: ErrorCode,
        /// Bytes of the blob stored.
        stored_len: u64,
    },
}

impl fmt::Debug for ServerMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Hello { .. } => f.write_str("Hello"),
            Self::Ok { id } => f.debug_struct("Ok").field("id", id).finish(),
            Self::Error { id, code } => f
                .debug_struct("Error")
                .field("id", id)
                .field("code", code)
                .finish(),
            Self::Stored { id, frame_id } => f
                .debug_struct("Stored")
                .field("id", id)
                .field("frame_id", frame_id)
                .finish(),
            Self::Bundle { id, kind, bundle } => f
                .debug_struct("Bundle")
                .field("id", id)
                .field("kind", kind)
                .field("len", &bundle.len())
                .finish(),
            Self::BundleCount {
                id,
                one_time,
                last_resort,
            } => f
                .debug_struct("BundleCount")
                .field("id", id)
                .field("one_time", one_time)
                .field("last_resort", last_resort)
                .finish(),
            Self::Certificate { id, expires_at, .. } => f
                .debug_struct("Certificate")
                .field("id", id)
                .field("expires_at", expires_at)
                .finish_non_exhaustive(),
            Self::Deliver { frame } => f
                .debug_struct("Deliver")
                .field("len", &frame.len())
                .finish(),
            Self::BlobStored { id, stored_len } => f
                .debug_struct("BlobStored")
                .field("id", id)
                .field("stored_len", stored_len)
                .finish(),
            Self::BlobStatus {
                id,
                stored_len,
                total_len,
            } => f
                .debug_struct("BlobStatus")
                .field("id", id)
                .field("stored_len", stored_len)
                .field("total_len", total_len)
                .finish(),
            Self::BlobData {
                id,
                offset,
                last,
                bytes,
            } => f
                .debug_struct("BlobData")
                .field("id", id)
                .field("offset", offset)
                .field("last", last)
                .field("len", &bytes.len())
                .finish(),
            Self::BlobRefused {
                id,
                code,
                stored_len,
            } => f
                .debug_struct("BlobRefused")
                .field("id", id)
                .field("code", code)
                .field("stored_len", stored_len)
                .finish(),
        }
    }
}

/// Why a request could not be decoded, with what the relay answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestDecodeError {
    /// The request id to echo (0 when it could not be read).
    pub id: u32,
    /// [`ErrorCode::UnsupportedVersion`] or [`ErrorCode::Malformed`].
    pub code: ErrorCode,
}

/// The message a mailbox owner signs to authenticate a connection:
/// `"Confide_v1_RelayAuthenticate" || challenge (32) || address length (1) || address`.
#[must_use]
pub fn authenticate_message(challenge: &[u8; CHALLENGE_LEN], address: &Address) -> Vec<u8> {
    let mut w = Writer::with_capacity(AUTHENTICATE_LABEL.len() + CHALLENGE_LEN + 1 + MAX_ADDRESS);
    w.bytes(AUTHENTICATE_LABEL).bytes(challenge);
    write_address(&mut w, address);
    w.into_vec()
}

/// The message a mailbox owner signs to create its mailbox:
/// `"Confide_v1_RelayCreateMailbox" || challenge (32) || address length (1) || address ||
/// owner key (32) || verifier flag (1) || verifier (0 or 32)`.
#[must_use]
pub fn create_message(
    challenge: &[u8; CHALLENGE_LEN],
    address: &Address,
    owner_key: &[u8; OWNER_KEY_LEN],
    verifier: Option<&[u8; VERIFIER_LEN]>,
) -> Vec<u8> {
    let mut w = Writer::with_capacity(CREATE_LABEL.len() + CHALLENGE_LEN + 2 + MAX_ADDRESS + 64);
    w.bytes(CREATE_LABEL).bytes(challenge);
    write_address(&mut w, address);
    w.bytes(owner_key);
    write_option(&mut w, verifier.map(<[u8; VERIFIER_LEN]>::as_slice));
    w.into_vec()
}

fn write_address(w: &mut Writer, address: &Address) {
    // `Address` keeps its length within 1..=64, which fits a byte.
    w.u8(u8::try_from(address.len()).unwrap_or(u8::MAX));
    w.bytes(address.as_bytes());
}

fn read_address(r: &mut Reader<'_>) -> Result<Address, DecodeError> {
    let len = usize::from(r.u8()?);
    if len > MAX_ADDRESS {
        return Err(DecodeError::TooLong {
            field: "address",
            len,
            max: MAX_ADDRESS,
        });
    }
    Address::new(r.bytes(len)?).map_err(|_| DecodeError::InvalidValue { field: "address" })
}

fn write_option(w: &mut Writer, value: Option<&[u8]>) {
    match value {
        None => {
            w.u8(0);
        }
        Some(v) => {
            w.u8(1).bytes(v);
        }
    }
}

fn read_option<const N: usize>(
    r: &mut Reader<'_>,
    field: &'static str,
) -> Result<Option<[u8; N]>, DecodeError> {
    if r.bool(field)? {
        Ok(Some(r.array()?))
    } else {
        Ok(None)
    }
}

fn malformed(id: u32) -> RequestDecodeError {
    RequestDecodeError {
        id,
        code: ErrorCode::Malformed,
    }
}

impl Request {
    /// Encodes the body (without the stream's length prefix). Fails only if a field exceeds
    /// its limit.
    pub fn to_bytes(&self) -> Result<Vec<u8>, EncodeError> {
        let Self { id, body } = self;
        let mut w = Writer::new();
        w.u8(PROTOCOL_VERSION);
        let ty = match body {
            RequestBody::CreateMailbox { .. } => T_CREATE,
            RequestBody::Authenticate { .. } => T_AUTHENTICATE,
            RequestBody::Send { .. } => T_SEND,
            RequestBody::Confirm { .. } => T_CONFIRM,
            RequestBody::SetVerifier { .. } => T_SET_VERIFIER,
            RequestBody::UploadBundles { .. } => T_UPLOAD,
            RequestBody::FetchBundle { .. } => T_FETCH_BUNDLE,
            RequestBody::BundleCount => T_BUNDLE_COUNT,
            RequestBody::RequestCertificate { .. } => T_CERTIFICATE,
            RequestBody::Ping => T_PING,
            RequestBody::RegisterPush { .. } => T_REGISTER_PUSH,
            RequestBody::PutBlob { .. } => T_PUT_BLOB,
            RequestBody::BlobStatus { .. } => T_BLOB_STATUS,
            RequestBody::GetBlob { .. } => T_GET_BLOB,
            RequestBody::DeleteBlob { .. } => T_DELETE_BLOB,
        };
        w.u8(ty).u32(*id);
        match body {
            RequestBody::CreateMailbox {
                address,
                owner_key,
                verifier,
                signature,
            } => {
                write_address(&mut w, address);
                w.bytes(owner_key);
                write_option(&mut w, verifier.as_ref().map(<[u8; 32]>::as_slice));
                w.bytes(signature);
            }
            RequestBody::Authenticate { address, signature } => {
                write_address(&mut w, address);
                w.bytes(signature);
            }
            RequestBody::Send { to, token, frame } => {
                write_address(&mut w, to);
                write_option(&mut w, token.as_ref().map(|t| t.expose().as_slice()));
                w.var32("frame", MAX_SEND_FRAME_LEN, frame)?;
            }
            RequestBody::Confirm { ids } => {
                if ids.is_empty() || ids.len() > MAX_CONFIRM_IDS {
                    return Err(EncodeError::TooLong {
                        field: "frame ids",
                        len: ids.len(),
                        max: MAX_CONFIRM_IDS,
                    });
                }
                w.u16(u16::try_from(ids.len()).unwrap_or(u16::MAX));
                for id in ids {
                    w.bytes(id.as_bytes());
                }
            }
            RequestBody::SetVerifier { verifier } => {
                write_option(&mut w, verifier.as_ref().map(<[u8; 32]>::as_slice));
            }
            RequestBody::UploadBundles {
                one_time,
                last_resort,
            } => {
                if one_time.len() > MAX_BUNDLES_PER_UPLOAD {
                    return Err(EncodeError::TooLong {
                        field: "one-time bundles",
                        len: one_time.len(),
                        max: MAX_BUNDLES_PER_UPLOAD,
                    });
                }
                w.u16(u16::try_from(one_time.len()).unwrap_or(u16::MAX));
                for b in one_time {
                    write_bundle(&mut w, b)?;
                }
                match last_resort {
                    None => {
                        w.u8(0);
                    }
                    Some(b) => {
                        w.u8(1);
                        write_bundle(&mut w, b)?;
                    }
                }
            }
            RequestBody::FetchBundle { address } => write_address(&mut w, address),
            RequestBody::BundleCount | RequestBody::Ping => {}
            RequestBody::RequestCertificate {
                device_id,
                identity,
            } => {
                w.u32(*device_id).bytes(identity);
            }
            RequestBody::RegisterPush { url } => {
                w.var16("push url", MAX_PUSH_URL_LEN, url)?;
            }
            RequestBody::PutBlob {
                blob_id,
                offset,
                total_len,
                delete_token_hash,
                bytes,
            } => {
                if *total_len == 0 {
                    return Err(EncodeError::TooLong {
                        field: "blob total length of 0",
                        len: 0,
                        max: 0,
                    });
                }
                w.bytes(blob_id.as_bytes())
                    .u64(*offset)
                    .u64(*total_len)
                    .bytes(delete_token_hash);
                w.var32("blob bytes", MAX_BLOB_PUT_LEN, bytes)?;
            }
            RequestBody::BlobStatus { blob_id } => {
                w.bytes(blob_id.as_bytes());
            }
            RequestBody::GetBlob { blob_id, offset } => {
                w.bytes(blob_id.as_bytes()).u64(*offset);
            }
            RequestBody::DeleteBlob {
                blob_id,
                delete_token,
            } => {
                w.bytes(blob_id.as_bytes()).bytes(delete_token.expose());
            }
        }
        Ok(w.into_vec())
    }

    /// Decodes a request body strictly. On failure, says which request id to echo and which
    /// code to answer.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, RequestDecodeError> {
        let mut r = Reader::new(bytes);
        let version = r.u8().map_err(|_| malformed(0))?;
        if version != PROTOCOL_VERSION {
            return Err(RequestDecodeError {
                id: 0,
                code: ErrorCode::UnsupportedVersion,
            });
        }
        let ty = r.u8().map_err(|_| malformed(0))?;
        let id = r.u32().map_err(|_| malformed(0))?;
        let body = decode_request_body(ty, &mut r).map_err(|_| malformed(id))?;
        r.finish().map_err(|_| malformed(id))?;
        Ok(Self { id, body })
    }
}

fn write_bundle(w: &mut Writer, bundle: &[u8]) -> Result<(), EncodeError> {
    if bundle.is_empty() {
        return Err(EncodeError::TooLong {
            field: "empty bundle",
            len: 0,
            max: MAX_BUNDLE_LEN,
        });
    }
    w.var16("bundle", MAX_BUNDLE_LEN, bundle)?;
    Ok(())
}

fn read_bundle(r: &mut Reader<'_>) -> Result<Vec<u8>, DecodeError> {
    let b = r.var16("bundle", MAX_BUNDLE_LEN)?;
    if b.is_empty() {
        return Err(DecodeError::InvalidValue { field: "bundle" });
    }
    Ok(b.to_vec())
}

fn decode_request_body(ty: u8, r: &mut Reader<'_>) -> Result<RequestBody, DecodeError> {
    Ok(match ty {
        T_CREATE => RequestBody::CreateMailbox {
            address: read_address(r)?,
            owner_key: r.array()?,
            verifier: read_option(r, "verifier flag")?,
            signature: r.array()?,
        },
        T_AUTHENTICATE => RequestBody::Authenticate {
            address: read_address(r)?,
            signature: r.array()?,
        },
        T_SEND => RequestBody::Send {
            to: read_address(r)?,
            token: read_option::<{ crate::consts::TOKEN_LEN }>(r, "token flag")?
                .map(RelayToken::new),
            frame: r.var32("frame", MAX_SEND_FRAME_LEN)?.to_vec(),
        },
        T_CONFIRM => {
            let n = r.count16("frame ids", MAX_CONFIRM_IDS)?;
            if n == 0 {
                return Err(DecodeError::InvalidValue { field: "frame ids" });
            }
            let mut ids = Vec::with_capacity(n);
            for _ in 0..n {
                ids.push(FrameId::from_bytes(r.array()?));
            }
            RequestBody::Confirm { ids }
        }
        T_SET_VERIFIER => RequestBody::SetVerifier {
            verifier: read_option(r, "verifier flag")?,
        },
        T_UPLOAD => {
            let n = r.count16("one-time bundles", MAX_BUNDLES_PER_UPLOAD)?;
            let mut one_time = Vec::with_capacity(n);
            for _ in 0..n {
                one_time.push(read_bundle(r)?);
            }
            let last_resort = if r.bool("last-resort flag")? {
                Some(read_bundle(r)?)
            } else {
                None
            };
            RequestBody::UploadBundles {
                one_time,
                last_resort,
            }
        }
        T_FETCH_BUNDLE => RequestBody::FetchBundle {
            address: read_address(r)?,
        },
        T_BUNDLE_COUNT => RequestBody::BundleCount,
        T_CERTIFICATE => RequestBody::RequestCertificate {
            device_id: r.u32()?,
            identity: r.array()?,
        },
        T_PING => RequestBody::Ping,
        T_REGISTER_PUSH => RequestBody::RegisterPush {
            url: r.var16("push url", MAX_PUSH_URL_LEN)?.to_vec(),
        },
        T_PUT_BLOB => {
            let blob_id = BlobId::from_bytes(r.array()?);
            let offset = r.u64()?;
            let total_len = r.u64()?;
            if total_len == 0 {
                return Err(DecodeError::InvalidValue {
                    field: "blob total length",
                });
            }
            RequestBody::PutBlob {
                blob_id,
                offset,
                total_len,
                delete_token_hash: r.array()?,
                bytes: r.var32("blob bytes", MAX_BLOB_PUT_LEN)?.to_vec(),
            }
        }
        T_BLOB_STATUS => RequestBody::BlobStatus {
            blob_id: BlobId::from_bytes(r.array()?),
        },
        T_GET_BLOB => RequestBody::GetBlob {
            blob_id: BlobId::from_bytes(r.array()?),
            offset: r.u64()?,
        },
        T_DELETE_BLOB => RequestBody::DeleteBlob {
            blob_id: BlobId::from_bytes(r.array()?),
            delete_token: BlobDeleteToken::from_slice(r.bytes(DELETE_TOKEN_LEN)?).ok_or(
                DecodeError::InvalidValue {
                    field: "delete token",
                },
            )?,
        },
        _ => {
            return Err(DecodeError::InvalidValue {
                field: "request type",
            });
        }
    })
}

impl ServerMessage {
    /// Encodes the body (without the stream's length prefix). Fails only if a field exceeds
    /// its limit.
    pub fn to_bytes(&self) -> Result<Vec<u8>, EncodeError> {
        let mut w = Writer::new();
        w.u8(PROTOCOL_VERSION);
        match self {
            Self::Hello { challenge } => {
                w.u8(T_HELLO).bytes(challenge);
            }
            Self::Ok { id } => {
                w.u8(T_OK).u32(*id);
            }
            Self::Error { id, code } => {
                w.u8(T_ERROR).u32(*id).u16(code.to_wire());
            }
            Self::Stored { id, frame_id } => {
                w.u8(T_STORED).u32(*id).bytes(frame_id.as_bytes());
            }
            Self::Bundle { id, kind, bundle } => {
                w.u8(T_BUNDLE).u32(*id).u8(kind.to_wire());
                write_bundle(&mut w, bundle)?;
            }
            Self::BundleCount {
                id,
                one_time,
                last_resort,
            } => {
                w.u8(T_BUNDLE_COUNT_REPLY)
                    .u32(*id)
                    .u32(*one_time)
                    .bool(*last_resort);
            }
            Self::Certificate {
                id,
                expires_at,
                certificate,
            } => {
                w.u8(T_CERTIFICATE_REPLY)
                    .u32(*id)
                    .u64(expires_at.as_millis());
                w.var16("certificate", MAX_CERTIFICATE_LEN, certificate)?;
            }
            Self::Deliver { frame } => {
                w.u8(T_DELIVER);
                w.var32("frame", MAX_SEND_FRAME_LEN, frame)?;
            }
            Self::BlobStored { id, stored_len } => {
                w.u8(T_BLOB_STORED).u32(*id).u64(*stored_len);
            }
            Self::BlobStatus {
                id,
                stored_len,
                total_len,
            } => {
                w.u8(T_BLOB_STATUS_REPLY)
                    .u32(*id)
                    .u64(*stored_len)
                    .u64(*total_len);
            }
            Self::BlobData {
                id,
                offset,
                last,
                bytes,
            } => {
                w.u8(T_BLOB_DATA).u32(*id).u64(*offset).bool(*last);
                w.var32("blob data", BLOB_DATA_LEN, bytes)?;
            }
            Self::BlobRefused {
                id,
                code,
                stored_len,
            } => {
                w.u8(T_BLOB_REFUSED)
                    .u32(*id)
                    .u16(code.to_wire())
                    .u64(*stored_len);
            }
        }
        Ok(w.into_vec())
    }

    /// Decodes a relay message strictly.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        if version != PROTOCOL_VERSION {
            return Err(DecodeError::UnknownVersion {
                what: "relay message",
                found: version,
            });
        }
        let msg = match r.u8()? {
            T_HELLO => Self::Hello {
                challenge: r.array()?,
            },
            T_OK => Self::Ok { id: r.u32()? },
            T_ERROR => Self::Error {
                id: r.u32()?,
                code: ErrorCode::from_wire(r.u16()?),
            },
            T_STORED => Self::Stored {
                id: r.u32()?,
                frame_id: FrameId::from_bytes(r.array()?),
            },
            T_BUNDLE => Self::Bundle {
                id: r.u32()?,
                kind: BundleKind::from_wire(r.u8()?)?,
                bundle: read_bundle(&mut r)?,
            },
            T_BUNDLE_COUNT_REPLY => Self::BundleCount {
                id: r.u32()?,
                one_time: r.u32()?,
                last_resort: r.bool("last-resort flag")?,
            },
            T_CERTIFICATE_REPLY => Self::Certificate {
                id: r.u32()?,
                expires_at: Timestamp::from_millis(r.u64()?),
                certificate: r.var16("certificate", MAX_CERTIFICATE_LEN)?.to_vec(),
            },
            T_DELIVER => Self::Deliver {
                frame: r.var32("frame", MAX_SEND_FRAME_LEN)?.to_vec(),
            },
            T_BLOB_STORED => Self::BlobStored {
                id: r.u32()?,
                stored_len: r.u64()?,
            },
            T_BLOB_STATUS_REPLY => Self::BlobStatus {
                id: r.u32()?,
                stored_len: r.u64()?,
                total_len: r.u64()?,
            },
            T_BLOB_DATA => Self::BlobData {
                id: r.u32()?,
                offset: r.u64()?,
                last: r.bool("last flag")?,
                bytes: r.var32("blob data", BLOB_DATA_LEN)?.to_vec(),
            },
            T_BLOB_REFUSED => Self::BlobRefused {
                id: r.u32()?,
                code: ErrorCode::from_wire(r.u16()?),
                stored_len: r.u64()?,
            },
            _ => {
                return Err(DecodeError::InvalidValue {
                    field: "relay message type",
                });
            }
        };
        r.finish()?;
        Ok(msg)
    }
}

/// Prefixes `body` with its 4-byte big-endian length (the stream framing).
#[must_use]
pub fn frame_message(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len().saturating_add(4));
    out.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Checks a stream length prefix: `Some(len)` if it is within 1..=[`MAX_MESSAGE_LEN`].
#[must_use]
pub fn check_length(prefix: [u8; 4]) -> Option<usize> {
    let len = usize::try_from(u32::from_be_bytes(prefix)).ok()?;
    (1..=MAX_MESSAGE_LEN).contains(&len).then_some(len)
}

/// The frame id of `frame` if it parses as a transport frame header: version `0x01`, kind
/// `0x01` (Data), payload length equal to the bytes that follow the 22-byte header and at most
/// `MAX_PAYLOAD_LEN`. The relay reads nothing else of a frame.
#[must_use]
pub fn frame_id_of(frame: &[u8]) -> Option<FrameId> {
    use confide_transport::consts::{FRAME_HEADER_LEN, FRAME_VERSION, MAX_PAYLOAD_LEN};
    let mut r = Reader::new(frame);
    if r.u8().ok()? != FRAME_VERSION || r.u8().ok()? != confide_transport::FRAME_KIND_DATA {
        return None;
    }
    let id = FrameId::from_bytes(r.array().ok()?);
    let len = usize::try_from(r.u32().ok()?).ok()?;
    (len <= MAX_PAYLOAD_LEN && frame.len().checked_sub(FRAME_HEADER_LEN)? == len).then_some(id)
}

/// The payload of a frame accepted by [`frame_id_of`] (empty if it is shorter than a header).
#[must_use]
pub fn frame_payload(frame: &[u8]) -> &[u8] {
    frame
        .get(confide_transport::consts::FRAME_HEADER_LEN..)
        .unwrap_or_default()
}
