//! `tenure run` when the runner itself is stopped or killed, and when the
//! command leaves processes behind: no part of the command may run on
//! past the lease. Real processes against a real three-node cluster.

mod common;

use common::runner::*;
use common::Cluster;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Process `pid`'s state letter (`T`: stopped), if it exists.
fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().next()?.chars().next()
}

fn signal(pid: u32, name: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill -{name} {pid}");
}

fn log_of(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// SIGSTOP cannot be caught: the runner just stops, its renewals with it.
/// The watchdog beside it kills the command before the lease could
/// expire, so the next holder's command never runs beside it.
#[test]
fn a_runner_stopped_by_sigstop_cannot_keep_its_command_past_the_deadline() {
    let cluster = Cluster::start();
    let d = dir();
    let (pid_a, started_b) = (file(&d, "a.pid"), file(&d, "b.started"));
    let ttl = Duration::from_secs(2);
    let mut a = Runner::start(
        &cluster,
        "frozen",
        &["--ttl", "2s"],
        &format!("echo $$ > {}; exec sleep 60", pid_a.display()),
        &file(&d, "a.log"),
    );
    until(
        Duration::from_secs(20),
        "the first command to start",
        || read_pid(&pid_a).is_some(),
    );
    let child_a = read_pid(&pid_a).expect("pid");
    let _b = Runner::start(
        &cluster,
        "frozen",
        &["--ttl", "2s"],
        &format!("echo go > {}; exec sleep 60", started_b.display()),
        &file(&d, "b.log"),
    );
    let stopped = Instant::now();
    signal(a.child.id(), "STOP");
    let dead = until(
        ttl + Duration::from_secs(2),
        "the command to be killed",
        || !alive(child_a),
    );
    assert!(
        dead - stopped < ttl,
        "the command outlived the lease: killed {:?} after its runner stopped",
        dead - stopped
    );
    let b_started = until(ttl + Duration::from_secs(5), "the next command", || {
        std::fs::read_to_string(&started_b).is_ok_and(|s| !s.trim().is_empty())
    });
    assert!(dead <= b_started, "the two commands overlapped");
    signal(a.child.id(), "CONT");
    assert_eq!(
        a.wait(Duration::from_secs(15)),
        Some(137),
        "{}",
        log_of(&file(&d, "a.log"))
    );
}

/// Ctrl-Z reaches the runner's process group, not the command's: the
/// runner stops the command before it stops itself, lets it go on when
/// continued in time, and kills it when continued after the lease could
/// have expired (the watchdog has done so by then).
#[test]
fn ctrl_z_stops_the_command_with_the_runner_and_it_goes_on_only_while_the_lease_holds() {
    let cluster = Cluster::start();
    let d = dir();
    let pid_file = file(&d, "child.pid");
    let ttl = Duration::from_secs(2);
    let mut runner = Runner::start(
        &cluster,
        "suspended",
        &["--ttl", "2s"],
        &format!("echo $$ > {}; exec sleep 60", pid_file.display()),
        &file(&d, "runner.log"),
    );
    until(Duration::from_secs(20), "the command to start", || {
        read_pid(&pid_file).is_some()
    });
    let child = read_pid(&pid_file).expect("pid");
    let runner_pid = runner.child.id();

    signal(runner_pid, "TSTP");
    until(Duration::from_secs(2), "the command to stop", || {
        state(child) == Some('T')
    });
    until(Duration::from_secs(2), "the runner to stop", || {
        state(runner_pid) == Some('T')
    });
    signal(runner_pid, "CONT");
    until(Duration::from_secs(2), "the command to go on", || {
        state(child).is_some_and(|s| s != 'T')
    });
    assert!(alive(child));

    let stopped = Instant::now();
    signal(runner_pid, "TSTP");
    let dead = until(
        ttl + Duration::from_secs(2),
        "the command to be killed",
        || !alive(child),
    );
    assert!(
        dead - stopped < ttl,
        "killed {:?} after the stop",
        dead - stopped
    );
    signal(runner_pid, "CONT");
    let code = runner.wait(Duration::from_secs(15));
    assert_eq!(code, Some(137), "{}", log_of(&file(&d, "runner.log")));
}

/// A command that leaves a process behind, one that even started a
/// session of its own and ignores SIGTERM: it is killed when the command
/// exits, before the lease is released.
#[test]
fn what_the_command_leaves_behind_is_killed_before_the_release() {
    let cluster = Cluster::start();
    let d = dir();
    let left = file(&d, "left.pid");
    let log = file(&d, "runner.log");
    let mut runner = Runner::start(
        &cluster,
        "tidy",
        &["--ttl", "10s"],
        &format!(
            "(setsid sh -c 'trap \"\" TERM; echo $$ > {}; exec sleep 60' &); \
             until [ -s {} ]; do sleep 0.01; done",
            left.display(),
            left.display()
        ),
        &log,
    );
    let code = runner.wait(Duration::from_secs(30));
    assert_eq!(code, Some(0), "{}", log_of(&log));
    let leftover = read_pid(&left).expect("the leftover's pid");
    assert!(!alive(leftover), "pid {leftover} outlived its command");
    assert!(
        log_of(&log).contains("killed 1 process"),
        "{}",
        log_of(&log)
    );
    // The lease was released after that: the name is free at once.
    let read = common::get(&cluster.lock_url(1, "tidy"));
    assert_eq!(read.body["state"], "free", "{read:?}");
}

/// A runner killed outright (SIGKILL) cannot stop anything itself; the
/// kernel kills the command (parent-death signal) and the watchdog kills
/// the rest of the command's process group.
#[test]
fn a_sigkilled_runner_takes_the_commands_whole_group_along() {
    let cluster = Cluster::start();
    let d = dir();
    let grandchild = file(&d, "grandchild.pid");
    let mut runner = Runner::start(
        &cluster,
        "group",
        &["--ttl", "10s"],
        &format!("sleep 60 & echo $! > {}; wait", grandchild.display()),
        &file(&d, "runner.log"),
    );
    until(Duration::from_secs(20), "the grandchild to start", || {
        read_pid(&grandchild).is_some()
    });
    let pid = read_pid(&grandchild).expect("pid");
    let killed = Instant::now();
    let _ = runner.child.kill();
    let _ = runner.child.wait();
    let gone = until(Duration::from_secs(2), "the grandchild to die", || {
        !alive(pid)
    });
    assert!(
        gone - killed < Duration::from_secs(1),
        "{:?}",
        gone - killed
    );
}
