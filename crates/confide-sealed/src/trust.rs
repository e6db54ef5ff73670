//! Trust configuration: root keys and revoked server keys.

use core::fmt;

use confide_crypto::{
    codec::{DecodeError, Reader, Writer},
    signing::VerifyingKey,
};
use thiserror::Error;

use crate::consts::{MAX_REVOKED_SERVER_KEYS, MAX_TRUST_ROOTS, TRUST_CONFIG_VERSION};

/// Why a trust configuration could not be changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TrustConfigError {
    /// A root with this key id is already present.
    #[error("root key id {key_id} is already present")]
    DuplicateRootId {
        /// The key id.
        key_id: u32,
    },
    /// Already [`MAX_TRUST_ROOTS`] roots.
    #[error("at most {max} trust roots")]
    TooManyRoots {
        /// The limit.
        max: usize,
    },
    /// Already [`MAX_REVOKED_SERVER_KEYS`] revocations.
    #[error("at most {max} revoked server keys")]
    TooManyRevocations {
        /// The limit.
        max: usize,
    },
}

/// The keys an app trusts to certify servers, each under a key id, plus the ids of server
/// keys that are revoked.
///
/// Several roots can be trusted at once so a service can rotate: ship the new root beside the
/// old one, move servers over, then drop the old root. Server key ids are unique across the
/// whole service (not per root), so one revocation list covers every root.
///
/// This is local configuration shipped with the app (or fetched over an authenticated
/// channel the app already trusts), never something the relay hands over with a message.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TrustRoots {
    /// Sorted by key id, ids unique.
    roots: Vec<(u32, VerifyingKey)>,
    /// Sorted, unique.
    revoked_server_keys: Vec<u32>,
}

impl TrustRoots {
    /// No roots and no revocations (trusts nothing).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts `key` under `key_id`.
    pub fn add_root(&mut self, key_id: u32, key: VerifyingKey) -> Result<(), TrustConfigError> {
        match self.roots.binary_search_by_key(&key_id, |(id, _)| *id) {
            Ok(_) => Err(TrustConfigError::DuplicateRootId { key_id }),
            Err(_) if self.roots.len() >= MAX_TRUST_ROOTS => Err(TrustConfigError::TooManyRoots {
                max: MAX_TRUST_ROOTS,
            }),
            Err(at) => {
                self.roots.insert(at, (key_id, key));
                Ok(())
            }
        }
    }

    /// Stops trusting the root with `key_id`; returns whether it was present.
    pub fn remove_root(&mut self, key_id: u32) -> bool {
        match self.roots.binary_search_by_key(&key_id, |(id, _)| *id) {
            Ok(at) => {
                self.roots.remove(at);
                true
            }
            Err(_) => false,
        }
    }

    /// Revokes the server key with `server_key_id` (idempotent).
    pub fn revoke_server_key(&mut self, server_key_id: u32) -> Result<(), TrustConfigError> {
        match self.revoked_server_keys.binary_search(&server_key_id) {
            Ok(_) => Ok(()),
            Err(_) if self.revoked_server_keys.len() >= MAX_REVOKED_SERVER_KEYS => {
                Err(TrustConfigError::TooManyRevocations {
                    max: MAX_REVOKED_SERVER_KEYS,
                })
            }
            Err(at) => {
                self.revoked_server_keys.insert(at, server_key_id);
                Ok(())
            }
        }
    }

    /// The root key with `key_id`, if trusted.
    #[must_use]
    pub fn root(&self, key_id: u32) -> Option<&VerifyingKey> {
        self.roots
            .binary_search_by_key(&key_id, |(id, _)| *id)
            .ok()
            .and_then(|at| self.roots.get(at))
            .map(|(_, key)| key)
    }

    /// Whether the server key with `server_key_id` is revoked.
    #[must_use]
    pub fn is_revoked(&self, server_key_id: u32) -> bool {
        self.revoked_server_keys
            .binary_search(&server_key_id)
            .is_ok()
    }

    /// Number of trusted roots.
    #[must_use]
    pub fn root_count(&self) -> usize {
        self.roots.len()
    }

    /// The encoding documented in `docs/sealed-sender.md`: version, `u16` root count, each
    /// root as `key id (u32) || key (32)` in ascending id order, `u16` revocation count, each
    /// revoked server key id (`u32`) in ascending order.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w =
            Writer::with_capacity(5 + self.roots.len() * 36 + self.revoked_server_keys.len() * 4);
        w.u8(TRUST_CONFIG_VERSION);
        // Both counts are bounded far below u16::MAX by the limits enforced on insertion.
        w.u16(u16::try_from(self.roots.len()).unwrap_or(u16::MAX));
        for (id, key) in &self.roots {
            w.u32(*id).bytes(&key.to_bytes());
        }
        w.u16(u16::try_from(self.revoked_server_keys.len()).unwrap_or(u16::MAX));
        for id in &self.revoked_server_keys {
            w.u32(*id);
        }
        w.into_vec()
    }

    /// Strict decoding of [`Self::to_bytes`]: ids must be strictly ascending (so unique),
    /// keys valid, counts within the limits, no trailing bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        if version != TRUST_CONFIG_VERSION {
            return Err(DecodeError::UnknownVersion {
                what: "trust configuration",
                found: version,
            });
        }
        let root_count = r.count16("trust roots", MAX_TRUST_ROOTS)?;
        let mut roots: Vec<(u32, VerifyingKey)> = Vec::with_capacity(root_count);
        for _ in 0..root_count {
            let id = r.u32()?;
            let key = VerifyingKey::from_bytes(&r.array::<32>()?)
                .map_err(|_| DecodeError::InvalidValue { field: "root key" })?;
            if roots.last().is_some_and(|(prev, _)| *prev >= id) {
                return Err(DecodeError::InvalidValue {
                    field: "root key id order",
                });
            }
            roots.push((id, key));
        }
        let revoked_count = r.count16("revoked server keys", MAX_REVOKED_SERVER_KEYS)?;
        let mut revoked_server_keys: Vec<u32> = Vec::with_capacity(revoked_count);
        for _ in 0..revoked_count {
            let id = r.u32()?;
            if revoked_server_keys.last().is_some_and(|prev| *prev >= id) {
                return Err(DecodeError::InvalidValue {
                    field: "revoked server key order",
                });
            }
            revoked_server_keys.push(id);
        }
        r.finish()?;
        Ok(Self {
            roots,
            revoked_server_keys,
        })
    }
}

impl fmt::Debug for TrustRoots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            roots,
            revoked_server_keys,
        } = self;
        f.debug_struct("TrustRoots")
            .field(
                "root_key_ids",
                &roots.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            )
            .field("revoked_server_keys", revoked_server_keys)
            .finish()
    }
}
