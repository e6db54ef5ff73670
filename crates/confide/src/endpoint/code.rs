//! Verification by short code (`docs/endpoint.md`, "Verification with a short code").
//!
//! A counselor gives the client a one-time code in person or by phone; both enter it. Each
//! side sends a SPAKE2 message (the code is the password, the two identity keys as each side
//! sees them are the SPAKE2 identities), derives the shared key when the peer's message
//! arrives, and sends a key confirmation. A matching confirmation proves that the peer knew
//! the code and holds the identity key this side sees: the conversation is marked verified.
//! Someone in the middle (who substituted keys) learns nothing from the exchange that lets it
//! test codes offline: it gets one guess per attempt, and attempts are limited per
//! conversation ([`MAX_CODE_FAILURES`]).
//!
//! The exchange lives in memory only: an attempt in flight when the app stops is abandoned
//! (enter a new code). How a conversation was verified and how many attempts failed are
//! stored with the conversation.

use confide_crypto::kdf::{hkdf_sha256_multi, labels};
use confide_crypto::{CryptoRng, Timestamp};
use confide_policy::CodeStep;
use confide_policy::Side;
use confide_policy::limits::{CODE_CONFIRMATION_LEN, CODE_EXCHANGE_LEN};
use core::fmt;
use spake2::{Ed25519Group, Identity, Password, Spake2};
use subtle::ConstantTimeEq;
use thiserror::Error;
use zeroize::{Zeroize, Zeroizing};

use super::Endpoint;
use crate::consts::{MAX_CODE_FAILURES, SHORT_CODE_DIGITS};
use crate::error::CommandError;
use crate::event::{ConversationId, Event};

/// How a conversation's peer was verified, beyond its certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Verification {
    /// Both sides entered the same short code ([`Endpoint::enter_code`]).
    Code,
    /// The conversation started from a referral accepted in a conversation with a
    /// counselor or bot, which vouched for this peer's identity
    /// ([`Endpoint::accept_referral`]).
    Referral,
}

impl Verification {
    pub(crate) const fn to_byte(self) -> u8 {
        match self {
            Self::Code => 1,
            Self::Referral => 2,
        }
    }

    pub(crate) const fn from_byte(byte: u8) -> Option<Option<Self>> {
        match byte {
            0 => Some(None),
            1 => Some(Some(Self::Code)),
            2 => Some(Some(Self::Referral)),
            _ => None,
        }
    }
}

/// A one-time short code: [`SHORT_CODE_DIGITS`] decimal digits. Wiped on drop; compared in
/// constant time; `Debug` does not show it. `Display` groups it in threes ("482 913") for
/// reading aloud.
#[derive(Clone)]
pub struct ShortCode(Zeroizing<[u8; SHORT_CODE_DIGITS]>);

/// Why a typed code was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ShortCodeError {
    /// Something other than digits, spaces and dashes, or not exactly [`SHORT_CODE_DIGITS`]
    /// digits: ask the user to type the code again.
    #[error("a code is {SHORT_CODE_DIGITS} digits")]
    Malformed,
}

impl ShortCode {
    /// A fresh uniformly random code (for the counselor's app to show and read out).
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut digits = Zeroizing::new([0u8; SHORT_CODE_DIGITS]);
        let mut filled = 0;
        while filled < SHORT_CODE_DIGITS {
            let mut byte = confide_crypto::random_array::<1, R>(rng);
            // Rejection sampling: 250 = 25 * 10, so every digit is equally likely.
            let [b] = byte;
            if b < 250
                && let Some(slot) = digits.get_mut(filled)
            {
                *slot = b'0' + b % 10;
                filled += 1;
            }
            byte.zeroize();
        }
        Self(digits)
    }

    /// The code a user typed: digits, with any spaces or dashes between them ignored.
    pub fn parse(typed: &str) -> Result<Self, ShortCodeError> {
        let mut digits = Zeroizing::new([0u8; SHORT_CODE_DIGITS]);
        let mut count = 0usize;
        for c in typed.bytes() {
            match c {
                b'0'..=b'9' => {
                    let slot = digits.get_mut(count).ok_or(ShortCodeError::Malformed)?;
                    *slot = c;
                    count += 1;
                }
                b' ' | b'-' => {}
                _ => return Err(ShortCodeError::Malformed),
            }
        }
        if count != SHORT_CODE_DIGITS {
            return Err(ShortCodeError::Malformed);
        }
        Ok(Self(digits))
    }

    fn digits(&self) -> &[u8] {
        &self.0[..]
    }
}

impl PartialEq for ShortCode {
    fn eq(&self, other: &Self) -> bool {
        self.0[..].ct_eq(&other.0[..]).into()
    }
}

impl Eq for ShortCode {}

impl fmt::Debug for ShortCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ShortCode([REDACTED])")
    }
}

impl fmt::Display for ShortCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, digit) in self.0.iter().enumerate() {
            if i > 0 && i % 3 == 0 {
                f.write_str(" ")?;
            }
            write!(f, "{}", char::from(*digit))?;
        }
        Ok(())
    }
}

/// Our part of an attempt.
enum OwnPart {
    /// The user has not entered the code yet (the peer's messages wait).
    NotEntered,
    /// Our SPAKE2 message went out; waiting for the peer's.
    Started(Box<Spake2<Ed25519Group>>),
    /// Our confirmation went out; this is the one the peer must send.
    Finished(Zeroizing<[u8; CODE_CONFIRMATION_LEN]>),
}

/// One attempt at verifying a conversation by code (in memory only).
pub(crate) struct CodeAttempt {
    own: OwnPart,
    peer_exchange: Option<[u8; CODE_EXCHANGE_LEN]>,
    peer_confirmation: Option<Zeroizing<[u8; CODE_CONFIRMATION_LEN]>>,
}

impl CodeAttempt {
    fn new() -> Self {
        Self {
            own: OwnPart::NotEntered,
            peer_exchange: None,
            peer_confirmation: None,
        }
    }
}

/// What an attempt's next step is, decided before the endpoint is borrowed again.
enum Progress {
    Wait,
    SendConfirmation(Zeroizing<[u8; CODE_CONFIRMATION_LEN]>),
    Matched,
    Mismatched,
}

const fn side_byte(side: Side) -> u8 {
    match side {
        Side::Initiator => 0x01,
        Side::Responder => 0x02,
    }
}

/// One side's key confirmation: HKDF-SHA256 of the SPAKE2 key, info = label || side byte.
fn confirmation(key: &[u8], side: Side) -> Option<Zeroizing<[u8; CODE_CONFIRMATION_LEN]>> {
    let mut out = Zeroizing::new([0u8; CODE_CONFIRMATION_LEN]);
    hkdf_sha256_multi(
        None,
        key,
        &[labels::SHORT_CODE_CONFIRM, &[side_byte(side)]],
        &mut out[..],
    )
    .ok()?;
    Some(out)
}

impl Endpoint {
    /// How the conversation's peer was verified beyond its certificate, if it was.
    #[must_use]
    pub fn verification(&self, conversation: ConversationId) -> Option<Verification> {
        self.conversations.get(&conversation)?.verified
    }

    /// How many more failed code attempts the conversation allows (`None`: unknown
    /// conversation).
    #[must_use]
    pub fn code_attempts_left(&self, conversation: ConversationId) -> Option<u8> {
        let conv = self.conversations.get(&conversation)?;
        Some(MAX_CODE_FAILURES.saturating_sub(conv.code_failures))
    }

    /// The user entered the short code for this conversation: our part of the exchange goes
    /// to the peer. When the peer has entered the same code, [`Event::CodeVerified`] follows
    /// (on both sides); a different code, or someone in the middle, gives
    /// [`Event::CodeMismatch`] on both sides. Entering a code again restarts the attempt.
    pub fn enter_code<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        now: Timestamp,
        conversation: ConversationId,
        code: &ShortCode,
    ) -> Result<(), CommandError> {
        let conv = self
            .conversations
            .get(&conversation)
            .ok_or(CommandError::UnknownConversation)?;
        if conv.code_failures >= MAX_CODE_FAILURES {
            return Err(CommandError::CodeAttemptsExhausted {
                max: MAX_CODE_FAILURES,
            });
        }
        let local = conv.policy.local_side();
        let own_key = self.store.identity().public().to_bytes();
        let peer_key = conv.peer_identity.to_bytes();
        let (initiator_key, responder_key) = match local {
            Side::Initiator => (own_key, peer_key),
            Side::Responder => (peer_key, own_key),
        };
        let id_a = Identity::new(&[labels::SHORT_CODE_IDENTITY, &initiator_key[..]].concat());
        let id_b = Identity::new(&[labels::SHORT_CODE_IDENTITY, &responder_key[..]].concat());
        let password = Password::new(code.digits());
        let (spake, message) = match local {
            Side::Initiator => {
                Spake2::<Ed25519Group>::start_a_with_rng(&password, &id_a, &id_b, &mut *rng)
            }
            Side::Responder => {
                Spake2::<Ed25519Group>::start_b_with_rng(&password, &id_a, &id_b, &mut *rng)
            }
        };
        let message: [u8; CODE_EXCHANGE_LEN] =
            message.try_into().map_err(|_| CommandError::Policy)?;
        self.send_code_step(rng, now, conversation, CodeStep::Exchange(message))?;
        let attempt = self
            .code_attempts
            .entry(conversation)
            .or_insert_with(CodeAttempt::new);
        attempt.own = OwnPart::Started(Box::new(spake));
        // A confirmation the peer sent for an earlier exchange cannot match this one.
        attempt.peer_confirmation = None;
        self.progress_code(rng, now, conversation);
        Ok(())
    }

    /// A verification step from the peer (already authenticated by the session).
    pub(crate) fn handle_code_step<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        now: Timestamp,
        conversation: ConversationId,
        step: CodeStep,
    ) {
        let attempt = self
            .code_attempts
            .entry(conversation)
            .or_insert_with(CodeAttempt::new);
        match step {
            CodeStep::Exchange(message) => {
                if matches!(attempt.own, OwnPart::Finished(_)) {
                    // A second exchange within one attempt: the peer restarted. Ours must
                    // start again too (the user enters the code again), and a confirmation
                    // held for the old exchange is void.
                    attempt.own = OwnPart::NotEntered;
                    attempt.peer_confirmation = None;
                }
                // A confirmation held while our own exchange is out belongs to this exchange:
                // the network delivered the peer's two frames out of order. It stays.
                attempt.peer_exchange = Some(message);
            }
            CodeStep::Confirm(confirmation) => attempt.peer_confirmation = Some(confirmation),
            _ => {}
        }
        self.progress_code(rng, now, conversation);
    }

    /// Moves an attempt on as far as the messages at hand allow.
    fn progress_code<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        now: Timestamp,
        conversation: ConversationId,
    ) {
        loop {
            let Some(local) = self
                .conversations
                .get(&conversation)
                .map(|c| c.policy.local_side())
            else {
                self.code_attempts.remove(&conversation);
                return;
            };
            let Some(attempt) = self.code_attempts.get_mut(&conversation) else {
                return;
            };
            let progress = match (
                &attempt.own,
                &attempt.peer_exchange,
                &attempt.peer_confirmation,
            ) {
                (OwnPart::Started(_), Some(_), _) => {
                    let own = core::mem::replace(&mut attempt.own, OwnPart::NotEntered);
                    let (OwnPart::Started(spake), Some(peer)) = (own, attempt.peer_exchange.take())
                    else {
                        return;
                    };
                    match spake.finish(&peer) {
                        Ok(mut key) => {
                            let ours = confirmation(&key, local);
                            let theirs = confirmation(&key, local.peer());
                            key.zeroize();
                            match (ours, theirs) {
                                (Some(ours), Some(theirs)) => {
                                    attempt.own = OwnPart::Finished(theirs);
                                    Progress::SendConfirmation(ours)
                                }
                                _ => Progress::Mismatched,
                            }
                        }
                        // Not a point, or the wrong side's message: someone other than the
                        // peer's app wrote it.
                        Err(_) => Progress::Mismatched,
                    }
                }
                (OwnPart::Finished(expected), _, Some(received)) => {
                    if bool::from(expected[..].ct_eq(&received[..])) {
                        Progress::Matched
                    } else {
                        Progress::Mismatched
                    }
                }
                _ => Progress::Wait,
            };
            match progress {
                Progress::Wait => return,
                Progress::SendConfirmation(ours) => {
                    if self
                        .send_code_step(rng, now, conversation, CodeStep::Confirm(ours))
                        .is_err()
                    {
                        // The conversation closed or cannot send: the attempt is void.
                        self.code_attempts.remove(&conversation);
                        return;
                    }
                }
                Progress::Matched => {
                    self.code_attempts.remove(&conversation);
                    if let Some(conv) = self.conversations.get_mut(&conversation) {
                        conv.verified = Some(Verification::Code);
                    }
                    self.mark_changed();
                    self.events.push_back(Event::CodeVerified { conversation });
                    return;
                }
                Progress::Mismatched => {
                    self.code_attempts.remove(&conversation);
                    let attempts_left = self.conversations.get_mut(&conversation).map_or(0, |c| {
                        c.code_failures = c.code_failures.saturating_add(1).min(MAX_CODE_FAILURES);
                        MAX_CODE_FAILURES.saturating_sub(c.code_failures)
                    });
                    self.mark_changed();
                    self.events.push_back(Event::CodeMismatch {
                        conversation,
                        attempts_left,
                    });
                    return;
                }
            }
        }
    }

    fn send_code_step<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        now: Timestamp,
        conversation: ConversationId,
        step: CodeStep,
    ) -> Result<(), CommandError> {
        self.send_control(rng, now, conversation, |p, id| p.code_step(step, id, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_parse_display_and_hide() {
        let code = ShortCode::parse("482-913").unwrap();
        assert_eq!(code.to_string(), "482 913");
        assert_eq!(ShortCode::parse(" 48 29 13 ").unwrap(), code);
        assert_ne!(ShortCode::parse("482914").unwrap(), code);
        assert!(!format!("{code:?}").contains("482"));
        for bad in ["48291", "4829133", "48a913", "", "482 91x"] {
            assert_eq!(
                ShortCode::parse(bad),
                Err(ShortCodeError::Malformed),
                "{bad}"
            );
        }
    }

    /// Draws the bytes it was given, in order (then zeros).
    struct ScriptedRng(std::collections::VecDeque<u8>);

    impl rand_core::TryRng for ScriptedRng {
        type Error = core::convert::Infallible;
        fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
            let mut b = [0u8; 4];
            self.try_fill_bytes(&mut b)?;
            Ok(u32::from_le_bytes(b))
        }
        fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
            let mut b = [0u8; 8];
            self.try_fill_bytes(&mut b)?;
            Ok(u64::from_le_bytes(b))
        }
        fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
            for d in dst {
                *d = self.0.pop_front().unwrap_or(0);
            }
            Ok(())
        }
    }

    impl rand_core::TryCryptoRng for ScriptedRng {}

    /// Rejection sampling, byte by byte: 250 and above are drawn again (250 = 25 * 10, so each
    /// digit is equally likely), everything below is its value mod 10.
    #[test]
    fn generation_rejects_bytes_from_250_and_takes_the_rest_mod_10() {
        let mut rng = ScriptedRng(
            [250u8, 255, 249, 0, 251, 10, 123, 7, 42, 99]
                .into_iter()
                .collect(),
        );
        let code = ShortCode::generate(&mut rng);
        assert_eq!(code.digits(), b"900372");
        assert_eq!(
            rng.0.as_slices().0,
            &[99u8][..],
            "six accepted, three rejected"
        );
    }

    #[test]
    fn generated_codes_are_digits_and_vary() {
        use rand_core::SeedableRng;
        let mut rng = chacha20::ChaCha20Rng::from_seed([7; 32]);
        let a = ShortCode::generate(&mut rng);
        let b = ShortCode::generate(&mut rng);
        assert!(a.digits().iter().all(u8::is_ascii_digit));
        assert_eq!(a.digits().len(), SHORT_CODE_DIGITS);
        assert_ne!(a, b);
    }
}
