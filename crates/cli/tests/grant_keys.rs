//! Grant keys on `tenure dev` (which gives them): only the holder of a
//! grant can renew or release it, with the key of its 201, and no read,
//! conflict or watch shows a key.

mod common;

use common::*;
use std::process::Command;

#[test]
fn only_the_grants_key_renews_or_releases_it_and_nothing_else_shows_it() {
    let dev = Dev::start(&[]);
    let url = format!("{}/v1/locks/keyed", dev.url());
    let granted = acquire_when_ready(&url, "a", 60_000);
    assert_eq!(granted.status, 201, "{granted:?}");
    let key = granted.body["key"].as_str().expect("a key").to_string();
    assert_eq!(key.len(), 32);
    let t = token(&granted);

    // Holder and token are public; without the key they do nothing.
    let bare = renew(&url, "a", t);
    assert_eq!(bare.status, 403, "{bare:?}");
    assert!(bare.text.contains("key"), "{bare:?}");
    assert_eq!(release(&url, "a", t).status, 403);
    let forged = delete(&format!("{url}?holder=a&token={t}&key={}", "0".repeat(32)));
    assert_eq!(forged.status, 403, "{forged:?}");
    // Nor is another grant's key this one's.
    let other = acquire_when_ready(&format!("{}/v1/locks/other", dev.url()), "a", 60_000);
    let theirs = other.body["key"].as_str().expect("a key");
    let borrowed = delete(&format!("{url}?holder=a&token={t}&key={theirs}"));
    assert_eq!(borrowed.status, 403, "{borrowed:?}");

    // No one else sees it: not a read, not a conflict.
    let read = get(&url);
    assert!(read.body.get("key").is_none(), "{read:?}");
    let conflict = acquire(&url, "b", 60_000);
    assert_eq!(conflict.status, 409);
    assert!(!conflict.text.contains(&key), "{conflict:?}");

    // The holder, with it.
    let renewed = put(
        &url,
        &format!(r#"{{"holder":"a","token":{t},"key":"{key}"}}"#),
    );
    assert_eq!(renewed.status, 200, "{renewed:?}");
    assert_eq!(
        renewed.body["key"],
        key.as_str(),
        "a renewal keeps the grant's key"
    );
    assert_eq!(release_granted(&url, &granted).status, 204);
}

/// `tenure lock` prints the key; `tenure unlock --grant-key` uses it.
#[test]
fn the_cli_prints_the_key_and_unlocks_with_it() {
    let dev = Dev::start(&[]);
    acquire_when_ready(&format!("{}/v1/locks/warm", dev.url()), "w", 60_000);
    let endpoints = dev.url();
    let run = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .args(["--endpoints", &endpoints])
            .output()
            .expect("run tenure")
    };
    let locked = run(&["lock", "cli-keyed", "--holder", "me", "--json"]);
    assert!(locked.status.success(), "{locked:?}");
    let granted: serde_json::Value = serde_json::from_slice(&locked.stdout).expect("JSON");
    let (token, key) = (
        granted["token"].to_string(),
        granted["key"].as_str().expect("key"),
    );
    let without = run(&["unlock", "cli-keyed", "--holder", "me", "--token", &token]);
    assert!(!without.status.success(), "{without:?}");
    let with = run(&[
        "unlock",
        "cli-keyed",
        "--holder",
        "me",
        "--token",
        &token,
        "--grant-key",
        key,
    ]);
    assert!(with.status.success(), "{with:?}");
}

/// `tenure bench renew --url` renews with the key its grant came with.
#[test]
fn bench_renew_against_a_cluster_with_keys_renews_with_the_key() {
    let dev = Dev::start(&[]);
    acquire_when_ready(&format!("{}/v1/locks/warm", dev.url()), "w", 60_000);
    let out = Command::new(BIN)
        .args(["bench", "renew", "--count", "20", "--url", &dev.url()])
        .output()
        .expect("run tenure bench renew");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(said.contains("20 renewals"), "{said}");
}
