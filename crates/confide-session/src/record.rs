//! The sessions held for one peer: the current one plus a bounded archive.

use std::collections::VecDeque;

use confide_crypto::{
    CryptoRng, Timestamp,
    codec::{DecodeError, Reader, Writer},
    identity::IdentityPublicKey,
    stored::AuthenticatedReader,
    x25519::X25519PublicKey,
};
use zeroize::Zeroizing;

use crate::{
    consts::MAX_ARCHIVED_SESSIONS,
    error::{DecryptError, EncryptError},
    message::SessionMessage,
    prekeys::PreKeyStore,
    session::{Decrypted, KnownIdentities, Session},
    state::StateSource,
};

/// Whether a prekey message from a different identity than the conversation knows may start
/// a new session. The app decides (after showing the user); the library never accepts silently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdentityChangePolicy {
    /// Refuse with [`DecryptError::IdentityChanged`]; nothing changes.
    Refuse,
    /// The app has decided to accept the new identity.
    Accept,
}

/// The sessions with one peer. All decryption goes through here.
#[derive(Clone, Default)]
pub struct SessionRecord {
    current: Option<Session>,
    /// Newest first.
    archived: VecDeque<Session>,
}

impl core::fmt::Debug for SessionRecord {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let Self { current, archived } = self;
        f.debug_struct("SessionRecord")
            .field("current", current)
            .field("archived", &archived.len())
            .finish()
    }
}

impl SessionRecord {
    /// An empty record.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A record whose current session is `session` (typically from [`Session::initiate`]).
    #[must_use]
    pub fn with_session(session: Session) -> Self {
        Self {
            current: Some(session),
            archived: VecDeque::new(),
        }
    }

    /// Makes `session` current, archiving the previous one.
    pub fn promote(&mut self, session: Session) {
        if let Some(old) = self.current.replace(session) {
            self.archived.push_front(old);
            self.archived.truncate(MAX_ARCHIVED_SESSIONS);
        }
    }

    /// The current session.
    #[must_use]
    pub fn current(&self) -> Option<&Session> {
        self.current.as_ref()
    }

    /// Archived sessions kept for messages in flight.
    #[must_use]
    pub fn archived_count(&self) -> usize {
        self.archived.len()
    }

    /// Whether the current or an archived session is the one named by `base_key` (the
    /// initiator's base key, which both sides of a session know).
    #[must_use]
    pub fn has_session(&self, base_key: &X25519PublicKey) -> bool {
        self.position_of(|s| &s.base_key() == base_key).is_some()
    }

    /// The peer's identity according to the current session.
    #[must_use]
    pub fn remote_identity(&self) -> Option<&IdentityPublicKey> {
        self.current.as_ref().map(Session::remote_identity)
    }

    /// Encrypts on the current session.
    pub fn encrypt<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, RecordEncryptError> {
        self.encrypt_message(rng, plaintext)
            .map(|m| SessionMessage::to_bytes(&m))
    }

    /// As [`SessionRecord::encrypt`], returning the message itself (for a caller that needs
    /// its parts, such as [`SessionMessage::ciphertext_len`]).
    pub fn encrypt_message<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        plaintext: &[u8],
    ) -> Result<SessionMessage, RecordEncryptError> {
        let session = self.current.as_mut().ok_or(RecordEncryptError::NoSession)?;
        Ok(session.encrypt(rng, plaintext)?)
    }

    /// Decrypts any message from this peer: an established-session message, or a prekey message
    /// that continues a known session or starts a new one (using and then updating `store`).
    ///
    /// Transactional: on any error neither the record nor the store changes. On success a
    /// one-time prekey is consumed only now, after the first message authenticated.
    pub fn decrypt(
        &mut self,
        store: &mut PreKeyStore,
        bytes: &[u8],
        now: Timestamp,
        identity_change: IdentityChangePolicy,
    ) -> Result<Decrypted, DecryptError> {
        let message = SessionMessage::from_bytes(bytes)?;
        self.decrypt_message(store, &message, now, identity_change)
    }

    /// As [`SessionRecord::decrypt`], for a message the caller parsed already (with
    /// [`SessionMessage::from_bytes`], which is all `decrypt` adds): transactional in the same
    /// way.
    pub fn decrypt_message(
        &mut self,
        store: &mut PreKeyStore,
        message: &SessionMessage,
        now: Timestamp,
        identity_change: IdentityChangePolicy,
    ) -> Result<Decrypted, DecryptError> {
        match message {
            SessionMessage::Ratchet(_) => self.decrypt_existing(message, now),
            SessionMessage::PreKey(p) => {
                let known = self.position_of(|s| {
                    s.base_key() == p.base_key() && s.remote_identity() == p.initiator_identity()
                });
                if let Some(position) = known {
                    // The prekey message names its session by base key: only that session
                    // may decrypt it (and checks that its header is the original one).
                    return self.decrypt_at(position, message, now);
                }
                if p.initiator_identity() == &store.identity().public() {
                    return Err(DecryptError::OwnIdentity);
                }
                if let Some(known) = self.remote_identity()
                    && known != p.initiator_identity()
                    && identity_change == IdentityChangePolicy::Refuse
                {
                    return Err(DecryptError::IdentityChanged);
                }
                if store.has_seen(p.signed_prekey_id, &p.base_key) {
                    return Err(DecryptError::ReplayedInitialMessage);
                }
                store.check_replay_room(
                    p.signed_prekey_id,
                    p.kem_prekey_id,
                    p.one_time_prekey_id,
                )?;
                let (session, plaintext) = Session::accept(store, p, now)?;
                store.consume(
                    p.signed_prekey_id,
                    p.kem_prekey_id,
                    p.one_time_prekey_id,
                    p.base_key,
                );
                let remote_identity = *session.remote_identity();
                self.promote(session);
                Ok(Decrypted {
                    plaintext,
                    remote_identity,
                    new_session: true,
                })
            }
        }
    }

    /// Index: `None` = current, `Some(i)` = archived[i]; outer `None` = not found.
    fn position_of(&self, f: impl Fn(&Session) -> bool) -> Option<Option<usize>> {
        if self.current.as_ref().is_some_and(&f) {
            return Some(None);
        }
        self.archived.iter().position(f).map(Some)
    }

    /// Decrypts on the session at `position` (see [`Self::position_of`]); a session that
    /// decrypts becomes current.
    fn decrypt_at(
        &mut self,
        position: Option<usize>,
        message: &SessionMessage,
        now: Timestamp,
    ) -> Result<Decrypted, DecryptError> {
        let session = match position {
            None => self.current.as_mut(),
            Some(i) => self.archived.get_mut(i),
        }
        .ok_or(DecryptError::NoSession)?;
        let plaintext = session.decrypt(message, now)?;
        let remote_identity = *session.remote_identity();
        if let Some(i) = position
            && let Some(s) = self.archived.remove(i)
        {
            // The peer is using this session: make it current again.
            self.promote(s);
        }
        Ok(Decrypted {
            plaintext,
            remote_identity,
            new_session: false,
        })
    }

    fn decrypt_existing(
        &mut self,
        message: &SessionMessage,
        now: Timestamp,
    ) -> Result<Decrypted, DecryptError> {
        let mut first_error = None;
        if let Some(current) = self.current.as_mut() {
            match current.decrypt(message, now) {
                Ok(plaintext) => {
                    return Ok(Decrypted {
                        plaintext,
                        remote_identity: *current.remote_identity(),
                        new_session: false,
                    });
                }
                Err(e) => first_error = Some(e),
            }
        }
        for i in 0..self.archived.len() {
            let Some(session) = self.archived.get_mut(i) else {
                break;
            };
            match session.decrypt(message, now) {
                Ok(plaintext) => {
                    let remote_identity = *session.remote_identity();
                    // The peer is using this session: make it current again.
                    if let Some(s) = self.archived.remove(i) {
                        self.promote(s);
                    }
                    return Ok(Decrypted {
                        plaintext,
                        remote_identity,
                        new_session: false,
                    });
                }
                Err(e) => {
                    if first_error.is_none() || e == DecryptError::Duplicate {
                        first_error = Some(e);
                    }
                }
            }
        }
        Err(first_error.unwrap_or(DecryptError::NoSession))
    }

    /// Erases skipped message keys stored before `cutoff` in every session; returns how many.
    pub fn prune_skipped_keys(&mut self, cutoff: Timestamp) -> usize {
        let mut n = 0usize;
        for s in self.current.iter_mut().chain(self.archived.iter_mut()) {
            n = n.saturating_add(s.prune_skipped_keys(cutoff));
        }
        n
    }

    /// When the oldest skipped message key of any session (current or archived) was stored,
    /// so the caller can schedule the next [`SessionRecord::prune_skipped_keys`].
    #[must_use]
    pub fn oldest_skipped_key_at(&self) -> Option<Timestamp> {
        self.current
            .iter()
            .chain(self.archived.iter())
            .filter_map(Session::oldest_skipped_key_at)
            .min()
    }

    /// Erases every session (conversation closed). Dropping the sessions zeroizes their keys.
    pub fn erase(&mut self) {
        for s in self.current.iter_mut().chain(self.archived.iter_mut()) {
            s.clear_skipped_keys();
        }
        self.current = None;
        self.archived.clear();
    }

    /// Serializes the record (secrets included: encrypt it with [`crate::storage`]). The
    /// buffer is wiped when dropped, and no copy is left behind while it is built.
    #[must_use]
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        self.write(None)
    }

    /// Serializes the record in its compact form: each session's identities that equal
    /// `known` are left out (`docs/spec.md` §11). Read it back with the same identities
    /// ([`SessionRecord::from_authenticated_compact`]); an endpoint stores its conversations'
    /// records this way, saving 256 bytes a session in every write.
    #[must_use]
    pub fn to_bytes_compact(&self, known: KnownIdentities<'_>) -> Zeroizing<Vec<u8>> {
        self.write(Some(known))
    }

    fn write(&self, known: Option<KnownIdentities<'_>>) -> Zeroizing<Vec<u8>> {
        let mut w = Writer::with_capacity(1024);
        w.u8(crate::state::SESSION_STATE_VERSION);
        match &self.current {
            None => {
                w.u8(0);
            }
            Some(s) => {
                w.u8(1);
                s.write(&mut w, known);
            }
        }
        w.u8(u8::try_from(self.archived.len()).unwrap_or(u8::MAX));
        for s in &self.archived {
            s.write(&mut w, known);
        }
        w.into_zeroizing()
    }

    /// Restores a record from [`SessionRecord::to_bytes`], strictly.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let record = Self::read(&mut StateSource::Untrusted(&mut r), None)?;
        r.finish()?;
        Ok(record)
    }

    /// Restores a record from [`SessionRecord::to_bytes_compact`] with the same identities,
    /// strictly (every check of [`SessionRecord::from_bytes`]).
    pub fn from_bytes_compact(
        bytes: &[u8],
        known: KnownIdentities<'_>,
    ) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let record = Self::read(&mut StateSource::Untrusted(&mut r), Some(known))?;
        r.finish()?;
        Ok(record)
    }

    /// [`SessionRecord::from_authenticated`] for the compact form, given the identities it
    /// was written with.
    pub fn from_authenticated_compact(
        mut r: AuthenticatedReader<'_>,
        known: KnownIdentities<'_>,
    ) -> Result<Self, DecodeError> {
        let record = Self::read(&mut StateSource::Authenticated(&mut r), Some(known))?;
        r.finish()?;
        Ok(record)
    }

    /// Restores a record from authenticated stored state (what [`crate::storage::open`]
    /// returns, or a field of it, as the endpoint stores records): parsing stays strict, but
    /// identity signatures and key pairs checked when the state was written are not checked
    /// again. Bytes from anywhere else cannot be passed; use [`SessionRecord::from_bytes`].
    ///
    /// ```compile_fail
    /// // The unchecked constructor from a byte slice is gone from the public API.
    /// let _ = confide_session::SessionRecord::from_authenticated_bytes(&[0u8; 4]);
    /// ```
    pub fn from_authenticated(mut r: AuthenticatedReader<'_>) -> Result<Self, DecodeError> {
        let record = Self::read(&mut StateSource::Authenticated(&mut r), None)?;
        r.finish()?;
        Ok(record)
    }

    fn read(
        r: &mut StateSource<'_, '_>,
        known: Option<KnownIdentities<'_>>,
    ) -> Result<Self, DecodeError> {
        let version = r.u8()?;
        if version != crate::state::SESSION_STATE_VERSION
            && (known.is_some()
                || version != crate::state::SESSION_STATE_VERSION_WITHOUT_ENVELOPE_SECRET)
        {
            return Err(DecodeError::UnknownVersion {
                what: "session record",
                found: version,
            });
        }
        // Every session inside has the record's version: one encoding per record.
        let read_session = |r: &mut StateSource<'_, '_>| match Session::read(r, known)? {
            (session, v) if v == version => Ok(session),
            (_, found) => Err(DecodeError::UnknownVersion {
                what: "session state inside a record of another version",
                found,
            }),
        };
        let current = if r.bool("current session flag")? {
            Some(read_session(r)?)
        } else {
            None
        };
        let n = usize::from(r.u8()?);
        if n > MAX_ARCHIVED_SESSIONS {
            return Err(DecodeError::TooLong {
                field: "archived sessions",
                len: n,
                max: MAX_ARCHIVED_SESSIONS,
            });
        }
        let mut archived = VecDeque::with_capacity(n);
        for _ in 0..n {
            archived.push_back(read_session(r)?);
        }
        Ok(Self { current, archived })
    }
}

/// Why [`SessionRecord::encrypt`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordEncryptError {
    /// The record has no current session (never started, or erased).
    #[error("no session")]
    NoSession,
    /// The session refused.
    #[error(transparent)]
    Encrypt(#[from] EncryptError),
}
