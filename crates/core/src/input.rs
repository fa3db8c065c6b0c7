//! Validated values from outside: lease names, holder ids and ttls.
//!
//! Everything a client or peer sends passes through these constructors
//! before it reaches protocol state, so bad input is refused whole and
//! changes nothing.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// Longest lease name, in bytes.
pub const MAX_NAME_BYTES: usize = 128;
/// Longest holder id, in bytes.
pub const MAX_HOLDER_BYTES: usize = 128;
/// Shortest ttl: below this a lease cannot be renewed over a real network.
pub const MIN_TTL_MS: u64 = 10;
/// Longest ttl: one day. Longer leases outlive the failures they guard.
pub const MAX_TTL_MS: u64 = 86_400_000;
/// Longest lock-delay after an expiry.
pub const MAX_LOCK_DELAY_MS: u64 = 60_000;

/// Why an input was refused; the message says what to fix.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    #[error("name must not be empty")]
    EmptyName,
    #[error("name is {len} bytes; at most {MAX_NAME_BYTES} are allowed")]
    NameTooLong { len: usize },
    #[error("name may contain only ASCII letters, digits and . _ - / : (found {found:?})")]
    NameCharacter { found: char },
    #[error("holder must not be empty")]
    EmptyHolder,
    #[error("holder is {len} bytes; at most {MAX_HOLDER_BYTES} are allowed")]
    HolderTooLong { len: usize },
    #[error("holder may contain only printable ASCII without spaces (found {found:?})")]
    HolderCharacter { found: char },
    #[error("ttl_ms is {ttl_ms}; it must be between {MIN_TTL_MS} and {MAX_TTL_MS}")]
    TtlOutOfRange { ttl_ms: u64 },
    #[error("lock_delay_ms is {lock_delay_ms}; it must be at most {MAX_LOCK_DELAY_MS}")]
    LockDelayOutOfRange { lock_delay_ms: u64 },
}

impl InputError {
    /// The request field the error is about, for API error bodies.
    pub fn field(&self) -> &'static str {
        match self {
            InputError::EmptyName
            | InputError::NameTooLong { .. }
            | InputError::NameCharacter { .. } => "name",
            InputError::EmptyHolder
            | InputError::HolderTooLong { .. }
            | InputError::HolderCharacter { .. } => "holder",
            InputError::TtlOutOfRange { .. } => "ttl_ms",
            InputError::LockDelayOutOfRange { .. } => "lock_delay_ms",
        }
    }
}

/// The name of a lease: the key of one Paxos register.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LeaseName(Arc<str>);

impl LeaseName {
    pub fn new(name: &str) -> Result<LeaseName, InputError> {
        if name.is_empty() {
            return Err(InputError::EmptyName);
        }
        if name.len() > MAX_NAME_BYTES {
            return Err(InputError::NameTooLong { len: name.len() });
        }
        if let Some(found) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | ':')))
        {
            return Err(InputError::NameCharacter { found });
        }
        Ok(LeaseName(name.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for LeaseName {
    type Error = InputError;
    fn try_from(s: String) -> Result<Self, InputError> {
        LeaseName::new(&s)
    }
}

impl From<LeaseName> for String {
    fn from(n: LeaseName) -> String {
        n.0.to_string()
    }
}

impl fmt::Debug for LeaseName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for LeaseName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who holds, or asks for, a lease: an opaque id chosen by the client.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HolderId(Arc<str>);

impl HolderId {
    pub fn new(holder: &str) -> Result<HolderId, InputError> {
        if holder.is_empty() {
            return Err(InputError::EmptyHolder);
        }
        if holder.len() > MAX_HOLDER_BYTES {
            return Err(InputError::HolderTooLong { len: holder.len() });
        }
        if let Some(found) = holder.chars().find(|c| !c.is_ascii_graphic()) {
            return Err(InputError::HolderCharacter { found });
        }
        Ok(HolderId(holder.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for HolderId {
    type Error = InputError;
    fn try_from(s: String) -> Result<Self, InputError> {
        HolderId::new(&s)
    }
}

impl From<HolderId> for String {
    fn from(h: HolderId) -> String {
        h.0.to_string()
    }
}

impl fmt::Debug for HolderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for HolderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A checked lease duration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct Ttl(u64);

impl Ttl {
    pub fn from_millis(ttl_ms: u64) -> Result<Ttl, InputError> {
        if (MIN_TTL_MS..=MAX_TTL_MS).contains(&ttl_ms) {
            Ok(Ttl(ttl_ms))
        } else {
            Err(InputError::TtlOutOfRange { ttl_ms })
        }
    }

    pub fn as_millis(self) -> u64 {
        self.0
    }

    pub fn as_micros(self) -> crate::Micros {
        crate::Micros::from_millis(self.0)
    }
}

impl TryFrom<u64> for Ttl {
    type Error = InputError;
    fn try_from(ms: u64) -> Result<Self, InputError> {
        Ttl::from_millis(ms)
    }
}

impl From<Ttl> for u64 {
    fn from(t: Ttl) -> u64 {
        t.0
    }
}

/// A checked lock-delay: how long a lease that EXPIRED (was not released)
/// stays unavailable to others, so that a holder that lost it without
/// knowing has time to notice (Chubby's lock-delay).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(try_from = "u64", into = "u64")]
pub struct LockDelay(u64);

impl LockDelay {
    pub const NONE: LockDelay = LockDelay(0);

    pub fn from_millis(lock_delay_ms: u64) -> Result<LockDelay, InputError> {
        if lock_delay_ms <= MAX_LOCK_DELAY_MS {
            Ok(LockDelay(lock_delay_ms))
        } else {
            Err(InputError::LockDelayOutOfRange { lock_delay_ms })
        }
    }

    pub fn as_millis(self) -> u64 {
        self.0
    }

    pub fn as_micros(self) -> crate::Micros {
        crate::Micros::from_millis(self.0)
    }
}

impl TryFrom<u64> for LockDelay {
    type Error = InputError;
    fn try_from(ms: u64) -> Result<Self, InputError> {
        LockDelay::from_millis(ms)
    }
}

impl From<LockDelay> for u64 {
    fn from(d: LockDelay) -> u64 {
        d.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_accept_the_documented_alphabet() {
        assert!(LeaseName::new("scheduler").is_ok());
        assert!(LeaseName::new("team-a/partition.7:primary_1").is_ok());
        assert_eq!(LeaseName::new(""), Err(InputError::EmptyName));
        assert_eq!(
            LeaseName::new("a b"),
            Err(InputError::NameCharacter { found: ' ' })
        );
        assert_eq!(
            LeaseName::new(&"x".repeat(MAX_NAME_BYTES + 1)),
            Err(InputError::NameTooLong {
                len: MAX_NAME_BYTES + 1
            })
        );
        assert!(LeaseName::new(&"x".repeat(MAX_NAME_BYTES)).is_ok());
    }

    #[test]
    fn holders_must_be_printable_and_bounded() {
        assert!(HolderId::new("host-1:4242:ab12").is_ok());
        assert_eq!(HolderId::new(""), Err(InputError::EmptyHolder));
        assert!(matches!(
            HolderId::new("a\nb"),
            Err(InputError::HolderCharacter { .. })
        ));
        assert!(matches!(
            HolderId::new(&"h".repeat(MAX_HOLDER_BYTES + 1)),
            Err(InputError::HolderTooLong { .. })
        ));
    }

    #[test]
    fn ttl_and_lock_delay_ranges_are_inclusive() {
        assert!(Ttl::from_millis(MIN_TTL_MS).is_ok());
        assert!(Ttl::from_millis(MAX_TTL_MS).is_ok());
        assert!(Ttl::from_millis(MIN_TTL_MS - 1).is_err());
        assert!(Ttl::from_millis(MAX_TTL_MS + 1).is_err());
        assert!(LockDelay::from_millis(MAX_LOCK_DELAY_MS).is_ok());
        assert!(LockDelay::from_millis(MAX_LOCK_DELAY_MS + 1).is_err());
    }

    #[test]
    fn errors_name_the_field_to_fix() {
        assert_eq!(InputError::EmptyName.field(), "name");
        assert_eq!(InputError::TtlOutOfRange { ttl_ms: 0 }.field(), "ttl_ms");
    }
}
