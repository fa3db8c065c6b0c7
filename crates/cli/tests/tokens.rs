//! Bearer tokens (`--tokens FILE`) on a real `tenure dev`: who may read,
//! lock and see the cluster; 401 and 403 in JSON; the CLI's token file;
//! SIGHUP reads the file again.

mod common;

use common::runner::until;
use common::*;
use std::process::{Command, Stdio};
use std::time::Duration;

const LOCKER: &str = "locker-token-0123456789";
const VIEWER: &str = "viewer-token-0123456789";

fn tokens_file(dir: &tempfile::TempDir, text: &str) -> std::path::PathBuf {
    let path = dir.path().join("tokens");
    std::fs::write(&path, text).expect("write tokens");
    path
}

/// A request with `token`, as (status, JSON body, WWW-Authenticate).
fn call(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, serde_json::Value, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(TIMEOUT))
        .build()
        .into();
    let mut request = ureq::http::Request::builder().method(method).uri(url);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = request
        .header("content-type", "application/json")
        .body(body.to_string())
        .expect("request");
    let mut r = agent.run(request).expect("an answer");
    let challenge = r
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let text = r.body_mut().read_to_string().unwrap_or_default();
    (
        r.status().as_u16(),
        serde_json::from_str(&text).unwrap_or_default(),
        challenge,
    )
}

#[test]
fn tokens_allow_what_their_grants_say_and_nothing_else() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = tokens_file(
        &dir,
        &format!("# locks under jobs/, and reads of every name\n{LOCKER} lock jobs/\n{LOCKER} read *\n{VIEWER} read jobs/\n"),
    );
    let dev = Dev::start(&["--tokens", file.to_str().expect("utf-8")]);
    let lock = format!("{}/v1/locks/jobs/nightly", dev.url());
    let acquire = r#"{"holder":"cron-1","ttl_ms":10000}"#;

    let (status, body, challenge) = call("PUT", &lock, None, acquire);
    assert_eq!((status, challenge.as_str()), (401, "Bearer"), "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or("")
            .contains("Authorization: Bearer"),
        "{body}"
    );
    let (status, _, _) = call("PUT", &lock, Some("unknown-token-0123456789"), acquire);
    assert_eq!(status, 401);

    until(
        Duration::from_secs(20),
        "a grant with the lock token",
        || call("PUT", &lock, Some(LOCKER), acquire).0 == 201,
    );
    let (status, body, _) = call(
        "PUT",
        &format!("{}/v1/locks/scheduler", dev.url()),
        Some(LOCKER),
        acquire,
    );
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or("")
            .contains("may not lock scheduler"),
        "{body}"
    );

    // The viewer reads its names and their history, and nothing more.
    assert_eq!(call("GET", &lock, Some(VIEWER), "").0, 200);
    assert_eq!(
        call("GET", &format!("{lock}/history"), Some(VIEWER), "").0,
        200
    );
    assert_eq!(call("PUT", &lock, Some(VIEWER), acquire).0, 403);
    assert_eq!(
        call(
            "GET",
            &format!("{}/v1/cluster", dev.url()),
            Some(VIEWER),
            ""
        )
        .0,
        403
    );
    assert_eq!(
        call(
            "GET",
            &format!("{}/v1/cluster", dev.url()),
            Some(LOCKER),
            ""
        )
        .0,
        200
    );
    // Liveness and the page's own files need no token.
    assert_eq!(
        call("GET", &format!("{}/healthz", dev.url()), None, "").0,
        200
    );
    assert_eq!(call("GET", &format!("{}/ui", dev.url()), None, "").0, 200);
    assert_eq!(
        call("GET", &format!("{}/ui/events", dev.url()), None, "").0,
        401
    );

    // Each refusal is counted, by why.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let metrics = agent
        .get(format!("{}/metrics", dev.url()))
        .header("authorization", format!("Bearer {LOCKER}"))
        .call()
        .expect("metrics")
        .body_mut()
        .read_to_string()
        .expect("text");
    for reason in ["no_token", "unknown_token", "not_allowed"] {
        let line = format!("tenure_http_refused_total{{reason=\"{reason}\"}} ");
        let count = metrics
            .lines()
            .find_map(|l| l.strip_prefix(&line))
            .and_then(|n| n.trim().parse::<u64>().ok());
        assert!(count.is_some_and(|n| n >= 1), "{reason}: {count:?}");
    }

    // The CLI sends the token of its token file.
    let token_file = dir.path().join("my-token");
    std::fs::write(&token_file, format!("{LOCKER}\n")).expect("write token");
    let out = Command::new(BIN)
        .args(["status", "jobs/nightly", "--endpoints", &dev.url()])
        .env("TENURE_TOKEN_FILE", &token_file)
        .stdin(Stdio::null())
        .output()
        .expect("run tenure status");
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("held by cron-1"),
        "{out:?}"
    );
    let refused = Command::new(BIN)
        .args(["status", "jobs/nightly", "--endpoints", &dev.url()])
        .env_remove("TENURE_TOKEN_FILE")
        .stdin(Stdio::null())
        .output()
        .expect("run tenure status");
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("401"),
        "{refused:?}"
    );
}

#[test]
fn sighup_reads_the_tokens_file_again_and_a_bad_one_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = tokens_file(&dir, &format!("{VIEWER} read *\n"));
    let mut dev = Dev::start(&["--tokens", file.to_str().expect("utf-8")]);
    let url = format!("{}/v1/locks/rotated", dev.url());
    until(Duration::from_secs(20), "the viewer reads", || {
        call("GET", &url, Some(VIEWER), "").0 == 404
    });
    let pid = dev.child.id().to_string();
    let hup = || {
        let status = Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .expect("kill");
        assert!(status.success());
    };
    // A file that does not parse: the old tokens stay.
    std::fs::write(&file, "not a valid line\n").expect("write");
    hup();
    // A refused file changes nothing a client can see, so there is no
    // event to wait for: give the node a moment to have read it.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        call("GET", &url, Some(VIEWER), "").0,
        404,
        "the old tokens stay"
    );
    // The viewer's token rotated out, a new one in.
    std::fs::write(&file, format!("{LOCKER} lock *\n")).expect("write");
    hup();
    until(Duration::from_secs(5), "the new file is read", || {
        call("GET", &url, Some(VIEWER), "").0 == 401
    });
    assert_eq!(call("GET", &url, Some(LOCKER), "").0, 404);
    assert!(
        dev.child.try_wait().expect("try_wait").is_none(),
        "SIGHUP does not stop the node"
    );
}
