//! What happens with time: retransmissions, message timers, key shredding, closed
//! conversations shrinking, prekey upkeep and the certificate warning.

use confide_crypto::{CryptoRng, Duration, Timestamp};
use confide_policy::limits::MAX_CLOCK_SKEW;

use super::Endpoint;
use super::conversation::Conversation;
use crate::consts::{
    CERTIFICATE_RENEWAL_WARNING, CLOSE_RETRANSMIT_PERIOD, MAX_CLOSED_CONVERSATIONS,
    MIN_ONE_TIME_KEM_PREKEYS, MIN_ONE_TIME_PREKEYS, ONE_TIME_KEM_PREKEY_TARGET,
    ONE_TIME_PREKEY_TARGET, SIGNED_PREKEY_MAX_AGE, SIGNED_PREKEY_ROTATE_AT_SEEN_BASE_KEYS,
};
use crate::event::{ConversationId, Event};

/// When the oldest skipped message key of `c` must be erased: once a message sent when it
/// was stored would have expired (the timer plus the clock-skew allowance). `None` without a
/// timer or without skipped keys (they then age out by count and ratchet steps).
pub(crate) fn shred_deadline(c: &Conversation) -> Option<Timestamp> {
    let retention = c.policy.effective_policy().duration()?;
    let oldest = c.record.oldest_skipped_key_at()?;
    Some(
        oldest
            .saturating_add(retention.saturating_add(MAX_CLOCK_SKEW))
            .saturating_add(Duration::from_millis(1)),
    )
}

/// Whether anything of `c` is due at `now`: a policy timer, key shredding or the end of the
/// close retransmission period.
fn conversation_due(c: &Conversation, now: Timestamp) -> bool {
    let due = |t: Option<Timestamp>| t.is_some_and(|t| t <= now);
    due(c.policy.poll_timeout())
        || due(shred_deadline(c))
        || due(c
            .close_sent
            .map(|(_, at)| at.saturating_add(CLOSE_RETRANSMIT_PERIOD)))
}

impl Endpoint {
    pub(crate) fn timeout<R: CryptoRng + ?Sized>(&mut self, rng: &mut R, now: Timestamp) {
        self.delivery.handle_timeout(now);
        self.supply_payloads(rng, now);
        self.reseal_unanswered_symmetric(rng, now);
        self.flush_due_acks(rng, now);
        // Only conversations with something due are touched (and so rewritten by an
        // incremental store): a timeout costs writes for what it changes, not for every
        // conversation.
        let due: Vec<ConversationId> = self
            .conversations
            .iter()
            .filter(|(_, c)| conversation_due(c, now))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let Some(conv) = self.conversations.get_mut(&id) else {
                continue;
            };
            conv.policy.handle_timeout(now);
            if let Some(cutoff) = conv.policy.skipped_key_cutoff(now) {
                let _ = conv.record.prune_skipped_keys(cutoff);
            }
            if let Some((frame_id, at)) = conv.close_sent
                && now >= at.saturating_add(CLOSE_RETRANSMIT_PERIOD)
            {
                let _ = self.delivery.cancel(frame_id);
                conv.close_sent = None;
            }
            self.drain_policy_events(id);
            // Something was due, so the conversation's record changed (a deadline passed:
            // an expiry, a retired unsend window, a shredded key, the end of the close
            // retransmissions), with or without an event. It is persisted now: left for the
            // next change set, a crash would forget it, and the next text would carry the
            // rewrite of every conversation that timed out meanwhile.
            self.mark_changed();
        }
        self.shrink_closed(now);
        self.bound_closed(now);
        self.check_certificate(now);
        self.maintain_prekeys(rng, now);
    }

    /// Beyond [`MAX_CLOSED_CONVERSATIONS`] closed conversations still draining, the oldest
    /// shrinks now: its messages expire early (erasing early is always allowed).
    pub(crate) fn bound_closed(&mut self, now: Timestamp) {
        loop {
            let closed: Vec<ConversationId> = self
                .conversations
                .iter()
                .filter(|(_, c)| !c.is_open())
                .map(|(id, _)| *id)
                .collect();
            let Some(oldest) = closed.first().copied() else {
                return;
            };
            if closed.len() <= MAX_CLOSED_CONVERSATIONS {
                return;
            }
            if let Some(conv) = self.conversations.get_mut(&oldest) {
                conv.policy.handle_timeout(Timestamp::from_millis(u64::MAX));
                if let Some((frame_id, _)) = conv.close_sent.take() {
                    let _ = self.delivery.cancel(frame_id);
                }
            }
            self.drain_policy_events(oldest);
            self.make_tombstone(oldest, now);
        }
    }

    fn check_certificate(&mut self, now: Timestamp) {
        let expires_at = self.certificate.expires_at();
        if !self.certificate_warned && now >= expires_at.saturating_sub(CERTIFICATE_RENEWAL_WARNING)
        {
            self.certificate_warned = true;
            #[cfg(feature = "tracing")]
            tracing::warn!("confide: sender certificate expires soon");
            self.events
                .push_back(Event::CertificateExpiring { expires_at });
        }
    }

    /// Tops up one-time prekeys and rotates the signed and last-resort prekeys when due.
    pub(crate) fn maintain_prekeys<R: CryptoRng + ?Sized>(&mut self, rng: &mut R, now: Timestamp) {
        let mut changed = false;
        let have = self.store.one_time_prekey_count();
        if have < MIN_ONE_TIME_PREKEYS {
            changed |= self
                .store
                .generate_one_time_prekeys(rng, ONE_TIME_PREKEY_TARGET.saturating_sub(have))
                > 0;
        }
        let have = self.store.one_time_kem_prekey_count();
        if have < MIN_ONE_TIME_KEM_PREKEYS {
            changed |= self.store.generate_one_time_kem_prekeys(
                rng,
                ONE_TIME_KEM_PREKEY_TARGET.saturating_sub(have),
            ) > 0;
        }
        let replay_list_half_full = self.store.published_signed_prekey_id().is_some_and(|id| {
            self.store.seen_base_key_count(id) >= SIGNED_PREKEY_ROTATE_AT_SEEN_BASE_KEYS
        });
        if replay_list_half_full
            || self
                .store
                .signed_prekey_created_at()
                .is_none_or(|t| now >= t.saturating_add(SIGNED_PREKEY_MAX_AGE))
        {
            let _ = self.store.rotate_signed_prekey(rng, now);
            changed = true;
        }
        if self
            .store
            .last_resort_kem_created_at()
            .is_none_or(|t| now >= t.saturating_add(SIGNED_PREKEY_MAX_AGE))
        {
            let _ = self.store.rotate_last_resort_kem_prekey(rng, now);
            changed = true;
        }
        if changed {
            self.events.push_back(Event::BundlesChanged);
            self.mark_changed();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use chacha20::ChaCha20Rng;
    use confide_crypto::{identity::IdentityKeyPair, signing::SigningKey};
    use confide_sealed::{
        Role, SenderCertificate, SenderClaims, ServerCertificate, ServerKey, TrustRoots,
    };
    use confide_session::{
        ExpectedIdentity, IdentityChangePolicy, Session, SessionRecord,
        consts::MAX_SEEN_BASE_KEYS_PER_SIGNED_PREKEY,
    };
    use confide_transport::Address;
    use rand_core::SeedableRng;

    use super::*;
    use crate::endpoint::EndpointConfig;

    const NOW: Timestamp = Timestamp::from_millis(1_750_000_000_000);

    fn counselor(rng: &mut ChaCha20Rng) -> Endpoint {
        let root = SigningKey::generate(rng);
        let mut roots = TrustRoots::new();
        roots.add_root(1, root.verifying_key()).unwrap();
        let signing = SigningKey::generate(rng);
        let cert = ServerCertificate::issue(
            1,
            &root,
            7,
            &signing.verifying_key(),
            NOW.saturating_add(Duration::from_days(365)),
        );
        let server = ServerKey::new(signing, cert).unwrap();
        let identity = IdentityKeyPair::generate(rng);
        let certificate = SenderCertificate::issue(
            &server,
            &SenderClaims {
                address: b"counselor",
                device_id: 1,
                identity: identity.public(),
                role: Role::Counselor,
                display_name: None,
            },
            NOW.saturating_add(Duration::from_days(300)),
        )
        .unwrap();
        Endpoint::new(
            rng,
            NOW,
            identity,
            Address::new(b"counselor").unwrap(),
            certificate,
            roots,
            EndpointConfig::default(),
        )
        .unwrap()
    }

    /// Initial messages without one-time keys fill the published signed prekey's replay list;
    /// the endpoint rotates at half of the session layer's bound, long before any such
    /// message could be refused as `ReplayListFull`, and the old signed prekey keeps the rest
    /// of its room for senders still holding its bundle.
    #[test]
    fn a_filling_replay_list_rotates_the_signed_prekey_early() {
        let mut rng = ChaCha20Rng::from_seed([3; 32]);
        let mut endpoint = counselor(&mut rng);
        let bundle = endpoint.store.last_resort_bundle().unwrap();
        let first_spk = bundle.signed_prekey_id();
        let client = IdentityKeyPair::generate(&mut rng);
        let verified = bundle
            .verify(ExpectedIdentity::TrustOnFirstUse, &client.public())
            .unwrap();
        // Rotation happens at half the bound, well before the list is full.
        const { assert!(SIGNED_PREKEY_ROTATE_AT_SEEN_BASE_KEYS < MAX_SEEN_BASE_KEYS_PER_SIGNED_PREKEY) };
        for i in 1..=SIGNED_PREKEY_ROTATE_AT_SEEN_BASE_KEYS {
            let m = SessionRecord::with_session(
                Session::initiate(&mut rng, &client, &verified).unwrap(),
            )
            .encrypt(&mut rng, b"hello")
            .unwrap();
            SessionRecord::new()
                .decrypt(&mut endpoint.store, &m, NOW, IdentityChangePolicy::Refuse)
                .unwrap();
            endpoint.events.clear();
            endpoint.maintain_prekeys(&mut rng, NOW);
            let published = endpoint.store.published_signed_prekey_id().unwrap();
            if i < SIGNED_PREKEY_ROTATE_AT_SEEN_BASE_KEYS {
                assert_eq!(published, first_spk, "rotated early after {i}");
            } else {
                assert_ne!(published, first_spk, "not rotated after {i}");
                assert!(
                    endpoint
                        .events
                        .iter()
                        .any(|e| matches!(e, Event::BundlesChanged))
                );
            }
        }
        // Senders holding the old bundle still get in: its list has room left.
        let m =
            SessionRecord::with_session(Session::initiate(&mut rng, &client, &verified).unwrap())
                .encrypt(&mut rng, b"late sender")
                .unwrap();
        assert!(
            SessionRecord::new()
                .decrypt(&mut endpoint.store, &m, NOW, IdentityChangePolicy::Refuse)
                .unwrap()
                .new_session
        );
    }
}
