//! `tenure certs create`: a cluster's CA and its members' certificates,
//! for peer links in mutual TLS (docs/operations.md, "Peer TLS"), and the
//! secret grant keys are made from.

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use std::io::Write;
use std::path::PathBuf;
use tenure_core::NodeId;
use tenure_server::tls::issue::Ca;

#[derive(Subcommand)]
pub enum Certs {
    /// Make the CA (at the first run), node certificates, client
    /// certificates and the grant secret in DIR.
    Create(CreateArgs),
}

#[derive(Args)]
pub struct CreateArgs {
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
    /// Make a client certificate named NAME too, for nodes started with
    /// --https --client-ca DIR/ca.pem (repeatable): client-NAME.pem and
    /// client-NAME-key.pem.
    #[arg(long, value_name = "NAME", value_parser = parse_client_name)]
    client: Vec<String>,
}

fn parse_client_name(s: &str) -> Result<String, String> {
    let fine = !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if fine {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?}: a client name is 1 to 64 letters, digits, '-', '_' or '.' (it names files)"
        ))
    }
}

pub fn run(certs: Certs) -> Result<()> {
    match certs {
        Certs::Create(args) => create(args),
    }
}

fn create(args: CreateArgs) -> Result<()> {
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
    for client in args.client {
        let files = ca
            .issue_client(&client)
            .with_context(|| format!("cannot make client {client}'s certificate"))?;
        writeln!(
            out,
            "client {client}: --ca {} --cert {} --key {}",
            files.ca.display(),
            files.cert.display(),
            files.key.display()
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
