//! Accept connections from peers; each must open with a hello from a
//! member, then carries that member's messages into the node loop.

use super::frame::{self, Body};
use super::PeerEvent;
use super::PeerView;
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_util::codec::FramedRead;

/// Inbound peer connections at once; a cluster has at most 7 members, so
/// anything near this is a misbehaving client on the peer port.
const MAX_INBOUND: usize = 64;
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) async fn accept_loop(
    listener: TcpListener,
    view: PeerView,
    events: mpsc::Sender<PeerEvent>,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(MAX_INBOUND));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let (stream, addr) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors, usually: pause rather than spin.
                tracing::warn!(error = %e, "peer accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%addr, "too many inbound peer connections; refusing");
            continue;
        };
        let (view, events, shutdown) = (view.clone(), events.clone(), shutdown.clone());
        tokio::spawn(async move {
            if let Err(why) = connection(stream, &view, events, shutdown).await {
                tracing::debug!(%addr, %why, "inbound peer connection closed");
            }
            drop(slot);
        });
    }
}

async fn connection(
    stream: TcpStream,
    view: &PeerView,
    events: mpsc::Sender<PeerEvent>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), String> {
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut frames = FramedRead::new(stream, frame::codec());
    let hello = tokio::time::timeout(HELLO_TIMEOUT, frames.next())
        .await
        .map_err(|_| "no hello in time".to_string())?
        .ok_or("closed before hello")?
        .map_err(|e| e.to_string())?;
    let hello = frame::decode(&hello).map_err(|e| e.to_string())?;
    let from = hello.from;
    let Body::Hello { max_drift_ppm } = hello.body else {
        return Err(format!("bad hello from {from}"));
    };
    if from == view.me {
        return Err(format!("bad hello from {from}"));
    }
    // Ids are not authenticated: the peer network must be private (see
    // docs/operations.md). Membership is still checked, so a stray client
    // cannot inject messages under an id the core does not know.
    let Some((_, link)) = view.members.get(&from) else {
        return Err(format!("{from} is not a member"));
    };
    if max_drift_ppm != view.max_drift_ppm {
        let why = format!(
            "peer {from} runs with --max-drift-ppm {max_drift_ppm}, this node with {}: \
             members that judge leases by different drift bounds could free one early; \
             refusing its messages until every member runs with the same bound",
            view.max_drift_ppm
        );
        if link.refuse_once() {
            tracing::error!("{why}");
        }
        return Err(why);
    }
    // A new connection may come from a restarted process, whose clock
    // readings start afresh.
    view.rates.forget(from);
    loop {
        let bytes = tokio::select! {
            f = frames.next() => f,
            _ = shutdown.changed() => return Ok(()),
        };
        let Some(bytes) = bytes else {
            return Err("closed".into());
        };
        let frame = frame::decode(&bytes.map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
        if frame.from != from {
            return Err(format!("{from} sent a frame signed {}", frame.from));
        }
        link.heard();
        view.rates
            .sample(from, view.clock.now().as_micros(), frame.sent_at_us);
        if let Body::Message(message) = frame.body {
            // Waiting here pushes back on the peer through TCP when the node
            // loop is busy, instead of buffering without bound.
            if events.send(PeerEvent { from, message }).await.is_err() {
                return Ok(()); // The node is stopping.
            }
        }
    }
}
