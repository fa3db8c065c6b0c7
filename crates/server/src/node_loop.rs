//! The node loop: one task owns the core `Node`, and is the only code that
//! touches it.
//!
//! Inputs arrive on four channels (durability acks, peer messages, client
//! calls, and cancels of calls whose client has gone) and one timer
//! (`poll_timeout`). After every input the loop follows the core's call
//! order: drain writes to storage, then transmits to peers, then replies to
//! clients, then the core's events (who to wake, what to count). The core
//! itself holds back any message whose writes are not yet durable, so this
//! loop cannot send one too early.
//!
//! Lazy records (renewals the acceptor acknowledged before their fsync)
//! are the one thing the loop holds back itself: for up to
//! `lazy_commit_delay`, so that a stream of renewals shares one fsync with
//! each other or with the next strict write, and a renewal does not wake
//! the committer while its answer is on the way. A strict write, or any
//! message that waits for a held record, sends them all to storage at once.

use crate::clock::Clock;
use crate::history::History;
use crate::metrics::{Metrics, NameCounts};
use crate::peer::{PeerEvent, PeerNet};
use crate::persist::{self, Ack, Persist};
use crate::wakeups::Wakeups;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tenure_core::{
    ChangeError, ChangeStep, Configuration, Event, Failure, LeaseName, LeaseView, Message, Node,
    NodeId, Op, Outcome, Reply, RequestId, Stamp, Write, WriteId,
};
use tokio::sync::{mpsc, oneshot, watch};

/// Inputs handled back-to-back before the loop drains its outputs, so that
/// writes from several inputs share one trip to storage.
const MAX_INPUTS_PER_STEP: usize = 64;

/// Lazy records held back at most, whatever the delay: one commit's worth.
const MAX_LAZY_HELD: usize = 1_024;

/// A client operation and where its outcome goes.
pub struct ClientCall {
    pub request: RequestId,
    pub name: LeaseName,
    pub op: Op,
    pub reply: oneshot::Sender<Result<Outcome, Failure>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    #[error(transparent)]
    Failed(#[from] Failure),
    /// The node is shutting down; the outcome of a write is unknown.
    #[error("this node is shutting down")]
    Stopping,
    /// This node's clock disagrees with a majority of the members' rates
    /// (`peer::rates`); nothing was done.
    #[error("{0}")]
    ClockDisagrees(String),
}

/// An operator's change of members (`/v1/members`), coordinated by this
/// node: to `target`, with the addresses of members new to the cluster.
pub struct MembersCall {
    pub target: Vec<NodeId>,
    pub addresses: BTreeMap<NodeId, String>,
    pub reply: oneshot::Sender<Result<(), ChangeError>>,
}

/// The node's configuration, and how far the change it coordinates is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MembersNow {
    pub configuration: Configuration,
    pub step: Option<ChangeStep>,
}

/// How HTTP handlers reach the node loop.
#[derive(Clone)]
pub struct NodeHandle {
    calls: mpsc::Sender<ClientCall>,
    cancels: mpsc::UnboundedSender<RequestId>,
    members: mpsc::Sender<MembersCall>,
    members_now: watch::Receiver<MembersNow>,
    next_request: Arc<AtomicU64>,
}

impl NodeHandle {
    pub fn new(
        calls: mpsc::Sender<ClientCall>,
        cancels: mpsc::UnboundedSender<RequestId>,
        members: mpsc::Sender<MembersCall>,
        members_now: watch::Receiver<MembersNow>,
    ) -> NodeHandle {
        NodeHandle {
            calls,
            cancels,
            members,
            members_now,
            next_request: Arc::new(AtomicU64::new(1)),
        }
    }

    /// The node's configuration now.
    pub fn members_now(&self) -> watch::Receiver<MembersNow> {
        self.members_now.clone()
    }

    /// Begin (or resume) a change of members to `target`, coordinated by
    /// this node.
    pub async fn change_members(
        &self,
        target: Vec<NodeId>,
        addresses: BTreeMap<NodeId, String>,
    ) -> Result<Result<(), ChangeError>, CallError> {
        let (reply, done) = oneshot::channel();
        let call = MembersCall {
            target,
            addresses,
            reply,
        };
        self.members
            .send(call)
            .await
            .map_err(|_| CallError::Stopping)?;
        done.await.map_err(|_| CallError::Stopping)
    }

    /// Ask the node. Dropping the future before it resolves tells the node
    /// the client has gone, so that a waiting acquire leaves its queue.
    pub async fn call(&self, name: LeaseName, op: Op) -> Result<Outcome, CallError> {
        let request = RequestId(self.next_request.fetch_add(1, Ordering::Relaxed));
        let mut gone = op.waits().then(|| CancelOnDrop {
            request,
            cancels: self.cancels.clone(),
        });
        let (reply, outcome) = oneshot::channel();
        self.calls
            .send(ClientCall {
                request,
                name,
                op,
                reply,
            })
            .await
            .map_err(|_| CallError::Stopping)?;
        let result = match outcome.await {
            Ok(result) => Ok(result?),
            Err(_) => Err(CallError::Stopping),
        };
        if let Some(guard) = gone.as_mut() {
            guard.disarm();
        }
        result
    }
}

/// Sends a cancel for its request unless disarmed first.
struct CancelOnDrop {
    request: RequestId,
    cancels: mpsc::UnboundedSender<RequestId>,
}

impl CancelOnDrop {
    fn disarm(&mut self) {
        self.request = RequestId(0);
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if self.request != RequestId(0) {
            // The loop may be gone already; then nothing waits anyway.
            let _ = self.cancels.send(self.request);
        }
    }
}

struct Pending {
    name: LeaseName,
    op: &'static str,
    waits: bool,
    reply: oneshot::Sender<Result<Outcome, Failure>>,
}

pub struct NodeLoop {
    node: Node,
    clock: Clock,
    persist: Persist,
    peers: PeerNet,
    wakeups: Wakeups,
    metrics: Arc<Metrics>,
    history: Arc<History>,
    pending: HashMap<RequestId, Pending>,
    lazy: LazyRecords,
    /// The names stored, as the metrics last heard.
    names_stored: Option<NameCounts>,
    /// The configuration as the peers and handlers last heard it.
    members: (Stamp, Option<ChangeStep>),
    members_now: watch::Sender<MembersNow>,
    /// Peers already said to have other members in this epoch.
    told_other_members: std::collections::HashSet<NodeId>,
    /// The peers the node was last told it is out of touch with.
    out_of_touch: Vec<NodeId>,
}

/// Lazy records not yet handed to storage.
struct LazyRecords {
    held: Vec<Write>,
    /// The highest write id handed to storage.
    submitted_through: u64,
    /// When the oldest held record must go, whatever else happens.
    due: Option<tokio::time::Instant>,
    delay: Duration,
}

/// What the loop tells of what happens: waiters and watchers, metrics,
/// and the names' histories.
pub struct Observers {
    pub wakeups: Wakeups,
    pub metrics: Arc<Metrics>,
    pub history: Arc<History>,
}

/// The channels the loop reads.
pub struct Inputs {
    pub calls: mpsc::Receiver<ClientCall>,
    pub members: mpsc::Receiver<MembersCall>,
    pub cancels: mpsc::UnboundedReceiver<RequestId>,
    pub peers: mpsc::Receiver<PeerEvent>,
    pub acks: mpsc::UnboundedReceiver<Ack>,
    /// Flips to true when the node should stop taking new calls.
    pub stop: watch::Receiver<bool>,
    /// How long to let rounds in flight finish once stopping.
    pub drain: Duration,
}

impl NodeLoop {
    /// Also returns what the node's configuration is, kept up to date.
    pub fn new(
        node: Node,
        clock: Clock,
        persist: Persist,
        peers: PeerNet,
        observers: Observers,
    ) -> (NodeLoop, watch::Receiver<MembersNow>) {
        let Observers {
            wakeups,
            metrics,
            history,
        } = observers;
        let now = MembersNow {
            configuration: node.configuration().clone(),
            step: node.change_step(),
        };
        let members = (node.stamp(), now.step);
        let (members_now, members_rx) = watch::channel(now);
        let node_loop = NodeLoop {
            node,
            clock,
            persist,
            peers,
            wakeups,
            metrics,
            history,
            pending: HashMap::new(),
            names_stored: None,
            members,
            members_now,
            told_other_members: Default::default(),
            out_of_touch: Vec::new(),
            lazy: LazyRecords {
                held: Vec::new(),
                submitted_through: 0,
                due: None,
                delay: crate::config::DEFAULT_LAZY_COMMIT_DELAY,
            },
        };
        (node_loop, members_rx)
    }

    /// How long lazy records may wait for company (zero: never).
    pub fn with_lazy_commit_delay(mut self, delay: Duration) -> NodeLoop {
        self.lazy.delay = delay;
        self
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
                    self.note_who_is_out_of_touch();
                    let now = self.clock.now();
                    self.node.handle_timeout(now);
                }
                // Before new calls, so that a steady stream of them cannot
                // keep lazy records from storage.
                () = tokio::time::sleep_until(self.lazy.due.unwrap_or(far)), if self.lazy.due.is_some() => {
                    self.commit(Vec::new(), true);
                }
                Some(request) = inputs.cancels.recv() => self.on_cancel(request),
                Some(call) = inputs.members.recv(), if drain_until.is_none() => {
                    let now = self.clock.now();
                    let result = self.node.change_members_at(now, call.target, &call.addresses);
                    let _ = call.reply.send(result);
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
                        self.stop_waiting();
                        drain_until = Some(tokio::time::Instant::now() + inputs.drain);
                    }
                }
                () = tokio::time::sleep_until(drain_until.unwrap_or(far)), if drain_until.is_some() => break,
                else => break,
            }
            self.flush(drain_until.is_some());
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

    fn on_peer(
        &mut self,
        PeerEvent {
            from,
            stamp,
            message,
        }: PeerEvent,
    ) {
        if matches!(message, Message::Nack { .. }) {
            self.metrics.nack_received();
        }
        if let Message::Configuration(theirs) = &message {
            self.say_if_other_members(from, theirs);
        }
        let now = self.clock.now();
        self.node.handle_message(now, from, stamp, message);
    }

    /// A peer of the same epoch with other members was started with
    /// other `--peers` on a fresh data directory: neither side acts on the
    /// other's messages, and each says so, once per peer.
    fn say_if_other_members(&mut self, from: NodeId, theirs: &Configuration) {
        let ours = self.node.configuration();
        if theirs.epoch != ours.epoch || theirs.stamp() == self.node.stamp() {
            return;
        }
        if self.told_other_members.insert(from) {
            tracing::error!(
                peer = %from,
                "{from} is at {} with members {:?} (joining {:?}), this node with members {:?}                  (joining {:?}): one of them was started with other --peers; neither acts on the                  other's messages",
                theirs.epoch,
                theirs.members,
                theirs.joining,
                ours.members,
                ours.joining
            );
        }
    }

    fn on_call(&mut self, call: ClientCall) {
        if call.reply.is_closed() {
            return; // The client gave up while queued: do not start a round.
        }
        let op = &call.op;
        if op.waits() {
            self.metrics.waiting_acquire(true);
        }
        self.pending.insert(
            call.request,
            Pending {
                name: call.name.clone(),
                op: op.kind(),
                waits: op.waits(),
                reply: call.reply,
            },
        );
        self.note_who_is_out_of_touch();
        let now = self.clock.now();
        self.node.submit(now, call.request, call.name, call.op);
    }

    /// Tell the node which peers it has lost touch with, when that changed:
    /// a release then passes over their waiters, which may have died with
    /// them. Checked before each call and timer, which is when rounds
    /// decide whom to hand a lease to.
    fn note_who_is_out_of_touch(&mut self) {
        let out = self.peers.out_of_touch();
        if out != self.out_of_touch {
            self.node.set_out_of_touch(&out);
            self.out_of_touch = out;
        }
    }

    fn on_cancel(&mut self, request: RequestId) {
        if self.pending.contains_key(&request) {
            let now = self.clock.now();
            self.node.cancel(now, request);
        }
    }

    /// At shutdown, waiting acquires leave their queues; their clients are
    /// told this node is stopping, and may wait through another.
    fn stop_waiting(&mut self) {
        let waiting: Vec<RequestId> = self
            .pending
            .iter()
            .filter(|(_, p)| p.waits)
            .map(|(request, _)| *request)
            .collect();
        let now = self.clock.now();
        for request in waiting {
            // Dropping the reply sender answers the client "stopping".
            if let Some(pending) = self.pending.get_mut(&request) {
                let (closed, _) = oneshot::channel();
                drop(std::mem::replace(&mut pending.reply, closed));
            }
            self.node.cancel(now, request);
        }
    }

    /// Drain the core's outputs, in the order `node.rs` documents; with
    /// `stopping`, hold no lazy record back.
    fn flush(&mut self, stopping: bool) {
        let writes: Vec<_> = std::iter::from_fn(|| self.node.poll_write()).collect();
        self.commit(writes, stopping);
        self.tell_members();
        while let Some(transmit) = self.node.poll_transmit() {
            self.metrics.message_sent(transmit.message.kind());
            self.peers
                .send(transmit.to, transmit.stamp, transmit.message);
        }
        while let Some(reply) = self.node.poll_reply() {
            self.complete(reply);
        }
        let names = NameCounts {
            stored: self.node.stored_names(),
            dead: self.node.dead_names(),
            compacted: self.node.compacted_names(),
            token_floor: self.node.token_floor().0,
        };
        if self.names_stored != Some(names) {
            self.names_stored = Some(names);
            self.metrics.names(names);
        }
        while let Some(event) = self.node.poll_event() {
            match event {
                Event::HolderChanged { name } => self.wakeups.notify(&name),
                Event::Phase { phase, .. } => self.metrics.round_phase(phase.kind()),
                Event::Chosen { proposer, chosen } => {
                    if proposer == self.node.id() {
                        for change in &chosen.changes {
                            self.metrics.lease_change(change.kind.kind());
                        }
                    }
                    self.history
                        .record(proposer, &chosen, std::time::Instant::now());
                    self.wakeups.notify(&chosen.name);
                }
            }
        }
    }

    /// Link to the members of a configuration the node adopted, before
    /// anything is sent under it, and tell the handlers.
    fn tell_members(&mut self) {
        let now = (self.node.stamp(), self.node.change_step());
        if now == self.members {
            return;
        }
        let configuration = self.node.configuration().clone();
        if now.0 != self.members.0 {
            tracing::info!(
                epoch = configuration.epoch.0,
                members = ?configuration.members,
                joining = ?configuration.joining,
                "this node adopted a configuration"
            );
            let everyone = configuration.quorums().members().to_vec();
            self.peers.set_members(&everyone, &configuration.addresses);
        }
        self.members = now;
        self.members_now.send_replace(MembersNow {
            configuration,
            step: now.1,
        });
    }

    /// Hand `writes` to storage, after the lazy records held back, or hold
    /// them too if they are all lazy, nothing waits for them, and `now` is
    /// not asked for.
    fn commit(&mut self, writes: Vec<Write>, now: bool) {
        let lazy = &mut self.lazy;
        lazy.held.extend(writes);
        let Some(last) = lazy.held.last() else {
            return;
        };
        let needed = |id: WriteId| id.0 > lazy.submitted_through;
        // Checked here too, not only by the loop's timer, which a steady
        // stream of peer messages ahead of it in the select would starve.
        let overdue = lazy
            .due
            .is_some_and(|due| due <= tokio::time::Instant::now());
        if now
            || overdue
            || lazy.delay.is_zero()
            || lazy.held.len() >= MAX_LAZY_HELD
            || needed(self.node.last_strict_write())
            || needed(self.node.awaited_write())
        {
            lazy.submitted_through = last.id.0;
            lazy.due = None;
            self.persist.submit(std::mem::take(&mut lazy.held));
        } else if lazy.due.is_none() {
            lazy.due = Some(tokio::time::Instant::now() + lazy.delay);
        }
    }

    fn complete(&mut self, Reply { request, result }: Reply) {
        let Some(pending) = self.pending.remove(&request) else {
            return;
        };
        if pending.waits {
            self.metrics.waiting_acquire(false);
        }
        let label = match &result {
            Ok(outcome) => outcome.kind(),
            Err(failure) => failure.kind(),
        };
        self.metrics.outcome(pending.op, label);
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
}

fn ttl_duration(ttl_ms: u64) -> Duration {
    Duration::from_millis(ttl_ms)
}
