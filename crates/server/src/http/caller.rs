//! Who sent a request: the bearer token it carries, else the name its
//! client certificate proves (`--https --client-ca`), else the address it
//! came from. Tokens and certificate names are granted permissions
//! (`auth.rs`); watches and long polls are bounded per caller
//! (`bounds.rs`), so one client cannot take a node's every stream.

use super::AppState;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::Response;
use std::net::IpAddr;
use std::sync::Arc;

/// What the transport knows of a connection, given to each of its
/// requests by the accept loop.
#[derive(Clone, Debug)]
pub struct Connection {
    pub ip: IpAddr,
    /// The name in the client's certificate, when it showed one that the
    /// node's client CA signed.
    pub certificate: Option<Arc<str>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Caller {
    Token(Arc<str>),
    Certificate(Arc<str>),
    Address(IpAddr),
    /// A request that came through no connection of the accept loop (the
    /// router driven in-process).
    Unknown,
}

impl Caller {
    /// A token names the caller only on a node that checks tokens:
    /// elsewhere anyone could send a new one with each request, and so
    /// never meet a bound per caller.
    pub fn of(headers: &HeaderMap, connection: Option<&Connection>, tokens: bool) -> Caller {
        if let Some(token) = bearer(headers).filter(|_| tokens) {
            return Caller::Token(token.into());
        }
        match connection {
            Some(Connection {
                certificate: Some(name),
                ..
            }) => Caller::Certificate(name.clone()),
            Some(Connection { ip, .. }) => Caller::Address(*ip),
            None => Caller::Unknown,
        }
    }

    /// For logs: never the token itself, only a fingerprint of it.
    pub fn describe(&self) -> String {
        match self {
            Caller::Token(token) => {
                let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
                let hex: String = digest.as_ref()[..4]
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                format!("the token with SHA-256 {hex}…")
            }
            Caller::Certificate(name) => format!("the client certificate {name:?}"),
            Caller::Address(ip) => format!("a client at {ip} without a token"),
            Caller::Unknown => "a client without a token".to_string(),
        }
    }
}

/// The token of `Authorization: Bearer TOKEN`.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// Name each request's caller, for the layers and handlers after this.
pub async fn identify(State(app): State<AppState>, mut request: Request, next: Next) -> Response {
    let connection = request.extensions().get::<Connection>();
    let caller = Caller::of(request.headers(), connection, app.auth.is_some());
    request.extensions_mut().insert(caller);
    next.run(request).await
}

/// The name a client certificate proves: its subject's common name, as
/// etcd and Consul take it. Read from a certificate rustls has already
/// verified against the client CA, so only its shape is checked here; a
/// certificate without a common name, or one that is not printable text,
/// names no one.
///
/// Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version
/// OPTIONAL, serialNumber, signature, issuer, validity, subject, ... } ...}
/// and a Name is a SEQUENCE OF SET OF SEQUENCE { type OID, value }. One
/// field of one structure: a reader of its own, rather than a general X.509
/// parser and its dozen crates.
pub fn certificate_name(der: &[u8]) -> Option<Arc<str>> {
    let (certificate, _) = Der::read(der, SEQUENCE)?;
    let (tbs, _) = Der::read(certificate, SEQUENCE)?;
    let mut rest = tbs;
    if rest.first() == Some(&VERSION) {
        rest = Der::read(rest, VERSION)?.1;
    }
    // serialNumber, signature, issuer, validity.
    for tag in [INTEGER, SEQUENCE, SEQUENCE, SEQUENCE] {
        rest = Der::read(rest, tag)?.1;
    }
    let (mut subject, _) = Der::read(rest, SEQUENCE)?;
    while !subject.is_empty() {
        let (mut set, after) = Der::read(subject, SET)?;
        subject = after;
        while !set.is_empty() {
            let (attribute, after) = Der::read(set, SEQUENCE)?;
            set = after;
            let (oid, value) = Der::read(attribute, OID)?;
            if oid != COMMON_NAME {
                continue;
            }
            let tag = *value.first()?;
            if ![UTF8_STRING, PRINTABLE_STRING, IA5_STRING].contains(&tag) {
                return None;
            }
            let (text, _) = Der::read(value, tag)?;
            let text = std::str::from_utf8(text).ok()?;
            let printable = !text.is_empty() && text.chars().all(|c| c.is_ascii_graphic());
            return printable.then(|| text.into());
        }
    }
    None
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const INTEGER: u8 = 0x02;
const OID: u8 = 0x06;
const VERSION: u8 = 0xa0;
const UTF8_STRING: u8 = 0x0c;
const PRINTABLE_STRING: u8 = 0x13;
const IA5_STRING: u8 = 0x16;
/// 2.5.4.3, id-at-commonName.
const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];

struct Der;

impl Der {
    /// The contents of the element at the start of `input`, which must
    /// carry `tag`, and what follows it.
    fn read(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
        let (&found, rest) = input.split_first()?;
        if found != tag {
            return None;
        }
        let (&first, mut rest) = rest.split_first()?;
        let length = if first < 0x80 {
            usize::from(first)
        } else {
            // Long form: the low bits count the length's bytes; four
            // are more than any certificate needs.
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 {
                return None;
            }
            let (bytes, after) = rest.split_at_checked(count)?;
            rest = after;
            bytes.iter().fold(0usize, |n, &b| (n << 8) | usize::from(b))
        };
        rest.split_at_checked(length)
    }
}

/// Fuzzing as for the other decoders: `PROPTEST_CASES=100000` for a long
/// run; `cargo test` runs proptest's 256 cases.
#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;

    fn issued(issue: impl FnOnce(&crate::tls::issue::Ca) -> crate::tls::TlsFiles) -> Vec<u8> {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = crate::tls::issue::Ca::open_or_create(dir.path()).expect("ca");
        let files = issue(&ca);
        CertificateDer::from_pem_file(files.cert)
            .expect("pem")
            .to_vec()
    }

    fn client_certificate(name: &str) -> Vec<u8> {
        issued(|ca| ca.issue_client(name).expect("client"))
    }

    #[test]
    fn a_client_certificate_names_its_common_name() {
        let der = client_certificate("ci-runner.7");
        assert_eq!(certificate_name(&der).as_deref(), Some("ci-runner.7"));
    }

    /// A tokens file is split on spaces, so a name with one could never be
    /// granted anything: it names no one, and its client is known by its
    /// address.
    #[test]
    fn a_common_name_with_a_space_names_no_one() {
        let id = tenure_core::NodeId(2);
        let der = issued(|ca| ca.issue_node(id, &["db.example".into()]).expect("node"));
        assert_eq!(
            certificate_name(&der),
            None,
            "its name is \"tenure node 2\""
        );
    }

    #[test]
    fn every_cut_of_a_certificate_names_no_one_or_its_name() {
        let der = client_certificate("alice");
        for cut in 0..der.len() {
            let name = certificate_name(&der[..cut]);
            assert!(name.is_none() || name.as_deref() == Some("alice"), "{cut}");
        }
    }

    thread_local! {
        static FIXTURE: Vec<u8> = client_certificate("fixture");
    }

    proptest! {
        /// Arbitrary bytes, and a real certificate with bytes changed: no
        /// panic, and never a name that is not printable text.
        #[test]
        fn no_input_panics_the_reader(
            noise in prop::collection::vec(any::<u8>(), 0..512),
            changes in prop::collection::vec((any::<usize>(), any::<u8>()), 0..8),
        ) {
            let mut changed = FIXTURE.with(Clone::clone);
            for (at, byte) in &changes {
                let at = at % changed.len();
                changed[at] = *byte;
            }
            for input in [noise, changed] {
                if let Some(name) = certificate_name(&input) {
                    prop_assert!(name.chars().all(|c| c.is_ascii_graphic()));
                }
            }
        }
    }
}
