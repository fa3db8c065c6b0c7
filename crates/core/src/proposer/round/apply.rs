//! A round's operations applied to the value it learnt, and what its
//! earlier attempts did.

use super::*;

impl RoundCtx<'_> {
    /// Did an earlier attempt of this round take effect in `value`?
    pub(super) fn earlier_attempts(&mut self, value: &LeaseValue) -> Earlier {
        let round = running(self.state);
        let mut verdict = Earlier::NotApplied;
        for a in &round.attempts {
            match value.writes.wrote(a.number, a.ballot) {
                Some(true) => return Earlier::Applied(a.clone()),
                Some(false) => {}
                None => verdict = Earlier::Unknown,
            }
        }
        // Too long ago to tell; but operations that are safe to apply
        // again may simply be applied again.
        if matches!(verdict, Earlier::Unknown) && round.ops.iter().all(idempotent) {
            return Earlier::NotApplied;
        }
        verdict
    }

    /// Apply the round's operations in order to `value`, whose lease clock
    /// is at `age` and started at `origin`.
    pub(super) fn apply(&mut self, value: &LeaseValue, age: Micros, origin: Ballot) -> Applied {
        let rules = self.shared.rules;
        let out = OutOfTouch(&self.shared.out_of_touch);
        let now = self.now;
        let mut current = value.clone();
        let mut current_age = age;
        let mut clock = LeaseClock::going_on(age, origin);
        let mut changed = false;
        let mut verdicts = Vec::with_capacity(running(self.state).ops.len());
        let mut changes = Vec::new();
        for p in &running(self.state).ops {
            let waiting = p.wait.map(|w| Waiting {
                id: w.id,
                left: if w.cancelled {
                    Micros::ZERO
                } else {
                    w.until.since(now)
                },
            });
            if let Some(w) = p.wait {
                let handed = current.grant.as_ref().and_then(|g| g.waiter) == Some(w.id);
                if w.queued && !handed && !current.waiters.contains(w.id) {
                    // It was in a chosen queue, and is neither there nor
                    // holding: a grant was handed to it and lost before
                    // it could learn of it (its node was cut off for a
                    // whole ttl). Saying so beats granting twice.
                    verdicts.push(Verdict::Fail(Failure::Unavailable {
                        outcome_unknown: true,
                    }));
                    continue;
                }
            }
            let (change, answer) =
                lease::apply_passing_over(&current, current_age, &p.op, waiting, &rules, out);
            if let Change::Fresh(next) | Change::Kept(next) = &change {
                let outcome = match &answer {
                    Answer::Reply(outcome) => Some(outcome),
                    Answer::Wait(_) => None,
                };
                let did = lease::transitions(&current, current_age, next, outcome, &rules);
                changes.extend(did);
            }
            match change {
                Change::Unchanged => {}
                Change::Fresh(next) => {
                    current = next;
                    current_age = Micros::ZERO;
                    clock = LeaseClock {
                        age: Micros::ZERO,
                        origin: None,
                    };
                    changed = true;
                }
                Change::Kept(next) => {
                    current = next;
                    changed = true;
                }
            }
            let verdict = match answer {
                Answer::Reply(outcome) => {
                    if let (Some(w), Outcome::Granted { token, .. }, Op::Acquire { holder, .. }) =
                        (p.wait, &outcome, &p.op)
                    {
                        if w.cancelled {
                            // Nobody will use it: release it at once, which
                            // hands it to the next waiter.
                            let release = Op::Release {
                                holder: holder.clone(),
                                token: *token,
                            };
                            if let (Change::Fresh(next), released) = lease::apply_passing_over(
                                &current,
                                current_age,
                                &release,
                                None,
                                &rules,
                                out,
                            ) {
                                let released = match &released {
                                    Answer::Reply(outcome) => Some(outcome),
                                    Answer::Wait(_) => None,
                                };
                                changes.extend(lease::transitions(
                                    &current,
                                    current_age,
                                    &next,
                                    released,
                                    &rules,
                                ));
                                current = next;
                                current_age = Micros::ZERO;
                                clock = LeaseClock {
                                    age: Micros::ZERO,
                                    origin: None,
                                };
                                changed = true;
                            }
                        }
                    }
                    Verdict::Reply(outcome)
                }
                Answer::Wait(view) => Verdict::Wait {
                    queued: waiting.is_some_and(|w| current.waiters.contains(w.id)),
                    view,
                },
            };
            verdicts.push(verdict);
        }
        Applied {
            written: changed.then_some((current, clock)),
            verdicts,
            changes,
        }
    }
}

/// Whether applying `p` again, after an attempt of unknown fate, is safe:
/// a waiting acquire finds its grant or its place in the queue by its id,
/// a renewal of a live grant restarts its clock once more, and reads change
/// nothing. A plain acquire would grant twice; a release that took effect
/// would report a conflict with itself.
pub(super) fn idempotent(p: &Pending) -> bool {
    match &p.op {
        Op::Acquire { .. } => p.wait.is_some(),
        Op::Renew { .. } | Op::Read => true,
        Op::Release { .. } | Op::Force { .. } => false,
    }
}

/// What a quorum's reports show: the value of the highest accepted ballot
/// (`top`, zero when nothing was accepted), the age its lease clock has at
/// least, and the ballot that started that clock.
pub(crate) struct Learnt {
    pub value: LeaseValue,
    pub age: Micros,
    pub origin: Ballot,
    pub top: Ballot,
}

/// Judge `reports` (see [`Learnt`]). Every acceptor's age is a lower bound
/// of the same clock's true age, but only if that acceptor's clock keeps
/// the drift bound. So the age is the `quorum`-th largest of the ages that
/// belong to the top value's clock: with fewer faulty clocks than that, at
/// least one clock that keeps the bound reports an age at least as large.
/// Fewer such ages than `quorum` show nothing, and the age is zero: the
/// lease lasts longer, never shorter. (docs/safety.md, "One faulty clock".)
///
/// At ballot zero nothing is stored: the name was never written, or every
/// member that answered compacted it. Its value is free at the highest
/// token floor reported, above every token the name ever had.
pub(crate) fn highest(
    reports: &BTreeMap<NodeId, Option<Report>>,
    rules: &lease::Rules,
    quorum: usize,
) -> Learnt {
    let top = reports.values().flatten().map(|r| r.ballot).max();
    let Some(top) = top.filter(|top| *top != Ballot::ZERO) else {
        let token = reports.values().flatten().map(|r| r.value.token).max();
        return Learnt {
            value: LeaseValue {
                token: token.unwrap_or_default(),
                ..LeaseValue::default()
            },
            age: Micros::ZERO,
            origin: Ballot::ZERO,
            top: Ballot::ZERO,
        };
    };
    let at_top = || reports.values().flatten().filter(|r| r.ballot == top);
    let value = at_top().next().map(|r| r.value.clone()).unwrap_or_default();
    // A restarted acceptor names the value's own ballot as its clock's
    // origin (it lost the true one), which is no earlier: the earliest
    // named is the truest.
    let origin = at_top().map(|r| r.origin).min().unwrap_or(top);
    let any_ballot = rules.bugs.has(Bug::AgeOfAnyBallot);
    let mut ages: Vec<Micros> = reports
        .values()
        .flatten()
        .filter(|r| any_ballot || r.ballot == top || r.origin == origin)
        .map(|r| r.age)
        .collect();
    ages.sort_unstable_by(|a, b| b.cmp(a));
    let age = if any_ballot || rules.bugs.has(Bug::TrustOneClock) {
        ages.first().copied()
    } else {
        ages.get(quorum.saturating_sub(1)).copied()
    };
    Learnt {
        value,
        age: age.unwrap_or(Micros::ZERO),
        origin,
        top,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bugs::Bugs;

    fn b(counter: u64) -> Ballot {
        Ballot {
            counter,
            node: 1,
            incarnation: 1,
        }
    }

    fn report(ballot: u64, age_ms: u64, origin: u64) -> Option<Report> {
        Some(Report {
            ballot: b(ballot),
            value: LeaseValue::default(),
            age: Micros::from_millis(age_ms),
            origin: b(origin),
        })
    }

    fn judged(list: &[Option<Report>], bugs: Bugs) -> Learnt {
        let reports = list
            .iter()
            .enumerate()
            .map(|(i, r)| (NodeId(i as u16 + 1), r.clone()))
            .collect();
        let rules = lease::Rules {
            bugs,
            ..lease::Rules::default()
        };
        highest(&reports, &rules, 2)
    }

    #[test]
    fn one_fast_clock_cannot_age_a_lease_alone() {
        let fast_and_true = [report(5, 9_000, 3), report(5, 1_000, 3)];
        assert_eq!(
            judged(&fast_and_true, Bugs::NONE).age,
            Micros::from_millis(1_000)
        );
        let trusting = judged(&fast_and_true, Bugs::inject(Bug::TrustOneClock));
        assert_eq!(trusting.age, Micros::from_millis(9_000));
        // Of three, the second largest: one clock may be off either way.
        let three = [
            report(5, 9_000, 3),
            report(5, 1_000, 3),
            report(5, 2_000, 3),
        ];
        assert_eq!(judged(&three, Bugs::NONE).age, Micros::from_millis(2_000));
    }

    #[test]
    fn ages_count_for_the_top_values_clock_only() {
        // An older value of the same clock (only its queue differs) counts;
        // one with another clock does not, and one age alone shows nothing.
        let same_clock = [report(6, 800, 3), report(4, 700, 3)];
        let learnt = judged(&same_clock, Bugs::NONE);
        assert_eq!(
            (learnt.age, learnt.origin, learnt.top),
            (Micros::from_millis(700), b(3), b(6))
        );
        let other_clock = [report(6, 800, 6), report(4, 5_000, 2)];
        assert_eq!(judged(&other_clock, Bugs::NONE).age, Micros::ZERO);
        // A restarted acceptor names the value's own ballot as the origin;
        // the earliest origin named at the top ballot is the one kept.
        let restarted = [report(6, 100, 6), report(6, 800, 3), report(5, 900, 3)];
        let learnt = judged(&restarted, Bugs::NONE);
        assert_eq!(
            (learnt.age, learnt.origin),
            (Micros::from_millis(800), b(3))
        );
    }
}
