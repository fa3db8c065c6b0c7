//! The standard `process_*` metrics, read from `/proc/self` (Linux), and
//! `tenure_build_info`: what every Prometheus exporter is expected to say
//! about itself.

use std::fmt::Write;

/// The `process_*` lines; nothing where `/proc` cannot be read.
pub fn render(out: &mut String) {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return;
    };
    // Fields after the command name, which is in parentheses and may hold
    // spaces: state is field 3, utime 14, stime 15, starttime 22, vsize 23,
    // rss 24 (1-based, as proc(5) numbers them).
    let Some(after) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
        return;
    };
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<f64>().ok());
    let ticks = clock_ticks_per_second();
    let page = page_size();
    if let (Some(utime), Some(stime)) = (field(14), field(15)) {
        gauge(
            out,
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            (utime + stime) / ticks,
        );
    }
    if let Some(vsize) = field(23) {
        gauge(
            out,
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            vsize,
        );
    }
    if let Some(rss) = field(24) {
        gauge(
            out,
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            rss * page,
        );
    }
    if let (Some(start), Some(boot)) = (field(22), boot_time()) {
        gauge(
            out,
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            boot + start / ticks,
        );
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        gauge(
            out,
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            fds.count() as f64,
        );
    }
    if let Some(max) = max_fds() {
        gauge(
            out,
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            max,
        );
    }
}

/// `tenure_build_info`: 1, with the version and the peer protocol.
pub fn render_build_info(out: &mut String, protocol: u16) {
    out.push_str(
        "# HELP tenure_build_info The running build: its version and peer protocol version.\n",
    );
    out.push_str("# TYPE tenure_build_info gauge\n");
    let _ = writeln!(
        out,
        "tenure_build_info{{version=\"{}\",protocol=\"{protocol}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
}

/// `tenure_worker_threads`: the runtime's worker threads (`--threads`).
pub fn render_worker_threads(out: &mut String) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        gauge(
            out,
            "tenure_worker_threads",
            "gauge",
            "Worker threads of the node's runtime (--threads).",
            runtime.metrics().num_workers() as f64,
        );
    }
}

fn gauge(out: &mut String, name: &str, kind: &str, help: &str, value: f64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}

fn boot_time() -> Option<f64> {
    proc_number("/proc/stat", "btime ", 1)
}

fn max_fds() -> Option<f64> {
    // "Max open files  <soft>  <hard>  files"
    proc_number("/proc/self/limits", "Max open files", 3)
}

/// The `field`th word (from 0) of the first line of `path` that starts
/// with `prefix`, as a number.
fn proc_number(path: &str, prefix: &str, field: usize) -> Option<f64> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .find(|l| l.starts_with(prefix))?
        .split_whitespace()
        .nth(field)?
        .parse()
        .ok()
}

fn clock_ticks_per_second() -> f64 {
    sysconf_or(libc::_SC_CLK_TCK, 100.0)
}

fn page_size() -> f64 {
    sysconf_or(libc::_SC_PAGESIZE, 4096.0)
}

/// A positive `sysconf(name)`, or `default`.
fn sysconf_or(name: libc::c_int, default: f64) -> f64 {
    // SAFETY: sysconf has no preconditions and only reads a constant.
    let value = unsafe { libc::sysconf(name) };
    if value > 0 {
        value as f64
    } else {
        default
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_process_reports_its_memory_cpu_and_descriptors() {
        let mut out = String::new();
        super::render(&mut out);
        for name in [
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_start_time_seconds ",
            "process_open_fds ",
            "process_max_fds ",
        ] {
            assert!(out.contains(name), "{name} missing from:\n{out}");
        }
        let rss: f64 = out
            .lines()
            .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
            .and_then(|v| v.parse().ok())
            .expect("rss");
        assert!(rss > 1_000_000.0, "{rss}");
    }
}
