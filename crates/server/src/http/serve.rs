//! The HTTP accept loop. axum's own `serve` offers neither a header read
//! timeout nor a connection bound, so connections are served by hyper
//! directly, with axum's router as the service.
//!
//! Two bounds on connections: in all, and per client address, so that one
//! client cannot take every slot (Consul's CVE-2020-7219). A connection
//! over either is answered at once with a `503`, a JSON reason and
//! `Retry-After`, so the client knows to go to another node rather than
//! wait or see a bare close; each is counted, and logged now and then.

use super::bounds::Shares;
use super::caller::{certificate_name, Connection};
use super::slots::{Activity, Slots, Taken};
use crate::config::HttpLimits;
use crate::metrics::Metrics;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tower::Service;

/// Serve `app` on `listener` until `stop` flips, then stop accepting and
/// give requests in flight `limits.drain_timeout` to finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    tls: Option<Arc<crate::tls::HttpsTls>>,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    let slots = Slots::new(limits.max_connections);
    let clients = Shares::<IpAddr>::new(limits.max_connections_per_client);
    let lingering = Arc::new(Semaphore::new(MAX_LINGERING));
    let mut last_logged: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => break,
        };
        let (stream, client) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "http accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let refused = |reason: &'static str, error: String, last: &mut Option<Instant>| -> String {
            metrics.http_refused(reason);
            if last.is_none_or(|t| t.elapsed() >= REFUSAL_LOG_EVERY) {
                *last = Some(Instant::now());
                tracing::warn!(%client, "{error} (logged at most every 10 s; tenure_http_refused_total counts them)");
            }
            error
        };
        let slot = match slots.take() {
            Taken::Free(slot) => slot,
            Taken::Evicted(slot) => {
                metrics.http_refused("idle_evicted");
                slot
            }
            Taken::Full => {
                let error = format!(
                    "this node serves {} connections at once, each busy with a request; \
                     retry through another node",
                    limits.max_connections
                );
                let error = refused("connections", error, &mut last_logged);
                refuse(stream, acceptor(&tls), &error, &lingering);
                continue;
            }
        };
        let Some(per_client) = clients.take(client.ip()) else {
            let error = format!(
                "{} already has {} connections to this node, the most one address may; \
                 reuse connections, or raise --max-connections-per-client",
                client.ip(),
                limits.max_connections_per_client
            );
            let error = refused("connections_per_client", error, &mut last_logged);
            refuse(stream, acceptor(&tls), &error, &lingering);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = app.clone();
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            // Above the refusals middleware's own count, so that a request
            // with too many headers hears why in JSON rather than get
            // hyper's bare 431 (which starts past 100 by default).
            .max_headers(super::refusals::HYPER_MAX_HEADERS);
        let watcher = graceful.watcher();
        let tls = acceptor(&tls);
        tokio::spawn(async move {
            let mut slot = slot;
            let activity = Arc::clone(&slot.activity);
            let served = async {
                match tls {
                    None => {
                        let connection = Connection {
                            ip: client.ip(),
                            certificate: None,
                        };
                        let service = service(router, activity, connection);
                        let connection = http.serve_connection(TokioIo::new(stream), service);
                        let _ = watcher.watch(connection).await;
                    }
                    // The handshake counts against the header read timeout:
                    // a client that opens and says nothing holds its slot
                    // no longer over TLS than without.
                    Some(tls) => {
                        let handshake =
                            tokio::time::timeout(limits.header_read_timeout, tls.accept(stream));
                        if let Ok(Ok(stream)) = handshake.await {
                            let certificate = stream
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|chain| chain.first())
                                .and_then(|leaf| certificate_name(leaf));
                            let connection = Connection {
                                ip: client.ip(),
                                certificate,
                            };
                            let service = service(router, activity, connection);
                            let connection = http.serve_connection(TokioIo::new(stream), service);
                            let _ = watcher.watch(connection).await;
                        }
                    }
                }
            };
            // Evicted for a newcomer: dropping the connection closes it.
            tokio::select! {
                () = served => {}
                _ = &mut slot.evicted => {}
            }
            drop((slot, per_client));
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("http requests still in flight after the drain timeout; closing them");
    }
}

/// The router as one connection's service: each request carries what the
/// transport knows of its caller, and keeps the connection busy (so not
/// evicted for a newcomer, `slots.rs`) until its answer's head is out.
fn service(
    router: Router,
    activity: Arc<Activity>,
    connection: Connection,
) -> impl hyper::service::Service<
    hyper::Request<Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Send,
> + Clone {
    hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(connection.clone());
        let busy = activity.begin();
        let answer = router.clone().call(request);
        async move {
            let answer = answer.await;
            drop(busy);
            answer
        }
    })
}

fn acceptor(tls: &Option<Arc<crate::tls::HttpsTls>>) -> Option<tokio_rustls::TlsAcceptor> {
    tls.as_ref().map(|tls| tls.acceptor())
}

/// Refusals of connections are logged at most this often.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// Answer a connection that will not be served: a whole `503` with a JSON
/// reason, then close. Closing while the client's request is unread would
/// reset the connection and could destroy the answer before the client
/// reads it, so the request is read and dropped first, for a moment.
///
/// At most `MAX_LINGERING` refused connections linger at once: a flood
/// past that is closed bare, rather than spend this process's descriptors
/// on answering it.
fn refuse(
    stream: TcpStream,
    tls: Option<tokio_rustls::TlsAcceptor>,
    error: &str,
    lingering: &Arc<Semaphore>,
) {
    let Ok(permit) = lingering.clone().try_acquire_owned() else {
        return;
    };
    let body = serde_json::json!({ "error": error, "outcome_unknown": false }).to_string();
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         retry-after: {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        super::error::RETRY_AFTER_SECS,
        body.len()
    );
    tokio::spawn(async move {
        let answer = async {
            match tls {
                None => answer_and_close(stream, &response).await,
                Some(tls) => answer_and_close(tls.accept(stream).await?, &response).await,
            }
        };
        let _ = tokio::time::timeout(REFUSAL_LINGER, answer).await;
        drop(permit);
    });
}

async fn answer_and_close<S>(mut stream: S, response: &str) -> std::io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await?;
    let mut sink = [0u8; 1024];
    while stream.read(&mut sink).await? > 0 {}
    Ok(())
}

/// How long a refused connection is given to take its answer.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);
/// Refused connections being answered at once.
const MAX_LINGERING: usize = 256;
