//! HTTPS to a cluster served with `--https`: the CA the client trusts and,
//! for a cluster that asks for one (`--client-ca`), the certificate it
//! presents.

use crate::Error;
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::PathBuf;
use std::sync::Arc;

/// Files in PEM, as `tenure certs` makes them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// The CA certificates that sign the nodes' certificates.
    pub ca: Option<PathBuf>,
    /// A client certificate, for a cluster that requires one.
    pub cert: Option<PathBuf>,
    /// The client certificate's key.
    pub key: Option<PathBuf>,
}

pub(crate) type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// A connector for `http://` and `https://` endpoints alike.
pub(crate) fn connector(tcp: HttpConnector, tls: &TlsOptions) -> Result<Connector, Error> {
    let invalid = |field: &str, e: String| Error::invalid(e, Some(field));
    let mut roots = rustls::RootCertStore::empty();
    if let Some(ca) = &tls.ca {
        let read =
            |e: rustls::pki_types::pem::Error| invalid("ca", format!("{}: {e}", ca.display()));
        for certificate in CertificateDer::pem_file_iter(ca).map_err(read)? {
            roots
                .add(certificate.map_err(read)?)
                .map_err(|e| invalid("ca", format!("{}: {e}", ca.display())))?;
        }
        if roots.is_empty() {
            return Err(invalid(
                "ca",
                format!("{} holds no certificate", ca.display()),
            ));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("ca", e.to_string()))?
        .with_root_certificates(roots);
    let config = match (&tls.cert, &tls.key) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert), Some(key)) => {
            let read = |e: rustls::pki_types::pem::Error| {
                invalid("cert", format!("{}: {e}", cert.display()))
            };
            let chain = CertificateDer::pem_file_iter(cert)
                .map_err(read)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(read)?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| invalid("key", format!("{}: {e}", key.display())))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| invalid("cert", e.to_string()))?
        }
        _ => {
            return Err(invalid(
                "cert",
                "a client certificate needs both cert and key".into(),
            ))
        }
    };
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http()
        .enable_http1()
        .wrap_connector(tcp))
}
