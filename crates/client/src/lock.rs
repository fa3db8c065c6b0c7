//! `Lock` and its guard `Lease`: acquire, keep alive, know when to stop.
//!
//! The rule (assumption A5 of `docs/safety.md`): act as holder only until
//! `sent + ttl·(1−2ρ) − margin`, where `sent` is when the request that won
//! (or last renewed) the grant left this process. The deadline lives here,
//! on this process's clock; the cluster is never asked whether the lease is
//! still held, so `Lease::lost` fires on time even when no node answers.

use crate::client::{Client, Granted};
use crate::clock::{Clock, Stamp};
use crate::error::{Error, LostReason};
use crate::holder::default_holder_id;
use crate::time;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tenure_core::Ttl;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub const DEFAULT_TTL: Duration = Duration::from_secs(10);
/// Time the holder needs to actually stop acting; subtracted from every
/// deadline. A program that needs longer to stop says so with `margin`.
pub const DEFAULT_MARGIN: Duration = Duration::from_millis(100);
/// The longest single long poll; a longer wait is several polls, so that a
/// node that dies mid-wait costs at most this much.
const MAX_POLL: Duration = Duration::from_secs(30);

/// What a lease's keepalive publishes: the current deadline, and whether
/// the lease is lost for good.
#[derive(Clone, Debug)]
pub struct LeaseStatus {
    /// Act as holder only before this reading of the client's clock.
    pub deadline: Stamp,
    pub lost: Option<LostReason>,
}

/// How to take a named lock. Build with `Lock::new`, adjust, then acquire.
#[derive(Clone)]
pub struct Lock {
    client: Client,
    name: String,
    holder: String,
    ttl: Duration,
    margin: Duration,
}

impl Lock {
    /// A lock on `name` with the default holder id (`host:pid:random`),
    /// ttl (10 s) and margin (100 ms).
    pub fn new(client: &Client, name: &str) -> Lock {
        Lock {
            client: client.clone(),
            name: name.to_string(),
            holder: default_holder_id(),
            ttl: DEFAULT_TTL,
            margin: DEFAULT_MARGIN,
        }
    }

    /// Ask as `holder`. It must be unique to this process: the cluster
    /// treats two processes with one id as one holder.
    pub fn holder(mut self, holder: &str) -> Lock {
        self.holder = holder.to_string();
        self
    }

    pub fn ttl(mut self, ttl: Duration) -> Lock {
        self.ttl = ttl;
        self
    }

    /// How long before the end of the usable ttl the holder must stop.
    pub fn margin(mut self, margin: Duration) -> Lock {
        self.margin = margin;
        self
    }

    pub fn holder_id(&self) -> &str {
        &self.holder
    }

    /// Take the lock if it is free; `Error::Conflict` if not.
    pub async fn try_acquire(&self) -> Result<Lease, Error> {
        match self
            .client
            .acquire_once(&self.name, &self.holder, self.ttl, None)
            .await?
        {
            Ok(grant) => self.start(grant, false).await,
            Err(state) => Err(Error::Conflict {
                message: format!("{} is {state}", self.name),
                state,
            }),
        }
    }

    /// Wait as long as it takes for the lock.
    pub async fn acquire(&self) -> Result<Lease, Error> {
        self.acquire_waiting(None).await
    }

    /// Wait at most `wait` for the lock; `Error::WaitExpired` after.
    pub async fn acquire_within(&self, wait: Duration) -> Result<Lease, Error> {
        self.acquire_waiting(Some(wait)).await
    }

    async fn acquire_waiting(&self, wait: Option<Duration>) -> Result<Lease, Error> {
        let clock = self.client.clock();
        let started = clock.now();
        let give_up = wait.map(|w| started + w);
        loop {
            let poll = match give_up {
                Some(at) => at.saturating_duration_since(clock.now()).min(MAX_POLL),
                None => MAX_POLL,
            };
            let answer = self
                .client
                .acquire_by(&self.name, &self.holder, self.ttl, Some(poll), give_up)
                .await;
            match answer {
                Ok(Ok(grant)) => match self.start(grant, !poll.is_zero()).await {
                    // The grant was lost between the poll and the renewal
                    // (taken over, say): wait again.
                    Err(Error::Conflict { .. }) => continue,
                    other => return other,
                },
                Ok(Err(state)) => {
                    if give_up.is_some_and(|at| clock.now() >= at) {
                        return Err(Error::WaitExpired {
                            waited: clock.now().saturating_duration_since(started),
                            state,
                        });
                    }
                    // The node's wait ended first (its own cap): poll again.
                }
                // No node could answer for a whole call: with an unbounded
                // wait keep trying, as a waiter would; bounded: give up.
                Err(Error::Unavailable { .. }) if give_up.is_none_or(|at| clock.now() < at) => {
                    tokio::time::sleep(crate::client::jittered(Duration::from_secs(1))).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Hand out the guard for `grant`. A grant won by a long poll is
    /// trusted only from the poll's send time, which may be long ago, so
    /// unless that still leaves most of the lease it is renewed first and
    /// counted from the renewal's send time.
    async fn start(&self, grant: Granted, from_long_poll: bool) -> Result<Lease, Error> {
        let mut grant = grant;
        let clock = self.client.clock();
        // A poll answered soon after it was sent (the lock was free, or
        // freed quickly) keeps its own deadline, and the keepalive renews
        // on its usual schedule: a renewal here would only cost a round.
        let trusted = grant.most_of_the_lease_left(clock.now(), self.margin);
        if from_long_poll && !trusted {
            let poll_deadline = grant.deadline(self.margin);
            let until = clock.now() + self.client.call_timeout();
            match self
                .client
                .renew(
                    &self.name,
                    &self.holder,
                    grant.token,
                    grant.key.as_deref(),
                    until,
                )
                .await
            {
                Ok(renewed) => grant = renewed,
                Err(e @ Error::Conflict { .. }) => return Err(e),
                Err(e) => {
                    // Could not renew; the poll's own deadline may still do.
                    if clock.now() >= poll_deadline {
                        let (client, name, holder) =
                            (self.client.clone(), self.name.clone(), self.holder.clone());
                        let (token, key) = (grant.token, grant.key.clone());
                        tokio::spawn(async move {
                            let _ = client.release(&name, &holder, token, key.as_deref()).await;
                        });
                        return Err(e);
                    }
                }
            }
        }
        Ok(Lease::start(
            self.client.clone(),
            self.name.clone(),
            self.holder.clone(),
            grant,
            self.margin,
        ))
    }
}

struct Shared {
    client: Client,
    name: String,
    holder: String,
    token: u64,
    /// The grant's key, where the cluster gives keys; the same for every
    /// renewal of one grant.
    key: Option<String>,
    ttl: Ttl,
    margin: Duration,
    status: watch::Sender<LeaseStatus>,
}

impl Shared {
    fn lose(&self, reason: LostReason) {
        self.status.send_modify(|s| {
            // The first reason stands: a lease lost once stays lost.
            if s.lost.is_none() {
                s.lost = Some(reason);
            }
        });
    }
}

/// A held lease: the guard of a grant. Renews itself in the background at
/// about ttl/3 while it lives. Check `is_valid()` (or await `lost()`)
/// before acting, and pass `token()` to whatever you write to.
pub struct Lease {
    shared: Arc<Shared>,
    keepalive: JoinHandle<()>,
    released: bool,
}

impl Lease {
    fn start(
        client: Client,
        name: String,
        holder: String,
        grant: Granted,
        margin: Duration,
    ) -> Lease {
        let deadline = grant.deadline(margin);
        let (status, _) = watch::channel(LeaseStatus {
            deadline,
            lost: None,
        });
        let shared = Arc::new(Shared {
            client,
            name,
            holder,
            token: grant.token,
            key: grant.key.clone(),
            ttl: grant.ttl,
            margin,
            status,
        });
        let keepalive = tokio::spawn(keepalive(Arc::clone(&shared), grant.sent));
        Lease {
            shared,
            keepalive,
            released: false,
        }
    }

    /// The fencing token of this grant.
    pub fn token(&self) -> u64 {
        self.shared.token
    }

    pub fn name(&self) -> &str {
        &self.shared.name
    }

    pub fn holder(&self) -> &str {
        &self.shared.holder
    }

    /// The grant's ttl (at least what was asked for).
    pub fn ttl(&self) -> Duration {
        Duration::from_millis(self.shared.ttl.as_millis())
    }

    /// The clock the deadline is on (the client's).
    pub fn clock(&self) -> &Clock {
        self.shared.client.clock()
    }

    /// The current deadline: act as holder only before it, as `clock()`
    /// reads.
    pub fn deadline(&self) -> Stamp {
        self.shared.status.borrow().deadline
    }

    /// Whether this process may still act as holder, right now.
    pub fn is_valid(&self) -> bool {
        let s = self.shared.status.borrow();
        s.lost.is_none() && self.shared.client.clock().now() < s.deadline
    }

    /// Follow the deadline and the loss as they change (for a supervisor
    /// that must act some time before the deadline, like `tenure run`).
    pub fn status(&self) -> watch::Receiver<LeaseStatus> {
        self.shared.status.subscribe()
    }

    /// A future that resolves when the lease can no longer be trusted: at
    /// the local deadline unless a renewal moved it, or at once when a
    /// renewal is refused or the lease is released. It reads only this
    /// process's clock, so it fires on time with the cluster unreachable.
    pub fn lost(&self) -> impl Future<Output = LostReason> + Send + 'static {
        lost(
            self.shared.client.clock().clone(),
            self.shared.status.subscribe(),
        )
    }

    /// Stop acting as holder, then end the grant. The lease is lost (for
    /// `lost()`) before the release is sent, as the safety argument asks.
    pub async fn release(mut self) -> Result<(), Error> {
        self.released = true;
        self.keepalive.abort();
        self.shared.lose(LostReason::Released);
        let s = &self.shared;
        s.client
            .release(&s.name, &s.holder, s.token, s.key.as_deref())
            .await
    }
}

impl Drop for Lease {
    /// Best effort: stop renewing and release in the background, if a
    /// runtime is there to do it. Never blocks; the lease would otherwise
    /// end by itself at its ttl.
    fn drop(&mut self) {
        self.keepalive.abort();
        if self.released {
            return;
        }
        self.shared.lose(LostReason::Released);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let shared = Arc::clone(&self.shared);
            runtime.spawn(async move {
                let _ = shared
                    .client
                    .release(
                        &shared.name,
                        &shared.holder,
                        shared.token,
                        shared.key.as_deref(),
                    )
                    .await;
            });
        }
    }
}

/// Resolves when the status says lost, or when its deadline passes.
async fn lost(clock: Clock, mut status: watch::Receiver<LeaseStatus>) -> LostReason {
    loop {
        let (deadline, lost) = {
            let s = status.borrow_and_update();
            (s.deadline, s.lost.clone())
        };
        if let Some(reason) = lost {
            return reason;
        }
        if clock.now() >= deadline {
            return LostReason::Expired;
        }
        tokio::select! {
            () = clock.sleep_until(deadline) => {}
            changed = status.changed() => {
                if changed.is_err() {
                    // Nobody can renew any more: only the clock is left.
                    clock.sleep_until(deadline).await;
                    return LostReason::Expired;
                }
            }
        }
    }
}

/// Renew at about ttl/3 after each successful renewal's send time, retrying
/// (inside `Client::renew`) until the deadline. Each success moves the
/// deadline to that renewal's send time plus the usable ttl.
async fn keepalive(shared: Arc<Shared>, last_sent: Stamp) {
    let every = Duration::from_millis(shared.ttl.as_millis()) / 3;
    let clock = shared.client.clock().clone();
    let mut next_try = last_sent + every;
    loop {
        clock.sleep_until(next_try).await;
        let deadline = shared.status.borrow().deadline;
        if clock.now() >= deadline {
            shared.lose(LostReason::Expired);
            return;
        }
        let renewed = shared
            .client
            .renew(
                &shared.name,
                &shared.holder,
                shared.token,
                shared.key.as_deref(),
                deadline,
            )
            .await;
        match renewed {
            // A reply after the deadline cannot revive the lease: `lost()`
            // may already have told the holder to stop.
            Ok(_) if clock.now() >= deadline => {
                shared.lose(LostReason::Expired);
                return;
            }
            Ok(grant) => {
                next_try = grant.sent + every;
                let next = time::deadline(grant.sent, shared.ttl, grant.drift, shared.margin);
                shared
                    .status
                    .send_modify(|s| s.deadline = s.deadline.max(next));
            }
            Err(Error::Conflict { state, .. }) => {
                shared.lose(LostReason::Refused(state));
                return;
            }
            // A call stops at its bound on attempts too, which a long ttl
            // outlasts: go on until the deadline, not just that bound.
            Err(Error::Unavailable { .. }) if clock.now() < deadline => next_try = clock.now(),
            Err(Error::Unavailable { .. }) => {
                shared.lose(LostReason::Expired);
                return;
            }
            Err(e) => {
                // A refusal that is not about the grant (should not happen):
                // keep trying until the deadline, at a modest pace.
                tracing::warn!(name = %shared.name, error = %e, "renewal failed");
                next_try = clock.now().min(deadline) + every;
            }
        }
    }
}
