//! Prekeys: what a responder publishes so that others can start sessions while it is offline.
//!
//! A [`PreKeyBundle`] holds the responder's identity, a signed X25519 prekey, a signed
//! ML-KEM-768 prekey (one-time or last-resort) and optionally a one-time X25519 prekey.
//!
//! ```text
//! PreKeyBundle = version:u8 (=1) || identity[128]
//!     || signed_prekey_id:u32 || signed_prekey[32] || signed_prekey_signature[64]
//!     || kem_prekey_id:u32 || kem_kind:u8 (1 one-time, 2 last-resort)
//!     || kem_prekey[1184] || kem_prekey_signature[64]
//!     || has_one_time:u8 (0|1) || [one_time_prekey_id:u32 || one_time_prekey[32]]
//! signed_prekey_signature = Ed25519(identity, "Confide_v1_SignedPreKey" || id || key)
//! kem_prekey_signature    = Ed25519(identity, "Confide_v1_KemPreKey" || id || kind || key)
//! ```
//!
//! The responder's secrets live in a [`PreKeyStore`], which also remembers which initial
//! messages it accepted so a replay is refused.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use confide_crypto::{
    CryptoRng, Timestamp,
    codec::{DecodeError, Reader, Writer},
    identity::{IDENTITY_SECRET_LEN, IdentityKeyPair, IdentityPublicKey},
    kdf::labels,
    kem::{KEM_PUBLIC_KEY_LEN, KemKeyPair, KemPublicKey},
    secret::SecretBytes,
    signing::Signature,
    stored::AuthenticatedReader,
    x25519::{X25519KeyPair, X25519PublicKey, X25519Secret},
};

use crate::{
    consts::{
        MAX_ONE_TIME_KEM_PREKEYS, MAX_ONE_TIME_PREKEYS, MAX_RETAINED_SIGNED_PREKEYS,
        MAX_SEEN_BASE_KEYS, MAX_SEEN_BASE_KEYS_PER_SIGNED_PREKEY, PROTOCOL_VERSION,
    },
    error::BundleError,
    state::StateSource,
};

/// Version 1 of the serialized store: the layout of version 2, but seen base keys in
/// insertion order and without the per-signed-prekey bound. Still read (and written back as
/// the current version), so a store, which holds the identity, survives the upgrade.
const STATE_VERSION_UNSORTED_SEEN: u8 = 1;

/// Version 2 of the serialized store: X25519 prekeys stored as their secret only, so every
/// load recomputed each public key (one base-point multiplication per key). Still read (and
/// written back as the current version).
const STATE_VERSION_WITHOUT_PUBLIC_KEYS: u8 = 2;

/// Whether a KEM prekey may be used once or is the fallback used when one-time keys run out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KemPreKeyKind {
    /// Deleted after the first session that uses it.
    OneTime,
    /// Reused until rotated; replays are caught by the store's record of base keys.
    LastResort,
}

impl KemPreKeyKind {
    fn to_byte(self) -> u8 {
        match self {
            Self::OneTime => 1,
            Self::LastResort => 2,
        }
    }

    fn from_byte(b: u8) -> Result<Self, DecodeError> {
        match b {
            1 => Ok(Self::OneTime),
            2 => Ok(Self::LastResort),
            _ => Err(DecodeError::InvalidValue {
                field: "kem prekey kind",
            }),
        }
    }
}

fn signed_prekey_message(id: u32, key: &X25519PublicKey) -> Vec<u8> {
    let mut w = Writer::with_capacity(64);
    w.bytes(labels::SIGNED_PREKEY).u32(id).bytes(key.as_bytes());
    w.into_vec()
}

fn kem_prekey_message(id: u32, kind: KemPreKeyKind, key: &KemPublicKey) -> Vec<u8> {
    let mut w = Writer::with_capacity(KEM_PUBLIC_KEY_LEN + 32);
    w.bytes(labels::KEM_PREKEY)
        .u32(id)
        .u8(kind.to_byte())
        .bytes(key.as_bytes());
    w.into_vec()
}

/// A responder's published prekeys. Parsing checks only the format; call
/// [`PreKeyBundle::verify`] before use.
#[derive(Clone, PartialEq, Eq)]
pub struct PreKeyBundle {
    identity: IdentityPublicKey,
    signed_prekey_id: u32,
    signed_prekey: X25519PublicKey,
    signed_prekey_signature: Signature,
    kem_prekey_id: u32,
    kem_kind: KemPreKeyKind,
    kem_prekey: KemPublicKey,
    kem_prekey_signature: Signature,
    one_time: Option<(u32, X25519PublicKey)>,
}

impl core::fmt::Debug for PreKeyBundle {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let Self {
            identity: _,
            signed_prekey_id,
            signed_prekey: _,
            signed_prekey_signature: _,
            kem_prekey_id,
            kem_kind,
            kem_prekey: _,
            kem_prekey_signature: _,
            one_time,
        } = self;
        f.debug_struct("PreKeyBundle")
            .field("signed_prekey_id", signed_prekey_id)
            .field("kem_prekey_id", kem_prekey_id)
            .field("kem_kind", kem_kind)
            .field("one_time_prekey_id", &one_time.map(|(id, _)| id))
            .finish_non_exhaustive()
    }
}

/// How the initiator decides whether a bundle's identity is acceptable.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum ExpectedIdentity<'a> {
    /// The bundle must belong to exactly this identity (for example one verified by safety
    /// number, or vouched for by a sender certificate).
    Exactly(&'a IdentityPublicKey),
    /// First contact: accept the bundle's identity; the app must show the safety number.
    TrustOnFirstUse,
}

/// A bundle whose every signature has verified and whose identity was accepted. Only this
/// type can start a session, so an unverified bundle cannot be used by mistake.
#[derive(Debug, Clone)]
pub struct VerifiedPreKeyBundle(PreKeyBundle);

impl VerifiedPreKeyBundle {
    /// The verified bundle.
    #[must_use]
    pub fn bundle(&self) -> &PreKeyBundle {
        &self.0
    }
}

impl PreKeyBundle {
    /// The responder's identity.
    #[must_use]
    pub fn identity(&self) -> &IdentityPublicKey {
        &self.identity
    }

    /// Signed prekey id.
    #[must_use]
    pub fn signed_prekey_id(&self) -> u32 {
        self.signed_prekey_id
    }

    pub(crate) fn signed_prekey(&self) -> X25519PublicKey {
        self.signed_prekey
    }

    /// KEM prekey id.
    #[must_use]
    pub fn kem_prekey_id(&self) -> u32 {
        self.kem_prekey_id
    }

    /// KEM prekey kind.
    #[must_use]
    pub fn kem_kind(&self) -> KemPreKeyKind {
        self.kem_kind
    }

    pub(crate) fn kem_prekey(&self) -> &KemPublicKey {
        &self.kem_prekey
    }

    /// The one-time prekey, if the bundle has one.
    #[must_use]
    pub fn one_time_prekey_id(&self) -> Option<u32> {
        self.one_time.map(|(id, _)| id)
    }

    pub(crate) fn one_time(&self) -> Option<(u32, X25519PublicKey)> {
        self.one_time
    }

    /// Verifies every signature and that the identity is the expected one.
    pub fn verify(
        self,
        expected: ExpectedIdentity<'_>,
        own: &IdentityPublicKey,
    ) -> Result<VerifiedPreKeyBundle, BundleError> {
        if let ExpectedIdentity::Exactly(id) = expected
            && *id != self.identity
        {
            return Err(BundleError::UnexpectedIdentity);
        }
        if self.identity == *own {
            return Err(BundleError::OwnIdentity);
        }
        self.identity
            .verify(
                &signed_prekey_message(self.signed_prekey_id, &self.signed_prekey),
                &self.signed_prekey_signature,
            )
            .map_err(|_| BundleError::BadSignedPreKeySignature)?;
        self.identity
            .verify(
                &kem_prekey_message(self.kem_prekey_id, self.kem_kind, &self.kem_prekey),
                &self.kem_prekey_signature,
            )
            .map_err(|_| BundleError::BadKemPreKeySignature)?;
        Ok(VerifiedPreKeyBundle(self))
    }

    /// Encodes the bundle.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(1600);
        w.u8(PROTOCOL_VERSION)
            .bytes(&self.identity.to_bytes())
            .u32(self.signed_prekey_id)
            .bytes(self.signed_prekey.as_bytes())
            .bytes(&self.signed_prekey_signature.to_bytes())
            .u32(self.kem_prekey_id)
            .u8(self.kem_kind.to_byte())
            .bytes(self.kem_prekey.as_bytes())
            .bytes(&self.kem_prekey_signature.to_bytes());
        match self.one_time {
            None => {
                w.u8(0);
            }
            Some((id, key)) => {
                w.u8(1).u32(id).bytes(key.as_bytes());
            }
        }
        w.into_vec()
    }

    /// Decodes a bundle strictly. Signatures are checked by [`PreKeyBundle::verify`]; the
    /// identity's self-signature and the KEM key's validity are checked here.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, BundleError> {
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        if version != PROTOCOL_VERSION {
            return Err(DecodeError::UnknownVersion {
                what: "prekey bundle",
                found: version,
            }
            .into());
        }
        let identity = IdentityPublicKey::read(&mut r)?;
        let signed_prekey_id = r.u32()?;
        let signed_prekey =
            X25519PublicKey::from_canonical_bytes(r.array()?).ok_or(DecodeError::InvalidValue {
                field: "x25519 public key",
            })?;
        let signed_prekey_signature = Signature::from_bytes(r.array()?);
        let kem_prekey_id = r.u32()?;
        let kem_kind = KemPreKeyKind::from_byte(r.u8()?)?;
        let kem_prekey = KemPublicKey::from_bytes(r.bytes(KEM_PUBLIC_KEY_LEN)?).map_err(|_| {
            DecodeError::InvalidValue {
                field: "kem prekey",
            }
        })?;
        let kem_prekey_signature = Signature::from_bytes(r.array()?);
        let one_time = if r.bool("one-time prekey flag")? {
            Some((
                r.u32()?,
                X25519PublicKey::from_canonical_bytes(r.array()?).ok_or(
                    DecodeError::InvalidValue {
                        field: "x25519 public key",
                    },
                )?,
            ))
        } else {
            None
        };
        r.finish()?;
        Ok(Self {
            identity,
            signed_prekey_id,
            signed_prekey,
            signed_prekey_signature,
            kem_prekey_id,
            kem_kind,
            kem_prekey,
            kem_prekey_signature,
            one_time,
        })
    }
}

#[derive(Clone)]
struct SignedPreKey {
    id: u32,
    key: X25519KeyPair,
    signature: Signature,
    created_at: Timestamp,
}

#[derive(Clone)]
struct KemPreKey {
    id: u32,
    key: KemKeyPair,
    signature: Signature,
    created_at: Timestamp,
}

/// A responder's prekey secrets and the record of accepted initial messages.
///
/// All mutation that results from an incoming message happens through
/// [`crate::SessionRecord::decrypt`], and only after the message authenticated.
#[derive(Clone)]
pub struct PreKeyStore {
    identity: IdentityKeyPair,
    /// Newest last; the newest is the one published.
    signed: VecDeque<SignedPreKey>,
    /// Newest last; the newest is the one published.
    last_resort: VecDeque<KemPreKey>,
    one_time: BTreeMap<u32, X25519KeyPair>,
    one_time_kem: BTreeMap<u32, (KemKeyPair, Signature)>,
    next_id: u32,
    /// `(signed prekey id, base key)` of every accepted initial message that used no
    /// one-time key, kept until that signed prekey is retired (at most
    /// `MAX_SEEN_BASE_KEYS_PER_SIGNED_PREKEY` per signed prekey; never forgotten earlier).
    seen_base_keys: BTreeSet<(u32, [u8; 32])>,
    /// Counts changes since this value was created or loaded (not stored): see
    /// [`PreKeyStore::revision`].
    revision: u64,
}

impl core::fmt::Debug for PreKeyStore {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let Self {
            identity: _,
            signed,
            last_resort,
            one_time,
            one_time_kem,
            next_id: _,
            seen_base_keys,
            revision: _,
        } = self;
        f.debug_struct("PreKeyStore")
            .field("signed_prekeys", &signed.len())
            .field("last_resort_kem_prekeys", &last_resort.len())
            .field("one_time_prekeys", &one_time.len())
            .field("one_time_kem_prekeys", &one_time_kem.len())
            .field("seen_base_keys", &seen_base_keys.len())
            .finish_non_exhaustive()
    }
}

/// What a prekey message needs from the store, looked up without changing anything.
pub(crate) struct PreKeyLookup {
    pub(crate) signed: X25519KeyPair,
    pub(crate) kem: KemKeyPair,
    pub(crate) one_time: Option<X25519KeyPair>,
}

impl PreKeyStore {
    /// A new store with one signed prekey and one last-resort KEM prekey.
    pub fn new<R: CryptoRng + ?Sized>(
        identity: IdentityKeyPair,
        rng: &mut R,
        now: Timestamp,
    ) -> Self {
        let mut store = Self {
            identity,
            signed: VecDeque::new(),
            last_resort: VecDeque::new(),
            one_time: BTreeMap::new(),
            one_time_kem: BTreeMap::new(),
            next_id: 1,
            seen_base_keys: BTreeSet::new(),
            revision: 0,
        };
        store.rotate_signed_prekey(rng, now);
        store.rotate_last_resort_kem_prekey(rng, now);
        store
    }

    /// Our identity.
    #[must_use]
    pub fn identity(&self) -> &IdentityKeyPair {
        &self.identity
    }

    /// A number that grows with every change to the store (a new or rotated prekey, a
    /// consumed one-time key, a remembered base key) and stays put otherwise. Not stored: it
    /// starts at 0 in every loaded store. An incremental store compares it with the value at
    /// its last write to know whether the store must be written again.
    #[must_use]
    pub fn revision(&self) -> u64 {
        self.revision
    }

    fn note_change(&mut self) {
        self.revision = self.revision.wrapping_add(1);
    }

    /// The id for a new key. Every change other than [`PreKeyStore::consume`] creates a key,
    /// so this is also where the revision moves.
    fn take_id(&mut self) -> u32 {
        self.note_change();
        let id = self.next_id;
        // Ids wrap only after 4 billion keys; 0 is never used so "no key" is never confused.
        self.next_id = self.next_id.checked_add(1).unwrap_or(1);
        id
    }

    /// Replaces the published signed prekey; the old one is kept (up to
    /// [`MAX_RETAINED_SIGNED_PREKEYS`]) for messages in flight. Returns the new id.
    pub fn rotate_signed_prekey<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        now: Timestamp,
    ) -> u32 {
        let id = self.take_id();
        let key = X25519KeyPair::generate(rng);
        let signature = self
            .identity
            .sign(&signed_prekey_message(id, &key.public_key()));
        self.signed.push_back(SignedPreKey {
            id,
            key,
            signature,
            created_at: now,
        });
        while self.signed.len() > MAX_RETAINED_SIGNED_PREKEYS {
            if let Some(old) = self.signed.pop_front() {
                // Replays against a retired signed prekey fail as unknown; forget their base keys.
                self.seen_base_keys.retain(|(spk, _)| *spk != old.id);
            }
        }
        id
    }

    /// Replaces the published last-resort KEM prekey. Returns the new id.
    pub fn rotate_last_resort_kem_prekey<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        now: Timestamp,
    ) -> u32 {
        let id = self.take_id();
        let key = KemKeyPair::generate(rng);
        let signature = self.identity.sign(&kem_prekey_message(
            id,
            KemPreKeyKind::LastResort,
            key.public_key(),
        ));
        self.last_resort.push_back(KemPreKey {
            id,
            key,
            signature,
            created_at: now,
        });
        while self.last_resort.len() > MAX_RETAINED_SIGNED_PREKEYS {
            self.last_resort.pop_front();
        }
        id
    }

    /// Generates up to `count` one-time X25519 prekeys (never beyond
    /// [`MAX_ONE_TIME_PREKEYS`] held). Returns how many were added.
    pub fn generate_one_time_prekeys<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        count: usize,
    ) -> usize {
        let room = MAX_ONE_TIME_PREKEYS.saturating_sub(self.one_time.len());
        let n = count.min(room);
        for _ in 0..n {
            let id = self.take_id();
            self.one_time.insert(id, X25519KeyPair::generate(rng));
        }
        n
    }

    /// Generates up to `count` one-time ML-KEM-768 prekeys (never beyond
    /// [`MAX_ONE_TIME_KEM_PREKEYS`] held). Returns how many were added.
    pub fn generate_one_time_kem_prekeys<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        count: usize,
    ) -> usize {
        let room = MAX_ONE_TIME_KEM_PREKEYS.saturating_sub(self.one_time_kem.len());
        let n = count.min(room);
        for _ in 0..n {
            let id = self.take_id();
            let key = KemKeyPair::generate(rng);
            let signature = self.identity.sign(&kem_prekey_message(
                id,
                KemPreKeyKind::OneTime,
                key.public_key(),
            ));
            self.one_time_kem.insert(id, (key, signature));
        }
        n
    }

    /// One-time X25519 prekeys still unused.
    #[must_use]
    pub fn one_time_prekey_count(&self) -> usize {
        self.one_time.len()
    }

    /// One-time KEM prekeys still unused.
    #[must_use]
    pub fn one_time_kem_prekey_count(&self) -> usize {
        self.one_time_kem.len()
    }

    /// When the published signed prekey was made (for rotation schedules).
    #[must_use]
    pub fn signed_prekey_created_at(&self) -> Option<Timestamp> {
        self.signed.back().map(|s| s.created_at)
    }

    /// When the published last-resort KEM prekey was made.
    #[must_use]
    pub fn last_resort_kem_created_at(&self) -> Option<Timestamp> {
        self.last_resort.back().map(|s| s.created_at)
    }

    /// Everything to upload to a directory: [`PreKeyStore::one_time_bundles`] (each to be
    /// handed out once), then [`PreKeyStore::last_resort_bundle`] (no one-time key, so safe to
    /// hand out any number of times). The last element is never a one-time bundle.
    #[must_use]
    pub fn bundles(&self) -> Vec<PreKeyBundle> {
        let mut out = self.one_time_bundles();
        out.extend(self.last_resort_bundle());
        out
    }

    /// The bundles a directory hands out **once each**: one per unused one-time ML-KEM prekey
    /// (paired with an unused one-time X25519 prekey while they last), then one per one-time
    /// X25519 prekey left over, paired with the last-resort ML-KEM prekey. Every bundle holds
    /// at least one one-time key and each one-time key appears in exactly one bundle. When
    /// they run out, the directory serves [`PreKeyStore::last_resort_bundle`] to everyone.
    #[must_use]
    pub fn one_time_bundles(&self) -> Vec<PreKeyBundle> {
        let (Some(spk), Some(lr)) = (self.signed.back(), self.last_resort.back()) else {
            return Vec::new();
        };
        let make = |kem_id: u32,
                    kind: KemPreKeyKind,
                    kem: &KemKeyPair,
                    sig: Signature,
                    otk: Option<(&u32, &X25519KeyPair)>| PreKeyBundle {
            identity: self.identity.public(),
            signed_prekey_id: spk.id,
            signed_prekey: spk.key.public_key(),
            signed_prekey_signature: spk.signature,
            kem_prekey_id: kem_id,
            kem_kind: kind,
            kem_prekey: kem.public_key().clone(),
            kem_prekey_signature: sig,
            one_time: otk.map(|(id, k)| (*id, k.public_key())),
        };
        let mut otks = self.one_time.iter();
        let mut out = Vec::with_capacity(self.one_time_kem.len().max(self.one_time.len()));
        for (id, (kem, sig)) in &self.one_time_kem {
            out.push(make(*id, KemPreKeyKind::OneTime, kem, *sig, otks.next()));
        }
        for otk in otks {
            out.push(make(
                lr.id,
                KemPreKeyKind::LastResort,
                &lr.key,
                lr.signature,
                Some(otk),
            ));
        }
        out
    }

    /// The bundle with no one-time keys at all (what a directory serves when it runs out).
    #[must_use]
    pub fn last_resort_bundle(&self) -> Option<PreKeyBundle> {
        let spk = self.signed.back()?;
        let lr = self.last_resort.back()?;
        Some(PreKeyBundle {
            identity: self.identity.public(),
            signed_prekey_id: spk.id,
            signed_prekey: spk.key.public_key(),
            signed_prekey_signature: spk.signature,
            kem_prekey_id: lr.id,
            kem_kind: KemPreKeyKind::LastResort,
            kem_prekey: lr.key.public_key().clone(),
            kem_prekey_signature: lr.signature,
            one_time: None,
        })
    }

    pub(crate) fn lookup(
        &self,
        signed_prekey_id: u32,
        kem_prekey_id: u32,
        one_time_prekey_id: Option<u32>,
    ) -> Result<PreKeyLookup, crate::error::DecryptError> {
        use crate::error::DecryptError;
        let signed = self
            .signed
            .iter()
            .find(|s| s.id == signed_prekey_id)
            .map(|s| s.key.clone())
            .ok_or(DecryptError::UnknownSignedPreKey)?;
        let kem = match self.one_time_kem.get(&kem_prekey_id) {
            Some((k, _)) => k.clone(),
            None => self
                .last_resort
                .iter()
                .find(|k| k.id == kem_prekey_id)
                .map(|k| k.key.clone())
                .ok_or(DecryptError::UnknownKemPreKey)?,
        };
        let one_time = match one_time_prekey_id {
            None => None,
            Some(id) => Some(
                self.one_time
                    .get(&id)
                    .cloned()
                    .ok_or(DecryptError::UnknownOneTimePreKey)?,
            ),
        };
        Ok(PreKeyLookup {
            signed,
            kem,
            one_time,
        })
    }

    pub(crate) fn has_seen(&self, signed_prekey_id: u32, base_key: &X25519PublicKey) -> bool {
        self.seen_base_keys
            .contains(&(signed_prekey_id, *base_key.as_bytes()))
    }

    /// Whether accepting an initial message with these ids must remember its base key: only
    /// if it used no one-time key of either kind (a one-time key is deleted on acceptance, so
    /// a replay of a message that used one is refused as unknown).
    fn needs_replay_record(&self, kem_prekey_id: u32, one_time_prekey_id: Option<u32>) -> bool {
        one_time_prekey_id.is_none() && !self.one_time_kem.contains_key(&kem_prekey_id)
    }

    /// Base keys remembered for `signed_prekey_id` (initial messages without one-time keys
    /// accepted under it). The endpoint rotates its signed prekey well before this reaches
    /// [`MAX_SEEN_BASE_KEYS_PER_SIGNED_PREKEY`].
    #[must_use]
    pub fn seen_base_key_count(&self, signed_prekey_id: u32) -> usize {
        self.seen_base_keys
            .range((signed_prekey_id, [0u8; 32])..=(signed_prekey_id, [0xff; 32]))
            .count()
    }

    /// The id of the published (newest) signed prekey.
    #[must_use]
    pub fn published_signed_prekey_id(&self) -> Option<u32> {
        self.signed.back().map(|s| s.id)
    }

    /// Refuses, before anything is computed, an initial message whose acceptance would have to
    /// remember one base key more than the bound allows for its signed prekey.
    pub(crate) fn check_replay_room(
        &self,
        signed_prekey_id: u32,
        kem_prekey_id: u32,
        one_time_prekey_id: Option<u32>,
    ) -> Result<(), crate::error::DecryptError> {
        // The total check only matters for a store upgraded from version 1, whose list may
        // hold more than the per-prekey bound under one signed prekey; lists built by this
        // version stay below it (at most the per-prekey bound under each retained prekey).
        if self.needs_replay_record(kem_prekey_id, one_time_prekey_id)
            && (self.seen_base_key_count(signed_prekey_id) >= MAX_SEEN_BASE_KEYS_PER_SIGNED_PREKEY
                || self.seen_base_keys.len() >= MAX_SEEN_BASE_KEYS)
        {
            return Err(crate::error::DecryptError::ReplayListFull { signed_prekey_id });
        }
        Ok(())
    }

    /// Commits the acceptance of an initial message: one-time keys are consumed and, if it
    /// used none, the base key is remembered. Called only after the message authenticated and
    /// [`PreKeyStore::check_replay_room`] allowed it, so no entry is ever evicted.
    pub(crate) fn consume(
        &mut self,
        signed_prekey_id: u32,
        kem_prekey_id: u32,
        one_time_prekey_id: Option<u32>,
        base_key: X25519PublicKey,
    ) {
        let remember = self.needs_replay_record(kem_prekey_id, one_time_prekey_id);
        self.note_change();
        self.one_time_kem.remove(&kem_prekey_id);
        if let Some(id) = one_time_prekey_id {
            self.one_time.remove(&id);
        }
        if remember {
            self.seen_base_keys
                .insert((signed_prekey_id, *base_key.as_bytes()));
        }
    }

    /// Serializes the store (secrets included: encrypt it with [`crate::storage`]). The
    /// buffer is wiped when dropped, and no copy is left behind while it is built.
    #[must_use]
    pub fn to_bytes(&self) -> zeroize::Zeroizing<Vec<u8>> {
        let mut w = Writer::new();
        w.u8(crate::state::STATE_VERSION);
        w.bytes(self.identity.to_secret_bytes().expose());
        w.u32(self.next_id);
        let count = |n: usize| u16::try_from(n).unwrap_or(u16::MAX);
        w.u16(count(self.signed.len()));
        for s in &self.signed {
            w.u32(s.id)
                .bytes(s.key.secret().to_secret_bytes().expose())
                .bytes(s.key.public_key().as_bytes())
                .bytes(&s.signature.to_bytes())
                .u64(s.created_at.as_millis());
        }
        w.u16(count(self.last_resort.len()));
        for k in &self.last_resort {
            w.u32(k.id)
                .bytes(k.key.seed().expose())
                .bytes(&k.signature.to_bytes())
                .u64(k.created_at.as_millis());
        }
        w.u16(count(self.one_time.len()));
        for (id, k) in &self.one_time {
            w.u32(*id)
                .bytes(k.secret().to_secret_bytes().expose())
                .bytes(k.public_key().as_bytes());
        }
        w.u16(count(self.one_time_kem.len()));
        for (id, (k, sig)) in &self.one_time_kem {
            w.u32(*id).bytes(k.seed().expose()).bytes(&sig.to_bytes());
        }
        w.u32(u32::try_from(self.seen_base_keys.len()).unwrap_or(u32::MAX));
        for (id, k) in &self.seen_base_keys {
            w.u32(*id).bytes(k);
        }
        w.into_zeroizing()
    }

    /// Restores a store from [`PreKeyStore::to_bytes`], strictly, from bytes of any origin:
    /// every stored public key is checked against its secret (one base-point multiplication
    /// each). State that came back through [`crate::storage`] should use
    /// [`PreKeyStore::from_authenticated`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let store = Self::read(&mut StateSource::Untrusted(&mut r))?;
        r.finish()?;
        Ok(store)
    }

    /// Restores a store from authenticated stored state (what [`crate::storage::open`]
    /// returns, or a field of it, as the endpoint stores its identity record): parsing stays
    /// strict, but the X25519 public keys, which matched their secrets when the store was
    /// written, are read back instead of recomputed. ML-KEM keys are expanded from their
    /// seeds only when first used.
    pub fn from_authenticated(mut r: AuthenticatedReader<'_>) -> Result<Self, DecodeError> {
        let store = Self::read(&mut StateSource::Authenticated(&mut r))?;
        r.finish()?;
        Ok(store)
    }

    fn read(r: &mut StateSource<'_, '_>) -> Result<Self, DecodeError> {
        let version = r.u8()?;
        if version != crate::state::STATE_VERSION
            && version != STATE_VERSION_WITHOUT_PUBLIC_KEYS
            && version != STATE_VERSION_UNSORTED_SEEN
        {
            return Err(DecodeError::UnknownVersion {
                what: "prekey store",
                found: version,
            });
        }
        // Versions 1 and 2 stored X25519 secrets alone: their public keys are computed.
        let with_public = version == crate::state::STATE_VERSION;
        let x25519_pair = |r: &mut StateSource<'_, '_>| {
            if with_public {
                r.x25519_pair()
            } else {
                Ok(X25519KeyPair::from_secret(X25519Secret::from_bytes(
                    r.array()?,
                )))
            }
        };
        let identity = IdentityKeyPair::from_secret_bytes(
            &SecretBytes::<IDENTITY_SECRET_LEN>::new(r.array()?),
        );
        let next_id = r.u32()?;
        let n = r.count16("signed prekeys", MAX_RETAINED_SIGNED_PREKEYS)?;
        let mut signed = VecDeque::with_capacity(n);
        for _ in 0..n {
            signed.push_back(SignedPreKey {
                id: r.u32()?,
                key: x25519_pair(r)?,
                signature: Signature::from_bytes(r.array()?),
                created_at: Timestamp::from_millis(r.u64()?),
            });
        }
        let n = r.count16("last-resort kem prekeys", MAX_RETAINED_SIGNED_PREKEYS)?;
        let mut last_resort = VecDeque::with_capacity(n);
        for _ in 0..n {
            last_resort.push_back(KemPreKey {
                id: r.u32()?,
                key: KemKeyPair::from_seed(SecretBytes::new(r.array()?)),
                signature: Signature::from_bytes(r.array()?),
                created_at: Timestamp::from_millis(r.u64()?),
            });
        }
        let n = r.count16("one-time prekeys", MAX_ONE_TIME_PREKEYS)?;
        let mut one_time = BTreeMap::new();
        let mut last = None;
        for _ in 0..n {
            let id = r.u32()?;
            if last.is_some_and(|l| l >= id) {
                return Err(DecodeError::InvalidValue {
                    field: "one-time prekey order",
                });
            }
            last = Some(id);
            one_time.insert(id, x25519_pair(r)?);
        }
        let n = r.count16("one-time kem prekeys", MAX_ONE_TIME_KEM_PREKEYS)?;
        let mut one_time_kem = BTreeMap::new();
        let mut last = None;
        for _ in 0..n {
            let id = r.u32()?;
            if last.is_some_and(|l| l >= id) {
                return Err(DecodeError::InvalidValue {
                    field: "kem prekey order",
                });
            }
            last = Some(id);
            let key = KemKeyPair::from_seed(SecretBytes::new(r.array()?));
            one_time_kem.insert(id, (key, Signature::from_bytes(r.array()?)));
        }
        let n = r.count32("seen base keys", MAX_SEEN_BASE_KEYS)?;
        let mut seen_base_keys = BTreeSet::new();
        for _ in 0..n {
            let entry = (r.u32()?, r.array()?);
            let retained = signed.iter().any(|s| s.id == entry.0);
            if version == STATE_VERSION_UNSORTED_SEEN {
                // Version 1 kept insertion order and no per-prekey bound; an entry for a
                // retired signed prekey cannot occur (retiring dropped them) and would be
                // refused anyway, so it is not carried over.
                if retained {
                    seen_base_keys.insert(entry);
                }
                continue;
            }
            // Strictly ascending (one encoding, no duplicates), under a retained signed
            // prekey. The per-prekey bound is enforced when accepting, not here: a store
            // upgraded from version 1 may hold more under one signed prekey, and refusing it
            // would lose the identity; the total bound above holds for every store.
            if !retained
                || seen_base_keys
                    .last()
                    .is_some_and(|last: &(u32, [u8; 32])| *last >= entry)
            {
                return Err(DecodeError::InvalidValue {
                    field: "seen base key",
                });
            }
            seen_base_keys.insert(entry);
        }
        Ok(Self {
            identity,
            signed,
            last_resort,
            one_time,
            one_time_kem,
            next_id,
            seen_base_keys,
            revision: 0,
        })
    }
}
