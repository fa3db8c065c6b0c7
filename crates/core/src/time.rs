//! Time as values: a node's monotonic clock reading and the drift bound.
//!
//! The core never reads a clock. The shell passes `now` into every call. Two
//! readings are only ever compared when they come from the same process's
//! monotonic clock; readings from different machines are never compared.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A reading of one process's monotonic clock, in microseconds since an
/// arbitrary origin (the process's boot, in practice).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(u64);

impl Instant {
    pub const ZERO: Instant = Instant(0);

    pub const fn from_micros(micros: u64) -> Self {
        Instant(micros)
    }

    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// Time elapsed since `earlier`, zero when `earlier` is not earlier.
    pub fn since(self, earlier: Instant) -> Micros {
        Micros(self.0.saturating_sub(earlier.0))
    }

    pub fn plus(self, d: Micros) -> Instant {
        Instant(self.0.saturating_add(d.0))
    }

    /// `self - d`, clamped at the origin. Clamping makes a derived age
    /// smaller, which only ever makes a lease look younger (safe).
    pub fn minus(self, d: Micros) -> Instant {
        Instant(self.0.saturating_sub(d.0))
    }
}

/// A duration in microseconds.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Micros(pub u64);

impl Micros {
    pub const ZERO: Micros = Micros(0);

    pub const fn from_millis(ms: u64) -> Self {
        Micros(ms.saturating_mul(1_000))
    }

    /// Whole milliseconds, rounded up, so that a "remaining" figure never
    /// understates the wait.
    pub fn ceil_millis(self) -> u64 {
        self.0.div_ceil(1_000)
    }

    pub fn saturating_add(self, other: Micros) -> Micros {
        Micros(self.0.saturating_add(other.0))
    }

    pub fn saturating_sub(self, other: Micros) -> Micros {
        Micros(self.0.saturating_sub(other.0))
    }
}

impl fmt::Display for Micros {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}µs", self.0)
    }
}

/// The bound ρ on how far any process's monotonic clock rate may differ from
/// real time, in parts per million: a clock advances between `1-ρ` and `1+ρ`
/// seconds per real second.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DriftBound {
    ppm: u32,
}

impl DriftBound {
    /// 1000 ppm = 0.1 %: two orders of magnitude above what quartz
    /// oscillators drift, so a sane machine never comes near it.
    pub const DEFAULT: DriftBound = DriftBound { ppm: 1_000 };

    /// ρ must stay well below 1/2 for `ttl·(1-2ρ)` to mean anything.
    pub const MAX_PPM: u32 = 100_000;

    pub fn from_ppm(ppm: u32) -> Option<DriftBound> {
        (ppm <= Self::MAX_PPM).then_some(DriftBound { ppm })
    }

    pub fn ppm(self) -> u32 {
        self.ppm
    }

    /// `d·(1+ρ)` rounded up: how long a local clock may have to run so that
    /// at least `d` of real time has passed.
    pub fn stretch(self, d: Micros) -> Micros {
        let scaled = u128::from(d.0) * u128::from(1_000_000 + self.ppm);
        Micros(u64::try_from(scaled.div_ceil(1_000_000)).unwrap_or(u64::MAX))
    }

    /// `d·(1-2ρ)` rounded down: the part of a ttl a holder may use, counted on
    /// its own clock, and still be sure real time has not reached `d`.
    pub fn shrink_for_holder(self, d: Micros) -> Micros {
        let factor = 1_000_000u128 - 2 * u128::from(self.ppm);
        Micros(u64::try_from(u128::from(d.0) * factor / 1_000_000).unwrap_or(u64::MAX))
    }
}

impl Default for DriftBound {
    fn default() -> Self {
        DriftBound::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stretch_rounds_up_and_shrink_rounds_down() {
        let rho = DriftBound::from_ppm(1_000).unwrap();
        assert_eq!(rho.stretch(Micros(1_000_000)), Micros(1_001_000));
        assert_eq!(rho.stretch(Micros(1)), Micros(2));
        assert_eq!(rho.shrink_for_holder(Micros(1_000_000)), Micros(998_000));
        assert_eq!(rho.shrink_for_holder(Micros(1)), Micros(0));
    }

    #[test]
    fn drift_bound_rejects_absurd_rates() {
        assert!(DriftBound::from_ppm(DriftBound::MAX_PPM + 1).is_none());
        assert!(DriftBound::from_ppm(0).is_some());
    }

    #[test]
    fn instant_arithmetic_saturates() {
        let t = Instant::from_micros(5);
        assert_eq!(t.minus(Micros(10)), Instant::ZERO);
        assert_eq!(Instant::ZERO.since(t), Micros::ZERO);
    }
}
