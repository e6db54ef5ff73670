#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! Behaviour of one conversation's policy as the facade and an attacker see it.

use confide_crypto::{Duration, Timestamp};
use confide_policy::conversation::TOMBSTONES_PER_CHUNK;
use confide_policy::limits::{
    MAX_CLOCK_SKEW, MAX_PENDING_DELETES, MAX_TEXT_LEN, MAX_TOMBSTONES, MIN_RETENTION,
    PENDING_DELETE_LIFETIME, UNSEND_RECEIVE_GRACE, UNSEND_WINDOW,
};
use confide_policy::{
    Body, ContentFrame, ConversationPolicy, Incoming, IncomingError, MessageId, MessageText,
    OrgBounds, PolicyEvent, RetentionDuration, RetentionPolicy, Side, StartRule, TimerSetting,
    UnsendError,
};
use std::collections::BTreeSet;

const T0: Timestamp = Timestamp::from_millis(1_750_000_000_000);

fn id(n: u32) -> MessageId {
    let mut b = [0u8; 16];
    b[..4].copy_from_slice(&n.to_be_bytes());
    b[15] = 0xaa;
    MessageId::from_bytes(b)
}

fn at(offset: Duration) -> Timestamp {
    T0.saturating_add(offset)
}

fn drain(p: &mut ConversationPolicy) -> Vec<PolicyEvent> {
    std::iter::from_fn(|| p.poll_event()).collect()
}

fn pair(initial: RetentionPolicy) -> (ConversationPolicy, ConversationPolicy) {
    (
        ConversationPolicy::new(Side::Initiator, OrgBounds::UNRESTRICTED, initial),
        ConversationPolicy::new(Side::Responder, OrgBounds::UNRESTRICTED, initial),
    )
}

fn hour() -> RetentionPolicy {
    RetentionPolicy::after_send(Duration::from_hours(1))
}

/// A frame the peer could send, built by hand (an attacker controls every field).
fn raw(id: MessageId, sent: Timestamp, timer: TimerSetting, body: Body) -> Vec<u8> {
    ContentFrame {
        id,
        claimed_send_time: sent,
        timer,
        body,
    }
    .encode()
    .unwrap()
}

fn snapshot(p: &ConversationPolicy) -> ConversationPolicy {
    p.clone()
}

#[test]
fn timer_change_reaches_the_peer_once() {
    let (mut a, mut b) = pair(RetentionPolicy::Off);
    let change = a.set_timer(hour(), id(1), T0).unwrap();
    let events = drain(&mut a);
    assert_eq!(events.len(), 1);
    assert!(matches!(events[0], PolicyEvent::TimerChanged { setting, .. } if setting.version == 1));
    assert_eq!(
        b.handle_incoming(change.as_bytes(), T0).unwrap(),
        Incoming::Control
    );
    assert_eq!(drain(&mut b).len(), 1);
    assert_eq!(a.current_timer(), b.current_timer());
    // A replay changes nothing and emits nothing.
    let before = snapshot(&b);
    assert_eq!(
        b.handle_incoming(change.as_bytes(), T0).unwrap(),
        Incoming::Control
    );
    assert!(drain(&mut b).is_empty());
    assert_eq!(b, before);
}

#[test]
fn concurrent_changes_resolve_to_the_stricter_on_both_sides() {
    let (mut a, mut b) = pair(RetentionPolicy::Off);
    let from_a = a.set_timer(RetentionPolicy::Off, id(1), T0).unwrap();
    let from_b = b.set_timer(hour(), id(2), T0).unwrap();
    drain(&mut a);
    drain(&mut b);
    let _ = a.handle_incoming(from_b.as_bytes(), T0).unwrap();
    let _ = b.handle_incoming(from_a.as_bytes(), T0).unwrap();
    assert_eq!(a.current_timer(), b.current_timer());
    assert_eq!(a.current_timer().policy, hour());
    assert_eq!(a.current_timer().proposer, Side::Responder);
    // Only the side that lost saw a change.
    assert_eq!(drain(&mut a).len(), 1);
    assert!(drain(&mut b).is_empty());
}

#[test]
fn equal_concurrent_proposals_tie_break_on_the_initiator() {
    let (mut a, mut b) = pair(RetentionPolicy::Off);
    let from_a = a.set_timer(hour(), id(1), T0).unwrap();
    let from_b = b.set_timer(hour(), id(2), T0).unwrap();
    let _ = a.handle_incoming(from_b.as_bytes(), T0).unwrap();
    let _ = b.handle_incoming(from_a.as_bytes(), T0).unwrap();
    assert_eq!(a.current_timer(), b.current_timer());
    assert_eq!(a.current_timer().proposer, Side::Initiator);
}

#[test]
fn an_older_change_arriving_late_is_ignored() {
    let (mut a, mut b) = pair(RetentionPolicy::Off);
    let first = a.set_timer(hour(), id(1), T0).unwrap();
    let second = a.set_timer(RetentionPolicy::Off, id(2), T0).unwrap();
    let _ = b.handle_incoming(second.as_bytes(), T0).unwrap();
    drain(&mut b);
    let _ = b.handle_incoming(first.as_bytes(), T0).unwrap();
    assert!(drain(&mut b).is_empty());
    assert_eq!(b.current_timer(), a.current_timer());
    assert_eq!(b.current_timer().policy, RetentionPolicy::Off);
}

#[test]
fn a_lost_change_is_recovered_from_the_next_stamp() {
    let (mut a, mut b) = pair(RetentionPolicy::Off);
    let change = a.set_timer(hour(), id(1), T0).unwrap();
    let text = a.send_text(id(2), b"hi", T0).unwrap();
    // The text overtakes the change.
    let Incoming::Message(m) = b.handle_incoming(text.as_bytes(), T0).unwrap() else {
        panic!()
    };
    assert_eq!(m.policy, hour());
    assert_eq!(b.current_timer(), a.current_timer());
    assert_eq!(drain(&mut b).len(), 1);
    let _ = b.handle_incoming(change.as_bytes(), T0).unwrap();
    assert!(drain(&mut b).is_empty(), "no second TimerChanged");
}

#[test]
fn receiver_enforces_the_timer_each_message_was_sent_under() {
    let (mut a, mut b) = pair(hour());
    let under_hour = a.send_text(id(1), b"one", T0).unwrap();
    let off = a.set_timer(RetentionPolicy::Off, id(2), T0).unwrap();
    let under_off = a.send_text(id(3), b"two", T0).unwrap();
    // Delivered in reverse.
    let Incoming::Message(m3) = b.handle_incoming(under_off.as_bytes(), T0).unwrap() else {
        panic!()
    };
    let _ = b.handle_incoming(off.as_bytes(), T0).unwrap();
    let Incoming::Message(m1) = b.handle_incoming(under_hour.as_bytes(), T0).unwrap() else {
        panic!()
    };
    assert_eq!(m3.deadline, None);
    assert_eq!(m1.deadline, Some(at(Duration::from_hours(1))));
    assert_eq!(b.current_timer().policy, RetentionPolicy::Off);
}

#[test]
fn forged_timer_attribution_is_refused_and_changes_nothing() {
    let (_, mut b) = pair(RetentionPolicy::Off);
    let before = snapshot(&b);
    // A timer change claiming to come from the receiver.
    let forged_change = raw(
        id(1),
        T0,
        TimerSetting::initial(RetentionPolicy::Off),
        Body::TimerChange(TimerSetting {
            version: 1,
            proposer: Side::Responder,
            policy: RetentionPolicy::Off,
        }),
    );
    assert_eq!(
        b.handle_incoming(&forged_change, T0),
        Err(IncomingError::ForgedProposer { version: 1 })
    );
    // A stamp naming the receiver as proposer of a version it never made.
    let forged_stamp = raw(
        id(2),
        T0,
        TimerSetting {
            version: 9,
            proposer: Side::Responder,
            policy: RetentionPolicy::Off,
        },
        Body::Text(MessageText::new(b"x".to_vec())),
    );
    assert_eq!(
        b.handle_incoming(&forged_stamp, T0),
        Err(IncomingError::ForgedTimer { version: 9 })
    );
    assert_eq!(b, before);
}

#[test]
fn differing_initial_policies_converge_on_the_stricter() {
    let mut a = ConversationPolicy::new(
        Side::Initiator,
        OrgBounds::UNRESTRICTED,
        RetentionPolicy::Off,
    );
    let mut b = ConversationPolicy::new(Side::Responder, OrgBounds::UNRESTRICTED, hour());
    let from_b = b.send_text(id(1), b"x", T0).unwrap();
    let from_a = a.send_text(id(2), b"y", T0).unwrap();
    let _ = a.handle_incoming(from_b.as_bytes(), T0).unwrap();
    let _ = b.handle_incoming(from_a.as_bytes(), T0).unwrap();
    assert_eq!(a.current_timer(), b.current_timer());
    assert_eq!(a.current_timer().policy, hour());
}

#[test]
fn skew_rule_trusts_the_claimed_send_time_only_within_the_bound() {
    let (_, mut b) = pair(RetentionPolicy::Off);
    let timer = TimerSetting::initial(hour());
    let received = at(Duration::from_hours(2));
    let cases = [
        // Claimed 1 minute earlier: trusted.
        (
            received.saturating_sub(Duration::from_mins(1)),
            received.saturating_sub(Duration::from_mins(1)),
        ),
        // Claimed an hour earlier: only MAX_CLOCK_SKEW is trusted.
        (
            received.saturating_sub(Duration::from_mins(59)),
            received.saturating_sub(MAX_CLOCK_SKEW),
        ),
        // Claimed in the future: local receive time.
        (received.saturating_add(Duration::from_hours(5)), received),
    ];
    for (n, (claimed, start)) in cases.into_iter().enumerate() {
        let frame = raw(
            id(n as u32),
            claimed,
            timer,
            Body::Text(MessageText::new(b"m".to_vec())),
        );
        let Incoming::Message(m) = b.handle_incoming(&frame, received).unwrap() else {
            panic!()
        };
        assert_eq!(
            m.deadline,
            Some(start.saturating_add(Duration::from_hours(1)))
        );
    }
}

#[test]
fn a_message_past_its_deadline_on_arrival_is_never_surfaced() {
    let (_, mut b) = pair(RetentionPolicy::Off);
    let short = RetentionPolicy::after_send(MIN_RETENTION);
    let frame = raw(
        id(1),
        T0,
        TimerSetting::initial(short),
        Body::Text(MessageText::new(b"m".to_vec())),
    );
    let late = at(Duration::from_hours(1));
    assert_eq!(
        b.handle_incoming(&frame, late).unwrap(),
        Incoming::ExpiredOnArrival { id: id(1) }
    );
    // A replay, even with the clock set back, stays hidden.
    assert_eq!(
        b.handle_incoming(&frame, T0).unwrap(),
        Incoming::Duplicate { id: id(1) }
    );
}

#[test]
fn after_read_timers_start_on_read_on_both_sides() {
    let day = RetentionPolicy::after_read(Duration::from_days(1));
    let (mut a, mut b) = pair(day);
    let text = a.send_text(id(1), b"m", T0).unwrap();
    assert_eq!(a.deadline_of(&id(1)), None);
    let Incoming::Message(m) = b.handle_incoming(text.as_bytes(), T0).unwrap() else {
        panic!()
    };
    assert_eq!(m.deadline, None);
    assert_eq!(b.poll_timeout(), None, "nothing to wake for while unread");
    let read_time = at(Duration::from_hours(3));
    let receipt = b.mark_read(&[id(1)], id(2), read_time).unwrap().unwrap();
    assert_eq!(
        b.deadline_of(&id(1)),
        Some(read_time.saturating_add(Duration::from_days(1)))
    );
    let receipt_arrival = at(Duration::from_hours(4));
    assert_eq!(
        a.handle_incoming(receipt.as_bytes(), receipt_arrival)
            .unwrap(),
        Incoming::ReadReceipts { ids: vec![id(1)] }
    );
    assert_eq!(
        a.deadline_of(&id(1)),
        Some(receipt_arrival.saturating_add(Duration::from_days(1)))
    );
    // Reading again does not restart the timer.
    let _ = b
        .mark_read(&[id(1)], id(3), at(Duration::from_hours(10)))
        .unwrap();
    assert_eq!(
        b.deadline_of(&id(1)),
        Some(read_time.saturating_add(Duration::from_days(1)))
    );
}

#[test]
fn org_bounds_cannot_be_left_by_either_party() {
    let max = RetentionDuration::new(Duration::from_days(30)).unwrap();
    let min = RetentionDuration::new(Duration::from_mins(5)).unwrap();
    let org = OrgBounds::new(min, Some(max)).unwrap();
    let mut a = ConversationPolicy::new(Side::Initiator, org, RetentionPolicy::Off);
    let mut b = ConversationPolicy::new(Side::Responder, org, RetentionPolicy::Off);
    assert_eq!(
        a.effective_policy(),
        RetentionPolicy::Expire {
            after: max,
            start: StartRule::AfterSend
        }
    );
    // A peer that sends "off" anyway gets the org max.
    let off = raw(
        id(1),
        T0,
        TimerSetting::initial(RetentionPolicy::Off),
        Body::Text(MessageText::new(b"m".to_vec())),
    );
    let Incoming::Message(m) = b.handle_incoming(&off, T0).unwrap() else {
        panic!()
    };
    assert_eq!(m.deadline, Some(at(Duration::from_days(30))));
    // Unread after-read messages still go at the org max.
    let long_read = raw(
        id(2),
        T0,
        TimerSetting::initial(RetentionPolicy::after_read(Duration::from_days(20))),
        Body::Text(MessageText::new(b"m".to_vec())),
    );
    let Incoming::Message(m) = b.handle_incoming(&long_read, T0).unwrap() else {
        panic!()
    };
    assert_eq!(m.deadline, Some(at(Duration::from_days(30))));
    // Too-short timers are lengthened to the org min.
    let _ = a
        .set_timer(
            RetentionPolicy::after_send(Duration::from_secs(10)),
            id(3),
            T0,
        )
        .unwrap();
    assert_eq!(
        a.effective_policy(),
        RetentionPolicy::after_send(Duration::from_mins(5))
    );
}

#[test]
fn clock_jumping_forward_expires_everything_due_in_one_call() {
    let (mut a, mut b) = pair(RetentionPolicy::Off);
    for n in 0..50u32 {
        let policy = RetentionPolicy::after_send(Duration::from_mins(u64::from(n) + 1));
        let _ = a.set_timer(policy, id(10_000 + n), T0).unwrap();
        let frame = a.send_text(id(n), b"m", T0).unwrap();
        let _ = b.handle_incoming(frame.as_bytes(), T0).unwrap();
    }
    drain(&mut a);
    drain(&mut b);
    b.handle_timeout(at(Duration::from_days(3)));
    let expired: Vec<_> = drain(&mut b);
    assert_eq!(
        expired,
        (0..50)
            .map(|n| PolicyEvent::Expired { id: id(n) })
            .collect::<Vec<_>>()
    );
    assert_eq!(b.tracked_messages(), 0);
    assert_eq!(b.poll_timeout(), None);
}

#[test]
fn clock_jumping_back_extends_nothing_and_resurfaces_nothing() {
    let (mut a, mut b) = pair(hour());
    let frame = a.send_text(id(1), b"m", T0).unwrap();
    let _ = b.handle_incoming(frame.as_bytes(), T0).unwrap();
    let deadline = b.deadline_of(&id(1)).unwrap();
    b.handle_timeout(T0.saturating_sub(Duration::from_days(1)));
    assert!(drain(&mut b).is_empty());
    assert_eq!(b.deadline_of(&id(1)), Some(deadline));
    b.handle_timeout(deadline);
    assert_eq!(drain(&mut b), vec![PolicyEvent::Expired { id: id(1) }]);
    // Clock back before the message was even sent: a replay stays gone.
    let past = T0.saturating_sub(Duration::from_days(1));
    assert_eq!(
        b.handle_incoming(frame.as_bytes(), past).unwrap(),
        Incoming::Duplicate { id: id(1) }
    );
    b.handle_timeout(past);
    assert!(drain(&mut b).is_empty());
}

#[test]
fn only_the_author_can_unsend_within_the_window() {
    let (mut a, mut b) = pair(RetentionPolicy::Off);
    let mine = a.send_text(id(1), b"mine", T0).unwrap();
    let _ = b.handle_incoming(mine.as_bytes(), T0).unwrap();
    let theirs = b.send_text(id(2), b"theirs", T0).unwrap();
    let _ = a.handle_incoming(theirs.as_bytes(), T0).unwrap();

    // The API refuses deleting the peer's message.
    assert_eq!(
        a.unsend(id(2), id(3), T0).unwrap_err(),
        UnsendError::NotAuthor
    );
    // A peer forging a delete of our message is refused and nothing changes.
    let forged = raw(id(4), T0, b.current_timer(), Body::Delete { target: id(2) });
    let before = snapshot(&b);
    assert_eq!(
        b.handle_incoming(&forged, T0),
        Err(IncomingError::NotAuthor)
    );
    assert_eq!(b, before);

    // The author deletes: both sides erase.
    let delete = a.unsend(id(1), id(5), at(Duration::from_hours(1))).unwrap();
    assert_eq!(
        drain(&mut a),
        vec![PolicyEvent::Deleted {
            id: id(1),
            author: Side::Initiator
        }]
    );
    assert_eq!(
        b.handle_incoming(delete.as_bytes(), at(Duration::from_hours(1)))
            .unwrap(),
        Incoming::Control
    );
    assert_eq!(
        drain(&mut b),
        vec![PolicyEvent::Deleted {
            id: id(1),
            author: Side::Initiator
        }]
    );
    assert!(b.is_tombstoned(&id(1)));
    assert_eq!(b.author_of(&id(1)), None);
    // Replaying the text does not bring it back.
    assert_eq!(
        b.handle_incoming(mine.as_bytes(), T0).unwrap(),
        Incoming::Duplicate { id: id(1) }
    );
}

#[test]
fn unsend_after_the_window_is_refused_on_both_sides() {
    let (mut a, mut b) = pair(RetentionPolicy::Off);
    let mine = a.send_text(id(1), b"mine", T0).unwrap();
    let _ = b.handle_incoming(mine.as_bytes(), T0).unwrap();
    let late = at(UNSEND_WINDOW.saturating_add(Duration::from_secs(1)));
    assert_eq!(
        a.unsend(id(1), id(2), late).unwrap_err(),
        UnsendError::WindowClosed
    );
    // A sender that lies about its clock is still held to the receiver's clock.
    let lying = raw(
        id(3),
        T0.saturating_add(Duration::from_mins(1)),
        a.current_timer(),
        Body::Delete { target: id(1) },
    );
    let too_late = at(UNSEND_WINDOW
        .saturating_add(UNSEND_RECEIVE_GRACE)
        .saturating_add(Duration::from_secs(1)));
    assert_eq!(
        b.handle_incoming(&lying, too_late),
        Err(IncomingError::UnsendWindowClosed)
    );
    // And a claimed delete time past the window is refused even if it arrives promptly.
    let honest_late = raw(
        id(4),
        late,
        a.current_timer(),
        Body::Delete { target: id(1) },
    );
    assert_eq!(
        b.handle_incoming(&honest_late, at(Duration::from_hours(1))),
        Err(IncomingError::UnsendWindowClosed)
    );
}

#[test]
fn a_delete_arriving_before_its_target_suppresses_it() {
    let (mut a, mut b) = pair(RetentionPolicy::Off);
    let text = a.send_text(id(1), b"oops", T0).unwrap();
    let delete = a.unsend(id(1), id(2), at(Duration::from_mins(1))).unwrap();
    assert_eq!(
        b.handle_incoming(delete.as_bytes(), at(Duration::from_mins(2)))
            .unwrap(),
        Incoming::Control
    );
    assert_eq!(b.pending_deletes(), 1);
    assert!(drain(&mut b).is_empty());
    assert_eq!(
        b.handle_incoming(text.as_bytes(), at(Duration::from_mins(3)))
            .unwrap(),
        Incoming::Suppressed { id: id(1) }
    );
    assert_eq!(
        drain(&mut b),
        vec![PolicyEvent::Deleted {
            id: id(1),
            author: Side::Initiator
        }]
    );
    assert_eq!(b.pending_deletes(), 0);
}

#[test]
fn pending_deletes_are_bounded_in_count_and_time() {
    let (a, mut b) = pair(RetentionPolicy::Off);
    for n in 0..=MAX_PENDING_DELETES as u32 {
        let d = raw(
            id(100_000 + n),
            T0,
            a.current_timer(),
            Body::Delete { target: id(n) },
        );
        let _ = b
            .handle_incoming(&d, at(Duration::from_millis(u64::from(n))))
            .unwrap();
    }
    assert_eq!(b.pending_deletes(), MAX_PENDING_DELETES);
    // The oldest was dropped, and its target id is still refused.
    assert!(b.is_tombstoned(&id(0)));
    b.handle_timeout(at(
        PENDING_DELETE_LIFETIME.saturating_add(Duration::from_secs(2))
    ));
    assert_eq!(b.pending_deletes(), 0);
    assert_eq!(b.poll_timeout(), None);
}

#[test]
fn close_ends_the_conversation_on_both_sides() {
    let (mut a, mut b) = pair(hour());
    let text = a.send_text(id(1), b"m", T0).unwrap();
    let _ = b.handle_incoming(text.as_bytes(), T0).unwrap();
    let (close, _erase) = b.close(id(2), T0).unwrap();
    assert_eq!(
        drain(&mut b),
        vec![PolicyEvent::Closed {
            by: Side::Responder
        }]
    );
    assert_eq!(
        a.handle_incoming(close.as_bytes(), T0).unwrap(),
        Incoming::Closed(confide_policy::EraseSessionKeys)
    );
    assert_eq!(
        drain(&mut a),
        vec![PolicyEvent::Closed {
            by: Side::Responder
        }]
    );
    // Everything later is refused.
    let late = a.clone().send_text(id(3), b"x", T0);
    assert!(late.is_err());
    let stray = raw(
        id(4),
        T0,
        a.current_timer(),
        Body::Text(MessageText::new(b"x".to_vec())),
    );
    assert_eq!(
        a.handle_incoming(&stray, T0),
        Err(IncomingError::Closed {
            by: Side::Responder
        })
    );
    assert_eq!(
        b.handle_incoming(&stray, T0),
        Err(IncomingError::Closed {
            by: Side::Responder
        })
    );
    assert!(a.set_timer(RetentionPolicy::Off, id(5), T0).is_err());
    assert!(a.close(id(6), T0).is_err());
    // Timers keep running after close.
    b.handle_timeout(at(Duration::from_hours(1)));
    assert_eq!(drain(&mut b), vec![PolicyEvent::Expired { id: id(1) }]);
}

#[test]
fn skipped_key_cutoff_follows_the_enforced_retention() {
    let (mut a, _) = pair(RetentionPolicy::Off);
    assert_eq!(a.skipped_key_cutoff(T0), None);
    let _ = a.set_timer(hour(), id(1), T0).unwrap();
    assert_eq!(
        a.skipped_key_cutoff(T0),
        Some(
            T0.saturating_sub(Duration::from_hours(1))
                .saturating_sub(MAX_CLOCK_SKEW)
        )
    );
    let org = OrgBounds::new(
        RetentionDuration::MIN,
        RetentionDuration::new(Duration::from_days(30)),
    )
    .unwrap();
    let capped = ConversationPolicy::new(Side::Initiator, org, RetentionPolicy::Off);
    assert_eq!(
        capped.skipped_key_cutoff(T0),
        Some(
            T0.saturating_sub(Duration::from_days(30))
                .saturating_sub(MAX_CLOCK_SKEW)
        )
    );
}

#[test]
fn untimed_messages_retire_silently_after_the_unsend_window() {
    let (mut a, mut b) = pair(RetentionPolicy::Off);
    let text = a.send_text(id(1), b"m", T0).unwrap();
    let _ = b.handle_incoming(text.as_bytes(), T0).unwrap();
    let retire = at(UNSEND_WINDOW.saturating_add(UNSEND_RECEIVE_GRACE));
    assert_eq!(b.poll_timeout(), Some(retire));
    b.handle_timeout(retire);
    assert!(
        drain(&mut b).is_empty(),
        "retiring is not expiry: the message stays on screen"
    );
    assert_eq!(b.tracked_messages(), 0);
    assert!(b.is_tombstoned(&id(1)));
}

#[test]
fn tombstones_are_bounded() {
    let (mut a, mut b) = pair(RetentionPolicy::after_send(MIN_RETENTION));
    for n in 0..(MAX_TOMBSTONES as u32 + 10) {
        let f = a.send_text(id(n), b"", T0).unwrap();
        let _ = b.handle_incoming(f.as_bytes(), T0).unwrap();
    }
    b.handle_timeout(at(Duration::from_hours(1)));
    assert_eq!(drain(&mut b).len(), MAX_TOMBSTONES + 10);
    assert!(!b.is_tombstoned(&id(0)), "oldest forgotten first");
    assert!(b.is_tombstoned(&id(MAX_TOMBSTONES as u32 + 9)));
}

#[test]
fn state_survives_serialization_with_pending_expiries() {
    let (mut a, mut b) = pair(hour());
    for n in 0..5 {
        let f = a
            .send_text(id(n), b"m", at(Duration::from_mins(u64::from(n))))
            .unwrap();
        let _ = b
            .handle_incoming(f.as_bytes(), at(Duration::from_mins(u64::from(n))))
            .unwrap();
    }
    let d = a.unsend(id(9), id(10), T0);
    assert!(d.is_err());
    let pending = raw(
        id(20),
        T0,
        a.current_timer(),
        Body::Delete { target: id(21) },
    );
    let _ = b.handle_incoming(&pending, T0).unwrap();
    drain(&mut b);
    let bytes = b.to_bytes().unwrap();
    let mut restored = ConversationPolicy::from_bytes(&bytes).unwrap();
    assert_eq!(restored, b);
    assert_eq!(&*restored.to_bytes().unwrap(), &*bytes);
    let later = at(Duration::from_days(2));
    restored.handle_timeout(later);
    b.handle_timeout(later);
    assert_eq!(drain(&mut restored), drain(&mut b));
    assert_eq!(restored, b);
}

/// `p` the way an incremental store holds it: the state without entries, each tracked
/// message and pending delete under its id, each tombstone chunk under its number.
struct Stored {
    core: Vec<u8>,
    entries: Vec<(MessageId, Vec<u8>)>,
    chunks: Vec<(u64, Vec<u8>)>,
}

impl Stored {
    fn of(p: &ConversationPolicy) -> Self {
        Self {
            core: p.to_bytes_without_entries().unwrap().to_vec(),
            entries: p
                .entry_ids()
                .into_iter()
                .map(|id| (id, p.entry_to_bytes(&id).unwrap().to_vec()))
                .collect(),
            chunks: p
                .tombstone_chunks()
                .into_iter()
                .map(|c| (c, p.tombstone_chunk_to_bytes(c).unwrap().to_vec()))
                .collect(),
        }
    }

    fn restore(&self) -> Result<ConversationPolicy, confide_crypto::codec::DecodeError> {
        ConversationPolicy::from_bytes(&self.core)
            .unwrap()
            .with_entries(
                self.entries.iter().map(|(id, e)| (*id, e.as_slice())),
                self.chunks.iter().map(|(c, e)| (*c, e.as_slice())),
            )
    }
}

/// Tombstones kept in chunks keep their order across a restore: beyond `MAX_TOMBSTONES` the
/// restored state forgets the same oldest ids, in the same order, as one that was never
/// stored, and reports the chunks that changed.
#[test]
fn tombstones_restored_from_chunks_are_forgotten_oldest_first() {
    let (mut a, mut b) = pair(RetentionPolicy::after_send(MIN_RETENTION));
    // Ids arrive, a millisecond apart, in an order unlike their byte order, so they expire
    // (and become tombstones) in an order unlike the ids' order.
    for (k, n) in (0..(MAX_TOMBSTONES as u32 - 5)).rev().enumerate() {
        let now = at(Duration::from_millis(k as u64));
        let f = a.send_text(id(n), b"", now).unwrap();
        let _ = b.handle_incoming(f.as_bytes(), now).unwrap();
    }
    b.handle_timeout(at(Duration::from_mins(61)));
    drain(&mut b);
    assert!(b.entry_ids().is_empty(), "every text expired");
    let chunks = b.take_changed_tombstone_chunks();
    assert_eq!(chunks.len(), MAX_TOMBSTONES / TOMBSTONES_PER_CHUNK as usize);
    assert_eq!(b.tombstone_chunks(), chunks.into_iter().collect::<Vec<_>>());
    let _ = b.take_changed_entries();
    let stored = Stored::of(&b);
    let mut restored = stored.restore().unwrap();
    assert_eq!(restored, b);
    assert!(
        restored.take_changed_entries().is_empty(),
        "restoring is not a change"
    );
    assert!(restored.take_changed_tombstone_chunks().is_empty());
    let now = at(Duration::from_mins(62));
    for n in 100_000..100_020 {
        let f = a.send_text(id(n), b"", now).unwrap();
        let _ = b.handle_incoming(f.as_bytes(), now).unwrap();
        let _ = restored.handle_incoming(f.as_bytes(), now).unwrap();
    }
    let later = at(Duration::from_hours(3));
    b.handle_timeout(later);
    restored.handle_timeout(later);
    assert_eq!(drain(&mut restored), drain(&mut b));
    assert_eq!(&*restored.to_bytes().unwrap(), &*b.to_bytes().unwrap());
    // The 15 oldest (the first delivered: the highest ids) are gone in both, the newest
    // of the first ones kept.
    let top = MAX_TOMBSTONES as u32 - 6;
    assert!(!restored.is_tombstoned(&id(top)));
    assert!(restored.is_tombstoned(&id(top - 15)));
    assert!(restored.is_tombstoned(&id(0)));
    // Every change is reported: the 20 texts tracked then expired, and the chunks that lost
    // the 15 oldest (positions 0 to 14: chunk 0) and gained the 20 newest (positions 4,091
    // to 4,110: chunks 63 and 64).
    let changed = restored.take_changed_entries();
    assert_eq!(changed.len(), 20);
    assert!(changed.iter().all(|i| restored.entry_to_bytes(i).is_none()));
    assert_eq!(restored.take_changed_tombstone_chunks(), [0, 63, 64].into());
    // A store that applied those changes restores the same state again.
    let again = Stored::of(&restored).restore().unwrap();
    assert_eq!(&*again.to_bytes().unwrap(), &*b.to_bytes().unwrap());
    assert_eq!(again.tombstone_chunks(), (0..=64).collect::<Vec<_>>());
    assert_eq!(restored.tombstone_chunk_to_bytes(0).unwrap()[..2], [15, 49]);
    assert_eq!(restored.tombstone_chunk_to_bytes(65), None);
}

#[test]
fn entries_are_restored_strictly() {
    let (mut a, mut b) = pair(hour());
    let f = a.send_text(id(1), b"m", T0).unwrap();
    let _ = b.handle_incoming(f.as_bytes(), T0).unwrap();
    let pending = raw(
        id(20),
        T0,
        a.current_timer(),
        Body::Delete { target: id(21) },
    );
    let _ = b.handle_incoming(&pending, T0).unwrap();
    for n in [2, 4] {
        let g = a.send_text(id(n), b"m", T0).unwrap();
        let _ = b.handle_incoming(g.as_bytes(), T0).unwrap();
        let delete = raw(
            id(n + 1),
            T0,
            a.current_timer(),
            Body::Delete { target: id(n) },
        );
        let _ = b.handle_incoming(&delete, T0);
    }
    drain(&mut b);
    let stored = Stored::of(&b);
    assert_eq!(
        stored.entries.len(),
        2,
        "a tracked message, a pending delete"
    );
    let kinds: BTreeSet<u8> = stored.entries.iter().map(|(_, e)| e[0]).collect();
    assert_eq!(kinds, [1, 2].into());
    assert_eq!(stored.chunks.len(), 1, "two tombstones, one chunk");
    assert_eq!(stored.chunks[0].1[..2], [0, 2]);
    assert_eq!(stored.restore().unwrap(), b);
    let with = |f: &dyn Fn(&mut Stored)| {
        let mut s = Stored::of(&b);
        f(&mut s);
        s.restore()
    };
    // Out of order or repeated ids.
    assert!(with(&|s| s.entries.reverse()).is_err());
    assert!(with(&|s| s.entries.push(s.entries[1].clone())).is_err());
    // Every entry and chunk: trailing bytes, every truncation, an unknown kind.
    for k in 0..stored.entries.len() {
        assert!(with(&|s| s.entries[k].1.push(0)).is_err());
        for cut in 0..stored.entries[k].1.len() {
            assert!(with(&|s| s.entries[k].1.truncate(cut)).is_err());
        }
        for kind in [0, 3, 4] {
            assert!(with(&|s| s.entries[k].1[0] = kind).is_err());
        }
    }
    assert!(with(&|s| s.chunks[0].1.push(0)).is_err());
    for cut in 0..stored.chunks[0].1.len() {
        assert!(with(&|s| s.chunks[0].1.truncate(cut)).is_err());
    }
    // A chunk that is empty, runs past its end, repeats an id, or holds a tracked id.
    assert!(with(&|s| s.chunks[0].1 = vec![0, 0]).is_err());
    assert!(with(&|s| s.chunks[0].1[0] = 63).is_err());
    assert!(
        with(&|s| {
            let first = s.chunks[0].1[2..18].to_vec();
            s.chunks[0].1[18..34].copy_from_slice(&first);
        })
        .is_err()
    );
    assert!(
        with(&|s| {
            let tracked = s.entries[0].0.to_bytes();
            s.chunks[0].1[2..18].copy_from_slice(&tracked);
        })
        .is_err()
    );
    // Chunks that are not contiguous: a gap, a chunk that does not end at its end before
    // the next, one that does not start at its start after the previous.
    let split = |first: (u8, u8), second: (u64, u8, u8)| {
        move |s: &mut Stored| {
            let ids = s.chunks[0].1[2..].to_vec();
            s.chunks = vec![
                (0, [vec![first.0, first.1], ids[..16].to_vec()].concat()),
                (
                    second.0,
                    [vec![second.1, second.2], ids[16..].to_vec()].concat(),
                ),
            ];
        }
    };
    assert!(
        with(&split((63, 1), (1, 0, 1))).is_ok(),
        "contiguous across chunks"
    );
    assert!(with(&split((63, 1), (2, 0, 1))).is_err(), "a gap");
    assert!(
        with(&split((62, 1), (1, 0, 1))).is_err(),
        "ends before its end"
    );
    assert!(
        with(&split((63, 1), (1, 1, 1))).is_err(),
        "starts after its start"
    );
    assert!(
        with(&|s| s.chunks.reverse()).is_ok(),
        "one chunk reversed is itself"
    );
    // Which states have entries: one tracked message, one pending delete, one tombstone
    // each count alone (a state without entries takes entries; one with any refuses more).
    let fresh = || ConversationPolicy::from_bytes(&stored.core).unwrap();
    assert!(!fresh().has_entries());
    let one_chunk = (
        stored.chunks[0].0,
        [vec![0, 1], stored.chunks[0].1[2..18].to_vec()].concat(),
    );
    let singles: Vec<ConversationPolicy> = stored
        .entries
        .iter()
        .map(|(i, e)| fresh().with_entries([(*i, e.as_slice())], []).unwrap())
        .chain([fresh()
            .with_entries([], [(one_chunk.0, one_chunk.1.as_slice())])
            .unwrap()])
        .collect();
    for one in singles {
        assert!(one.has_entries());
        let bytes = one.to_bytes().unwrap();
        assert!(
            ConversationPolicy::from_bytes(&bytes)
                .unwrap()
                .with_entries([], [])
                .is_err()
        );
    }
}

#[test]
fn state_with_undrained_events_is_not_serialized() {
    let (mut a, _) = pair(RetentionPolicy::Off);
    let _ = a.set_timer(hour(), id(1), T0).unwrap();
    assert!(a.to_bytes().is_err());
    drain(&mut a);
    assert!(a.to_bytes().is_ok());
}

#[test]
fn state_decoding_is_strict() {
    let (mut a, _) = pair(hour());
    let _ = a.send_text(id(1), b"m", T0).unwrap();
    let bytes = a.to_bytes().unwrap().to_vec();
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert!(ConversationPolicy::from_bytes(&trailing).is_err());
    let mut version = bytes.clone();
    version[0] = 9;
    assert!(ConversationPolicy::from_bytes(&version).is_err());
    for cut in 0..bytes.len() {
        assert!(ConversationPolicy::from_bytes(&bytes[..cut]).is_err());
    }
}

#[test]
fn send_refuses_reused_ids() {
    let (mut a, mut b) = pair(RetentionPolicy::Off);
    let f = a.send_text(id(1), b"m", T0).unwrap();
    assert!(a.send_text(id(1), b"again", T0).is_err());
    let _ = b.handle_incoming(f.as_bytes(), T0).unwrap();
    // The peer reusing our id for its own text is refused.
    let clash = raw(
        id(2),
        T0,
        a.current_timer(),
        Body::Text(MessageText::new(b"x".to_vec())),
    );
    let _ = a.send_text(id(2), b"mine", T0).unwrap();
    let before = snapshot(&a);
    assert_eq!(
        a.handle_incoming(&clash, T0),
        Err(IncomingError::IdConflict)
    );
    assert_eq!(a, before);
}

#[test]
fn debug_output_shows_no_text_or_full_ids() {
    let (mut a, mut b) = pair(hour());
    let f = a
        .send_text(id(0x0102_0304), b"my private worry", T0)
        .unwrap();
    let incoming = b.handle_incoming(f.as_bytes(), T0).unwrap();
    for shown in [
        format!("{f:?}"),
        format!("{incoming:?}"),
        format!("{b:?}"),
        format!("{a:?}"),
    ] {
        assert!(!shown.contains("private"), "{shown}");
        assert!(!shown.contains("109, 121"), "{shown}");
        assert!(!shown.contains("aa"), "full id leaked: {shown}");
    }
}

#[test]
fn a_timer_version_may_not_jump_past_the_named_step() {
    use confide_policy::limits::MAX_TIMER_VERSION_STEP;
    let (_, mut b) = pair(RetentionPolicy::Off);
    let before = snapshot(&b);
    // One frame at u64::MAX would lock the timer for good: refused, nothing changes.
    let lock = raw(
        id(1),
        T0,
        TimerSetting::initial(RetentionPolicy::Off),
        Body::TimerChange(TimerSetting {
            version: u64::MAX,
            proposer: Side::Initiator,
            policy: hour(),
        }),
    );
    assert_eq!(
        b.handle_incoming(&lock, T0),
        Err(IncomingError::TimerVersionJump {
            version: u64::MAX,
            current: 0
        })
    );
    // The same through a text's timer stamp.
    let stamp = raw(
        id(2),
        T0,
        TimerSetting {
            version: MAX_TIMER_VERSION_STEP + 1,
            proposer: Side::Initiator,
            policy: hour(),
        },
        Body::Text(MessageText::new(b"x".to_vec())),
    );
    assert!(matches!(
        b.handle_incoming(&stamp, T0),
        Err(IncomingError::TimerVersionJump { .. })
    ));
    assert_eq!(b, before);
    // A step within the bound is accepted (changes this side has not seen yet).
    let ok = raw(
        id(3),
        T0,
        TimerSetting::initial(RetentionPolicy::Off),
        Body::TimerChange(TimerSetting {
            version: MAX_TIMER_VERSION_STEP,
            proposer: Side::Initiator,
            policy: hour(),
        }),
    );
    assert_eq!(b.handle_incoming(&ok, T0), Ok(Incoming::Control));
    assert_eq!(b.current_timer().version, MAX_TIMER_VERSION_STEP);
}

/// policy.md §3 "Initial setting": the configured initial policy is clamped by the local org
/// bounds once, at creation, and the clamped policy is the stored and stamped version-0
/// setting.
#[test]
fn initial_timer_is_clamped_by_the_local_org_bounds() {
    let org = OrgBounds::new(
        RetentionDuration::new(Duration::from_mins(1)).unwrap(),
        RetentionDuration::new(Duration::from_days(30)),
    )
    .unwrap();
    let cases = [
        // Off under a max: the max, after send.
        (
            RetentionPolicy::Off,
            RetentionPolicy::after_send(Duration::from_days(30)),
        ),
        // Shorter than min: lengthened to min, start rule kept.
        (
            RetentionPolicy::after_read(Duration::from_secs(20)),
            RetentionPolicy::after_read(Duration::from_mins(1)),
        ),
        // Longer than max: shortened to max, start rule kept.
        (
            RetentionPolicy::after_read(Duration::from_days(90)),
            RetentionPolicy::after_read(Duration::from_days(30)),
        ),
        // Inside the bounds: unchanged.
        (
            RetentionPolicy::after_send(Duration::from_hours(5)),
            RetentionPolicy::after_send(Duration::from_hours(5)),
        ),
    ];
    for (initial, expected) in cases {
        for side in [Side::Initiator, Side::Responder] {
            let p = ConversationPolicy::new(side, org, initial);
            let t = p.current_timer();
            assert_eq!(t.version, 0);
            assert_eq!(t.proposer, Side::Initiator);
            assert_eq!(t.policy, expected, "{initial:?}");
        }
    }
    // Without org bounds, Off stays Off; the absolute limits apply when the policy is built.
    let p = ConversationPolicy::new(
        Side::Initiator,
        OrgBounds::UNRESTRICTED,
        RetentionPolicy::Off,
    );
    assert_eq!(p.current_timer().policy, RetentionPolicy::Off);
    assert_eq!(
        RetentionPolicy::after_send(Duration::from_secs(1)),
        RetentionPolicy::after_send(Duration::from_secs(10))
    );
    assert_eq!(
        RetentionPolicy::after_send(Duration::from_days(400)),
        RetentionPolicy::after_send(Duration::from_days(365))
    );
}

/// The longest text is sent; one byte more is refused with its length, and nothing is tracked.
#[test]
fn a_text_of_the_maximum_length_is_sent_and_one_byte_more_is_refused() {
    let (mut client, _counselor) = pair(RetentionPolicy::Off);
    let longest = vec![b'x'; MAX_TEXT_LEN];
    assert!(
        client
            .send_text(id(1), &longest, at(Duration::ZERO))
            .is_ok()
    );
    let too_long = vec![b'x'; MAX_TEXT_LEN + 1];
    assert_eq!(
        client
            .send_text(id(2), &too_long, at(Duration::ZERO))
            .unwrap_err(),
        confide_policy::SendError::TextTooLong {
            len: MAX_TEXT_LEN + 1,
            max: MAX_TEXT_LEN
        }
    );
    assert_eq!(client.tracked_messages(), 1);
}

/// A referral whose party is over its limit is refused by name, and nothing is tracked.
#[test]
fn an_oversized_referral_is_refused_by_kind() {
    let (mut client, _counselor) = pair(RetentionPolicy::Off);
    let content = confide_policy::UserContent::Referral(confide_policy::Referral {
        urgency: confide_policy::Urgency::Routine,
        party: vec![1; confide_policy::limits::MAX_REFERRAL_PARTY_LEN + 1],
        note: confide_policy::MessageText::new(Vec::new()),
    });
    assert_eq!(
        client
            .send_content(id(1), &content, at(Duration::ZERO))
            .unwrap_err(),
        confide_policy::SendError::ContentOutOfLimits { kind: "referral" }
    );
    assert_eq!(client.tracked_messages(), 0);
}
