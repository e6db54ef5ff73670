//! A fixed service, sender and recipient built from constant seeds (no RNG), shared by the
//! sealed-sender integration tests, its test vectors, its fuzz corpora and the `sealed_*` fuzz
//! checks in [`crate::fuzzing`] (so seeded envelopes open there and fuzzing starts deep).

use confide_crypto::{
    Duration, Timestamp,
    identity::{IdentityKeyPair, IdentityPublicKey},
    secret::SecretBytes,
    signing::SigningKey,
};
use confide_sealed::{
    Role, SenderCertificate, SenderClaims, ServerCertificate, ServerKey, TrustRoots,
};

/// Key id of the trust root.
pub const ROOT_KEY_ID: u32 = 1;
/// Key id of the server key.
pub const SERVER_KEY_ID: u32 = 100;
/// The fixture's "now".
pub const NOW: Timestamp = Timestamp::from_millis(1_750_000_000_000);
/// How long the server certificate is valid from [`NOW`].
pub const SERVER_LIFETIME: Duration = Duration::from_days(90);
/// How long sender certificates are valid from [`NOW`].
pub const SENDER_LIFETIME: Duration = Duration::from_days(1);
/// The sender's address in its certificate.
pub const SENDER_ADDRESS: &[u8] = b"counselor-0017@confide.example";
/// The sender's display name in its certificate.
pub const SENDER_NAME: &str = "Dr. Alex Rivera";

/// The root signing key (seed `0x01`).
pub fn root_key() -> SigningKey {
    SigningKey::from_seed(&[0x01; 32])
}

/// The server's signing key (seed `0x02`).
pub fn server_signing_key() -> SigningKey {
    SigningKey::from_seed(&[0x02; 32])
}

/// An identity key pair from a 64-byte secret of `seed` bytes.
pub fn identity(seed: u8) -> IdentityKeyPair {
    IdentityKeyPair::from_secret_bytes(&SecretBytes::new([seed; 64]))
}

/// The sender's identity (seed `0x03`).
pub fn sender() -> IdentityKeyPair {
    identity(0x03)
}

/// The recipient's identity (seed `0x04`).
pub fn recipient() -> IdentityKeyPair {
    identity(0x04)
}

/// Trust roots holding the root key.
pub fn roots() -> TrustRoots {
    let mut roots = TrustRoots::new();
    roots
        .add_root(ROOT_KEY_ID, root_key().verifying_key())
        .unwrap();
    roots
}

/// The root's certificate of the server key, expiring at `expires_at`.
pub fn server_certificate(expires_at: Timestamp) -> ServerCertificate {
    ServerCertificate::issue(
        ROOT_KEY_ID,
        &root_key(),
        SERVER_KEY_ID,
        &server_signing_key().verifying_key(),
        expires_at,
    )
}

/// The server key, certified until [`NOW`] + [`SERVER_LIFETIME`].
pub fn server_key() -> ServerKey {
    ServerKey::new(
        server_signing_key(),
        server_certificate(NOW.saturating_add(SERVER_LIFETIME)),
    )
    .unwrap()
}

/// Claims for [`SENDER_ADDRESS`], device 7, with `identity`, `role` and display `name`.
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

/// The sender's certificate (a counselor named [`SENDER_NAME`]).
pub fn sender_certificate() -> SenderCertificate {
    SenderCertificate::issue(
        &server_key(),
        &claims(&sender().public(), Role::Counselor, Some(SENDER_NAME)),
        NOW.saturating_add(SENDER_LIFETIME),
    )
    .unwrap()
}

/// A certificate for `identity` at [`SENDER_ADDRESS`] with `role` and `name`.
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
