#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! Known-answer vectors in `docs/test-vectors/policy/vectors.json`: the scripted scenario is
//! replayed and every frame, event and state must match byte for byte. Set
//! `CONFIDE_REGENERATE_VECTORS=1` to rewrite the file after an intended format change. The
//! file carries the script (every call with its arguments and time) that produced it.

use crate::common;

use confide_policy::{ContentFrame, ConversationPolicy, RetentionPolicy, Side, TimerSetting};
use confide_test_support::vectors;
use serde_json::{Value, json};

fn path() -> std::path::PathBuf {
    vectors::path("policy/vectors.json")
}

fn generate() -> Value {
    let s = common::scenario();
    json!({
        "description": "Confide policy layer: content frames and states of a scripted client/counselor conversation (ids from ChaCha20Rng seed [42; 32]; times in ms; org bounds min 1 min, max 30 days). See docs/policy.md.",
        "rng": "ChaCha20Rng::from_seed([42; 32]) (the ChaCha20 keystream of the seed, spec.md section 13); each MessageId::random draws the next 16 bytes, in script order",
        "t0_ms": common::T0.as_millis(),
        "script": s.script,
        "frames": s.frames.iter().map(|(n, b)| json!({"name": n, "hex": hex::encode(b)})).collect::<Vec<_>>(),
        "events": s.events,
        "states": s.states.iter().map(|(n, b)| json!({"name": n, "hex": hex::encode(b)})).collect::<Vec<_>>(),
    })
}

#[test]
fn vectors_match_the_code() {
    let generated = generate();
    vectors::check_json("policy/vectors.json", &generated);
}

#[test]
fn stored_vectors_decode_and_reencode() {
    let stored: Value = serde_json::from_str(&std::fs::read_to_string(path()).unwrap()).unwrap();
    for f in stored["frames"].as_array().unwrap() {
        let bytes = hex::decode(f["hex"].as_str().unwrap()).unwrap();
        let frame = ContentFrame::decode(&bytes).unwrap();
        assert_eq!(frame.encode().unwrap(), bytes, "{}", f["name"]);
    }
    for s in stored["states"].as_array().unwrap() {
        let bytes = hex::decode(s["hex"].as_str().unwrap()).unwrap();
        let state = ConversationPolicy::from_bytes(&bytes).unwrap();
        assert_eq!(state.to_bytes().unwrap().to_vec(), bytes, "{}", s["name"]);
    }
}

/// policy.md §3: the configured initial policy (Off) is clamped by the org max at creation and
/// stamped as the version-0 setting of the initiator.
#[test]
fn first_frame_carries_the_clamped_initial_timer() {
    let s = common::scenario();
    let frame = ContentFrame::decode(&s.frames[0].1).unwrap();
    assert_eq!(
        frame.timer,
        TimerSetting {
            version: 0,
            proposer: Side::Initiator,
            policy: RetentionPolicy::after_send(confide_crypto::Duration::from_days(30)),
        }
    );
}
