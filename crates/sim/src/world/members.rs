//! A change of members amid the faults: a member lost with its disk and
//! replaced by an empty node, or the cluster grown from three to five.
//! The change is the core's own coordinator on a live member; while it is
//! unfinished another member is asked for it again every so often, as an
//! operator would after its coordinator crashed.

use super::*;
use crate::rng::SimRng;

/// How often an unfinished change is asked for again.
const NUDGE_EVERY_US: u64 = 400_000;

#[derive(Clone, Debug)]
pub(crate) struct MemberPlan {
    /// When the change begins, in true time.
    pub at: u64,
    /// The member that is lost with its disk, if the change replaces one.
    pub lost: Option<usize>,
    /// The slots of the nodes that join, empty until the change begins.
    pub joiners: Vec<usize>,
    /// The member list moved to.
    pub target: Vec<NodeId>,
    /// The configuration joining nodes start under.
    pub joint: Configuration,
    pub done: bool,
}

impl MemberPlan {
    /// A replacement or a growth, at a time inside the fault period.
    pub(crate) fn draw(rng: &mut SimRng, members: usize, fault_period_us: u64) -> MemberPlan {
        let old: Vec<NodeId> = (1..=members as u16).map(NodeId).collect();
        let at = rng.between(
            100_000,
            fault_period_us.saturating_sub(300_000).max(100_001),
        );
        let (lost, joiners) = if rng.chance(500_000) {
            (Some(rng.below(members as u64) as usize), vec![members])
        } else {
            (None, vec![members, members + 1])
        };
        let mut target: Vec<NodeId> = old
            .iter()
            .copied()
            .filter(|id| Some(usize::from(id.0) - 1) != lost)
            .collect();
        target.extend(joiners.iter().map(|&j| NodeId(j as u16 + 1)));
        let joint = Configuration::first(old).joint_to(target.clone(), &Default::default());
        MemberPlan {
            at,
            lost,
            joiners,
            target,
            joint,
            done: false,
        }
    }
}

impl World {
    /// The change begins: the lost member goes for good, its disk with it;
    /// the joining nodes start empty; a live member is asked to coordinate.
    pub(super) fn begin_member_change(&mut self) {
        let Some(plan) = self.member_plan.clone() else {
            return;
        };
        if let Some(lost) = plan.lost {
            if self.nodes[lost].node.is_some() {
                self.crash(lost);
            }
            let sim = &mut self.nodes[lost];
            sim.gone = true;
            sim.disk = Disk::default();
            self.trace
                .line(self.now, format_args!("node {lost} is lost with its disk"));
        }
        for &j in &plan.joiners {
            self.nodes[j].spare = false;
            self.boot(j);
        }
        self.trace.line(
            self.now,
            format_args!("members change to {:?}", plan.target),
        );
        self.nudge_member_change();
    }

    /// Ask a live node that coordinates nothing for the change, unless it
    /// is over: some node holds the target as its plain configuration.
    pub(super) fn nudge_member_change(&mut self) {
        let Some(plan) = self.member_plan.as_mut() else {
            return;
        };
        if self
            .nodes
            .iter()
            .filter_map(|n| n.node.as_ref())
            .any(|n| n.configuration().is_settled_on(&plan.target))
        {
            plan.done = true;
            self.trace
                .line(self.now, format_args!("the change of members is over"));
            return;
        }
        let target = plan.target.clone();
        let idle: Vec<usize> = self
            .serving_nodes()
            .into_iter()
            .filter(|&i| {
                self.nodes[i]
                    .node
                    .as_ref()
                    .is_some_and(|n| n.change_step().is_none())
            })
            .collect();
        if !idle.is_empty() {
            let i = idle[self.member_rng.below(idle.len() as u64) as usize];
            let now = self.local(i);
            if let Some(node) = self.nodes[i].node.as_mut() {
                let asked = node.change_members(now, target);
                self.trace.line(
                    self.now,
                    format_args!("node {i} asked to coordinate: {asked:?}"),
                );
            }
            self.drain(i);
        }
        self.schedule(self.now + NUDGE_EVERY_US, Event::NudgeMembers);
    }

    /// Whether the change of members was over, if one was planned.
    pub fn member_change_done(&self) -> Option<bool> {
        self.member_plan.as_ref().map(|p| p.done)
    }

    /// The nodes clients and probes may use: neither lost nor yet to join.
    pub(super) fn serving_nodes(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| !self.nodes[i].gone && !self.nodes[i].spare)
            .collect()
    }
}
