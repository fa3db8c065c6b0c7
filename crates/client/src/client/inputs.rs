//! Checking a request's input before it is sent, and writing it into a URL.

use super::*;

pub(super) fn check(
    name: &str,
    holder: &str,
    ttl: Duration,
) -> Result<(LeaseName, HolderId, Ttl), Error> {
    let name = LeaseName::new(name).map_err(|e| Error::invalid(e, Some("name")))?;
    let holder = HolderId::new(holder).map_err(|e| Error::invalid(e, Some("holder")))?;
    let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
    let ttl = Ttl::from_millis(ttl_ms).map_err(|e| Error::invalid(e, Some("ttl")))?;
    Ok((name, holder, ttl))
}

/// Holders are printable ASCII without spaces; only the characters that
/// mean something in a query string need escaping.
pub(super) fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => {
                out.push(char::from(b))
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
