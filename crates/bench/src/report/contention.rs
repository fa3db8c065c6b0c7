//! RESULTS.md's section on the workloads under contention: one table of
//! both systems (tenure, etcd, tenure ÷ etcd) as in the main one, then the
//! first failure of each kind that either system met.

use super::{f, ratio};
use crate::contended::{QUEUE_LEVELS, TRYLOCK_LEVELS};
use serde_json::Value;
use std::fmt::Write as _;

/// `p50 / p99 / max` of a latency summary, in ms.
fn tail_ms(v: &Value) -> String {
    format!(
        "{:.1} / {:.1} / {:.1}",
        f(&v["p50_us"]) / 1e3,
        f(&v["p99_us"]) / 1e3,
        f(&v["max_us"]) / 1e3
    )
}

/// `5xx / timeouts / other` of a failure tally.
fn failures(v: &Value) -> String {
    format!(
        "{} / {} / {}",
        v["server_5xx"], v["timeouts"], v["other_failures"]
    )
}

/// One row: a label, each system's cell, and tenure ÷ etcd of the pair
/// in `ratio_of`, if any.
fn row(s: &mut String, label: &str, cells: [String; 2], ratio_of: Option<(f64, f64)>) {
    let r = ratio_of.map_or(String::new(), |(a, b)| format!("{:.2}", ratio(a, b)));
    let _ = writeln!(s, "| {label} | {} | {} | {r} |", cells[0], cells[1]);
}

/// The grants of a workload under a node kill (`x` tenure's, `y` etcd's):
/// per second, and after the kill with the longest stretch without one.
fn grants_around_a_kill(s: &mut String, what: &str, x: &Value, y: &Value) {
    let both = |v: &dyn Fn(&Value) -> String| [v(x), v(y)];
    row(
        s,
        &format!("{what}: grants/s"),
        both(&|v| format!("{:.0}", f(&v["grants_per_s"]))),
        Some((f(&x["grants_per_s"]), f(&y["grants_per_s"]))),
    );
    row(
        s,
        &format!("{what}: grants after the kill / longest stretch without a grant after it (ms)"),
        both(&|v| {
            format!(
                "{} / {:.1}",
                v["grants_after_kill"],
                f(&v["longest_without_grant_after_kill_ms"])
            )
        }),
        None,
    );
}

/// The table rows of every contended workload both systems ran.
pub(super) fn table(j: &Value) -> String {
    let (a, b) = (&j["tenure"]["contended"], &j["etcd"]["contended"]);
    let mut s = String::new();
    if !a.is_object() {
        return s;
    }
    let _ = writeln!(
        s,
        "| | tenure | etcd | tenure ÷ etcd |\n|---|---:|---:|---:|"
    );
    let both = |v: &dyn Fn(&Value) -> String, x: &Value, y: &Value| [v(x), v(y)];
    let p50 = |x: &Value, y: &Value, key: &str| Some((f(&x[key]["p50_us"]), f(&y[key]["p50_us"])));
    for n in TRYLOCK_LEVELS {
        let (x, y) = (&a["trylock"][n.to_string()], &b["trylock"][n.to_string()]);
        if !x.is_object() {
            continue;
        }
        row(
            &mut s,
            &format!("try-lock, {n} clients on one name: grants/s"),
            both(&|v| format!("{:.0}", f(&v["grants_per_s"])), x, y),
            Some((f(&x["grants_per_s"]), f(&y["grants_per_s"]))),
        );
        row(
            &mut s,
            &format!("try-lock, {n} clients: decision (grant or conflict) p50 / p99 / max (ms)"),
            both(&|v| tail_ms(&v["decision"]), x, y),
            p50(x, y, "decision"),
        );
        row(
            &mut s,
            &format!("try-lock, {n} clients: longest stretch without a grant (ms)"),
            both(
                &|v| format!("{:.1}", f(&v["longest_without_grant_ms"])),
                x,
                y,
            ),
            None,
        );
        row(
            &mut s,
            &format!("try-lock, {n} clients: 5xx / timeouts / other failures"),
            both(&|v| failures(&v["failures"]), x, y),
            None,
        );
    }
    for n in QUEUE_LEVELS {
        let (x, y) = (&a["queue"][n.to_string()], &b["queue"][n.to_string()]);
        if !x.is_object() {
            continue;
        }
        row(
            &mut s,
            &format!("queue, {n} waiters on one name: grants/s"),
            both(&|v| format!("{:.0}", f(&v["grants_per_s"])), x, y),
            Some((f(&x["grants_per_s"]), f(&y["grants_per_s"]))),
        );
        row(
            &mut s,
            &format!("queue, {n} waiters: wait p50 / p99 / max (ms)"),
            both(&|v| tail_ms(&v["wait"]), x, y),
            p50(x, y, "wait"),
        );
        row(
            &mut s,
            &format!(
                "queue, {n} waiters: longest wait / the FIFO bound for it (waiters ahead) (ms)"
            ),
            both(
                &|v| {
                    let l = &v["fifo"]["longest_wait"];
                    format!(
                        "{:.1} / {:.1} ({})",
                        f(&l["wait_ms"]),
                        f(&l["bound_ms"]),
                        l["waiters_ahead"]
                    )
                },
                x,
                y,
            ),
            None,
        );
        row(
            &mut s,
            &format!("queue, {n} waiters: waits over their FIFO bound, of all / worst excess (ms)"),
            both(
                &|v| {
                    format!(
                        "{} of {} / {:.1}",
                        v["fifo"]["waits_over_bound"],
                        v["fifo"]["waits"],
                        f(&v["fifo"]["worst_excess_ms"])
                    )
                },
                x,
                y,
            ),
            None,
        );
        row(
            &mut s,
            &format!("queue, {n} waiters: waits never granted (given up 10 s after the run)"),
            both(&|v| v["waits_not_granted"].to_string(), x, y),
            None,
        );
        row(
            &mut s,
            &format!("queue, {n} waiters: handoff, release answered → next grant answered, p50 / p99 / max (ms)"),
            both(&|v| tail_ms(&v["handoff_release_to_next_grant"]), x, y),
            p50(x, y, "handoff_release_to_next_grant"),
        );
        row(
            &mut s,
            &format!(
                "queue, {n} waiters: 5xx / timeouts (with waits that ran out) / other failures"
            ),
            both(&|v| failures(&v["failures"]), x, y),
            None,
        );
    }
    let (x, y) = (&a["election32"], &b["election32"]);
    if x.is_object() {
        let h = "handoff_resign_to_next_leader";
        row(
            &mut s,
            &format!(
                "election: handoff among {} candidates, resign sent → next leader's campaign returned, p50 / p99 / max of {} (ms)",
                x["candidates"], x[h]["n"]
            ),
            both(&|v| tail_ms(&v[h]), x, y),
            p50(x, y, h),
        );
        row(
            &mut s,
            &format!(
                "election among {} candidates: 5xx / timeouts (with 30 s polls that ran out) / other failures",
                x["candidates"]
            ),
            both(&|v| failures(&v["failures"]), x, y),
            None,
        );
    }
    let (x, y) = (&a["stampede"], &b["stampede"]);
    if x.is_object() {
        let first = "first_request_to_first_grant";
        row(
            &mut s,
            &format!(
                "stampede, {} clients on a fresh name: first request → first grant, p50 / p99 / max of {} (ms)",
                x["clients"], x[first]["n"]
            ),
            both(&|v| tail_ms(&v[first]), x, y),
            p50(x, y, first),
        );
        row(
            &mut s,
            "stampede: decision (grant or conflict) p50 / p99 / max (ms)",
            both(&|v| tail_ms(&v["decision"]), x, y),
            p50(x, y, "decision"),
        );
        row(
            &mut s,
            &format!(
                "stampede: rounds without a grant / with more than one grant, of {}",
                x["rounds"]
            ),
            both(
                &|v| {
                    format!(
                        "{} / {}",
                        v["rounds_without_grant"], v["rounds_with_more_than_one_grant"]
                    )
                },
                x,
                y,
            ),
            None,
        );
        row(
            &mut s,
            "stampede: 5xx / timeouts / other failures",
            both(&|v| failures(&v["failures"]), x, y),
            None,
        );
    }
    let (x, y) = (&a["trylock_kill"], &b["trylock_kill"]);
    if x.is_object() {
        let what = format!(
            "try-lock, {} clients, a node SIGKILLed at {} s",
            x["clients"], x["kill_at_s"]
        );
        grants_around_a_kill(&mut s, &what, x, y);
        row(
            &mut s,
            &format!("{what}: decision p50 / p99 / max (ms)"),
            both(&|v| tail_ms(&v["decision"]), x, y),
            p50(x, y, "decision"),
        );
        row(
            &mut s,
            &format!("{what}: 5xx / timeouts / other failures on the surviving nodes"),
            both(&|v| failures(&v["failures"]), x, y),
            None,
        );
        row(
            &mut s,
            &format!(
                "{what}: connection errors on the killed node (expected) / 5xx / timeouts there"
            ),
            both(
                &|v| {
                    let k = &v["failures_on_killed_node"];
                    format!(
                        "{} / {} / {}",
                        k["connection_errors"], k["server_5xx"], k["timeouts"]
                    )
                },
                x,
                y,
            ),
            None,
        );
    }
    let (x, y) = (&a["queue_kill"], &b["queue_kill"]);
    if x.is_object() {
        let what = format!(
            "queue, {} waiters, a node SIGKILLed at {} s",
            x["waiters"], x["kill_at_s"]
        );
        grants_around_a_kill(&mut s, &what, x, y);
        row(
            &mut s,
            &format!("{what}: wait p50 / p99 / max (ms)"),
            both(&|v| tail_ms(&v["wait"]), x, y),
            p50(x, y, "wait"),
        );
        row(
            &mut s,
            &format!(
                "{what}: 5xx / waits that ran out / other failures; connection errors (expected of the killed node)"
            ),
            both(
                &|v| {
                    let k = &v["failures"];
                    format!("{}; {}", failures(k), k["connection_errors"])
                },
                x,
                y,
            ),
            None,
        );
    }
    row(
        &mut s,
        "**errors under contention: 5xx + timeouts over every workload above**",
        [
            format!("**{}**", j["tenure"]["contended_errors"]),
            format!("**{}**", j["etcd"]["contended_errors"]),
        ],
        None,
    );
    s
}

/// The first failure of each kind, by workload and system.
fn first_failures(j: &Value) -> String {
    let mut s = String::new();
    for who in ["tenure", "etcd"] {
        let c = &j[who]["contended"];
        let mut workloads: Vec<(String, &Value)> = Vec::new();
        for n in TRYLOCK_LEVELS {
            workloads.push((
                format!("try-lock at {n} clients"),
                &c["trylock"][n.to_string()]["failures"],
            ));
        }
        for n in QUEUE_LEVELS {
            workloads.push((
                format!("the queue of {n} waiters"),
                &c["queue"][n.to_string()]["failures"],
            ));
        }
        workloads.push(("the election among 32".into(), &c["election32"]["failures"]));
        workloads.push(("the stampede".into(), &c["stampede"]["failures"]));
        workloads.push((
            "try-lock under a node kill, on the surviving nodes".into(),
            &c["trylock_kill"]["failures"],
        ));
        workloads.push((
            "the queue under a node kill".into(),
            &c["queue_kill"]["failures"],
        ));
        for (what, v) in workloads {
            for (kind, key) in [
                ("5xx", "first_5xx"),
                ("timeout", "first_timeout"),
                ("other failure", "first_other_failure"),
            ] {
                if let Some(e) = v[key].as_str() {
                    let _ = writeln!(s, "- {who}, {what}, first {kind}: `{}`", clip(e));
                }
            }
        }
        if let Some(e) = c["election32"]["failed"].as_str() {
            let _ = writeln!(
                s,
                "- {who}, the election among 32: **a half ended early**: `{}`",
                clip(e)
            );
        }
    }
    s
}

/// At most 300 characters of an error, on one line.
fn clip(e: &str) -> String {
    let one_line = e.replace(['\n', '`'], " ");
    match one_line.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &one_line[..i]),
        None => one_line,
    }
}

/// The section, when any contended workload ran.
pub(super) fn section(j: &Value) -> String {
    let table = table(j);
    if table.is_empty() {
        return table;
    }
    let z = &j["sizes"];
    let mut s = format!(
        "## Under contention\n\n\
         Many clients on ONE name, the normal case for a lock (how each system is driven: \
         the method below). {} s per level in two halves, the systems taking turns; each \
         holder holds {} ms; long polls and watches wait {} s at most; election: {} \
         handoffs; stampede: {} rounds. A timeout is no answer within the client's \
         timeout (10 s), or a wait that ran out without the grant.\n\n",
        z["contended_seconds_per_level"],
        z["contended_hold_ms"],
        z["queue_poll_seconds"],
        z["election32_handoffs"],
        z["stampede_rounds"],
    );
    s.push_str(&table);
    let firsts = first_failures(j);
    if !firsts.is_empty() {
        let _ = write!(s, "\nFirst failures under contention:\n\n{firsts}");
    }
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn no_section_without_contended_figures() {
        assert_eq!(section(&json!({"tenure": {}, "etcd": {}})), "");
    }

    #[test]
    fn each_level_has_its_rows_and_the_errors_are_summed_in_bold() {
        let level = |g: f64| {
            json!({
                "grants_per_s": g,
                "decision": {"p50_us": 1500.0, "p99_us": 3000.0, "max_us": 9000.0},
                "longest_without_grant_ms": 12.5,
                "failures": {"server_5xx": 3, "timeouts": 1, "other_failures": 0,
                             "first_5xx": "503 no quorum"},
            })
        };
        let j = json!({
            "sizes": {"contended_seconds_per_level": 2},
            "tenure": {"contended": {"trylock": {"8": level(100.0)}}, "contended_errors": 4},
            "etcd": {"contended": {"trylock": {"8": level(400.0)}}, "contended_errors": 0},
        });
        let s = section(&j);
        assert!(
            s.contains("| try-lock, 8 clients on one name: grants/s | 100 | 400 | 0.25 |"),
            "{s}"
        );
        assert!(
            s.contains("| 1.5 / 3.0 / 9.0 | 1.5 / 3.0 / 9.0 | 1.00 |"),
            "{s}"
        );
        assert!(s.contains("| 3 / 1 / 0 |"), "{s}");
        assert!(s.contains("| **4** | **0** |"), "{s}");
        assert!(
            s.contains("tenure, try-lock at 8 clients, first 5xx: `503 no quorum`"),
            "{s}"
        );
        assert!(!s.contains("queue"), "{s}");
    }
}
