//! Partitions, healing, and the liveness probe after it.

use super::*;

impl World {
    pub(super) fn repartition(&mut self) {
        self.cut.clear();
        let n = self.nodes.len();
        let mut side: Vec<usize> = (0..n).collect();
        // Shuffle, then cut off a prefix: a minority or a majority alike.
        for i in (1..n).rev() {
            let j = self.rng.below(i as u64 + 1) as usize;
            side.swap(i, j);
        }
        let cut_size = self.rng.between(0, n as u64 - 1) as usize;
        let one_way = self.rng.chance(250_000);
        for &a in &side[..cut_size] {
            for &b in &side[cut_size..] {
                self.cut.insert((a, b));
                if !one_way {
                    self.cut.insert((b, a));
                }
            }
        }
        self.trace
            .line(self.now, format_args!("partition {:?}", self.cut));
    }

    /// The bad clock jumps, forward or back; the node's timer is re-armed
    /// on its new reading.
    pub(super) fn step_bad_clock(&mut self) {
        let Some(bad) = self.bad_clock.clone() else {
            return;
        };
        let delta = self
            .clock_rng
            .symmetric(bad.step_max_us.min(u64::from(u32::MAX)) as u32);
        let node = &mut self.nodes[bad.node];
        node.clock = node.clock.stepped(delta, self.now);
        let life = node.life;
        node.timer_at = Some(self.now);
        self.trace.line(
            self.now,
            format_args!("node {} clock steps {delta} us", bad.node),
        );
        self.schedule(
            self.now,
            Event::NodeTimer {
                node: bad.node,
                life,
            },
        );
        let next = self.now + self.clock_rng.between(1, 2 * bad.step_every_us.max(1));
        self.schedule(next, Event::ClockStep);
    }

    pub(super) fn heal(&mut self) {
        self.healed_at = Some(self.now);
        self.faults = self.faults.healed();
        self.cut.clear();
        self.trace.line(self.now, format_args!("faults heal"));
        for node in &mut self.nodes {
            node.paused_until = 0;
        }
        for i in self.serving_nodes() {
            if self.nodes[i].node.is_none() {
                self.boot(i);
            }
        }
        for c in &mut self.clients {
            c.stopped = true;
        }
        self.schedule(self.now + 10_000, Event::Probe);
    }

    /// Liveness: once healed, a free name must be acquirable. The probe asks
    /// a random node, and asks again every so often until it is granted.
    pub(super) fn probe_acquire(&mut self) {
        let healed_at = self.healed_at.unwrap_or(self.now);
        if self.probe_granted || self.now > healed_at + LIVENESS_BOUND_US {
            return;
        }
        let name = LeaseName::new("liveness-probe").unwrap_or_else(|_| unreachable!());
        let serving = self.serving_nodes();
        let node = serving[self.rng.below(serving.len() as u64) as usize];
        self.seq += 1;
        let request = (PROBE as u64) << 40 | self.seq;
        let op = Op::Acquire {
            holder: HolderId::new("probe").unwrap_or_else(|_| unreachable!()),
            ttl: Ttl::from_millis(1_000).unwrap_or_else(|_| unreachable!()),
            lock_delay: LockDelay::NONE,
            wait: tenure_core::Micros::ZERO,
        };
        let history = usize::MAX; // The probe is judged by liveness alone.
        self.schedule(
            self.now + 100,
            Event::Submit {
                node,
                client: PROBE,
                request,
                name,
                op,
                history,
            },
        );
        self.schedule(self.now + 1_500_000, Event::Probe);
    }
}
