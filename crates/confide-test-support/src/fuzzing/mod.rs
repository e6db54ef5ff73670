//! One function per fuzz target (the name of the target): the decode-and-check logic that
//! `fuzz/fuzz_targets/<name>.rs` calls in one line and that each crate's `tests/fuzz_corpus.rs`
//! replays its seed corpus through, as rustls's `internal::fuzzing` does.
//!
//! Every function panics (through `assert!`) exactly when it finds a violated property; a
//! return means the input was handled correctly (usually: refused, or decoded and re-encoded
//! to the same bytes).

pub mod attachment;
pub mod session;
pub mod symmetric;

use std::sync::LazyLock;

use chacha20::ChaCha20Rng;
use confide::{AcknowledgementPayload, CertifiedBundle, Endpoint, StorageKey};
use confide_crypto::codec::{Reader, Writer};
use confide_crypto::{Timestamp, identity::IdentityKeyPair};
use confide_policy::{ContentFrame, ConversationPolicy, MessageId};
use confide_sealed::{
    ENVELOPE_OVERHEAD, SealedEnvelope, SenderCertificate, ServerCertificate, TrustRoots,
};
use confide_session::storage::{StateKind, open, seal};
use confide_transport::{Delivery, Frame};
use rand_core::SeedableRng;

use crate::sealed_fixture;

pub use attachment::{attachment_pointer, attachment_stream};
pub use session::{
    session_bundle, session_interaction, session_message, session_state, session_storage_blob,
};
pub use symmetric::sealed_symmetric;

/// `policy_content`: the content frame decoder never panics, and whatever it accepts
/// re-encodes to exactly the input (one encoding per value).
pub fn policy_content(data: &[u8]) {
    if let Ok(frame) = ContentFrame::decode(data) {
        let encoded = frame.encode().expect("a decoded frame re-encodes");
        assert_eq!(encoded, data, "decoding is not canonical");
    }
}

/// First byte of a `policy_state` input that holds a state entry by entry (a policy state
/// starts with its version, `0x01`): then `u16` length and the state without entries, then
/// any number of items: `0x00`, a 16-byte message id, `u16` length and
/// `ConversationPolicy::entry_to_bytes`; or `0x01`, a `u64` chunk number, `u16` length and
/// `ConversationPolicy::tombstone_chunk_to_bytes` (`docs/policy.md` §10.1).
pub const POLICY_ENTRY_BY_ENTRY: u8 = 0xe0;

/// `policy_state`: the conversation policy state decoders never panic. Whatever `from_bytes`
/// accepts re-encodes to exactly the input, restores entry by entry to the same state, and
/// survives a timeout at the end of time. An input starting with [`POLICY_ENTRY_BY_ENTRY`]
/// goes to `with_entries` instead: whatever it accepts re-encodes entry by entry to exactly
/// the input, and its whole form restores to the same state.
pub fn policy_state(data: &[u8]) {
    if let Some((&POLICY_ENTRY_BY_ENTRY, rest)) = data.split_first() {
        policy_state_entries(rest);
        return;
    }
    if let Ok(mut state) = ConversationPolicy::from_bytes(data) {
        let encoded = state
            .to_bytes()
            .expect("a restored state has no pending events");
        assert_eq!(&encoded[..], data, "decoding is not canonical");
        let split = policy_state_entry_form(&state);
        let form = parse_entry_form(&split[1..]).expect("the entry form parses");
        let restored = form.restore().expect("a state restores entry by entry");
        assert!(
            restored == state,
            "restored entry by entry, the state differs"
        );
        state.handle_timeout(Timestamp::MAX);
        while state.poll_event().is_some() {}
        let _ = state.poll_timeout();
    }
}

/// `state` in the entry-by-entry form [`policy_state`] reads (seeds of its corpus).
///
/// # Panics
/// If `state` has events waiting to be polled.
#[must_use]
pub fn policy_state_entry_form(state: &ConversationPolicy) -> Vec<u8> {
    let core = state.to_bytes_without_entries().expect("no pending events");
    let mut w = Writer::new();
    w.u8(POLICY_ENTRY_BY_ENTRY);
    w.var16("core", usize::from(u16::MAX), &core)
        .expect("a state without entries is short");
    for id in state.entry_ids() {
        let entry = state.entry_to_bytes(&id).expect("a listed entry exists");
        w.u8(0).bytes(&id.to_bytes());
        w.var16("entry", usize::from(u16::MAX), &entry)
            .expect("an entry is short");
    }
    for chunk in state.tombstone_chunks() {
        let bytes = state
            .tombstone_chunk_to_bytes(chunk)
            .expect("a listed chunk exists");
        w.u8(1).u64(chunk);
        w.var16("chunk", usize::from(u16::MAX), &bytes)
            .expect("a chunk is short");
    }
    w.into_vec()
}

/// A policy state entry by entry: the state without entries, each entry under its id, each
/// tombstone chunk under its number.
struct EntryForm<'a> {
    core: &'a [u8],
    entries: Vec<(MessageId, &'a [u8])>,
    chunks: Vec<(u64, &'a [u8])>,
}

impl EntryForm<'_> {
    fn restore(&self) -> Result<ConversationPolicy, confide_crypto::codec::DecodeError> {
        ConversationPolicy::from_bytes(self.core)
            .and_then(|s| s.with_entries(self.entries.clone(), self.chunks.clone()))
    }
}

/// The entry-by-entry form (after its first byte); `None` if it does not parse.
fn parse_entry_form(data: &[u8]) -> Option<EntryForm<'_>> {
    let mut r = Reader::new(data);
    let core = r.var16("core", usize::from(u16::MAX)).ok()?;
    let mut form = EntryForm {
        core,
        entries: Vec::new(),
        chunks: Vec::new(),
    };
    while r.remaining() > 0 {
        match r.u8().ok()? {
            0 => {
                let id = MessageId::from_bytes(r.array().ok()?);
                form.entries
                    .push((id, r.var16("entry", usize::from(u16::MAX)).ok()?));
            }
            1 => {
                let chunk = r.u64().ok()?;
                form.chunks
                    .push((chunk, r.var16("chunk", usize::from(u16::MAX)).ok()?));
            }
            _ => return None,
        }
    }
    Some(form)
}

fn policy_state_entries(data: &[u8]) {
    let Some(form) = parse_entry_form(data) else {
        return;
    };
    let Ok(mut state) = form.restore() else {
        return;
    };
    assert_eq!(
        &state.to_bytes_without_entries().expect("no pending events")[..],
        form.core,
        "the state without entries is not canonical"
    );
    let ids: Vec<MessageId> = form.entries.iter().map(|(id, _)| *id).collect();
    assert_eq!(state.entry_ids(), ids, "entries lost or invented");
    for (id, bytes) in &form.entries {
        let encoded = state.entry_to_bytes(id).expect("a restored entry exists");
        assert_eq!(&encoded[..], *bytes, "an entry is not canonical");
    }
    let chunks: Vec<u64> = form.chunks.iter().map(|(c, _)| *c).collect();
    assert_eq!(state.tombstone_chunks(), chunks, "chunks lost or invented");
    for (chunk, bytes) in &form.chunks {
        let encoded = state
            .tombstone_chunk_to_bytes(*chunk)
            .expect("a restored chunk exists");
        assert_eq!(&encoded[..], *bytes, "a chunk is not canonical");
    }
    assert!(
        state.take_changed_entries().is_empty() && state.take_changed_tombstone_chunks().is_empty(),
        "restoring is not a change"
    );
    let whole = state.to_bytes().expect("no pending events");
    let again = ConversationPolicy::from_bytes(&whole).expect("the whole form restores");
    assert!(again == state, "restored whole, the state differs");
    state.handle_timeout(Timestamp::MAX);
    while state.poll_event().is_some() {}
    let _ = state.poll_timeout();
}

/// The recipient and trust roots of the [`sealed_fixture`], built once: the seed corpus
/// holds envelopes sealed to this recipient, so mutations start from deep inside `open`.
static RECIPIENT: LazyLock<IdentityKeyPair> = LazyLock::new(sealed_fixture::recipient);
static ROOTS: LazyLock<TrustRoots> = LazyLock::new(sealed_fixture::roots);

/// `sealed_envelope`: decoding never panics and whatever decodes re-encodes to the input;
/// whatever opens (for the fixture's recipient, at the fixture's time) carries a payload of
/// exactly `len - ENVELOPE_OVERHEAD` bytes.
pub fn sealed_envelope(data: &[u8]) {
    if let Ok(envelope) = SealedEnvelope::from_bytes(data) {
        assert_eq!(envelope.to_bytes(), data, "envelope encoding is canonical");
    }
    if let Ok(opened) = confide_sealed::open(&RECIPIENT, &ROOTS, sealed_fixture::NOW, data) {
        assert_eq!(opened.payload.len() + ENVELOPE_OVERHEAD, data.len());
    }
}

/// `sealed_sender_certificate`: the strict decoder never panics, whatever decodes re-encodes
/// to exactly the input, and validating it never panics.
pub fn sealed_sender_certificate(data: &[u8]) {
    if let Ok(cert) = SenderCertificate::from_bytes(data) {
        assert_eq!(
            cert.as_bytes(),
            data,
            "sender certificate encoding is canonical"
        );
        let _ = cert.validate(&ROOTS, sealed_fixture::NOW);
    }
}

/// `sealed_server_certificate`: the strict decoder never panics, whatever decodes re-encodes
/// to exactly the input, and validating it never panics.
pub fn sealed_server_certificate(data: &[u8]) {
    if let Ok(cert) = ServerCertificate::from_bytes(data) {
        assert_eq!(
            cert.as_bytes(),
            data,
            "server certificate encoding is canonical"
        );
        let _ = cert.validate(&ROOTS, sealed_fixture::NOW);
    }
}

/// `transport_frame`: the strict frame decoder never panics, and whatever decodes re-encodes
/// to exactly the input.
pub fn transport_frame(data: &[u8]) {
    if let Ok(frame) = Frame::from_bytes(data) {
        let again = frame.to_bytes().expect("a decoded frame re-encodes");
        assert_eq!(again, data, "frame encoding is canonical");
    }
}

/// `transport_state`: the saved delivery state decoder never panics, whatever decodes
/// re-encodes to exactly the input, and a decoded state runs (timeouts, polling) without
/// panicking until everything in it gives up at the end of time.
pub fn transport_state(data: &[u8]) {
    if let Ok(mut delivery) = Delivery::from_bytes(data) {
        assert_eq!(delivery.to_bytes(), data, "state encoding is canonical");
        let _ = delivery.poll_timeout();
        delivery.handle_timeout(Timestamp::MAX);
        while delivery.poll_transmit().is_some() {}
        while delivery.poll_event().is_some() {}
        assert_eq!(
            delivery.outbox_len(),
            0,
            "everything gives up at the end of time"
        );
    }
}

/// A `transport_records` input split up: the core record, the outbox records, the dedup records.
pub type TransportRecords<'a> = (&'a [u8], Vec<&'a [u8]>, Vec<&'a [u8]>);

/// Splits a `transport_records` input into (core, outbox records, dedup records): a `u16`
/// length and the core record, then a count byte and `u16`-length-prefixed outbox records,
/// then a count byte and dedup records. `None` if the framing does not parse.
#[must_use]
pub fn split_transport_records(data: &[u8]) -> Option<TransportRecords<'_>> {
    let mut r = confide_crypto::codec::Reader::new(data);
    let core = r.var16("core", usize::MAX).ok()?;
    let mut lists = [Vec::new(), Vec::new()];
    for list in &mut lists {
        for _ in 0..r.u8().ok()? {
            list.push(r.var16("record", usize::MAX).ok()?);
        }
    }
    r.finish().ok()?;
    let [outbox, seen] = lists;
    Some((core, outbox, seen))
}

/// Frames records the way [`split_transport_records`] reads them (for the seed corpus).
#[must_use]
pub fn join_transport_records(core: &[u8], outbox: &[Vec<u8>], seen: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    let var16 = |out: &mut Vec<u8>, b: &[u8]| {
        out.extend_from_slice(&u16::try_from(b.len()).unwrap().to_be_bytes());
        out.extend_from_slice(b);
    };
    var16(&mut out, core);
    for list in [outbox, seen] {
        out.push(u8::try_from(list.len()).unwrap());
        for record in list {
            var16(&mut out, record);
        }
    }
    out
}

/// `transport_records`: the delivery machine's record decoder (`Delivery::from_records`, for
/// incremental persistence) never panics; whatever loads writes back exactly the records it
/// was loaded from (as sets: records come in any order), equals the whole-machine decoding
/// of its own snapshot and reloads from its dedup window in chunks; the dedup records read as
/// chunk records (`Delivery::from_chunked_records`) load canonically or not at all.
pub fn transport_records(data: &[u8]) {
    transport_chunk_records(data);
    let Some((core, outbox, seen)) = split_transport_records(data) else {
        return;
    };
    let Ok(delivery) = Delivery::from_records(core, outbox.iter().copied(), seen.iter().copied())
    else {
        return;
    };
    assert_eq!(delivery.core_record(), core, "core record is canonical");
    let entries = delivery.entries();
    let mut again: Vec<Vec<u8>> = entries
        .outbox
        .iter()
        .map(|id| {
            delivery
                .outbox_record(*id)
                .expect("a listed entry has a record")
        })
        .collect();
    let mut given: Vec<Vec<u8>> = outbox.iter().map(|r| r.to_vec()).collect();
    again.sort();
    given.sort();
    assert_eq!(again, given, "outbox records are canonical");
    let mut again: Vec<Vec<u8>> = entries
        .seen
        .iter()
        .map(|id| {
            delivery
                .seen_record(*id)
                .expect("a listed entry has a record")
        })
        .collect();
    let mut given: Vec<Vec<u8>> = seen.iter().map(|r| r.to_vec()).collect();
    again.sort();
    given.sort();
    assert_eq!(again, given, "dedup records are canonical");
    let snapshot = delivery.to_bytes();
    let reloaded = Delivery::from_bytes(&snapshot).expect("a loaded machine's snapshot decodes");
    assert_eq!(reloaded, delivery, "records and snapshot agree");
    // The same machine with its dedup window in chunks reloads to itself.
    let chunks: Vec<(u64, Vec<u8>)> = entries
        .seen_chunks
        .iter()
        .map(|k| {
            let record = delivery
                .seen_chunk_record(*k)
                .expect("a listed chunk has a record");
            (*k, record)
        })
        .collect();
    let chunked = Delivery::from_chunked_records(
        core,
        outbox.iter().copied(),
        [],
        chunks.iter().map(|(k, r)| (*k, r.as_slice())),
    )
    .expect("a machine's own chunks reload");
    assert_eq!(chunked, delivery, "chunks and entries agree");
}

/// The dedup records of `data` (split as [`transport_records`] splits it) read as chunk
/// records, the `i`-th as chunk `i`: whatever loads, loads canonically.
fn transport_chunk_records(data: &[u8]) {
    let Some((core, outbox, seen)) = split_transport_records(data) else {
        return;
    };
    let Ok(delivery) = Delivery::from_chunked_records(
        core,
        outbox.iter().copied(),
        [],
        seen.iter().enumerate().map(|(i, r)| (i as u64, *r)),
    ) else {
        return;
    };
    for (i, record) in seen.iter().enumerate() {
        assert_eq!(
            delivery.seen_chunk_record(i as u64).as_deref(),
            Some(*record),
            "chunk records are canonical"
        );
    }
}

/// `relay_request`: the reference relay's request decoder (`confide_relay::protocol`) never
/// panics and whatever it accepts re-encodes to exactly the input; the same for the relay's
/// messages to clients (which a client decodes), and the relay's frame-header check never
/// panics.
pub fn relay_request(data: &[u8]) {
    use confide_relay::protocol::{Request, ServerMessage, frame_id_of};
    if let Ok(request) = Request::from_bytes(data) {
        let again = request.to_bytes().expect("a decoded request re-encodes");
        assert_eq!(again, data, "request encoding is canonical");
    }
    if let Ok(message) = ServerMessage::from_bytes(data) {
        let again = message
            .to_bytes()
            .expect("a decoded relay message re-encodes");
        assert_eq!(again, data, "relay message encoding is canonical");
    }
    let _ = frame_id_of(data);
}

/// `endpoint_certified_bundle`: the certified bundle decoder (what a directory serves for
/// first contact) never panics, and a bundle that parses encodes to exactly the input.
pub fn endpoint_certified_bundle(data: &[u8]) {
    if let Ok(bundle) = CertifiedBundle::from_bytes(data) {
        assert_eq!(bundle.to_bytes(), data, "re-encoding differs");
    }
}

/// `endpoint_ack_payload`: the decoders of an acknowledgement sealed outside the session and
/// of acknowledgements in front of a session message (`docs/endpoint.md`,
/// "Acknowledgements") never panic, and whatever they accept re-encodes to exactly the input.
pub fn endpoint_ack_payload(data: &[u8]) {
    // The same list in front of a session message (kind 0x23): the split is exact.
    if let Ok((acks, inner)) = AcknowledgementPayload::split_in_front(data) {
        assert_eq!(acks.in_front_of(inner), data, "the split is not exact");
    }
    if let Ok(payload) = AcknowledgementPayload::from_bytes(data) {
        assert_eq!(payload.to_bytes(), data, "decoding is not canonical");
        assert_eq!(
            AcknowledgementPayload::new(payload.ids()).as_ref(),
            Some(&payload),
            "a decoded list is already sorted and unique"
        );
    }
}

/// Whether a snapshot (`docs/endpoint.md`, "Stored state") holds records of the kinds now kept
/// in chunks (`0x07` control frames, `0x09` dedup entries, `0x0c` delivered texts): re-encoded
/// in chunks, such a state may shrink.
fn has_per_entry_log_records(data: &[u8]) -> bool {
    let mut r = confide_crypto::codec::Reader::new(data);
    let (Ok(_version), Ok(count)) = (r.u8(), r.u32()) else {
        return false;
    };
    for _ in 0..count {
        let (Ok(key), Ok(_value)) = (r.var16("key", usize::MAX), r.var32("value", usize::MAX))
        else {
            return false;
        };
        if matches!(key.first(), Some(0x07 | 0x09 | 0x0c)) {
            return true;
        }
    }
    false
}

/// The storage key and slot `endpoint_state` seals its input under.
const ENDPOINT_STATE_KEY: [u8; 32] = [7; 32];
const ENDPOINT_STATE_SLOT: &[u8] = b"account";

/// `endpoint_state`: the input is sealed as an endpoint state blob (so the storage AEAD
/// passes) and imported. Never panics; a state that imports exports to exactly the same
/// bytes, or, when its prekey store has an older version (upgraded on export), to bytes that
/// are a fixed point.
pub fn endpoint_state(data: &[u8]) {
    let key = StorageKey::new(ENDPOINT_STATE_KEY);
    let slot = ENDPOINT_STATE_SLOT;
    let mut rng = ChaCha20Rng::from_seed([1; 32]);
    let blob = seal(&mut rng, &key, StateKind::Endpoint, slot, data);
    let Ok(mut endpoint) = Endpoint::import_state(&key, slot, &blob) else {
        return;
    };
    let again = endpoint
        .export_state(&mut rng, &key, slot)
        .expect("an imported state exports");
    let plain = open(&key, StateKind::Endpoint, slot, &again).expect("own blob opens");
    // A state holding an older prekey store (version 1) or session records of version 3 is
    // read and written back as the current version: then the re-encoding, never shorter, must
    // be a fixed point. A state of an earlier endpoint version may shrink (version 5 loses its
    // sent records' session messages; every version before 9 holds its sessions in full), and
    // so may a state with per-entry log records. (Each
    // record's own canonical form is checked strictly by the session_state target.)
    if plain[..] != *data {
        // Conversation records before version 9 hold their sessions in full; version 9 leaves
        // out the identities it knows: an older state may shrink.
        let older = data
            .first()
            .is_some_and(|v| *v < confide::consts::ENDPOINT_STATE_VERSION);
        assert!(
            older || has_per_entry_log_records(data) || plain.len() >= data.len(),
            "an upgrade never shrinks the state"
        );
        let blob = seal(&mut rng, &key, StateKind::Endpoint, slot, &plain);
        let mut upgraded =
            Endpoint::import_state(&key, slot, &blob).expect("an exported state imports");
        let again = upgraded
            .export_state(&mut rng, &key, slot)
            .expect("an imported state exports");
        let again = open(&key, StateKind::Endpoint, slot, &again).expect("own blob opens");
        assert_eq!(&again[..], &plain[..], "upgraded re-encoding differs");
    }
}

/// The fixed account and row the `store_transcript_row` target opens rows for: keys derived
/// from a constant storage key and slot, and the header of message `0x11..` of conversation 7
/// at position 1. The seed corpus holds rows sealed for it, so mutations start past the
/// length and version checks.
#[must_use]
pub fn store_row_fixture() -> (
    confide_store::row::TranscriptKeys,
    confide_store::row::RowHeader,
    confide::MessageId,
) {
    let keys = confide_store::row::TranscriptKeys::derive(&StorageKey::new([0x5a; 32]), b"fuzz")
        .expect("a short slot");
    let id = confide::MessageId::from_bytes([0x11; 16]);
    let header = confide_store::row::RowHeader {
        conversation: 7,
        tag: keys.tag(7, &id),
        seq: 1,
        sent_at: Timestamp::from_millis(1_767_000_000_000),
        expires_at: None,
    };
    (keys, header, id)
}

/// `store_transcript_row`: the message store's row decoder (`open_row`) never panics on any
/// pair of blobs (the first [`WRAPPED_KEY_LEN`](confide_store::row::WRAPPED_KEY_LEN) bytes as
/// the wrapped key, the rest as the sealed body); whatever opens is the fixture's message,
/// with a body exactly [`BODY_OVERHEAD`](confide_store::row::BODY_OVERHEAD) bytes shorter than
/// its sealed form, and no longer opens as another row.
pub fn store_transcript_row(data: &[u8]) {
    use confide_store::row::{BODY_OVERHEAD, RowHeader, WRAPPED_KEY_LEN, open_row};
    let (keys, header, id) = store_row_fixture();
    let split = data.len().min(WRAPPED_KEY_LEN);
    let (wrapped, body) = data.split_at(split);
    if let Ok(entry) = open_row(&keys, &header, wrapped, body) {
        assert_eq!(entry.id, id, "an opened row is the row's own message");
        assert_eq!(entry.body.len() + BODY_OVERHEAD, body.len());
        let moved = RowHeader {
            seq: header.seq + 1,
            ..header
        };
        assert!(
            open_row(&keys, &moved, wrapped, body).is_err(),
            "a row opens only in its own place"
        );
    }
}
