//! `Watch`: a stream of a name's states from `GET /v1/locks/{name}?watch=true`
//! (NDJSON, one line at once and one per change), reconnecting to the next
//! node whenever a stream ends.

use crate::client::{jittered, Client};
use crate::error::Error;
use crate::state::LeaseState;
use futures_util::Stream;
use http_body_util::BodyExt;
use hyper::StatusCode;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tenure_core::LeaseName;
use tokio::sync::mpsc;

/// States buffered for a slow reader before the watch waits on it.
const STATES_BUFFERED: usize = 16;
/// A line longer than this is not from a tenure node.
const MAX_LINE_BYTES: usize = 64 * 1024;
const RECONNECT_FIRST: Duration = Duration::from_millis(50);
const RECONNECT_MAX: Duration = Duration::from_secs(2);
/// A node repeats a watch's state at least every 5 s: a stream silent for
/// this long is from a node that froze or was cut off, and the watch
/// moves to another.
const SILENCE_LIMIT: Duration = Duration::from_secs(15);

/// A stream of states of one name. Each reconnection starts with the
/// current state, so a reader may see the same state twice in a row.
/// Dropping it ends the watch.
pub struct Watch {
    rx: mpsc::Receiver<Result<LeaseState, Error>>,
}

impl Watch {
    pub(crate) fn start(client: &Client, name: &str) -> Result<Watch, Error> {
        let name = LeaseName::new(name).map_err(|e| Error::invalid(e, Some("name")))?;
        let (tx, rx) = mpsc::channel(STATES_BUFFERED);
        tokio::spawn(follow(client.clone(), name, tx));
        Ok(Watch { rx })
    }

    /// The next state; `None` only after a refusal was reported.
    pub async fn next_state(&mut self) -> Option<Result<LeaseState, Error>> {
        self.rx.recv().await
    }
}

impl Stream for Watch {
    type Item = Result<LeaseState, Error>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

async fn follow(client: Client, name: LeaseName, tx: mpsc::Sender<Result<LeaseState, Error>>) {
    let path = format!("/v1/locks/{}?watch=true", name.as_str());
    let mut node = client.preferred();
    let mut backoff = RECONNECT_FIRST;
    // Whether the follower was told that no node could be reached, since
    // lines last flowed: once per outage, not once per retry.
    let mut told_unreachable = false;
    loop {
        if tx.is_closed() {
            return;
        }
        match client.open_stream(&path, node).await {
            Ok((_, response)) if response.status() == StatusCode::OK => {
                let mut body = response.into_body();
                let mut line = Vec::new();
                // The last state sent on: a node's heartbeat repeats it.
                let mut last: Option<LeaseState> = None;
                loop {
                    let frame = tokio::select! {
                        f = body.frame() => f,
                        () = tokio::time::sleep(SILENCE_LIMIT) => break,
                        () = tx.closed() => return,
                    };
                    let Some(Ok(frame)) = frame else { break };
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    for &b in data.iter() {
                        if b != b'\n' {
                            line.push(b);
                            if line.len() > MAX_LINE_BYTES {
                                break;
                            }
                            continue;
                        }
                        if let Ok(state) = serde_json::from_slice::<LeaseState>(&line) {
                            // Lines flowed: the next failure starts a fresh backoff.
                            backoff = RECONNECT_FIRST;
                            told_unreachable = false;
                            let repeated = last.as_ref().is_some_and(|l| l.same_as(&state));
                            if !repeated {
                                last = Some(state.clone());
                                if tx.send(Ok(state)).await.is_err() {
                                    return;
                                }
                            }
                        }
                        line.clear();
                    }
                    if line.len() > MAX_LINE_BYTES {
                        break;
                    }
                }
            }
            Ok((_, response)) if response.status().is_client_error() => {
                let status = response.status();
                let body = response.into_body().collect().await.ok();
                let message = body
                    .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b.to_bytes()).ok())
                    .and_then(|v| v["error"].as_str().map(str::to_string))
                    .unwrap_or_else(|| format!("refused with {status}"));
                let refused = match status {
                    StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Error::Denied {
                        status: status.as_u16(),
                        message,
                    },
                    _ => Error::Invalid {
                        message,
                        field: None,
                    },
                };
                let _ = tx.send(Err(refused)).await;
                return;
            }
            Err(error) if !told_unreachable => {
                // Said as a watch line, as a node says it lost its quorum:
                // the follower keeps following, and knows why nothing comes.
                told_unreachable = true;
                let line = LeaseState::Unavailable {
                    error: format!("{error}; trying again"),
                };
                if tx.send(Ok(line)).await.is_err() {
                    return;
                }
            }
            Ok(_) | Err(_) => {}
        }
        // The stream ended or never started: another node, after a pause.
        node = node.wrapping_add(1);
        tokio::select! {
            () = tokio::time::sleep(jittered(backoff)) => {}
            () = tx.closed() => return,
        }
        backoff = (backoff * 2).min(RECONNECT_MAX);
    }
}
