//! Serialized state: round trips mid-conversation, serde, and encrypted storage.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use crate::common;

use chacha20::ChaCha20Rng;
use common::{Pair, clone_rng, text};
use confide_crypto::codec::DecodeError;
use confide_session::{
    PreKeyStore, Session, SessionRecord, StateError,
    storage::{self, AppStateKind, MAGIC, STORAGE_VERSION, StateKind, StorageKey},
};
use rand_core::SeedableRng;

/// `state` sealed as a session record under `key` and opened again: authenticated bytes, as
/// the fast restore paths require.
fn through_storage(
    key: &StorageKey,
    state: &[u8],
) -> confide_crypto::stored::AuthenticatedPlaintext {
    let blob = storage::seal(
        &mut ChaCha20Rng::from_seed([5; 32]),
        key,
        StateKind::SessionRecord,
        b"slot",
        state,
    );
    storage::open(key, StateKind::SessionRecord, b"slot", &blob).unwrap()
}

/// A pair in mid-conversation with skipped keys, an archived session and a prekey phase
/// behind it.
fn busy_pair() -> Pair {
    let mut p = Pair::established(80);
    let msgs: Vec<_> = (0..5).map(|i| p.a_sends(&text(i))).collect();
    p.b_gets(&msgs[4]).unwrap();
    p.b_gets(&msgs[1]).unwrap();
    let r = p.b_sends(b"r");
    p.a_gets(&r).unwrap();
    p
}

#[test]
fn restored_state_continues_identically() {
    let mut p = busy_pair();
    let mut q = Pair {
        rng: clone_rng(&p.rng),
        alice: p.alice.clone(),
        bob: common::Party {
            id: p.bob.id.clone(),
            store: PreKeyStore::from_bytes(&p.bob.store.to_bytes()).unwrap(),
        },
        a: SessionRecord::from_bytes(&p.a.to_bytes()).unwrap(),
        b: SessionRecord::from_bytes(&p.b.to_bytes()).unwrap(),
    };
    assert_eq!(q.bob_state(), p.bob_state());
    assert_eq!(q.alice_state(), p.alice_state());
    // Same inputs, same outputs, byte for byte, in both copies.
    for i in 0..6 {
        let (mp, mq) = (p.a_sends(&text(i)), q.a_sends(&text(i)));
        assert_eq!(mp, mq);
        assert_eq!(
            p.b_gets(&mp).unwrap().plaintext,
            q.b_gets(&mq).unwrap().plaintext
        );
        let (rp, rq) = (p.b_sends(&text(50 + i)), q.b_sends(&text(50 + i)));
        assert_eq!(rp, rq);
        if i % 2 == 0 {
            p.a_gets(&rp).unwrap();
            q.a_gets(&rq).unwrap();
        }
        assert_eq!(q.bob_state(), p.bob_state());
        assert_eq!(q.alice_state(), p.alice_state());
    }
}

#[test]
fn session_round_trip_and_strict_decoding() {
    let p = busy_pair();
    for s in [p.a.current().unwrap(), p.b.current().unwrap()] {
        let bytes = s.to_bytes();
        let back = Session::from_bytes(&bytes).unwrap();
        assert_eq!(back.to_bytes(), bytes);
        assert_eq!(back.base_key(), s.base_key());
        assert_eq!(back.role(), s.role());
        assert_eq!(back.skipped_key_count(), s.skipped_key_count());
        assert_eq!(back.current_ratchet_key(), s.current_ratchet_key());
        assert!(Session::from_bytes(&[&bytes[..], &[0]].concat()).is_err());
        assert!(Session::from_bytes(&bytes[..bytes.len() - 1]).is_err());
        // Version 1 (before chain forks) and unknown versions are refused.
        assert_eq!(bytes[0], confide_session::state::SESSION_STATE_VERSION);
        for version in [1, 9] {
            let mut other = bytes.clone();
            other[0] = version;
            assert_eq!(
                Session::from_bytes(&other).unwrap_err(),
                DecodeError::UnknownVersion {
                    what: "session state",
                    found: version
                }
            );
        }
    }
    // A session restored into a record keeps working.
    let mut p = p;
    let session = Session::from_bytes(&p.b.current().unwrap().to_bytes()).unwrap();
    p.b = SessionRecord::with_session(session);
    let m = p.a_sends(b"after restore");
    assert_eq!(&p.b_gets(&m).unwrap().plaintext[..], b"after restore");

    // Every truncation of a record and store is refused.
    let rec = p.b.to_bytes();
    for len in 0..rec.len() {
        assert!(
            SessionRecord::from_bytes(&rec[..len]).is_err(),
            "record len {len}"
        );
    }
    let store = p.alice.store.to_bytes();
    for len in 0..store.len() {
        assert!(
            PreKeyStore::from_bytes(&store[..len]).is_err(),
            "store len {len}"
        );
    }
    assert!(PreKeyStore::from_bytes(&[&store[..], &[0]].concat()).is_err());
    assert!(SessionRecord::from_bytes(&[&rec[..], &[0]].concat()).is_err());
}

#[test]
fn serde_json_round_trip() {
    let mut p = busy_pair();
    let json = serde_json::to_string(&p.b).unwrap();
    let back: SessionRecord = serde_json::from_str(&json).unwrap();
    assert_eq!(back.to_bytes(), p.b.to_bytes());
    let json = serde_json::to_string(&p.bob.store).unwrap();
    let store: PreKeyStore = serde_json::from_str(&json).unwrap();
    assert_eq!(store.to_bytes(), p.bob.store.to_bytes());
    let session = p.a.current().unwrap();
    let json = serde_json::to_vec(session).unwrap();
    let s: Session = serde_json::from_slice(&json).unwrap();
    assert_eq!(s.to_bytes(), session.to_bytes());
    // The serde form is exactly the canonical bytes.
    assert_eq!(
        serde_json::to_value(&p.b).unwrap(),
        serde_json::to_value(&*p.b.to_bytes()).unwrap()
    );
    // Malformed input is an error, not a panic.
    assert!(serde_json::from_str::<SessionRecord>("[1,2,3]").is_err());
    assert!(serde_json::from_str::<Session>("\"x\"").is_err());
    // The restored record continues.
    p.b = back;
    let m = p.a_sends(b"after serde");
    assert_eq!(&p.b_gets(&m).unwrap().plaintext[..], b"after serde");
}

#[test]
fn encrypted_storage_round_trip_and_distinct_errors() {
    let mut p = busy_pair();
    let key = StorageKey::new([0x3c; 32]);
    let record_blob = p.b.to_encrypted(&mut p.rng, &key, b"slot");
    let store_blob = p.bob.store.to_encrypted(&mut p.rng, &key, b"slot");
    let session_blob =
        p.b.current()
            .unwrap()
            .to_encrypted(&mut p.rng, &key, b"slot");
    assert_eq!(
        SessionRecord::from_encrypted(&key, b"slot", &record_blob)
            .unwrap()
            .to_bytes(),
        p.b.to_bytes()
    );
    assert_eq!(
        PreKeyStore::from_encrypted(&key, b"slot", &store_blob)
            .unwrap()
            .to_bytes(),
        p.bob.store.to_bytes()
    );
    assert_eq!(
        Session::from_encrypted(&key, b"slot", &session_blob)
            .unwrap()
            .to_bytes(),
        p.b.current().unwrap().to_bytes()
    );
    // The plaintext state does not appear in the blob, and sealing twice differs (fresh salt).
    let plain = p.b.to_bytes();
    assert!(
        !record_blob
            .windows(32)
            .any(|w| plain.windows(32).any(|x| x == w))
    );
    assert_ne!(p.b.to_encrypted(&mut p.rng, &key, b"slot"), record_blob);
    assert_eq!(&record_blob[..4], MAGIC);
    assert_eq!(record_blob[4], STORAGE_VERSION);

    let open =
        |blob: &[u8]| SessionRecord::from_encrypted(&key, b"slot", blob).map(|r| r.to_bytes());
    // Wrong key.
    assert_eq!(
        SessionRecord::from_encrypted(&StorageKey::new([0x3d; 32]), b"slot", &record_blob)
            .unwrap_err(),
        StateError::WrongKey
    );
    // Truncated below header + key check + tag (4 + 1 + 1 + 32 + 16 + 16 bytes).
    for len in 0..70 {
        assert_eq!(
            open(&record_blob[..len]).unwrap_err(),
            StateError::Truncated,
            "{len}"
        );
    }
    // Truncated within the ciphertext: the tag no longer matches.
    for len in [70, record_blob.len() / 2, record_blob.len() - 1] {
        assert_eq!(open(&record_blob[..len]).unwrap_err(), StateError::Tampered);
    }
    // Tampered ciphertext and tag, anywhere after the key check.
    for at in [54, 100, record_blob.len() - 1] {
        let mut b = record_blob.clone();
        b[at] ^= 1;
        assert_eq!(open(&b).unwrap_err(), StateError::Tampered, "{at}");
    }
    // Tampered salt or key check reads as a wrong key.
    for at in [6, 37, 38, 53] {
        let mut b = record_blob.clone();
        b[at] ^= 1;
        assert_eq!(open(&b).unwrap_err(), StateError::WrongKey, "{at}");
    }
    // Unknown version, including version 1 (blobs not bound to a slot).
    for version in [1, 9] {
        let mut b = record_blob.clone();
        b[4] = version;
        assert_eq!(open(&b).unwrap_err(), StateError::UnknownVersion(version));
    }
    // Wrong kind: a store blob given as a record, and a record blob as a session.
    assert_eq!(
        open(&store_blob).unwrap_err(),
        StateError::WrongKind {
            found: StateKind::PreKeyStore.to_byte(),
            expected: StateKind::SessionRecord.to_byte()
        }
    );
    assert_eq!(
        Session::from_encrypted(&key, b"slot", &record_blob).unwrap_err(),
        StateError::WrongKind {
            found: 2,
            expected: 1
        }
    );
    // Bad magic.
    let mut b = record_blob.clone();
    b[0] = b'X';
    assert_eq!(open(&b).unwrap_err(), StateError::BadMagic);
    // Authentic blob whose contents do not decode as the kind it claims.
    let garbage = storage::seal(&mut p.rng, &key, StateKind::SessionRecord, b"slot", &[1, 7]);
    assert!(matches!(open(&garbage).unwrap_err(), StateError::Decode(_)));
    // Raw seal/open with an app-defined kind.
    let app = |b: u8| StateKind::App(AppStateKind::new(b).unwrap());
    let blob = storage::seal(&mut p.rng, &key, app(0x80), b"slot", b"app state");
    assert_eq!(
        &storage::open(&key, app(0x80), b"slot", &blob).unwrap()[..],
        b"app state"
    );
    assert!(storage::open(&key, app(0x81), b"slot", &blob).is_err());
    // All the errors are distinct values.
    let errors = [
        StateError::WrongKey,
        StateError::Truncated,
        StateError::Tampered,
        StateError::UnknownVersion(9),
        StateError::BadMagic,
        StateError::WrongKind {
            found: 3,
            expected: 2,
        },
        StateError::ReservedKind(1),
    ];
    for (i, a) in errors.iter().enumerate() {
        for b in &errors[i + 1..] {
            assert_ne!(a, b);
        }
    }
}

#[test]
fn authenticated_restore_skips_only_the_checks_storage_already_guarantees() {
    let mut p = busy_pair();
    let key = StorageKey::new([0x24; 32]);
    let bytes = p.a.to_bytes();
    // Same result as the strict path on genuine state: the fast path is reached only through
    // storage (there is no public constructor from a byte slice).
    let blob = storage::seal(&mut p.rng, &key, StateKind::SessionRecord, b"slot", &bytes);
    let opened = storage::open(&key, StateKind::SessionRecord, b"slot", &blob).unwrap();
    let fast = SessionRecord::from_authenticated(opened.reader()).unwrap();
    assert_eq!(fast.to_bytes(), bytes);
    // Flip a bit of the first identity's binding signature (record header 2 bytes, session
    // version 1 byte, then signing key 32 + agreement key 32): only the strict path notices,
    // which is why the fast path is reserved for bytes authenticated under the storage key.
    let mut tampered = bytes.to_vec();
    tampered[2 + 1 + 64 + 10] ^= 1;
    assert!(SessionRecord::from_bytes(&tampered).is_err());
    let sealed = |state: &[u8]| through_storage(&key, state);
    assert!(SessionRecord::from_authenticated(sealed(&tampered).reader()).is_ok());
    // Structure is still parsed strictly on the fast path.
    let long = [&bytes[..], &[0]].concat();
    assert!(SessionRecord::from_authenticated(sealed(&long).reader()).is_err());
    assert!(SessionRecord::from_authenticated(sealed(&bytes[..bytes.len() - 1]).reader()).is_err());
}

#[test]
fn a_blob_opens_only_for_the_slot_it_was_stored_for() {
    let mut p = busy_pair();
    let key = StorageKey::new([0x17; 32]);
    // Two peers' records, each stored in its own slot.
    let for_alice = p.b.to_encrypted(&mut p.rng, &key, b"conversation-alice");
    let for_carol = p.a.to_encrypted(&mut p.rng, &key, b"conversation-carol");
    assert!(SessionRecord::from_encrypted(&key, b"conversation-alice", &for_alice).is_ok());
    // Someone with write access to storage swaps them: both are refused.
    assert_eq!(
        SessionRecord::from_encrypted(&key, b"conversation-carol", &for_alice).unwrap_err(),
        StateError::Tampered
    );
    assert_eq!(
        SessionRecord::from_encrypted(&key, b"conversation-alice", &for_carol).unwrap_err(),
        StateError::Tampered
    );
    assert_eq!(
        SessionRecord::from_encrypted(&key, b"", &for_alice).unwrap_err(),
        StateError::Tampered
    );
    // The same for the other state types and raw blobs.
    let store = p.bob.store.to_encrypted(&mut p.rng, &key, b"account-1");
    assert_eq!(
        PreKeyStore::from_encrypted(&key, b"account-2", &store).unwrap_err(),
        StateError::Tampered
    );
    assert!(PreKeyStore::from_encrypted(&key, b"account-1", &store).is_ok());
}

#[test]
fn app_kinds_cannot_collide_with_built_in_kinds() {
    for built_in in [
        StateKind::Session,
        StateKind::SessionRecord,
        StateKind::PreKeyStore,
        StateKind::Endpoint,
    ] {
        let byte = built_in.to_byte();
        assert_eq!(
            AppStateKind::new(byte).unwrap_err(),
            StateError::ReservedKind(byte)
        );
    }
    // The whole range below FIRST_APP_KIND belongs to the library (future kinds included).
    for byte in 0..storage::FIRST_APP_KIND {
        assert_eq!(
            AppStateKind::new(byte).unwrap_err(),
            StateError::ReservedKind(byte)
        );
    }
    for byte in storage::FIRST_APP_KIND..=u8::MAX {
        assert_eq!(AppStateKind::new(byte).unwrap().to_byte(), byte);
    }
}

/// spec.md §8: `MAX_CIPHERTEXT_LEN` (147,472) bounds what the parser accepts; the largest
/// ciphertext an honest sender makes is `padded_len(MAX_PLAINTEXT_LEN) + 16` = 135,184.
#[test]
fn ciphertext_length_bounds() {
    use confide_crypto::padding::{MAX_PLAINTEXT_LEN, padded_len};
    use confide_session::{DecryptError, SessionMessage, consts::MAX_CIPHERTEXT_LEN};
    assert_eq!(MAX_CIPHERTEXT_LEN, 147_472);
    assert_eq!(MAX_CIPHERTEXT_LEN, 144 * 1024 + 16);
    assert_eq!(padded_len(MAX_PLAINTEXT_LEN), Some(135_168));

    let mut p = Pair::established(81);
    let biggest = p.a_sends(&vec![7u8; MAX_PLAINTEXT_LEN]);
    assert_eq!(common::ratchet_part(&biggest).ciphertext().len(), 135_184);
    assert_eq!(
        &p.b_gets(&biggest).unwrap().plaintext[..],
        &[7u8; MAX_PLAINTEXT_LEN][..]
    );

    // A kind-0x01 message with the header of a real one and a ciphertext of `len` bytes.
    let real = p.a_sends(b"x");
    assert_eq!(real[1], 0x01);
    let with_len = |len: usize| {
        let mut m = real[..42].to_vec();
        m.extend_from_slice(&u32::try_from(len).unwrap().to_be_bytes());
        m.resize(46 + len, 0x42);
        m
    };
    for len in [272, 135_185, MAX_CIPHERTEXT_LEN] {
        let bytes = with_len(len);
        assert!(SessionMessage::from_bytes(&bytes).is_ok(), "{len} parses");
        assert_eq!(
            p.b_gets(&bytes).unwrap_err(),
            DecryptError::Authentication,
            "{len}"
        );
    }
    for len in [0, 271, MAX_CIPHERTEXT_LEN + 1] {
        assert!(SessionMessage::from_bytes(&with_len(len)).is_err(), "{len}");
    }
}

/// Offset of the envelope-secret flag in a version-4 session: version, two identities, role,
/// base key (spec.md §11).
const ENVELOPE_SECRET_FLAG_AT: usize = 1 + 128 + 128 + 1 + 32;

/// The version-3 encoding of a version-4 session: the same bytes without the envelope secret.
fn as_version_3(session: &[u8]) -> Vec<u8> {
    assert_eq!(
        session[ENVELOPE_SECRET_FLAG_AT], 1,
        "a new session has a secret"
    );
    let mut old = session[..ENVELOPE_SECRET_FLAG_AT].to_vec();
    old[0] = confide_session::state::SESSION_STATE_VERSION_WITHOUT_ENVELOPE_SECRET;
    old.extend_from_slice(&session[ENVELOPE_SECRET_FLAG_AT + 1 + 32..]);
    old
}

#[test]
fn both_sides_export_the_same_envelope_secret_and_keep_it_when_restored() {
    let mut p = busy_pair();
    let a = p.a.current().unwrap().envelope_secret().unwrap().clone();
    assert_eq!(Some(&a), p.b.current().unwrap().envelope_secret());
    // Fixed for the session's life: ratchet steps do not change it.
    for i in 0..3 {
        let m = p.a_sends(&text(i));
        p.b_gets(&m).unwrap();
        let r = p.b_sends(&text(i));
        p.a_gets(&r).unwrap();
    }
    assert_eq!(Some(&a), p.a.current().unwrap().envelope_secret());
    let restored = Session::from_bytes(&p.b.current().unwrap().to_bytes()).unwrap();
    assert_eq!(Some(&a), restored.envelope_secret());
    // Another session has another secret.
    let other = Pair::established(81);
    assert_ne!(Some(&a), other.a.current().unwrap().envelope_secret());
}

#[test]
fn version_3_state_is_read_without_envelope_secret_and_written_as_version_4() {
    let p = busy_pair();
    let session = p.b.current().unwrap().to_bytes();
    let old = as_version_3(&session);
    let read = Session::from_bytes(&old).unwrap();
    assert!(read.envelope_secret().is_none());
    let written = read.to_bytes();
    assert_eq!(written[0], confide_session::state::SESSION_STATE_VERSION);
    assert_eq!(
        written[ENVELOPE_SECRET_FLAG_AT], 0,
        "written back without a secret"
    );
    assert_eq!(
        Session::from_bytes(&written).unwrap().to_bytes(),
        written,
        "the upgraded encoding is canonical"
    );
    // A record of version 3 holds sessions of version 3 only.
    let mut record = vec![
        confide_session::state::SESSION_STATE_VERSION_WITHOUT_ENVELOPE_SECRET,
        1,
    ];
    record.extend_from_slice(&old);
    record.push(0);
    let read = SessionRecord::from_bytes(&record).unwrap();
    assert!(read.current().unwrap().envelope_secret().is_none());
    let mut mixed = vec![confide_session::state::SESSION_STATE_VERSION, 1];
    mixed.extend_from_slice(&old);
    mixed.push(0);
    assert!(matches!(
        SessionRecord::from_bytes(&mixed),
        Err(DecodeError::UnknownVersion { found: 3, .. })
    ));
    // A flag other than 0 or 1 is refused.
    let mut bad = session.to_vec();
    bad[ENVELOPE_SECRET_FLAG_AT] = 2;
    assert!(Session::from_bytes(&bad).is_err());
}

/// Record blobs (version 3, `RecordSealer`): a record opens under its own name in its own
/// slot only; every other change to the blob or its place is refused with a distinct error;
/// nothing about the state shows; two seals of the same state differ (fresh nonce).
#[test]
fn record_blobs_open_only_for_their_record_and_slot() {
    use confide_session::storage::{RECORD_OVERHEAD, RECORD_STORAGE_VERSION, RecordSealer};
    let mut p = busy_pair();
    let key = StorageKey::new([0x3c; 32]);
    let sealer = RecordSealer::new(&key, StateKind::EndpointRecord, b"account");
    let plain = p.b.to_bytes();
    let blob = sealer.seal(&mut p.rng, b"\x03conversation 7", &plain);
    assert_eq!(blob.len(), plain.len() + RECORD_OVERHEAD);
    assert_eq!(RECORD_OVERHEAD, 62);
    assert_eq!(&blob[..4], MAGIC);
    assert_eq!(blob[4], RECORD_STORAGE_VERSION);
    assert_eq!(storage::blob_version(&blob), Some(RECORD_STORAGE_VERSION));
    assert_eq!(storage::blob_version(&blob[..4]), None);
    assert_eq!(
        &sealer.open(b"\x03conversation 7", &blob).unwrap()[..],
        &plain[..]
    );
    // A sealer made again from the same key, kind and slot opens it: the key is derived.
    let again = RecordSealer::new(&key, StateKind::EndpointRecord, b"account");
    assert_eq!(
        &again.open(b"\x03conversation 7", &blob).unwrap()[..],
        &plain[..]
    );
    assert!(!blob.windows(32).any(|w| plain.windows(32).any(|x| x == w)));
    assert_ne!(sealer.seal(&mut p.rng, b"\x03conversation 7", &plain), blob);
    let open = |blob: &[u8]| sealer.open(b"\x03conversation 7", blob).map(|p| p.len());

    // Another record's name, another slot, another kind, another key.
    assert_eq!(
        sealer.open(b"\x03conversation 8", &blob).unwrap_err(),
        StateError::Tampered
    );
    assert_eq!(
        RecordSealer::new(&key, StateKind::EndpointRecord, b"account 2")
            .open(b"\x03conversation 7", &blob)
            .unwrap_err(),
        StateError::WrongKey
    );
    assert_eq!(
        RecordSealer::new(&key, StateKind::SessionRecord, b"account")
            .open(b"\x03conversation 7", &blob)
            .unwrap_err(),
        StateError::WrongKind {
            found: StateKind::EndpointRecord.to_byte(),
            expected: StateKind::SessionRecord.to_byte()
        }
    );
    assert_eq!(
        RecordSealer::new(
            &StorageKey::new([0x3d; 32]),
            StateKind::EndpointRecord,
            b"account"
        )
        .open(b"\x03conversation 7", &blob)
        .unwrap_err(),
        StateError::WrongKey
    );
    // Truncated below header + key check + nonce + tag (6 + 16 + 24 + 16 bytes).
    for len in 0..62 {
        assert_eq!(
            open(&blob[..len]).unwrap_err(),
            StateError::Truncated,
            "{len}"
        );
    }
    for len in [62, blob.len() / 2, blob.len() - 1] {
        assert_eq!(
            open(&blob[..len]).unwrap_err(),
            StateError::Tampered,
            "{len}"
        );
    }
    // The nonce, the ciphertext and the tag are authenticated; the key check tells a wrong key.
    for at in [46, 100, blob.len() - 1, 22, 45] {
        let mut b = blob.clone();
        b[at] ^= 1;
        assert_eq!(open(&b).unwrap_err(), StateError::Tampered, "{at}");
    }
    for at in [6, 21] {
        let mut b = blob.clone();
        b[at] ^= 1;
        assert_eq!(open(&b).unwrap_err(), StateError::WrongKey, "{at}");
    }
    // A version 2 blob is not a record blob (and the other way round).
    for version in [1, STORAGE_VERSION, 4] {
        let mut b = blob.clone();
        b[4] = version;
        assert_eq!(open(&b).unwrap_err(), StateError::UnknownVersion(version));
    }
    let v2 = storage::seal(
        &mut p.rng,
        &key,
        StateKind::EndpointRecord,
        b"account",
        &plain,
    );
    assert_eq!(
        sealer.open(b"", &v2).unwrap_err(),
        StateError::UnknownVersion(STORAGE_VERSION)
    );
    assert_eq!(
        storage::open(&key, StateKind::EndpointRecord, b"account", &blob).unwrap_err(),
        StateError::UnknownVersion(RECORD_STORAGE_VERSION)
    );
    let mut b = blob.clone();
    b[0] = b'X';
    assert_eq!(open(&b).unwrap_err(), StateError::BadMagic);
    // Failure changes nothing: the sealer still opens the original.
    assert_eq!(open(&blob).unwrap(), plain.len());
}

/// The prekey store's record of the base keys it accepted (to refuse replayed first
/// messages) survives a round trip under its one signed prekey, and is read strictly: out of
/// order, or under a signed prekey the store no longer holds, it is refused.
#[test]
fn seen_base_keys_round_trip_and_are_read_strictly() {
    // Bob has no one-time prekeys: first messages use his signed prekey alone, and he
    // remembers their base keys to refuse replays.
    let mut rng = common::rng(61);
    let alice = common::Party::new(&mut rng, 0, 0);
    let mut bob = common::Party::new(&mut rng, 0, 0);
    let bundle = bob.store.bundles()[0].clone();
    let mut bobs = SessionRecord::new();
    for text in [&b"one"[..], b"two"] {
        let mut alices = SessionRecord::with_session(alice.initiate(&mut rng, &bundle));
        let first = alices.encrypt(&mut rng, text).unwrap();
        bob.decrypt(&mut bobs, &first).unwrap();
    }
    assert_eq!(bob.store.seen_base_key_count(bundle.signed_prekey_id()), 2);
    let bytes = bob.store.to_bytes().to_vec();
    let restored = PreKeyStore::from_bytes(&bytes).unwrap();
    assert_eq!(restored.to_bytes().to_vec(), bytes);
    // The seen base keys are the store's last field: two entries of a u32 id and 32 bytes.
    let n = bytes.len();
    let (a, b) = (n - 72, n - 36);
    let mut swapped = bytes.clone();
    swapped[a..].copy_from_slice(&[&bytes[b..], &bytes[a..b]].concat());
    assert!(PreKeyStore::from_bytes(&swapped).is_err(), "not ascending");
    let mut retired = bytes.clone();
    for at in [a, b] {
        retired[at..at + 4].copy_from_slice(&9_999u32.to_be_bytes());
    }
    assert!(
        PreKeyStore::from_bytes(&retired).is_err(),
        "under a signed prekey the store does not hold"
    );
}

/// The store reports its published prekeys and when they were made (what an endpoint's
/// rotation schedule reads), through rotations.
#[test]
fn the_store_reports_its_published_prekeys_and_when_they_were_made() {
    let mut rng = ChaCha20Rng::from_seed([62; 32]);
    let identity = confide_crypto::identity::IdentityKeyPair::generate(&mut rng);
    let mut store = PreKeyStore::new(identity, &mut rng, common::NOW);
    assert_eq!(store.signed_prekey_created_at(), Some(common::NOW));
    assert_eq!(store.last_resort_kem_created_at(), Some(common::NOW));
    let first = store.published_signed_prekey_id().unwrap();
    let later = common::NOW.saturating_add(confide_crypto::Duration::from_days(7));
    let second = store.rotate_signed_prekey(&mut rng, later);
    assert_ne!(second, first);
    assert_eq!(store.published_signed_prekey_id(), Some(second));
    assert_eq!(store.signed_prekey_created_at(), Some(later));
    assert_eq!(store.last_resort_kem_created_at(), Some(common::NOW));
    let latest = later.saturating_add(confide_crypto::Duration::from_days(1));
    let third = store.rotate_signed_prekey(&mut rng, latest);
    assert_eq!(store.published_signed_prekey_id(), Some(third));
    store.rotate_last_resort_kem_prekey(&mut rng, latest);
    assert_eq!(store.last_resort_kem_created_at(), Some(latest));
    assert_eq!(store.signed_prekey_created_at(), Some(latest));
}

/// The compact form (`docs/spec.md` §11) leaves out every session identity equal to the known
/// ones, 256 bytes a session; it reads back to the same record only with the same identities,
/// strictly: one encoding per value.
#[test]
fn compact_records_leave_out_the_known_identities() {
    use confide_session::KnownIdentities;
    let p = busy_pair();
    let record = &p.b;
    let session = record.current().unwrap();
    let (local, remote) = (*session.local_identity(), *session.remote_identity());
    let known = KnownIdentities {
        local: &local,
        remote: &remote,
    };
    let full = record.to_bytes();
    let compact = record.to_bytes_compact(known);
    let sessions = 1 + record.archived_count();
    // A flags byte instead of two identities of 128 bytes, in each session.
    assert_eq!(full.len() - compact.len(), sessions * (256 - 1));
    let back = SessionRecord::from_bytes_compact(&compact, known).unwrap();
    assert_eq!(back.to_bytes(), full);
    assert_eq!(back.to_bytes_compact(known), compact);
    // A record whose sessions have another peer identity (an identity change) keeps it
    // written out; read with other known identities, the identities differ.
    let other = Pair::established(81);
    let stranger = *other.b.current().unwrap().remote_identity();
    let known_other = KnownIdentities {
        local: &local,
        remote: &stranger,
    };
    let partly = record.to_bytes_compact(known_other);
    assert_eq!(full.len() - partly.len(), sessions * (128 - 1));
    assert_eq!(
        SessionRecord::from_bytes_compact(&partly, known_other)
            .unwrap()
            .to_bytes(),
        full
    );
    assert!(
        SessionRecord::from_bytes_compact(&compact, known_other)
            .is_ok_and(|r| r.to_bytes() != full),
        "the identities come from the caller"
    );
    // Strict: the flags byte right after the current session's version byte (record
    // version, current flag, session version).
    let flags_at = 3;
    assert_eq!(compact[flags_at], 3);
    for bad in [4u8, 0x80, 0xff] {
        let mut c = compact.to_vec();
        c[flags_at] = bad;
        assert!(SessionRecord::from_bytes_compact(&c, known).is_err());
    }
    // An identity written out although it equals the known one: another encoding, refused.
    assert!(SessionRecord::from_bytes_compact(&partly, known).is_err());
    // Version 3 exists only in the full form, even for a record without sessions; trailing
    // and missing bytes.
    let mut v3 = compact.to_vec();
    v3[0] = 3;
    assert!(SessionRecord::from_bytes_compact(&v3, known).is_err());
    let empty = SessionRecord::new().to_bytes_compact(known);
    assert_eq!(&empty[..], [4, 0, 0]);
    assert!(SessionRecord::from_bytes_compact(&empty, known).is_ok());
    assert!(SessionRecord::from_bytes_compact(&[3, 0, 0], known).is_err());
    assert!(
        SessionRecord::from_bytes(&[3, 0, 0]).is_ok(),
        "the full form reads it"
    );
    let mut long = compact.to_vec();
    long.push(0);
    assert!(SessionRecord::from_bytes_compact(&long, known).is_err());
    for cut in [
        1,
        flags_at,
        flags_at + 1,
        compact.len() / 2,
        compact.len() - 1,
    ] {
        assert!(SessionRecord::from_bytes_compact(&compact[..cut], known).is_err());
    }
    // Through storage encryption (as the endpoint reads it), with the same strictness.
    let key = StorageKey::new([9; 32]);
    let sealed = |state: &[u8]| through_storage(&key, state);
    let fast = SessionRecord::from_authenticated_compact(sealed(&compact).reader(), known).unwrap();
    assert_eq!(fast.to_bytes(), full);
    assert!(SessionRecord::from_authenticated_compact(sealed(&long).reader(), known).is_err());
    assert!(SessionRecord::from_authenticated_compact(sealed(&v3).reader(), known).is_err());
}
