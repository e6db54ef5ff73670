//! Fuzzes sealed-envelope decoding and opening: no panic; whatever decodes re-encodes to the
//! input; whatever opens carries a payload of exactly `len - ENVELOPE_OVERHEAD` bytes.
//!
//! The recipient and trust roots are the fixed fixture of confide-sealed's tests
//! (crates/confide-sealed/tests/common/mod.rs), so the seed corpus (envelopes sealed to that
//! recipient) opens here and mutations start from deep inside `open`.
#![no_main]

use std::sync::LazyLock;

use confide_crypto::{
    Timestamp, identity::IdentityKeyPair, secret::SecretBytes, signing::SigningKey,
};
use confide_sealed::{ENVELOPE_OVERHEAD, SealedEnvelope, TrustRoots, open};
use libfuzzer_sys::fuzz_target;

/// The fixture's "now".
const NOW: Timestamp = Timestamp::from_millis(1_750_000_000_000);

static RECIPIENT: LazyLock<IdentityKeyPair> =
    LazyLock::new(|| IdentityKeyPair::from_secret_bytes(&SecretBytes::new([0x04; 64])));

static ROOTS: LazyLock<TrustRoots> = LazyLock::new(|| {
    let mut roots = TrustRoots::new();
    roots
        .add_root(1, SigningKey::from_seed(&[0x01; 32]).verifying_key())
        .expect("one root fits");
    roots
});

fuzz_target!(|data: &[u8]| {
    if let Ok(envelope) = SealedEnvelope::from_bytes(data) {
        assert_eq!(envelope.to_bytes(), data, "envelope encoding is canonical");
    }
    if let Ok(opened) = open(&RECIPIENT, &ROOTS, NOW, data) {
        assert_eq!(opened.payload.len() + ENVELOPE_OVERHEAD, data.len());
    }
});
