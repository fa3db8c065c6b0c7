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
//! End of file means the runner is gone; the watchdog then also removes
//! what the runner would have removed on its way out (the directory of
//! `TENURE_DEADLINE_FILE`).

use anyhow::{Context, Result};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use tenure_client::{BootTime, ClockSource, Stamp};

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
    /// Start a watchdog, before the command: it kills at `first` unless
    /// told a later time. The command itself tells it its process group,
    /// from `announce_group` between fork and exec, so that no stop of
    /// the runner can fall between the command's start and the watchdog
    /// knowing what to kill.
    pub fn spawn(first: Stamp, leftover: Option<&Path>) -> Result<Watchdog> {
        // This very binary, even if the file was replaced or removed since
        // it started (an upgrade while `tenure run` waited for its lease).
        let mut command = Command::new("/proc/self/exe");
        command.args([SUBCOMMAND, &boottime_at(first).to_string()]);
        if let Some(dir) = leftover {
            command.arg(dir);
        }
        let mut child = command
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

    /// The pipe's descriptor, for the command to announce its group on.
    pub fn pipe_fd(&self) -> Option<RawFd> {
        self.pipe.as_ref().map(AsRawFd::as_raw_fd)
    }

    /// Kill the group at `at` (on the lease's clock) unless told later.
    pub fn kill_at(&mut self, at: Stamp) {
        self.send(boottime_at(at).max(1));
    }

    /// The command is gone: exit without killing anything, and reap.
    /// Blocking.
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

/// In the command, between fork and exec: tell the watchdog on `fd` the
/// command's process group (its own pid: it leads the group). Only
/// async-signal-safe calls: getpid and write.
pub fn announce_group(fd: RawFd) -> std::io::Result<()> {
    // SAFETY: getpid has no preconditions; `bytes` is a live, initialised
    // 8-byte buffer for the whole write.
    let bytes = (unsafe { libc::getpid() } as u64).to_le_bytes();
    let written = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
    if written != 8 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// `at` in nanoseconds of `CLOCK_BOOTTIME`. The runner's lease counts on
/// the client's default clock, which is that clock: a stamp needs no
/// conversion, and the watchdog and the lease agree through a suspend.
pub(super) fn boottime_at(at: Stamp) -> u64 {
    u64::try_from(at.since_origin().as_nanos()).unwrap_or(u64::MAX)
}

/// What the watchdog reads from its pipe.
struct Messages {
    buf: [u8; 8],
    filled: usize,
}

impl Messages {
    /// Read what is there; a whole message when one is complete. `Err`
    /// when the pipe has ended (the runner is gone).
    fn read(&mut self, stdin: &mut impl Read) -> Result<Option<u64>, ()> {
        match stdin.read(&mut self.buf[self.filled..]) {
            Ok(0) | Err(_) => Err(()),
            Ok(n) => {
                self.filled += n;
                if self.filled < self.buf.len() {
                    return Ok(None);
                }
                self.filled = 0;
                Ok(Some(u64::from_le_bytes(self.buf)))
            }
        }
    }
}

/// The watchdog process. The first message is the command's process
/// group (from the command itself); the rest are kill times, 0 to stand
/// down. It kills the group when the last kill time passes, or at once
/// when the pipe ends: the runner is gone, and nobody watches the lease.
pub fn watch(first_kill_at: u64, leftover: Option<&Path>) -> ExitCode {
    let mut stdin = std::io::stdin().lock();
    let mut kill_at = first_kill_at;
    let mut group: Option<i32> = None;
    let mut messages = Messages {
        buf: [0; 8],
        filled: 0,
    };
    let kill = |group: Option<i32>| {
        if let Some(pgid) = group {
            super::signal_group(pgid, libc::SIGKILL);
        }
        ExitCode::SUCCESS
    };
    loop {
        let now = boottime_nanos();
        // Take every message already waiting before acting on a kill
        // time: a watchdog starved of CPU must not act on one since moved.
        let wait_ms = match (now >= kill_at, group) {
            (true, Some(_)) => 0,
            // Past the time, but the command has not said it exists:
            // nothing to kill yet (it is killed as soon as it says so).
            (true, None) => LOOK_EVERY_MS,
            (false, _) => (kill_at - now).div_ceil(1_000_000).min(LOOK_EVERY_MS),
        };
        if readable(wait_ms) {
            match messages.read(&mut stdin) {
                Err(()) => {
                    if let Some(dir) = leftover {
                        let _ = std::fs::remove_dir_all(dir);
                    }
                    return kill(group);
                }
                Ok(None) => {}
                Ok(Some(message)) => match (group, message) {
                    (None, pgid) => group = i32::try_from(pgid).ok().filter(|g| *g > 1),
                    (Some(_), 0) => return ExitCode::SUCCESS,
                    (Some(_), at) => kill_at = at,
                },
            }
            continue;
        }
        if boottime_nanos() >= kill_at && group.is_some() {
            return kill(group);
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
    boottime_at(BootTime.now())
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
