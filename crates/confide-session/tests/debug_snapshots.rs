//! The exact `Debug` output of every secret-holding type of the session layer, pinned: each
//! prints counts and public ids only, and a change to what it prints shows up here. (The
//! hand-written impls name every field, so a new field fails to compile until someone decides
//! whether it prints; `safety_and_debug.rs` checks the outputs against the secrets.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use crate::common;

use common::Pair;
use confide_session::{SessionMessage, storage::StorageKey};

#[test]
fn debug_of_secret_holding_types_is_pinned() {
    let mut p = Pair::new(93);
    let first = p.a_sends(b"a first message that creates the session");
    let got = p.b_gets(&first).unwrap();
    let reply = p.b_sends(b"reply");
    let store = &p.bob.store;
    let bundle = &store.bundles()[0];
    assert_eq!(
        format!("{:?}", p.a.current().unwrap()),
        "Session { role: Initiator, awaiting_reply: true, skipped_keys: 0, .. }"
    );
    assert_eq!(
        format!("{:?}", p.b),
        "SessionRecord { current: Some(Session { role: Responder, awaiting_reply: false, skipped_keys: 0, .. }), archived: 0 }"
    );
    assert_eq!(
        format!("{got:?}"),
        "Decrypted { plaintext_len: 40, new_session: true, .. }"
    );
    assert_eq!(
        format!("{store:?}"),
        "PreKeyStore { signed_prekeys: 1, last_resort_kem_prekeys: 1, one_time_prekeys: 2, one_time_kem_prekeys: 2, seen_base_keys: 0, .. }"
    );
    assert_eq!(
        format!("{bundle:?}"),
        "PreKeyBundle { signed_prekey_id: 1, kem_prekey_id: 7, kem_kind: OneTime, one_time_prekey_id: Some(4), .. }"
    );
    assert_eq!(
        format!("{:?}", SessionMessage::from_bytes(&first).unwrap()),
        "PreKey(PreKeyMessage { signed_prekey_id: 1, kem_prekey_id: 6, one_time_prekey_id: Some(3), message: RatchetMessage { previous_chain_len: 0, index: 0, forked: false, previous_forked: false, ciphertext_len: 272, .. }, .. })"
    );
    assert_eq!(
        format!("{:?}", SessionMessage::from_bytes(&reply).unwrap()),
        "Ratchet(RatchetMessage { previous_chain_len: 0, index: 0, forked: false, previous_forked: false, ciphertext_len: 272, .. })"
    );
    assert_eq!(
        format!("{:?}", StorageKey::new([0x42; 32])),
        "StorageKey([REDACTED])"
    );
    assert_eq!(
        format!(
            "{:?}",
            confide_session::storage::RecordSealer::new(
                &StorageKey::new([0x42; 32]),
                confide_session::storage::StateKind::EndpointRecord,
                b"account"
            )
        ),
        "RecordSealer { kind: 5, .. }"
    );
    assert_eq!(format!("{:?}", p.bob.id), "IdentityKeyPair([REDACTED])");
}
