//! Fuzzes the strict server-certificate decoder: no panic; whatever decodes re-encodes to
//! exactly the input; validating a decoded certificate never panics.
#![no_main]

use std::sync::LazyLock;

use confide_crypto::{Timestamp, signing::SigningKey};
use confide_sealed::{ServerCertificate, TrustRoots};
use libfuzzer_sys::fuzz_target;

/// The fixture's "now" (see crates/confide-sealed/tests/common/mod.rs).
const NOW: Timestamp = Timestamp::from_millis(1_750_000_000_000);

static ROOTS: LazyLock<TrustRoots> = LazyLock::new(|| {
    let mut roots = TrustRoots::new();
    roots
        .add_root(1, SigningKey::from_seed(&[0x01; 32]).verifying_key())
        .expect("one root fits");
    roots
});

fuzz_target!(|data: &[u8]| {
    if let Ok(cert) = ServerCertificate::from_bytes(data) {
        assert_eq!(
            cert.as_bytes(),
            data,
            "server certificate encoding is canonical"
        );
        let _ = cert.validate(&ROOTS, NOW);
    }
});
