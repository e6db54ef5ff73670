//! Deterministic sample frames and states shared by the vector and corpus tests.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use chacha20::ChaCha20Rng;
use confide_crypto::{Duration, Timestamp};
use confide_policy::{
    ConversationPolicy, Incoming, MessageId, OrgBounds, RetentionDuration, RetentionPolicy, Side,
};
use rand_core::SeedableRng;

pub(crate) const T0: Timestamp = Timestamp::from_millis(1_750_000_000_000);

/// A scripted conversation: every frame both sides produce, by name, and both final states.
pub(crate) struct Scenario {
    pub(crate) frames: Vec<(String, Vec<u8>)>,
    pub(crate) events: Vec<String>,
    pub(crate) states: Vec<(String, Vec<u8>)>,
}

fn at(mins: u64) -> Timestamp {
    T0.saturating_add(Duration::from_mins(mins))
}

pub(crate) fn scenario() -> Scenario {
    let mut rng = ChaCha20Rng::from_seed([42; 32]);
    let org = OrgBounds::new(
        RetentionDuration::new(Duration::from_mins(1)).unwrap(),
        RetentionDuration::new(Duration::from_days(30)),
    )
    .unwrap();
    let mut client = ConversationPolicy::new(Side::Initiator, org, RetentionPolicy::Off);
    let mut counselor = ConversationPolicy::new(Side::Responder, org, RetentionPolicy::Off);
    let mut frames = Vec::new();
    let mut events = Vec::new();
    let drain = |name: &str, p: &mut ConversationPolicy, events: &mut Vec<String>| {
        while let Some(e) = p.poll_event() {
            events.push(format!("{name}: {e:?}"));
        }
    };

    let text1 = client
        .send_text(
            MessageId::random(&mut rng),
            b"Hello, is anyone there?",
            at(0),
        )
        .unwrap();
    frames.push(("text_under_org_max".to_string(), text1.as_bytes().to_vec()));
    let _ = counselor.handle_incoming(text1.as_bytes(), at(1)).unwrap();

    let change = counselor
        .set_timer(
            RetentionPolicy::after_read(Duration::from_hours(24)),
            MessageId::random(&mut rng),
            at(2),
        )
        .unwrap();
    frames.push((
        "timer_change_after_read_24h".to_string(),
        change.as_bytes().to_vec(),
    ));
    let _ = client.handle_incoming(change.as_bytes(), at(3)).unwrap();

    let text2_id = MessageId::random(&mut rng);
    let text2 = client
        .send_text(text2_id, b"I would like to talk.", at(4))
        .unwrap();
    frames.push(("text_after_read".to_string(), text2.as_bytes().to_vec()));
    let _ = counselor.handle_incoming(text2.as_bytes(), at(5)).unwrap();

    let ack = counselor
        .acknowledge(&[text2_id, text1.id()], MessageId::random(&mut rng), at(5))
        .unwrap();
    frames.push(("ack_two_ids".to_string(), ack.as_bytes().to_vec()));
    let _ = client.handle_incoming(ack.as_bytes(), at(6)).unwrap();

    let read = counselor
        .mark_read(&[text2_id], MessageId::random(&mut rng), at(10))
        .unwrap()
        .unwrap();
    frames.push(("read_receipt".to_string(), read.as_bytes().to_vec()));
    let _ = client.handle_incoming(read.as_bytes(), at(11)).unwrap();

    let oops_id = MessageId::random(&mut rng);
    let oops = client.send_text(oops_id, b"wrong chat", at(12)).unwrap();
    frames.push(("text_to_unsend".to_string(), oops.as_bytes().to_vec()));
    let delete = client
        .unsend(oops_id, MessageId::random(&mut rng), at(13))
        .unwrap();
    frames.push(("delete".to_string(), delete.as_bytes().to_vec()));
    // The delete overtakes its target.
    let _ = counselor
        .handle_incoming(delete.as_bytes(), at(14))
        .unwrap();
    let suppressed = counselor.handle_incoming(oops.as_bytes(), at(15)).unwrap();
    assert_eq!(suppressed, Incoming::Suppressed { id: oops_id });

    drain("client", &mut client, &mut events);
    drain("counselor", &mut counselor, &mut events);
    let mut states = vec![
        (
            "client_open".to_string(),
            client.to_bytes().unwrap().to_vec(),
        ),
        (
            "counselor_open".to_string(),
            counselor.to_bytes().unwrap().to_vec(),
        ),
    ];

    let (close, _erase) = client.close(MessageId::random(&mut rng), at(20)).unwrap();
    frames.push(("close".to_string(), close.as_bytes().to_vec()));
    let _ = counselor.handle_incoming(close.as_bytes(), at(21)).unwrap();
    client.handle_timeout(at(60 * 24 * 31));
    counselor.handle_timeout(at(60 * 24 * 31));
    drain("client", &mut client, &mut events);
    drain("counselor", &mut counselor, &mut events);
    states.push((
        "client_closed_after_31_days".to_string(),
        client.to_bytes().unwrap().to_vec(),
    ));
    states.push((
        "counselor_closed_after_31_days".to_string(),
        counselor.to_bytes().unwrap().to_vec(),
    ));
    let fresh = ConversationPolicy::new(
        Side::Initiator,
        OrgBounds::UNRESTRICTED,
        RetentionPolicy::Off,
    );
    states.push((
        "fresh_unrestricted".to_string(),
        fresh.to_bytes().unwrap().to_vec(),
    ));
    Scenario {
        frames,
        events,
        states,
    }
}
