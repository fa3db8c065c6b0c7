//! The simulated nodes: booting one as `tenure server` does, crashing it,
//! and carrying what it wants done to its disk, its peers and its clients.

use super::*;

impl World {
    pub(super) fn boot(&mut self, i: usize) {
        let mut clock = self.new_clock(Side::Node);
        if let Some(bad) = self.bad_clock.as_ref().filter(|b| b.node == i) {
            clock = clock.with_rate(bad.rate_ppm, self.now);
        }
        let seed = self.rng.next_u64();
        let rules = self.rules;
        let compaction = self.compaction;
        let sim = &mut self.nodes[i];
        sim.clock = clock;
        let now = sim.clock.local(self.now);
        let id = sim.id;
        let first = sim.first.clone();
        let config = |boot: Boot| Config {
            node: id,
            incarnation: boot.incarnation,
            promise_horizon: boot.horizon,
            token_floor: boot.token_floor,
            configuration: first,
            rules,
            timing: Timing {
                phase_timeout: tenure_core::Micros::from_millis(100),
                request_deadline: tenure_core::Micros::from_millis(1_000),
                ..Timing::default()
            },
            compaction,
            seed,
        };
        match sim.disk.boot(config, now) {
            Ok(node) => {
                let incarnation = node.config().incarnation;
                sim.node = Some(node);
                self.trace.line(
                    self.now,
                    format_args!("node {i} boots, incarnation {incarnation}"),
                );
                self.tell_who_is_down();
            }
            Err(e) => unreachable!("a crash alone never keeps a node from starting: {e}"),
        }
    }

    pub(super) fn crash(&mut self, node: usize) {
        self.go_down(node);
        let back = self.now + self.rng.between(10_000, 500_000);
        self.schedule(back, Event::Restart { node });
    }

    /// The node's process dies: what it was doing is lost, its disk keeps
    /// what was synced.
    pub(super) fn go_down(&mut self, node: usize) {
        let sim = &mut self.nodes[node];
        for (_, (_, name, index)) in std::mem::take(&mut sim.requests) {
            self.history.end(&name, index, self.now);
        }
        let sim = &mut self.nodes[node];
        sim.node = None;
        sim.disk.crash();
        sim.life += 1;
        sim.syncing = false;
        sim.timer_at = None;
        sim.requests.clear();
        sim.paused_until = 0;
        self.trace
            .line(self.now, format_args!("node {node} crashes"));
        self.tell_who_is_down();
    }

    /// Every node that is up learns which are down, as a dead process's
    /// peers learn it from its connections' resets: a handoff passes over
    /// their waiters. (A partition tells nobody, as it tells a real node
    /// nothing until its peers' ticks stop coming.) A node that wrongly
    /// suspects a live peer counts it out of touch too.
    pub(super) fn tell_who_is_down(&mut self) {
        let now = self.now;
        self.suspicions.retain(|&(_, _, until)| until > now);
        let down: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|s| s.node.is_none())
            .map(|s| s.id)
            .collect();
        for (i, sim) in self.nodes.iter_mut().enumerate() {
            if let Some(node) = sim.node.as_mut() {
                let mut out = down.clone();
                out.extend(self.suspicions.iter().filter(|s| s.0 == i).map(|s| s.1));
                node.set_out_of_touch(&out);
            }
        }
    }

    /// A false suspicion: a node counts a peer out of touch for 10 to
    /// 200 ms although it may well be up, every 20 to 200 ms, the crowd's
    /// time included. Whom a handoff passes over is a hint; nothing may
    /// depend on it being right.
    pub(super) fn suspect(&mut self) {
        let n = self.nodes.len() as u64;
        let observer = self.suspicion_rng.below(n) as usize;
        let suspect = (observer + 1 + self.suspicion_rng.below(n - 1) as usize) % self.nodes.len();
        let until = self.now + self.suspicion_rng.between(10_000, 200_000);
        let id = self.nodes[suspect].id;
        self.suspicions.push((observer, id, until));
        self.trace.line(
            self.now,
            format_args!("node {observer} wrongly counts node {suspect} out of touch"),
        );
        self.tell_who_is_down();
        self.schedule(until, Event::Unsuspect);
        let next = self.now + self.suspicion_rng.between(20_000, 200_000);
        self.schedule(next, Event::Suspect);
    }

    /// Collect what the node wants done: writes to the disk, messages to the
    /// network, replies to clients, and its next timer.
    pub(super) fn drain(&mut self, i: usize) {
        let Some(node) = self.nodes[i].node.as_mut() else {
            return;
        };
        let mut writes = Vec::new();
        while let Some(w) = node.poll_write() {
            writes.push(w);
        }
        let mut transmits = Vec::new();
        while let Some(t) = node.poll_transmit() {
            transmits.push(t);
        }
        let mut replies = Vec::new();
        while let Some(r) = node.poll_reply() {
            replies.push(r);
        }
        let mut phases = Vec::new();
        while let Some(event) = node.poll_event() {
            if let tenure_core::Event::Phase { name, phase } = event {
                phases.push(format!("node {i} {name} {}", phase.kind()));
            }
        }
        for line in phases {
            self.trace.line(self.now, format_args!("{line}"));
        }
        let Some(node) = self.nodes[i].node.as_mut() else {
            return;
        };
        let timer = node.poll_timeout();
        let from = self.nodes[i].id;
        for w in writes {
            if let tenure_core::Record::Compact { name, .. } = &w.record {
                self.trace
                    .line(self.now, format_args!("node {i} compacts {name}"));
                self.compactions += 1;
                self.compacted.insert(name.clone());
            }
            self.nodes[i].disk.write(w);
        }
        if !self.nodes[i].syncing {
            if let Some(through) = self.nodes[i].disk.last_unsynced() {
                self.nodes[i].syncing = true;
                let latency = if self.rng.chance(self.faults.slow_sync_ppm) {
                    self.rng.between(10_000, 100_000)
                } else {
                    self.rng.between(50, 500)
                };
                let life = self.nodes[i].life;
                self.schedule(
                    self.now + latency,
                    Event::Synced {
                        node: i,
                        life,
                        through,
                    },
                );
            }
        }
        for t in transmits {
            let to = usize::from(t.to.0) - 1;
            let lazy = matches!(t.message, Message::Accepted { durable: false, .. });
            self.send_message(i, to, from, t.stamp, t.message);
            if lazy && self.crash_rng.chance(self.faults.lazy_crash_ppm) {
                let at = self.now + self.crash_rng.below(300);
                self.schedule(at, Event::CrashNode { node: i });
            }
        }
        for r in replies {
            if let Some((client, name, index)) = self.nodes[i].requests.remove(&r.request.0) {
                // The history takes the outcome when the node gives it, whether
                // or not the client ever hears of it.
                match &r.result {
                    Ok(outcome) => self
                        .history
                        .complete(&name, index, self.now, outcome.clone()),
                    Err(Failure::Unavailable {
                        outcome_unknown: true,
                    }) => self.history.end(&name, index, self.now),
                    Err(_) => self.history.discard(&name, index),
                }
                if let Some(at) = self.delivery_time(i, usize::MAX) {
                    self.schedule(
                        at,
                        Event::Answer {
                            client,
                            request: r.request.0,
                            result: r.result,
                        },
                    );
                }
            }
        }
        if let Some(t) = timer {
            let at = self.nodes[i].clock.true_at(t);
            // One queued timer event per node: an earlier one covers later
            // timers, since the node re-arms when it fires.
            if self.nodes[i].timer_at.is_none_or(|queued| at < queued) {
                self.nodes[i].timer_at = Some(at);
                let life = self.nodes[i].life;
                self.schedule(at, Event::NodeTimer { node: i, life });
            }
        }
    }

    pub(super) fn send_message(
        &mut self,
        from_index: usize,
        to: usize,
        from: NodeId,
        stamp: Stamp,
        message: Message,
    ) {
        let copies = if self.rng.chance(self.faults.duplicate_ppm) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            if let Some(at) = self.delivery_time(from_index, to) {
                self.schedule(
                    at,
                    Event::Deliver {
                        from,
                        to,
                        stamp,
                        message: message.clone(),
                    },
                );
            }
        }
    }

    /// When a message sent now arrives, or `None` if it is lost. Clients use
    /// `usize::MAX` as their end: they are never partitioned, only delayed
    /// and lost.
    pub(super) fn delivery_time(&mut self, from: usize, to: usize) -> Option<u64> {
        if self.cut.contains(&(from, to)) || self.rng.chance(self.faults.loss_ppm) {
            return None;
        }
        let mut delay = self.rng.between(50, 1_500);
        if self.rng.chance(self.faults.tail_ppm) {
            delay += self.rng.below(self.faults.tail_max_us);
        }
        Some(self.now + delay)
    }
}
