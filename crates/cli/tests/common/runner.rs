//! `tenure run` processes for the tests, and small helpers to watch the
//! processes they start.

use super::{Cluster, BIN};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `tenure run` process; SIGKILLed and reaped on drop.
pub struct Runner {
    pub child: Child,
}

impl Runner {
    pub fn start(
        cluster: &Cluster,
        lock: &str,
        extra: &[&str],
        script: &str,
        log: &Path,
    ) -> Runner {
        let endpoints = (1..=3)
            .map(|i| cluster.url(i))
            .collect::<Vec<_>>()
            .join(",");
        let stderr = std::fs::File::create(log).expect("log file");
        let child = Command::new(BIN)
            .args(["run", "--lock", lock, "--endpoints", &endpoints])
            .args(extra)
            .args(["--", "sh", "-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn tenure run");
        Runner { child }
    }

    /// Wait (bounded) for the runner to exit; its exit code.
    pub fn wait(&mut self, within: Duration) -> Option<i32> {
        super::wait_exit(&mut self.child, within).and_then(|s| s.code())
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Poll (bounded, every 5 ms) until `f` holds; the time it first held.
pub fn until(within: Duration, what: &str, mut f: impl FnMut() -> bool) -> Instant {
    let deadline = Instant::now() + within;
    loop {
        if f() {
            return Instant::now();
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Whether process `pid` is still running (a zombie is not).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the field after the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

pub fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

pub fn dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

pub fn file(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}
