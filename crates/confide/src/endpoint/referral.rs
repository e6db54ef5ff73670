//! Referral and handover with consent (`docs/endpoint.md`, "Referrals").
//!
//! A counselor or a bot introduces the person it talks with to another certified party (a
//! crisis service, another counselor, a person after an intake bot): the referral carries that
//! party's certified bundle, end to end encrypted and authenticated by the session. The
//! recipient's endpoint validates the bundle's certificate before the app sees anything, and
//! shows the referral with the party's certified role. The recipient accepts (a new
//! conversation starts from the bundle, already verified by the referrer's word, with a
//! summary of the recipient's choosing or nothing) or declines; the referrer learns only which.

use confide_crypto::{CryptoRng, Timestamp};
use confide_policy::{MessageId, MessageText, Referral, ReferralAnswer, Urgency, UserContent};
use confide_sealed::{CertificateError, Role};
use confide_session::ExpectedIdentity;
use confide_transport::Address;
use core::fmt;
use thiserror::Error;

use super::code::Verification;
use super::first_contact::{CertifiedBundle, CertifiedBundleError};
use super::{Endpoint, StartedConversation};
use crate::consts::SENDER_CERTIFICATE_GRACE;
use crate::error::{CommandError, StartError};
use crate::event::ConversationId;

/// Why a referral's party was refused: the referral is not sent, or (received) not shown.
/// Nothing changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ReferralError {
    /// Not a certified bundle of a version we know: fetch the party's bundle again.
    #[error("malformed certified bundle")]
    Malformed,
    /// The party's certificate does not validate against our trust roots now (unknown or
    /// revoked server key, bad signature, expired): the party must renew and publish again.
    #[error("the party's certificate is refused: {0}")]
    Certificate(CertificateError),
    /// The bundle's signatures do not verify, or it names another identity than its
    /// certificate.
    #[error("the party's prekey bundle is refused")]
    Bundle,
    /// The party is certified as a client (or a role this build does not know): only
    /// counselors and bots are referred to.
    #[error("the party is not a counselor or a bot")]
    NotReferrable,
    /// The party is the person being referred, or us.
    #[error("a referral to the referred person or to ourselves")]
    SelfReferral,
    /// The sender of a received referral is not certified as a counselor or a bot.
    #[error("the referrer is not a counselor or a bot")]
    ReferrerNotAllowed,
}

/// A referral as it reaches the app ([`Event::Referral`](crate::Event::Referral)): the party's
/// certificate validated when it arrived. Keep it with the message; pass it to
/// [`Endpoint::accept_referral`] or answer with [`Endpoint::decline_referral`]. `Debug` shows
/// the role and urgency only.
#[derive(Clone, PartialEq, Eq)]
pub struct ReceivedReferral {
    /// How soon to act on it (an urgent referral is a crisis: surface it first).
    pub urgency: Urgency,
    /// The party's certified role.
    pub role: Role,
    /// The party's certified display name, if its certificate has one ("City Crisis Line").
    pub display_name: Option<String>,
    /// The referrer's note for the person referred.
    pub note: MessageText,
    /// The party's mailbox address (from its certificate).
    pub address: Address,
    /// The party's certified bundle, as it arrived.
    party: Vec<u8>,
}

impl fmt::Debug for ReceivedReferral {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            urgency,
            role,
            display_name: _,
            note: _,
            address: _,
            party: _,
        } = self;
        f.debug_struct("ReceivedReferral")
            .field("urgency", urgency)
            .field("role", role)
            .finish_non_exhaustive()
    }
}

/// What [`Endpoint::check_referral_party`] found.
pub(crate) struct ReferredParty {
    pub(crate) role: Role,
    pub(crate) display_name: Option<String>,
    pub(crate) address: Address,
}

impl Endpoint {
    /// Refers the person of `conversation` to the party whose certified bundle is `party`
    /// (from the directory): the party's certificate must validate now and certify a
    /// counselor or a bot, and we must be a counselor or a bot. The referral is a message like
    /// a text (it expires with the timer, `unsend` takes it back); its id comes back in
    /// [`Event::ReferralAnswered`](crate::Event::ReferralAnswered) with the answer.
    pub fn refer<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        now: Timestamp,
        conversation: ConversationId,
        party: &[u8],
        urgency: Urgency,
        note: &[u8],
    ) -> Result<MessageId, CommandError> {
        let own_role = self
            .certificate
            .validate_with_grace(&self.roots, now, SENDER_CERTIFICATE_GRACE)
            .map(|sender| sender.role());
        if !matches!(own_role, Ok(Role::Counselor | Role::Bot)) {
            return Err(CommandError::NotAllowedToRefer);
        }
        let peer = self
            .conversations
            .get(&conversation)
            .ok_or(CommandError::UnknownConversation)?
            .peer_address
            .clone();
        self.check_referral_party(now, &peer, party)
            .map_err(CommandError::Referral)?;
        let max = confide_policy::limits::MAX_REFERRAL_NOTE_LEN;
        if note.len() > max {
            return Err(CommandError::TextTooLong {
                len: note.len(),
                max,
            });
        }
        let content = UserContent::Referral(Referral {
            urgency,
            party: party.to_vec(),
            note: MessageText::new(note.to_vec()),
        });
        self.send_user_content(rng, now, conversation, &content)
    }

    /// Accepts a referral that arrived in `conversation` as message `referral_id`: starts a
    /// conversation with the party from the bundle the referral carried (marked verified by
    /// referral: the referrer, a certified counselor or bot, vouched for the party's identity),
    /// sends `summary` there as the first text if the user chose to share one, and tells the
    /// referrer "accepted", nothing more. The party's certificate is validated again now.
    pub fn accept_referral<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        now: Timestamp,
        conversation: ConversationId,
        referral_id: MessageId,
        referral: &ReceivedReferral,
        summary: Option<&[u8]>,
    ) -> Result<StartedConversation, StartError> {
        let referrer = self
            .conversations
            .get(&conversation)
            .map(|c| c.peer_address.clone())
            .ok_or(StartError::Referrer(CommandError::UnknownConversation))?;
        self.check_referral_party(now, &referrer, &referral.party)
            .map_err(StartError::Referral)?;
        if let Some(summary) = summary {
            let max = confide_policy::limits::MAX_TEXT_LEN;
            if summary.len() > max {
                return Err(StartError::Referrer(CommandError::TextTooLong {
                    len: summary.len(),
                    max,
                }));
            }
        }
        // The answer must be able to leave before anything starts.
        self.check_can_send(now, conversation)
            .map_err(StartError::Referrer)?;
        let bundle = CertifiedBundle::from_bytes(&referral.party)?;
        let identity = *bundle.certificate().identity();
        let started = self.start_conversation(
            rng,
            now,
            referral.address.clone(),
            &referral.party,
            ExpectedIdentity::Exactly(&identity),
        )?;
        if let Some(conv) = self.conversations.get_mut(&started.conversation) {
            conv.verified = Some(Verification::Referral);
        }
        // Both commands were checked above; a failure now (the outbox filled in between
        // cannot happen within one call) would leave the new conversation started and the
        // referrer unanswered, which the app may answer again.
        self.answer_referral(rng, now, conversation, referral_id, true)
            .map_err(StartError::Referrer)?;
        if let Some(summary) = summary {
            self.send(rng, now, started.conversation, summary)
                .map_err(StartError::Referrer)?;
        }
        Ok(started)
    }

    /// Declines a referral: the referrer learns "declined", nothing more.
    pub fn decline_referral<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        now: Timestamp,
        conversation: ConversationId,
        referral_id: MessageId,
    ) -> Result<(), CommandError> {
        self.answer_referral(rng, now, conversation, referral_id, false)
    }

    fn answer_referral<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        now: Timestamp,
        conversation: ConversationId,
        referral: MessageId,
        accepted: bool,
    ) -> Result<(), CommandError> {
        self.send_control(rng, now, conversation, |p, id| {
            p.answer_referral(ReferralAnswer { referral, accepted }, id, now)
        })
    }

    /// Validates a referred party's certified bundle without changing anything: it parses,
    /// its certificate validates now (with the usual grace) for a counselor or a bot, its
    /// bundle's signatures verify for the certificate's identity, and it is neither us nor
    /// `referred` (the person being referred).
    pub(crate) fn check_referral_party(
        &self,
        now: Timestamp,
        referred: &Address,
        party: &[u8],
    ) -> Result<ReferredParty, ReferralError> {
        let bundle = CertifiedBundle::from_bytes(party).map_err(|_| ReferralError::Malformed)?;
        let sender = bundle
            .certificate()
            .validate_with_grace(&self.roots, now, SENDER_CERTIFICATE_GRACE)
            .map_err(ReferralError::Certificate)?;
        let address =
            Address::new(sender.address().as_bytes()).map_err(|_| ReferralError::Malformed)?;
        if address == *referred || address == self.address {
            return Err(ReferralError::SelfReferral);
        }
        let identity = *bundle.certificate().identity();
        let verified = self
            .verify_certified(now, &address, party, ExpectedIdentity::Exactly(&identity))
            .map_err(|e| match e {
                StartError::Certified(CertifiedBundleError::Certificate(c)) => {
                    ReferralError::Certificate(c)
                }
                StartError::Certified(CertifiedBundleError::Malformed) => ReferralError::Malformed,
                _ => ReferralError::Bundle,
            })?;
        let role = verified.sender.role();
        if !matches!(role, Role::Counselor | Role::Bot) {
            return Err(ReferralError::NotReferrable);
        }
        Ok(ReferredParty {
            role,
            display_name: verified.sender.display_name().map(str::to_owned),
            address,
        })
    }

    /// A received referral, validated: the sender must be certified as a counselor or a bot.
    pub(crate) fn received_referral(
        &self,
        now: Timestamp,
        sender_role: Role,
        referred: &Address,
        referral: &Referral,
    ) -> Result<ReceivedReferral, ReferralError> {
        if !matches!(sender_role, Role::Counselor | Role::Bot) {
            return Err(ReferralError::ReferrerNotAllowed);
        }
        let party = self.check_referral_party(now, referred, &referral.party)?;
        Ok(ReceivedReferral {
            urgency: referral.urgency,
            role: party.role,
            display_name: party.display_name,
            note: referral.note.clone(),
            address: party.address,
            party: referral.party.clone(),
        })
    }
}
