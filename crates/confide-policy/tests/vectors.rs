#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! Known-answer vectors in `docs/test-vectors/policy/vectors.json`: the scripted scenario is
//! replayed and every frame, event and state must match byte for byte. Set
//! `CONFIDE_WRITE_VECTORS=1` to rewrite the file after an intended format change.

mod common;

use confide_policy::{ContentFrame, ConversationPolicy};
use serde_json::{Value, json};
use std::path::PathBuf;

fn path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/test-vectors/policy/vectors.json")
}

fn generate() -> Value {
    let s = common::scenario();
    json!({
        "description": "Confide policy layer: content frames and states of a scripted client/counselor conversation (ids from ChaCha20Rng seed [42; 32]; times in ms; org bounds min 1 min, max 30 days). See docs/policy.md.",
        "frames": s.frames.iter().map(|(n, b)| json!({"name": n, "hex": hex::encode(b)})).collect::<Vec<_>>(),
        "events": s.events,
        "states": s.states.iter().map(|(n, b)| json!({"name": n, "hex": hex::encode(b)})).collect::<Vec<_>>(),
    })
}

#[test]
fn vectors_match_the_code() {
    let generated = generate();
    if std::env::var_os("CONFIDE_WRITE_VECTORS").is_some() {
        std::fs::create_dir_all(path().parent().unwrap()).unwrap();
        std::fs::write(
            path(),
            serde_json::to_string_pretty(&generated).unwrap() + "\n",
        )
        .unwrap();
    }
    let stored: Value = serde_json::from_str(&std::fs::read_to_string(path()).unwrap()).unwrap();
    assert_eq!(
        stored, generated,
        "the code's output no longer matches the stored vectors"
    );
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
