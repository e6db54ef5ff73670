//! Which connections the relay accepts: at most [`MAX_CONNECTIONS`](crate::consts::MAX_CONNECTIONS)
//! at once, and per source address (an IPv4 address, or an IPv6 /64) at most
//! `max_connections_per_ip` open and `new_connections_per_ip_per_minute` new ones.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::bucket::Bucket;
use crate::consts::{IPV6_SOURCE_PREFIX_LEN, MAX_TRACKED_IPS};
use crate::server::{Limits, lock};

/// The source an address counts as: IPv4 addresses (also IPv4-mapped IPv6 ones) as they are,
/// IPv6 addresses by their /64 ([`IPV6_SOURCE_PREFIX_LEN`]).
#[must_use]
pub(crate) fn source_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(a) => IpAddr::V4(a),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mask = u128::MAX
                    .checked_shl(128u32.saturating_sub(IPV6_SOURCE_PREFIX_LEN))
                    .unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
            }
        },
    }
}

#[derive(Debug)]
struct Source {
    open: usize,
    bucket: Bucket,
}

/// Open connections and new-connection buckets per source, and the relay-wide permits.
#[derive(Debug)]
pub(crate) struct Admission {
    permits: Arc<Semaphore>,
    sources: Mutex<HashMap<IpAddr, Source>>,
}

/// An accepted connection's hold on its slots; dropping it frees them.
#[derive(Debug)]
pub(crate) struct Admitted {
    admission: Arc<Admission>,
    source: IpAddr,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Some(s) = lock(&self.admission.sources).get_mut(&self.source) {
            s.open = s.open.saturating_sub(1);
        }
    }
}

impl Admission {
    pub(crate) fn new(max_connections: usize) -> Arc<Self> {
        Arc::new(Self {
            permits: Arc::new(Semaphore::new(max_connections)),
            sources: Mutex::new(HashMap::new()),
        })
    }

    /// Admits a connection from `peer`, or `None` (refuse it: `TooManyConnections`).
    pub(crate) fn admit(self: &Arc<Self>, peer: IpAddr, limits: &Limits) -> Option<Admitted> {
        let permit = Arc::clone(&self.permits).try_acquire_owned().ok()?;
        let source = source_of(peer);
        let rate = limits.new_connections_per_ip_per_minute;
        let now = Instant::now();
        let mut sources = lock(&self.sources);
        if sources.len() >= MAX_TRACKED_IPS && !sources.contains_key(&source) {
            sources.retain(|_, s| s.open > 0 || !s.bucket.is_full(rate, rate, now));
            if sources.len() >= MAX_TRACKED_IPS {
                return None;
            }
        }
        let entry = sources.entry(source).or_insert_with(|| Source {
            open: 0,
            bucket: Bucket::full(rate),
        });
        if entry.open >= limits.max_connections_per_ip || !entry.bucket.take(rate, rate, now) {
            return None;
        }
        entry.open = entry.open.saturating_add(1);
        drop(sources);
        Some(Admitted {
            admission: Arc::clone(self),
            source,
            _permit: permit,
        })
    }

    /// Forgets sources with no open connection and a full bucket (the sweeper calls it).
    pub(crate) fn prune(&self, limits: &Limits) {
        let rate = limits.new_connections_per_ip_per_minute;
        let now = Instant::now();
        lock(&self.sources).retain(|_, s| s.open > 0 || !s.bucket.is_full(rate, rate, now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_counts_by_its_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(source_of(a), source_of(b));
        assert_ne!(source_of(a), source_of(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(source_of(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn open_connections_per_source_are_bounded_and_freed_on_drop() {
        let limits = Limits {
            max_connections_per_ip: 2,
            ..Limits::default()
        };
        let admission = Admission::new(10);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let first = admission.admit(ip, &limits).unwrap();
        let _second = admission.admit(ip, &limits).unwrap();
        assert!(
            admission.admit(ip, &limits).is_none(),
            "third from one source"
        );
        assert!(
            admission
                .admit("192.0.2.2".parse().unwrap(), &limits)
                .is_some(),
            "another source is served"
        );
        drop(first);
        assert!(
            admission.admit(ip, &limits).is_some(),
            "a slot freed on close"
        );
    }

    #[test]
    fn the_relay_wide_limit_holds_across_sources() {
        let limits = Limits::default();
        let admission = Admission::new(2);
        let _a = admission
            .admit("192.0.2.1".parse().unwrap(), &limits)
            .unwrap();
        let _b = admission
            .admit("192.0.2.2".parse().unwrap(), &limits)
            .unwrap();
        assert!(
            admission
                .admit("192.0.2.3".parse().unwrap(), &limits)
                .is_none()
        );
    }
}
