//! Default holder ids: unique per process, readable by a person debugging
//! a stuck lock (`409` bodies name the holder).

/// `{hostname}:{pid}:{random}`. The random part keeps two processes apart
/// even when a pid is reused, or two containers share a hostname and pid.
pub fn default_holder_id() -> String {
    let host: String = hostname()
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(64)
        .collect();
    let host = if host.is_empty() { "host".into() } else { host };
    format!("{host}:{}:{:08x}", std::process::id(), fastrand::u32(..))
}

fn hostname() -> String {
    if let Ok(h) = std::env::var("HOSTNAME") {
        if !h.trim().is_empty() {
            return h.trim().to_string();
        }
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_holder_ids_are_valid_and_differ_between_calls() {
        let a = default_holder_id();
        let b = default_holder_id();
        assert_ne!(a, b);
        assert!(tenure_core::HolderId::new(&a).is_ok(), "{a}");
        assert!(a.contains(&format!(":{}:", std::process::id())));
    }
}
