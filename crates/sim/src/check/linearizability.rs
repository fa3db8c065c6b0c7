//! Linearizability of one name's operations: the Wing–Gong search with
//! Lowe's memoization of (linearized set, state), as Porcupine does it.
//!
//! Operations with an unknown outcome may take effect at any point after
//! their invocation, or never. Left open-ended they make the search
//! exponential, so each gets a deadline where the protocol allows one: once
//! the node working on it has stopped (`ended_us`) and a later write has
//! completed, it can no longer take effect. A write chosen after that point
//! has a higher ballot than any accept that carried the operation, so no
//! quorum can adopt those accepts any more (docs/testing.md). At its
//! deadline an operation not yet linearized is dropped: it never happened.

use super::spec::SpecState;
use super::Violation;
use crate::history::OpRecord;
use std::collections::HashSet;
use tenure_core::{LeaseName, Op, Outcome};

/// The search gives up after this many steps by default, so a
/// pathological history cannot hang a run; `checked` says so, and
/// `tenure sim` fails on it. Runs with a crash right after a lazy
/// acknowledgement leave many operations of unknown outcome, whose
/// histories take a few million steps (seed 193 about 6 million).
pub const STEP_BUDGET: u64 = 20_000_000;

#[derive(Clone, Copy, Debug)]
enum Entry {
    Call(usize),
    /// The operation's response: it must be linearized before this.
    Return(usize),
    /// An unknown outcome's deadline: take effect before this, or never.
    Deadline(usize),
}

enum Choice {
    Linearized { op: usize, before: SpecState },
    Dropped { op: usize },
}

pub struct Report {
    /// False when the step budget ran out before a verdict.
    pub checked: bool,
}

/// A waiting acquire may sit in the name's chosen queue after its node
/// has stopped, and a release hands it the lease when its turn comes: it
/// can take effect until its wait runs out, whoever writes. The queue
/// counts the wait on the acceptors' clocks, so allow twice the wait
/// (far beyond the drift bound) and a little more.
fn queued_until(op: &OpRecord) -> u64 {
    match &op.op {
        Op::Acquire { wait, .. } if wait.0 > 0 => op
            .invoked_us
            .saturating_add(wait.0.saturating_mul(2) + 100_000),
        _ => 0,
    }
}

fn writes(outcome: &Outcome) -> bool {
    matches!(
        outcome,
        Outcome::Granted { .. } | Outcome::Renewed { .. } | Outcome::Released { .. }
    )
}

/// A doubly linked list over the entries, so that entries can be lifted out
/// and put back (in reverse order) in O(1).
struct Links {
    next: Vec<usize>,
    prev: Vec<usize>,
    first: usize,
    end: usize,
}

impl Links {
    const NONE: usize = usize::MAX;

    fn new(len: usize) -> Links {
        Links {
            next: (1..=len).collect(),
            prev: (0..len)
                .map(|i| if i == 0 { Self::NONE } else { i - 1 })
                .collect(),
            first: if len == 0 { len } else { 0 },
            end: len,
        }
    }

    fn unlink(&mut self, pos: usize) {
        let (p, n) = (self.prev[pos], self.next[pos]);
        if p == Self::NONE {
            self.first = n;
        } else {
            self.next[p] = n;
        }
        if n < self.end {
            self.prev[n] = p;
        }
    }

    fn relink(&mut self, pos: usize) {
        let (p, n) = (self.prev[pos], self.next[pos]);
        if p == Self::NONE {
            self.first = pos;
        } else {
            self.next[p] = pos;
        }
        if n < self.end {
            self.prev[n] = pos;
        }
    }
}

/// What compaction did during a run, as the check of one name needs it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Compaction {
    /// Some node deleted this name's register.
    pub this_name: bool,
    /// Some node deleted some register.
    pub any_name: bool,
}

/// Check the operations on `name`. With `compaction`, the spec lets a
/// free name's token rise without a grant (`SpecState::compacted`,
/// `fresh_at_floor`).
pub fn check(
    name: &LeaseName,
    ops: &[OpRecord],
    budget: u64,
    compaction: Compaction,
) -> Result<Report, Violation> {
    // Unknown reads and renewals change nothing whether or not they happened.
    let ops: Vec<&OpRecord> = ops
        .iter()
        .filter(|o| !o.discarded)
        .filter(|o| {
            o.returned.is_some()
                || matches!(
                    o.op,
                    tenure_core::Op::Acquire { .. } | tenure_core::Op::Release { .. }
                )
        })
        .collect();
    let n = ops.len();
    let completed_writes: Vec<(u64, u64)> = ops
        .iter()
        .filter_map(|o| match &o.returned {
            Some((at, outcome)) if writes(outcome) => Some((o.invoked_us, *at)),
            _ => None,
        })
        .collect();
    // Events in time order; a call sorts before a response at the same
    // instant (those operations overlap).
    let mut events: Vec<(u64, u8, usize, Entry)> = Vec::with_capacity(2 * n);
    for (i, op) in ops.iter().enumerate() {
        events.push((op.invoked_us, 0, i, Entry::Call(i)));
        if let Some((at, _)) = &op.returned {
            events.push((*at, 1, i, Entry::Return(i)));
        } else if let Some(ended) = op.ended_us {
            let ended = ended.max(queued_until(op));
            let deadline = completed_writes
                .iter()
                .filter(|(invoked, _)| *invoked > ended)
                .map(|(_, returned)| *returned)
                .min();
            if let Some(at) = deadline {
                events.push((at, 1, i, Entry::Deadline(i)));
            }
        }
    }
    events.sort_by_key(|(t, kind, i, _)| (*t, *kind, *i));
    let entries: Vec<Entry> = events.into_iter().map(|(_, _, _, e)| e).collect();
    let mut call_of = vec![usize::MAX; n];
    let mut end_of = vec![usize::MAX; n];
    for (pos, e) in entries.iter().enumerate() {
        match e {
            Entry::Call(i) => call_of[*i] = pos,
            Entry::Return(i) | Entry::Deadline(i) => end_of[*i] = pos,
        }
    }

    let mut links = Links::new(entries.len());
    // Completed operations not yet linearized; zero means success.
    let mut returns_left = ops.iter().filter(|o| o.returned.is_some()).count();
    let mut linearized = vec![false; n];
    let mut dropped = vec![false; n];
    let mut state = SpecState {
        compacted: compaction.this_name,
        fresh_at_floor: compaction.any_name,
        ..SpecState::default()
    };
    let mut stack: Vec<Choice> = Vec::new();
    let mut seen: HashSet<(Vec<u64>, Vec<u64>, SpecState)> = HashSet::new();
    let mut cursor = links.first;

    for _ in 0..budget {
        if returns_left == 0 {
            return Ok(Report { checked: true });
        }
        let entry = (cursor < links.end).then(|| entries[cursor]);
        match entry {
            Some(Entry::Call(i)) => {
                let op = ops[i];
                let next_state = match &op.returned {
                    Some((_, outcome)) => state.step(&op.op, outcome),
                    None => state.step_unknown(&op.op),
                };
                let fresh = next_state.is_some_and(|next| {
                    linearized[i] = true;
                    let fresh = seen.insert((bits(&linearized), bits(&dropped), next.clone()));
                    if fresh {
                        stack.push(Choice::Linearized {
                            op: i,
                            before: std::mem::replace(&mut state, next),
                        });
                    } else {
                        linearized[i] = false;
                    }
                    fresh
                });
                if fresh {
                    links.unlink(call_of[i]);
                    if end_of[i] != usize::MAX {
                        links.unlink(end_of[i]);
                    }
                    returns_left -= usize::from(op.returned.is_some());
                    cursor = links.first;
                } else {
                    cursor = links.next[cursor];
                }
            }
            Some(Entry::Deadline(i)) => {
                // Too late for it now: in this branch it never happened.
                dropped[i] = true;
                links.unlink(call_of[i]);
                links.unlink(end_of[i]);
                stack.push(Choice::Dropped { op: i });
                cursor = links.next[cursor];
            }
            // A response before its operation was linearized, or the end of
            // the list with responses still owed: undo the last choice.
            Some(Entry::Return(_)) | None => loop {
                match stack.pop() {
                    None => return Err(violation(name, n)),
                    Some(Choice::Dropped { op }) => {
                        dropped[op] = false;
                        links.relink(end_of[op]);
                        links.relink(call_of[op]);
                    }
                    Some(Choice::Linearized { op, before }) => {
                        linearized[op] = false;
                        state = before;
                        if end_of[op] != usize::MAX {
                            links.relink(end_of[op]);
                        }
                        links.relink(call_of[op]);
                        returns_left += usize::from(ops[op].returned.is_some());
                        cursor = links.next[call_of[op]];
                        break;
                    }
                }
            },
        }
    }
    Ok(Report { checked: false })
}

fn bits(flags: &[bool]) -> Vec<u64> {
    let mut out = vec![0u64; flags.len().div_ceil(64)];
    for (i, &on) in flags.iter().enumerate() {
        if on {
            out[i / 64] |= 1 << (i % 64);
        }
    }
    out
}

fn violation(name: &LeaseName, ops: usize) -> Violation {
    Violation::NotLinearizable {
        name: name.to_string(),
        ops,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tenure_core::{HolderId, LeaseView, LockDelay, Op, Outcome, Token, Ttl};

    fn name() -> LeaseName {
        LeaseName::new("n").unwrap()
    }
    fn acquire(h: &str) -> Op {
        Op::Acquire {
            holder: HolderId::new(h).unwrap(),
            ttl: Ttl::from_millis(100).unwrap(),
            lock_delay: LockDelay::NONE,
            wait: tenure_core::Micros::ZERO,
        }
    }
    fn granted(t: u64) -> Outcome {
        Outcome::Granted {
            token: Token(t),
            ttl: Ttl::from_millis(100).unwrap(),
        }
    }
    fn held(h: &str, t: u64) -> LeaseView {
        LeaseView::Held {
            holder: HolderId::new(h).unwrap(),
            token: Token(t),
            ttl: Ttl::from_millis(100).unwrap(),
            remaining: tenure_core::Micros(1),
            waiters: 0,
        }
    }
    fn op(client: usize, op: Op, invoked_us: u64, returned: Option<(u64, Outcome)>) -> OpRecord {
        OpRecord {
            client,
            op,
            invoked_us,
            returned,
            discarded: false,
            ended_us: None,
        }
    }

    #[test]
    fn sequential_grants_with_rising_tokens_are_linearizable() {
        let h = vec![
            op(1, acquire("a"), 0, Some((10, granted(1)))),
            op(
                2,
                acquire("b"),
                20,
                Some((30, Outcome::Conflict(held("a", 1)))),
            ),
            op(
                1,
                Op::Release {
                    holder: HolderId::new("a").unwrap(),
                    token: Token(1),
                },
                40,
                Some((50, Outcome::Released { token: Token(1) })),
            ),
            op(2, acquire("b"), 60, Some((70, granted(2)))),
        ];
        assert!(
            check(&name(), &h, STEP_BUDGET, Compaction::default())
                .unwrap()
                .checked
        );
        // Out of budget: no verdict, and the report says so.
        assert!(
            !check(&name(), &h, 0, Compaction::default())
                .unwrap()
                .checked
        );
    }

    #[test]
    fn concurrent_operations_may_linearize_in_either_order() {
        // b's grant (token 1) overlaps a's: a must be linearized second.
        let h = vec![
            op(1, acquire("a"), 0, Some((50, granted(2)))),
            op(2, acquire("b"), 10, Some((40, granted(1)))),
        ];
        assert!(check(&name(), &h, STEP_BUDGET, Compaction::default()).is_ok());
    }

    #[test]
    fn a_stale_read_after_a_completed_grant_is_not_linearizable() {
        let h = vec![
            op(1, acquire("a"), 0, Some((10, granted(1)))),
            op(
                2,
                Op::Read,
                20,
                Some((30, Outcome::Observed(LeaseView::Free { token: Token(0) }))),
            ),
        ];
        assert!(matches!(
            check(&name(), &h, STEP_BUDGET, Compaction::default()),
            Err(Violation::NotLinearizable { .. })
        ));
    }

    /// Once a read has shown grant 1 expired, no later answer may show it
    /// held, and its renewal must fail; while no answer has, either may.
    #[test]
    fn an_expired_grant_is_never_held_again() {
        let free = Outcome::Observed(LeaseView::Free { token: Token(1) });
        let renew = Op::Renew {
            holder: HolderId::new("a").unwrap(),
            token: Token(1),
        };
        let renewed = Outcome::Renewed {
            token: Token(1),
            ttl: Ttl::from_millis(100).unwrap(),
        };
        let read_again = vec![
            op(1, acquire("a"), 0, Some((10, granted(1)))),
            op(2, Op::Read, 20, Some((30, free.clone()))),
            op(2, Op::Read, 40, Some((50, Outcome::Observed(held("a", 1))))),
        ];
        assert!(check(&name(), &read_again, STEP_BUDGET, Compaction::default()).is_err());
        let renewed_after = vec![
            op(1, acquire("a"), 0, Some((10, granted(1)))),
            op(2, Op::Read, 20, Some((30, free.clone()))),
            op(1, renew.clone(), 40, Some((50, renewed.clone()))),
        ];
        assert!(check(&name(), &renewed_after, STEP_BUDGET, Compaction::default()).is_err());
        let renewed_before = vec![
            op(1, acquire("a"), 0, Some((10, granted(1)))),
            op(1, renew, 20, Some((30, renewed))),
            op(2, Op::Read, 40, Some((50, free))),
        ];
        assert!(check(&name(), &renewed_before, STEP_BUDGET, Compaction::default()).is_ok());
    }

    #[test]
    fn a_token_granted_twice_is_not_linearizable() {
        let h = vec![
            op(1, acquire("a"), 0, Some((10, granted(1)))),
            op(2, acquire("b"), 20, Some((30, granted(1)))),
        ];
        assert!(check(&name(), &h, STEP_BUDGET, Compaction::default()).is_err());
    }

    #[test]
    fn an_unknown_outcome_may_explain_a_later_token() {
        // a's acquire timed out, but it took effect: b sees token 2.
        let h = vec![
            op(1, acquire("a"), 0, None),
            op(2, acquire("c"), 5, Some((8, granted(1)))),
            op(3, acquire("b"), 20, Some((30, granted(3)))),
        ];
        assert!(check(&name(), &h, STEP_BUDGET, Compaction::default()).is_ok());
        let impossible = vec![op(3, acquire("b"), 20, Some((30, granted(3))))];
        assert!(check(&name(), &impossible, STEP_BUDGET, Compaction::default()).is_err());
    }

    #[test]
    fn an_unknown_outcome_cannot_take_effect_after_a_later_write_completed() {
        // a's acquire was abandoned at 5 (its node crashed); c's grant was
        // asked for at 10 and completed at 20, then d's. a's grant cannot
        // come after them.
        let mut late = op(1, acquire("a"), 0, None);
        late.ended_us = Some(5);
        let h = vec![
            late.clone(),
            op(2, acquire("c"), 10, Some((20, granted(1)))),
            op(4, acquire("d"), 25, Some((28, granted(2)))),
            op(3, Op::Read, 30, Some((40, Outcome::Observed(held("a", 3))))),
        ];
        assert!(check(&name(), &h, STEP_BUDGET, Compaction::default()).is_err());
        let mut open_ended = h.clone();
        open_ended[0].ended_us = None;
        assert!(
            check(&name(), &open_ended, STEP_BUDGET, Compaction::default()).is_ok(),
            "without the deadline it could"
        );
        // Before that write it may: then c's grant would be token 2.
        let h = vec![
            late,
            op(2, acquire("c"), 10, Some((20, granted(2)))),
            op(3, Op::Read, 30, Some((40, Outcome::Observed(held("c", 2))))),
        ];
        assert!(check(&name(), &h, STEP_BUDGET, Compaction::default()).is_ok());
    }

    #[test]
    fn a_conflict_on_a_free_name_is_not_linearizable() {
        let h = vec![op(
            1,
            acquire("a"),
            0,
            Some((10, Outcome::Conflict(LeaseView::Free { token: Token(0) }))),
        )];
        assert!(check(&name(), &h, STEP_BUDGET, Compaction::default()).is_err());
    }
}
