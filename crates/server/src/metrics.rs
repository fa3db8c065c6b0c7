//! Prometheus text exposition, from a small hand-written registry.
//!
//! Why not a crate: the well-kept ones (`prometheus`, `metrics` +
//! exporter) bring a registry abstraction, global state and a dozen
//! dependencies for what is here a fixed set of counters and histograms
//! rendered as text. This file is the whole of it.

pub mod process;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tenure_core::LeaseName;

/// Latency buckets, in seconds: from a fast fsync to a request deadline.
const SECONDS: &[f64] = &[
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
/// Group-commit batch sizes, in writes.
const WRITES: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0];

/// Leases this node tracks as granted by it; a bound on memory.
const MAX_TRACKED_LEASES: usize = 100_000;

#[derive(Clone, Debug)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, value: f64) {
        if let Some(i) = self.bounds.iter().position(|b| value <= *b) {
            self.counts[i] += 1;
        }
        self.sum += value;
        self.count += 1;
    }

    /// The upper bound of the bucket that holds the `q`-quantile, or
    /// `None` before any observation (or beyond the last bound).
    fn quantile(&self, q: f64) -> Option<f64> {
        let rank = (q * self.count as f64).ceil().max(1.0) as u64;
        let mut cumulative = 0;
        for (bound, n) in self.bounds.iter().zip(&self.counts) {
            cumulative += n;
            if cumulative >= rank {
                return Some(*bound);
            }
        }
        None
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (bound, n) in self.bounds.iter().zip(&self.counts) {
            cumulative += n;
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

#[derive(Default)]
struct Registry {
    requests: BTreeMap<(&'static str, u16), u64>,
    request_seconds: BTreeMap<&'static str, Histogram>,
    outcomes: BTreeMap<(&'static str, &'static str), u64>,
    lease_changes: BTreeMap<&'static str, u64>,
    messages_sent: BTreeMap<&'static str, u64>,
    rounds: BTreeMap<&'static str, u64>,
    nacks_received: u64,
    persist_seconds: Option<Histogram>,
    /// One transaction with its fsync, without the queueing before it.
    commit_seconds: Option<Histogram>,
    persist_writes: Option<Histogram>,
    peer_dropped: BTreeMap<u16, u64>,
    /// Client connections and requests refused for a resource bound.
    http_refused: BTreeMap<&'static str, u64>,
    /// Inbound peer connections refused, by why.
    peer_refused: BTreeMap<&'static str, u64>,
    /// Names this node granted or renewed, with when their ttl runs out.
    leases: HashMap<LeaseName, Instant>,
    /// Acquires waiting for a lease through this node.
    waiting_acquires: u64,
    names: NameCounts,
}

/// What a node's acceptor stores, and what compaction did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NameCounts {
    /// Names stored.
    pub stored: usize,
    /// Stored names the last scan found dead (free, idle, nobody waiting).
    pub dead: u64,
    /// Names deleted in this life.
    pub compacted: u64,
    /// No compacted name had a higher token.
    pub token_floor: u64,
}

/// One node's metrics. Every method takes a short lock; none blocks on IO.
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Registry>,
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::default()
    }

    fn with<R>(&self, f: impl FnOnce(&mut Registry) -> R) -> R {
        f(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn http_request(&self, op: &'static str, status: u16, took: Duration) {
        self.with(|r| {
            *r.requests.entry((op, status)).or_default() += 1;
            r.request_seconds
                .entry(op)
                .or_insert_with(|| Histogram::new(SECONDS))
                .observe(took.as_secs_f64());
        });
    }

    pub fn outcome(&self, op: &'static str, outcome: &'static str) {
        self.with(|r| *r.outcomes.entry((op, outcome)).or_default() += 1);
    }

    /// A change of a name's grant that this node proposed.
    pub fn lease_change(&self, change: &'static str) {
        self.with(|r| *r.lease_changes.entry(change).or_default() += 1);
    }

    /// The fsync time of this node's storage: at most how many seconds
    /// the median and the 99th percentile commit took (bucket bounds), and
    /// how many commits there were, since the node started.
    pub fn fsync_summary(&self) -> (Option<f64>, Option<f64>, u64) {
        self.with(|r| match &r.commit_seconds {
            Some(h) => (h.quantile(0.5), h.quantile(0.99), h.count),
            None => (None, None, 0),
        })
    }

    pub fn message_sent(&self, kind: &'static str) {
        self.with(|r| *r.messages_sent.entry(kind).or_default() += 1);
    }

    /// A phase this node started as proposer: `prepare` (phase 1, so a
    /// round that could not take the fast path, or a retry), `accept`
    /// (phase 2) or `peek` (a read).
    pub fn round_phase(&self, phase: &'static str) {
        self.with(|r| *r.rounds.entry(phase).or_default() += 1);
    }

    /// A nack: another proposer got ahead, and this node's round retries.
    pub fn nack_received(&self) {
        self.with(|r| r.nacks_received += 1);
    }

    /// A waiting acquire began (`true`) or ended (`false`).
    pub fn waiting_acquire(&self, began: bool) {
        self.with(|r| {
            if began {
                r.waiting_acquires += 1;
            } else {
                r.waiting_acquires = r.waiting_acquires.saturating_sub(1);
            }
        });
    }

    /// What this node's acceptor stores now.
    pub fn names(&self, names: NameCounts) {
        self.with(|r| r.names = names);
    }

    /// The committer made one transaction durable in `took`.
    pub fn committed(&self, took: Duration) {
        self.with(|r| {
            r.commit_seconds
                .get_or_insert_with(|| Histogram::new(SECONDS))
                .observe(took.as_secs_f64());
        });
    }

    pub fn persisted(&self, writes: usize, took: Duration) {
        self.with(|r| {
            r.persist_seconds
                .get_or_insert_with(|| Histogram::new(SECONDS))
                .observe(took.as_secs_f64());
            r.persist_writes
                .get_or_insert_with(|| Histogram::new(WRITES))
                .observe(writes as f64);
        });
    }

    pub fn peer_dropped(&self, peer: u16) {
        self.with(|r| *r.peer_dropped.entry(peer).or_default() += 1);
    }

    /// A client connection or request refused for a bound (`reason`).
    pub fn http_refused(&self, reason: &'static str) {
        self.with(|r| *r.http_refused.entry(reason).or_default() += 1);
    }

    /// An inbound peer connection refused (`reason`).
    pub fn peer_refused(&self, reason: &'static str) {
        self.with(|r| *r.peer_refused.entry(reason).or_default() += 1);
    }

    /// This node granted or renewed `name` until `until`.
    pub fn lease_held(&self, name: &LeaseName, until: Instant) {
        self.with(|r| {
            if r.leases.len() >= MAX_TRACKED_LEASES {
                let now = Instant::now();
                r.leases.retain(|_, t| *t > now);
            }
            if r.leases.len() < MAX_TRACKED_LEASES {
                r.leases.insert(name.clone(), until);
            }
        });
    }

    pub fn lease_ended(&self, name: &LeaseName) {
        self.with(|r| {
            r.leases.remove(name);
        });
    }
}

/// The outcomes rendered even before they happen.
const KNOWN_OUTCOMES: [(&str, &str); 13] = [
    ("acquire", "granted"),
    ("acquire", "conflict"),
    ("acquire", "unavailable"),
    ("acquire", "overloaded"),
    ("renew", "renewed"),
    ("renew", "conflict"),
    ("renew", "unavailable"),
    ("release", "released"),
    ("release", "conflict"),
    ("release", "unavailable"),
    ("read", "observed"),
    ("read", "unavailable"),
    ("read", "overloaded"),
];

impl Metrics {
    /// The text exposition, with `extra` (already formatted lines) appended.
    pub fn render(&self, extra: &str) -> String {
        let mut out = String::new();
        self.with(|r| {
            let now = Instant::now();
            r.leases.retain(|_, t| *t > now);
            out.push_str("# HELP tenure_http_requests_total HTTP requests by operation and status.\n");
            out.push_str("# TYPE tenure_http_requests_total counter\n");
            for ((op, status), n) in &r.requests {
                let _ = writeln!(
                    out,
                    "tenure_http_requests_total{{op=\"{op}\",status=\"{status}\"}} {n}"
                );
            }
            out.push_str("# HELP tenure_http_request_duration_seconds HTTP request latency by operation.\n");
            out.push_str("# TYPE tenure_http_request_duration_seconds histogram\n");
            for (op, h) in &r.request_seconds {
                h.render(
                    &mut out,
                    "tenure_http_request_duration_seconds",
                    &format!("op=\"{op}\""),
                );
            }
            out.push_str("# HELP tenure_outcomes_total Outcomes of operations this node proposed.\n");
            out.push_str("# TYPE tenure_outcomes_total counter\n");
            // Every outcome an alert may be written on exists from the
            // start, at zero, so that `rate()` and `absent()` behave.
            let mut outcomes = r.outcomes.clone();
            for (op, outcome) in KNOWN_OUTCOMES {
                outcomes.entry((op, outcome)).or_default();
            }
            for ((op, outcome), n) in &outcomes {
                let _ = writeln!(
                    out,
                    "tenure_outcomes_total{{op=\"{op}\",outcome=\"{outcome}\"}} {n}"
                );
            }
            out.push_str("# HELP tenure_lease_changes_total Changes of grants in values this node proposed and saw chosen, by change (renewals: tenure_outcomes_total).\n");
            out.push_str("# TYPE tenure_lease_changes_total counter\n");
            for change in ["granted", "released", "expired", "superseded"] {
                let n = r.lease_changes.get(change).copied().unwrap_or(0);
                let _ = writeln!(out, "tenure_lease_changes_total{{change=\"{change}\"}} {n}");
            }
            out.push_str("# HELP tenure_paxos_phases_total Paxos phases this node started as proposer (prepare: phase 1, i.e. no fast path or a retry; accept: phase 2; peek: a read).\n");
            out.push_str("# TYPE tenure_paxos_phases_total counter\n");
            for phase in ["prepare", "accept", "peek"] {
                let n = r.rounds.get(phase).copied().unwrap_or(0);
                let _ = writeln!(out, "tenure_paxos_phases_total{{phase=\"{phase}\"}} {n}");
            }
            out.push_str("# HELP tenure_paxos_nacks_received_total Refusals of this node's ballots (each makes a round retry).\n");
            out.push_str("# TYPE tenure_paxos_nacks_received_total counter\n");
            let _ = writeln!(out, "tenure_paxos_nacks_received_total {}", r.nacks_received);
            out.push_str("# HELP tenure_peer_messages_sent_total Messages handed to the peer transport, by type.\n");
            out.push_str("# TYPE tenure_peer_messages_sent_total counter\n");
            for (kind, n) in &r.messages_sent {
                let _ = writeln!(out, "tenure_peer_messages_sent_total{{type=\"{kind}\"}} {n}");
            }
            out.push_str("# HELP tenure_peer_dropped_messages_total Messages dropped because a peer's queue was full or its link down.\n");
            out.push_str("# TYPE tenure_peer_dropped_messages_total counter\n");
            for (peer, n) in &r.peer_dropped {
                let _ = writeln!(out, "tenure_peer_dropped_messages_total{{peer=\"{peer}\"}} {n}");
            }
            out.push_str("# HELP tenure_http_refused_total Client connections or requests refused for a resource bound, by bound.\n");
            out.push_str("# TYPE tenure_http_refused_total counter\n");
            for (reason, n) in &r.http_refused {
                let _ = writeln!(out, "tenure_http_refused_total{{reason=\"{reason}\"}} {n}");
            }
            out.push_str("# HELP tenure_peer_refused_total Inbound peer connections refused, by why: no or a bad hello, TLS, a certificate or identity that does not match.\n");
            out.push_str("# TYPE tenure_peer_refused_total counter\n");
            for (reason, n) in &r.peer_refused {
                let _ = writeln!(out, "tenure_peer_refused_total{{reason=\"{reason}\"}} {n}");
            }
            out.push_str("# HELP tenure_persist_duration_seconds Time from handing writes to storage to their fsync.\n");
            out.push_str("# TYPE tenure_persist_duration_seconds histogram\n");
            if let Some(h) = &r.persist_seconds {
                h.render(&mut out, "tenure_persist_duration_seconds", "");
            }
            out.push_str("# HELP tenure_commit_duration_seconds One storage transaction with its fsync, without the wait in the queue before it.\n");
            out.push_str("# TYPE tenure_commit_duration_seconds histogram\n");
            if let Some(h) = &r.commit_seconds {
                h.render(&mut out, "tenure_commit_duration_seconds", "");
            }
            out.push_str("# HELP tenure_persist_batch_writes Acceptor writes handed to storage together.\n");
            out.push_str("# TYPE tenure_persist_batch_writes histogram\n");
            if let Some(h) = &r.persist_writes {
                h.render(&mut out, "tenure_persist_batch_writes", "");
            }
            out.push_str("# HELP tenure_leases_held Leases this node granted or renewed whose ttl has not run out.\n");
            out.push_str("# TYPE tenure_leases_held gauge\n");
            let _ = writeln!(out, "tenure_leases_held {}", r.leases.len());
            out.push_str("# HELP tenure_waiting_acquires Acquires with a wait (long polls) waiting for a lease through this node.\n");
            out.push_str("# TYPE tenure_waiting_acquires gauge\n");
            let _ = writeln!(out, "tenure_waiting_acquires {}", r.waiting_acquires);
            out.push_str("# HELP tenure_names_stored Names this node's acceptor stores: every name used and not yet compacted, free or held.\n");
            out.push_str("# TYPE tenure_names_stored gauge\n");
            let _ = writeln!(out, "tenure_names_stored {}", r.names.stored);
            out.push_str("# HELP tenure_names_dead Stored names the last scan found free, with nobody waiting, for --compact-after: not compacted yet, or kept because a member is down.\n");
            out.push_str("# TYPE tenure_names_dead gauge\n");
            let _ = writeln!(out, "tenure_names_dead {}", r.names.dead);
            out.push_str("# HELP tenure_names_compacted_total Names this node's acceptor deleted since it started, each free and idle for --compact-after on every member.\n");
            out.push_str("# TYPE tenure_names_compacted_total counter\n");
            let _ = writeln!(out, "tenure_names_compacted_total {}", r.names.compacted);
            out.push_str("# HELP tenure_token_floor The token above which this node starts a name it does not store: the highest token of any name it compacted.\n");
            out.push_str("# TYPE tenure_token_floor gauge\n");
            let _ = writeln!(out, "tenure_token_floor {}", r.names.token_floor);
        });
        out.push_str(extra);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_render_cumulative_buckets() {
        let m = Metrics::new();
        m.http_request("acquire", 201, Duration::from_micros(400));
        m.http_request("acquire", 201, Duration::from_millis(30));
        let text = m.render("");
        assert!(text.contains("tenure_http_requests_total{op=\"acquire\",status=\"201\"} 2"));
        assert!(text.contains(
            "tenure_http_request_duration_seconds_bucket{op=\"acquire\",le=\"0.0005\"} 1"
        ));
        assert!(text
            .contains("tenure_http_request_duration_seconds_bucket{op=\"acquire\",le=\"+Inf\"} 2"));
        assert!(text.contains("tenure_http_request_duration_seconds_count{op=\"acquire\"} 2"));
    }

    #[test]
    fn expired_leases_leave_the_gauge() {
        let m = Metrics::new();
        let name = LeaseName::new("x").unwrap();
        m.lease_held(&name, Instant::now() + Duration::from_secs(60));
        assert!(m.render("").contains("tenure_leases_held 1"));
        m.names(NameCounts {
            stored: 3,
            dead: 1,
            compacted: 2,
            token_floor: 17,
        });
        let text = m.render("");
        assert!(text.contains("tenure_names_stored 3"));
        assert!(text.contains("tenure_names_compacted_total 2"));
        assert!(text.contains("tenure_token_floor 17"));
        assert!(text.contains("tenure_names_dead 1"));
        m.lease_held(&name, Instant::now());
        assert!(m.render("").contains("tenure_leases_held 0"));
    }
}
