//! Why a request to a node failed: refused, never sent, or lost on the way.

pub(super) enum OnceError {
    /// The node refused the connection: nothing listens there.
    Refused(String),
    /// No connection: the request never left.
    NotSent(String),
    /// Sent, or possibly sent, and then failed.
    Failed(String),
}

/// The innermost cause of `e`: "Connection refused (os error 111)"
/// rather than hyper's "client error (Connect)".
pub(super) fn deepest_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// Whether `e` is a connection the node refused.
pub(super) fn refused(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        // A TLS failure (an untrusted certificate, a client certificate
        // refused) is as final as a closed port for a one-shot call.
        if c.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return true;
            }
            // An io::Error's source skips the error it wraps: look inside.
            if let Some(inner) = io.get_ref() {
                cause = Some(inner as &(dyn std::error::Error + 'static));
                continue;
            }
            return false;
        }
        cause = c.source();
    }
    false
}
