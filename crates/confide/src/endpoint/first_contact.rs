//! Certified first contact: a prekey bundle travels with its owner's sender certificate, so
//! the initiator knows the peer's certified role (counselor, crisis service, bot, client)
//! before it encrypts anything.
//!
//! Encoding (`docs/endpoint.md`, "Certified bundles"), all integers big-endian:
//! `version:u8 (= 0x01) || cert_len:u16 || sender certificate || bundle_len:u16 || prekey
//! bundle || delivery token[16]`, nothing after it.

use confide_crypto::Timestamp;
use confide_crypto::codec::{DecodeError, Reader, Writer};
use confide_sealed::{
    CertificateError, DeliveryToken, MAX_SENDER_CERTIFICATE_LEN, Role, SenderCertificate,
    ValidatedSender,
};
use confide_session::{ExpectedIdentity, PreKeyBundle, SafetyNumber, VerifiedPreKeyBundle};
use confide_transport::Address;
use thiserror::Error;

use super::Endpoint;
use crate::consts::{CERTIFIED_BUNDLE_VERSION, MAX_PREKEY_BUNDLE_LEN, SENDER_CERTIFICATE_GRACE};

/// Why a certified bundle was refused. Nothing changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CertifiedBundleError {
    /// Not a certified bundle of a version we know (bad length, trailing bytes, a certificate
    /// or bundle that does not parse). Fetch it again.
    #[error("malformed certified bundle")]
    Malformed,
    /// The certificate does not validate against our trust roots at `now` (unknown or
    /// revoked server key, bad signature, or expired beyond the grace period): the owner must
    /// renew it and publish again.
    #[error("certificate refused: {0}")]
    Certificate(CertificateError),
    /// The certificate names another mailbox address than the peer we meant to reach.
    #[error("the certificate is for another address")]
    AddressMismatch,
    /// The certificate names another identity key than the bundle carries.
    #[error("the certificate is for another identity")]
    IdentityMismatch,
}

/// What a validated certified bundle tells about its owner, before any conversation exists.
#[derive(Clone)]
#[non_exhaustive]
pub struct CertifiedPeer {
    /// The role the service certified (show it; insist on it before the first message).
    pub role: Role,
    /// The certified display name, if the service put one in the certificate.
    pub display_name: Option<String>,
    /// The safety number the conversation will have (compare it out of band).
    pub safety_number: SafetyNumber,
    /// When the owner's certificate expires.
    pub certificate_expires_at: Timestamp,
}

impl core::fmt::Debug for CertifiedPeer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let Self {
            role,
            display_name: _,
            safety_number: _,
            certificate_expires_at,
        } = self;
        // The name and the safety number identify people: not printed.
        f.debug_struct("CertifiedPeer")
            .field("role", role)
            .field("certificate_expires_at", certificate_expires_at)
            .finish_non_exhaustive()
    }
}

/// A prekey bundle with its owner's sender certificate, as the directory serves it. Parsing
/// checks the encoding only; [`Endpoint::inspect_bundle`] and
/// [`Endpoint::start_conversation`] validate the certificate and the bindings.
#[derive(Clone, PartialEq, Eq)]
pub struct CertifiedBundle {
    certificate: SenderCertificate,
    bundle: PreKeyBundle,
    delivery_token: DeliveryToken,
}

impl core::fmt::Debug for CertifiedBundle {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let Self {
            certificate,
            bundle: _,
            delivery_token: _,
        } = self;
        // The certificate's Debug prints no identifier; the bundle's keys identify its owner.
        f.debug_struct("CertifiedBundle")
            .field("certificate", certificate)
            .finish_non_exhaustive()
    }
}

impl CertifiedBundle {
    /// Pairs a bundle with its owner's certificate (they must name the same identity) and
    /// the owner's delivery token (what a sender presents to the relay for the owner's
    /// mailbox).
    pub fn new(
        certificate: SenderCertificate,
        bundle: PreKeyBundle,
        delivery_token: DeliveryToken,
    ) -> Result<Self, CertifiedBundleError> {
        if certificate.identity() != bundle.identity() {
            return Err(CertifiedBundleError::IdentityMismatch);
        }
        Ok(Self {
            certificate,
            bundle,
            delivery_token,
        })
    }

    /// The owner's delivery token.
    #[must_use]
    pub fn delivery_token(&self) -> &DeliveryToken {
        &self.delivery_token
    }

    /// The owner's sender certificate (not yet validated).
    #[must_use]
    pub fn certificate(&self) -> &SenderCertificate {
        &self.certificate
    }

    /// The prekey bundle (signatures not yet verified).
    #[must_use]
    pub fn bundle(&self) -> &PreKeyBundle {
        &self.bundle
    }

    /// The canonical encoding.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        encode(&self.certificate, &self.bundle, &self.delivery_token)
    }

    /// Parses the encoding strictly: version, bounded lengths, a certificate and a bundle
    /// that parse, the same identity in both, nothing after it.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CertifiedBundleError> {
        let (certificate, bundle, token) =
            decode(bytes).map_err(|_| CertifiedBundleError::Malformed)?;
        Self::new(certificate, bundle, token)
    }
}

/// The encoding of `bundle` certified by `certificate`.
pub(crate) fn encode(
    certificate: &SenderCertificate,
    bundle: &PreKeyBundle,
    token: &DeliveryToken,
) -> Vec<u8> {
    let cert = certificate.as_bytes();
    let bundle = bundle.to_bytes();
    let mut w = Writer::with_capacity(
        5usize
            .saturating_add(cert.len())
            .saturating_add(bundle.len()),
    );
    w.u8(CERTIFIED_BUNDLE_VERSION);
    // Both lengths are bounded far below u16::MAX by their own encoders.
    w.u16(u16::try_from(cert.len()).unwrap_or(u16::MAX))
        .bytes(cert);
    w.u16(u16::try_from(bundle.len()).unwrap_or(u16::MAX))
        .bytes(&bundle);
    w.bytes(token.expose());
    w.into_vec()
}

/// Parses the encoding (no identity check).
fn decode(bytes: &[u8]) -> Result<(SenderCertificate, PreKeyBundle, DeliveryToken), DecodeError> {
    let mut r = Reader::new(bytes);
    let version = r.u8()?;
    if version != CERTIFIED_BUNDLE_VERSION {
        return Err(DecodeError::UnknownVersion {
            what: "certified bundle",
            found: version,
        });
    }
    let cert = SenderCertificate::from_bytes(r.var16("certificate", MAX_SENDER_CERTIFICATE_LEN)?)?;
    let bundle = PreKeyBundle::from_bytes(r.var16("prekey bundle", MAX_PREKEY_BUNDLE_LEN)?)
        .map_err(|_| DecodeError::InvalidValue {
            field: "prekey bundle",
        })?;
    let token = DeliveryToken::new(r.array()?);
    r.finish()?;
    Ok((cert, bundle, token))
}

/// A certified bundle whose certificate chain, address binding, identity binding and
/// bundle signatures all verified.
pub(crate) struct Verified {
    pub(crate) sender: ValidatedSender,
    pub(crate) bundle: VerifiedPreKeyBundle,
    pub(crate) token: DeliveryToken,
}

impl Endpoint {
    /// Validates a certified bundle of the peer at `peer_address` without changing anything:
    /// the certificate chain against our trust roots at `now` (a certificate expired less
    /// than [`SENDER_CERTIFICATE_GRACE`] ago is accepted), that it names `peer_address` and
    /// the bundle's identity, and the bundle's signatures and `expected` identity. Returns
    /// the certified role, name and safety number, so an app can insist on (say) a certified
    /// counselor before [`Endpoint::start_conversation`].
    pub fn inspect_bundle(
        &self,
        now: Timestamp,
        peer_address: &Address,
        certified_bundle: &[u8],
        expected: ExpectedIdentity<'_>,
    ) -> Result<CertifiedPeer, crate::StartError> {
        let verified = self.verify_certified(now, peer_address, certified_bundle, expected)?;
        let own = self.store.identity().public();
        Ok(CertifiedPeer {
            role: verified.sender.role(),
            display_name: verified.sender.display_name().map(str::to_owned),
            safety_number: SafetyNumber::new(&own, verified.sender.identity()),
            certificate_expires_at: verified.sender.expires_at(),
        })
    }

    pub(crate) fn verify_certified(
        &self,
        now: Timestamp,
        peer_address: &Address,
        certified_bundle: &[u8],
        expected: ExpectedIdentity<'_>,
    ) -> Result<Verified, crate::StartError> {
        let CertifiedBundle {
            certificate,
            bundle,
            delivery_token: token,
        } = CertifiedBundle::from_bytes(certified_bundle)?;
        let sender = certificate
            .validate_with_grace(&self.roots, now, SENDER_CERTIFICATE_GRACE)
            .map_err(CertifiedBundleError::Certificate)?;
        if sender.address().as_bytes() != peer_address.as_bytes() {
            return Err(CertifiedBundleError::AddressMismatch.into());
        }
        let own = self.store.identity().public();
        let bundle = bundle.verify(expected, &own)?;
        Ok(Verified {
            sender,
            bundle,
            token,
        })
    }
}
