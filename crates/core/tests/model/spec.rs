//! The sequential specification the cluster must be linearizable against:
//! one lock register with fencing tokens, whose leases never expire.
//!
//! Leases that expire make the sequential answer depend on ages, which no
//! sequential object can see. The linearizability scenarios therefore use a
//! ttl far beyond the time horizon, where the lease register is exactly this
//! lock: expiry is checked separately, by the exclusivity property.

use stateright::semantics::{ConsistencyTester, LinearizabilityTester, SequentialSpec};

/// A client, by its index in the scenario; also its holder id.
pub type ClientId = u8;

/// A client operation as the specification sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SpecOp {
    Acquire { client: ClientId },
    Renew { client: ClientId, token: u64 },
    Release { client: ClientId, token: u64 },
    Read,
}

/// How the register looks: the holder and the last token granted.
/// `Delayed` is a lock-delay view, which a register whose leases never
/// expire must never show; it exists so that such an answer fails the check
/// instead of being mistaken for another view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SpecView {
    Free { token: u64 },
    Held { holder: ClientId, token: u64 },
    Delayed { holder: ClientId, token: u64 },
}

/// An outcome without its timing details (ttl, remaining time).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SpecRet {
    Granted { token: u64 },
    Renewed { token: u64 },
    Released { token: u64 },
    Observed(SpecView),
    Conflict(SpecView),
}

/// The reference lock: acquire grants when free or to the holder itself,
/// with the next token; renew and release need the holder and the token of
/// the current grant.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct LockRegister {
    holder: Option<ClientId>,
    token: u64,
}

impl LockRegister {
    fn view(&self) -> SpecView {
        match self.holder {
            None => SpecView::Free { token: self.token },
            Some(holder) => SpecView::Held {
                holder,
                token: self.token,
            },
        }
    }

    fn holds(&self, client: ClientId, token: u64) -> bool {
        self.holder == Some(client) && self.token == token
    }
}

impl SequentialSpec for LockRegister {
    type Op = SpecOp;
    type Ret = SpecRet;

    fn invoke(&mut self, op: &SpecOp) -> SpecRet {
        match *op {
            SpecOp::Acquire { client } => {
                if self.holder.is_none_or(|h| h == client) {
                    self.token += 1;
                    self.holder = Some(client);
                    SpecRet::Granted { token: self.token }
                } else {
                    SpecRet::Conflict(self.view())
                }
            }
            SpecOp::Renew { client, token } if self.holds(client, token) => {
                SpecRet::Renewed { token }
            }
            SpecOp::Release { client, token } if self.holds(client, token) => {
                self.holder = None;
                SpecRet::Released { token }
            }
            SpecOp::Renew { .. } | SpecOp::Release { .. } => SpecRet::Conflict(self.view()),
            SpecOp::Read => SpecRet::Observed(self.view()),
        }
    }
}

/// One entry of the client-visible history, in the order things happened.
/// Each operation has its own id, used as the tester's thread id: an
/// operation whose outcome is unknown stays in flight forever, and the
/// client's next operation must not wait behind it. Real-time order between
/// a client's operations is kept anyway, because the tester orders every
/// invocation after every return recorded before it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Event {
    Invoke { op: u8, what: SpecOp },
    Return { op: u8, ret: SpecRet },
}

impl Event {
    pub fn op(&self) -> u8 {
        match self {
            Event::Invoke { op, .. } | Event::Return { op, .. } => *op,
        }
    }
}

/// Put `history` in a canonical order without changing what it means:
/// within a run of invocations with no return between them (or a run of
/// returns with no invocation between them) the order carries no
/// information, because the tester orders an operation only after the
/// returns recorded before its invocation. Sorting such runs lets the
/// checker merge states that differ only in it.
pub fn normalize(history: &mut [Event]) {
    let is_invoke = |e: &Event| matches!(e, Event::Invoke { .. });
    for run in history.chunk_by_mut(|a, b| is_invoke(a) == is_invoke(b)) {
        run.sort_by_key(Event::op);
    }
}

/// Whether `history` is linearizable against [`LockRegister`]. Operations
/// invoked but never returned may or may not have taken effect.
pub fn is_linearizable(history: &[Event]) -> bool {
    let mut tester = LinearizabilityTester::new(LockRegister::default());
    for event in history {
        let recorded = match *event {
            Event::Invoke { op, what } => tester.on_invoke(op, what).map(|_| ()),
            Event::Return { op, ret } => tester.on_return(op, ret).map(|_| ()),
        };
        if recorded.is_err() {
            return false;
        }
    }
    tester.is_consistent()
}

/// The checker itself must be able to fail: these pin the verdicts it gives
/// on small histories, so a model run that finds nothing means something.
#[test]
fn the_linearizability_check_rejects_a_token_granted_twice() {
    let a = SpecOp::Acquire { client: 0 };
    let b = SpecOp::Acquire { client: 1 };
    let history = [
        Event::Invoke { op: 0, what: a },
        Event::Invoke { op: 1, what: b },
        Event::Return {
            op: 0,
            ret: SpecRet::Granted { token: 1 },
        },
        Event::Return {
            op: 1,
            ret: SpecRet::Granted { token: 1 },
        },
    ];
    assert!(!is_linearizable(&history));
}

#[test]
fn the_linearizability_check_lets_an_unknown_outcome_take_effect_late() {
    // Client 0's acquire timed out; client 1 then saw it take effect.
    let history = [
        Event::Invoke {
            op: 0,
            what: SpecOp::Acquire { client: 0 },
        },
        Event::Invoke {
            op: 1,
            what: SpecOp::Read,
        },
        Event::Return {
            op: 1,
            ret: SpecRet::Observed(SpecView::Held {
                holder: 0,
                token: 1,
            }),
        },
    ];
    assert!(is_linearizable(&history));
}

#[test]
fn the_linearizability_check_rejects_a_stale_read_after_a_grant() {
    let history = [
        Event::Invoke {
            op: 0,
            what: SpecOp::Acquire { client: 0 },
        },
        Event::Return {
            op: 0,
            ret: SpecRet::Granted { token: 1 },
        },
        Event::Invoke {
            op: 1,
            what: SpecOp::Read,
        },
        Event::Return {
            op: 1,
            ret: SpecRet::Observed(SpecView::Free { token: 0 }),
        },
    ];
    assert!(!is_linearizable(&history));
}
