//! Limits and schedules of the endpoint, each with its reason.

use confide_crypto::Duration;

/// Version byte of the endpoint state: of the snapshot blob's plaintext and of every record's.
///
/// Version 4 splits the state into records (identity, counters, each conversation, each
/// outbox, dedup and control entry), so an incremental store writes only what changed, and
/// no longer stores frames waiting for persistence (a reliable frame goes out again from the
/// outbox when its retransmission is due). Version 3 states are refused (no release stored
/// them). Version 5 adds to each conversation record the windows of the peer's symmetric
/// sealed-sender epochs (`docs/sealed-sender.md` §9.7); version 4 states are refused (they
/// were never released either). Version 6 stops storing the session message of a frame
/// waiting for its acknowledgement in its sent record (the outbox entry holds the frame as
/// sent; the sent record keeps the content and whether the frame carried our delivery
/// token): a text is stored once less. Version 5 records still load (their sent records'
/// session messages are read and dropped) and are rewritten as version 6 when they change.
/// Version 7 adds to each conversation record how its peer was verified (by short code or
/// by referral) and its failed code attempts; version 5 and 6 records still load (not
/// verified, no failed attempts) and are rewritten as version 7 when they change.
/// Version 8 moves the conversation policy's per-message entries (tracked messages, pending
/// deletes, tombstones) out of the conversation record into records of their own, so that a
/// text no longer rewrites the whole history of its conversation; version 5 to 7 records
/// still load, and a conversation loaded from one is rewritten, with its entries, in the next
/// change set.
/// Version 9 stores each conversation's session record in its compact form
/// (`SessionRecord::to_bytes_compact`): a session identity equal to ours or to the
/// conversation's peer identity is left out (256 bytes a session in every write and load);
/// version 8 conversation records (the full form) still load, and are written as version 9
/// when they change.
/// Version 10 stores the outbox entry of a frame that has a sent record without its payload
/// (length 0): the sealed frame repeated the content the sent record keeps (a 1 KiB text
/// was stored twice). After a load such a frame's content is encrypted again when its
/// retransmission is due. Version 9 records still load (their outbox entries keep their
/// payloads, which go out as they are); a release that reads version 9 refuses version 10
/// rather than send an empty frame.
pub const ENDPOINT_STATE_VERSION: u8 = 10;

/// A previous [`ENDPOINT_STATE_VERSION`], still read: every outbox entry holds its payload.
pub const ENDPOINT_STATE_VERSION_WITH_OUTBOX_PAYLOADS: u8 = 9;

/// A previous [`ENDPOINT_STATE_VERSION`], still read: its conversation records hold the
/// session record in its full form.
pub const ENDPOINT_STATE_VERSION_WITH_FULL_SESSIONS: u8 = 8;

/// A previous [`ENDPOINT_STATE_VERSION`], still read: its conversation records hold the
/// policy's per-message entries.
pub const ENDPOINT_STATE_VERSION_WITH_POLICY_ENTRIES_INLINE: u8 = 7;

/// A previous [`ENDPOINT_STATE_VERSION`], still read: its conversation records have no
/// verification fields.
pub const ENDPOINT_STATE_VERSION_WITHOUT_VERIFICATION: u8 = 6;

/// The oldest [`ENDPOINT_STATE_VERSION`] still read: its sent records also hold the frame's
/// session message, and its conversation records have no verification fields.
pub const ENDPOINT_STATE_VERSION_WITH_SENT_MESSAGE: u8 = 5;

/// Below this many unused one-time X25519 prekeys the endpoint generates more.
///
/// Reason: every new client consumes one; with none left, sessions fall back to the signed
/// prekey alone (still secure, with less forward secrecy for the first message).
pub const MIN_ONE_TIME_PREKEYS: usize = 20;

/// How many one-time X25519 prekeys the endpoint tops up to.
///
/// Reason: enough for a busy counselor's day of new clients between uploads, small enough
/// that a directory upload stays a few kilobytes.
pub const ONE_TIME_PREKEY_TARGET: usize = 100;

/// Below this many unused one-time ML-KEM prekeys the endpoint generates more.
///
/// Reason: as [`MIN_ONE_TIME_PREKEYS`]; without one, the last-resort KEM prekey is used.
pub const MIN_ONE_TIME_KEM_PREKEYS: usize = 10;

/// How many one-time ML-KEM prekeys the endpoint tops up to.
///
/// Reason: a KEM prekey bundle is about 1.6 KB; 40 keeps the upload near 64 KB.
pub const ONE_TIME_KEM_PREKEY_TARGET: usize = 40;

/// Age after which the signed prekey and the last-resort KEM prekey are replaced.
///
/// Reason: bounds how long a compromise of a medium-term key exposes new sessions, as the
/// Signal recommendations do (weekly rotation); old keys stay for messages in flight.
pub const SIGNED_PREKEY_MAX_AGE: Duration = Duration::from_days(7);

/// Base keys remembered under the published signed prekey (initial messages that used no
/// one-time key) at which the endpoint rotates the signed prekey early.
///
/// Reason: the session layer never forgets a base key while its signed prekey accepts
/// initial messages, so a full list refuses further such messages under that prekey
/// (`DecryptError::ReplayListFull`). Rotating at half the bound leaves the other half for
/// senders still using the old bundle, so a sane app never sees the refusal; someone who
/// floods initial messages only makes the endpoint rotate, once per this many messages.
pub const SIGNED_PREKEY_ROTATE_AT_SEEN_BASE_KEYS: usize =
    confide_session::consts::MAX_SEEN_BASE_KEYS_PER_SIGNED_PREKEY / 2;

/// How long a close frame is retransmitted before the endpoint stops trying.
///
/// Reason: the closing side erases its session keys at once, so it can never authenticate an
/// acknowledgement of the close; one day of retries covers a peer offline overnight.
pub const CLOSE_RETRANSMIT_PERIOD: Duration = Duration::from_days(1);

/// Most *open* conversations one endpoint keeps. Closed conversations do not count: they
/// shrink to tombstones once their timers ran out.
///
/// Reason: bounds the state; a counselor service shards far larger caseloads across accounts.
pub const MAX_CONVERSATIONS: usize = 4_096;

/// Most closed conversations still waiting for their message timers (or the retransmission
/// of their close frame) before they shrink to a tombstone. Beyond it the oldest shrinks at
/// once and its remaining messages expire early (erasing early is always allowed).
///
/// Reason: closing and re-contacting must not grow the state without bound.
pub const MAX_CLOSED_CONVERSATIONS: usize = 4_096;

/// Most tombstones (who closed a conversation, for [`Endpoint::closed_by`]) kept; the oldest
/// is forgotten first, after which the handle is simply unknown.
///
/// Reason: a tombstone is a few bytes, but a lifetime of conversations must stay bounded.
///
/// [`Endpoint::closed_by`]: crate::Endpoint::closed_by
pub const MAX_TOMBSTONES: usize = 4_096;

/// How long after its certificate expired a sender's envelopes are still accepted.
///
/// Reason: a message sealed while the certificate was valid can wait in a mailbox while its
/// recipient is offline (counselors answer two or three times a day; clients go quiet for
/// days). A week covers a long weekend offline twice over; the sender's own retransmissions
/// are re-sealed as soon as it renews, and revocation (by server key) is not affected.
pub const SENDER_CERTIFICATE_GRACE: Duration = Duration::from_days(7);

/// How long before our certificate expires the endpoint emits
/// [`Event::CertificateExpiring`](crate::Event::CertificateExpiring).
///
/// Reason: renewal needs the network and the service; three days leave room for a weekend.
pub const CERTIFICATE_RENEWAL_WARNING: Duration = Duration::from_days(3);

/// Shortest time between two reset requests to the same peer.
///
/// Reason: a peer out of sync sends many frames (retransmissions, acknowledgements) that all
/// fail; one request per interval is enough, and it bounds what a relay replaying old
/// envelopes can make us send.
pub const RESET_REQUEST_MIN_INTERVAL: Duration = Duration::from_mins(5);

/// How long an honoured reset is remembered (a replayed request for it then only gets a
/// fresh message in the new session).
///
/// Reason: a relay keeps mail for about a week and retransmissions stop after another; a
/// request older than that is a replay.
pub const RESET_MEMORY: Duration = Duration::from_days(14);

/// Most delivered texts per conversation remembered, to report which of them a peer that
/// restored an older backup lost ([`Event::PeerRestored`](crate::Event::PeerRestored)).
///
/// Reason: bounds the state of a busy conversation; 64 texts cover days of a counseling
/// conversation, and older losses are beyond what a transcript repair can offer.
pub const MAX_RECENTLY_DELIVERED: usize = 64;

/// Most frame ids of received acknowledgements and resume frames remembered, so that a copy
/// the network duplicated is recognised before it reaches the session.
///
/// Reason: such frames are never acknowledged, so the dedup window does not hold them; a
/// copy that reached the session would look like a peer out of sync. Copies arrive within
/// seconds; 1,024 ids (16 KiB) cover far more than that.
pub const MAX_CONTROL_FRAMES_REMEMBERED: usize = 1_024;

/// Entries of the endpoint's ordered logs (received control frames, each conversation's
/// delivered texts) stored together in one record, by arrival order: entry `order` lives in
/// chunk `order / LOG_ENTRIES_PER_CHUNK`.
///
/// Reason: a record per entry made a counselor's account tens of thousands of small records
/// to open on every load (1,024 control frames; up to 64 delivered texts in each of 1,000
/// conversations), each costing about a microsecond to decrypt and another to decode. With 16
/// a chunk the count falls sixteenfold, and a new entry rewrites at most 16 entries (under
/// 700 B for delivered texts, 300 B for control frames).
pub const LOG_ENTRIES_PER_CHUNK: u64 = 16;

/// Most frame ids of received texts remembered per conversation for the resume frame.
///
/// Reason: the peer only needs the newest text we hold to find what we lost; a few more
/// cover reordering. 16 ids are 256 bytes in the resume frame.
pub const MAX_RECENT_RECEIVED: usize = 16;

/// Most honoured resets remembered per conversation.
///
/// Reason: a replayed reset request must not force another new session; a handful covers
/// any realistic sequence of restores, and older entries expire after [`RESET_MEMORY`].
pub const MAX_HONOURED_RESETS: usize = 8;

/// Most peers without a conversation to which reset requests were recently sent (for the
/// rate limit). Not stored: after a restart the limit starts afresh.
///
/// Reason: bounds memory if many unknown peers write; the oldest is forgotten first.
pub const MAX_UNKNOWN_PEER_RESETS: usize = 256;

/// Most given-up texts remembered so that a late acknowledgement still reports them
/// delivered.
///
/// Reason: equals the outbox bound, so every text that could be given up in one period fits.
pub const MAX_GIVEN_UP_REMEMBERED: usize = confide_transport::consts::MAX_OUTBOX_MESSAGES;

/// Age after which a session we started and the peer never answered stops sending, with
/// [`CommandError::SessionStale`](crate::CommandError::SessionStale): fetch a new bundle and
/// call [`Endpoint::renew_session`](crate::Endpoint::renew_session).
///
/// Reason: the peer keeps a signed prekey for [`SIGNED_PREKEY_MAX_AGE`] times the session
/// layer's `MAX_RETAINED_SIGNED_PREKEYS` (4 weeks); after two weeks unanswered the bundle is
/// likely close to retirement, and a fresh one gives the first messages fresh one-time keys.
pub const UNANSWERED_SESSION_MAX_AGE: Duration = Duration::from_days(14);

/// Most outgoing frames waiting to be persisted and transmitted.
///
/// Reason: bounds memory if the app never confirms persistence; it matches the transport's
/// outbox limit plus its queue of unacknowledged frames.
pub const MAX_HELD_TRANSMITS: usize = confide_transport::consts::MAX_OUTBOX_MESSAGES
    + confide_transport::consts::MAX_QUEUED_UNACKNOWLEDGED;

/// Longest encoded component (prekey store, session record, policy, delivery state) in a
/// stored endpoint state.
///
/// Reason: a strict decoder refuses absurd lengths before allocating; the largest legitimate
/// component (the delivery outbox) is bounded by the transport's 16 MiB of held payloads.
pub const MAX_STATE_COMPONENT_LEN: usize = 64 * 1024 * 1024;

/// Kind byte of a reset request. Session messages use kinds below 0x20; kinds from 0x20 on
/// belong to the endpoint layer.
pub const KIND_RESET_REQUEST: u8 = 0x20;

/// Kind byte of a session message that carries the sender's delivery token in front of it
/// (`docs/endpoint.md`, "Delivery tokens").
pub const KIND_TOKEN_AND_SESSION: u8 = 0x21;

/// Kind byte of an acknowledgement sealed outside the session, in a symmetric envelope
/// (`docs/endpoint.md`, "Acknowledgements"; [`AcknowledgementPayload`](crate::AcknowledgementPayload)).
pub const KIND_BARE_ACK: u8 = 0x22;

/// Kind byte of a session message with acknowledgements in front of it (acknowledgements
/// that ride on an outgoing message: `docs/endpoint.md`, "Acknowledgements").
pub const KIND_ACKS_AND_SESSION: u8 = 0x23;

/// Version byte of an acknowledgement payload (the same as a reset request's).
pub const BARE_ACK_VERSION: u8 = RESET_REQUEST_VERSION;

/// Version byte of a reset request (the session protocol version it accompanies).
pub const RESET_REQUEST_VERSION: u8 = 1;

/// Longest prekey bundle a reset request may carry, in bytes.
///
/// Reason: a bundle with an ML-KEM-768 key is about 1.6 KB; 4 KiB leaves room for a larger
/// identity encoding while bounding what a peer makes us parse.
pub const MAX_RESET_BUNDLE_LEN: usize = MAX_PREKEY_BUNDLE_LEN;

/// Longest prekey bundle a certified bundle may carry, in bytes.
///
/// Reason: a bundle with an ML-KEM-768 key is about 1.6 KB; 4 KiB leaves room for a larger
/// identity encoding while bounding what a directory makes us parse.
pub const MAX_PREKEY_BUNDLE_LEN: usize = 4096;

/// Version byte of the certified bundle encoding (`docs/endpoint.md`, "Certified bundles").
pub const CERTIFIED_BUNDLE_VERSION: u8 = 1;

/// Longest [`AckPolicy::Batched`](crate::AckPolicy::Batched) window (10 s).
///
/// Reason: a sender retransmits a frame first after about 2 s, then after about 4 s more
/// (`docs/transport.md`); a batch that waits longer than 10 s costs every batched frame more
/// than two retransmissions (bytes on the client's data plan, relay storage) for little more
/// timing cover. Retransmissions that arrive while a batch waits join it, they are not
/// answered separately.
pub const MAX_ACK_BATCH_WINDOW: Duration = Duration::from_secs(10);

/// Transmissions of a frame in a symmetric envelope without an acknowledgement after which it
/// is sealed again with public keys (`docs/sealed-sender.md` §9.5).
///
/// Reason: the peer keeps windows for its newest epochs only and public-key frames can reach
/// it out of order, so the epoch we promoted may be one it already dropped; its symmetric
/// frames would then be refused until they give up. Three transmissions (the first and two
/// retransmissions, about 6 seconds with the transport's backoff) let a frame that was merely
/// lost once arrive unchanged; after that the frame costs one public-key envelope more, and
/// its epoch is no longer used.
pub const SYMMETRIC_RESEAL_AFTER_ATTEMPTS: u32 = 3;

/// Epochs of our public-key envelopes kept per conversation until the frame carrying each is
/// acknowledged (`docs/endpoint.md`, "Symmetric envelopes"). The peer keeps windows for its
/// last-used epochs (`MAX_EPOCHS_PER_CONVERSATION`) and acknowledges each public-key frame
/// right after installing its window; an acknowledged epoch becomes current and the older
/// pending ones are dropped (a late acknowledgement never takes us back to an older epoch, and
/// counts towards ending the current one instead). On a lossy link several public-key frames
/// are in flight before the first acknowledgement; 8 covers a burst, and each costs 64 bytes of keys in memory. A frame whose
/// epoch was forgotten is still delivered; only the switch to symmetric envelopes waits.
pub const MAX_PENDING_SENDER_EPOCHS: usize = 8;

/// Digits of a short verification code ([`ShortCode`](crate::ShortCode)).
///
/// Reason: six digits are read aloud and typed in seconds; the PAKE leaves someone in the
/// middle one online guess per attempt, a one-in-a-million chance, and
/// [`MAX_CODE_FAILURES`] bounds the attempts, so longer codes would buy little.
pub const SHORT_CODE_DIGITS: usize = 6;

/// Failed code attempts a conversation allows; after them
/// [`Endpoint::enter_code`](crate::Endpoint::enter_code) refuses and the users compare safety
/// numbers instead.
///
/// Reason: an honest pair mistypes once or twice; five failures give someone in the middle
/// at most five guesses at a six-digit code (a 1 in 200 000 chance) for the life of the
/// conversation. Stored with the conversation, so restarting the app does not reset it.
pub const MAX_CODE_FAILURES: u8 = 5;

/// Leading bytes of a received envelope that its dedup digest covers
/// (`docs/endpoint.md`, "No acknowledgement oracle"): a symmetric envelope's kind and
/// per-index tag (17 bytes), and a public-key envelope's version and 31 bytes of its fresh
/// ephemeral key, lie inside them, so two different seals of the same content always differ
/// here. 32, so that the length, head and tail (52 bytes) fit SHA-256's one block.
pub const DEDUP_DIGEST_HEAD: usize = 32;

/// Trailing bytes of a received envelope that its dedup digest covers: the AEAD tag of
/// either kind of envelope.
pub const DEDUP_DIGEST_TAIL: usize = 16;
