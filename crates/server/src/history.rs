//! Each name's last changes, as this node learnt them: the values it
//! proposed and saw chosen, and those its peers told it of. Kept in memory
//! only, bounded per name and in names: an operator's record of the
//! recent past, not part of the protocol.

use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tenure_core::{Ballot, Chosen, LeaseName, NodeId, TransitionKind};
use tokio::sync::broadcast;

/// Changes kept per name unless configured otherwise.
pub const DEFAULT_PER_NAME: usize = 32;
/// Names whose history is kept; the least recently changed give way.
pub const MAX_NAMES: usize = 10_000;

#[derive(Clone, Debug)]
struct Entry {
    /// The chosen value's ballot, and the change's place within it:
    /// the same order on every node.
    order: (Ballot, usize),
    kind: TransitionKind,
    holder: String,
    token: u64,
    ttl_ms: u64,
    proposer: NodeId,
    took: Duration,
    /// When it happened on this node's clock: when this node learnt it,
    /// less how long before that an expiry had happened.
    at: Instant,
}

/// One change as the API shows it, newest first.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Change {
    pub change: &'static str,
    pub holder: String,
    pub token: u64,
    pub ttl_ms: u64,
    /// The node whose proposal made the change.
    pub proposer: u16,
    /// From the start of the proposer's round to the value chosen.
    pub took_ms: f64,
    /// When it happened, in milliseconds since the Unix epoch by this
    /// node's wall clock (converted from its monotonic clock at reading).
    pub at_unix_ms: u64,
    /// How long ago it happened, on this node's monotonic clock.
    pub ago_ms: u64,
}

#[derive(Default)]
struct Names {
    by_name: HashMap<LeaseName, (u64, VecDeque<Entry>)>,
    /// Counts changes learnt: which name changed least recently.
    learnt: u64,
}

pub struct History {
    per_name: usize,
    names: Mutex<Names>,
    /// The name of every change learnt, for live pages.
    news: broadcast::Sender<LeaseName>,
}

/// Names announced to live pages before a slow one falls behind (it then
/// starts over from the recent names).
const NEWS_BUFFERED: usize = 1_024;

impl History {
    /// A history of `per_name` changes per name (0 keeps none).
    pub fn new(per_name: usize) -> History {
        History {
            per_name,
            names: Mutex::new(Names::default()),
            news: broadcast::channel(NEWS_BUFFERED).0,
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Names) -> R) -> R {
        f(&mut self.names.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Record what a chosen value changed, learnt `now`.
    pub fn record(&self, proposer: NodeId, chosen: &Chosen, now: Instant) {
        // Nobody listening is no error.
        let _ = self.news.send(chosen.name.clone());
        if self.per_name == 0 || chosen.changes.is_empty() {
            return;
        }
        let per_name = self.per_name;
        self.with(|names| {
            names.learnt += 1;
            let learnt = names.learnt;
            if !names.by_name.contains_key(&chosen.name) && names.by_name.len() >= MAX_NAMES {
                evict_oldest(&mut names.by_name);
            }
            let (last, entries) = names.by_name.entry(chosen.name.clone()).or_default();
            *last = learnt;
            for (i, t) in chosen.changes.iter().enumerate() {
                let entry = Entry {
                    order: (chosen.ballot, i),
                    kind: t.kind,
                    holder: t.holder.as_str().to_string(),
                    token: t.token.0,
                    ttl_ms: t.ttl.as_millis(),
                    proposer,
                    took: Duration::from_micros(chosen.took.0),
                    at: now
                        .checked_sub(Duration::from_micros(t.ago.0))
                        .unwrap_or(now),
                };
                // Newest first; news may arrive out of order, and twice.
                let at = entries.partition_point(|e| e.order > entry.order);
                if entries.get(at).is_some_and(|e| e.order == entry.order) {
                    continue;
                }
                entries.insert(at, entry);
            }
            entries.truncate(per_name);
        });
    }

    /// The changes of `name`, newest first.
    pub fn of(&self, name: &LeaseName) -> Vec<Change> {
        let now = Instant::now();
        let wall_now = SystemTime::now();
        self.with(|names| {
            let Some((_, entries)) = names.by_name.get(name) else {
                return Vec::new();
            };
            entries
                .iter()
                .map(|e| {
                    let ago = now.saturating_duration_since(e.at);
                    let at = wall_now
                        .checked_sub(ago)
                        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                        .unwrap_or_default();
                    Change {
                        change: e.kind.kind(),
                        holder: e.holder.clone(),
                        token: e.token,
                        ttl_ms: e.ttl_ms,
                        proposer: e.proposer.0,
                        took_ms: e.took.as_micros() as f64 / 1e3,
                        at_unix_ms: u64::try_from(at.as_millis()).unwrap_or(u64::MAX),
                        ago_ms: u64::try_from(ago.as_millis()).unwrap_or(u64::MAX),
                    }
                })
                .collect()
        })
    }

    /// Each name whose change this node learns from now on.
    pub fn news(&self) -> broadcast::Receiver<LeaseName> {
        self.news.subscribe()
    }

    /// Up to `limit` names, the most recently changed first.
    pub fn recent_names(&self, limit: usize) -> Vec<LeaseName> {
        self.with(|names| {
            let mut all: Vec<(u64, &LeaseName)> =
                names.by_name.iter().map(|(n, (l, _))| (*l, n)).collect();
            all.sort_unstable_by_key(|(learnt, _)| std::cmp::Reverse(*learnt));
            all.into_iter()
                .take(limit)
                .map(|(_, n)| n.clone())
                .collect()
        })
    }

    /// How many names have a history here.
    pub fn names(&self) -> usize {
        self.with(|names| names.by_name.len())
    }
}

/// Drop the tenth of names that changed least recently: amortized, so a
/// stream of new names costs no scan each.
fn evict_oldest(by_name: &mut HashMap<LeaseName, (u64, VecDeque<Entry>)>) {
    let mut learnt: Vec<u64> = by_name.values().map(|(l, _)| *l).collect();
    let cut = learnt.len() / 10;
    let (_, threshold, _) = learnt.select_nth_unstable(cut);
    let threshold = *threshold;
    by_name.retain(|_, (l, _)| *l > threshold);
}

#[cfg(test)]
mod tests {
    use super::*;
    use tenure_core::{HolderId, Micros, Token, Transition, Ttl};

    fn chosen(name: &str, counter: u64, changes: &[(TransitionKind, u64)]) -> Chosen {
        Chosen {
            name: LeaseName::new(name).expect("name"),
            ballot: Ballot {
                counter,
                node: 1,
                incarnation: 1,
            },
            took: Micros::from_millis(2),
            changes: changes
                .iter()
                .map(|(kind, token)| Transition {
                    kind: *kind,
                    holder: HolderId::new("h").expect("holder"),
                    token: Token(*token),
                    ttl: Ttl::from_millis(1_000).expect("ttl"),
                    ago: Micros::ZERO,
                })
                .collect(),
        }
    }

    #[test]
    fn newest_first_by_ballot_whatever_order_news_arrives_in() {
        use TransitionKind::*;
        let h = History::new(32);
        let now = Instant::now();
        h.record(
            NodeId(2),
            &chosen("a", 5, &[(Released, 1), (Granted, 2)]),
            now,
        );
        h.record(NodeId(1), &chosen("a", 2, &[(Granted, 1)]), now);
        h.record(NodeId(1), &chosen("a", 2, &[(Granted, 1)]), now);
        let got: Vec<_> = h
            .of(&LeaseName::new("a").expect("name"))
            .iter()
            .map(|c| (c.change, c.token, c.proposer))
            .collect();
        assert_eq!(
            got,
            [("granted", 2, 2), ("released", 1, 2), ("granted", 1, 1)]
        );
    }

    #[test]
    fn bounded_per_name_and_in_names() {
        let h = History::new(3);
        let now = Instant::now();
        for c in 1..=10 {
            h.record(
                NodeId(1),
                &chosen("a", c, &[(TransitionKind::Granted, c)]),
                now,
            );
        }
        let a = h.of(&LeaseName::new("a").expect("name"));
        assert_eq!(a.iter().map(|c| c.token).collect::<Vec<_>>(), [10, 9, 8]);
        for i in 0..MAX_NAMES + 5 {
            h.record(
                NodeId(1),
                &chosen(&format!("n{i}"), 1, &[(TransitionKind::Granted, 1)]),
                now,
            );
        }
        assert!(h.names() <= MAX_NAMES);
        let newest = LeaseName::new(&format!("n{}", MAX_NAMES + 4)).expect("name");
        assert_eq!(h.of(&newest).len(), 1, "the newest name is kept");
        assert!(
            h.of(&LeaseName::new("a").expect("name")).is_empty(),
            "the oldest gave way"
        );
    }

    #[test]
    fn none_kept_when_switched_off() {
        let h = History::new(0);
        h.record(
            NodeId(1),
            &chosen("a", 1, &[(TransitionKind::Granted, 1)]),
            Instant::now(),
        );
        assert_eq!(h.names(), 0);
    }
}
