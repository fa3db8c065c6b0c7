//! The two clusters under test, as real processes on loopback: three
//! `tenure server` and three `etcd`, each on ports the OS chose a moment
//! before, each with its own temporary data directory on the same file
//! system (fsync on: both systems' default). Every process is SIGKILLed and
//! reaped by PID when its guard drops, so an error or a panic half way
//! leaves nothing running.
//!
//! With `--tls` both clusters run on TLS everywhere (peer links and client
//! ports) with certificates from one CA made for the run (`Tls`), and every
//! client of the run trusts that CA (`trust_ca`).

use crate::DataPlaces;
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, OnceLock};
use std::time::{Duration, Instant};
use ureq::tls::{parse_pem, PemItem, RootCerts, TlsConfig, TlsProvider};

/// How long a cluster may take to start and become healthy.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// One child process; SIGKILLed and reaped on drop.
pub struct Proc {
    child: Child,
    pub what: String,
    pub log: PathBuf,
}

impl Proc {
    fn spawn(what: String, cmd: &mut Command, log: PathBuf) -> Result<Proc> {
        let stderr =
            std::fs::File::create(&log).with_context(|| format!("create {}", log.display()))?;
        let child = cmd
            .stdin(Stdio::null())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("start {what}"))?;
        Ok(Proc { child, what, log })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has exited (and then reap it).
    fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// SIGKILL (what `Child::kill` sends) and reap.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Resident set size in KiB, from /proc/PID/status.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        parse_vmrss_kib(&status)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The resident set size of each node still running, in KiB (0 for one
/// whose /proc entry could not be read).
pub fn rss_kib_per_node(nodes: &[Option<Proc>]) -> Vec<u64> {
    nodes
        .iter()
        .flatten()
        .map(|p| p.rss_kib().unwrap_or(0))
        .collect()
}

pub fn parse_vmrss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// Ports that were free a moment ago: bind to port 0, read, release. A
/// port may be taken by someone else before the server binds it: rare, and
/// the cluster start is then retried with new ports.
pub fn free_ports(n: usize) -> Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

/// The etcd version line, installing Debian's `etcd-server` and
/// `etcd-client` first when `etcd` is not on the PATH and `install` is set.
pub fn ensure_etcd(install: bool, progress: &dyn Fn(&str)) -> Result<String> {
    if let Some(v) = etcd_version() {
        return Ok(v);
    }
    if !install {
        bail!(
            "etcd is not installed (apt-get install etcd-server etcd-client, or drop --no-install)"
        );
    }
    let policy = Command::new("apt-cache")
        .args(["policy", "etcd-server"])
        .output()
        .context("run apt-cache (is this Debian or Ubuntu?)")?;
    if !has_candidate(&String::from_utf8_lossy(&policy.stdout)) {
        progress("apt-get update (no etcd-server candidate yet)");
        run_apt(&["update"])?;
    }
    progress("apt-get install -y etcd-server etcd-client");
    run_apt(&["install", "-y", "etcd-server", "etcd-client"])?;
    etcd_version().context("etcd still not on the PATH after apt-get install")
}

fn run_apt(args: &[&str]) -> Result<()> {
    let out = Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .with_context(|| format!("run apt-get {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "apt-get {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Whether `apt-cache policy` output names an installable version.
pub fn has_candidate(policy: &str) -> bool {
    policy
        .lines()
        .find_map(|l| l.trim().strip_prefix("Candidate:"))
        .is_some_and(|c| c.trim() != "(none)" && !c.trim().is_empty())
}

fn etcd_version() -> Option<String> {
    let out = Command::new("etcd").arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("etcd Version:"))
        .map(|v| v.trim().to_string())
}

/// Wait until `ready()` holds, bounded; `ready` is polled every 50 ms.
fn wait_until(what: &str, within: Duration, mut ready: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + within;
    while !ready() {
        if Instant::now() > deadline {
            bail!("{what}: not ready within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// The client TLS of the run, when it is over TLS. Process-wide because
/// every client of a run, in every step, talks to clusters signed by the
/// one CA made at its start; a run sets it once, before any cluster starts.
static CLIENT_TLS: OnceLock<TlsConfig> = OnceLock::new();

/// Make every agent from now on trust the CA in `ca_pem` (and only it),
/// with rustls on ring, the provider the servers use.
pub fn trust_ca(ca_pem: &Path) -> Result<()> {
    let pem = std::fs::read(ca_pem).with_context(|| format!("read {}", ca_pem.display()))?;
    let mut certs = Vec::new();
    for item in parse_pem(&pem) {
        if let PemItem::Certificate(c) =
            item.with_context(|| format!("parse {}", ca_pem.display()))?
        {
            certs.push(c);
        }
    }
    if certs.is_empty() {
        bail!("{}: no certificate in it", ca_pem.display());
    }
    let config = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .root_certs(RootCerts::new_with_certs(&certs))
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .build();
    CLIENT_TLS
        .set(config)
        .map_err(|_| anyhow::anyhow!("the clients' CA is set once per process"))
}

pub fn agent(timeout: Duration) -> ureq::Agent {
    let mut config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .max_idle_connections(1024)
        .max_idle_connections_per_host(1024);
    if let Some(tls) = CLIENT_TLS.get() {
        // A clone shares the roots and provider (Arc): each agent builds
        // its rustls config once, on its first connection, not per request.
        config = config.tls_config(tls.clone());
    }
    ureq::Agent::with_parts(
        config.build(),
        ureq::unversioned::transport::DefaultConnector::default(),
        crate::resolver::LiteralFirst::default(),
    )
}

fn get_json(agent: &ureq::Agent, url: &str) -> Option<Value> {
    let mut r = agent.get(url).call().ok()?;
    let text = r.body_mut().read_to_string().ok()?;
    serde_json::from_str(&text).ok()
}

pub fn post_json(agent: &ureq::Agent, url: &str, body: &Value) -> Option<Value> {
    let mut r = agent
        .post(url)
        .header("content-type", "application/json")
        .send(body.to_string())
        .ok()?;
    if r.status().as_u16() != 200 {
        return None;
    }
    let text = r.body_mut().read_to_string().ok()?;
    serde_json::from_str(&text).ok()
}

/// Three `etcd` members on loopback.
pub struct EtcdCluster {
    pub nodes: Vec<Option<Proc>>,
    /// `http://127.0.0.1:PORT` (`https` with `--tls`), one per member.
    pub urls: Vec<String>,
    _dir: tempfile::TempDir,
    _data: Vec<tempfile::TempDir>,
}

/// `http` or, on TLS, `https`.
fn scheme(tls: bool) -> &'static str {
    if tls {
        "https"
    } else {
        "http"
    }
}

/// The arguments of member `i` (0-based) of a 3-member cluster; with
/// `tls` (the directory of a run's `Tls`), TLS on both its client and
/// peer URLs: a client needs no certificate (as with tenure's `--https`
/// without `--client-ca`), a peer must present one from the CA, and
/// nothing is auto-generated.
pub fn etcd_args(
    i: usize,
    client: &[u16],
    peer: &[u16],
    data: &Path,
    tls: Option<&Path>,
) -> Vec<String> {
    let sch = scheme(tls.is_some());
    let cluster: Vec<String> = (0..3)
        .map(|j| format!("n{}={sch}://127.0.0.1:{}", j + 1, peer[j]))
        .collect();
    let c = format!("{sch}://127.0.0.1:{}", client[i]);
    let p = format!("{sch}://127.0.0.1:{}", peer[i]);
    let mut args: Vec<String> = vec![
        "--name".into(),
        format!("n{}", i + 1),
        "--data-dir".into(),
        data.display().to_string(),
        "--listen-client-urls".into(),
        c.clone(),
        "--advertise-client-urls".into(),
        c,
        "--listen-peer-urls".into(),
        p.clone(),
        "--initial-advertise-peer-urls".into(),
        p,
        "--initial-cluster".into(),
        cluster.join(","),
        "--initial-cluster-state".into(),
        "new".into(),
        "--initial-cluster-token".into(),
        "tenure-bench".into(),
        // The metrics listener etcd opens by default is on the client URL;
        // nothing else listens.
        "--log-level".into(),
        "warn".into(),
    ];
    if let Some(dir) = tls {
        // Member nN uses tenure node N's certificate: from the same CA,
        // for serverAuth and clientAuth, naming 127.0.0.1.
        let files = TlsFiles::of(dir, i + 1);
        args.extend([
            "--cert-file".into(),
            files.cert.clone(),
            "--key-file".into(),
            files.key.clone(),
            // No --trusted-ca-file: etcd then demands a client certificate
            // whatever --client-cert-auth says (pkg/transport's
            // ServerConfig), and the clients, as tenure's, present none.
            // The gateway dials its own member without verifying it.
            "--client-cert-auth=false".into(),
            "--peer-cert-file".into(),
            files.cert,
            "--peer-key-file".into(),
            files.key,
            "--peer-trusted-ca-file".into(),
            files.ca,
            "--peer-client-cert-auth".into(),
        ]);
    }
    args
}

/// The files of member `n` (1-based) in a directory `tenure certs create`
/// made, as arguments.
struct TlsFiles {
    ca: String,
    cert: String,
    key: String,
}

impl TlsFiles {
    fn of(dir: &Path, n: usize) -> TlsFiles {
        let file = |name: String| dir.join(name).display().to_string();
        TlsFiles {
            ca: file("ca.pem".into()),
            cert: file(format!("node-{n}.pem")),
            key: file(format!("node-{n}-key.pem")),
        }
    }
}

/// The certificates of a run on TLS everywhere, in a temporary directory
/// removed on drop: one CA, and for each member N `node-N.pem`, used by
/// tenure node N and etcd member nN alike.
pub struct Tls {
    dir: tempfile::TempDir,
}

impl Tls {
    /// Make them with `bin certs create`, in a new directory under `root`.
    pub fn create(bin: &Path, root: &Path) -> Result<Tls> {
        let dir = tempfile::Builder::new().prefix("tls-").tempdir_in(root)?;
        make_certs(bin, dir.path(), true)?;
        Ok(Tls { dir })
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }
}

/// The arguments of `tenure certs create` for nodes 1 to 3 in `dir`; with
/// `clients`, their certificates also name 127.0.0.1 (an IP SAN), the
/// address clients reach every member by over HTTPS.
pub fn certs_args(dir: &Path, clients: bool) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "certs".into(),
        "create".into(),
        "--nodes".into(),
        "1,2,3".into(),
        "--dir".into(),
        dir.display().to_string(),
    ];
    if clients {
        args.extend(["--host".into(), "127.0.0.1".into()]);
    }
    args
}

fn make_certs(bin: &Path, dir: &Path, clients: bool) -> Result<()> {
    let made = Command::new(bin)
        .args(certs_args(dir, clients))
        .stdout(Stdio::null())
        .status()
        .context("run tenure certs")?;
    if !made.success() {
        bail!("tenure certs failed: {made}");
    }
    Ok(())
}

impl EtcdCluster {
    /// `tls`: the run's certificates, when it is on TLS everywhere.
    pub fn start(places: &DataPlaces, tls: Option<&Tls>) -> Result<EtcdCluster> {
        let mut last = None;
        for _ in 0..5 {
            match Self::try_start(places, tls) {
                Ok(c) => return Ok(c),
                Err(e) => last = Some(e),
            }
        }
        Err(last
            .expect("tried")
            .context("start a 3-member etcd cluster"))
    }

    fn try_start(places: &DataPlaces, tls: Option<&Tls>) -> Result<EtcdCluster> {
        let dir = tempfile::Builder::new()
            .prefix("etcd-")
            .tempdir_in(&places.root)?;
        let mut kept = Vec::new();
        let ports = free_ports(6)?;
        let (client, peer) = ports.split_at(3);
        let mut nodes = Vec::new();
        for i in 0..3 {
            kept.push(node_data(places, i, "etcd")?);
            let data = kept[i].path().join("data");
            let log = dir.path().join(format!("n{}.log", i + 1));
            let mut cmd = Command::new("etcd");
            cmd.args(etcd_args(i, client, peer, &data, tls.map(Tls::dir)))
                .env("GOMAXPROCS", threads_per_member().to_string())
                .stdout(Stdio::null());
            nodes.push(Some(Proc::spawn(
                format!("etcd n{}", i + 1),
                &mut cmd,
                log,
            )?));
        }
        let sch = scheme(tls.is_some());
        let urls: Vec<String> = client
            .iter()
            .map(|p| format!("{sch}://127.0.0.1:{p}"))
            .collect();
        let mut cluster = EtcdCluster {
            nodes,
            urls,
            _dir: dir,
            _data: kept,
        };
        let a = agent(Duration::from_secs(2));
        let urls = cluster.urls.clone();
        let nodes = &mut cluster.nodes;
        wait_until("etcd /health", START_TIMEOUT, || {
            if nodes.iter_mut().flatten().any(Proc::exited) {
                return true; // reported below
            }
            urls.iter().all(|u| {
                get_json(&a, &format!("{u}/health")).is_some_and(|v| v["health"] == "true")
            })
        })?;
        for n in cluster.nodes.iter_mut().flatten() {
            if n.exited() {
                let log = std::fs::read_to_string(&n.log).unwrap_or_default();
                bail!("{} exited at start: {}", n.what, last_lines(&log, 5));
            }
        }
        Ok(cluster)
    }

    /// The index (0-based) of the member that is the raft leader now.
    pub fn leader(&self) -> Result<usize> {
        let a = agent(Duration::from_secs(2));
        for (i, u) in self.urls.iter().enumerate() {
            if self.nodes[i].is_none() {
                continue;
            }
            let Some(v) = post_json(
                &a,
                &format!("{u}/v3/maintenance/status"),
                &Value::Object(Default::default()),
            ) else {
                continue;
            };
            if v["leader"].is_string() && v["leader"] == v["header"]["member_id"] {
                return Ok(i);
            }
        }
        bail!("no etcd member says it is the leader")
    }
}

/// Three `tenure server` processes on loopback.
pub struct TenureCluster {
    pub nodes: Vec<Option<Proc>>,
    /// `http://127.0.0.1:PORT` (`https` with `--tls`), one per node.
    pub urls: Vec<String>,
    _dir: tempfile::TempDir,
    _data: Vec<tempfile::TempDir>,
}

/// A fresh directory for member `i`'s data where `places` puts it.
fn node_data(places: &DataPlaces, i: usize, system: &str) -> Result<tempfile::TempDir> {
    let root = places.node(i);
    tempfile::Builder::new()
        .prefix(&format!("{system}-n{}-", i + 1))
        .tempdir_in(root)
        .with_context(|| format!("make a data directory under {}", root.display()))
}

/// The arguments of node `id` (1-based) of a 3-node cluster, its peer
/// links in mutual TLS with the certificates `tenure certs` made in `tls`;
/// with `https`, its client API on TLS with the same certificate.
/// Worker threads each member of either system runs with: the machine's
/// cores shared out among the three members of one cluster, at least one.
/// Both runtimes would otherwise start a thread per core in every member,
/// and nine threads wanting two cores spend their time switching; this is
/// what an operator putting three members on one machine would set. The
/// runtimes' own knobs, by environment: `GOMAXPROCS` for etcd (Go),
/// `TOKIO_WORKER_THREADS` for tenure (tokio; `tenure server --threads` too).
pub fn threads_per_member() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores / 3).max(1)
}

pub fn tenure_args(
    id: usize,
    http: &[u16],
    peer: &[u16],
    data: &Path,
    tls: &Path,
    https: bool,
) -> Vec<String> {
    let files = TlsFiles::of(tls, id);
    let peers: Vec<String> = (0..3)
        .map(|j| format!("{}=127.0.0.1:{}", j + 1, peer[j]))
        .collect();
    let mut args: Vec<String> = vec![
        "server".into(),
        "--id".into(),
        id.to_string(),
        "--data-dir".into(),
        data.display().to_string(),
        "--http".into(),
        format!("127.0.0.1:{}", http[id - 1]),
        "--peer-listen".into(),
        format!("127.0.0.1:{}", peer[id - 1]),
        "--peers".into(),
        peers.join(","),
        "--ca".into(),
        files.ca,
        "--cert".into(),
        files.cert,
        "--key".into(),
        files.key,
    ];
    if https {
        args.push("--https".into());
    }
    args
}

impl TenureCluster {
    /// `bin` is the `tenure` binary (the running one, for `tenure bench`);
    /// `tls`: the run's certificates, when it is on TLS everywhere (else
    /// the cluster makes its own, for its peer links alone).
    pub fn start(bin: &Path, places: &DataPlaces, tls: Option<&Tls>) -> Result<TenureCluster> {
        let mut last = None;
        for _ in 0..5 {
            match Self::try_start(bin, places, tls) {
                Ok(c) => return Ok(c),
                Err(e) => last = Some(e),
            }
        }
        Err(last
            .expect("tried")
            .context("start a 3-node tenure cluster"))
    }

    fn try_start(bin: &Path, places: &DataPlaces, tls: Option<&Tls>) -> Result<TenureCluster> {
        let dir = tempfile::Builder::new()
            .prefix("tenure-")
            .tempdir_in(&places.root)?;
        let mut kept = Vec::new();
        let ports = free_ports(6)?;
        let (http, peer) = ports.split_at(3);
        let certs = match tls {
            Some(t) => t.dir().to_path_buf(),
            None => {
                let own = dir.path().join("tls");
                make_certs(bin, &own, false)?;
                own
            }
        };
        let mut nodes = Vec::new();
        for id in 1..=3 {
            kept.push(node_data(places, id - 1, "tenure")?);
            let data = kept[id - 1].path().join("data");
            let log = dir.path().join(format!("node-{id}.log"));
            let mut cmd = Command::new(bin);
            cmd.args(tenure_args(id, http, peer, &data, &certs, tls.is_some()))
                .env("RUST_LOG", "warn")
                .env("TOKIO_WORKER_THREADS", threads_per_member().to_string())
                .stdout(Stdio::piped());
            let mut p = Proc::spawn(format!("tenure node {id}"), &mut cmd, log)?;
            // The node prints one line on stdout once it serves.
            let stdout = p.child.stdout.take().context("no stdout")?;
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                let mut line = String::new();
                let _ = BufReader::new(stdout).read_line(&mut line);
                let _ = tx.send(line);
            });
            match rx.recv_timeout(START_TIMEOUT) {
                Ok(line) if line.starts_with("tenure node") => nodes.push(Some(p)),
                _ => {
                    p.kill9();
                    let log = std::fs::read_to_string(&p.log).unwrap_or_default();
                    bail!("{} did not start: {}", p.what, last_lines(&log, 5));
                }
            }
        }
        let sch = scheme(tls.is_some());
        let urls: Vec<String> = http
            .iter()
            .map(|p| format!("{sch}://127.0.0.1:{p}"))
            .collect();
        let a = agent(Duration::from_secs(2));
        wait_until("tenure /healthz quorum_reachable", START_TIMEOUT, || {
            urls.iter().all(|u| {
                get_json(&a, &format!("{u}/healthz")).is_some_and(|v| v["quorum_reachable"] == true)
            })
        })?;
        Ok(TenureCluster {
            nodes,
            urls,
            _dir: dir,
            _data: kept,
        })
    }
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apt_candidate_is_read_from_policy() {
        let found = "etcd-server:\n  Installed: (none)\n  Candidate: 3.4.23-4+b4\n";
        let none = "etcd-server:\n  Installed: (none)\n  Candidate: (none)\n";
        assert!(has_candidate(found));
        assert!(!has_candidate(none));
        assert!(!has_candidate(""));
    }

    #[test]
    fn vmrss_is_read_in_kib() {
        let status = "Name:\tetcd\nVmPeak:\t 1 kB\nVmRSS:\t   31337 kB\n";
        assert_eq!(parse_vmrss_kib(status), Some(31337));
        assert_eq!(parse_vmrss_kib("Name: x\n"), None);
    }

    #[test]
    fn free_ports_are_distinct_and_bindable() {
        let ports = free_ports(6).unwrap();
        let mut sorted = ports.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 6);
        assert!(ports.iter().all(|&p| p != 0));
    }

    #[test]
    fn cluster_arguments_name_every_member_once() {
        let data = Path::new("/tmp/x");
        let etcd = etcd_args(1, &[1, 2, 3], &[4, 5, 6], data, None);
        let at = |args: &[String], flag: &str| {
            let i = args.iter().position(|a| a == flag).unwrap();
            args[i + 1].clone()
        };
        assert_eq!(at(&etcd, "--name"), "n2");
        assert_eq!(at(&etcd, "--listen-client-urls"), "http://127.0.0.1:2");
        assert_eq!(
            at(&etcd, "--initial-cluster"),
            "n1=http://127.0.0.1:4,n2=http://127.0.0.1:5,n3=http://127.0.0.1:6"
        );
        let tenure = tenure_args(3, &[1, 2, 3], &[4, 5, 6], data, Path::new("/tls"), false);
        assert_eq!(at(&tenure, "--id"), "3");
        assert_eq!(at(&tenure, "--http"), "127.0.0.1:3");
        assert_eq!(
            at(&tenure, "--peers"),
            "1=127.0.0.1:4,2=127.0.0.1:5,3=127.0.0.1:6"
        );
        assert_eq!(at(&tenure, "--cert"), "/tls/node-3.pem");
        // Plain clients: nothing about TLS on the client side.
        assert!(!tenure.iter().any(|a| a == "--https"));
        assert!(!etcd
            .iter()
            .any(|a| a.contains("cert") || a.contains("https")));
    }

    #[test]
    fn on_tls_both_systems_serve_https_and_etcd_peers_prove_their_certificates() {
        let data = Path::new("/tmp/x");
        let tls = Path::new("/tls");
        let at = |args: &[String], flag: &str| {
            let i = args.iter().position(|a| a == flag).unwrap();
            args[i + 1].clone()
        };
        let etcd = etcd_args(1, &[1, 2, 3], &[4, 5, 6], data, Some(tls));
        assert_eq!(at(&etcd, "--listen-client-urls"), "https://127.0.0.1:2");
        assert_eq!(at(&etcd, "--advertise-client-urls"), "https://127.0.0.1:2");
        assert_eq!(at(&etcd, "--listen-peer-urls"), "https://127.0.0.1:5");
        assert_eq!(
            at(&etcd, "--initial-advertise-peer-urls"),
            "https://127.0.0.1:5"
        );
        assert_eq!(
            at(&etcd, "--initial-cluster"),
            "n1=https://127.0.0.1:4,n2=https://127.0.0.1:5,n3=https://127.0.0.1:6"
        );
        for (flag, file) in [
            ("--cert-file", "/tls/node-2.pem"),
            ("--key-file", "/tls/node-2-key.pem"),
            ("--peer-cert-file", "/tls/node-2.pem"),
            ("--peer-key-file", "/tls/node-2-key.pem"),
            ("--peer-trusted-ca-file", "/tls/ca.pem"),
        ] {
            assert_eq!(at(&etcd, flag), file, "{flag}");
        }
        let once = |flag: &str| etcd.iter().filter(|a| *a == flag).count() == 1;
        assert!(once("--client-cert-auth=false"));
        assert!(once("--peer-client-cert-auth"));
        assert!(!etcd.iter().any(|a| a.contains("auto-tls")));
        // It would make etcd demand client certificates.
        assert!(!etcd.iter().any(|a| a == "--trusted-ca-file"));

        let tenure = tenure_args(2, &[1, 2, 3], &[4, 5, 6], data, tls, true);
        assert_eq!(tenure.iter().filter(|a| *a == "--https").count(), 1);
        assert_eq!(at(&tenure, "--cert"), "/tls/node-2.pem");
        assert_eq!(at(&tenure, "--key"), "/tls/node-2-key.pem");
        assert_eq!(at(&tenure, "--ca"), "/tls/ca.pem");
        assert_eq!(at(&tenure, "--http"), "127.0.0.1:2");
    }

    #[test]
    fn certificates_for_https_name_the_loopback_address() {
        let dir = Path::new("/t");
        let plain = certs_args(dir, false);
        assert!(!plain.iter().any(|a| a == "--host"));
        let tls = certs_args(dir, true);
        let i = tls.iter().position(|a| a == "--host").unwrap();
        assert_eq!(tls[i + 1], "127.0.0.1");
        assert_eq!(&tls[..2], ["certs", "create"]);
    }
}
