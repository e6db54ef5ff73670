//! Export and import of the whole endpoint state (encrypted at rest), and the "nothing lost"
//! persistence rule. The byte layout is in `docs/endpoint.md`.

use std::collections::{BTreeMap, VecDeque};

use confide_crypto::{
    CryptoRng, Duration, Timestamp,
    codec::{DecodeError, Reader, Writer},
    identity::{IDENTITY_PUBLIC_KEY_LEN, IdentityPublicKey},
    stored::AuthenticatedReader,
};
use confide_policy::{
    ConversationPolicy, MessageId, OrgBounds, RetentionDuration, RetentionPolicy, StartRule,
    limits::MAX_IDS_PER_FRAME,
};
use confide_sealed::{
    DeliveryToken, MAX_SENDER_CERTIFICATE_LEN, ProfileKey, Role, SenderCertificate, TrustRoots,
};
use confide_session::{
    PreKeyStore, SessionRecord,
    storage::{self, StateKind, StorageKey},
};
use confide_transport::{
    Address, Delivery, FrameId, RelayToken, Transmit, consts::MAX_ADDRESS_LEN,
};
use zeroize::Zeroizing;

use crate::consts::{
    ENDPOINT_STATE_VERSION, MAX_CLOSED_CONVERSATIONS, MAX_CONTROL_FRAMES_REMEMBERED,
    MAX_CONVERSATIONS, MAX_GIVEN_UP_REMEMBERED, MAX_HELD_TRANSMITS, MAX_HONOURED_RESETS,
    MAX_RECENT_RECEIVED, MAX_RECENTLY_DELIVERED, MAX_STATE_COMPONENT_LEN, MAX_TOMBSTONES,
};
use crate::endpoint::conversation::{Conversation, GivenUp, SentKind, SentRecord, Tombstone};
use crate::endpoint::gate::PersistGate;
use crate::endpoint::{AckPolicy, Endpoint, EndpointConfig, EndpointStats, Persistence};
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

impl Endpoint {
    /// Serializes everything (identity and prekeys, certificate, trust roots, configuration,
    /// conversations with their session records and policies, the delivery outbox and dedup
    /// window, frames waiting to leave) and encrypts it under `key`
    /// ([`StateKind::Endpoint`]) for the storage slot named by `slot` (bytes the app chooses,
    /// for example its account id): the blob opens only with the same `slot`, so blobs of
    /// two accounts cannot be swapped. Store the result durably, then call
    /// [`Endpoint::confirm_persisted`].
    pub fn export_state<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        key: &StorageKey,
        slot: &[u8],
    ) -> Result<Vec<u8>, ExportError> {
        let plain = self.encode_state()?;
        let blob = storage::seal(rng, key, StateKind::Endpoint, slot, &plain);
        self.gate.on_export();
        Ok(blob)
    }

    /// Restores an endpoint from a blob of [`Endpoint::export_state`]. The restored state
    /// counts as persisted (it was read from storage): frames it holds may leave at once.
    /// `slot` must be the one the blob was exported for.
    pub fn import_state(key: &StorageKey, slot: &[u8], blob: &[u8]) -> Result<Self, ImportError> {
        let plain = storage::open(key, StateKind::Endpoint, slot, blob)?;
        Self::decode_state(plain.reader())
    }

    fn encode_state(&self) -> Result<Zeroizing<Vec<u8>>, ExportError> {
        let mut w = Writer::with_capacity(64 * 1024);
        w.u8(ENDPOINT_STATE_VERSION);
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
        write_retention(&mut w, self.config.initial_retention)?;
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
        w.u64(self.next_conversation);
        w.u32(u32::try_from(self.conversations.len()).unwrap_or(u32::MAX));
        for (id, c) in &self.conversations {
            w.u64(id.0);
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
            w.var32(
                "session record",
                MAX_STATE_COMPONENT_LEN,
                &c.record.to_bytes(),
            )?;
            let policy = c.policy.to_bytes().map_err(|_| ExportError::Policy)?;
            w.var32("policy", MAX_STATE_COMPONENT_LEN, &policy)?;
            write_opt_time(&mut w, c.initiated_at);
            w.u64(c.next_seq);
            write_opt_time(&mut w, c.reset_requested_at);
            w.u16(u16::try_from(c.recently_delivered.len()).unwrap_or(u16::MAX));
            for (message, frame, at) in &c.recently_delivered {
                w.bytes(&message.to_bytes())
                    .bytes(frame.as_bytes())
                    .u64(at.as_millis());
            }
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
            write_opt_time(&mut w, c.ack_due);
            match &c.peer_token {
                None => {
                    w.u8(0);
                }
                Some(token) => {
                    w.u8(1).bytes(token.expose());
                }
            }
            w.u8(u8::from(c.token_confirmed));
        }
        w.u32(u32::try_from(self.tombstones.len()).unwrap_or(u32::MAX));
        for (id, t) in &self.tombstones {
            w.u64(id.0)
                .u8(party_byte(t.closed_by))
                .u64(t.shrunk_at.as_millis());
        }
        w.var32(
            "delivery",
            MAX_STATE_COMPONENT_LEN,
            &self.delivery.to_bytes(),
        )?;
        w.u32(u32::try_from(self.sent.len()).unwrap_or(u32::MAX));
        for (frame, s) in &self.sent {
            w.bytes(frame.as_bytes())
                .u64(s.conversation.0)
                .bytes(&s.message.to_bytes())
                .u8(s.kind.to_byte());
            w.var32("sent content", MAX_STATE_COMPONENT_LEN, &s.content)?;
            w.var32(
                "sent session message",
                MAX_STATE_COMPONENT_LEN,
                &s.session_message,
            )?;
        }
        w.u32(u32::try_from(self.given_up.len()).unwrap_or(u32::MAX));
        for (frame, g) in &self.given_up {
            w.bytes(frame.as_bytes())
                .u64(g.conversation.0)
                .bytes(&g.message.to_bytes());
        }
        w.u16(u16::try_from(self.control_seen.len()).unwrap_or(u16::MAX));
        for frame in &self.control_seen {
            w.bytes(frame.as_bytes());
        }
        w.u32(u32::try_from(self.gate.held_len()).unwrap_or(u32::MAX));
        for tx in self.gate.held() {
            w.var16("held destination", MAX_ADDRESS_LEN, tx.to.as_bytes())?;
            w.var32("held transmit", MAX_STATE_COMPONENT_LEN, &tx.frame)?;
            match &tx.token {
                None => {
                    w.u8(0);
                }
                Some(token) => {
                    w.u8(1).bytes(token.expose());
                }
            }
        }
        w.u8(u8::try_from(EndpointStats::COUNTERS).unwrap_or(u8::MAX));
        for c in self.stats.counters() {
            w.u64(c);
        }
        Ok(w.into_zeroizing())
    }

    fn decode_state(mut r: AuthenticatedReader<'_>) -> Result<Self, ImportError> {
        let version = r.u8()?;
        if version != ENDPOINT_STATE_VERSION {
            return Err(DecodeError::UnknownVersion {
                what: "endpoint state",
                found: version,
            }
            .into());
        }
        let store = PreKeyStore::from_bytes(r.var32("prekey store", MAX_STATE_COMPONENT_LEN)?)?;
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
        let config = EndpointConfig {
            org,
            initial_retention,
            persistence,
            acknowledgements,
        };
        let mut endpoint = Self::assemble(store, address, certificate, roots, profile_key, config);
        endpoint.next_conversation = r.u64()?;
        let count = r.count32(
            "conversations",
            MAX_CONVERSATIONS.saturating_add(MAX_CLOSED_CONVERSATIONS),
        )?;
        let mut conversations = BTreeMap::new();
        for _ in 0..count {
            let id = ConversationId(r.u64()?);
            if id.0 >= endpoint.next_conversation {
                return Err(DecodeError::InvalidValue {
                    field: "conversation id",
                }
                .into());
            }
            let peer_address = read_address(&mut r)?;
            let peer_identity = IdentityPublicKey::from_bytes(r.bytes(IDENTITY_PUBLIC_KEY_LEN)?)?;
            let peer_role = match r.u8()? {
                0 => None,
                1 => Some(
                    Role::from_wire(r.u8()?).ok_or(DecodeError::InvalidValue { field: "role" })?,
                ),
                _ => return Err(DecodeError::InvalidValue { field: "role flag" }.into()),
            };
            let record = SessionRecord::from_authenticated(
                r.authenticated_var32("session record", MAX_STATE_COMPONENT_LEN)?,
            )?;
            let policy =
                ConversationPolicy::from_bytes(r.var32("policy", MAX_STATE_COMPONENT_LEN)?)?;
            let initiated_at = read_opt_time(&mut r, "initiated flag")?;
            let next_seq = r.u64()?;
            let reset_requested_at = read_opt_time(&mut r, "reset flag")?;
            let n = r.count16("recently delivered", MAX_RECENTLY_DELIVERED)?;
            let mut recently_delivered = VecDeque::with_capacity(n);
            for _ in 0..n {
                let message = MessageId::from_bytes(r.array()?);
                let frame = read_frame_id(&mut r)?;
                recently_delivered.push_back((message, frame, Timestamp::from_millis(r.u64()?)));
            }
            let n = usize::from(r.u8()?);
            if n > MAX_RECENT_RECEIVED {
                return Err(DecodeError::InvalidValue {
                    field: "recent received count",
                }
                .into());
            }
            let mut recent_received = VecDeque::with_capacity(n);
            for _ in 0..n {
                recent_received.push_back(read_frame_id(&mut r)?);
            }
            let resume_unconfirmed = r.bool("resume flag")?;
            let n = usize::from(r.u8()?);
            if n > MAX_HONOURED_RESETS {
                return Err(DecodeError::InvalidValue {
                    field: "honoured reset count",
                }
                .into());
            }
            let mut reset_honoured = VecDeque::with_capacity(n);
            for _ in 0..n {
                let base_key: [u8; 32] = r.array()?;
                reset_honoured.push_back((base_key, Timestamp::from_millis(r.u64()?)));
            }
            let close_sent = match r.u8()? {
                0 => None,
                1 => Some((read_frame_id(&mut r)?, Timestamp::from_millis(r.u64()?))),
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
                    let identity =
                        IdentityPublicKey::from_bytes(r.bytes(IDENTITY_PUBLIC_KEY_LEN)?)?;
                    Some((frame, identity))
                }
                _ => return Err(DecodeError::InvalidValue { field: "held flag" }.into()),
            };
            let n = r.count16("pending acknowledgements", MAX_IDS_PER_FRAME)?;
            let mut pending_acks = Vec::with_capacity(n);
            for _ in 0..n {
                let frame = read_frame_id(&mut r)?;
                if pending_acks.contains(&frame) {
                    return Err(DecodeError::InvalidValue {
                        field: "pending acknowledgement",
                    }
                    .into());
                }
                pending_acks.push(frame);
            }
            let ack_due = read_opt_time(&mut r, "acknowledgement due")?;
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
            let token_confirmed = match r.u8()? {
                0 => false,
                1 => true,
                _ => {
                    return Err(DecodeError::InvalidValue {
                        field: "token confirmed",
                    }
                    .into());
                }
            };
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
            // Strictly ascending ids: one canonical encoding, no duplicates.
            if conversations
                .last_key_value()
                .is_some_and(|(last, _)| *last >= id)
            {
                return Err(DecodeError::InvalidValue {
                    field: "conversation order",
                }
                .into());
            }
            conversations.insert(id, conversation);
        }
        let open = conversations.values().filter(|c| c.is_open()).count();
        if open > MAX_CONVERSATIONS || count.saturating_sub(open) > MAX_CLOSED_CONVERSATIONS {
            return Err(DecodeError::InvalidValue {
                field: "conversation count",
            }
            .into());
        }
        endpoint.conversations = conversations;
        let count = r.count32("tombstones", MAX_TOMBSTONES)?;
        for _ in 0..count {
            let id = ConversationId(r.u64()?);
            let closed_by = read_party(&mut r)?;
            let shrunk_at = Timestamp::from_millis(r.u64()?);
            if id.0 >= endpoint.next_conversation
                || endpoint.conversations.contains_key(&id)
                || endpoint
                    .tombstones
                    .last_key_value()
                    .is_some_and(|(last, _)| *last >= id)
            {
                return Err(DecodeError::InvalidValue {
                    field: "tombstone id",
                }
                .into());
            }
            endpoint.tombstones.insert(
                id,
                Tombstone {
                    closed_by,
                    shrunk_at,
                },
            );
        }
        endpoint.delivery = Delivery::from_bytes(r.var32("delivery", MAX_STATE_COMPONENT_LEN)?)?;
        let count = r.count32("sent records", MAX_SENT_RECORDS)?;
        for _ in 0..count {
            let frame = read_frame_id(&mut r)?;
            let conversation = ConversationId(r.u64()?);
            let message = MessageId::from_bytes(r.array()?);
            let kind = SentKind::from_byte(r.u8()?)
                .ok_or(DecodeError::InvalidValue { field: "sent kind" })?;
            let content =
                Zeroizing::new(r.var32("sent content", MAX_STATE_COMPONENT_LEN)?.to_vec());
            let session_message = r
                .var32("sent session message", MAX_STATE_COMPONENT_LEN)?
                .to_vec();
            if endpoint
                .sent
                .last_key_value()
                .is_some_and(|(last, _)| *last >= frame)
            {
                return Err(DecodeError::InvalidValue {
                    field: "sent order",
                }
                .into());
            }
            endpoint.sent.insert(
                frame,
                SentRecord {
                    conversation,
                    message,
                    kind,
                    content,
                    session_message,
                },
            );
        }
        let count = r.count32("given up", MAX_GIVEN_UP_REMEMBERED)?;
        for _ in 0..count {
            let frame = read_frame_id(&mut r)?;
            let conversation = ConversationId(r.u64()?);
            let message = MessageId::from_bytes(r.array()?);
            if endpoint
                .given_up
                .last_key_value()
                .is_some_and(|(last, _)| *last >= frame)
            {
                return Err(DecodeError::InvalidValue {
                    field: "given-up order",
                }
                .into());
            }
            endpoint.given_up.insert(
                frame,
                GivenUp {
                    conversation,
                    message,
                },
            );
        }
        let count = r.count16("control frames", MAX_CONTROL_FRAMES_REMEMBERED)?;
        for _ in 0..count {
            endpoint.control_seen.push_back(read_frame_id(&mut r)?);
        }
        let count = r.count32("held transmits", MAX_HELD_TRANSMITS)?;
        let mut held = VecDeque::with_capacity(count);
        for _ in 0..count {
            let to = read_address(&mut r)?;
            let frame = r.var32("held transmit", MAX_STATE_COMPONENT_LEN)?.to_vec();
            let token = match r.u8()? {
                0 => None,
                1 => Some(RelayToken::new(r.array()?)),
                _ => {
                    return Err(DecodeError::InvalidValue {
                        field: "held token flag",
                    }
                    .into());
                }
            };
            held.push_back(Transmit { to, frame, token });
        }
        // The restored state is persisted, so these may leave at once.
        endpoint.gate = PersistGate::restored(held);
        // Whether this is a cold start or an older backup, tell each peer what we hold.
        endpoint.resume_pending = true;
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
        endpoint.stats = EndpointStats::from_counters(&counters)
            .ok_or(DecodeError::InvalidValue { field: "counters" })?;
        r.finish()?;
        Ok(endpoint)
    }
}
