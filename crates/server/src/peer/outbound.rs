//! One task per peer: dial, say hello, then write queued messages; on any
//! error, reconnect after a jittered, growing pause.

use super::frame::{self, Body, Frame, PROTOCOL_VERSION};
use super::{framed, Conn, FrameReader, FrameWriter, LinkState};
use crate::clock::Clock;
use crate::metrics::Metrics;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tenure_core::{Message, NodeId};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

const FIRST_BACKOFF: Duration = Duration::from_millis(50);
/// Short: a restarted peer should be back in the quorum within a second.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a peer may take to answer this node's hello.
const HELLO_ANSWER_TIMEOUT: Duration = Duration::from_secs(2);
/// A peer that stops reading must not hold messages forever.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// Messages written before one flush.
const MAX_WRITE_BATCH: usize = 256;
/// A link with nothing to say for this long sends a `Tick`, so that the
/// peer can keep measuring this node's clock (`rates.rs`).
const TICK_EVERY: Duration = Duration::from_millis(50);

pub(super) async fn run(
    me: super::Hello,
    peer: NodeId,
    addr: String,
    mut queue: mpsc::Receiver<(tenure_core::Stamp, Message)>,
    link: Arc<LinkState>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let hello = Body::Hello {
        max_drift_ppm: me.max_drift_ppm,
        identity: me.identity.to_string(),
        incarnation: me.incarnation,
        boot: me.boot,
    };
    let dialer = Dialer {
        stamp: Stamp {
            me: me.me,
            clock: me.clock,
        },
        hello,
        tls: me.tls.clone(),
    };
    let mut backoff = FIRST_BACKOFF;
    let mut was_up = false;
    // A link that never came up (a wrong address, a peer not started) is
    // said once it has failed for a while, then at most every minute.
    let mut quiet = Quiet::new();
    loop {
        // While not connected, whatever is queued is lost, as it would be on
        // the wire: fresh messages must not queue behind stale ones.
        let stream = tokio::select! {
            s = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addr)) => s,
            () = discard(&mut queue, &metrics, peer) => return,
            _ = shutdown.changed() => return,
        };
        match stream {
            Ok(Ok(stream)) => {
                let began = tokio::time::Instant::now();
                let result = session(&dialer, peer, stream, &mut queue, &link, &mut shutdown).await;
                link.set_connected(false);
                // A link that lasted is redialled at once; one that the
                // peer closes as soon as it opens (it refuses this node's
                // hello) backs off as a failed dial does, rather than being
                // redialled, and logged, every 50 ms.
                if began.elapsed() >= MAX_BACKOFF {
                    backoff = FIRST_BACKOFF;
                }
                match result {
                    Ok(()) => return, // Shutdown, or the node loop is gone.
                    Err(e) => tracing::info!(%peer, %addr, error = %e, "peer link lost"),
                }
                was_up = true;
            }
            Ok(Err(e)) => {
                if was_up {
                    tracing::debug!(%peer, %addr, error = %e, "peer connect failed");
                } else if quiet.should_say() {
                    tracing::warn!(%peer, %addr, error = %e, "cannot reach peer (still trying)");
                }
            }
            Err(_) => {
                if !was_up && quiet.should_say() {
                    tracing::warn!(%peer, %addr, "cannot reach peer: connect timed out (still trying)");
                } else {
                    tracing::debug!(%peer, %addr, "peer connect timed out");
                }
            }
        }
        let pause = jittered(backoff);
        backoff = (backoff * 2).min(MAX_BACKOFF);
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = discard(&mut queue, &metrics, peer) => return,
            _ = shutdown.changed() => return,
        }
    }
}

/// When a link that never came up is worth a warning: after it has failed
/// for `QUIET_FOR`, then every `SAY_EVERY`.
struct Quiet {
    since: tokio::time::Instant,
    said: Option<tokio::time::Instant>,
}

const QUIET_FOR: Duration = Duration::from_secs(5);
const SAY_EVERY: Duration = Duration::from_secs(60);

impl Quiet {
    fn new() -> Quiet {
        Quiet {
            since: tokio::time::Instant::now(),
            said: None,
        }
    }

    fn should_say(&mut self) -> bool {
        let now = tokio::time::Instant::now();
        let due = match self.said {
            None => now.duration_since(self.since) >= QUIET_FOR,
            Some(at) => now.duration_since(at) >= SAY_EVERY,
        };
        if due {
            self.said = Some(now);
        }
        due
    }
}

/// Who writes, and the clock each frame is stamped with.
#[derive(Clone, Copy)]
struct Stamp {
    me: NodeId,
    clock: Clock,
}

/// What this node sends first on every link, and how it opens one.
struct Dialer {
    stamp: Stamp,
    hello: Body,
    tls: Option<Arc<crate::tls::PeerTls>>,
}

async fn session(
    dialer: &Dialer,
    peer: NodeId,
    stream: TcpStream,
    queue: &mut mpsc::Receiver<(tenure_core::Stamp, Message)>,
    link: &LinkState,
    shutdown: &mut watch::Receiver<bool>,
) -> io::Result<()> {
    // Paxos messages are small and latency-bound: never wait to coalesce.
    stream.set_nodelay(true)?;
    let conn: Conn = match &dialer.tls {
        None => Box::new(stream),
        Some(tls) => Box::new(secure(tls, peer, stream, link).await?),
    };
    let me = dialer.stamp;
    let (mut answers, mut sink) = framed(conn);
    write_frames(&mut sink, [dialer.hello.clone()], me, None).await?;
    welcomed(&mut answers, peer, link).await?;
    link.set_connected(true);
    tracing::info!(%peer, "peer link up");
    let mut tick = tokio::time::interval(TICK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut wrote = true;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if !wrote {
                    write_frames(&mut sink, [Body::Tick], me, link.echo()).await?;
                }
                wrote = false;
            }
            message = queue.recv() => {
                let Some(message) = message else { return Ok(()) };
                let (stamp, message) = message;
                let mut batch = vec![Body::Message(stamp, message)];
                while batch.len() < MAX_WRITE_BATCH {
                    match queue.try_recv() {
                        Ok((stamp, m)) => batch.push(Body::Message(stamp, m)),
                        Err(_) => break,
                    }
                }
                write_frames(&mut sink, batch, me, link.echo()).await?;
                wrote = true;
            }
            // After its welcome the peer never writes on this connection,
            // so a read returns only when it closed or died: notice at
            // once, not at the next write.
            _ = answers.next() => {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "peer closed the connection"));
            }
            _ = shutdown.changed() => return Ok(()),
        }
    }
}

/// Wait for the peer's answer to this node's hello. A refusal says why,
/// and is logged once for as long as the reason stays the same: the link
/// redials with a growing pause meanwhile.
async fn welcomed(answers: &mut FrameReader, peer: NodeId, link: &LinkState) -> io::Result<()> {
    let answer = tokio::time::timeout(HELLO_ANSWER_TIMEOUT, answers.next())
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer to this node's hello"))?
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed without answering this node's hello (not a tenure node of this version?)",
            )
        })??;
    match frame::decode(&answer).map_err(io::Error::other)?.body {
        Body::Welcome => {
            link.new_refusal(None);
            Ok(())
        }
        Body::Refused { reason } => {
            if link.new_refusal(Some(&reason)) {
                tracing::error!(%peer, "peer refuses this node: {reason}");
            }
            Err(io::Error::new(io::ErrorKind::PermissionDenied, reason))
        }
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the answer to this node's hello is neither a welcome nor a refusal",
        )),
    }
}

/// Open TLS on `stream` to `peer`, which must prove its id. A failure is
/// logged once for as long as its reason stays the same, as a refused
/// hello is.
async fn secure(
    tls: &crate::tls::PeerTls,
    peer: NodeId,
    stream: TcpStream,
    link: &LinkState,
) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let opened = tokio::time::timeout(HELLO_ANSWER_TIMEOUT, tls.connect(peer, stream))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no TLS handshake with the peer"))?;
    opened.map_err(|e| {
        let reason = format!("TLS with the peer failed: {e}");
        if link.new_refusal(Some(&reason)) {
            tracing::error!(%peer, "{reason}");
        }
        io::Error::new(io::ErrorKind::PermissionDenied, reason)
    })
}

async fn write_frames(
    sink: &mut FrameWriter,
    bodies: impl IntoIterator<Item = Body>,
    me: Stamp,
    echo_offset_us: Option<i64>,
) -> io::Result<()> {
    let work = async {
        for body in bodies {
            let bytes = frame::encode(&Frame {
                version: PROTOCOL_VERSION,
                from: me.me,
                sent_at_us: me.clock.now().as_micros(),
                echo_offset_us,
                body,
            })
            .map_err(io::Error::other)?;
            sink.feed(bytes).await?;
        }
        SinkExt::<Bytes>::flush(sink).await
    };
    tokio::time::timeout(WRITE_TIMEOUT, work)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "peer stopped reading"))?
}

/// Drop queued messages until the queue closes.
async fn discard(
    queue: &mut mpsc::Receiver<(tenure_core::Stamp, Message)>,
    metrics: &Metrics,
    peer: NodeId,
) {
    while queue.recv().await.is_some() {
        metrics.peer_dropped(peer.0);
    }
}

/// A pause in `[d/2, d]`, so that nodes restarted together do not redial in
/// lockstep.
fn jittered(d: Duration) -> Duration {
    let random = RandomState::new().hash_one(std::time::Instant::now());
    let half = d / 2;
    let spread = u64::try_from(half.as_micros()).unwrap_or(u64::MAX).max(1);
    half + Duration::from_micros(random % spread)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_half_to_whole() {
        for _ in 0..100 {
            let d = jittered(Duration::from_millis(100));
            assert!(d >= Duration::from_millis(50) && d <= Duration::from_millis(100));
        }
    }
}
