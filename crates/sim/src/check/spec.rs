//! The sequential specification of one lease register, for the
//! linearizability checker.
//!
//! Expiry depends on time, which a sequential spec does not see, so the spec
//! lets any grant expire at any moment: an acquire by another holder may
//! succeed, and a renewal may be refused, whenever a grant exists. But once
//! an answer has shown a grant expired (free, lock-delayed, or taken over),
//! it stays expired: no later answer may show it held, and its renewal must
//! fail. Everything else is exact: tokens, holders, releases and what reads
//! report. Whether grants expired too EARLY is the exclusivity checker's
//! question.
//!
//! A name that was compacted restarts at the token floor of the members
//! that answer, which may lie above its last token (docs/storage.md). For
//! such a name the spec has one more internal step: while it is free, its
//! token may rise. So a read may show it free at a higher token, and the
//! next grant may skip tokens, but never go below or repeat one. The floor
//! is node-wide, so once any name was compacted, a name never granted
//! before may also start above token 1 (`fresh_at_floor`).

use tenure_core::{HolderId, LeaseView, Op, Outcome, Token};

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct SpecState {
    pub token: Token,
    pub grant: Option<HolderId>,
    /// An answer showed the grant expired.
    pub expired: bool,
    /// The name was compacted during the run (see the module docs).
    pub compacted: bool,
    /// Some name was compacted during the run: a name never granted may
    /// start at the token floor.
    pub fresh_at_floor: bool,
}

impl SpecState {
    /// Whether a free name's token may have risen without a grant.
    fn may_rise(&self) -> bool {
        self.compacted || (self.fresh_at_floor && self.token == Token(0) && self.grant.is_none())
    }

    fn holds(&self, holder: &HolderId, token: Token) -> bool {
        self.grant.as_ref() == Some(holder) && self.token == token
    }

    /// The state after `view`, if the cluster can report it from this one:
    /// a view that shows the grant expired expires it for good, and a
    /// grant once expired is never shown held again.
    fn shown(&self, view: &LeaseView) -> Option<SpecState> {
        let expired = SpecState {
            expired: self.grant.is_some(),
            ..self.clone()
        };
        match view {
            LeaseView::Held { holder, token, .. } => {
                (self.holds(holder, *token) && !self.expired).then(|| self.clone())
            }
            LeaseView::LockDelayed { holder, token, .. } => {
                self.holds(holder, *token).then_some(expired)
            }
            // Free: released, or a grant that expired.
            LeaseView::Free { token } => {
                let risen = self.may_rise() && *token > self.token;
                (*token == self.token || risen).then_some(expired)
            }
        }
    }

    /// The state after `op` returned `outcome`, if the spec allows it.
    pub fn step(&self, op: &Op, outcome: &Outcome) -> Option<SpecState> {
        let next_token = Token(self.token.0 + 1);
        match (op, outcome) {
            (Op::Acquire { holder, .. }, Outcome::Granted { token, .. }) => {
                let risen = self.may_rise() && *token > next_token;
                (*token == next_token || risen).then(|| SpecState {
                    token: *token,
                    grant: Some(holder.clone()),
                    expired: false,
                    ..self.clone()
                })
            }
            (Op::Acquire { holder, .. }, Outcome::Conflict(view)) => {
                // Refused only while another's grant exists (held or in its
                // lock-delay); a free name is never refused.
                let by_other = matches!(view, LeaseView::Held { holder: h, .. } | LeaseView::LockDelayed { holder: h, .. } if h != holder);
                if by_other {
                    self.shown(view)
                } else {
                    None
                }
            }
            (Op::Renew { holder, token }, Outcome::Renewed { token: t, .. }) => {
                (t == token && self.holds(holder, *token) && !self.expired).then(|| self.clone())
            }
            (Op::Renew { .. }, Outcome::Conflict(view)) => self.shown(view),
            (Op::Release { holder, token }, Outcome::Released { token: t }) => {
                (t == token && self.holds(holder, *token) && !self.expired).then_some(SpecState {
                    token: self.token,
                    grant: None,
                    expired: false,
                    ..self.clone()
                })
            }
            (Op::Release { holder, token }, Outcome::Conflict(view)) => {
                // Refused when the grant is gone, or when it expired (a late
                // release leaves the lock-delay in place): its view then
                // says so.
                let expired = !matches!(view, LeaseView::Held { .. });
                if !self.holds(holder, *token) || expired {
                    self.shown(view)
                } else {
                    None
                }
            }
            (Op::Read, Outcome::Observed(view)) => self.shown(view),
            _ => None,
        }
    }

    /// The states an operation with an unknown outcome may leave, if it took
    /// effect. (Taking no effect is covered by never linearizing it.)
    pub fn step_unknown(&self, op: &Op) -> Option<SpecState> {
        match op {
            Op::Acquire { holder, .. } => Some(SpecState {
                token: Token(self.token.0 + 1),
                grant: Some(holder.clone()),
                expired: false,
                ..self.clone()
            }),
            Op::Release { holder, token } if self.holds(holder, *token) && !self.expired => {
                Some(SpecState {
                    token: self.token,
                    grant: None,
                    expired: false,
                    ..self.clone()
                })
            }
            _ => None,
        }
    }
}
