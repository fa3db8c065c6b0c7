//! Looks: quorum reads that promise nothing. A look asks a bare majority
//! first (this node and the peers that answered it last), and the others
//! only when those disagree or are slow; it is decided once the highest
//! ballot among the answers is reported by a majority.

use super::*;

impl RoundCtx<'_> {
    pub(super) fn look(&mut self) {
        // Peek ids carry the incarnation in their high half, so an answer to
        // a peek of an earlier life of this node can never be counted for a
        // peek of this one. Past 2^32 peeks in one life, rounds go through
        // phase 1 instead of reusing an id.
        if self.shared.next_peek > u64::from(u32::MAX) {
            return self.prepare();
        }
        let id = u64::from(self.shared.incarnation) << 32 | self.shared.next_peek;
        self.shared.next_peek += 1;
        // A majority is enough when it agrees, and most looks find a value
        // at rest: ask this node and the peers that answered last, and the
        // others only if need be (half the messages of asking everyone).
        let asked = self.shared.nearest_majority();
        let widened = asked.len() == self.shared.quorums.members().len();
        let timer = if widened {
            self.shared.timing.phase_timeout
        } else {
            widen_after(&self.shared.timing)
        };
        self.set_phase(
            Phase::Looking {
                id,
                reports: BTreeMap::new(),
                lazy: BTreeSet::new(),
                widened,
            },
            self.now.plus(timer),
        );
        for to in asked {
            let peek = Message::Peek {
                name: self.name.clone(),
                id,
            };
            self.fx.sends.push((To::Node(to), peek));
        }
        self.fx.phases.push((self.name.clone(), PhaseKind::Look));
    }

    /// Ask every member that has not answered the look.
    pub(super) fn widen_look(&mut self) {
        let Phase::Looking {
            id,
            reports,
            widened,
            ..
        } = &mut running(self.state).phase
        else {
            unreachable!("only a look widens")
        };
        assert!(!*widened, "a look widens once");
        *widened = true;
        let (id, answered): (u64, Vec<NodeId>) = (*id, reports.keys().copied().collect());
        // Everyone that has not answered: those asked first and silent
        // (a lost message) once more, the others for the first time.
        let rest: Vec<NodeId> = self
            .shared
            .quorums
            .members()
            .iter()
            .copied()
            .filter(|m| !answered.contains(m))
            .collect();
        let timeout = self.now.plus(self.shared.timing.phase_timeout);
        let round = running(self.state);
        let deadline = round
            .ops
            .iter()
            .map(|p| p.deadline)
            .min()
            .unwrap_or(timeout);
        round.timer = timeout.min(deadline);
        for to in rest {
            let peek = Message::Peek {
                name: self.name.clone(),
                id,
            };
            self.fx.sends.push((To::Node(to), peek));
        }
    }

    pub(super) fn on_look_answer(&mut self) {
        let quorums = &self.shared.quorums;
        let Phase::Looking {
            reports,
            lazy,
            widened,
            ..
        } = &running(self.state).phase
        else {
            unreachable!("answers are counted while looking")
        };
        let widened = *widened;
        let heard_a_quorum = quorums.is_quorum(|m| reports.contains_key(&m));
        match looked(reports, lazy, quorums) {
            Looked::Chosen => self.conclude_look(),
            // The majority asked first disagrees, or holds the value only
            // lazily: the others may settle it.
            _ if !widened && heard_a_quorum => {
                self.widen_look();
                self.hear_the_rest_briefly();
            }
            Looked::Waiting if heard_a_quorum => self.hear_the_rest_briefly(),
            Looked::Waiting => {}
            Looked::Unsettled | Looked::NotYetDurable => self.look_again(),
        }
    }

    /// A majority answered the look and disagrees: a write was in flight,
    /// which a look begun a moment later sees. Wait for the other members
    /// only as long as for the first ones, then look again (`on_timer`):
    /// they may be down, and waiting out a phase for them would let the
    /// name move on so far that this round could no longer learn the fate
    /// of its own earlier write.
    fn hear_the_rest_briefly(&mut self) {
        if self.shared.rules.bugs.has(Bug::LookWaitsForTheSilent) {
            return;
        }
        let soon = self.now.plus(widen_after(&self.shared.timing));
        let round = running(self.state);
        round.timer = round.timer.min(soon);
    }

    /// A look found the chosen value: answer from it, or write after all.
    pub(super) fn conclude_look(&mut self) {
        let round = running(self.state);
        let Phase::Looking { reports, .. } = &round.phase else {
            unreachable!("a look concludes while looking")
        };
        let Learnt {
            value,
            age,
            origin,
            top,
        } = highest(reports, &self.shared.rules, self.shared.quorums.age_rank());
        // An attempt of this round above what the quorum reports may still
        // be accepted; only a value at or above it can tell its fate.
        if round.attempts.iter().any(|a| a.ballot > top) {
            return self.look_again();
        }
        // The proposer this round defers to has not written yet: give it
        // the time it was given, rather than pre-empting it.
        match round.deferring {
            Some((promised, until)) if !wrote_at_or_after(top, promised) && self.now < until => {
                return self.look_again();
            }
            _ => round.deferring = None,
        }
        let applied = match self.earlier_attempts(&value) {
            Earlier::NotApplied => {
                // Chosen at or above every attempt, and without them: none
                // of them can ever take effect now.
                running(self.state).attempts.clear();
                self.apply(&value, age, origin)
            }
            Earlier::Applied(attempt) => {
                self.report_chosen(attempt.ballot, attempt.changes);
                return self.finish(attempt.verdicts, Reservation::Drop);
            }
            Earlier::Unknown => return self.fail(true),
        };
        if applied.written.is_none() {
            return self.finish(applied.verdicts, Reservation::Keep);
        }
        // A write is due after all: this node's guess was stale, or the
        // proposer that pre-empted this round is done and left work.
        let round = running(self.state);
        round.seen = round.seen.max(top);
        self.drop_fast_path();
        if self.first_refusal_elsewhere(&value, age, top) {
            return self.wait_for_write(Micros(self.shared.timing.backoff_max.0 / 4));
        }
        self.prepare();
    }

    /// The answers so far cannot show a chosen value: a write is in flight.
    /// Look again once it lands (or after a pause), and after a few tries
    /// prepare, which settles a value that only a minority accepted.
    pub(super) fn look_again(&mut self) {
        let round = running(self.state);
        round.looks += 1;
        let deferring = round.deferring.is_some_and(|(_, until)| self.now < until);
        if round.looks >= MAX_LOOKS && !deferring {
            round.looks = 0;
            round.deferring = None;
            return self.prepare();
        }
        let cap = backoff_cap(self.shared.timing.backoff_max, round.looks + 1);
        self.wait_for_write(cap);
    }
}

/// What a quorum of look answers shows.
pub(super) enum Looked {
    /// Not enough answers yet.
    Waiting,
    /// The highest ballot reported is held by a majority: its value is
    /// chosen, and nothing later was chosen before the look began.
    Chosen,
    /// No ballot can reach a majority among these answers.
    Unsettled,
    /// Every member has answered, and the top ballot has a majority, but
    /// not of durable acceptances: a lazy record is still on its way.
    NotYetDurable,
}

/// How long a look waits for the majority it asked first before it asks
/// the other members too: a peer that has gone quiet costs one look this
/// much once, since the peers that answer are asked first from then on.
pub(super) fn widen_after(timing: &Timing) -> Micros {
    Micros(timing.backoff_max.0 / 8)
}

/// Whether look answers show a chosen value. `None` reports (nothing
/// accepted) count as the zero ballot. Lazy acceptances (`lazy`) count as
/// a value is chosen (`on_acknowledged`): towards a majority of durable
/// ones, or as every member's.
pub(super) fn looked(
    reports: &BTreeMap<NodeId, Option<Report>>,
    lazy: &BTreeSet<NodeId>,
    quorums: &Quorums,
) -> Looked {
    let ballot = |r: &Option<Report>| r.as_ref().map_or(Ballot::ZERO, |r| r.ballot);
    let Some(top) = reports.values().map(ballot).max() else {
        return Looked::Waiting;
    };
    let at_top = |m: NodeId| reports.get(&m).is_some_and(|r| ballot(r) == top);
    let unheard = |m: NodeId| !reports.contains_key(&m);
    if quorums.is_quorum(|m| at_top(m) && !lazy.contains(&m)) || quorums.is_everyone(at_top) {
        Looked::Chosen
    } else if !quorums.is_quorum(|m| at_top(m) || unheard(m)) {
        Looked::Unsettled
    } else if !quorums.members().iter().any(|m| unheard(*m)) {
        Looked::NotYetDurable
    } else {
        Looked::Waiting
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(counter: u64) -> Option<Report> {
        let ballot = Ballot {
            counter,
            node: 1,
            incarnation: 1,
        };
        Some(Report {
            ballot,
            value: LeaseValue::default(),
            age: Micros::ZERO,
            origin: ballot,
        })
    }

    fn trio() -> Quorums {
        Quorums::majority(&[NodeId(1), NodeId(2), NodeId(3)])
    }

    fn none() -> BTreeSet<NodeId> {
        BTreeSet::new()
    }

    fn answers(list: &[(u16, Option<Report>)]) -> BTreeMap<NodeId, Option<Report>> {
        list.iter().map(|(n, r)| (NodeId(*n), r.clone())).collect()
    }

    #[test]
    fn a_look_is_decided_once_the_top_ballot_has_a_majority() {
        let two_of_three = answers(&[(1, report(5)), (2, report(5))]);
        assert!(matches!(
            looked(&two_of_three, &none(), &trio()),
            Looked::Chosen
        ));
        // Split answers wait for the third, which decides either way.
        let split = answers(&[(1, report(5)), (2, report(4))]);
        assert!(matches!(looked(&split, &none(), &trio()), Looked::Waiting));
        let settled = answers(&[(1, report(5)), (2, report(4)), (3, report(4))]);
        assert!(matches!(
            looked(&settled, &none(), &trio()),
            Looked::Unsettled
        ));
        let chosen = answers(&[(1, report(5)), (2, report(4)), (3, report(5))]);
        assert!(matches!(looked(&chosen, &none(), &trio()), Looked::Chosen));
        // Nothing accepted anywhere is a value too: the empty register.
        let empty = answers(&[(1, None), (2, None)]);
        assert!(matches!(looked(&empty, &none(), &trio()), Looked::Chosen));
    }

    #[test]
    fn lazy_answers_decide_a_look_only_from_every_member() {
        let lazy: BTreeSet<NodeId> = [NodeId(1), NodeId(2)].into();
        let two = answers(&[(1, report(5)), (2, report(5))]);
        assert!(matches!(looked(&two, &lazy, &trio()), Looked::Waiting));
        let three = answers(&[(1, report(5)), (2, report(5)), (3, report(5))]);
        assert!(matches!(looked(&three, &lazy, &trio()), Looked::Chosen));
        let one_durable = answers(&[(1, report(5)), (2, report(5)), (3, report(4))]);
        assert!(matches!(
            looked(&one_durable, &lazy, &trio()),
            Looked::NotYetDurable
        ));
        let durable_pair = answers(&[(1, report(5)), (3, report(5))]);
        let only_one_lazy: BTreeSet<NodeId> = [NodeId(2)].into();
        assert!(matches!(
            looked(&durable_pair, &only_one_lazy, &trio()),
            Looked::Chosen
        ));
    }
}
