//! A token bucket with exact integer refill, for the relay's rate limits.

use std::time::Instant;

/// Units of one token: a refill of `elapsed_ms * per_minute` units is then exact (a minute is
/// 60,000 ms), so frequent calls lose no fractions.
const UNITS_PER_TOKEN: u64 = 60_000;

/// `burst` tokens, refilled at `per_minute` tokens a minute.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bucket {
    units: u64,
    last: Instant,
}

impl Bucket {
    /// A full bucket.
    pub(crate) fn full(burst: u32) -> Self {
        Self {
            units: u64::from(burst).saturating_mul(UNITS_PER_TOKEN),
            last: Instant::now(),
        }
    }

    fn elapsed_ms(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.last).as_millis()).unwrap_or(u64::MAX)
    }

    fn level(&self, burst: u32, per_minute: u32, now: Instant) -> u64 {
        self.units
            .saturating_add(self.elapsed_ms(now).saturating_mul(u64::from(per_minute)))
            .min(u64::from(burst).saturating_mul(UNITS_PER_TOKEN))
    }

    /// Takes one token if there is one.
    pub(crate) fn take(&mut self, burst: u32, per_minute: u32, now: Instant) -> bool {
        let elapsed = self.elapsed_ms(now);
        self.units = self.level(burst, per_minute, now);
        // Advance by whole milliseconds only, so the remainder is refilled next time.
        self.last = self
            .last
            .checked_add(std::time::Duration::from_millis(elapsed))
            .unwrap_or(now);
        if self.units >= UNITS_PER_TOKEN {
            self.units = self.units.saturating_sub(UNITS_PER_TOKEN);
            true
        } else {
            false
        }
    }

    /// Whether the bucket has refilled completely (then it carries no information).
    pub(crate) fn is_full(&self, burst: u32, per_minute: u32, now: Instant) -> bool {
        self.level(burst, per_minute, now) >= u64::from(burst).saturating_mul(UNITS_PER_TOKEN)
    }
}

/// A per-second rate as a per-minute one.
pub(crate) const fn per_minute(per_second: u32) -> u32 {
    per_second.saturating_mul(60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_granted_then_refused_then_refilled_at_the_rate() {
        let start = Instant::now();
        let mut b = Bucket::full(3);
        b.last = start;
        for _ in 0..3 {
            assert!(b.take(3, 60, start));
        }
        assert!(!b.take(3, 60, start), "burst spent");
        // 60 a minute: one token a second; 999 ms is not enough.
        assert!(!b.take(3, 60, start + std::time::Duration::from_millis(999)));
        assert!(b.take(3, 60, start + std::time::Duration::from_millis(1000)));
        assert!(!b.take(3, 60, start + std::time::Duration::from_millis(1000)));
    }

    #[test]
    fn frequent_calls_lose_no_refill() {
        // 30 a minute is half a token per second: calls every millisecond must still refill.
        let start = Instant::now();
        let mut b = Bucket::full(1);
        b.last = start;
        assert!(b.take(1, 30, start));
        let mut granted = 0;
        for ms in 1..=2_000u64 {
            if b.take(1, 30, start + std::time::Duration::from_millis(ms)) {
                granted += 1;
            }
        }
        assert_eq!(granted, 1, "one token in two seconds at 30 a minute");
        assert!(!b.is_full(1, 30, start + std::time::Duration::from_millis(2_000)));
        assert!(b.is_full(1, 30, start + std::time::Duration::from_millis(4_000)));
    }
}
