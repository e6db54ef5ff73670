//! Limits and schedules of the endpoint, each with its reason.

use confide_crypto::Duration;

/// Version byte of the endpoint state encoding (inside the encrypted storage blob).
pub const ENDPOINT_STATE_VERSION: u8 = 1;

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

/// How long a close frame is retransmitted before the endpoint stops trying.
///
/// Reason: the closing side erases its session keys at once, so it can never authenticate an
/// acknowledgement of the close; one day of retries covers a peer offline overnight.
pub const CLOSE_RETRANSMIT_PERIOD: Duration = Duration::from_days(1);

/// Most conversations one endpoint keeps.
///
/// Reason: bounds the state; a counselor service shards far larger caseloads across accounts.
pub const MAX_CONVERSATIONS: usize = 4_096;

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
