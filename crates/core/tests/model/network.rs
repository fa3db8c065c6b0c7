//! The network: the messages in flight on each channel between two nodes.
//!
//! A FIFO channel keeps its messages in send order, as a connection does.
//! Without FIFO any message in flight may come next, so two states that
//! differ only in the order messages were sent are the same state; keeping
//! each channel sorted makes them hash alike, and the checker visits them
//! once. `Message` has no order of its own, so channels sort by a key that
//! mirrors every field of the message and its stamp.

use std::collections::BTreeMap;
use std::fmt;
use tenure_core::lease::{Grant, REMEMBERED_WRITES};
use tenure_core::{
    Ballot, Configuration, Epoch, HolderId, LeaseName, LeaseValue, LockDelay, Message, Micros,
    NodeId, Report, Stamp, Token, Ttl,
};

/// A message from one node (by index) to another, stamped with the
/// configuration its sender made it under.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Envelope {
    pub from: usize,
    pub to: usize,
    pub stamp: Stamp,
    pub message: Message,
}

type ValueKey = (
    Token,
    Option<(HolderId, Ttl, LockDelay)>,
    (u64, [Ballot; REMEMBERED_WRITES]),
);
type ReportKey = Option<(Ballot, ValueKey, Micros)>;

/// Every field of a [`Message`], in a type that orders; equal keys mean
/// equal messages, so the order is consistent with `Eq`.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum MessageKey {
    Prepare(Ballot),
    Promise(Ballot, ReportKey),
    Accept(Ballot, ValueKey, Micros),
    Accepted(Ballot, bool),
    Nack(Ballot, Ballot),
    Peek(u64),
    Peeked(u64, ReportKey, bool),
    Chosen(Ballot),
    Compact(Ballot),
    RaiseFloor(Token),
    FloorRaised(Token),
    Configuration(ConfigurationKey),
    Recorded,
    Rescan,
    Rescanned,
}

type ConfigurationKey = (Epoch, Vec<NodeId>, Vec<NodeId>, BTreeMap<NodeId, String>);

fn configuration_key(c: &Configuration) -> ConfigurationKey {
    (
        c.epoch,
        c.members.clone(),
        c.joining.clone(),
        c.addresses.clone(),
    )
}

fn value_key(value: &LeaseValue) -> ValueKey {
    let grant = value
        .grant
        .as_ref()
        .map(|g: &Grant| (g.holder.clone(), g.ttl, g.lock_delay));
    let writes = (value.writes.count, value.writes.recent);
    (value.token, grant, writes)
}

fn report_key(report: &Option<Report>) -> ReportKey {
    report
        .as_ref()
        .map(|r| (r.ballot, value_key(&r.value), r.age))
}

/// The key of a message and its stamp: equal keys, equal stamped messages.
type StampedKey<'a> = ((Epoch, u64), Option<&'a LeaseName>, MessageKey);

fn message_key<'a>(stamp: &Stamp, message: &'a Message) -> StampedKey<'a> {
    let key = match message {
        Message::Prepare { ballot, .. } => MessageKey::Prepare(*ballot),
        Message::Promise {
            ballot, accepted, ..
        } => MessageKey::Promise(*ballot, report_key(accepted)),
        Message::Accept {
            ballot, value, age, ..
        } => MessageKey::Accept(*ballot, value_key(value), *age),
        Message::Accepted {
            ballot, durable, ..
        } => MessageKey::Accepted(*ballot, *durable),
        Message::Nack {
            ballot, promised, ..
        } => MessageKey::Nack(*ballot, *promised),
        Message::Peek { id, .. } => MessageKey::Peek(*id),
        Message::Peeked {
            id,
            accepted,
            durable,
            ..
        } => MessageKey::Peeked(*id, report_key(accepted), *durable),
        // The model never sends news of chosen values (cluster.rs).
        Message::Chosen(c) => MessageKey::Chosen(c.ballot),
        Message::Compact { ballot, .. } => MessageKey::Compact(*ballot),
        Message::RaiseFloor { token } => MessageKey::RaiseFloor(*token),
        Message::FloorRaised { token } => MessageKey::FloorRaised(*token),
        Message::Configuration(c) => MessageKey::Configuration(configuration_key(c)),
        Message::Recorded => MessageKey::Recorded,
        Message::Rescan => MessageKey::Rescan,
        Message::Rescanned => MessageKey::Rescanned,
    };
    ((stamp.epoch, stamp.digest), message.name(), key)
}

/// One line per envelope in counterexample traces: `n1→n2 Prepare 1.1.1`.
impl fmt::Debug for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}→n{} ", self.from + 1, self.to + 1)?;
        // Every message of the first epoch is stamped alike: name the
        // epoch only once a change has moved on from it.
        if self.stamp.epoch != Epoch::FIRST {
            write!(f, "[e{}] ", self.stamp.epoch.0)?;
        }
        let report = |r: &Option<Report>| match r {
            None => "nothing".to_string(),
            Some(r) => format!("{} {} age {}", r.ballot, value(&r.value), r.age),
        };
        match &self.message {
            Message::Prepare { ballot, .. } => write!(f, "Prepare {ballot}"),
            Message::Promise {
                ballot, accepted, ..
            } => write!(f, "Promise {ballot} (accepted {})", report(accepted)),
            Message::Accept {
                ballot,
                value: v,
                age,
                ..
            } => write!(f, "Accept {ballot} {} age {age}", value(v)),
            Message::Accepted { ballot, .. } => write!(f, "Accepted {ballot}"),
            Message::Nack {
                ballot, promised, ..
            } => write!(f, "Nack {ballot} (promised {promised})"),
            Message::Peek { id, .. } => write!(f, "Peek #{id}"),
            Message::Peeked { id, accepted, .. } => {
                write!(f, "Peeked #{id} ({})", report(accepted))
            }
            Message::Chosen(c) => write!(f, "Chosen {}", c.ballot),
            Message::Compact { ballot, .. } => write!(f, "Compact {ballot}"),
            Message::RaiseFloor { token } => write!(f, "RaiseFloor {token}"),
            Message::FloorRaised { token } => write!(f, "FloorRaised {token}"),
            Message::Configuration(c) => {
                let ids = |list: &[NodeId]| {
                    let ids: Vec<String> = list.iter().map(|m| m.0.to_string()).collect();
                    ids.join(",")
                };
                write!(f, "Configuration {} {{{}}}", c.epoch, ids(&c.members))?;
                if !c.joining.is_empty() {
                    write!(f, "+{{{}}}", ids(&c.joining))?;
                }
                Ok(())
            }
            Message::Recorded => write!(f, "Recorded"),
            Message::Rescan => write!(f, "Rescan"),
            Message::Rescanned => write!(f, "Rescanned"),
        }
    }
}

/// A register value in one word: `free/3` or `b/3` (holder b, token 3).
pub fn value(v: &LeaseValue) -> String {
    match &v.grant {
        None => format!("free/{}", v.token),
        Some(g) => format!("{}/{}", g.holder, v.token),
    }
}

/// The messages in flight, per channel `(from, to)`. With `fifo` each
/// channel delivers in send order (a TCP connection); otherwise any message
/// in flight may come next, and each channel is kept sorted so that the
/// order of sending does not tell states apart.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Network {
    channels: BTreeMap<(usize, usize), Vec<(Stamp, Message)>>,
}

impl Network {
    pub fn send(&mut self, envelope: Envelope, fifo: bool) {
        let channel = self
            .channels
            .entry((envelope.from, envelope.to))
            .or_default();
        let stamped = (envelope.stamp, envelope.message);
        if fifo {
            channel.push(stamped);
        } else {
            let key = message_key(&stamped.0, &stamped.1);
            let at = channel.partition_point(|(st, m)| message_key(st, m) <= key);
            channel.insert(at, stamped);
        }
    }

    /// Whether nothing is in flight from node `from` to node `to`.
    pub fn is_idle(&self, from: usize, to: usize) -> bool {
        !self.channels.contains_key(&(from, to))
    }

    /// How many messages are in flight.
    pub fn len(&self) -> usize {
        self.channels.values().map(Vec::len).sum()
    }

    /// Take one copy of `envelope` out of the network (the first one).
    pub fn take(&mut self, envelope: &Envelope) {
        let key = (envelope.from, envelope.to);
        if let Some(channel) = self.channels.get_mut(&key) {
            if let Some(at) = channel.iter().position(|m| is(envelope, m)) {
                channel.remove(at);
            }
            if channel.is_empty() {
                self.channels.remove(&key);
            }
        }
    }

    /// Take every copy of `envelope` out of the network.
    pub fn forget(&mut self, envelope: &Envelope) {
        let key = (envelope.from, envelope.to);
        if let Some(channel) = self.channels.get_mut(&key) {
            channel.retain(|m| !is(envelope, m));
            if channel.is_empty() {
                self.channels.remove(&key);
            }
        }
    }

    /// The envelopes that may be delivered next, without repeats: the head
    /// of each channel with `fifo`, else every message.
    pub fn deliverable(&self, fifo: bool) -> Vec<Envelope> {
        self.collect(|at, _| !fifo || at == 0)
    }

    /// The messages behind the head of their channel that differ from it:
    /// with `fifo`, delivering one of them is a reordering.
    pub fn overtaking(&self) -> Vec<Envelope> {
        self.collect(|at, channel| at > 0 && channel[at] != channel[0])
    }

    fn collect(&self, pick: impl Fn(usize, &[(Stamp, Message)]) -> bool) -> Vec<Envelope> {
        let mut out: Vec<Envelope> = Vec::new();
        for (&(from, to), channel) in &self.channels {
            for (at, stamped) in channel.iter().enumerate() {
                let repeat = channel[..at].contains(stamped);
                if pick(at, channel) && !repeat {
                    out.push(envelope(from, to, stamped));
                }
            }
        }
        out
    }

    /// Every envelope in flight, repeats included.
    pub fn all(&self) -> impl Iterator<Item = Envelope> + '_ {
        self.channels.iter().flat_map(|(&(from, to), channel)| {
            channel
                .iter()
                .map(move |stamped| envelope(from, to, stamped))
        })
    }
}

fn envelope(from: usize, to: usize, (stamp, message): &(Stamp, Message)) -> Envelope {
    Envelope {
        from,
        to,
        stamp: *stamp,
        message: message.clone(),
    }
}

/// Whether `stamped`, on `envelope`'s channel, is `envelope`.
fn is(envelope: &Envelope, (stamp, message): &(Stamp, Message)) -> bool {
    *stamp == envelope.stamp && *message == envelope.message
}
