//! The relay server: accepts TCP and WebSocket connections and serves the protocol of
//! [`crate::protocol`] over a [`RelayStore`].
//!
//! A connection is admitted within the relay-wide and per-source-address limits
//! (`admission.rs`); over TCP each message is length-prefixed, over WebSocket it is one
//! binary message (`framing.rs`); the request handling is the same. Each connection gets a
//! fresh challenge, a request rate limit and a writer task; requests are answered in order.
//! A connection that authenticates as a mailbox's owner also gets a delivery task, which
//! sends every stored frame of the mailbox and then each new one as it is committed. It is
//! woken by a content-free signal keyed by the mailbox's [`WakeKey`]: raised in this process after a commit, and by [`Relay::wake`] for commits of
//! other relay processes (the PostgreSQL listener, [`crate::postgres::spawn_wake_listener`]).
//! A frame is deleted only when the owner confirms it. When a frame is committed through this
//! process and no owner connection of this process is subscribed to its mailbox, the
//! configured [`PushHook`] is called with the mailbox's push registration (at most once per
//! [`PUSH_INTERVAL`] per mailbox).

use core::fmt;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use confide_crypto::identity::IdentityPublicKey;
use confide_crypto::kdf::sha256;
use confide_crypto::signing::{Signature, VerifyingKey};
use confide_sealed::{ServerKey, TokenVerifier, relay_check};
use confide_transport::Address;
use confide_wire::{Duration, Timestamp};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::admission::Admission;
use crate::bucket::{Bucket, per_minute};
use crate::consts::{
    BLOB_DATA_LEN, BLOB_RETENTION, CHALLENGE_LEN, CONNECTION_REQUEST_BURST,
    CONNECTION_REQUESTS_PER_SECOND, DELIVERED_MEMORY, DELIVERY_BATCH, IDLE_TIMEOUT,
    INCOMPLETE_BLOB_RETENTION, MAILBOX_SEND_BURST, MAILBOX_SENDS_PER_SECOND,
    MAX_BLOB_BYTES_IN_FLIGHT_PER_OWNER, MAX_BLOB_BYTES_PER_OWNER, MAX_BLOB_LEN, MAX_BLOB_PUT_LEN,
    MAX_BLOBS_PER_OWNER, MAX_BYTES_PER_MAILBOX, MAX_CONNECTIONS, MAX_CONNECTIONS_PER_IP,
    MAX_FRAMES_PER_MAILBOX, MAX_ONE_TIME_BUNDLES, MAX_PUSH_URL_LEN, MAX_TRACKED_PUSHES,
    MAX_TRACKED_TARGETS, NEW_CONNECTIONS_PER_IP_PER_MINUTE, OUTBOUND_QUEUE, PUSH_INTERVAL,
    SWEEP_INTERVAL, UNDELIVERED_RETENTION, WEBSOCKET_HANDSHAKE_TIMEOUT,
};
use crate::framing::{Incoming, Outgoing, Reader, Violation, websocket_config};
use crate::issuer::issue_client_certificate;
use crate::protocol::{
    ErrorCode, Request, RequestBody, ServerMessage, authenticate_message, create_message,
    frame_id_of, frame_message, frame_payload,
};
use crate::push::{PushHook, PushRegistration};
use crate::store::{
    BlobLimits, BlobPut, BlobRead, CreateOutcome, DeleteBlobOutcome, MailboxLimits, PutBlobOutcome,
    RelayStore, StoreError, StoreOutcome, UploadOutcome,
};
use crate::wake::{Wake, WakeKey};

/// The relay's limits; [`Limits::default`] is the named constants of [`crate::consts`]. An
/// operator (or a test) may lower them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// [`MAX_FRAMES_PER_MAILBOX`].
    pub max_frames_per_mailbox: u64,
    /// [`MAX_BYTES_PER_MAILBOX`].
    pub max_bytes_per_mailbox: u64,
    /// [`MAX_ONE_TIME_BUNDLES`].
    pub max_one_time_bundles: usize,
    /// [`UNDELIVERED_RETENTION`].
    pub undelivered_retention: Duration,
    /// [`DELIVERED_MEMORY`].
    pub delivered_memory: Duration,
    /// [`CONNECTION_REQUEST_BURST`].
    pub connection_request_burst: u32,
    /// [`CONNECTION_REQUESTS_PER_SECOND`].
    pub connection_requests_per_second: u32,
    /// [`MAILBOX_SEND_BURST`].
    pub mailbox_send_burst: u32,
    /// [`MAILBOX_SENDS_PER_SECOND`].
    pub mailbox_sends_per_second: u32,
    /// [`MAX_CONNECTIONS`].
    pub max_connections: usize,
    /// [`MAX_CONNECTIONS_PER_IP`].
    pub max_connections_per_ip: usize,
    /// [`NEW_CONNECTIONS_PER_IP_PER_MINUTE`].
    pub new_connections_per_ip_per_minute: u32,
    /// [`IDLE_TIMEOUT`].
    pub idle_timeout: Duration,
    /// [`MAX_BLOB_BYTES_PER_OWNER`].
    pub max_blob_bytes_per_owner: u64,
    /// [`MAX_BLOB_BYTES_IN_FLIGHT_PER_OWNER`].
    pub max_blob_bytes_in_flight_per_owner: u64,
    /// [`MAX_BLOBS_PER_OWNER`].
    pub max_blobs_per_owner: u64,
    /// [`BLOB_RETENTION`].
    pub blob_retention: Duration,
    /// [`INCOMPLETE_BLOB_RETENTION`].
    pub incomplete_blob_retention: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frames_per_mailbox: MAX_FRAMES_PER_MAILBOX as u64,
            max_bytes_per_mailbox: MAX_BYTES_PER_MAILBOX,
            max_one_time_bundles: MAX_ONE_TIME_BUNDLES,
            undelivered_retention: UNDELIVERED_RETENTION,
            delivered_memory: DELIVERED_MEMORY,
            connection_request_burst: CONNECTION_REQUEST_BURST,
            connection_requests_per_second: CONNECTION_REQUESTS_PER_SECOND,
            mailbox_send_burst: MAILBOX_SEND_BURST,
            mailbox_sends_per_second: MAILBOX_SENDS_PER_SECOND,
            max_connections: MAX_CONNECTIONS,
            max_connections_per_ip: MAX_CONNECTIONS_PER_IP,
            new_connections_per_ip_per_minute: NEW_CONNECTIONS_PER_IP_PER_MINUTE,
            idle_timeout: IDLE_TIMEOUT,
            max_blob_bytes_per_owner: MAX_BLOB_BYTES_PER_OWNER,
            max_blob_bytes_in_flight_per_owner: MAX_BLOB_BYTES_IN_FLIGHT_PER_OWNER,
            max_blobs_per_owner: MAX_BLOBS_PER_OWNER,
            blob_retention: BLOB_RETENTION,
            incomplete_blob_retention: INCOMPLETE_BLOB_RETENTION,
        }
    }
}

impl Limits {
    /// The limits the blob store enforces.
    #[must_use]
    pub fn blobs(&self) -> BlobLimits {
        BlobLimits {
            max_bytes_per_owner: self.max_blob_bytes_per_owner,
            max_bytes_in_flight_per_owner: self.max_blob_bytes_in_flight_per_owner,
            max_blobs_per_owner: self.max_blobs_per_owner,
            retention: self.blob_retention,
            incomplete_retention: self.incomplete_blob_retention,
        }
    }
}

impl Limits {
    /// One line per limit, `name = value`, for the relay to print at start.
    #[must_use]
    pub fn describe(&self) -> Vec<String> {
        let Self {
            max_frames_per_mailbox,
            max_bytes_per_mailbox,
            max_one_time_bundles,
            undelivered_retention,
            delivered_memory,
            connection_request_burst,
            connection_requests_per_second,
            mailbox_send_burst,
            mailbox_sends_per_second,
            max_connections,
            max_connections_per_ip,
            new_connections_per_ip_per_minute,
            idle_timeout,
            max_blob_bytes_per_owner,
            max_blob_bytes_in_flight_per_owner,
            max_blobs_per_owner,
            blob_retention,
            incomplete_blob_retention,
        } = self;
        vec![
            format!("max_frames_per_mailbox = {max_frames_per_mailbox}"),
            format!("max_bytes_per_mailbox = {max_bytes_per_mailbox}"),
            format!("max_one_time_bundles = {max_one_time_bundles}"),
            format!(
                "undelivered_retention_ms = {}",
                undelivered_retention.as_millis()
            ),
            format!("delivered_memory_ms = {}", delivered_memory.as_millis()),
            format!("connection_request_burst = {connection_request_burst}"),
            format!("connection_requests_per_second = {connection_requests_per_second}"),
            format!("mailbox_send_burst = {mailbox_send_burst}"),
            format!("mailbox_sends_per_second = {mailbox_sends_per_second}"),
            format!("max_connections = {max_connections}"),
            format!("max_connections_per_ip = {max_connections_per_ip}"),
            format!("new_connections_per_ip_per_minute = {new_connections_per_ip_per_minute}"),
            format!("idle_timeout_ms = {}", idle_timeout.as_millis()),
            format!(
                "max_frame_len = {}",
                confide_transport::consts::MAX_FRAME_LEN
            ),
            format!("max_message_len = {}", crate::consts::MAX_MESSAGE_LEN),
            format!(
                "max_websocket_message_len = {}",
                crate::consts::MAX_WEBSOCKET_MESSAGE_LEN
            ),
            format!(
                "websocket_handshake_timeout_ms = {}",
                WEBSOCKET_HANDSHAKE_TIMEOUT.as_millis()
            ),
            format!("max_push_url_len = {MAX_PUSH_URL_LEN}"),
            format!("push_interval_ms = {}", PUSH_INTERVAL.as_millis()),
            format!(
                "push_timeout_ms = {}",
                crate::consts::PUSH_TIMEOUT.as_millis()
            ),
            format!(
                "max_pushes_in_flight = {}",
                crate::consts::MAX_PUSHES_IN_FLIGHT
            ),
            format!(
                "wake_listener_backoff_ms = {}..{}",
                crate::consts::WAKE_LISTENER_BACKOFF.as_millis(),
                crate::consts::WAKE_LISTENER_MAX_BACKOFF.as_millis()
            ),
            format!(
                "wake_listener_check_ms = {}",
                crate::consts::WAKE_LISTENER_CHECK.as_millis()
            ),
            format!("max_blob_len = {MAX_BLOB_LEN}"),
            format!("max_blob_put_len = {MAX_BLOB_PUT_LEN}"),
            format!("blob_data_len = {BLOB_DATA_LEN}"),
            format!("max_blob_bytes_per_owner = {max_blob_bytes_per_owner}"),
            format!("max_blob_bytes_in_flight_per_owner = {max_blob_bytes_in_flight_per_owner}"),
            format!("max_blobs_per_owner = {max_blobs_per_owner}"),
            format!("blob_retention_ms = {}", blob_retention.as_millis()),
            format!(
                "incomplete_blob_retention_ms = {}",
                incomplete_blob_retention.as_millis()
            ),
        ]
    }
}

/// How the relay is set up.
#[derive(Clone, Default)]
pub struct RelayConfig {
    /// Its limits.
    pub limits: Limits,
    /// The server key that issues client certificates; `None`: certificate requests are
    /// refused with [`ErrorCode::IssuerUnavailable`].
    pub issuer: Option<ServerKey>,
    /// How owners without a connection are woken; `None`: push registrations are refused
    /// with [`ErrorCode::PushUnavailable`].
    pub push: Option<Arc<dyn PushHook>>,
}

impl fmt::Debug for RelayConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            limits,
            issuer,
            push,
        } = self;
        f.debug_struct("RelayConfig")
            .field("limits", limits)
            .field("has_issuer", &issuer.is_some())
            .field("has_push", &push.is_some())
            .finish()
    }
}

/// Counters of what the relay did: kinds and counts only.
#[derive(Debug, Default)]
pub struct RelayStats {
    connections: AtomicU64,
    connections_refused: AtomicU64,
    requests: AtomicU64,
    frames_stored: AtomicU64,
    receipts: AtomicU64,
    frames_pushed: AtomicU64,
    frames_confirmed: AtomicU64,
    refusals: AtomicU64,
    framing_violations: AtomicU64,
    frames_expired: AtomicU64,
    pushes: AtomicU64,
    blob_puts: AtomicU64,
    blobs_deleted: AtomicU64,
    blobs_expired: AtomicU64,
}

/// A snapshot of [`RelayStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StatsSnapshot {
    /// Connections accepted (admitted or not).
    pub connections: u64,
    /// Connections refused on accept (`TooManyConnections`).
    pub connections_refused: u64,
    /// Requests received (well-formed or not).
    pub requests: u64,
    /// Frames committed as new copies.
    pub frames_stored: u64,
    /// Relay receipts sent.
    pub receipts: u64,
    /// Frames pushed to owners.
    pub frames_pushed: u64,
    /// Frames deleted on the owner's confirmation.
    pub frames_confirmed: u64,
    /// Requests refused with an error code.
    pub refusals: u64,
    /// Connections closed for a framing violation.
    pub framing_violations: u64,
    /// Undelivered frames deleted past their retention.
    pub frames_expired: u64,
    /// Pushes handed to the push hook.
    pub pushes: u64,
    /// Blob puts committed (receipts sent).
    pub blob_puts: u64,
    /// Blobs deleted with their delete token.
    pub blobs_deleted: u64,
    /// Blobs deleted past their retention.
    pub blobs_expired: u64,
}

fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

impl RelayStats {
    /// The current counts.
    #[must_use]
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            connections: get(&self.connections),
            connections_refused: get(&self.connections_refused),
            requests: get(&self.requests),
            frames_stored: get(&self.frames_stored),
            receipts: get(&self.receipts),
            frames_pushed: get(&self.frames_pushed),
            frames_confirmed: get(&self.frames_confirmed),
            refusals: get(&self.refusals),
            framing_violations: get(&self.framing_violations),
            frames_expired: get(&self.frames_expired),
            pushes: get(&self.pushes),
            blob_puts: get(&self.blob_puts),
            blobs_deleted: get(&self.blobs_deleted),
            blobs_expired: get(&self.blobs_expired),
        }
    }
}

/// Content-free wake-ups for connected owners: one watch channel per mailbox (by its
/// [`WakeKey`]) with a listener.
#[derive(Debug, Default)]
struct Hub {
    mailboxes: Mutex<HashMap<WakeKey, watch::Sender<u64>>>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // No code panics while holding these locks; a poisoned map is still consistent.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Hub {
    fn subscribe(&self, key: WakeKey) -> watch::Receiver<u64> {
        lock(&self.mailboxes)
            .entry(key)
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    fn notify(&self, key: &WakeKey) {
        let mut map = lock(&self.mailboxes);
        if let Some(sender) = map.get(key) {
            if sender.receiver_count() == 0 {
                map.remove(key);
            } else {
                sender.send_modify(|v| *v = v.wrapping_add(1));
            }
        }
    }

    fn notify_all(&self) {
        let mut map = lock(&self.mailboxes);
        map.retain(|_, s| s.receiver_count() > 0);
        for sender in map.values() {
            sender.send_modify(|v| *v = v.wrapping_add(1));
        }
    }

    fn has_subscriber(&self, key: &WakeKey) -> bool {
        lock(&self.mailboxes)
            .get(key)
            .is_some_and(|s| s.receiver_count() > 0)
    }

    fn prune(&self) {
        lock(&self.mailboxes).retain(|_, s| s.receiver_count() > 0);
    }
}

/// The relay: a store, its configuration, and the state shared by its connections.
pub struct Relay {
    store: Arc<dyn RelayStore>,
    config: RelayConfig,
    hub: Hub,
    stats: RelayStats,
    /// Per-mailbox buckets: sends to it (`0x00 || address`) and bundle fetches of it
    /// (`0x01 || address`).
    target_buckets: Mutex<HashMap<Vec<u8>, Bucket>>,
    /// When each mailbox was last pushed (for [`PUSH_INTERVAL`]).
    last_push: Mutex<HashMap<WakeKey, Instant>>,
    /// Connections open, relay-wide and per source address.
    admission: Arc<Admission>,
}

impl fmt::Debug for Relay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            store: _,
            config,
            hub: _,
            stats,
            target_buckets: _,
            last_push: _,
            admission: _,
        } = self;
        f.debug_struct("Relay")
            .field("config", config)
            .field("stats", &stats.snapshot())
            .finish_non_exhaustive()
    }
}

/// The wall clock as a [`Timestamp`].
#[must_use]
pub fn wall_clock() -> Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    Timestamp::from_millis(ms)
}

fn to_std(d: Duration) -> std::time::Duration {
    std::time::Duration::from_millis(d.as_millis())
}

fn encode(msg: &ServerMessage) -> Option<Vec<u8>> {
    // Every message the relay builds is within its limits; one that is not is dropped (and
    // the client's request times out) rather than sent malformed.
    msg.to_bytes().ok()
}

/// Which protocol a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    /// Length-prefixed messages on TCP.
    Tcp,
    /// One binary WebSocket message per protocol message.
    WebSocket,
}

/// What a WebSocket client refused on accept reads instead of a handshake response.
const WEBSOCKET_REFUSAL: &[u8] =
    b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// How long a refused connection is kept to deliver its refusal before it is dropped.
///
/// Reason: closing a socket whose peer has sent bytes we did not read (a WebSocket client's
/// upgrade request) resets it, and the reset can destroy the refusal before the client reads
/// it; reading for a moment first lets the refusal arrive. One second is plenty on a live
/// connection and bounds what a flood of refused connections holds.
const REFUSAL_LINGER: std::time::Duration = std::time::Duration::from_secs(1);

/// Most refused connections lingering at once ([`REFUSAL_LINGER`]); past it they are
/// dropped at once.
///
/// Reason: a flood of refused connections must not hold file descriptors or tasks.
const MAX_LINGERING_REFUSALS: usize = 64;

/// Sends the refusal (`TooManyConnections` on TCP, HTTP 429 on WebSocket), then closes after
/// a short linger if a slot is free, at once otherwise.
fn refuse(stream: TcpStream, transport: Transport, lingering: &Arc<tokio::sync::Semaphore>) {
    let refusal = match transport {
        Transport::Tcp => encode(&ServerMessage::Error {
            id: 0,
            code: ErrorCode::TooManyConnections,
        })
        .map(|b| frame_message(&b))
        .unwrap_or_default(),
        Transport::WebSocket => WEBSOCKET_REFUSAL.to_vec(),
    };
    let Ok(slot) = Arc::clone(lingering).try_acquire_owned() else {
        let _ = stream.try_write(&refusal);
        return;
    };
    tokio::spawn(async move {
        let mut stream = stream;
        let _ = tokio::time::timeout(REFUSAL_LINGER, async {
            use tokio::io::AsyncReadExt;
            stream.write_all(&refusal).await?;
            stream.shutdown().await?;
            let mut sink = [0u8; 1024];
            while stream.read(&mut sink).await? > 0 {}
            Ok::<(), std::io::Error>(())
        })
        .await;
        drop(slot);
    });
}

impl Relay {
    /// A relay over `store`.
    #[must_use]
    pub fn new(store: Arc<dyn RelayStore>, config: RelayConfig) -> Arc<Self> {
        Arc::new(Self {
            store,
            hub: Hub::default(),
            stats: RelayStats::default(),
            target_buckets: Mutex::new(HashMap::new()),
            last_push: Mutex::new(HashMap::new()),
            admission: Admission::new(config.limits.max_connections),
            config,
        })
    }

    /// Wakes this process's owner connections for a frame committed elsewhere (another relay
    /// process sharing the database): [`Wake::Mailbox`] re-reads that mailbox if an owner of
    /// it is connected here, [`Wake::All`] re-reads every connected owner's mailbox. Costs a
    /// query per woken connection and never delivers a frame twice on one connection.
    pub fn wake(&self, wake: Wake) {
        match wake {
            Wake::Mailbox(key) => self.hub.notify(&key),
            Wake::All => self.hub.notify_all(),
        }
    }

    /// After a frame for `key`'s mailbox was committed through this process: calls the push
    /// hook if no owner connection here is subscribed, the mailbox has a registration, and
    /// it was not pushed within [`PUSH_INTERVAL`].
    fn push_if_offline(&self, key: &WakeKey, registration: Option<Vec<u8>>) {
        let (Some(hook), Some(registration)) = (self.config.push.as_ref(), registration) else {
            return;
        };
        if self.hub.has_subscriber(key) {
            return;
        }
        let now = Instant::now();
        let interval = to_std(PUSH_INTERVAL);
        {
            let mut last = lock(&self.last_push);
            if last
                .get(key)
                .is_some_and(|t| now.saturating_duration_since(*t) < interval)
            {
                return;
            }
            if last.len() >= MAX_TRACKED_PUSHES && !last.contains_key(key) {
                last.retain(|_, t| now.saturating_duration_since(*t) < interval);
                if last.len() >= MAX_TRACKED_PUSHES {
                    return;
                }
            }
            last.insert(*key, now);
        }
        bump(&self.stats.pushes, 1);
        hook.push(&PushRegistration::new(registration));
    }

    /// The relay's counters.
    #[must_use]
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// Serves `listener` (the length-prefixed protocol on TCP) until the task is dropped (it
    /// never returns); also runs the retention sweeper.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        self.serve_listeners(Some(listener), None).await;
    }

    /// Serves the protocol on TCP (`tcp`) and on WebSocket (`websocket`: one binary message
    /// per protocol message, no TLS), with one set of connection limits, until the task is
    /// dropped (it never returns); also runs the retention sweeper.
    pub async fn serve_listeners(
        self: Arc<Self>,
        tcp: Option<TcpListener>,
        websocket: Option<TcpListener>,
    ) {
        let sweeper = tokio::spawn(Arc::clone(&self).sweep_loop());
        let _sweeper = SweeperGuard(sweeper);
        let lingering = Arc::new(tokio::sync::Semaphore::new(MAX_LINGERING_REFUSALS));
        let tcp_loop = Arc::clone(&self).accept_loop(tcp, Transport::Tcp, Arc::clone(&lingering));
        let ws_loop = Arc::clone(&self).accept_loop(websocket, Transport::WebSocket, lingering);
        tokio::join!(tcp_loop, ws_loop);
    }

    async fn accept_loop(
        self: Arc<Self>,
        listener: Option<TcpListener>,
        transport: Transport,
        lingering: Arc<tokio::sync::Semaphore>,
    ) {
        let Some(listener) = listener else {
            return std::future::pending().await;
        };
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    // Out of file descriptors and the like pass; wait instead of spinning.
                    tracing::warn!(kind = ?e.kind(), "accept failed");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                    continue;
                }
            };
            bump(&self.stats.connections, 1);
            let Some(admitted) = self.admission.admit(peer.ip(), &self.config.limits) else {
                // Over a connection limit: say so and close. The address is not logged.
                bump(&self.stats.connections_refused, 1);
                tracing::debug!("connection refused: connection limit");
                refuse(stream, transport, &lingering);
                continue;
            };
            let relay = Arc::clone(&self);
            tokio::spawn(async move {
                match transport {
                    Transport::Tcp => relay.tcp_connection(stream).await,
                    Transport::WebSocket => relay.websocket_connection(stream).await,
                }
                drop(admitted);
            });
        }
    }

    async fn sweep_loop(self: Arc<Self>) {
        loop {
            let limits = self.config.limits;
            let swept = self
                .db(move |s| {
                    s.sweep(
                        wall_clock(),
                        limits.undelivered_retention,
                        limits.delivered_memory,
                    )
                })
                .await;
            match swept {
                Ok(counts) => {
                    bump(&self.stats.frames_expired, counts.expired_frames);
                    tracing::debug!(
                        expired = counts.expired_frames,
                        forgotten = counts.forgotten_deliveries,
                        "sweep"
                    );
                }
                Err(e) => tracing::warn!(error = %e, "sweep failed"),
            }
            let blob_limits = limits.blobs();
            match self
                .db(move |s| s.sweep_blobs(wall_clock(), &blob_limits))
                .await
            {
                Ok(n) => bump(&self.stats.blobs_expired, n),
                Err(e) => tracing::warn!(error = %e, "blob sweep failed"),
            }
            self.hub.prune();
            let now = Instant::now();
            let interval = to_std(PUSH_INTERVAL);
            lock(&self.last_push).retain(|_, t| now.saturating_duration_since(*t) < interval);
            lock(&self.target_buckets).retain(|_, b| {
                !b.is_full(
                    limits.mailbox_send_burst,
                    per_minute(limits.mailbox_sends_per_second),
                    now,
                )
            });
            self.admission.prune(&limits);
            tokio::time::sleep(to_std(SWEEP_INTERVAL)).await;
        }
    }

    /// Runs one store call on the blocking pool.
    async fn db<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn RelayStore) -> Result<T, StoreError> + Send + 'static,
    {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || f(store.as_ref()))
            .await
            .unwrap_or(Err(StoreError::Database))
    }

    fn take_target(&self, kind: u8, address: &[u8]) -> bool {
        let limits = &self.config.limits;
        let mut key = Vec::with_capacity(address.len().saturating_add(1));
        key.push(kind);
        key.extend_from_slice(address);
        let now = Instant::now();
        let (burst, rate) = (
            limits.mailbox_send_burst,
            per_minute(limits.mailbox_sends_per_second),
        );
        let mut buckets = lock(&self.target_buckets);
        if buckets.len() >= MAX_TRACKED_TARGETS && !buckets.contains_key(&key) {
            // A full bucket carries no information: forget those first.
            buckets.retain(|_, b| !b.is_full(burst, rate, now));
            if buckets.len() >= MAX_TRACKED_TARGETS {
                return false;
            }
        }
        buckets
            .entry(key)
            .or_insert_with(|| Bucket::full(burst))
            .take(burst, rate, now)
    }

    async fn tcp_connection(self: Arc<Self>, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        let (tx, rx) = mpsc::channel::<Outgoing>(OUTBOUND_QUEUE);
        let writer = tokio::spawn(crate::framing::write_tcp(write, rx));
        self.connection(Reader::Tcp(read), tx, writer).await;
    }

    async fn websocket_connection(self: Arc<Self>, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let handshake =
            tokio_tungstenite::accept_async_with_config(stream, Some(websocket_config()));
        let ws = match tokio::time::timeout(to_std(WEBSOCKET_HANDSHAKE_TIMEOUT), handshake).await {
            Ok(Ok(ws)) => ws,
            Ok(Err(_)) | Err(_) => {
                tracing::debug!("websocket handshake failed or timed out");
                return;
            }
        };
        let (sink, stream) = ws.split();
        let (tx, rx) = mpsc::channel::<Outgoing>(OUTBOUND_QUEUE);
        let writer = tokio::spawn(crate::framing::write_websocket(sink, rx));
        self.connection(Reader::WebSocket(stream), tx, writer).await;
    }

    async fn connection(
        self: Arc<Self>,
        mut reader: Reader,
        tx: mpsc::Sender<Outgoing>,
        writer: JoinHandle<()>,
    ) {
        let mut challenge = [0u8; CHALLENGE_LEN];
        if getrandom::fill(&mut challenge).is_err() {
            tracing::warn!("no randomness for a challenge: connection closed");
            return;
        }
        let limits = self.config.limits;
        let mut conn = Connection {
            relay: Arc::clone(&self),
            tx,
            challenge,
            owner: None,
            bucket: Bucket::full(limits.connection_request_burst),
            delivery: None,
            stalled: false,
        };
        conn.push(&ServerMessage::Hello { challenge }).await;
        loop {
            match reader.next(to_std(limits.idle_timeout)).await {
                Incoming::Body(body) => {
                    conn.handle(&body).await;
                    if conn.stalled {
                        // The client stopped reading a blob download: drop the connection
                        // without waiting for its writer.
                        writer.abort();
                        break;
                    }
                }
                Incoming::Closed => break,
                Incoming::Violation(violation) => {
                    conn.framing_violation(violation).await;
                    break;
                }
            }
        }
        if let Some(d) = conn.delivery.take() {
            d.abort();
        }
        drop(conn);
        let _ = writer.await;
    }
}

/// Stops the sweeper when the serving task ends.
struct SweeperGuard(JoinHandle<()>);

impl Drop for SweeperGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How long the accept loop waits after a failed accept.
///
/// Reason: errors such as running out of file descriptors pass once connections close;
/// retrying at once would spin a core.
const ACCEPT_RETRY: std::time::Duration = std::time::Duration::from_millis(100);

/// One connection's state.
struct Connection {
    relay: Arc<Relay>,
    tx: mpsc::Sender<Outgoing>,
    challenge: [u8; CHALLENGE_LEN],
    /// The mailbox this connection is authenticated for.
    owner: Option<Address>,
    bucket: Bucket,
    delivery: Option<JoinHandle<()>>,
    /// A blob download could not queue a piece within the idle timeout: the client stopped
    /// reading, so the connection is closed.
    stalled: bool,
}

type Reply = Result<ServerMessage, ErrorCode>;

impl Connection {
    async fn push(&self, msg: &ServerMessage) {
        if let Some(bytes) = encode(msg) {
            let _ = self.tx.send(Outgoing::Body(bytes)).await;
        }
    }

    async fn framing_violation(&self, violation: Violation) {
        bump(&self.relay.stats.framing_violations, 1);
        tracing::debug!("framing violation: connection closed");
        self.push(&ServerMessage::Error {
            id: 0,
            code: ErrorCode::FramingViolation,
        })
        .await;
        let _ = self.tx.send(Outgoing::Close(violation)).await;
    }

    async fn handle(&mut self, body: &[u8]) {
        let stats = &self.relay.stats;
        bump(&stats.requests, 1);
        let decoded = Request::from_bytes(body);
        let id = match &decoded {
            Ok(r) => r.id,
            Err(e) => e.id,
        };
        let limits = self.relay.config.limits;
        let reply = if !self.bucket.take(
            limits.connection_request_burst,
            per_minute(limits.connection_requests_per_second),
            Instant::now(),
        ) {
            Err(ErrorCode::RateLimited)
        } else {
            match decoded {
                Ok(request) => self.serve(request).await,
                Err(e) => Err(e.code),
            }
        };
        if self.stalled {
            return;
        }
        let msg = match reply {
            Ok(msg) => msg,
            Err(code) => {
                bump(&self.relay.stats.refusals, 1);
                tracing::debug!(code = code.to_wire(), "request refused");
                ServerMessage::Error { id, code }
            }
        };
        self.push(&msg).await;
    }

    fn owner(&self) -> Result<Address, ErrorCode> {
        self.owner.clone().ok_or(ErrorCode::NotAuthenticated)
    }

    async fn db<T, F>(&self, f: F) -> Result<T, ErrorCode>
    where
        T: Send + 'static,
        F: FnOnce(&dyn RelayStore) -> Result<T, StoreError> + Send + 'static,
    {
        self.relay.db(f).await.map_err(|e| {
            tracing::warn!(error = %e, "storage failed");
            ErrorCode::Internal
        })
    }

    async fn serve(&mut self, request: Request) -> Reply {
        let Request { id, body } = request;
        match body {
            RequestBody::CreateMailbox {
                address,
                owner_key,
                verifier,
                signature,
            } => {
                if self.owner.is_some() {
                    return Err(ErrorCode::AlreadyAuthenticated);
                }
                let message =
                    create_message(&self.challenge, &address, &owner_key, verifier.as_ref());
                verify(&owner_key, &message, &signature)?;
                let addr = address.as_bytes().to_vec();
                let outcome = self
                    .db(move |s| {
                        let outcome =
                            s.create_mailbox(&addr, &owner_key, verifier.as_ref(), wall_clock())?;
                        if outcome == CreateOutcome::AlreadyYours {
                            s.set_verifier(&addr, verifier.as_ref())?;
                        }
                        Ok(outcome)
                    })
                    .await?;
                match outcome {
                    CreateOutcome::Taken => Err(ErrorCode::MailboxTaken),
                    CreateOutcome::Created | CreateOutcome::AlreadyYours => {
                        self.become_owner(address);
                        Ok(ServerMessage::Ok { id })
                    }
                }
            }
            RequestBody::Authenticate { address, signature } => {
                if self.owner.is_some() {
                    return Err(ErrorCode::AlreadyAuthenticated);
                }
                let addr = address.as_bytes().to_vec();
                let record = self
                    .db(move |s| s.mailbox(&addr))
                    .await?
                    .ok_or(ErrorCode::AuthenticationFailed)?;
                let message = authenticate_message(&self.challenge, &address);
                verify(&record.owner_key, &message, &signature)?;
                self.become_owner(address);
                Ok(ServerMessage::Ok { id })
            }
            RequestBody::Send { to, token, frame } => self.send(id, to, token, frame).await,
            RequestBody::Confirm { ids } => {
                let owner = self.owner()?;
                let ids: Vec<[u8; 16]> = ids.iter().map(|i| *i.as_bytes()).collect();
                let n = self
                    .db(move |s| s.confirm(owner.as_bytes(), &ids, wall_clock()))
                    .await?;
                bump(&self.relay.stats.frames_confirmed, n);
                Ok(ServerMessage::Ok { id })
            }
            RequestBody::SetVerifier { verifier } => {
                let owner = self.owner()?;
                self.db(move |s| s.set_verifier(owner.as_bytes(), verifier.as_ref()))
                    .await?;
                Ok(ServerMessage::Ok { id })
            }
            RequestBody::UploadBundles {
                one_time,
                last_resort,
            } => {
                let owner = self.owner()?;
                let max = self.relay.config.limits.max_one_time_bundles;
                let outcome = self
                    .db(move |s| {
                        s.upload_bundles(owner.as_bytes(), &one_time, last_resort.as_deref(), max)
                    })
                    .await?;
                match outcome {
                    UploadOutcome::Stored { .. } => Ok(ServerMessage::Ok { id }),
                    UploadOutcome::TooMany => Err(ErrorCode::TooManyBundles),
                }
            }
            RequestBody::FetchBundle { address } => {
                if !self.relay.take_target(1, address.as_bytes()) {
                    return Err(ErrorCode::RateLimited);
                }
                let (kind, bundle) = self
                    .db(move |s| s.take_bundle(address.as_bytes()))
                    .await?
                    .ok_or(ErrorCode::NoBundle)?;
                Ok(ServerMessage::Bundle { id, kind, bundle })
            }
            RequestBody::BundleCount => {
                let owner = self.owner()?;
                let (one_time, last_resort) =
                    self.db(move |s| s.bundle_count(owner.as_bytes())).await?;
                Ok(ServerMessage::BundleCount {
                    id,
                    one_time,
                    last_resort,
                })
            }
            RequestBody::RequestCertificate {
                device_id,
                identity,
            } => {
                let owner = self.owner()?;
                let server = self
                    .relay
                    .config
                    .issuer
                    .as_ref()
                    .ok_or(ErrorCode::IssuerUnavailable)?;
                let now = wall_clock();
                // An expired server key would only issue certificates nobody accepts.
                if server.certificate().expires_at() <= now {
                    return Err(ErrorCode::IssuerUnavailable);
                }
                let identity = IdentityPublicKey::from_bytes(&identity)
                    .map_err(|_| ErrorCode::InvalidIdentity)?;
                let cert =
                    issue_client_certificate(server, owner.as_bytes(), device_id, identity, now)
                        .map_err(|_| ErrorCode::InvalidIdentity)?;
                Ok(ServerMessage::Certificate {
                    id,
                    expires_at: cert.expires_at(),
                    certificate: cert.as_bytes().to_vec(),
                })
            }
            RequestBody::Ping => Ok(ServerMessage::Ok { id }),
            RequestBody::RegisterPush { url } => {
                let owner = self.owner()?;
                let url = if url.is_empty() {
                    None
                } else {
                    let hook = self
                        .relay
                        .config
                        .push
                        .as_ref()
                        .ok_or(ErrorCode::PushUnavailable)?;
                    if !hook.accepts(&url) {
                        return Err(ErrorCode::InvalidPushUrl);
                    }
                    Some(url)
                };
                self.db(move |s| s.set_push_url(owner.as_bytes(), url.as_deref()))
                    .await?;
                Ok(ServerMessage::Ok { id })
            }
            RequestBody::PutBlob {
                blob_id,
                offset,
                total_len,
                delete_token_hash,
                bytes,
            } => {
                let owner = self.owner()?;
                if total_len > MAX_BLOB_LEN {
                    return Err(ErrorCode::BlobTooLarge);
                }
                let limits = self.relay.config.limits.blobs();
                let outcome = self
                    .db(move |s| {
                        let put = BlobPut {
                            blob_id: blob_id.as_bytes(),
                            owner: owner.as_bytes(),
                            offset,
                            total_len,
                            delete_token_hash: &delete_token_hash,
                            bytes: &bytes,
                        };
                        s.put_blob(&put, wall_clock(), &limits)
                    })
                    .await?;
                match outcome {
                    PutBlobOutcome::Stored { stored_len } => {
                        bump(&self.relay.stats.blob_puts, 1);
                        Ok(ServerMessage::BlobStored { id, stored_len })
                    }
                    PutBlobOutcome::OffsetMismatch { stored_len } => {
                        Ok(self.blob_refused(id, stored_len))
                    }
                    PutBlobOutcome::TooLarge => Err(ErrorCode::BlobTooLarge),
                    PutBlobOutcome::Exists => Err(ErrorCode::BlobExists),
                    PutBlobOutcome::QuotaExceeded => Err(ErrorCode::BlobQuotaExceeded),
                }
            }
            RequestBody::BlobStatus { blob_id } => {
                let limits = self.relay.config.limits.blobs();
                let state = self
                    .db(move |s| s.blob_status(blob_id.as_bytes(), wall_clock(), &limits))
                    .await?
                    .ok_or(ErrorCode::NoSuchBlob)?;
                Ok(ServerMessage::BlobStatus {
                    id,
                    stored_len: state.stored_len,
                    total_len: state.total_len,
                })
            }
            RequestBody::GetBlob { blob_id, offset } => self.get_blob(id, blob_id, offset).await,
            RequestBody::DeleteBlob {
                blob_id,
                delete_token,
            } => {
                let limits = self.relay.config.limits.blobs();
                let hash = delete_token.hash();
                let outcome = self
                    .db(move |s| s.delete_blob(blob_id.as_bytes(), &hash, wall_clock(), &limits))
                    .await?;
                match outcome {
                    DeleteBlobOutcome::Deleted => {
                        bump(&self.relay.stats.blobs_deleted, 1);
                        Ok(ServerMessage::Ok { id })
                    }
                    DeleteBlobOutcome::NotFound => Err(ErrorCode::NoSuchBlob),
                    DeleteBlobOutcome::TokenRefused => Err(ErrorCode::DeleteTokenRefused),
                }
            }
        }
    }

    /// A refusal that carries the blob's stored length (counted like any refusal).
    fn blob_refused(&self, id: u32, stored_len: u64) -> ServerMessage {
        bump(&self.relay.stats.refusals, 1);
        ServerMessage::BlobRefused {
            id,
            code: ErrorCode::BlobOffsetMismatch,
            stored_len,
        }
    }

    /// Streams a complete blob from `offset` as `BlobData` pieces of at most
    /// [`BLOB_DATA_LEN`], reading one piece from the store per message; the last piece (or a
    /// refusal) is the reply. The outbound queue's backpressure bounds what is held.
    async fn get_blob(
        &mut self,
        id: u32,
        blob_id: confide_attachment::BlobId,
        offset: u64,
    ) -> Reply {
        let limits = self.relay.config.limits.blobs();
        let mut position = offset;
        loop {
            let at = position;
            let read = self
                .db(move |s| {
                    s.read_blob(blob_id.as_bytes(), at, BLOB_DATA_LEN, wall_clock(), &limits)
                })
                .await?;
            let (total_len, bytes) = match read {
                BlobRead::Data { total_len, bytes } => (total_len, bytes),
                BlobRead::NotFound => return Err(ErrorCode::NoSuchBlob),
                BlobRead::Incomplete => return Err(ErrorCode::BlobIncomplete),
                BlobRead::PastEnd { total_len } => return Ok(self.blob_refused(id, total_len)),
            };
            let next = position.saturating_add(bytes.len() as u64);
            let last = next >= total_len;
            if !last && bytes.is_empty() {
                // Cannot happen with a consistent store; never loop without progress.
                return Err(ErrorCode::Internal);
            }
            let piece = ServerMessage::BlobData {
                id,
                offset: position,
                last,
                bytes,
            };
            if last {
                return Ok(piece);
            }
            let Some(body) = encode(&piece) else {
                return Err(ErrorCode::Internal);
            };
            let idle = to_std(self.relay.config.limits.idle_timeout);
            let queued = tokio::time::timeout(idle, self.tx.send(Outgoing::Body(body))).await;
            if !matches!(queued, Ok(Ok(()))) {
                // The writer is gone, or the client has not read for the idle timeout.
                self.stalled = true;
                return Err(ErrorCode::Internal);
            }
            position = next;
        }
    }

    async fn send(
        &mut self,
        id: u32,
        to: Address,
        token: Option<confide_transport::RelayToken>,
        frame: Vec<u8>,
    ) -> Reply {
        let frame_id = frame_id_of(&frame).ok_or(ErrorCode::InvalidFrame)?;
        let addr = to.as_bytes().to_vec();
        let record = self
            .db(move |s| s.mailbox(&addr))
            .await?
            .ok_or(ErrorCode::NoSuchMailbox)?;
        if let Some(verifier) = record.verifier {
            let ok = token
                .as_ref()
                .is_some_and(|t| relay_check(&TokenVerifier::from_bytes(verifier), t.expose()));
            if !ok {
                return Err(ErrorCode::TokenRefused);
            }
        }
        if !self.relay.take_target(0, to.as_bytes()) {
            return Err(ErrorCode::RateLimited);
        }
        let digest = sha256(&[frame_payload(&frame)]);
        let limits = self.relay.config.limits;
        let mailbox_limits = MailboxLimits {
            max_frames: limits.max_frames_per_mailbox,
            max_bytes: limits.max_bytes_per_mailbox,
            delivered_memory: limits.delivered_memory,
        };
        let addr = to.as_bytes().to_vec();
        let fid = *frame_id.as_bytes();
        let outcome = self
            .db(move |s| s.store_frame(&addr, &fid, &digest, &frame, wall_clock(), &mailbox_limits))
            .await?;
        match outcome {
            StoreOutcome::Stored => {
                bump(&self.relay.stats.frames_stored, 1);
                let key = WakeKey::of(to.as_bytes());
                self.relay.hub.notify(&key);
                self.relay.push_if_offline(&key, record.push_url);
            }
            StoreOutcome::AlreadyStored | StoreOutcome::AlreadyDelivered => {}
            StoreOutcome::NoSuchMailbox => return Err(ErrorCode::NoSuchMailbox),
            StoreOutcome::MailboxFull => return Err(ErrorCode::MailboxFull),
            StoreOutcome::MailboxBytesFull => return Err(ErrorCode::MailboxBytesFull),
        }
        bump(&self.relay.stats.receipts, 1);
        Ok(ServerMessage::Stored { id, frame_id })
    }

    fn become_owner(&mut self, address: Address) {
        let relay = Arc::clone(&self.relay);
        let tx = self.tx.clone();
        let mailbox = address.as_bytes().to_vec();
        self.owner = Some(address);
        self.delivery = Some(tokio::spawn(deliver_loop(relay, mailbox, tx)));
    }
}

fn verify(key: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> Result<(), ErrorCode> {
    let key = VerifyingKey::from_bytes(key).map_err(|_| ErrorCode::AuthenticationFailed)?;
    key.verify(message, &Signature::from_bytes(*signature))
        .map_err(|_| ErrorCode::AuthenticationFailed)
}

/// Sends every stored frame of `mailbox`, then each new one, until the connection closes.
async fn deliver_loop(relay: Arc<Relay>, mailbox: Vec<u8>, tx: mpsc::Sender<Outgoing>) {
    // Subscribe before the first read, so a frame committed in between still wakes us.
    let mut wake = relay.hub.subscribe(WakeKey::of(&mailbox));
    let mut after = 0i64;
    loop {
        let addr = mailbox.clone();
        let batch = match relay
            .db(move |s| s.pending_frames(&addr, after, DELIVERY_BATCH))
            .await
        {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "reading a mailbox failed; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        let full = batch.len() == DELIVERY_BATCH;
        for stored in batch {
            after = stored.seq;
            let Some(bytes) = encode(&ServerMessage::Deliver {
                frame: stored.frame,
            }) else {
                continue;
            };
            if tx.send(Outgoing::Body(bytes)).await.is_err() {
                return;
            }
            bump(&relay.stats.frames_pushed, 1);
        }
        if !full && wake.changed().await.is_err() {
            return;
        }
    }
}
