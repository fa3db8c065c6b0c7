//! Envelopes whose delivery could change nothing, dropped so the checker
//! does not explore copies of states it has seen (`docs/model-check.md`
//! says why each rule is sound).

use super::cluster::*;
use super::network::Envelope;
use super::shared::hash_of;
use tenure_core::Message;

impl LeaseModel {
    /// Remove envelopes whose delivery could never change anything. Each
    /// would only lead to a copy of a state the checker has already seen
    /// (with one envelope fewer in flight), so dropping them loses no
    /// behaviour and keeps the state space small. See `docs/model-check.md`
    /// for why each rule is sound.
    pub(crate) fn collect_garbage(&self, s: &mut State, touched: Touched) {
        let near = |e: &Envelope| match touched {
            Touched::Nothing => false,
            Touched::Node(n) => e.to == n || e.from == n,
            Touched::Everything => true,
        };
        let mut garbage: Vec<Envelope> = s
            .network
            .all()
            .filter(|e| near(e) && self.is_garbage(s, e))
            .collect();
        garbage.dedup();
        for envelope in &garbage {
            s.network.forget(envelope);
        }
    }

    pub(crate) fn is_garbage(&self, s: &State, e: &Envelope) -> bool {
        // An acceptor that crashes may lose what it had not synced, so only
        // when no crash can come is a refused request sure to stay refused.
        let no_crash_to_come = s.crashes_left == 0;
        // With a crash in the scenario, answers to peeks are never
        // collected: one sent to a node's earlier life must still reach its
        // new life, so that peek ids reused across lives (a stale read this
        // model found, fixed by numbering peeks per incarnation) would show.
        let collect_peek_answers = self.scenario.crashes == 0;
        // A node whose configuration changes answers a message of its old
        // stamp with its configuration: only once neither end can change
        // its stamp again is what it ignores now ignored forever.
        if !self.settled_for_good(s, e.to) || !self.settled_for_good(s, e.from) {
            return false;
        }
        match &e.message {
            // Ballots only grow and carry the incarnation, so a reply the
            // proposer ignores now (an older ballot, an older life, or an
            // acceptor already counted) it ignores forever.
            Message::Promise { .. } | Message::Accepted { .. } | Message::Nack { .. } => {
                self.ignored(s, e)
            }
            Message::Peeked { .. } => collect_peek_answers && self.ignored(s, e),
            Message::Prepare { .. } | Message::Accept { .. } | Message::Peek { .. } => {
                no_crash_to_come && self.answer_is_garbage(s, e, collect_peek_answers)
            }
            // Once the change is over at both ends, a node that ignores
            // these ignores them for good: it coordinates nothing (asked
            // again, it finds the change done) and rescans under no later
            // epoch.
            Message::RaiseFloor { .. }
            | Message::FloorRaised { .. }
            | Message::Configuration(_)
            | Message::Recorded
            | Message::Rescan
            | Message::Rescanned => self.ignored(s, e),
            // Never in flight: the model sends no news of chosen values,
            // and never compacts.
            Message::Chosen(_) | Message::Compact { .. } => true,
        }
    }

    /// Whether delivering `e` leaves its recipient exactly as it is.
    pub(crate) fn ignored(&self, s: &State, e: &Envelope) -> bool {
        let machine = &s.machines[e.to];
        // The verdict depends only on the recipient and the envelope.
        let key = (
            self.fingerprint,
            s.now.as_micros(),
            machine.hash_value(),
            0,
            hash_of(e),
        );
        remembered(key, || {
            let mut probe = machine.node.clone();
            probe.handle_message(
                self.node_clock(e.to, s.now),
                node_id(e.from),
                e.stamp,
                e.message.clone(),
            );
            probe == machine.node
        })
    }

    /// Whether an acceptor would answer `e` without changing its state,
    /// with a nack or a peek answer that the proposer ignores. Promises
    /// only grow, so a nacked ballot stays nacked; the nack stays ignored
    /// once the proposer has moved past that ballot, which is what ignoring
    /// it means unless the nack names the proposer's own promise (then it
    /// is ignored whatever the phase, and might not be later).
    pub(crate) fn answer_is_garbage(
        &self,
        s: &State,
        e: &Envelope,
        collect_peek_answers: bool,
    ) -> bool {
        // The verdict depends only on the acceptor, the proposer that sent
        // the request (where the answer goes) and the envelope.
        let key = (
            self.fingerprint,
            s.now.as_micros(),
            s.machines[e.to].hash_value(),
            s.machines[e.from].hash_value(),
            hash_of(&(e, collect_peek_answers)),
        );
        remembered(key, || self.probe_answer(s, e, collect_peek_answers))
    }

    pub(crate) fn probe_answer(&self, s: &State, e: &Envelope, collect_peek_answers: bool) -> bool {
        let node = &s.machines[e.to].node;
        let mut probe = node.clone();
        probe.handle_message(
            self.node_clock(e.to, s.now),
            node_id(e.from),
            e.stamp,
            e.message.clone(),
        );
        if probe.poll_write().is_some() {
            return false;
        }
        let mut answers = Vec::new();
        while let Some(t) = probe.poll_transmit() {
            answers.push(Envelope {
                from: e.to,
                to: node_index(t.to),
                stamp: t.stamp,
                message: t.message,
            });
        }
        while probe.poll_event().is_some() {}
        if probe.poll_reply().is_some() || probe != *node {
            return false;
        }
        answers.iter().all(|answer| {
            let kind_is_garbage = match &answer.message {
                Message::Peeked { .. } => collect_peek_answers,
                Message::Nack {
                    ballot, promised, ..
                } => (promised.node, promised.incarnation) != (ballot.node, ballot.incarnation),
                _ => false,
            };
            kind_is_garbage && self.ignored(s, answer)
        })
    }
}
