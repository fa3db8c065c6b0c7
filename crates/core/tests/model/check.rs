//! Running the checker and reading its verdicts.

use super::cluster::{Action, LeaseModel, Scenario, State};
use super::spec::{Event, SpecOp, SpecRet, SpecView};
use stateright::{Checker, HasDiscoveries, Model, Path};
use std::fmt::Write as _;
use std::time::Instant as WallClock;

/// Two threads: the machine the suite runs on has two cores.
const THREADS: usize = 2;

/// Explore every state of `scenario` and fail on any counterexample to an
/// `always` property, or if any of `examples` (`sometimes` properties that
/// show the model is not vacuous) was never reached.
pub fn assert_safe(scenario: Scenario, examples: &[&'static str]) {
    let started = WallClock::now();
    let model = LeaseModel::new(scenario.clone());
    let properties = model.properties();
    // Depth first: the search keeps only the current path's siblings in
    // memory, where breadth first would keep a whole frontier of states.
    let checker = model.checker().threads(THREADS).spawn_dfs().join();
    println!(
        "explored {} states ({} unique), depth {}, in {:.1?}",
        checker.state_count(),
        checker.unique_state_count(),
        checker.max_depth(),
        started.elapsed()
    );
    let failed: Vec<&str> = properties
        .iter()
        .filter(|p| p.expectation.discovery_is_failure())
        .filter(|p| checker.discovery(p.name).is_some())
        .map(|p| p.name)
        .collect();
    if !failed.is_empty() {
        // A depth-first trace is long; search again breadth first for a
        // short one to show.
        let traces = find_violations(scenario);
        let shown = traces.first().map_or("", |(_, trace)| trace.as_str());
        panic!("counterexample to {failed:?}:\n{shown}");
    }
    for example in examples {
        assert!(
            checker.discovery(example).is_some(),
            "no example of \"{example}\": the model is vacuous"
        );
    }
}

/// Explore `scenario` breadth first, so that counterexamples are short,
/// until some `always` property fails; return each property found failing
/// with its trace. Empty if every state was explored and none failed.
pub fn find_violations(scenario: Scenario) -> Vec<(&'static str, String)> {
    let started = WallClock::now();
    let model = LeaseModel::new(scenario);
    let properties = model.properties();
    let checker = model
        .checker()
        .threads(THREADS)
        .finish_when(HasDiscoveries::AnyFailures)
        .spawn_bfs()
        .join();
    println!(
        "explored {} states ({} unique) in {:.1?}",
        checker.state_count(),
        checker.unique_state_count(),
        started.elapsed()
    );
    properties
        .iter()
        .filter(|p| p.expectation.discovery_is_failure())
        .filter_map(|p| {
            let path = checker.discovery(p.name)?;
            Some((p.name, explain(checker.model(), &path)))
        })
        .collect()
}

/// Explore `scenario` depth first until some `always` property fails;
/// return the names of those found failing. For scenarios whose frontier
/// would not fit in memory breadth first.
pub fn find_violations_depth_first(scenario: Scenario) -> Vec<&'static str> {
    let model = LeaseModel::new(scenario);
    let properties = model.properties();
    let checker = model
        .checker()
        .threads(THREADS)
        .finish_when(HasDiscoveries::AnyFailures)
        .spawn_dfs()
        .join();
    properties
        .iter()
        .filter(|p| p.expectation.discovery_is_failure())
        .filter(|p| checker.discovery(p.name).is_some())
        .map(|p| p.name)
        .collect()
}

/// A trace as a reader wants it: each step with the time, below it what
/// the clients saw happen, and at the end the grants and the intervals in
/// which clients held the lease.
pub fn explain(model: &LeaseModel, path: &Path<State, Action>) -> String {
    let steps = path.clone().into_vec();
    let mut out = String::new();
    for window in steps.windows(2) {
        let (before, Some(action)) = (&window[0].0, &window[0].1) else {
            continue;
        };
        let after = &window[1].0;
        let _ = writeln!(out, "t={:>2}ms  {action:?}", before.now.as_micros() / 1_000);
        // The history is kept in a canonical order, so new events are
        // found by value rather than by position.
        for event in after.history.iter().filter(|e| !before.history.contains(e)) {
            let _ = writeln!(out, "         client {}", describe(model, event));
        }
    }
    let last = &steps[steps.len() - 1].0;
    for grant in &last.grants {
        let _ = writeln!(
            out,
            "grant: client {} token {} (requested after token {} was granted)",
            model.holder(grant.client),
            grant.token,
            grant.floor
        );
    }
    for hold in last.holds.iter().filter(|h| h.from < h.until) {
        let _ = writeln!(
            out,
            "holds: client {} token {} from {:.3}ms until {:.3}ms",
            model.holder(hold.client),
            hold.token,
            hold.from.as_micros() as f64 / 1e3,
            hold.until.as_micros() as f64 / 1e3
        );
    }
    out
}

fn describe(model: &LeaseModel, event: &Event) -> String {
    let client = |c: u8| model.holder(c).to_string();
    let view = |v: &SpecView| match *v {
        SpecView::Free { token } => format!("free (token {token})"),
        SpecView::Held { holder, token } => format!("held by {} (token {token})", client(holder)),
        SpecView::Delayed { holder, token } => {
            format!("lock-delayed for {} (token {token})", client(holder))
        }
    };
    match event {
        Event::Invoke { op, what } => {
            let what = match *what {
                SpecOp::Acquire { .. } => "acquire".to_string(),
                SpecOp::Renew { token, .. } => format!("renew token {token}"),
                SpecOp::Release { token, .. } => format!("release token {token}"),
                SpecOp::Read => "read".to_string(),
            };
            format!("{} sends #{op}: {what}", client(op / 16))
        }
        Event::Return { op, ret } => {
            let ret = match ret {
                SpecRet::Granted { token } => format!("granted token {token}"),
                SpecRet::Renewed { token } => format!("renewed token {token}"),
                SpecRet::Released { token } => format!("released token {token}"),
                SpecRet::Observed(v) => format!("observed {}", view(v)),
                SpecRet::Conflict(v) => format!("conflict, {}", view(v)),
            };
            format!("{} gets  #{op}: {ret}", client(op / 16))
        }
    }
}
