//! The clock-rate watchdog: how fast each peer's clock runs against this
//! node's, and whether this node's clock is the odd one out.
//!
//! Every frame carries its sender's clock reading. For a frame sent at
//! peer reading `p` and received at local reading `l`, the offset `l − p`
//! is the clocks' difference plus the one-way delay. Delay only ever adds,
//! so the smallest offset in a stretch of time is the best one; between
//! two stretches, the smallest offsets move at the rate the two clocks
//! part. Samples go into buckets of [`BUCKET`] of local time; a rate is
//! read between the lowest offset of the oldest two buckets in a window
//! and that of the newest two complete ones.
//!
//! A best offset can still be late by a scheduling stall. Up to
//! [`STALL`] of it at each end is allowed for, so over a span `T` a peer
//! disagrees only when the rates differ by more than `ρ + 2·STALL/T`: a
//! ×1.5 clock shows within a second, and over the long window a drift of
//! a few times ρ shows too.
//!
//! The protocol is safe with one bad clock whatever this says
//! (docs/safety.md, "One faulty clock"); the watchdog makes the bad node
//! stop serving, and says why, instead of silently costing availability.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tenure_core::NodeId;

pub const BUCKET: Duration = Duration::from_millis(100);
/// Rates are read over both windows; the short one catches a gross fault
/// fast, the long one a smaller drift.
pub const SHORT_WINDOW: Duration = Duration::from_secs(2);
pub const LONG_WINDOW: Duration = Duration::from_secs(30);
/// The most a best offset is assumed to be late by, from a stall of the
/// sender or the receiver.
pub const STALL: Duration = Duration::from_millis(40);
/// Buckets taken together at each end of a window.
const END_BUCKETS: usize = 2;
/// Buckets whose lowest offset stands for each way of a round trip.
const ROUND_TRIP_BUCKETS: usize = 3;

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The lowest offset seen in one bucket, and when (local clock, µs).
#[derive(Clone, Copy, Debug)]
struct Bucket {
    index: u64,
    best_offset: i64,
    at: u64,
}

/// What is known of one peer's clock.
#[derive(Debug, Default)]
struct PeerClock {
    buckets: VecDeque<Bucket>,
    /// The peer's own lowest offset of this node's frames, as it last
    /// echoed it (`Frame::echo_offset_us`).
    echo: Option<i64>,
}

impl PeerClock {
    /// The lowest offset of the last `ROUND_TRIP_BUCKETS` buckets.
    fn recent_best(&self) -> Option<i64> {
        self.buckets
            .iter()
            .rev()
            .take(ROUND_TRIP_BUCKETS)
            .map(|b| b.best_offset)
            .min()
    }

    /// The round trip, NTP-style: each way's lowest offset is that way's
    /// delay plus or minus the clocks' difference, so their sum is the two
    /// delays. Taken over the last few buckets, queueing mostly drops out;
    /// drift between the two readings adds at most ρ of a few buckets.
    fn round_trip(&self) -> Option<Duration> {
        let sum = self.recent_best()?.checked_add(self.echo?)?;
        Some(Duration::from_micros(u64::try_from(sum).unwrap_or(0)))
    }

    fn sample(&mut self, local_us: u64, peer_us: u64) {
        let offset = i128::from(local_us) - i128::from(peer_us);
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        let index = local_us / micros(BUCKET);
        match self.buckets.back_mut() {
            Some(b) if b.index == index => {
                if offset < b.best_offset {
                    b.best_offset = offset;
                    b.at = local_us;
                }
            }
            Some(b) if b.index > index => {} // Our clock went back: impossible.
            _ => self.buckets.push_back(Bucket {
                index,
                best_offset: offset,
                at: local_us,
            }),
        }
        let oldest = index.saturating_sub(micros(LONG_WINDOW) / micros(BUCKET));
        while self.buckets.front().is_some_and(|b| b.index < oldest) {
            self.buckets.pop_front();
        }
    }

    /// The peer's rate against ours over the last `window` (ppm: positive
    /// when the peer's clock runs faster), and the span it was read over.
    fn rate(&self, now_us: u64, window: Duration, rho_ppm: u32) -> Option<Rate> {
        let current = now_us / micros(BUCKET);
        let first = current.saturating_sub(micros(window) / micros(BUCKET));
        let complete: Vec<&Bucket> = self
            .buckets
            .iter()
            .filter(|b| b.index >= first && b.index < current)
            .collect();
        if complete.len() < 2 * END_BUCKETS {
            return None;
        }
        let best = |bs: &[&Bucket]| -> Bucket {
            **bs.iter()
                .min_by_key(|b| b.best_offset)
                .expect("END_BUCKETS > 0")
        };
        let old = best(&complete[..END_BUCKETS]);
        let new = best(&complete[complete.len() - END_BUCKETS..]);
        let span = new.at.checked_sub(old.at).filter(|s| *s > 0)?;
        // offset = local − peer: it falls as a faster peer pulls ahead.
        let parted = (old.best_offset - new.best_offset) as f64;
        let ppm = parted / span as f64 * 1e6;
        let allowed = f64::from(rho_ppm) + 2.0 * micros(STALL) as f64 / span as f64 * 1e6;
        Some(Rate {
            ppm,
            allowed_ppm: allowed,
            span: Duration::from_micros(span),
        })
    }
}

/// One reading of a peer's rate.
#[derive(Clone, Copy, Debug)]
pub struct Rate {
    pub ppm: f64,
    /// How far off it may read without being a disagreement.
    pub allowed_ppm: f64,
    pub span: Duration,
}

impl Rate {
    pub fn disagrees(&self) -> bool {
        self.ppm.abs() > self.allowed_ppm
    }
}

/// What the watchdog concludes about this node's own clock.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Fewer than a majority of the members disagree with it.
    Agrees,
    /// A majority of the members' clocks run at another rate: this one is
    /// the likelier to be wrong.
    Disagrees { reason: String },
}

/// Every peer's clock, as this node measures it, and the last verdict.
#[derive(Debug)]
pub struct Rates {
    members: AtomicUsize,
    rho_ppm: u32,
    /// Refuse requests on a disagreeing verdict (`--no-clock-check` only
    /// reports it).
    enforce: bool,
    peers: Mutex<BTreeMap<NodeId, PeerClock>>,
    /// As of the last `check`: read on every request, so kept apart.
    refusing: AtomicBool,
    /// Rates, the confirmed verdict, and how many checks in a row saw a
    /// disagreement.
    last: Mutex<(BTreeMap<NodeId, Rate>, Verdict, u32)>,
}

/// How often the verdict is brought up to date.
pub const CHECK_EVERY: Duration = Duration::from_millis(100);
/// Checks in a row that must see a disagreement before it counts.
const CONFIRM_CHECKS: u32 = 2;

impl Rates {
    pub fn new(members: usize, rho_ppm: u32, enforce: bool) -> Rates {
        Rates {
            members: AtomicUsize::new(members),
            rho_ppm,
            enforce,
            peers: Mutex::new(BTreeMap::new()),
            refusing: AtomicBool::new(false),
            last: Mutex::new((BTreeMap::new(), Verdict::Agrees, 0)),
        }
    }

    /// The members are now `members` in number, this node included.
    pub fn set_members(&self, members: usize) {
        self.members.store(members, Ordering::Relaxed);
    }

    /// Bring the rates and the verdict up to date; log a change of
    /// verdict (once per change: a bad clock is not news every 100 ms).
    pub fn check(&self, now_us: u64) {
        let rates = self.rates(now_us);
        let seen = self.verdict(&rates);
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        // A disagreement counts once it has lasted CONFIRM_CHECKS checks:
        // a stall that makes the newest offsets late passes sooner.
        let streak = match seen {
            Verdict::Agrees => 0,
            Verdict::Disagrees { .. } => last.2.saturating_add(1),
        };
        let verdict = match (&seen, &last.1) {
            (Verdict::Disagrees { .. }, _) if streak >= CONFIRM_CHECKS => seen,
            (Verdict::Disagrees { .. }, Verdict::Disagrees { .. }) => seen,
            _ => Verdict::Agrees,
        };
        match (&last.1, &verdict) {
            (Verdict::Agrees, Verdict::Disagrees { reason }) if self.enforce => {
                tracing::error!("{reason}")
            }
            (Verdict::Agrees, Verdict::Disagrees { reason }) => {
                tracing::error!("{reason} (but --no-clock-check: serving anyway)")
            }
            (Verdict::Disagrees { .. }, Verdict::Agrees) => {
                tracing::warn!("this node's clock agrees with its peers' again; serving")
            }
            _ => {}
        }
        let refuse = self.enforce && matches!(verdict, Verdict::Disagrees { .. });
        self.refusing.store(refuse, Ordering::Relaxed);
        *last = (rates, verdict, streak);
    }

    /// Why this node refuses to decide leases, if it does.
    pub fn refusal(&self) -> Option<String> {
        if !self.refusing.load(Ordering::Relaxed) {
            return None;
        }
        match &self.last.lock().unwrap_or_else(|e| e.into_inner()).1 {
            Verdict::Disagrees { reason } => Some(reason.clone()),
            Verdict::Agrees => None,
        }
    }

    /// The verdict as of the last `check`, enforced or not.
    pub fn verdict_now(&self) -> Verdict {
        self.last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .clone()
    }

    /// Each peer's rate as of the last `check`.
    pub fn last_rates(&self) -> BTreeMap<NodeId, Rate> {
        self.last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .clone()
    }

    fn with<R>(&self, f: impl FnOnce(&mut BTreeMap<NodeId, PeerClock>) -> R) -> R {
        f(&mut self.peers.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// A frame from `peer`, sent at its reading `peer_us`, arrived at ours
    /// `local_us`.
    /// Returns this node's recent lowest offset of `peer`'s frames: what to
    /// echo to it.
    pub fn sample(&self, peer: NodeId, local_us: u64, peer_us: u64) -> Option<i64> {
        self.with(|p| {
            let clock = p.entry(peer).or_default();
            clock.sample(local_us, peer_us);
            clock.recent_best()
        })
    }

    /// `peer`'s echo of its lowest offset of this node's frames.
    pub fn echo(&self, peer: NodeId, offset: Option<i64>) {
        self.with(|p| p.entry(peer).or_default().echo = offset);
    }

    /// The round trip to `peer`, from the stamps of frames both ways.
    pub fn round_trip(&self, peer: NodeId) -> Option<Duration> {
        self.with(|p| p.get(&peer).and_then(PeerClock::round_trip))
    }

    /// A new connection from `peer`: its clock may have restarted.
    pub fn forget(&self, peer: NodeId) {
        self.with(|p| p.remove(&peer));
    }

    /// Each peer's rate now: the long window's reading, or the short one's
    /// when that disagrees and the long one does not (a fault that began
    /// lately shows there first).
    pub fn rates(&self, now_us: u64) -> BTreeMap<NodeId, Rate> {
        self.with(|peers| {
            peers
                .iter()
                .filter_map(|(id, clock)| {
                    let short = clock.rate(now_us, SHORT_WINDOW, self.rho_ppm);
                    let long = clock.rate(now_us, LONG_WINDOW, self.rho_ppm);
                    let rate = match (short, long) {
                        (Some(s), Some(l)) if s.disagrees() && !l.disagrees() => s,
                        (_, Some(l)) => l,
                        (s, None) => s?,
                    };
                    Some((*id, rate))
                })
                .collect()
        })
    }

    /// Whether this node's clock disagrees with a majority of the members.
    pub fn verdict(&self, rates: &BTreeMap<NodeId, Rate>) -> Verdict {
        let against: Vec<String> = rates
            .iter()
            .filter(|(_, r)| r.disagrees())
            .map(|(id, r)| format!("n{} {:+.0} ppm", id.0, r.ppm))
            .collect();
        let members = self.members.load(Ordering::Relaxed);
        if against.len() < members / 2 + 1 {
            return Verdict::Agrees;
        }
        Verdict::Disagrees {
            reason: format!(
                "this node's clock disagrees with the rates of {} of {} members ({}; \
                 the bound is {} ppm): it refuses to decide leases until the rates agree \
                 again; check its clock source, NTP and virtualisation",
                against.len(),
                members,
                against.join(", "),
                self.rho_ppm
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000;

    /// Node 1's clock reads t, node 2's t + 1 ms; frames take 200 µs from
    /// 1 to 2 and from 300 µs (up to 900 when queued) from 2 to 1. The
    /// lowest offsets both ways sum to the round trip, 500 µs, whatever the
    /// clocks' difference.
    #[test]
    fn round_trips_come_from_the_lowest_offsets_both_ways() {
        let rates = Rates::new(3, 1_000, true);
        let two = NodeId(2);
        assert_eq!(rates.round_trip(two), None);
        let mut echo = None;
        for i in 0..10u64 {
            let sent_by_two = 1_000_000 + i * 20 * MS + MS; // node 2's clock
            let arrives = 1_000_000 + i * 20 * MS + 300 + (i % 3) * 300; // node 1's
            echo = rates.sample(two, arrives, sent_by_two);
        }
        // What node 1 echoes to node 2: its lowest offset, −700 µs.
        assert_eq!(echo, Some(-700));
        // Node 2's own lowest offset of node 1's frames: 200 + 1000 µs.
        rates.echo(two, Some(1_200));
        assert_eq!(rates.round_trip(two), Some(Duration::from_micros(500)));
    }

    /// Feed `peer` a frame every 100 ms for `secs`, with its clock at
    /// `rate` and a delay from `delay(i)`; returns the last local time.
    fn feed(
        rates: &Rates,
        peer: u16,
        start: u64,
        secs: u64,
        rate: f64,
        delay: impl Fn(u64) -> u64,
    ) -> u64 {
        let mut local = start;
        for i in 0..secs * 10 {
            local = start + i * 100 * MS;
            let sent = local - delay(i);
            let peer_reading = (sent as f64 * rate) as u64 + 5_000_000;
            rates.sample(NodeId(peer), local, peer_reading);
        }
        local
    }

    #[test]
    fn a_peer_at_the_same_rate_agrees_despite_jittery_delays() {
        let rates = Rates::new(3, 1_000, true);
        let jitter = |i: u64| 200 + (i * 7_919 % 20) * MS;
        let end = feed(&rates, 2, 10_000 * MS, 40, 1.0, jitter);
        let r = rates.rates(end)[&NodeId(2)];
        assert!(!r.disagrees(), "{r:?}");
        assert!(r.ppm.abs() < 1_000.0, "{r:?}");
    }

    #[test]
    fn a_peer_at_one_and_a_half_shows_within_a_second() {
        let rates = Rates::new(3, 1_000, true);
        let end = feed(&rates, 2, 10_000 * MS, 1, 1.5, |_| 300);
        let r = rates.rates(end + 100 * MS)[&NodeId(2)];
        assert!(r.disagrees(), "{r:?}");
        assert!((r.ppm - 500_000.0).abs() < 5_000.0, "{r:?}");
    }

    #[test]
    fn a_slow_peer_reads_negative() {
        let rates = Rates::new(3, 1_000, true);
        let end = feed(&rates, 2, 10_000 * MS, 2, 0.5, |_| 300);
        let r = rates.rates(end)[&NodeId(2)];
        assert!(r.disagrees() && r.ppm < -400_000.0, "{r:?}");
    }

    #[test]
    fn a_small_drift_shows_over_the_long_window_only() {
        let rates = Rates::new(3, 1_000, true);
        let end = feed(&rates, 2, 10_000 * MS, 30, 1.005, |_| 300);
        let r = rates.rates(end)[&NodeId(2)];
        assert!(r.disagrees(), "{r:?}");
        assert!(r.span > Duration::from_secs(20), "{r:?}");
    }

    #[test]
    fn a_stall_of_the_receiver_is_not_a_bad_clock() {
        // Stopped for 0.5 s: the frames sent meanwhile are all read at the
        // resume, late, and fresh ones follow every 100 ms.
        let rates = Rates::new(3, 1_000, true);
        let start = 10_000 * MS;
        for i in 0..60u64 {
            let sent = start + i * 100 * MS;
            let read = if (20..25).contains(&i) {
                start + 2_500 * MS
            } else {
                sent + 300
            };
            rates.sample(NodeId(2), read, sent + 5_000_000);
        }
        for after in (2_000..6_000).step_by(100) {
            let now = start + after * MS;
            if let Some(r) = rates.rates(now).get(&NodeId(2)) {
                assert!(!r.disagrees(), "at +{after} ms: {r:?}");
            }
        }
    }

    #[test]
    fn the_odd_one_out_is_the_node_a_majority_disagrees_with() {
        let rates = Rates::new(3, 1_000, true);
        feed(&rates, 2, 10_000 * MS, 3, 1.5, |_| 300);
        let end = feed(&rates, 3, 10_000 * MS, 3, 1.0, |_| 300);
        assert_eq!(rates.verdict(&rates.rates(end)), Verdict::Agrees);
        let bad = Rates::new(3, 1_000, true);
        feed(&bad, 2, 10_000 * MS, 3, 1.0 / 1.5, |_| 300);
        let end = feed(&bad, 3, 10_000 * MS, 3, 1.0 / 1.5, |_| 300);
        assert!(matches!(
            bad.verdict(&bad.rates(end)),
            Verdict::Disagrees { .. }
        ));
        bad.forget(NodeId(2));
        assert_eq!(bad.verdict(&bad.rates(end)), Verdict::Agrees);
    }

    #[test]
    fn a_disagreement_refuses_only_once_it_lasts_and_not_when_unenforced() {
        for enforce in [true, false] {
            let rates = Rates::new(3, 1_000, enforce);
            feed(&rates, 2, 10_000 * MS, 2, 1.0 / 1.5, |_| 300);
            let end = feed(&rates, 3, 10_000 * MS, 2, 1.0 / 1.5, |_| 300);
            rates.check(end);
            assert_eq!(rates.refusal(), None, "one check is not enough");
            assert_eq!(rates.verdict_now(), Verdict::Agrees);
            rates.check(end + 1);
            assert!(matches!(rates.verdict_now(), Verdict::Disagrees { .. }));
            assert_eq!(rates.refusal().is_some(), enforce);
            assert!(rates.last_rates()[&NodeId(2)].ppm < -300_000.0);
        }
    }

    #[test]
    fn rates_recover_once_the_fault_leaves_the_windows() {
        let rates = Rates::new(3, 1_000, true);
        let end = feed(&rates, 2, 10_000 * MS, 2, 1.5, |_| 300);
        // Then at the right rate again, from the peer's later reading.
        let mut local = end;
        let base = (end as f64 * 1.5) as u64;
        for i in 1..=350 {
            local = end + i * 100 * MS;
            rates.sample(NodeId(2), local, base + (local - end) - 300);
        }
        let r = rates.rates(local)[&NodeId(2)];
        assert!(!r.disagrees(), "{r:?}");
    }
}
