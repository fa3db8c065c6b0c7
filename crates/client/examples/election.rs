//! Campaign for leadership, print who leads, resign after a while.
//!
//! Run it in two or three terminals against `tenure dev`:
//! `cargo run -p tenure-client --example election -- node-a`

use futures_util::StreamExt;
use std::time::Duration;
use tenure_client::{Client, LeaderElection};

#[tokio::main]
async fn main() -> Result<(), tenure_client::Error> {
    let id = std::env::args()
        .nth(1)
        .unwrap_or_else(tenure_client::default_holder_id);
    let endpoints = std::env::var("TENURE_ENDPOINTS")
        .unwrap_or_else(|_| tenure_client::DEV_ENDPOINTS.to_string());
    let client = Client::from_list(&endpoints)?;
    let election = LeaderElection::new(&client, "example-election").ttl(Duration::from_secs(3));

    let mut changes = election.observe()?;
    tokio::spawn(async move {
        while let Some(leader) = changes.next().await {
            match leader {
                Some(l) => println!("leader: {} (token {})", l.id, l.token),
                None => println!("no leader"),
            }
        }
    });

    let me = election.campaign(&id).await?;
    println!("{id} leads with token {}", me.token);
    tokio::select! {
        () = tokio::time::sleep(Duration::from_secs(10)) => {}
        reason = election.lost() => println!("lost leadership: {reason}"),
    }
    election.resign().await?;
    println!("{id} resigned");
    Ok(())
}
