//! Running [`SansIoEndpoint`]s: one over any [`Transport`] ([`Driver`]), or many over the
//! simulated network with a virtual clock ([`Simulation`]).
//!
//! Both follow the run loop documented in [`confide_transport::driver`]: [`Driver::run_once`]
//! does its steps 2, 4 and 5 for one instant (the app does the waiting), and [`Simulation`]
//! does the same for many endpoints over a [`SimNetwork`] with a virtual clock that jumps to
//! the next deadline, so tests run days of traffic in milliseconds.

use confide_transport::driver::{Input, Output, SansIoEndpoint};
use confide_transport::{Address, Transport, TransportError};
use confide_wire::{CryptoRng, Timestamp};

use crate::network::SimNetwork;

/// Most outputs one drain accepts before giving up on the endpoint.
///
/// Reason: a correct endpoint returns [`Output::Timeout`] after finitely many outputs;
/// this turns a broken endpoint's endless loop into a bounded one. It is far above what one
/// input can produce (the outbox holds at most 1,000 messages).
pub const MAX_OUTPUTS_PER_DRAIN: usize = 100_000;

/// Most frames [`Driver::run_once`] takes from the transport in one call.
///
/// Reason: keeps a flood of incoming frames from starving timers; the rest are taken on the
/// next call.
pub const MAX_FRAMES_PER_RUN: usize = 1_024;

/// Runs one [`SansIoEndpoint`] over one [`Transport`].
#[derive(Debug)]
pub struct Driver<E, T> {
    endpoint: E,
    transport: T,
    next_timeout: Option<Timestamp>,
    send_failures: u64,
    last_error: Option<TransportError>,
}

impl<E: SansIoEndpoint, T: Transport> Driver<E, T> {
    /// Pairs an endpoint with a transport.
    pub fn new(endpoint: E, transport: T) -> Self {
        Self {
            endpoint,
            transport,
            next_timeout: None,
            send_failures: 0,
            last_error: None,
        }
    }

    /// One turn of the run loop at `now`: drains pending outputs (from commands), feeds up to
    /// [`MAX_FRAMES_PER_RUN`] received frames, fires the timer if due, and returns the events
    /// for the app in order. Transport errors do not stop the turn: failed sends are counted
    /// ([`Driver::send_failures`]) and left to the endpoint's retransmission, and a receive
    /// error ends receiving for this turn ([`Driver::take_transport_error`]).
    pub fn run_once<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        now: Timestamp,
    ) -> Vec<E::Event> {
        let mut events = Vec::new();
        self.drain(&mut events);
        for _ in 0..MAX_FRAMES_PER_RUN {
            match self.transport.recv() {
                Ok(Some(frame)) => {
                    self.endpoint
                        .handle_input(rng, Input::Receive { bytes: &frame, now });
                    self.drain(&mut events);
                }
                Ok(None) => break,
                Err(e) => {
                    self.last_error = Some(e);
                    break;
                }
            }
        }
        if self.next_timeout.is_some_and(|t| t <= now) {
            self.endpoint.handle_input(rng, Input::Timeout { now });
            self.drain(&mut events);
        }
        events
    }

    /// When the endpoint next needs [`Driver::run_once`] even if no frame arrives.
    #[must_use]
    pub fn next_timeout(&self) -> Option<Timestamp> {
        self.next_timeout
    }

    /// Sends the transport refused so far.
    #[must_use]
    pub fn send_failures(&self) -> u64 {
        self.send_failures
    }

    /// The most recent transport error, clearing it.
    pub fn take_transport_error(&mut self) -> Option<TransportError> {
        self.last_error.take()
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &E {
        &self.endpoint
    }

    /// The endpoint, for commands; the next [`Driver::run_once`] drains their outputs.
    pub fn endpoint_mut(&mut self) -> &mut E {
        &mut self.endpoint
    }

    /// The transport.
    pub fn transport_mut(&mut self) -> &mut T {
        &mut self.transport
    }

    /// Takes the driver apart.
    pub fn into_parts(self) -> (E, T) {
        (self.endpoint, self.transport)
    }

    fn drain(&mut self, events: &mut Vec<E::Event>) {
        for _ in 0..MAX_OUTPUTS_PER_DRAIN {
            match self.endpoint.poll_output() {
                Output::Transmit(tx) => {
                    if let Err(e) = self.transport.send(&tx.to, tx.token.as_ref(), &tx.frame) {
                        self.send_failures = self.send_failures.saturating_add(1);
                        self.last_error = Some(e);
                    }
                }
                Output::Event(e) => events.push(e),
                Output::Timeout(t) => {
                    self.next_timeout = t;
                    return;
                }
                // An output this driver does not know yet: nothing to do with it.
                _ => {}
            }
        }
    }
}

/// Index of a node in a [`Simulation`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub usize);

#[derive(Debug)]
struct SimNode<E> {
    address: Address,
    endpoint: E,
    next_timeout: Option<Timestamp>,
}

/// How a [`Simulation::run_until`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
#[must_use]
pub enum RunOutcome {
    /// Nothing is scheduled at or before the limit; the clock now reads the limit.
    ReachedLimit {
        /// Steps taken.
        steps: usize,
    },
    /// No timer and no frame in flight anywhere: nothing will ever happen again by itself.
    Quiescent {
        /// Steps taken.
        steps: usize,
    },
    /// `max_steps` ran out first (an endpoint may be spinning).
    StepBudgetExhausted,
}

/// Many endpoints over one [`SimNetwork`], with a virtual clock that jumps to the next
/// deadline (a timer or a frame arrival). Deterministic given the network's seed, the
/// caller's random source and the sequence of calls.
#[derive(Debug)]
pub struct Simulation<E: SansIoEndpoint> {
    network: SimNetwork,
    nodes: Vec<SimNode<E>>,
    now: Timestamp,
    events: Vec<(NodeId, E::Event)>,
}

impl<E: SansIoEndpoint> Simulation<E> {
    /// A simulation over `network` whose clock starts at `start`.
    pub fn new(network: SimNetwork, start: Timestamp) -> Self {
        Self {
            network,
            nodes: Vec::new(),
            now: start,
            events: Vec::new(),
        }
    }

    /// Adds an endpoint reachable at `address` (its mailbox).
    pub fn add_node(&mut self, address: Address, endpoint: E) -> NodeId {
        self.nodes.push(SimNode {
            address,
            endpoint,
            next_timeout: None,
        });
        NodeId(self.nodes.len() - 1)
    }

    /// The virtual clock.
    #[must_use]
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// The network (to read statistics).
    #[must_use]
    pub fn network(&self) -> &SimNetwork {
        &self.network
    }

    /// The network (to cut links, take nodes offline, change link settings).
    pub fn network_mut(&mut self) -> &mut SimNetwork {
        &mut self.network
    }

    /// A node's endpoint.
    #[must_use]
    pub fn endpoint(&self, node: NodeId) -> Option<&E> {
        self.nodes.get(node.0).map(|n| &n.endpoint)
    }

    /// A node's address.
    #[must_use]
    pub fn address(&self, node: NodeId) -> Option<&Address> {
        self.nodes.get(node.0).map(|n| &n.address)
    }

    /// Runs a command on a node's endpoint at the current time (for example "send", or
    /// replacing it with a copy restored from saved state), then drains its outputs.
    /// Returns `None` if there is no such node.
    pub fn command<R: CryptoRng + ?Sized, T>(
        &mut self,
        rng: &mut R,
        node: NodeId,
        f: impl FnOnce(&mut E, &mut R, Timestamp) -> T,
    ) -> Option<T> {
        let now = self.now;
        let n = self.nodes.get_mut(node.0)?;
        let out = f(&mut n.endpoint, rng, now);
        self.drain(node);
        Some(out)
    }

    /// The earliest pending frame arrival or timer.
    #[must_use]
    pub fn next_deadline(&self) -> Option<Timestamp> {
        let timers = self.nodes.iter().filter_map(|n| n.next_timeout).min();
        match (timers, self.network.next_event_time()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Jumps the clock to the next deadline (never backwards), delivers due frames, feeds
    /// every node its relay receipts and its mail and fires due timers (nodes in the order
    /// they were added).
    /// Returns false if nothing is pending.
    pub fn step<R: CryptoRng + ?Sized>(&mut self, rng: &mut R) -> bool {
        let Some(deadline) = self.next_deadline() else {
            return false;
        };
        self.now = self.now.max(deadline);
        let now = self.now;
        self.network.deliver_due(now);
        for index in 0..self.nodes.len() {
            let node = NodeId(index);
            while let Some(n) = self.nodes.get_mut(index) {
                let Some(id) = self.network.take_receipt(&n.address) else {
                    break;
                };
                n.endpoint
                    .handle_input(rng, Input::RelayReceipt { id, now });
                self.drain(node);
            }
            while let Some(n) = self.nodes.get_mut(index) {
                let Some(frame) = self.network.take_mail(&n.address) else {
                    break;
                };
                n.endpoint
                    .handle_input(rng, Input::Receive { bytes: &frame, now });
                self.drain(node);
            }
            if let Some(n) = self.nodes.get_mut(index)
                && n.next_timeout.is_some_and(|t| t <= now)
            {
                n.endpoint.handle_input(rng, Input::Timeout { now });
                self.drain(node);
            }
        }
        true
    }

    /// Steps until nothing is due at or before `limit` (then sets the clock to `limit`),
    /// nothing is pending at all, or `max_steps` steps were taken.
    pub fn run_until<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        limit: Timestamp,
        max_steps: usize,
    ) -> RunOutcome {
        for steps in 0..max_steps {
            match self.next_deadline() {
                None => return RunOutcome::Quiescent { steps },
                Some(t) if t > limit => {
                    self.now = self.now.max(limit);
                    return RunOutcome::ReachedLimit { steps };
                }
                Some(_) => {
                    let _ = self.step(rng);
                }
            }
        }
        RunOutcome::StepBudgetExhausted
    }

    /// Takes the events all nodes produced so far, in order.
    pub fn take_events(&mut self) -> Vec<(NodeId, E::Event)> {
        std::mem::take(&mut self.events)
    }

    fn drain(&mut self, node: NodeId) {
        let now = self.now;
        let Some(n) = self.nodes.get_mut(node.0) else {
            return;
        };
        for _ in 0..MAX_OUTPUTS_PER_DRAIN {
            match n.endpoint.poll_output() {
                Output::Transmit(tx) => {
                    self.network.send(&n.address, &tx.to, &tx.frame, now);
                }
                Output::Event(e) => self.events.push((node, e)),
                Output::Timeout(t) => {
                    n.next_timeout = t;
                    return;
                }

                // An output this simulation does not know yet: nothing to do with it.
                _ => {}
            }
        }
    }
}
