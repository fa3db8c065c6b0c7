//! The node loop: one task owns the core `Node`, and is the only code that
//! touches it.
//!
//! Inputs arrive on three channels (durability acks, peer messages, client
//! calls) and one timer (`poll_timeout`). After every input the loop follows
//! the core's call order: drain writes to storage, then transmits to peers,
//! then replies to clients. The core itself holds back any message whose
//! writes are not yet durable, so this loop cannot send one too early.

use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::peer::PeerNet;
use crate::persist::{self, Ack, Persist};
use crate::wakeups::Wakeups;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tenure_core::{
    Failure, HolderId, LeaseName, LeaseValue, LeaseView, Message, Node, NodeId, Op, Outcome, Reply,
    RequestId, Token,
};
use tokio::sync::{mpsc, oneshot, watch};

/// Inputs handled back-to-back before the loop drains its outputs, so that
/// writes from several inputs share one trip to storage.
const MAX_INPUTS_PER_STEP: usize = 64;

/// A message from a peer, as the transport delivers it.
#[derive(Debug)]
pub struct PeerEvent {
    pub from: NodeId,
    pub message: Message,
}

/// A client operation and where its outcome goes.
pub struct ClientCall {
    pub name: LeaseName,
    pub op: Op,
    pub reply: oneshot::Sender<Result<Outcome, Failure>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error(transparent)]
    Failed(#[from] Failure),
    /// The node is shutting down; the outcome of a write is unknown.
    #[error("this node is shutting down")]
    Stopping,
}

/// How HTTP handlers reach the node loop.
#[derive(Clone)]
pub struct NodeHandle {
    calls: mpsc::Sender<ClientCall>,
}

impl NodeHandle {
    pub fn new(calls: mpsc::Sender<ClientCall>) -> NodeHandle {
        NodeHandle { calls }
    }

    pub async fn call(&self, name: LeaseName, op: Op) -> Result<Outcome, CallError> {
        let (reply, outcome) = oneshot::channel();
        self.calls
            .send(ClientCall { name, op, reply })
            .await
            .map_err(|_| CallError::Stopping)?;
        match outcome.await {
            Ok(result) => Ok(result?),
            Err(_) => Err(CallError::Stopping),
        }
    }
}

struct Pending {
    name: LeaseName,
    op: &'static str,
    reply: oneshot::Sender<Result<Outcome, Failure>>,
}

pub struct NodeLoop {
    node: Node,
    clock: Clock,
    persist: Persist,
    peers: PeerNet,
    wakeups: Wakeups,
    metrics: Arc<Metrics>,
    pending: HashMap<RequestId, Pending>,
    next_request: u64,
    /// The last phase counted, so a message sent to every peer counts once.
    last_phase: Option<(&'static str, LeaseName, u64)>,
}

/// The channels the loop reads.
pub struct Inputs {
    pub calls: mpsc::Receiver<ClientCall>,
    pub peers: mpsc::Receiver<PeerEvent>,
    pub acks: mpsc::UnboundedReceiver<Ack>,
    /// Flips to true when the node should stop taking new calls.
    pub stop: watch::Receiver<bool>,
    /// How long to let rounds in flight finish once stopping.
    pub drain: Duration,
}

impl NodeLoop {
    pub fn new(
        node: Node,
        clock: Clock,
        persist: Persist,
        peers: PeerNet,
        wakeups: Wakeups,
        metrics: Arc<Metrics>,
    ) -> NodeLoop {
        NodeLoop {
            node,
            clock,
            persist,
            peers,
            wakeups,
            metrics,
            pending: HashMap::new(),
            next_request: 1,
            last_phase: None,
        }
    }

    /// Run until stopped and drained; returns the persist side so the
    /// caller can sync and close storage.
    pub async fn run(mut self, mut inputs: Inputs) -> Persist {
        let mut drain_until: Option<tokio::time::Instant> = None;
        loop {
            let timer = self.node.poll_timeout().map(|t| self.clock.to_tokio(t));
            let far = tokio::time::Instant::now() + Duration::from_secs(3_600);
            tokio::select! {
                // Finishing rounds comes before starting new ones.
                biased;
                Some(ack) = inputs.acks.recv() => self.on_durable(ack),
                Some(event) = inputs.peers.recv() => {
                    self.on_peer(event);
                    for _ in 1..MAX_INPUTS_PER_STEP {
                        match inputs.peers.try_recv() {
                            Ok(event) => self.on_peer(event),
                            Err(_) => break,
                        }
                    }
                }
                () = tokio::time::sleep_until(timer.unwrap_or(far)), if timer.is_some() => {
                    let now = self.clock.now();
                    self.node.handle_timeout(now);
                }
                Some(call) = inputs.calls.recv(), if drain_until.is_none() => {
                    self.on_call(call);
                    for _ in 1..MAX_INPUTS_PER_STEP {
                        match inputs.calls.try_recv() {
                            Ok(call) => self.on_call(call),
                            Err(_) => break,
                        }
                    }
                }
                changed = inputs.stop.changed(), if drain_until.is_none() => {
                    if changed.is_err() || *inputs.stop.borrow() {
                        // New calls now fail fast; queued ones are refused.
                        inputs.calls.close();
                        while let Ok(call) = inputs.calls.try_recv() {
                            drop(call);
                        }
                        drain_until = Some(tokio::time::Instant::now() + inputs.drain);
                    }
                }
                () = tokio::time::sleep_until(drain_until.unwrap_or(far)), if drain_until.is_some() => break,
                else => break,
            }
            self.flush();
            if drain_until.is_some() && self.pending.is_empty() && self.node.unsynced_writes() == 0
            {
                break;
            }
        }
        if !self.pending.is_empty() {
            tracing::warn!(
                requests = self.pending.len(),
                "stopping with requests in flight; their outcome is unknown to their clients"
            );
        }
        self.persist
    }

    fn on_durable(&mut self, ack: Ack) {
        match ack {
            Ok(through) => {
                let now = self.clock.now();
                self.node.handle_durable(now, through);
            }
            Err(error) => persist::fail_stop(&error),
        }
    }

    fn on_peer(&mut self, PeerEvent { from, message }: PeerEvent) {
        let changed = match &message {
            // A peer's proposal that changes who holds a name, or ends a
            // grant: waiters and watches here should look again.
            Message::Accept { name, value, .. } => {
                let before = self
                    .node
                    .acceptor_state(name)
                    .and_then(|d| d.accepted)
                    .map(|(_, v)| holder_and_token(&v));
                (before != Some(holder_and_token(value))).then(|| name.clone())
            }
            Message::Nack { .. } => {
                self.metrics.nack_received();
                None
            }
            _ => None,
        };
        let now = self.clock.now();
        self.node.handle_message(now, from, message);
        if let Some(name) = changed {
            self.wakeups.notify(&name);
        }
    }

    fn on_call(&mut self, ClientCall { name, op, reply }: ClientCall) {
        if reply.is_closed() {
            return; // The client gave up while queued: do not start a round.
        }
        let request = RequestId(self.next_request);
        self.next_request += 1;
        self.pending.insert(
            request,
            Pending {
                name: name.clone(),
                op: op_label(&op),
                reply,
            },
        );
        let now = self.clock.now();
        self.node.submit(now, request, name, op);
    }

    /// Drain the core's outputs, in the order `node.rs` documents.
    fn flush(&mut self) {
        let writes: Vec<_> = std::iter::from_fn(|| self.node.poll_write()).collect();
        if !writes.is_empty() {
            self.persist.submit(writes);
        }
        while let Some(transmit) = self.node.poll_transmit() {
            self.count(&transmit.message);
            self.peers.send(transmit.to, transmit.message);
        }
        while let Some(reply) = self.node.poll_reply() {
            self.complete(reply);
        }
    }

    fn complete(&mut self, Reply { request, result }: Reply) {
        let Some(pending) = self.pending.remove(&request) else {
            return;
        };
        self.metrics.outcome(pending.op, outcome_label(&result));
        let name = &pending.name;
        match &result {
            Ok(Outcome::Granted { ttl, .. }) => {
                self.metrics.lease_held(
                    name,
                    std::time::Instant::now() + ttl_duration(ttl.as_millis()),
                );
                self.wakeups.notify(name);
            }
            Ok(Outcome::Renewed { ttl, .. }) => {
                self.metrics.lease_held(
                    name,
                    std::time::Instant::now() + ttl_duration(ttl.as_millis()),
                );
            }
            Ok(Outcome::Released { .. }) => {
                self.metrics.lease_ended(name);
                self.wakeups.notify(name);
            }
            Ok(Outcome::Observed(view) | Outcome::Conflict(view))
                if !matches!(view, LeaseView::Held { .. }) =>
            {
                self.metrics.lease_ended(name);
            }
            _ => {}
        }
        // The client may have gone; the outcome stands either way.
        let _ = pending.reply.send(result);
    }

    fn count(&mut self, message: &Message) {
        let (kind, phase) = match message {
            Message::Prepare { name, ballot } => ("prepare", Some((name, ballot.counter))),
            Message::Accept { name, ballot, .. } => ("accept", Some((name, ballot.counter))),
            Message::Peek { name, id } => ("peek", Some((name, *id))),
            Message::Promise { .. } => ("promise", None),
            Message::Accepted { .. } => ("accepted", None),
            Message::Nack { .. } => ("nack", None),
            Message::Peeked { .. } => ("peeked", None),
        };
        self.metrics.message_sent(kind);
        if let Some((name, n)) = phase {
            let key = (kind, name.clone(), n);
            if self.last_phase.as_ref() != Some(&key) {
                self.metrics.round_phase(kind);
                self.last_phase = Some(key);
            }
        }
    }
}

fn holder_and_token(value: &LeaseValue) -> (Token, Option<HolderId>) {
    (value.token, value.grant.as_ref().map(|g| g.holder.clone()))
}

fn ttl_duration(ttl_ms: u64) -> Duration {
    Duration::from_millis(ttl_ms)
}

pub fn op_label(op: &Op) -> &'static str {
    match op {
        Op::Acquire { .. } => "acquire",
        Op::Renew { .. } => "renew",
        Op::Release { .. } => "release",
        Op::Read => "read",
    }
}

fn outcome_label(result: &Result<Outcome, Failure>) -> &'static str {
    match result {
        Ok(Outcome::Granted { .. }) => "granted",
        Ok(Outcome::Renewed { .. }) => "renewed",
        Ok(Outcome::Released { .. }) => "released",
        Ok(Outcome::Observed(_)) => "observed",
        Ok(Outcome::Conflict(_)) => "conflict",
        Err(Failure::Unavailable { .. }) => "unavailable",
        Err(Failure::Overloaded) => "overloaded",
    }
}
