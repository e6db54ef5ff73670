//! A fixed service, sender and recipient built from constant seeds (no RNG), shared by the
//! integration tests, the test vectors and the fuzz corpora. The fuzz targets rebuild the same
//! recipient and trust roots from the same constants.
#![allow(dead_code, unreachable_pub)]

use confide_crypto::{
    Duration, Timestamp,
    identity::{IdentityKeyPair, IdentityPublicKey},
    secret::SecretBytes,
    signing::SigningKey,
};
use confide_sealed::{
    Role, SenderCertificate, SenderClaims, ServerCertificate, ServerKey, TrustRoots,
};

pub const ROOT_KEY_ID: u32 = 1;
pub const SERVER_KEY_ID: u32 = 100;
pub const NOW: Timestamp = Timestamp::from_millis(1_750_000_000_000);
pub const SERVER_LIFETIME: Duration = Duration::from_days(90);
pub const SENDER_LIFETIME: Duration = Duration::from_days(1);
pub const SENDER_ADDRESS: &[u8] = b"counselor-0017@confide.example";
pub const SENDER_NAME: &str = "Dr. Alex Rivera";

pub fn root_key() -> SigningKey {
    SigningKey::from_seed(&[0x01; 32])
}

pub fn server_signing_key() -> SigningKey {
    SigningKey::from_seed(&[0x02; 32])
}

pub fn identity(seed: u8) -> IdentityKeyPair {
    IdentityKeyPair::from_secret_bytes(&SecretBytes::new([seed; 64]))
}

pub fn sender() -> IdentityKeyPair {
    identity(0x03)
}

pub fn recipient() -> IdentityKeyPair {
    identity(0x04)
}

pub fn roots() -> TrustRoots {
    let mut roots = TrustRoots::new();
    roots
        .add_root(ROOT_KEY_ID, root_key().verifying_key())
        .unwrap();
    roots
}

pub fn server_certificate(expires_at: Timestamp) -> ServerCertificate {
    ServerCertificate::issue(
        ROOT_KEY_ID,
        &root_key(),
        SERVER_KEY_ID,
        &server_signing_key().verifying_key(),
        expires_at,
    )
}

pub fn server_key() -> ServerKey {
    ServerKey::new(
        server_signing_key(),
        server_certificate(NOW.saturating_add(SERVER_LIFETIME)),
    )
    .unwrap()
}

pub fn claims<'a>(
    identity: &IdentityPublicKey,
    role: Role,
    name: Option<&'a str>,
) -> SenderClaims<'a> {
    SenderClaims {
        address: SENDER_ADDRESS,
        device_id: 7,
        identity: *identity,
        role,
        display_name: name,
    }
}

pub fn sender_certificate() -> SenderCertificate {
    SenderCertificate::issue(
        &server_key(),
        &claims(&sender().public(), Role::Counselor, Some(SENDER_NAME)),
        NOW.saturating_add(SENDER_LIFETIME),
    )
    .unwrap()
}

pub fn certificate_for(
    identity: &IdentityPublicKey,
    role: Role,
    name: Option<&str>,
) -> SenderCertificate {
    SenderCertificate::issue(
        &server_key(),
        &claims(identity, role, name),
        NOW.saturating_add(SENDER_LIFETIME),
    )
    .unwrap()
}

/// Finds `needle` in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Calls `check` with every single-bit flip of `bytes`: all eight bits of every byte.
pub fn for_each_bit_flip(bytes: &[u8], check: impl Fn(&[u8])) {
    for i in 0..bytes.len() {
        for bit in 0..8u32 {
            let mut b = bytes.to_vec();
            b[i] ^= 1 << bit;
            check(&b);
        }
    }
}
