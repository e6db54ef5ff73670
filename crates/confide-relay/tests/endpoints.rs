//! End to end through the real relay process: a client and a counselor, each a sans-IO
//! `confide::Endpoint` driven over a reconnecting `RelayLink`, exchange messages; the client's
//! certificate comes from the relay's issuer, the counselor's from the operator's command, the
//! client takes the counselor's one-time bundle from the directory, both mailboxes require
//! delivery tokens, and a `kill -9` and restart of the relay mid-conversation loses nothing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use crate::common;

use std::net::SocketAddr;

use chacha20::ChaCha20Rng;
use common::*;
use confide::{
    Address, ConversationId, Endpoint, EndpointConfig, Event, ExpectedIdentity, Output, Role,
};
use confide_crypto::identity::IdentityKeyPair;
use confide_crypto::signing::SigningKey;
use confide_relay::client::{LinkConfig, RelayConnection, RelayEvent, RelayLink};
use confide_relay::protocol::BundleKind;
use confide_relay::wall_clock;
use confide_sealed::{SenderCertificate, TrustRoots};
use confide_wire::Timestamp;
use rand_core::SeedableRng;

/// One app: its endpoint, its link to the relay, and what it has seen.
struct App {
    endpoint: Endpoint,
    link: RelayLink,
    rng: ChaCha20Rng,
    deadline: Option<Timestamp>,
    events: Vec<Event>,
    receipts: usize,
    connects: usize,
}

impl App {
    fn new(endpoint: Endpoint, link: RelayLink, seed: u8) -> Self {
        Self {
            endpoint,
            link,
            rng: ChaCha20Rng::from_seed([seed; 32]),
            deadline: None,
            events: Vec::new(),
            receipts: 0,
            connects: 0,
        }
    }

    /// Run-loop step 2: transmits to the link, events to the app, then the deadline.
    async fn drain(&mut self) {
        loop {
            match self.endpoint.poll_output() {
                Output::Transmit(tx) => self.link.send(tx.to, tx.token, tx.frame).await.unwrap(),
                // An app commits the change set to its store (confide-store) here; the test
                // takes it and counts it as committed.
                Output::Event(Event::PersistRequired) => {
                    let key = confide::StorageKey::new([7; 32]);
                    let _changes = self
                        .endpoint
                        .take_changes(&mut self.rng, &key, b"app")
                        .unwrap();
                    self.endpoint.confirm_persisted();
                }
                Output::Event(e) => self.events.push(e),
                Output::Timeout(t) => {
                    self.deadline = t;
                    return;
                }
                _ => {}
            }
        }
    }

    async fn on_relay(&mut self, event: RelayEvent) {
        if let Some(input) = event.input(wall_clock()) {
            self.endpoint.handle_input(&mut self.rng, input);
            self.drain().await;
        }
        match &event {
            RelayEvent::Stored(_) => self.receipts += 1,
            RelayEvent::Connected => self.connects += 1,
            RelayEvent::Refused { code, .. } => panic!("relay refused a frame: {code}"),
            _ => {}
        }
        // Persisted (drained above): the relay may delete it.
        if let Some(id) = event.frame_id() {
            self.link.confirm(id).await.unwrap();
        }
    }

    async fn tick(&mut self) {
        let now = wall_clock();
        if self.deadline.is_some_and(|d| d <= now) {
            self.endpoint
                .handle_input(&mut self.rng, confide::Input::Timeout { now });
            self.drain().await;
        }
    }

    fn texts(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Message { text, .. } => {
                    Some(String::from_utf8_lossy(text.as_bytes()).into_owned())
                }
                _ => None,
            })
            .collect()
    }

    fn delivered(&self) -> usize {
        self.events
            .iter()
            .filter(|e| matches!(e, Event::Delivered { .. }))
            .count()
    }
}

/// Drives both apps until `done` holds (or panics after 20 s).
async fn run_until(a: &mut App, b: &mut App, done: impl Fn(&App, &App) -> bool) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while !done(a, b) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out: a {:?} texts {:?} receipts {} connects {} stats {:?}; b {:?} texts {:?} receipts {} connects {} stats {:?}",
            a.events
                .iter()
                .map(|e| format!("{e:?}").chars().take(40).collect::<String>())
                .collect::<Vec<_>>(),
            a.texts(),
            a.receipts,
            a.connects,
            a.endpoint.stats(),
            b.events
                .iter()
                .map(|e| format!("{e:?}").chars().take(40).collect::<String>())
                .collect::<Vec<_>>(),
            b.texts(),
            b.receipts,
            b.connects,
            b.endpoint.stats(),
        );
        tokio::select! {
            e = a.link.next_event() => a.on_relay(e.unwrap()).await,
            e = b.link.next_event() => b.on_relay(e.unwrap()).await,
            () = tokio::time::sleep(std::time::Duration::from_millis(20)) => {
                a.tick().await;
                b.tick().await;
            }
        }
    }
}

fn endpoint(
    rng: &mut ChaCha20Rng,
    identity: IdentityKeyPair,
    address: &Address,
    cert: SenderCertificate,
    roots: &TrustRoots,
) -> Endpoint {
    Endpoint::new(
        rng,
        wall_clock(),
        identity,
        address.clone(),
        cert,
        roots.clone(),
        EndpointConfig::default(),
    )
    .unwrap()
}

fn link(relay: SocketAddr, e: &Endpoint, owner_key: &SigningKey) -> RelayLink {
    RelayLink::start(LinkConfig {
        relay: relay.into(),
        mailbox: e.address().clone(),
        owner_key: owner_key.clone(),
        verifier: Some(e.delivery_token_verifier().to_bytes()),
    })
}

#[tokio::test]
async fn a_client_and_a_counselor_talk_through_the_relay_and_survive_its_kill_9() {
    tokio::time::timeout(TEST_DEADLINE, async {
        let dir = TempDir::new("endpoints");
        let (roots, server_file) = init_issuer(dir.path());
        let server_arg = ["--server-key-file", server_file.to_str().unwrap()];
        let relay = RelayProcess::start(dir.path(), &server_arg);
        let addr = relay.addr;
        let mut rng = ChaCha20Rng::from_seed([42; 32]);

        // The counselor: certified by the operator's command, bundles in the directory.
        let counselor_address = address("counselor-1");
        let counselor_identity = IdentityKeyPair::generate(&mut rng);
        let cert_hex = run_cli(&[
            "issue",
            "--server-key-file",
            server_file.to_str().unwrap(),
            "--role",
            "counselor",
            "--address",
            "counselor-1",
            "--identity-hex",
            &hex::encode(counselor_identity.public().to_bytes()),
            "--name",
            "Sam",
        ]);
        let counselor_cert =
            SenderCertificate::from_bytes(&hex::decode(cert_hex.trim()).unwrap()).unwrap();
        let counselor_ep = endpoint(
            &mut rng,
            counselor_identity,
            &counselor_address,
            counselor_cert,
            &roots,
        );
        let counselor_key = SigningKey::generate(&mut rng);
        let bundles = counselor_ep.published_bundles();
        let mut c = RelayConnection::connect(addr).await.unwrap();
        c.create_mailbox(
            &counselor_address,
            &counselor_key,
            Some(counselor_ep.delivery_token_verifier().to_bytes()),
        )
        .await
        .unwrap();
        let uploaded = u32::try_from(bundles.one_time.len()).unwrap();
        c.upload_bundles(bundles.one_time, Some(bundles.last_resort))
            .await
            .unwrap();
        assert_eq!(c.bundle_count().await.unwrap(), (uploaded, true));
        drop(c);
        let counselor_link = link(addr, &counselor_ep, &counselor_key);
        let mut counselor = App::new(counselor_ep, counselor_link, 1);

        // The client: an anonymous mailbox and a certificate from the relay's issuer.
        let client_address = address("anonymous-7f3a");
        let client_identity = IdentityKeyPair::generate(&mut rng);
        let client_key = SigningKey::generate(&mut rng);
        let mut c = RelayConnection::connect(addr).await.unwrap();
        c.create_mailbox(&client_address, &client_key, None)
            .await
            .unwrap();
        let (cert, _expires) = c
            .request_certificate(1, client_identity.public().to_bytes())
            .await
            .unwrap();
        drop(c);
        let mut client_ep = endpoint(
            &mut rng,
            client_identity,
            &client_address,
            SenderCertificate::from_bytes(&cert).unwrap(),
            &roots,
        );
        // First contact: a one-time bundle from the directory, fetched anonymously.
        let mut anon = RelayConnection::connect(addr).await.unwrap();
        let (kind, bundle) = anon.fetch_bundle(&counselor_address).await.unwrap();
        assert_eq!(kind, BundleKind::OneTime);
        let started = client_ep
            .start_conversation(
                &mut rng,
                wall_clock(),
                counselor_address.clone(),
                &bundle,
                ExpectedIdentity::TrustOnFirstUse,
            )
            .unwrap();
        assert_eq!(started.peer_role, Role::Counselor);
        let conversation = started.conversation;
        let client_link = link(addr, &client_ep, &client_key);
        let mut client = App::new(client_ep, client_link, 2);

        client
            .endpoint
            .send(
                &mut client.rng,
                wall_clock(),
                conversation,
                b"I need to talk",
            )
            .unwrap();
        client.drain().await;
        run_until(&mut client, &mut counselor, |_, co| {
            co.texts() == ["I need to talk"]
        })
        .await;
        let counselor_conversation: ConversationId = counselor
            .events
            .iter()
            .find_map(|e| match e {
                Event::Message {
                    conversation,
                    sender_role,
                    ..
                } => {
                    assert_eq!(*sender_role, Role::Client);
                    Some(*conversation)
                }
                _ => None,
            })
            .unwrap();
        counselor
            .endpoint
            .send(
                &mut counselor.rng,
                wall_clock(),
                counselor_conversation,
                b"I'm here. What's on your mind?",
            )
            .unwrap();
        counselor.drain().await;
        run_until(&mut client, &mut counselor, |cl, co| {
            cl.texts() == ["I'm here. What's on your mind?"]
                && cl.delivered() == 1
                && co.delivered() == 1
        })
        .await;
        assert!(
            client.receipts > 0 && counselor.receipts > 0,
            "relay receipts"
        );

        // kill -9 the relay and restart it on the same port and database.
        let listen = addr.to_string();
        relay.kill();
        client
            .endpoint
            .send(
                &mut client.rng,
                wall_clock(),
                conversation,
                b"are you still there?",
            )
            .unwrap();
        client.drain().await;
        let _relay = RelayProcess::start_on(dir.path(), &listen, &server_arg);
        run_until(&mut client, &mut counselor, |cl, co| {
            co.texts().len() == 2 && cl.delivered() == 2
        })
        .await;
        assert_eq!(counselor.texts()[1], "are you still there?");
        assert!(
            client.connects >= 2 && counselor.connects >= 2,
            "both links reconnected"
        );
        println!(
            "receipts: client {}, counselor {}; connects: client {}, counselor {}",
            client.receipts, counselor.receipts, client.connects, counselor.connects
        );
    })
    .await
    .expect("finished within the deadline");
}
