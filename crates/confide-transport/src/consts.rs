//! Every limit and timer of the transport layer, each with its reason.

use confide_wire::Duration;

/// Version byte of the wire [`Frame`](crate::Frame) format.
pub const FRAME_VERSION: u8 = 1;

/// Version byte of the serialized [`Delivery`](crate::Delivery) state and of each of its
/// records. Version 3 stores each dedup entry's arrival order and splits the state into
/// records (core, outbox entries, dedup entries) for incremental persistence; version 2 states
/// are refused (no release stored them).
pub const STATE_VERSION: u8 = 3;

/// Longest mailbox [`Address`](crate::Address), in bytes.
///
/// Reason: a mailbox is named by a 32-byte value (for example a hash or a random token the
/// relay hands out); 64 bytes leaves room for a routing prefix while keeping the dedup window
/// and the outbox, which store one address per entry, small.
pub const MAX_ADDRESS_LEN: usize = 64;

/// Largest payload one [`Frame`](crate::Frame) may carry, in bytes (256 KiB).
///
/// Reason: a session message carries up to 128 KiB of plaintext, padded to at most 144 KiB,
/// plus the ratchet header, a possible ML-KEM ciphertext and public key (about 2.3 KiB) and the
/// sealed-sender wrapping with its certificate chain. 256 KiB covers that with room to spare
/// while bounding what one hostile frame can make a receiver buffer.
pub const MAX_PAYLOAD_LEN: usize = 256 * 1024;

/// Bytes of a `Data` frame before its payload: version, kind, 16-byte id, 4-byte length.
pub const FRAME_HEADER_LEN: usize = 1 + 1 + crate::FrameId::LEN + 4;

/// Largest encoded [`Frame`](crate::Frame), in bytes.
///
/// Reason: follows from [`MAX_PAYLOAD_LEN`]; transports may refuse anything longer unread.
pub const MAX_FRAME_LEN: usize = FRAME_HEADER_LEN + MAX_PAYLOAD_LEN;

/// Most messages the outbox holds (unacknowledged messages plus delivery events not yet polled).
///
/// Reason: the outbox is persisted with the state and retransmitted; 1,000 messages is far more
/// than a person types while offline for a week, and a full outbox tells the app to stop
/// accepting input instead of letting memory and the saved state grow without end.
pub const MAX_OUTBOX_MESSAGES: usize = 1_000;

/// Most payload bytes held at once: the outbox plus queued unacknowledged sends (16 MiB).
///
/// Reason: bounds memory and the size of the persisted state even if every queued message is
/// as large as [`MAX_PAYLOAD_LEN`] (that alone would allow 250 MiB).
pub const MAX_HELD_PAYLOAD_BYTES: usize = 16 * 1024 * 1024;

/// Most fire-and-forget frames (see [`Delivery::send_unacknowledged`](crate::Delivery::send_unacknowledged))
/// waiting to be polled.
///
/// Reason: these are end-to-end acknowledgements; an app that polls after every input never
/// has more than a handful waiting, so a backlog this large means the app stopped polling.
pub const MAX_QUEUED_UNACKNOWLEDGED: usize = 256;

/// Time before the first retransmission of an unacknowledged message (2 s).
///
/// Reason: an acknowledgement crosses the relay twice and needs the recipient to open and
/// decrypt the message first; on a mobile network that takes well under two seconds, and
/// retransmitting sooner would resend up to 256 KiB for nothing.
pub const INITIAL_RETRANSMIT_TIMEOUT: Duration = Duration::from_secs(2);

/// Longest wait between two retransmissions of one message (1 hour).
///
/// Reason: the wait doubles after every attempt; the cap keeps a message to a peer that was
/// offline for days from waiting days after the peer returns, while bounding the traffic to
/// an unreachable peer to at most 24 retransmissions a day per message. A store-and-forward
/// relay delivers the copy it already holds as soon as the peer reconnects, so the cap only
/// matters when frames are lost.
pub const MAX_RETRANSMIT_BACKOFF: Duration = Duration::from_hours(1);

/// Random extra delay added to each retransmission wait, as a percentage of that wait (0 to 25%).
///
/// Reason: spreads retransmissions of many messages (and many clients after a relay outage)
/// so they do not arrive in bursts.
pub const RETRANSMIT_JITTER_PERCENT: u64 = 25;

/// How long after it was first sent a message is retried before `DeliveryFailed` (7 days).
///
/// Reason: a counselor or client may be away for a long weekend plus holidays; after a week
/// the app should tell its user the message did not arrive instead of retrying silently.
pub const GIVE_UP_AFTER: Duration = Duration::from_days(7);

/// How long a relay receipt holds back the retransmissions of a frame (12 hours).
///
/// Reason: a relay that answered with a receipt stored the frame durably and delivers it when
/// the recipient connects, so retransmitting only uploads copies it already has (and, from a
/// relay that keeps one copy per frame id, stores nothing new). Twelve hours cover a night and
/// a working day offline, the usual silence of a client or a counselor, so such a recipient
/// downloads one copy of each frame; after that one retransmission per frame goes out in case
/// the relay lost it or the recipient's acknowledgement was lost, and the schedule resumes.
/// It stays far below [`GIVE_UP_AFTER`], so a lost frame still has days of retries.
pub const RELAY_RECEIPT_HOLD: Duration = Duration::from_hours(12);

/// Longest time the relay may hold a frame for an offline mailbox, as assumed here (7 days).
///
/// Reason: the dedup window below must outlast the last retransmission plus its time in a
/// relay mailbox; relays are expected to drop mail older than this.
pub const RELAY_RETENTION_ASSUMED: Duration = Duration::from_days(7);

/// How long a received message id is remembered for dedup (14 days).
///
/// Reason: equals [`GIVE_UP_AFTER`] plus [`RELAY_RETENTION_ASSUMED`], so any copy of a message
/// that can still arrive is recognised as a duplicate (and re-acknowledged) rather than offered
/// to the session layer again.
pub const DEDUP_WINDOW_AGE: Duration = GIVE_UP_AFTER.saturating_add(RELAY_RETENTION_ASSUMED);

/// Most received message ids remembered for dedup; the oldest is forgotten first.
///
/// Reason: an entry costs about 90 bytes in memory and in the saved state (under 1 MiB in
/// all); 10,000 covers a busy counselor receiving 700 messages a day over the whole
/// [`DEDUP_WINDOW_AGE`]. A duplicate of a forgotten id is offered again, and the session layer
/// refuses it as a replay, so the bound costs at most a missing re-acknowledgement.
pub const MAX_DEDUP_ENTRIES: usize = 10_000;

/// Dedup-window entries stored together in one chunk record
/// ([`Delivery::seen_chunk_record`](crate::delivery::Delivery::seen_chunk_record)), by arrival
/// order: entry `order` lives in chunk `order / DEDUP_ENTRIES_PER_CHUNK`.
///
/// Reason: a record per entry made a busy counselor's store up to [`MAX_DEDUP_ENTRIES`] small
/// records to open on every load, each costing about a microsecond to decrypt and another to
/// decode; sixteen to a record divides that by sixteen, and a received frame rewrites at most
/// sixteen entries (under 2.5 KiB with the longest addresses, about 1.5 KiB typically).
pub const DEDUP_ENTRIES_PER_CHUNK: u64 = 16;

/// Shortest interval between two re-acknowledgements of one received frame id.
///
/// Reason: a genuine sender retransmits a frame no sooner than [`INITIAL_RETRANSMIT_TIMEOUT`]
/// after its previous transmission, so copies arriving faster are replays (by a relay or a
/// network) and answering each would let the replayer make the recipient send on demand.
pub const MIN_REACKNOWLEDGE_INTERVAL: Duration = INITIAL_RETRANSMIT_TIMEOUT;

/// Most re-acknowledgements (of duplicates) granted within one [`REACKNOWLEDGE_BUDGET_WINDOW`],
/// over all frame ids together.
///
/// Reason: a peer whose acknowledgements were lost retransmits its waiting frames (at most a
/// few dozen in practice); beyond that, duplicates are a replay of the dedup window and
/// answering them would turn the recipient into a traffic and timing oracle for the replayer.
/// A duplicate over budget is not answered; the genuine sender retransmits later.
pub const REACKNOWLEDGE_BUDGET: u32 = 64;

/// The window over which [`REACKNOWLEDGE_BUDGET`] is counted (one minute).
///
/// Reason: short enough that a genuine sender's next retransmission (after backoff, at
/// least [`INITIAL_RETRANSMIT_TIMEOUT`], typically longer) finds the budget refilled.
pub const REACKNOWLEDGE_BUDGET_WINDOW: Duration = Duration::from_secs(60);

/// Length of a [`RelayToken`](crate::RelayToken) (a delivery token, `docs/sealed-sender.md`).
///
/// Reason: 128 bits cannot be guessed, and a token travels with every frame to the relay, so
/// it is kept short. Equal to `confide_sealed::DELIVERY_TOKEN_LEN`.
pub const RELAY_TOKEN_LEN: usize = 16;
