//! The peer transport: TCP between nodes, one outbound connection per peer.
//!
//! Each node dials every other member and only ever WRITES on the
//! connection it dialled; it READS on the connections others dialled to it.
//! So each direction between two nodes is one connection, owned by one
//! task, and there is nothing to de-duplicate.
//!
//! Loss is fine (the proposer retries on its phase timer), so every queue
//! here is bounded and drops when full; what must never happen is a node
//! blocking on a slow peer.

pub mod frame;
mod inbound;
mod outbound;
pub mod rates;

use crate::clock::Clock;
use crate::metrics::Metrics;
use rates::Rates;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tenure_core::{Message, NodeId, Stamp};
use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};

/// A peer connection: TCP, or TLS over it.
trait Wire: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Wire for T {}
type Conn = Box<dyn Wire>;
type FrameReader = FramedRead<ReadHalf<Conn>, LengthDelimitedCodec>;
type FrameWriter = FramedWrite<WriteHalf<Conn>, LengthDelimitedCodec>;

/// Frames both ways over `conn`.
fn framed(conn: Conn) -> (FrameReader, FrameWriter) {
    let (read, write) = tokio::io::split(conn);
    (
        FramedRead::new(read, frame::codec()),
        FramedWrite::new(write, frame::codec()),
    )
}

/// A message from a peer, as the transport delivers it to the node loop.
#[derive(Debug)]
pub struct PeerEvent {
    pub from: NodeId,
    pub stamp: Stamp,
    pub message: Message,
}

/// What the transport knows of one peer's reachability.
#[derive(Debug, Default)]
pub struct LinkState {
    /// Our connection to the peer is up (hello sent, no error since).
    connected: AtomicBool,
    /// When the peer last sent us a message on its connection to us.
    last_heard: Mutex<Option<Instant>>,
    /// The peer's hello was refused for its drift bound, and the log has
    /// said so (once: it dials again and again).
    refusal_logged: AtomicBool,
    /// The life (incarnation, boot id) the peer's latest admitted hello
    /// named: a lower incarnation, or the same one from another process, is
    /// a second node with its id, or the node on a fresh data directory.
    life: Mutex<Option<(u32, u64)>>,
    /// The last reason the peer gave for refusing this node's hello, so
    /// that each new reason is logged once, not at every redial.
    refused_for: Mutex<Option<String>>,
    /// This node's recent lowest offset of the peer's frames, echoed in
    /// every frame this node sends it (`rates.rs`, round trips).
    echo: Mutex<Option<i64>>,
}

impl LinkState {
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    fn set_connected(&self, up: bool) {
        self.connected.store(up, Ordering::Relaxed);
    }

    /// Whether this is the first refusal of the peer's hello to be logged.
    fn refuse_once(&self) -> bool {
        !self.refusal_logged.swap(true, Ordering::Relaxed)
    }

    /// Take `(incarnation, boot)` as the peer's current life, unless an
    /// earlier hello named a later incarnation, or the same one from
    /// another process (every start takes a new incarnation); returns the
    /// life seen then.
    fn admit_life(&self, incarnation: u32, boot: u64) -> Result<(), (u32, u64)> {
        let mut life = self.life.lock().unwrap_or_else(|e| e.into_inner());
        match *life {
            Some((seen, seen_boot))
                if incarnation < seen || (incarnation == seen && boot != seen_boot) =>
            {
                Err((seen, seen_boot))
            }
            _ => {
                *life = Some((incarnation, boot));
                Ok(())
            }
        }
    }

    /// Whether `reason` differs from the last refusal the peer gave.
    fn new_refusal(&self, reason: Option<&str>) -> bool {
        let mut last = self.refused_for.lock().unwrap_or_else(|e| e.into_inner());
        let new = last.as_deref() != reason;
        *last = reason.map(str::to_string);
        new
    }

    fn set_echo(&self, offset: Option<i64>) {
        *self.echo.lock().unwrap_or_else(|e| e.into_inner()) = offset;
    }

    fn echo(&self) -> Option<i64> {
        *self.echo.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn last_heard(&self) -> Option<Duration> {
        let at = *self.last_heard.lock().unwrap_or_else(|e| e.into_inner());
        at.map(|t| t.elapsed())
    }

    fn heard(&self) {
        *self.last_heard.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }
}

/// How long a peer may say nothing before this node counts it out of
/// touch: an idle link ticks every 50 ms, so this is ten ticks missed.
pub const OUT_OF_TOUCH_AFTER: Duration = Duration::from_millis(500);

/// Every member's address and link, this node's included.
pub type MemberLinks = BTreeMap<NodeId, (String, Arc<LinkState>)>;

/// A read-only view of every member's link, for `/v1/cluster` and metrics.
#[derive(Clone, Debug)]
pub struct PeerView {
    pub me: NodeId,
    /// Replaced when the node adopts a configuration with other members
    /// (`PeerNet::set_members`).
    pub(super) members: Arc<RwLock<MemberLinks>>,
    /// This node's drift bound, which every peer's hello must match.
    pub max_drift_ppm: u32,
    /// This node's cluster identity, which every peer's hello must match.
    pub identity: Arc<str>,
    /// Peer TLS: a hello's id must be the one its certificate proves.
    /// None with `--insecure-peers`, where ids are taken on trust.
    pub tls: Option<Arc<crate::tls::PeerTls>>,
    /// Every peer's clock rate against this node's, and whether this
    /// node's clock is the odd one out.
    pub rates: Arc<Rates>,
    pub clock: Clock,
}

impl PeerView {
    /// The members now, with their links.
    pub fn members(&self) -> MemberLinks {
        self.members
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The link of member `id`; `None` if it is not a member now.
    pub fn link(&self, id: NodeId) -> Option<Arc<LinkState>> {
        let members = self.members.read().unwrap_or_else(|e| e.into_inner());
        members.get(&id).map(|(_, link)| link.clone())
    }

    /// The members this node has lost touch with: its connection to them
    /// is down, or they have sent nothing for `OUT_OF_TOUCH_AFTER`. A
    /// handoff passes over their waiters (`Node::set_out_of_touch`).
    pub fn out_of_touch(&self) -> Vec<NodeId> {
        let members = self.members.read().unwrap_or_else(|e| e.into_inner());
        members
            .iter()
            .filter(|(id, _)| **id != self.me)
            .filter(|(_, (_, link))| {
                !link.connected() || link.last_heard().is_none_or(|d| d > OUT_OF_TOUCH_AFTER)
            })
            .map(|(id, _)| *id)
            .collect()
    }

    /// Members this node can currently send to, itself included.
    pub fn reachable(&self) -> usize {
        self.members()
            .iter()
            .filter(|(id, (_, link))| **id == self.me || link.connected())
            .count()
    }

    pub fn render_metrics(&self) -> String {
        let members = self.members();
        let mut out = String::from(
            "# HELP tenure_peer_connected Whether this node's connection to a peer is up.\n\
             # TYPE tenure_peer_connected gauge\n",
        );
        for (id, (_, link)) in &members {
            if *id != self.me {
                out.push_str(&format!(
                    "tenure_peer_connected{{peer=\"{}\"}} {}\n",
                    id.0,
                    u8::from(link.connected())
                ));
            }
        }
        out.push_str(
            "# HELP tenure_peer_last_heard_seconds Since a peer last sent this node anything (idle links tick every 50 ms).\n\
             # TYPE tenure_peer_last_heard_seconds gauge\n",
        );
        for (id, (_, link)) in &members {
            if let (false, Some(age)) = (*id == self.me, link.last_heard()) {
                out.push_str(&format!(
                    "tenure_peer_last_heard_seconds{{peer=\"{}\"}} {:.3}\n",
                    id.0,
                    age.as_secs_f64()
                ));
            }
        }
        out.push_str(
            "# HELP tenure_peer_round_trip_seconds The lowest round trip to a peer in the last 300 ms, from the clock stamps of frames both ways (queueing mostly excluded).\n\
             # TYPE tenure_peer_round_trip_seconds gauge\n",
        );
        for id in members.keys().filter(|id| **id != self.me) {
            if let Some(rtt) = self.rates.round_trip(*id) {
                out.push_str(&format!(
                    "tenure_peer_round_trip_seconds{{peer=\"{}\"}} {:.6}\n",
                    id.0,
                    rtt.as_secs_f64()
                ));
            }
        }
        let quorum = members.len() / 2 + 1;
        out.push_str(&format!(
            "# HELP tenure_quorum_reachable Whether this node can send to a quorum of members, itself included.\n\
             # TYPE tenure_quorum_reachable gauge\n\
             tenure_quorum_reachable {}\n",
            u8::from(self.reachable() >= quorum)
        ));
        out.push_str(
            "# HELP tenure_clock_rate_ppm How much faster a peer's clock runs than this node's, in ppm.\n\
             # TYPE tenure_clock_rate_ppm gauge\n",
        );
        for (id, rate) in self.rates.last_rates() {
            out.push_str(&format!(
                "tenure_clock_rate_ppm{{peer=\"{}\"}} {:.0}\n",
                id.0, rate.ppm
            ));
        }
        out.push_str(&format!(
            "# HELP tenure_clock_refusing Whether this node refuses requests because its clock disagrees with a majority.\n\
             # TYPE tenure_clock_refusing gauge\n\
             tenure_clock_refusing {}\n",
            u8::from(self.rates.refusal().is_some())
        ));
        out
    }
}

struct Link {
    addr: String,
    queue: mpsc::Sender<(Stamp, Message)>,
}

/// The sending side, owned by the node loop.
pub struct PeerNet {
    links: BTreeMap<NodeId, Link>,
    metrics: Arc<Metrics>,
    dial: Dial,
}

/// What starting a link to a new member takes.
struct Dial {
    hello: Hello,
    queue_bound: usize,
    shutdown: watch::Receiver<bool>,
    view: PeerView,
    /// The addresses the operator gave at start: they win over those a
    /// configuration carries, so that a node moved to a new address is
    /// found there once its peers are restarted with it.
    given: BTreeMap<NodeId, String>,
}

impl PeerNet {
    /// See `PeerView::out_of_touch`.
    pub fn out_of_touch(&self) -> Vec<NodeId> {
        self.dial.view.out_of_touch()
    }

    /// Hand `message` to `to`'s connection task; dropped if its queue is
    /// full (the peer is slow or unreachable).
    pub fn send(&self, to: NodeId, stamp: Stamp, message: Message) {
        let Some(link) = self.links.get(&to) else {
            return; // Not a member now: a message of a past configuration.
        };
        if link.queue.try_send((stamp, message)).is_err() {
            self.metrics.peer_dropped(to.0);
        }
    }

    /// Link to `members` at `addresses` (the node's configuration): dial
    /// members new to this node, stop dialling those no longer members.
    pub fn set_members(&mut self, members: &[NodeId], addresses: &BTreeMap<NodeId, String>) {
        let dial = &self.dial;
        let me = dial.hello.me;
        let mut view = BTreeMap::new();
        let known = dial.view.members();
        for &id in members {
            let Some(addr) = dial.given.get(&id).or_else(|| addresses.get(&id)) else {
                tracing::warn!(peer = %id, "no address is known for member {id}: it cannot be dialled");
                continue;
            };
            let kept = known.get(&id).filter(|(old, _)| old == addr);
            let state = kept.map_or_else(Default::default, |(_, link)| link.clone());
            view.insert(id, (addr.clone(), state.clone()));
            let linked = self.links.get(&id).is_some_and(|l| l.addr == *addr);
            if id == me || linked {
                continue; // The core delivers a node's messages to itself.
            }
            if known.contains_key(&id) {
                tracing::info!(peer = %id, %addr, "a member's address changed: dialling it there");
            } else if !known.is_empty() {
                tracing::info!(peer = %id, %addr, "a new member: dialling it");
            }
            let (tx, rx) = mpsc::channel(dial.queue_bound.max(1));
            self.links.insert(
                id,
                Link {
                    addr: addr.clone(),
                    queue: tx,
                },
            );
            tokio::spawn(outbound::run(
                dial.hello.clone(),
                id,
                addr.clone(),
                rx,
                state,
                self.metrics.clone(),
                dial.shutdown.clone(),
            ));
        }
        // Dropping a link's queue ends its task.
        self.links.retain(|id, _| view.contains_key(id));
        for gone in known.keys().filter(|id| !view.contains_key(id)) {
            tracing::info!(peer = %gone, "no longer a member: its link is closed");
        }
        dial.view.rates.set_members(view.len());
        *dial.view.members.write().unwrap_or_else(|e| e.into_inner()) = view;
    }
}

/// What a node says of itself when it dials a peer, and the clock it
/// stamps its frames with.
#[derive(Clone, Debug)]
pub struct Hello {
    pub me: NodeId,
    pub max_drift_ppm: u32,
    pub clock: Clock,
    /// Refuse requests while this node's clock disagrees with a majority.
    pub clock_check: bool,
    /// The cluster id and member ids (`crate::identity`): every member's
    /// must be the same.
    pub identity: Arc<str>,
    /// This life of the node: a member's never goes back.
    pub incarnation: u32,
    /// Random for each process: two processes that claim one id in one
    /// incarnation are told apart by it.
    pub boot: u64,
    /// How the node proves its id, and checks its peers': mutual TLS, or
    /// nothing with `--insecure-peers`.
    pub tls: Option<Arc<crate::tls::PeerTls>>,
}

/// Start the transport: an accept loop on `listener` and the clock-rate
/// watchdog; [`PeerNet::set_members`] starts one dialling task per other
/// member. `peers` are the addresses the operator gave. Peer messages are
/// delivered into `events`.
pub fn start(
    hello: Hello,
    peers: &BTreeMap<NodeId, String>,
    listener: TcpListener,
    events: mpsc::Sender<PeerEvent>,
    queue_bound: usize,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
) -> (PeerNet, PeerView) {
    let Hello {
        me,
        max_drift_ppm,
        clock,
        clock_check,
        ..
    } = hello;
    let rates = Arc::new(Rates::new(peers.len(), max_drift_ppm, clock_check));
    tokio::spawn(check_rates(rates.clone(), clock, shutdown.clone()));
    let view = PeerView {
        me,
        members: Arc::default(),
        max_drift_ppm,
        identity: hello.identity.clone(),
        tls: hello.tls.clone(),
        rates,
        clock,
    };
    tokio::spawn(inbound::accept_loop(
        listener,
        view.clone(),
        events,
        metrics.clone(),
        shutdown.clone(),
    ));
    let net = PeerNet {
        links: BTreeMap::new(),
        metrics,
        dial: Dial {
            hello,
            queue_bound,
            shutdown,
            view: view.clone(),
            given: peers.clone(),
        },
    };
    (net, view)
}

/// Bring the clock-rate verdict up to date every `CHECK_EVERY`.
async fn check_rates(rates: Arc<Rates>, clock: Clock, mut shutdown: watch::Receiver<bool>) {
    let mut every = tokio::time::interval(rates::CHECK_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => rates.check(clock.now().as_micros()),
            _ = shutdown.changed() => return,
        }
    }
}
