//! Deterministic sample frames and states shared by the vector and corpus tests.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use chacha20::ChaCha20Rng;
use confide_attachment::{AttachmentKey, AttachmentPointer, BlobId, CiphertextDigest, ContentType};
use confide_crypto::{Duration, Timestamp};
use confide_policy::{
    CodeStep, ConversationPolicy, Incoming, MessageId, MessageText, OrgBounds, Referral,
    ReferralAnswer, RetentionDuration, RetentionPolicy, Side, Urgency, UserContent,
};
use rand_core::SeedableRng;
use zeroize::Zeroizing;

pub(crate) const T0: Timestamp = Timestamp::from_millis(1_750_000_000_000);

/// A scripted conversation: every frame both sides produce, by name, and both final states.
pub(crate) struct Scenario {
    pub(crate) frames: Vec<(String, Vec<u8>)>,
    pub(crate) events: Vec<String>,
    pub(crate) states: Vec<(String, Vec<u8>)>,
    /// Every call, in order, with its arguments and time (`t0 + N min`); ids drawn from the
    /// RNG are shown in hex.
    pub(crate) script: Vec<String>,
}

fn at(mins: u64) -> Timestamp {
    T0.saturating_add(Duration::from_mins(mins))
}

/// Draws a message id (16 bytes) and returns it with its hex form for the script.
fn draw(rng: &mut ChaCha20Rng) -> (MessageId, String) {
    let id = MessageId::random(rng);
    (id, format!("id {}", hex::encode(id.to_bytes())))
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
    let mut script = vec![
        "rng = ChaCha20Rng::from_seed([42; 32]); every MessageId::random(rng) draws 16 bytes".to_string(),
        "org = OrgBounds::new(min 60000 ms, max 2592000000 ms)".to_string(),
        "client = ConversationPolicy::new(Initiator, org, Off); counselor = ConversationPolicy::new(Responder, org, Off) \
         (both clamp the initial Off to Expire { 2592000000 ms, AfterSend } at version 0, proposer Initiator)".to_string(),
    ];
    let drain = |name: &str, p: &mut ConversationPolicy, events: &mut Vec<String>| {
        while let Some(e) = p.poll_event() {
            events.push(format!("{name}: {e:?}"));
        }
    };

    let (id1, id1_hex) = draw(&mut rng);
    let text1 = client
        .send_text(id1, b"Hello, is anyone there?", at(0))
        .unwrap();
    script.push(format!(
        "text_under_org_max = client.send_text({id1_hex}, \"Hello, is anyone there?\", t0 + 0 min)"
    ));
    frames.push(("text_under_org_max".to_string(), text1.as_bytes().to_vec()));
    let _ = counselor.handle_incoming(text1.as_bytes(), at(1)).unwrap();
    script.push("counselor.handle_incoming(text_under_org_max, t0 + 1 min)".to_string());

    let (change_id, change_hex) = draw(&mut rng);
    let change = counselor
        .set_timer(
            RetentionPolicy::after_read(Duration::from_hours(24)),
            change_id,
            at(2),
        )
        .unwrap();
    script.push(format!(
        "timer_change_after_read_24h = counselor.set_timer(Expire {{ 86400000 ms, AfterRead }}, {change_hex}, t0 + 2 min)"
    ));
    frames.push((
        "timer_change_after_read_24h".to_string(),
        change.as_bytes().to_vec(),
    ));
    let _ = client.handle_incoming(change.as_bytes(), at(3)).unwrap();
    script.push("client.handle_incoming(timer_change_after_read_24h, t0 + 3 min)".to_string());

    let (text2_id, text2_hex) = draw(&mut rng);
    let text2 = client
        .send_text(text2_id, b"I would like to talk.", at(4))
        .unwrap();
    script.push(format!(
        "text_after_read = client.send_text({text2_hex}, \"I would like to talk.\", t0 + 4 min)"
    ));
    frames.push(("text_after_read".to_string(), text2.as_bytes().to_vec()));
    let _ = counselor.handle_incoming(text2.as_bytes(), at(5)).unwrap();
    script.push("counselor.handle_incoming(text_after_read, t0 + 5 min)".to_string());

    let (ack_id, ack_hex) = draw(&mut rng);
    let ack = counselor
        // No transport here: the script takes each text's transport frame id equal to its
        // content id (an acknowledgement names transport frame ids, docs/policy.md section 9).
        .acknowledge(
            &[
                confide_crypto::FrameId::from_bytes(text2_id.to_bytes()),
                confide_crypto::FrameId::from_bytes(text1.id().to_bytes()),
            ],
            ack_id,
            at(5),
        )
        .unwrap();
    script.push(format!(
        "ack_two_ids = counselor.acknowledge([frame ids equal to text_after_read's and text_under_org_max's \
         content ids], {ack_hex}, t0 + 5 min) (ids are sorted by the call)"
    ));
    frames.push(("ack_two_ids".to_string(), ack.as_bytes().to_vec()));
    let _ = client.handle_incoming(ack.as_bytes(), at(6)).unwrap();
    script.push("client.handle_incoming(ack_two_ids, t0 + 6 min)".to_string());

    let (read_id, read_hex) = draw(&mut rng);
    let read = counselor
        .mark_read(&[text2_id], read_id, at(10))
        .unwrap()
        .unwrap();
    script.push(format!(
        "read_receipt = counselor.mark_read([text_after_read's id], {read_hex}, t0 + 10 min)"
    ));
    frames.push(("read_receipt".to_string(), read.as_bytes().to_vec()));
    let _ = client.handle_incoming(read.as_bytes(), at(11)).unwrap();
    script.push("client.handle_incoming(read_receipt, t0 + 11 min)".to_string());

    let (oops_id, oops_hex) = draw(&mut rng);
    let oops = client.send_text(oops_id, b"wrong chat", at(12)).unwrap();
    script.push(format!(
        "text_to_unsend = client.send_text({oops_hex}, \"wrong chat\", t0 + 12 min)"
    ));
    frames.push(("text_to_unsend".to_string(), oops.as_bytes().to_vec()));
    let (delete_id, delete_hex) = draw(&mut rng);
    let delete = client.unsend(oops_id, delete_id, at(13)).unwrap();
    script.push(format!(
        "delete = client.unsend(text_to_unsend's id, {delete_hex}, t0 + 13 min)"
    ));
    frames.push(("delete".to_string(), delete.as_bytes().to_vec()));
    // The delete overtakes its target.
    let _ = counselor
        .handle_incoming(delete.as_bytes(), at(14))
        .unwrap();
    script.push("counselor.handle_incoming(delete, t0 + 14 min) (pending delete)".to_string());
    let suppressed = counselor.handle_incoming(oops.as_bytes(), at(15)).unwrap();
    assert_eq!(suppressed, Incoming::Suppressed { id: oops_id });
    script.push("counselor.handle_incoming(text_to_unsend, t0 + 15 min) = Suppressed".to_string());

    // Typed content (policy.md §9.1-9.3): an attachment, a screenshot notice, a referral and
    // its answer, and the two steps of a verification by code (fixed bytes: this layer
    // carries them without interpreting them).
    let pointer = AttachmentPointer::from_parts(
        BlobId::from_bytes([0xb1; 16]),
        AttachmentKey::from_slice(&[0x4b; 32]).unwrap(),
        CiphertextDigest::from_bytes([0xd1; 32]),
        48_000,
        ContentType::VoiceNote,
        Some(Duration::from_millis(3_000)),
    )
    .unwrap();
    let (attachment_id, attachment_hex) = draw(&mut rng);
    let attachment = client
        .send_content(attachment_id, &UserContent::Attachment(pointer), at(16))
        .unwrap();
    script.push(format!(
        "attachment = client.send_content({attachment_hex}, Attachment(voice note: blob id b1*16, key 4b*32, \
         digest d1*32, 48000 bytes, 3000 ms), t0 + 16 min)"
    ));
    frames.push(("attachment".to_string(), attachment.as_bytes().to_vec()));
    let _ = counselor
        .handle_incoming(attachment.as_bytes(), at(16))
        .unwrap();
    script.push("counselor.handle_incoming(attachment, t0 + 16 min)".to_string());

    let (notice_id, notice_hex) = draw(&mut rng);
    let notice = counselor
        .send_content(notice_id, &UserContent::ScreenshotNotice, at(17))
        .unwrap();
    script.push(format!(
        "screenshot_notice = counselor.send_content({notice_hex}, ScreenshotNotice, t0 + 17 min)"
    ));
    frames.push(("screenshot_notice".to_string(), notice.as_bytes().to_vec()));
    let _ = client.handle_incoming(notice.as_bytes(), at(17)).unwrap();
    script.push("client.handle_incoming(screenshot_notice, t0 + 17 min)".to_string());

    let (referral_id, referral_hex) = draw(&mut rng);
    let referral = counselor
        .send_content(
            referral_id,
            &UserContent::Referral(Referral {
                urgency: Urgency::Urgent,
                party: vec![0xce; 40],
                note: MessageText::new(b"They can talk tonight.".to_vec()),
            }),
            at(18),
        )
        .unwrap();
    script.push(format!(
        "referral = counselor.send_content({referral_hex}, Referral(Urgent, party ce*40, \
         note \"They can talk tonight.\"), t0 + 18 min)"
    ));
    frames.push(("referral".to_string(), referral.as_bytes().to_vec()));
    let _ = client.handle_incoming(referral.as_bytes(), at(18)).unwrap();
    script.push("client.handle_incoming(referral, t0 + 18 min)".to_string());

    let (answer_id, answer_hex) = draw(&mut rng);
    let answer = client
        .answer_referral(
            ReferralAnswer {
                referral: referral_id,
                accepted: true,
            },
            answer_id,
            at(19),
        )
        .unwrap();
    script.push(format!(
        "referral_answer = client.answer_referral(referral's id accepted, {answer_hex}, t0 + 19 min)"
    ));
    frames.push(("referral_answer".to_string(), answer.as_bytes().to_vec()));
    let answered = counselor
        .handle_incoming(answer.as_bytes(), at(19))
        .unwrap();
    assert!(matches!(answered, Incoming::ReferralAnswer(a) if a.accepted));

    let (exchange_id, exchange_hex) = draw(&mut rng);
    let exchange = client
        .code_step(CodeStep::Exchange([0x41; 33]), exchange_id, at(19))
        .unwrap();
    script.push(format!(
        "code_exchange = client.code_step(Exchange(41*33), {exchange_hex}, t0 + 19 min)"
    ));
    frames.push(("code_exchange".to_string(), exchange.as_bytes().to_vec()));
    let (confirm_id, confirm_hex) = draw(&mut rng);
    let confirm = counselor
        .code_step(
            CodeStep::Confirm(Zeroizing::new([0xc0; 32])),
            confirm_id,
            at(19),
        )
        .unwrap();
    script.push(format!(
        "code_confirm = counselor.code_step(Confirm(c0*32), {confirm_hex}, t0 + 19 min)"
    ));
    frames.push(("code_confirm".to_string(), confirm.as_bytes().to_vec()));
    let _ = counselor
        .handle_incoming(exchange.as_bytes(), at(19))
        .unwrap();
    let _ = client.handle_incoming(confirm.as_bytes(), at(19)).unwrap();
    script.push(
        "counselor.handle_incoming(code_exchange, t0 + 19 min); client.handle_incoming(code_confirm, t0 + 19 min)"
            .to_string(),
    );

    drain("client", &mut client, &mut events);
    drain("counselor", &mut counselor, &mut events);
    script.push(
        "client.poll_event() until None, then counselor.poll_event() until None (events)"
            .to_string(),
    );
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

    script.push(
        "states client_open = client.to_bytes(), counselor_open = counselor.to_bytes()".to_string(),
    );

    let (close_id, close_hex) = draw(&mut rng);
    let (close, _erase) = client.close(close_id, at(20)).unwrap();
    script.push(format!("close = client.close({close_hex}, t0 + 20 min)"));
    frames.push(("close".to_string(), close.as_bytes().to_vec()));
    let _ = counselor.handle_incoming(close.as_bytes(), at(21)).unwrap();
    script.push("counselor.handle_incoming(close, t0 + 21 min)".to_string());
    client.handle_timeout(at(60 * 24 * 31));
    counselor.handle_timeout(at(60 * 24 * 31));
    script.push(
        "client.handle_timeout(t0 + 44640 min); counselor.handle_timeout(t0 + 44640 min) (31 days)"
            .to_string(),
    );
    drain("client", &mut client, &mut events);
    drain("counselor", &mut counselor, &mut events);
    script.push(
        "client.poll_event() until None, then counselor.poll_event() until None (events)"
            .to_string(),
    );
    states.push((
        "client_closed_after_31_days".to_string(),
        client.to_bytes().unwrap().to_vec(),
    ));
    states.push((
        "counselor_closed_after_31_days".to_string(),
        counselor.to_bytes().unwrap().to_vec(),
    ));
    script.push(
        "states client_closed_after_31_days = client.to_bytes(), counselor_closed_after_31_days = counselor.to_bytes()"
            .to_string(),
    );
    let fresh = ConversationPolicy::new(
        Side::Initiator,
        OrgBounds::UNRESTRICTED,
        RetentionPolicy::Off,
    );
    script.push(
        "state fresh_unrestricted = ConversationPolicy::new(Initiator, OrgBounds::UNRESTRICTED, Off).to_bytes()"
            .to_string(),
    );
    states.push((
        "fresh_unrestricted".to_string(),
        fresh.to_bytes().unwrap().to_vec(),
    ));
    Scenario {
        frames,
        events,
        states,
        script,
    }
}
