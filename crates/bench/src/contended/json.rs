//! The JSON of the contended workloads: every figure, under `contended`
//! in each system's part of `results.json`.

use super::queue::QueueRun;
use super::stampede::Stampede;
use super::trylock::{Kill, TryLockRun};
use super::{fifo, Contended, Election32};
use crate::stats::round1;
use serde_json::{json, Value};
use std::time::Duration;

fn ms(d: Duration) -> f64 {
    round1(d.as_secs_f64() * 1e3)
}

/// The longest stretch without a grant; under a kill, from the kill on,
/// with the kill and the grants after it.
fn put_kill(v: &mut Value, kill: Option<Kill>, grants_after: u64, longest: Duration) {
    match kill {
        None => v["longest_without_grant_ms"] = json!(ms(longest)),
        Some(k) => {
            v["killed_node"] = json!(k.victim + 1);
            v["kill_at_s"] = json!(k.at.as_secs_f64());
            v["grants_after_kill"] = json!(grants_after);
            v["longest_without_grant_after_kill_ms"] = json!(ms(longest));
        }
    }
}

impl TryLockRun {
    pub fn json(&mut self) -> Value {
        let mut v = json!({
            "clients": self.clients,
            "seconds": round1(self.seconds),
            "grants": self.grants,
            "grants_per_s": round1(self.grants_per_s()),
            "conflicts": self.conflicts,
            "decision": self.decisions.json_max(),
            "errors": self.live.errors() + self.killed_node.errors(),
            "failures": self.live.json(),
        });
        put_kill(
            &mut v,
            self.kill,
            self.grants_after_kill,
            self.longest_without_grant,
        );
        if self.kill.is_some() {
            v["failures_on_killed_node"] = self.killed_node.json();
        }
        v
    }
}

impl QueueRun {
    pub fn json(&mut self) -> Value {
        let (hold, handoff, fifo) = self.fifo();
        let longest = fifo.longest.map(|(w, bound)| {
            json!({
                "wait_ms": ms(w.waited),
                "bound_ms": ms(bound),
                "waiters_ahead": w.ahead,
                "granted": w.granted,
            })
        });
        let mut v = json!({
            "waiters": self.waiters,
            "seconds": round1(self.seconds),
            "grants": self.grants,
            "grants_per_s": round1(self.grants_per_s()),
            "wait": self.wait_latencies().json_max(),
            "waits_not_granted": self.waits.iter().filter(|w| !w.granted).count(),
            "hold_p50_us": round1(hold.as_secs_f64() * 1e6),
            "handoff_release_to_next_grant": self.handoffs.json_max(),
            "fifo": {
                "waits": fifo.waits,
                "longest_wait": longest,
                "waits_over_bound": fifo.over_bound,
                "worst_excess_ms": ms(fifo.worst_excess),
                "bound": format!(
                    "waiters ahead × (hold p50 {:.2} ms + handoff p50 {:.2} ms) + {} ms",
                    hold.as_secs_f64() * 1e3,
                    handoff.as_secs_f64() * 1e3,
                    fifo::BOUND_SLACK.as_millis()
                ),
            },
            "errors": self.tally.errors(),
            "failures": self.tally.json(),
        });
        put_kill(
            &mut v,
            self.kill,
            self.grants_after_kill,
            self.longest_without_grant,
        );
        v
    }
}

impl Election32 {
    pub fn json(&mut self) -> Value {
        json!({
            "candidates": self.candidates,
            "handoff_resign_to_next_leader": self.handoffs.json_max(),
            "errors": self.tally.errors(),
            "failures": self.tally.json(),
            "failed": self.failed,
        })
    }
}

impl Stampede {
    pub fn json(&mut self) -> Value {
        json!({
            "clients": self.clients,
            "rounds": self.rounds,
            "first_request_to_first_grant": self.first_grant.json_max(),
            "decision": self.decisions.json_max(),
            "rounds_without_grant": self.rounds_without_grant,
            "rounds_with_more_than_one_grant": self.rounds_with_more_than_one_grant,
            "errors": self.tally.errors(),
            "failures": self.tally.json(),
        })
    }
}

impl Contended {
    /// Every figure, by workload (levels by their client count).
    pub fn json(&mut self) -> Value {
        let mut v = json!({});
        if !self.trylock.is_empty() {
            let levels: serde_json::Map<_, _> = self
                .trylock
                .iter_mut()
                .map(|r| (r.clients.to_string(), r.json()))
                .collect();
            v["trylock"] = Value::Object(levels);
        }
        if !self.queue.is_empty() {
            let levels: serde_json::Map<_, _> = self
                .queue
                .iter_mut()
                .map(|r| (r.waiters.to_string(), r.json()))
                .collect();
            v["queue"] = Value::Object(levels);
        }
        if let Some(e) = &mut self.election32 {
            v["election32"] = e.json();
        }
        if let Some(s) = &mut self.stampede {
            v["stampede"] = s.json();
        }
        if let Some(k) = &mut self.trylock_kill {
            v["trylock_kill"] = k.json();
        }
        if let Some(k) = &mut self.queue_kill {
            v["queue_kill"] = k.json();
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_keyed_by_their_client_count_and_the_kill_has_its_own_figures() {
        let mut c = Contended::default();
        for clients in [8, 32] {
            let mut r = TryLockRun {
                clients,
                seconds: 2.0,
                grants: 10,
                ..TryLockRun::default()
            };
            r.decisions.push(Duration::from_millis(3));
            c.trylock.push(r);
        }
        c.trylock_kill = Some(TryLockRun {
            clients: 32,
            kill: Some(super::super::trylock::Kill {
                at: Duration::from_secs(5),
                victim: 0,
            }),
            ..TryLockRun::default()
        });
        let v = c.json();
        assert_eq!(v["trylock"]["32"]["grants_per_s"], 5.0);
        assert_eq!(v["trylock"]["8"]["decision"]["max_us"], 3000.0);
        assert!(v["trylock"]["8"]["longest_without_grant_ms"].is_number());
        assert_eq!(v["trylock_kill"]["killed_node"], 1);
        assert!(v["trylock_kill"]["failures_on_killed_node"].is_object());
        assert!(v.get("queue").is_none());
    }
}
