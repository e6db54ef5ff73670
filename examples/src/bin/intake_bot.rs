//! An intake bot greets a client, asks what they need, and hands the client over to a
//! counselor with a referral: an end-to-end encrypted message carrying the counselor's
//! certified bundle, which the client's app validates and shows with the counselor's certified
//! role. The client accepts and chooses what the counselor sees (here, a one-line summary in
//! the client's own words); the bot learns only "accepted" and closes its conversation. Every
//! party sees the others' certified roles, so the client knows the bot is a bot and the
//! counselor is verified.
//!
//! Run: `cargo run -p confide-examples --bin intake_bot [seed]`.
#![allow(clippy::print_stdout)]

use chacha20::ChaCha20Rng;
use confide::{Address, EndpointConfig, Event, Role, StorageKey, Urgency};
use confide_crypto::{Duration, Timestamp};
use confide_examples::{CertificateIssuer, ExampleError, Participant, Relay, Stage};
use confide_store::SqliteStore;
use rand_core::SeedableRng;

const CLIENT: usize = 0;
const BOT: usize = 1;
const COUNSELOR: usize = 2;
const NAMES: [&str; 3] = ["client   ", "intake bot", "counselor"];

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Client => "client",
        Role::Counselor => "verified counselor",
        Role::Bot => "automated bot",
        _ => "unknown role",
    }
}

/// Runs the clock and returns (participant, event) pairs, printing messages.
fn run(stage: &mut Stage, secs: u64) -> Result<Vec<(usize, Event)>, ExampleError> {
    let until = stage.now.saturating_add(Duration::from_secs(secs));
    let mut seen = Vec::new();
    let start = stage.start;
    stage.run_until(until, &mut |at, i, e| {
        let t = at.saturating_duration_since(start).as_millis() / 1000;
        let name = NAMES.get(i).copied().unwrap_or("?");
        match e {
            Event::Message {
                text, sender_role, ..
            } => println!(
                "[{:>3}s] {name} | from {}: \"{}\"",
                t,
                role_name(*sender_role),
                String::from_utf8_lossy(text.as_bytes())
            ),
            Event::ConversationClosed { .. } => {
                println!("[{t:>3}s] {name} | conversation closed, keys erased");
            }
            _ => {}
        }
        seen.push((i, e.clone()));
    })?;
    Ok(seen)
}

fn say(
    stage: &mut Stage,
    i: usize,
    conv: confide::ConversationId,
    text: &str,
) -> Result<(), ExampleError> {
    let t = stage.now.saturating_duration_since(stage.start).as_millis() / 1000;
    println!(
        "[{t:>3}s] {} | sends: \"{text}\"",
        NAMES.get(i).copied().unwrap_or("?")
    );
    let (r, _) = stage.command(i, |e, rng, now| e.send(rng, now, conv, text.as_bytes()))?;
    r?;
    Ok(())
}

fn texts_for(
    events: &[(usize, Event)],
    who: usize,
) -> Vec<(confide::ConversationId, String, Role)> {
    events
        .iter()
        .filter(|(i, _)| *i == who)
        .filter_map(|(_, e)| match e {
            Event::Message {
                conversation,
                text,
                sender_role,
                ..
            } => Some((
                *conversation,
                String::from_utf8_lossy(text.as_bytes()).into_owned(),
                *sender_role,
            )),
            _ => None,
        })
        .collect()
}

fn main() -> Result<(), ExampleError> {
    let seed: u64 = match std::env::args().nth(1).as_deref() {
        Some("--help" | "-h") => {
            println!("usage: intake_bot [seed]");
            return Ok(());
        }
        Some(s) => s.parse()?,
        None => 7,
    };
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let start = Timestamp::from_millis(1_767_000_000_000);
    let issuer = CertificateIssuer::new(&mut rng, start)?;
    let config = EndpointConfig::default();
    let client = issuer.register(&mut rng, start, "anon-19c2", Role::Client, None, config)?;
    let bot = issuer.register(
        &mut rng,
        start,
        "intake",
        Role::Bot,
        Some("Intake assistant"),
        config,
    )?;
    let counselor = issuer.register(
        &mut rng,
        start,
        "counselor-17",
        Role::Counselor,
        Some("Dr. Rivera"),
        config,
    )?;
    let mut stage = Stage {
        relay: Relay::new(seed, Relay::lossy_link()),
        participants: vec![
            Participant::new(
                "client",
                client,
                StorageKey::new([1; 32]),
                SqliteStore::open_in_memory(b"client")?,
            ),
            Participant::new(
                "bot",
                bot,
                StorageKey::new([2; 32]),
                SqliteStore::open_in_memory(b"bot")?,
            ),
            Participant::new(
                "counselor",
                counselor,
                StorageKey::new([3; 32]),
                SqliteStore::open_in_memory(b"counselor")?,
            ),
        ],
        rng,
        now: start,
        start,
    };
    for i in [CLIENT, BOT, COUNSELOR] {
        let _ = stage.command(i, |_, _, _| ())?;
    }
    println!("Confide intake bot hand-over (seed {seed})\n");

    // The client contacts the service's intake address.
    let intake = Address::new(b"intake")?;
    let (conv, _) = stage.start_conversation_with(CLIENT, &intake)?;
    say(&mut stage, CLIENT, conv, "hello? is anyone there")?;
    let events = run(&mut stage, 5)?;

    // The bot answers whatever reached it.
    let (bot_conv, _, role) = texts_for(&events, BOT)
        .into_iter()
        .next()
        .ok_or("the bot got nothing")?;
    println!(
        "          intake bot | (sees a certified {})",
        role_name(role)
    );
    say(
        &mut stage,
        BOT,
        bot_conv,
        "Hi, I'm the intake assistant, an automated bot. In a few words, what would you like help with?",
    )?;
    let events = run(&mut stage, 5)?;
    let (_, _, role) = texts_for(&events, CLIENT)
        .into_iter()
        .next()
        .ok_or("no greeting")?;
    println!(
        "          client     | (the app shows: this is an {})",
        role_name(role)
    );
    say(
        &mut stage,
        CLIENT,
        conv,
        "I've been having panic attacks at work",
    )?;
    let events = run(&mut stage, 5)?;
    let (_, need, _) = texts_for(&events, BOT)
        .into_iter()
        .next()
        .ok_or("no answer")?;

    // Hand-over by referral: the bot fetches a counselor's certified bundle from the
    // directory and refers the client to it. No text is parsed, and nothing of the client's
    // words reaches the counselor unless the client chooses.
    let counselor_address = Address::new(b"counselor-17")?;
    let party = stage
        .relay
        .fetch_bundle(&counselor_address)?
        .ok_or("the counselor published no bundle")?;
    println!("          intake bot | refers the client to a counselor");
    let (r, _) = stage.command(BOT, |e, rng, now| {
        e.refer(
            rng,
            now,
            bot_conv,
            &party,
            Urgency::Routine,
            b"A counselor can continue with you now. You choose what they see of this chat.",
        )
    })?;
    r?;
    let events = run(&mut stage, 5)?;
    let (referral_id, referral) =
        confide_examples::referral_received(&events, CLIENT).ok_or("no referral arrived")?;
    println!(
        "          client     | (the app shows a referral to {}, a certified {}: \"{}\")",
        referral.display_name.as_deref().unwrap_or("someone"),
        role_name(referral.role),
        String::from_utf8_lossy(referral.note.as_bytes())
    );
    println!("          client     | accepts, and shares one line in its own words");
    let summary = format!("From intake, in my words: {need}");
    let (started, _) = stage.command(CLIENT, |e, rng, now| {
        e.accept_referral(
            rng,
            now,
            conv,
            referral_id,
            &referral,
            Some(summary.as_bytes()),
        )
    })?;
    let conv2 = started?.conversation;
    let events = run(&mut stage, 5)?;
    if events
        .iter()
        .any(|(i, e)| *i == BOT && matches!(e, Event::ReferralAnswered { accepted: true, .. }))
    {
        println!(
            "          intake bot | (learns only: accepted) closes its chat; nothing from it is kept"
        );
        let (r, _) = stage.command(BOT, |e, rng, now| e.close(rng, now, bot_conv))?;
        r?;
    }
    say(
        &mut stage,
        CLIENT,
        conv2,
        "Hi, the intake bot sent me here.",
    )?;
    let events = run(&mut stage, 5)?;
    let (kconv, _, role) = texts_for(&events, COUNSELOR)
        .into_iter()
        .find(|(_, _, r)| *r == Role::Client)
        .ok_or("the counselor got nothing from the client")?;
    println!(
        "          counselor  | (this one is from a certified {})",
        role_name(role)
    );
    say(
        &mut stage,
        COUNSELOR,
        kconv,
        "Hi, I'm Dr. Rivera. I read the note. Let's talk about what happens at work.",
    )?;
    let _ = run(&mut stage, 5)?;
    let peer = stage
        .get(CLIENT)?
        .endpoint
        .peer_role(conv2)
        .map_or("unknown", role_name);
    println!("\nThe client's app shows the new conversation's peer as: {peer}");
    println!(
        "The relay saw {} frames and never a sender.",
        stage.relay.observed().len()
    );
    Ok(())
}
