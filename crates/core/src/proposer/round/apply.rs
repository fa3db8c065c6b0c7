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
                Some(true) => return Earlier::Applied(a.verdicts.clone()),
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

    /// Apply the round's operations in order to `value` at `age`.
    pub(super) fn apply(&mut self, value: &LeaseValue, age: Micros) -> Applied {
        let rules = self.shared.rules;
        let now = self.now;
        let mut current = value.clone();
        let mut current_age = age;
        let mut changed = false;
        let mut verdicts = Vec::with_capacity(running(self.state).ops.len());
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
            let (change, answer) = lease::apply(&current, current_age, &p.op, waiting, &rules);
            match change {
                Change::Unchanged => {}
                Change::Fresh(next) => {
                    current = next;
                    current_age = Micros::ZERO;
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
                            if let (Change::Fresh(next), _) =
                                lease::apply(&current, current_age, &release, None, &rules)
                            {
                                current = next;
                                current_age = Micros::ZERO;
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
            written: changed.then_some((current, current_age)),
            verdicts,
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
        Op::Release { .. } => false,
    }
}

/// The value of the highest accepted ballot among `reports`, its age, and
/// that ballot (zero when nothing was accepted).
pub(super) fn highest(
    reports: &BTreeMap<NodeId, Option<Report>>,
    rules: &lease::Rules,
) -> (LeaseValue, Micros, Ballot) {
    let Some(top) = reports.values().flatten().map(|r| r.ballot).max() else {
        return (LeaseValue::default(), Micros::ZERO, Ballot::ZERO);
    };
    let value = reports
        .values()
        .flatten()
        .find(|r| r.ballot == top)
        .map(|r| r.value.clone())
        .unwrap_or_default();
    // Each acceptor's age is a lower bound of the same lease's true age,
    // so the largest of them is the best bound. Only ages of the value
    // being judged count: an older ballot's age belongs to another value.
    let any_ballot = rules.bugs.has(Bug::AgeOfAnyBallot);
    let age = reports
        .values()
        .flatten()
        .filter(|r| any_ballot || r.ballot == top)
        .map(|r| r.age)
        .max()
        .unwrap_or(Micros::ZERO);
    (value, age, top)
}
