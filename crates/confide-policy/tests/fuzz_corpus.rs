//! Replays the fuzz corpora (`fuzz/corpus/policy_content`, `fuzz/corpus/policy_state`) through
//! the fuzz targets' checks (`confide_test_support::fuzzing::policy_*`): no panic, and whatever
//! decodes re-encodes to the same bytes (`policy_state` seeds hold states whole and entry by
//! entry). Set `CONFIDE_REGENERATE_CORPUS=1` to (re)write the
//! seed files from the scripted scenario.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use crate::common;

use confide_policy::{ContentFrame, ConversationPolicy};
use confide_test_support::{corpus, fuzzing};

fn seeds(named: &[(String, Vec<u8>)]) -> Vec<Vec<u8>> {
    named.iter().map(|(_, bytes)| bytes.clone()).collect()
}

#[test]
fn corpora_replay() {
    if corpus::regenerate_requested() {
        let s = common::scenario();
        corpus::write("policy_content", &seeds(&s.frames));
        // Each state whole, and entry by entry (`fuzzing::POLICY_ENTRY_BY_ENTRY`).
        let mut states = seeds(&s.states);
        for (_, bytes) in &s.states {
            let state = ConversationPolicy::from_bytes(bytes).unwrap();
            states.push(fuzzing::policy_state_entry_form(&state));
        }
        corpus::write("policy_state", &states);
    }
    let frames = corpus::replay("policy_content", fuzzing::policy_content);
    assert!(
        frames.iter().any(|b| ContentFrame::decode(b).is_ok()),
        "no seed of policy_content decodes"
    );
    let states = corpus::replay("policy_state", fuzzing::policy_state);
    assert!(
        states
            .iter()
            .any(|b| ConversationPolicy::from_bytes(b).is_ok()),
        "no seed of policy_state decodes"
    );
    assert!(
        states
            .iter()
            .filter(|b| b.first() == Some(&fuzzing::POLICY_ENTRY_BY_ENTRY))
            .any(|b| b.len() > 40),
        "no seed of policy_state holds a state with entries, entry by entry"
    );
}
