//! Chat between two terminals through the reference relay (the `relay` example, or any
//! `confide-relay` whose issuer the demo service's root certifies).
//!
//! Run `relay` first, then `chat alice bob` in one terminal and `chat bob alice` in another;
//! type lines to send them. What each program does, as an app would:
//!
//! * **Persistence**: the endpoint lives in an embedded SQLite database
//!   (`confide_store::SqliteStore`, `<dir>/<name>.db`), committed at every
//!   `Event::PersistRequired`; the conversation's texts are kept in the encrypted message store
//!   of the same file (`confide_store::Transcript`). A restarted chat loads both, prints the
//!   history, and receives what arrived while it was away.
//! * **The relay**: a `confide_relay::client::RelayLink` keeps an owner connection (which
//!   receives this mailbox's frames) and a separate anonymous sending connection, reconnecting
//!   with backoff when the relay goes away. A received frame is confirmed to the relay (which
//!   then deletes it) only after the state that holds it is committed.
//! * **Registration**: on first start the chat creates its mailbox (owned by an Ed25519 key
//!   kept in `<dir>/<name>.owner`), asks the relay's issuer for an anonymous client
//!   certificate, and uploads its prekey bundles to the relay's directory; the first message
//!   to the peer starts from a bundle fetched from there.
//!
//! Demo shortcuts, each marked where it is taken: the trust root comes from a published seed
//! ([`confide_examples::demo_service`]; a real app pins its service's root key), and the
//! storage key and owner key sit in plain files (a real app keeps them in the platform
//! keystore).
//!
//! Usage: `chat <my-name> <peer-name> [--relay IP:PORT | --relay ws://IP:PORT/] [--dir DIR]`
//! (default relay 127.0.0.1:7878 over TCP; `ws://` speaks the same protocol over WebSocket;
//! directory `<temp dir>/confide-chat-demo`). Typed commands: `/safety` shows
//! the safety number, `/close` closes the conversation, `/quit` exits.
//!
//! Lines printed: `< text` for a received message, `  (delivered)` when the peer acknowledged
//! ours, `  (stored by the relay)` for each relay receipt (a frame of ours, a message or an
//! acknowledgement, durably stored), `(connected to the relay)` after each (re)connection,
//! and the stored history at start (`me: text` / `<peer>: text`).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::BufRead;
use std::path::{Path, PathBuf};

use chacha20::ChaCha20Rng;
use confide::{
    Address, ConversationId, Endpoint, EndpointConfig, Event, ExpectedIdentity, Input, Output,
    Party, StorageKey,
};
use confide_crypto::{Duration, Timestamp, identity::IdentityKeyPair, signing::SigningKey};
use confide_examples::{ExampleError, demo_service};
use confide_relay::client::{LinkConfig, RelayAddress, RelayConnection, RelayEvent, RelayLink};
use confide_relay::protocol::ErrorCode;
use confide_sealed::SenderCertificate;
use confide_store::{MAX_PAGE_LEN, NewMessage, SqliteStore, Transcript};
use rand_core::SeedableRng;
use tokio::sync::mpsc;

/// The relay used when `--relay` is not given (the `relay` example's default).
const DEFAULT_RELAY: &str = "127.0.0.1:7878";

/// A certificate that expires sooner than this is renewed at start.
///
/// Reason: the relay's client certificates last 24 hours; renewing with an hour to spare
/// keeps a chat started shortly before expiry sending under a valid certificate.
const RENEW_BEFORE: Duration = Duration::from_hours(1);

/// How long the loop sleeps when the endpoint has no deadline.
///
/// Reason: an upper bound on how late a timer set by a received message is noticed; the loop
/// also wakes on every typed line and relay event.
const IDLE_TICK: std::time::Duration = std::time::Duration::from_secs(1);

const USAGE: &str = "usage: chat <my-name> <peer-name> [--relay IP:PORT|ws://IP:PORT/] [--dir DIR]
  start `relay` first; type lines to send; /safety, /close, /quit";

fn now() -> Timestamp {
    confide_relay::wall_clock()
}

/// Demo only: a key derived from the name. A real app keeps a random key in the platform
/// keystore.
fn storage_key(name: &str) -> StorageKey {
    let mut k = [0u8; 32];
    for (i, b) in name.bytes().enumerate() {
        if let Some(slot) = k.get_mut(i % 32) {
            *slot ^= b;
        }
    }
    StorageKey::new(k)
}

/// The mailbox owner's key, created on first start. Demo only: kept in a plain file (mode
/// 0600); a real app keeps it in the platform keystore.
fn owner_key(path: &Path, rng: &mut ChaCha20Rng) -> Result<SigningKey, ExampleError> {
    if let Ok(bytes) = std::fs::read(path) {
        let seed: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| format!("{}: not a 32-byte key", path.display()))?;
        return Ok(SigningKey::from_seed(&seed));
    }
    let key = SigningKey::generate(rng);
    confide_relay::issuer::write_private_file(path, key.to_secret_bytes().expose())?;
    Ok(key)
}

/// First start: creates the mailbox, gets a client certificate from the relay's issuer,
/// creates the endpoint, registers its delivery-token verifier and uploads its bundles.
async fn register(
    relay: RelayAddress,
    name: &str,
    owner: &SigningKey,
    rng: &mut ChaCha20Rng,
) -> Result<Endpoint, ExampleError> {
    let (roots, _) = demo_service()?;
    let address = Address::new(name.as_bytes())?;
    let identity = IdentityKeyPair::generate(rng);
    let mut c = RelayConnection::connect(relay).await?;
    c.create_mailbox(&address, owner, None).await?;
    let (cert, _expires) = c
        .request_certificate(1, identity.public().to_bytes())
        .await?;
    let endpoint = Endpoint::new(
        rng,
        now(),
        identity,
        address,
        SenderCertificate::from_bytes(&cert)?,
        roots,
        EndpointConfig::default(),
    )?;
    c.set_verifier(Some(endpoint.delivery_token_verifier().to_bytes()))
        .await?;
    let bundles = endpoint.published_bundles();
    c.upload_bundles(bundles.one_time, Some(bundles.last_resort))
        .await?;
    println!("(registered {name}: mailbox, client certificate, prekey bundles)");
    Ok(endpoint)
}

/// A restarted chat whose relay lost its directory entry (a relay started on a new
/// database) uploads its last-resort bundle again, so the peer can still start a
/// conversation. Best effort: if the relay is away, nothing is uploaded until the next start.
async fn restore_directory_entry(relay: RelayAddress, endpoint: &Endpoint, owner: &SigningKey) {
    let Ok(mut c) = RelayConnection::connect(relay).await else {
        return;
    };
    // CreateMailbox (not Authenticate): the mailbox may be missing too.
    let verifier = Some(endpoint.delivery_token_verifier().to_bytes());
    if c.create_mailbox(endpoint.address(), owner, verifier)
        .await
        .is_err()
    {
        return;
    }
    if let Ok((_, false)) = c.bundle_count().await {
        let last_resort = endpoint.published_bundles().last_resort;
        if c.upload_bundles(Vec::new(), Some(last_resort))
            .await
            .is_ok()
        {
            println!("(uploaded the last-resort bundle again: the relay had none)");
        }
    }
}

/// The relay connection used for owner requests outside the link (certificate renewal,
/// bundle uploads).
async fn owner_connection(
    relay: RelayAddress,
    endpoint: &Endpoint,
    owner: &SigningKey,
) -> Result<RelayConnection, ExampleError> {
    let mut c = RelayConnection::connect(relay).await?;
    c.authenticate(endpoint.address(), owner).await?;
    Ok(c)
}

struct Chat {
    name: String,
    peer: Address,
    relay: RelayAddress,
    owner: SigningKey,
    endpoint: Endpoint,
    store: SqliteStore,
    transcript: Transcript,
    key: StorageKey,
    link: RelayLink,
    rng: ChaCha20Rng,
    deadline: Option<Timestamp>,
    bundles_changed: bool,
}

impl Chat {
    /// The run loop's step 2: polls until the deadline.
    async fn drain(&mut self) -> Result<(), ExampleError> {
        loop {
            match self.endpoint.poll_output() {
                Output::Transmit(tx) => self.link.send(tx.to, tx.token, tx.frame).await?,
                Output::Event(Event::PersistRequired) => {
                    confide_store::persist(
                        &mut self.endpoint,
                        &mut self.store,
                        &mut self.rng,
                        &self.key,
                    )?;
                }
                Output::Event(Event::BundlesChanged) => self.bundles_changed = true,
                Output::Event(Event::Message {
                    conversation,
                    id,
                    text,
                    expires_at,
                    sent_at,
                    ..
                }) => {
                    self.transcript.put(
                        &mut self.rng,
                        now(),
                        &NewMessage {
                            conversation: conversation.as_u64(),
                            id,
                            from: Party::Peer,
                            sent_at,
                            expires_at,
                            body: text.as_bytes(),
                        },
                    )?;
                    println!("< {}", String::from_utf8_lossy(text.as_bytes()));
                }
                Output::Event(Event::Expired { conversation, id })
                | Output::Event(Event::Deleted {
                    conversation, id, ..
                }) => {
                    let _ = self.transcript.erase(conversation.as_u64(), &id)?;
                }
                Output::Event(Event::Delivered { .. }) => println!("  (delivered)"),
                Output::Event(Event::IdentityChanged { .. }) => {
                    println!("! the peer's identity key changed; not accepting");
                }
                Output::Event(Event::ConversationClosed { .. }) => {
                    println!("(conversation closed)");
                }
                Output::Event(_) => {}
                Output::Timeout(t) => {
                    self.deadline = t;
                    break;
                }
                _ => {}
            }
        }
        if self.bundles_changed {
            self.upload_last_resort().await;
        }
        Ok(())
    }

    /// After `BundlesChanged`: replaces the last-resort bundle in the directory. One-time
    /// bundles are uploaded once, at registration: the directory appends uploads, so sending
    /// them again would let it hand one out twice.
    async fn upload_last_resort(&mut self) {
        let last_resort = self.endpoint.published_bundles().last_resort;
        let uploaded = match owner_connection(self.relay, &self.endpoint, &self.owner).await {
            Ok(mut c) => c
                .upload_bundles(Vec::new(), Some(last_resort))
                .await
                .is_ok(),
            Err(_) => false,
        };
        // Not uploaded (the relay is away): tried again after the next drain.
        self.bundles_changed = !uploaded;
    }

    /// Step 1 for a relay event; a delivered frame is confirmed once its state is committed.
    async fn on_relay(&mut self, event: RelayEvent) -> Result<(), ExampleError> {
        match &event {
            RelayEvent::Connected => println!("(connected to the relay)"),
            RelayEvent::Stored(_) => println!("  (stored by the relay)"),
            RelayEvent::Refused { code, .. } => {
                println!("(the relay refused a frame: {code}; it will be retransmitted)");
            }
            _ => {}
        }
        if let Some(input) = event.input(now()) {
            self.endpoint.handle_input(&mut self.rng, input);
            self.drain().await?;
        }
        // `drain` committed every change the frame made: the relay may delete it.
        if let Some(id) = event.frame_id() {
            self.link.confirm(id).await?;
        }
        Ok(())
    }

    async fn conversation(&mut self) -> Result<ConversationId, ExampleError> {
        if let Some(c) = self.endpoint.conversation_with(&self.peer) {
            return Ok(c);
        }
        let peer_name = String::from_utf8_lossy(self.peer.as_bytes()).into_owned();
        // Fetched on a connection that never authenticates: the directory does not learn who
        // asked for the bundle.
        let mut c = RelayConnection::connect(self.relay).await?;
        let (_kind, bundle) = match c.fetch_bundle(&self.peer).await {
            Ok(b) => b,
            Err(confide_relay::client::ClientError::Refused(ErrorCode::NoBundle)) => {
                return Err(format!(
                    "{peer_name} has no bundles yet: start `chat {peer_name} ...`"
                )
                .into());
            }
            Err(e) => return Err(e.into()),
        };
        let started = self.endpoint.start_conversation(
            &mut self.rng,
            now(),
            self.peer.clone(),
            &bundle,
            ExpectedIdentity::TrustOnFirstUse,
        )?;
        Ok(started.conversation)
    }

    async fn say(&mut self, text: &str) -> Result<(), ExampleError> {
        let conversation = self.conversation().await?;
        let t = now();
        let id = self
            .endpoint
            .send(&mut self.rng, t, conversation, text.as_bytes())?;
        self.transcript.put(
            &mut self.rng,
            t,
            &NewMessage {
                conversation: conversation.as_u64(),
                id,
                from: Party::Us,
                sent_at: t,
                expires_at: None,
                body: text.as_bytes(),
            },
        )?;
        self.drain().await
    }

    /// Prints the stored history of the conversation with the peer.
    fn print_history(&self) -> Result<(), ExampleError> {
        let Some(c) = self.endpoint.conversation_with(&self.peer) else {
            return Ok(());
        };
        let peer_name = String::from_utf8_lossy(self.peer.as_bytes()).into_owned();
        let mut after = None;
        let mut shown = 0usize;
        loop {
            let page = self
                .transcript
                .list(now(), c.as_u64(), after, MAX_PAGE_LEN)?;
            let Some(last) = page.last() else { break };
            after = Some(last.seq);
            for entry in &page {
                let who = match entry.from {
                    Party::Us => "me",
                    _ => peer_name.as_str(),
                };
                println!("{who}: {}", String::from_utf8_lossy(entry.body.as_bytes()));
                shown += 1;
            }
        }
        if shown > 0 {
            println!("(history: {shown} stored messages)");
        }
        Ok(())
    }

    async fn command(&mut self, line: &str) -> Result<bool, ExampleError> {
        match line.trim() {
            "/quit" => return Ok(false),
            "/safety" => match self
                .endpoint
                .conversation_with(&self.peer)
                .and_then(|c| self.endpoint.safety_number(c))
            {
                Some(n) => println!("safety number: {}", n.display_groups()),
                None => println!("(no conversation yet)"),
            },
            "/close" => {
                if let Some(c) = self.endpoint.conversation_with(&self.peer) {
                    if let Err(e) = self.endpoint.close(&mut self.rng, now(), c) {
                        println!("(cannot close: {e})");
                    }
                    self.drain().await?;
                }
            }
            "" => {}
            text => {
                if let Err(e) = self.say(text).await {
                    println!("(not sent: {e})");
                }
            }
        }
        Ok(true)
    }
}

fn stdin_lines() -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

struct Args {
    name: String,
    peer: String,
    relay: RelayAddress,
    dir: PathBuf,
}

fn parse_args() -> Result<Option<Args>, ExampleError> {
    let mut positional = Vec::new();
    let mut relay = DEFAULT_RELAY.to_owned();
    let mut dir = std::env::temp_dir().join("confide-chat-demo");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--relay" => relay = args.next().ok_or(USAGE)?,
            "--dir" => dir = args.next().ok_or(USAGE)?.into(),
            "-h" | "--help" => return Ok(None),
            _ if arg.starts_with("--") => return Err(format!("unknown flag {arg}\n{USAGE}").into()),
            _ => positional.push(arg),
        }
    }
    let [name, peer] = <[String; 2]>::try_from(positional).map_err(|_| USAGE)?;
    let relay = relay
        .parse()
        .map_err(|_| format!("--relay {relay:?}: expected IP:PORT or ws://IP:PORT/"))?;
    Ok(Some(Args {
        name,
        peer,
        relay,
        dir,
    }))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), ExampleError> {
    let Some(args) = parse_args()? else {
        println!("{USAGE}");
        return Ok(());
    };
    let Args {
        name,
        peer,
        relay,
        dir,
    } = args;
    std::fs::create_dir_all(&dir)?;
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| format!("OS random source: {e}"))?;
    let mut rng = ChaCha20Rng::from_seed(seed);
    let key = storage_key(&name);
    let db = dir.join(format!("{name}.db"));
    let mut store = SqliteStore::open(&db, name.as_bytes())?;
    let transcript = Transcript::open(&db, name.as_bytes(), &key)?;
    let owner = owner_key(&dir.join(format!("{name}.owner")), &mut rng)?;
    let mut endpoint = match confide_store::load(&store, &key)? {
        Some(endpoint) => {
            println!("(restored {name} from {})", db.display());
            restore_directory_entry(relay, &endpoint, &owner).await;
            endpoint
        }
        None => {
            let mut endpoint = register(relay, &name, &owner, &mut rng).await?;
            confide_store::persist_all(&mut endpoint, &mut store, &mut rng, &key)?;
            endpoint
        }
    };
    if endpoint.certificate_expires_at() <= now().saturating_add(RENEW_BEFORE) {
        let mut c = owner_connection(relay, &endpoint, &owner).await?;
        let (cert, _) = c
            .request_certificate(1, endpoint.identity().to_bytes())
            .await?;
        endpoint.set_certificate(&mut rng, now(), SenderCertificate::from_bytes(&cert)?)?;
        println!("(renewed the client certificate)");
    }
    let link = RelayLink::start(LinkConfig {
        relay,
        mailbox: endpoint.address().clone(),
        owner_key: owner.clone(),
        verifier: Some(endpoint.delivery_token_verifier().to_bytes()),
    });
    let mut chat = Chat {
        name,
        peer: Address::new(peer.as_bytes())?,
        relay,
        owner,
        endpoint,
        store,
        transcript,
        key,
        link,
        rng,
        deadline: None,
        bundles_changed: false,
    };
    chat.print_history()?;
    chat.drain().await?;
    println!(
        "{}: talking to {peer} through the relay at {relay}",
        chat.name
    );
    let mut lines = stdin_lines();
    loop {
        let wait = chat.deadline.map_or(IDLE_TICK, |d| {
            std::time::Duration::from_millis(d.as_millis().saturating_sub(now().as_millis()))
                .min(IDLE_TICK)
        });
        tokio::select! {
            line = lines.recv() => match line {
                Some(line) => {
                    if !chat.command(&line).await? {
                        return Ok(());
                    }
                }
                None => return Ok(()),
            },
            event = chat.link.next_event() => chat.on_relay(event?).await?,
            () = tokio::time::sleep(wait) => {
                let t = now();
                if chat.deadline.is_some_and(|d| d <= t) {
                    chat.endpoint.handle_input(&mut chat.rng, Input::Timeout { now: t });
                    chat.drain().await?;
                }
            }
        }
    }
}
