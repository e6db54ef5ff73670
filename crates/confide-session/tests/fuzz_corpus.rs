//! Replays every file of the session fuzz corpora (`fuzz/corpus/session_*`) through the
//! same checks the fuzz targets run (`confide_test_support::fuzzing`, so the two cannot drift
//! apart).
//!
//! `CONFIDE_REGENERATE_CORPUS=1` rewrites the seed corpora (valid inputs from fixed seeds).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use crate::common;

use chacha20::ChaCha20Rng;
use common::{Pair, Party, rng, text};
use confide_test_support::corpus;
use confide_test_support::fuzzing::{
    self,
    session::{STATE_COMPACT_RECORD, STATE_PREKEY_STORE, STATE_RECORD, STATE_SESSION},
};
use rand_core::{Rng, SeedableRng};

type Check = fn(&[u8]);

const TARGETS: [(&str, Check); 5] = [
    ("session_bundle", fuzzing::session_bundle),
    ("session_message", fuzzing::session_message),
    ("session_state", fuzzing::session_state),
    ("session_interaction", fuzzing::session_interaction),
    ("session_storage_blob", fuzzing::session_storage_blob),
];

fn bundle_seeds() -> Vec<Vec<u8>> {
    let mut rng = rng(0xf0);
    let with_otk = Party::new(&mut rng, 2, 1);
    let kem_only = Party::new(&mut rng, 0, 1);
    let mut out: Vec<Vec<u8>> = with_otk
        .store
        .bundles()
        .iter()
        .map(|b| b.to_bytes())
        .collect();
    out.push(with_otk.store.last_resort_bundle().unwrap().to_bytes());
    out.push(kem_only.store.bundles()[0].to_bytes());
    out
}

fn message_seeds() -> Vec<Vec<u8>> {
    let mut p = Pair::new(0xf1);
    let mut out = vec![p.a_sends(b"first, with one-time prekeys")];
    p.b_gets(&out[0]).unwrap();
    out.push(p.b_sends(b"reply"));
    p.a_gets(&out[1]).unwrap();
    out.push(p.a_sends(&text(7)));
    out.push(p.a_sends(&vec![b'z'; 1000]));
    let r = p.b_sends(b"turn");
    p.a_gets(&r).unwrap();
    out.push(p.a_sends(b"previous chain length 3"));
    // A prekey message over the last-resort bundle (no one-time keys).
    let bare = p.bob.store.last_resort_bundle().unwrap();
    let mut rng = rng(0xf2);
    let session = p.alice.initiate(&mut rng, &bare);
    out.push(
        confide_session::SessionRecord::with_session(session)
            .encrypt(&mut rng, b"last resort")
            .unwrap(),
    );
    out
}

fn state_seeds() -> Vec<Vec<u8>> {
    let with = |sel: u8, bytes: zeroize::Zeroizing<Vec<u8>>| [&[sel][..], &bytes[..]].concat();
    let mut p = Pair::new(0xf3);
    let mut out = vec![
        with(
            STATE_RECORD,
            confide_session::SessionRecord::new().to_bytes(),
        ),
        with(STATE_RECORD, p.a.to_bytes()),
        with(STATE_SESSION, p.a.current().unwrap().to_bytes()),
        with(STATE_PREKEY_STORE, p.alice.store.to_bytes()),
    ];
    let m: Vec<_> = (0..3).map(|i| p.a_sends(&text(i))).collect();
    p.b_gets(&m[2]).unwrap();
    out.push(with(STATE_RECORD, p.b.to_bytes()));
    out.push(with(STATE_SESSION, p.b.current().unwrap().to_bytes()));
    out.push(with(STATE_PREKEY_STORE, p.bob.store.to_bytes()));
    // A record with an archived session.
    let bare = p.bob.store.last_resort_bundle().unwrap();
    let session = p.alice.initiate(&mut p.rng, &bare);
    p.a.promote(session);
    let first = p.a_sends(b"new");
    p.b_gets(&first).unwrap();
    out.push(with(STATE_RECORD, p.b.to_bytes()));
    // The same record in its compact form: with both its identities known (an archived
    // session of another peer keeps its own), and with neither.
    let current = p.b.current().unwrap();
    let (local, remote) = (*current.local_identity(), *current.remote_identity());
    for (l, r) in [(&local, &remote), (&remote, &local)] {
        let known = confide_session::KnownIdentities {
            local: l,
            remote: r,
        };
        let mut seed = vec![STATE_COMPACT_RECORD];
        seed.extend_from_slice(&l.to_bytes());
        seed.extend_from_slice(&r.to_bytes());
        seed.extend_from_slice(&p.b.to_bytes_compact(known));
        out.push(seed);
    }
    // A session of version 3 (before the envelope secret), read and upgraded.
    let v4 = p.b.current().unwrap().to_bytes();
    let flag_at = 1 + 128 + 128 + 1 + 32;
    let mut v3 = vec![confide_session::state::SESSION_STATE_VERSION_WITHOUT_ENVELOPE_SECRET];
    v3.extend_from_slice(&v4[1..flag_at]);
    v3.extend_from_slice(&v4[flag_at + 1 + 32..]);
    assert!(confide_session::Session::from_bytes(&v3).is_ok());
    out.push(with(STATE_SESSION, zeroize::Zeroizing::new(v3)));
    out
}

fn interaction_seeds() -> Vec<Vec<u8>> {
    let mut rng = ChaCha20Rng::from_seed([0xf4; 32]);
    let mut out = Vec::new();
    // Hand-written: Alice writes, Bob reads and answers, with a repeat, a flip and a restore.
    out.push(vec![
        0, 0, 4, 0, 2, 4, 1, 7, 0, 4, 0, 8, 1, 0, 0, 99, 9, 2, 0, 4, 0,
    ]);
    // Heavy on sends then out-of-order delivery.
    let mut v = vec![0; 12];
    v.extend([4, 10, 4, 4, 4, 0, 6, 2, 4, 0, 2, 2, 4, 1, 4, 1]);
    out.push(v);
    for len in [32usize, 64, 96, 128, 160, 200, 256, 300] {
        let mut v = vec![0u8; len];
        rng.fill_bytes(&mut v);
        out.push(v);
    }
    out
}

/// Stored blobs under the target's key, slot and record name: a record blob and a version 2
/// blob that open (so the fuzzer starts past the key check), and one of each for another
/// record name, which must not.
fn storage_blob_seeds() -> Vec<Vec<u8>> {
    use confide_session::storage::{self, RecordSealer, StateKind, StorageKey};
    use confide_test_support::fuzzing::session::{
        STORAGE_BLOB_KEY, STORAGE_BLOB_RECORD, STORAGE_BLOB_SLOT,
    };
    let mut rng = ChaCha20Rng::from_seed([0xf5; 32]);
    let key = StorageKey::new(STORAGE_BLOB_KEY);
    let sealer = RecordSealer::new(&key, StateKind::EndpointRecord, STORAGE_BLOB_SLOT);
    vec![
        sealer.seal(&mut rng, STORAGE_BLOB_RECORD, b"a record"),
        sealer.seal(&mut rng, b"another record", b"a record elsewhere"),
        storage::seal(
            &mut rng,
            &key,
            StateKind::EndpointRecord,
            STORAGE_BLOB_SLOT,
            b"a version 2 blob",
        ),
        b"CFDS".to_vec(),
    ]
}

/// Rewrites the seed corpora once per run when `CONFIDE_REGENERATE_CORPUS=1`.
fn regenerate_when_asked() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    if corpus::regenerate_requested() {
        ONCE.call_once(|| {
            corpus::write("session_bundle", &bundle_seeds());
            corpus::write("session_message", &message_seeds());
            corpus::write("session_state", &state_seeds());
            corpus::write("session_interaction", &interaction_seeds());
            corpus::write("session_storage_blob", &storage_blob_seeds());
        });
    }
}

#[test]
fn seed_generators_produce_inputs_that_decode() {
    use confide_session::{PreKeyBundle, PreKeyStore, Session, SessionMessage, SessionRecord};
    for b in bundle_seeds() {
        assert_eq!(PreKeyBundle::from_bytes(&b).unwrap().to_bytes(), b);
    }
    for m in message_seeds() {
        assert_eq!(SessionMessage::from_bytes(&m).unwrap().to_bytes(), m);
    }
    for s in state_seeds() {
        let (sel, rest) = s.split_first().unwrap();
        let again = match *sel {
            STATE_RECORD => SessionRecord::from_bytes(rest).unwrap().to_bytes(),
            STATE_PREKEY_STORE => PreKeyStore::from_bytes(rest).unwrap().to_bytes(),
            STATE_COMPACT_RECORD => {
                let local =
                    confide_crypto::identity::IdentityPublicKey::from_bytes(&rest[..128]).unwrap();
                let remote =
                    confide_crypto::identity::IdentityPublicKey::from_bytes(&rest[128..256])
                        .unwrap();
                let known = confide_session::KnownIdentities {
                    local: &local,
                    remote: &remote,
                };
                let body = &rest[256..];
                let mut again = rest[..256].to_vec();
                again.extend_from_slice(
                    &SessionRecord::from_bytes_compact(body, known)
                        .unwrap()
                        .to_bytes_compact(known),
                );
                zeroize::Zeroizing::new(again)
            }
            _ => Session::from_bytes(rest).unwrap().to_bytes(),
        };
        if *sel != STATE_PREKEY_STORE
            && rest.first()
                == Some(&confide_session::state::SESSION_STATE_VERSION_WITHOUT_ENVELOPE_SECRET)
        {
            // Read, then written back as the current version.
            assert_eq!(again[0], confide_session::state::SESSION_STATE_VERSION);
        } else {
            assert_eq!(&again[..], rest);
        }
    }
}

#[test]
fn replay_every_corpus_file() {
    regenerate_when_asked();
    for (target, check) in TARGETS {
        let _ = corpus::replay(target, check);
    }
}

#[test]
fn storage_blob_seeds_open_where_they_were_sealed() {
    use confide_session::storage::{self, RecordSealer, StateKind, StorageKey};
    use confide_test_support::fuzzing::session::{
        STORAGE_BLOB_KEY, STORAGE_BLOB_RECORD, STORAGE_BLOB_SLOT,
    };
    let key = StorageKey::new(STORAGE_BLOB_KEY);
    let sealer = RecordSealer::new(&key, StateKind::EndpointRecord, STORAGE_BLOB_SLOT);
    let seeds = storage_blob_seeds();
    assert_eq!(
        &sealer.open(STORAGE_BLOB_RECORD, &seeds[0]).unwrap()[..],
        b"a record"
    );
    assert!(sealer.open(STORAGE_BLOB_RECORD, &seeds[1]).is_err());
    assert_eq!(
        &storage::open(
            &key,
            StateKind::EndpointRecord,
            STORAGE_BLOB_SLOT,
            &seeds[2]
        )
        .unwrap()[..],
        b"a version 2 blob"
    );
}

#[test]
fn replay_checks_are_not_vacuous() {
    // Malformed and mutated inputs go through the same functions without panicking.
    for (_, check) in TARGETS {
        check(&[]);
        check(&[0]);
        check(&[1, 2, 3]);
    }
    for b in bundle_seeds().into_iter().take(1) {
        for at in (0..b.len()).step_by(97) {
            let mut x = b.clone();
            x[at] ^= 0x20;
            fuzzing::session_bundle(&x);
        }
    }
    for s in state_seeds() {
        for at in (1..s.len()).step_by(53) {
            let mut x = s.clone();
            x[at] ^= 0x01;
            fuzzing::session_state(&x);
        }
    }
}
