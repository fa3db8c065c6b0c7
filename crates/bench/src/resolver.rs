//! Name resolution for the load generator's HTTP clients.
//!
//! ureq resolves the host of every request, pooled connection or not, and
//! when a timeout is set it does so on a freshly spawned thread, so that
//! a slow lookup can be abandoned. Every node in a run is addressed by an
//! IP literal, so that thread only ever parses a number, at the price of a
//! thread's creation and teardown per request: profiled during the try-lock
//! step, that churn was most of the load generator's CPU, and the load
//! generator used more of the two cores than the three nodes it measured.
//! The system answering more requests per second paid the most for it.
//!
//! This resolver answers an IP literal at once, and hands any other host
//! to ureq's own resolver.

use std::net::{IpAddr, SocketAddr};
use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

#[derive(Debug, Default)]
pub struct LiteralFirst {
    fallback: DefaultResolver,
}

impl Resolver for LiteralFirst {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        match literal(uri) {
            Some(addr) => {
                let mut found = self.empty();
                found.push(addr);
                Ok(found)
            }
            None => self.fallback.resolve(uri, config, timeout),
        }
    }
}

/// The address of a URI whose host is an IP literal (`[::1]` included)
/// with its port, or the scheme's default port.
fn literal(uri: &Uri) -> Option<SocketAddr> {
    let authority = uri.authority()?;
    let host = authority.host();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let ip: IpAddr = host.parse().ok()?;
    let port = authority.port_u16().or(match uri.scheme_str()? {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    })?;
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(uri: &str) -> Option<SocketAddr> {
        literal(&uri.parse().expect("a valid URI"))
    }

    #[test]
    fn an_ip_literal_is_its_own_address() {
        assert_eq!(
            of("http://127.0.0.1:2379/v3/kv"),
            "127.0.0.1:2379".parse().ok()
        );
        assert_eq!(
            of("https://[::1]:8443/v1/locks/a"),
            "[::1]:8443".parse().ok()
        );
        assert_eq!(of("http://10.0.0.7/"), "10.0.0.7:80".parse().ok());
    }

    #[test]
    fn a_host_name_is_left_to_the_system() {
        assert_eq!(of("http://localhost:2379/"), None);
        assert_eq!(of("http://node-1.example:2379/"), None);
    }
}
