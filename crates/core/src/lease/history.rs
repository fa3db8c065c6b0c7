//! What one operation did to a name, in the words an operator uses:
//! granted, renewed, released, expired, superseded. A round records these
//! as it applies its operations, and reports them once its value is
//! chosen; they feed each node's per-name history and its counters.

use super::{view, LeaseValue, LeaseView, Outcome, Rules, Token};
use crate::input::{HolderId, Ttl};
use crate::time::Micros;
use serde::{Deserialize, Serialize};

/// Why a name changed hands, or stayed with its holder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TransitionKind {
    /// A new grant, with a new token.
    Granted,
    /// The holder restarted its grant's clock.
    Renewed,
    /// The holder ended its grant.
    Released,
    /// The grant ran past its ttl unrenewed. Noticed by the next round
    /// that read or wrote the name, which wrote the expiry down.
    Expired,
    /// Its holder acquired the name again while holding it (a retried
    /// acquire): the old grant gave way to a new token.
    Superseded,
    /// An operator ended the grant (`tenure unlock --force`); the name
    /// stays in its lock-delay for the grant's ttl and lock-delay.
    Forced,
}

impl TransitionKind {
    /// The change's name, for the API, logs and metrics.
    pub fn kind(self) -> &'static str {
        match self {
            TransitionKind::Granted => "granted",
            TransitionKind::Renewed => "renewed",
            TransitionKind::Released => "released",
            TransitionKind::Expired => "expired",
            TransitionKind::Superseded => "superseded",
            TransitionKind::Forced => "forced",
        }
    }

    pub const ALL: [TransitionKind; 6] = [
        TransitionKind::Granted,
        TransitionKind::Renewed,
        TransitionKind::Released,
        TransitionKind::Expired,
        TransitionKind::Superseded,
        TransitionKind::Forced,
    ];
}

/// One change of one grant.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Transition {
    pub kind: TransitionKind,
    pub holder: HolderId,
    pub token: Token,
    pub ttl: Ttl,
    /// How long before the round applied it the change happened: zero but
    /// for an expiry, which happened when the grant's stretched ttl ran
    /// out, before anyone noticed.
    pub ago: Micros,
}

/// What applying one operation, which answered `outcome`, did in going
/// from `before` (whose lease clock read `age`) to `after`.
pub fn transitions(
    before: &LeaseValue,
    age: Micros,
    after: &LeaseValue,
    outcome: Option<&Outcome>,
    rules: &Rules,
) -> Vec<Transition> {
    let mut out = Vec::new();
    let held = matches!(view(before, age, rules), LeaseView::Held { .. });
    let of = |kind, value: &LeaseValue, ago| {
        value.grant.as_ref().map(|g| Transition {
            kind,
            holder: g.holder.clone(),
            token: value.token,
            ttl: g.ttl,
            ago,
        })
    };
    if let Some(grant) = before.grant.as_ref().filter(|g| !g.expired && !held) {
        let ran_out = age.saturating_sub(rules.drift.stretch(grant.ttl.as_micros()));
        out.extend(of(TransitionKind::Expired, before, ran_out));
    }
    let released = matches!(outcome, Some(Outcome::Released { .. }));
    if after.token > before.token {
        if held {
            let ended = if released {
                TransitionKind::Released
            } else {
                TransitionKind::Superseded
            };
            out.extend(of(ended, before, Micros::ZERO));
        }
        out.extend(of(TransitionKind::Granted, after, Micros::ZERO));
    } else if held && released {
        // A release takes the grant away; a forced one leaves it, expired.
        let forced = after.grant.as_ref().is_some_and(|g| g.expired);
        let kind = if forced {
            TransitionKind::Forced
        } else {
            TransitionKind::Released
        };
        out.extend(of(kind, before, Micros::ZERO));
    } else if matches!(outcome, Some(Outcome::Renewed { .. })) {
        out.extend(of(TransitionKind::Renewed, after, Micros::ZERO));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::LockDelay;
    use crate::lease::{apply, Answer, Change, Op};

    fn holder(h: &str) -> HolderId {
        HolderId::new(h).expect("holder")
    }

    fn acquire(h: &str) -> Op {
        Op::Acquire {
            holder: holder(h),
            ttl: Ttl::from_millis(1_000).expect("ttl"),
            lock_delay: LockDelay::NONE,
            wait: Micros::ZERO,
        }
    }

    /// Apply `op` at `age`, and what it did.
    fn step(value: &LeaseValue, age: Micros, op: &Op) -> (LeaseValue, Vec<TransitionKind>) {
        let rules = Rules::default();
        let (change, answer) = apply(value, age, op, None, &rules);
        let after = match change {
            Change::Unchanged => value.clone(),
            Change::Fresh(v) | Change::Kept(v) => v,
        };
        let outcome = match &answer {
            Answer::Reply(o) => Some(o),
            Answer::Wait(_) => None,
        };
        let kinds = transitions(value, age, &after, outcome, &rules)
            .into_iter()
            .map(|t| t.kind)
            .collect();
        (after, kinds)
    }

    #[test]
    fn each_operation_says_what_it_did() {
        use TransitionKind::*;
        let free = LeaseValue::default();
        let (held, kinds) = step(&free, Micros::ZERO, &acquire("a"));
        assert_eq!(kinds, [Granted]);
        let t = held.token;
        let (_, kinds) = step(&held, Micros::ZERO, &acquire("b"));
        assert!(kinds.is_empty(), "a refused acquire changes nothing");
        let renew = Op::Renew {
            holder: holder("a"),
            token: t,
        };
        assert_eq!(step(&held, Micros::from_millis(10), &renew).1, [Renewed]);
        let release = Op::Release {
            holder: holder("a"),
            token: t,
        };
        assert_eq!(step(&held, Micros::ZERO, &release).1, [Released]);
        assert_eq!(
            step(&held, Micros::ZERO, &acquire("a")).1,
            [Superseded, Granted]
        );
        // Long past its ttl: the next acquire finds it expired first.
        let late = Micros::from_millis(5_000);
        assert_eq!(step(&held, late, &acquire("b")).1, [Expired, Granted]);
        let (marked, kinds) = step(&held, late, &Op::Read);
        assert_eq!(kinds, [Expired], "a read writes the expiry down");
        assert!(
            step(&marked, late, &acquire("b")).1 == [Granted],
            "an expiry already written is not reported again"
        );
    }

    #[test]
    fn an_expiry_is_dated_when_the_ttl_ran_out() {
        let (held, _) = step(&LeaseValue::default(), Micros::ZERO, &acquire("a"));
        let rules = Rules::default();
        let age = Micros::from_millis(3_000);
        let (change, _) = apply(&held, age, &Op::Read, None, &rules);
        let Change::Kept(after) = change else {
            panic!("the expiry is written");
        };
        let found = transitions(&held, age, &after, None, &rules);
        let stretched = rules.drift.stretch(Micros::from_millis(1_000));
        assert_eq!(found[0].ago, age.saturating_sub(stretched));
    }
}
