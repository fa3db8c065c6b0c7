//! `tenure run --lock NAME -- CMD ARGS...`: run a command only while this
//! process holds the lease, and make sure it is dead before the lease could
//! expire.
//!
//! Timeline of one grant, on this process's clock (`sent`: when the request
//! that won or last renewed it left; `end = sent + ttl·(1−2ρ)`, the latest
//! a holder may act at all, `holder_deadline` with no margin):
//!
//! ```text
//! sent ── renew at ttl/3 ── … ── end−grace−slack ── end−slack ── end
//!                                   SIGTERM            SIGKILL
//! ```
//!
//! The lease's margin is `grace + slack`, so `Lease::deadline()` is the
//! SIGTERM time; SIGKILL follows `grace` later, `slack` before `end`, which
//! leaves `slack` for the kernel to end the processes. Each successful
//! renewal moves the whole timeline. By default `grace` is 1 s and `slack`
//! 100 ms, or a fifth and a tenth of the ttl when those are less. A stop
//! request (Ctrl-C, SIGTERM) sends SIGTERM at once and SIGKILL `grace`
//! later.
//!
//! The runner's own timers cannot act while it is stopped, so the SIGKILL
//! time is also handed to a watchdog process (`watchdog.rs`), and what
//! the command leaves behind is killed before the release (`reap.rs`).

mod deadline;
mod reap;
pub mod watchdog;

use crate::client_cmds::{parse_duration, Conn};
use anyhow::{bail, Context, Result};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitCode;
use std::time::Duration;
use tenure_client::{Lease, Lock, LostReason, Stamp};
use tokio::time::Instant;

/// Between SIGKILL and the end of the usable ttl: time for the kernel to
/// tear the processes down. A tenth of the ttl when that is less.
const KILL_SLACK: Duration = Duration::from_millis(100);
/// The default grace between SIGTERM and SIGKILL: a fifth of the ttl when
/// that is less, so that every ttl the server accepts works with the
/// defaults.
const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(1);

/// Grace and slack for `ttl`: `grace` as given, or the default scaled.
fn grace_and_slack(ttl: Duration, grace: Option<Duration>) -> (Duration, Duration) {
    let slack = KILL_SLACK.min(ttl / 10);
    let grace = grace.unwrap_or_else(|| DEFAULT_KILL_GRACE.min(ttl / 5));
    (grace, slack)
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The lease to hold while the command runs.
    #[arg(long, value_name = "NAME")]
    pub lock: String,
    /// How long the lease lasts unless renewed (renewed every third of
    /// it); the command is stopped before it could run out.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub ttl: Duration,
    /// Give up (exit 1) when the lease is not ours within this long;
    /// default: wait as long as it takes.
    #[arg(long, value_parser = parse_duration)]
    pub wait: Option<Duration>,
    /// Who asks; default HOST:PID:RANDOM.
    #[arg(long)]
    pub holder: Option<String>,
    /// How long the command gets between SIGTERM and SIGKILL, when the
    /// lease cannot be renewed or `tenure run` is asked to stop. Default:
    /// 1s, or a fifth of the ttl when that is less.
    #[arg(long, value_parser = parse_duration)]
    pub kill_grace: Option<Duration>,
    #[command(flatten)]
    pub conn: Conn,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

pub async fn run(args: RunArgs) -> Result<ExitCode> {
    let (grace, slack) = grace_and_slack(args.ttl, args.kill_grace);
    let margin = grace + slack;
    // The child must get a useful stretch between a renewal (at ttl/3) and
    // its SIGTERM, or a single slow renewal would kill it.
    if margin * 2 > args.ttl {
        bail!(
            "--kill-grace {grace:?} is too long for --ttl {:?}: keep kill-grace + {slack:?} under half the ttl",
            args.ttl
        );
    }
    let Some((program, program_args)) = args.command.split_first() else {
        bail!("no command given: tenure run --lock NAME -- CMD ARGS...");
    };
    let client = args.conn.client()?;
    // No node listening at all is a mistake to report now, not a lock to
    // wait for (once running, the runner rides out a cluster restart).
    if let Err(e @ tenure_client::Error::Unreachable { .. }) =
        args.conn.one_shot_client()?.read(&args.lock).await
    {
        return Err(e).with_context(|| format!("could not take {}", args.lock));
    }
    let mut lock = Lock::new(&client, &args.lock).ttl(args.ttl).margin(margin);
    if let Some(h) = &args.holder {
        lock = lock.holder(h);
    }
    let acquiring = async {
        match args.wait {
            Some(w) => lock.acquire_within(w).await,
            None => lock.acquire().await,
        }
    };
    let lease = tokio::select! {
        lease = acquiring => lease.with_context(|| format!("could not take {}", args.lock))?,
        () = crate::signal::stop_requested() => {
            eprintln!("tenure run: stopped while waiting for {}", args.lock);
            return Ok(ExitCode::from(130));
        }
    };
    if args.conn.json {
        eprintln!(
            "{}",
            serde_json::json!({
                "event": "holding", "name": lease.name(), "holder": lease.holder(),
                "token": lease.token(),
            })
        );
    } else {
        eprintln!(
            "tenure run: holding {} as {} with token {}",
            lease.name(),
            lease.holder(),
            lease.token()
        );
    }

    // Orphans of the command are re-parented here, so that none outlives
    // it (`reap.rs`).
    if let Err(e) = reap::become_subreaper() {
        eprintln!("tenure run: cannot adopt the command's orphans ({e}); only its process group is killed at its end");
    }
    // Spawned here, in the future `block_on` drives on the main thread:
    // the parent-death signal fires when the forking THREAD exits, and the
    // main thread lives exactly as long as this process.
    let first_deadline = lease.status().borrow().deadline;
    let deadline_file = deadline::DeadlineFile::create(first_deadline)
        .map_err(|e| eprintln!("tenure run: cannot keep TENURE_DEADLINE_FILE ({e})"))
        .ok();
    let mut command = tokio::process::Command::new(program);
    if let Some(file) = &deadline_file {
        command.env("TENURE_DEADLINE_FILE", file.path());
    }
    command
        .args(program_args)
        .env(
            "TENURE_DEADLINE",
            deadline::boottime_seconds(first_deadline),
        )
        .env("TENURE_TOKEN", lease.token().to_string())
        .env("TENURE_LOCK", lease.name())
        .env("TENURE_HOLDER", lease.holder())
        // Its own process group, so that one signal to the group reaches
        // the command's own children too (a shell script's, say).
        .process_group(0);
    die_with_parent(&mut command);
    // The watchdog starts before the command, primed with the deadline,
    // and the command tells it its group itself (`watchdog.rs`).
    let leftover = deadline_file.as_ref().map(deadline::DeadlineFile::dir);
    let mut watchdog = watchdog::Watchdog::spawn(first_deadline + grace, leftover)?;
    if let Some(fd) = watchdog.pipe_fd() {
        // SAFETY: the closure runs in the child between fork and exec, and
        // makes only async-signal-safe calls (getpid, write) on a copied
        // integer; the descriptor is the child's inherited copy of the
        // pipe, closed at exec.
        unsafe {
            command.pre_exec(move || watchdog::announce_group(fd));
        }
    }
    // Listen for Ctrl-Z and for orphans' exits before the command exists:
    // a Ctrl-Z that came before would stop the runner alone.
    use tokio::signal::unix::SignalKind;
    let signals = Signals {
        // Ctrl-Z: the command is stopped with the runner.
        suspend: listen(SignalKind::from_raw(libc::SIGTSTP)),
        // A child exited: the command, the watchdog, or an adopted orphan.
        orphans_exit: listen(SignalKind::child()),
    };
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            let _ = tokio::task::spawn_blocking(move || watchdog.stand_down()).await;
            let _ = lease.release().await;
            bail!("could not start {program:?}: {e}");
        }
    };
    let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) else {
        bail!("the command exited before its pid could be read");
    };
    let supervised = supervise(
        &lease,
        &mut child,
        pid,
        grace,
        &mut watchdog,
        deadline_file.as_ref(),
        signals,
    )
    .await;
    if supervised.is_err() {
        // Supervision itself failed: the command may still run. It goes
        // before the lease does, as when it exits.
        signal_group(pid, libc::SIGKILL);
        let _ = child.wait().await;
    }
    // The command has exited. Kill what is left of its group at once,
    // while members that remain keep the group's id in use, and stand the
    // watchdog down (it only ever covers the group). Then the processes
    // that left the group: they are this process's children by now, and
    // are killed by pid, which cannot be reused before they are reaped.
    signal_group(pid, libc::SIGKILL);
    let keep = std::collections::BTreeSet::from([i32::try_from(watchdog.pid()).unwrap_or(0)]);
    tokio::task::spawn_blocking(move || watchdog.stand_down())
        .await
        .context("stopping the watchdog")?;
    let leftovers = tokio::task::spawn_blocking(move || reap::kill_leftovers(&keep))
        .await
        .context("killing what the command left behind")?;
    if leftovers > 0 {
        eprintln!("tenure run: killed {leftovers} process(es) the command left running");
    }
    // The command is gone: the lease is no longer needed.
    if let Err(e) = lease.release().await {
        eprintln!("tenure run: could not release {}: {e}", args.lock);
    }
    Ok(exit_code(supervised?))
}

/// Wait for the child, stopping it in time if the lease cannot be renewed.
async fn supervise(
    lease: &Lease,
    child: &mut tokio::process::Child,
    pid: i32,
    grace: Duration,
    watchdog: &mut watchdog::Watchdog,
    deadline_file: Option<&deadline::DeadlineFile>,
    signals: Signals,
) -> Result<std::process::ExitStatus> {
    let mut status = lease.status();
    let mut term_at: Option<Instant> = None;
    let mut kill_sent = false;
    let mut stop = std::pin::pin!(crate::signal::stop_requested());
    let mut stop_seen = false;
    let mut status_open = true;
    let Signals {
        mut suspend,
        mut orphans_exit,
    } = signals;
    let not_reaped_here =
        std::collections::BTreeSet::from([pid, i32::try_from(watchdog.pid()).unwrap_or(0)]);
    let mut told_watchdog: Option<Stamp> = None;
    let clock = lease.clock();
    loop {
        let (deadline, lost) = {
            let s = status.borrow_and_update();
            (s.deadline, s.lost.clone())
        };
        if told_watchdog != Some(deadline) {
            watchdog.kill_at(deadline + grace);
            if let Some(file) = deadline_file {
                if let Err(e) = file.write(deadline) {
                    eprintln!("tenure run: cannot update TENURE_DEADLINE_FILE ({e})");
                }
            }
            told_watchdog = Some(deadline);
        }
        // A renewal refused (the grant is gone) ends the run now rather
        // than at the deadline; a release by this process cannot happen
        // while the child runs.
        if let Some(LostReason::Refused(state)) = &lost {
            if term_at.is_none() {
                eprintln!(
                    "tenure run: lost {}: {state}; stopping the command",
                    lease.name()
                );
                signal_group(pid, libc::SIGTERM);
                term_at = Some(Instant::now());
            }
        }
        // Never later than `grace` after the deadline's SIGTERM time, which
        // is `KILL_SLACK` before the end of the usable ttl. (The deadline is
        // on the lease's clock, which counts a suspend; tokio's timers do
        // not, so the deadline is waited for on the lease's clock.)
        let deadline_sigkill_at = clock.to_tokio(deadline + grace);
        let sigkill_at = term_at.map_or(deadline_sigkill_at, |t| {
            (t + grace).min(deadline_sigkill_at)
        });
        tokio::select! {
            exited = child.wait() => return exited.context("waiting for the command"),
            () = clock.sleep_until(deadline), if term_at.is_none() => {
                eprintln!(
                    "tenure run: could not renew {} in time; sending SIGTERM to the command",
                    lease.name()
                );
                signal_group(pid, libc::SIGTERM);
                term_at = Some(Instant::now());
            }
            () = tokio::time::sleep_until(sigkill_at), if term_at.is_some() && !kill_sent => {
                eprintln!("tenure run: the command outlived its grace period; SIGKILL");
                signal_group(pid, libc::SIGKILL);
                kill_sent = true;
            }
            changed = status.changed(), if lost.is_none() && status_open => {
                // The lease's sender lives as long as `lease`, which
                // outlives this loop; if it were gone, the last deadline
                // still stands, and this branch must not spin.
                status_open = changed.is_ok();
            }
            Some(()) = recv_opt(&mut orphans_exit) => {
                // An orphan of the command, adopted here, has exited: reap
                // it now, or a long run collects zombies. (The command is
                // tokio's to reap, the watchdog ours at the end.)
                reap::reap_exited(&not_reaped_here);
            }
            Some(()) = recv_opt(&mut suspend) => {
                // Ctrl-Z reached the runner's group, not the command's:
                // stop the command first, then this process, as the
                // terminal asked. The watchdog stays up and kills the
                // command at the deadline should the runner stay stopped.
                signal_group(pid, libc::SIGSTOP);
                // SAFETY: raise has no memory-safety preconditions.
                unsafe { libc::raise(libc::SIGSTOP) };
                // Continued (fg, bg, SIGCONT): the command goes on only if
                // the lease may still be ours.
                let s = status.borrow();
                let valid = s.lost.is_none() && clock.now() < s.deadline;
                if !valid {
                    eprintln!(
                        "tenure run: continued after {} could have expired; killing the command",
                        lease.name()
                    );
                    signal_group(pid, libc::SIGKILL);
                    kill_sent = true;
                }
                signal_group(pid, libc::SIGCONT);
            }
            () = &mut stop, if !stop_seen => {
                // Ctrl-C or SIGTERM to `tenure run`: pass it on, and
                // SIGKILL the command if it is still there after the grace
                // (or at the deadline's, if that comes first).
                stop_seen = true;
                signal_group(pid, libc::SIGTERM);
                if term_at.is_none() {
                    term_at = Some(Instant::now());
                }
            }
        }
    }
}

/// The signals the supervisor acts on, registered before the command
/// starts.
struct Signals {
    suspend: Option<tokio::signal::unix::Signal>,
    orphans_exit: Option<tokio::signal::unix::Signal>,
}

/// A listener for `kind`, or `None` if it cannot be caught. Without the
/// SIGTSTP one, Ctrl-Z stops the runner alone, and the watchdog still ends
/// the command at the deadline; without the SIGCHLD one, orphans are
/// reaped only at the end.
fn listen(kind: tokio::signal::unix::SignalKind) -> Option<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(kind).ok()
}

/// The next delivery of `signal`, or never when there is none.
async fn recv_opt(signal: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match signal {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

/// Ask the kernel to SIGKILL the child when this process dies, however it
/// dies (even by SIGKILL), so that no orphan goes on working without the
/// lease.
fn die_with_parent(command: &mut tokio::process::Command) {
    let parent = libc::pid_t::try_from(std::process::id()).unwrap_or(0);
    // SAFETY: the closure runs in the child between fork and exec, where
    // only async-signal-safe calls are allowed. It calls `prctl` and
    // `getppid`, both plain system calls, and touches only a copied
    // integer: no allocation, no locks, no shared memory.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            // If the parent died before the prctl, the signal will never
            // come (we were re-parented already): do not start at all.
            if libc::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// Send `signal` to the child's process group (its pid: it leads it).
pub(crate) fn signal_group(pgid: i32, signal: libc::c_int) {
    // SAFETY: `kill` has no memory-safety preconditions. The group is only
    // signalled before the child was reaped, so its id cannot have been
    // reused by an unrelated process group.
    let r = unsafe { libc::kill(-pgid, signal) };
    if r == -1 {
        // ESRCH: the group is already gone, which is what we wanted.
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ESRCH) {
            eprintln!("tenure run: could not signal the command: {e}");
        }
    }
}

/// The child's exit code, or 128 + the signal that ended it (as shells do).
fn exit_code(status: std::process::ExitStatus) -> ExitCode {
    if let Some(code) = status.code() {
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    let signal = status.signal().unwrap_or(0);
    ExitCode::from(u8::try_from(128 + signal).unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_grace_fits_every_ttl_the_server_accepts() {
        for ms in [10, 11, 99, 250, 1_000, 2_000, 5_000, 86_400_000] {
            let ttl = Duration::from_millis(ms);
            let (grace, slack) = grace_and_slack(ttl, None);
            assert!(
                (grace + slack) * 2 <= ttl,
                "ttl {ttl:?}: {grace:?} + {slack:?}"
            );
            assert!(grace > Duration::ZERO && slack > Duration::ZERO);
        }
        let ten_s = Duration::from_secs(10);
        assert_eq!(
            grace_and_slack(ten_s, None),
            (Duration::from_secs(1), Duration::from_millis(100))
        );
        assert_eq!(
            grace_and_slack(Duration::from_secs(2), None),
            (Duration::from_millis(400), Duration::from_millis(100))
        );
        // A grace the operator chose is kept as given.
        let chosen = Some(Duration::from_millis(300));
        assert_eq!(grace_and_slack(ten_s, chosen).0, Duration::from_millis(300));
    }
}
