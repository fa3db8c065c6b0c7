//! The client commands that talk to a running cluster: `lock`, `unlock`,
//! `status`, `watch`. Human output by default, `--json` for scripts (one
//! JSON object per line); errors are one line on stderr and a non-zero exit.

use anyhow::{bail, Context, Result};
use serde_json::json;
use std::io::Write;
use std::time::Duration;
use tenure_client::{Client, LeaseState};

/// Where the cluster is, and how to print.
#[derive(clap::Args, Clone, Debug)]
pub struct Conn {
    /// Comma-separated node URLs. Default: $TENURE_ENDPOINTS, else the
    /// `tenure dev` ports (http://127.0.0.1:7400,7401,7402).
    #[arg(long, value_name = "URLS")]
    pub endpoints: Option<String>,
    /// A file holding the token to send, for a cluster started with
    /// --tokens. Default: $TENURE_TOKEN_FILE.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<std::path::PathBuf>,
    /// The CA (PEM) to trust for https:// endpoints. Default: $TENURE_CA.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<std::path::PathBuf>,
    /// A client certificate (PEM), for a cluster started with
    /// --client-ca. Default: $TENURE_CERT.
    #[arg(long, value_name = "FILE")]
    pub cert: Option<std::path::PathBuf>,
    /// The client certificate's key (PEM). Default: $TENURE_KEY.
    #[arg(long, value_name = "FILE")]
    pub key: Option<std::path::PathBuf>,
    /// Print JSON (one object per line) instead of sentences.
    #[arg(long)]
    pub json: bool,
}

/// A file given as a flag, else in the environment variable `var`.
fn flag_or_env(flag: &Option<std::path::PathBuf>, var: &str) -> Option<std::path::PathBuf> {
    flag.clone().or_else(|| {
        std::env::var_os(var)
            .filter(|f| !f.is_empty())
            .map(std::path::PathBuf::from)
    })
}

impl Conn {
    /// The endpoints `urls`, with the token and TLS files the environment
    /// names.
    pub fn from_env(urls: &str) -> Conn {
        Conn {
            endpoints: Some(urls.to_string()),
            token_file: None,
            ca: None,
            cert: None,
            key: None,
            json: false,
        }
    }

    pub fn client(&self) -> Result<Client> {
        let list = match &self.endpoints {
            Some(list) => list.clone(),
            None => std::env::var("TENURE_ENDPOINTS")
                .ok()
                .filter(|s| !s.trim().is_empty())
                .unwrap_or_else(|| tenure_client::DEV_ENDPOINTS.to_string()),
        };
        let mut client = Client::from_list(&list).context("--endpoints")?;
        let tls = tenure_client::TlsOptions {
            ca: flag_or_env(&self.ca, "TENURE_CA"),
            cert: flag_or_env(&self.cert, "TENURE_CERT"),
            key: flag_or_env(&self.key, "TENURE_KEY"),
        };
        if tls != tenure_client::TlsOptions::default() {
            client = client.with_tls(&tls).context("--ca, --cert, --key")?;
        }
        let file = flag_or_env(&self.token_file, "TENURE_TOKEN_FILE");
        let Some(file) = file else {
            return Ok(client);
        };
        let token = std::fs::read_to_string(&file)
            .with_context(|| format!("cannot read the token file {}", file.display()))?;
        client.with_token(token.trim()).context("the token file")
    }

    /// For a command that makes one call and exits: when every node
    /// refuses the connection it says so at once, rather than retrying
    /// for the call's whole deadline.
    pub fn one_shot_client(&self) -> Result<Client> {
        Ok(self.client()?.giving_up_when_refused())
    }
}

/// `500ms`, `10s`, `2m`, `1h`. A bare number is refused: `--ttl 10`
/// could mean seconds or milliseconds, and a guess either way is wrong
/// for someone.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration: write 500ms, 10s, 2m or 1h"))?;
    if unit.is_empty() {
        return Err(format!("{s:?} has no unit: write {s}s or {s}ms"));
    }
    let ms = match unit {
        "ms" => Some(n),
        "s" => n.checked_mul(1_000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        _ => None,
    }
    .ok_or_else(|| format!("{s:?} is not a duration: write 500ms, 10s, 2m or 1h"))?;
    Ok(Duration::from_millis(ms))
}

#[derive(clap::Args, Debug)]
pub struct LockArgs {
    /// The lease name.
    pub name: String,
    /// Who asks; default HOST:PID:RANDOM (printed: `unlock` needs it).
    #[arg(long)]
    pub holder: Option<String>,
    /// How long the grant lasts unless renewed (10ms to 1 day).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub ttl: Duration,
    /// Wait up to this long (at most 5m) for the lease instead of failing.
    #[arg(long, value_parser = parse_wait)]
    pub wait: Option<Duration>,
    #[command(flatten)]
    pub conn: Conn,
}

/// `tenure lock`: one grant, printed. Nothing renews it after this process
/// exits: the caller renews (PUT with the token) or lets it expire.
pub async fn lock(args: LockArgs) -> Result<()> {
    let client = args.conn.one_shot_client()?;
    let holder = args
        .holder
        .clone()
        .unwrap_or_else(tenure_client::default_holder_id);
    let answer = client
        .acquire_once(&args.name, &holder, args.ttl, args.wait)
        .await?;
    match answer {
        Ok(mut grant) => {
            // A grant won by a long poll counts from when the poll was
            // sent: after a long wait little of it may be left, so renew it
            // once, as the client library does, and count from that.
            let now = client.clock().now();
            if !grant.most_of_the_lease_left(now, Duration::ZERO) {
                let until = now + client.call_timeout();
                grant = client
                    .renew(
                        &args.name,
                        &holder,
                        grant.token,
                        grant.key.as_deref(),
                        until,
                    )
                    .await
                    .with_context(|| format!("renewing {} after the wait", args.name))?;
            }
            let ttl_ms = grant.ttl.as_millis();
            // The grant is valid from when the request was SENT (after a
            // `--wait`, that may be long ago), less the drift margin: what
            // is left of it is what a script may count on.
            let deadline = grant.deadline(Duration::ZERO);
            let valid_ms = deadline
                .saturating_duration_since(client.clock().now())
                .as_millis();
            if args.conn.json {
                let mut out = json!({
                    "name": args.name, "holder": grant.holder, "token": grant.token,
                    "ttl_ms": ttl_ms, "valid_ms": valid_ms,
                });
                if let Some(key) = &grant.key {
                    out["key"] = key.clone().into();
                }
                print_json(&out)
            } else {
                // `unlock` needs the key: said on its own line, for scripts.
                let key = match &grant.key {
                    Some(key) => {
                        format!("\nkey {key} (unlock --grant-key needs it; keep it to yourself)")
                    }
                    None => String::new(),
                };
                print_line(&format!(
                    "{}: granted to {} with token {}, valid for {valid_ms} ms more (ttl {ttl_ms} ms, counted from when the request was sent){key}",
                    args.name, grant.holder, grant.token
                ))
            }
        }
        Err(state) => bail!("{} is {state}", args.name),
    }
}

#[derive(clap::Args, Debug)]
pub struct UnlockArgs {
    /// The lease name.
    pub name: String,
    /// The holder the grant was made to (as `lock` printed it).
    #[arg(long, required_unless_present = "force")]
    pub holder: Option<String>,
    /// The token of the grant to end.
    #[arg(long)]
    pub token: u64,
    /// End the grant whoever holds it, as an operator (an `admin` token
    /// where the cluster checks tokens). The name then stays in its
    /// lock-delay for the grant's ttl and lock-delay, so that the holder
    /// has stopped before anyone else holds it.
    #[arg(long, conflicts_with_all = ["holder", "grant_key"])]
    pub force: bool,
    /// The grant's key, as `lock` printed it, for a cluster that gives
    /// keys (--grant-secret).
    #[arg(long, value_name = "KEY")]
    pub grant_key: Option<String>,
    #[command(flatten)]
    pub conn: Conn,
}

pub async fn unlock(args: UnlockArgs) -> Result<()> {
    let client = args.conn.one_shot_client()?;
    let how = match &args.holder {
        Some(holder) if !args.force => {
            client
                .release(&args.name, holder, args.token, args.grant_key.as_deref())
                .await
                .with_context(|| format!("could not release {}", args.name))?;
            format!("of {holder}")
        }
        _ => {
            client
                .force_release(&args.name, args.token)
                .await
                .with_context(|| format!("could not force the release of {}", args.name))?;
            "by force (the name stays in its lock-delay for the grant's ttl and lock-delay)"
                .to_string()
        }
    };
    if args.conn.json {
        print_json(&json!({
            "name": args.name, "released": true, "token": args.token, "forced": args.force,
        }))
    } else {
        print_line(&format!(
            "{}: released grant {} {how}",
            args.name, args.token
        ))
    }
}

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// A lease name; without one, the state of each node.
    pub name: Option<String>,
    #[command(flatten)]
    pub conn: Conn,
}

pub async fn status(args: StatusArgs) -> Result<()> {
    let client = args.conn.one_shot_client()?;
    if let Some(name) = &args.name {
        let state = client.read(name).await?;
        return if args.conn.json {
            let mut v = serde_json::to_value(&state)?;
            v["name"] = json!(name);
            print_json(&v)
        } else {
            print_line(&format!("{name}: {state}"))
        };
    }
    let mut answered = 0;
    for (endpoint, result) in client.cluster().await {
        match result {
            Ok(v) => {
                answered += 1;
                if args.conn.json {
                    print_json(&json!({ "endpoint": endpoint, "cluster": v }))?;
                } else {
                    print_line(&format!(
                        "{endpoint}: node {}, incarnation {}, {} of {} nodes reachable (quorum {})",
                        v["node"],
                        v["incarnation"],
                        v["reachable"],
                        v["members"].as_array().map_or(0, Vec::len),
                        v["quorum"],
                    ))?;
                }
            }
            Err(e) => {
                if args.conn.json {
                    print_json(&json!({ "endpoint": endpoint, "error": e }))?;
                } else {
                    print_line(&format!("{endpoint}: unreachable: {e}"))?;
                }
            }
        }
    }
    if answered == 0 {
        bail!("no node answered");
    }
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct HistoryArgs {
    /// The lease name.
    pub name: String,
    #[command(flatten)]
    pub conn: Conn,
}

/// Print a name's last changes, newest first.
pub async fn history(args: HistoryArgs) -> Result<()> {
    let client = args.conn.one_shot_client()?;
    let changes = client
        .history(&args.name)
        .await
        .with_context(|| format!("could not read the history of {}", args.name))?;
    if changes.is_empty() && !args.conn.json {
        return print_line(&format!(
            "{}: no changes known to this node (it keeps the last few per name, since it started)",
            args.name
        ));
    }
    for c in changes {
        if args.conn.json {
            print_json(&serde_json::to_value(&c)?)?;
        } else {
            print_line(&format!(
                "{:>9} ago  {:<10} token {} of {} (ttl {} ms), by node {} in {:.1} ms",
                format_ago(c.ago_ms),
                c.change,
                c.token,
                c.holder,
                c.ttl_ms,
                c.proposer,
                c.took_ms,
            ))?;
        }
    }
    Ok(())
}

/// `950 ms`, `12.5 s`, `3 min`, `2.1 h`: how long ago, at a glance.
fn format_ago(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..120_000 => format!("{:.1} s", ms as f64 / 1e3),
        120_000..7_200_000 => format!("{} min", ms / 60_000),
        _ => format!("{:.1} h", ms as f64 / 3.6e6),
    }
}

#[derive(clap::Args, Debug)]
pub struct WatchArgs {
    /// The lease name.
    pub name: String,
    #[command(flatten)]
    pub conn: Conn,
}

/// Print each state of the name until Ctrl-C. Reconnects across nodes.
pub async fn watch(args: WatchArgs) -> Result<()> {
    let client = args.conn.client()?;
    let mut watch = client.watch(&args.name)?;
    let mut last: Option<LeaseState> = None;
    loop {
        let next = tokio::select! {
            n = watch.next_state() => n,
            () = crate::signal::stop_requested() => return Ok(()),
        };
        let Some(state) = next else { return Ok(()) };
        let state = state?;
        // A reconnection repeats the current state: not a change.
        if last.as_ref().is_some_and(|l| l.same_as(&state)) {
            continue;
        }
        if args.conn.json {
            print_json(&serde_json::to_value(&state)?)?;
        } else {
            print_line(&format!("{}: {state}", args.name))?;
        }
        last = Some(state);
    }
}

pub fn print_json(v: &serde_json::Value) -> Result<()> {
    print_line(&v.to_string())
}

/// One line to stdout, flushed: scripts read these as they come.
pub fn print_line(line: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

/// The longest one long poll may wait (the server's limit on `?wait`).
const MAX_WAIT: Duration = Duration::from_secs(300);

/// A `--wait` for one long poll: a duration of at most 5 minutes.
fn parse_wait(s: &str) -> Result<Duration, String> {
    let wait = parse_duration(s)?;
    if wait > MAX_WAIT {
        return Err(format!(
            "{s} is longer than one wait may be (5m); `tenure run --wait` waits as long as you like"
        ));
    }
    Ok(wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_is_at_most_what_the_server_allows() {
        assert_eq!(parse_wait("5m"), Ok(MAX_WAIT));
        assert!(parse_wait("301s").is_err());
        assert!(parse_wait("1h").is_err());
    }

    #[test]
    fn durations_take_the_units_people_write() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(
            parse_duration("7"),
            Err("\"7\" has no unit: write 7s or 7ms".to_string())
        );
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("1.5s").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("99999999999999999999h").is_err());
    }
}
