//! An in-memory disk that tests and the simulator can crash, fail and slow.
//!
//! [`SimDisk`] is the disk; [`SimDisk::backend`] hands out the redb
//! [`StorageBackend`] a [`Store`](crate::Store) runs on. The disk keeps two
//! images: what reads see, and what would survive a power cut (the state as
//! of the last successful `sync_data`). Faults:
//!
//! - [`SimDisk::crash`]: power cut. Everything written since the last
//!   successful sync is lost, and every backend handed out before is dead,
//!   as its process would be. [`SimDisk::crash_torn`] keeps a seeded random
//!   subset of the unsynced 512-byte sectors instead, as a real disk might.
//! - [`SimDisk::die_after`]: the process dies after `n` more mutating calls
//!   (`write`, `set_len`, `sync_data`); every call after fails. Stepping `n`
//!   over a workload crashes it at every I/O point in turn.
//! - [`SimDisk::fail_next_sync`]: the next `sync_data` fails, and the writes
//!   it should have made durable never will be, though reads still see them.
//!   That is what Linux does after a failed fsync (the pages are marked
//!   clean), and why a failed fsync must be fail-stop.
//! - [`SimDisk::set_sync_hook`]: called at every sync, outside the disk's
//!   lock: a place to count, to block, or to add latency.

use redb::StorageBackend;
use std::fmt;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

/// Sector size for torn crashes: disks write sectors atomically, nothing larger.
const SECTOR_BYTES: usize = 512;

/// Counts of what the disk was asked to do, across crashes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskStats {
    pub writes: u64,
    pub set_lens: u64,
    /// Syncs attempted, failed ones included.
    pub syncs: u64,
    pub failed_syncs: u64,
    pub bytes_written: u64,
}

impl DiskStats {
    /// Every call that may change the disk: the points a crash can fall between.
    pub fn io_calls(&self) -> u64 {
        self.writes + self.set_lens + self.syncs
    }
}

type SyncHook = Arc<dyn Fn(u64) + Send + Sync>;

/// An in-memory disk with a durable image. Clones share the disk.
#[derive(Clone, Default)]
pub struct SimDisk {
    disk: Arc<Mutex<Disk>>,
}

/// The redb backend of one process life on a [`SimDisk`].
pub struct SimBackend {
    disk: Arc<Mutex<Disk>>,
    life: u64,
}

#[derive(Default)]
struct Disk {
    /// What survives a power cut.
    durable: Vec<u8>,
    /// What reads see.
    current: Vec<u8>,
    /// Mutations since the last sync, oldest first: what a sync makes durable.
    unsynced: Vec<Mutation>,
    /// Bumped by every crash; backends of earlier lives are dead.
    life: u64,
    /// Mutating calls still allowed before the process dies.
    budget: Option<u64>,
    dead: bool,
    fail_syncs: u32,
    stats: DiskStats,
    sync_hook: Option<SyncHook>,
}

#[derive(Clone)]
enum Mutation {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

impl SimDisk {
    /// An empty disk.
    pub fn new() -> SimDisk {
        SimDisk::default()
    }

    /// A backend for the current life of the disk, to open a store on.
    pub fn backend(&self) -> SimBackend {
        SimBackend {
            disk: self.disk.clone(),
            life: self.lock().life,
        }
    }

    /// An independent copy of the disk as it is now (both images, no
    /// faults armed, counters reset), to replay one history many ways.
    pub fn fork(&self) -> SimDisk {
        let disk = self.lock();
        let copy = Disk {
            durable: disk.durable.clone(),
            current: disk.current.clone(),
            unsynced: disk.unsynced.clone(),
            ..Disk::default()
        };
        SimDisk {
            disk: Arc::new(Mutex::new(copy)),
        }
    }

    /// Power cut: only what was synced survives. Ends the current life.
    pub fn crash(&self) {
        let mut disk = self.lock();
        disk.current = disk.durable.clone();
        disk.restart();
    }

    /// Power cut in which each unsynced sector independently reached the
    /// platter or not, chosen by `seed`. Ends the current life.
    pub fn crash_torn(&self, seed: u64) {
        let mut disk = self.lock();
        let mut rng = XorShift(seed | 1);
        let mut image = disk.durable.clone();
        for mutation in &disk.unsynced {
            match mutation {
                Mutation::SetLen(len) => {
                    if rng.coin() {
                        image.resize(to_usize(*len), 0);
                    }
                }
                Mutation::Write { offset, data } => {
                    for (i, sector) in data.chunks(SECTOR_BYTES).enumerate() {
                        if rng.coin() {
                            apply_write(&mut image, to_usize(*offset) + i * SECTOR_BYTES, sector);
                        }
                    }
                }
            }
        }
        disk.durable = image.clone();
        disk.current = image;
        disk.restart();
    }

    /// The process dies after `io_calls` more mutating calls.
    pub fn die_after(&self, io_calls: u64) {
        self.lock().budget = Some(io_calls);
    }

    /// The next `sync_data` fails; what it should have made durable is lost
    /// to the disk, though reads still see it.
    pub fn fail_next_sync(&self) {
        self.lock().fail_syncs += 1;
    }

    /// Call `hook` with the sync's number (from 1) at every sync, before it
    /// completes and outside the disk's lock.
    pub fn set_sync_hook(&self, hook: impl Fn(u64) + Send + Sync + 'static) {
        self.lock().sync_hook = Some(Arc::new(hook));
    }

    pub fn clear_sync_hook(&self) {
        self.lock().sync_hook = None;
    }

    pub fn stats(&self) -> DiskStats {
        self.lock().stats
    }

    /// A copy of the durable image: what a file holding this disk's
    /// store would contain after the power went.
    pub fn durable_image(&self) -> Vec<u8> {
        self.lock().durable.clone()
    }

    /// The length of the durable image, in bytes.
    pub fn durable_len(&self) -> u64 {
        self.lock().durable.len() as u64
    }

    /// Offsets in the durable image where `needle` occurs.
    pub fn find(&self, needle: &[u8]) -> Vec<u64> {
        let disk = self.lock();
        if needle.is_empty() {
            return Vec::new();
        }
        disk.durable
            .windows(needle.len())
            .enumerate()
            .filter(|(_, w)| *w == needle)
            .map(|(i, _)| i as u64)
            .collect()
    }

    /// Bit rot: xor `mask` into the byte at `offset`, on the platter and in
    /// what reads see.
    pub fn corrupt(&self, offset: u64, mask: u8) {
        let mut guard = self.lock();
        let disk = &mut *guard;
        let at = to_usize(offset);
        for image in [&mut disk.durable, &mut disk.current] {
            if let Some(byte) = image.get_mut(at) {
                *byte ^= mask;
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Disk> {
        lock(&self.disk)
    }
}

impl fmt::Debug for SimDisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let disk = self.lock();
        f.debug_struct("SimDisk")
            .field("len", &disk.current.len())
            .field("unsynced", &disk.unsynced.len())
            .field("life", &disk.life)
            .field("stats", &disk.stats)
            .finish()
    }
}

impl Disk {
    fn restart(&mut self) {
        self.unsynced.clear();
        self.life += 1;
        self.budget = None;
        self.dead = false;
        self.fail_syncs = 0;
    }

    /// Whether a backend of `life` may act at all.
    fn check_alive(&self, life: u64) -> io::Result<()> {
        if life != self.life {
            return Err(io::Error::other(
                "sim disk: backend of a life ended by a crash",
            ));
        }
        if self.dead {
            return Err(io::Error::other("sim disk: the process has died"));
        }
        Ok(())
    }

    /// Spend one mutating call of the budget; the call that finds it empty dies.
    fn spend(&mut self, life: u64) -> io::Result<()> {
        self.check_alive(life)?;
        match &mut self.budget {
            Some(0) => {
                self.dead = true;
                Err(io::Error::other("sim disk: the process dies here"))
            }
            Some(n) => {
                *n -= 1;
                Ok(())
            }
            None => Ok(()),
        }
    }
}

impl SimBackend {
    fn lock(&self) -> MutexGuard<'_, Disk> {
        lock(&self.disk)
    }
}

impl fmt::Debug for SimBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimBackend")
            .field("life", &self.life)
            .finish()
    }
}

impl StorageBackend for SimBackend {
    fn len(&self) -> io::Result<u64> {
        let disk = self.lock();
        disk.check_alive(self.life)?;
        Ok(disk.current.len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        let disk = self.lock();
        disk.check_alive(self.life)?;
        let start = to_usize(offset);
        let bytes = start
            .checked_add(out.len())
            .and_then(|end| disk.current.get(start..end))
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end"))?;
        out.copy_from_slice(bytes);
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut disk = self.lock();
        disk.stats.set_lens += 1;
        disk.spend(self.life)?;
        disk.current.resize(to_usize(len), 0);
        disk.unsynced.push(Mutation::SetLen(len));
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let (number, hook) = {
            let mut disk = self.lock();
            disk.stats.syncs += 1;
            disk.spend(self.life)?;
            (disk.stats.syncs, disk.sync_hook.clone())
        };
        if let Some(hook) = hook {
            hook(number);
        }
        let mut disk = self.lock();
        // The process may have crashed while the hook ran.
        disk.check_alive(self.life)?;
        if disk.fail_syncs > 0 {
            disk.fail_syncs -= 1;
            disk.stats.failed_syncs += 1;
            disk.unsynced.clear();
            return Err(io::Error::other("sim disk: injected fsync failure (EIO)"));
        }
        let mut durable = std::mem::take(&mut disk.durable);
        for mutation in disk.unsynced.drain(..) {
            match mutation {
                Mutation::SetLen(len) => durable.resize(to_usize(len), 0),
                Mutation::Write { offset, data } => {
                    apply_write(&mut durable, to_usize(offset), &data)
                }
            }
        }
        disk.durable = durable;
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut disk = self.lock();
        disk.stats.writes += 1;
        disk.spend(self.life)?;
        disk.stats.bytes_written += data.len() as u64;
        apply_write(&mut disk.current, to_usize(offset), data);
        disk.unsynced.push(Mutation::Write {
            offset,
            data: data.to_vec(),
        });
        Ok(())
    }
}

fn apply_write(image: &mut Vec<u8>, offset: usize, data: &[u8]) {
    let end = offset + data.len();
    if image.len() < end {
        image.resize(end, 0);
    }
    image[offset..end].copy_from_slice(data);
}

/// The disk lives in memory, so its offsets fit in memory.
fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// A panic while holding the lock (a failed assertion in a hook) must not
/// hide the disk from the test that reports it.
fn lock(disk: &Mutex<Disk>) -> MutexGuard<'_, Disk> {
    disk.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A tiny deterministic generator: crash patterns replay from their seed.
struct XorShift(u64);

impl XorShift {
    fn coin(&mut self) -> bool {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 & 1 == 1
    }
}
