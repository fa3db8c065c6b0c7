//! `tenure run` when the runner itself is stopped, asked to stop, or
//! killed, and when the command leaves processes behind: no part of the
//! command may run beside the next holder's. Real processes against a
//! real three-node cluster; every part of the first command stamps the
//! time (the system clock, one clock for all on one machine) every 10 ms,
//! the second command stamps its start, and no stamp of the first may
//! come after it.

mod common;

use common::runner::*;
use common::Cluster;
use std::path::{Path, PathBuf};
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

/// Shell that writes its pid to `pid`, then stamps `stamps` every 10 ms
/// until killed; with `ignore_term`, SIGTERM does not stop it (nor the
/// `date` and `sleep` it runs, which inherit the ignored signal).
fn stamper(pid: &Path, stamps: &Path, ignore_term: bool) -> String {
    format!(
        "{}echo $$ > {}; while :; do date +%s%N >> {}; sleep 0.01; done",
        if ignore_term { "trap '' TERM; " } else { "" },
        pid.display(),
        stamps.display()
    )
}

fn stamps(path: &Path) -> Vec<u128> {
    log_of(path)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// The second runner on `lock`: its command stamps its start in `started`.
struct Next {
    _runner: Runner,
    started: PathBuf,
}

impl Next {
    fn start(cluster: &Cluster, d: &tempfile::TempDir, lock: &str) -> Next {
        let started = file(d, "next.started");
        let runner = Runner::start(
            cluster,
            lock,
            &["--ttl", "2s"],
            &format!("date +%s%N > {}; exec sleep 60", started.display()),
            &file(d, "next.log"),
        );
        Next {
            _runner: runner,
            started,
        }
    }

    /// Waits for the second command to start; no stamp of the first may
    /// come after its start.
    fn assert_after(&self, first: &Path, within: Duration) {
        until(within, "the next command to start", || {
            !stamps(&self.started).is_empty()
        });
        let started = stamps(&self.started)[0];
        let first = stamps(first);
        assert!(!first.is_empty(), "the first command never stamped");
        let last = *first.iter().max().expect("a stamp");
        assert!(
            last < started,
            "the commands overlapped by {} ms",
            (last - started) / 1_000_000
        );
    }
}

/// The first runner on `lock`, with a 2 s ttl, its command stamping.
struct First {
    runner: Runner,
    /// The command's pid, once it has started.
    child: u32,
    stamps: PathBuf,
    log: PathBuf,
}

impl First {
    fn start(cluster: &Cluster, d: &tempfile::TempDir, lock: &str, ignore_term: bool) -> First {
        let (pid_file, stamps, log) = (file(d, "a.pid"), file(d, "a.stamps"), file(d, "a.log"));
        let runner = Runner::start(
            cluster,
            lock,
            &["--ttl", "2s"],
            &stamper(&pid_file, &stamps, ignore_term),
            &log,
        );
        until(
            Duration::from_secs(20),
            "the first command to start",
            || read_pid(&pid_file).is_some(),
        );
        let child = read_pid(&pid_file).expect("pid");
        First {
            runner,
            child,
            stamps,
            log,
        }
    }
}

/// SIGSTOP cannot be caught: the runner just stops, its renewals with it.
/// The watchdog beside it kills the command before the lease could
/// expire, so the next holder's command never runs beside it.
#[test]
fn a_runner_stopped_by_sigstop_cannot_keep_its_command_past_the_deadline() {
    let cluster = Cluster::start();
    let d = dir();
    let ttl = Duration::from_secs(2);
    let mut a = First::start(&cluster, &d, "frozen", false);
    let next = Next::start(&cluster, &d, "frozen");
    let stopped = Instant::now();
    signal(a.runner.child.id(), "STOP");
    let dead = until(
        ttl + Duration::from_secs(2),
        "the command to be killed",
        || !alive(a.child),
    );
    assert!(
        dead - stopped < ttl,
        "the command outlived the lease: killed {:?} after its runner stopped",
        dead - stopped
    );
    next.assert_after(&a.stamps, ttl + Duration::from_secs(5));
    signal(a.runner.child.id(), "CONT");
    assert_eq!(
        a.runner.wait(Duration::from_secs(15)),
        Some(137),
        "{}",
        log_of(&a.log)
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
    let ttl = Duration::from_secs(2);
    let mut a = First::start(&cluster, &d, "suspended", false);
    let (child, runner_pid) = (a.child, a.runner.child.id());

    signal(runner_pid, "TSTP");
    // The runner stops itself only after it has stopped the command's
    // group. The shell may be caught waiting for a child it vforked, in
    // state D rather than T, so "stopped" is judged by the stamps: none
    // may be added while the runner is stopped (one write may have been
    // under way when the stop came).
    until(Duration::from_secs(2), "the runner to stop", || {
        state(runner_pid) == Some('T')
    });
    std::thread::sleep(Duration::from_millis(50));
    let before = stamps(&a.stamps).len();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        stamps(&a.stamps).len(),
        before,
        "the command stamped while the runner was stopped"
    );
    signal(runner_pid, "CONT");
    until(Duration::from_secs(2), "the command to go on", || {
        stamps(&a.stamps).len() > before
    });

    let next = Next::start(&cluster, &d, "suspended");
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
    next.assert_after(&a.stamps, ttl + Duration::from_secs(5));
    signal(runner_pid, "CONT");
    let code = a.runner.wait(Duration::from_secs(15));
    assert_eq!(code, Some(137), "{}", log_of(&a.log));
}

/// A stop request (SIGTERM to `tenure run`) is passed on to the command,
/// and a command that ignores it, its own children included, is killed
/// after the grace rather than kept running. `--ttl 2s` with the default
/// grace (a fifth of the ttl) is accepted.
#[test]
fn a_stopped_runner_kills_a_command_that_ignores_sigterm_after_the_grace() {
    let cluster = Cluster::start();
    let d = dir();
    let mut a = First::start(&cluster, &d, "stubborn", true);
    let next = Next::start(&cluster, &d, "stubborn");
    let asked = Instant::now();
    signal(a.runner.child.id(), "TERM");
    let dead = until(Duration::from_secs(5), "the command to be killed", || {
        !alive(a.child)
    });
    // The grace is 400 ms: killed after it, and well before the 2 s ttl.
    let took = dead - asked;
    assert!(
        took >= Duration::from_millis(350) && took < Duration::from_millis(1_500),
        "killed {took:?} after the stop request"
    );
    let code = a.runner.wait(Duration::from_secs(15));
    assert_eq!(code, Some(137), "{}", log_of(&a.log));
    next.assert_after(&a.stamps, Duration::from_secs(10));
}

/// A command that leaves a process behind, one that even started a
/// session of its own and ignores SIGTERM: it is killed when the command
/// exits, before the lease is released to the next holder.
#[test]
fn what_the_command_leaves_behind_is_killed_before_the_release() {
    let cluster = Cluster::start();
    let d = dir();
    let (left_pid, left_stamps) = (file(&d, "left.pid"), file(&d, "left.stamps"));
    let log = file(&d, "runner.log");
    let leftover = stamper(&left_pid, &left_stamps, true);
    let mut runner = Runner::start(
        &cluster,
        "tidy",
        &["--ttl", "10s"],
        &format!(
            "(setsid sh -c \"{}\" &); until [ -s {} ]; do sleep 0.01; done; sleep 0.5",
            leftover.replace('"', "\\\""),
            left_stamps.display()
        ),
        &log,
    );
    // The second runner asks only once the first holds the name.
    until(Duration::from_secs(20), "the leftover to start", || {
        read_pid(&left_pid).is_some()
    });
    let next = Next::start(&cluster, &d, "tidy");
    let code = runner.wait(Duration::from_secs(30));
    assert_eq!(code, Some(0), "{}", log_of(&log));
    let left = read_pid(&left_pid).expect("the leftover's pid");
    assert!(!alive(left), "pid {left} outlived its command");
    assert!(
        log_of(&log).contains("the command left running"),
        "{}",
        log_of(&log)
    );
    next.assert_after(&left_stamps, Duration::from_secs(10));
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

/// Orphans the command leaves behind that exit on their own are reaped
/// while it runs, not collected as zombies until it ends.
#[test]
fn orphans_that_exit_are_reaped_while_the_command_runs() {
    let cluster = Cluster::start();
    let d = dir();
    let ready = file(&d, "ready");
    let mut runner = Runner::start(
        &cluster,
        "reaped",
        &["--ttl", "10s"],
        &format!(
            "for i in 1 2 3 4 5; do (sleep 0.02 &); done; sleep 0.5; echo go > {}; exec sleep 60",
            ready.display()
        ),
        &file(&d, "runner.log"),
    );
    until(
        Duration::from_secs(20),
        "the orphans to come and go",
        || ready.exists(),
    );
    let runner_pid = runner.child.id();
    let zombies = || -> Vec<u32> {
        let mut found = Vec::new();
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{runner_pid}/task")) else {
            return found;
        };
        for task in tasks.flatten() {
            let list = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            found.extend(
                list.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok())
                    .filter(|p| state(*p) == Some('Z')),
            );
        }
        found
    };
    until(Duration::from_secs(2), "no zombie children", || {
        zombies().is_empty()
    });
    let _ = runner.child.kill();
    let _ = runner.child.wait();
}
