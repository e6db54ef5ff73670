//! Deterministic test vectors in `docs/test-vectors/session/`: regenerated from fixed seeds
//! and compared with the files. Set `CONFIDE_REGENERATE_VECTORS=1` to rewrite them after an
//! intended change (and review the diff).
//!
//! Every random value comes from a [`Rec`]: a `ChaCha20Rng` that records how many bytes each
//! call drew. The files carry those draws next to each call (`script`), so the RNG order
//! documented in `docs/spec.md` §13 is checked here too.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use chacha20::ChaCha20Rng;
use confide_crypto::{
    Timestamp,
    identity::IdentityKeyPair,
    kdf::{hkdf_sha256, hmac_sha256, labels},
};
use confide_session::{
    DecryptError, ExpectedIdentity, IdentityChangePolicy, PreKeyBundle, PreKeyStore, SafetyNumber,
    Session, SessionMessage, SessionRecord, kdf_vector,
    storage::{self, StateKind, StorageKey},
};
use confide_test_support::vectors;
use rand_core::SeedableRng;
use serde_json::{Value, json};

const NOW: Timestamp = Timestamp::from_millis(1_700_000_000_000);
const ALICE_SEED: [u8; 32] = [0xa1; 32];
const BOB_SEED: [u8; 32] = [0xb0; 32];

/// A `ChaCha20Rng::from_seed(seed)` that records the size of every draw (spec.md §13).
use confide_test_support::vectors::RecordingRng as Rec;

/// The calls that made a vector file, in order, each with the RNG it used and the byte
/// counts it drew from it.
#[derive(Default)]
struct Script(Vec<Value>);

impl Script {
    /// Records `call`, which just ran with `rng` (or with no RNG).
    fn step(&mut self, rng: Option<&mut Rec>, call: impl Into<String>) {
        let mut entry = json!({ "call": call.into() });
        if let Some(rng) = rng {
            entry["rng"] = json!(rng.name);
            entry["draws"] = json!(std::mem::take(&mut rng.draws));
        }
        self.0.push(entry);
    }
}

/// Compares `value` with the stored file, or rewrites it when asked to.
fn check(name: &str, value: &Value) {
    vectors::check_json(&format!("session/{name}"), value);
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
    alice_rng: Rec,
    bob_rng: Rec,
    alice: IdentityKeyPair,
    alice_store: PreKeyStore,
    bob_store: PreKeyStore,
    bundle: Vec<u8>,
    a: SessionRecord,
    b: SessionRecord,
    script: Script,
}

const RNG_NOTE: &str = "ChaCha20Rng::from_seed(seed) (rand_chacha-compatible: the ChaCha20 \
    keystream, 20 rounds, key = seed, 64-bit block counter from 0, stream/nonce 0), read as one \
    byte stream; every draw takes the next bytes. script lists every call in order with the RNG \
    it used and the byte counts it drew (spec.md section 13).";

fn setup() -> Setup {
    let mut script = Script::default();
    let mut bob_rng = Rec::new("bob", BOB_SEED);
    let bob = IdentityKeyPair::generate(&mut bob_rng);
    script.step(
        Some(&mut bob_rng),
        "bob = IdentityKeyPair::generate(bob_rng)",
    );
    let mut bob_store = PreKeyStore::new(bob, &mut bob_rng, NOW);
    script.step(
        Some(&mut bob_rng),
        "bob_store = PreKeyStore::new(bob, bob_rng, now_ms)",
    );
    bob_store.generate_one_time_prekeys(&mut bob_rng, 1);
    script.step(
        Some(&mut bob_rng),
        "bob_store.generate_one_time_prekeys(bob_rng, 1)",
    );
    bob_store.generate_one_time_kem_prekeys(&mut bob_rng, 1);
    script.step(
        Some(&mut bob_rng),
        "bob_store.generate_one_time_kem_prekeys(bob_rng, 1)",
    );
    let bundle = bob_store.bundles()[0].to_bytes();
    script.step(None, "bundle = bob_store.bundles()[0]");

    let mut alice_rng = Rec::new("alice", ALICE_SEED);
    let alice = IdentityKeyPair::generate(&mut alice_rng);
    script.step(
        Some(&mut alice_rng),
        "alice = IdentityKeyPair::generate(alice_rng)",
    );
    let alice_store = PreKeyStore::new(alice.clone(), &mut alice_rng, NOW);
    script.step(
        Some(&mut alice_rng),
        "alice_store = PreKeyStore::new(alice, alice_rng, now_ms)",
    );
    let verified = PreKeyBundle::from_bytes(&bundle)
        .unwrap()
        .verify(ExpectedIdentity::TrustOnFirstUse, &alice.public())
        .unwrap();
    let session = Session::initiate(&mut alice_rng, &alice, &verified).unwrap();
    script.step(
        Some(&mut alice_rng),
        "a = SessionRecord::with_session(Session::initiate(alice_rng, alice, bundle verified \
         trust-on-first-use)); b = SessionRecord::new()",
    );
    Setup {
        alice_rng,
        bob_rng,
        alice,
        alice_store,
        bob_store,
        bundle,
        a: SessionRecord::with_session(session),
        b: SessionRecord::new(),
        script,
    }
}

/// `(pn, n)` of a ratchet or prekey message.
fn counters(bytes: &[u8]) -> (u32, u32) {
    let m = match SessionMessage::from_bytes(bytes).unwrap() {
        SessionMessage::Ratchet(m) => m,
        SessionMessage::PreKey(p) => p.message().clone(),
        _ => panic!("unknown message kind"),
    };
    (m.previous_chain_len(), m.index())
}

#[test]
fn session_setup_vector() {
    let mut s = setup();
    let first_text = "Hello, I would like to talk to a counselor.";
    let first =
        s.a.encrypt(&mut s.alice_rng, first_text.as_bytes())
            .unwrap();
    s.script.step(
        Some(&mut s.alice_rng),
        format!("first_message = a.encrypt(alice_rng, {first_text:?})"),
    );
    let got =
        s.b.decrypt(&mut s.bob_store, &first, NOW, IdentityChangePolicy::Refuse)
            .unwrap();
    s.script.step(
        None,
        "b.decrypt(bob_store, first_message, now_ms, Refuse) -> first_plaintext, new session",
    );
    assert_eq!(&got.plaintext[..], first_text.as_bytes());
    assert!(got.new_session);
    let reply_text = "Hello. I am here; take your time.";
    let reply = s.b.encrypt(&mut s.bob_rng, reply_text.as_bytes()).unwrap();
    s.script.step(
        Some(&mut s.bob_rng),
        format!("reply_message = b.encrypt(bob_rng, {reply_text:?})"),
    );
    let got_reply =
        s.a.decrypt(
            &mut s.alice_store,
            &reply,
            NOW,
            IdentityChangePolicy::Refuse,
        )
        .unwrap();
    s.script.step(
        None,
        "a.decrypt(alice_store, reply_message, now_ms, Refuse) -> reply_plaintext",
    );
    assert_eq!(&got_reply.plaintext[..], reply_text.as_bytes());
    // spec.md §5: the initiator's first chain and the responder's first chain (sent while it
    // had never sent before) both carry PN = 0.
    assert_eq!(counters(&first), (0, 0));
    assert_eq!(counters(&reply), (0, 0));
    let bob_public = s.bob_store.identity().public();
    let safety = SafetyNumber::new(&s.alice.public(), &bob_public);
    // spec.md §4: both sides export the same envelope secret, HKDF(SK, "Confide_v1_EnvelopeExporter").
    let alice_secret = s.a.current().unwrap().envelope_secret().unwrap();
    let bob_secret = s.b.current().unwrap().envelope_secret().unwrap();
    assert_eq!(alice_secret, bob_secret);
    check(
        "session_setup.json",
        &json!({
            "description": "Full session setup from fixed seeds. Bob: ChaCha20Rng(bob_seed) \
                generates his identity, PreKeyStore::new (signed prekey, last-resort KEM prekey), \
                one one-time X25519 prekey, one one-time ML-KEM prekey; the bundle is bundles()[0]. \
                Alice: ChaCha20Rng(alice_seed) generates her identity, PreKeyStore::new, then \
                Session::initiate and encrypt. Bob replies with his rng.",
            "rng": RNG_NOTE,
            "script": s.script.0,
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
            "envelope_secret": hex::encode(alice_secret.expose()),
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
            let b = s.a.encrypt(&mut s.alice_rng, text.as_bytes()).unwrap();
            s.script.step(
                Some(&mut s.alice_rng),
                format!("{id} = a.encrypt(alice_rng, {text:?})"),
            );
            b
        } else {
            let b = s.b.encrypt(&mut s.bob_rng, text.as_bytes()).unwrap();
            s.script.step(
                Some(&mut s.bob_rng),
                format!("{id} = b.encrypt(bob_rng, {text:?})"),
            );
            b
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
    let (who, store) = if id.starts_with('a') {
        ("b", "bob_store")
    } else {
        ("a", "alice_store")
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
    s.script.step(
        None,
        format!(
            "{who}.decrypt({store}, {id}, now_ms, Refuse) -> {}",
            outcome
                .get("error")
                .map_or("plaintext".to_string(), |e| format!("error {e}"))
        ),
    );
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
                Bob -> Alice; a0..a2 are prekey messages. script is the complete call sequence \
                (setup included) with the RNG draws of each call.",
            "rng": RNG_NOTE,
            "now_ms": NOW.as_millis(),
            "alice_seed": hex::encode(ALICE_SEED),
            "bob_seed": hex::encode(BOB_SEED),
            "script": s.script.0,
            "messages": m.iter().map(|(id, bytes, _)| json!({
                "id": id,
                "hex": hex::encode(bytes),
            })).collect::<Vec<_>>(),
            "deliveries": d,
        }),
    );
}

/// One stored state: its bytes, and the checks every reader of the file can repeat.
fn state_entry(name: &str, kind: &str, bytes: &[u8], reencoded: &[u8]) -> Value {
    assert_eq!(
        reencoded, bytes,
        "{name}: decode then encode is the identity"
    );
    json!({
        "name": name,
        "type": kind,
        "len": bytes.len(),
        "hex": hex::encode(bytes),
    })
}

fn session_entry(name: &str, s: &Session) -> Value {
    let bytes = s.to_bytes();
    let again = Session::from_bytes(&bytes).unwrap().to_bytes();
    state_entry(name, "Session", &bytes, &again)
}

fn record_entry(name: &str, r: &SessionRecord) -> Value {
    let bytes = r.to_bytes();
    let again = SessionRecord::from_bytes(&bytes).unwrap().to_bytes();
    state_entry(name, "SessionRecord", &bytes, &again)
}

fn store_entry(name: &str, st: &PreKeyStore) -> Value {
    let bytes = st.to_bytes();
    let again = PreKeyStore::from_bytes(&bytes).unwrap().to_bytes();
    state_entry(name, "PreKeyStore", &bytes, &again)
}

const STORAGE_KEY: [u8; 32] = [0x4b; 32];
const BLOB_SEED: [u8; 32] = [0x5e; 32];

/// Every stored state format (spec.md §11) from a fixed script: `Session`, `SessionRecord`
/// (with skipped keys, forks on both sides and an archived session), `PreKeyStore`, and the
/// encrypted `CFDS` blob of each kind.
#[test]
fn stored_state_vectors() {
    let mut s = setup();
    let mut states = Vec::new();
    // spec.md §5: the placeholder receiving chain is DHr = SPK_B, CKr = 0^32,
    // Nr = 0xFFFFFFFF, no fork.
    let initial = s.a.current().unwrap().to_bytes();
    let mut placeholder = s.bundle[133..165].to_vec();
    placeholder.extend_from_slice(&[0; 32]);
    placeholder.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x00]);
    assert!(
        initial
            .windows(placeholder.len())
            .any(|w| w == placeholder.as_slice()),
        "placeholder chain"
    );
    states.push(session_entry(
        "alice_session_after_initiate",
        s.a.current().unwrap(),
    ));
    states.push(store_entry("bob_store_before_first_message", &s.bob_store));

    // The first exchange.
    let first = s.a.encrypt(&mut s.alice_rng, b"first").unwrap();
    s.script.step(
        Some(&mut s.alice_rng),
        "m1 = a.encrypt(alice_rng, \"first\")",
    );
    s.b.decrypt(&mut s.bob_store, &first, NOW, IdentityChangePolicy::Refuse)
        .unwrap();
    s.script
        .step(None, "b.decrypt(bob_store, m1, now_ms, Refuse)");
    let reply = s.b.encrypt(&mut s.bob_rng, b"reply").unwrap();
    s.script
        .step(Some(&mut s.bob_rng), "m2 = b.encrypt(bob_rng, \"reply\")");
    s.a.decrypt(
        &mut s.alice_store,
        &reply,
        NOW,
        IdentityChangePolicy::Refuse,
    )
    .unwrap();
    s.script
        .step(None, "a.decrypt(alice_store, m2, now_ms, Refuse)");
    states.push(store_entry("bob_store_after_first_message", &s.bob_store));
    states.push(record_entry("alice_record_after_reply", &s.a));
    states.push(record_entry("bob_record_after_reply", &s.b));

    // Bob sends two; Alice gets only the second, one second later: one skipped key.
    let later = NOW.saturating_add(confide_crypto::Duration::from_millis(1000));
    let _m3 = s.b.encrypt(&mut s.bob_rng, b"lost for now").unwrap();
    s.script.step(
        Some(&mut s.bob_rng),
        "m3 = b.encrypt(bob_rng, \"lost for now\")",
    );
    let m4 = s.b.encrypt(&mut s.bob_rng, b"arrives").unwrap();
    s.script
        .step(Some(&mut s.bob_rng), "m4 = b.encrypt(bob_rng, \"arrives\")");
    s.a.decrypt(&mut s.alice_store, &m4, later, IdentityChangePolicy::Refuse)
        .unwrap();
    s.script.step(
        None,
        "a.decrypt(alice_store, m4, now_ms + 1000, Refuse) (m3's key is skipped, stored_at = now_ms + 1000)",
    );
    assert_eq!(s.a.current().unwrap().skipped_key_count(), 1);
    states.push(record_entry("alice_record_with_skipped_key", &s.a));

    // Alice sends (DH step), then is restored from bytes and sends again: a fork.
    let m5 = s.a.encrypt(&mut s.alice_rng, b"before restore").unwrap();
    s.script.step(
        Some(&mut s.alice_rng),
        "m5 = a.encrypt(alice_rng, \"before restore\")",
    );
    s.a = SessionRecord::from_bytes(&s.a.to_bytes()).unwrap();
    s.script
        .step(None, "a = SessionRecord::from_bytes(a.to_bytes())");
    let m6 = s.a.encrypt(&mut s.alice_rng, b"after restore").unwrap();
    s.script.step(
        Some(&mut s.alice_rng),
        "m6 = a.encrypt(alice_rng, \"after restore\") (forks the sending chain)",
    );
    states.push(record_entry("alice_record_forked_sending_chain", &s.a));
    for (name, m) in [("m5", &m5), ("m6", &m6)] {
        s.b.decrypt(&mut s.bob_store, m, later, IdentityChangePolicy::Refuse)
            .unwrap();
        s.script.step(
            None,
            format!("b.decrypt(bob_store, {name}, now_ms + 1000, Refuse)"),
        );
    }
    states.push(record_entry("bob_record_following_fork", &s.b));

    // A second session (from the bare last-resort bundle) archives the first.
    let bare = PreKeyBundle::from_bytes(&s.bob_store.last_resort_bundle().unwrap().to_bytes())
        .unwrap()
        .verify(ExpectedIdentity::TrustOnFirstUse, &s.alice.public())
        .unwrap();
    let second = Session::initiate(&mut s.alice_rng, &s.alice, &bare).unwrap();
    s.script.step(
        Some(&mut s.alice_rng),
        "a.promote(Session::initiate(alice_rng, alice, bob_store.last_resort_bundle()))",
    );
    s.a.promote(second);
    assert_eq!(s.a.archived_count(), 1);
    states.push(record_entry("alice_record_with_archived_session", &s.a));
    states.push(store_entry("alice_store", &s.alice_store));

    // Encrypted at rest.
    let key = StorageKey::new(STORAGE_KEY);
    let mut blob_rng = Rec::new("blob", BLOB_SEED);
    let mut blobs = Vec::new();
    let plain_session = s.a.current().unwrap().to_bytes();
    let plain_record = s.b.to_bytes();
    let plain_store = s.bob_store.to_bytes();
    for (name, kind, plain, of) in [
        (
            "alice_current_session",
            StateKind::Session,
            &plain_session,
            "a.current()",
        ),
        ("bob_record", StateKind::SessionRecord, &plain_record, "b"),
        (
            "bob_store",
            StateKind::PreKeyStore,
            &plain_store,
            "bob_store",
        ),
    ] {
        let blob = match kind {
            StateKind::Session => {
                s.a.current()
                    .unwrap()
                    .to_encrypted(&mut blob_rng, &key, name.as_bytes())
            }
            StateKind::SessionRecord => s.b.to_encrypted(&mut blob_rng, &key, name.as_bytes()),
            _ => s
                .bob_store
                .to_encrypted(&mut blob_rng, &key, name.as_bytes()),
        };
        s.script.step(
            Some(&mut blob_rng),
            format!("blob {name} = {of}.to_encrypted(blob_rng, storage_key, context = \"{name}\")"),
        );
        assert_eq!(
            &storage::open(&key, kind, name.as_bytes(), &blob).unwrap()[..],
            &plain[..]
        );
        assert_eq!(blob.len(), 4 + 1 + 1 + 32 + 16 + plain.len() + 16);
        blobs.push(json!({
            "name": name,
            "kind": kind.to_byte(),
            "context_hex": hex::encode(name.as_bytes()),
            "plaintext": hex::encode(plain),
            "blob": hex::encode(&blob),
        }));
    }
    check(
        "stored_state.json",
        &json!({
            "description": "Every stored session-layer state (spec.md section 11) from one fixed \
                script continuing session_setup.json's setup (same seeds; none of its messages). \
                states: plain to_bytes() encodings; each decodes with from_bytes and re-encodes \
                to the same bytes. blobs: the CFDS (version 2) encryption of three of \
                them under storage_key, each for the slot context named by its name (UTF-8), \
                salts drawn from ChaCha20Rng(blob_seed).",
            "rng": RNG_NOTE,
            "now_ms": NOW.as_millis(),
            "alice_seed": hex::encode(ALICE_SEED),
            "bob_seed": hex::encode(BOB_SEED),
            "blob_seed": hex::encode(BLOB_SEED),
            "storage_key": hex::encode(STORAGE_KEY),
            "script": s.script.0,
            "states": states,
            "blobs": blobs,
        }),
    );
}

/// spec.md §13: the vector RNG is the ChaCha20 keystream of the seed (zero nonce, counter 0),
/// handed out in order whatever the draw sizes.
#[test]
fn rng_is_the_chacha20_keystream() {
    use chacha20::ChaCha20;
    use chacha20::cipher::{KeyIvInit, StreamCipher};
    use rand_core::Rng;
    for seed in [[0u8; 32], ALICE_SEED, BOB_SEED] {
        let mut keystream = vec![0u8; 64 * 5];
        ChaCha20::new(&seed.into(), &[0u8; 12].into()).apply_keystream(&mut keystream);
        let mut rng = ChaCha20Rng::from_seed(seed);
        let mut drawn = Vec::new();
        for n in [32usize, 64, 16, 32, 64, 32, 80] {
            let mut buf = vec![0u8; n];
            rng.fill_bytes(&mut buf);
            drawn.extend_from_slice(&buf);
        }
        assert_eq!(drawn[..], keystream[..drawn.len()]);
    }
    // RFC 8439 appendix A.1, test vector #1: the zero key's first keystream bytes.
    let mut rng = ChaCha20Rng::from_seed([0; 32]);
    let mut first = [0u8; 32];
    rng.fill_bytes(&mut first);
    assert_eq!(
        hex::encode(first),
        "76b8e0ada0f13d90405d6ae55386bd28bdd219b8a08ded1aa836efcc8b770dc7"
    );
}

/// spec.md §8: every value in the limits table is the code's constant.
#[test]
fn spec_limits_table_matches_the_constants() {
    use confide_session::consts as c;
    let spec = std::fs::read_to_string(
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/spec.md"),
    )
    .unwrap();
    let expected: [(&str, u64); 13] = [
        ("MAX_FORWARD_JUMP", c::MAX_FORWARD_JUMP.into()),
        ("MAX_SKIPPED_KEYS", c::MAX_SKIPPED_KEYS as u64),
        (
            "MAX_SKIPPED_KEY_RATCHET_STEPS",
            c::MAX_SKIPPED_KEY_RATCHET_STEPS.into(),
        ),
        ("MAX_REMEMBERED_FORKS", c::MAX_REMEMBERED_FORKS as u64),
        (
            "MAX_REMEMBERED_RATCHET_KEYS",
            c::MAX_REMEMBERED_RATCHET_KEYS as u64,
        ),
        ("MAX_ARCHIVED_SESSIONS", c::MAX_ARCHIVED_SESSIONS as u64),
        ("MAX_ONE_TIME_PREKEYS", c::MAX_ONE_TIME_PREKEYS as u64),
        (
            "MAX_ONE_TIME_KEM_PREKEYS",
            c::MAX_ONE_TIME_KEM_PREKEYS as u64,
        ),
        (
            "MAX_RETAINED_SIGNED_PREKEYS",
            c::MAX_RETAINED_SIGNED_PREKEYS as u64,
        ),
        ("MAX_SEEN_BASE_KEYS", c::MAX_SEEN_BASE_KEYS as u64),
        (
            "MAX_PLAINTEXT_LEN",
            confide_crypto::padding::MAX_PLAINTEXT_LEN as u64,
        ),
        ("MAX_CIPHERTEXT_LEN", c::MAX_CIPHERTEXT_LEN as u64),
        (
            "SAFETY_NUMBER_ITERATIONS",
            c::SAFETY_NUMBER_ITERATIONS.into(),
        ),
    ];
    for (name, value) in expected {
        let prefix = format!("| `{name}` | ");
        let line = spec
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("{name} is not in the spec's limits table"));
        let cell = line[prefix.len()..].split('|').next().unwrap();
        let documented: u64 = cell.trim().replace(',', "").parse().unwrap();
        assert_eq!(documented, value, "spec.md §8, {name}");
    }
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

/// A record blob (spec §11, version 3): fixed key, slot, record name and state; the nonce
/// from a seeded random source; with the intermediate values a reimplementation needs.
#[test]
fn record_blob_vector() {
    use confide_crypto::kdf::sha256;
    use confide_session::{
        StateError,
        storage::{RecordSealer, StateKind, StorageKey},
    };
    let key = StorageKey::new([0x5a; 32]);
    let slot = b"counselor";
    let record = [0x03, 0, 0, 0, 0, 0, 0, 0, 7];
    let state = b"example conversation record bytes";
    let mut rng = ChaCha20Rng::from_seed([0x58; 32]);
    let sealer = RecordSealer::new(&key, StateKind::EndpointRecord, slot);
    let blob = sealer.seal(&mut rng, &record, state);
    let salt = sha256(&[labels::STATE_SLOT, slot]);
    assert_eq!(&sealer.open(&record, &blob).unwrap()[..], state);
    // Recomputed from the primitives, as the spec states it.
    let kind = StateKind::EndpointRecord.to_byte();
    let mut k = [0u8; 32];
    hkdf_sha256(
        Some(&salt),
        &[0x5a; 32],
        &[labels::RECORD_ENCRYPTION, &[kind]].concat(),
        &mut k,
    )
    .unwrap();
    let mut key_check = [0u8; 16];
    hkdf_sha256(
        Some(&salt),
        &[0x5a; 32],
        &[labels::RECORD_KEY_CHECK, &[kind]].concat(),
        &mut key_check,
    )
    .unwrap();
    let mut nonce = [0u8; 24];
    rand_core::Rng::fill_bytes(&mut ChaCha20Rng::from_seed([0x58; 32]), &mut nonce);
    let header = [b'C', b'F', b'D', b'S', 3, kind];
    let expected = [
        &header[..],
        &key_check,
        &nonce,
        &confide_crypto::aead::seal_extended(
            &confide_crypto::secret::AeadKey::copy_from(&k),
            &nonce,
            &[&header[..], &record[..]].concat(),
            state,
        ),
    ]
    .concat();
    assert_eq!(blob, expected);
    assert_eq!(
        sealer
            .open(&[0x03, 0, 0, 0, 0, 0, 0, 0, 8], &blob)
            .unwrap_err(),
        StateError::Tampered
    );
    check(
        "record_storage.json",
        &json!({
            "description": "A record blob (spec.md section 11, version 3): \
                blob = \"CFDS\" || 0x03 || kind || key_check[16] || nonce[24] || \
                XChaCha20-Poly1305(k, nonce, aad = blob[0..6] || record, state), \
                salt = SHA-256(\"Confide_v1_StateSlot\" || slot), \
                k = HKDF-SHA256(salt, storage_key, \"Confide_v1_RecordEncryption\" || kind, 32), \
                key_check = HKDF-SHA256(salt, storage_key, \"Confide_v1_RecordKeyCheck\" || kind, 16). \
                The nonce is the first 24 bytes of ChaCha20Rng::from_seed(rng_seed). The same \
                blob must fail to open (AEAD failure) under any other record name.",
            "storage_key": hex::encode([0x5a; 32]),
            "kind": StateKind::EndpointRecord.to_byte(),
            "slot_hex": hex::encode(slot),
            "record_hex": hex::encode(record),
            "state_hex": hex::encode(state),
            "rng_seed": hex::encode([0x58; 32]),
            "salt": hex::encode(salt),
            "key_check": hex::encode(&blob[6..22]),
            "nonce": hex::encode(&blob[22..46]),
            "aad": hex::encode([&blob[..6], &record[..]].concat()),
            "blob": hex::encode(&blob),
        }),
    );
}
