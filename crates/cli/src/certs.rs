//! `tenure certs`: a cluster's CA and its members' certificates, for peer
//! links in mutual TLS (docs/operations.md, "Peer TLS"), and the secret
//! grant keys are made from.

use anyhow::{Context, Result};
use clap::Args;
use std::io::Write;
use std::path::PathBuf;
use tenure_core::NodeId;
use tenure_server::tls::issue::Ca;

#[derive(Args)]
pub struct CertsArgs {
    /// Where the CA and the certificates are kept. The CA is made there at
    /// the first run and used again after, so that a node added later
    /// joins the same CA.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// The member ids to make certificates for: 1,2,3. Each is named
    /// node-ID.tenure; existing ones are replaced.
    #[arg(long, value_name = "IDS", value_delimiter = ',', value_parser = clap::value_parser!(u16).range(1..))]
    nodes: Vec<u16>,
    /// Host names or addresses clients reach the nodes by, added to every
    /// node certificate for HTTPS (repeatable).
    #[arg(long, value_name = "NAME")]
    host: Vec<String>,
}

pub fn run(args: CertsArgs) -> Result<()> {
    let ca = Ca::open_or_create(&args.dir)
        .with_context(|| format!("cannot use the CA in {}", args.dir.display()))?;
    let secret = args.dir.join(tenure_server::tls::issue::GRANT_SECRET);
    tenure_server::grant_key::make_secret(&secret)?;
    let mut out = std::io::stdout().lock();
    for id in args.nodes {
        let files = ca
            .issue_node(NodeId(id), &args.host)
            .with_context(|| format!("cannot make node {id}'s certificate"))?;
        writeln!(
            out,
            "node {id}: tenure server --id {id} --ca {} --cert {} --key {} --grant-secret {} ...",
            files.ca.display(),
            files.cert.display(),
            files.key.display(),
            secret.display()
        )?;
    }
    writeln!(
        out,
        "Keep {} secret: whoever holds it can make members; and {}: whoever holds it can \
         renew or release any grant.",
        args.dir.join(tenure_server::tls::issue::CA_KEY).display(),
        secret.display()
    )?;
    Ok(())
}
