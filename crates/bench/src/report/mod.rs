//! The report of a run: `RESULTS.md`, the plots beside it, the JSON, and
//! the summary table on stdout.

mod contention;
mod json;
mod markdown;
mod plots;

use crate::sizes::Sizes;
use crate::{Options, Run};
use anyhow::{Context, Result};
use serde_json::Value;
use std::path::PathBuf;

/// Write every file of the report and print the summary table.
pub(crate) fn write(
    opts: &Options,
    sizes: &Sizes,
    etcd_version: &str,
    run: &mut Run,
) -> Result<()> {
    let mut json = json::to_json(opts, sizes, etcd_version, &mut run.tenure, &mut run.etcd);
    if let Some(idle) = run.idle.take() {
        json["idle_leases"] = idle;
    }
    let dir = match opts.results.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)?;
    if let (Some(ts), Some(es)) = (&mut run.tenure.sequential, &mut run.etcd.sequential) {
        json["plots"] = plots::write_plots(&dir, ts, es)?;
    }
    let md = markdown::to_markdown(opts, sizes, etcd_version, &json);
    std::fs::write(&opts.results, &md)
        .with_context(|| format!("write {}", opts.results.display()))?;
    if let Some(path) = &opts.json {
        std::fs::write(path, serde_json::to_string_pretty(&json)? + "\n")
            .with_context(|| format!("write {}", path.display()))?;
    }
    let summary = markdown::summary_table(&json);
    // (its header alone when only the steps under contention ran)
    if summary.lines().count() > 2 {
        print!("{summary}");
    }
    print!("{}", contention::table(&json));
    eprintln!(
        "wrote {} in {:.0} s",
        opts.results.display(),
        run.progress.began.elapsed().as_secs_f64()
    );
    Ok(())
}

/// What the run's connections were secured with, for the report.
fn transport(tls: bool) -> &'static str {
    if tls {
        "TLS everywhere (--tls): clients reach both systems over HTTPS, trusting the run's CA \
         (no client certificates); tenure's peer links in mutual TLS; etcd's peer URLs on TLS, \
         each peer proving itself by certificate; one CA for both"
    } else {
        "plain HTTP between the clients and both systems; tenure's peer links in mutual TLS, \
         etcd's in plain HTTP (--tls puts both on TLS everywhere)"
    }
}

/// tenure ÷ etcd, to three decimals; 0 when etcd's figure is 0.
fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        0.0
    } else {
        (a / b * 1000.0).round() / 1000.0
    }
}

/// A JSON number as f64; 0 when missing.
fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SystemResults;

    #[test]
    fn the_report_says_whether_the_run_was_on_tls() {
        for tls in [false, true] {
            let opts = Options {
                tls,
                ..Options::for_tests()
            };
            let sizes = Sizes::quick();
            let (mut t, mut e) = (SystemResults::default(), SystemResults::default());
            let j = json::to_json(&opts, &sizes, "3.4.23", &mut t, &mut e);
            assert_eq!(j["tls"], tls);
            let md = markdown::to_markdown(&opts, &sizes, "3.4.23", &j);
            assert!(md.contains(&format!("- transport: {}\n", transport(tls))));
            assert_eq!(md.contains("TLS everywhere (--tls)"), tls);
        }
    }
}
