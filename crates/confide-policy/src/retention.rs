//! Retention policies, organisation bounds and versioned timer settings.

use crate::limits::{MAX_RETENTION, MIN_RETENTION};
use confide_crypto::Duration;
use confide_crypto::codec::{DecodeError, Reader, Writer};
use core::cmp::Ordering;

pub use confide_wire::Side;

/// Reads a [`Side`] byte (`0x01` initiator, `0x02` responder).
pub(crate) fn read_side(r: &mut Reader<'_>, field: &'static str) -> Result<Side, DecodeError> {
    Side::from_byte(r.u8()?).ok_or(DecodeError::InvalidValue { field })
}

/// Rank used to break ties between equal proposals: the initiator ranks higher.
const fn tie_break_rank(side: Side) -> u8 {
    match side {
        Side::Initiator => 1,
        _ => 0,
    }
}

/// A timer length inside the absolute limits [`MIN_RETENTION`]..=[`MAX_RETENTION`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RetentionDuration(Duration);

impl RetentionDuration {
    /// The shortest allowed timer.
    pub const MIN: Self = Self(MIN_RETENTION);
    /// The longest allowed timer.
    pub const MAX: Self = Self(MAX_RETENTION);

    /// `duration` if it lies within the absolute limits, else `None`.
    #[must_use]
    pub const fn new(duration: Duration) -> Option<Self> {
        let ms = duration.as_millis();
        if ms < MIN_RETENTION.as_millis() || ms > MAX_RETENTION.as_millis() {
            None
        } else {
            Some(Self(duration))
        }
    }

    /// `duration` moved into the absolute limits.
    #[must_use]
    pub const fn clamped(duration: Duration) -> Self {
        let ms = duration.as_millis();
        if ms < MIN_RETENTION.as_millis() {
            Self(MIN_RETENTION)
        } else if ms > MAX_RETENTION.as_millis() {
            Self(MAX_RETENTION)
        } else {
            Self(duration)
        }
    }

    /// The timer length.
    #[must_use]
    pub const fn get(self) -> Duration {
        self.0
    }
}

/// When a message's timer starts running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StartRule {
    /// From the moment the message was sent (receiver: see the skew rule in `docs/policy.md`).
    AfterSend,
    /// From the moment the recipient read it (sender's copy: when the read receipt arrives).
    AfterRead,
}

/// How long messages of a conversation live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RetentionPolicy {
    /// Messages do not disappear (unless the organisation bound says otherwise).
    Off,
    /// Messages disappear `after` the start given by `start`.
    Expire {
        /// The timer length.
        after: RetentionDuration,
        /// When the timer starts.
        start: StartRule,
    },
}

impl RetentionPolicy {
    /// A timer of `after` (moved into the absolute limits) starting at send.
    #[must_use]
    pub const fn after_send(after: Duration) -> Self {
        Self::Expire {
            after: RetentionDuration::clamped(after),
            start: StartRule::AfterSend,
        }
    }

    /// A timer of `after` (moved into the absolute limits) starting at read.
    #[must_use]
    pub const fn after_read(after: Duration) -> Self {
        Self::Expire {
            after: RetentionDuration::clamped(after),
            start: StartRule::AfterRead,
        }
    }

    /// The timer length, `None` for [`RetentionPolicy::Off`].
    #[must_use]
    pub const fn duration(&self) -> Option<Duration> {
        match self {
            Self::Off => None,
            Self::Expire { after, .. } => Some(after.get()),
        }
    }

    /// Orders policies by strictness: `Greater` means `self` erases sooner.
    ///
    /// `Off` is the least strict; between timers the shorter is stricter; at equal length
    /// [`StartRule::AfterSend`] is stricter than [`StartRule::AfterRead`]. Two policies compare
    /// `Equal` only when they are equal, so this is a total order.
    #[must_use]
    pub fn strictness_cmp(&self, other: &Self) -> Ordering {
        self.strictness_key().cmp(&other.strictness_key())
    }

    fn strictness_key(&self) -> (u8, core::cmp::Reverse<u64>, u8) {
        match self {
            Self::Off => (0, core::cmp::Reverse(0), 0),
            Self::Expire { after, start } => (
                1,
                core::cmp::Reverse(after.get().as_millis()),
                match start {
                    StartRule::AfterRead => 0,
                    StartRule::AfterSend => 1,
                },
            ),
        }
    }

    /// Encoding: `0x01` Off; `0x02` + u64 ms after-send; `0x03` + u64 ms after-read.
    pub(crate) fn write(&self, w: &mut Writer) {
        match self {
            Self::Off => {
                w.u8(0x01);
            }
            Self::Expire { after, start } => {
                w.u8(match start {
                    StartRule::AfterSend => 0x02,
                    StartRule::AfterRead => 0x03,
                });
                w.u64(after.get().as_millis());
            }
        }
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let start = match r.u8()? {
            0x01 => return Ok(Self::Off),
            0x02 => StartRule::AfterSend,
            0x03 => StartRule::AfterRead,
            _ => {
                return Err(DecodeError::InvalidValue {
                    field: "retention policy kind",
                });
            }
        };
        let after = RetentionDuration::new(Duration::from_millis(r.u64()?)).ok_or(
            DecodeError::InvalidValue {
                field: "retention duration",
            },
        )?;
        Ok(Self::Expire { after, start })
    }
}

/// Bounds set by the organisation running the service; neither party can leave them.
///
/// `min` is the shortest timer allowed; `max`, when set, means every message disappears
/// within `max` of arriving (or being sent) whatever the parties chose: `Off` then means
/// `max` after send, and an after-read timer of an unread message still ends at `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OrgBounds {
    min: RetentionDuration,
    max: Option<RetentionDuration>,
}

impl OrgBounds {
    /// No organisation bound beyond the absolute limits.
    pub const UNRESTRICTED: Self = Self {
        min: RetentionDuration::MIN,
        max: None,
    };

    /// Bounds with a shortest timer `min` and an optional longest retention `max`.
    /// `None` if `max < min`.
    #[must_use]
    pub fn new(min: RetentionDuration, max: Option<RetentionDuration>) -> Option<Self> {
        match max {
            Some(max) if max < min => None,
            _ => Some(Self { min, max }),
        }
    }

    /// The shortest timer allowed.
    #[must_use]
    pub const fn min(&self) -> RetentionDuration {
        self.min
    }

    /// The longest retention allowed, if any.
    #[must_use]
    pub const fn max(&self) -> Option<RetentionDuration> {
        self.max
    }

    /// The policy actually enforced for `policy` under these bounds.
    ///
    /// `Off` becomes `max` after send when a `max` is set; a timer is moved into `min..=max`;
    /// the start rule is kept.
    #[must_use]
    pub fn clamp(&self, policy: RetentionPolicy) -> RetentionPolicy {
        match policy {
            RetentionPolicy::Off => match self.max {
                Some(max) => RetentionPolicy::Expire {
                    after: max,
                    start: StartRule::AfterSend,
                },
                None => RetentionPolicy::Off,
            },
            RetentionPolicy::Expire { after, start } => {
                let mut after = after.max(self.min);
                if let Some(max) = self.max {
                    after = after.min(max);
                }
                RetentionPolicy::Expire { after, start }
            }
        }
    }

    /// Encoding: u64 min ms, then `0x00`, or `0x01` + u64 max ms.
    pub(crate) fn write(&self, w: &mut Writer) {
        w.u64(self.min.get().as_millis());
        match self.max {
            None => {
                w.u8(0);
            }
            Some(max) => {
                w.u8(1).u64(max.get().as_millis());
            }
        }
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let bad = DecodeError::InvalidValue {
            field: "organisation bounds",
        };
        let min = RetentionDuration::new(Duration::from_millis(r.u64()?)).ok_or(bad)?;
        let max = if r.bool("organisation max flag")? {
            Some(RetentionDuration::new(Duration::from_millis(r.u64()?)).ok_or(bad)?)
        } else {
            None
        };
        Self::new(min, max).ok_or(bad)
    }
}

impl Default for OrgBounds {
    fn default() -> Self {
        Self::UNRESTRICTED
    }
}

/// A conversation's timer as agreed in-band: the policy, the version that set it and the
/// side that proposed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimerSetting {
    /// Lamport-style counter: a proposal carries one more than the proposer's current version.
    pub version: u64,
    /// Who proposed it. Version 0 (the setting a conversation starts with) names the initiator.
    pub proposer: Side,
    /// The policy as proposed (each side enforces it clamped by its [`OrgBounds`]).
    pub policy: RetentionPolicy,
}

impl TimerSetting {
    /// The setting every conversation starts with: version 0, proposed by the initiator.
    #[must_use]
    pub const fn initial(policy: RetentionPolicy) -> Self {
        Self {
            version: 0,
            proposer: Side::Initiator,
            policy,
        }
    }

    /// Which of two settings wins: higher version; at equal version the stricter policy; at
    /// equal policy the initiator's proposal. `Greater` means `self` wins. Both sides compute
    /// the same answer from the same two settings, so concurrent changes converge.
    #[must_use]
    pub fn precedence_cmp(&self, other: &Self) -> Ordering {
        self.version
            .cmp(&other.version)
            .then_with(|| self.policy.strictness_cmp(&other.policy))
            .then_with(|| tie_break_rank(self.proposer).cmp(&tie_break_rank(other.proposer)))
    }

    pub(crate) fn write(&self, w: &mut Writer) {
        w.u64(self.version).u8(self.proposer.to_byte());
        self.policy.write(w);
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let version = r.u64()?;
        let proposer = read_side(r, "timer proposer")?;
        let policy = RetentionPolicy::read(r)?;
        Ok(Self {
            version,
            proposer,
            policy,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn org_max_turns_off_into_max() {
        let max = RetentionDuration::new(Duration::from_days(30)).unwrap();
        let org = OrgBounds::new(RetentionDuration::MIN, Some(max)).unwrap();
        assert_eq!(
            org.clamp(RetentionPolicy::Off),
            RetentionPolicy::Expire {
                after: max,
                start: StartRule::AfterSend
            }
        );
        assert_eq!(
            org.clamp(RetentionPolicy::after_read(Duration::from_days(90))),
            RetentionPolicy::Expire {
                after: max,
                start: StartRule::AfterRead
            }
        );
    }

    #[test]
    fn org_min_lengthens_short_timers() {
        let min = RetentionDuration::new(Duration::from_hours(1)).unwrap();
        let org = OrgBounds::new(min, None).unwrap();
        assert_eq!(
            org.clamp(RetentionPolicy::after_send(Duration::from_secs(30))),
            RetentionPolicy::after_send(Duration::from_hours(1))
        );
        assert_eq!(org.clamp(RetentionPolicy::Off), RetentionPolicy::Off);
    }

    #[test]
    fn inverted_bounds_are_refused() {
        let a = RetentionDuration::new(Duration::from_hours(2)).unwrap();
        let b = RetentionDuration::new(Duration::from_hours(1)).unwrap();
        assert!(OrgBounds::new(a, Some(b)).is_none());
    }

    #[test]
    fn absolute_limits_hold() {
        assert!(RetentionDuration::new(Duration::from_secs(1)).is_none());
        assert!(RetentionDuration::new(Duration::from_days(366)).is_none());
        assert_eq!(
            RetentionDuration::clamped(Duration::ZERO),
            RetentionDuration::MIN
        );
        assert_eq!(
            RetentionDuration::clamped(Duration::MAX),
            RetentionDuration::MAX
        );
    }

    #[test]
    fn strictness_is_total() {
        let policies = [
            RetentionPolicy::Off,
            RetentionPolicy::after_send(Duration::from_hours(1)),
            RetentionPolicy::after_read(Duration::from_hours(1)),
            RetentionPolicy::after_send(Duration::from_mins(1)),
        ];
        for a in &policies {
            for b in &policies {
                assert_eq!(a.strictness_cmp(b) == Ordering::Equal, a == b);
                assert_eq!(a.strictness_cmp(b), b.strictness_cmp(a).reverse());
            }
        }
        assert_eq!(policies[3].strictness_cmp(&policies[1]), Ordering::Greater);
        assert_eq!(policies[1].strictness_cmp(&policies[2]), Ordering::Greater);
    }
}
