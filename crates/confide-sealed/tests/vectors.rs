//! Deterministic test vectors in docs/test-vectors/sealed/: regenerated and compared.
//!
//! Set `CONFIDE_REGENERATE_VECTORS=1` to rewrite the file after a deliberate format change.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;

use chacha20::ChaCha20Rng;
use confide_sealed::{DeliveryToken, ProfileKey, TrustRoots, open, seal};
use confide_test_support::sealed_fixture::*;
use confide_test_support::vectors;
use rand_core::SeedableRng;
use serde_json::{Value, json};

fn vectors_path() -> PathBuf {
    vectors::path("sealed/vectors.json")
}

fn generate() -> Value {
    let cert = sender_certificate();
    let sender = sender();
    let recipient = recipient();
    let envelopes: Vec<Value> = [
        (0x51u8, Vec::new()),
        (
            0x52,
            (0..1024u32).map(|i| (i % 256) as u8).collect::<Vec<u8>>(),
        ),
    ]
    .into_iter()
    .map(|(seed, payload)| {
        let env = seal(
            &mut ChaCha20Rng::from_seed([seed; 32]),
            &sender,
            &cert,
            &recipient.public(),
            &payload,
        )
        .unwrap();
        json!({
            "rng": format!("ChaCha20Rng::from_seed([0x{seed:02x}; 32])"),
            "call": "seal(rng, sender_identity, sender_certificate, recipient_identity_public, payload); \
                the only draw is 32 bytes for the ephemeral X25519 secret e (the first 32 bytes of the \
                ChaCha20 keystream of the seed, spec.md section 13)",
            "payload": hex::encode(&payload),
            "envelope": hex::encode(&env),
        })
    })
    .collect();
    let profile_key = ProfileKey::new([0x61; 32]);
    let token = DeliveryToken::derive(&profile_key).unwrap();
    let mut config = roots();
    config.revoke_server_key(0xDEAD_0001).unwrap();
    json!({
        "description": "Confide sealed sender v1 test vectors. Keys come from fixed seeds: SigningKey::from_seed, IdentityKeyPair::from_secret_bytes (signing seed || X25519 secret). See docs/sealed-sender.md.",
        "now_ms": NOW.as_millis(),
        "server_certificate_expires_at_ms": NOW.saturating_add(SERVER_LIFETIME).as_millis(),
        "sender_certificate_expires_at_ms": NOW.saturating_add(SENDER_LIFETIME).as_millis(),
        "certificates": "server_certificate = ServerCertificate::issue(root_key_id, root signing key, \
            server_key_id, server verifying key, server_certificate_expires_at_ms); \
            sender_certificate = SenderCertificate::issue(ServerKey(server signing key, server_certificate), \
            claims { address, device_id, identity, role, display_name }, sender_certificate_expires_at_ms). \
            Envelopes open at now_ms (both certificates valid: now < expires_at).",
        "root_key_id": ROOT_KEY_ID,
        "root_signing_seed": hex::encode([0x01u8; 32]),
        "root_public_key": hex::encode(root_key().verifying_key().to_bytes()),
        "server_key_id": SERVER_KEY_ID,
        "server_signing_seed": hex::encode([0x02u8; 32]),
        "server_certificate": hex::encode(cert.server_certificate().as_bytes()),
        "sender_identity_secret": hex::encode([0x03u8; 64]),
        "sender_identity_public": hex::encode(sender.public().to_bytes()),
        "sender_address": hex::encode(SENDER_ADDRESS),
        "sender_device_id": 7,
        "sender_role": "Counselor",
        "sender_display_name": SENDER_NAME,
        "sender_certificate": hex::encode(cert.as_bytes()),
        "recipient_identity_secret": hex::encode([0x04u8; 64]),
        "recipient_identity_public": hex::encode(recipient.public().to_bytes()),
        "envelopes": envelopes,
        "profile_key": hex::encode(profile_key.expose()),
        "delivery_token": hex::encode(token.expose()),
        "token_verifier": hex::encode(token.verifier().to_bytes()),
        "trust_config_with_revocation_of_0xdead0001": hex::encode(config.to_bytes()),
    })
}

#[test]
fn vectors_match_the_code() {
    let generated = generate();
    vectors::check_json("sealed/vectors.json", &generated);
}

#[test]
fn stored_envelopes_open_with_the_stored_keys() {
    let stored: Value =
        serde_json::from_str(&std::fs::read_to_string(vectors_path()).unwrap()).unwrap();
    let recipient_secret =
        hex::decode(stored["recipient_identity_secret"].as_str().unwrap()).unwrap();
    let recipient = confide_crypto::identity::IdentityKeyPair::from_secret_bytes(
        &confide_crypto::secret::SecretBytes::from_slice(&recipient_secret).unwrap(),
    );
    let mut roots = TrustRoots::new();
    let root_key: [u8; 32] = hex::decode(stored["root_public_key"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    roots
        .add_root(
            u32::try_from(stored["root_key_id"].as_u64().unwrap()).unwrap(),
            confide_crypto::signing::VerifyingKey::from_bytes(&root_key).unwrap(),
        )
        .unwrap();
    let now = confide_crypto::Timestamp::from_millis(stored["now_ms"].as_u64().unwrap());
    let sender_public = hex::decode(stored["sender_identity_public"].as_str().unwrap()).unwrap();
    for e in stored["envelopes"].as_array().unwrap() {
        let env = hex::decode(e["envelope"].as_str().unwrap()).unwrap();
        let opened = open(&recipient, &roots, now, &env).unwrap();
        assert_eq!(hex::encode(&opened.payload), e["payload"].as_str().unwrap());
        assert_eq!(opened.sender.identity().to_bytes().to_vec(), sender_public);
    }
    let token_verifier = hex::decode(stored["token_verifier"].as_str().unwrap()).unwrap();
    let token = hex::decode(stored["delivery_token"].as_str().unwrap()).unwrap();
    let verifier = confide_sealed::TokenVerifier::from_bytes(token_verifier.try_into().unwrap());
    assert!(confide_sealed::relay_check(&verifier, &token));
}

#[test]
fn stored_expiry_times_are_the_certificates_own() {
    let stored: Value =
        serde_json::from_str(&std::fs::read_to_string(vectors_path()).unwrap()).unwrap();
    let hex_field = |k: &str| hex::decode(stored[k].as_str().unwrap()).unwrap();
    let server = hex_field("server_certificate");
    // Server certificate: expires_at at offset 41 (sealed-sender.md §3).
    assert_eq!(
        u64::from_be_bytes(server[41..49].try_into().unwrap()),
        stored["server_certificate_expires_at_ms"].as_u64().unwrap()
    );
    // Sender certificate: expires_at just before the embedded server certificate (§4).
    let sender = hex_field("sender_certificate");
    let at = sender.len() - 64 - 113 - 8;
    assert_eq!(
        u64::from_be_bytes(sender[at..at + 8].try_into().unwrap()),
        stored["sender_certificate_expires_at_ms"].as_u64().unwrap()
    );
    assert_eq!(&sender[at + 8..at + 8 + 113], &server[..]);
}

fn symmetric_vectors_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/test-vectors/sealed/symmetric.json")
}

fn generate_symmetric() -> Value {
    use confide_crypto::secret::EnvelopeSecret;
    use confide_sealed::{SymmetricSealer, TagWindow, seal_starting_epoch};
    let cert = sender_certificate();
    let (public_key_envelope, seed) = seal_starting_epoch(
        &mut ChaCha20Rng::from_seed([0x51; 32]),
        &sender(),
        &cert,
        &recipient().public(),
        &[],
    )
    .unwrap();
    let opened = open(&recipient(), &roots(), NOW, &public_key_envelope).unwrap();
    assert_eq!(opened.epoch_seed, seed);
    let secret = EnvelopeSecret::new([0x71; 32]);
    // The epoch recomputed from the primitives (§9.1-§9.3), independently of the code.
    let reference = crate::symmetric::ReferenceEpoch::new(seed.expose(), secret.expose());
    let mut sealer = SymmetricSealer::new(&seed, &secret, NOW).unwrap();
    let accept_until = NOW.saturating_add(SENDER_LIFETIME);
    let mut window = TagWindow::new(&seed, &secret, accept_until, SERVER_KEY_ID).unwrap();
    let fresh_window = window.to_bytes();
    let payloads: [&[u8]; 3] = [b"", b"I'm here. Take your time.", &[0xab; 100]];
    let mut envelopes = Vec::new();
    let mut sealed = Vec::new();
    for (i, payload) in payloads.iter().enumerate() {
        let index = i as u64;
        // The third carries its last 64 bytes unencrypted (as the endpoint carries a session
        // message's ciphertext), the others none.
        let clear_len = if i == 2 { 64 } else { 0 };
        let envelope = sealer
            .seal_with_clear_suffix(NOW, payload, clear_len)
            .unwrap();
        // The intermediate values, recomputed from the primitives, must give these bytes.
        let (expected, tag, nonce) = reference.envelope(index, payload, clear_len);
        assert_eq!(envelope, expected, "index {index}");
        envelopes.push(json!({
            "index": index,
            "payload": hex::encode(payload),
            "clear_len": clear_len,
            "tag": hex::encode(tag),
            "nonce": hex::encode(nonce),
            "envelope": hex::encode(&envelope),
        }));
        sealed.push(envelope);
    }
    // The recipient receives indices 0 and 2 (1 is late).
    for i in [0, 2] {
        window.open(NOW, &TrustRoots::new(), &sealed[i]).unwrap();
    }
    json!({
        "description": "Confide symmetric sealed sender (docs/sealed-sender.md section 9). The \
            public-key envelope is the first of vectors.json (seed 0x51, empty payload) made \
            with seal_starting_epoch; epoch_seed is the second half of its static-layer HKDF \
            output (what the recipient gets in Opened::epoch_seed). envelope_secret stands for \
            Session::envelope_secret of the conversation's session (spec.md section 4). The \
            sender is SymmetricSealer::new(epoch_seed, envelope_secret, now_ms); the recipient's \
            window is TagWindow::new(epoch_seed, envelope_secret, accept_until_ms, server_key_id).",
        "now_ms": NOW.as_millis(),
        "public_key_envelope": hex::encode(&public_key_envelope),
        "epoch_seed": hex::encode(seed.expose()),
        "envelope_secret": hex::encode(secret.expose()),
        "tag_key": hex::encode(reference.tag_key),
        "message_root": hex::encode(reference.message_root),
        "key": hex::encode(&reference.key_iv[..32]),
        "iv": hex::encode(&reference.key_iv[32..]),
        "envelopes": envelopes,
        "accept_until_ms": accept_until.as_millis(),
        "server_key_id": SERVER_KEY_ID,
        "window_fresh": hex::encode(&fresh_window[..]),
        "window_after_indices_0_and_2": hex::encode(&window.to_bytes()[..]),
        "window_next_index": window.next_index(),
    })
}

#[test]
fn symmetric_vectors_match_the_code() {
    let generated = generate_symmetric();
    let path = symmetric_vectors_path();
    if std::env::var_os("CONFIDE_REGENERATE_VECTORS").is_some_and(|v| v == "1") {
        let tmp = path.with_extension("json.tmp");
        std::fs::write(
            &tmp,
            serde_json::to_string_pretty(&generated).unwrap() + "\n",
        )
        .unwrap();
        std::fs::rename(&tmp, &path).unwrap();
    }
    let stored: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(
        stored,
        generated,
        "the code's output no longer matches {}",
        path.display()
    );
    // The stored window reads back and accepts the late index 1, once.
    let bytes = hex::decode(stored["window_after_indices_0_and_2"].as_str().unwrap()).unwrap();
    let mut window = confide_sealed::TagWindow::from_bytes(&bytes).unwrap();
    let late = hex::decode(stored["envelopes"][1]["envelope"].as_str().unwrap()).unwrap();
    let payload = window.open(NOW, &TrustRoots::new(), &late).unwrap();
    assert_eq!(
        hex::encode(&payload[..]),
        stored["envelopes"][1]["payload"].as_str().unwrap()
    );
    assert!(window.open(NOW, &TrustRoots::new(), &late).is_err());
}
