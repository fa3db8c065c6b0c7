//! The latency CDFs of the sequential workload, drawn by `plot`.

use crate::plot;
use crate::workloads::Sequential;
use anyhow::{Context, Result};
use serde_json::{json, Value};
use std::path::Path;

/// The operations of the sequential workload, with a title and what each
/// system sends, for the plots.
pub(super) const PLOTTED: [(&str, &str, &str); 4] = [
    (
        "acquire",
        "acquire of a fresh name",
        "tenure: PUT /v1/locks/{name}; etcd: lease grant, then the lock txn",
    ),
    (
        "renew",
        "renew",
        "tenure: PUT with the token (a Paxos accept); etcd: lease keepalive",
    ),
    (
        "release",
        "release",
        "tenure: DELETE with the token; etcd: lease revoke (deletes the key)",
    ),
    (
        "read",
        "linearizable read",
        "tenure: GET /v1/locks/{name}; etcd: range of the owner key",
    ),
];

/// One latency CDF per operation of the sequential workload, both systems
/// on each, as `latency-{op}.svg` in `dir`; returns `{op: file name}`.
pub(super) fn write_plots(dir: &Path, t: &mut Sequential, e: &mut Sequential) -> Result<Value> {
    let mut files = serde_json::Map::new();
    for (op, title, what) in PLOTTED {
        let pick = |s: &mut Sequential| match op {
            "acquire" => s.acquire.samples_us(),
            "renew" => s.renew.samples_us(),
            "release" => s.release.samples_us(),
            _ => s.read.samples_us(),
        };
        let series = [
            plot::Series {
                label: "tenure".into(),
                color: plot::TENURE_COLOR,
                samples_us: pick(t),
            },
            plot::Series {
                label: "etcd".into(),
                color: plot::ETCD_COLOR,
                samples_us: pick(e),
            },
        ];
        let svg = plot::cdf_svg(
            &format!("{title}: latency CDF, one client at a time"),
            what,
            &series,
        );
        let file = format!("latency-{op}.svg");
        let path = dir.join(&file);
        std::fs::write(&path, svg).with_context(|| format!("write {}", path.display()))?;
        files.insert(op.to_string(), json!(file));
    }
    Ok(Value::Object(files))
}
