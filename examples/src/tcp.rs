//! A loopback TCP relay and client transport for the examples.
//!
//! This is example plumbing, not a production relay: it binds only to 127.0.0.1, has no
//! authentication of mailbox registration (anyone can register any mailbox and take its mail),
//! and keeps mail in memory. It shows the shape of a store-and-forward relay that sees only
//! opaque frames, mailbox addresses and delivery tokens.
//!
//! **It gives no sender anonymity.** A client sends on the connection that registered its own
//! mailbox, so the relay links every sealed envelope to its sender's mailbox (and IP address),
//! whatever the envelope hides. A relay that keeps senders anonymous accepts sealed sends on
//! connections that are not tied to a mailbox; that is the reference relay's job
//! (`crates/confide-relay`, protocol in `docs/relay.md`), which the `relay` and `chat` examples
//! have not moved onto yet.
//!
//! Delivery tokens: a mailbox may register a token verifier
//! (`SHA-256("Confide_v1_MailboxVerifier" || token)`, see `confide_sealed::TokenVerifier`).
//! From then on the relay accepts a frame for that mailbox only with the matching
//! [`RelayToken`], and learns that the sender is one of the owner's contacts, not which one.
//!
//! # Relay protocol, version 2
//!
//! A TCP stream carries relay messages back to back, each as a 4-byte big-endian length `L`
//! (1 ..= [`MAX_RELAY_MESSAGE_LEN`]) followed by `L` bytes:
//!
//! | size | field                                                    |
//! |------|----------------------------------------------------------|
//! | 1    | version `0x01`                                           |
//! | 1    | type: `0x01` Register, `0x02` SendTo, `0x03` Deliver      |
//! | ...  | body, by type (below); nothing may follow it             |
//!
//! * Register (client to relay, first message, once): mailbox address as 1 length byte
//!   (1..=64) plus bytes, then the token verifier: `0x00` none (an open mailbox), or `0x01`
//!   and 32 bytes. The relay then delivers any mail it stored for that mailbox. A verifier,
//!   once registered for a mailbox, stays for the relay's lifetime (a later registration
//!   without one does not remove it; one with another verifier replaces it).
//! * SendTo (client to relay): destination address (as above), then the token: `0x00` none,
//!   or `0x01` and the 16-byte token, then the frame as a 4-byte length (at most
//!   [`MAX_FRAME_LEN`]) plus bytes. If the destination registered a verifier, a frame without
//!   a token or with a token that does not match is dropped (counted in
//!   [`RelayServer::refused_frames`]; the sender's delivery machine retransmits). Otherwise
//!   the relay forwards it as a Deliver if the mailbox is connected, else stores it (bounded;
//!   excess is dropped).
//! * Deliver (relay to client): the frame as a 4-byte length plus bytes.
//!
//! Anything malformed (unknown version or type, bad length, trailing bytes, SendTo before
//! Register, a second Register) makes the relay close the connection.

use std::collections::{BTreeMap, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use confide_wire::codec::{DecodeError, Reader, Writer};

use confide_transport::consts::{MAX_ADDRESS_LEN, MAX_FRAME_LEN, RELAY_TOKEN_LEN};
use confide_transport::{Address, RelayToken, Transport, TransportError};

/// Version byte of every relay message.
pub const RELAY_VERSION: u8 = 2;

/// Largest relay message body: version, type, address, token flag and token, frame length
/// and the largest frame.
pub const MAX_RELAY_MESSAGE_LEN: usize =
    2 + 1 + MAX_ADDRESS_LEN + 1 + RELAY_TOKEN_LEN + 4 + MAX_FRAME_LEN;

/// How the relay checks a presented token against a mailbox's registered verifier. The
/// transport does no cryptography, so the caller supplies it: Confide apps pass a function
/// over `confide_sealed::relay_check` (`SHA-256("Confide_v1_MailboxVerifier" || token)`
/// compared in constant time).
pub type TokenCheck = fn(verifier: &[u8; 32], token: &RelayToken) -> bool;

/// Most frames the relay stores for one offline mailbox.
///
/// Reason: bounds the relay's memory per mailbox; a sender's outbox holds at most 1,000
/// messages, and the delivery machine retransmits anything dropped here.
pub const RELAY_MAX_STORED_FRAMES: usize = 1_000;

/// Most bytes the relay stores for one offline mailbox (16 MiB).
///
/// Reason: as [`RELAY_MAX_STORED_FRAMES`], for large frames.
pub const RELAY_MAX_STORED_BYTES: usize = 16 * 1024 * 1024;

/// Most mailboxes the relay stores mail for.
///
/// Reason: bounds memory; an example relay serves a handful of mailboxes.
pub const RELAY_MAX_MAILBOXES: usize = 1_024;

/// Most connections the relay serves at once; more are closed on accept.
///
/// Reason: one thread per connection; bounds threads.
pub const RELAY_MAX_CONNECTIONS: usize = 64;

/// Frames a [`TcpTransport`] buffers before its reader thread waits for `recv`.
///
/// Reason: bounds client memory (at most this many frames of up to 256 KiB); TCP flow control
/// then slows the relay down.
pub const TCP_INBOX_CAPACITY: usize = 256;

/// How often blocked socket reads wake to check for shutdown, in milliseconds.
///
/// Reason: lets threads stop promptly without busy-waiting.
pub const POLL_INTERVAL_MS: u64 = 50;

/// How long a socket write may block, in milliseconds, before the peer counts as gone.
///
/// Reason: a stuck reader must not stall the relay (which writes under its lock).
pub const WRITE_TIMEOUT_MS: u64 = 2_000;

const TYPE_REGISTER: u8 = 0x01;
const TYPE_SEND_TO: u8 = 0x02;
const TYPE_DELIVER: u8 = 0x03;

/// One relay protocol message (the body after the length prefix).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RelayMessage {
    /// Claim a mailbox on this connection.
    Register {
        /// The mailbox.
        mailbox: Address,
        /// The hash of the mailbox's delivery token; `None`: an open mailbox.
        verifier: Option<[u8; 32]>,
    },
    /// Forward a frame to a mailbox.
    SendTo {
        /// Destination mailbox.
        to: Address,
        /// The destination's delivery token, if the sender has one.
        token: Option<RelayToken>,
        /// An encoded transport frame.
        frame: Vec<u8>,
    },
    /// A frame for this connection's mailbox.
    Deliver {
        /// An encoded transport frame.
        frame: Vec<u8>,
    },
}

impl core::fmt::Debug for RelayMessage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Register { mailbox, verifier } => f
                .debug_struct("Register")
                .field("mailbox", mailbox)
                .field("has_verifier", &verifier.is_some())
                .finish(),
            Self::SendTo { to, token, frame } => f
                .debug_struct("SendTo")
                .field("to", to)
                .field("has_token", &token.is_some())
                .field("frame_len", &frame.len())
                .finish(),
            Self::Deliver { frame } => f
                .debug_struct("Deliver")
                .field("frame_len", &frame.len())
                .finish(),
        }
    }
}

/// Writes an address as one length byte (1..=[`MAX_ADDRESS_LEN`]) followed by the bytes (the
/// form the transport's own state encoding uses).
fn write_address(w: &mut Writer, address: &Address) {
    // The constructor keeps the length within 1..=MAX_ADDRESS_LEN, which fits a byte.
    w.u8(u8::try_from(address.len()).unwrap_or(u8::MAX));
    w.bytes(address.as_bytes());
}

/// Decodes the form written by [`write_address`], strictly.
fn read_address(r: &mut Reader<'_>) -> Result<Address, DecodeError> {
    let len = usize::from(r.u8()?);
    if len > MAX_ADDRESS_LEN {
        return Err(DecodeError::TooLong {
            field: "address",
            len,
            max: MAX_ADDRESS_LEN,
        });
    }
    Address::new(r.bytes(len)?).map_err(|_| DecodeError::InvalidValue { field: "address" })
}

impl RelayMessage {
    /// Encodes the body (without the stream's length prefix). Fails if a frame is too long.
    pub fn to_bytes(&self) -> Result<Vec<u8>, TransportError> {
        let mut w = Writer::new();
        w.u8(RELAY_VERSION);
        let frame = match self {
            Self::Register { mailbox, verifier } => {
                w.u8(TYPE_REGISTER);
                write_address(&mut w, mailbox);
                match verifier {
                    None => {
                        w.u8(0);
                    }
                    Some(v) => {
                        w.u8(1).bytes(v);
                    }
                }
                None
            }
            Self::SendTo { to, token, frame } => {
                w.u8(TYPE_SEND_TO);
                write_address(&mut w, to);
                match token {
                    None => {
                        w.u8(0);
                    }
                    Some(t) => {
                        w.u8(1).bytes(t.expose());
                    }
                }
                Some(frame)
            }
            Self::Deliver { frame } => {
                w.u8(TYPE_DELIVER);
                Some(frame)
            }
        };
        if let Some(frame) = frame {
            w.var32("frame", MAX_FRAME_LEN, frame)
                .map_err(|_| TransportError::FrameTooLarge {
                    len: frame.len(),
                    max: MAX_FRAME_LEN,
                })?;
        }
        Ok(w.into_vec())
    }

    /// Decodes a body strictly.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        if version != RELAY_VERSION {
            return Err(DecodeError::UnknownVersion {
                what: "relay message",
                found: version,
            });
        }
        let message = match r.u8()? {
            TYPE_REGISTER => Self::Register {
                mailbox: read_address(&mut r)?,
                verifier: match r.u8()? {
                    0 => None,
                    1 => Some(r.array()?),
                    _ => {
                        return Err(DecodeError::InvalidValue {
                            field: "verifier flag",
                        });
                    }
                },
            },
            TYPE_SEND_TO => Self::SendTo {
                to: read_address(&mut r)?,
                token: match r.u8()? {
                    0 => None,
                    1 => Some(RelayToken::new(r.array()?)),
                    _ => {
                        return Err(DecodeError::InvalidValue {
                            field: "token flag",
                        });
                    }
                },
                frame: r.var32("frame", MAX_FRAME_LEN)?.to_vec(),
            },
            TYPE_DELIVER => Self::Deliver {
                frame: r.var32("frame", MAX_FRAME_LEN)?.to_vec(),
            },
            _ => {
                return Err(DecodeError::InvalidValue {
                    field: "relay message type",
                });
            }
        };
        r.finish()?;
        Ok(message)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn io_error(e: &std::io::Error) -> TransportError {
    match e.kind() {
        ErrorKind::ConnectionReset
        | ErrorKind::ConnectionAborted
        | ErrorKind::BrokenPipe
        | ErrorKind::NotConnected
        | ErrorKind::UnexpectedEof => TransportError::Disconnected,
        kind => TransportError::Io(kind),
    }
}

fn write_message(stream: &mut TcpStream, message: &RelayMessage) -> Result<(), TransportError> {
    let body = message.to_bytes()?;
    let len = u32::try_from(body.len()).map_err(|_| TransportError::FrameTooLarge {
        len: body.len(),
        max: MAX_RELAY_MESSAGE_LEN,
    })?;
    let mut out = Vec::with_capacity(body.len().saturating_add(4));
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&body);
    stream.write_all(&out).map_err(|e| io_error(&e))
}

/// Reads length-prefixed messages from a stream whose reads time out every
/// [`POLL_INTERVAL_MS`], so the owner can check a stop flag between reads.
struct MessageReader {
    buffer: Vec<u8>,
}

enum ReadOutcome {
    Message(RelayMessage),
    /// Nothing complete yet (a read timed out).
    Idle,
    Closed,
    Violation,
}

impl MessageReader {
    fn new() -> Self {
        Self { buffer: Vec::new() }
    }

    fn next(&mut self, stream: &mut TcpStream) -> ReadOutcome {
        loop {
            if let Some(outcome) = self.take_buffered() {
                return outcome;
            }
            let mut chunk = [0u8; 16 * 1024];
            match stream.read(&mut chunk) {
                Ok(0) => return ReadOutcome::Closed,
                Ok(n) => self
                    .buffer
                    .extend_from_slice(chunk.get(..n).unwrap_or_default()),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return ReadOutcome::Idle;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return ReadOutcome::Closed,
            }
        }
    }

    fn take_buffered(&mut self) -> Option<ReadOutcome> {
        let (prefix, rest) = self.buffer.split_at_checked(4)?;
        let mut len_bytes = [0u8; 4];
        len_bytes.copy_from_slice(prefix);
        let len = usize::try_from(u32::from_be_bytes(len_bytes)).unwrap_or(usize::MAX);
        if len == 0 || len > MAX_RELAY_MESSAGE_LEN {
            return Some(ReadOutcome::Violation);
        }
        let body = rest.get(..len)?;
        let outcome = match RelayMessage::from_bytes(body) {
            Ok(message) => ReadOutcome::Message(message),
            Err(_) => ReadOutcome::Violation,
        };
        self.buffer.drain(..len.saturating_add(4));
        Some(outcome)
    }
}

type SharedStream = Arc<Mutex<TcpStream>>;

#[derive(Default)]
struct RelayState {
    stored: BTreeMap<Address, (VecDeque<Vec<u8>>, usize)>,
    online: BTreeMap<Address, SharedStream>,
    /// Token verifiers of mailboxes that registered one.
    verifiers: BTreeMap<Address, [u8; 32]>,
    /// Frames dropped for a missing or wrong token.
    refused: usize,
    connections: usize,
    threads: Vec<JoinHandle<()>>,
}

struct RelayShared {
    state: Mutex<RelayState>,
    stop: AtomicBool,
    check: TokenCheck,
}

impl RelayShared {
    /// Hands `frame` to the mailbox's connection, or stores it, if `token` is accepted for
    /// the mailbox. Returns whether it was kept.
    fn route(&self, to: &Address, token: Option<&RelayToken>, frame: Vec<u8>) -> bool {
        let mut state = lock(&self.state);
        if let Some(verifier) = state.verifiers.get(to) {
            let accepted = token.is_some_and(|t| (self.check)(verifier, t));
            if !accepted {
                state.refused = state.refused.saturating_add(1);
                return false;
            }
        }
        if let Some(stream) = state.online.get(to).cloned() {
            let message = RelayMessage::Deliver { frame };
            if write_message(&mut lock(&stream), &message).is_ok() {
                return true;
            }
            state.online.remove(to);
            let RelayMessage::Deliver { frame } = message else {
                return false;
            };
            return Self::store(&mut state, to, frame);
        }
        Self::store(&mut state, to, frame)
    }

    fn store(state: &mut RelayState, to: &Address, frame: Vec<u8>) -> bool {
        if !state.stored.contains_key(to) && state.stored.len() >= RELAY_MAX_MAILBOXES {
            return false;
        }
        let (queue, bytes) = state.stored.entry(to.clone()).or_default();
        if queue.len() >= RELAY_MAX_STORED_FRAMES
            || bytes.saturating_add(frame.len()) > RELAY_MAX_STORED_BYTES
        {
            return false;
        }
        *bytes = bytes.saturating_add(frame.len());
        queue.push_back(frame);
        true
    }

    fn register(&self, mailbox: &Address, verifier: Option<[u8; 32]>, stream: &SharedStream) {
        let mut state = lock(&self.state);
        if let Some(v) = verifier {
            state.verifiers.insert(mailbox.clone(), v);
        }
        state.online.insert(mailbox.clone(), Arc::clone(stream));
        if let Some((queue, _)) = state.stored.remove(mailbox) {
            let mut writer = lock(stream);
            let mut pending = queue.into_iter();
            for frame in pending.by_ref() {
                if write_message(&mut writer, &RelayMessage::Deliver { frame }).is_err() {
                    break;
                }
            }
            drop(writer);
            // Whatever could not be written stays stored.
            let rest: VecDeque<Vec<u8>> = pending.collect();
            if !rest.is_empty() {
                state.online.remove(mailbox);
                let bytes = rest.iter().map(Vec::len).sum();
                state.stored.insert(mailbox.clone(), (rest, bytes));
            }
        }
    }

    fn serve(&self, stream: TcpStream) {
        let Ok(writer) = stream.try_clone() else {
            return;
        };
        let writer: SharedStream = Arc::new(Mutex::new(writer));
        let mut stream = stream;
        let mut reader = MessageReader::new();
        let mut mailbox: Option<Address> = None;
        while !self.stop.load(Ordering::Relaxed) {
            match reader.next(&mut stream) {
                ReadOutcome::Idle => {}
                ReadOutcome::Closed | ReadOutcome::Violation => break,
                ReadOutcome::Message(RelayMessage::Register {
                    mailbox: m,
                    verifier,
                }) if mailbox.is_none() => {
                    self.register(&m, verifier, &writer);
                    mailbox = Some(m);
                }
                ReadOutcome::Message(RelayMessage::SendTo { to, token, frame })
                    if mailbox.is_some() =>
                {
                    let _kept = self.route(&to, token.as_ref(), frame);
                }
                ReadOutcome::Message(_) => break,
            }
        }
        let _ = stream.shutdown(Shutdown::Both);
        let mut state = lock(&self.state);
        if let Some(m) = mailbox
            && state
                .online
                .get(&m)
                .is_some_and(|s| Arc::ptr_eq(s, &writer))
        {
            state.online.remove(&m);
        }
        state.connections = state.connections.saturating_sub(1);
    }
}

/// A threaded mailbox relay on 127.0.0.1. Stops (and joins its threads) on drop.
pub struct RelayServer {
    local_addr: SocketAddr,
    shared: Arc<RelayShared>,
    accept_thread: Option<JoinHandle<()>>,
}

impl core::fmt::Debug for RelayServer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RelayServer")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl RelayServer {
    /// Binds to `127.0.0.1:port` (0 picks a free port) and starts serving, checking delivery
    /// tokens with `check`.
    pub fn bind(port: u16, check: TokenCheck) -> std::io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port))?;
        let local_addr = listener.local_addr()?;
        let shared = Arc::new(RelayShared {
            state: Mutex::new(RelayState::default()),
            stop: AtomicBool::new(false),
            check,
        });
        let accept_shared = Arc::clone(&shared);
        let accept_thread = std::thread::Builder::new()
            .name("confide-relay-accept".into())
            .spawn(move || accept_loop(&listener, &accept_shared))?;
        Ok(Self {
            local_addr,
            shared,
            accept_thread: Some(accept_thread),
        })
    }

    /// The address to connect to.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Frames stored for offline mailboxes, all together.
    #[must_use]
    pub fn stored_frames(&self) -> usize {
        lock(&self.shared.state)
            .stored
            .values()
            .map(|(q, _)| q.len())
            .sum()
    }

    /// Frames dropped because their destination registered a token verifier and the frame
    /// came without the matching token.
    #[must_use]
    pub fn refused_frames(&self) -> usize {
        lock(&self.shared.state).refused
    }

    /// Stops accepting, closes every connection and joins all threads.
    pub fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        // Wake the blocking accept.
        let _ = TcpStream::connect(self.local_addr);
        if let Some(handle) = self.accept_thread.take() {
            let _ = handle.join();
        }
        let threads = std::mem::take(&mut lock(&self.shared.state).threads);
        for handle in threads {
            let _ = handle.join();
        }
    }
}

impl Drop for RelayServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<RelayShared>) {
    for incoming in listener.incoming() {
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        let Ok(stream) = incoming else {
            continue;
        };
        let timeouts = stream
            .set_read_timeout(Some(std::time::Duration::from_millis(POLL_INTERVAL_MS)))
            .and_then(|()| {
                stream.set_write_timeout(Some(std::time::Duration::from_millis(WRITE_TIMEOUT_MS)))
            });
        let mut state = lock(&shared.state);
        state.threads.retain(|h| !h.is_finished());
        if timeouts.is_err() || state.connections >= RELAY_MAX_CONNECTIONS {
            let _ = stream.shutdown(Shutdown::Both);
            continue;
        }
        let conn_shared = Arc::clone(shared);
        let spawned = std::thread::Builder::new()
            .name("confide-relay-conn".into())
            .spawn(move || conn_shared.serve(stream));
        if let Ok(handle) = spawned {
            state.connections = state.connections.saturating_add(1);
            state.threads.push(handle);
        }
    }
}

/// A client [`Transport`] over a TCP connection to a relay: `send` writes on the caller's
/// thread, a reader thread buffers delivered frames for `recv` (never blocks).
pub struct TcpTransport {
    writer: TcpStream,
    inbox: Receiver<Result<Vec<u8>, TransportError>>,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
    failed: Option<TransportError>,
}

impl core::fmt::Debug for TcpTransport {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TcpTransport")
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl TcpTransport {
    /// Connects to the relay at `relay` and registers `mailbox`, with the verifier of its
    /// delivery token (`None`: anyone may send to it).
    pub fn connect(
        relay: SocketAddr,
        mailbox: &Address,
        verifier: Option<[u8; 32]>,
    ) -> Result<Self, TransportError> {
        let mut writer = TcpStream::connect(relay).map_err(|e| io_error(&e))?;
        let _ = writer.set_nodelay(true);
        writer
            .set_write_timeout(Some(std::time::Duration::from_millis(WRITE_TIMEOUT_MS)))
            .map_err(|e| io_error(&e))?;
        let reader_stream = writer.try_clone().map_err(|e| io_error(&e))?;
        reader_stream
            .set_read_timeout(Some(std::time::Duration::from_millis(POLL_INTERVAL_MS)))
            .map_err(|e| io_error(&e))?;
        write_message(
            &mut writer,
            &RelayMessage::Register {
                mailbox: mailbox.clone(),
                verifier,
            },
        )?;
        let (tx, inbox) = sync_channel(TCP_INBOX_CAPACITY);
        let stop = Arc::new(AtomicBool::new(false));
        let reader_stop = Arc::clone(&stop);
        let reader = std::thread::Builder::new()
            .name("confide-tcp-reader".into())
            .spawn(move || read_loop(reader_stream, &tx, &reader_stop))
            .map_err(|e| io_error(&e))?;
        Ok(Self {
            writer,
            inbox,
            stop,
            reader: Some(reader),
            failed: None,
        })
    }
}

fn read_loop(
    mut stream: TcpStream,
    tx: &SyncSender<Result<Vec<u8>, TransportError>>,
    stop: &AtomicBool,
) {
    let mut reader = MessageReader::new();
    let mut pending: Option<Result<Vec<u8>, TransportError>> = None;
    while !stop.load(Ordering::Relaxed) {
        if let Some(item) = pending.take() {
            let last = item.is_err();
            match tx.try_send(item) {
                Ok(()) if last => return,
                Ok(()) => {}
                Err(TrySendError::Full(item)) => {
                    pending = Some(item);
                    std::thread::sleep(std::time::Duration::from_millis(POLL_INTERVAL_MS));
                    continue;
                }
                Err(TrySendError::Disconnected(_)) => return,
            }
        }
        pending = match reader.next(&mut stream) {
            ReadOutcome::Idle => None,
            ReadOutcome::Message(RelayMessage::Deliver { frame }) => Some(Ok(frame)),
            ReadOutcome::Message(_) | ReadOutcome::Violation => {
                Some(Err(TransportError::ProtocolViolation))
            }
            ReadOutcome::Closed => Some(Err(TransportError::Disconnected)),
        };
    }
}

impl Transport for TcpTransport {
    fn send(
        &mut self,
        to: &Address,
        token: Option<&RelayToken>,
        frame: &[u8],
    ) -> Result<(), TransportError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        if frame.len() > MAX_FRAME_LEN {
            return Err(TransportError::FrameTooLarge {
                len: frame.len(),
                max: MAX_FRAME_LEN,
            });
        }
        let message = RelayMessage::SendTo {
            to: to.clone(),
            token: token.cloned(),
            frame: frame.to_vec(),
        };
        write_message(&mut self.writer, &message).inspect_err(|e| {
            if *e == TransportError::Disconnected {
                self.failed = Some(*e);
            }
        })
    }

    fn recv(&mut self) -> Result<Option<Vec<u8>>, TransportError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        match self.inbox.try_recv() {
            Ok(Ok(frame)) => Ok(Some(frame)),
            Ok(Err(e)) => {
                self.failed = Some(e);
                Err(e)
            }
            Err(TryRecvError::Empty) => Ok(None),
            Err(TryRecvError::Disconnected) => {
                self.failed = Some(TransportError::Disconnected);
                Err(TransportError::Disconnected)
            }
        }
    }
}

impl Drop for TcpTransport {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.writer.shutdown(Shutdown::Both);
        if let Some(handle) = self.reader.take() {
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_messages_round_trip_strictly() {
        let a = Address::new(b"box").unwrap();
        for m in [
            RelayMessage::Register {
                mailbox: a.clone(),
                verifier: None,
            },
            RelayMessage::Register {
                mailbox: a.clone(),
                verifier: Some([9; 32]),
            },
            RelayMessage::SendTo {
                to: a.clone(),
                token: None,
                frame: vec![1, 2, 3],
            },
            RelayMessage::SendTo {
                to: a.clone(),
                token: Some(RelayToken::new([5; RELAY_TOKEN_LEN])),
                frame: vec![1, 2, 3],
            },
            RelayMessage::Deliver { frame: vec![] },
        ] {
            let bytes = m.to_bytes().unwrap();
            assert_eq!(RelayMessage::from_bytes(&bytes).unwrap(), m);
            let mut long = bytes.clone();
            long.push(0);
            assert!(RelayMessage::from_bytes(&long).is_err());
            for cut in 0..bytes.len() {
                assert!(RelayMessage::from_bytes(&bytes[..cut]).is_err());
            }
        }
        assert_eq!(
            RelayMessage::Register {
                mailbox: a.clone(),
                verifier: None
            }
            .to_bytes()
            .unwrap(),
            [2, 1, 3, b'b', b'o', b'x', 0]
        );
        assert!(RelayMessage::from_bytes(&[2, 9]).is_err());
        assert!(
            RelayMessage::from_bytes(&[1, 1, 1, b'b', 0]).is_err(),
            "version 1"
        );
        assert!(
            RelayMessage::from_bytes(&[2, 1, 1, b'b', 2]).is_err(),
            "flag"
        );
        let shown = format!(
            "{:?}",
            RelayMessage::SendTo {
                to: a,
                token: Some(RelayToken::new([0x5a; RELAY_TOKEN_LEN])),
                frame: vec![7; 3]
            }
        );
        assert!(!shown.contains("box"));
        assert!(!shown.contains("90"), "the token is not printed");
    }
}
