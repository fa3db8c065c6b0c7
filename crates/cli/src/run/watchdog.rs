//! A watchdog outside the runner's process group. The runner can be
//! stopped where no code of its own runs (SIGSTOP, a debugger, a starved
//! CPU), and then nothing in it would stop the command at the deadline.
//! So a second, tiny process does: it is told the kill time after every
//! renewal, and it SIGKILLs the command's process group when that time
//! comes and no later one was sent, or as soon as the runner is gone.
//! Being in a group of its own, it is not stopped by the Ctrl-Z that stops
//! the runner.
//!
//! The runner speaks to it over its stdin: 8 bytes, little-endian, the
//! kill time in nanoseconds of `CLOCK_BOOTTIME` (which keeps counting
//! through a suspend, as the cluster's clocks do), or 0 to stand down.
//! End of file means the runner is gone.

use anyhow::{Context, Result};
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use tokio::time::Instant;

/// The hidden subcommand the watchdog runs as.
pub const SUBCOMMAND: &str = "run-watchdog";

/// How often the watchdog looks at the clock while waiting, so that a
/// suspend (during which its poll does not count time) is noticed soon
/// after the resume.
const LOOK_EVERY_MS: u64 = 100;

/// The runner's handle on its watchdog.
pub struct Watchdog {
    child: Child,
    pipe: Option<ChildStdin>,
}

impl Watchdog {
    /// Start a watchdog over the process group `pgid`.
    pub fn spawn(pgid: i32) -> Result<Watchdog> {
        let exe = std::env::current_exe().context("finding this executable")?;
        let mut child = Command::new(exe)
            .args([SUBCOMMAND, &pgid.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            // Its own group: a Ctrl-Z or Ctrl-C for the runner's group
            // must not reach it.
            .process_group(0)
            .spawn()
            .context("starting the watchdog")?;
        let pipe = child.stdin.take();
        Ok(Watchdog { child, pipe })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kill the group at `at` (on this process's clock) unless told later.
    pub fn kill_at(&mut self, at: Instant) {
        let ahead = at.saturating_duration_since(Instant::now());
        let nanos =
            boottime_nanos().saturating_add(u64::try_from(ahead.as_nanos()).unwrap_or(u64::MAX));
        self.send(nanos.max(1));
    }

    /// The command is gone: exit without killing anything, and reap.
    pub fn stand_down(mut self) {
        self.send(0);
        self.pipe = None;
        let _ = self.child.wait();
    }

    fn send(&mut self, nanos: u64) {
        let Some(pipe) = self.pipe.as_mut() else {
            return;
        };
        if let Err(e) = pipe.write_all(&nanos.to_le_bytes()) {
            // It died: the runner's own deadline still stands.
            eprintln!("tenure run: the watchdog is gone ({e}); the deadline is kept without it");
            self.pipe = None;
        }
    }
}

/// The watchdog process: read kill times from stdin until told to stand
/// down; kill the group when the last one passes or stdin ends.
pub fn watch(pgid: i32) -> ExitCode {
    let mut stdin = std::io::stdin().lock();
    let mut kill_at: Option<u64> = None;
    let mut buf = [0u8; 8];
    let mut filled = 0;
    loop {
        let now = boottime_nanos();
        if kill_at.is_some_and(|at| now >= at) {
            super::signal_group(pgid, libc::SIGKILL);
            return ExitCode::SUCCESS;
        }
        let wait_ms = kill_at.map_or(LOOK_EVERY_MS, |at| {
            (at - now).div_ceil(1_000_000).min(LOOK_EVERY_MS)
        });
        if !readable(wait_ms) {
            continue;
        }
        match stdin.read(&mut buf[filled..]) {
            Ok(0) | Err(_) => {
                // The runner is gone (killed, or crashed): nobody watches
                // the lease any more, so the command must not run on.
                super::signal_group(pgid, libc::SIGKILL);
                return ExitCode::SUCCESS;
            }
            Ok(n) => {
                filled += n;
                if filled == buf.len() {
                    filled = 0;
                    match u64::from_le_bytes(buf) {
                        0 => return ExitCode::SUCCESS,
                        at => kill_at = Some(at),
                    }
                }
            }
        }
    }
}

/// Whether stdin has data (or its end) within `ms` milliseconds.
fn readable(ms: u64) -> bool {
    let mut fd = libc::pollfd {
        fd: libc::STDIN_FILENO,
        events: libc::POLLIN,
        revents: 0,
    };
    let timeout = i32::try_from(ms).unwrap_or(i32::MAX);
    // SAFETY: `fd` is a valid, exclusively borrowed pollfd and the count
    // is 1; poll writes only its `revents`.
    let n = unsafe { libc::poll(&mut fd, 1, timeout) };
    n > 0
}

/// `CLOCK_BOOTTIME` in nanoseconds: monotonic, and counts a suspend.
pub fn boottime_nanos() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, exclusively borrowed timespec that
    // clock_gettime fills; CLOCK_BOOTTIME exists on every Linux since 2.6.39.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    assert_eq!(r, 0, "clock_gettime(CLOCK_BOOTTIME) failed");
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    secs * 1_000_000_000 + nanos
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn boottime_runs_forward_with_the_monotonic_clock() {
        let (a, t) = (boottime_nanos(), std::time::Instant::now());
        std::thread::sleep(Duration::from_millis(20));
        let (b, elapsed) = (boottime_nanos(), t.elapsed());
        let measured = Duration::from_nanos(b - a);
        assert!(measured >= Duration::from_millis(20));
        assert!(measured <= elapsed + Duration::from_millis(5));
    }
}
