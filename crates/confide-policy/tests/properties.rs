#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! Property tests: two parties with skewed clocks exchange frames over a network that
//! reorders, duplicates and corrupts, while a model checks what a user would see.
//!
//! * No message is visible after its deadline: the driver calls `handle_timeout` whenever
//!   `poll_timeout` is due (tolerance 0 under this driver), and the deadline is recomputed here
//!   from the documented rules, independently of the crate.
//! * Both sides converge on the same timer under reordering, duplication and concurrent changes.
//! * Only authors delete: every `Deleted` event names the true author, who asked for it.
//! * Serializing and restoring at random points changes no output and no final state.
//! * A refused frame changes nothing.

use confide_crypto::{Duration, Timestamp};
use confide_policy::limits::MAX_CLOCK_SKEW;
use confide_policy::{
    Body, ContentFrame, ConversationPolicy, Incoming, MessageId, OrgBounds, PolicyEvent,
    RetentionDuration, RetentionPolicy, Side, StartRule,
};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

const T0: Timestamp = Timestamp::from_millis(1_750_000_000_000);

#[derive(Debug, Clone)]
enum Op {
    SetTimer {
        side: usize,
        policy: usize,
    },
    Send {
        side: usize,
    },
    Unsend {
        side: usize,
        pick: usize,
    },
    Read {
        side: usize,
    },
    Deliver {
        to: usize,
        pick: usize,
        duplicate: bool,
    },
    ForgeDelete {
        to: usize,
        pick: usize,
    },
    Corrupt {
        to: usize,
        pick: usize,
        pos: usize,
        xor: u8,
    },
    Advance {
        ms: u64,
    },
    ClockOffset {
        side: usize,
        offset_ms: i64,
    },
    Persist {
        side: usize,
    },
}

fn policies() -> Vec<RetentionPolicy> {
    vec![
        RetentionPolicy::Off,
        RetentionPolicy::after_send(Duration::from_secs(10)),
        RetentionPolicy::after_send(Duration::from_mins(1)),
        RetentionPolicy::after_send(Duration::from_hours(1)),
        RetentionPolicy::after_read(Duration::from_secs(30)),
        RetentionPolicy::after_read(Duration::from_hours(1)),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (0..2usize, 0..6usize).prop_map(|(side, policy)| Op::SetTimer { side, policy }),
        3 => (0..2usize).prop_map(|side| Op::Send { side }),
        1 => (0..2usize, any::<usize>()).prop_map(|(side, pick)| Op::Unsend { side, pick }),
        1 => (0..2usize).prop_map(|side| Op::Read { side }),
        4 => (0..2usize, any::<usize>(), any::<bool>())
            .prop_map(|(to, pick, duplicate)| Op::Deliver { to, pick, duplicate }),
        1 => (0..2usize, any::<usize>()).prop_map(|(to, pick)| Op::ForgeDelete { to, pick }),
        1 => (0..2usize, any::<usize>(), any::<usize>(), 1..=255u8)
            .prop_map(|(to, pick, pos, xor)| Op::Corrupt { to, pick, pos, xor }),
        3 => prop_oneof![0..20_000u64, 0..4_000_000u64, 0..200_000_000u64]
            .prop_map(|ms| Op::Advance { ms }),
        1 => (0..2usize, -900_000..900_000i64).prop_map(|(side, offset_ms)| Op::ClockOffset { side, offset_ms }),
        1 => (0..2usize).prop_map(|side| Op::Persist { side }),
    ]
}

fn org() -> impl Strategy<Value = OrgBounds> {
    prop_oneof![
        Just(OrgBounds::UNRESTRICTED),
        Just(
            OrgBounds::new(
                RetentionDuration::new(Duration::from_secs(20)).unwrap(),
                RetentionDuration::new(Duration::from_mins(30)),
            )
            .unwrap()
        ),
        Just(
            OrgBounds::new(
                RetentionDuration::MIN,
                RetentionDuration::new(Duration::from_days(1))
            )
            .unwrap()
        ),
    ]
}

/// What the model knows about a visible message.
#[derive(Debug, Clone)]
struct Visible {
    own: bool,
    local_time: Timestamp,
    claimed: Timestamp,
    policy: RetentionPolicy,
    read_at: Option<Timestamp>,
}

/// The documented rule, written independently of the crate.
fn oracle_deadline(org: &OrgBounds, v: &Visible) -> Option<Timestamp> {
    let rule = match v.policy {
        RetentionPolicy::Off => None,
        RetentionPolicy::Expire { after, start } => match start {
            StartRule::AfterSend => {
                let start = if v.own || v.claimed >= v.local_time {
                    v.local_time
                } else {
                    let floor = v
                        .local_time
                        .as_millis()
                        .saturating_sub(MAX_CLOCK_SKEW.as_millis());
                    Timestamp::from_millis(v.claimed.as_millis().max(floor))
                };
                Some(start.as_millis() + after.get().as_millis())
            }
            StartRule::AfterRead => v.read_at.map(|r| r.as_millis() + after.get().as_millis()),
            _ => panic!("unknown start rule"),
        },
        _ => panic!("unknown policy"),
    };
    let cap = org
        .max()
        .map(|m| v.local_time.as_millis() + m.get().as_millis());
    match (rule, cap) {
        (Some(a), Some(b)) => Some(Timestamp::from_millis(a.min(b))),
        (a, b) => a.or(b).map(Timestamp::from_millis),
    }
}

struct Party {
    policy: ConversationPolicy,
    offset_ms: i64,
    visible: BTreeMap<MessageId, Visible>,
    surfaced_ever: BTreeSet<MessageId>,
    sent: Vec<MessageId>,
    /// What an incremental store holds of the policy's per-message entries, kept up to date
    /// from `take_changed_entries` at every persist.
    stored_entries: BTreeMap<MessageId, Vec<u8>>,
    /// And of its tombstone chunks.
    stored_chunks: BTreeMap<u64, Vec<u8>>,
}

struct Sim {
    org: OrgBounds,
    parties: [Party; 2],
    now: Timestamp,
    /// Frames on their way to party `i`.
    in_flight: [Vec<Vec<u8>>; 2],
    next_id: u32,
    /// Who wrote each text.
    author: BTreeMap<MessageId, usize>,
    /// Deletes each party asked for (by API or by a frame it sent).
    delete_requested: [BTreeSet<MessageId>; 2],
    persist: bool,
    transcript: Vec<String>,
}

fn side_of(i: usize) -> Side {
    if i == 0 {
        Side::Initiator
    } else {
        Side::Responder
    }
}

impl Sim {
    fn new(org: OrgBounds, persist: bool) -> Self {
        let party = |i: usize| Party {
            policy: ConversationPolicy::new(side_of(i), org, RetentionPolicy::Off),
            offset_ms: 0,
            visible: BTreeMap::new(),
            surfaced_ever: BTreeSet::new(),
            sent: Vec::new(),
            stored_entries: BTreeMap::new(),
            stored_chunks: BTreeMap::new(),
        };
        Self {
            org,
            parties: [party(0), party(1)],
            now: T0,
            in_flight: [Vec::new(), Vec::new()],
            next_id: 1,
            author: BTreeMap::new(),
            delete_requested: [BTreeSet::new(), BTreeSet::new()],
            persist,
            transcript: Vec::new(),
        }
    }

    fn clock(&self, i: usize) -> Timestamp {
        let ms = i128::from(self.now.as_millis()) + i128::from(self.parties[i].offset_ms);
        Timestamp::from_millis(u64::try_from(ms).unwrap())
    }

    fn fresh_id(&mut self) -> MessageId {
        let mut b = [0x5a; 16];
        b[..4].copy_from_slice(&self.next_id.to_be_bytes());
        self.next_id += 1;
        MessageId::from_bytes(b)
    }

    fn drain(&mut self, i: usize) {
        while let Some(event) = self.parties[i].policy.poll_event() {
            self.transcript.push(format!("{i} event {event:?}"));
            match event {
                PolicyEvent::Expired { id } => {
                    let v = self.parties[i].visible.remove(&id);
                    assert!(v.is_some(), "Expired for a message that was not visible");
                }
                PolicyEvent::Deleted { id, author } => {
                    let true_author = self.author[&id];
                    assert_eq!(author, side_of(true_author), "Deleted names a non-author");
                    assert!(
                        self.delete_requested[true_author].contains(&id),
                        "deleted without its author asking"
                    );
                    self.parties[i].visible.remove(&id);
                }
                _ => {}
            }
        }
    }

    /// The driver: wake when due, then check nothing visible is past its deadline.
    fn tick(&mut self) {
        for i in 0..2 {
            let local = self.clock(i);
            if self.parties[i]
                .policy
                .poll_timeout()
                .is_some_and(|t| t <= local)
            {
                self.parties[i].policy.handle_timeout(local);
            }
            self.drain(i);
            for (id, v) in &self.parties[i].visible {
                if let Some(deadline) = oracle_deadline(&self.org, v) {
                    assert!(deadline > local, "{id:?} visible past its deadline");
                }
                // The crate agrees with the model on every tracked deadline.
                if let Some(d) = self.parties[i].policy.deadline_of(id) {
                    assert_eq!(Some(d), oracle_deadline(&self.org, v));
                }
            }
        }
    }

    fn deliver(&mut self, to: usize, bytes: &[u8]) {
        let local = self.clock(to);
        let from = 1 - to;
        let decoded = ContentFrame::decode(bytes).ok();
        if let Some(ContentFrame {
            body: Body::Delete { target },
            ..
        }) = &decoded
        {
            self.delete_requested[from].insert(*target);
        }
        let before = self.parties[to].policy.clone();
        let result = self.parties[to].policy.handle_incoming(bytes, local);
        self.transcript.push(format!("{to} incoming {result:?}"));
        match result {
            Err(_) => assert!(
                self.parties[to].policy == before,
                "a refused frame changed state"
            ),
            Ok(Incoming::Message(m)) => {
                let frame = decoded.unwrap();
                assert!(
                    self.parties[to].surfaced_ever.insert(m.id),
                    "a message surfaced twice"
                );
                self.author.entry(m.id).or_insert(from);
                let v = Visible {
                    own: false,
                    local_time: local,
                    claimed: frame.claimed_send_time,
                    policy: self.org.clamp(frame.timer.policy),
                    read_at: None,
                };
                assert_eq!(m.deadline, oracle_deadline(&self.org, &v));
                self.parties[to].visible.insert(m.id, v);
            }
            Ok(Incoming::Suppressed { id }) => {
                assert!(!self.parties[to].surfaced_ever.contains(&id));
                self.author.entry(id).or_insert(from);
            }
            Ok(Incoming::ReadReceipts { ids }) => {
                for id in ids {
                    if let Some(v) = self.parties[to].visible.get_mut(&id)
                        && v.own
                        && v.read_at.is_none()
                        && matches!(
                            v.policy,
                            RetentionPolicy::Expire {
                                start: StartRule::AfterRead,
                                ..
                            }
                        )
                    {
                        v.read_at = Some(local);
                    }
                }
            }
            Ok(_) => {}
        }
        self.drain(to);
    }

    fn take(&mut self, to: usize, pick: usize, keep: bool) -> Option<Vec<u8>> {
        let q = &mut self.in_flight[to];
        if q.is_empty() {
            return None;
        }
        let k = pick % q.len();
        Some(if keep { q[k].clone() } else { q.remove(k) })
    }

    fn apply(&mut self, op: &Op) {
        self.tick();
        match *op {
            Op::SetTimer { side, policy } => {
                let id = self.fresh_id();
                let local = self.clock(side);
                if let Ok(f) = self.parties[side]
                    .policy
                    .set_timer(policies()[policy], id, local)
                {
                    self.transcript
                        .push(format!("{side} set {}", hex::encode(f.as_bytes())));
                    self.in_flight[1 - side].push(f.as_bytes().to_vec());
                }
                self.drain(side);
            }
            Op::Send { side } => {
                let id = self.fresh_id();
                let local = self.clock(side);
                let f = self.parties[side]
                    .policy
                    .send_text(id, b"text", local)
                    .unwrap();
                self.transcript
                    .push(format!("{side} send {}", hex::encode(f.as_bytes())));
                self.author.insert(id, side);
                self.parties[side].sent.push(id);
                let v = Visible {
                    own: true,
                    local_time: local,
                    claimed: local,
                    policy: self.parties[side].policy.effective_policy(),
                    read_at: None,
                };
                self.parties[side].visible.insert(id, v);
                self.in_flight[1 - side].push(f.as_bytes().to_vec());
            }
            Op::Unsend { side, pick } => {
                let sent = &self.parties[side].sent;
                if sent.is_empty() {
                    return;
                }
                let target = sent[pick % sent.len()];
                let id = self.fresh_id();
                let local = self.clock(side);
                let result = self.parties[side].policy.unsend(target, id, local);
                self.transcript.push(format!(
                    "{side} unsend {:?}",
                    result.as_ref().map(|f| hex::encode(f.as_bytes()))
                ));
                if let Ok(f) = result {
                    self.delete_requested[side].insert(target);
                    self.in_flight[1 - side].push(f.as_bytes().to_vec());
                }
                self.drain(side);
            }
            Op::Read { side } => {
                let local = self.clock(side);
                let ids: Vec<MessageId> = self.parties[side]
                    .visible
                    .iter()
                    .filter(|(_, v)| !v.own)
                    .map(|(id, _)| *id)
                    .collect();
                let id = self.fresh_id();
                let result = self.parties[side]
                    .policy
                    .mark_read(&ids, id, local)
                    .unwrap();
                for read in &ids {
                    let v = self.parties[side].visible.get_mut(read).unwrap();
                    if v.read_at.is_none()
                        && matches!(
                            v.policy,
                            RetentionPolicy::Expire {
                                start: StartRule::AfterRead,
                                ..
                            }
                        )
                    {
                        v.read_at = Some(local);
                    }
                }
                if let Some(f) = result {
                    self.transcript
                        .push(format!("{side} read {}", hex::encode(f.as_bytes())));
                    self.in_flight[1 - side].push(f.as_bytes().to_vec());
                }
            }
            Op::Deliver {
                to,
                pick,
                duplicate,
            } => {
                if let Some(bytes) = self.take(to, pick, duplicate) {
                    self.deliver(to, &bytes);
                }
            }
            Op::ForgeDelete { to, pick } => {
                // The peer tries to delete one of `to`'s own messages.
                let sent = &self.parties[to].sent;
                if sent.is_empty() {
                    return;
                }
                let target = sent[pick % sent.len()];
                let id = self.fresh_id();
                let frame = ContentFrame {
                    id,
                    claimed_send_time: self.clock(1 - to),
                    timer: self.parties[1 - to].policy.current_timer(),
                    body: Body::Delete { target },
                }
                .encode()
                .unwrap();
                self.deliver(to, &frame);
            }
            Op::Corrupt { to, pick, pos, xor } => {
                if let Some(mut bytes) = self.take(to, pick, true) {
                    let k = pos % bytes.len();
                    bytes[k] ^= xor;
                    // Only refused frames are delivered: a corrupted frame that still parses
                    // stands for the peer saying something else, which the session's
                    // authentication rules out and which would break the model.
                    let mut probe = self.parties[to].policy.clone();
                    if probe.handle_incoming(&bytes, self.clock(to)).is_err() {
                        self.deliver(to, &bytes);
                    }
                }
            }
            Op::Advance { ms } => {
                self.now = self.now.saturating_add(Duration::from_millis(ms));
            }
            Op::ClockOffset { side, offset_ms } => {
                self.parties[side].offset_ms = offset_ms;
            }
            Op::Persist { side } => {
                if self.persist {
                    let party = &mut self.parties[side];
                    let bytes = party.policy.to_bytes().unwrap();
                    let restored = ConversationPolicy::from_bytes(&bytes).unwrap();
                    assert!(restored == party.policy);
                    // Entry by entry, as an incremental store keeps it: only what changed is
                    // written, and the store then holds exactly the state's entries.
                    for id in party.policy.take_changed_entries() {
                        match party.policy.entry_to_bytes(&id) {
                            Some(entry) => {
                                party.stored_entries.insert(id, entry.to_vec());
                            }
                            None => {
                                party.stored_entries.remove(&id);
                            }
                        }
                    }
                    for chunk in party.policy.take_changed_tombstone_chunks() {
                        match party.policy.tombstone_chunk_to_bytes(chunk) {
                            Some(bytes) => {
                                party.stored_chunks.insert(chunk, bytes.to_vec());
                            }
                            None => {
                                party.stored_chunks.remove(&chunk);
                            }
                        }
                    }
                    assert_eq!(
                        party.stored_entries.keys().copied().collect::<Vec<_>>(),
                        party.policy.entry_ids()
                    );
                    assert_eq!(
                        party.stored_chunks.keys().copied().collect::<Vec<_>>(),
                        party.policy.tombstone_chunks()
                    );
                    let core = party.policy.to_bytes_without_entries().unwrap();
                    let from_entries = ConversationPolicy::from_bytes(&core)
                        .unwrap()
                        .with_entries(
                            party
                                .stored_entries
                                .iter()
                                .map(|(id, e)| (*id, e.as_slice())),
                            party.stored_chunks.iter().map(|(c, e)| (*c, e.as_slice())),
                        )
                        .unwrap();
                    assert!(from_entries == party.policy);
                    assert_eq!(&*from_entries.to_bytes().unwrap(), &*bytes);
                    // Go on from the state restored entry by entry (tombstone positions
                    // continue from the stored ones).
                    party.policy = from_entries;
                }
            }
        }
        self.tick();
    }

    /// Delivers everything still in flight, oldest first.
    fn flush(&mut self) {
        for _ in 0..4 {
            for to in 0..2 {
                let frames = std::mem::take(&mut self.in_flight[to]);
                for f in frames {
                    self.deliver(to, &f);
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn model_holds_and_sides_converge(org in org(), ops in proptest::collection::vec(op(), 1..80)) {
        let mut sim = Sim::new(org, false);
        for op in &ops {
            sim.apply(op);
        }
        sim.flush();
        prop_assert_eq!(
            sim.parties[0].policy.current_timer(),
            sim.parties[1].policy.current_timer()
        );
    }

    #[test]
    fn persisting_at_random_points_changes_nothing(org in org(), ops in proptest::collection::vec(op(), 1..80)) {
        let mut plain = Sim::new(org, false);
        let mut persisted = Sim::new(org, true);
        for op in &ops {
            plain.apply(op);
            persisted.apply(op);
        }
        plain.flush();
        persisted.flush();
        prop_assert_eq!(&plain.transcript, &persisted.transcript);
        for i in 0..2 {
            prop_assert_eq!(
                plain.parties[i].policy.to_bytes().unwrap().to_vec(),
                persisted.parties[i].policy.to_bytes().unwrap().to_vec()
            );
        }
    }

    #[test]
    fn garbage_never_panics_and_changes_nothing(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut p = ConversationPolicy::new(Side::Responder, OrgBounds::UNRESTRICTED, RetentionPolicy::Off);
        let before = p.clone();
        if p.handle_incoming(&bytes, T0).is_err() {
            prop_assert!(p == before);
        }
        let _ = ConversationPolicy::from_bytes(&bytes);
    }
}
