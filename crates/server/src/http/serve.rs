//! The HTTP accept loop. axum's own `serve` offers neither a header read
//! timeout nor a connection bound, so connections are served by hyper
//! directly, with axum's router as the service.
//!
//! Two bounds on connections: in all (beyond it, clients wait in the
//! kernel's backlog), and per client address (beyond it, the connection is
//! closed at once), so that one client cannot take every slot (Consul's
//! CVE-2020-7219).

use crate::config::HttpLimits;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tower::Service;

/// Serve `app` on `listener` until `stop` flips, then stop accepting and
/// give requests in flight `limits.drain_timeout` to finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    mut stop: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let clients: Clients = Arc::default();
    loop {
        // At the connection bound, stop accepting: further clients wait in
        // the kernel's backlog instead of costing this process memory.
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => s,
            _ = stop.changed() => break,
        };
        let Ok(slot) = slot else { break };
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
        let Some(per_client) =
            PerClient::take(&clients, client.ip(), limits.max_connections_per_client)
        else {
            tracing::debug!(%client, "too many connections from one client; closing");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = app.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            router.clone().call(request)
        });
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            // Above the refusals middleware's own count, so that a request
            // with too many headers hears why in JSON rather than get
            // hyper's bare 431 (which starts past 100 by default).
            .max_headers(super::refusals::HYPER_MAX_HEADERS)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _ = connection.await;
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

type Clients = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// One client address's share of the connections; given back on drop.
struct PerClient {
    clients: Clients,
    ip: IpAddr,
}

impl PerClient {
    fn take(clients: &Clients, ip: IpAddr, limit: usize) -> Option<PerClient> {
        let mut open = clients.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(ip).or_default();
        if *count >= limit {
            return None;
        }
        *count += 1;
        Some(PerClient {
            clients: clients.clone(),
            ip,
        })
    }
}

impl Drop for PerClient {
    fn drop(&mut self) {
        let mut open = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}
