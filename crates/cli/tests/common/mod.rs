//! A harness for integration tests: real `tenure server` processes on
//! loopback ports chosen by the OS, temporary data folders, and a small
//! blocking HTTP client.
//!
//! Every process is killed and reaped when its guard drops, so a failing
//! test leaves nothing running.

#![allow(dead_code)] // Each test file uses a different part of the harness.

pub mod links;
pub mod runner;

use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_tenure");
/// How long a node may take to print its startup line.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// One `tenure` process; killed (SIGKILL) and reaped on drop.
pub struct Proc {
    child: Child,
    /// The first line the process printed.
    pub banner: String,
    /// Lines the process printed after the first.
    pub lines: mpsc::Receiver<String>,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Send a signal by name (INT, TERM) and wait (bounded) for the process
    /// to exit. Returns its exit code. The shell's builtin `kill` needs no
    /// package beyond the shell, and no unsafe code here.
    pub fn signal_and_wait(&mut self, signal: &str, within: Duration) -> Option<i32> {
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!("kill -{signal} {}", self.pid()))
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
        wait_exit(&mut self.child, within).and_then(|s| s.code())
    }
}

/// Wait (bounded, polling every 10 ms) for `child` to exit.
pub fn wait_exit(child: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// `tenure dev --http-port 0 ARGS...` with its own data folder: the OS
/// chooses the ports, and `addr` is node 1's, read from the first line.
/// Nothing reads its output after that line (as under `| head -1`).
/// SIGKILLed and reaped on drop.
pub struct Dev {
    pub child: Child,
    pub addr: String,
    _dir: tempfile::TempDir,
}

impl Dev {
    pub fn start(args: &[&str]) -> Dev {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut child = Command::new(BIN)
            .args(["dev", "--http-port", "0", "--data-dir"])
            .arg(dir.path())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn tenure dev");
        let mut first = String::new();
        let stdout = child.stdout.take().expect("stdout");
        let read = BufReader::new(stdout).read_line(&mut first);
        let addr = first
            .split_whitespace()
            .find_map(|w| w.strip_prefix("http="))
            .map(str::to_string);
        let Some(addr) = addr.filter(|_| read.is_ok()) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("tenure dev printed no address: {first:?}");
        };
        Dev {
            child,
            addr,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Start `tenure` with `args`; wait for its first line of output. Err when
/// it exits first (a port taken, say), with what it printed on stderr.
pub fn spawn(args: &[String], stderr_to: &Path) -> Result<Proc, String> {
    spawn_with_env(args, stderr_to, &[])
}

/// [`spawn`], with `env` added to the environment.
pub fn spawn_with_env(
    args: &[String],
    stderr_to: &Path,
    env: &[(&str, &str)],
) -> Result<Proc, String> {
    let stderr = std::fs::File::create(stderr_to).map_err(|e| e.to_string())?;
    let mut child = Command::new(BIN)
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .map_err(|e| e.to_string())?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let lines = read_lines(stdout);
    let mut proc = Proc {
        child,
        banner: String::new(),
        lines,
    };
    match proc.lines.recv_timeout(START_TIMEOUT) {
        Ok(line) => {
            proc.banner = line;
            Ok(proc)
        }
        Err(_) => {
            proc.kill9();
            let log = std::fs::read_to_string(stderr_to).unwrap_or_default();
            Err(format!("tenure did not start: {log}"))
        }
    }
}

/// The lines `stdout` prints, drained by a thread for the life of the
/// process, so that it never blocks on a full pipe.
fn read_lines(stdout: std::process::ChildStdout) -> mpsc::Receiver<String> {
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    lines
}

/// Ports that were free a moment ago: bind to port 0, read, release.
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("addr").port())
        .collect()
}

/// A cluster of three `tenure server` processes.
pub struct Cluster {
    pub nodes: Vec<Option<Proc>>,
    http_ports: Vec<u16>,
    peer_ports: Vec<u16>,
    dir: tempfile::TempDir,
    /// Forwarders on every peer link, when the test partitions.
    links: Option<links::Links>,
}

impl Cluster {
    pub fn start() -> Cluster {
        Cluster::start_with(false)
    }

    /// A cluster whose peer links go through forwarders the test can cut
    /// (`Cluster::links`).
    pub fn start_partitionable() -> Cluster {
        Cluster::start_with(true)
    }

    pub fn links(&self) -> &links::Links {
        self.links.as_ref().expect("started partitionable")
    }

    fn start_with(partitionable: bool) -> Cluster {
        let mut last_error = String::new();
        // A port freed by `free_ports` may be taken by someone else before
        // the node binds it: rare, and then the whole start is retried.
        for _ in 0..5 {
            let ports = free_ports(6);
            let mut cluster = Cluster {
                nodes: Vec::new(),
                http_ports: ports[..3].to_vec(),
                peer_ports: ports[3..].to_vec(),
                dir: tempfile::tempdir().expect("tempdir"),
                links: partitionable.then(|| links::Links::start(&ports[3..])),
            };
            let ca = tenure_server::tls::issue::Ca::open_or_create(&cluster.tls_dir()).expect("CA");
            for id in 1..=3 {
                ca.issue_node(tenure_core::NodeId(id), &[])
                    .expect("certificate");
            }
            let mut ok = true;
            for id in 1..=3 {
                match cluster.spawn_node(id) {
                    Ok(p) => cluster.nodes.push(Some(p)),
                    Err(e) => {
                        last_error = e;
                        ok = false;
                        break;
                    }
                }
            }
            if ok {
                return cluster;
            }
        }
        panic!("could not start a cluster: {last_error}");
    }

    /// The command line of node `id`.
    pub fn args(&self, id: u16) -> Vec<String> {
        let peers: Vec<String> = (1..=3u16)
            .map(|j| {
                let port = match &self.links {
                    Some(links) if j != id => links.port(id, j),
                    _ => self.peer_ports[usize::from(j - 1)],
                };
                format!("{j}=127.0.0.1:{port}")
            })
            .collect();
        self.server_args(id, "--peers", peers.join(","))
    }

    /// The command line of node `id` on its ports, with `membership`
    /// (`--peers` or `--join`) and its peer certificate.
    fn server_args(&self, id: u16, membership: &str, value: String) -> Vec<String> {
        let i = usize::from(id - 1);
        let tls = |name: &str| self.tls_dir().join(name).display().to_string();
        vec![
            "server".into(),
            "--id".into(),
            id.to_string(),
            "--data-dir".into(),
            self.data_dir(id).display().to_string(),
            "--http".into(),
            format!("127.0.0.1:{}", self.http_ports[i]),
            "--peer-listen".into(),
            format!("127.0.0.1:{}", self.peer_ports[i]),
            membership.into(),
            value,
            // Peer links in mutual TLS, as an operator runs them.
            "--ca".into(),
            tls("ca.pem"),
            "--cert".into(),
            tls(&format!("node-{id}.pem")),
            "--key".into(),
            tls(&format!("node-{id}-key.pem")),
        ]
    }

    /// Give node `id` a new peer port, as an operator moving it to a new
    /// address: `args` gives it to every node from now on, and the nodes
    /// running keep the old one until they are restarted.
    pub fn move_peer_port(&mut self, id: u16) {
        self.peer_ports[usize::from(id - 1)] = free_ports(1)[0];
    }

    /// The cluster's CA and its members' certificates (`tenure certs`).
    pub fn tls_dir(&self) -> PathBuf {
        self.dir.path().join("tls")
    }

    pub fn data_dir(&self, id: u16) -> PathBuf {
        self.dir.path().join(format!("node-{id}"))
    }

    fn spawn_node(&self, id: u16) -> Result<Proc, String> {
        let log = self.dir.path().join(format!("node-{id}.log"));
        spawn(&self.args(id), &log)
    }

    /// The base URL of node `id` (1-based).
    pub fn url(&self, id: u16) -> String {
        format!("http://127.0.0.1:{}", self.http_ports[usize::from(id - 1)])
    }

    pub fn lock_url(&self, id: u16, name: &str) -> String {
        format!("{}/v1/locks/{name}", self.url(id))
    }

    pub fn node(&mut self, id: u16) -> &mut Proc {
        self.nodes[usize::from(id - 1)]
            .as_mut()
            .expect("node is running")
    }

    pub fn kill9(&mut self, id: u16) {
        if let Some(mut p) = self.nodes[usize::from(id - 1)].take() {
            p.kill9();
        }
    }

    /// Start node `id` again on its ports and data; returns its banner.
    pub fn restart(&mut self, id: u16) -> String {
        self.try_restart(id, &[]).expect("restart")
    }

    /// Start node `id` again with `extra` arguments; its banner, or what
    /// it printed on stderr when it exited instead.
    pub fn try_restart(&mut self, id: u16, extra: &[&str]) -> Result<String, String> {
        self.restart_with_env(id, extra, &[])
    }

    /// [`Cluster::try_restart`], with `env` added to the node's environment.
    pub fn restart_with_env(
        &mut self,
        id: u16,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Result<String, String> {
        let log = self.dir.path().join(format!("node-{id}.log"));
        let mut args = self.args(id);
        args.extend(extra.iter().map(|a| a.to_string()));
        let p = spawn_with_env(&args, &log, env)?;
        let banner = p.banner.clone();
        self.nodes[usize::from(id - 1)] = Some(p);
        Ok(banner)
    }

    /// Start a new node `id` with `tenure server --join` through node
    /// `via`, with a certificate of the cluster's CA. It prints its banner
    /// only once the cluster has taken it in (`tenure members`), so this
    /// returns at once; [`Cluster::wait_joined`] awaits the banner.
    pub fn join(&mut self, id: u16, via: u16) -> Proc {
        let ports = free_ports(2);
        let ca = tenure_server::tls::issue::Ca::open_or_create(&self.tls_dir()).expect("CA");
        ca.issue_node(tenure_core::NodeId(id), &[])
            .expect("certificate");
        while self.http_ports.len() < usize::from(id) {
            self.http_ports.push(0);
            self.peer_ports.push(0);
            self.nodes.push(None);
        }
        let i = usize::from(id - 1);
        self.http_ports[i] = ports[0];
        self.peer_ports[i] = ports[1];
        let args = self.join_args(id, via);
        let log =
            std::fs::File::create(self.dir.path().join(format!("node-{id}.log"))).expect("log");
        let mut child = Command::new(BIN)
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn a joining node");
        let lines = read_lines(child.stdout.take().expect("stdout"));
        Proc {
            child,
            banner: String::new(),
            lines,
        }
    }

    /// The command line of node `id`, started with `--join` through node
    /// `via` on the ports [`Cluster::join`] chose.
    pub fn join_args(&self, id: u16, via: u16) -> Vec<String> {
        self.server_args(id, "--join", self.url(via))
    }

    /// The peer address of node `id`, as `tenure members add` takes it.
    pub fn peer_addr(&self, id: u16) -> String {
        format!("127.0.0.1:{}", self.peer_ports[usize::from(id - 1)])
    }

    /// Keep `proc`, a node started with [`Cluster::join`], once it has
    /// printed its banner.
    pub fn wait_joined(&mut self, id: u16, mut proc: Proc) -> String {
        match proc.lines.recv_timeout(START_TIMEOUT) {
            Ok(banner) => proc.banner = banner,
            Err(_) => {
                proc.kill9();
                panic!("node {id} did not join: {}", self.log(id));
            }
        }
        let banner = proc.banner.clone();
        self.nodes[usize::from(id - 1)] = Some(proc);
        banner
    }

    pub fn log(&self, id: u16) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("node-{id}.log"))).unwrap_or_default()
    }
}

/// The incarnation a startup line reports.
pub fn incarnation(banner: &str) -> u32 {
    banner
        .split_whitespace()
        .find_map(|w| w.strip_prefix("incarnation="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no incarnation in {banner:?}"))
}

/// A response: status (0 when no response came), JSON body (Null if not
/// JSON), and the Retry-After header.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub body: Value,
    pub text: String,
    pub retry_after: Option<String>,
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into()
}

fn finish(result: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Resp {
    match result {
        Ok(mut r) => {
            let status = r.status().as_u16();
            let retry_after = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let text = r.body_mut().read_to_string().unwrap_or_default();
            let body = serde_json::from_str(&text).unwrap_or(Value::Null);
            Resp {
                status,
                body,
                text,
                retry_after,
            }
        }
        Err(e) => Resp {
            status: 0,
            body: Value::Null,
            text: e.to_string(),
            retry_after: None,
        },
    }
}

pub const TIMEOUT: Duration = Duration::from_secs(20);

pub fn put(url: &str, body: &str) -> Resp {
    finish(
        agent(TIMEOUT)
            .put(url)
            .header("content-type", "application/json")
            .send(body),
    )
}

pub fn post(url: &str, body: &str) -> Resp {
    finish(
        agent(TIMEOUT)
            .post(url)
            .header("content-type", "application/json")
            .send(body),
    )
}

pub fn get(url: &str) -> Resp {
    finish(agent(TIMEOUT).get(url).call())
}

pub fn delete(url: &str) -> Resp {
    finish(agent(TIMEOUT).delete(url).call())
}

pub fn acquire(url: &str, holder: &str, ttl_ms: u64) -> Resp {
    put(
        url,
        &format!(r#"{{"holder":"{holder}","ttl_ms":{ttl_ms}}}"#),
    )
}

pub fn renew(url: &str, holder: &str, token: u64) -> Resp {
    put(url, &format!(r#"{{"holder":"{holder}","token":{token}}}"#))
}

pub fn release(url: &str, holder: &str, token: u64) -> Resp {
    delete(&format!("{url}?holder={holder}&token={token}"))
}

/// Release the grant a `201` answered, with its key when it has one.
pub fn release_granted(url: &str, granted: &Resp) -> Resp {
    let holder = granted.body["holder"].as_str().expect("a holder");
    let mut query = format!("holder={holder}&token={}", token(granted));
    if let Some(key) = granted.body["key"].as_str() {
        query.push_str(&format!("&key={key}"));
    }
    delete(&format!("{url}?{query}"))
}

pub fn token(r: &Resp) -> u64 {
    r.body["token"]
        .as_u64()
        .unwrap_or_else(|| panic!("no token in {r:?}"))
}

/// Acquire, retrying while the cluster is still connecting (503), bounded.
pub fn acquire_when_ready(url: &str, holder: &str, ttl_ms: u64) -> Resp {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = acquire(url, holder, ttl_ms);
        if r.status != 503 || Instant::now() > deadline {
            return r;
        }
    }
}

/// Stream NDJSON lines of `url` into a channel, from a thread.
pub fn stream_lines(url: &str) -> mpsc::Receiver<Value> {
    let (tx, rx) = mpsc::channel();
    let url = url.to_string();
    std::thread::spawn(move || {
        let Ok(response) = agent(Duration::from_secs(60)).get(&url).call() else {
            return;
        };
        let reader = BufReader::new(response.into_body().into_reader());
        for line in reader.lines() {
            let Ok(line) = line else { return };
            let Ok(value) = serde_json::from_str(&line) else {
                return;
            };
            if tx.send(value).is_err() {
                return;
            }
        }
    });
    rx
}

/// Read whatever a TCP peer sends until it closes or `within` passes.
pub fn read_all(stream: &mut std::net::TcpStream, within: Duration) -> String {
    stream.set_read_timeout(Some(within)).expect("timeout");
    let mut buf = Vec::new();
    let _ = stream.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// Wait (bounded) until node `url`'s metrics contain `line`.
pub fn wait_for_metric(url: &str, line: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = get(&format!("{url}/metrics"));
        if metrics.text.lines().any(|l| l == line) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no {line:?} in\n{}",
            metrics.text
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `args` with the value after `flag` replaced by `value`.
pub fn with(mut args: Vec<String>, flag: &str, value: &str) -> Vec<String> {
    let at = args.iter().position(|a| a == flag).expect("flag present");
    args[at + 1] = value.to_string();
    args
}

/// Wait (bounded) until `log()` contains `text`.
pub fn wait_for_log(log: impl Fn() -> String, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !log().contains(text) {
        assert!(
            Instant::now() < deadline,
            "the log never said {text:?}:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `tenure server` as node 1, its data in `dir/node-1`, HTTP on
/// `http_port`, peers as `peers` lists them (node 1 on `peer_port`), then
/// `extra`.
pub fn node_one_args(
    dir: &Path,
    http_port: u16,
    peer_port: u16,
    peers: &str,
    extra: &[&str],
) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "server".into(),
        "--id".into(),
        "1".into(),
        "--data-dir".into(),
        dir.join("node-1").display().to_string(),
        "--http".into(),
        format!("127.0.0.1:{http_port}"),
        "--peer-listen".into(),
        format!("127.0.0.1:{peer_port}"),
        "--peers".into(),
        peers.into(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}
