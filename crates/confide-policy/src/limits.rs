//! Every limit of the policy layer, each with its reason.

use confide_crypto::Duration;

/// Version byte of the content frame format ([`crate::ContentFrame`]).
pub const CONTENT_FRAME_VERSION: u8 = 1;

/// Version byte of the serialized conversation policy state.
pub const STATE_VERSION: u8 = 1;

/// Shortest timer anyone can set.
///
/// Reason: a message must stay on screen long enough to be read on a slow device; a shorter
/// timer would make messages vanish while the app is still rendering them.
pub const MIN_RETENTION: Duration = Duration::from_secs(10);

/// Longest timer anyone can set.
///
/// Reason: a timer longer than a year is "off" in all but name; the bound keeps every deadline
/// (`start + duration`) far from overflow and keeps the encoding canonical.
pub const MAX_RETENTION: Duration = Duration::from_days(365);

/// How far a sender's claimed send time is trusted into the past.
///
/// Reason: phones without network time drift by minutes; trusting the claim beyond this would
/// let a sender's clock (mistaken or lying) shorten the receiver's timer arbitrarily. A claim
/// later than the local receive time is never trusted at all.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_mins(5);

/// How long after sending its author may still delete ("unsend") a message.
///
/// Reason: long enough to take back a message sent by mistake before the counselor's next
/// shift; short enough that a record both sides have acted on for a day stays stable.
pub const UNSEND_WINDOW: Duration = Duration::from_hours(24);

/// Extra time, by the receiver's own clock, a delete may take to arrive after its target's
/// unsend window.
///
/// Reason: a delete sent inside the window may sit in transit or on an offline device; the
/// receiver measures the window on the sender's clock (both claims come from it) but also on its
/// own, so a lying sender clock can stretch the window by at most this much.
pub const UNSEND_RECEIVE_GRACE: Duration = Duration::from_hours(6);

/// How long a delete whose target has not arrived yet is remembered.
///
/// Reason: covers a target held back by a device that was offline for a week (the delivery
/// layer retries no longer than that); after this the target is presumed lost.
pub const PENDING_DELETE_LIFETIME: Duration = Duration::from_days(7);

/// Most deletes whose target has not arrived yet that are remembered at once.
///
/// Reason: an honest author sends a delete only after its target, so only reordering creates
/// pending deletes; this bounds the memory a misbehaving peer can pin. When full, the oldest
/// pending delete is dropped (its target id stays refused, see [`MAX_TOMBSTONES`]).
pub const MAX_PENDING_DELETES: usize = 1024;

/// Most ids of expired, deleted or retired messages remembered to refuse replays.
///
/// Reason: the session layer already refuses replayed ciphertexts; this is defense in depth
/// covering the delivery layer's duplicate window. 4096 ids are 64 KiB of state. Oldest ids
/// are forgotten first.
pub const MAX_TOMBSTONES: usize = 4096;

/// Most messages whose expiry, unsend window or read receipt is still being tracked.
///
/// Reason: bounds the state size (about 60 bytes per message, 15 MiB at the limit) far above
/// what a conversation exchanges within one retention period. Beyond it new text messages are
/// refused with an error rather than silently left without a timer.
pub const MAX_TRACKED_MESSAGES: usize = 262_144;

/// Most message ids in one acknowledgement or read-receipt frame.
///
/// Reason: a whole backlog fits in one frame (1024 × 16 bytes = 16 KiB), far below the
/// session's plaintext limit.
pub const MAX_IDS_PER_FRAME: usize = 1024;

/// Largest step by which a peer's timer version may exceed the version this side holds.
///
/// Reason: versions only grow, so a single frame with version `u64::MAX` would lock the
/// timer for good. Honest peers step by one per change; 2^20 changes that this side has not
/// yet seen is far beyond any real conversation, while reaching `u64::MAX` in such steps
/// would take 2^44 frames.
pub const MAX_TIMER_VERSION_STEP: u64 = 1 << 20;

/// Largest content frame header plus body framing (everything but the text bytes).
///
/// Reason: used to size [`MAX_TEXT_LEN`] so a full text frame still fits the session's
/// plaintext limit. Header: version 1 + id 16 + time 8 + timer 18 + body tag 1 + length 4 = 48.
pub const MAX_FRAME_OVERHEAD: usize = 48;

/// Longest text body in bytes.
///
/// Reason: the whole frame must fit the session's plaintext limit
/// ([`confide_crypto::padding::MAX_PLAINTEXT_LEN`]).
pub const MAX_TEXT_LEN: usize = confide_crypto::padding::MAX_PLAINTEXT_LEN - MAX_FRAME_OVERHEAD;

/// Longest certified bundle a referral may carry, in bytes.
///
/// Reason: a certified bundle is a sender certificate (under 1 KiB), a prekey bundle (at most
/// 4 KiB, the endpoint's `MAX_PREKEY_BUNDLE_LEN`), a delivery token and their framing; 8 KiB
/// holds that with room for a larger certificate and stays far below the session's plaintext
/// limit.
pub const MAX_REFERRAL_PARTY_LEN: usize = 8 * 1024;

/// Longest note a referrer may add for the person referred, in bytes.
///
/// Reason: a few sentences ("they can see you tonight, ask for Sam"); anything longer is a
/// conversation and belongs in texts. The note is shown with the referral, before the client
/// decides, so it must stay short enough to read on one screen.
pub const MAX_REFERRAL_NOTE_LEN: usize = 1024;

/// Length of a code verification exchange message: SPAKE2 over edwards25519, one side byte and
/// one compressed point (`docs/policy.md` §9.3).
///
/// Reason: fixed by the PAKE; a fixed length makes the body canonical.
pub const CODE_EXCHANGE_LEN: usize = 33;

/// Length of a code verification confirmation (an HKDF-SHA256 output, `docs/endpoint.md`,
/// "Verification with a short code").
///
/// Reason: 256 bits: forging one is as hard as breaking SHA-256, not a guess.
pub const CODE_CONFIRMATION_LEN: usize = 32;
