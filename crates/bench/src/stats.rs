//! Latency samples and their percentiles.

use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[derive(Default, Clone, Debug)]
pub struct Latencies {
    samples: Vec<Duration>,
    sorted: bool,
}

impl Latencies {
    pub fn push(&mut self, d: Duration) {
        self.samples.push(d);
        self.sorted = false;
    }

    pub fn extend(&mut self, other: Latencies) {
        self.samples.extend(other.samples);
        self.sorted = false;
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The nearest-rank percentile `q` (0 < q ≤ 1), in microseconds; 0
    /// without samples.
    pub fn us(&mut self, q: f64) -> f64 {
        if self.samples.is_empty() {
            return 0.0;
        }
        if !self.sorted {
            self.samples.sort();
            self.sorted = true;
        }
        // (less a hair, so that 0.999 × 1000 is rank 999, not 1000)
        let rank = (q * self.samples.len() as f64 - 1e-9).ceil() as usize;
        let i = rank.clamp(1, self.samples.len()) - 1;
        self.samples[i].as_nanos() as f64 / 1e3
    }

    /// Every sample in microseconds, in ascending order.
    pub fn samples_us(&mut self) -> Vec<f64> {
        if !self.sorted {
            self.samples.sort();
            self.sorted = true;
        }
        self.samples
            .iter()
            .map(|d| d.as_nanos() as f64 / 1e3)
            .collect()
    }

    /// The slowest sample, in microseconds (0 without samples).
    pub fn max_us(&mut self) -> f64 {
        self.us(1.0)
    }

    /// n, p50, p99 and the slowest, in microseconds: the figures of the
    /// contended workloads, whose worst case matters more than the p99.9.
    pub fn json_max(&mut self) -> Value {
        json!({
            "n": self.len(),
            "p50_us": round1(self.us(0.5)),
            "p99_us": round1(self.us(0.99)),
            "max_us": round1(self.max_us()),
        })
    }

    pub fn json(&mut self) -> Value {
        json!({
            "n": self.len(),
            "p50_us": round1(self.us(0.5)),
            "p99_us": round1(self.us(0.99)),
            "p999_us": round1(self.us(0.999)),
        })
    }
}

pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// The longest span between `from` and `to` with none of `times` in it
/// (times outside the span are ignored; the list need not be sorted).
pub fn longest_gap(from: Instant, times: &[Instant], to: Instant) -> Duration {
    let mut inside: Vec<Instant> = times
        .iter()
        .copied()
        .filter(|&t| t >= from && t <= to)
        .collect();
    inside.sort();
    let mut prev = from;
    let mut longest = Duration::ZERO;
    for t in inside.into_iter().chain(std::iter::once(to)) {
        longest = longest.max(t.saturating_duration_since(prev));
        prev = t;
    }
    longest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut l = Latencies::default();
        for us in (1..=1000).rev() {
            l.push(Duration::from_micros(us));
        }
        assert_eq!(l.us(0.5), 500.0);
        assert_eq!(l.us(0.99), 990.0);
        assert_eq!(l.us(0.999), 999.0);
        assert_eq!(l.us(1.0), 1000.0);
        assert_eq!(Latencies::default().us(0.5), 0.0);
        let v = l.json_max();
        assert_eq!(
            (v["n"].clone(), v["max_us"].clone()),
            (1000.into(), 1000.0.into())
        );
        assert_eq!(v["p99_us"], 990.0);
    }

    #[test]
    fn the_longest_gap_counts_the_edges_of_the_span() {
        let t = Instant::now();
        let ms = Duration::from_millis;
        let times = [t + ms(30), t + ms(10), t + ms(500), t + ms(35)];
        // 0 → 10 → 30 → 35 → (500 is past the end) → 100
        assert_eq!(longest_gap(t, &times, t + ms(100)), ms(65));
        assert_eq!(longest_gap(t, &[], t + ms(7)), ms(7));
        // Nothing before `from` counts.
        assert_eq!(longest_gap(t + ms(20), &times, t + ms(40)), ms(10));
    }
}
