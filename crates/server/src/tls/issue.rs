//! A cluster's own CA, and certificates for its members and clients:
//! `tenure certs` and `tenure dev` make them without openssl.
//!
//! The CA's key stays in its directory, so that a node added later gets a
//! certificate from the same CA. Keys are written readable by their owner
//! only.

use super::{node_name, TlsFiles};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use tenure_core::NodeId;

/// The CA's certificate, given to every node and client as `--ca`.
pub const CA_CERT: &str = "ca.pem";
/// The CA's private key: only `tenure certs` reads it.
pub const CA_KEY: &str = "ca-key.pem";
/// The secret grant keys are made from (`crate::grant_key`), kept beside
/// the CA: both go to every node.
pub const GRANT_SECRET: &str = "grant-secret";
const CA_NAME: &str = "tenure cluster CA";
const CA_DAYS: i64 = 3_650;
const LEAF_DAYS: i64 = 825;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IssueError {
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} exists without {other}: restore it, or move both away to make a new CA")]
    HalfCa { path: PathBuf, other: PathBuf },
    #[error("cannot make a certificate: {0}")]
    Certificate(#[from] rcgen::Error),
}

/// A CA that can sign: its key and the parameters its certificate was
/// made from (an issued certificate names its issuer by them).
pub struct Ca {
    dir: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, CA_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

fn valid_for(params: &mut CertificateParams, days: i64) {
    let now = time::OffsetDateTime::now_utc();
    // An hour back: a member whose wall clock is a little behind still
    // accepts a certificate made just now.
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(days);
}

impl Ca {
    /// The CA in `dir`, made there first if the directory has none.
    pub fn open_or_create(dir: &Path) -> Result<Ca, IssueError> {
        let (cert, key) = (dir.join(CA_CERT), dir.join(CA_KEY));
        let issuer = match (cert.exists(), key.exists()) {
            (true, true) => {
                let pem = std::fs::read_to_string(&key).map_err(|source| IssueError::Read {
                    path: key.clone(),
                    source,
                })?;
                Issuer::new(ca_params(), KeyPair::from_pem(&pem)?)
            }
            (false, false) => {
                std::fs::create_dir_all(dir).map_err(|source| IssueError::Write {
                    path: dir.to_path_buf(),
                    source,
                })?;
                let signing = KeyPair::generate()?;
                let mut params = ca_params();
                valid_for(&mut params, CA_DAYS);
                let made = params.self_signed(&signing)?;
                write(&key, signing.serialize_pem().as_bytes(), true)?;
                write(&cert, made.pem().as_bytes(), false)?;
                Issuer::new(ca_params(), signing)
            }
            (true, false) => {
                return Err(IssueError::HalfCa {
                    path: cert,
                    other: key,
                })
            }
            (false, true) => {
                return Err(IssueError::HalfCa {
                    path: key,
                    other: cert,
                })
            }
        };
        Ok(Ca {
            dir: dir.to_path_buf(),
            issuer,
        })
    }

    /// A certificate for member `id`, also valid as a server for `hosts`
    /// (names or addresses clients use to reach it over HTTPS). Writes
    /// `node-{id}.pem` and `node-{id}-key.pem`, replacing older ones.
    pub fn issue_node(&self, id: NodeId, hosts: &[String]) -> Result<TlsFiles, IssueError> {
        let mut names = vec![node_name(id)];
        names.extend(hosts.iter().filter(|h| **h != node_name(id)).cloned());
        let stem = format!("node-{}", id.0);
        self.issue(&stem, &format!("tenure node {}", id.0), names)
    }

    /// A client certificate named `client` (its common name), for HTTPS
    /// servers that require one: `client-{client}.pem` and its key.
    pub fn issue_client(&self, client: &str) -> Result<TlsFiles, IssueError> {
        self.issue(&format!("client-{client}"), client, Vec::new())
    }

    fn issue(
        &self,
        stem: &str,
        common_name: &str,
        names: Vec<String>,
    ) -> Result<TlsFiles, IssueError> {
        let signing = KeyPair::generate()?;
        let mut params = CertificateParams::new(names)?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        // Members dial and are dialled: each certificate serves both ends.
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        valid_for(&mut params, LEAF_DAYS);
        let made = params.signed_by(&signing, &self.issuer)?;
        let files = TlsFiles {
            ca: self.dir.join(CA_CERT),
            cert: self.dir.join(format!("{stem}.pem")),
            key: self.dir.join(format!("{stem}-key.pem")),
        };
        write(&files.key, signing.serialize_pem().as_bytes(), true)?;
        write(&files.cert, made.pem().as_bytes(), false)?;
        Ok(files)
    }
}

/// Write `bytes` to `path` whole (a new file renamed into place), private
/// to its owner if `secret`.
fn write(path: &Path, bytes: &[u8], secret: bool) -> Result<(), IssueError> {
    let failed = |source| IssueError::Write {
        path: path.to_path_buf(),
        source,
    };
    let fresh = path.with_extension("new");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(&fresh)
        .map_err(failed)?;
    file.write_all(bytes).map_err(failed)?;
    file.sync_all().map_err(failed)?;
    std::fs::rename(&fresh, path).map_err(failed)
}
