//! Stampede: clients fire an acquire at the same instant (they wait at a
//! barrier, then send) on a name never used before; the figure is the time
//! from the first request sent to the first grant answered. Whoever is
//! granted holds the name until every client has its answer, then
//! releases it, so that a second grant in one round could only be a
//! double grant.

use super::client::{release_retrying, Attempt, TryLock};
use super::outcome::{Failure, Tally};
use super::trylock::WARM_TRIES;
use crate::stats::Latencies;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Barrier};
use std::thread::JoinHandle;
use std::time::Instant;

/// What the stampede rounds of one system measured.
#[derive(Default)]
pub struct Stampede {
    pub clients: usize,
    pub rounds: usize,
    /// First request sent → first grant answered, per round with a grant.
    pub first_grant: Latencies,
    /// Every acquire that got a decision: a grant or a conflict.
    pub decisions: Latencies,
    pub rounds_without_grant: usize,
    /// Rounds in which more than one client was granted: never, for a lock.
    pub rounds_with_more_than_one_grant: usize,
    pub tally: Tally,
}

/// One client's answer in a round.
struct Shot {
    client: usize,
    sent: Instant,
    answered: Instant,
    attempt: Attempt,
}

enum Cmd {
    Fire(String),
    Release(String, u64),
}

enum Event {
    Shot(Shot),
    /// A release is done; the failures it met.
    Released(Tally),
}

/// Add one round's figures, from every client's shot, to `out`; the
/// grants made, `(client, grant)`, to release.
fn tally_round(shots: &[Shot], out: &mut Stampede) -> Vec<(usize, u64)> {
    let first_sent = shots.iter().map(|s| s.sent).min();
    let mut granted = Vec::new();
    let mut first_answer: Option<Instant> = None;
    for s in shots {
        match &s.attempt {
            Attempt::Granted(g) => {
                out.decisions.push(s.answered - s.sent);
                granted.push((s.client, *g));
                first_answer = Some(first_answer.map_or(s.answered, |a| a.min(s.answered)));
            }
            Attempt::Refused => out.decisions.push(s.answered - s.sent),
            Attempt::Failed(f) => out.tally.count(f),
        }
    }
    out.rounds += 1;
    match (first_sent, first_answer) {
        (Some(sent), Some(answer)) => out.first_grant.push(answer.saturating_duration_since(sent)),
        _ => out.rounds_without_grant += 1,
    }
    if granted.len() > 1 {
        out.rounds_with_more_than_one_grant += 1;
    }
    granted
}

/// Client threads that stampede on command, each over its own connection.
pub struct Pool {
    cmds: Vec<Sender<Cmd>>,
    events: Receiver<Event>,
    threads: Vec<JoinHandle<()>>,
    pub out: Stampede,
}

impl Pool {
    /// `clients` threads, client `i` made by `make(i)`, each warmed up.
    pub fn new<C: TryLock + 'static>(clients: usize, make: impl Fn(usize) -> C) -> Pool {
        let barrier = Arc::new(Barrier::new(clients));
        let (event_tx, events) = mpsc::channel();
        let mut cmds = Vec::new();
        let mut threads = Vec::new();
        let mut out = Stampede {
            clients,
            ..Stampede::default()
        };
        let (warm_tx, warm_rx) = mpsc::channel();
        for i in 0..clients {
            let mut client = make(i);
            let (tx, rx) = mpsc::channel::<Cmd>();
            cmds.push(tx);
            let (barrier, events, warm_tx) = (barrier.clone(), event_tx.clone(), warm_tx.clone());
            threads.push(
                std::thread::Builder::new()
                    .stack_size(256 * 1024)
                    .spawn(move || {
                        let mut warm = Tally::default();
                        for _ in 0..WARM_TRIES {
                            match client.warm() {
                                Ok(()) => break,
                                Err(f) => warm.count(&f),
                            }
                        }
                        let _ = warm_tx.send(warm);
                        while let Ok(cmd) = rx.recv() {
                            let event = match cmd {
                                Cmd::Fire(name) => {
                                    barrier.wait();
                                    let sent = Instant::now();
                                    let attempt = client.try_acquire(&name);
                                    let answered = Instant::now();
                                    if let Attempt::Failed(f) = &attempt {
                                        if f.is_connection() {
                                            client.next_node();
                                        }
                                    }
                                    Event::Shot(Shot {
                                        client: i,
                                        sent,
                                        answered,
                                        attempt,
                                    })
                                }
                                Cmd::Release(name, grant) => {
                                    let mut t = Tally::default();
                                    release_retrying(
                                        &mut client,
                                        &name,
                                        grant,
                                        &mut |f: &Failure, _| t.count(f),
                                    );
                                    Event::Released(t)
                                }
                            };
                            if events.send(event).is_err() {
                                break;
                            }
                        }
                        client.close();
                    })
                    .expect("spawn a stampede client"),
            );
        }
        // One report from each client (each keeps its sender to the end).
        for _ in 0..clients {
            out.tally
                .merge(warm_rx.recv().expect("a stampede client warmed up"));
        }
        Pool {
            cmds,
            events,
            threads,
            out,
        }
    }

    /// One stampede on the fresh `name`; the grant (if any) is released
    /// once every client has its answer.
    pub fn round(&mut self, name: &str) {
        for c in &self.cmds {
            c.send(Cmd::Fire(name.to_string()))
                .expect("stampede client");
        }
        let mut shots = Vec::new();
        while shots.len() < self.cmds.len() {
            match self.events.recv().expect("stampede client") {
                Event::Shot(s) => shots.push(s),
                Event::Released(_) => unreachable!("no release asked for"),
            }
        }
        let granted = tally_round(&shots, &mut self.out);
        for (client, grant) in &granted {
            self.cmds[*client]
                .send(Cmd::Release(name.to_string(), *grant))
                .expect("stampede client");
        }
        for _ in &granted {
            match self.events.recv().expect("stampede client") {
                Event::Released(t) => self.out.tally.merge(t),
                Event::Shot(_) => unreachable!("no stampede asked for"),
            }
        }
    }

    /// Stop the clients (etcd: revoking their leases); the figures.
    pub fn finish(self) -> Stampede {
        drop(self.cmds);
        for t in self.threads {
            t.join().expect("stampede client");
        }
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_round_times_the_first_request_to_the_first_grant() {
        let t = Instant::now();
        let ms = Duration::from_millis;
        let shot = |client, sent, answered, attempt| Shot {
            client,
            sent: t + ms(sent),
            answered: t + ms(answered),
            attempt,
        };
        let mut out = Stampede::default();
        let granted = tally_round(
            &[
                shot(0, 1, 9, Attempt::Refused),
                shot(1, 0, 30, Attempt::Failed(Failure::status(503, "no quorum"))),
                shot(2, 2, 7, Attempt::Granted(4)),
                shot(3, 1, 12, Attempt::Refused),
            ],
            &mut out,
        );
        assert_eq!(granted, vec![(2, 4)]);
        // sent at 0 (client 1), granted at 7 (client 2).
        assert_eq!(out.first_grant.samples_us(), vec![7000.0]);
        assert_eq!(out.decisions.len(), 3);
        assert_eq!(out.tally.server_5xx, 1);
        assert_eq!((out.rounds, out.rounds_without_grant), (1, 0));

        let none = tally_round(&[shot(0, 0, 3, Attempt::Refused)], &mut out);
        assert!(none.is_empty());
        let two = tally_round(
            &[
                shot(0, 0, 3, Attempt::Granted(1)),
                shot(1, 0, 4, Attempt::Granted(2)),
            ],
            &mut out,
        );
        assert_eq!(two.len(), 2);
        assert_eq!(
            (
                out.rounds,
                out.rounds_without_grant,
                out.rounds_with_more_than_one_grant
            ),
            (3, 1, 1)
        );
    }
}
