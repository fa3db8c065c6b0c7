//! Persisted operations per second, group commit against one fsync per
//! operation, on a real disk; the disk's raw fsync latency; and, with
//! `--rss`, the resident memory of a store holding a million idle names.
//!
//!     cargo bench -p tenure-storage                       # throughput, fsync
//!     cargo bench -p tenure-storage -- --rss              # and memory
//!     cargo bench -p tenure-storage -- --seconds 5 --dir /var/tmp/x
//!
//! Files go under the target directory by default (`target/tmp`), which
//! is on the real disk, not tmpfs: `--dir` must be too, or the fsyncs cost
//! nothing and the numbers mean nothing.

use redb::backends::FileBackend;
use redb::StorageBackend;
use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};
use tenure_core::acceptor::Acceptor;
use tenure_core::lease::{Grant, WriteLog};
use tenure_core::{
    Ballot, Bugs, Durable, HolderId, LeaseName, LeaseValue, LockDelay, Record, Token, Ttl, Write,
    WriteId,
};
use tenure_storage::{collect, Committer, StoreAt, StoreOptions};

const WRITER_COUNTS: [usize; 4] = [1, 16, 64, 256];
const IDLE_NAMES: u64 = 1_000_000;
/// Bounds every wait for a callback, so a broken run stops instead of hanging.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

struct Args {
    seconds: f64,
    dir: PathBuf,
    rss: bool,
    rss_child: Option<(PathBuf, String)>,
}

fn parse_args() -> Args {
    let mut args = Args {
        seconds: 2.0,
        dir: PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("storage-bench"),
        rss: false,
        rss_child: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--seconds" => args.seconds = it.next().and_then(|s| s.parse().ok()).unwrap_or(2.0),
            "--dir" => args.dir = it.next().map(PathBuf::from).unwrap_or(args.dir),
            "--rss" => args.rss = true,
            "--rss-child" => {
                args.rss_child = it.next().map(PathBuf::from).zip(it.next());
            }
            // `cargo bench` passes --bench; filters and the rest are ignored.
            _ => {}
        }
    }
    args
}

fn main() {
    let args = parse_args();
    if let Some((dir, holding)) = args.rss_child {
        rss_child(&dir, &holding);
        return;
    }
    std::fs::create_dir_all(&args.dir).expect("create the bench directory");
    println!("bench directory: {}", args.dir.display());
    println!(
        "cpus: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    raw_fsync(&args.dir, args.seconds);
    throughput(&args.dir, args.seconds);
    if args.rss {
        rss(&args.dir);
    } else {
        println!("\n(memory for {IDLE_NAMES} idle names: run with -- --rss)");
    }
}

/// The disk's own cost: overwrite 4 KiB of a preallocated file and
/// fdatasync, the floor under every durable commit.
fn raw_fsync(dir: &Path, seconds: f64) {
    const BLOCK: usize = 4096;
    const BLOCKS: u64 = 1024;
    let path = dir.join("raw-fsync.bin");
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&path)
        .expect("create the fsync file");
    // Real blocks, not a sparse file, so each sync writes data only.
    let block = vec![0xA5u8; BLOCK];
    for _ in 0..BLOCKS {
        file.write_all(&block).expect("preallocate");
    }
    file.sync_all().expect("sync");

    let mut samples = Vec::new();
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut i = 0u64;
    while Instant::now() < deadline && samples.len() < 100_000 {
        let started = Instant::now();
        file.seek(SeekFrom::Start((i % BLOCKS) * BLOCK as u64))
            .expect("seek");
        file.write_all(&block).expect("write");
        file.sync_data().expect("fdatasync");
        samples.push(started.elapsed());
        i += 1;
    }
    drop(file);
    let _ = std::fs::remove_file(&path);
    samples.sort();
    println!(
        "\n## raw fsync: write 4 KiB + fdatasync, {} samples",
        samples.len()
    );
    println!(
        "p50 {:.3} ms, p99 {:.3} ms, {:.0} fsyncs/s",
        ms(percentile(&samples, 0.50)),
        ms(percentile(&samples, 0.99)),
        samples.len() as f64 / seconds
    );
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Writers submit to the Committer and wait for their callback.
    Group,
    /// Writers take a mutex and persist their one write: one fsync each.
    PerOp,
}

/// A file backend that counts and times its fsyncs.
#[derive(Debug)]
struct TimedFile {
    file: FileBackend,
    syncs: Arc<AtomicU64>,
    sync_micros: Arc<AtomicU64>,
}

impl StorageBackend for TimedFile {
    fn len(&self) -> std::io::Result<u64> {
        self.file.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        self.file.read(offset, out)
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.file.set_len(len)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        let started = Instant::now();
        let result = self.file.sync_data();
        self.sync_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        self.syncs.fetch_add(1, Ordering::Relaxed);
        result
    }
    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.file.write(offset, data)
    }
    fn close(&self) -> std::io::Result<()> {
        self.file.close()
    }
}

struct Run {
    ops: u64,
    syncs: u64,
    sync_mean: Duration,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
}

fn throughput(dir: &Path, seconds: f64) {
    println!("\n## persisted single-write operations per second ({seconds} s per cell)");
    println!(
        "| writers | group commit ops/s | ops per fsync | fsync mean ms | p50 / p99 ms \
         | one fsync per op ops/s | fsync mean ms | p50 / p99 ms | ratio |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for writers in WRITER_COUNTS {
        let group = run(dir, Mode::Group, writers, seconds);
        let per_op = run(dir, Mode::PerOp, writers, seconds);
        let rate = |r: &Run| r.ops as f64 / r.elapsed.as_secs_f64();
        println!(
            "| {writers} | {:.0} | {:.1} | {:.2} | {:.2} / {:.2} | {:.0} | {:.2} | {:.2} / {:.2} | {:.1}× |",
            rate(&group),
            group.ops as f64 / group.syncs.max(1) as f64,
            ms(group.sync_mean),
            ms(group.p50),
            ms(group.p99),
            rate(&per_op),
            ms(per_op.sync_mean),
            ms(per_op.p50),
            ms(per_op.p99),
            rate(&group) / rate(&per_op),
        );
    }
}

fn run(dir: &Path, mode: Mode, writers: usize, seconds: f64) -> Run {
    let store_dir = dir.join(format!(
        "store-{}-{writers}",
        if mode == Mode::Group {
            "group"
        } else {
            "perop"
        }
    ));
    let _ = std::fs::remove_dir_all(&store_dir);
    std::fs::create_dir_all(&store_dir).expect("create the store directory");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(store_dir.join(tenure_storage::FILE_NAME))
        .expect("create the store file");
    let syncs = Arc::new(AtomicU64::new(0));
    let sync_micros = Arc::new(AtomicU64::new(0));
    let backend = TimedFile {
        file: FileBackend::new(file).expect("a file backend"),
        syncs: syncs.clone(),
        sync_micros: sync_micros.clone(),
    };
    let (store, _) = StoreOptions::default()
        .open(StoreAt::backend(backend), collect)
        .expect("open the bench store");
    let (syncs_before, micros_before) = (
        syncs.load(Ordering::Relaxed),
        sync_micros.load(Ordering::Relaxed),
    );
    let ids = Mutex::new(0u64);
    let stop = AtomicBool::new(false);
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);

    // The store goes to whichever side drives it.
    let (committer, store) = match mode {
        Mode::Group => (Some(Committer::spawn(store, 1024)), None),
        Mode::PerOp => (None, Some(Mutex::new(store))),
    };

    let started = Instant::now();
    let latencies: Vec<Vec<Duration>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..writers)
            .map(|writer| {
                let (committer, store, ids, stop) = (&committer, &store, &ids, &stop);
                scope.spawn(move || {
                    let mut samples = Vec::new();
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        if Instant::now() >= deadline {
                            stop.store(true, Ordering::Relaxed);
                            break;
                        }
                        // Ids rise in the order writes reach the store, as
                        // from a node: each is taken where it is handed on.
                        let write = |id: u64| Write {
                            id: WriteId(id),
                            record: Record::Register {
                                name: bench_name(writer as u64, n % 64),
                                state: idle_state(id),
                            },
                        };
                        let op_started = Instant::now();
                        match (committer, store) {
                            (Some(committer), _) => {
                                let (tx, rx) = mpsc::sync_channel(1);
                                {
                                    let mut next = ids.lock().unwrap_or_else(|p| p.into_inner());
                                    *next += 1;
                                    committer.submit(
                                        vec![write(*next)],
                                        Box::new(move |r| {
                                            let _ = tx.send(r);
                                        }),
                                    );
                                }
                                rx.recv_timeout(ANSWER_TIMEOUT)
                                    .expect("an answer")
                                    .expect("persisted");
                            }
                            (None, Some(store)) => {
                                let mut store = store.lock().unwrap_or_else(|p| p.into_inner());
                                let mut next = ids.lock().unwrap_or_else(|p| p.into_inner());
                                *next += 1;
                                store.persist(&[write(*next)]).expect("persisted");
                            }
                            (None, None) => unreachable!("one side drives the store"),
                        }
                        n += 1;
                        samples.push(op_started.elapsed());
                    }
                    samples
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("writer"))
            .collect()
    });
    let elapsed = started.elapsed();
    let run_syncs = syncs.load(Ordering::Relaxed) - syncs_before;
    let run_micros = sync_micros.load(Ordering::Relaxed) - micros_before;
    if let Some(committer) = committer {
        committer.shutdown();
    }
    drop(store);
    let _ = std::fs::remove_dir_all(&store_dir);

    let mut all: Vec<Duration> = latencies.into_iter().flatten().collect();
    all.sort();
    Run {
        ops: all.len() as u64,
        syncs: run_syncs,
        sync_mean: Duration::from_micros(run_micros / run_syncs.max(1)),
        elapsed,
        p50: percentile(&all, 0.50),
        p99: percentile(&all, 0.99),
    }
}

fn bench_name(writer: u64, n: u64) -> LeaseName {
    LeaseName::new(&format!("bench/w{writer}/n{n}")).expect("a valid name")
}

/// What an idle name keeps: promised and accepted by the last round, its
/// last grant expired, a few writes in its log.
fn idle_state(seed: u64) -> Durable {
    let ballot = Ballot {
        counter: 1000 + seed % 50_000,
        node: (seed % 5) as u16 + 1,
        incarnation: 3,
    };
    let mut writes = WriteLog::default();
    for back in (0..4).rev() {
        writes = writes.after(Ballot {
            counter: ballot.counter.saturating_sub(back),
            ..ballot
        });
    }
    Durable {
        promised: ballot.successor(),
        accepted: Some((
            ballot,
            LeaseValue {
                token: Token(seed % 10_000 + 1),
                grant: Some(Grant {
                    holder: HolderId::new(&format!("host-{}.example:4{}", seed % 97, seed % 1000))
                        .expect("a valid holder"),
                    ttl: Ttl::from_millis(15_000).expect("a valid ttl"),
                    lock_delay: LockDelay::NONE,
                    waiter: None,
                    expired: false,
                }),
                waiters: Default::default(),
                writes,
            },
        )),
    }
}

/// Builds a store of a million idle names, then opens it in a fresh
/// process (so nothing the build allocated is counted) and reports that
/// process's memory.
fn rss(dir: &Path) {
    let store_dir = dir.join("store-idle-1m");
    let _ = std::fs::remove_dir_all(&store_dir);
    let started = Instant::now();
    {
        let (mut store, _) = StoreOptions::default()
            .open(StoreAt::dir(&store_dir), collect)
            .expect("open");
        const BATCH: u64 = 10_000;
        let mut id = 0;
        for chunk in 0..IDLE_NAMES / BATCH {
            let batch: Vec<Write> = (0..BATCH)
                .map(|i| {
                    id += 1;
                    let n = chunk * BATCH + i;
                    let name = LeaseName::new(&format!(
                        "svc-{:04}/shard-{:03}/leader",
                        n / 1000,
                        n % 1000
                    ))
                    .expect("a valid name");
                    Write {
                        id: WriteId(id),
                        record: Record::Register {
                            name,
                            state: idle_state(n),
                        },
                    }
                })
                .collect();
            store.persist(&batch).expect("persist");
        }
    }
    let built = started.elapsed();
    let file_bytes = std::fs::metadata(store_dir.join(tenure_storage::FILE_NAME))
        .map(|m| m.len())
        .unwrap_or(0);
    let me = std::env::current_exe().expect("own path");
    // Each in a fresh process, so nothing the build or another part
    // allocated is counted.
    let outputs: Vec<_> = ["acceptor", "store", "records"]
        .into_iter()
        .map(|holding| {
            Command::new(&me)
                .arg("--rss-child")
                .arg(&store_dir)
                .arg(holding)
                .output()
                .expect("run the measuring child")
        })
        .collect();
    println!("\n## {IDLE_NAMES} idle names");
    let sample_name = "svc-0123/shard-456/leader";
    let payload = postcard::to_stdvec(&idle_state(123_456)).map_or(0, |v| v.len());
    // Value = version byte + payload + CRC32C.
    println!(
        "one record: key {} bytes, value {} bytes",
        sample_name.len(),
        1 + payload + 4
    );
    println!(
        "built in {:.1} s; file {:.1} MB = {:.0} bytes per name on disk",
        built.as_secs_f64(),
        file_bytes as f64 / 1e6,
        file_bytes as f64 / IDLE_NAMES as f64
    );
    for output in outputs {
        print!("{}", String::from_utf8_lossy(&output.stdout));
        eprint!("{}", String::from_utf8_lossy(&output.stderr));
    }
    if std::env::var("BENCH_KEEP").is_err() {
        let _ = std::fs::remove_dir_all(&store_dir);
    }
}

/// Open the store as a node does and report the resident memory it costs:
/// `acceptor` streams the records into the core's acceptor (what a node
/// holds), `store` reads, checks and drops them (the store alone),
/// `records` collects them as `(LeaseName, Durable)` values.
fn rss_child(store_dir: &Path, holding: &str) {
    let before = status_kib("VmRSS");
    let started = Instant::now();
    let options = StoreOptions {
        cache_size_bytes: std::env::var("BENCH_CACHE_MIB")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .map_or(tenure_storage::DEFAULT_CACHE_SIZE_BYTES, |m| m << 20),
        verify_pages_on_open: std::env::var("BENCH_NO_VERIFY").is_err(),
        ..StoreOptions::default()
    };
    let (store, held) = options
        .open(StoreAt::dir(store_dir), |boot, records| match holding {
            "acceptor" => {
                let acceptor = Acceptor::recover(
                    boot.horizon,
                    boot.token_floor,
                    records,
                    tenure_core::Instant::ZERO,
                    Bugs::NONE,
                );
                (acceptor.len(), Some(acceptor), Vec::new())
            }
            "records" => {
                let records: Vec<_> = records.collect();
                (records.len(), None, records)
            }
            _ => (records.count(), None, Vec::new()),
        })
        .expect("open");
    let opened = started.elapsed();
    let after = status_kib("VmRSS");
    let peak = status_kib("VmHWM");
    let what = match holding {
        "acceptor" => "store + acceptor built from it (what a node holds)",
        "records" => "store + records as a Vec<(LeaseName, Durable)>",
        _ => "store alone (records read, checked, dropped)",
    };
    println!(
        "{what}: {:.0} MB resident after open, peak {:.0} MB ({:.0} MB before); \
         {} records in {:.2} s",
        mb(after),
        mb(peak),
        mb(before),
        held.0,
        opened.as_secs_f64()
    );
    drop(held);
    drop(store);
}

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| {
            line.strip_prefix(field)?
                .trim_start_matches(':')
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn mb(kib: u64) -> f64 {
    kib as f64 * 1024.0 / 1e6
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}
