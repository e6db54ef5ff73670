//! A certificate service and endpoints built on it, as the facade's tests, the allocation
//! probe and the benchmarks set them up.

use chacha20::ChaCha20Rng;
use confide::{Address, Endpoint, EndpointConfig, Role};
use confide_crypto::{
    Duration, Timestamp,
    identity::IdentityKeyPair,
    signing::{SigningKey, VerifyingKey},
};
use confide_sealed::{SenderCertificate, SenderClaims, ServerCertificate, ServerKey, TrustRoots};

/// The fixtures' start time (2025-06-15).
pub const T0: Timestamp = Timestamp::from_millis(1_750_000_000_000);

/// A small certificate service: a trust root (key id 1) and a server key (id 7) it certified
/// until a year after [`T0`], which issues sender certificates.
#[derive(Debug)]
pub struct Service {
    /// The roots every endpoint of the service pins.
    pub roots: TrustRoots,
    /// The root's key id and key.
    root: (u32, VerifyingKey),
    /// The server key that issues sender certificates.
    pub server: ServerKey,
}

impl Service {
    /// A fresh service with keys drawn from `rng`, its server key certified for a year from
    /// [`T0`].
    pub fn new(rng: &mut ChaCha20Rng) -> Self {
        Self::with_server_validity(rng, Duration::from_days(365))
    }

    /// A fresh service with keys drawn from `rng` (the root key, then the server key), its
    /// server key certified for `valid_for` from [`T0`].
    pub fn with_server_validity(rng: &mut ChaCha20Rng, valid_for: Duration) -> Self {
        Self::with_root_key_id(rng, 1, valid_for)
    }

    /// A fresh service whose trust root has key id `root_key_id` (so that its root can sit
    /// beside another service's in one [`TrustRoots`]), its server key certified for
    /// `valid_for` from [`T0`].
    pub fn with_root_key_id(rng: &mut ChaCha20Rng, root_key_id: u32, valid_for: Duration) -> Self {
        let root = SigningKey::generate(rng);
        let mut roots = TrustRoots::new();
        roots.add_root(root_key_id, root.verifying_key()).unwrap();
        let signing = SigningKey::generate(rng);
        let cert = ServerCertificate::issue(
            root_key_id,
            &root,
            7,
            &signing.verifying_key(),
            T0.saturating_add(valid_for),
        );
        Self {
            roots,
            root: (root_key_id, root.verifying_key()),
            server: ServerKey::new(signing, cert).unwrap(),
        }
    }

    /// The service's trust root: its key id and key (to trust it beside another service's).
    #[must_use]
    pub fn root(&self) -> (u32, VerifyingKey) {
        self.root
    }

    /// A sender certificate for `name` and `identity`, valid until 300 days after [`T0`].
    pub fn certificate(
        &self,
        name: &[u8],
        identity: &IdentityKeyPair,
        role: Role,
    ) -> SenderCertificate {
        self.certificate_until(
            name,
            identity,
            role,
            T0.saturating_add(Duration::from_days(300)),
        )
    }

    /// A sender certificate for `name` and `identity` that expires at `expires`.
    pub fn certificate_until(
        &self,
        name: &[u8],
        identity: &IdentityKeyPair,
        role: Role,
        expires: Timestamp,
    ) -> SenderCertificate {
        SenderCertificate::issue(
            &self.server,
            &SenderClaims {
                address: name,
                device_id: 1,
                identity: identity.public(),
                role,
                display_name: None,
            },
            expires,
        )
        .unwrap()
    }

    /// A new endpoint plus its identity key pair (kept by tests to inspect the wire).
    pub fn endpoint(
        &self,
        rng: &mut ChaCha20Rng,
        name: &[u8],
        role: Role,
        config: EndpointConfig,
    ) -> (Endpoint, IdentityKeyPair) {
        let identity = IdentityKeyPair::generate(rng);
        let cert = self.certificate(name, &identity, role);
        let e = Endpoint::new(
            rng,
            T0,
            identity.clone(),
            Address::new(name).unwrap(),
            cert,
            self.roots.clone(),
            config,
        )
        .unwrap();
        (e, identity)
    }
}
