//! Every limit of the session layer, each with its reason.

/// Version byte of every session wire format defined here.
pub const PROTOCOL_VERSION: u8 = 1;

/// How many message keys one received message may make us derive and store as skipped,
/// over all chains it touches (the rest of the previous receiving chain at a ratchet step,
/// the original branch up to a fork, and the new chain or branch up to the message).
///
/// Reason: deriving a skipped key costs two HMACs, so this bounds the work one hostile message
/// can cause (about 1 ms), while still covering a client who writes hundreds of messages that a
/// flaky mobile network delivers out of order. libsignal allows 25,000, vodozemac 2,000; a chat
/// session in which 2,000 consecutive messages are lost is better re-established.
pub const MAX_FORWARD_JUMP: u32 = 2_000;

/// Maximum skipped message keys stored per session, all chains together; the oldest is evicted
/// first when more arrive.
///
/// Reason: bounds memory (about 100 bytes a key) and the number of keys an attacker who later
/// seizes the device could use; equal to [`MAX_FORWARD_JUMP`] so one full jump fits.
pub const MAX_SKIPPED_KEYS: usize = 2_000;

/// Peer ratchet steps after which a skipped message key is dropped, whatever its age in time.
///
/// Reason: a key skipped that many peer ratchet steps ago belongs to a message that is not
/// coming. A lost message is not late by seconds but by its sender's retransmission backoff,
/// which grows to an hour; a lively chat takes a ratchet step every few seconds, so the bound
/// must cover hundreds of steps or a routine retransmission finds its key gone. 512 steps
/// (with at most [`MAX_SKIPPED_KEYS`] keys in all) is about half an hour of the fastest
/// two-way typing. Dropping the key bounds how long a later device seizure can read such a
/// message without needing a clock (see `Session::oldest_skipped_key_at` for time-based
/// pruning); the endpoint repairs the rare later arrival with a session reset.
pub const MAX_SKIPPED_KEY_RATCHET_STEPS: u32 = 512;

/// Superseded fork nonces a receiving chain remembers.
///
/// Reason: a chain is forked each time the sender restarts from stored state before the next
/// ratchet step; remembering the branches we moved past turns a late repeat of one of their
/// messages into [`crate::DecryptError::Duplicate`] instead of
/// [`crate::DecryptError::PeerRolledBack`]. Once the list is full the oldest nonce is forgotten,
/// and a message on any earlier branch of the chain is refused as
/// [`crate::DecryptError::Duplicate`]: a forgotten branch cannot be told from one never heard
/// from, and deriving its keys again could decrypt a replay. An honest message of an earlier
/// branch that its successor overtook on the network is then lost to the session (the
/// endpoint resets it and the sender sends the message again). More than sixteen app
/// restarts within one ratchet step is rare.
pub const MAX_REMEMBERED_FORKS: usize = 16;

/// How many previous remote ratchet keys a session remembers, to tell a late duplicate from a
/// forged ratchet step.
///
/// Reason: late messages of older chains are served from stored skipped keys; this list only
/// improves the error (duplicate instead of authentication failure) and must stay small.
pub const MAX_REMEMBERED_RATCHET_KEYS: usize = 16;

/// Archived session states a record keeps besides the current one.
///
/// Reason: when both sides start a session at once, or a device restores from backup, messages
/// in flight on an older session must still decrypt; libsignal keeps 40, but a counseling
/// conversation has two devices at most, so 10 is ample and bounds state size.
pub const MAX_ARCHIVED_SESSIONS: usize = 10;

/// One-time X25519 prekeys a store may hold.
///
/// Reason: a counselor publishes a batch and replenishes; this bounds storage and the bundle
/// directory's share per device.
pub const MAX_ONE_TIME_PREKEYS: usize = 1_000;

/// One-time ML-KEM-768 prekeys a store may hold (each keeps a 64-byte seed, publishes 1,184 bytes).
///
/// Reason: as [`MAX_ONE_TIME_PREKEYS`], smaller because each public key is large.
pub const MAX_ONE_TIME_KEM_PREKEYS: usize = 200;

/// Signed (and last-resort KEM) prekeys kept after rotation so messages in flight still decrypt.
///
/// Reason: with weekly rotation, a sender offline for a month can still start a session.
pub const MAX_RETAINED_SIGNED_PREKEYS: usize = 4;

/// Initial-message base keys remembered per signed prekey, to refuse replays of initial
/// messages that used no one-time key.
///
/// Reason: a replayed initial message that used no one-time prekey (neither X25519 nor
/// ML-KEM) would otherwise start a new session again and surface its first message twice;
/// one that used a one-time key is refused anyway, because that key is gone. A base key is
/// kept exactly as long as its signed prekey accepts initial messages and never forgotten
/// before: when the list of a retained signed prekey is full, further initial messages without
/// one-time keys under it are refused ([`crate::DecryptError::ReplayListFull`]) until the app
/// rotates the signed prekey. 2,500 such sessions per signed prekey is far more than a
/// counselor starts in a week (most initial messages carry one-time keys); the endpoint rotates
/// at half of it, so a sane app never sees the refusal.
pub const MAX_SEEN_BASE_KEYS_PER_SIGNED_PREKEY: usize = 2_500;

/// Initial-message base keys a store remembers in all: the per-signed-prekey bound times the
/// signed prekeys retained (a bound on stored state: 36 bytes an entry, 360 KB at most).
pub const MAX_SEEN_BASE_KEYS: usize =
    MAX_SEEN_BASE_KEYS_PER_SIGNED_PREKEY * MAX_RETAINED_SIGNED_PREKEYS;

/// Largest ciphertext (padded plaintext plus tag) a message may carry.
pub const MAX_CIPHERTEXT_LEN: usize = 147_456 + confide_crypto::aead::TAG_LEN;

/// Safety-number hash iterations, as in Signal's numeric fingerprints.
///
/// Reason: makes a brute-force search for a colliding identity 5,200 times more expensive
/// while costing about a millisecond per display.
pub const SAFETY_NUMBER_ITERATIONS: u32 = 5_200;

#[cfg(test)]
mod tests {
    #[test]
    fn max_ciphertext_covers_max_plaintext() {
        let padded =
            confide_crypto::padding::padded_len(confide_crypto::padding::MAX_PLAINTEXT_LEN)
                .unwrap();
        assert!(padded + confide_crypto::aead::TAG_LEN <= super::MAX_CIPHERTEXT_LEN);
    }
}
