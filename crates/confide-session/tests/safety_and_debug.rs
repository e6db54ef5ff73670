//! Safety numbers, and Debug output of every secret-holding type.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use crate::common;

use common::{Pair, assert_no_leak, rng};
use confide_crypto::identity::IdentityKeyPair;
use confide_session::{COMPACT_LEN, SAFETY_NUMBER_VERSION, SafetyNumber, storage::StorageKey};

#[test]
fn safety_numbers() {
    let mut rng = rng(90);
    let a = IdentityKeyPair::generate(&mut rng).public();
    let b = IdentityKeyPair::generate(&mut rng).public();
    let c = IdentityKeyPair::generate(&mut rng).public();
    let ab = SafetyNumber::new(&a, &b);
    let ba = SafetyNumber::new(&b, &a);
    let ac = SafetyNumber::new(&a, &c);
    let cb = SafetyNumber::new(&c, &b);

    // Identical on both sides.
    assert_eq!(ab.digits(), ba.digits());
    assert_eq!(ab.to_compact(), ba.to_compact());
    assert!(ab.ct_equals(&ba));
    // 60 decimal digits, shown as 12 groups of 5.
    let d = ab.digits();
    assert_eq!(d.len(), 60);
    assert!(d.bytes().all(|x| x.is_ascii_digit()));
    let groups = ab.display_groups();
    assert_eq!(groups.split(' ').count(), 12);
    assert_eq!(groups.replace(' ', ""), d);
    // Any other identity gives another number (on either side).
    for other in [&ac, &cb] {
        assert_ne!(other.digits(), d);
        assert!(!other.ct_equals(&ab));
    }
    // Each half of the number belongs to one identity: a and b share a half with ac / cb.
    let halves = |n: &SafetyNumber| {
        let d = n.digits();
        [d[..30].to_string(), d[30..].to_string()]
    };
    assert!(halves(&ac).iter().any(|h| halves(&ab).contains(h)));

    // The compact form matches only itself.
    let compact = ab.to_compact();
    assert_eq!(compact.len(), COMPACT_LEN);
    assert_eq!(compact[0], SAFETY_NUMBER_VERSION);
    assert!(ab.matches_compact(&compact));
    assert!(ba.matches_compact(&compact));
    assert!(!ac.matches_compact(&compact));
    assert!(!ab.matches_compact(&ac.to_compact()));
    assert!(!ab.matches_compact(&compact[..COMPACT_LEN - 1]));
    assert!(!ab.matches_compact(&[&compact[..], &[0]].concat()));
    assert!(!ab.matches_compact(&[]));
    for at in 0..COMPACT_LEN {
        let mut x = compact;
        x[at] ^= 0x10;
        assert!(!ab.matches_compact(&x), "byte {at}");
    }
    // Deterministic: recomputing gives the same number.
    assert_eq!(SafetyNumber::new(&a, &b).digits(), d);
    // Debug shows nothing.
    assert_no_leak(&format!("{ab:?}"), &compact, "SafetyNumber");
    assert!(!format!("{ab:?}").contains(&d[..10]));
}

#[test]
fn same_safety_number_from_each_session() {
    let p = Pair::established(91);
    let from_a = SafetyNumber::new(
        p.a.current().unwrap().local_identity(),
        p.a.current().unwrap().remote_identity(),
    );
    let from_b = SafetyNumber::new(
        p.b.current().unwrap().local_identity(),
        p.b.current().unwrap().remote_identity(),
    );
    assert!(from_a.ct_equals(&from_b));
    assert_eq!(from_a.digits(), from_b.digits());
}

#[test]
fn debug_output_holds_no_secrets() {
    let mut p = Pair::established(92);
    // Leave skipped keys around so that message keys are in the state too.
    let secret_text = b"my private counselling disclosure";
    let _skipped = p.a_sends(b"skipped one");
    let m1 = p.a_sends(secret_text);
    let got = p.b_gets(&m1).unwrap();

    let record_bytes = p.b.to_bytes();
    let store_bytes = p.bob.store.to_bytes();
    let session = p.b.current().unwrap();
    let identity_secret = p.bob.id.to_secret_bytes();
    let secrets: Vec<(&str, Vec<u8>)> = vec![
        ("record state", record_bytes.to_vec()),
        ("store state", store_bytes.to_vec()),
        ("session state", session.to_bytes().to_vec()),
        ("identity secret", identity_secret.expose().to_vec()),
        ("alice record state", p.a.to_bytes().to_vec()),
    ];
    let shown = [
        ("Session", format!("{session:?}")),
        ("Session (alternate)", format!("{session:#?}")),
        ("SessionRecord", format!("{:?}", p.b)),
        ("SessionRecord (alternate)", format!("{:#?}", p.b)),
        ("PreKeyStore", format!("{:?}", p.bob.store)),
        ("PreKeyStore (alternate)", format!("{:#?}", p.bob.store)),
        ("Decrypted", format!("{got:?}")),
        ("Decrypted (alternate)", format!("{got:#?}")),
        ("IdentityKeyPair", format!("{:?}", p.bob.id)),
        ("Bundle", format!("{:?}", p.bob.store.bundles())),
        (
            "Message",
            format!(
                "{:?}",
                confide_session::SessionMessage::from_bytes(&m1).unwrap()
            ),
        ),
    ];
    for (what, s) in &shown {
        for (name, secret) in &secrets {
            assert_no_leak(s, secret, &format!("{what} vs {name}"));
        }
        let text = String::from_utf8_lossy(secret_text);
        assert!(!s.contains(&*text), "{what} shows the plaintext");
        assert!(!s.contains("counselling"), "{what} shows the plaintext");
    }
    // The plaintext bytes as a list are not shown either.
    let as_list = format!("{:?}", &secret_text[..8]);
    assert!(!format!("{got:?}").contains(as_list.trim_matches(['[', ']'])));

    // The storage key.
    let key_bytes = [0xa7u8; 32];
    let key = StorageKey::new(key_bytes);
    let shown = format!("{key:?} {key:#?}");
    assert_no_leak(&shown, &key_bytes, "StorageKey");
    assert!(!shown.to_lowercase().contains("a7a7"));
    assert!(!shown.contains("167"));
}
