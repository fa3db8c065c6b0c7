//! Nothing of the command outlives it. The runner is a child subreaper
//! (`PR_SET_CHILD_SUBREAPER`): every process the command leaves behind,
//! even one that started a session of its own to leave the command's
//! process group, is re-parented to the runner when its parent exits. So
//! once the command has exited, the runner kills its group and then every
//! child of its own (but the watchdog) until none is left, reaping each,
//! and only then releases the lease.

use std::collections::BTreeSet;

/// Rounds of "kill every child, reap it" before giving up: each round may
/// re-parent the grandchildren of the last.
const MAX_ROUNDS: usize = 64;

/// Adopt the orphans of this process's descendants.
pub fn become_subreaper() -> std::io::Result<()> {
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes one integer argument
    // and touches no memory of ours.
    let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if r == -1 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Kill and reap what is left of the command: every child of this process
/// but `keep` (its group was signalled already). Returns how many were
/// killed. Blocking: call it off the async runtime.
pub fn kill_leftovers(keep: &BTreeSet<i32>) -> usize {
    let mut killed = 0;
    for _ in 0..MAX_ROUNDS {
        let children: Vec<i32> = children()
            .into_iter()
            .filter(|pid| !keep.contains(pid))
            .collect();
        if children.is_empty() {
            break;
        }
        for pid in children {
            // SAFETY: kill and waitpid have no memory-safety preconditions
            // (waitpid's status pointer may be null). `pid` is our own
            // child, not yet reaped, so its id cannot have been reused.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
            killed += 1;
        }
    }
    killed
}

/// Reap every child that has exited, but those in `not_here`. Never
/// blocks.
pub fn reap_exited(not_here: &BTreeSet<i32>) {
    for pid in children() {
        if !not_here.contains(&pid) {
            // SAFETY: waitpid has no memory-safety preconditions (a null
            // status pointer is allowed); WNOHANG makes it return at once
            // for a child still running.
            unsafe {
                libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG);
            }
        }
    }
}

/// This process's children, zombies included, from every thread's list.
fn children() -> BTreeSet<i32> {
    let mut pids = BTreeSet::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return pids;
    };
    for task in tasks.flatten() {
        if let Ok(list) = std::fs::read_to_string(task.path().join("children")) {
            pids.extend(
                list.split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            );
        }
    }
    pids
}
