//! Take a lock, work while it is held, release it.
//!
//! `tenure dev` in one terminal, then: `cargo run -p tenure-client --example lock`

use std::time::Duration;
use tenure_client::{Client, Lock};

#[tokio::main]
async fn main() -> Result<(), tenure_client::Error> {
    let endpoints = std::env::var("TENURE_ENDPOINTS")
        .unwrap_or_else(|_| tenure_client::DEV_ENDPOINTS.to_string());
    let client = Client::from_list(&endpoints)?;
    let lease = Lock::new(&client, "example-lock")
        .ttl(Duration::from_secs(5))
        .acquire()
        .await?;
    println!(
        "holding example-lock as {} with token {}",
        lease.holder(),
        lease.token()
    );
    let lost = lease.lost();
    tokio::select! {
        // The work: pass the token to whatever it writes to.
        () = tokio::time::sleep(Duration::from_secs(12)) => println!("work done"),
        reason = lost => println!("stopped: lost the lease ({reason})"),
    }
    lease.release().await?;
    println!("released");
    Ok(())
}
