//! The command's own view of its deadline: when `tenure run` will send it
//! SIGTERM unless the lease is renewed first, as seconds of
//! `CLOCK_BOOTTIME`, the clock of `/proc/uptime` (first field) and of
//! Python's `time.clock_gettime(time.CLOCK_BOOTTIME)`. `TENURE_DEADLINE`
//! holds it as of the start; renewals move it, and the file named by
//! `TENURE_DEADLINE_FILE` always holds the current one (replaced
//! atomically at each change).

use super::watchdog::boottime_at;
use std::path::{Path, PathBuf};
use tenure_client::Stamp;

/// `at` (on the lease's clock) as seconds of `CLOCK_BOOTTIME`.
pub fn boottime_seconds(at: Stamp) -> String {
    let nanos = boottime_at(at);
    format!("{}.{:09}", nanos / 1_000_000_000, nanos % 1_000_000_000)
}

/// The file the current deadline is kept in, in a directory of its own
/// (fresh, unguessable and private to this user, so nobody else can plant
/// a file or link there); removed with it.
pub struct DeadlineFile {
    dir: tempfile::TempDir,
    path: PathBuf,
}

impl DeadlineFile {
    pub fn create(at: Stamp) -> std::io::Result<DeadlineFile> {
        let dir = tempfile::Builder::new().prefix("tenure-run-").tempdir()?;
        let file = DeadlineFile {
            path: dir.path().join("deadline"),
            dir,
        };
        file.write(at)?;
        Ok(file)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory it is kept in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Replace the deadline: readers see the old one or the new one whole.
    pub fn write(&self, at: Stamp) -> std::io::Result<()> {
        let next = self.dir.path().join("deadline.next");
        std::fs::write(&next, format!("{}\n", boottime_seconds(at)))?;
        std::fs::rename(&next, &self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tenure_client::{BootTime, ClockSource};

    fn now() -> Stamp {
        BootTime.now()
    }

    fn seconds(s: &str) -> f64 {
        s.trim().parse().expect("seconds")
    }

    #[test]
    fn a_deadline_reads_as_boottime_seconds_and_follows_each_write() {
        let start = seconds(&boottime_seconds(now()));
        let later = seconds(&boottime_seconds(now() + Duration::from_secs(5)));
        assert!((later - start - 5.0).abs() < 0.05, "{start} {later}");
        let file = DeadlineFile::create(now() + Duration::from_secs(1)).unwrap();
        let first = seconds(&std::fs::read_to_string(file.path()).unwrap());
        file.write(now() + Duration::from_secs(3)).unwrap();
        let second = seconds(&std::fs::read_to_string(file.path()).unwrap());
        assert!((second - first - 2.0).abs() < 0.05, "{first} {second}");
        let dir = file.dir.path().to_path_buf();
        drop(file);
        assert!(!dir.exists());
    }
}
