//! Getting two endpoints talking again after one of them imported an older state.
//!
//! The session layer guarantees that no key is reused after an import (it forks or ratchets
//! to a fresh sending chain before encrypting again). This module makes sure nothing is lost
//! without a word, whichever side went back in time:
//!
//! * **Resume.** After every import, at its first input, the endpoint sends each open
//!   conversation a resume frame (inside the session) naming the most recent frames of the
//!   peer it holds. The peer compares them with the texts it saw acknowledged and reports
//!   those the restored side no longer has ([`Event::PeerRestored`]). The resume frame's
//!   fresh sending branch also lets the peer detect a rolled-back sending chain.
//! * **Reset.** When a frame inside an envelope authenticated as the peer cannot be followed
//!   (a rolled-back chain, a ratchet message that fails to authenticate, or a ratchet
//!   message from a certified peer we have no conversation with), the endpoint sends a
//!   **reset request**: outside the ratchet, sealed to the peer, naming the session it holds
//!   (by base key; all zero for none) and carrying its own last-resort prekey bundle. At most
//!   one per [`RESET_REQUEST_MIN_INTERVAL`](crate::consts::RESET_REQUEST_MIN_INTERVAL) per
//!   peer.
//! * The peer honours a request that names a session it knows (current or archived) or none,
//!   and that it has not honoured before: it starts a new session from the bundle (the
//!   identity must be the one it knows), re-encrypts every waiting frame in it under the old
//!   frame ids, and reports [`Event::SessionReset`]. A repeated request for a session already
//!   reset only gets a fresh message in the new session.
//! * The new session's first message reaches the requester, whose record makes it current
//!   (or which starts a conversation, if it had none); it reports [`Event::SessionReset`] or
//!   [`Event::ConversationStarted`] and re-sends its own waiting frames in it.
//!
//! Wire format of the request (the payload of a sealed envelope), in `docs/endpoint.md`:
//! `version:u8 (=1) || kind:u8 (=0x20) || session_base_key[32] || bundle_len:u16 || bundle`.

use confide_crypto::{
    CryptoRng, Timestamp,
    codec::{DecodeError, Reader, Writer},
    identity::IdentityPublicKey,
    x25519::X25519PublicKey,
};
use confide_policy::MessageId;
use confide_session::{ExpectedIdentity, PreKeyBundle, Session, SessionMessage};
use confide_transport::{Address, FrameId};

use super::bare_ack::AcknowledgementPayload;
use super::conversation::{SentKind, SentRecord};
use super::receive::{Authenticated, Refusal};
use super::{DropReason, Endpoint};
use confide_sealed::DeliveryToken;

use crate::consts::{
    KIND_ACKS_AND_SESSION, KIND_BARE_ACK, KIND_RESET_REQUEST, KIND_TOKEN_AND_SESSION,
    MAX_RESET_BUNDLE_LEN, MAX_UNKNOWN_PEER_RESETS, RESET_MEMORY, RESET_REQUEST_MIN_INTERVAL,
    RESET_REQUEST_VERSION,
};
use crate::event::{ConversationId, Event};

/// "No session": what a reset request names when the requester has none with the peer.
pub(crate) const NO_SESSION: [u8; 32] = [0; 32];

/// A parsed reset request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResetRequest {
    /// The base key of the requester's current session with us, or [`NO_SESSION`].
    pub(crate) session: [u8; 32],
    /// The requester's encoded prekey bundle.
    pub(crate) bundle: Vec<u8>,
}

impl ResetRequest {
    pub(crate) fn to_bytes(&self) -> Result<Vec<u8>, confide_crypto::codec::EncodeError> {
        let mut w = Writer::with_capacity(2 + 32 + 2 + self.bundle.len());
        w.u8(RESET_REQUEST_VERSION)
            .u8(KIND_RESET_REQUEST)
            .bytes(&self.session);
        w.var16("reset bundle", MAX_RESET_BUNDLE_LEN, &self.bundle)?;
        Ok(w.into_vec())
    }

    pub(crate) fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        if version != RESET_REQUEST_VERSION {
            return Err(DecodeError::UnknownVersion {
                what: "reset request",
                found: version,
            });
        }
        if r.u8()? != KIND_RESET_REQUEST {
            return Err(DecodeError::InvalidValue { field: "kind" });
        }
        let session = r.array()?;
        let bundle = r.var16("reset bundle", MAX_RESET_BUNDLE_LEN)?.to_vec();
        r.finish()?;
        Ok(Self { session, bundle })
    }
}

/// What an authenticated envelope carries.
pub(crate) enum Payload {
    /// A session message (parsed once, here), with the sender's delivery token if it sent
    /// one in front of it.
    Session {
        message: SessionMessage,
        token: Option<DeliveryToken>,
        /// Acknowledgements of the peer that rode in front of the session message (kind
        /// `0x23`); they count only once the session message authenticated.
        acks: Option<AcknowledgementPayload>,
    },
    ResetRequest(ResetRequest),
    /// An acknowledgement sealed outside the session (valid in a symmetric envelope only).
    Acknowledgement(AcknowledgementPayload),
}

/// Parses an envelope payload by its kind byte.
pub(crate) fn classify(payload: &[u8]) -> Result<Payload, DecodeError> {
    match payload.get(1) {
        Some(&KIND_RESET_REQUEST) => ResetRequest::from_bytes(payload).map(Payload::ResetRequest),
        Some(&KIND_BARE_ACK) => {
            AcknowledgementPayload::from_bytes(payload).map(Payload::Acknowledgement)
        }
        Some(&KIND_ACKS_AND_SESSION) => {
            let (acks, inner) = AcknowledgementPayload::split_in_front(payload)?;
            match classify(inner)? {
                Payload::Session {
                    message,
                    token,
                    acks: None,
                } => Ok(Payload::Session {
                    message,
                    token,
                    acks: Some(acks),
                }),
                _ => Err(DecodeError::InvalidValue {
                    field: "payload behind acknowledgements",
                }),
            }
        }
        Some(&KIND_TOKEN_AND_SESSION) => {
            let mut r = Reader::new(payload);
            if r.u8()? != TOKEN_PAYLOAD_VERSION {
                return Err(DecodeError::InvalidValue {
                    field: "token payload version",
                });
            }
            let _kind = r.u8()?;
            let token = DeliveryToken::new(r.array()?);
            let message = SessionMessage::from_bytes(r.rest())?;
            Ok(Payload::Session {
                message,
                token: Some(token),
                acks: None,
            })
        }
        _ => Ok(Payload::Session {
            message: SessionMessage::from_bytes(payload)?,
            token: None,
            acks: None,
        }),
    }
}

/// `version:u8 (= 1) || kind:u8 (= 0x21) || token[16] || session message`.
pub(crate) fn wrap_with_token(token: &DeliveryToken, session_message: &[u8]) -> Vec<u8> {
    let mut w = Writer::with_capacity(
        2usize
            .saturating_add(DeliveryToken::LEN)
            .saturating_add(session_message.len()),
    );
    w.u8(TOKEN_PAYLOAD_VERSION)
        .u8(KIND_TOKEN_AND_SESSION)
        .bytes(token.expose())
        .bytes(session_message);
    w.into_vec()
}

/// Whether an envelope payload we sent carried our delivery token (behind acknowledgements,
/// if some rode in front of it).
pub(crate) fn carries_token(payload: &[u8]) -> bool {
    match AcknowledgementPayload::split_in_front(payload) {
        Ok((_, inner)) => inner.get(1) == Some(&KIND_TOKEN_AND_SESSION),
        Err(_) => payload.get(1) == Some(&KIND_TOKEN_AND_SESSION),
    }
}

/// Version byte of a token-carrying payload (the same as a reset request's).
const TOKEN_PAYLOAD_VERSION: u8 = RESET_REQUEST_VERSION;

impl Endpoint {
    /// Seals a reset request naming `session` to `identity` at `to`.
    fn send_reset_request<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        to: Address,
        identity: &IdentityPublicKey,
        session: [u8; 32],
    ) -> bool {
        let Some(bundle) = self.store.last_resort_bundle() else {
            return false;
        };
        let request = ResetRequest {
            session,
            bundle: bundle.to_bytes(),
        };
        let Ok(payload) = request.to_bytes() else {
            return false;
        };
        let Ok(envelope) = confide_sealed::seal(
            rng,
            self.store.identity(),
            &self.certificate,
            identity,
            &payload,
        ) else {
            return false;
        };
        #[cfg(feature = "tracing")]
        tracing::info!("confide: peer out of sync, reset requested");
        self.delivery.send_unacknowledged(rng, to, envelope).is_ok()
    }

    /// Asks the peer of `conversation` to start a new session (rate-limited).
    pub(crate) fn request_reset<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        now: Timestamp,
        conversation: ConversationId,
    ) {
        let Some(conv) = self.conversations.get(&conversation) else {
            return;
        };
        if !Self::may_request_reset(conv, now) {
            return;
        }
        let session = conv
            .record
            .current()
            .map_or(NO_SESSION, |s| s.base_key().to_bytes());
        let (to, identity) = (conv.peer_address.clone(), conv.peer_identity);
        if self.send_reset_request(rng, to, &identity, session)
            && let Some(conv) = self.conversations.get_mut(&conversation)
        {
            conv.reset_requested_at = Some(now);
            self.mark_changed();
        }
    }

    /// A certified peer we have no conversation with sent a ratchet message: we lost the
    /// conversation (an older backup). Ask it to start a new session with us.
    pub(crate) fn request_reset_unknown<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        now: Timestamp,
        auth: &Authenticated,
    ) {
        if self
            .unknown_peer_resets
            .get(&auth.peer_address)
            .is_some_and(|at| now < at.saturating_add(RESET_REQUEST_MIN_INTERVAL))
        {
            return;
        }
        if self.send_reset_request(rng, auth.peer_address.clone(), &auth.identity, NO_SESSION) {
            self.unknown_peer_resets
                .insert(auth.peer_address.clone(), now);
            while self.unknown_peer_resets.len() > MAX_UNKNOWN_PEER_RESETS {
                // Forget the oldest request.
                let oldest = self
                    .unknown_peer_resets
                    .iter()
                    .min_by_key(|(_, at)| **at)
                    .map(|(a, _)| a.clone());
                if let Some(a) = oldest {
                    self.unknown_peer_resets.remove(&a);
                }
            }
        }
    }

    /// A reset request from the peer: start a new session if it names one we know and have
    /// not reset before.
    pub(crate) fn handle_reset_request<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        now: Timestamp,
        auth: &Authenticated,
        request: &ResetRequest,
    ) -> Result<(), Refusal> {
        let conversation = self
            .conversation_with(&auth.peer_address)
            .ok_or((None, DropReason::NoConversation))?;
        let conv = self
            .conversations
            .get(&conversation)
            .ok_or((None, DropReason::NoConversation))?;
        if conv.peer_identity != auth.identity {
            return Err((Some(conversation), DropReason::IdentityMismatch));
        }
        if conv.record.current().is_none() {
            return Err((Some(conversation), DropReason::ClosedConversation));
        }
        let cutoff = now.saturating_sub(RESET_MEMORY);
        let already = conv
            .reset_honoured
            .iter()
            .any(|(k, at)| *k == request.session && *at >= cutoff);
        if already {
            // We started a new session for this already; the requester has not seen it yet.
            let _ = self.delivery.accept_incoming(
                auth.frame_id,
                auth.peer_address.clone(),
                auth.digest,
                now,
            );
            self.send_resume(rng, now, conversation);
            return Ok(());
        }
        let known = request.session == NO_SESSION
            || conv
                .record
                .has_session(&X25519PublicKey::from_bytes(request.session));
        if !known {
            return Err((Some(conversation), DropReason::StaleResetRequest));
        }
        // Both sides may detect the divergence at once and ask each other. One new session
        // is enough: while our own request is pending, the side with the smaller identity
        // key gives way and the other ignores the peer's request (the peer honours ours).
        let own_bytes = self.store.identity().public().to_bytes();
        if conv.reset_requested_at.is_some() && own_bytes > conv.peer_identity.to_bytes() {
            return Err((Some(conversation), DropReason::StaleResetRequest));
        }
        let own = self.store.identity().public();
        let verified = PreKeyBundle::from_bytes(&request.bundle)
            .and_then(|b| b.verify(ExpectedIdentity::Exactly(&conv.peer_identity), &own))
            .map_err(|_| (Some(conversation), DropReason::MalformedPayload))?;
        let session = Session::initiate(rng, self.store.identity(), &verified)
            .map_err(|_| (Some(conversation), DropReason::SessionRefused))?;
        let _ = self.delivery.accept_incoming(
            auth.frame_id,
            auth.peer_address.clone(),
            auth.digest,
            now,
        );
        let _resent = self.install_session(rng, now, conversation, session);
        let mut lost_all = Vec::new();
        if let Some(c) = self.conversations.get_mut(&conversation) {
            c.note_honoured(request.session, now);
            if request.session == NO_SESSION {
                // The peer has no session with us at all: it lost the whole conversation,
                // so every text of ours it had acknowledged is gone from its side.
                lost_all = c.lost_after_resume(&[]);
            }
        }
        if !lost_all.is_empty() {
            self.events.push_back(Event::PeerRestored {
                conversation,
                possibly_lost: lost_all,
            });
        }
        // The resume frame opens the new session at the peer and tells it what we hold.
        self.send_resume(rng, now, conversation);
        #[cfg(feature = "tracing")]
        tracing::info!("confide: session reset at the peer's request");
        self.events.push_back(Event::SessionReset { conversation });
        self.mark_changed();
        Ok(())
    }

    /// After an import: a resume frame to every open conversation (see the module
    /// documentation).
    pub(crate) fn send_resumes<R: CryptoRng + ?Sized>(&mut self, rng: &mut R, now: Timestamp) {
        self.resume_pending = false;
        let ids: Vec<ConversationId> = self.conversations.keys().copied().collect();
        for conversation in ids {
            // Our epochs were not stored; frames waiting in symmetric envelopes go out again
            // as they are (the peer still holds their windows) and are re-sealed with public
            // keys if they draw no acknowledgement (`reseal_unanswered_symmetric`).
            self.send_resume(rng, now, conversation);
        }
        self.mark_changed();
    }

    /// Sends one resume frame to the peer of `conversation` (reliably: it is retransmitted
    /// until acknowledged, and sent again at our next activity if it was given up), naming
    /// the peer's texts we hold. Replaces a resume frame still waiting.
    pub(crate) fn send_resume<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        now: Timestamp,
        conversation: ConversationId,
    ) {
        self.cancel_sent(conversation, |s| s.kind == SentKind::Resume);
        let Some(conv) = self.conversations.get_mut(&conversation) else {
            return;
        };
        if !conv.is_open() || conv.record.current().is_none() {
            return;
        }
        conv.resume_unconfirmed = true;
        let held: Vec<FrameId> = conv.recent_received.iter().copied().collect();
        let Ok(frame) = conv.policy.resume(&held, MessageId::random(rng), now) else {
            return;
        };
        let message = frame.id();
        let content = frame.into_bytes();
        let Some(sealed) = self.encrypt_and_seal(rng, now, conversation, &content) else {
            return;
        };
        let carries_token = sealed.carries_token;
        if let Ok(frame_id) = self.delivery.send(rng, now, sealed.to, sealed.envelope) {
            self.note_sealed(
                conversation,
                frame_id,
                sealed.started,
                sealed.symmetric_epoch,
            );
            self.sent.insert(
                frame_id,
                SentRecord {
                    conversation,
                    message,
                    kind: SentKind::Resume,
                    content,
                    carries_token,
                },
            );
        }
        self.mark_changed();
    }

    /// A resume frame from the peer: report the texts it acknowledged and no longer holds.
    pub(crate) fn handle_resume(&mut self, conversation: ConversationId, received: &[FrameId]) {
        let Some(conv) = self.conversations.get_mut(&conversation) else {
            return;
        };
        let possibly_lost = conv.lost_after_resume(received);
        if !possibly_lost.is_empty() {
            #[cfg(feature = "tracing")]
            tracing::info!("confide: the peer restored an older state");
            self.events.push_back(Event::PeerRestored {
                conversation,
                possibly_lost,
            });
        }
        self.mark_changed();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reset_request_round_trips_and_parses_strictly() {
        let r = ResetRequest {
            session: [9; 32],
            bundle: vec![1, 2, 3],
        };
        let bytes = r.to_bytes().unwrap();
        assert_eq!(bytes.len(), 2 + 32 + 2 + 3);
        assert_eq!(ResetRequest::from_bytes(&bytes).unwrap(), r);
        let mut long = bytes.clone();
        long.push(0);
        assert!(ResetRequest::from_bytes(&long).is_err(), "trailing byte");
        assert!(ResetRequest::from_bytes(&bytes[..bytes.len() - 1]).is_err());
        let mut v = bytes.clone();
        v[0] = 2;
        assert!(ResetRequest::from_bytes(&v).is_err(), "unknown version");
        assert!(matches!(classify(&bytes), Ok(Payload::ResetRequest(_))));
    }
}
