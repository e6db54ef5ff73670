//! Deterministic vectors of the endpoint state export (`docs/test-vectors/endpoint/state.json`):
//! a client and a counselor built from fixed seeds run a fixed script (every call with its
//! arguments, time and RNG draws is written into the file), and the exported blobs and their
//! plaintext states must equal the file byte for byte. Set `CONFIDE_REGENERATE_VECTORS=1` to
//! rewrite the file after an intended change (and review the diff).
//!
//! The test also reads the plaintext state with the layout of docs/endpoint.md ("Stored
//! state") to find the client's session, and decrypts the counselor's acknowledgement with it:
//! the `Ack` body must carry the transport id of the acknowledged frame (docs/endpoint.md,
//! "Acknowledgements").
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use chacha20::ChaCha20Rng;
use confide::{
    Address, ConversationId, Endpoint, EndpointConfig, Event, ExpectedIdentity, Input, Output,
    Persistence, RetentionPolicy, Role, StorageKey,
};
use confide_crypto::{
    Duration, Timestamp, identity::IdentityKeyPair, secret::SecretBytes, signing::SigningKey,
};
use confide_policy::{Body, ContentFrame, OrgBounds};
use confide_sealed::{SenderCertificate, SenderClaims, ServerCertificate, ServerKey, TrustRoots};
use confide_session::{
    IdentityChangePolicy, PreKeyStore, SessionRecord,
    storage::{self, StateKind},
};
use confide_test_support::vectors;
use confide_transport::Frame;
use rand_core::SeedableRng;
use serde_json::{Value, json};

const T0: Timestamp = Timestamp::from_millis(1_750_000_000_000);
const STORAGE_KEY: [u8; 32] = [0x4b; 32];

/// A `ChaCha20Rng::from_seed(seed)` that records the size of every draw (spec.md §13).
use confide_test_support::vectors::RecordingRng as Rec;

/// Draw sizes, run-length compressed for the file: `[[32, 100], [64, 40]]` = 100 draws of 32
/// bytes, then 40 of 64.
fn runs(draws: &[usize]) -> Value {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for &d in draws {
        match out.last_mut() {
            Some((size, n)) if *size == d => *n += 1,
            _ => out.push((d, 1)),
        }
    }
    json!(out.iter().map(|(s, n)| json!([s, n])).collect::<Vec<_>>())
}

struct World {
    script: Vec<Value>,
    client_rng: Rec,
    counselor_rng: Rec,
    export_rng: Rec,
    key: StorageKey,
    /// Frames on the wire in order: (from, to, bytes).
    wire: Vec<(String, String, Vec<u8>)>,
    /// The plaintext of each side's last export.
    last_plain: [Vec<u8>; 2],
}

impl World {
    fn step(&mut self, who: usize, call: String) {
        let rng = if who == 0 {
            &mut self.client_rng
        } else {
            &mut self.counselor_rng
        };
        let draws = std::mem::take(&mut rng.draws);
        self.script.push(json!({
            "call": call,
            "rng": rng.name,
            "draws": runs(&draws),
        }));
    }

    /// Plays the app: polls until `Timeout`, persisting when asked (export with the export
    /// RNG, then `confirm_persisted`), collecting transmits and events.
    fn drain(&mut self, who: usize, endpoint: &mut Endpoint) {
        let name = ["client", "counselor"][who];
        let mut events = Vec::new();
        loop {
            match endpoint.poll_output() {
                Output::Transmit(tx) => {
                    let to = String::from_utf8(tx.to.as_bytes().to_vec()).unwrap();
                    self.script.push(json!({
                        "call": format!("{name}.poll_output() = Transmit to {to:?}: wire[{}]", self.wire.len()),
                    }));
                    self.wire.push((name.to_string(), to, tx.frame));
                }
                Output::Event(Event::PersistRequired) => {
                    let blob = endpoint
                        .export_state(&mut self.export_rng, &self.key, name.as_bytes())
                        .unwrap();
                    endpoint.confirm_persisted();
                    let draws = std::mem::take(&mut self.export_rng.draws);
                    self.script.push(json!({
                        "call": format!(
                            "{name}.poll_output() = PersistRequired; {name}.export_state(export_rng, storage_key, slot = \"{name}\"); {name}.confirm_persisted()"
                        ),
                        "rng": "export",
                        "draws": runs(&draws),
                    }));
                    self.last_plain[who] =
                        storage::open(&self.key, StateKind::Endpoint, name.as_bytes(), &blob)
                            .unwrap()
                            .to_vec();
                }
                Output::Event(e) => {
                    events.push(format!("{e:?}"));
                    self.script.push(json!({
                        "call": format!("{name}.poll_output() = Event {e:?}"),
                    }));
                }
                Output::Timeout(t) => {
                    self.script.push(json!({
                        "call": format!("{name}.poll_output() = Timeout({:?})", t.map(Timestamp::as_millis)),
                    }));
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
    }

    /// Hands `wire[i]` to `endpoint` at `now` and drains it.
    fn deliver(&mut self, who: usize, endpoint: &mut Endpoint, i: usize, now: Timestamp) {
        let name = ["client", "counselor"][who];
        let frame = self.wire[i].2.clone();
        let rng = if who == 0 {
            &mut self.client_rng
        } else {
            &mut self.counselor_rng
        };
        endpoint.handle_input(rng, Input::Receive { bytes: &frame, now });
        self.step(
            who,
            format!(
                "{name}.handle_input({name}_rng, Receive {{ wire[{i}], now: {} }})",
                now.as_millis()
            ),
        );
        self.drain(who, endpoint);
    }
}

/// Reads docs/endpoint.md's "Stored state" layout: the snapshot's records, the identity
/// record's prekey store and the first conversation record's session record (its last field).
fn store_and_first_record(state: &[u8]) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let u = |b: &[u8]| b.iter().fold(0usize, |a, x| (a << 8) | usize::from(*x));
    // The snapshot: version 10, record count, then each key and plaintext, keys ascending.
    assert_eq!(state[0], 0x0a, "ENDPOINT_STATE_VERSION");
    let count = u(&state[1..5]);
    let mut at = 5usize;
    let mut records = Vec::new();
    for _ in 0..count {
        let n = u(&state[at..at + 2]);
        let key = state[at + 2..at + 2 + n].to_vec();
        at += 2 + n;
        let n = u(&state[at..at + 4]);
        records.push((key, state[at + 4..at + 4 + n].to_vec()));
        at += 4 + n;
    }
    assert_eq!(at, state.len(), "nothing after the last record");
    assert!(
        records.windows(2).all(|w| w[0].0 < w[1].0),
        "keys ascending"
    );
    // Identity (key 0x01): version, then the prekey store.
    let (key, identity) = &records[0];
    assert_eq!(key, &[0x01]);
    assert_eq!(identity[0], 0x0a);
    let n = u(&identity[1..5]);
    let store = identity[5..5 + n].to_vec();
    // The first conversation (key 0x03 || id).
    let (_, c) = records
        .iter()
        .find(|(k, _)| k[0] == 0x03 && k.len() == 9)
        .expect("a conversation");
    let mut at = 0usize;
    let mut take = |n: usize| {
        let s = c[at..at + n].to_vec();
        at += n;
        s
    };
    assert_eq!(take(1), [0x0a], "record version");
    let n = u(&take(2));
    let _peer_address = take(n);
    let peer_identity = take(128);
    if take(1) == [1] {
        take(1); // role
    }
    let n = u(&take(4));
    let policy = take(n);
    assert_eq!(
        &policy[policy.len() - 12..],
        &[0; 12],
        "no policy entries inline: they are records of their own"
    );
    if take(1) == [1] {
        take(8); // initiated at
    }
    let _next_seq = take(8);
    if take(1) == [1] {
        take(8); // reset requested at
    }
    let _next_delivered_order = take(8); // the delivered texts are chunks 0x0f
    let n = u(&take(1));
    take(n * 16); // recent received
    let _resume_unconfirmed = take(1);
    let n = u(&take(1));
    take(n * 40); // honoured resets
    if take(1) == [1] {
        take(24); // close sent
    }
    if take(1) == [1] {
        let n = u(&take(4));
        take(n + 128); // held identity change
    }
    let n = u(&take(2));
    take(n * 16); // pending acknowledgements
    if take(1) == [1] {
        take(8); // acknowledgement due
    }
    if take(1) == [1] {
        take(16); // peer token
    }
    let _token_confirmed = take(1);
    // The windows of the peer's symmetric epochs are record 0x0b.
    let n = u(&take(4));
    let record = take(n);
    let verification = take(1);
    assert!(verification[0] <= 2, "verification: none, code or referral");
    let code_failures = take(1);
    assert!(code_failures[0] <= confide::consts::MAX_CODE_FAILURES);
    assert_eq!(
        at,
        c.len(),
        "the verification fields are the conversation's last fields"
    );
    (store, record, peer_identity)
}

#[test]
fn endpoint_state_vectors() {
    let root = SigningKey::from_seed(&[0x01; 32]);
    let mut roots = TrustRoots::new();
    roots.add_root(1, root.verifying_key()).unwrap();
    let server_signing = SigningKey::from_seed(&[0x02; 32]);
    let server_expires = T0.saturating_add(Duration::from_days(365));
    let server = ServerKey::new(
        server_signing.clone(),
        ServerCertificate::issue(1, &root, 7, &server_signing.verifying_key(), server_expires),
    )
    .unwrap();
    let sender_expires = T0.saturating_add(Duration::from_days(300));
    let identities = [
        IdentityKeyPair::from_secret_bytes(&SecretBytes::new([0x0a; 64])),
        IdentityKeyPair::from_secret_bytes(&SecretBytes::new([0x0c; 64])),
    ];
    let names: [&[u8]; 2] = [b"client-1", b"counselor-1"];
    let roles = [Role::Client, Role::Counselor];
    let config = EndpointConfig {
        org: OrgBounds::UNRESTRICTED,
        initial_retention: RetentionPolicy::Off,
        persistence: Persistence::Required,
        acknowledgements: confide::AckPolicy::Immediate,
    };
    let mut w = World {
        script: Vec::new(),
        client_rng: Rec::new("client", [0xc1; 32]),
        counselor_rng: Rec::new("counselor", [0xc0; 32]),
        export_rng: Rec::new("export", [0xe0; 32]),
        key: StorageKey::new(STORAGE_KEY),
        wire: Vec::new(),
        last_plain: [Vec::new(), Vec::new()],
    };
    let mut endpoints = Vec::new();
    for who in [1usize, 0] {
        let cert = SenderCertificate::issue(
            &server,
            &SenderClaims {
                address: names[who],
                device_id: 1,
                identity: identities[who].public(),
                role: roles[who],
                display_name: None,
            },
            sender_expires,
        )
        .unwrap();
        let rng = if who == 0 {
            &mut w.client_rng
        } else {
            &mut w.counselor_rng
        };
        let e = Endpoint::new(
            rng,
            T0,
            identities[who].clone(),
            Address::new(names[who]).unwrap(),
            cert,
            roots.clone(),
            config,
        )
        .unwrap();
        let name = ["client", "counselor"][who];
        w.step(
            who,
            format!(
                "{name} = Endpoint::new({name}_rng, {}, {name}_identity, {:?}, {name}_certificate, roots, config)",
                T0.as_millis(),
                String::from_utf8_lossy(names[who])
            ),
        );
        endpoints.push((who, e));
    }
    let (_, mut client) = endpoints.pop().unwrap();
    let (_, mut counselor) = endpoints.pop().unwrap();
    w.drain(1, &mut counselor);
    w.drain(0, &mut client);

    let at = |s: u64| T0.saturating_add(Duration::from_secs(s));
    let bundles = counselor.published_bundles();
    assert_eq!(bundles.one_time.len(), 100);
    // docs/endpoint.md, "Prekey maintenance": ids and pairing of a new endpoint's bundles.
    let shape = |b: &[u8]| {
        let certified = confide::CertifiedBundle::from_bytes(b).unwrap();
        let b = certified.bundle();
        (
            b.signed_prekey_id(),
            b.kem_prekey_id(),
            b.one_time_prekey_id(),
        )
    };
    assert_eq!(shape(&bundles.one_time[0]), (1, 103, Some(3)));
    assert_eq!(shape(&bundles.one_time[39]), (1, 142, Some(42)));
    assert_eq!(shape(&bundles.one_time[40]), (1, 2, Some(43)));
    assert_eq!(shape(&bundles.one_time[99]), (1, 2, Some(102)));
    assert_eq!(shape(&bundles.last_resort), (1, 2, None));
    let bundle = bundles.one_time[0].clone();
    let conversation = client
        .start_conversation(
            &mut w.client_rng,
            at(1),
            Address::new(names[1]).unwrap(),
            &bundle,
            ExpectedIdentity::TrustOnFirstUse,
        )
        .unwrap()
        .conversation;
    w.step(
        0,
        format!(
            "c = client.start_conversation(client_rng, {}, \"counselor-1\", counselor.published_bundles().one_time[0], TrustOnFirstUse)",
            at(1).as_millis()
        ),
    );
    w.drain(0, &mut client);
    let text = "Hello, is anyone there?";
    client
        .send(&mut w.client_rng, at(2), conversation, text.as_bytes())
        .unwrap();
    w.step(
        0,
        format!(
            "client.send(client_rng, {}, c, {text:?})",
            at(2).as_millis()
        ),
    );
    w.drain(0, &mut client);
    let text_frame = w.wire.len() - 1;
    let client_state_before_ack = w.last_plain[0].clone();
    w.deliver(1, &mut counselor, text_frame, at(3));
    let ack_frame = w.wire.len() - 1;
    assert_eq!(w.wire[ack_frame].1, "client-1");

    // The ack carries the transport id of the text's frame (docs/endpoint.md).
    let Frame::Data { id: text_id, .. } = Frame::from_bytes(&w.wire[text_frame].2).unwrap() else {
        unreachable!()
    };
    let Frame::Data { payload, .. } = Frame::from_bytes(&w.wire[ack_frame].2).unwrap() else {
        unreachable!()
    };
    let opened = confide_sealed::open(&identities[0], &roots, at(4), &payload).unwrap();
    let (store, record, peer) = store_and_first_record(&client_state_before_ack);
    let mut store = PreKeyStore::from_bytes(&store).unwrap();
    // Version 9: the session record's compact form, our identity and the peer's left out.
    let own = store.identity().public();
    let peer = confide_crypto::identity::IdentityPublicKey::from_bytes(&peer).unwrap();
    let mut record = SessionRecord::from_bytes_compact(
        &record,
        confide_session::KnownIdentities {
            local: &own,
            remote: &peer,
        },
    )
    .unwrap();
    let content = record
        .decrypt(
            &mut store,
            // While unconfirmed, the counselor's delivery token precedes the session message
            // (payload kind 0x21: version, kind, 16-byte token; docs/endpoint.md).
            if opened.payload.get(1) == Some(&confide::consts::KIND_TOKEN_AND_SESSION) {
                &opened.payload[18..]
            } else {
                &opened.payload[..]
            },
            at(4),
            IdentityChangePolicy::Refuse,
        )
        .unwrap();
    let ack = ContentFrame::decode(&content.plaintext[..]).unwrap();
    let Body::Ack { ids } = ack.body else {
        panic!("not an ack: {:?}", ack.body)
    };
    assert_eq!(ids.len(), 1);
    assert_eq!(ids[0].to_bytes(), *text_id.as_bytes());

    w.deliver(0, &mut client, ack_frame, at(4));
    let counselor_conversation: ConversationId = counselor.conversations()[0];
    let reply = "Hello. I am here; take your time.";
    counselor
        .send(
            &mut w.counselor_rng,
            at(5),
            counselor_conversation,
            reply.as_bytes(),
        )
        .unwrap();
    w.step(
        1,
        format!(
            "counselor.send(counselor_rng, {}, counselor.conversations()[0], {reply:?})",
            at(5).as_millis()
        ),
    );
    w.drain(1, &mut counselor);
    let reply_frame = w.wire.len() - 1;
    w.deliver(0, &mut client, reply_frame, at(6));
    let reply_ack = w.wire.len() - 1;
    w.deliver(1, &mut counselor, reply_ack, at(7));

    // Final exports, and decode -> re-encode identity.
    let mut states = Vec::new();
    for (who, e) in [(0usize, &mut client), (1, &mut counselor)] {
        let name = ["client", "counselor"][who];
        let blob = e
            .export_state(&mut w.export_rng, &w.key, name.as_bytes())
            .unwrap();
        let draws = std::mem::take(&mut w.export_rng.draws);
        w.script.push(json!({
            "call": format!("{name}_blob = {name}.export_state(export_rng, storage_key, slot = \"{name}\")"),
            "rng": "export",
            "draws": runs(&draws),
        }));
        let plain = storage::open(&w.key, StateKind::Endpoint, name.as_bytes(), &blob)
            .unwrap()
            .to_vec();
        let mut imported = Endpoint::import_state(&w.key, name.as_bytes(), &blob).unwrap();
        let again = imported
            .export_state(
                &mut ChaCha20Rng::from_seed([0; 32]),
                &w.key,
                name.as_bytes(),
            )
            .unwrap();
        assert_eq!(
            &storage::open(&w.key, StateKind::Endpoint, name.as_bytes(), &again).unwrap()[..],
            &plain[..],
            "{name}: import then export gives the same state"
        );
        states.push(json!({
            "name": name,
            "blob_len": blob.len(),
            "blob": hex::encode(&blob),
            "state_len": plain.len(),
            "state": hex::encode(&plain),
        }));
    }
    let generated = json!({
        "description": "Endpoint state export (docs/endpoint.md, Stored state): a client and a \
            counselor run the script below; states holds each side's final export_state blob \
            (CFDS version 2, kind 4, under storage_key, slot context = the side's name as bytes, spec.md section 11) and its plaintext. Decoding the \
            plaintext and encoding it again gives the same bytes. wire lists every frame \
            transmitted, in order.",
        "rng": "Every RNG is ChaCha20Rng::from_seed(seed) (the ChaCha20 keystream of the seed, \
            spec.md section 13). draws lists the bytes each call drew from its RNG as \
            [size, count] runs, in order.",
        "seeds": {
            "client": hex::encode([0xc1u8; 32]),
            "counselor": hex::encode([0xc0u8; 32]),
            "export": hex::encode([0xe0u8; 32]),
        },
        "keys": "No RNG: root = SigningKey::from_seed([0x01; 32]) under root key id 1; server \
            signing key = SigningKey::from_seed([0x02; 32]), server key id 7, server certificate \
            expires at server_certificate_expires_at_ms; client identity = \
            IdentityKeyPair::from_secret_bytes([0x0a; 64]), counselor identity = ([0x0c; 64]); \
            sender certificates: address \"client-1\" / \"counselor-1\", device 1, role Client / \
            Counselor, no display name, expiring at sender_certificate_expires_at_ms. config: \
            org UNRESTRICTED, initial retention Off, persistence Required, acknowledgements Immediate.",
        "server_certificate_expires_at_ms": server_expires.as_millis(),
        "sender_certificate_expires_at_ms": sender_expires.as_millis(),
        "storage_key": hex::encode(STORAGE_KEY),
        "script": w.script,
        "wire": w.wire.iter().map(|(from, to, f)| json!({
            "from": from,
            "to": to,
            "frame": hex::encode(f),
        })).collect::<Vec<_>>(),
        "states": states,
    });
    vectors::check_json("endpoint/state.json", &generated);
}
