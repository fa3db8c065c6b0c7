//! Latency samples and their percentiles.

use serde_json::{json, Value};
use std::time::Duration;

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
    }
}
