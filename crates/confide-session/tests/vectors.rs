//! Deterministic test vectors in `docs/test-vectors/session/`: regenerated from fixed seeds
//! and compared with the files. Set `CONFIDE_REGENERATE_VECTORS=1` to rewrite them after an
//! intended change (and review the diff).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;

use chacha20::ChaCha20Rng;
use confide_crypto::{
    Timestamp,
    identity::IdentityKeyPair,
    kdf::{hkdf_sha256, hmac_sha256, labels},
};
use confide_session::{
    DecryptError, ExpectedIdentity, IdentityChangePolicy, PreKeyBundle, PreKeyStore, SafetyNumber,
    Session, SessionRecord, kdf_vector,
};
use rand_core::SeedableRng;
use serde_json::{Value, json};

const NOW: Timestamp = Timestamp::from_millis(1_700_000_000_000);
const ALICE_SEED: [u8; 32] = [0xa1; 32];
const BOB_SEED: [u8; 32] = [0xb0; 32];

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/test-vectors/session")
}

/// Compares `value` with the stored file, or rewrites it when asked to.
fn check(name: &str, value: &Value) {
    let path = dir().join(name);
    let text = serde_json::to_string_pretty(value).unwrap() + "\n";
    if std::env::var_os("CONFIDE_REGENERATE_VECTORS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(dir()).unwrap();
        std::fs::write(&path, &text).unwrap();
        return;
    }
    let stored = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with CONFIDE_REGENERATE_VECTORS=1",
            path.display()
        )
    });
    let stored: Value = serde_json::from_str(&stored).unwrap();
    assert!(
        stored == *value,
        "{} differs from what the code produces now; if the change is intended, \
         regenerate with CONFIDE_REGENERATE_VECTORS=1 and review the diff",
        path.display()
    );
}

fn hex32(b: &[u8; 32]) -> String {
    hex::encode(b)
}

#[test]
fn kdf_chain_vectors() {
    let cases = [([0u8; 32], [1u8; 32], 3usize), ([0x5a; 32], [0xc3; 32], 5)];
    let mut out = Vec::new();
    for (root, dh, steps) in cases {
        let chain = kdf_vector(root, dh, steps);
        assert_eq!(chain.len(), steps + 1);
        // Independent check of the documented formulas.
        let mut okm = [0u8; 64];
        hkdf_sha256(Some(&root), &dh, labels::ROOT_STEP, &mut okm).unwrap();
        assert_eq!(chain[0].0[..], okm[..32], "root key = HKDF(rk, dh)[..32]");
        assert_eq!(chain[0].1[..], okm[32..], "chain key = HKDF(rk, dh)[32..]");
        let mut ck = chain[0].1;
        for (mk, next) in &chain[1..] {
            assert_eq!(*mk, *hmac_sha256(&ck, &[0x01]), "mk = HMAC(ck, 0x01)");
            assert_eq!(*next, *hmac_sha256(&ck, &[0x02]), "ck' = HMAC(ck, 0x02)");
            ck = *next;
        }
        out.push(json!({
            "root_key": hex32(&root),
            "dh_output": hex32(&dh),
            "steps": steps,
            "new_root_key": hex32(&chain[0].0),
            "chain_key_0": hex32(&chain[0].1),
            "chain": chain[1..].iter().enumerate().map(|(i, (mk, ck))| json!({
                "index": i,
                "message_key": hex32(mk),
                "next_chain_key": hex32(ck),
            })).collect::<Vec<_>>(),
        }));
    }
    check(
        "kdf_chains.json",
        &json!({
            "description": "Double Ratchet KDF chains: (new_root_key || chain_key_0) = \
                HKDF-SHA256(salt = root_key, ikm = dh_output, info = \"Confide_v1_RootStep\", 64); \
                message_key = HMAC-SHA256(chain_key, 0x01); next_chain_key = HMAC-SHA256(chain_key, 0x02).",
            "cases": out,
        }),
    );
}

/// Alice and Bob built from their seeds: Bob's store (one one-time X25519 and one one-time
/// KEM prekey), Alice's session from Bob's first bundle.
struct Setup {
    alice_rng: ChaCha20Rng,
    bob_rng: ChaCha20Rng,
    alice: IdentityKeyPair,
    alice_store: PreKeyStore,
    bob_store: PreKeyStore,
    bundle: Vec<u8>,
    a: SessionRecord,
    b: SessionRecord,
}

fn setup() -> Setup {
    let mut bob_rng = ChaCha20Rng::from_seed(BOB_SEED);
    let bob = IdentityKeyPair::generate(&mut bob_rng);
    let mut bob_store = PreKeyStore::new(bob, &mut bob_rng, NOW);
    bob_store.generate_one_time_prekeys(&mut bob_rng, 1);
    bob_store.generate_one_time_kem_prekeys(&mut bob_rng, 1);
    let bundle = bob_store.bundles()[0].to_bytes();

    let mut alice_rng = ChaCha20Rng::from_seed(ALICE_SEED);
    let alice = IdentityKeyPair::generate(&mut alice_rng);
    let alice_store = PreKeyStore::new(alice.clone(), &mut alice_rng, NOW);
    let verified = PreKeyBundle::from_bytes(&bundle)
        .unwrap()
        .verify(ExpectedIdentity::TrustOnFirstUse, &alice.public())
        .unwrap();
    let session = Session::initiate(&mut alice_rng, &alice, &verified).unwrap();
    Setup {
        alice_rng,
        bob_rng,
        alice,
        alice_store,
        bob_store,
        bundle,
        a: SessionRecord::with_session(session),
        b: SessionRecord::new(),
    }
}

#[test]
fn session_setup_vector() {
    let mut s = setup();
    let first_text = "Hello, I would like to talk to a counselor.";
    let first =
        s.a.encrypt(&mut s.alice_rng, first_text.as_bytes())
            .unwrap();
    let got =
        s.b.decrypt(&mut s.bob_store, &first, NOW, IdentityChangePolicy::Refuse)
            .unwrap();
    assert_eq!(&got.plaintext[..], first_text.as_bytes());
    assert!(got.new_session);
    let reply_text = "Hello. I am here; take your time.";
    let reply = s.b.encrypt(&mut s.bob_rng, reply_text.as_bytes()).unwrap();
    let got_reply =
        s.a.decrypt(
            &mut s.alice_store,
            &reply,
            NOW,
            IdentityChangePolicy::Refuse,
        )
        .unwrap();
    assert_eq!(&got_reply.plaintext[..], reply_text.as_bytes());
    let bob_public = s.bob_store.identity().public();
    let safety = SafetyNumber::new(&s.alice.public(), &bob_public);
    check(
        "session_setup.json",
        &json!({
            "description": "Full session setup from fixed seeds. Bob: ChaCha20Rng(bob_seed) \
                generates his identity, PreKeyStore::new (signed prekey, last-resort KEM prekey), \
                one one-time X25519 prekey, one one-time ML-KEM prekey; the bundle is bundles()[0]. \
                Alice: ChaCha20Rng(alice_seed) generates her identity, PreKeyStore::new, then \
                Session::initiate and encrypt. Bob replies with his rng.",
            "now_ms": NOW.as_millis(),
            "alice_seed": hex::encode(ALICE_SEED),
            "bob_seed": hex::encode(BOB_SEED),
            "alice_identity": hex::encode(s.alice.public().to_bytes()),
            "bob_identity": hex::encode(s.bob_store.identity().public().to_bytes()),
            "bundle": hex::encode(&s.bundle),
            "first_message": hex::encode(&first),
            "first_plaintext": first_text,
            "reply_message": hex::encode(&reply),
            "reply_plaintext": reply_text,
            "safety_number": safety.digits(),
        }),
    );
}

type Sent = Vec<(String, Vec<u8>, String)>;

fn send(s: &mut Setup, messages: &mut Sent, who: &str, n: usize) {
    for _ in 0..n {
        let id = format!(
            "{who}{}",
            messages.iter().filter(|m| m.0.starts_with(who)).count()
        );
        let text = format!(
            "{id}: message from {}",
            if who == "a" { "Alice" } else { "Bob" }
        );
        let bytes = if who == "a" {
            s.a.encrypt(&mut s.alice_rng, text.as_bytes()).unwrap()
        } else {
            s.b.encrypt(&mut s.bob_rng, text.as_bytes()).unwrap()
        };
        messages.push((id, bytes, text));
    }
}

fn deliver(s: &mut Setup, messages: &Sent, deliveries: &mut Vec<Value>, id: &str) {
    let (_, bytes, text) = messages.iter().find(|m| m.0 == id).unwrap();
    let res = if id.starts_with('a') {
        s.b.decrypt(&mut s.bob_store, bytes, NOW, IdentityChangePolicy::Refuse)
    } else {
        s.a.decrypt(&mut s.alice_store, bytes, NOW, IdentityChangePolicy::Refuse)
    };
    let outcome = match res {
        Ok(got) => {
            assert_eq!(&got.plaintext[..], text.as_bytes());
            json!({ "id": id, "plaintext": text })
        }
        Err(e) => {
            assert_eq!(e, DecryptError::Duplicate, "{id}");
            json!({ "id": id, "error": "Duplicate" })
        }
    };
    deliveries.push(outcome);
}

#[test]
fn reordered_conversation_vector() {
    let mut s = setup();
    let mut m = Sent::new();
    let mut d = Vec::new();
    // Alice writes three prekey messages; Bob sees the last first.
    send(&mut s, &mut m, "a", 3);
    deliver(&mut s, &m, &mut d, "a2");
    deliver(&mut s, &m, &mut d, "a0");
    // Bob answers twice; Alice gets them in reverse order.
    send(&mut s, &mut m, "b", 2);
    deliver(&mut s, &m, &mut d, "b1");
    deliver(&mut s, &m, &mut d, "b0");
    // Alice's new chain overtakes her old one.
    send(&mut s, &mut m, "a", 2);
    deliver(&mut s, &m, &mut d, "a4");
    deliver(&mut s, &m, &mut d, "a1");
    deliver(&mut s, &m, &mut d, "a3");
    // A repeat, then Bob's next turn.
    deliver(&mut s, &m, &mut d, "a0");
    send(&mut s, &mut m, "b", 1);
    deliver(&mut s, &m, &mut d, "b2");
    assert_eq!(d.iter().filter(|x| x.get("error").is_some()).count(), 1);
    check(
        "conversation.json",
        &json!({
            "description": "A scripted conversation continuing session_setup.json's setup \
                (same seeds, no messages before): messages in sending order (hex), then the \
                delivery order with each expected plaintext or error. a* go Alice -> Bob, b* go \
                Bob -> Alice; a0..a2 are prekey messages.",
            "messages": m.iter().map(|(id, bytes, _)| json!({
                "id": id,
                "hex": hex::encode(bytes),
            })).collect::<Vec<_>>(),
            "deliveries": d,
        }),
    );
}

/// The encrypted storage blob (spec §11): fixed key, salt (from a seeded random source),
/// kind, slot context and state, with the intermediate values a reimplementation needs.
#[test]
fn storage_blob_vector() {
    use confide_crypto::kdf::sha256;
    use confide_session::{
        StateError,
        storage::{self, StateKind, StorageKey},
    };
    let key = StorageKey::new([0x5a; 32]);
    let context = b"conversation-7";
    let state = b"example session record bytes";
    let mut rng = ChaCha20Rng::from_seed([0x57; 32]);
    let blob = storage::seal(&mut rng, &key, StateKind::SessionRecord, context, state);
    let slot = sha256(&[labels::STATE_SLOT, context]);
    let opened = storage::open(&key, StateKind::SessionRecord, context, &blob).unwrap();
    assert_eq!(&opened[..], state);
    assert_eq!(
        storage::open(&key, StateKind::SessionRecord, b"conversation-8", &blob).unwrap_err(),
        StateError::Tampered
    );
    check(
        "storage.json",
        &json!({
            "description": "An encrypted state blob (spec.md section 11, version 2): \
                blob = \"CFDS\" || 0x02 || kind || salt[32] || key_check[16] || \
                ChaCha20-Poly1305(k, 0^12, aad = blob[0..38] || slot, state), \
                slot = SHA-256(\"Confide_v1_StateSlot\" || context). The same blob must \
                fail to open (AEAD failure) for any other context.",
            "storage_key": hex::encode([0x5a; 32]),
            "kind": StateKind::SessionRecord.to_byte(),
            "context_hex": hex::encode(context),
            "state_hex": hex::encode(state),
            "salt": hex::encode(&blob[6..38]),
            "slot": hex::encode(slot),
            "aad": hex::encode([&blob[..38], &slot[..]].concat()),
            "blob": hex::encode(&blob),
        }),
    );
}
