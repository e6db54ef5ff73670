//! Server and sender certificates and their validation.

use core::fmt;

use confide_crypto::{
    Duration, Timestamp,
    codec::{DecodeError, EncodeError, Reader, Writer},
    identity::IdentityPublicKey,
    kdf::labels,
    secret::ct_eq,
    signing::{SIGNATURE_LEN, Signature, SigningKey, VerifyingKey},
};
use thiserror::Error;

use crate::{
    Role, TrustRoots,
    consts::{
        MAX_DISPLAY_NAME_LEN, MAX_SENDER_ADDRESS_LEN, MAX_SENDER_CERTIFICATE_LEN,
        SENDER_CERTIFICATE_VERSION, SERVER_CERTIFICATE_BODY_LEN, SERVER_CERTIFICATE_LEN,
        SERVER_CERTIFICATE_VERSION,
    },
};

/// Why a certificate chain was not accepted. Each failure has its own variant; they carry
/// key ids of the service's keys, never anything about the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CertificateError {
    /// The server certificate names a root key id that is not trusted.
    #[error("server certificate names untrusted root key id {root_key_id}")]
    UnknownRoot {
        /// The root key id named.
        root_key_id: u32,
    },
    /// The root's signature on the server certificate does not verify.
    #[error("root signature on the server certificate does not verify")]
    BadRootSignature,
    /// The server certificate expired (`now >= expires_at`).
    #[error("server certificate expired")]
    ServerExpired,
    /// The server key is on the trust configuration's revocation list.
    #[error("server key id {server_key_id} is revoked")]
    ServerRevoked {
        /// The revoked key id.
        server_key_id: u32,
    },
    /// The server's signature on the sender certificate does not verify.
    #[error("server signature on the sender certificate does not verify")]
    BadServerSignature,
    /// The sender certificate expired (`now >= expires_at`).
    #[error("sender certificate expired")]
    SenderExpired,
}

/// Why a certificate could not be issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum IssueError {
    /// The sender address is empty or longer than [`MAX_SENDER_ADDRESS_LEN`].
    #[error("sender address of {len} bytes is not within 1..={max}")]
    AddressLength {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The display name is empty, longer than [`MAX_DISPLAY_NAME_LEN`] bytes, or contains a
    /// control or bidirectional-formatting character.
    #[error("display name is empty, too long or contains control characters")]
    InvalidDisplayName,
    /// [`Role::Other`] with a value that has no canonical encoding.
    #[error("role value {value} has no canonical encoding")]
    NonCanonicalRole {
        /// The wire value.
        value: u8,
    },
    /// The signing key does not match the public key in the server certificate.
    #[error("signing key does not match the server certificate")]
    KeyMismatch,
    /// A field could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

fn signed_message(label: &[u8], body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(label.len().saturating_add(body.len()));
    m.extend_from_slice(label);
    m.extend_from_slice(body);
    m
}

/// Splits `encoded` into its signed body and trailing signature.
fn body_and_signature(encoded: &[u8]) -> Option<(&[u8], Signature)> {
    let body_len = encoded.len().checked_sub(SIGNATURE_LEN)?;
    let (body, sig) = encoded.split_at_checked(body_len)?;
    let sig: [u8; SIGNATURE_LEN] = sig.try_into().ok()?;
    Some((body, Signature::from_bytes(sig)))
}

/// Whether `name` is an acceptable display name: 1..=[`MAX_DISPLAY_NAME_LEN`] bytes, no
/// control characters and no bidirectional formatting characters (which could make a name
/// render as something else, such as "Counselor").
#[must_use]
pub fn is_valid_display_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_DISPLAY_NAME_LEN
        && !name.chars().any(|c| {
            c.is_control()
                || matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
        })
}

/// A certificate by which a trust root vouches for a server key until an expiry time.
///
/// Encoding (113 bytes, fixed): `version (1) = 0x01 || root key id (u32) || server key id
/// (u32) || server Ed25519 key (32) || expires_at (u64 ms) || signature (64)`, where the
/// root signs `"Confide_v1_ServerCertificate" || the first 49 bytes`.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerCertificate {
    root_key_id: u32,
    server_key_id: u32,
    server_key: VerifyingKey,
    expires_at: Timestamp,
    /// The exact bytes, signature included ([`SERVER_CERTIFICATE_LEN`] long).
    encoded: Vec<u8>,
}

impl ServerCertificate {
    /// Issues a certificate for `server_key` under the root `root_key` (known to apps as
    /// `root_key_id`), valid while `now < expires_at`.
    #[must_use]
    pub fn issue(
        root_key_id: u32,
        root_key: &SigningKey,
        server_key_id: u32,
        server_key: &VerifyingKey,
        expires_at: Timestamp,
    ) -> Self {
        let mut w = Writer::with_capacity(SERVER_CERTIFICATE_LEN);
        w.u8(SERVER_CERTIFICATE_VERSION)
            .u32(root_key_id)
            .u32(server_key_id)
            .bytes(&server_key.to_bytes())
            .u64(expires_at.as_millis());
        let signature = root_key.sign(&signed_message(labels::SERVER_CERTIFICATE, w.as_slice()));
        w.bytes(&signature.to_bytes());
        Self {
            root_key_id,
            server_key_id,
            server_key: *server_key,
            expires_at,
            encoded: w.into_vec(),
        }
    }

    /// Strictly decodes exactly [`SERVER_CERTIFICATE_LEN`] bytes. Does not check the signature
    /// (see [`Self::validate`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let cert = Self::read(&mut r)?;
        r.finish()?;
        Ok(cert)
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let encoded = r.bytes(SERVER_CERTIFICATE_LEN)?;
        let mut inner = Reader::new(encoded);
        let version = inner.u8()?;
        if version != SERVER_CERTIFICATE_VERSION {
            return Err(DecodeError::UnknownVersion {
                what: "server certificate",
                found: version,
            });
        }
        let root_key_id = inner.u32()?;
        let server_key_id = inner.u32()?;
        let server_key = VerifyingKey::from_bytes(&inner.array::<32>()?).map_err(|_| {
            DecodeError::InvalidValue {
                field: "server key",
            }
        })?;
        let expires_at = Timestamp::from_millis(inner.u64()?);
        let _signature = inner.bytes(SIGNATURE_LEN)?;
        inner.finish()?;
        Ok(Self {
            root_key_id,
            server_key_id,
            server_key,
            expires_at,
            encoded: encoded.to_vec(),
        })
    }

    /// The exact encoding.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.encoded
    }

    /// The id of the root that signed this certificate.
    #[must_use]
    pub fn root_key_id(&self) -> u32 {
        self.root_key_id
    }

    /// The server key's id (the unit of revocation).
    #[must_use]
    pub fn server_key_id(&self) -> u32 {
        self.server_key_id
    }

    /// The certified server key.
    #[must_use]
    pub fn server_key(&self) -> &VerifyingKey {
        &self.server_key
    }

    /// The first instant at which the certificate is no longer valid.
    #[must_use]
    pub fn expires_at(&self) -> Timestamp {
        self.expires_at
    }

    /// Checks, in this order: the root is trusted ([`CertificateError::UnknownRoot`]), its
    /// signature verifies ([`CertificateError::BadRootSignature`]), `now < expires_at`
    /// ([`CertificateError::ServerExpired`]), the server key is not revoked
    /// ([`CertificateError::ServerRevoked`]).
    pub fn validate(&self, roots: &TrustRoots, now: Timestamp) -> Result<(), CertificateError> {
        self.validate_with_grace(roots, now, Duration::ZERO)
    }

    /// As [`ServerCertificate::validate`], but an expiry less than `grace` ago is accepted (see
    /// [`SenderCertificate::validate_with_grace`]).
    pub fn validate_with_grace(
        &self,
        roots: &TrustRoots,
        now: Timestamp,
        grace: Duration,
    ) -> Result<(), CertificateError> {
        let root = roots
            .root(self.root_key_id)
            .ok_or(CertificateError::UnknownRoot {
                root_key_id: self.root_key_id,
            })?;
        let (body, signature) =
            body_and_signature(&self.encoded).ok_or(CertificateError::BadRootSignature)?;
        if body.len() != SERVER_CERTIFICATE_BODY_LEN {
            return Err(CertificateError::BadRootSignature);
        }
        root.verify(
            &signed_message(labels::SERVER_CERTIFICATE, body),
            &signature,
        )
        .map_err(|_| CertificateError::BadRootSignature)?;
        if now >= self.expires_at.saturating_add(grace) {
            return Err(CertificateError::ServerExpired);
        }
        if roots.is_revoked(self.server_key_id) {
            return Err(CertificateError::ServerRevoked {
                server_key_id: self.server_key_id,
            });
        }
        Ok(())
    }
}

impl fmt::Debug for ServerCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            root_key_id,
            server_key_id,
            server_key: _,
            expires_at,
            encoded: _,
        } = self;
        f.debug_struct("ServerCertificate")
            .field("root_key_id", root_key_id)
            .field("server_key_id", server_key_id)
            .field("expires_at", expires_at)
            .finish_non_exhaustive()
    }
}

/// A server's signing key together with its certificate: what a service needs to issue
/// sender certificates.
#[derive(Clone)]
pub struct ServerKey {
    signing_key: SigningKey,
    certificate: ServerCertificate,
}

impl ServerKey {
    /// Pairs a signing key with its certificate; refuses a key that does not match.
    pub fn new(
        signing_key: SigningKey,
        certificate: ServerCertificate,
    ) -> Result<Self, IssueError> {
        if signing_key.verifying_key() != certificate.server_key {
            return Err(IssueError::KeyMismatch);
        }
        Ok(Self {
            signing_key,
            certificate,
        })
    }

    /// The certificate.
    #[must_use]
    pub fn certificate(&self) -> &ServerCertificate {
        &self.certificate
    }
}

impl fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            signing_key: _,
            certificate,
        } = self;
        f.debug_struct("ServerKey")
            .field("certificate", certificate)
            .finish_non_exhaustive()
    }
}

/// An opaque sender address (account handle), 1..=[`MAX_SENDER_ADDRESS_LEN`] bytes.
/// Compared in constant time; never printed.
#[derive(Clone, Eq)]
pub struct SenderAddress(Vec<u8>);

impl SenderAddress {
    /// Wraps `bytes` if their length is within bounds.
    pub fn new(bytes: &[u8]) -> Result<Self, IssueError> {
        if bytes.is_empty() || bytes.len() > MAX_SENDER_ADDRESS_LEN {
            return Err(IssueError::AddressLength {
                len: bytes.len(),
                max: MAX_SENDER_ADDRESS_LEN,
            });
        }
        Ok(Self(bytes.to_vec()))
    }

    /// The address bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl PartialEq for SenderAddress {
    fn eq(&self, other: &Self) -> bool {
        ct_eq(&self.0, &other.0)
    }
}

impl fmt::Debug for SenderAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SenderAddress(..)")
    }
}

/// What a sender certificate states about its holder, for [`SenderCertificate::issue`].
#[derive(Clone)]
pub struct SenderClaims<'a> {
    /// The sender's address (opaque; may be a pseudonym).
    pub address: &'a [u8],
    /// The sender's device.
    pub device_id: u32,
    /// The sender's identity key.
    pub identity: IdentityPublicKey,
    /// What the service vouches the sender is.
    pub role: Role,
    /// A name to show, if the service attests one (counselors); `None` for pseudonymous clients.
    pub display_name: Option<&'a str>,
}

impl fmt::Debug for SenderClaims<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Address, identity and name identify a person: never printed.
        let Self {
            address: _,
            device_id: _,
            identity: _,
            role,
            display_name: _,
        } = self;
        f.debug_struct("SenderClaims")
            .field("role", role)
            .finish_non_exhaustive()
    }
}

/// A certificate by which a server vouches for a sender's address, device, identity key and
/// role until an expiry time. It embeds the server's own certificate, so a recipient needs
/// only the trust roots to check the chain. The byte layout is in `docs/sealed-sender.md`.
#[derive(Clone, PartialEq, Eq)]
pub struct SenderCertificate {
    address: SenderAddress,
    device_id: u32,
    identity: IdentityPublicKey,
    role: Role,
    display_name: Option<String>,
    expires_at: Timestamp,
    server_certificate: ServerCertificate,
    /// The exact bytes, signature included.
    encoded: Vec<u8>,
}

impl SenderCertificate {
    /// Issues a certificate for `claims`, valid while `now < expires_at` (and while the
    /// server certificate is valid).
    pub fn issue(
        server_key: &ServerKey,
        claims: &SenderClaims<'_>,
        expires_at: Timestamp,
    ) -> Result<Self, IssueError> {
        let address = SenderAddress::new(claims.address)?;
        if !claims.role.is_canonical() {
            return Err(IssueError::NonCanonicalRole {
                value: claims.role.to_wire(),
            });
        }
        if claims
            .display_name
            .is_some_and(|name| !is_valid_display_name(name))
        {
            return Err(IssueError::InvalidDisplayName);
        }
        let mut w = Writer::with_capacity(MAX_SENDER_CERTIFICATE_LEN);
        w.u8(SENDER_CERTIFICATE_VERSION);
        w.var16("sender address", MAX_SENDER_ADDRESS_LEN, claims.address)?;
        w.u32(claims.device_id)
            .bytes(&claims.identity.to_bytes())
            .u8(claims.role.to_wire());
        match claims.display_name {
            None => {
                w.u8(0);
            }
            Some(name) => {
                w.u8(1);
                w.var16("display name", MAX_DISPLAY_NAME_LEN, name.as_bytes())?;
            }
        }
        w.u64(expires_at.as_millis())
            .bytes(server_key.certificate.as_bytes());
        let signature = server_key
            .signing_key
            .sign(&signed_message(labels::SENDER_CERTIFICATE, w.as_slice()));
        w.bytes(&signature.to_bytes());
        Ok(Self {
            address,
            device_id: claims.device_id,
            identity: claims.identity,
            role: claims.role,
            display_name: claims.display_name.map(str::to_owned),
            expires_at,
            server_certificate: server_key.certificate.clone(),
            encoded: w.into_vec(),
        })
    }

    /// Strictly decodes a sender certificate (version, bounds, canonical role and name flag,
    /// valid keys, the identity's own binding signature, no trailing bytes). Does not check
    /// the server's signature (see [`Self::validate`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::decode(bytes, IdentityPublicKey::read)
    }

    fn decode(
        bytes: &[u8],
        read_identity: fn(&mut Reader<'_>) -> Result<IdentityPublicKey, DecodeError>,
    ) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_SENDER_CERTIFICATE_LEN {
            return Err(DecodeError::TooLong {
                field: "sender certificate",
                len: bytes.len(),
                max: MAX_SENDER_CERTIFICATE_LEN,
            });
        }
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        if version != SENDER_CERTIFICATE_VERSION {
            return Err(DecodeError::UnknownVersion {
                what: "sender certificate",
                found: version,
            });
        }
        let address = r.var16("sender address", MAX_SENDER_ADDRESS_LEN)?;
        if address.is_empty() {
            return Err(DecodeError::InvalidValue {
                field: "sender address",
            });
        }
        let device_id = r.u32()?;
        let identity = read_identity(&mut r)?;
        let role = Role::from_wire(r.u8()?).ok_or(DecodeError::InvalidValue { field: "role" })?;
        let display_name = if r.bool("display name flag")? {
            let raw = r.var16("display name", MAX_DISPLAY_NAME_LEN)?;
            let name = core::str::from_utf8(raw)
                .ok()
                .filter(|n| is_valid_display_name(n))
                .ok_or(DecodeError::InvalidValue {
                    field: "display name",
                })?;
            Some(name.to_owned())
        } else {
            None
        };
        let expires_at = Timestamp::from_millis(r.u64()?);
        let server_certificate = ServerCertificate::read(&mut r)?;
        let _signature = r.bytes(SIGNATURE_LEN)?;
        r.finish()?;
        Ok(Self {
            address: SenderAddress(address.to_vec()),
            device_id,
            identity,
            role,
            display_name,
            expires_at,
            server_certificate,
            encoded: bytes.to_vec(),
        })
    }

    /// The exact encoding.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.encoded
    }

    /// The sender's identity key (not yet vouched for: see [`Self::validate`]).
    #[must_use]
    pub fn identity(&self) -> &IdentityPublicKey {
        &self.identity
    }

    /// The embedded server certificate.
    #[must_use]
    pub fn server_certificate(&self) -> &ServerCertificate {
        &self.server_certificate
    }

    /// The first instant at which this certificate is no longer valid.
    #[must_use]
    pub fn expires_at(&self) -> Timestamp {
        self.expires_at
    }

    /// Validates the chain at `now`. Order: the server certificate
    /// ([`ServerCertificate::validate`]: unknown root, bad root signature, server expired,
    /// server revoked), then the server's signature on this certificate
    /// ([`CertificateError::BadServerSignature`]), then `now < expires_at`
    /// ([`CertificateError::SenderExpired`]).
    pub fn validate(
        &self,
        roots: &TrustRoots,
        now: Timestamp,
    ) -> Result<ValidatedSender, CertificateError> {
        self.validate_with_grace(roots, now, Duration::ZERO)
    }

    /// As [`SenderCertificate::validate`], but a certificate (sender or server) that expired
    /// less than `grace` before `now` is still accepted: a message sealed while the certificate
    /// was valid may wait in a mailbox for days. Signatures, roots and revocation are checked
    /// exactly as without grace; only the expiry comparisons become `now < expires_at + grace`.
    /// The returned [`ValidatedSender`] carries the real `expires_at`, so a caller can tell a
    /// certificate inside its grace period from a valid one.
    pub fn validate_with_grace(
        &self,
        roots: &TrustRoots,
        now: Timestamp,
        grace: Duration,
    ) -> Result<ValidatedSender, CertificateError> {
        self.server_certificate
            .validate_with_grace(roots, now, grace)?;
        let (body, signature) =
            body_and_signature(&self.encoded).ok_or(CertificateError::BadServerSignature)?;
        self.server_certificate
            .server_key
            .verify(
                &signed_message(labels::SENDER_CERTIFICATE, body),
                &signature,
            )
            .map_err(|_| CertificateError::BadServerSignature)?;
        if now >= self.expires_at.saturating_add(grace) {
            return Err(CertificateError::SenderExpired);
        }
        Ok(ValidatedSender {
            address: self.address.clone(),
            device_id: self.device_id,
            identity: self.identity,
            role: self.role,
            display_name: self.display_name.clone(),
            expires_at: self.expires_at,
            server_key_id: self.server_certificate.server_key_id,
        })
    }
}

impl fmt::Debug for SenderCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Address, identity and name identify a person: never printed.
        let Self {
            address: _,
            device_id: _,
            identity: _,
            role,
            display_name: _,
            expires_at,
            server_certificate,
            encoded: _,
        } = self;
        f.debug_struct("SenderCertificate")
            .field("role", role)
            .field("expires_at", expires_at)
            .field("server_certificate", server_certificate)
            .finish_non_exhaustive()
    }
}

/// A sender whose certificate chain validated. Only [`SenderCertificate::validate`] (and
/// so [`open`](crate::open)) makes one, so holding it is proof the checks ran.
#[derive(Clone, PartialEq, Eq)]
#[must_use]
pub struct ValidatedSender {
    address: SenderAddress,
    device_id: u32,
    identity: IdentityPublicKey,
    role: Role,
    display_name: Option<String>,
    expires_at: Timestamp,
    server_key_id: u32,
}

impl ValidatedSender {
    /// The sender's address as the server vouched for it.
    #[must_use]
    pub fn address(&self) -> &SenderAddress {
        &self.address
    }

    /// The sender's device id.
    #[must_use]
    pub fn device_id(&self) -> u32 {
        self.device_id
    }

    /// The sender's identity key.
    #[must_use]
    pub fn identity(&self) -> &IdentityPublicKey {
        &self.identity
    }

    /// The role the service vouches for.
    #[must_use]
    pub fn role(&self) -> Role {
        self.role
    }

    /// The attested display name, if any.
    #[must_use]
    pub fn display_name(&self) -> Option<&str> {
        self.display_name.as_deref()
    }

    /// When the sender certificate expires.
    #[must_use]
    pub fn expires_at(&self) -> Timestamp {
        self.expires_at
    }

    /// The id of the server key that vouched for the sender.
    #[must_use]
    pub fn server_key_id(&self) -> u32 {
        self.server_key_id
    }
}

impl fmt::Debug for ValidatedSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Address, identity and name identify a person: never printed.
        let Self {
            address: _,
            device_id: _,
            identity: _,
            role,
            display_name: _,
            expires_at: _,
            server_key_id: _,
        } = self;
        f.debug_struct("ValidatedSender")
            .field("role", role)
            .finish_non_exhaustive()
    }
}
