//! `tenure bench renew`: the latency of a renewal through the node that won
//! the name, next to what it should cost: a loopback round trip (client to
//! node) plus, in parallel on the nodes, a peer round trip and one fsync.
//! `tenure bench compare`: tenure next to etcd (the `tenure-bench` crate).

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use std::collections::BTreeMap;
use std::io::{Read, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tenure_core::{Ballot, Durable, LeaseName, NodeId, Record, Write, WriteId};
use tenure_server::{server, Listeners, ServerConfig};
use tenure_storage::{collect, StoreAt, StoreOptions};

#[derive(Subcommand)]
pub enum Bench {
    /// Renew one lease over and over through the node that granted it.
    Renew {
        /// Renewals to time.
        #[arg(long, default_value_t = 2_000)]
        count: usize,
        /// Where the in-process cluster keeps its state (the fsyncs timed
        /// are on this file system). Default: a fresh folder under the
        /// system's temporary directory.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Bench a running node instead of an in-process cluster.
        #[arg(long, value_name = "URL")]
        url: Option<String>,
        /// Run the in-process cluster's peer links in plain TCP rather
        /// than mutual TLS, to measure what TLS costs.
        #[arg(long, conflicts_with = "url")]
        insecure_peers: bool,
    },
    /// Start a 3-node etcd cluster and a 3-node tenure cluster on loopback
    /// and run the same lock workloads against both; writes
    /// bench/RESULTS.md. Installs etcd with apt-get when missing.
    Compare(CompareArgs),
}

#[derive(clap::Args)]
pub struct CompareArgs {
    /// A short run (under a minute) with fewer samples.
    #[arg(long)]
    quick: bool,
    /// Also write the figures as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Where to write the Markdown report.
    #[arg(long, value_name = "FILE", default_value = "bench/RESULTS.md")]
    results: PathBuf,
    /// Fail instead of running apt-get when etcd is missing.
    #[arg(long)]
    no_install: bool,
    /// Where both clusters' temporary data directories go (fsync is
    /// measured on this file system). Default: the system's temporary
    /// directory.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Three directories, comma-separated: member 1, 2 and 3 of each
    /// system keep their data in the first, second and third. Give each
    /// its own file system to measure what the nodes' sharing one disk
    /// costs. Logs and certificates stay under --data-dir.
    #[arg(long, value_name = "DIR1,DIR2,DIR3", value_delimiter = ',')]
    node_data_dirs: Vec<PathBuf>,
    /// The `tenure` binary whose `tenure server` the tenure cluster runs.
    /// Default: this one. Another build's, to compare two builds with the
    /// same workloads (its server flags must be this build's).
    #[arg(long, value_name = "FILE")]
    server_bin: Option<PathBuf>,
    /// Run only these steps (comma-separated): sequential, cycles,
    /// failover, handoff, election, trylock, queue, election32, stampede,
    /// kill, trylock-kill, queue-kill, idle. Default: all. The six under
    /// contention (many clients on one name): trylock, queue, election32,
    /// stampede, trylock-kill, queue-kill.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    steps: Vec<String>,
    /// Measure memory with this many idle leases (comma-separated,
    /// loaded cumulatively on fresh clusters; 0: none). Default:
    /// 100000,1000000 (with --quick: none).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    idle_leases: Option<Vec<usize>>,
    /// The longest one system may take to load one level of idle leases;
    /// it then stops and the report says how many it holds.
    #[arg(long, value_name = "SECONDS", default_value_t = 900)]
    idle_fill_limit: u64,
    /// Run both systems on TLS everywhere, as an operator would: tenure
    /// with --https beside its mutual-TLS peer links, etcd with TLS on its
    /// client and peer URLs (peers prove themselves by certificate), all
    /// from one CA made for the run, which the clients trust. Without it
    /// clients speak plain HTTP to both, and only tenure's peers use TLS.
    #[arg(long)]
    tls: bool,
}

pub async fn run(bench: Bench) -> Result<()> {
    let (count, data_dir, url, insecure_peers) = match bench {
        Bench::Renew {
            count,
            data_dir,
            url,
            insecure_peers,
        } => (count, data_dir, url, insecure_peers),
        Bench::Compare(args) => return tokio::task::spawn_blocking(|| compare(args)).await?,
    };
    let count = count.max(10);
    if let Some(url) = url {
        return tokio::task::spawn_blocking(move || renewals(&url, count, None)).await?;
    }
    let dir = match data_dir {
        Some(d) => d,
        None => std::env::temp_dir().join(format!("tenure-bench-{}", std::process::id())),
    };
    let mut bound = Vec::new();
    for _ in 0..3 {
        bound.push(Listeners::bind("127.0.0.1:0", "127.0.0.1:0").await?);
    }
    let mut peers = BTreeMap::new();
    for (i, l) in bound.iter().enumerate() {
        peers.insert(NodeId(i as u16 + 1), l.peer.local_addr()?.to_string());
    }
    let ca = tenure_server::tls::issue::Ca::open_or_create(&dir.join("tls"))?;
    let mut nodes = Vec::new();
    for (i, listeners) in bound.into_iter().enumerate() {
        let id = NodeId(i as u16 + 1);
        let mut config = ServerConfig::new(id, dir.join(format!("node-{}", id.0)), peers.clone());
        if !insecure_peers {
            config.peer_tls = Some(ca.issue_node(id, &[])?);
        }
        nodes.push(server::start(config, listeners).await?);
    }
    println!(
        "peer links: {}",
        if insecure_peers {
            "plain TCP (--insecure-peers)"
        } else {
            "mutual TLS"
        }
    );
    let url = format!("http://{}", nodes[0].http_addr);
    let fsync_dir = dir.clone();
    let result =
        tokio::task::spawn_blocking(move || renewals(&url, count, Some(&fsync_dir))).await?;
    for node in nodes {
        node.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn compare(args: CompareArgs) -> Result<()> {
    let dirs = args.node_data_dirs.len();
    if dirs != 0 && dirs != 3 {
        bail!("--node-data-dirs takes three directories, one per member; got {dirs}");
    }
    let command: Vec<String> = std::env::args().collect();
    tenure_bench::run_compare(tenure_bench::Options {
        tenure_bin: match args.server_bin {
            Some(bin) => bin,
            None => std::env::current_exe().context("find the tenure binary")?,
        },
        quick: args.quick,
        json: args.json,
        results: args.results,
        install: !args.no_install,
        data: tenure_bench::DataPlaces {
            root: args.data_dir.unwrap_or_else(std::env::temp_dir),
            nodes: args.node_data_dirs,
        },
        command: format!("tenure {}", command.get(1..).unwrap_or_default().join(" ")),
        steps: args.steps,
        idle_leases: args.idle_leases,
        idle_fill_limit: Duration::from_secs(args.idle_fill_limit),
        tls: args.tls,
    })
}

fn renewals(url: &str, count: usize, fsync_dir: Option<&Path>) -> Result<()> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let name = format!("bench-{}", std::process::id());
    let lock = format!("{url}/v1/locks/{name}");
    // The first requests may meet peers still connecting: retry briefly.
    // A cluster with grant keys (`tenure dev`, `--grant-secret`) answers
    // the grant with the key its renewals and release must carry.
    let mut grant = None;
    for _ in 0..50 {
        let mut response = agent
            .put(&lock)
            .send(r#"{"holder":"bench","ttl_ms":60000}"#)
            .context("acquire")?;
        let body = response.body_mut().read_to_string()?;
        if response.status().as_u16() == 201 {
            let v: serde_json::Value = serde_json::from_str(&body)?;
            grant = v["token"]
                .as_u64()
                .map(|token| (token, v["key"].as_str().map(str::to_string)));
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let Some((token, key)) = grant else {
        bail!("could not acquire {name} through {url}");
    };
    let renew = match &key {
        Some(key) => format!(r#"{{"holder":"bench","token":{token},"key":"{key}"}}"#),
        None => format!(r#"{{"holder":"bench","token":{token}}}"#),
    };
    let key_param = key.map(|k| format!("&key={k}")).unwrap_or_default();
    // Warm up connections and the fast path.
    for _ in 0..20 {
        agent.put(&lock).send(&renew)?.body_mut().read_to_string()?;
    }
    let mut renew_us = Vec::with_capacity(count);
    for _ in 0..count {
        let started = Instant::now();
        let mut response = agent.put(&lock).send(&renew)?;
        response.body_mut().read_to_string()?;
        renew_us.push(started.elapsed());
        if response.status().as_u16() != 200 {
            bail!("renewal answered {}", response.status());
        }
    }
    let mut health_us = Vec::with_capacity(count);
    for _ in 0..count {
        let started = Instant::now();
        agent
            .get(&format!("{url}/healthz"))
            .call()?
            .body_mut()
            .read_to_string()?;
        health_us.push(started.elapsed());
    }
    let _ = agent
        .delete(&format!("{lock}?holder=bench&token={token}{key_param}"))
        .call();

    let rtt = loopback_rtt(count)?;
    println!("tenure bench renew: {count} renewals through the granting node");
    println!(
        "  renewal (HTTP PUT with token)   {}",
        summary(&mut renew_us)
    );
    println!(
        "  GET /healthz (HTTP floor)       {}",
        summary(&mut health_us)
    );
    println!(
        "  loopback TCP round trip         {}",
        summary(&mut rtt.clone())
    );
    if let Some(dir) = fsync_dir {
        let samples = (count / 4).max(50);
        let mut fsync = fsyncs(dir, samples)?;
        let mut commit = commits(&dir.join("bench-store"), samples)?;
        let expected = median(&mut rtt.clone()) + median(&mut commit);
        println!("  fsync (write + fdatasync)       {}", summary(&mut fsync));
        println!("  storage commit of one record    {}", summary(&mut commit));
        println!(
            "  target at p50: peer round trip + storage commit = {:.0} µs; renewal minus HTTP floor = {:.0} µs",
            expected.as_secs_f64() * 1e6,
            (median(&mut renew_us).saturating_sub(median(&mut health_us))).as_secs_f64() * 1e6
        );
    }
    Ok(())
}

fn loopback_rtt(count: usize) -> Result<Vec<Duration>> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        let mut b = [0u8; 1];
        while s.read_exact(&mut b).is_ok() {
            s.write_all(&b)?;
        }
        Ok(())
    });
    let mut client = TcpStream::connect(addr)?;
    client.set_nodelay(true)?;
    let mut samples = Vec::with_capacity(count);
    let mut b = [7u8; 1];
    for _ in 0..count {
        let started = Instant::now();
        client.write_all(&b)?;
        client.read_exact(&mut b)?;
        samples.push(started.elapsed());
    }
    drop(client);
    let _ = echo.join();
    Ok(samples)
}

fn fsyncs(dir: &Path, count: usize) -> Result<Vec<Duration>> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("bench-fsync");
    let mut file = std::fs::File::create(&path)?;
    let mut samples = Vec::with_capacity(count);
    for _ in 0..count {
        let started = Instant::now();
        file.write_all(&[0u8; 128])?;
        file.sync_data()?;
        samples.push(started.elapsed());
    }
    let _ = std::fs::remove_file(&path);
    Ok(samples)
}

/// What one acceptor write costs through the real store (a transaction
/// and its fsync), which is what a renewal waits for on the nodes.
fn commits(dir: &Path, count: usize) -> Result<Vec<Duration>> {
    let (mut store, _) = StoreOptions::default()
        .open(StoreAt::dir(dir), collect)
        .context("open a scratch store")?;
    let name = LeaseName::new("bench")?;
    let mut samples = Vec::with_capacity(count);
    for i in 0..count as u64 {
        let write = Write {
            id: WriteId(i + 1),
            record: Record::Register {
                name: name.clone(),
                state: Durable {
                    promised: Ballot {
                        counter: i + 1,
                        node: 1,
                        incarnation: 1,
                    },
                    accepted: None,
                },
            },
        };
        let started = Instant::now();
        store.persist(&[write])?;
        samples.push(started.elapsed());
    }
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
    Ok(samples)
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn summary(samples: &mut [Duration]) -> String {
    samples.sort();
    let at = |q: f64| {
        let i = ((samples.len() as f64 * q) as usize).min(samples.len() - 1);
        samples[i].as_secs_f64() * 1e6
    };
    format!(
        "p50 {:>7.0} µs   p90 {:>7.0} µs   p99 {:>7.0} µs",
        at(0.5),
        at(0.9),
        at(0.99)
    )
}
