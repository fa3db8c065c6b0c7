//! `tenure`: run a node (`server`), a local 3-node cluster (`dev`),
//! measure one (`bench`), or simulate one under faults (`sim`); and use a
//! cluster (`lock`, `unlock`, `status`, `watch`, `elect`, `run`).

mod bench;
mod certs;
mod client_cmds;
mod dev;
mod elect;
mod join;
mod members;
mod run;
mod serve;
mod signal;
mod sim;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "tenure",
    version,
    about = "Leader election and distributed leases, agreed by Paxos."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a local 3-node cluster in this process (HTTP on P, P+1, P+2).
    Dev {
        /// Each node keeps its state in DIR/node-N.
        #[arg(long, value_name = "DIR", default_value = "./tenure-data")]
        data_dir: PathBuf,
        /// HTTP port of node 1; nodes 2 and 3 take the next two (0: the
        /// OS chooses each).
        #[arg(long, value_name = "P", default_value_t = 7400)]
        http_port: u16,
        /// Require the bearer tokens listed in FILE (one `TOKEN
        /// read|lock|admin PREFIX` a line; SIGHUP reads it again).
        #[arg(long, value_name = "FILE")]
        tokens: Option<PathBuf>,
        /// Serve the API over HTTPS, with certificates from the dev CA
        /// (DIR/tls/ca.pem is the CA clients trust).
        #[arg(long)]
        https: bool,
        #[command(flatten)]
        drift: serve::DriftArg,
    },
    /// Run one node of a cluster.
    Server(serve::ServerArgs),
    /// Make a cluster's CA and its members' certificates, for peer links
    /// in mutual TLS.
    Certs {
        #[command(subcommand)]
        what: certs::Certs,
    },
    /// Measure a running cluster's latencies.
    Bench {
        #[command(subcommand)]
        what: bench::Bench,
    },
    /// Run the deterministic simulator over many seeds, with faults.
    Sim(sim::SimArgs),
    /// Take a lease once and print its token (nothing renews it).
    Lock(client_cmds::LockArgs),
    /// Release a grant: the holder and the token it was granted with.
    Unlock(client_cmds::UnlockArgs),
    /// Who holds a lease; without a name, what each node reports.
    Status(client_cmds::StatusArgs),
    /// Print every change of a lease's state until Ctrl-C.
    Watch(client_cmds::WatchArgs),
    /// A lease's last changes (granted, renewed, released, expired,
    /// superseded), newest first, as one node learnt them.
    History(client_cmds::HistoryArgs),
    /// See or change the cluster's members: list, add, remove, replace.
    Members(members::MembersArgs),
    /// Campaign for leadership, print each change of leader, resign on Ctrl-C.
    Elect(elect::ElectArgs),
    /// Run a command only while holding a lease; stop it before the lease
    /// could expire.
    Run(run::RunArgs),
    /// The watchdog `tenure run` starts beside the command (internal).
    #[command(name = "run-watchdog", hide = true)]
    RunWatchdog {
        first_kill_at: u64,
        /// The deadline file's directory, removed if the runner dies.
        leftover: Option<std::path::PathBuf>,
    },
}

/// jemalloc rather than the system allocator. After a minute of cycles by
/// 256 clients on their own names, glibc's heap was fragmented enough that
/// every later workload ran a tenth slower (`malloc_consolidate` and
/// `_int_malloc` in the profile): try-lock on one name at 8 clients 230
/// and 238 grants/s, against 252 to 264 on a fresh node. With jemalloc the
/// same node gives 264, and no more memory (49 MiB per node with 100,000
/// idle leases, glibc 51). docs/operations.md, "Memory".
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    // Usage errors exit 2 with clap's message and usage, before this.
    let cli = Cli::parse();
    let json = cli.command.speaks_json();
    match run(cli) {
        Ok(code) => code,
        // Whoever read our output has gone (`tenure watch x | head -1`):
        // stop quietly, as a process killed by SIGPIPE would.
        Err(error) if is_broken_pipe(&error) => ExitCode::from(141),
        Err(error) => {
            // One line, outermost cause first: what failed, then why.
            // (The Debug form would print a backtrace at users.)
            if json {
                eprintln!("{}", serde_json::json!({ "error": format!("{error:#}") }));
            } else {
                eprintln!("tenure: {error:#}");
            }
            ExitCode::FAILURE
        }
    }
}

impl Command {
    /// Whether `--json` was asked for: errors are then JSON too.
    fn speaks_json(&self) -> bool {
        match self {
            Command::Lock(a) => a.conn.json,
            Command::Unlock(a) => a.conn.json,
            Command::Status(a) => a.conn.json,
            Command::Watch(a) => a.conn.json,
            Command::History(a) => a.conn.json,
            Command::Elect(a) => a.conn.json,
            Command::Members(a) => a.json(),
            Command::Run(a) => a.conn.json,
            _ => false,
        }
    }
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn run(cli: Cli) -> Result<ExitCode> {
    if let Command::RunWatchdog {
        first_kill_at,
        leftover,
    } = cli.command
    {
        // Tiny and single-threaded: no runtime, no logs.
        return Ok(run::watchdog::watch(first_kill_at, leftover.as_deref()));
    }
    if let Command::Certs { what } = cli.command {
        return certs::run(what).map(|()| ExitCode::SUCCESS);
    }
    if let Command::Sim(args) = cli.command {
        // Single-threaded and deterministic: no runtime, no logs.
        return sim::run_sim(args);
    }
    init_logging();
    if matches!(cli.command, Command::Server(_) | Command::Dev { .. }) {
        raise_open_file_limit();
    }
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Command::Server(serve::ServerArgs {
        threads: Some(n), ..
    }) = &cli.command
    {
        runtime.worker_threads(usize::from(*n));
    }
    let runtime = runtime.enable_all().build()?;
    let done = match cli.command {
        Command::Dev {
            data_dir,
            http_port,
            tokens,
            https,
            drift,
        } => runtime.block_on(dev::run(dev::DevArgs {
            data_dir,
            http_port,
            tokens,
            https,
            drift: drift.bound(),
        })),
        Command::Server(args) => runtime.block_on(serve::run(args)),
        Command::Bench { what } => runtime.block_on(bench::run(what)),
        Command::Sim(_) | Command::RunWatchdog { .. } | Command::Certs { .. } => {
            unreachable!("handled before the runtime starts")
        }
        Command::Lock(args) => runtime.block_on(client_cmds::lock(args)),
        Command::Unlock(args) => runtime.block_on(client_cmds::unlock(args)),
        Command::Status(args) => runtime.block_on(client_cmds::status(args)),
        Command::Watch(args) => runtime.block_on(client_cmds::watch(args)),
        Command::History(args) => runtime.block_on(client_cmds::history(args)),
        Command::Elect(args) => runtime.block_on(elect::elect(args)),
        Command::Members(args) => runtime.block_on(members::members(args)),
        // Exits with the command's status.
        Command::Run(args) => return runtime.block_on(run::run(args)),
    };
    done.map(|()| ExitCode::SUCCESS)
}

/// Raise this process's soft limit on open files to its hard limit, as Go
/// programs (etcd among them) do at start: a node holds a descriptor per
/// client connection (up to 1,024 by default) besides its peers and its
/// store, and the usual soft limit of 1,024 would refuse connections
/// before `--max-connections` does.
fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write `limit`, which
    // lives on this stack frame for both calls.
    let raised = unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0
            && limit.rlim_cur < limit.rlim_max
            && {
                limit.rlim_cur = limit.rlim_max;
                libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0
            }
    };
    if raised {
        tracing::debug!(open_files = limit.rlim_cur, "raised the open-file limit");
    }
}

/// Logs go to stderr (stdout carries the lines scripts wait for);
/// `RUST_LOG` overrides the default level.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal, not in log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
