//! A deterministic simulated network for tests.
//!
//! Frames travel between mailboxes ([`Address`]es) over directed links, each with its own
//! loss, duplication and reordering chances and delay range. Links can be cut and healed,
//! and a node can be taken offline for a period. Everything random comes from one seeded
//! generator, so a run is reproduced exactly by its seed and its sequence of calls.
//!
//! Semantics:
//!
//! * [`SimNetwork::send`] at time `now` decides the frame's fate at once: dropped (link cut or
//!   either end offline at `now`, or lost), or scheduled for delivery once or twice (duplicated)
//!   at `now + delay`, where `delay` is uniform in the link's `[min_delay, max_delay]`, plus, with
//!   the reordering chance, an extra hold of up to twice `max_delay` (at least 1 ms).
//! * [`SimNetwork::deliver_due`] moves every frame whose delivery time has come into the
//!   recipient's mailbox, unless at that delivery time the link is cut or either end is offline
//!   (then it is dropped). Frames due at the same time keep their send order.
//! * A mailbox keeps frames until [`SimNetwork::take_mail`] takes them.
//! * With [`SimNetwork::enable_relay`] the network behaves like a store-and-forward relay
//!   that sends receipts: a frame that reaches the relay (the sender online and the link not
//!   cut at send and arrival time, not lost) is stored for its recipient, **one copy per frame
//!   id** (a later copy under the same id replaces the stored one), and its sender gets a
//!   receipt naming the frame id ([`SimNetwork::take_receipt`]) at arrival time. Whether the
//!   recipient is online does not matter then: the relay hands it every stored frame whenever
//!   it is online and the link is not cut ([`SimNetwork::next_event_time`] includes the end of
//!   an offline period of a recipient with stored frames).
//!
//! The generator is SplitMix64: fast, well mixed, and not cryptographic (simulated loss needs
//! no secrecy).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use confide_wire::{CryptoRng, Duration, Timestamp};

use confide_transport::{Address, FrameId, RelayToken, Transport, TransportError};

/// Chances and delays of one directed link. Chances are in parts per million.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkConfig {
    /// Chance that a frame is lost.
    pub loss_per_million: u32,
    /// Chance that a frame that is not lost arrives twice.
    pub duplicate_per_million: u32,
    /// Chance that a frame is held back an extra random time (reordering it).
    pub reorder_per_million: u32,
    /// Shortest delay.
    pub min_delay: Duration,
    /// Longest delay (values below `min_delay` read as `min_delay`).
    pub max_delay: Duration,
}

/// One million: the denominator of the chances in [`LinkConfig`].
pub const PARTS_PER_MILLION: u32 = 1_000_000;

impl LinkConfig {
    /// A link that delivers everything, once, in order, after `delay`.
    #[must_use]
    pub const fn perfect(delay: Duration) -> Self {
        Self {
            loss_per_million: 0,
            duplicate_per_million: 0,
            reorder_per_million: 0,
            min_delay: delay,
            max_delay: delay,
        }
    }

    /// Sets the loss chance.
    #[must_use]
    pub const fn with_loss(mut self, per_million: u32) -> Self {
        self.loss_per_million = per_million;
        self
    }

    /// Sets the duplication chance.
    #[must_use]
    pub const fn with_duplication(mut self, per_million: u32) -> Self {
        self.duplicate_per_million = per_million;
        self
    }

    /// Sets the reordering chance.
    #[must_use]
    pub const fn with_reordering(mut self, per_million: u32) -> Self {
        self.reorder_per_million = per_million;
        self
    }

    /// Sets the delay range.
    #[must_use]
    pub const fn with_delay(mut self, min: Duration, max: Duration) -> Self {
        self.min_delay = min;
        self.max_delay = max;
        self
    }
}

/// What happened to the frames sent so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SimStats {
    /// Calls to [`SimNetwork::send`].
    pub sent: u64,
    /// Frames lost to the loss chance.
    pub lost: u64,
    /// Extra copies created by the duplication chance.
    pub duplicated: u64,
    /// Frames (or copies) dropped because a link was cut or an end was offline.
    pub dropped_by_partition: u64,
    /// Frames (or copies) put into a mailbox.
    pub delivered: u64,
    /// With a relay: frames stored under a frame id the recipient's relay mailbox did not hold.
    pub relay_stored: u64,
    /// With a relay: frames that replaced a stored copy under the same frame id.
    pub relay_replaced: u64,
    /// With a relay: receipts handed to senders.
    pub relay_receipts: u64,
}

/// The SplitMix64 generator.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SimRng(u64);

impl SimRng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..=max`.
    fn up_to(&mut self, max: u64) -> u64 {
        match max.checked_add(1) {
            Some(n) => self.next_u64() % n,
            None => self.next_u64(),
        }
    }

    fn chance(&mut self, per_million: u32) -> bool {
        self.up_to(u64::from(PARTS_PER_MILLION) - 1) < u64::from(per_million)
    }
}

#[derive(Debug, Clone)]
struct InFlight {
    from: Address,
    to: Address,
    frame: Vec<u8>,
}

/// The simulated network. See the [module documentation](self).
#[derive(Debug, Clone)]
pub struct SimNetwork {
    rng: SimRng,
    default_link: LinkConfig,
    links: BTreeMap<(Address, Address), LinkConfig>,
    cuts: BTreeSet<(Address, Address)>,
    offline: BTreeMap<Address, Vec<(Timestamp, Timestamp)>>,
    in_flight: BTreeMap<(Timestamp, u64), InFlight>,
    next_seq: u64,
    mailboxes: BTreeMap<Address, VecDeque<Vec<u8>>>,
    /// `Some` with [`SimNetwork::enable_relay`].
    relay: Option<SimRelay>,
    stats: SimStats,
}

/// A frame stored at the relay: (sender, frame id if the frame has one, frame).
type StoredFrame = (Address, Option<FrameId>, Vec<u8>);

/// The store-and-forward relay of [`SimNetwork::enable_relay`].
#[derive(Debug, Clone, Default)]
struct SimRelay {
    /// Per recipient, the stored frames in arrival order.
    held: BTreeMap<Address, Vec<StoredFrame>>,
    /// Per sender, the receipts not yet taken.
    receipts: BTreeMap<Address, VecDeque<FrameId>>,
    /// The earliest end of an offline period of a recipient with stored frames.
    wake_at: Option<Timestamp>,
}

impl SimNetwork {
    /// A network whose links are all [`LinkConfig::perfect`] with a 50 ms delay until
    /// configured, seeded with `seed`.
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self {
            rng: SimRng(seed),
            default_link: LinkConfig::perfect(Duration::from_millis(50)),
            links: BTreeMap::new(),
            cuts: BTreeSet::new(),
            offline: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            next_seq: 0,
            mailboxes: BTreeMap::new(),
            relay: None,
            stats: SimStats::default(),
        }
    }

    /// Puts a store-and-forward relay with receipts between all nodes from now on; see the
    /// [module documentation](self).
    pub fn enable_relay(&mut self) {
        if self.relay.is_none() {
            self.relay = Some(SimRelay::default());
        }
    }

    /// Takes the oldest relay receipt for frames `node` sent (with [`SimNetwork::enable_relay`]).
    pub fn take_receipt(&mut self, node: &Address) -> Option<FrameId> {
        self.relay
            .as_mut()
            .and_then(|r| r.receipts.get_mut(node))
            .and_then(VecDeque::pop_front)
    }

    /// Frames the relay holds for `node` (with [`SimNetwork::enable_relay`]).
    #[must_use]
    pub fn relay_held_len(&self, node: &Address) -> usize {
        self.relay
            .as_ref()
            .and_then(|r| r.held.get(node))
            .map_or(0, Vec::len)
    }

    /// As [`SimNetwork::new`], seeded from the caller's random source.
    #[must_use]
    pub fn from_rng<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self::new(u64::from_be_bytes(confide_wire::random_array(rng)))
    }

    /// Sets the configuration of every link not configured with [`SimNetwork::set_link`].
    pub fn set_default_link(&mut self, link: LinkConfig) {
        self.default_link = link;
    }

    /// Configures the directed link `from` -> `to`.
    pub fn set_link(&mut self, from: &Address, to: &Address, link: LinkConfig) {
        self.links.insert((from.clone(), to.clone()), link);
    }

    /// Cuts both directions between `a` and `b` until [`SimNetwork::heal`].
    pub fn cut(&mut self, a: &Address, b: &Address) {
        self.cuts.insert(Self::pair(a, b));
    }

    /// Restores both directions between `a` and `b`.
    pub fn heal(&mut self, a: &Address, b: &Address) {
        self.cuts.remove(&Self::pair(a, b));
    }

    /// Takes `node` offline from `from` (inclusive) to `until` (exclusive): nothing it sends
    /// and nothing due to arrive for it in that period gets through.
    pub fn take_offline(&mut self, node: &Address, from: Timestamp, until: Timestamp) {
        self.offline
            .entry(node.clone())
            .or_default()
            .push((from, until));
    }

    /// Whether a frame from `from` to `to` gets through at time `at` (ignoring chance).
    #[must_use]
    pub fn is_reachable(&self, from: &Address, to: &Address, at: Timestamp) -> bool {
        !self.cuts.contains(&Self::pair(from, to))
            && !self.is_offline(from, at)
            && !self.is_offline(to, at)
    }

    /// Whether `node` is offline at `at`.
    #[must_use]
    pub fn is_offline(&self, node: &Address, at: Timestamp) -> bool {
        self.offline
            .get(node)
            .is_some_and(|periods| periods.iter().any(|(s, e)| *s <= at && at < *e))
    }

    /// Sends `frame` from `from` to `to` at time `now`; see the [module documentation](self).
    pub fn send(&mut self, from: &Address, to: &Address, frame: &[u8], now: Timestamp) {
        self.stats.sent = self.stats.sent.saturating_add(1);
        if !self.reaches_first_hop(from, to, now) {
            self.stats.dropped_by_partition = self.stats.dropped_by_partition.saturating_add(1);
            return;
        }
        let link = self
            .links
            .get(&(from.clone(), to.clone()))
            .copied()
            .unwrap_or(self.default_link);
        if self.rng.chance(link.loss_per_million) {
            self.stats.lost = self.stats.lost.saturating_add(1);
            return;
        }
        let copies = if self.rng.chance(link.duplicate_per_million) {
            self.stats.duplicated = self.stats.duplicated.saturating_add(1);
            2
        } else {
            1
        };
        for _ in 0..copies {
            let min = link.min_delay.as_millis();
            let max = link.max_delay.as_millis().max(min);
            let mut delay = min.saturating_add(self.rng.up_to(max - min));
            if self.rng.chance(link.reorder_per_million) {
                let hold = max.max(1).saturating_mul(2);
                delay = delay
                    .saturating_add(1)
                    .saturating_add(self.rng.up_to(hold - 1));
            }
            let at = now.saturating_add(Duration::from_millis(delay));
            self.in_flight.insert(
                (at, self.next_seq),
                InFlight {
                    from: from.clone(),
                    to: to.clone(),
                    frame: frame.to_vec(),
                },
            );
            self.next_seq = self.next_seq.saturating_add(1);
        }
    }

    /// Moves every frame due at or before `now` into its mailbox (or drops it if partitioned
    /// at its delivery time). Returns how many reached a mailbox.
    pub fn deliver_due(&mut self, now: Timestamp) -> usize {
        let mut delivered: usize = 0;
        while let Some(entry) = self.in_flight.first_entry() {
            let (at, _) = *entry.key();
            if at > now {
                break;
            }
            let flight = entry.remove();
            if self.relay.is_some() {
                if self.reaches_first_hop(&flight.from, &flight.to, at) {
                    self.store_at_relay(flight);
                } else {
                    self.stats.dropped_by_partition =
                        self.stats.dropped_by_partition.saturating_add(1);
                }
                continue;
            }
            if self.is_reachable(&flight.from, &flight.to, at) {
                self.mailboxes
                    .entry(flight.to)
                    .or_default()
                    .push_back(flight.frame);
                self.stats.delivered = self.stats.delivered.saturating_add(1);
                delivered += 1;
            } else {
                self.stats.dropped_by_partition = self.stats.dropped_by_partition.saturating_add(1);
            }
        }
        delivered.saturating_add(self.forward_from_relay(now))
    }

    /// When the next frame in flight is due (or, with a relay, the next recipient with stored
    /// frames comes back online), if any.
    #[must_use]
    pub fn next_event_time(&self) -> Option<Timestamp> {
        let flight = self.in_flight.keys().next().map(|(at, _)| *at);
        match (flight, self.relay.as_ref().and_then(|r| r.wake_at)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether a frame from `from` to `to` gets past its first hop at `at`: to the relay (the
    /// sender online, the link not cut) or, without one, to the recipient.
    fn reaches_first_hop(&self, from: &Address, to: &Address, at: Timestamp) -> bool {
        if self.relay.is_some() {
            !self.cuts.contains(&Self::pair(from, to)) && !self.is_offline(from, at)
        } else {
            self.is_reachable(from, to, at)
        }
    }

    /// Stores an arriving frame at the relay, one copy per frame id, and queues the receipt.
    fn store_at_relay(&mut self, flight: InFlight) {
        let InFlight { from, to, frame } = flight;
        let id = frame
            .get(2..18)
            .and_then(|b| <[u8; 16]>::try_from(b).ok())
            .map(FrameId::from_bytes);
        let Some(relay) = self.relay.as_mut() else {
            return;
        };
        let held = relay.held.entry(to).or_default();
        match held
            .iter_mut()
            .find(|(_, stored, _)| id.is_some() && *stored == id)
        {
            Some(slot) => {
                slot.2 = frame;
                self.stats.relay_replaced = self.stats.relay_replaced.saturating_add(1);
            }
            None => {
                held.push((from.clone(), id, frame));
                self.stats.relay_stored = self.stats.relay_stored.saturating_add(1);
            }
        }
        if let Some(id) = id {
            relay.receipts.entry(from).or_default().push_back(id);
            self.stats.relay_receipts = self.stats.relay_receipts.saturating_add(1);
        }
    }

    /// Hands stored frames to every recipient online at `now` over a link not cut; notes
    /// when the next offline recipient with stored frames comes back.
    fn forward_from_relay(&mut self, now: Timestamp) -> usize {
        let Some(mut relay) = self.relay.take() else {
            return 0;
        };
        let mut delivered = 0;
        relay.wake_at = None;
        for (to, held) in &mut relay.held {
            if let Some(back) = self.offline.get(to).and_then(|p| {
                p.iter()
                    .filter(|(s, e)| *s <= now && now < *e)
                    .map(|(_, e)| *e)
                    .max()
            }) {
                relay.wake_at = Some(relay.wake_at.map_or(back, |w| w.min(back)));
                continue;
            }
            let mut kept = Vec::new();
            for (from, id, frame) in held.drain(..) {
                if self.cuts.contains(&Self::pair(&from, to)) {
                    kept.push((from, id, frame));
                } else {
                    self.mailboxes
                        .entry(to.clone())
                        .or_default()
                        .push_back(frame);
                    self.stats.delivered = self.stats.delivered.saturating_add(1);
                    delivered += 1;
                }
            }
            *held = kept;
        }
        relay.held.retain(|_, held| !held.is_empty());
        self.relay = Some(relay);
        delivered
    }

    /// Takes the oldest frame in `node`'s mailbox.
    pub fn take_mail(&mut self, node: &Address) -> Option<Vec<u8>> {
        self.mailboxes.get_mut(node).and_then(VecDeque::pop_front)
    }

    /// Frames waiting in `node`'s mailbox.
    #[must_use]
    pub fn mailbox_len(&self, node: &Address) -> usize {
        self.mailboxes.get(node).map_or(0, VecDeque::len)
    }

    /// Frames still in flight.
    #[must_use]
    pub fn in_flight_len(&self) -> usize {
        self.in_flight.len()
    }

    /// Counters so far.
    #[must_use]
    pub fn stats(&self) -> SimStats {
        self.stats
    }

    /// A [`Transport`] view of this network for the node `local` at time `now`.
    pub fn port(&mut self, local: Address, now: Timestamp) -> SimPort<'_> {
        SimPort {
            network: self,
            local,
            now,
        }
    }

    fn pair(a: &Address, b: &Address) -> (Address, Address) {
        if a <= b {
            (a.clone(), b.clone())
        } else {
            (b.clone(), a.clone())
        }
    }
}

/// A short-lived [`Transport`] for one node of a [`SimNetwork`] at one instant: `send` goes
/// through the network at that time, `recv` takes from the node's mailbox.
#[derive(Debug)]
pub struct SimPort<'a> {
    network: &'a mut SimNetwork,
    local: Address,
    now: Timestamp,
}

impl SimPort<'_> {
    /// Moves the port's clock (for example after [`SimNetwork::deliver_due`]).
    pub fn set_now(&mut self, now: Timestamp) {
        self.now = now;
    }
}

impl Transport for SimPort<'_> {
    /// The simulated network has no relay access control: the token is ignored.
    fn send(
        &mut self,
        to: &Address,
        _token: Option<&RelayToken>,
        frame: &[u8],
    ) -> Result<(), TransportError> {
        self.network.send(&self.local, to, frame, self.now);
        Ok(())
    }

    fn recv(&mut self) -> Result<Option<Vec<u8>>, TransportError> {
        Ok(self.network.take_mail(&self.local))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(n: u8) -> Address {
        Address::new(&[n]).unwrap()
    }

    fn t(ms: u64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    fn run(seed: u64) -> (Vec<Vec<u8>>, SimStats) {
        let mut net = SimNetwork::new(seed);
        net.set_default_link(
            LinkConfig::perfect(Duration::ZERO)
                .with_delay(Duration::from_millis(10), Duration::from_millis(100))
                .with_loss(200_000)
                .with_duplication(200_000)
                .with_reordering(300_000),
        );
        for i in 0..200u8 {
            net.send(&a(1), &a(2), &[i], t(u64::from(i)));
        }
        while let Some(at) = net.next_event_time() {
            net.deliver_due(at);
        }
        let mut got = Vec::new();
        while let Some(f) = net.take_mail(&a(2)) {
            got.push(f);
        }
        (got, net.stats())
    }

    #[test]
    fn same_seed_same_run_and_chances_take_effect() {
        let (got, stats) = run(42);
        assert_eq!(run(42), (got.clone(), stats));
        assert_ne!(run(43).0, got);
        assert!(stats.lost > 10 && stats.duplicated > 10);
        assert_eq!(stats.delivered as usize, got.len());
        assert_eq!(stats.delivered, 200 - stats.lost + stats.duplicated);
        let in_order = got.windows(2).all(|w| w[0] <= w[1]);
        assert!(!in_order, "reordering happened");
    }

    #[test]
    fn cuts_and_offline_periods_drop_frames() {
        let mut net = SimNetwork::new(1);
        net.cut(&a(1), &a(2));
        net.send(&a(2), &a(1), b"x", t(0));
        net.heal(&a(2), &a(1));
        net.send(&a(2), &a(1), b"y", t(0));
        net.take_offline(&a(1), t(100), t(200));
        net.send(&a(2), &a(1), b"z", t(60)); // arrives at 110: offline then
        net.send(&a(2), &a(1), b"v", t(150)); // sent while the recipient is offline
        net.send(&a(2), &a(1), b"w", t(200)); // back online
        net.deliver_due(t(1_000));
        assert_eq!(net.take_mail(&a(1)).unwrap(), b"y");
        assert_eq!(net.take_mail(&a(1)).unwrap(), b"w");
        assert!(net.take_mail(&a(1)).is_none());
        assert_eq!(net.stats().dropped_by_partition, 3);
    }

    #[test]
    fn port_is_a_transport() {
        let mut net = SimNetwork::new(3);
        net.port(a(1), t(0)).send(&a(2), None, b"hi").unwrap();
        assert_eq!(net.next_event_time(), Some(t(50)));
        net.deliver_due(t(50));
        assert_eq!(net.port(a(2), t(50)).recv().unwrap().unwrap(), b"hi");
        assert_eq!(net.port(a(2), t(50)).recv().unwrap(), None);
    }

    #[test]
    fn the_relay_stores_one_copy_per_frame_id_and_delivers_when_the_recipient_returns() {
        let mut net = SimNetwork::new(3);
        net.set_default_link(LinkConfig::perfect(Duration::from_millis(10)));
        net.enable_relay();
        net.take_offline(&a(2), t(0), t(1_000));
        let frame = |id: u8, body: u8| {
            let mut f = vec![1, 1];
            f.extend_from_slice(&[id; 16]);
            f.push(body);
            f
        };
        // Three copies of frame 7 (the last one re-sealed) and one of frame 8.
        for (i, f) in [frame(7, 0), frame(7, 0), frame(8, 0), frame(7, 1)]
            .iter()
            .enumerate()
        {
            net.send(&a(1), &a(2), f, t(i as u64));
        }
        while let Some(at) = net.next_event_time() {
            if at >= t(1_000) {
                break;
            }
            net.deliver_due(at);
        }
        // Stored while the recipient is offline; every arrival was confirmed.
        assert_eq!(net.mailbox_len(&a(2)), 0);
        assert_eq!(net.relay_held_len(&a(2)), 2);
        let mut receipts = Vec::new();
        while let Some(id) = net.take_receipt(&a(1)) {
            receipts.push(id.as_bytes()[0]);
        }
        assert_eq!(receipts, vec![7, 7, 8, 7]);
        let stats = net.stats();
        assert_eq!((stats.relay_stored, stats.relay_replaced), (2, 2));
        // The recipient's return is an event: the relay hands over one copy of each frame,
        // the latest payload under a repeated id.
        assert_eq!(net.next_event_time(), Some(t(1_000)));
        net.deliver_due(t(1_000));
        assert_eq!(net.take_mail(&a(2)), Some(frame(7, 1)));
        assert_eq!(net.take_mail(&a(2)), Some(frame(8, 0)));
        assert_eq!(net.take_mail(&a(2)), None);
        assert_eq!(net.next_event_time(), None);
        // An offline sender reaches no relay and gets no receipt.
        net.take_offline(&a(1), t(2_000), t(3_000));
        net.send(&a(1), &a(2), &frame(9, 0), t(2_000));
        assert_eq!(net.next_event_time(), None);
        assert_eq!(net.take_receipt(&a(1)), None);
    }
}
