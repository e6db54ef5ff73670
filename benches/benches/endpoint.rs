//! Endpoint benchmark: one 1 KiB message's whole round trip through two `Endpoint`s, against
//! the layers below doing the same work, measured in one run.
//!
//! Naming convention (as in `session.rs`, see `docs/benchmarks.md`): group
//! `endpoint/roundtrip_1k`, parameter `1KiB`, function ids:
//!
//! * `confide`: client `send` -> `poll_output` (transmit) -> counselor `handle_input` ->
//!   `poll_output` (the `Message` event and the end-to-end acknowledgement) -> client
//!   `handle_input` -> `poll_output` (`Delivered`). Endpoints are `Persistence::Ephemeral`, so
//!   the app's storage I/O is not measured.
//! * `floor`: the same cryptographic and framing work done by the lower crates directly:
//!   policy frame, session encrypt, sealed seal, transport frame encode/decode, sealed open,
//!   session decrypt, policy handling, for the message and for its acknowledgement. The ratio
//!   `confide / floor` is the facade's own overhead (target: at most 1.5x).
//! * `session_only`: the bare session's encrypt + decrypt of 1 KiB (no sealed sender, no ack),
//!   to show what sealed sender and end-to-end acknowledgements cost on top.
//!
//! Set `CONFIDE_BENCH_QUICK=1` for the short CI mode.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::hint::black_box;
use std::time::Instant;

use chacha20::ChaCha20Rng;
use confide::{
    ConversationId, Endpoint, EndpointConfig, Event, ExpectedIdentity, Input, Output, Persistence,
    Role, StorageKey,
};
use confide_crypto::{Timestamp, identity::IdentityKeyPair, signing::SigningKey};
use confide_policy::{ConversationPolicy, MessageId, OrgBounds, RetentionPolicy, Side};
use confide_sealed::{SenderCertificate, SenderClaims, ServerCertificate, ServerKey, TrustRoots};
use confide_session::{IdentityChangePolicy, PreKeyBundle, PreKeyStore, Session, SessionRecord};
use confide_transport::{Frame, FrameId};
use criterion::{BenchmarkId, Criterion};
use rand_core::SeedableRng;

const NOW: Timestamp = Timestamp::from_millis(1_750_000_000_000);
const LEN: usize = 1024;

struct Service {
    roots: TrustRoots,
    server: ServerKey,
}

fn service(rng: &mut ChaCha20Rng) -> Service {
    let root = SigningKey::generate(rng);
    let mut roots = TrustRoots::new();
    roots.add_root(1, root.verifying_key()).unwrap();
    let signing = SigningKey::generate(rng);
    let cert = ServerCertificate::issue(
        1,
        &root,
        1,
        &signing.verifying_key(),
        NOW.saturating_add(confide_crypto::Duration::from_days(365)),
    );
    Service {
        roots,
        server: ServerKey::new(signing, cert).unwrap(),
    }
}

fn cert(s: &Service, name: &[u8], id: &IdentityKeyPair, role: Role) -> SenderCertificate {
    SenderCertificate::issue(
        &s.server,
        &SenderClaims {
            address: name,
            device_id: 1,
            identity: id.public(),
            role,
            display_name: None,
        },
        NOW.saturating_add(confide_crypto::Duration::from_days(30)),
    )
    .unwrap()
}

/// Drains an endpoint, returning its transmits' frames and counting its events. With
/// persistence on, every `PersistRequired` exports the state (encrypted, the whole account)
/// and confirms it, as an app does before its frames may leave.
fn drain(
    e: &mut Endpoint,
    rng: &mut ChaCha20Rng,
    key: &StorageKey,
    frames: &mut Vec<Vec<u8>>,
) -> usize {
    let mut events = 0;
    loop {
        match e.poll_output() {
            Output::Transmit(tx) => frames.push(tx.frame),
            Output::Event(Event::PersistRequired) => {
                black_box(e.export_state(rng, key, b"account").unwrap());
                e.confirm_persisted();
            }
            Output::Event(_) => events += 1,
            Output::Timeout(_) => return events,
            _ => {}
        }
    }
}

struct Pair {
    client: Endpoint,
    counselor: Endpoint,
    conv: ConversationId,
    rng: ChaCha20Rng,
    key: StorageKey,
}

/// A client and a counselor with an established session (the first exchange done).
fn pair(seed: u8, persistence: Persistence) -> Pair {
    let mut rng = ChaCha20Rng::from_seed([seed; 32]);
    let s = service(&mut rng);
    let config = EndpointConfig {
        persistence,
        ..EndpointConfig::default()
    };
    let make = |name: &[u8], role: Role, rng: &mut ChaCha20Rng| {
        let id = IdentityKeyPair::generate(rng);
        let c = cert(&s, name, &id, role);
        Endpoint::new(
            rng,
            NOW,
            id,
            confide::Address::new(name).unwrap(),
            c,
            s.roots.clone(),
            config,
        )
        .unwrap()
    };
    let mut client = make(b"client", Role::Client, &mut rng);
    let counselor = make(b"counselor", Role::Counselor, &mut rng);
    let bundle = counselor.published_bundles().one_time[0].clone();
    let conv = client
        .start_conversation(
            &mut rng,
            NOW,
            counselor.address().clone(),
            &bundle,
            ExpectedIdentity::TrustOnFirstUse,
        )
        .unwrap()
        .conversation;
    let mut p = Pair {
        client,
        counselor,
        conv,
        rng,
        key: StorageKey::new([5; 32]),
    };
    let mut frames = Vec::new();
    drain(&mut p.client, &mut p.rng, &p.key, &mut frames);
    drain(&mut p.counselor, &mut p.rng, &p.key, &mut frames);
    roundtrip(&mut p, b"hello");
    let kconv = p.counselor.conversations()[0];
    p.counselor.send(&mut p.rng, NOW, kconv, b"hi").unwrap();
    drain(&mut p.counselor, &mut p.rng, &p.key, &mut frames);
    deliver(&mut p.client, &mut p.rng, &p.key, &mut frames);
    deliver(&mut p.counselor, &mut p.rng, &p.key, &mut frames);
    p
}

fn deliver(
    e: &mut Endpoint,
    rng: &mut ChaCha20Rng,
    key: &StorageKey,
    frames: &mut Vec<Vec<u8>>,
) -> usize {
    let incoming = std::mem::take(frames);
    for f in &incoming {
        e.handle_input(rng, Input::Receive { bytes: f, now: NOW });
    }
    drain(e, rng, key, frames)
}

/// One message's round trip; returns the events seen (message + delivered).
fn roundtrip(p: &mut Pair, text: &[u8]) -> usize {
    let mut frames = Vec::new();
    p.client.send(&mut p.rng, NOW, p.conv, text).unwrap();
    drain(&mut p.client, &mut p.rng, &p.key, &mut frames);
    let mut events = deliver(&mut p.counselor, &mut p.rng, &p.key, &mut frames);
    events += deliver(&mut p.client, &mut p.rng, &p.key, &mut frames);
    events
}

/// The lower layers doing the same work by hand.
struct Floor {
    client_id: IdentityKeyPair,
    counselor_id: IdentityKeyPair,
    client_cert: SenderCertificate,
    counselor_cert: SenderCertificate,
    roots: TrustRoots,
    client: SessionRecord,
    counselor: SessionRecord,
    client_policy: ConversationPolicy,
    counselor_policy: ConversationPolicy,
    client_store: PreKeyStore,
    counselor_store: PreKeyStore,
    rng: ChaCha20Rng,
}

fn floor_setup(seed: u8) -> Floor {
    let mut rng = ChaCha20Rng::from_seed([seed; 32]);
    let s = service(&mut rng);
    let client_id = IdentityKeyPair::generate(&mut rng);
    let counselor_id = IdentityKeyPair::generate(&mut rng);
    let mut counselor_store = PreKeyStore::new(counselor_id.clone(), &mut rng, NOW);
    counselor_store.generate_one_time_prekeys(&mut rng, 1);
    counselor_store.generate_one_time_kem_prekeys(&mut rng, 1);
    let bundle = PreKeyBundle::from_bytes(&counselor_store.bundles()[0].to_bytes())
        .unwrap()
        .verify(
            confide_session::ExpectedIdentity::TrustOnFirstUse,
            &client_id.public(),
        )
        .unwrap();
    let mut client =
        SessionRecord::with_session(Session::initiate(&mut rng, &client_id, &bundle).unwrap());
    let client_store = PreKeyStore::new(client_id.clone(), &mut rng, NOW);
    let mut counselor = SessionRecord::new();
    let first = client.encrypt(&mut rng, b"hello").unwrap();
    let mut cs = counselor_store;
    counselor
        .decrypt(&mut cs, &first, NOW, IdentityChangePolicy::Refuse)
        .unwrap();
    let reply = counselor.encrypt(&mut rng, b"hi").unwrap();
    let mut client_store = client_store;
    client
        .decrypt(&mut client_store, &reply, NOW, IdentityChangePolicy::Refuse)
        .unwrap();
    Floor {
        client_cert: cert(&s, b"client", &client_id, Role::Client),
        counselor_cert: cert(&s, b"counselor", &counselor_id, Role::Counselor),
        client_id,
        counselor_id,
        roots: s.roots,
        client,
        counselor,
        client_policy: ConversationPolicy::new(
            Side::Initiator,
            OrgBounds::UNRESTRICTED,
            RetentionPolicy::Off,
        ),
        counselor_policy: ConversationPolicy::new(
            Side::Responder,
            OrgBounds::UNRESTRICTED,
            RetentionPolicy::Off,
        ),
        client_store,
        counselor_store: cs,
        rng,
    }
}

/// Message and ack through policy, session, sealed sender and transport framing.
fn floor_roundtrip(f: &mut Floor, text: &[u8]) -> usize {
    // Message.
    let id = MessageId::random(&mut f.rng);
    let frame = f.client_policy.send_text(id, text, NOW).unwrap();
    let ct = f.client.encrypt(&mut f.rng, frame.as_bytes()).unwrap();
    let env = confide_sealed::seal(
        &mut f.rng,
        &f.client_id,
        &f.client_cert,
        &f.counselor_id.public(),
        &ct,
    )
    .unwrap();
    let wire = Frame::Data {
        id: FrameId::random(&mut f.rng),
        payload: env,
    }
    .to_bytes()
    .unwrap();
    let Frame::Data { id: fid, payload } = Frame::from_bytes(&wire).unwrap() else {
        panic!()
    };
    let opened = confide_sealed::open(&f.counselor_id, &f.roots, NOW, &payload).unwrap();
    let pt = f
        .counselor
        .decrypt(
            &mut f.counselor_store,
            &opened.payload,
            NOW,
            IdentityChangePolicy::Refuse,
        )
        .unwrap();
    let got = f
        .counselor_policy
        .handle_incoming(&pt.plaintext, NOW)
        .unwrap();
    // Acknowledgement.
    let ack = f
        .counselor_policy
        .acknowledge(&[fid], MessageId::random(&mut f.rng), NOW)
        .unwrap();
    let ct = f.counselor.encrypt(&mut f.rng, ack.as_bytes()).unwrap();
    let env = confide_sealed::seal(
        &mut f.rng,
        &f.counselor_id,
        &f.counselor_cert,
        &f.client_id.public(),
        &ct,
    )
    .unwrap();
    let wire = Frame::Data {
        id: FrameId::random(&mut f.rng),
        payload: env,
    }
    .to_bytes()
    .unwrap();
    let Frame::Data { payload, .. } = Frame::from_bytes(&wire).unwrap() else {
        panic!()
    };
    let opened = confide_sealed::open(&f.client_id, &f.roots, NOW, &payload).unwrap();
    let pt = f
        .client
        .decrypt(
            &mut f.client_store,
            &opened.payload,
            NOW,
            IdentityChangePolicy::Refuse,
        )
        .unwrap();
    let acked = f.client_policy.handle_incoming(&pt.plaintext, NOW).unwrap();
    black_box((&got, &acked));
    2
}

/// Fresh state for every sample keeps tracked-message and dedup tables at chat-like sizes.
fn bench(c: &mut Criterion) {
    let text = vec![0x61u8; LEN];
    let mut group = c.benchmark_group("endpoint/roundtrip_1k");
    group.bench_function(BenchmarkId::new("confide", "1KiB"), |b| {
        b.iter_custom(|iters| {
            let mut p = pair(1, Persistence::Ephemeral);
            let start = Instant::now();
            for _ in 0..iters {
                assert_eq!(roundtrip(&mut p, black_box(&text)), 2);
            }
            start.elapsed()
        });
    });
    // As apps run it: every state change is exported (encrypted) and confirmed before the
    // frames it produced may leave.
    group.bench_function(BenchmarkId::new("confide_persisted", "1KiB"), |b| {
        b.iter_custom(|iters| {
            let mut p = pair(1, Persistence::Required);
            let start = Instant::now();
            for _ in 0..iters {
                assert_eq!(roundtrip(&mut p, black_box(&text)), 2);
            }
            start.elapsed()
        });
    });
    group.bench_function(BenchmarkId::new("floor", "1KiB"), |b| {
        b.iter_custom(|iters| {
            let mut f = floor_setup(1);
            let start = Instant::now();
            for _ in 0..iters {
                black_box(floor_roundtrip(&mut f, black_box(&text)));
            }
            start.elapsed()
        });
    });
    group.bench_function(BenchmarkId::new("session_only", "1KiB"), |b| {
        b.iter_custom(|iters| {
            let mut f = floor_setup(1);
            let start = Instant::now();
            for _ in 0..iters {
                let ct = f.client.encrypt(&mut f.rng, black_box(&text)).unwrap();
                let pt = f
                    .counselor
                    .decrypt(
                        &mut f.counselor_store,
                        &ct,
                        NOW,
                        IdentityChangePolicy::Refuse,
                    )
                    .unwrap();
                black_box(pt);
            }
            start.elapsed()
        });
    });
    group.finish();
}

fn main() {
    let mut c = common::ci_mode(Criterion::default()).configure_from_args();
    bench(&mut c);
    c.final_summary();
}
