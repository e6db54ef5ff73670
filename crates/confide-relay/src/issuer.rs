//! The certificate issuer's keys on disk and the certificates the relay issues.
//!
//! Two files, both created with mode `0600` and never overwritten:
//!
//! * the **root key file** (kept by the operator, ideally offline): `0x01 || root key id (u32
//!   BE) || Ed25519 seed (32)`, 37 bytes. Apps pin the root's public key and id.
//! * the **server key file** (read by the relay at start): `0x01 || Ed25519 seed (32) ||
//!   server certificate (113)`, 146 bytes; the certificate is the root's signature over the
//!   server key (`confide_sealed::ServerCertificate`).
//!
//! Revocation is by server key: the operator issues a new server key (`init` with a new
//! server key id), restarts the relay on it, and adds the old id to the apps' revocation list
//! (`TrustRoots`); client certificates of the old key lapse within a day anyway
//! ([`CLIENT_CERTIFICATE_LIFETIME`]).

use std::io::Write;
use std::path::Path;

use confide_crypto::identity::IdentityPublicKey;
use confide_crypto::signing::SigningKey;
use confide_sealed::{
    IssueError, Role, SERVER_CERTIFICATE_LEN, SenderCertificate, SenderClaims, ServerCertificate,
    ServerKey,
};
use confide_wire::Timestamp;
use thiserror::Error;
use zeroize::Zeroizing;

use crate::consts::CLIENT_CERTIFICATE_LIFETIME;

/// Version byte of both key files.
pub const KEY_FILE_VERSION: u8 = 1;
/// Length of a root key file.
pub const ROOT_KEY_FILE_LEN: usize = 1 + 4 + 32;
/// Length of a server key file.
pub const SERVER_KEY_FILE_LEN: usize = 1 + 32 + SERVER_CERTIFICATE_LEN;

/// Why a key file could not be used. Never carries key material.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// Reading or writing failed (including: the file to create exists).
    #[error("key file i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The file has the wrong length or version, or its key does not match its certificate.
    #[error("key file is not a valid {what} key file")]
    Invalid {
        /// Which kind of file.
        what: &'static str,
    },
    /// A certificate could not be issued.
    #[error("issuing failed: {0}")]
    Issue(#[from] IssueError),
}

/// A root key read from its file.
pub struct RootKey {
    /// The id apps know the root by.
    pub id: u32,
    /// The signing key.
    pub key: SigningKey,
}

impl core::fmt::Debug for RootKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let Self { id, key: _ } = self;
        f.debug_struct("RootKey")
            .field("id", id)
            .finish_non_exhaustive()
    }
}

/// Writes `bytes` to a new file readable only by its owner (`0600` on Unix); refuses to
/// replace an existing file.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Creates a root key file with a fresh key.
pub fn create_root_key(path: &Path, id: u32, key: &SigningKey) -> Result<(), KeyFileError> {
    let mut bytes = Zeroizing::new(Vec::with_capacity(ROOT_KEY_FILE_LEN));
    bytes.push(KEY_FILE_VERSION);
    bytes.extend_from_slice(&id.to_be_bytes());
    bytes.extend_from_slice(key.to_secret_bytes().expose());
    write_private_file(path, &bytes)?;
    Ok(())
}

/// Reads a root key file.
pub fn read_root_key(path: &Path) -> Result<RootKey, KeyFileError> {
    let bytes = Zeroizing::new(std::fs::read(path)?);
    let invalid = KeyFileError::Invalid { what: "root" };
    if bytes.len() != ROOT_KEY_FILE_LEN || bytes.first() != Some(&KEY_FILE_VERSION) {
        return Err(invalid);
    }
    let id = bytes
        .get(1..5)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(u32::from_be_bytes)
        .ok_or(KeyFileError::Invalid { what: "root" })?;
    let seed = Zeroizing::new(
        bytes
            .get(5..)
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or(invalid)?,
    );
    Ok(RootKey {
        id,
        key: SigningKey::from_seed(&seed),
    })
}

/// Issues a server certificate for `server` under `root` and writes the server key file.
pub fn create_server_key(
    path: &Path,
    root: &RootKey,
    server_key_id: u32,
    server: &SigningKey,
    expires_at: Timestamp,
) -> Result<ServerKey, KeyFileError> {
    let cert = ServerCertificate::issue(
        root.id,
        &root.key,
        server_key_id,
        &server.verifying_key(),
        expires_at,
    );
    let mut bytes = Zeroizing::new(Vec::with_capacity(SERVER_KEY_FILE_LEN));
    bytes.push(KEY_FILE_VERSION);
    bytes.extend_from_slice(server.to_secret_bytes().expose());
    bytes.extend_from_slice(cert.as_bytes());
    write_private_file(path, &bytes)?;
    Ok(ServerKey::new(server.clone(), cert)?)
}

/// Reads a server key file (checking that the key matches its certificate).
pub fn read_server_key(path: &Path) -> Result<ServerKey, KeyFileError> {
    let bytes = Zeroizing::new(std::fs::read(path)?);
    let invalid = || KeyFileError::Invalid { what: "server" };
    if bytes.len() != SERVER_KEY_FILE_LEN || bytes.first() != Some(&KEY_FILE_VERSION) {
        return Err(invalid());
    }
    let seed = Zeroizing::new(
        bytes
            .get(1..33)
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(invalid)?,
    );
    let cert = ServerCertificate::from_bytes(bytes.get(33..).unwrap_or_default())
        .map_err(|_| invalid())?;
    ServerKey::new(SigningKey::from_seed(&seed), cert).map_err(|_| invalid())
}

/// Issues a client certificate (no name) for `address`, valid for
/// [`CLIENT_CERTIFICATE_LIFETIME`] but never past the server certificate.
pub fn issue_client_certificate(
    server: &ServerKey,
    address: &[u8],
    device_id: u32,
    identity: IdentityPublicKey,
    now: Timestamp,
) -> Result<SenderCertificate, IssueError> {
    let expires_at = now
        .saturating_add(CLIENT_CERTIFICATE_LIFETIME)
        .min(server.certificate().expires_at());
    SenderCertificate::issue(
        server,
        &SenderClaims {
            address,
            device_id,
            identity,
            role: Role::Client,
            display_name: None,
        },
        expires_at,
    )
}
