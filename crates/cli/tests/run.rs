//! `tenure run` against a real three-process cluster: exclusion between
//! runners, the child's fate when its runner is SIGKILLed, and the child
//! stopped before the lease could expire when the cluster goes away.

mod common;

use common::runner::*;
use common::Cluster;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn two_runners_on_one_name_never_overlap() {
    let cluster = Cluster::start();
    let d = dir();
    let stamps = file(&d, "stamps");
    // Each child stamps its start and end (nanoseconds of the system's
    // clock, one clock for both on one machine) around some work.
    let script = format!(
        "echo start $(date +%s%N) >> {f}; sleep 0.3; echo end $(date +%s%N) >> {f}",
        f = stamps.display()
    );
    let rounds = 3;
    let threads: Vec<_> = (0..2)
        .map(|r| {
            let cluster_urls = (1..=3).map(|i| cluster.url(i)).collect::<Vec<_>>();
            let script = script.clone();
            let log = file(&d, &format!("runner-{r}.log"));
            std::thread::spawn(move || {
                for _ in 0..rounds {
                    let status = Command::new(common::BIN)
                        .args(["run", "--lock", "exclusive", "--ttl", "2s", "--wait", "30s"])
                        .args([
                            "--kill-grace",
                            "300ms",
                            "--endpoints",
                            &cluster_urls.join(","),
                        ])
                        .args(["--", "sh", "-c", &script])
                        .stdin(Stdio::null())
                        .stderr(std::fs::File::create(&log).expect("log"))
                        .status()
                        .expect("tenure run");
                    assert!(
                        status.success(),
                        "tenure run failed: {:?}",
                        std::fs::read_to_string(&log)
                    );
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("runner thread");
    }
    let text = std::fs::read_to_string(&stamps).expect("stamps");
    let lines: Vec<(&str, u128)> = text
        .lines()
        .map(|l| {
            let (kind, ns) = l.split_once(' ').expect("stamp line");
            (kind, ns.parse().expect("nanoseconds"))
        })
        .collect();
    assert_eq!(lines.len(), 2 * 2 * rounds, "{text}");
    // Appended in time order: disjoint intervals alternate start, end.
    for (i, pair) in lines.chunks(2).enumerate() {
        assert_eq!(pair[0].0, "start", "interval {i} overlaps another:\n{text}");
        assert_eq!(pair[1].0, "end", "interval {i} overlaps another:\n{text}");
        assert!(pair[0].1 < pair[1].1);
    }
    for w in lines.windows(2) {
        assert!(w[0].1 <= w[1].1, "stamps out of order:\n{text}");
    }
}

#[test]
fn a_sigkilled_runner_takes_its_child_along_and_a_waiter_takes_over_within_ttl() {
    let cluster = Cluster::start();
    let d = dir();
    let pid_a = file(&d, "a.pid");
    let started_b = file(&d, "b.started");
    let ttl = Duration::from_secs(2);
    let mut a = Runner::start(
        &cluster,
        "takeover",
        &["--ttl", "2s", "--kill-grace", "300ms"],
        &format!(
            "echo $TENURE_DEADLINE_FILE > {}.file; echo $$ > {}; exec sleep 60",
            pid_a.display(),
            pid_a.display()
        ),
        &file(&d, "a.log"),
    );
    until(Duration::from_secs(20), "the first child to start", || {
        read_pid(&pid_a).is_some()
    });
    let deadline_file = std::fs::read_to_string(format!("{}.file", pid_a.display()))
        .expect("the deadline file's name");
    let deadline_dir = std::path::Path::new(deadline_file.trim())
        .parent()
        .expect("its directory")
        .to_path_buf();
    assert!(deadline_dir.exists(), "{}", deadline_dir.display());
    let child_a = read_pid(&pid_a).expect("pid");
    assert!(alive(child_a));
    let _b = Runner::start(
        &cluster,
        "takeover",
        &["--ttl", "2s", "--kill-grace", "300ms"],
        &format!(
            "echo $TENURE_TOKEN > {}; exec sleep 60",
            started_b.display()
        ),
        &file(&d, "b.log"),
    );
    let killed = Instant::now();
    let _ = a.child.kill(); // SIGKILL
    let _ = a.child.wait();
    let gone = until(Duration::from_secs(1), "the orphaned child to die", || {
        !alive(child_a)
    });
    assert!(
        gone - killed < Duration::from_millis(500),
        "child lived {:?}",
        gone - killed
    );
    // What the runner would have removed on its way out, the watchdog did.
    until(
        Duration::from_secs(1),
        "the deadline file to be removed",
        || !deadline_dir.exists(),
    );
    let took_over = until(
        ttl + Duration::from_secs(2),
        "the waiter's child to start",
        || std::fs::read_to_string(&started_b).is_ok_and(|s| !s.trim().is_empty()),
    );
    assert!(
        took_over - killed <= ttl + Duration::from_secs(1),
        "takeover took {:?}",
        took_over - killed
    );
    let token: u64 = std::fs::read_to_string(&started_b)
        .expect("token")
        .trim()
        .parse()
        .expect("number");
    assert!(
        token >= 2,
        "the waiter's grant must carry a later token, got {token}"
    );
}

#[test]
fn with_the_cluster_gone_the_child_is_stopped_before_the_lease_could_expire() {
    let mut cluster = Cluster::start();
    let d = dir();
    let pid_file = file(&d, "child.pid");
    let ttl = Duration::from_secs(2);
    let mut runner = Runner::start(
        &cluster,
        "doomed",
        &["--ttl", "2s", "--kill-grace", "300ms"],
        &format!("echo $$ > {}; exec sleep 60", pid_file.display()),
        &file(&d, "runner.log"),
    );
    until(Duration::from_secs(20), "the child to start", || {
        read_pid(&pid_file).is_some()
    });
    let child = read_pid(&pid_file).expect("pid");
    // Every renewal that can still succeed was sent before this moment, so
    // the runner's lease was won at `sent` <= `stopped`.
    let stopped = Instant::now();
    for id in 1..=3 {
        cluster.kill9(id);
    }
    let dead = until(
        ttl + Duration::from_secs(1),
        "the child to be stopped",
        || !alive(child),
    );
    assert!(
        dead - stopped < ttl,
        "the child outlived sent + ttl: {:?} after the cluster stopped",
        dead - stopped
    );
    let code = runner.wait(Duration::from_secs(15));
    // sleep ended by SIGTERM: the runner exits as a shell would, 128 + 15.
    assert_eq!(
        code,
        Some(143),
        "{}",
        std::fs::read_to_string(file(&d, "runner.log")).unwrap_or_default()
    );
}

/// The command can see its deadline on a clock it can read itself
/// (`/proc/uptime` counts `CLOCK_BOOTTIME`), and the file follows the
/// renewals.
#[test]
fn the_command_sees_its_deadline_and_the_file_follows_renewals() {
    let cluster = Cluster::start();
    let d = dir();
    let (first, later) = (file(&d, "first"), file(&d, "later"));
    let mut runner = Runner::start(
        &cluster,
        "deadline",
        &["--ttl", "3s"],
        &format!(
            "echo $TENURE_DEADLINE $(cut -d' ' -f1 /proc/uptime) $(cat $TENURE_DEADLINE_FILE) > {}; \
             sleep 1.5; cat $TENURE_DEADLINE_FILE > {}",
            first.display(),
            later.display()
        ),
        &file(&d, "runner.log"),
    );
    assert_eq!(runner.wait(Duration::from_secs(30)), Some(0));
    let seconds = |s: &str| -> Vec<f64> {
        s.split_whitespace()
            .map(|w| w.parse().expect("seconds"))
            .collect()
    };
    let first = seconds(&std::fs::read_to_string(&first).expect("first"));
    let (env, uptime, in_file) = (first[0], first[1], first[2]);
    assert!((env - in_file).abs() < 0.01, "{env} vs {in_file}");
    // SIGTERM at sent + 3 s · (1 − 2ρ) − grace (600 ms) − slack (100 ms).
    let ahead = env - uptime;
    assert!((1.5..2.4).contains(&ahead), "deadline {ahead} s ahead");
    let later = seconds(&std::fs::read_to_string(&later).expect("later"))[0];
    assert!(
        later > env + 0.5,
        "renewals did not move it: {env} then {later}"
    );
}
