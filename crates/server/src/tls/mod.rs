//! Mutual TLS on peer links: a node's id is proven by its certificate, not
//! merely said in its hello.
//!
//! Every member holds a certificate signed by the cluster's CA whose names
//! (DNS SANs) include `node-{id}.tenure`. A dialling node accepts only the
//! peer that proves the id it dialled; an accepting node, after the hello,
//! accepts only a hello whose id the connection's certificate proves. So a
//! host without a certificate from the CA cannot send one frame, and a
//! member cannot speak in another member's name.
//!
//! Certificate validity is the one use of the wall clock in tenure: a node
//! whose wall clock is far off refuses or is refused (it stops serving),
//! which costs availability, never a lease's safety.

use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use tenure_core::NodeId;
use tokio_rustls::{TlsAcceptor, TlsConnector};

pub mod issue;

/// The name a node's certificate must carry: `node-{id}.tenure`.
pub fn node_name(id: NodeId) -> String {
    format!("node-{}.tenure", id.0)
}

fn server_name(id: NodeId) -> ServerName<'static> {
    // Always a valid DNS name: digits and a fixed suffix.
    ServerName::try_from(node_name(id)).unwrap_or_else(|_| unreachable!("node names are DNS names"))
}

/// Where a node's TLS material lives, in PEM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA certificates that sign members' certificates (several while
    /// a CA is being rotated).
    pub ca: PathBuf,
    /// This node's certificate, then any intermediates.
    pub cert: PathBuf,
    /// This node's private key.
    pub key: PathBuf,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("the CA file {path} holds no usable CA certificate: {reason}")]
    BadCa { path: PathBuf, reason: String },
    #[error(
        "the certificate in {cert} is not node {id}'s under the CA in {ca}: {reason} \
         (it must be signed by that CA, be valid now, and name {name})"
    )]
    NotThisNode {
        id: u16,
        name: String,
        cert: PathBuf,
        ca: PathBuf,
        reason: String,
    },
    #[error("cannot use the key in {path} with the certificate in {cert}: {reason}")]
    Key {
        path: PathBuf,
        cert: PathBuf,
        reason: String,
    },
}

/// One reading of the files: what each new connection uses.
struct Loaded {
    acceptor: TlsAcceptor,
    connector: TlsConnector,
    /// Checks a peer's certificate against a member's name, after its
    /// hello says which member it is.
    verifier: Arc<WebPkiServerVerifier>,
}

/// A node's peer TLS, read again on SIGHUP: connections made after a
/// reload use the new files, and established ones carry on.
pub struct PeerTls {
    me: NodeId,
    files: TlsFiles,
    loaded: RwLock<Arc<Loaded>>,
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerTls")
            .field("me", &self.me)
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl PeerTls {
    /// Read the files, and check that they make this node `me`.
    pub fn load(me: NodeId, files: TlsFiles) -> Result<PeerTls, TlsError> {
        let loaded = load(me, &files)?;
        Ok(PeerTls {
            me,
            files,
            loaded: RwLock::new(Arc::new(loaded)),
        })
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// Read the files again; on an error the material in use stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let loaded = load(self.me, &self.files)?;
        *self.loaded.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(loaded);
        Ok(())
    }

    fn current(&self) -> Arc<Loaded> {
        self.loaded
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        self.current().acceptor.clone()
    }

    /// Open TLS to member `peer`, which must prove that id.
    pub(crate) async fn connect<S>(
        &self,
        peer: NodeId,
        stream: S,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<S>>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let connector = self.current().connector.clone();
        connector.connect(server_name(peer), stream).await
    }

    /// Whether `certificates` (a chain the TLS handshake already verified
    /// against the CA) name member `id`; the reason if not.
    pub(crate) fn proves(
        &self,
        certificates: &[CertificateDer<'_>],
        id: NodeId,
    ) -> Result<(), String> {
        let Some((leaf, intermediates)) = certificates.split_first() else {
            return Err("it presented no certificate".into());
        };
        self.current()
            .verifier
            .verify_server_cert(leaf, intermediates, &server_name(id), &[], UnixTime::now())
            .map(|_| ())
            .map_err(|e| format!("its certificate is not node {}'s: {e}", id.0))
    }
}

/// Where the client API's TLS material lives (`--https`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpsFiles {
    /// The node's certificate, naming the hosts clients reach it by.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Require client certificates signed by these CAs (`--client-ca`).
    pub client_ca: Option<PathBuf>,
}

/// The client API's TLS, read again on SIGHUP like the peers'.
pub struct HttpsTls {
    files: HttpsFiles,
    acceptor: RwLock<TlsAcceptor>,
}

impl std::fmt::Debug for HttpsTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpsTls")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl HttpsTls {
    pub fn load(files: HttpsFiles) -> Result<HttpsTls, TlsError> {
        let acceptor = RwLock::new(load_https(&files)?);
        Ok(HttpsTls { files, acceptor })
    }

    pub fn files(&self) -> &HttpsFiles {
        &self.files
    }

    /// Read the files again; on an error the material in use stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let acceptor = load_https(&self.files)?;
        *self.acceptor.write().unwrap_or_else(|e| e.into_inner()) = acceptor;
        Ok(())
    }

    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        self.acceptor
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

fn load_https(files: &HttpsFiles) -> Result<TlsAcceptor, TlsError> {
    let chain = read_certificates(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| TlsError::Read {
        path: files.key.clone(),
        reason: e.to_string(),
    })?;
    let bad_key = |reason: String| TlsError::Key {
        path: files.key.clone(),
        cert: files.cert.clone(),
        reason,
    };
    // TLS 1.2 too: clients are of every kind and age.
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| bad_key(e.to_string()))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let bad_ca = |reason: String| TlsError::BadCa {
                path: ca.clone(),
                reason,
            };
            let mut roots = RootCertStore::empty();
            for certificate in read_certificates(ca)? {
                roots.add(certificate).map_err(|e| bad_ca(e.to_string()))?;
            }
            let clients = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| bad_ca(e.to_string()))?;
            builder.with_client_cert_verifier(clients)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| bad_key(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let read = |reason: String| TlsError::Read {
        path: path.to_path_buf(),
        reason,
    };
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|e| read(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| read(e.to_string()))?;
    if certificates.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certificates)
}

fn load(me: NodeId, files: &TlsFiles) -> Result<Loaded, TlsError> {
    let bad_ca = |reason: String| TlsError::BadCa {
        path: files.ca.clone(),
        reason,
    };
    let mut roots = RootCertStore::empty();
    for ca in read_certificates(&files.ca)? {
        roots.add(ca).map_err(|e| bad_ca(e.to_string()))?;
    }
    let roots = Arc::new(roots);
    let chain = read_certificates(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| TlsError::Read {
        path: files.key.clone(),
        reason: e.to_string(),
    })?;
    let verifier = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider())
        .build()
        .map_err(|e| bad_ca(e.to_string()))?;
    let not_me = |reason: String| TlsError::NotThisNode {
        id: me.0,
        name: node_name(me),
        cert: files.cert.clone(),
        ca: files.ca.clone(),
        reason,
    };
    // The node's own certificate must pass the very check its peers make.
    verifier
        .verify_server_cert(
            &chain[0],
            &chain[1..],
            &server_name(me),
            &[],
            UnixTime::now(),
        )
        .map_err(|e| not_me(e.to_string()))?;
    let bad_key = |reason: String| TlsError::Key {
        path: files.key.clone(),
        cert: files.cert.clone(),
        reason,
    };
    let clients = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
        .build()
        .map_err(|e| bad_ca(e.to_string()))?;
    // TLS 1.3 only: every member runs this code, so nothing older is needed.
    let server = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| bad_key(e.to_string()))?
        .with_client_cert_verifier(clients)
        .with_single_cert(chain.clone(), key.clone_key())
        .map_err(|e| bad_key(e.to_string()))?;
    let client = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| bad_key(e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| bad_key(e.to_string()))?;
    Ok(Loaded {
        acceptor: TlsAcceptor::from(Arc::new(server)),
        connector: TlsConnector::from(Arc::new(client)),
        verifier,
    })
}
