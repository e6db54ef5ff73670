//! The receive pipeline, as named stages that each return early with one [`DropReason`]:
//!
//! transport frame -> dedup -> sealed open (a public-key envelope: certificate chain, with
//! grace; a symmetric one: staged in the tag window of the conversation its tag names) ->
//! payload kind (reset request or session message) -> conversation (existing, or new from a
//! prekey message) -> staged session decrypt (a symmetric envelope's index is recorded only
//! now) -> policy (a public-key envelope's epoch window is installed only now) -> events and
//! an acknowledgement.

use confide_crypto::{CryptoRng, Timestamp, identity::IdentityPublicKey, kdf::sha256};
use confide_policy::{ConversationPolicy, Incoming, Side, UserContent};
use confide_sealed::{
    CertificateError, DeliveryToken, EpochSeed, OpenError, Role, SYMMETRIC_ENVELOPE_KIND,
    StagedEnvelope, SymmetricOpenError, TagWindow,
};
use confide_session::{
    DecryptError, Decrypted, IdentityChangePolicy, SessionMessage, SessionRecord,
};
use confide_transport::{Address, Frame, FrameId, IncomingStatus, PayloadDigest};

use super::bare_ack::AcknowledgementPayload;
use super::conversation::{Conversation, SentKind};
use super::reset::{self, Payload};
use super::{DropReason, Endpoint};
use crate::consts::{
    DEDUP_DIGEST_HEAD, DEDUP_DIGEST_TAIL, MAX_CONVERSATIONS, SENDER_CERTIFICATE_GRACE,
};
use crate::event::{ConversationId, Event};

/// A refusal: which conversation it concerns (if one can be named) and why.
pub(crate) type Refusal = (Option<ConversationId>, DropReason);

/// An envelope that opened: the certified sender and the payload.
pub(crate) struct Authenticated {
    pub(crate) frame_id: FrameId,
    pub(crate) peer_address: Address,
    pub(crate) identity: IdentityPublicKey,
    pub(crate) role: Role,
    pub(crate) payload: Vec<u8>,
    /// The sealed envelope's dedup digest (what the dedup window compares).
    pub(crate) digest: PayloadDigest,
    /// The sender's delivery token, if its payload carried one (stored only once the
    /// session message inside authenticated).
    pub(crate) token: Option<DeliveryToken>,
    /// The frame id was received before with another payload: this is a re-sealed or
    /// re-encrypted copy from the same sender, acknowledged again but never shown again.
    pub(crate) seen_before: bool,
    /// Which kind of envelope it came in, with what that kind changes once the payload
    /// authenticated in the session.
    pub(crate) sealing: Sealing,
    /// Acknowledgements that rode in front of the session message: applied only after the
    /// session message authenticated and its content was handled.
    pub(crate) acks: Option<AcknowledgementPayload>,
}

/// How an envelope was sealed, and its effect on the symmetric state, applied only after the
/// session accepted the payload (`docs/sealed-sender.md` §9.4, §9.5).
pub(crate) enum Sealing {
    /// A public-key envelope: the epoch it starts, and until when (the sender certificate's
    /// expiry plus [`SENDER_CERTIFICATE_GRACE`]) under which server key its window accepts.
    PublicKey {
        seed: EpochSeed,
        accept_until: Timestamp,
        server_key_id: u32,
    },
    /// A symmetric envelope of a conversation's epoch, opened but not yet recorded.
    Symmetric {
        conversation: ConversationId,
        staged: StagedEnvelope,
    },
}

/// A frame that passed the dedup stage.
struct Candidate {
    frame_id: FrameId,
    payload: Vec<u8>,
    digest: PayloadDigest,
    /// For an altered copy of a frame seen before: its recorded sender.
    seen_from: Option<Address>,
}

impl Endpoint {
    pub(crate) fn receive<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        bytes: &[u8],
        now: Timestamp,
    ) {
        self.receive_frame(rng, bytes, now, IdentityChangePolicy::Refuse);
    }

    pub(crate) fn receive_frame<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        bytes: &[u8],
        now: Timestamp,
        identity_change: IdentityChangePolicy,
    ) {
        if let Err((conversation, reason)) = self.process_frame(rng, bytes, now, identity_change) {
            self.drop_frame(conversation, reason);
        }
    }

    fn process_frame<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        bytes: &[u8],
        now: Timestamp,
        identity_change: IdentityChangePolicy,
    ) -> Result<(), Refusal> {
        let Some(candidate) = self.handle_dedup(rng, bytes, now)? else {
            return Ok(());
        };
        let seen_from = candidate.seen_from.clone();
        let opened = if candidate.payload.first() == Some(&SYMMETRIC_ENVELOPE_KIND) {
            self.open_symmetric(candidate, now)
        } else {
            self.open_envelope(candidate, now)
        };
        let auth = match opened {
            Ok(auth) => auth,
            // Anything under a known id that does not open is an injection: not answered.
            Err(_) if seen_from.is_some() => return Err((None, DropReason::AlteredDuplicate)),
            Err(refusal) => return Err(refusal),
        };
        if let Some(from) = seen_from
            && from != auth.peer_address
        {
            return Err((None, DropReason::AlteredDuplicate));
        }
        match reset::classify(&auth.payload) {
            Err(_) => Err((
                self.conversation_with(&auth.peer_address),
                DropReason::MalformedPayload,
            )),
            // A reset request must be readable without a session: its sender seals it with
            // public keys, never in a symmetric envelope.
            Ok(Payload::ResetRequest(_)) if matches!(auth.sealing, Sealing::Symmetric { .. }) => {
                Err((
                    self.conversation_with(&auth.peer_address),
                    DropReason::EnvelopeRefused,
                ))
            }
            Ok(Payload::ResetRequest(_)) if auth.seen_before => Err((
                self.conversation_with(&auth.peer_address),
                DropReason::AlteredDuplicate,
            )),
            Ok(Payload::ResetRequest(request)) => {
                self.handle_reset_request(rng, now, &auth, &request)
            }
            Ok(Payload::Acknowledgement(acks)) => self.handle_bare_acks(now, &auth, &acks),
            Ok(Payload::Session {
                message,
                token,
                acks,
            }) => {
                let auth = Authenticated {
                    token,
                    acks,
                    ..auth
                };
                self.handle_session_message(rng, now, bytes, auth, &message, identity_change)
            }
        }
    }

    /// Stage 1: a valid data frame, not seen within the dedup window. A byte-identical copy
    /// of a frame seen before is acknowledged again (its acknowledgement may have been lost),
    /// within the rate limits of `docs/transport.md` §3.4, and goes no further. A different
    /// payload under a seen id goes on only to be authenticated as the recorded sender.
    fn handle_dedup<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        bytes: &[u8],
        now: Timestamp,
    ) -> Result<Option<Candidate>, Refusal> {
        let Ok(Frame::Data { id, payload }) = Frame::from_bytes(bytes) else {
            return Err((None, DropReason::MalformedFrame));
        };
        if self.control_seen.contains(&id) {
            // A copy of an acknowledgement or resume frame: nothing to answer.
            self.stats.record_duplicate();
            return Ok(None);
        }
        let digest = dedup_digest(&payload);
        let seen_from = match self.delivery.check_incoming(id, &digest, now) {
            IncomingStatus::Duplicate { from } => {
                self.stats.record_duplicate();
                if let Some(conversation) = self.conversation_with(&from) {
                    self.reacknowledge(rng, now, conversation, id);
                }
                return Ok(None);
            }
            IncomingStatus::Altered { from } => Some(from),
            _ => None,
        };
        Ok(Some(Candidate {
            frame_id: id,
            payload,
            digest,
            seen_from,
        }))
    }

    /// Acknowledges a frame received before again, if the transport's re-acknowledgement
    /// limits allow; otherwise only counts it (a replay is not worth a persist).
    fn reacknowledge<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        now: Timestamp,
        conversation: ConversationId,
        frame_id: FrameId,
    ) {
        if self.delivery.grant_reacknowledgement(frame_id, now) {
            // Our acknowledgement did not arrive; if it was symmetric, the peer may have
            // dropped its epoch: this one goes with public keys, which always open.
            self.public_key_acks.insert(conversation);
            self.acknowledge(rng, now, conversation, frame_id);
        } else {
            self.stats.record_unanswered_duplicate();
        }
    }

    /// Stage 2: the sealed envelope opens for us and its certificate chain is valid at
    /// `now` (a certificate expired less than [`SENDER_CERTIFICATE_GRACE`] ago is accepted).
    fn open_envelope(
        &mut self,
        candidate: Candidate,
        now: Timestamp,
    ) -> Result<Authenticated, Refusal> {
        let Candidate {
            frame_id,
            payload,
            digest,
            seen_from,
        } = candidate;
        let opened = confide_sealed::open_with_grace(
            self.store.identity(),
            &self.roots,
            now,
            SENDER_CERTIFICATE_GRACE,
            &payload,
        )
        .map_err(|e| {
            let reason = match e {
                OpenError::Certificate(
                    CertificateError::SenderExpired | CertificateError::ServerExpired,
                ) => DropReason::CertificateExpired,
                _ => DropReason::EnvelopeRefused,
            };
            (None, reason)
        })?;
        let sender = opened.sender;
        let peer_address = Address::new(sender.address().as_bytes())
            .map_err(|_| (None, DropReason::EnvelopeRefused))?;
        Ok(Authenticated {
            frame_id,
            peer_address,
            identity: *sender.identity(),
            role: sender.role(),
            payload: opened.payload,
            digest,
            token: None,
            seen_before: seen_from.is_some(),
            acks: None,
            sealing: Sealing::PublicKey {
                seed: opened.epoch_seed,
                accept_until: sender.expires_at().saturating_add(SENDER_CERTIFICATE_GRACE),
                server_key_id: sender.server_key_id(),
            },
        })
    }

    /// Stage 2 for a symmetric envelope (first byte `0x02`): its tag names the conversation,
    /// whose window opens it without recording anything (`docs/sealed-sender.md` §9.4). The
    /// sender is the conversation's peer as stored: the epoch was started by a public-key
    /// envelope whose certificate named it, and its window ends with that certificate.
    fn open_symmetric(
        &mut self,
        candidate: Candidate,
        now: Timestamp,
    ) -> Result<Authenticated, Refusal> {
        let Candidate {
            frame_id,
            payload,
            digest,
            seen_from,
        } = candidate;
        let (conversation, opened, staged) = self
            .tag_directory
            .open_staged(now, &self.roots, &payload)
            .map_err(|e| {
                let reason = match e {
                    SymmetricOpenError::EpochExpired => DropReason::CertificateExpired,
                    _ => DropReason::EnvelopeRefused,
                };
                (None, reason)
            })?;
        let conv = self
            .conversations
            .get(&conversation)
            .filter(|c| c.is_open())
            .ok_or((None, DropReason::EnvelopeRefused))?;
        let role = conv
            .peer_role
            .ok_or((Some(conversation), DropReason::EnvelopeRefused))?;
        Ok(Authenticated {
            frame_id,
            peer_address: conv.peer_address.clone(),
            identity: conv.peer_identity,
            role,
            payload: opened.to_vec(),
            digest,
            token: None,
            seen_before: seen_from.is_some(),
            acks: None,
            sealing: Sealing::Symmetric {
                conversation,
                staged,
            },
        })
    }

    /// The session accepted the payload of a symmetric envelope: its window records the
    /// index now, together with the session's own change (were it not recorded, a replay
    /// would reach the session, which would refuse it as a duplicate and take the peer for
    /// out of sync).
    fn commit_symmetric(&mut self, auth: &Authenticated) {
        if let Sealing::Symmetric {
            conversation,
            staged,
        } = &auth.sealing
            && self.tag_directory.commit(conversation, staged)
        {
            // The conversation's record holds its windows.
            let _ = self.conversations.get_mut(conversation);
        }
    }

    /// The session accepted the payload of a public-key envelope in a frame we acknowledge:
    /// install the window of the epoch it starts, keyed with the conversation's current
    /// envelope secret (`docs/sealed-sender.md` §9.5). Acknowledgement frames install none:
    /// they are never acknowledged, so their epochs never become current at the sender.
    fn install_epoch(&mut self, conversation: ConversationId, auth: &Authenticated) {
        let Sealing::PublicKey {
            seed,
            accept_until,
            server_key_id,
        } = &auth.sealing
        else {
            return;
        };
        let Some(secret) = self
            .conversations
            .get(&conversation)
            .and_then(|c| c.record.current())
            .and_then(|s| s.envelope_secret())
        else {
            return;
        };
        let Ok(window) = TagWindow::new(seed, secret, *accept_until, *server_key_id) else {
            return;
        };
        if self.tag_directory.install(conversation, window) {
            let _ = self.conversations.get_mut(&conversation);
        }
    }

    /// Stage 3: a session message, to its conversation (or a new one).
    fn handle_session_message<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        now: Timestamp,
        bytes: &[u8],
        auth: Authenticated,
        message: &SessionMessage,
        identity_change: IdentityChangePolicy,
    ) -> Result<(), Refusal> {
        let existing = self.conversation_with(&auth.peer_address);
        // A prekey message must come from the identity the certificate names.
        let prekey_from = match message {
            SessionMessage::PreKey(p) => Some(*p.initiator_identity()),
            _ => None,
        };
        if prekey_from.is_some_and(|i| i != auth.identity) {
            return Err((existing, DropReason::IdentityMismatch));
        }
        let (conversation, decrypted) = match existing {
            Some(conversation) => {
                let Some(decrypted) = self.decrypt_in_conversation(
                    rng,
                    now,
                    conversation,
                    bytes,
                    &auth,
                    message,
                    identity_change,
                )?
                else {
                    // Held for the app's decision on an identity change.
                    return Ok(());
                };
                (conversation, decrypted)
            }
            None if auth.seen_before => return Err((None, DropReason::AlteredDuplicate)),
            None if prekey_from.is_some() => {
                self.accept_new_conversation(rng, now, &auth, message)?
            }
            None => {
                let closed = self
                    .conversations
                    .values()
                    .any(|c| !c.is_open() && c.peer_address == auth.peer_address);
                let reason = if closed {
                    DropReason::ClosedConversation
                } else {
                    // A certified peer writes in a session we do not have: we lost the
                    // conversation (an older backup). Ask it to start again.
                    self.request_reset_unknown(rng, now, &auth);
                    DropReason::NoConversation
                };
                return Err((None, reason));
            }
        };
        // The session state advanced: from here on the state must be persisted.
        self.commit_symmetric(&auth);
        self.mark_changed();
        if let Some(token) = auth.token.clone()
            && let Some(conv) = self.conversations.get_mut(&conversation)
        {
            conv.peer_token = Some(token);
        }
        if decrypted.remote_identity != auth.identity {
            // Only possible through an archived session of an earlier identity: refuse.
            return Err((Some(conversation), DropReason::ContentRefused));
        }
        self.handle_content(rng, now, conversation, &auth, &decrypted)?;
        // Acknowledgements that rode on the message: the session authenticated them.
        if let Some(acks) = &auth.acks {
            for id in acks.ids() {
                self.on_ack(now, conversation, &auth.peer_address, *id);
            }
        }
        Ok(())
    }

    /// Decrypts in an open conversation. `Ok(None)`: the frame was held for an identity
    /// decision. A peer whose state we cannot follow is asked to reset the session.
    #[allow(clippy::too_many_arguments)]
    fn decrypt_in_conversation<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        now: Timestamp,
        conversation: ConversationId,
        bytes: &[u8],
        auth: &Authenticated,
        message: &SessionMessage,
        identity_change: IdentityChangePolicy,
    ) -> Result<Option<Decrypted>, Refusal> {
        let Some(conv) = self.conversations.get_mut(&conversation) else {
            return Err((None, DropReason::NoConversation));
        };
        if conv.record.current().is_none() {
            return Err((Some(conversation), DropReason::ClosedConversation));
        }
        let changed_identity = conv.peer_identity != auth.identity;
        if changed_identity && identity_change == IdentityChangePolicy::Refuse {
            // Never accepted silently: hold the frame for the app's decision.
            conv.held_identity_change = Some((bytes.to_vec(), auth.identity));
            self.events
                .push_back(Event::IdentityChanged { conversation });
            self.mark_changed();
            return Ok(None);
        }
        let had_session = conv.record.current().is_some();
        // The message `classify` parsed from `auth.payload`: not parsed a second time.
        match conv
            .record
            .decrypt_message(&mut self.store, message, now, identity_change)
        {
            Ok(decrypted) => {
                if changed_identity {
                    conv.peer_identity = auth.identity;
                }
                if decrypted.new_session && had_session {
                    // The peer replaced the session (it restored a backup, or answered our
                    // reset request): tell the app what the peer may have lost.
                    conv.reset_requested_at = None;
                    conv.token_confirmed = false;
                    #[cfg(feature = "tracing")]
                    tracing::info!("confide: the peer started a new session (reset)");
                    self.events.push_back(Event::SessionReset { conversation });
                    // Our symmetric epochs belonged to the old session.
                    self.end_sender_epochs(conversation);
                    // Our frames still waiting were encrypted in the old session, which the
                    // peer may not follow: send them again in the new one, and tell the peer
                    // what we hold.
                    let _ = self.reencrypt_waiting(rng, now, conversation);
                    self.send_resume(rng, now, conversation);
                }
                Ok(Some(decrypted))
            }
            Err(DecryptError::Duplicate) if auth.seen_before => {
                // Our session decrypted this message before: the sender re-sealed it (a
                // renewed certificate) under the same frame id. Acknowledge it again.
                let _ = self
                    .delivery
                    .update_incoming_digest(auth.frame_id, auth.digest);
                self.reacknowledge(rng, now, conversation, auth.frame_id);
                Ok(None)
            }
            Err(DecryptError::Authentication)
                if matches!(auth.sealing, Sealing::Symmetric { .. }) =>
            {
                // A symmetric envelope binds the session ciphertext it carries in clear only
                // through its tag (`docs/sealed-sender.md` §9.3): a relay can change the rest
                // and the envelope still opens. So a session that does not authenticate here
                // is no proof that the states diverged, and no reset is asked for (the relay
                // must not be able to make us reset). Nothing is recorded: the envelope's tag
                // stays unused for the genuine copy, and a sender whose frames go
                // unacknowledged seals them again with public keys (§9.5), where a real
                // divergence is found. Counted, with no event for the conversation: the relay
                // could repeat a changed copy as often as it likes (the tag stays unused), and
                // it must not be able to fill the app's conversation with drop notices either.
                Err((None, DropReason::SessionAuthentication))
            }
            Err(e) => {
                // Inside an envelope authenticated as the peer, in a frame we never accepted
                // (the dedup window and the control-frame list let it through), a message
                // our session cannot decrypt means the two states diverged: the peer
                // restored an older state, or we did. A reset gets both going again.
                let out_of_sync = matches!(
                    e,
                    DecryptError::PeerRolledBack
                        | DecryptError::StaleBranch
                        | DecryptError::Authentication
                        | DecryptError::Duplicate
                        | DecryptError::NoSession
                );
                if out_of_sync {
                    self.request_reset(rng, now, conversation);
                    return Err((Some(conversation), DropReason::PeerOutOfSync));
                }
                Err((Some(conversation), session_refusal(e)))
            }
        }
    }

    /// A prekey message from a peer we have no open conversation with: a new conversation.
    fn accept_new_conversation<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        now: Timestamp,
        auth: &Authenticated,
        message: &SessionMessage,
    ) -> Result<(ConversationId, Decrypted), Refusal> {
        if self.open_conversation_count() >= MAX_CONVERSATIONS {
            return Err((None, DropReason::TooManyConversations));
        }
        let mut record = SessionRecord::new();
        let decrypted = record
            .decrypt_message(&mut self.store, message, now, IdentityChangePolicy::Refuse)
            .map_err(|e| (None, session_refusal(e)))?;
        let conversation = self.insert_conversation(Conversation::new(
            auth.peer_address.clone(),
            auth.identity,
            Some(auth.role),
            record,
            ConversationPolicy::new(
                Side::Responder,
                self.config.org,
                self.config.initial_retention,
            ),
            None,
        ));
        self.events.push_back(Event::ConversationStarted {
            conversation,
            peer_role: auth.role,
        });
        self.maintain_prekeys(rng, now);
        Ok((conversation, decrypted))
    }

    /// Stage 4: the conversation policy, then events and the acknowledgement.
    fn handle_content<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        now: Timestamp,
        conversation: ConversationId,
        auth: &Authenticated,
        decrypted: &Decrypted,
    ) -> Result<(), Refusal> {
        let Some(conv) = self.conversations.get_mut(&conversation) else {
            return Err((None, DropReason::NoConversation));
        };
        conv.peer_role = Some(auth.role);
        let frame_id = auth.frame_id;
        if auth.seen_before {
            // The sender re-encrypted a frame we already handled (after a session reset):
            // the session advanced past it, the content is not shown again, and it is
            // acknowledged again. Its sender may have started an epoch with it.
            let _ = self.delivery.update_incoming_digest(frame_id, auth.digest);
            self.install_epoch(conversation, auth);
            self.reacknowledge(rng, now, conversation, frame_id);
            return Ok(());
        }
        // Keys of messages whose timer ran out go now, not only at the next timeout.
        if let Some(cutoff) = conv.policy.skipped_key_cutoff(now) {
            let _ = conv.record.prune_skipped_keys(cutoff);
        }
        // A referral is shown only if the party it names is certified: checked before the
        // policy takes the frame, so a refused referral changes nothing there.
        let referral = if confide_policy::ContentFrame::carries_referral(&decrypted.plaintext) {
            let peer_address = conv.peer_address.clone();
            let frame = confide_policy::ContentFrame::decode(&decrypted.plaintext)
                .map_err(|_| (Some(conversation), DropReason::ContentRefused))?;
            let confide_policy::Body::Referral(referral) = &frame.body else {
                return Err((Some(conversation), DropReason::ContentRefused));
            };
            match self.received_referral(now, auth.role, &peer_address, referral) {
                Ok(received) => Some(received),
                Err(reason) => {
                    self.events.push_back(Event::ReferralRefused {
                        conversation,
                        reason,
                    });
                    return Err((Some(conversation), DropReason::ContentRefused));
                }
            }
        } else {
            None
        };
        let Some(conv) = self.conversations.get_mut(&conversation) else {
            return Err((None, DropReason::NoConversation));
        };
        let incoming = conv
            .policy
            .handle_incoming(&decrypted.plaintext, now)
            .map_err(|_| (Some(conversation), DropReason::ContentRefused))?;
        match incoming {
            Incoming::DeliveryAcks { ids } => {
                // An authenticated end-to-end acknowledgement: never acknowledged.
                self.note_control_frame(frame_id);
                for id in ids {
                    self.on_ack(now, conversation, &auth.peer_address, id);
                }
            }

            Incoming::Closed(_erase) => {
                let _ = self.delivery.accept_incoming(
                    frame_id,
                    auth.peer_address.clone(),
                    auth.digest,
                    now,
                );
                conv.record.erase();
                // Nothing still waiting for this peer can be acknowledged now.
                self.cancel_sent(conversation, |_| true);
                self.forget_epochs(conversation);
            }
            other => {
                self.install_epoch(conversation, auth);
                let _ = self.delivery.accept_incoming(
                    frame_id,
                    auth.peer_address.clone(),
                    auth.digest,
                    now,
                );
                self.acknowledge(rng, now, conversation, frame_id);
                match other {
                    Incoming::Message(m) => {
                        let seq = self.conversations.get_mut(&conversation).map_or(0, |c| {
                            c.note_received(frame_id);
                            let seq = c.next_seq;
                            c.next_seq = c.next_seq.saturating_add(1);
                            seq
                        });
                        let (id, sender_role, expires_at, sent_at) =
                            (m.id, auth.role, m.deadline, m.claimed_send_time);
                        let event = match m.content {
                            UserContent::Text(text) => Event::Message {
                                conversation,
                                id,
                                sender_role,
                                text,
                                expires_at,
                                sent_at,
                                seq,
                            },
                            UserContent::Attachment(pointer) => Event::Attachment {
                                conversation,
                                id,
                                sender_role,
                                pointer,
                                expires_at,
                                sent_at,
                                seq,
                            },
                            UserContent::Referral(_) => match referral {
                                Some(referral) => Event::Referral {
                                    conversation,
                                    id,
                                    sender_role,
                                    referral,
                                    expires_at,
                                    sent_at,
                                    seq,
                                },
                                // Checked above: a referral frame always has one.
                                None => Event::ReferralRefused {
                                    conversation,
                                    reason: crate::ReferralError::Malformed,
                                },
                            },
                            _ => Event::ScreenshotTaken {
                                conversation,
                                id,
                                sender_role,
                                expires_at,
                                sent_at,
                                seq,
                            },
                        };
                        self.events.push_back(event);
                    }
                    Incoming::ReferralAnswer(answer) => {
                        self.events.push_back(Event::ReferralAnswered {
                            conversation,
                            referral: answer.referral,
                            accepted: answer.accepted,
                        });
                    }
                    Incoming::Code(step) => {
                        self.handle_code_step(rng, now, conversation, step);
                    }
                    Incoming::ReadReceipts { ids } => {
                        self.events.push_back(Event::Read { conversation, ids });
                    }
                    Incoming::Resume { received } => {
                        self.handle_resume(conversation, &received);
                    }
                    _ => {}
                }
            }
        }
        self.drain_policy_events(conversation);
        // A resume frame that was given up (the peer stayed offline past the relay's
        // retention) goes out again now that the peer is active.
        let resume_lost = self
            .conversations
            .get(&conversation)
            .is_some_and(|c| c.resume_unconfirmed && c.is_open())
            && !self
                .sent
                .values()
                .any(|s| s.conversation == conversation && s.kind == SentKind::Resume);
        if resume_lost {
            self.send_resume(rng, now, conversation);
        }
        Ok(())
    }

    /// An acknowledgement sealed outside the session (`bare_ack`). Only a symmetric envelope
    /// may carry one: its epoch, which only the peer and we can key, is what authenticates it
    /// as the peer's. Its tag is recorded as used (a replay finds it gone), the frame id is
    /// remembered like any acknowledgement's (a copy the network made is dropped early), and
    /// each id goes to the delivery machine. Nothing is acknowledged back.
    fn handle_bare_acks(
        &mut self,
        now: Timestamp,
        auth: &Authenticated,
        acks: &AcknowledgementPayload,
    ) -> Result<(), Refusal> {
        let Sealing::Symmetric { conversation, .. } = &auth.sealing else {
            // In a public-key envelope it would stand for the certified sender with no
            // session behind it: we never send one, so refuse it.
            return Err((
                self.conversation_with(&auth.peer_address),
                DropReason::MalformedPayload,
            ));
        };
        let conversation = *conversation;
        if auth.seen_before {
            // A recorded data frame's id cannot carry an acknowledgement.
            return Err((Some(conversation), DropReason::AlteredDuplicate));
        }
        self.commit_symmetric(auth);
        self.mark_changed();
        self.note_control_frame(auth.frame_id);
        for id in acks.ids() {
            self.on_ack(now, conversation, &auth.peer_address, *id);
        }
        Ok(())
    }

    fn note_control_frame(&mut self, frame_id: FrameId) {
        self.control_seen.insert(frame_id);
    }

    /// An authenticated acknowledgement of our frame `id` from `from`.
    fn on_ack(
        &mut self,
        now: Timestamp,
        conversation: ConversationId,
        from: &Address,
        frame_id: FrameId,
    ) {
        self.confirm_epoch(conversation, frame_id);
        // The peer holds our delivery token once it acknowledged a frame that carried it.
        if self
            .sent
            .get(&frame_id)
            .is_some_and(|s| s.conversation == conversation && s.carries_token)
            && let Some(conv) = self.conversations.get_mut(&conversation)
            && !conv.token_confirmed
        {
            conv.token_confirmed = true;
            self.mark_changed();
        }
        match self.delivery.on_ack(from, frame_id) {
            confide_transport::AckOutcome::UnknownId => {
                // Given up earlier? Then it was delivered after all: say so.
                if self
                    .given_up
                    .get(&frame_id)
                    .is_some_and(|g| g.conversation == conversation)
                    && let Some(g) = self.given_up.remove(&frame_id)
                {
                    self.events.push_back(Event::Delivered {
                        conversation,
                        id: g.message,
                    });
                    if let Some(conv) = self.conversations.get_mut(&conversation) {
                        conv.note_delivered(g.message, frame_id, now);
                    }
                    self.mark_changed();
                }
            }
            _ => self.collect_transmits(now),
        }
    }
}

/// The reason a session refusal is counted under.
fn session_refusal(e: DecryptError) -> DropReason {
    match e {
        DecryptError::Authentication => DropReason::SessionAuthentication,
        DecryptError::Duplicate | DecryptError::ReplayedInitialMessage => {
            DropReason::SessionDuplicate
        }
        _ => DropReason::SessionRefused,
    }
}

/// The dedup digest of a received envelope (`docs/endpoint.md`, "No acknowledgement
/// oracle"): SHA-256 of its length (`u32`, big-endian), its first [`DEDUP_DIGEST_HEAD`] bytes
/// and its last [`DEDUP_DIGEST_TAIL`]; of its length and all of it when it is no longer than
/// both together.
///
/// Two different seals differ in both parts (a fresh tag or ephemeral key at the front, a
/// fresh AEAD tag at the end), so a re-sealed copy is always `Altered` and opened. A copy
/// that keeps both parts and changes only the middle is treated as a byte-identical one:
/// acknowledged again within the re-acknowledgement limits and not opened, which is what the
/// relay gets by replaying the original. Hashing one SHA-256 block instead of the whole
/// envelope saved about a fifteenth of a 1 KiB round trip.
fn dedup_digest(payload: &[u8]) -> PayloadDigest {
    let len = u32::try_from(payload.len())
        .unwrap_or(u32::MAX)
        .to_be_bytes();
    // One rule for every length: the head is the first 32 bytes (or all of a shorter
    // envelope), the tail starts 16 bytes before the end but never inside the head, so an
    // envelope of at most 48 bytes is hashed whole.
    let head_end = payload.len().min(DEDUP_DIGEST_HEAD);
    let tail_start = payload
        .len()
        .saturating_sub(DEDUP_DIGEST_TAIL)
        .max(head_end);
    let head = payload.get(..head_end).unwrap_or_default();
    let tail = payload.get(tail_start..).unwrap_or_default();
    PayloadDigest::from_bytes(sha256(&[&len, head, tail]))
}

#[cfg(test)]
mod dedup_digest_tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::dedup_digest;
    use crate::consts::{DEDUP_DIGEST_HEAD, DEDUP_DIGEST_TAIL};
    use proptest::prelude::*;

    const COVERED: usize = DEDUP_DIGEST_HEAD + DEDUP_DIGEST_TAIL;

    proptest! {
        /// Any change at the front or the end of an envelope, or to its length, changes the
        /// digest; so does any change at all to an envelope no longer than both parts.
        #[test]
        fn a_change_in_the_covered_bytes_or_the_length_changes_the_digest(
            payload in proptest::collection::vec(any::<u8>(), 1..1200),
            at in any::<prop::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let i = at.index(payload.len());
            let mut changed = payload.clone();
            changed[i] ^= flip;
            let covered = payload.len() <= COVERED
                || i < DEDUP_DIGEST_HEAD
                || i >= payload.len() - DEDUP_DIGEST_TAIL;
            prop_assert_eq!(dedup_digest(&changed) != dedup_digest(&payload), covered);
            let mut longer = payload.clone();
            longer.push(0);
            prop_assert_ne!(dedup_digest(&longer), dedup_digest(&payload));
        }
    }

    #[test]
    fn the_boundaries_of_the_covered_parts() {
        let payload: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let digest = dedup_digest(&payload);
        for (i, counts) in [
            (DEDUP_DIGEST_HEAD - 1, true),
            (DEDUP_DIGEST_HEAD, false),
            (payload.len() - DEDUP_DIGEST_TAIL - 1, false),
            (payload.len() - DEDUP_DIGEST_TAIL, true),
        ] {
            let mut changed = payload.clone();
            changed[i] ^= 1;
            assert_eq!(dedup_digest(&changed) != digest, counts, "byte {i}");
        }
        // At exactly both parts' length every byte counts; one more, and the middle byte
        // does not.
        let short = vec![7u8; COVERED];
        let mut changed = short.clone();
        changed[DEDUP_DIGEST_HEAD] ^= 1;
        assert_ne!(dedup_digest(&changed), dedup_digest(&short));
        let long = vec![7u8; COVERED + 1];
        let mut changed = long.clone();
        changed[DEDUP_DIGEST_HEAD] ^= 1;
        assert_eq!(dedup_digest(&changed), dedup_digest(&long));
        assert_ne!(dedup_digest(&[]), dedup_digest(&[0]));
    }
}
