//! What went wrong with a request, and the count of each kind over a
//! workload. Nothing that fails is retried silently: every failure is
//! counted here, by kind, before the client does what the recipe does next.

use serde_json::{json, Value};
use std::fmt;

/// A request that got no answer the recipe could act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The server answered 5xx (tenure: `503`, no quorum within the
    /// request deadline; etcd's gateway: `503` for "request timed out",
    /// "leader changed", ...).
    Server { status: u16, text: String },
    /// No answer within the client's timeout, or (a long poll, a watch)
    /// the wait ran out without the grant.
    Timeout(String),
    /// The connection could not be made, or broke: what a dead node looks
    /// like to its clients.
    Connection(String),
    /// Anything else: an unexpected status or an answer that could not be
    /// read.
    Other(String),
}

impl Failure {
    /// A status the recipe has no meaning for.
    pub fn status(status: u16, text: &str) -> Failure {
        let text = text.trim().to_string();
        if (500..600).contains(&status) {
            Failure::Server { status, text }
        } else {
            Failure::Other(format!("{status} {text}"))
        }
    }

    pub fn of_ureq(e: &ureq::Error) -> Failure {
        match e {
            ureq::Error::Timeout(t) => Failure::Timeout(format!("no answer in time ({t})")),
            ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => {
                Failure::Connection(e.to_string())
            }
            ureq::Error::Io(io) => Failure::of_io(io),
            e => Failure::Other(e.to_string()),
        }
    }

    pub fn of_io(io: &std::io::Error) -> Failure {
        use std::io::ErrorKind as K;
        // A body reader wraps ureq's own error (a timeout, say) in an I/O
        // error.
        if let Some(u) = io.get_ref().and_then(|i| i.downcast_ref::<ureq::Error>()) {
            return Failure::of_ureq(u);
        }
        match io.kind() {
            K::TimedOut | K::WouldBlock => Failure::Timeout(io.to_string()),
            K::ConnectionRefused
            | K::ConnectionReset
            | K::ConnectionAborted
            | K::BrokenPipe
            | K::NotConnected
            | K::UnexpectedEof => Failure::Connection(io.to_string()),
            _ => Failure::Other(io.to_string()),
        }
    }

    /// The failure behind an error from the election candidates or etcd's
    /// `waitDeletes`, which carry a `ureq::Error`, an I/O error from a
    /// streamed body, or a `failover::HttpStatus`.
    pub fn of_anyhow(e: &anyhow::Error) -> Failure {
        for cause in e.chain() {
            if let Some(s) = cause.downcast_ref::<crate::failover::HttpStatus>() {
                return Failure::status(s.status, &s.text);
            }
            if let Some(u) = cause.downcast_ref::<ureq::Error>() {
                return Failure::of_ureq(u);
            }
            if let Some(io) = cause.downcast_ref::<std::io::Error>() {
                return Failure::of_io(io);
            }
        }
        Failure::Other(format!("{e:#}"))
    }

    pub fn is_connection(&self) -> bool {
        matches!(self, Failure::Connection(_))
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Server { status, text } => write!(f, "{status} {text}"),
            Failure::Timeout(t) => write!(f, "timeout: {t}"),
            Failure::Connection(t) => write!(f, "connection: {t}"),
            Failure::Other(t) => write!(f, "{t}"),
        }
    }
}

/// Failures of one workload by kind, with the first of each kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub server_5xx: u64,
    pub timeouts: u64,
    pub connection: u64,
    pub other: u64,
    pub first_5xx: Option<String>,
    pub first_timeout: Option<String>,
    pub first_connection: Option<String>,
    pub first_other: Option<String>,
}

impl Tally {
    pub fn count(&mut self, f: &Failure) {
        let (n, first) = match f {
            Failure::Server { .. } => (&mut self.server_5xx, &mut self.first_5xx),
            Failure::Timeout(_) => (&mut self.timeouts, &mut self.first_timeout),
            Failure::Connection(_) => (&mut self.connection, &mut self.first_connection),
            Failure::Other(_) => (&mut self.other, &mut self.first_other),
        };
        *n += 1;
        first.get_or_insert_with(|| f.to_string());
    }

    pub fn merge(&mut self, o: Tally) {
        self.server_5xx += o.server_5xx;
        self.timeouts += o.timeouts;
        self.connection += o.connection;
        self.other += o.other;
        self.first_5xx = self.first_5xx.take().or(o.first_5xx);
        self.first_timeout = self.first_timeout.take().or(o.first_timeout);
        self.first_connection = self.first_connection.take().or(o.first_connection);
        self.first_other = self.first_other.take().or(o.first_other);
    }

    /// What the cluster failed to serve: 5xx answers and timeouts.
    pub fn errors(&self) -> u64 {
        self.server_5xx + self.timeouts
    }

    pub fn json(&self) -> Value {
        json!({
            "server_5xx": self.server_5xx,
            "timeouts": self.timeouts,
            "connection_errors": self.connection,
            "other_failures": self.other,
            "first_5xx": self.first_5xx,
            "first_timeout": self.first_timeout,
            "first_connection_error": self.first_connection,
            "first_other_failure": self.first_other,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    #[test]
    fn a_5xx_is_a_server_error_and_any_other_status_is_other() {
        assert!(matches!(
            Failure::status(503, "{\"error\":\"no quorum\"}\n"),
            Failure::Server { status: 503, .. }
        ));
        assert!(matches!(Failure::status(500, ""), Failure::Server { .. }));
        assert!(matches!(Failure::status(400, "bad"), Failure::Other(t) if t == "400 bad"));
    }

    #[test]
    fn a_dead_node_is_a_connection_error_and_silence_a_timeout() {
        let io = |k| ureq::Error::Io(io::Error::new(k, "x"));
        assert!(Failure::of_ureq(&io(io::ErrorKind::ConnectionRefused)).is_connection());
        assert!(Failure::of_ureq(&io(io::ErrorKind::ConnectionReset)).is_connection());
        assert!(Failure::of_ureq(&io(io::ErrorKind::UnexpectedEof)).is_connection());
        assert!(Failure::of_ureq(&ureq::Error::ConnectionFailed).is_connection());
        assert!(matches!(
            Failure::of_ureq(&ureq::Error::Timeout(ureq::Timeout::Global)),
            Failure::Timeout(_)
        ));
        assert!(matches!(
            Failure::of_ureq(&io(io::ErrorKind::TimedOut)),
            Failure::Timeout(_)
        ));
    }

    #[test]
    fn errors_inside_anyhow_keep_their_kind() {
        let e = anyhow::Error::from(ureq::Error::Timeout(ureq::Timeout::Global)).context("watch");
        assert!(matches!(Failure::of_anyhow(&e), Failure::Timeout(_)));
        // A streamed body's reader wraps ureq's timeout in an I/O error.
        let wrapped = io::Error::other(ureq::Error::Timeout(ureq::Timeout::Global));
        let e = anyhow::Error::from(wrapped);
        assert!(matches!(Failure::of_anyhow(&e), Failure::Timeout(_)));
        let e = anyhow::Error::from(crate::failover::HttpStatus {
            url: "http://x/v3/kv/txn".into(),
            status: 503,
            text: "etcdserver: request timed out".into(),
        });
        assert!(matches!(
            Failure::of_anyhow(&e),
            Failure::Server { status: 503, .. }
        ));
        let e = anyhow::anyhow!("the etcd watch ended without the delete");
        assert!(matches!(Failure::of_anyhow(&e), Failure::Other(_)));
    }

    #[test]
    fn the_tally_counts_each_kind_and_keeps_the_first_of_each() {
        let mut a = Tally::default();
        a.count(&Failure::status(503, "first"));
        a.count(&Failure::status(503, "second"));
        a.count(&Failure::Timeout("slow".into()));
        a.count(&Failure::Connection("refused".into()));
        let mut b = Tally::default();
        b.count(&Failure::status(502, "later"));
        b.count(&Failure::Other("odd".into()));
        a.merge(b);
        assert_eq!(
            (a.server_5xx, a.timeouts, a.connection, a.other),
            (3, 1, 1, 1)
        );
        // A refused connection is expected of a dead node: not an error.
        assert_eq!(a.errors(), 4);
        assert_eq!(a.first_5xx.as_deref(), Some("503 first"));
        assert_eq!(a.json()["server_5xx"], 3);
        assert_eq!(a.json()["first_other_failure"], "odd");
    }
}
