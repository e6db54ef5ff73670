//! What a user or an attacker sees: identity changes surfaced, timers and deletes, close.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::needless_range_loop
)]

use crate::common;

use common::{Service, connect, lossy, pair};
use confide::{
    CommandError, DropReason, Endpoint, EndpointConfig, Event, ExpectedIdentity,
    IdentityChangeError, Input, Output, RetentionPolicy, Role,
};
use confide_crypto::Duration;

fn texts(events: &[(confide::ConversationId, Vec<u8>)]) -> Vec<String> {
    events
        .iter()
        .map(|(_, t)| String::from_utf8(t.clone()).unwrap())
        .collect()
}

fn settle(world: &mut common::World, d: Duration) {
    let until = world.now().saturating_add(d);
    world.run_until(until);
}

#[test]
fn identity_change_is_held_until_the_app_accepts_it() {
    let (mut world, service) = pair(11, lossy(0, 0, 0));
    let conv = connect(&mut world);
    world.send(0, conv, b"hello");
    settle(&mut world, Duration::from_secs(5));
    let counselor_conv = world.endpoint(1).conversations()[0];
    world.send(1, counselor_conv, b"hi, I'm here");
    settle(&mut world, Duration::from_secs(5));
    let before = world.endpoint(0).safety_number(conv).unwrap();

    // The counselor's app is reinstalled: same address, new identity key. It writes again.
    let (fresh, fresh_id) = service.endpoint(
        &mut world.rng,
        b"counselor-1",
        Role::Counselor,
        EndpointConfig::default(),
    );
    world.identities[1] = fresh_id;
    // A reinstalled app starts with an empty store.
    world.stores[1].clear();
    world.command(1, |e, _, _| *e = fresh);
    let delivered_before = world.live[1].delivered;
    let bundle = world.endpoint(0).published_bundles().one_time[0].clone();
    let client_addr = world.endpoint(0).address().clone();
    let new_conv = world.command(1, |e, now, rng| {
        e.start_conversation(
            rng,
            now,
            client_addr,
            &bundle,
            ExpectedIdentity::TrustOnFirstUse,
        )
        .unwrap()
        .conversation
    });
    world.send(1, new_conv, b"it's me, on a new phone");
    settle(&mut world, Duration::from_secs(10));

    assert!(
        world.live[0]
            .events
            .contains(&Event::IdentityChanged { conversation: conv }),
        "the change is surfaced"
    );
    assert_eq!(
        texts(&world.live[0].received),
        ["hi, I'm here"],
        "held, not shown"
    );
    assert_eq!(
        world.live[1].delivered, delivered_before,
        "and not acknowledged"
    );
    assert!(before.ct_equals(&world.endpoint(0).safety_number(conv).unwrap()));
    // The new identity's safety number can be compared before anything is accepted.
    let expected =
        confide::SafetyNumber::new(&world.endpoint(0).identity(), &world.identities[1].public());
    let pending = world
        .endpoint(0)
        .pending_identity_safety_number(conv)
        .unwrap();
    assert!(
        pending.ct_equals(&expected),
        "it is the new identity's number"
    );
    assert!(!pending.ct_equals(&before), "and differs from the old one");

    // The user compares the new safety number and accepts.
    world.command(0, |e, now, rng| {
        e.accept_identity_change(rng, now, conv).unwrap()
    });
    settle(&mut world, Duration::from_secs(10));
    assert_eq!(
        texts(&world.live[0].received),
        ["hi, I'm here", "it's me, on a new phone"]
    );
    assert!(!before.ct_equals(&world.endpoint(0).safety_number(conv).unwrap()));
    assert!(pending.ct_equals(&world.endpoint(0).safety_number(conv).unwrap()));
    assert!(
        world
            .endpoint(0)
            .pending_identity_safety_number(conv)
            .is_none()
    );
    assert_eq!(world.live[1].delivered, delivered_before + 1);
    assert_eq!(
        world.command(0, |e, now, rng| e.accept_identity_change(rng, now, conv)),
        Err(IdentityChangeError::NothingPending)
    );
}

#[test]
fn expiry_and_unsend_surface_events_on_both_sides() {
    let (mut world, _service) = pair(12, lossy(0, 0, 0));
    let conv = connect(&mut world);
    world.send(0, conv, b"first");
    settle(&mut world, Duration::from_secs(5));
    let kconv = world.endpoint(1).conversations()[0];
    world.command(0, |e, now, rng| {
        e.set_timer(
            rng,
            now,
            conv,
            RetentionPolicy::after_send(Duration::from_mins(1)),
        )
        .unwrap()
    });
    settle(&mut world, Duration::from_secs(5));
    assert!(
        world.live[1].events.iter().any(
            |e| matches!(e, Event::TimerChanged { conversation, .. } if *conversation == kconv)
        )
    );
    let id = world.command(0, |e, now, rng| {
        e.send(rng, now, conv, b"this will vanish").unwrap()
    });
    settle(&mut world, Duration::from_secs(5));
    assert_eq!(world.live[1].received.len(), 2);
    settle(&mut world, Duration::from_mins(2));
    assert!(world.live[0].events.contains(&Event::Expired {
        conversation: conv,
        id
    }));
    assert!(world.live[1].events.contains(&Event::Expired {
        conversation: kconv,
        id
    }));

    let id = world.command(1, |e, now, rng| {
        e.send(rng, now, kconv, b"oops, wrong chat").unwrap()
    });
    settle(&mut world, Duration::from_secs(5));
    world.command(1, |e, now, rng| e.unsend(rng, now, kconv, id).unwrap());
    settle(&mut world, Duration::from_secs(5));
    let deleted = |c, by| Event::Deleted {
        conversation: c,
        id,
        by,
    };
    // The counselor unsent its own message: "you" there, "the other person" at the client.
    assert!(
        world.live[1]
            .events
            .contains(&deleted(kconv, confide::Party::Us))
    );
    assert!(
        world.live[0]
            .events
            .contains(&deleted(conv, confide::Party::Peer))
    );
    // Only its author may unsend.
    assert_eq!(
        world.command(0, |e, now, rng| e.unsend(rng, now, conv, id)),
        Err(CommandError::Policy)
    );
}

#[test]
fn close_erases_keys_and_refuses_later_messages() {
    let (mut world, service) = pair(13, lossy(0, 0, 0));
    let conv = connect(&mut world);
    world.send(0, conv, b"thank you");
    settle(&mut world, Duration::from_secs(5));
    let kconv = world.endpoint(1).conversations()[0];
    // A copy of the counselor as it was before the close (e.g. a stale backup).
    let stale = world.snapshot_blob(1);

    world.command(0, |e, now, rng| e.close(rng, now, conv).unwrap());
    settle(&mut world, Duration::from_secs(10));
    assert!(world.live[0].events.contains(&Event::ConversationClosed {
        conversation: conv,
        by: confide::Party::Us
    }));
    assert!(world.live[1].events.contains(&Event::ConversationClosed {
        conversation: kconv,
        by: confide::Party::Peer
    }));
    assert!(!world.endpoint(0).has_session(conv) && !world.endpoint(1).has_session(kconv));
    assert_eq!(
        world.command(1, |e, now, rng| e.send(rng, now, kconv, b"are you there?")),
        Err(CommandError::Closed {
            by: confide::Party::Peer
        })
    );

    // The stale copy still has keys and writes; the client refuses it.
    let mut old = Endpoint::import_state(&world.key, b"account", &stale).unwrap();
    let now = world.now();
    old.send(&mut world.rng, now, kconv, b"from a stale backup")
        .unwrap();
    let mut frames = Vec::new();
    loop {
        match old.poll_output() {
            Output::Transmit(tx) => frames.push(tx.frame),
            Output::Event(Event::PersistRequired) => {
                let _ = old
                    .export_state(&mut world.rng, &world.key, b"account")
                    .unwrap();
                old.confirm_persisted();
            }
            Output::Event(_) => {}
            _ => break,
        }
    }
    assert!(!frames.is_empty());
    let before = world
        .endpoint(0)
        .stats()
        .dropped(DropReason::ClosedConversation);
    for f in frames {
        world.command(0, |e, now, rng| {
            e.handle_input(rng, Input::Receive { bytes: &f, now })
        });
    }
    assert!(
        texts(&world.live[0].received)
            .iter()
            .all(|t| t != "from a stale backup")
    );
    assert!(
        world
            .endpoint(0)
            .stats()
            .dropped(DropReason::ClosedConversation)
            > before
    );
    let _ = service;
}

#[test]
fn close_stops_retransmitting_after_the_period() {
    let (mut world, _service) = pair(14, lossy(0, 0, 0));
    let counselor = world.endpoint(1).address().clone();
    let conv = connect(&mut world);
    world.send(0, conv, b"hello");
    settle(&mut world, Duration::from_secs(5));
    // The counselor disappears; the client closes.
    let now = world.now();
    world.sim.network_mut().take_offline(
        &counselor,
        now,
        now.saturating_add(Duration::from_days(30)),
    );
    world.command(0, |e, now, rng| e.close(rng, now, conv).unwrap());
    assert_eq!(world.endpoint(0).outbox_len(), 1);
    // Absolute times: the simulation's clock stops at its last event, not at the limit.
    let closed_at = world.now();
    world.run_until(closed_at.saturating_add(Duration::from_hours(23)));
    assert_eq!(
        world.endpoint(0).outbox_len(),
        1,
        "still retrying within the period"
    );
    world.run_until(closed_at.saturating_add(Duration::from_hours(25)));
    assert_eq!(
        world.endpoint(0).outbox_len(),
        0,
        "gave up after the period"
    );
}

#[test]
fn spurious_timeouts_change_nothing() {
    let (mut world, _service) = pair(15, lossy(0, 0, 0));
    let conv = connect(&mut world);
    world.send(0, conv, b"hello");
    let key = world.key.clone();
    let before = world.command(0, |e, _, rng| {
        let _ = e.export_state(rng, &key, b"account").unwrap();
        e.confirm_persisted();
        e.poll_timeout()
    });
    world.command(0, |e, now, rng| e.handle_input(rng, Input::Timeout { now }));
    assert!(
        !world.endpoint(0).needs_persist(),
        "an early timeout changed state"
    );
    assert_eq!(world.endpoint(0).poll_timeout(), before);
}

#[test]
fn wrong_storage_key_and_tampering_are_refused() {
    let (mut world, _service) = pair(16, lossy(0, 0, 0));
    let blob = world.snapshot_blob(0);
    assert!(Endpoint::import_state(&confide::StorageKey::new([1; 32]), b"account", &blob).is_err());
    // The blob is bound to its slot: the right key for another account's slot refuses it.
    assert!(matches!(
        Endpoint::import_state(&world.key, b"another account", &blob),
        Err(confide::ImportError::Storage(
            confide_session::StateError::Tampered
        ))
    ));
    let mut bad = blob.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert!(Endpoint::import_state(&world.key, b"account", &bad).is_err());
    let restored = Endpoint::import_state(&world.key, b"account", &blob).unwrap();
    assert_eq!(restored.identity(), world.endpoint(0).identity());
    let _ = Service::new;
}

#[test]
fn debug_output_names_no_one() {
    let (world, _service) = pair(17, lossy(0, 0, 0));
    let shown = format!("{:?}", world.endpoint(0));
    assert!(!shown.contains("client-1"));
    assert!(shown.starts_with("Endpoint"));
    let input = format!(
        "{:?}",
        Input::Receive {
            bytes: b"secret",
            now: common::T0
        }
    );
    assert!(!input.contains("secret") && !input.contains("115"));
}

fn plaintext(world: &mut common::World, n: usize) -> Vec<u8> {
    let key = world.key.clone();
    let blob = world.command(n, |e, _, rng| {
        e.export_state(rng, &key, b"account").unwrap()
    });
    confide_session::storage::open(
        &key,
        confide_session::storage::StateKind::Endpoint,
        b"account",
        &blob,
    )
    .unwrap()
    .to_vec()
}

/// A version 8 conversation record with what version 8 keeps in records of their own put
/// back inline, the way versions 7 and older stored it: its policy's entries (records `0x0a
/// || id || message` and tombstone chunks `0x0d || id || chunk`), its delivered texts (`0x0c || id || order`, renumbered from 0 as an
/// old record's load numbers them) and the windows of the peer's epochs (`0x0b || id`).
fn with_conversation_records_inline(
    records: &std::collections::BTreeMap<Vec<u8>, Vec<u8>>,
    key: &[u8],
    record: &[u8],
) -> Vec<u8> {
    let u = |b: &[u8]| b.iter().fold(0usize, |a, x| (a << 8) | usize::from(*x));
    let of_this = |tag: u8| {
        records
            .iter()
            .filter(move |(k, _)| k[0] == tag && k[1..9] == key[1..9])
    };
    // version, var16 address, identity (128), role flag [+ role], then the var32 policy.
    let mut at = 1 + 2 + u(&record[1..3]) + 128;
    at += if record[at] == 1 { 2 } else { 1 };
    let n = u(&record[at..at + 4]);
    let core = &record[at + 4..at + 4 + n];
    let entries: Vec<(confide_policy::MessageId, &[u8])> = of_this(0x0a)
        .map(|(k, v)| {
            (
                confide_policy::MessageId::from_bytes(k[9..25].try_into().unwrap()),
                &v[1..],
            )
        })
        .collect();
    let chunks: Vec<(u64, &[u8])> = of_this(0x0d)
        .map(|(k, v)| (u64::from_be_bytes(k[9..17].try_into().unwrap()), &v[1..]))
        .collect();
    let policy = confide_policy::ConversationPolicy::from_bytes(core)
        .unwrap()
        .with_entries(entries, chunks)
        .unwrap()
        .to_bytes()
        .unwrap();
    let mut out = record[..at].to_vec();
    out.extend_from_slice(&u32::try_from(policy.len()).unwrap().to_be_bytes());
    out.extend_from_slice(&policy);
    let mut at = at + 4 + n;
    fn copy(out: &mut Vec<u8>, record: &[u8], n: usize, at: &mut usize) {
        out.extend_from_slice(&record[*at..*at + n]);
        *at += n;
    }
    let flag_then = |record: &[u8], at: usize, n: usize| if record[at] == 1 { 1 + n } else { 1 };
    copy(&mut out, record, flag_then(record, at, 8), &mut at); // initiated at
    copy(&mut out, record, 8, &mut at); // next receive sequence number
    copy(&mut out, record, flag_then(record, at, 8), &mut at); // reset requested at
    // Version 8: the next delivered order; before, the delivered texts themselves.
    let delivered: Vec<&Vec<u8>> = of_this(0x0c).map(|(_, v)| v).collect();
    assert_eq!(
        u(&record[at..at + 8]),
        delivered.len(),
        "no delivered text forgotten yet: orders 0 .. n"
    );
    at += 8;
    out.extend_from_slice(&u16::try_from(delivered.len()).unwrap().to_be_bytes());
    for d in delivered {
        out.extend_from_slice(&d[1..]);
    }
    let n = 1 + 16 * usize::from(record[at]);
    copy(&mut out, record, n, &mut at); // recent received
    copy(&mut out, record, 1, &mut at); // resume unconfirmed
    let n = 1 + 40 * usize::from(record[at]);
    copy(&mut out, record, n, &mut at); // honoured resets
    copy(&mut out, record, flag_then(record, at, 24), &mut at); // close
    let n = if record[at] == 1 {
        1 + 4 + u(&record[at + 1..at + 5]) + 128
    } else {
        1
    };
    copy(&mut out, record, n, &mut at); // held identity change
    let n = 2 + 16 * u(&record[at..at + 2]);
    copy(&mut out, record, n, &mut at); // pending acknowledgements
    copy(&mut out, record, flag_then(record, at, 8), &mut at); // acknowledgement due
    copy(&mut out, record, flag_then(record, at, 16), &mut at); // peer token
    copy(&mut out, record, 1, &mut at); // token confirmed
    // Version 8: the windows are a record; before, here.
    match of_this(0x0b).next() {
        Some((_, v)) => out.extend_from_slice(&v[1..]),
        None => out.push(0),
    }
    out.extend_from_slice(&record[at..]);
    out
}

/// A version 9 conversation record with its session record in the full form, as version 8
/// (and every version before) stored it: version 9 leaves out the session identities equal to
/// ours (`own`) and to the conversation's peer identity (`docs/spec.md` §11).
fn with_full_session(record: &[u8], own: &confide_crypto::identity::IdentityPublicKey) -> Vec<u8> {
    let u = |b: &[u8]| b.iter().fold(0usize, |a, x| (a << 8) | usize::from(*x));
    let flag_then = |at: usize, n: usize| if record[at] == 1 { 1 + n } else { 1 };
    // version, var16 address, identity (128), role flag [+ role], var32 policy, initiated,
    // next seq, reset requested, next delivered order, recent received, resume flag,
    // honoured resets, close, held identity change, pending acknowledgements, acknowledgement
    // due, peer token, token confirmed; then the session record and the verification fields.
    let mut at = 1 + 2 + u(&record[1..3]);
    let peer =
        confide_crypto::identity::IdentityPublicKey::from_bytes(&record[at..at + 128]).unwrap();
    at += 128;
    at += flag_then(at, 1);
    at += 4 + u(&record[at..at + 4]);
    at += flag_then(at, 8);
    at += 8;
    at += flag_then(at, 8);
    at += 8;
    at += 1 + 16 * usize::from(record[at]);
    at += 1;
    at += 1 + 40 * usize::from(record[at]);
    at += flag_then(at, 24);
    at += if record[at] == 1 {
        1 + 4 + u(&record[at + 1..at + 5]) + 128
    } else {
        1
    };
    at += 2 + 16 * u(&record[at..at + 2]);
    at += flag_then(at, 8);
    at += flag_then(at, 16);
    at += 1;
    let n = u(&record[at..at + 4]);
    let compact = &record[at + 4..at + 4 + n];
    assert_eq!(
        at + 4 + n + 2,
        record.len(),
        "the session record, then two bytes"
    );
    let full = confide_session::SessionRecord::from_bytes_compact(
        compact,
        confide_session::KnownIdentities {
            local: own,
            remote: &peer,
        },
    )
    .unwrap()
    .to_bytes();
    let mut out = record[..at].to_vec();
    out.extend_from_slice(&u32::try_from(full.len()).unwrap().to_be_bytes());
    out.extend_from_slice(&full);
    out.extend_from_slice(&record[at + 4 + n..]);
    out
}

/// The records of a state as version 8 stored them before its ordered logs went into chunks:
/// each received control frame a record (`0x07 || frame id`: its arrival order) instead of
/// chunks `0x0e || chunk`, each delivered text a record (`0x0c || conversation || order`:
/// the text) instead of chunks `0x0f || conversation || chunk`, and each dedup entry a record
/// (`0x09 || frame id`) instead of chunks `0x10 || chunk`.
fn with_logs_per_entry(
    records: &std::collections::BTreeMap<Vec<u8>, Vec<u8>>,
) -> std::collections::BTreeMap<Vec<u8>, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    for (key, value) in records {
        if key[0] == 0x10 {
            // A dedup chunk: version, var32 the delivery machine's chunk record (its version,
            // a count, then each entry: id, order, address (u8 length), seen at, digest,
            // acked at); per entry, record 0x09 || id holding the machine's entry record.
            let chunk = &value[5..];
            assert_eq!(
                u32::from_be_bytes(value[1..5].try_into().unwrap()) as usize,
                chunk.len()
            );
            let mut at = 2;
            for _ in 0..chunk[1] {
                let len = 16 + 8 + 1 + usize::from(chunk[at + 24]) + 8 + 32 + 8;
                let entry = [&[chunk[0]][..], &chunk[at..at + len]].concat();
                let mut v = vec![value[0]];
                v.extend_from_slice(&u32::try_from(entry.len()).unwrap().to_be_bytes());
                v.extend_from_slice(&entry);
                out.insert([&[0x09][..], &chunk[at..at + 16]].concat(), v);
                at += len;
            }
            assert_eq!(at, chunk.len(), "a whole dedup chunk");
            continue;
        }
        let (first, key_prefix, id_len, body_len) = match key[0] {
            0x0e => (
                u64::from_be_bytes(key[1..9].try_into().unwrap()) * 16,
                vec![0x07],
                16,
                0,
            ),
            0x0f => (
                u64::from_be_bytes(key[9..17].try_into().unwrap()) * 16,
                [&[0x0c][..], &key[1..9]].concat(),
                0,
                40,
            ),
            _ => {
                out.insert(key.clone(), value.clone());
                continue;
            }
        };
        let n = usize::from(value[1]);
        let mut at = 2;
        for _ in 0..n {
            let order = first + u64::from(value[at]);
            let body = &value[at + 1..at + 1 + id_len.max(body_len)];
            at += 1 + id_len.max(body_len);
            if key[0] == 0x0e {
                let mut k = key_prefix.clone();
                k.extend_from_slice(body);
                let mut v = vec![value[0]];
                v.extend_from_slice(&order.to_be_bytes());
                out.insert(k, v);
            } else {
                let mut k = key_prefix.clone();
                k.extend_from_slice(&order.to_be_bytes());
                out.insert(k, [&[value[0]][..], body].concat());
            }
        }
        assert_eq!(at, value.len(), "a whole chunk");
    }
    out
}

/// An outbox record (`0x08`) as the current version stores a frame whose sent record keeps
/// its content (its payload left out, length 0), with `payload` put back in: as versions 9
/// and older stored every waiting frame. Layout: the record version, then `u32` length and
/// the delivery machine's outbox record, which ends with its payload's `u32` length and bytes.
fn with_outbox_payload(value: &[u8], payload: &[u8]) -> Vec<u8> {
    let inner = &value[5..];
    assert_eq!(
        u32::from_be_bytes(value[1..5].try_into().unwrap()) as usize,
        inner.len()
    );
    assert_eq!(
        &inner[inner.len() - 4..],
        &[0; 4],
        "stored without its payload"
    );
    let mut entry = inner[..inner.len() - 4].to_vec();
    entry.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
    entry.extend_from_slice(payload);
    let mut out = vec![value[0]];
    out.extend_from_slice(&u32::try_from(entry.len()).unwrap().to_be_bytes());
    out.extend_from_slice(&entry);
    out
}

/// What stands for the sealed frame of the waiting frame under outbox key `key` in a state
/// of version 9 or older (the loader does not open payloads; a retransmission sends them as
/// they are).
fn earlier_frame(key: &[u8]) -> Vec<u8> {
    [&b"a frame sealed by an earlier version, "[..], &key[1..]].concat()
}

/// States stored by the previous versions load, and are the same state: exported again each
/// is byte for byte the current version's snapshot of the same endpoint. Version 9 stored
/// every waiting frame whole in its outbox record (version 10 leaves the payload out where
/// the sent record keeps the content); version 8 conversation records hold the full session
/// record; version 7 conversation records hold their policy's per-message entries (version 8
/// keeps each as a record of its own); version 6 conversation records also lack the
/// verification fields (an unverified conversation with no failed code attempts); version 5
/// also kept each sent record's session message.
#[test]
fn states_of_previous_versions_load_as_the_same_state() {
    use confide::consts::{
        ENDPOINT_STATE_VERSION, ENDPOINT_STATE_VERSION_WITH_FULL_SESSIONS,
        ENDPOINT_STATE_VERSION_WITH_OUTBOX_PAYLOADS,
        ENDPOINT_STATE_VERSION_WITH_POLICY_ENTRIES_INLINE,
        ENDPOINT_STATE_VERSION_WITH_SENT_MESSAGE, ENDPOINT_STATE_VERSION_WITHOUT_VERIFICATION,
    };
    use confide_session::storage::{StateKind, seal};
    let (mut world, _service) = pair(19, lossy(0, 0, 0));
    let conv = connect(&mut world);
    // A text delivered (a delivered record), and one received from the peer (the window of
    // its epoch).
    world.send(0, conv, b"delivered");
    settle(&mut world, Duration::from_secs(3));
    let counselor_conv = world.endpoint(1).conversations()[0];
    world.send(1, counselor_conv, b"an answer");
    settle(&mut world, Duration::from_secs(3));
    // Texts still waiting for their acknowledgements: sent records in the state.
    for i in 0..3 {
        world.send(0, conv, format!("waiting {i}").as_bytes());
    }
    let current = plaintext(&mut world, 0);
    let own = world.endpoint(0).identity();
    let records = common::snapshot_records(&current);
    let sent: Vec<&Vec<u8>> = records.keys().filter(|k| k[0] == 0x05).collect();
    assert!(!sent.is_empty(), "the state holds waiting frames");
    assert_eq!(
        records.keys().filter(|k| k[0] == 0x08).count(),
        sent.len(),
        "each in the outbox"
    );
    assert!(records.keys().any(|k| k[0] == 0x03), "and a conversation");
    assert!(
        records.keys().any(|k| k[0] == 0x0a),
        "and a policy entry of it"
    );
    assert!(records.keys().any(|k| k[0] == 0x0f), "and a delivered text");
    assert!(
        records.keys().any(|k| k[0] == 0x0e),
        "and a received control frame"
    );
    assert!(records.keys().any(|k| k[0] == 0x10), "and a dedup entry");
    let with_logs = with_logs_per_entry(&records);
    // The snapshot as `old_version` wrote it (or, with `payloads` false, the same with the
    // outbox records as the current version writes them): every record's version byte;
    // each outbox record with its payload; for version 8 and older, each conversation
    // record with its full session record; for version 7 and older, with its policy's
    // entries, windows and delivered texts inline and without its two verification bytes
    // (both zero here) below version 7; for version 5, in each sent record a session message
    // (token-carrying kind 0x21 when the flag says so) instead of the flag.
    let rewrite = |old_version: u8, payloads: bool| -> Vec<u8> {
        let records = if old_version == ENDPOINT_STATE_VERSION_WITH_OUTBOX_PAYLOADS {
            &records
        } else {
            &with_logs
        };
        let mut old = vec![old_version];
        let own_records = |k: &[u8]| {
            old_version < ENDPOINT_STATE_VERSION_WITH_FULL_SESSIONS && matches!(k[0], 0x0a..=0x0d)
        };
        let kept = records.keys().filter(|k| !own_records(k)).count();
        old.extend_from_slice(&u32::try_from(kept).unwrap().to_be_bytes());
        for (key, value) in records {
            if own_records(key) {
                continue;
            }
            let mut value = if key[0] == 0x08 && payloads {
                with_outbox_payload(value, &earlier_frame(key))
            } else if key[0] != 0x03 || old_version == ENDPOINT_STATE_VERSION_WITH_OUTBOX_PAYLOADS {
                value.clone()
            } else if old_version == ENDPOINT_STATE_VERSION_WITH_FULL_SESSIONS {
                with_full_session(value, &own)
            } else {
                with_conversation_records_inline(records, key, &with_full_session(value, &own))
            };
            assert_eq!(value[0], ENDPOINT_STATE_VERSION);
            value[0] = old_version;
            if key[0] == 0x03 && old_version < ENDPOINT_STATE_VERSION_WITH_POLICY_ENTRIES_INLINE {
                assert_eq!(
                    value.split_off(value.len() - 2),
                    [0, 0],
                    "unverified, no failures"
                );
            }
            if key[0] == 0x05 && old_version == ENDPOINT_STATE_VERSION_WITH_SENT_MESSAGE {
                let flag = value.pop().unwrap();
                let mut message = vec![0x01, if flag == 1 { 0x21 } else { 0x02 }];
                message.extend_from_slice(&[0x44; 40]);
                value.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
                value.extend_from_slice(&message);
            }
            old.extend_from_slice(&u16::try_from(key.len()).unwrap().to_be_bytes());
            old.extend_from_slice(key);
            old.extend_from_slice(&u32::try_from(value.len()).unwrap().to_be_bytes());
            old.extend_from_slice(&value);
        }
        old
    };
    let seal_blob = |world: &mut common::World, plain: &[u8]| {
        seal(
            &mut world.rng,
            &world.key,
            StateKind::Endpoint,
            b"account",
            plain,
        )
    };
    for old_version in [
        ENDPOINT_STATE_VERSION_WITH_OUTBOX_PAYLOADS,
        ENDPOINT_STATE_VERSION_WITH_FULL_SESSIONS,
        ENDPOINT_STATE_VERSION_WITH_POLICY_ENTRIES_INLINE,
        ENDPOINT_STATE_VERSION_WITHOUT_VERIFICATION,
        ENDPOINT_STATE_VERSION_WITH_SENT_MESSAGE,
    ] {
        let blob = seal_blob(&mut world, &rewrite(old_version, true));
        let mut loaded = Endpoint::import_state(&world.key, b"account", &blob).unwrap();
        let again = loaded
            .export_state(&mut world.rng, &world.key, b"account")
            .unwrap();
        let again =
            confide_session::storage::open(&world.key, StateKind::Endpoint, b"account", &again)
                .unwrap();
        assert_eq!(
            again.to_vec(),
            current,
            "version {old_version} loads as the same state, written as the current version"
        );
        // No record written before version 10 may leave a payload out.
        let blob = seal_blob(&mut world, &rewrite(old_version, false));
        assert!(
            Endpoint::import_state(&world.key, b"account", &blob).is_err(),
            "version {old_version} with an outbox entry without its payload is refused"
        );
    }
    // The current version's own form loads.
    let blob = seal_blob(&mut world, &current);
    assert!(Endpoint::import_state(&world.key, b"account", &blob).is_ok());
}

/// A waiting frame loaded from a version 9 state goes out again as it was stored, byte for
/// byte (it was encrypted before the snapshot: the same key with the same plaintext), when
/// its retransmission is due; nothing re-encrypts it.
#[test]
fn a_waiting_frame_of_version_9_goes_out_as_it_was_stored() {
    use confide::consts::{ENDPOINT_STATE_VERSION, ENDPOINT_STATE_VERSION_WITH_OUTBOX_PAYLOADS};
    use confide_session::storage::{StateKind, seal};
    let (mut world, _service) = pair(23, lossy(0, 0, 0));
    let conv = connect(&mut world);
    world.send(0, conv, b"waiting");
    let records = common::snapshot_records(&plaintext(&mut world, 0));
    let mut old = vec![ENDPOINT_STATE_VERSION_WITH_OUTBOX_PAYLOADS];
    old.extend_from_slice(&u32::try_from(records.len()).unwrap().to_be_bytes());
    let mut frames = Vec::new();
    for (key, value) in &records {
        let mut value = if key[0] == 0x08 {
            frames.push(earlier_frame(key));
            with_outbox_payload(value, &earlier_frame(key))
        } else {
            value.clone()
        };
        assert_eq!(value[0], ENDPOINT_STATE_VERSION);
        value[0] = ENDPOINT_STATE_VERSION_WITH_OUTBOX_PAYLOADS;
        old.extend_from_slice(&u16::try_from(key.len()).unwrap().to_be_bytes());
        old.extend_from_slice(key);
        old.extend_from_slice(&u32::try_from(value.len()).unwrap().to_be_bytes());
        old.extend_from_slice(&value);
    }
    assert_eq!(frames.len(), 1, "the text waits");
    let blob = seal(
        &mut world.rng,
        &world.key,
        StateKind::Endpoint,
        b"account",
        &old,
    );
    let mut loaded = Endpoint::import_state(&world.key, b"account", &blob).unwrap();
    let wire = retransmit_after_load(&mut loaded, &mut world);
    for frame in &frames {
        assert!(
            wire.iter()
                .any(|f| f.windows(frame.len()).any(|w| w == frame)),
            "the stored frame goes out as it was"
        );
    }
}

/// A waiting text is stored with its content, not with its sealed frame as well (a 1 KiB
/// text was stored twice), and after a crash it goes out encrypted again, under the same
/// frame id, when its retransmission is due: a peer that never got it shows it once; a peer
/// that got it (its acknowledgement was lost) acknowledges the new copy without showing it
/// again. No message key is used twice.
#[test]
fn a_waiting_text_is_stored_without_its_frame_and_goes_out_encrypted_again_after_a_crash() {
    use confide_transport::Frame;
    for peer_got_it in [false, true] {
        let (mut world, service) = pair(29, lossy(0, 0, 0));
        let conv = connect(&mut world);
        world.send(0, conv, b"hello");
        settle(&mut world, Duration::from_secs(5));
        assert_eq!(world.live[0].delivered, 1);
        let client = world.endpoint(0).address().clone();
        let counselor = world.endpoint(1).address().clone();
        if peer_got_it {
            // Only the acknowledgements are lost.
            world
                .sim
                .network_mut()
                .set_link(&counselor, &client, lossy(100, 0, 0));
        } else {
            world.sim.network_mut().cut(&client, &counselor);
        }
        let text = vec![b'x'; 1024];
        let before = world.wire[0].borrow().len();
        world.send(0, conv, &text);
        settle(&mut world, Duration::from_secs(1));
        let original = world.wire[0].borrow()[before].1.clone();
        let Frame::Data { id, payload } = Frame::from_bytes(&original).unwrap() else {
            panic!("a data frame")
        };
        let stored = plaintext(&mut world, 0);
        let records = common::snapshot_records(&stored);
        let outbox: Vec<&Vec<u8>> = records
            .iter()
            .filter(|(k, _)| k[0] == 0x08)
            .map(|(_, v)| v)
            .collect();
        assert_eq!(outbox.len(), 1, "the text waits");
        assert!(
            outbox[0].len() < 128,
            "its outbox entry holds no frame: {} B",
            outbox[0].len()
        );
        let tail = &payload[payload.len() - 64..];
        assert!(
            !stored.windows(tail.len()).any(|w| w == tail),
            "no part of the sealed frame is stored"
        );
        let shown = |world: &common::World| {
            world.live[1]
                .received
                .iter()
                .filter(|(_, t)| *t == text)
                .count()
        };
        assert_eq!(shown(&world), usize::from(peer_got_it));

        world.crash(0);
        if peer_got_it {
            world
                .sim
                .network_mut()
                .set_link(&counselor, &client, lossy(0, 0, 0));
        } else {
            world.sim.network_mut().heal(&client, &counselor);
        }
        let before = world.wire[0].borrow().len();
        let limit = world.now().saturating_add(Duration::from_hours(1));
        assert!(
            world.run_while(limit, |w| w.live[0].delivered == 2),
            "delivered after the crash (peer got it: {peer_got_it})"
        );
        assert_eq!(shown(&world), 1, "shown once (peer got it: {peer_got_it})");
        let copies: Vec<Vec<u8>> = world.wire[0].borrow()[before..]
            .iter()
            .filter_map(|(_, f)| match Frame::from_bytes(f) {
                Ok(Frame::Data { id: i, payload }) if i == id => Some(payload),
                _ => None,
            })
            .collect();
        assert!(
            !copies.is_empty() && copies.iter().all(|c| *c != payload),
            "it went again under its id, encrypted again"
        );
        world.assert_no_key_reuse(&service.roots);
    }
}

/// Runs `loaded` an hour past `world`'s clock, persisting whenever asked, and returns every
/// frame it transmits.
fn retransmit_after_load(loaded: &mut Endpoint, world: &mut common::World) -> Vec<Vec<u8>> {
    let now = world.now().saturating_add(Duration::from_hours(1));
    let mut wire = Vec::new();
    loaded.handle_input(&mut world.rng, Input::Timeout { now });
    for _ in 0..1000 {
        match loaded.poll_output() {
            Output::Transmit(tx) => wire.push(tx.frame),
            Output::Event(Event::PersistRequired) => {
                let _ = loaded
                    .take_changes(&mut world.rng, &world.key, b"account")
                    .unwrap();
                loaded.confirm_persisted();
            }
            Output::Event(_) => {}
            Output::Timeout(Some(t)) if t <= now => {
                loaded.handle_input(&mut world.rng, Input::Timeout { now });
            }
            _ => return wire,
        }
    }
    panic!("the loaded endpoint never settled")
}

/// A store written before the ordered logs went into chunks (a record per received control
/// frame, a record per delivered text) loads, and its first change set rewrites it: every
/// per-entry record deleted, every chunk written, after which the store holds exactly the
/// records of the current form of the same state.
#[test]
fn a_store_with_a_record_per_log_entry_is_rewritten_in_chunks() {
    use confide_session::storage::{RecordSealer, StateKind};
    let (mut world, _service) = pair(21, lossy(0, 0, 0));
    let conv = connect(&mut world);
    world.send(0, conv, b"hello");
    settle(&mut world, Duration::from_secs(3));
    let counselor_conv = world.endpoint(1).conversations()[0];
    for i in 0..20 {
        world.send(0, conv, format!("text {i}").as_bytes());
        world.send(1, counselor_conv, format!("answer {i}").as_bytes());
        settle(&mut world, Duration::from_secs(3));
    }
    let current = common::snapshot_records(&plaintext(&mut world, 0));
    let per_entry = with_logs_per_entry(&current);
    let chunks = |m: &std::collections::BTreeMap<Vec<u8>, Vec<u8>>, tag: u8| {
        m.keys().filter(|k| k[0] == tag).count()
    };
    // 21 delivered texts: two chunks instead of 21 records.
    assert_eq!(chunks(&current, 0x0f), 2);
    assert_eq!(chunks(&per_entry, 0x0c), 21);
    assert!(chunks(&per_entry, 0x07) > chunks(&current, 0x0e));
    let sealer = RecordSealer::new(&world.key, StateKind::EndpointRecord, b"account");
    let mut store: std::collections::BTreeMap<Vec<u8>, Vec<u8>> = per_entry
        .iter()
        .map(|(k, v)| (k.clone(), sealer.seal(&mut world.rng, k, v)))
        .collect();
    let mut loaded = Endpoint::load_records(&world.key, b"account", &store).unwrap();
    let changes = loaded
        .take_changes(&mut world.rng, &world.key, b"account")
        .unwrap();
    let deleted: Vec<&[u8]> = changes.deletes().collect();
    assert!(chunks(&per_entry, 0x09) > chunks(&current, 0x10));
    assert_eq!(
        deleted.len(),
        chunks(&per_entry, 0x07) + chunks(&per_entry, 0x0c) + chunks(&per_entry, 0x09),
        "every per-entry record deleted"
    );
    assert!(deleted.iter().all(|k| matches!(k[0], 0x07 | 0x0c | 0x09)));
    for k in deleted {
        store.remove(k);
    }
    for (k, v) in changes.puts() {
        store.insert(k.to_vec(), v.to_vec());
    }
    loaded.confirm_persisted();
    let opened: std::collections::BTreeMap<Vec<u8>, Vec<u8>> = store
        .iter()
        .map(|(k, v)| (k.clone(), sealer.open(k, v).unwrap().to_vec()))
        .collect();
    assert_eq!(opened, current, "the store now holds the chunked form");
}

#[test]
fn state_round_trips_exactly_and_decoding_is_strict() {
    use confide_session::storage::{StateKind, seal};
    let (mut world, _service) = pair(18, lossy(10, 10, 10));
    let conv = connect(&mut world);
    for i in 0..5 {
        world.send(0, conv, format!("m{i}").as_bytes());
    }
    settle(&mut world, Duration::from_secs(3));
    let before = plaintext(&mut world, 0);
    let blob = seal(
        &mut world.rng,
        &world.key,
        StateKind::Endpoint,
        b"account",
        &before,
    );
    let mut restored = Endpoint::import_state(&world.key, b"account", &blob).unwrap();
    let again = restored
        .export_state(&mut world.rng, &world.key, b"account")
        .unwrap();
    let again = confide_session::storage::open(&world.key, StateKind::Endpoint, b"account", &again)
        .unwrap();
    assert_eq!(
        before,
        again.to_vec(),
        "import then export gives the same bytes"
    );

    let mut trailing = before.clone();
    trailing.push(0);
    let bad = seal(
        &mut world.rng,
        &world.key,
        StateKind::Endpoint,
        b"account",
        &trailing,
    );
    assert!(
        Endpoint::import_state(&world.key, b"account", &bad).is_err(),
        "trailing bytes refused"
    );
    for cut in [1, before.len() / 2, before.len() - 1] {
        let bad = seal(
            &mut world.rng,
            &world.key,
            StateKind::Endpoint,
            b"account",
            &before[..cut],
        );
        assert!(
            Endpoint::import_state(&world.key, b"account", &bad).is_err(),
            "truncation refused"
        );
    }
    let mut version = before.clone();
    version[0] = confide::consts::ENDPOINT_STATE_VERSION + 1;
    let bad = seal(
        &mut world.rng,
        &world.key,
        StateKind::Endpoint,
        b"account",
        &version,
    );
    assert!(
        Endpoint::import_state(&world.key, b"account", &bad).is_err(),
        "unknown version refused"
    );
    let other_kind = seal(
        &mut world.rng,
        &world.key,
        StateKind::Session,
        b"account",
        &before,
    );
    assert!(
        Endpoint::import_state(&world.key, b"account", &other_kind).is_err(),
        "other kind refused"
    );
}

#[test]
fn garbage_and_forged_frames_change_nothing() {
    let (mut world, service) = pair(19, lossy(0, 0, 0));
    let conv = connect(&mut world);
    world.send(0, conv, b"hello");
    settle(&mut world, Duration::from_secs(3));
    let before = plaintext(&mut world, 1);

    // A frame sealed by someone whose certificate the service never issued.
    let mut rogue_rng = <chacha20::ChaCha20Rng as rand_core::SeedableRng>::from_seed([99; 32]);
    let rogue_service = Service::new(&mut rogue_rng);
    // It trusts the real service (so it accepts the counselor's certified bundle), but its
    // own certificate comes from the rogue service.
    let rogue_identity = confide_crypto::identity::IdentityKeyPair::generate(&mut rogue_rng);
    let mut rogue = confide::Endpoint::new(
        &mut rogue_rng,
        common::T0,
        rogue_identity.clone(),
        confide::Address::new(b"client-1").unwrap(),
        rogue_service.certificate(b"client-1", &rogue_identity, Role::Client),
        service.roots.clone(),
        EndpointConfig::default(),
    )
    .unwrap();
    let bundle = world.endpoint(1).published_bundles().one_time[0].clone();
    let c = rogue
        .start_conversation(
            &mut rogue_rng,
            common::T0,
            world.endpoint(1).address().clone(),
            &bundle,
            ExpectedIdentity::TrustOnFirstUse,
        )
        .unwrap()
        .conversation;
    rogue
        .send(&mut rogue_rng, common::T0, c, b"forged")
        .unwrap();
    let mut forged = Vec::new();
    loop {
        match rogue.poll_output() {
            Output::Transmit(tx) => forged.push(tx.frame),
            Output::Event(Event::PersistRequired) => {
                let _ = rogue
                    .export_state(&mut rogue_rng, &world.key, b"account")
                    .unwrap();
                rogue.confirm_persisted();
            }
            Output::Event(_) => {}
            _ => break,
        }
    }
    assert!(!forged.is_empty());
    let mut inputs: Vec<Vec<u8>> = vec![vec![], vec![1, 1, 0], vec![0xff; 300]];
    inputs.extend(forged.iter().cloned());
    // A valid frame with one bit flipped in the envelope.
    let mut flipped = forged[0].clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x80;
    inputs.push(flipped);
    for bytes in &inputs {
        world.command(1, |e, now, rng| {
            e.handle_input(rng, Input::Receive { bytes, now })
        });
    }
    // Everything but the persisted drop counters (the counters record's last field) is
    // unchanged.
    let after = plaintext(&mut world, 1);
    let counters = 1 + 8 * (confide::DropReason::ALL.len() + 2);
    let without_counters = |plain: &[u8]| {
        let mut records = common::snapshot_records(plain);
        let c = records.get_mut(common::COUNTERS_RECORD).unwrap();
        c.truncate(c.len() - counters);
        records
    };
    assert_eq!(
        without_counters(&before),
        without_counters(&after),
        "state unchanged"
    );
    assert_ne!(before, after, "the refusals were counted");
    assert!(
        world
            .endpoint(1)
            .stats()
            .dropped(DropReason::EnvelopeRefused)
            >= 2
    );
    assert_eq!(world.live[1].received.len(), 1);
}

/// An endpoint that keeps no state (`Persistence::Ephemeral`) keeps no record of what changed
/// either: after a conversation of 100 texts, a change set holds the counters and nothing else
/// (its change logs did not grow with every message), while the same endpoint's whole state
/// is still there for `take_all_records`.
#[test]
fn an_ephemeral_endpoint_keeps_no_change_log() {
    let mut world = common::World::new(23, lossy(0, 0, 0));
    let service = Service::new(&mut world.rng);
    let config = EndpointConfig {
        persistence: confide::Persistence::Ephemeral,
        ..EndpointConfig::default()
    };
    for (name, role) in [
        (&b"client-1"[..], Role::Client),
        (b"counselor-1", Role::Counselor),
    ] {
        let (e, identity) = service.endpoint(&mut world.rng, name, role, config);
        world.add(e, identity);
    }
    let conv = connect(&mut world);
    for i in 0..50 {
        world.send(0, conv, format!("text {i}").as_bytes());
        settle(&mut world, Duration::from_secs(2));
    }
    let counselor_conv = world.endpoint(1).conversations()[0];
    for i in 0..50 {
        world.send(1, counselor_conv, format!("answer {i}").as_bytes());
        settle(&mut world, Duration::from_secs(2));
    }
    assert_eq!(world.live[0].delivered, 50);
    let key = world.key.clone();
    let (changes, all) = world.command(0, |e, _, rng| {
        let changes = e.take_changes(rng, &key, b"account").unwrap();
        let all = e.take_all_records(rng, &key, b"account").unwrap();
        (changes, all)
    });
    assert_eq!(
        (changes.puts().len(), changes.deletes().len()),
        (1, 0),
        "only the counters: {changes:?}"
    );
    assert!(all.puts().len() > 50, "the state is whole: {all:?}");
}
