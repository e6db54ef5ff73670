//! Chat between two terminals through the `relay` example over TCP on 127.0.0.1.
//!
//! Run `relay` first, then `chat alice bob` in one terminal and `chat bob alice` in another;
//! type lines to send them. Both programs derive the same demo service keys from a fixed
//! seed (a real app pins the service's root key and gets its certificate from the service),
//! and exchange prekey bundles through files in the system temporary directory (a real app
//! uses the service's directory). Each endpoint's state is stored encrypted in that
//! directory too, so a restarted chat resumes its conversation.
//!
//! Usage: `chat <my-name> <peer-name> [relay-port]` (default port 7878). Commands typed at the
//! prompt: `/safety` shows the safety number, `/close` closes the conversation, `/quit` exits.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::BufRead;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, TryRecvError, channel};

use chacha20::ChaCha20Rng;
use confide::{
    Address, ConversationId, Endpoint, EndpointConfig, Event, ExpectedIdentity, Input, Output,
    Role, StorageKey,
};
use confide_crypto::{Duration, Timestamp, identity::IdentityKeyPair, signing::SigningKey};
use confide_examples::ExampleError;
use confide_examples::tcp::TcpTransport;
use confide_sealed::{SenderCertificate, SenderClaims, ServerCertificate, ServerKey, TrustRoots};
use confide_transport::Transport;
use rand_core::SeedableRng;

/// The port used when none is given.
const DEFAULT_PORT: u16 = 7878;
/// How often the loop polls the network and the keyboard.
const POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(50);

fn now() -> Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    Timestamp::from_millis(ms)
}

fn dir() -> Result<PathBuf, ExampleError> {
    let d = std::env::temp_dir().join("confide-chat-demo");
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

/// The demo service: root and server keys from a fixed seed, so both programs agree.
fn demo_service() -> Result<(TrustRoots, ServerKey), ExampleError> {
    let mut rng = ChaCha20Rng::from_seed(*b"confide demo service, not secret");
    let root = SigningKey::generate(&mut rng);
    let mut roots = TrustRoots::new();
    roots.add_root(1, root.verifying_key())?;
    let signing = SigningKey::generate(&mut rng);
    // Valid from the epoch for a very long time: the demo has no certificate renewal.
    let cert = ServerCertificate::issue(
        1,
        &root,
        1,
        &signing.verifying_key(),
        Timestamp::from_millis(u64::MAX / 2),
    );
    Ok((roots, ServerKey::new(signing, cert)?))
}

fn storage_key(name: &str) -> StorageKey {
    // Demo only: a real app keeps a random key in the platform keystore.
    let mut k = [0u8; 32];
    for (i, b) in name.bytes().enumerate() {
        if let Some(slot) = k.get_mut(i % 32) {
            *slot ^= b;
        }
    }
    StorageKey::new(k)
}

fn load_or_create(name: &str, rng: &mut ChaCha20Rng) -> Result<Endpoint, ExampleError> {
    let path = dir()?.join(format!("{name}.state"));
    let key = storage_key(name);
    if let Ok(blob) = std::fs::read(&path) {
        println!("(restored {name}'s stored state)");
        return Ok(Endpoint::import_state(&key, name.as_bytes(), &blob)?);
    }
    let (roots, server) = demo_service()?;
    let identity = IdentityKeyPair::generate(rng);
    let cert = SenderCertificate::issue(
        &server,
        &SenderClaims {
            address: name.as_bytes(),
            device_id: 1,
            identity: identity.public(),
            role: Role::Client,
            display_name: None,
        },
        now().saturating_add(Duration::from_days(30)),
    )?;
    Ok(Endpoint::new(
        rng,
        now(),
        identity,
        Address::new(name.as_bytes())?,
        cert,
        roots,
        EndpointConfig::default(),
    )?)
}

fn stdin_lines() -> Receiver<String> {
    let (tx, rx) = channel();
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

struct Chat {
    name: String,
    endpoint: Endpoint,
    transport: TcpTransport,
    rng: ChaCha20Rng,
    deadline: Option<Timestamp>,
}

impl Chat {
    /// The run loop's step 2.
    fn drain(&mut self) -> Result<(), ExampleError> {
        loop {
            match self.endpoint.poll_output() {
                Output::Transmit(tx) => {
                    if let Err(e) = self.transport.send(&tx.to, tx.token.as_ref(), &tx.frame) {
                        eprintln!("(relay: {e}; the message will be retransmitted)");
                    }
                }
                Output::Event(Event::PersistRequired) => {
                    let blob = self.endpoint.export_state(
                        &mut self.rng,
                        &storage_key(&self.name),
                        self.name.as_bytes(),
                    )?;
                    std::fs::write(dir()?.join(format!("{}.state", self.name)), blob)?;
                    self.endpoint.confirm_persisted();
                }
                Output::Event(Event::BundlesChanged) => {
                    // A file can be read by many peers, so it holds only the last-resort
                    // bundle (one-time bundles must each go to one requester: a directory's job).
                    let last_resort = self.endpoint.published_bundles().last_resort;
                    std::fs::write(
                        dir()?.join(format!("{}.bundles", self.name)),
                        hex::encode(last_resort),
                    )?;
                }
                Output::Event(Event::Message { text, .. }) => {
                    println!("< {}", String::from_utf8_lossy(text.as_bytes()));
                }
                Output::Event(Event::Delivered { .. }) => println!("  (delivered)"),
                Output::Event(Event::IdentityChanged { .. }) => {
                    println!(
                        "! the peer's identity key changed; not accepting (restart both to reset)"
                    );
                }
                Output::Event(Event::ConversationClosed { .. }) => {
                    println!("(conversation closed)")
                }
                Output::Event(_) => {}
                Output::Timeout(t) => {
                    self.deadline = t;
                    return Ok(());
                }
                _ => {}
            }
        }
    }

    fn conversation(&mut self, peer: &Address) -> Result<ConversationId, ExampleError> {
        if let Some(c) = self.endpoint.conversation_with(peer) {
            return Ok(c);
        }
        let peer_name = String::from_utf8_lossy(peer.as_bytes()).into_owned();
        let bundles = std::fs::read_to_string(dir()?.join(format!("{peer_name}.bundles")))
            .map_err(|_| {
                format!("no bundles from {peer_name} yet: start `chat {peer_name} ...` first")
            })?;
        // The file holds the last-resort bundle: never consumed, safe to use from a file.
        let last = bundles.lines().next().ok_or("empty bundle file")?;
        let c = self.endpoint.start_conversation(
            &mut self.rng,
            now(),
            peer.clone(),
            &hex::decode(last)?,
            ExpectedIdentity::TrustOnFirstUse,
        )?;
        Ok(c.conversation)
    }
}

fn main() -> Result<(), ExampleError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() || args.iter().any(|a| a == "--help" || a == "-h") || args.len() < 2 {
        println!("usage: chat <my-name> <peer-name> [relay-port]   (default port {DEFAULT_PORT})");
        println!("start `relay` first; type lines to send; /safety, /close, /quit");
        return Ok(());
    }
    let (Some(name), Some(peer_name)) = (args.first().cloned(), args.get(1).cloned()) else {
        return Ok(());
    };
    let port: u16 = args.get(2).map_or(Ok(DEFAULT_PORT), |p| p.parse())?;
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| format!("OS random source: {e}"))?;
    let mut rng = ChaCha20Rng::from_seed(seed);
    let endpoint = load_or_create(&name, &mut rng)?;
    let relay = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    // Register our token's verifier: the relay then takes mail for us only from senders
    // holding the token (our contacts, and whoever fetched our certified bundle).
    let verifier = endpoint.delivery_token_verifier().to_bytes();
    let transport = TcpTransport::connect(relay, endpoint.address(), Some(verifier))?;
    let mut chat = Chat {
        name: name.clone(),
        endpoint,
        transport,
        rng,
        deadline: None,
    };
    chat.drain()?;
    let peer = Address::new(peer_name.as_bytes())?;
    println!("{name}: connected to the relay at {relay}; talking to {peer_name}");
    let lines = stdin_lines();
    loop {
        match lines.try_recv() {
            Ok(line) => match line.trim() {
                "/quit" => return Ok(()),
                "/safety" => match chat
                    .endpoint
                    .conversation_with(&peer)
                    .and_then(|c| chat.endpoint.safety_number(c))
                {
                    Some(n) => println!("safety number: {}", n.display_groups()),
                    None => println!("(no conversation yet)"),
                },
                "/close" => {
                    if let Some(c) = chat.endpoint.conversation_with(&peer) {
                        let r = chat.endpoint.close(&mut chat.rng, now(), c);
                        if let Err(e) = r {
                            println!("(cannot close: {e})");
                        }
                    }
                }
                "" => {}
                text => match chat.conversation(&peer) {
                    Ok(c) => {
                        if let Err(e) = chat.endpoint.send(&mut chat.rng, now(), c, text.as_bytes())
                        {
                            println!("(not sent: {e})");
                        }
                    }
                    Err(e) => println!("({e})"),
                },
            },
            Err(TryRecvError::Empty) => {}
            Err(TryRecvError::Disconnected) => return Ok(()),
        }
        while let Some(frame) = chat.transport.recv()? {
            chat.endpoint.handle_input(
                &mut chat.rng,
                Input::Receive {
                    bytes: &frame,
                    now: now(),
                },
            );
            chat.drain()?;
        }
        let t = now();
        if chat.deadline.is_some_and(|d| d <= t) {
            chat.endpoint
                .handle_input(&mut chat.rng, Input::Timeout { now: t });
        }
        chat.drain()?;
        std::thread::sleep(POLL_INTERVAL);
    }
}
