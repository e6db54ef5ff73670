//! The message store's row format (`docs/store.md`, "Sealed rows") against
//! `docs/test-vectors/store/transcript.json`: every value is recomputed here from the spec with
//! the primitives alone and compared with what the crate produces; the file is rewritten with
//! `CONFIDE_REGENERATE_VECTORS=1`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use chacha20::ChaCha20Rng;
use confide::{MessageId, Party, StorageKey};
use confide_crypto::{
    Timestamp, aead,
    kdf::{hkdf_sha256, hkdf_sha256_multi, hmac_sha256_parts, labels},
    secret::AeadKey,
};
use confide_store::row::{
    RowError, RowHeader, TranscriptKeys, WRAPPED_KEY_LEN, open_row, seal_row,
};
use confide_test_support::vectors::{RecordingRng, check_json};
use rand_core::{Rng, SeedableRng};
use serde_json::json;

const STORAGE_KEY: [u8; 32] = [0x5a; 32];
const SLOT: &[u8] = b"counselor";
const SEED: [u8; 32] = [0x73; 32];
const CONVERSATION: u64 = 7;
const ID: [u8; 16] = [0x11; 16];
const SEQ: u64 = 42;
const SENT_AT: u64 = 1_767_000_000_000;
const EXPIRES_AT: u64 = 1_767_000_600_000;
const BODY: &[u8] = b"I'd rather not use names.";

fn expand(label: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let len = u32::try_from(SLOT.len()).unwrap().to_be_bytes();
    hkdf_sha256_multi(None, &STORAGE_KEY, &[label, &len, SLOT], &mut out).unwrap();
    out
}

fn aad(purpose: u8, tag: &[u8; 32]) -> Vec<u8> {
    let mut a = vec![purpose];
    a.extend_from_slice(&u32::try_from(SLOT.len()).unwrap().to_be_bytes());
    a.extend_from_slice(SLOT);
    a.extend_from_slice(&CONVERSATION.to_be_bytes());
    a.extend_from_slice(tag);
    a.extend_from_slice(&SEQ.to_be_bytes());
    a.extend_from_slice(&SENT_AT.to_be_bytes());
    a.push(1);
    a.extend_from_slice(&EXPIRES_AT.to_be_bytes());
    a
}

#[test]
fn the_row_format_matches_the_spec_and_the_vector_file() {
    // From the spec, with the primitives alone.
    let wrap_root = expand(labels::TRANSCRIPT_WRAP_ROOT);
    let tag_key = expand(labels::TRANSCRIPT_TAG_KEY);
    let key_check = expand(labels::TRANSCRIPT_KEY_CHECK);
    let tag = *hmac_sha256_parts(&tag_key, &[&CONVERSATION.to_be_bytes(), &ID]);
    let mut stream = ChaCha20Rng::from_seed(SEED);
    let mut message_key = [0u8; 32];
    stream.fill_bytes(&mut message_key);
    let mut salt = [0u8; 32];
    stream.fill_bytes(&mut salt);
    let mut kek = [0u8; 32];
    hkdf_sha256(
        Some(&salt),
        &wrap_root,
        labels::TRANSCRIPT_KEY_WRAP,
        &mut kek,
    )
    .unwrap();
    let key_aad = aad(0x01, &tag);
    let body_aad = aad(0x02, &tag);
    let mut wrapped = vec![0x01];
    wrapped.extend_from_slice(&salt);
    wrapped.extend_from_slice(&aead::seal(
        &AeadKey::new(kek),
        &[0; 12],
        &key_aad,
        &message_key,
    ));
    let mut plaintext = ID.to_vec();
    plaintext.push(0x02);
    plaintext.extend_from_slice(BODY);
    let mut sealed_body = vec![0x01];
    sealed_body.extend_from_slice(&aead::seal(
        &AeadKey::new(message_key),
        &[0; 12],
        &body_aad,
        &plaintext,
    ));

    // What the crate produces.
    let keys = TranscriptKeys::derive(&StorageKey::new(STORAGE_KEY), SLOT).unwrap();
    let id = MessageId::from_bytes(ID);
    let header = RowHeader {
        conversation: CONVERSATION,
        tag: keys.tag(CONVERSATION, &id),
        seq: SEQ,
        sent_at: Timestamp::from_millis(SENT_AT),
        expires_at: Some(Timestamp::from_millis(EXPIRES_AT)),
    };
    let mut rng = RecordingRng::new("store", SEED);
    let row = seal_row(&mut rng, &keys, &header, &id, Party::Peer, BODY).unwrap();
    assert_eq!(rng.draws, vec![32, 32], "the message key, then the salt");
    assert_eq!(keys.key_check(), &key_check);
    assert_eq!(header.tag.to_bytes(), tag);
    assert_eq!(header.key_aad(&keys), key_aad);
    assert_eq!(header.body_aad(&keys), body_aad);
    assert_eq!(row.wrapped_key, wrapped);
    assert_eq!(row.wrapped_key.len(), WRAPPED_KEY_LEN);
    assert_eq!(row.sealed_body, sealed_body);

    // It opens, and only as its own row.
    let entry = open_row(&keys, &header, &wrapped, &sealed_body).unwrap();
    assert_eq!(entry.id, id);
    assert_eq!(entry.from, Party::Peer);
    assert_eq!(entry.body.as_bytes(), BODY);
    let moved = RowHeader {
        seq: SEQ + 1,
        ..header
    };
    assert_eq!(
        open_row(&keys, &moved, &wrapped, &sealed_body),
        Err(RowError::KeyRefused)
    );

    check_json(
        "store/transcript.json",
        &json!({
            "description": "One row of the message store (docs/store.md, \"Sealed rows\"): the account's keys derived from the storage key and slot, the lookup tag, then a message sealed under its own key (the first 32 bytes of the RNG) wrapped under a key derived from wrap_root and a random salt (the next 32 bytes). Both blobs open only with exactly this header in their associated data.",
            "rng": "ChaCha20Rng::from_seed(seed); draws: message key (32), then key salt (32)",
            "seed": hex::encode(SEED),
            "storage_key": hex::encode(STORAGE_KEY),
            "slot_hex": hex::encode(SLOT),
            "wrap_root": hex::encode(wrap_root),
            "tag_key": hex::encode(tag_key),
            "key_check": hex::encode(key_check),
            "conversation": CONVERSATION,
            "message_id": hex::encode(ID),
            "tag": hex::encode(tag),
            "seq": SEQ,
            "sent_at": SENT_AT,
            "expires_at": EXPIRES_AT,
            "from": "peer (0x02)",
            "body_hex": hex::encode(BODY),
            "message_key": hex::encode(message_key),
            "key_salt": hex::encode(salt),
            "kek": hex::encode(kek),
            "key_aad": hex::encode(&key_aad),
            "body_aad": hex::encode(&body_aad),
            "wrapped_key": hex::encode(&wrapped),
            "sealed_body": hex::encode(&sealed_body),
        }),
    );
}
