//! Every limit of the relay, each with its reason. `docs/relay.md` lists them with their values.

use confide_transport::consts::{MAX_ADDRESS_LEN, MAX_FRAME_LEN, RELAY_TOKEN_LEN};
use confide_wire::Duration;

/// The protocol version byte that starts every relay message.
pub const PROTOCOL_VERSION: u8 = 1;

/// Length of the challenge the relay sends at connect.
///
/// Reason: 256 random bits are never repeated, so a signature made for one connection is
/// useless on any other.
pub const CHALLENGE_LEN: usize = 32;

/// Largest bundle (a one-time or last-resort prekey bundle, opaque) the directory stores.
///
/// Reason: a certified Confide bundle (identity key, signed X25519 prekey, ML-KEM-768 prekey of
/// 1,184 bytes, signatures, sender certificate) is about 2.5 KiB; 8 KiB leaves room for
/// growth while bounding what one upload can cost.
pub const MAX_BUNDLE_LEN: usize = 8 * 1024;

/// Most one-time bundles one upload request carries.
///
/// Reason: keeps one request under [`MAX_MESSAGE_LEN`] (100 x 8 KiB = 800 KiB); an owner
/// refills in several requests.
pub const MAX_BUNDLES_PER_UPLOAD: usize = 100;

/// Most one-time bundles the directory keeps for one mailbox.
///
/// Reason: bounds storage per mailbox (200 x 8 KiB = 1.6 MiB); an owner that polls its count
/// and refills needs far fewer (Confide endpoints publish a few dozen).
pub const MAX_ONE_TIME_BUNDLES: usize = 200;

/// Most frame ids one Confirm request carries.
///
/// Reason: bounds the request (1,024 x 16 bytes) and the transaction that deletes them.
pub const MAX_CONFIRM_IDS: usize = 1_024;

/// Largest relay message body (after the 4-byte length prefix), in either direction.
///
/// Reason: must hold a Send of the largest transport frame ([`MAX_FRAME_LEN`] plus address
/// and token) and an upload of [`MAX_BUNDLES_PER_UPLOAD`] bundles of [`MAX_BUNDLE_LEN`];
/// anything longer is a framing violation and closes the connection before it is read.
pub const MAX_MESSAGE_LEN: usize = 1024 * 1024;

/// Most frames stored, undelivered, for one mailbox; a Send beyond it is refused with
/// `MailboxFull`.
///
/// Reason: a mailbox receives from all its contacts; 10,000 frames is days of an active
/// counselor's traffic while offline, and each sender's delivery machine retransmits what was
/// refused once the owner has downloaded and confirmed.
pub const MAX_FRAMES_PER_MAILBOX: usize = 10_000;

/// Most bytes of frames stored, undelivered, for one mailbox; a Send beyond it is refused with
/// `MailboxBytesFull`.
///
/// Reason: with frames of up to [`MAX_FRAME_LEN`] (256 KiB), [`MAX_FRAMES_PER_MAILBOX`] alone
/// would allow 2.5 GiB; 64 MiB bounds the disk one mailbox can take.
pub const MAX_BYTES_PER_MAILBOX: u64 = 64 * 1024 * 1024;

/// How long an undelivered frame is kept before the relay deletes it unread.
///
/// Reason: equal to the transport's give-up time (`GIVE_UP_AFTER`, 7 days) and to the
/// retention senders assume (`RELAY_RETENTION_ASSUMED`): past it the sender has reported the
/// message as failed, so keeping it longer would deliver mail its sender gave up on.
pub const UNDELIVERED_RETENTION: Duration = confide_transport::consts::RELAY_RETENTION_ASSUMED;

/// How long the relay remembers (mailbox, frame id, SHA-256 of the payload) of a frame its
/// owner confirmed, to acknowledge an identical retransmission without delivering it again
/// (1 hour).
///
/// Reason: a copy that arrives soon after the owner confirmed the frame is a retransmission
/// racing the recipient's end-to-end acknowledgement, and delivering it would only cost the
/// owner a download. A copy that arrives later means the sender still lacks that
/// acknowledgement (it was lost, or the recipient's app never sent it): a relay receipt holds a
/// sender's retransmissions for 12 hours (`RELAY_RECEIPT_HOLD`), so such a copy is the sender
/// asking again, and it must reach the recipient, whose delivery machine recognises the
/// duplicate and acknowledges it again. Suppressing it for the sender's whole give-up time
/// would turn one lost acknowledgement into a false "delivery failed" a week later.
pub const DELIVERED_MEMORY: Duration = Duration::from_hours(1);

/// How often the relay deletes expired frames and forgets old delivery records.
///
/// Reason: retention is counted in days; a minute is precise enough and costs one small
/// transaction.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Requests a connection may make in a burst before it is rate limited.
///
/// Reason: a client reconnecting after a long absence confirms and sends in a burst (a
/// sender's outbox holds at most 1,000 frames, retransmitted over time); past the burst a
/// connection is held to [`CONNECTION_REQUESTS_PER_SECOND`].
pub const CONNECTION_REQUEST_BURST: u32 = 512;

/// Sustained requests per second one connection may make; more are refused `RateLimited`.
///
/// Reason: one connection must not monopolise the relay's single database writer; 200 per
/// second is far above what one person's device sends.
pub const CONNECTION_REQUESTS_PER_SECOND: u32 = 200;

/// Sends one mailbox (one delivery token) may receive in a burst, over all connections.
///
/// Reason: a token is shared by all of a mailbox's contacts, so this bounds how fast a leaked
/// token (or many anonymous connections) can fill one mailbox, without identifying senders.
pub const MAILBOX_SEND_BURST: u32 = 1_024;

/// Sustained sends per second one mailbox may receive; more are refused `RateLimited`.
///
/// Reason: see [`MAILBOX_SEND_BURST`]; 100 per second fills [`MAX_FRAMES_PER_MAILBOX`] in
/// no less than 100 seconds, ample for a counselor's busiest hour.
pub const MAILBOX_SENDS_PER_SECOND: u32 = 100;

/// How long a connection may stay silent before the relay closes it.
///
/// Reason: frees the resources of vanished clients (a phone that lost its network without
/// closing the socket); clients send a Ping well within it.
pub const IDLE_TIMEOUT: Duration = Duration::from_mins(5);

/// How long the relay waits for a message body once its length arrived.
///
/// Reason: a client that announces a long message and sends nothing (slowloris) must not
/// hold a connection's buffer for the whole idle timeout.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// Most per-mailbox rate buckets (sends to, and bundle fetches of, one address) tracked at
/// once; past it, full buckets are dropped, and if none is, a request for a new address is
/// refused `RateLimited`.
///
/// Reason: bundle fetches of made-up addresses would otherwise grow the table without bound
/// between two sweeps; 100,000 buckets take a few MiB.
pub const MAX_TRACKED_TARGETS: usize = 100_000;

/// Most connections served at once; further ones are refused on accept
/// (`TooManyConnections`, then closed).
///
/// Reason: bounds memory (each connection may buffer one [`MAX_MESSAGE_LEN`] message and
/// [`OUTBOUND_QUEUE`] messages to send).
pub const MAX_CONNECTIONS: usize = 4_096;

/// Most connections open at once from one source address (an IPv4 address, or an IPv6 /64,
/// [`IPV6_SOURCE_PREFIX_LEN`]); further ones are refused on accept (`TooManyConnections`).
///
/// Reason: one host must not take the whole [`MAX_CONNECTIONS`] (at 128, it takes at
/// least 32 sources to fill the relay), while the apps behind one carrier-grade NAT address
/// still fit: each app holds two connections (owner and anonymous sender), so 64 apps of one
/// public address can be connected at once.
pub const MAX_CONNECTIONS_PER_IP: usize = 128;

/// New connections one source address may open per minute (a token bucket holding one
/// minute's worth); further ones are refused on accept (`TooManyConnections`).
///
/// Reason: every accepted connection costs a task, a fresh random challenge and, over
/// WebSocket, an HTTP handshake; a client that reconnects in a loop must not turn that into a
/// flood. An app opens two connections per start and reconnects with exponential backoff from
/// 100 ms, so even the 64 apps of [`MAX_CONNECTIONS_PER_IP`] reconnecting together after a
/// relay restart (128 connections) fit in the burst, and a steady 4 per second is far above
/// what honest apps of one address need.
pub const NEW_CONNECTIONS_PER_IP_PER_MINUTE: u32 = 240;

/// The prefix length under which IPv6 source addresses count as one source for the per-IP
/// limits.
///
/// Reason: one subscriber gets at least a /64 and chooses the rest freely, so counting single
/// IPv6 addresses would not limit anybody.
pub const IPV6_SOURCE_PREFIX_LEN: u32 = 64;

/// Most source addresses whose connection counts and buckets are tracked at once; past it,
/// sources with no open connection and a full bucket are forgotten, and if none is, a
/// connection from a new source is refused (`TooManyConnections`).
///
/// Reason: connections from many addresses (an IPv6 attacker has plenty) must not grow the
/// table without bound between two sweeps; 100,000 entries take a few MiB.
pub const MAX_TRACKED_IPS: usize = 100_000;

/// Largest WebSocket message (and frame) the relay reads: one protocol message body.
///
/// Reason: over WebSocket each protocol message is one binary message without the 4-byte
/// length prefix, so the bound is the protocol's own [`MAX_MESSAGE_LEN`]; the WebSocket
/// library refuses a longer frame from its header, before buffering it.
pub const MAX_WEBSOCKET_MESSAGE_LEN: usize = MAX_MESSAGE_LEN;

/// How long a WebSocket client may take to complete its opening handshake (the HTTP upgrade
/// request) after the TCP connection is accepted.
///
/// Reason: a client that opens a connection and sends its request slowly (slowloris) must
/// not hold a connection slot; the same bound as [`BODY_TIMEOUT`].
pub const WEBSOCKET_HANDSHAKE_TIMEOUT: Duration = BODY_TIMEOUT;

/// Messages queued to one connection's writer before the relay waits for the socket.
///
/// Reason: backpressure; a slow reader slows its own deliveries down, not the relay.
pub const OUTBOUND_QUEUE: usize = 64;

/// Frames fetched from the database per delivery step.
///
/// Reason: bounds memory per connection while a large mailbox drains.
pub const DELIVERY_BATCH: usize = 32;

/// Lifetime of a client certificate issued over the protocol.
///
/// Reason: short-lived anonymous certificates need no revocation list: a client renews
/// daily (the same request), and one that stops renewing stops being accepted within a day.
pub const CLIENT_CERTIFICATE_LIFETIME: Duration = Duration::from_hours(24);

/// Byte length of an address on the wire: one length byte plus at most this many bytes.
pub const MAX_ADDRESS: usize = MAX_ADDRESS_LEN;

/// Length of a delivery token on the wire.
pub const TOKEN_LEN: usize = RELAY_TOKEN_LEN;

/// Largest transport frame a Send carries (the transport's own maximum).
pub const MAX_SEND_FRAME_LEN: usize = MAX_FRAME_LEN;

/// Longest push URL an owner may register (`RegisterPush`), in bytes.
///
/// Reason: a push gateway's URL with a per-device registration path fits in a few hundred
/// bytes; the bound keeps the request, the stored column and the HTTP request line small.
pub const MAX_PUSH_URL_LEN: usize = 512;

/// Shortest time between two pushes for one mailbox, per relay process; pushes inside it are
/// dropped (the owner already has a wake-up pending).
///
/// Reason: one wake-up makes the app connect and download everything waiting, so a burst of
/// frames to an offline owner needs one push, and a sender cannot turn a stream of frames
/// into a stream of requests to the push gateway.
pub const PUSH_INTERVAL: Duration = Duration::from_secs(10);

/// How long one push (connect, send the request, read the status line) may take before it
/// is abandoned.
///
/// Reason: pushes run on their own tasks and never hold up a Send, but a gateway that stops
/// answering must not keep tasks and sockets open.
pub const PUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Most pushes in flight at once, per relay process; past it a push is dropped.
///
/// Reason: bounds the sockets and tasks a slow push gateway can hold.
pub const MAX_PUSHES_IN_FLIGHT: usize = 256;

/// Most mailboxes whose last push time is remembered for [`PUSH_INTERVAL`]; past it entries
/// older than the interval are forgotten, and if none is, the push is dropped.
///
/// Reason: bounds the table between two sweeps; 100,000 entries take a few MiB.
pub const MAX_TRACKED_PUSHES: usize = 100_000;

/// Longest status line read from a push gateway's answer.
///
/// Reason: the relay only logs the status class; a gateway that sends more is cut off.
pub const MAX_PUSH_RESPONSE_LINE: usize = 1_024;

/// The PostgreSQL `NOTIFY` channel on which relay processes sharing a database announce a
/// committed frame (the payload is a [`WAKE_KEY_LEN`]-byte key in hex, see
/// `server::WakeKey`).
pub const WAKE_CHANNEL: &str = "confide_mailbox";

/// Length of the key that names a mailbox in wake-ups (a truncated SHA-256 of its address).
///
/// Reason: 128 bits never collide between the mailboxes of one relay, and a reader of the
/// database server's logs or of `pg_stat_activity` sees a hash, not the address.
pub const WAKE_KEY_LEN: usize = 16;

/// First wait before reconnecting the PostgreSQL wake-up listener; doubled after each failed
/// attempt up to [`WAKE_LISTENER_MAX_BACKOFF`].
///
/// Reason: a restarting database is back within seconds; retrying at once would spin.
pub const WAKE_LISTENER_BACKOFF: Duration = Duration::from_millis(100);

/// Longest wait between two reconnection attempts of the wake-up listener.
///
/// Reason: connected owners are woken once after every reconnect (a notification may have
/// been missed), so waits longer than this only delay delivery further.
pub const WAKE_LISTENER_MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How often the wake-up listener checks its connection with a query, and how long it gives
/// the answer.
///
/// Reason: a connection that silently died (a network partition, no TCP reset) would
/// otherwise stop wake-ups until the kernel gives up; with this, a dead listener is noticed
/// and replaced within two intervals.
pub const WAKE_LISTENER_CHECK: Duration = Duration::from_secs(15);

/// Length of a blob id on the wire (`confide_attachment::BlobId`).
pub const BLOB_ID_LEN: usize = 16;

/// Length of a blob delete token and of its SHA-256 (`confide_attachment::BlobDeleteToken`).
pub const DELETE_TOKEN_LEN: usize = 32;

/// The longest blob the store accepts, in bytes: the ciphertext of the largest attachment,
/// `confide_attachment::ciphertext_len(MAX_PLAINTEXT_LEN)` (33 + 104,857,600 + 1,600 x 16).
///
/// Reason: the blob store holds attachments only, and no attachment is longer; a
/// `total_len` above it is refused `BlobTooLarge` before anything is stored (a test checks
/// the value against the attachment crate).
pub const MAX_BLOB_LEN: u64 = 104_883_233;

/// Most bytes one `PutBlob` carries.
///
/// Reason: a request must fit [`MAX_MESSAGE_LEN`] with its 74 bytes of header and fields; 512 KiB is
/// eight attachment chunks, so a dropped connection costs at most that much again, a 100 MiB
/// blob takes 200 requests (and 200 durable commits), and one stored row stays small.
pub const MAX_BLOB_PUT_LEN: usize = 512 * 1024;

// A full PutBlob (74 bytes of header and fields) fits one message.
const _: () = assert!(MAX_BLOB_PUT_LEN + 74 <= MAX_MESSAGE_LEN);

/// Most bytes in one `BlobData` message of a `GetBlob` answer: the named size a download is
/// streamed in.
///
/// Reason: the relay reads one piece from the database per message and queues at most
/// [`OUTBOUND_QUEUE`] of them, so a download holds at most 4 MiB per connection on the relay
/// and, in its incoming queue, on the client, whatever the blob's size; 64 KiB is the
/// attachment format's own chunk size.
pub const BLOB_DATA_LEN: usize = 64 * 1024;

/// Most bytes of blobs one mailbox owner may hold on the relay, complete or being uploaded,
/// counted by their declared `total_len` when the upload starts (1 GiB).
///
/// Reason: bounds the disk one account takes for the whole [`BLOB_RETENTION`]: ten of the
/// largest attachments, or about 16,000 voice notes in their one-chunk bucket; a month of even
/// a busy counselor's attachments. Reserving the total at creation means an upload that has
/// started is never refused for quota halfway.
pub const MAX_BLOB_BYTES_PER_OWNER: u64 = 1024 * 1024 * 1024;

/// Most bytes of blobs one mailbox owner may have being uploaded (incomplete) at once,
/// counted by their declared `total_len` (256 MiB).
///
/// Reason: an incomplete upload holds its reservation for up to
/// [`INCOMPLETE_BLOB_RETENTION`]; this lets two of the largest attachments upload at once
/// while a client that starts uploads and abandons them cannot hold the owner's whole
/// [`MAX_BLOB_BYTES_PER_OWNER`].
pub const MAX_BLOB_BYTES_IN_FLIGHT_PER_OWNER: u64 = 256 * 1024 * 1024;

/// Most blobs one mailbox owner may hold at once (complete or not).
///
/// Reason: bounds the rows (and quota queries) per account; 4,096 attachments in
/// [`BLOB_RETENTION`] is over a hundred a day.
pub const MAX_BLOBS_PER_OWNER: u64 = 4_096;

/// How long a blob is kept after its upload started, read or not; then it is deleted.
///
/// Reason: an attachment is fetched when its message arrives; 30 days covers a recipient who
/// is offline for weeks (four times the mailbox's [`UNDELIVERED_RETENTION`], so a message
/// delivered at the last moment still finds its attachment) and bounds how long ciphertext
/// sits on the relay if nobody asks to delete it. Apps delete earlier with the delete token.
pub const BLOB_RETENTION: Duration = Duration::from_days(30);

/// How long an upload that never completed is kept after it started; then it is deleted.
///
/// Reason: a client resumes a dropped upload within minutes or hours (its encryptor lives in
/// memory, `docs/attachments.md` §9); after a day it has started a new one, so the
/// reservation against [`MAX_BLOB_BYTES_IN_FLIGHT_PER_OWNER`] is released.
pub const INCOMPLETE_BLOB_RETENTION: Duration = Duration::from_hours(24);
