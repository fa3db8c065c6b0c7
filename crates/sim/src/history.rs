//! What the clients saw, in true time: the raw material of every checker.

use std::collections::BTreeMap;
use tenure_core::{LeaseName, Op, Outcome, Token};

/// One client operation on one name.
#[derive(Clone, Debug)]
pub struct OpRecord {
    pub client: usize,
    pub op: Op,
    pub invoked_us: u64,
    /// `None` while the outcome is unknown: no reply, or a reply saying a
    /// write may have happened. Such an operation may take effect at any
    /// point after its invocation, or never.
    pub returned: Option<(u64, Outcome)>,
    /// Refused before any write was sent: it certainly had no effect and
    /// nobody saw an answer, so it constrains nothing.
    pub discarded: bool,
    /// For an operation with an unknown outcome: when the node working on it
    /// stopped (it crashed, or gave up and said the outcome is unknown).
    /// From then on no new accept carries it, so once a later write is
    /// chosen it can never take effect (see the linearizability checker).
    pub ended_us: Option<u64>,
}

/// A span of true time during which a client acted as holder of a grant.
#[derive(Clone, Debug)]
pub struct Validity {
    pub client: usize,
    pub token: Token,
    pub from_us: u64,
    pub until_us: u64,
}

#[derive(Default)]
pub struct History {
    pub ops: BTreeMap<LeaseName, Vec<OpRecord>>,
    pub validity: BTreeMap<LeaseName, Vec<Validity>>,
}

impl History {
    /// Record an invocation; returns its index for the reply.
    pub fn invoke(&mut self, name: &LeaseName, client: usize, op: Op, now_us: u64) -> usize {
        let ops = self.ops.entry(name.clone()).or_default();
        ops.push(OpRecord {
            client,
            op,
            invoked_us: now_us,
            returned: None,
            discarded: false,
            ended_us: None,
        });
        ops.len() - 1
    }

    pub fn complete(&mut self, name: &LeaseName, index: usize, now_us: u64, outcome: Outcome) {
        if let Some(record) = self.ops.get_mut(name).and_then(|ops| ops.get_mut(index)) {
            record.returned = Some((now_us, outcome));
        }
    }

    /// Forget an operation that certainly had no effect (refused before any
    /// write was sent).
    pub fn discard(&mut self, name: &LeaseName, index: usize) {
        if let Some(record) = self.ops.get_mut(name).and_then(|ops| ops.get_mut(index)) {
            record.discarded = true;
        }
    }

    pub fn end(&mut self, name: &LeaseName, index: usize, now_us: u64) {
        if let Some(record) = self.ops.get_mut(name).and_then(|ops| ops.get_mut(index)) {
            record.ended_us.get_or_insert(now_us);
        }
    }

    pub fn hold(&mut self, name: &LeaseName, validity: Validity) {
        self.validity
            .entry(name.clone())
            .or_default()
            .push(validity);
    }

    /// Shorten the latest validity of `client` for `token`, when the client
    /// stops acting early (it released, or learnt the grant is gone).
    pub fn stop_holding(&mut self, name: &LeaseName, client: usize, token: Token, now_us: u64) {
        if let Some(v) = self.validity.get_mut(name).and_then(|vs| {
            vs.iter_mut()
                .rev()
                .find(|v| v.client == client && v.token == token)
        }) {
            v.until_us = v.until_us.min(now_us);
        }
    }

    /// Extend the latest validity of `client` for `token` after a renewal.
    pub fn extend_holding(&mut self, name: &LeaseName, client: usize, token: Token, until_us: u64) {
        if let Some(v) = self.validity.get_mut(name).and_then(|vs| {
            vs.iter_mut()
                .rev()
                .find(|v| v.client == client && v.token == token)
        }) {
            v.until_us = v.until_us.max(until_us);
        }
    }
}
