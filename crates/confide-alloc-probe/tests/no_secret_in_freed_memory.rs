//! Serialising state must not leave a copy of a secret in freed heap memory: every buffer that
//! held the identity seed, a root key, a chain key or a ratchet secret is wiped before it is
//! freed, including the intermediate buffers a growing writer moves away from.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use chacha20::ChaCha20Rng;
use confide::{Address, Endpoint, EndpointConfig, Role, StorageKey};
use confide_alloc_probe::{PATTERN_LEN, ScanningAllocator};
use confide_crypto::{Timestamp, identity::IdentityKeyPair};
use confide_session::{
    ExpectedIdentity, IdentityChangePolicy, PreKeyBundle, PreKeyStore, Session, SessionRecord,
};
use confide_test_support::service::{Service, T0};
use rand_core::SeedableRng;

#[global_allocator]
static ALLOCATOR: ScanningAllocator = ScanningAllocator;

const NOW: Timestamp = T0;
/// Slot (storage context) the test stores its blobs under.
const SLOT: &[u8] = b"probe-slot";

fn first_32(bytes: &[u8]) -> [u8; PATTERN_LEN] {
    let mut out = [0u8; PATTERN_LEN];
    out.copy_from_slice(&bytes[..PATTERN_LEN]);
    out
}

fn endpoint(rng: &mut ChaCha20Rng, identity: IdentityKeyPair) -> Endpoint {
    let service = Service::new(rng);
    let certificate = service.certificate(b"counselor", &identity, Role::Counselor);
    Endpoint::new(
        rng,
        NOW,
        identity,
        Address::new(b"counselor").unwrap(),
        certificate,
        service.roots,
        EndpointConfig::default(),
    )
    .unwrap()
}

#[test]
fn exporting_state_leaves_no_secret_in_freed_memory() {
    let _guard = LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut rng = ChaCha20Rng::from_seed([9; 32]);
    // A client and a counselor with a session in both directions.
    let mut counselor = PreKeyStore::new(IdentityKeyPair::generate(&mut rng), &mut rng, NOW);
    counselor.generate_one_time_prekeys(&mut rng, 50);
    counselor.generate_one_time_kem_prekeys(&mut rng, 20);
    let client_id = IdentityKeyPair::generate(&mut rng);
    let mut client_store = PreKeyStore::new(client_id.clone(), &mut rng, NOW);
    let bundle = PreKeyBundle::from_bytes(&counselor.bundles()[0].to_bytes())
        .unwrap()
        .verify(ExpectedIdentity::TrustOnFirstUse, &client_id.public())
        .unwrap();
    let mut client =
        SessionRecord::with_session(Session::initiate(&mut rng, &client_id, &bundle).unwrap());
    let mut with_client = SessionRecord::new();
    for i in 0..3u8 {
        let m = client.encrypt(&mut rng, &[i; 40]).unwrap();
        with_client
            .decrypt(&mut counselor, &m, NOW, IdentityChangePolicy::Refuse)
            .unwrap();
        let r = with_client.encrypt(&mut rng, &[i; 300]).unwrap();
        client
            .decrypt(&mut client_store, &r, NOW, IdentityChangePolicy::Refuse)
            .unwrap();
    }
    // One more send so the client holds a sending chain, and a skipped key at the counselor.
    let _lost = client.encrypt(&mut rng, b"lost").unwrap();
    let m = client.encrypt(&mut rng, b"arrives").unwrap();
    with_client
        .decrypt(&mut counselor, &m, NOW, IdentityChangePolicy::Refuse)
        .unwrap();
    let endpoint_identity = IdentityKeyPair::generate(&mut rng);
    let endpoint_seed = first_32(endpoint_identity.to_secret_bytes().expose());
    let mut endpoint = endpoint(&mut rng, endpoint_identity);
    let key = StorageKey::new([0x42; 32]);

    // The secrets the probe looks for. The client's session layout (docs/spec.md §11, an
    // initiator that has heard back: no pending prekey data) puts the envelope secret at 291,
    // the root key at 324, the ratchet secret at 356 and, with a sending chain, the chain key
    // at 421.
    let session_bytes = client.current().unwrap().to_bytes();
    assert!(!client.current().unwrap().awaiting_reply());
    assert_eq!(session_bytes[290], 1, "the session has an envelope secret");
    assert_eq!(
        &session_bytes[291..323],
        client
            .current()
            .unwrap()
            .envelope_secret()
            .unwrap()
            .expose()
    );
    assert_eq!(session_bytes[420], 1, "the client has a sending chain");
    let envelope_secret = first_32(&session_bytes[291..]);
    let root = first_32(&session_bytes[324..]);
    let ratchet_secret = first_32(&session_bytes[356..]);
    let chain = first_32(&session_bytes[421..]);
    drop(session_bytes);
    let counselor_seed = first_32(counselor.identity().to_secret_bytes().expose());
    let client_seed = first_32(client_id.to_secret_bytes().expose());

    confide_alloc_probe::reset();
    for p in [
        &counselor_seed,
        &client_seed,
        &endpoint_seed,
        &envelope_secret,
        &root,
        &ratchet_secret,
        &chain,
    ] {
        assert!(confide_alloc_probe::register(p));
    }
    confide_alloc_probe::arm();
    {
        let _ = counselor.to_bytes();
        let _ = client_store.to_bytes();
        let _ = client.to_bytes();
        let _ = with_client.to_bytes();
        let _ = client.current().unwrap().to_bytes();
        let _ = client.to_encrypted(&mut rng, &key, SLOT);
        let _ = counselor.to_encrypted(&mut rng, &key, SLOT);
        let _ = client.current().unwrap().to_encrypted(&mut rng, &key, SLOT);
        let _ = endpoint.export_state(&mut rng, &key, SLOT).unwrap();
    }
    confide_alloc_probe::disarm();
    let (hits, scanned) = (
        confide_alloc_probe::hits(),
        confide_alloc_probe::frees_scanned(),
    );
    confide_alloc_probe::reset();
    assert!(scanned > 0, "the probe saw no free at all");
    assert_eq!(hits, 0, "{hits} freed blocks (of {scanned}) held a secret");
}

#[test]
fn the_probe_finds_a_secret_in_a_plain_freed_vec() {
    // The probe itself works: a plain Vec holding a pattern is found when freed. (This test
    // and the one above share the global probe state, so it runs inside the same lock.)
    let _guard = LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    confide_alloc_probe::reset();
    let secret = [0x5a; PATTERN_LEN];
    assert!(confide_alloc_probe::register(&secret));
    let mut v = Vec::with_capacity(1);
    confide_alloc_probe::arm();
    v.extend_from_slice(&secret);
    drop(v);
    confide_alloc_probe::disarm();
    let hits = confide_alloc_probe::hits();
    confide_alloc_probe::reset();
    assert!(hits >= 1, "the probe missed a freed secret");
}

static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
