#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! Replays the fuzz corpora (`fuzz/corpus/policy_content`, `fuzz/corpus/policy_state`) through
//! the decoders the fuzz targets call: no panic, and whatever decodes re-encodes to the same
//! bytes. Set `CONFIDE_WRITE_CORPUS=1` to (re)write the seed files from the scripted scenario.

mod common;

use confide_policy::{ContentFrame, ConversationPolicy};
use std::path::PathBuf;

fn dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}

fn write_seeds(target: &str, seeds: &[(String, Vec<u8>)]) {
    let d = dir(target);
    std::fs::create_dir_all(&d).unwrap();
    for (_, bytes) in seeds {
        let name = hex::encode(&confide_crypto::kdf::sha256(&[bytes])[..8]);
        std::fs::write(d.join(name), bytes).unwrap();
    }
}

fn replay(target: &str, check: impl Fn(&[u8]) -> bool) {
    let mut files = 0;
    let mut decoded = 0;
    for entry in std::fs::read_dir(dir(target)).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        files += 1;
        if check(&bytes) {
            decoded += 1;
        }
    }
    assert!(files > 0, "empty corpus for {target}");
    assert!(decoded > 0, "no seed of {target} decodes");
}

#[test]
fn corpora_replay() {
    if std::env::var_os("CONFIDE_WRITE_CORPUS").is_some() {
        let s = common::scenario();
        write_seeds("policy_content", &s.frames);
        write_seeds("policy_state", &s.states);
    }
    replay("policy_content", |bytes| {
        match ContentFrame::decode(bytes) {
            Ok(frame) => {
                assert_eq!(frame.encode().unwrap(), bytes);
                true
            }
            Err(_) => false,
        }
    });
    replay(
        "policy_state",
        |bytes| match ConversationPolicy::from_bytes(bytes) {
            Ok(state) => {
                assert_eq!(state.to_bytes().unwrap().to_vec(), bytes);
                true
            }
            Err(_) => false,
        },
    );
}
