//! `LeaderElection` against a real three-process cluster: one leader at a
//! time, every change observed, and a resignation handing over at once.

mod common;

use common::Cluster;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tenure_client::{Client, LeaderElection};
use tokio::sync::{mpsc, oneshot};

enum Event {
    Won { id: String, at: Instant },
    Resigning { id: String, at: Instant },
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_campaigners_lead_one_at_a_time_and_resigning_hands_over_at_once() {
    let cluster = tokio::task::spawn_blocking(Cluster::start)
        .await
        .expect("cluster");
    let endpoints: Vec<String> = (1..=3).map(|i| cluster.url(i)).collect();
    let client = Client::new(&endpoints).expect("client");
    // Wait until the cluster answers reads: it connects its peers first.
    let ready = Instant::now() + Duration::from_secs(20);
    while client.read("leader").await.is_err() {
        assert!(Instant::now() < ready, "the cluster never became ready");
    }

    // A ttl far longer than the test's handover bound: a handover within
    // it can only come from the resignation, not from an expiry.
    let ttl = Duration::from_secs(10);
    let observer = LeaderElection::new(&client, "leader");
    let mut changes = observer.observe().expect("observe");
    let first_seen = tokio::time::timeout(Duration::from_secs(5), changes.next())
        .await
        .expect("the watch's first line");
    assert_eq!(first_seen, Some(None), "nobody leads yet");

    let (events, mut event_rx) = mpsc::unbounded_channel();
    let mut resign_tx = HashMap::new();
    let mut tasks = Vec::new();
    for id in ["a", "b", "c"] {
        let election = Arc::new(LeaderElection::new(&client, "leader").ttl(ttl));
        let (tx, rx) = oneshot::channel::<()>();
        resign_tx.insert(id.to_string(), tx);
        let events = events.clone();
        tasks.push(tokio::spawn(async move {
            let me = election.campaign(id).await.expect("campaign");
            assert_eq!(me.id, id);
            let _ = events.send(Event::Won {
                id: id.into(),
                at: Instant::now(),
            });
            let _ = rx.await;
            assert!(
                election.is_leader(),
                "{id} lost leadership before resigning"
            );
            let _ = events.send(Event::Resigning {
                id: id.into(),
                at: Instant::now(),
            });
            election.resign().await.expect("resign");
            assert!(!election.is_leader());
        }));
    }

    let mut order = Vec::new();
    let mut last_resign: Option<Instant> = None;
    for round in 0..3 {
        let within = if round == 0 {
            Duration::from_secs(10)
        } else {
            Duration::from_secs(1)
        };
        let (id, won_at) = match tokio::time::timeout(within, event_rx.recv()).await {
            Ok(Some(Event::Won { id, at })) => (id, at),
            Ok(Some(Event::Resigning { id, .. })) => panic!("{id} resigned twice"),
            Ok(None) => panic!("campaigners ended"),
            Err(_) => panic!("no leader within {within:?} (round {round})"),
        };
        if let Some(resigned) = last_resign {
            assert!(
                won_at > resigned,
                "{id} won before the previous leader stopped"
            );
        }
        // Exactly one leader: the cluster says so, and nobody else won.
        let leader = observer
            .leader()
            .await
            .expect("read")
            .expect("someone leads");
        assert_eq!(leader.id, id);
        assert!(
            event_rx.try_recv().is_err(),
            "a second leader while {id} leads"
        );
        order.push(id.clone());
        resign_tx
            .remove(&id)
            .expect("a candidate")
            .send(())
            .expect("resign signal");
        match tokio::time::timeout(Duration::from_secs(5), event_rx.recv()).await {
            Ok(Some(Event::Resigning { id: r, at })) => {
                assert_eq!(r, id);
                last_resign = Some(at);
            }
            _ => panic!("{id} did not resign"),
        }
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(10), t)
            .await
            .expect("campaigner ends")
            .expect("campaigner ok");
    }

    // The observer saw each leader, in order (with "nobody" in between
    // where the watch caught the free moment).
    let mut seen = Vec::new();
    while seen.len() < order.len() {
        match tokio::time::timeout(Duration::from_secs(5), changes.next()).await {
            Ok(Some(Some(leader))) => seen.push(leader.id),
            Ok(Some(None)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    assert_eq!(seen, order);
    drop(cluster);
}
