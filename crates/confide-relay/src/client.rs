//! A tokio client of the relay, over TCP or WebSocket ([`RelayAddress`]): one connection
//! ([`RelayConnection`]), and a link that keeps an
//! owner connection and a separate anonymous sending connection alive with reconnect and
//! backoff ([`RelayLink`]), whose events feed a sans-IO endpoint ([`RelayEvent::input`]).
//!
//! Sends go on a connection that never authenticates, so the relay cannot link a sealed
//! envelope to the mailbox (or the owner key) of its sender; only the IP address and timing
//! remain, which a client hides by sending through a proxy or Tor if it must.
//!
//! The run loop with a link (the contract of `confide_transport::driver`):
//!
//! 1. hand each `Output::Transmit` to [`RelayLink::send`];
//! 2. for each [`RelayEvent`] from [`RelayLink::next_event`], feed [`RelayEvent::input`] to
//!    the endpoint (if any) and drain its outputs;
//! 3. for [`RelayEvent::Frame`], once the endpoint's state that holds the frame is persisted,
//!    call [`RelayLink::confirm`] with [`RelayEvent::frame_id`] so the relay deletes it (an
//!    unconfirmed frame is delivered again after a reconnect; the endpoint drops duplicates).
//!
//! Attachments go through the relay's blob store, on connections of their own: an upload
//! ([`upload_blob`], or [`RelayConnection::put_blob`] on an owner connection) asks the relay
//! how much it holds ([`RelayConnection::blob_status`]) and continues from there after a
//! dropped connection; a download ([`download_blob`], or [`RelayConnection::get_blob`] on any
//! connection, authenticated or not) streams into the caller's sink and resumes at the
//! offset it reached. Both hold at most one piece of the blob in memory.

use core::fmt;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::str::FromStr;

use confide_attachment::{BlobDeleteToken, BlobId};
use confide_crypto::signing::SigningKey;
use confide_transport::driver::Input;
use confide_transport::{Address, FrameId, RelayToken};
use confide_wire::Timestamp;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeek, AsyncSeekExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::framing::{WebSocket, websocket_config};

use crate::consts::{CHALLENGE_LEN, DELETE_TOKEN_LEN, MAX_BLOB_PUT_LEN};
use crate::protocol::{
    BundleKind, ErrorCode, IDENTITY_LEN, Request, RequestBody, ServerMessage, authenticate_message,
    check_length, create_message, frame_id_of, frame_message,
};

/// How long a request may wait for its response.
///
/// Reason: the relay answers after one database transaction (milliseconds); ten seconds means
/// the connection is dead, so the link reconnects.
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How often an idle link pings the relay.
///
/// Reason: well within the relay's idle timeout (5 minutes), and detects a dead connection
/// within a minute.
pub const PING_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// The first reconnect wait.
///
/// Reason: a relay restart takes about this long; retrying sooner only adds load.
pub const INITIAL_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);

/// The longest reconnect wait (the wait doubles up to it, with up to 50 % random jitter).
///
/// Reason: bounds how late a client notices that the relay is back, while thousands of
/// clients reconnecting after an outage spread over half a minute.
pub const MAX_BACKOFF: std::time::Duration = std::time::Duration::from_secs(30);

/// Relay messages buffered between the reader task and the connection.
///
/// Reason: backpressure: a client that does not read slows the relay's deliveries to it.
pub const INCOMING_QUEUE: usize = 64;

/// Commands and events buffered between a [`RelayLink`] and its task.
///
/// Reason: bounds memory; a full queue makes `send` wait (backpressure to the app).
pub const LINK_QUEUE: usize = 256;

/// Why a client operation failed. Carries kinds and codes, never content.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The connection failed or closed.
    #[error("i/o: {0:?}")]
    Io(std::io::ErrorKind),
    /// The relay refused the request.
    #[error("refused by the relay: {0}")]
    Refused(ErrorCode),
    /// The relay refused a blob request with a code that comes with the blob's stored length
    /// (`BlobOffsetMismatch`: continue an upload there).
    #[error("refused by the relay: {code}; {stored_len} bytes stored")]
    RefusedAt {
        /// Why.
        code: ErrorCode,
        /// Bytes of the blob the relay holds.
        stored_len: u64,
    },
    /// The relay sent something that does not decode or does not answer the request.
    #[error("relay protocol violation")]
    Protocol,
    /// No response within [`REQUEST_TIMEOUT`].
    #[error("request timed out")]
    Timeout,
    /// A request could not be encoded (a field over its limit).
    #[error("request over a limit")]
    TooLarge,
    /// The link's task has stopped.
    #[error("link closed")]
    Closed,
}

impl From<std::io::Error> for ClientError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e.kind())
    }
}

impl From<WsError> for ClientError {
    fn from(e: WsError) -> Self {
        match e {
            WsError::Io(e) => Self::Io(e.kind()),
            WsError::ConnectionClosed | WsError::AlreadyClosed => Self::Closed,
            // The relay answers a connection over its limits with 429 instead of the upgrade.
            WsError::Http(response) if response.status().as_u16() == 429 => {
                Self::Refused(ErrorCode::TooManyConnections)
            }
            _ => Self::Protocol,
        }
    }
}

/// Where a relay listens: its TCP port (length-prefixed messages) or its WebSocket port (one
/// binary message per protocol message; plain `ws://`, so behind TLS only through a proxy
/// this client does not speak to).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RelayAddress {
    /// `IP:PORT`: the relay's `--listen`.
    Tcp(SocketAddr),
    /// `ws://IP:PORT/`: the relay's `--listen-ws`.
    WebSocket(SocketAddr),
}

impl From<SocketAddr> for RelayAddress {
    fn from(addr: SocketAddr) -> Self {
        Self::Tcp(addr)
    }
}

impl fmt::Display for RelayAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(a) => write!(f, "{a}"),
            Self::WebSocket(a) => write!(f, "ws://{a}/"),
        }
    }
}

/// Why a relay address did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("expected IP:PORT or ws://IP:PORT/")]
pub struct RelayAddressError;

impl FromStr for RelayAddress {
    type Err = RelayAddressError;

    /// `IP:PORT` (TCP) or `ws://IP:PORT` with an optional trailing `/` (WebSocket). Host
    /// names are not resolved here.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.strip_prefix("ws://") {
            Some(rest) => {
                let rest = rest.strip_suffix('/').unwrap_or(rest);
                rest.parse()
                    .map(Self::WebSocket)
                    .map_err(|_| RelayAddressError)
            }
            None => s.parse().map(Self::Tcp).map_err(|_| RelayAddressError),
        }
    }
}

/// The writing side of a connection.
enum Writer {
    Tcp(OwnedWriteHalf),
    WebSocket(SplitSink<WebSocket, Message>),
}

impl Writer {
    /// Sends one message body (TCP: with its length prefix).
    async fn body(&mut self, body: &[u8]) -> Result<(), ClientError> {
        match self {
            Self::Tcp(w) => w.write_all(&frame_message(body)).await?,
            Self::WebSocket(w) => w.send(Message::binary(body.to_vec())).await?,
        }
        Ok(())
    }

    /// Sends bytes as they are (TCP: no prefix added; WebSocket: one binary message).
    async fn raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        match self {
            Self::Tcp(w) => w.write_all(bytes).await?,
            Self::WebSocket(w) => w.send(Message::binary(bytes.to_vec())).await?,
        }
        Ok(())
    }
}

/// One connection to the relay.
pub struct RelayConnection {
    write: Writer,
    incoming: mpsc::Receiver<Result<ServerMessage, ClientError>>,
    reader: JoinHandle<()>,
    challenge: [u8; CHALLENGE_LEN],
    next_id: u32,
    deliveries: VecDeque<Vec<u8>>,
    /// Drop deliveries instead of keeping them (a connection used for blobs only).
    discard_deliveries: bool,
}

impl fmt::Debug for RelayConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            write: _,
            incoming: _,
            reader: _,
            challenge: _,
            next_id,
            deliveries,
            discard_deliveries: _,
        } = self;
        f.debug_struct("RelayConnection")
            .field("next_id", next_id)
            .field("buffered_deliveries", &deliveries.len())
            .finish_non_exhaustive()
    }
}

impl Drop for RelayConnection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

async fn read_websocket(
    mut read: SplitStream<WebSocket>,
    tx: mpsc::Sender<Result<ServerMessage, ClientError>>,
) {
    loop {
        let msg = match read.next().await {
            None => Err(ClientError::Closed),
            Some(Err(e)) => Err(e.into()),
            Some(Ok(Message::Binary(body))) => {
                ServerMessage::from_bytes(&body).map_err(|_| ClientError::Protocol)
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            Some(Ok(Message::Close(_))) => Err(ClientError::Closed),
            // The relay sends binary messages only.
            Some(Ok(Message::Text(_))) => Err(ClientError::Protocol),
        };
        let failed = msg.is_err();
        if tx.send(msg).await.is_err() || failed {
            return;
        }
    }
}

async fn read_loop(mut read: OwnedReadHalf, tx: mpsc::Sender<Result<ServerMessage, ClientError>>) {
    loop {
        let mut prefix = [0u8; 4];
        if let Err(e) = read.read_exact(&mut prefix).await {
            let _ = tx.send(Err(e.into())).await;
            return;
        }
        let Some(len) = check_length(prefix) else {
            let _ = tx.send(Err(ClientError::Protocol)).await;
            return;
        };
        let mut body = vec![0u8; len];
        if let Err(e) = read.read_exact(&mut body).await {
            let _ = tx.send(Err(e.into())).await;
            return;
        }
        let msg = ServerMessage::from_bytes(&body).map_err(|_| ClientError::Protocol);
        let failed = msg.is_err();
        if tx.send(msg).await.is_err() || failed {
            return;
        }
    }
}

impl RelayConnection {
    /// Connects (over TCP or WebSocket) and reads the relay's `Hello`.
    pub async fn connect(addr: impl Into<RelayAddress>) -> Result<Self, ClientError> {
        let addr = addr.into();
        let socket = match addr {
            RelayAddress::Tcp(a) | RelayAddress::WebSocket(a) => a,
        };
        let stream = tokio::time::timeout(REQUEST_TIMEOUT, TcpStream::connect(socket))
            .await
            .map_err(|_| ClientError::Timeout)??;
        let _ = stream.set_nodelay(true);
        let (tx, mut incoming) = mpsc::channel(INCOMING_QUEUE);
        let (write, reader) = match addr {
            RelayAddress::Tcp(_) => {
                let (read, write) = stream.into_split();
                (Writer::Tcp(write), tokio::spawn(read_loop(read, tx)))
            }
            RelayAddress::WebSocket(a) => {
                let handshake = tokio_tungstenite::client_async_with_config(
                    format!("ws://{a}/"),
                    stream,
                    Some(websocket_config()),
                );
                let (ws, _response) = tokio::time::timeout(REQUEST_TIMEOUT, handshake)
                    .await
                    .map_err(|_| ClientError::Timeout)??;
                let (write, read) = ws.split();
                (
                    Writer::WebSocket(write),
                    tokio::spawn(read_websocket(read, tx)),
                )
            }
        };
        let hello = tokio::time::timeout(REQUEST_TIMEOUT, incoming.recv())
            .await
            .map_err(|_| ClientError::Timeout)?;
        let challenge = match hello {
            Some(Ok(ServerMessage::Hello { challenge })) => challenge,
            Some(Ok(ServerMessage::Error { code, .. })) => {
                reader.abort();
                return Err(ClientError::Refused(code));
            }
            Some(Err(e)) => return Err(e),
            _ => return Err(ClientError::Protocol),
        };
        Ok(Self {
            write,
            incoming,
            reader,
            challenge,
            next_id: 1,
            deliveries: VecDeque::new(),
            discard_deliveries: false,
        })
    }

    /// The challenge of this connection.
    #[must_use]
    pub fn challenge(&self) -> &[u8; CHALLENGE_LEN] {
        &self.challenge
    }

    /// Writes raw bytes (tests: malformed input). On TCP the bytes are sent as they are,
    /// without a length prefix; on WebSocket they are one binary message.
    pub async fn write_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.write.raw(bytes).await
    }

    /// The next relay message that is not a delivery (tests: after [`Self::write_raw`]).
    pub async fn next_reply(&mut self) -> Result<ServerMessage, ClientError> {
        loop {
            match tokio::time::timeout(REQUEST_TIMEOUT, self.incoming.recv()).await {
                Err(_) => return Err(ClientError::Timeout),
                Ok(None) => return Err(ClientError::Closed),
                Ok(Some(Err(e))) => return Err(e),
                Ok(Some(Ok(ServerMessage::Deliver { frame }))) => {
                    if !self.discard_deliveries {
                        self.deliveries.push_back(frame);
                    }
                }
                Ok(Some(Ok(msg))) => return Ok(msg),
            }
        }
    }

    /// Sends a request and waits for its response; an `Error` response becomes
    /// [`ClientError::Refused`]. Deliveries that arrive meanwhile are kept for
    /// [`Self::next_delivery`].
    pub async fn request(&mut self, body: RequestBody) -> Result<ServerMessage, ClientError> {
        let id = self.write_request(body).await?;
        let reply = self.next_reply().await?;
        match reply {
            ServerMessage::Error { id: got, code } if got == id || got == 0 => {
                Err(ClientError::Refused(code))
            }
            ServerMessage::BlobRefused {
                id: got,
                code,
                stored_len,
            } if got == id => Err(ClientError::RefusedAt { code, stored_len }),
            ServerMessage::Ok { id: got }
            | ServerMessage::Stored { id: got, .. }
            | ServerMessage::Bundle { id: got, .. }
            | ServerMessage::BundleCount { id: got, .. }
            | ServerMessage::Certificate { id: got, .. }
            | ServerMessage::BlobStored { id: got, .. }
            | ServerMessage::BlobStatus { id: got, .. }
                if got == id =>
            {
                Ok(reply)
            }
            _ => Err(ClientError::Protocol),
        }
    }

    /// Sends a request with the next id, and returns the id.
    async fn write_request(&mut self, body: RequestBody) -> Result<u32, ClientError> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let bytes = Request { id, body }
            .to_bytes()
            .map_err(|_| ClientError::TooLarge)?;
        self.write.body(&bytes).await?;
        Ok(id)
    }

    /// From now on, frames the relay delivers on this connection are dropped instead of kept
    /// for [`Self::next_delivery`]. For an owner connection used only to upload blobs: the
    /// relay keeps every frame until it is confirmed, so the app's own link receives them.
    pub fn discard_deliveries(&mut self) {
        self.discard_deliveries = true;
        self.deliveries.clear();
    }

    async fn expect_ok(&mut self, body: RequestBody) -> Result<(), ClientError> {
        match self.request(body).await? {
            ServerMessage::Ok { .. } => Ok(()),
            _ => Err(ClientError::Protocol),
        }
    }

    /// Creates the mailbox `address` owned by `key` (or, if it is already `key`'s, sets its
    /// verifier) and authenticates this connection as its owner.
    pub async fn create_mailbox(
        &mut self,
        address: &Address,
        key: &SigningKey,
        verifier: Option<[u8; 32]>,
    ) -> Result<(), ClientError> {
        let owner_key = key.verifying_key().to_bytes();
        let message = create_message(&self.challenge, address, &owner_key, verifier.as_ref());
        self.expect_ok(RequestBody::CreateMailbox {
            address: address.clone(),
            owner_key,
            verifier,
            signature: key.sign(&message).to_bytes(),
        })
        .await
    }

    /// Authenticates this connection as the owner of `address`.
    pub async fn authenticate(
        &mut self,
        address: &Address,
        key: &SigningKey,
    ) -> Result<(), ClientError> {
        let message = authenticate_message(&self.challenge, address);
        self.expect_ok(RequestBody::Authenticate {
            address: address.clone(),
            signature: key.sign(&message).to_bytes(),
        })
        .await
    }

    /// Sends a frame and waits for its relay receipt.
    pub async fn send(
        &mut self,
        to: &Address,
        token: Option<&RelayToken>,
        frame: &[u8],
    ) -> Result<FrameId, ClientError> {
        match self
            .request(RequestBody::Send {
                to: to.clone(),
                token: token.cloned(),
                frame: frame.to_vec(),
            })
            .await?
        {
            ServerMessage::Stored { frame_id, .. } => Ok(frame_id),
            _ => Err(ClientError::Protocol),
        }
    }

    /// Confirms frames received (the relay deletes them).
    pub async fn confirm(&mut self, ids: &[FrameId]) -> Result<(), ClientError> {
        self.expect_ok(RequestBody::Confirm { ids: ids.to_vec() })
            .await
    }

    /// Replaces the mailbox's token verifier.
    pub async fn set_verifier(&mut self, verifier: Option<[u8; 32]>) -> Result<(), ClientError> {
        self.expect_ok(RequestBody::SetVerifier { verifier }).await
    }

    /// Registers where the relay's push hook wakes this mailbox's owner while it has no
    /// connection (for the webhook, an `http://` URL of an allowed push gateway); an empty
    /// `url` removes the registration.
    pub async fn register_push(&mut self, url: &[u8]) -> Result<(), ClientError> {
        self.expect_ok(RequestBody::RegisterPush { url: url.to_vec() })
            .await
    }

    /// Uploads one-time bundles and optionally a new last-resort bundle.
    pub async fn upload_bundles(
        &mut self,
        one_time: Vec<Vec<u8>>,
        last_resort: Option<Vec<u8>>,
    ) -> Result<(), ClientError> {
        self.expect_ok(RequestBody::UploadBundles {
            one_time,
            last_resort,
        })
        .await
    }

    /// Takes a bundle of `address`.
    pub async fn fetch_bundle(
        &mut self,
        address: &Address,
    ) -> Result<(BundleKind, Vec<u8>), ClientError> {
        match self
            .request(RequestBody::FetchBundle {
                address: address.clone(),
            })
            .await?
        {
            ServerMessage::Bundle { kind, bundle, .. } => Ok((kind, bundle)),
            _ => Err(ClientError::Protocol),
        }
    }

    /// One-time bundles left, and whether a last-resort bundle is stored.
    pub async fn bundle_count(&mut self) -> Result<(u32, bool), ClientError> {
        match self.request(RequestBody::BundleCount).await? {
            ServerMessage::BundleCount {
                one_time,
                last_resort,
                ..
            } => Ok((one_time, last_resort)),
            _ => Err(ClientError::Protocol),
        }
    }

    /// Requests (or renews) a client certificate for this connection's mailbox; returns the
    /// encoded `SenderCertificate` and its expiry.
    pub async fn request_certificate(
        &mut self,
        device_id: u32,
        identity: [u8; IDENTITY_LEN],
    ) -> Result<(Vec<u8>, Timestamp), ClientError> {
        match self
            .request(RequestBody::RequestCertificate {
                device_id,
                identity,
            })
            .await?
        {
            ServerMessage::Certificate {
                certificate,
                expires_at,
                ..
            } => Ok((certificate, expires_at)),
            _ => Err(ClientError::Protocol),
        }
    }

    /// Pings the relay.
    pub async fn ping(&mut self) -> Result<(), ClientError> {
        self.expect_ok(RequestBody::Ping).await
    }

    /// One `PutBlob`: appends `bytes` at `offset` (the stored length) and returns the stored
    /// length after the durable commit. A wrong offset is refused with
    /// [`ClientError::RefusedAt`], which carries the length to continue at.
    pub async fn put_blob_piece(
        &mut self,
        upload: &BlobUpload,
        offset: u64,
        bytes: &[u8],
    ) -> Result<u64, ClientError> {
        match self
            .request(RequestBody::PutBlob {
                blob_id: upload.blob_id,
                offset,
                total_len: upload.total_len,
                delete_token_hash: upload.delete_token_hash,
                bytes: bytes.to_vec(),
            })
            .await?
        {
            ServerMessage::BlobStored { stored_len, .. } => Ok(stored_len),
            _ => Err(ClientError::Protocol),
        }
    }

    /// How much of a blob the relay holds; `None` if it holds no such blob (never created,
    /// deleted or expired).
    pub async fn blob_status(
        &mut self,
        blob_id: &BlobId,
    ) -> Result<Option<BlobState>, ClientError> {
        match self
            .request(RequestBody::BlobStatus { blob_id: *blob_id })
            .await
        {
            Ok(ServerMessage::BlobStatus {
                stored_len,
                total_len,
                ..
            }) => Ok(Some(BlobState {
                stored_len,
                total_len,
            })),
            Ok(_) => Err(ClientError::Protocol),
            Err(ClientError::Refused(ErrorCode::NoSuchBlob)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Uploads the blob whose bytes `source` holds (at positions `0..upload.total_len`),
    /// resuming where the relay's copy ends: it asks [`Self::blob_status`] first, seeks
    /// `source` there and puts the rest in pieces of [`MAX_BLOB_PUT_LEN`]. Needs a connection
    /// authenticated as a mailbox owner. Returns the stored length (`upload.total_len`).
    /// Holds one piece in memory. After a failure, call it again (on a new connection): it
    /// continues from what the relay committed, not from zero.
    pub async fn put_blob<S>(
        &mut self,
        upload: &BlobUpload,
        source: &mut S,
    ) -> Result<u64, ClientError>
    where
        S: AsyncRead + AsyncSeek + Unpin,
    {
        let mut offset = match self.blob_status(&upload.blob_id).await? {
            Some(state) if state.total_len != upload.total_len => {
                return Err(ClientError::Refused(ErrorCode::BlobExists));
            }
            Some(state) => state.stored_len,
            None => 0,
        };
        let mut piece = Vec::with_capacity(MAX_BLOB_PUT_LEN);
        // A put refused for its offset is retried from the relay's length a few times only.
        let mut realignments = 0u32;
        // `total_len` is at least 1, so a blob that does not exist yet is created here.
        while offset < upload.total_len {
            let want = upload
                .total_len
                .saturating_sub(offset)
                .min(MAX_BLOB_PUT_LEN as u64);
            source.seek(std::io::SeekFrom::Start(offset)).await?;
            piece.clear();
            let got = (&mut *source).take(want).read_to_end(&mut piece).await?;
            if got as u64 != want {
                return Err(ClientError::Io(std::io::ErrorKind::UnexpectedEof));
            }
            match self.put_blob_piece(upload, offset, &piece).await {
                Ok(stored_len) => offset = stored_len,
                Err(ClientError::RefusedAt {
                    code: ErrorCode::BlobOffsetMismatch,
                    stored_len,
                }) if realignments < MAX_REALIGNMENTS => {
                    realignments = realignments.saturating_add(1);
                    offset = stored_len;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(offset)
    }

    /// Downloads a complete blob from `*offset` into `sink`, advancing `*offset` as bytes
    /// reach the sink; returns the blob's length once its last byte is written. The relay
    /// streams it in pieces of [`BLOB_DATA_LEN`](crate::consts::BLOB_DATA_LEN), written one
    /// at a time. After a failure, call it again with the same `offset` (on a new connection)
    /// to resume. Needs no authentication.
    pub async fn get_blob<W>(
        &mut self,
        blob_id: &BlobId,
        offset: &mut u64,
        sink: &mut W,
    ) -> Result<u64, ClientError>
    where
        W: AsyncWrite + Unpin,
    {
        let id = self
            .write_request(RequestBody::GetBlob {
                blob_id: *blob_id,
                offset: *offset,
            })
            .await?;
        loop {
            match self.next_reply().await? {
                ServerMessage::BlobData {
                    id: got,
                    offset: at,
                    last,
                    bytes,
                } if got == id && at == *offset => {
                    sink.write_all(&bytes).await?;
                    *offset = offset.saturating_add(bytes.len() as u64);
                    if last {
                        sink.flush().await?;
                        return Ok(*offset);
                    }
                }
                ServerMessage::Error { id: got, code } if got == id || got == 0 => {
                    return Err(ClientError::Refused(code));
                }
                ServerMessage::BlobRefused {
                    id: got,
                    code,
                    stored_len,
                } if got == id => return Err(ClientError::RefusedAt { code, stored_len }),
                _ => return Err(ClientError::Protocol),
            }
        }
    }

    /// Deletes a blob with its delete token (anyone holding the attachment pointer has it).
    pub async fn delete_blob(
        &mut self,
        blob_id: &BlobId,
        token: &BlobDeleteToken,
    ) -> Result<(), ClientError> {
        self.expect_ok(RequestBody::DeleteBlob {
            blob_id: *blob_id,
            delete_token: token.clone(),
        })
        .await
    }

    /// The next frame the relay delivers (cancel-safe: a frame is never lost by dropping the
    /// future).
    pub async fn next_delivery(&mut self) -> Result<Vec<u8>, ClientError> {
        if let Some(frame) = self.deliveries.pop_front() {
            return Ok(frame);
        }
        match self.incoming.recv().await {
            None => Err(ClientError::Closed),
            Some(Err(e)) => Err(e),
            Some(Ok(ServerMessage::Deliver { frame })) => Ok(frame),
            // A response with no request waiting for it.
            Some(Ok(_)) => Err(ClientError::Protocol),
        }
    }
}

/// How many times [`RelayConnection::put_blob`] follows the relay's stored length after a
/// put refused for its offset, before giving up.
///
/// Reason: one refusal is normal (a put whose receipt was lost on a dropped connection);
/// several in a row mean another writer, and looping would only fight it.
pub const MAX_REALIGNMENTS: u32 = 3;

/// How many connections [`upload_blob`] and [`download_blob`] try before giving up.
///
/// Reason: each attempt resumes where the previous one stopped, so a few are enough to ride
/// out a flaky network or a relay restart; the app retries later beyond that.
pub const BLOB_TRANSFER_ATTEMPTS: u32 = 5;

/// What the relay needs to create a blob, repeated in every put: its id, its whole length and
/// the SHA-256 of its delete token.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct BlobUpload {
    /// The blob's id (`BlobId::random`, the one the attachment pointer will carry).
    pub blob_id: BlobId,
    /// The blob's length (`EncryptedAttachment::ciphertext_len`, or
    /// `confide_attachment::ciphertext_len` of the plaintext length).
    pub total_len: u64,
    /// `BlobDeleteToken::hash` of the attachment's delete token.
    pub delete_token_hash: [u8; DELETE_TOKEN_LEN],
}

impl BlobUpload {
    /// The upload of a blob of `total_len` bytes under `blob_id`, deletable with `token`.
    #[must_use]
    pub fn new(blob_id: BlobId, total_len: u64, token: &BlobDeleteToken) -> Self {
        Self {
            blob_id,
            total_len,
            delete_token_hash: token.hash(),
        }
    }
}

impl fmt::Debug for BlobUpload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            blob_id: _,
            total_len,
            delete_token_hash: _,
        } = self;
        f.debug_struct("BlobUpload")
            .field("total_len", total_len)
            .finish_non_exhaustive()
    }
}

/// How much of a blob the relay holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobState {
    /// Bytes stored.
    pub stored_len: u64,
    /// The blob's whole length (complete when equal to `stored_len`).
    pub total_len: u64,
}

fn transient(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::Io(_) | ClientError::Timeout | ClientError::Closed | ClientError::Protocol
    )
}

/// Uploads a blob on connections of its own, authenticated as the owner of `mailbox` (which
/// must exist), reconnecting with backoff after a connection failure and resuming each time
/// from the relay's stored length ([`RelayConnection::put_blob`]); at most
/// [`BLOB_TRANSFER_ATTEMPTS`] connections. Frames delivered on these connections are dropped
/// (they stay on the relay until the app's link confirms them).
pub async fn upload_blob<S>(
    relay: RelayAddress,
    mailbox: &Address,
    key: &SigningKey,
    upload: &BlobUpload,
    source: &mut S,
) -> Result<u64, ClientError>
where
    S: AsyncRead + AsyncSeek + Unpin,
{
    let mut retry = TransferRetry::new();
    loop {
        let result = async {
            let mut c = RelayConnection::connect(relay).await?;
            c.discard_deliveries();
            c.authenticate(mailbox, key).await?;
            c.put_blob(upload, source).await
        }
        .await;
        match result {
            Err(e) if retry.may_resume(&e) => retry.wait("blob upload", &e).await,
            other => return other,
        }
    }
}

/// Downloads a complete blob into `sink` from `*offset` on connections of its own that never
/// authenticate (the relay cannot tie the download to a mailbox), reconnecting with backoff
/// after a connection failure and resuming at the offset reached; at most
/// [`BLOB_TRANSFER_ATTEMPTS`] connections. Returns the blob's length.
pub async fn download_blob<W>(
    relay: RelayAddress,
    blob_id: &BlobId,
    offset: &mut u64,
    sink: &mut W,
) -> Result<u64, ClientError>
where
    W: AsyncWrite + Unpin,
{
    let mut retry = TransferRetry::new();
    loop {
        let result = async {
            let mut c = RelayConnection::connect(relay).await?;
            c.get_blob(blob_id, offset, sink).await
        }
        .await;
        match result {
            Err(e) if retry.may_resume(&e) => retry.wait("blob download", &e).await,
            other => return other,
        }
    }
}

/// The reconnection schedule of one blob transfer: at most [`BLOB_TRANSFER_ATTEMPTS`]
/// connections, with jittered exponential backoff between them.
struct TransferRetry {
    backoff: std::time::Duration,
    attempt: u32,
}

impl TransferRetry {
    fn new() -> Self {
        Self {
            backoff: INITIAL_BACKOFF,
            attempt: 1,
        }
    }

    /// Whether the transfer may resume on a new connection after `error`.
    fn may_resume(&self, error: &ClientError) -> bool {
        transient(error) && self.attempt < BLOB_TRANSFER_ATTEMPTS
    }

    /// Waits before the next connection.
    async fn wait(&mut self, what: &'static str, error: &ClientError) {
        tracing::debug!(error = %error, transfer = what, "interrupted; resuming");
        tokio::time::sleep(jittered(self.backoff)).await;
        self.backoff = self.backoff.saturating_mul(2).min(MAX_BACKOFF);
        self.attempt += 1;
    }
}

/// What a [`RelayLink`] reports.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RelayEvent {
    /// A frame for this mailbox (feed it to the endpoint, then confirm it once persisted).
    Frame(Vec<u8>),
    /// The relay durably stored a frame this link sent (a relay receipt).
    Stored(FrameId),
    /// The relay refused a frame this link sent (the endpoint retransmits it later).
    Refused {
        /// The frame's id, if the bytes were a frame.
        frame_id: Option<FrameId>,
        /// Why.
        code: ErrorCode,
    },
    /// The link (re)connected and authenticated: what was held back can go now.
    Connected,
}

impl fmt::Debug for RelayEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Frame(frame) => f.debug_struct("Frame").field("len", &frame.len()).finish(),
            Self::Stored(id) => f.debug_tuple("Stored").field(id).finish(),
            Self::Refused { frame_id, code } => f
                .debug_struct("Refused")
                .field("frame_id", frame_id)
                .field("code", code)
                .finish(),
            Self::Connected => f.write_str("Connected"),
        }
    }
}

impl RelayEvent {
    /// The endpoint input for this event at `now`, if it has one. This is the one place where
    /// relay events become endpoint inputs.
    #[must_use]
    pub fn input(&self, now: Timestamp) -> Option<Input<'_>> {
        match self {
            Self::Frame(bytes) => Some(Input::Receive { bytes, now }),
            // The relay committed the frame: its retransmissions can wait
            // (`docs/transport.md` §3.8).
            Self::Stored(id) => Some(Input::RelayReceipt { id: *id, now }),
            // A reconnect to this relay is not `Input::RelayReconnected`: the reference relay
            // answers `Stored` only after a durable commit, which survives its restart (the
            // `kill -9` test), so what it confirmed is still there.
            Self::Connected | Self::Refused { .. } => None,
        }
    }

    /// The id of a delivered frame, to confirm once it is persisted.
    #[must_use]
    pub fn frame_id(&self) -> Option<FrameId> {
        match self {
            Self::Frame(bytes) => frame_id_of(bytes),
            _ => None,
        }
    }
}

/// How a [`RelayLink`] reaches the relay and whose mailbox it serves.
#[derive(Clone)]
pub struct LinkConfig {
    /// The relay's address (TCP or WebSocket).
    pub relay: RelayAddress,
    /// This endpoint's mailbox.
    pub mailbox: Address,
    /// The mailbox owner's key (kept by the app; not the identity key).
    pub owner_key: SigningKey,
    /// The delivery-token verifier to register (`Endpoint::delivery_token_verifier`).
    pub verifier: Option<[u8; 32]>,
}

impl fmt::Debug for LinkConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            relay: _,
            mailbox,
            owner_key: _,
            verifier,
        } = self;
        f.debug_struct("LinkConfig")
            .field("mailbox", mailbox)
            .field("has_verifier", &verifier.is_some())
            .finish_non_exhaustive()
    }
}

enum Command {
    Send {
        to: Address,
        token: Option<RelayToken>,
        frame: Vec<u8>,
    },
    Confirm(FrameId),
}

/// A reconnecting link to the relay for one endpoint: an owner connection that receives the
/// mailbox's frames and a separate, never-authenticated connection for sends. On failure both
/// are re-established with exponential backoff ([`INITIAL_BACKOFF`] doubling to
/// [`MAX_BACKOFF`], with jitter); a send that was in flight is reported neither stored nor
/// refused (the endpoint's delivery machine retransmits it).
pub struct RelayLink {
    commands: mpsc::Sender<Command>,
    events: mpsc::Receiver<RelayEvent>,
    task: JoinHandle<()>,
}

impl fmt::Debug for RelayLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            commands: _,
            events: _,
            task: _,
        } = self;
        f.debug_struct("RelayLink").finish_non_exhaustive()
    }
}

impl Drop for RelayLink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RelayLink {
    /// Starts the link (connecting in the background).
    #[must_use]
    pub fn start(config: LinkConfig) -> Self {
        let (commands, command_rx) = mpsc::channel(LINK_QUEUE);
        let (event_tx, events) = mpsc::channel(LINK_QUEUE);
        let task = tokio::spawn(link_task(config, command_rx, event_tx));
        Self {
            commands,
            events,
            task,
        }
    }

    /// Queues a frame for `to` (answered later by [`RelayEvent::Stored`] or
    /// [`RelayEvent::Refused`], or by nothing if the connection fails meanwhile).
    pub async fn send(
        &self,
        to: Address,
        token: Option<RelayToken>,
        frame: Vec<u8>,
    ) -> Result<(), ClientError> {
        self.commands
            .send(Command::Send { to, token, frame })
            .await
            .map_err(|_| ClientError::Closed)
    }

    /// Confirms a delivered frame (once persisted): the relay deletes it.
    pub async fn confirm(&self, id: FrameId) -> Result<(), ClientError> {
        self.commands
            .send(Command::Confirm(id))
            .await
            .map_err(|_| ClientError::Closed)
    }

    /// The next event (cancel-safe).
    pub async fn next_event(&mut self) -> Result<RelayEvent, ClientError> {
        self.events.recv().await.ok_or(ClientError::Closed)
    }
}

async fn open_link(config: &LinkConfig) -> Result<(RelayConnection, RelayConnection), ClientError> {
    let mut owner = RelayConnection::connect(config.relay).await?;
    owner
        .create_mailbox(&config.mailbox, &config.owner_key, config.verifier)
        .await?;
    let sender = RelayConnection::connect(config.relay).await?;
    Ok((owner, sender))
}

fn jittered(base: std::time::Duration) -> std::time::Duration {
    let mut b = [0u8; 2];
    let r = if getrandom::fill(&mut b).is_ok() {
        u32::from(u16::from_be_bytes(b))
    } else {
        0
    };
    // base + up to 50 % of base.
    base.saturating_add(base.mul_f64(f64::from(r) / f64::from(u16::MAX) / 2.0))
}

async fn link_task(
    config: LinkConfig,
    mut commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<RelayEvent>,
) {
    let mut backoff = INITIAL_BACKOFF;
    loop {
        let (mut owner, mut sender) = match open_link(&config).await {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(error = %e, "relay link: connect failed");
                tokio::time::sleep(jittered(backoff)).await;
                backoff = backoff.saturating_mul(2).min(MAX_BACKOFF);
                continue;
            }
        };
        backoff = INITIAL_BACKOFF;
        if events.send(RelayEvent::Connected).await.is_err() {
            return;
        }
        let failure = loop {
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    None => return,
                    Some(Command::Send { to, token, frame }) => {
                        match sender.send(&to, token.as_ref(), &frame).await {
                            Ok(id) => {
                                if events.send(RelayEvent::Stored(id)).await.is_err() {
                                    return;
                                }
                            }
                            Err(ClientError::Refused(code)) => {
                                let refused = RelayEvent::Refused { frame_id: frame_id_of(&frame), code };
                                if events.send(refused).await.is_err() {
                                    return;
                                }
                            }
                            Err(e) => break e,
                        }
                    }
                    Some(Command::Confirm(id)) => {
                        match owner.confirm(&[id]).await {
                            Ok(()) | Err(ClientError::Refused(_)) => {}
                            Err(e) => break e,
                        }
                    }
                },
                frame = owner.next_delivery() => match frame {
                    Ok(frame) => {
                        if events.send(RelayEvent::Frame(frame)).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => break e,
                },
                () = tokio::time::sleep(PING_INTERVAL) => {
                    if let Err(e) = owner.ping().await {
                        break e;
                    }
                    if let Err(e) = sender.ping().await {
                        break e;
                    }
                }
            }
        };
        tracing::debug!(error = %failure, "relay link: connection lost; reconnecting");
        tokio::time::sleep(jittered(backoff)).await;
    }
}
