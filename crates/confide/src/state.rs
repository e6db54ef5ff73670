//! Persistence of the endpoint state, encrypted at rest: record by record (a [`ChangeSet`] of
//! what changed, for an incremental store) or as one snapshot blob (for a backup, or an app
//! that stores one blob). Both carry the same records; the byte layout is in
//! `docs/endpoint.md` ("Stored state").

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use confide_crypto::{
    CryptoRng, Duration, Timestamp,
    codec::{DecodeError, Reader, Writer},
    identity::IdentityPublicKey,
    stored::{AuthenticatedPlaintext, AuthenticatedReader},
};
use confide_policy::{
    ConversationPolicy, MessageId, OrgBounds, RetentionDuration, RetentionPolicy, StartRule,
    conversation::TOMBSTONES_PER_CHUNK,
    limits::{
        MAX_IDS_PER_FRAME, MAX_PENDING_DELETES, MAX_TOMBSTONES as MAX_POLICY_TOMBSTONES,
        MAX_TRACKED_MESSAGES,
    },
};
use confide_sealed::{
    DeliveryToken, MAX_EPOCHS_PER_CONVERSATION, MAX_SENDER_CERTIFICATE_LEN, ProfileKey, Role,
    SenderCertificate, StoredTagWindow, TAG_WINDOW_STATE_LEN, TrustRoots,
};
use confide_session::{
    KnownIdentities, PreKeyStore, SessionRecord,
    storage::{self, RecordSealer, StateKind, StorageKey},
};
use confide_transport::{Address, Delivery, FrameId, consts::MAX_ADDRESS_LEN};
use zeroize::Zeroizing;

use crate::consts::{
    ENDPOINT_STATE_VERSION, ENDPOINT_STATE_VERSION_WITH_FULL_SESSIONS,
    ENDPOINT_STATE_VERSION_WITH_OUTBOX_PAYLOADS, ENDPOINT_STATE_VERSION_WITH_POLICY_ENTRIES_INLINE,
    ENDPOINT_STATE_VERSION_WITH_SENT_MESSAGE, ENDPOINT_STATE_VERSION_WITHOUT_VERIFICATION,
    LOG_ENTRIES_PER_CHUNK, MAX_CLOSED_CONVERSATIONS, MAX_CODE_FAILURES,
    MAX_CONTROL_FRAMES_REMEMBERED, MAX_CONVERSATIONS, MAX_GIVEN_UP_REMEMBERED, MAX_HONOURED_RESETS,
    MAX_RECENT_RECEIVED, MAX_RECENTLY_DELIVERED, MAX_STATE_COMPONENT_LEN, MAX_TOMBSTONES,
};
use crate::endpoint::conversation::{
    Conversation, Delivered, DeliveredLog, GivenUp, SentKind, SentRecord, Tombstone,
};
use crate::endpoint::tracked::{ControlSeen, Tracked};
use crate::endpoint::{
    AckPolicy, Endpoint, EndpointConfig, EndpointStats, Persistence, Verification,
};
use crate::error::{ExportError, ImportError};
use crate::event::{ConversationId, Party};

const PERSISTENCE_REQUIRED: u8 = 0;
const PERSISTENCE_EPHEMERAL: u8 = 1;
const RETENTION_OFF: u8 = 0;
const RETENTION_EXPIRE: u8 = 1;
const START_AFTER_SEND: u8 = 0;
const START_AFTER_READ: u8 = 1;
const ACKS_IMMEDIATE: u8 = 0;
const ACKS_BATCHED: u8 = 1;
const ACKS_APP_DRIVEN: u8 = 2;
/// Most entries of the sent map: the transport outbox bound.
const MAX_SENT_RECORDS: usize = confide_transport::consts::MAX_OUTBOX_MESSAGES;

fn write_retention(w: &mut Writer, p: RetentionPolicy) -> Result<(), ExportError> {
    match p {
        RetentionPolicy::Off => {
            w.u8(RETENTION_OFF);
        }
        RetentionPolicy::Expire { after, start } => {
            let start = match start {
                StartRule::AfterSend => START_AFTER_SEND,
                StartRule::AfterRead => START_AFTER_READ,
                _ => return Err(ExportError::UnsupportedConfig),
            };
            w.u8(RETENTION_EXPIRE)
                .u64(after.get().as_millis())
                .u8(start);
        }
        _ => return Err(ExportError::UnsupportedConfig),
    }
    Ok(())
}

fn read_duration(
    r: &mut Reader<'_>,
    field: &'static str,
) -> Result<RetentionDuration, DecodeError> {
    RetentionDuration::new(Duration::from_millis(r.u64()?))
        .ok_or(DecodeError::InvalidValue { field })
}

fn read_retention(r: &mut Reader<'_>) -> Result<RetentionPolicy, DecodeError> {
    match r.u8()? {
        RETENTION_OFF => Ok(RetentionPolicy::Off),
        RETENTION_EXPIRE => {
            let after = read_duration(r, "retention duration")?;
            let start = match r.u8()? {
                START_AFTER_SEND => StartRule::AfterSend,
                START_AFTER_READ => StartRule::AfterRead,
                _ => {
                    return Err(DecodeError::InvalidValue {
                        field: "start rule",
                    });
                }
            };
            Ok(RetentionPolicy::Expire { after, start })
        }
        _ => Err(DecodeError::InvalidValue { field: "retention" }),
    }
}

fn read_address(r: &mut Reader<'_>) -> Result<Address, DecodeError> {
    Address::new(r.var16("address", MAX_ADDRESS_LEN)?)
        .map_err(|_| DecodeError::InvalidValue { field: "address" })
}

fn read_frame_id(r: &mut Reader<'_>) -> Result<FrameId, DecodeError> {
    Ok(FrameId::from_bytes(r.array()?))
}

fn write_opt_time(w: &mut Writer, t: Option<Timestamp>) {
    match t {
        None => {
            w.u8(0);
        }
        Some(t) => {
            w.u8(1).u64(t.as_millis());
        }
    }
}

fn read_opt_time(
    r: &mut Reader<'_>,
    field: &'static str,
) -> Result<Option<Timestamp>, DecodeError> {
    match r.u8()? {
        0 => Ok(None),
        1 => Ok(Some(Timestamp::from_millis(r.u64()?))),
        _ => Err(DecodeError::InvalidValue { field }),
    }
}

const PARTY_US: u8 = 0;
const PARTY_PEER: u8 = 1;

fn party_byte(party: Party) -> u8 {
    match party {
        Party::Us => PARTY_US,
        Party::Peer => PARTY_PEER,
    }
}

fn read_party(r: &mut Reader<'_>) -> Result<Party, DecodeError> {
    match r.u8()? {
        PARTY_US => Ok(Party::Us),
        PARTY_PEER => Ok(Party::Peer),
        _ => Err(DecodeError::InvalidValue { field: "party" }),
    }
}

// ---- record keys ----------------------------------------------------------------------------

const KEY_IDENTITY: u8 = 1;
const KEY_COUNTERS: u8 = 2;
const KEY_CONVERSATION: u8 = 3;
const KEY_TOMBSTONE: u8 = 4;
const KEY_SENT: u8 = 5;
const KEY_GIVEN_UP: u8 = 6;
const KEY_CONTROL: u8 = 7;
const KEY_OUTBOX: u8 = 8;
const KEY_SEEN: u8 = 9;
const KEY_POLICY_ENTRY: u8 = 10;
const KEY_WINDOWS: u8 = 11;
const KEY_DELIVERED: u8 = 12;
const KEY_TOMBSTONE_CHUNK: u8 = 13;
const KEY_CONTROL_CHUNK: u8 = 14;
const KEY_DELIVERED_CHUNK: u8 = 15;
const KEY_SEEN_CHUNK: u8 = 16;
/// Longest record key: a tag, a conversation id and a message id.
const MAX_RECORD_KEY_LEN: usize = 1 + 8 + MessageId::LEN;
/// Most records of one conversation's policy: its tracked messages, its pending deletes, and
/// the chunks its tombstones span.
const MAX_POLICY_ENTRIES: usize = MAX_TRACKED_MESSAGES
    + MAX_PENDING_DELETES
    + MAX_POLICY_TOMBSTONES / TOMBSTONES_PER_CHUNK as usize
    + 1;
/// Most records one endpoint state can hold: two singletons plus every bounded collection.
const MAX_RECORDS: usize = 2
    + MAX_CONVERSATIONS
    + MAX_CLOSED_CONVERSATIONS
    + MAX_TOMBSTONES
    + 2 * confide_transport::consts::MAX_OUTBOX_MESSAGES
    + MAX_GIVEN_UP_REMEMBERED
    + MAX_CONTROL_FRAMES_REMEMBERED
    + confide_transport::consts::MAX_DEDUP_ENTRIES
    + (MAX_CONVERSATIONS + MAX_CLOSED_CONVERSATIONS)
        * (MAX_POLICY_ENTRIES + 1 + MAX_RECENTLY_DELIVERED);

/// Which record: its byte form (a tag, then the id) is the record's key in a store, and part
/// of the associated data its encryption is bound to. Keys sort like their byte forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum RecordKey {
    /// Identity, prekeys, address, certificate, trust roots, profile key, configuration.
    Identity,
    /// Counters that move with nearly every step, and the delivery machine's core.
    Counters,
    Conversation(ConversationId),
    Tombstone(ConversationId),
    /// What we keep of one of our frames waiting for its acknowledgement.
    Sent(FrameId),
    GivenUp(FrameId),
    /// A received acknowledgement or resume frame (remembered to refuse replays): read from
    /// older stores only; now in [`RecordKey::ControlChunk`]s.
    Control(FrameId),
    /// The delivery machine's outbox entry.
    Outbox(FrameId),
    /// The delivery machine's dedup-window entry: read from older stores only; now in
    /// [`RecordKey::SeenChunk`]s.
    Seen(FrameId),
    /// One per-message entry of a conversation's policy: a tracked message or a pending delete
    /// (version 8 on; before, the conversation record held them all).
    PolicyEntry(ConversationId, MessageId),
    /// The windows of a conversation's symmetric epochs (version 8 on; before, in the
    /// conversation record).
    Windows(ConversationId),
    /// One of our texts the peer acknowledged, by conversation and arrival order (version 8
    /// stores; before, in the conversation record): read only; now in
    /// [`RecordKey::DeliveredChunk`]s.
    Delivered(ConversationId, u64),
    /// A chunk of a conversation policy's tombstones, by conversation and chunk number
    /// (version 8 on; before, in the conversation record).
    TombstoneChunk(ConversationId, u64),
    /// Received acknowledgements and resume frames, [`LOG_ENTRIES_PER_CHUNK`] arrival orders
    /// a record, by chunk number.
    ControlChunk(u64),
    /// A conversation's delivered texts, [`LOG_ENTRIES_PER_CHUNK`] arrival orders a record,
    /// by conversation and chunk number.
    DeliveredChunk(ConversationId, u64),
    /// The delivery machine's dedup-window entries of one chunk (`Delivery::seen_chunk_record`),
    /// by chunk number.
    SeenChunk(u64),
}

impl RecordKey {
    fn to_bytes(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MAX_RECORD_KEY_LEN);
        match self {
            Self::Identity => out.push(KEY_IDENTITY),
            Self::Counters => out.push(KEY_COUNTERS),
            Self::Conversation(c) | Self::Tombstone(c) => {
                let tag = if matches!(self, Self::Conversation(_)) {
                    KEY_CONVERSATION
                } else {
                    KEY_TOMBSTONE
                };
                out.push(tag);
                out.extend_from_slice(&c.0.to_be_bytes());
            }
            Self::Sent(f)
            | Self::GivenUp(f)
            | Self::Control(f)
            | Self::Outbox(f)
            | Self::Seen(f) => {
                let tag = match self {
                    Self::Sent(_) => KEY_SENT,
                    Self::GivenUp(_) => KEY_GIVEN_UP,
                    Self::Control(_) => KEY_CONTROL,
                    Self::Outbox(_) => KEY_OUTBOX,
                    _ => KEY_SEEN,
                };
                out.push(tag);
                out.extend_from_slice(f.as_bytes());
            }
            Self::PolicyEntry(c, m) => {
                out.push(KEY_POLICY_ENTRY);
                out.extend_from_slice(&c.0.to_be_bytes());
                out.extend_from_slice(&m.to_bytes());
            }
            Self::Windows(c) => {
                out.push(KEY_WINDOWS);
                out.extend_from_slice(&c.0.to_be_bytes());
            }
            Self::Delivered(c, order)
            | Self::TombstoneChunk(c, order)
            | Self::DeliveredChunk(c, order) => {
                out.push(match self {
                    Self::Delivered(..) => KEY_DELIVERED,
                    Self::TombstoneChunk(..) => KEY_TOMBSTONE_CHUNK,
                    _ => KEY_DELIVERED_CHUNK,
                });
                out.extend_from_slice(&c.0.to_be_bytes());
                out.extend_from_slice(&order.to_be_bytes());
            }
            Self::ControlChunk(chunk) | Self::SeenChunk(chunk) => {
                out.push(if matches!(self, Self::ControlChunk(_)) {
                    KEY_CONTROL_CHUNK
                } else {
                    KEY_SEEN_CHUNK
                });
                out.extend_from_slice(&chunk.to_be_bytes());
            }
        }
        out
    }

    /// Strict: an unknown tag or an id of the wrong length is an error.
    fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let key = match r.u8()? {
            KEY_IDENTITY => Self::Identity,
            KEY_COUNTERS => Self::Counters,
            KEY_CONVERSATION => Self::Conversation(ConversationId(r.u64()?)),
            KEY_TOMBSTONE => Self::Tombstone(ConversationId(r.u64()?)),
            KEY_SENT => Self::Sent(read_frame_id(&mut r)?),
            KEY_GIVEN_UP => Self::GivenUp(read_frame_id(&mut r)?),
            KEY_CONTROL => Self::Control(read_frame_id(&mut r)?),
            KEY_OUTBOX => Self::Outbox(read_frame_id(&mut r)?),
            KEY_SEEN => Self::Seen(read_frame_id(&mut r)?),
            KEY_POLICY_ENTRY => {
                Self::PolicyEntry(ConversationId(r.u64()?), MessageId::from_bytes(r.array()?))
            }
            KEY_WINDOWS => Self::Windows(ConversationId(r.u64()?)),
            KEY_DELIVERED => Self::Delivered(ConversationId(r.u64()?), r.u64()?),
            KEY_TOMBSTONE_CHUNK => Self::TombstoneChunk(ConversationId(r.u64()?), r.u64()?),
            KEY_CONTROL_CHUNK => Self::ControlChunk(r.u64()?),
            KEY_SEEN_CHUNK => Self::SeenChunk(r.u64()?),
            KEY_DELIVERED_CHUNK => Self::DeliveredChunk(ConversationId(r.u64()?), r.u64()?),
            _ => {
                return Err(DecodeError::InvalidValue {
                    field: "record key",
                });
            }
        };
        r.finish()?;
        Ok(key)
    }
}

/// The slot context a version 2 record (written before record blobs, still read) was sealed
/// under: the app's slot, length-prefixed, then the record key, so a record opens only in
/// its own place of its own account. Version 3 records bind the slot through the sealer's key
/// and the record key through their associated data.
fn record_context(slot: &[u8], key: &[u8]) -> Vec<u8> {
    let mut context = Vec::with_capacity(slot.len().saturating_add(4 + MAX_RECORD_KEY_LEN));
    context.extend_from_slice(&u32::try_from(slot.len()).unwrap_or(u32::MAX).to_be_bytes());
    context.extend_from_slice(slot);
    context.extend_from_slice(key);
    context
}

// ---- the journal of changed records ------------------------------------------------------------

/// Which records changed and are not yet in a confirmed change set.
///
/// Changes are noted where they happen (the tracked maps, the delivery machine's change log,
/// the prekey store's revision) and gathered here when a change set is taken. A record stays
/// pending until the change set that carried it is confirmed, so a change set the app failed
/// to store is simply taken again, larger.
#[derive(Debug, Default)]
pub(crate) struct Journal {
    /// Pending records and the generation in which each last changed.
    pending: BTreeMap<RecordKey, u64>,
    /// The generation of changes being gathered now.
    generation: u64,
    /// The generation the last change set (or snapshot) covered, until it is confirmed.
    taken: Option<u64>,
    /// The prekey store's revision when last gathered.
    prekey_revision: u64,
}

impl Journal {
    /// Notes a change of a record that has no change log of its own.
    pub(crate) fn mark(&mut self, key: RecordKey) {
        self.pending.insert(key, self.generation);
    }

    fn take(&mut self) {
        self.taken = Some(self.generation);
        self.generation = self.generation.saturating_add(1);
    }

    pub(crate) fn confirm(&mut self) {
        if let Some(taken) = self.taken.take() {
            self.pending.retain(|_, changed_in| *changed_in > taken);
        }
    }
}

/// The records that changed since the last confirmed change set, each encrypted under the
/// storage key and bound to its key and the account's slot: write every put and every delete
/// in **one** transaction, then call [`Endpoint::confirm_persisted`]. If the transaction
/// fails, do not confirm: the next change set carries these records again.
///
/// `Debug` prints counts only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ChangeSet {
    puts: Vec<(Vec<u8>, Vec<u8>)>,
    deletes: Vec<Vec<u8>>,
}

impl ChangeSet {
    /// Records to insert or replace: `(key, sealed value)`, in ascending key order.
    pub fn puts(&self) -> impl ExactSizeIterator<Item = (&[u8], &[u8])> {
        self.puts.iter().map(|(k, v)| (k.as_slice(), v.as_slice()))
    }

    /// Keys of records to delete (deleting a key that is not stored is not an error).
    pub fn deletes(&self) -> impl ExactSizeIterator<Item = &[u8]> {
        self.deletes.iter().map(Vec::as_slice)
    }

    /// Whether there is nothing to write.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.puts.is_empty() && self.deletes.is_empty()
    }

    /// Bytes of keys and values this change set writes (what a store's write volume is made of).
    #[must_use]
    pub fn written_bytes(&self) -> usize {
        let puts = self
            .puts
            .iter()
            .map(|(k, v)| k.len().saturating_add(v.len()));
        let deletes = self.deletes.iter().map(Vec::len);
        puts.chain(deletes).fold(0, usize::saturating_add)
    }
}

impl core::fmt::Debug for ChangeSet {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let Self { puts, deletes } = self;
        f.debug_struct("ChangeSet")
            .field("puts", &puts.len())
            .field("deletes", &deletes.len())
            .field("written_bytes", &self.written_bytes())
            .finish()
    }
}

// ---- the endpoint's persistence API ------------------------------------------------------------

impl Endpoint {
    /// The records that changed since the last confirmed change set, encrypted under `key`
    /// for the storage slot named by `slot` (bytes the app chooses, for example its account
    /// id: records open only with the same `slot` and under their own key, so records of two
    /// accounts, or two records of one, cannot be swapped). Commit them atomically (a
    /// [`Store`](https://docs.rs/confide-store) does), then call
    /// [`Endpoint::confirm_persisted`]. A state change touches a handful of records, whatever
    /// the number of conversations.
    pub fn take_changes<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        key: &StorageKey,
        slot: &[u8],
    ) -> Result<ChangeSet, ExportError> {
        self.gather_changes();
        self.journal.mark(RecordKey::Counters);
        self.seal_pending(rng, key, slot)
    }

    /// Every record of the state, as a change set: for filling an empty store, for example
    /// after restoring a backup with [`Endpoint::import_state`] (which writes nothing by
    /// itself). Clear the store's records for `slot` in the same transaction. Confirm it like
    /// any change set.
    pub fn take_all_records<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        key: &StorageKey,
        slot: &[u8],
    ) -> Result<ChangeSet, ExportError> {
        self.gather_changes();
        for record in self.record_keys() {
            self.journal.mark(record);
        }
        self.seal_pending(rng, key, slot)
    }

    fn seal_pending<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        key: &StorageKey,
        slot: &[u8],
    ) -> Result<ChangeSet, ExportError> {
        let mut set = ChangeSet::default();
        // One key derivation per change set, not per record.
        let sealer = RecordSealer::new(key, StateKind::EndpointRecord, slot);
        for record in self.journal.pending.keys().copied() {
            let key_bytes = record.to_bytes();
            match self.encode_record(record)? {
                Some(plain) => {
                    let sealed = sealer.seal(rng, &key_bytes, &plain);
                    set.puts.push((key_bytes, sealed));
                }
                None => set.deletes.push(key_bytes),
            }
        }
        self.journal.take();
        self.gate.on_export();
        Ok(set)
    }

    /// Loads an endpoint from the records of its store (the values of its puts, by key, in any
    /// order), as [`Endpoint::take_changes`] wrote them under `key` and `slot`. Strict: a
    /// record that does not open, an unknown or repeated key, a missing identity or counters
    /// record, and any broken invariant across records are errors. The loaded state counts as
    /// persisted; the endpoint announces itself to each peer (resume frames) with its first
    /// step.
    pub fn load_records<K, V>(
        key: &StorageKey,
        slot: &[u8],
        records: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, ImportError>
    where
        K: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        // Opened into a vector, then sorted by key once (stores return records in any order;
        // decoding wants the identity first, then the counters): cheaper than a map's node
        // per record for thousands of records.
        let mut opened: Vec<(RecordKey, AuthenticatedPlaintext)> = Vec::new();
        // One key derivation for the whole load; a record still in the version 2 format
        // (written before record blobs) pays its own, until it next changes.
        let sealer = RecordSealer::new(key, StateKind::EndpointRecord, slot);
        for (k, v) in records {
            if opened.len() >= MAX_RECORDS {
                return Err(DecodeError::TooLong {
                    field: "records",
                    len: opened.len().saturating_add(1),
                    max: MAX_RECORDS,
                }
                .into());
            }
            let k = k.as_ref();
            let record = RecordKey::from_bytes(k)?;
            let v = v.as_ref();
            let plain = if storage::blob_version(v) == Some(storage::STORAGE_VERSION) {
                storage::open(key, StateKind::EndpointRecord, &record_context(slot, k), v)?
            } else {
                sealer.open(k, v)?
            };
            opened.push((record, plain));
        }
        opened.sort_unstable_by_key(|(record, _)| *record);
        if opened.windows(2).any(|pair| match pair {
            [(a, _), (b, _)] => a == b,
            _ => false,
        }) {
            return Err(DecodeError::InvalidValue {
                field: "record key repeated",
            }
            .into());
        }
        Self::decode_records(opened.iter().map(|(k, p)| (*k, p.reader())))
    }

    /// Serializes everything (identity and prekeys, certificate, trust roots, configuration,
    /// conversations with their session records and policies, the delivery outbox and dedup
    /// window) as one snapshot blob encrypted under `key` ([`StateKind::Endpoint`]) for the
    /// storage slot named by `slot`. For an app that stores one blob, and for backups; an app
    /// with many conversations should persist with [`Endpoint::take_changes`] instead, which
    /// writes only what changed. Store the result durably, then call
    /// [`Endpoint::confirm_persisted`].
    pub fn export_state<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        key: &StorageKey,
        slot: &[u8],
    ) -> Result<Vec<u8>, ExportError> {
        self.gather_changes();
        let mut w = Writer::with_capacity(64 * 1024);
        w.u8(ENDPOINT_STATE_VERSION);
        let records = self.record_keys();
        w.u32(u32::try_from(records.len()).unwrap_or(u32::MAX));
        for record in records {
            if let Some(plain) = self.encode_record(record)? {
                w.var16("record key", MAX_RECORD_KEY_LEN, &record.to_bytes())?;
                w.var32("record", MAX_STATE_COMPONENT_LEN, &plain)?;
            }
        }
        let plain = w.into_zeroizing();
        let blob = storage::seal(rng, key, StateKind::Endpoint, slot, &plain);
        self.journal.take();
        self.gate.on_export();
        Ok(blob)
    }

    /// Restores an endpoint from a blob of [`Endpoint::export_state`]. The restored state
    /// counts as persisted (it was read from storage). `slot` must be the one the blob was
    /// exported for.
    pub fn import_state(key: &StorageKey, slot: &[u8], blob: &[u8]) -> Result<Self, ImportError> {
        let plain = storage::open(key, StateKind::Endpoint, slot, blob)?;
        let mut r = plain.reader();
        let version = r.u8()?;
        if !is_readable_version(version) {
            return Err(DecodeError::UnknownVersion {
                what: "endpoint state",
                found: version,
            }
            .into());
        }
        let count = r.count32("records", MAX_RECORDS)?;
        let mut records = Vec::with_capacity(count.min(1024));
        let mut last: Option<RecordKey> = None;
        for _ in 0..count {
            let record = RecordKey::from_bytes(r.var16("record key", MAX_RECORD_KEY_LEN)?)?;
            // Strictly ascending: one encoding, no repeats.
            if last.is_some_and(|l| l >= record) {
                return Err(DecodeError::InvalidValue {
                    field: "record order",
                }
                .into());
            }
            last = Some(record);
            records.push((
                record,
                r.authenticated_var32("record", MAX_STATE_COMPONENT_LEN)?,
            ));
        }
        r.finish()?;
        Self::decode_records(records.into_iter())
    }

    /// For an endpoint that keeps no state ([`Persistence::Ephemeral`]): forgets every change
    /// noted so far, so that the change logs stay empty however long it runs.
    pub(crate) fn forget_changes(&mut self) {
        self.drain_changes(false);
        self.journal.pending.clear();
    }

    /// Moves every change noted since the last call into the journal.
    fn gather_changes(&mut self) {
        self.drain_changes(true);
    }

    /// Takes every change noted since the last call from the change logs; `keep` moves them
    /// into the journal, otherwise they are dropped (an ephemeral endpoint, which never takes
    /// a change set, only empties the logs: noting each change cost about 6% of its round
    /// trip).
    fn drain_changes(&mut self, keep: bool) {
        let journal = &mut self.journal;
        let mut mark = |key: RecordKey| {
            if keep {
                journal.mark(key);
            }
        };
        for id in self.conversations.take_changed() {
            mark(RecordKey::Conversation(id));
            // A policy changes only through its conversation, so its changed entries are all
            // in conversations noted as changed. (A removed conversation's entries were
            // noted for deletion when it was removed.)
            if let Some(c) = self.conversations.get_mut_unnoted(&id) {
                for message in c.policy.take_changed_entries() {
                    mark(RecordKey::PolicyEntry(id, message));
                }
                for chunk in c.policy.take_changed_tombstone_chunks() {
                    mark(RecordKey::TombstoneChunk(id, chunk));
                }
                for order in c.recently_delivered.take_changed() {
                    mark(RecordKey::DeliveredChunk(id, order / LOG_ENTRIES_PER_CHUNK));
                }
            }
        }
        for id in self.tag_directory.take_changed() {
            mark(RecordKey::Windows(id));
        }
        for id in self.tombstones.take_changed() {
            mark(RecordKey::Tombstone(id));
        }
        for id in self.sent.take_changed() {
            mark(RecordKey::Sent(id));
            // Whether its outbox entry is stored with its payload depends on the sent record
            // (`encode_record`): a frame that loses its sent record while it still waits
            // (a close frame) is stored again, whole.
            mark(RecordKey::Outbox(id));
        }
        for id in self.given_up.take_changed() {
            mark(RecordKey::GivenUp(id));
        }
        for chunk in self.control_seen.take_changed() {
            mark(RecordKey::ControlChunk(chunk));
        }
        if keep {
            let delivery = self.delivery.take_changes();
            for id in delivery.outbox {
                mark(RecordKey::Outbox(id));
            }
            for chunk in delivery.seen_chunks {
                mark(RecordKey::SeenChunk(chunk));
            }
        } else {
            self.delivery.forget_changes();
        }
        let revision = self.store.revision();
        if revision != journal.prekey_revision {
            journal.prekey_revision = revision;
            journal.mark(RecordKey::Identity);
        }
    }

    /// Every record the state consists of, in ascending key order.
    fn record_keys(&self) -> Vec<RecordKey> {
        let entries = self.delivery.entries();
        let mut keys = vec![RecordKey::Identity, RecordKey::Counters];
        keys.extend(
            self.conversations
                .keys()
                .map(|id| RecordKey::Conversation(*id)),
        );
        keys.extend(self.tombstones.keys().map(|id| RecordKey::Tombstone(*id)));
        keys.extend(self.sent.keys().map(|f| RecordKey::Sent(*f)));
        keys.extend(self.given_up.keys().map(|f| RecordKey::GivenUp(*f)));
        keys.extend(
            self.control_seen
                .chunks()
                .into_iter()
                .map(RecordKey::ControlChunk),
        );
        keys.extend(entries.outbox.into_iter().map(RecordKey::Outbox));
        keys.extend(entries.seen_chunks.into_iter().map(RecordKey::SeenChunk));
        for (id, c) in self.conversations.iter() {
            keys.extend(
                c.policy
                    .entry_ids()
                    .into_iter()
                    .map(|m| RecordKey::PolicyEntry(*id, m)),
            );
            if !self.tag_directory.stored_windows(id).is_empty() {
                keys.push(RecordKey::Windows(*id));
            }
            keys.extend(
                c.recently_delivered
                    .chunks()
                    .into_iter()
                    .map(|chunk| RecordKey::DeliveredChunk(*id, chunk)),
            );
            keys.extend(
                c.policy
                    .tombstone_chunks()
                    .into_iter()
                    .map(|chunk| RecordKey::TombstoneChunk(*id, chunk)),
            );
        }
        // Ascending, as the snapshot requires (the per-conversation records interleave).
        keys.sort_unstable();
        keys
    }

    /// The plaintext of a record, or `None` if it no longer exists.
    fn encode_record(&self, record: RecordKey) -> Result<Option<Zeroizing<Vec<u8>>>, ExportError> {
        let mut w = Writer::with_capacity(1024);
        w.u8(ENDPOINT_STATE_VERSION);
        match record {
            RecordKey::Identity => self.write_identity(&mut w)?,
            RecordKey::Counters => self.write_counters(&mut w)?,
            RecordKey::Conversation(id) => match self.conversations.get(&id) {
                Some(c) => write_conversation(&mut w, c, &self.store.identity().public())?,
                None => return Ok(None),
            },
            RecordKey::Tombstone(id) => match self.tombstones.get(&id) {
                Some(t) => {
                    w.u8(party_byte(t.closed_by)).u64(t.shrunk_at.as_millis());
                }
                None => return Ok(None),
            },
            RecordKey::Sent(frame) => match self.sent.get(&frame) {
                Some(s) => {
                    w.u64(s.conversation.0)
                        .bytes(&s.message.to_bytes())
                        .u8(s.kind.to_byte());
                    w.var32("sent content", MAX_STATE_COMPONENT_LEN, &s.content)?;
                    w.u8(u8::from(s.carries_token));
                }
                None => return Ok(None),
            },
            RecordKey::GivenUp(frame) => match self.given_up.get(&frame) {
                Some(g) => {
                    w.u64(g.conversation.0).bytes(&g.message.to_bytes());
                }
                None => return Ok(None),
            },
            // Written by older releases only: deleted once read (their entries now live in
            // chunks).
            RecordKey::Control(_) | RecordKey::Delivered(..) => return Ok(None),
            RecordKey::ControlChunk(chunk) => {
                let entries = self.control_seen.chunk(chunk);
                if entries.is_empty() {
                    return Ok(None);
                }
                write_chunk(&mut w, &entries, |w, id| {
                    w.bytes(id.as_bytes());
                });
            }
            RecordKey::DeliveredChunk(id, chunk) => {
                let entries = self
                    .conversations
                    .get(&id)
                    .map(|c| c.recently_delivered.chunk(chunk))
                    .unwrap_or_default();
                if entries.is_empty() {
                    return Ok(None);
                }
                let entries: Vec<(u64, Delivered)> =
                    entries.into_iter().map(|d| (d.order, d)).collect();
                write_chunk(&mut w, &entries, |w, d| {
                    w.bytes(&d.message.to_bytes())
                        .bytes(d.frame.as_bytes())
                        .u64(d.at.as_millis());
                });
            }
            // A frame whose content we keep (its sent record) is stored without its payload:
            // the content is encrypted again when the frame next goes out after a load
            // (`docs/endpoint.md`, "Backups and restores"). Only frames without a sent record
            // (a close frame) keep theirs.
            RecordKey::Outbox(frame) => match if self.sent.contains_key(&frame) {
                self.delivery.outbox_record_without_payload(frame)
            } else {
                self.delivery.outbox_record(frame)
            } {
                Some(entry) => {
                    w.var32("outbox entry", MAX_STATE_COMPONENT_LEN, &entry)?;
                }
                None => return Ok(None),
            },
            RecordKey::Seen(_) => return Ok(None),
            RecordKey::SeenChunk(chunk) => match self.delivery.seen_chunk_record(chunk) {
                Some(entries) => {
                    w.var32("dedup chunk", MAX_STATE_COMPONENT_LEN, &entries)?;
                }
                None => return Ok(None),
            },
            RecordKey::PolicyEntry(id, message) => match self
                .conversations
                .get(&id)
                .and_then(|c| c.policy.entry_to_bytes(&message))
            {
                Some(entry) => {
                    // The rest of the record: its layout is the policy's (docs/policy.md).
                    w.bytes(&entry);
                }
                None => return Ok(None),
            },
            RecordKey::Windows(id) => {
                // Least recently used first (`docs/sealed-sender.md` §9.7); our own epochs
                // are never stored.
                let windows = self.tag_directory.stored_windows(&id);
                if windows.is_empty() || !self.conversations.contains_key(&id) {
                    return Ok(None);
                }
                w.u8(u8::try_from(windows.len()).unwrap_or(u8::MAX));
                for window in &windows {
                    w.bytes(window);
                }
            }
            RecordKey::TombstoneChunk(id, chunk) => match self
                .conversations
                .get(&id)
                .and_then(|c| c.policy.tombstone_chunk_to_bytes(chunk))
            {
                // The rest of the record: its layout is the policy's (docs/policy.md).
                Some(bytes) => {
                    w.bytes(&bytes);
                }
                None => return Ok(None),
            },
        }
        Ok(Some(w.into_zeroizing()))
    }

    fn write_identity(&self, w: &mut Writer) -> Result<(), ExportError> {
        w.var32(
            "prekey store",
            MAX_STATE_COMPONENT_LEN,
            &self.store.to_bytes(),
        )?;
        w.var16("address", MAX_ADDRESS_LEN, self.address.as_bytes())?;
        w.var16(
            "certificate",
            MAX_SENDER_CERTIFICATE_LEN,
            self.certificate.as_bytes(),
        )?;
        w.var32(
            "trust roots",
            MAX_STATE_COMPONENT_LEN,
            &self.roots.to_bytes(),
        )?;
        w.bytes(self.profile_key.expose());
        let org = self.config.org;
        w.u64(org.min().get().as_millis());
        match org.max() {
            None => {
                w.u8(0);
            }
            Some(max) => {
                w.u8(1).u64(max.get().as_millis());
            }
        }
        write_retention(w, self.config.initial_retention)?;
        w.u8(match self.config.persistence {
            Persistence::Required => PERSISTENCE_REQUIRED,
            Persistence::Ephemeral => PERSISTENCE_EPHEMERAL,
        });
        match self.config.acknowledgements {
            AckPolicy::Immediate => {
                w.u8(ACKS_IMMEDIATE);
            }
            AckPolicy::Batched { window } => {
                w.u8(ACKS_BATCHED).u64(window.as_millis());
            }
            AckPolicy::AppDriven => {
                w.u8(ACKS_APP_DRIVEN);
            }
        }
        Ok(())
    }

    fn write_counters(&self, w: &mut Writer) -> Result<(), ExportError> {
        w.u64(self.next_conversation)
            .u64(self.control_seen.next_order());
        w.var16(
            "delivery core",
            MAX_STATE_COMPONENT_LEN,
            &self.delivery.core_record(),
        )?;
        w.u8(u8::try_from(EndpointStats::COUNTERS).unwrap_or(u8::MAX));
        for c in self.stats.counters() {
            w.u64(c);
        }
        Ok(())
    }

    /// Assembles an endpoint from its records in ascending key order (identity first, then
    /// counters), checking every invariant across them.
    fn decode_records<'a>(
        records: impl Iterator<Item = (RecordKey, AuthenticatedReader<'a>)>,
    ) -> Result<Self, ImportError> {
        let mut records = records.peekable();
        let mut endpoint = match records.next() {
            Some((RecordKey::Identity, r)) => read_identity(r)?,
            _ => {
                return Err(DecodeError::InvalidValue {
                    field: "identity record",
                }
                .into());
            }
        };
        let (delivery_core, next_control_order) = match records.next() {
            Some((RecordKey::Counters, r)) => endpoint.read_counters(r)?,
            _ => {
                return Err(DecodeError::InvalidValue {
                    field: "counters record",
                }
                .into());
            }
        };
        // Collected, then built into a map at once. Each conversation is boxed (the map holds
        // boxes): a conversation is over 2 KB, and growing the vector, sorting it into the map
        // and moving the map into the endpoint copied every one of them several times (the
        // largest cost of loading many conversations after the cryptography).
        let mut conversations: Vec<(ConversationId, Box<Conversation>)> = Vec::new();
        let mut conversation_ids: BTreeSet<ConversationId> = BTreeSet::new();
        let mut tombstones = BTreeMap::new();
        let mut sent = BTreeMap::new();
        let mut given_up = BTreeMap::new();
        let mut control = Vec::new();
        let mut outbox: Vec<(FrameId, Vec<u8>)> = Vec::new();
        // Outbox records of version 9 or older: each must hold its payload.
        let mut outbox_with_payloads: BTreeSet<FrameId> = BTreeSet::new();
        let mut seen: Vec<(FrameId, Vec<u8>)> = Vec::new();
        let mut seen_chunks: Vec<(u64, Vec<u8>)> = Vec::new();
        // Policy entries by conversation, then message (the records' order), and the
        // conversations whose record (version 7 or older) held its entries itself.
        let mut policy_entries: Vec<(ConversationId, MessageId, &'a [u8])> = Vec::new();
        let mut tombstone_chunks: Vec<(ConversationId, u64, &'a [u8])> = Vec::new();
        let mut delivered: Vec<(ConversationId, Delivered)> = Vec::new();
        // Conversations read from a record of version 7 or older, which held its policy
        // entries, windows and delivered texts itself: no records of those may follow.
        let mut legacy: BTreeSet<ConversationId> = BTreeSet::new();
        // Records of a kind older releases wrote one per entry (version 8 control frames and
        // delivered texts), now stored in chunks: rewritten as chunks, and deleted, in the
        // next change set.
        let mut per_entry: Vec<RecordKey> = Vec::new();
        let issued = |id: ConversationId| id.0 < endpoint.next_conversation;
        let own = endpoint.store.identity().public();
        for (record, mut r) in records {
            let version = read_version(&mut r)?;
            match record {
                RecordKey::Identity | RecordKey::Counters => {
                    return Err(DecodeError::InvalidValue {
                        field: "record key repeated",
                    }
                    .into());
                }
                RecordKey::Conversation(id) => {
                    if !issued(id) {
                        return Err(DecodeError::InvalidValue {
                            field: "conversation id",
                        }
                        .into());
                    }
                    let (conversation, windows) = read_conversation(&mut r, version, &own)?;
                    if version <= ENDPOINT_STATE_VERSION_WITH_POLICY_ENTRIES_INLINE {
                        legacy.insert(id);
                    }
                    if !conversation_ids.insert(id) {
                        return Err(DecodeError::InvalidValue {
                            field: "record key repeated",
                        }
                        .into());
                    }
                    conversations.push((id, Box::new(conversation)));
                    if !windows.is_empty() {
                        endpoint.tag_directory.restore_stored(id, windows);
                    }
                }
                RecordKey::Tombstone(id) => {
                    if !issued(id) || conversation_ids.contains(&id) {
                        return Err(DecodeError::InvalidValue {
                            field: "tombstone id",
                        }
                        .into());
                    }
                    let closed_by = read_party(&mut r)?;
                    let shrunk_at = Timestamp::from_millis(r.u64()?);
                    tombstones.insert(
                        id,
                        Tombstone {
                            closed_by,
                            shrunk_at,
                        },
                    );
                }
                RecordKey::Sent(frame) => {
                    let conversation = ConversationId(r.u64()?);
                    let message = MessageId::from_bytes(r.array()?);
                    let kind = SentKind::from_byte(r.u8()?)
                        .ok_or(DecodeError::InvalidValue { field: "sent kind" })?;
                    let content =
                        Zeroizing::new(r.var32("sent content", MAX_STATE_COMPONENT_LEN)?.to_vec());
                    let carries_token = if version == ENDPOINT_STATE_VERSION_WITH_SENT_MESSAGE {
                        // Version 5 kept the session message; only whether it carried our
                        // delivery token is still needed.
                        crate::endpoint::reset::carries_token(
                            r.var32("sent session message", MAX_STATE_COMPONENT_LEN)?,
                        )
                    } else {
                        r.bool("sent token flag")?
                    };
                    sent.insert(
                        frame,
                        SentRecord {
                            conversation,
                            message,
                            kind,
                            content,
                            carries_token,
                        },
                    );
                }
                RecordKey::GivenUp(frame) => {
                    let conversation = ConversationId(r.u64()?);
                    let message = MessageId::from_bytes(r.array()?);
                    given_up.insert(
                        frame,
                        GivenUp {
                            conversation,
                            message,
                        },
                    );
                }
                RecordKey::Control(frame) => {
                    control.push((frame, r.u64()?));
                    per_entry.push(record);
                }
                RecordKey::ControlChunk(chunk) => {
                    control.extend(read_chunk(&mut r, chunk, |r, order| {
                        Ok((read_frame_id(r)?, order))
                    })?);
                }
                RecordKey::Outbox(frame) => {
                    if version <= ENDPOINT_STATE_VERSION_WITH_OUTBOX_PAYLOADS {
                        outbox_with_payloads.insert(frame);
                    }
                    outbox.push((
                        frame,
                        r.var32("outbox entry", MAX_STATE_COMPONENT_LEN)?.to_vec(),
                    ));
                }
                RecordKey::Seen(frame) => {
                    seen.push((
                        frame,
                        r.var32("dedup entry", MAX_STATE_COMPONENT_LEN)?.to_vec(),
                    ));
                    per_entry.push(record);
                }
                RecordKey::SeenChunk(chunk) => seen_chunks.push((
                    chunk,
                    r.var32("dedup chunk", MAX_STATE_COMPONENT_LEN)?.to_vec(),
                )),
                RecordKey::PolicyEntry(id, message) => {
                    owned_by_conversation(version, id, &conversation_ids, &legacy)?;
                    policy_entries.push((id, message, r.rest()));
                }
                RecordKey::Windows(id) => {
                    owned_by_conversation(version, id, &conversation_ids, &legacy)?;
                    let windows = read_windows(&mut r)?;
                    let conversation = loaded_conversation(&mut conversations, id)?;
                    if windows.is_empty()
                        || !receives_symmetric(&conversation.record, &conversation.policy)
                    {
                        return Err(DecodeError::InvalidValue {
                            field: "tag windows of a closed conversation",
                        }
                        .into());
                    }
                    endpoint.tag_directory.restore_stored(id, windows);
                }
                RecordKey::Delivered(id, order) => {
                    owned_by_conversation(version, id, &conversation_ids, &legacy)?;
                    delivered.push((id, read_delivered(&mut r, order)?));
                    per_entry.push(record);
                }
                RecordKey::DeliveredChunk(id, chunk) => {
                    owned_by_conversation(version, id, &conversation_ids, &legacy)?;
                    delivered.extend(
                        read_chunk(&mut r, chunk, read_delivered)?
                            .into_iter()
                            .map(|d| (id, d)),
                    );
                }
                RecordKey::TombstoneChunk(id, chunk) => {
                    owned_by_conversation(version, id, &conversation_ids, &legacy)?;
                    tombstone_chunks.push((id, chunk, r.rest()));
                }
            }
            r.finish()?;
        }
        restore_policy_entries(&mut conversations, &policy_entries, &tombstone_chunks)?;
        // By conversation, then order (a store may hold both forms while it is rewritten).
        delivered.sort_unstable_by_key(|(id, d)| (*id, d.order));
        restore_delivered(&mut conversations, &delivered)?;
        let open = conversations.iter().filter(|(_, c)| c.is_open()).count();
        if open > MAX_CONVERSATIONS
            || conversations.len().saturating_sub(open) > MAX_CLOSED_CONVERSATIONS
        {
            return Err(DecodeError::InvalidValue {
                field: "conversation count",
            }
            .into());
        }
        check_count("tombstones", tombstones.len(), MAX_TOMBSTONES)?;
        check_count("sent records", sent.len(), MAX_SENT_RECORDS)?;
        check_count("given up", given_up.len(), MAX_GIVEN_UP_REMEMBERED)?;
        endpoint.conversations = Tracked::loaded(conversations.into_iter().collect());
        endpoint.tombstones = Tracked::loaded(tombstones);
        endpoint.sent = Tracked::loaded(sent);
        endpoint.given_up = Tracked::loaded(given_up);
        endpoint.control_seen =
            ControlSeen::loaded(control, next_control_order).ok_or(DecodeError::InvalidValue {
                field: "control frames",
            })?;
        endpoint.delivery = Delivery::from_chunked_records(
            &delivery_core,
            outbox.iter().map(|(_, e)| e.as_slice()),
            seen.iter().map(|(_, e)| e.as_slice()),
            seen_chunks.iter().map(|(k, e)| (*k, e.as_slice())),
        )?;
        // Each delivery record sits under its own id, each dedup chunk under its own number
        // (the delivery machine checked that every entry of a chunk lies in its orders).
        let entries = endpoint.delivery.entries();
        let outbox_keys: Vec<FrameId> = outbox.iter().map(|(f, _)| *f).collect();
        let mut seen_keys: BTreeSet<FrameId> = seen.iter().map(|(f, _)| *f).collect();
        for (chunk, _) in &seen_chunks {
            for id in endpoint.delivery.seen_chunk_ids(*chunk) {
                if !seen_keys.insert(id) {
                    return Err(DecodeError::InvalidValue {
                        field: "delivery record key",
                    }
                    .into());
                }
            }
        }
        // An outbox entry stored without its payload (version 10 on) is rebuilt from its
        // sent record.
        if endpoint.delivery.waiting().any(|(id, payload, _)| {
            payload.is_empty()
                && (!endpoint.sent.contains_key(&id) || outbox_with_payloads.contains(&id))
        }) {
            return Err(DecodeError::InvalidValue {
                field: "outbox entry without its payload or sent record",
            }
            .into());
        }
        if entries.outbox.iter().copied().collect::<BTreeSet<_>>()
            != outbox_keys.into_iter().collect::<BTreeSet<_>>()
            || entries.seen.into_iter().collect::<BTreeSet<_>>() != seen_keys
        {
            return Err(DecodeError::InvalidValue {
                field: "delivery record key",
            }
            .into());
        }
        // Restoring is not a change.
        let _ = endpoint.tag_directory.take_changed();
        // A conversation whose record held its policy entries, windows and delivered texts
        // (version 7 or older) is rewritten with them, as records of their own, in the next
        // change set; until then its stored record stays valid.
        for id in legacy {
            if let Some(c) = endpoint.conversations.get(&id) {
                endpoint.journal.mark(RecordKey::Conversation(id));
                endpoint.journal.mark(RecordKey::Windows(id));
                for message in c.policy.entry_ids() {
                    endpoint.journal.mark(RecordKey::PolicyEntry(id, message));
                }
                for chunk in c.policy.tombstone_chunks() {
                    endpoint.journal.mark(RecordKey::TombstoneChunk(id, chunk));
                }
                for chunk in c.recently_delivered.chunks() {
                    endpoint.journal.mark(RecordKey::DeliveredChunk(id, chunk));
                }
            }
        }
        // Per-entry records: each deleted, and the chunks now holding their entries written
        // (all of a log's chunks when any of its entries was per-entry: one pass, not one
        // per record).
        let (mut control_per_entry, mut seen_per_entry) = (false, false);
        for record in per_entry {
            endpoint.journal.mark(record);
            match record {
                RecordKey::Control(_) => control_per_entry = true,
                RecordKey::Seen(_) => seen_per_entry = true,
                RecordKey::Delivered(id, order) => {
                    endpoint
                        .journal
                        .mark(RecordKey::DeliveredChunk(id, order / LOG_ENTRIES_PER_CHUNK));
                }
                _ => {}
            }
        }
        if control_per_entry {
            for chunk in endpoint.control_seen.chunks() {
                endpoint.journal.mark(RecordKey::ControlChunk(chunk));
            }
        }
        if seen_per_entry {
            for chunk in endpoint.delivery.entries().seen_chunks {
                endpoint.journal.mark(RecordKey::SeenChunk(chunk));
            }
        }
        // Whether this is a cold start or an older backup, tell each peer what we hold.
        endpoint.resume_pending = true;
        endpoint.journal.prekey_revision = endpoint.store.revision();
        Ok(endpoint)
    }

    /// Reads the counters record into `self`; returns the delivery core record and the next
    /// control-frame order.
    fn read_counters(
        &mut self,
        mut r: AuthenticatedReader<'_>,
    ) -> Result<(Vec<u8>, u64), ImportError> {
        read_version(&mut r)?;
        self.next_conversation = r.u64()?;
        let next_control_order = r.u64()?;
        let core = r.var16("delivery core", MAX_STATE_COMPONENT_LEN)?.to_vec();
        let n = usize::from(r.u8()?);
        if n != EndpointStats::COUNTERS {
            return Err(DecodeError::InvalidValue {
                field: "counter count",
            }
            .into());
        }
        let mut counters = Vec::with_capacity(n);
        for _ in 0..n {
            counters.push(r.u64()?);
        }
        self.stats = EndpointStats::from_counters(&counters)
            .ok_or(DecodeError::InvalidValue { field: "counters" })?;
        r.finish()?;
        Ok((core, next_control_order))
    }
}

/// The conversation `id` among `conversations` (sorted by id, as the records arrive).
fn loaded_conversation(
    conversations: &mut [(ConversationId, Box<Conversation>)],
    id: ConversationId,
) -> Result<&mut Conversation, DecodeError> {
    conversations
        .binary_search_by_key(&id, |(c, _)| *c)
        .ok()
        .and_then(|i| conversations.get_mut(i))
        .map(|(_, c)| &mut **c)
        .ok_or(DecodeError::InvalidValue {
            field: "record of a conversation",
        })
}

/// Splits off the front of `list` (sorted by conversation) the run that belongs to `id`.
fn take_run<'l, T>(
    list: &mut &'l [T],
    id: ConversationId,
    owner: impl Fn(&T) -> ConversationId,
) -> &'l [T] {
    let n = list.iter().take_while(|t| owner(t) == id).count();
    let (run, rest) = list.split_at(n.min(list.len()));
    *list = rest;
    run
}

/// Restores each conversation's policy entries and tombstone chunks (both sorted by
/// conversation, then id or chunk number; every conversation among `conversations`, which is
/// sorted by id). Linear: both lists are walked once, a conversation's run at a time.
fn restore_policy_entries(
    conversations: &mut [(ConversationId, Box<Conversation>)],
    entries: &[(ConversationId, MessageId, &[u8])],
    chunks: &[(ConversationId, u64, &[u8])],
) -> Result<(), DecodeError> {
    let (mut entries, mut chunks) = (entries, chunks);
    loop {
        let id = match (entries.first(), chunks.first()) {
            (Some(e), Some(c)) => e.0.min(c.0),
            (Some(e), None) => e.0,
            (None, Some(c)) => c.0,
            (None, None) => return Ok(()),
        };
        let these_entries = take_run(&mut entries, id, |e| e.0);
        let these_chunks = take_run(&mut chunks, id, |c| c.0);
        let conversation = loaded_conversation(conversations, id)?;
        let policy = conversation.policy.clone();
        conversation.policy = policy.with_entries(
            these_entries.iter().map(|(_, m, b)| (*m, *b)),
            these_chunks.iter().map(|(_, n, b)| (*n, *b)),
        )?;
    }
}

/// A record of version 8 that belongs to a conversation (its policy entries, windows,
/// delivered texts) must follow that conversation's record, of version 8 too (older ones held
/// all of it themselves).
fn owned_by_conversation(
    version: u8,
    id: ConversationId,
    conversations: &BTreeSet<ConversationId>,
    legacy: &BTreeSet<ConversationId>,
) -> Result<(), DecodeError> {
    // Records of their own exist from version 8 on.
    if version >= ENDPOINT_STATE_VERSION_WITH_FULL_SESSIONS
        && conversations.contains(&id)
        && !legacy.contains(&id)
    {
        Ok(())
    } else {
        Err(DecodeError::InvalidValue {
            field: "record of a conversation",
        })
    }
}

/// Restores each conversation's delivered texts (`delivered` sorted by conversation, then
/// order; every conversation among `conversations`, which is sorted by id).
fn restore_delivered(
    conversations: &mut [(ConversationId, Box<Conversation>)],
    delivered: &[(ConversationId, Delivered)],
) -> Result<(), DecodeError> {
    let mut rest = delivered;
    while let Some(&(id, _)) = rest.first() {
        let group = take_run(&mut rest, id, |d| d.0);
        let conversation = loaded_conversation(conversations, id)?;
        let next_order = conversation.recently_delivered.next_order;
        conversation.recently_delivered =
            DeliveredLog::loaded(group.iter().map(|(_, d)| *d).collect(), next_order).ok_or(
                DecodeError::InvalidValue {
                    field: "recently delivered",
                },
            )?;
    }
    Ok(())
}

/// Writes one chunk of an ordered log (`docs/endpoint.md`, "Stored state"): the entry count,
/// then each entry's offset in the chunk (its order modulo [`LOG_ENTRIES_PER_CHUNK`],
/// ascending) and its body. `entries` are `(order, entry)` of one chunk, ascending, at most
/// [`LOG_ENTRIES_PER_CHUNK`].
fn write_chunk<T>(w: &mut Writer, entries: &[(u64, T)], body: impl Fn(&mut Writer, &T)) {
    w.u8(u8::try_from(entries.len()).unwrap_or(u8::MAX));
    for (order, entry) in entries {
        w.u8(u8::try_from(order % LOG_ENTRIES_PER_CHUNK).unwrap_or(u8::MAX));
        body(w, entry);
    }
}

/// Reads one chunk of an ordered log, the record of chunk `chunk`: between one and
/// [`LOG_ENTRIES_PER_CHUNK`] entries at strictly increasing offsets below it. `entry` reads
/// each body, given the entry's order.
fn read_chunk<'a, T>(
    r: &mut Reader<'a>,
    chunk: u64,
    mut entry: impl FnMut(&mut Reader<'a>, u64) -> Result<T, DecodeError>,
) -> Result<Vec<T>, DecodeError> {
    let invalid = DecodeError::InvalidValue { field: "log chunk" };
    let first = crate::endpoint::tracked::chunk_orders(chunk)
        .ok_or(invalid)?
        .start;
    let n = r.u8()?;
    if n == 0 || u64::from(n) > LOG_ENTRIES_PER_CHUNK {
        return Err(invalid);
    }
    let mut out = Vec::with_capacity(usize::from(n));
    let mut previous: Option<u8> = None;
    for _ in 0..n {
        let offset = r.u8()?;
        if u64::from(offset) >= LOG_ENTRIES_PER_CHUNK || previous.is_some_and(|p| p >= offset) {
            return Err(invalid);
        }
        previous = Some(offset);
        out.push(entry(r, first.saturating_add(u64::from(offset)))?);
    }
    Ok(out)
}

fn check_count(field: &'static str, len: usize, max: usize) -> Result<(), DecodeError> {
    if len > max {
        return Err(DecodeError::TooLong { field, len, max });
    }
    Ok(())
}

/// Whether records (or a snapshot) of `version` still load: the current one, or one of the
/// five before it (whose records differ in the sent, conversation and outbox records).
fn is_readable_version(version: u8) -> bool {
    version == ENDPOINT_STATE_VERSION
        || version == ENDPOINT_STATE_VERSION_WITH_OUTBOX_PAYLOADS
        || version == ENDPOINT_STATE_VERSION_WITH_FULL_SESSIONS
        || version == ENDPOINT_STATE_VERSION_WITH_POLICY_ENTRIES_INLINE
        || version == ENDPOINT_STATE_VERSION_WITHOUT_VERIFICATION
        || version == ENDPOINT_STATE_VERSION_WITH_SENT_MESSAGE
}

/// Reads a record's version (see [`is_readable_version`]). Returns it.
fn read_version(r: &mut Reader<'_>) -> Result<u8, DecodeError> {
    let version = r.u8()?;
    if !is_readable_version(version) {
        return Err(DecodeError::UnknownVersion {
            what: "endpoint record",
            found: version,
        });
    }
    Ok(version)
}

fn read_identity(mut r: AuthenticatedReader<'_>) -> Result<Endpoint, ImportError> {
    read_version(&mut r)?;
    let store = PreKeyStore::from_authenticated(
        r.authenticated_var32("prekey store", MAX_STATE_COMPONENT_LEN)?,
    )?;
    let address = read_address(&mut r)?;
    let certificate =
        SenderCertificate::from_bytes(r.var16("certificate", MAX_SENDER_CERTIFICATE_LEN)?)?;
    if *certificate.identity() != store.identity().public() {
        return Err(ImportError::CertificateIdentityMismatch);
    }
    let roots = TrustRoots::from_bytes(r.var32("trust roots", MAX_STATE_COMPONENT_LEN)?)?;
    let profile_key = ProfileKey::new(r.array()?);
    let min = read_duration(&mut r, "org minimum")?;
    let max = match r.u8()? {
        0 => None,
        1 => Some(read_duration(&mut r, "org maximum")?),
        _ => {
            return Err(DecodeError::InvalidValue {
                field: "org maximum flag",
            }
            .into());
        }
    };
    let org = OrgBounds::new(min, max).ok_or(DecodeError::InvalidValue {
        field: "org bounds",
    })?;
    let initial_retention = read_retention(&mut r)?;
    let persistence = match r.u8()? {
        PERSISTENCE_REQUIRED => Persistence::Required,
        PERSISTENCE_EPHEMERAL => Persistence::Ephemeral,
        _ => {
            return Err(DecodeError::InvalidValue {
                field: "persistence",
            }
            .into());
        }
    };
    let acknowledgements = match r.u8()? {
        ACKS_IMMEDIATE => AckPolicy::Immediate,
        ACKS_BATCHED => AckPolicy::Batched {
            window: Duration::from_millis(r.u64()?),
        },
        ACKS_APP_DRIVEN => AckPolicy::AppDriven,
        _ => {
            return Err(DecodeError::InvalidValue {
                field: "acknowledgement policy",
            }
            .into());
        }
    };
    if !acknowledgements.is_valid() {
        return Err(DecodeError::InvalidValue {
            field: "acknowledgement window",
        }
        .into());
    }
    r.finish()?;
    let config = EndpointConfig {
        org,
        initial_retention,
        persistence,
        acknowledgements,
    };
    Ok(Endpoint::assemble(
        store,
        address,
        certificate,
        roots,
        profile_key,
        config,
    ))
}

/// Writes a conversation record; `own` is our identity (left out of the session record where
/// its sessions hold it, like the peer's).
fn write_conversation(
    w: &mut Writer,
    c: &Conversation,
    own: &IdentityPublicKey,
) -> Result<(), ExportError> {
    w.var16("peer address", MAX_ADDRESS_LEN, c.peer_address.as_bytes())?;
    w.bytes(&c.peer_identity.to_bytes());
    match c.peer_role {
        None => {
            w.u8(0);
        }
        Some(role) => {
            w.u8(1).u8(role.to_wire());
        }
    }
    // The per-message entries are records of their own (`RecordKey::PolicyEntry`).
    let policy = c
        .policy
        .to_bytes_without_entries()
        .map_err(|_| ExportError::Policy)?;
    w.var32("policy", MAX_STATE_COMPONENT_LEN, &policy)?;
    write_opt_time(w, c.initiated_at);
    w.u64(c.next_seq);
    write_opt_time(w, c.reset_requested_at);
    // The delivered texts are records of their own (`RecordKey::Delivered`).
    w.u64(c.recently_delivered.next_order);
    w.u8(u8::try_from(c.recent_received.len()).unwrap_or(u8::MAX));
    for frame in &c.recent_received {
        w.bytes(frame.as_bytes());
    }
    w.u8(u8::from(c.resume_unconfirmed));
    w.u8(u8::try_from(c.reset_honoured.len()).unwrap_or(u8::MAX));
    for (base_key, at) in &c.reset_honoured {
        w.bytes(base_key).u64(at.as_millis());
    }
    match c.close_sent {
        None => {
            w.u8(0);
        }
        Some((frame, at)) => {
            w.u8(1).bytes(frame.as_bytes()).u64(at.as_millis());
        }
    }
    match &c.held_identity_change {
        None => {
            w.u8(0);
        }
        Some((frame, identity)) => {
            w.u8(1);
            w.var32("held frame", MAX_STATE_COMPONENT_LEN, frame)?;
            w.bytes(&identity.to_bytes());
        }
    }
    w.u16(u16::try_from(c.pending_acks.len()).unwrap_or(u16::MAX));
    for frame in &c.pending_acks {
        w.bytes(frame.as_bytes());
    }
    write_opt_time(w, c.ack_due);
    match &c.peer_token {
        None => {
            w.u8(0);
        }
        Some(token) => {
            w.u8(1).bytes(token.expose());
        }
    }
    w.u8(u8::from(c.token_confirmed));
    // The windows of the peer's symmetric epochs are a record of their own
    // (`RecordKey::Windows`).
    w.var32(
        "session record",
        MAX_STATE_COMPONENT_LEN,
        &c.record.to_bytes_compact(KnownIdentities {
            local: own,
            remote: &c.peer_identity,
        }),
    )?;
    w.u8(c.verified.map_or(0, Verification::to_byte))
        .u8(c.code_failures);
    Ok(())
}

/// Only an open conversation with a session receives symmetric envelopes (and so may have
/// windows).
fn receives_symmetric(record: &SessionRecord, policy: &ConversationPolicy) -> bool {
    record.current().is_some() && policy.closed_by().is_none()
}

/// Reads a count and that many stored windows, least recently used first, no two of the same
/// epoch.
fn read_windows(r: &mut Reader<'_>) -> Result<Vec<StoredTagWindow>, DecodeError> {
    let n = usize::from(r.u8()?);
    check_count("tag windows", n, MAX_EPOCHS_PER_CONVERSATION)?;
    let mut windows: Vec<StoredTagWindow> = Vec::with_capacity(n);
    for _ in 0..n {
        let window = StoredTagWindow::from_bytes(r.bytes(TAG_WINDOW_STATE_LEN)?)?;
        if windows.iter().any(|w| w.same_epoch(&window)) {
            return Err(DecodeError::InvalidValue {
                field: "tag window repeated",
            });
        }
        windows.push(window);
    }
    Ok(windows)
}

/// Reads a delivered text's message id, frame id and time.
fn read_delivered(r: &mut Reader<'_>, order: u64) -> Result<Delivered, DecodeError> {
    let message = MessageId::from_bytes(r.array()?);
    let frame = read_frame_id(r)?;
    let at = Timestamp::from_millis(r.u64()?);
    Ok(Delivered {
        order,
        message,
        frame,
        at,
    })
}

/// Reads a conversation record of `version`; `own` is our identity (left out of a version 9
/// record's sessions where they hold it).
fn read_conversation(
    r: &mut AuthenticatedReader<'_>,
    version: u8,
    own: &IdentityPublicKey,
) -> Result<(Conversation, Vec<StoredTagWindow>), ImportError> {
    let peer_address = read_address(r)?;
    // Verified when it was stored (from a validated certificate or bundle); the record came
    // back through authenticated storage encryption, so the binding signature is not checked
    // again (docs/spec.md, section 11).
    let peer_identity = IdentityPublicKey::read_authenticated(r)?;
    let peer_role = match r.u8()? {
        0 => None,
        1 => Some(Role::from_wire(r.u8()?).ok_or(DecodeError::InvalidValue { field: "role" })?),
        _ => return Err(DecodeError::InvalidValue { field: "role flag" }.into()),
    };
    let policy = ConversationPolicy::from_bytes(r.var32("policy", MAX_STATE_COMPONENT_LEN)?)?;
    let initiated_at = read_opt_time(r, "initiated flag")?;
    let next_seq = r.u64()?;
    let reset_requested_at = read_opt_time(r, "reset flag")?;
    let recently_delivered = if version >= ENDPOINT_STATE_VERSION_WITH_FULL_SESSIONS {
        // The entries are records of their own, restored after this one.
        let next_order = r.u64()?;
        DeliveredLog::loaded(Vec::new(), next_order).unwrap_or_default()
    } else {
        let n = r.count16("recently delivered", MAX_RECENTLY_DELIVERED)?;
        let mut entries = Vec::with_capacity(n);
        for order in 0..n {
            entries.push(read_delivered(r, u64::try_from(order).unwrap_or(u64::MAX))?);
        }
        let next_order = u64::try_from(n).unwrap_or(u64::MAX);
        DeliveredLog::loaded(entries, next_order).ok_or(DecodeError::InvalidValue {
            field: "recently delivered",
        })?
    };
    let n = usize::from(r.u8()?);
    check_count("recent received", n, MAX_RECENT_RECEIVED)?;
    let mut recent_received = VecDeque::with_capacity(n);
    for _ in 0..n {
        recent_received.push_back(read_frame_id(r)?);
    }
    let resume_unconfirmed = r.bool("resume flag")?;
    let n = usize::from(r.u8()?);
    check_count("honoured resets", n, MAX_HONOURED_RESETS)?;
    let mut reset_honoured = VecDeque::with_capacity(n);
    for _ in 0..n {
        let base_key: [u8; 32] = r.array()?;
        reset_honoured.push_back((base_key, Timestamp::from_millis(r.u64()?)));
    }
    let close_sent = match r.u8()? {
        0 => None,
        1 => Some((read_frame_id(r)?, Timestamp::from_millis(r.u64()?))),
        _ => {
            return Err(DecodeError::InvalidValue {
                field: "close flag",
            }
            .into());
        }
    };
    let held_identity_change = match r.u8()? {
        0 => None,
        1 => {
            let frame = r.var32("held frame", MAX_STATE_COMPONENT_LEN)?.to_vec();
            let identity = IdentityPublicKey::read_authenticated(r)?;
            Some((frame, identity))
        }
        _ => return Err(DecodeError::InvalidValue { field: "held flag" }.into()),
    };
    let n = r.count16("pending acknowledgements", MAX_IDS_PER_FRAME)?;
    let mut pending_acks = Vec::with_capacity(n);
    for _ in 0..n {
        let frame = read_frame_id(r)?;
        if pending_acks.contains(&frame) {
            return Err(DecodeError::InvalidValue {
                field: "pending acknowledgement",
            }
            .into());
        }
        pending_acks.push(frame);
    }
    let ack_due = read_opt_time(r, "acknowledgement due")?;
    let peer_token = match r.u8()? {
        0 => None,
        1 => Some(DeliveryToken::new(r.array()?)),
        _ => {
            return Err(DecodeError::InvalidValue {
                field: "peer token flag",
            }
            .into());
        }
    };
    let token_confirmed = r.bool("token confirmed")?;
    let windows = if version >= ENDPOINT_STATE_VERSION_WITH_FULL_SESSIONS {
        // A record of their own, restored after this one.
        Vec::new()
    } else {
        read_windows(r)?
    };
    let session_bytes = r.authenticated_var32("session record", MAX_STATE_COMPONENT_LEN)?;
    let record = if version >= ENDPOINT_STATE_VERSION_WITH_OUTBOX_PAYLOADS {
        // Compact: the identities equal to ours and the peer's are left out.
        SessionRecord::from_authenticated_compact(
            session_bytes,
            KnownIdentities {
                local: own,
                remote: &peer_identity,
            },
        )?
    } else {
        SessionRecord::from_authenticated(session_bytes)?
    };
    if version >= ENDPOINT_STATE_VERSION_WITH_FULL_SESSIONS && policy.has_entries() {
        // Version 8 keeps them in records of their own: one encoding.
        return Err(DecodeError::InvalidValue {
            field: "policy entries in a conversation record",
        }
        .into());
    }
    let (verified, code_failures) = if version >= ENDPOINT_STATE_VERSION_WITH_POLICY_ENTRIES_INLINE
    {
        let verified = Verification::from_byte(r.u8()?).ok_or(DecodeError::InvalidValue {
            field: "verification",
        })?;
        let code_failures = r.u8()?;
        if code_failures > MAX_CODE_FAILURES {
            return Err(DecodeError::InvalidValue {
                field: "code failures",
            }
            .into());
        }
        (verified, code_failures)
    } else {
        (None, 0)
    };
    if !windows.is_empty() && !receives_symmetric(&record, &policy) {
        return Err(DecodeError::InvalidValue {
            field: "tag windows of a closed conversation",
        }
        .into());
    }
    let mut conversation = Conversation::new(
        peer_address,
        peer_identity,
        peer_role,
        record,
        policy,
        initiated_at,
    );
    conversation.next_seq = next_seq;
    conversation.reset_requested_at = reset_requested_at;
    conversation.recently_delivered = recently_delivered;
    conversation.recent_received = recent_received;
    conversation.reset_honoured = reset_honoured;
    conversation.resume_unconfirmed = resume_unconfirmed;
    conversation.close_sent = close_sent;
    conversation.held_identity_change = held_identity_change;
    conversation.pending_acks = pending_acks;
    conversation.ack_due = ack_due;
    conversation.peer_token = peer_token;
    conversation.token_confirmed = token_confirmed;
    conversation.verified = verified;
    conversation.code_failures = code_failures;
    Ok((conversation, windows))
}
