//! A complete counseling session through Confide, printed as a transcript.
//!
//! An anonymous client finds a counselor's prekey bundle at a small in-process relay, starts
//! a post-quantum hybrid session while the counselor is offline, and they talk over a lossy
//! simulated network. They compare safety numbers, set a disappearing-message timer, unsend a
//! message, watch messages expire, and the counselor closes the conversation. On the way they
//! verify each other with a short code read out on the phone, the client sends a voice note
//! (encrypted under its own key, stored as a padded blob at the relay, deleted from it when the
//! message expires), and the counselor refers the
//! client, urgently, to a crisis line, which the client accepts. Each app keeps
//! its transcript in the encrypted message store of its database and erases a message from it
//! (key, text, and every old copy in the write-ahead log) as soon as it expires or is unsent.
//! At the end the relay reports what it could and could not see.
//!
//! Run: `cargo run -p confide-examples --bin counseling_session [seed]` (default seed 2026;
//! `--os-rng` draws a fresh seed from the operating system).
//!
//! **Over the real relay.** By default the relay is simulated in-process. With
//! `--relay IP:PORT` the same script runs over the reference relay (`confide-relay`) started
//! separately (`cargo run -p confide-examples --bin relay`, which listens on
//! 127.0.0.1:7878; `--relay ws://IP:PORT/` reaches a relay's WebSocket listener); with
//! `--start-relay` the example starts the reference relay itself, in process on 127.0.0.1
//! (a free port, its SQLite database in a temporary directory). Against a relay started
//! separately each run names its mailboxes with a random tag (`anon-7f3a-<tag>`), so one
//! relay serves run after run. Each app then creates its mailbox under its own Ed25519 owner key, registers its
//! delivery-token verifier, uploads its prekey bundles to the relay's directory, receives
//! frames on its authenticated owner connection and confirms each only after persisting the
//! state that holds it, and sends on an anonymous connection, waiting for the relay receipt;
//! the voice note's blob is uploaded to, downloaded from and deleted at the relay's blob
//! store. The apps still run on the virtual clock (the ten minutes of the timer do not take
//! ten minutes): only frames, bundles and blobs go through the relay, over a real network
//! without simulated loss. The certificates come from the example's own issuer, not from
//! the relay's (the relay never sees them: they are inside the sealed envelopes).
#![allow(clippy::print_stdout)]

use chacha20::ChaCha20Rng;
use confide::{
    ConversationId, EndpointConfig, Event, RetentionPolicy, Role, ShortCode, StorageKey, Urgency,
};
use confide_attachment::{AttachmentPointer, BlobId, ContentType};
use confide_crypto::{Duration, Timestamp};
use confide_examples::{
    CertificateIssuer, ExampleError, Participant, Relay, Stage, fetch_attachment,
};
use confide_relay::client::RelayAddress;
use confide_store::{MAX_PAGE_LEN, SqliteStore, Transcript};
use rand_core::{Rng, SeedableRng};

const CLIENT: usize = 0;
const COUNSELOR: usize = 1;
const CRISIS: usize = 2;

const USAGE: &str = "usage: counseling_session [seed | --os-rng] [--relay IP:PORT | --start-relay]
  default: seed 2026, over an in-process simulated relay
  --relay IP:PORT  over the reference relay started separately (`relay`: 127.0.0.1:7878;
                   ws://IP:PORT/ for its WebSocket listener)
  --start-relay    over the reference relay, started in this process on 127.0.0.1";

/// Which relay the apps use.
enum RelayChoice {
    /// The in-process relay over the simulated lossy network (the default).
    Simulated,
    /// The reference relay at this address, started separately.
    At(RelayAddress),
    /// The reference relay, started in this process.
    Start,
}

/// The seed and the relay, from the command line.
fn args() -> Result<(u64, RelayChoice), ExampleError> {
    let mut seed = 2026;
    let mut relay = RelayChoice::Simulated;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            "--os-rng" => {
                let mut bytes = [0u8; 8];
                getrandom::fill(&mut bytes).map_err(|e| format!("OS random source: {e}"))?;
                seed = u64::from_le_bytes(bytes);
            }
            "--relay" => {
                let at = args.next().ok_or(USAGE)?;
                relay = RelayChoice::At(at.parse().map_err(|_| {
                    format!("--relay {at:?}: expected IP:PORT or ws://IP:PORT/\n{USAGE}")
                })?);
            }
            "--start-relay" => relay = RelayChoice::Start,
            s if s.starts_with('-') => return Err(format!("unknown flag {s}\n{USAGE}").into()),
            s => seed = s.parse()?,
        }
    }
    Ok((seed, relay))
}

fn who(i: usize) -> &'static str {
    match i {
        CLIENT => "client   ",
        COUNSELOR => "counselor",
        _ => "crisis   ",
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Client => "client",
        Role::Counselor => "verified counselor",
        Role::Bot => "bot",
        _ => "unknown role",
    }
}

/// Prints one event as a transcript line.
fn show(stage_clock: &str, i: usize, e: &Event) {
    let w = who(i);
    match e {
        Event::ConversationStarted { peer_role, .. } => {
            println!(
                "[{stage_clock}] {w} | new conversation; the peer is certified as: {}",
                role_name(*peer_role)
            );
        }
        Event::Message {
            text,
            sender_role,
            expires_at,
            ..
        } => {
            let timer = if expires_at.is_some() {
                " (disappearing)"
            } else {
                ""
            };
            println!(
                "[{stage_clock}] {w} | received from {}: \"{}\"{timer}",
                role_name(*sender_role),
                String::from_utf8_lossy(text.as_bytes())
            );
        }
        Event::Delivered { .. } => {
            println!("[{stage_clock}] {w} |   delivered (authenticated end-to-end acknowledgement)")
        }
        Event::Read { ids, .. } => println!(
            "[{stage_clock}] {w} |   {} message(s) read by the peer",
            ids.len()
        ),
        Event::TimerChanged { effective, .. } => {
            let d = effective.duration().map_or("off".to_owned(), |d| {
                format!("{} minutes", d.as_millis() / 60_000)
            });
            println!("[{stage_clock}] {w} | disappearing-message timer is now {d}");
        }
        Event::Expired { .. } => println!(
            "[{stage_clock}] {w} | a message expired: erased from the transcript (its key is gone from the database)"
        ),
        Event::Deleted { by, .. } => println!(
            "[{stage_clock}] {w} | a message was unsent by {by}: erased from the transcript (its key is gone from the database)"
        ),
        Event::ConversationClosed { by, .. } => {
            println!("[{stage_clock}] {w} | conversation closed by {by}; session keys erased")
        }
        Event::DeliveryFailed { .. } => println!("[{stage_clock}] {w} |   delivery failed"),
        Event::Attachment {
            pointer,
            sender_role,
            ..
        } => println!(
            "[{stage_clock}] {w} | received from {}: a voice note of {:.1} s ({} encrypted bytes at the relay)",
            role_name(*sender_role),
            pointer
                .duration()
                .map_or(0.0, |d| d.as_millis() as f64 / 1000.0),
            pointer.ciphertext_len()
        ),
        Event::CodeVerified { .. } => println!(
            "[{stage_clock}] {w} | verified by code: the other side knew the code and holds the keys this app shows"
        ),
        Event::CodeMismatch { attempts_left, .. } => println!(
            "[{stage_clock}] {w} | the codes did NOT match: do not continue ({attempts_left} attempts left)"
        ),
        Event::Referral { referral, .. } => println!(
            "[{stage_clock}] {w} | {}referral to {} ({}): \"{}\"",
            if referral.urgency == Urgency::Urgent {
                "URGENT "
            } else {
                ""
            },
            referral
                .display_name
                .as_deref()
                .unwrap_or("an unnamed party"),
            role_name(referral.role),
            String::from_utf8_lossy(referral.note.as_bytes())
        ),
        Event::ReferralRefused { reason, .. } => {
            println!("[{stage_clock}] {w} | a referral was refused: {reason}")
        }
        Event::ReferralAnswered { accepted, .. } => println!(
            "[{stage_clock}] {w} | the client {} the referral (nothing else is shared back)",
            if *accepted { "accepted" } else { "declined" }
        ),
        Event::IdentityChanged { .. } => {
            println!("[{stage_clock}] {w} | WARNING: the peer's identity key changed")
        }
        _ => {}
    }
}

/// Runs the clock for `minutes`, printing events; returns them.
fn run(stage: &mut Stage, minutes: u64) -> Result<Vec<(usize, Event)>, ExampleError> {
    let until = stage.now.saturating_add(Duration::from_mins(minutes));
    let start = stage.start;
    let mut seen = Vec::new();
    stage.run_until(until, &mut |at, i, e| {
        let s = at.saturating_duration_since(start).as_millis() / 1000;
        show(
            &format!("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60),
            i,
            e,
        );
        seen.push((i, e.clone()));
    })?;
    Ok(seen)
}

/// Ids of the messages participant `i` received.
fn received_ids(events: &[(usize, Event)], i: usize) -> Vec<confide::MessageId> {
    events
        .iter()
        .filter(|(j, _)| *j == i)
        .filter_map(|(_, e)| match e {
            Event::Message { id, .. } => Some(*id),
            _ => None,
        })
        .collect()
}

fn say(
    stage: &mut Stage,
    i: usize,
    conv: ConversationId,
    text: &str,
) -> Result<confide::MessageId, ExampleError> {
    let clock = stage.clock(stage.now);
    println!("[{clock}] {} | sends: \"{text}\"", who(i));
    let (id, events) = stage.command(i, |e, rng, now| e.send(rng, now, conv, text.as_bytes()))?;
    for e in &events {
        show(&clock, i, e);
    }
    let id = id?;
    let p = stage.participants.get_mut(i).ok_or("no such participant")?;
    p.record_sent(&mut stage.rng, stage.now, conv, id, text.as_bytes())?;
    Ok(id)
}

fn main() -> Result<(), ExampleError> {
    let (seed, relay_choice) = args()?;
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let start = Timestamp::from_millis(1_767_000_000_000);
    println!("Confide counseling session (seed {seed})\n");

    // A relay started separately may outlive this run and serve the next one: there each run
    // gets mailboxes of its own, named with a random tag (the same seed makes the same frames,
    // which a relay that delivered them before would take as duplicates).
    let tag = match relay_choice {
        RelayChoice::At(_) => {
            let mut bytes = [0u8; 4];
            getrandom::fill(&mut bytes).map_err(|e| format!("OS random source: {e}"))?;
            Some(hex::encode(bytes))
        }
        RelayChoice::Simulated | RelayChoice::Start => None,
    };
    let name = |base: &str| {
        tag.as_ref()
            .map_or(base.to_owned(), |t| format!("{base}-{t}"))
    };
    let issuer = CertificateIssuer::new(&mut rng, start)?;
    let client = issuer.register(
        &mut rng,
        start,
        &name("anon-7f3a"),
        Role::Client,
        None,
        EndpointConfig::default(),
    )?;
    let counselor = issuer.register(
        &mut rng,
        start,
        &name("counselor-17"),
        Role::Counselor,
        Some("Dr. Rivera"),
        EndpointConfig::default(),
    )?;
    let crisis = issuer.register(
        &mut rng,
        start,
        &name("crisis-line"),
        Role::Counselor,
        Some("City Crisis Line"),
        EndpointConfig::default(),
    )?;
    let mut key = [0u8; 32];
    rng.fill_bytes(&mut key);
    let client_key = StorageKey::new(key);
    rng.fill_bytes(&mut key);
    let counselor_key = StorageKey::new(key);
    rng.fill_bytes(&mut key);
    let crisis_key = StorageKey::new(key);
    // Each app persists into its own SQLite database file (the default store), fresh per run,
    // and keeps its transcript in the same file (the encrypted message store).
    let dir = std::env::temp_dir().join(format!("confide-counseling-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let database =
        |name: &str, key: &StorageKey| -> Result<(SqliteStore, Transcript), ExampleError> {
            let path = dir.join(format!("{name}.db"));
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
            }
            let store = SqliteStore::open(&path, name.as_bytes())?;
            Ok((store, Transcript::open(&path, name.as_bytes(), key)?))
        };
    let (client_db, client_transcript) = database("client", &client_key)?;
    let (counselor_db, counselor_transcript) = database("counselor", &counselor_key)?;
    let (crisis_db, crisis_transcript) = database("crisis", &crisis_key)?;
    let relay = match relay_choice {
        RelayChoice::Simulated => Relay::new(seed, Relay::lossy_link()),
        RelayChoice::At(address) => Relay::connect(address)?,
        RelayChoice::Start => Relay::start_local(&dir)?,
    };
    if let Some(address) = relay.real_address() {
        println!(
            "(over the reference relay at {address}; the apps run on a virtual clock, so the times below are virtual)\n"
        );
    }
    let mut stage = Stage {
        relay,
        participants: vec![
            Participant::new("client", client, client_key, client_db)
                .with_transcript(client_transcript),
            Participant::new("counselor", counselor, counselor_key, counselor_db)
                .with_transcript(counselor_transcript),
            Participant::new("crisis", crisis, crisis_key, crisis_db)
                .with_transcript(crisis_transcript),
        ],
        rng,
        now: start,
        start,
    };
    // Both apps store their first state; the counselor uploads its prekey bundles.
    for i in [CLIENT, COUNSELOR, CRISIS] {
        let _ = stage.command(i, |_, _, _| ())?;
    }
    let counselor_address = stage.get(COUNSELOR)?.endpoint.address().clone();
    println!(
        "[0:00:00] counselor | published prekey bundles to the relay's directory, then went offline"
    );
    stage.get_mut(COUNSELOR)?.online = false;

    // The client writes first, to a counselor who is not there.
    let (conv, _) = stage.start_conversation_with(CLIENT, &counselor_address)?;
    println!(
        "[0:00:00] client    | fetched a bundle, verified its signatures, started a hybrid X25519 + ML-KEM-768 session"
    );
    say(
        &mut stage,
        CLIENT,
        conv,
        "Hi. I don't really know where to start.",
    )?;
    say(
        &mut stage,
        CLIENT,
        conv,
        "Things have been hard at home lately.",
    )?;
    let mut history = run(&mut stage, 90)?;

    println!(
        "[{}] counselor | comes online: the app starts from its database ({} records)",
        stage.clock(stage.now),
        stage.get(COUNSELOR)?.store.len()?
    );
    stage.restart(COUNSELOR)?;
    stage.get_mut(COUNSELOR)?.online = true;
    let _ = stage.command(COUNSELOR, |e, rng, now| {
        e.handle_input(rng, confide::Input::Timeout { now });
    })?;
    history.extend(run(&mut stage, 1)?);
    let client_address = stage.get(CLIENT)?.endpoint.address().clone();
    let kconv = stage
        .get(COUNSELOR)?
        .endpoint
        .conversation_with(&client_address)
        .ok_or("the counselor has no conversation")?;
    say(
        &mut stage,
        COUNSELOR,
        kconv,
        "Hi, I'm Dr. Rivera. I'm glad you wrote. Take your time.",
    )?;
    run(&mut stage, 1)?;
    let shown = received_ids(&history, COUNSELOR);
    println!(
        "[{}] counselor | has read the {} messages",
        stage.clock(stage.now),
        shown.len()
    );
    let (read, _) = stage.command(COUNSELOR, |e, rng, now| {
        e.mark_read(rng, now, kconv, &shown)
    })?;
    read?;
    run(&mut stage, 1)?;

    // Safety numbers: both apps show the same number; they compare it by voice.
    let a = stage
        .get(CLIENT)?
        .endpoint
        .safety_number(conv)
        .ok_or("no safety number")?;
    let b = stage
        .get(COUNSELOR)?
        .endpoint
        .safety_number(kconv)
        .ok_or("no safety number")?;
    println!(
        "[{}] both      | safety number (client):    {}",
        stage.clock(stage.now),
        a.display_groups()
    );
    println!(
        "[{}] both      | safety number (counselor): {}",
        stage.clock(stage.now),
        b.display_groups()
    );
    println!(
        "[{}] both      | the numbers {}",
        stage.clock(stage.now),
        if a.ct_equals(&b) {
            "match: nobody is in the middle"
        } else {
            "DIFFER: stop here"
        }
    );

    // A second check, by phone: the counselor's app shows a one-time code, the counselor reads
    // it out, and both apps run a password-authenticated exchange bound to their keys.
    let code = ShortCode::generate(&mut stage.rng);
    let clock = stage.clock(stage.now);
    println!("[{clock}] counselor | reads out the one-time code {code} on a phone call");
    let (r, _) = stage.command(COUNSELOR, |e, rng, now| {
        e.enter_code(rng, now, kconv, &code)
    })?;
    r?;
    println!("[{clock}] client    | types the code it heard");
    let typed = ShortCode::parse(&code.to_string())?;
    let (r, _) = stage.command(CLIENT, |e, rng, now| e.enter_code(rng, now, conv, &typed))?;
    r?;
    run(&mut stage, 1)?;

    // The client turns on disappearing messages.
    let clock = stage.clock(stage.now);
    println!("[{clock}] client    | turns on disappearing messages: 10 minutes after sending");
    let (r, _) = stage.command(CLIENT, |e, rng, now| {
        e.set_timer(
            rng,
            now,
            conv,
            RetentionPolicy::after_send(Duration::from_mins(10)),
        )
    })?;
    r?;
    run(&mut stage, 1)?;

    // A voice note: the client's app encrypts the recording under a fresh key in fixed-size
    // chunks, uploads the padded blob, then sends the pointer (blob id, key, digest, length,
    // duration) inside the conversation. (Synthetic audio: a 3.2 s tone at 16 kHz, 8 bit.)
    let audio: Vec<u8> = (0..51_200u32)
        .map(|i| 128u8.wrapping_add(((i % 36) as u8).wrapping_mul(7)))
        .collect();
    let (blob, encrypted) = confide_attachment::encrypt(&mut stage.rng, &audio)?;
    let blob_id = BlobId::random(&mut stage.rng);
    let client_address = stage.get(CLIENT)?.endpoint.address().clone();
    stage.relay.put_blob(
        &client_address,
        &blob_id,
        encrypted.delete_token().hash(),
        blob,
    )?;
    let pointer = AttachmentPointer::new(
        blob_id,
        &encrypted,
        ContentType::VoiceNote,
        Some(Duration::from_millis(3_200)),
    )?;
    let clock = stage.clock(stage.now);
    println!(
        "[{clock}] client    | records a 3.2 s voice note: {} audio bytes, uploaded as a {}-byte encrypted blob",
        audio.len(),
        pointer.ciphertext_len()
    );
    let (sent, _) = stage.command(CLIENT, |e, rng, now| {
        e.send_attachment(rng, now, conv, &pointer)
    })?;
    let voice_id = sent?;
    stage
        .get_mut(CLIENT)?
        .attachments
        .insert(voice_id, pointer.clone());
    let events = run(&mut stage, 1)?;
    let received = events
        .iter()
        .find_map(|(i, e)| match e {
            Event::Attachment { pointer, .. } if *i == COUNSELOR => Some(pointer.clone()),
            _ => None,
        })
        .ok_or("the voice note did not arrive")?;
    let played = fetch_attachment(&stage.relay, &received)?.ok_or("the blob is gone")?;
    println!(
        "[{}] counselor | fetches and decrypts the blob (every chunk and the digest check out): {} audio bytes, {}",
        stage.clock(stage.now),
        played.len(),
        if played == audio {
            "the client's recording"
        } else {
            "NOT the recording"
        }
    );
    let regret = say(
        &mut stage,
        CLIENT,
        conv,
        "My brother's name is Sam, he's the one who",
    )?;
    run(&mut stage, 1)?;
    let clock = stage.clock(stage.now);
    println!("[{clock}] client    | unsends that message");
    let (r, events) = stage.command(CLIENT, |e, rng, now| e.unsend(rng, now, conv, regret))?;
    r?;
    for e in &events {
        show(&clock, CLIENT, e);
    }
    run(&mut stage, 1)?;
    say(
        &mut stage,
        CLIENT,
        conv,
        "Sorry. I'd rather not use names. Someone at home is making me feel unsafe.",
    )?;
    run(&mut stage, 1)?;
    say(
        &mut stage,
        COUNSELOR,
        kconv,
        "Thank you for telling me. You're safe to talk here. Are you safe right now?",
    )?;
    run(&mut stage, 1)?;
    say(
        &mut stage,
        CLIENT,
        conv,
        "Yes, for tonight. But I can't sleep, and I'm scared.",
    )?;
    run(&mut stage, 1)?;

    // The counselor refers the client to a crisis line, marked urgent. The referral carries
    // the crisis line's certified bundle from the directory; the client's app checks its
    // certificate before showing it, and the client decides.
    let crisis_address = stage.get(CRISIS)?.endpoint.address().clone();
    let party = stage
        .relay
        .fetch_bundle(&crisis_address)?
        .ok_or("the crisis line published no bundle")?;
    let clock = stage.clock(stage.now);
    println!("[{clock}] counselor | refers the client to the crisis line, marked urgent");
    let (r, _) = stage.command(COUNSELOR, |e, rng, now| {
        e.refer(
            rng,
            now,
            kconv,
            &party,
            Urgency::Urgent,
            b"They are there all night. You can talk to them now, and to me tomorrow.",
        )
    })?;
    r?;
    let events = run(&mut stage, 1)?;
    let (referral_id, referral) = confide_examples::referral_received(&events, CLIENT)
        .ok_or("the referral did not arrive")?;
    let clock = stage.clock(stage.now);
    println!("[{clock}] client    | accepts, and chooses to send a short summary along");
    let (started, _) = stage.command(CLIENT, |e, rng, now| {
        e.accept_referral(
            rng,
            now,
            conv,
            referral_id,
            &referral,
            Some(b"A counselor sent me. I feel unsafe at home and can't sleep."),
        )
    })?;
    let crisis_conv = started?.conversation;
    println!(
        "[{clock}] client    | new conversation with the crisis line, {}",
        match stage.get(CLIENT)?.endpoint.verification(crisis_conv) {
            Some(confide::Verification::Referral) => "verified by the counselor's referral",
            _ => "NOT verified",
        }
    );
    run(&mut stage, 1)?;
    let client_address = stage.get(CLIENT)?.endpoint.address().clone();
    let line_conv = stage
        .get(CRISIS)?
        .endpoint
        .conversation_with(&client_address)
        .ok_or("the crisis line has no conversation")?;
    say(
        &mut stage,
        CRISIS,
        line_conv,
        "Hi, this is the crisis line. Thank you for reaching out. I'm here with you.",
    )?;
    run(&mut stage, 1)?;
    say(
        &mut stage,
        COUNSELOR,
        kconv,
        "Good. Let's make a plan together, and you can write any time.",
    )?;
    println!(
        "[{}] both      | ... ten minutes pass ...",
        stage.clock(stage.now)
    );
    run(&mut stage, 12)?;

    let clock = stage.clock(stage.now);
    println!("[{clock}] counselor | closes the conversation");
    let (r, events) = stage.command(COUNSELOR, |e, rng, now| e.close(rng, now, kconv))?;
    r?;
    for e in &events {
        show(&clock, COUNSELOR, e);
    }
    run(&mut stage, 2)?;
    let (late, _) = stage.command(CLIENT, |e, rng, now| {
        e.send(rng, now, conv, b"one more thing")
    })?;
    println!(
        "[{}] client    | tries to write again: {}",
        stage.clock(stage.now),
        match late {
            Ok(_) => "sent (unexpected)".to_owned(),
            Err(e) => format!("refused ({e})"),
        }
    );

    // The voice note expired with the others: both apps erased its pointer (the only copy of
    // its key) and asked the relay to delete the blob.
    let holds = match stage.relay.blob_count() {
        Some(n) => format!("the relay holds {n} blobs"),
        None if stage.relay.has_blob(received.blob_id())? => {
            "the relay STILL holds a blob under its id".to_owned()
        }
        None => "the relay holds no blob under its id".to_owned(),
    };
    println!(
        "[{}] both      | the voice note expired: {holds}; fetching it now: {}",
        stage.clock(stage.now),
        match fetch_attachment(&stage.relay, &received)? {
            Some(_) => "STILL THERE",
            None => "gone",
        }
    );

    // What the relay saw.
    match stage.relay.real_address() {
        None => println!("\nWhat the relay could see:"),
        Some(address) => println!(
            "\nWhat the relay at {address} could see (as the apps observed it: what it receipted):"
        ),
    }
    let observed = stage.relay.observed();
    let total: usize = observed.iter().map(|o| o.size).sum();
    for i in [CLIENT, COUNSELOR] {
        let address = stage.get(i)?.endpoint.address();
        let mailbox = String::from_utf8_lossy(address.as_bytes());
        let to: Vec<_> = observed.iter().filter(|o| o.mailbox == mailbox).collect();
        let sizes: Vec<String> = to.iter().take(6).map(|o| o.size.to_string()).collect();
        println!(
            "  mailbox {mailbox:>13}: {} frames, sizes {} ...",
            to.len(),
            sizes.join(", ")
        );
    }
    match stage.relay.lost() {
        Some(lost) => println!(
            "  {} frames, {total} bytes in all; {lost} lost by the network and retransmitted",
            observed.len(),
        ),
        None => println!(
            "  {} frames, {total} bytes in all, each stored with a relay receipt (a real network,",
            observed.len(),
        ),
    }
    if stage.relay.lost().is_none() {
        println!(
            "  no simulated loss); three mailboxes, each with its owner's public key and delivery-token"
        );
        println!(
            "  verifier; which connection owned each mailbox and when it confirmed frames; the"
        );
        println!(
            "  connections' IP addresses; the voice note's padded blob (its size, when it was"
        );
        println!("  uploaded by the client's mailbox owner, fetched, and deleted)");
    }
    println!(
        "  first frame's first bytes: {}",
        hex::encode(observed.first().map(|o| o.head.clone()).unwrap_or_default())
    );
    if stage.relay.lost().is_some() {
        println!(
            "  every frame came with its mailbox's delivery token ({} refused without one): the",
            stage.relay.refused()
        );
    } else {
        println!(
            "  every frame came with its mailbox's delivery token ({} refused): the",
            stage.relay.refused()
        );
    }
    println!("  relay checks that a sender is a contact of the mailbox, not which contact");
    println!("What the relay could not see:");
    println!("  who sent any frame (the sender certificate is inside the sealed envelope),");
    println!(
        "  any text, timer, delete, read receipt or acknowledgement (all end-to-end encrypted"
    );
    println!("  and padded), nor tell acknowledgements from messages.");
    println!(
        "\nStored state: client {} records, counselor {} records in their SQLite databases, each",
        stage.get(CLIENT)?.store.len()?,
        stage.get(COUNSELOR)?.store.len()?,
    );
    println!("  encrypted under its app's storage key; a change rewrites only its own records");
    let shown = |i: usize, c: ConversationId| -> Result<usize, ExampleError> {
        let transcript = stage.get(i)?.transcript.as_ref().ok_or("no transcript")?;
        Ok(transcript
            .list(stage.now, c.as_u64(), None, MAX_PAGE_LEN)?
            .len())
    };
    println!(
        "Transcripts: the client's app shows {} messages, the counselor's {}; the unsent and the",
        shown(CLIENT, conv)?,
        shown(COUNSELOR, kconv)?,
    );
    println!(
        "  expired ones are erased from both databases (their keys deleted, the logs cleared)"
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
