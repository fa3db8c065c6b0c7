//! The random pause that ends a duel between proposers, and its randomness.

use crate::time::Micros;

/// How many times the pause's bound doubles before it reaches
/// `backoff_max`.
const BACKOFF_DOUBLINGS: u32 = 3;

/// The bound of the random pause after the `preempted`-th pre-emption of
/// a round (2 and up; the first looks again at once). It starts at an
/// eighth of `max` and doubles: two proposers that both want to write (two
/// releases, say) settle within a few short pauses, while a crowd spreads
/// out as the bound grows.
pub(super) fn backoff_cap(max: Micros, preempted: u32) -> Micros {
    let halvings = BACKOFF_DOUBLINGS.saturating_sub(preempted.saturating_sub(2));
    Micros(max.0 >> halvings)
}

/// xorshift64: determinism comes from the seed the shell passes in.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Jitter(u64);

impl Jitter {
    pub fn new(seed: u64) -> Jitter {
        // xorshift needs a non-zero state.
        Jitter(seed | 1)
    }

    /// A pause drawn uniformly below `cap` (at least one microsecond).
    pub fn below(&mut self, cap: Micros) -> Micros {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        Micros(self.0 % cap.0.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pause_after_a_duel_starts_short_and_doubles_up_to_the_maximum() {
        let max = Micros::from_millis(20);
        let caps: Vec<u64> = (2..=7).map(|n| backoff_cap(max, n).0).collect();
        assert_eq!(caps, [2_500, 5_000, 10_000, 20_000, 20_000, 20_000]);
    }

    #[test]
    fn a_pause_stays_below_its_cap() {
        let mut jitter = Jitter::new(0);
        for cap in [1, 2, 7, 1_000] {
            for _ in 0..100 {
                assert!(jitter.below(Micros(cap)).0 < cap);
            }
        }
    }
}
