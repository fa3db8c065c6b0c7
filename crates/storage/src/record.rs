//! How one record is laid out on disk, and the checksum that guards it.
//!
//! redb checksums its pages, but it verifies them only while it repairs after
//! an unclean shutdown: a clean open trusts the file. An acceptor must never
//! serve state it cannot vouch for (one flipped bit in `promised` can lower
//! it, and an acceptor that forgets a promise breaks agreement), so every
//! value carries a checksum of its own, checked on every load.
//!
//! A value is `[version: u8][postcard payload][crc32c: u32 LE]`. The CRC
//! covers `key length (u32 LE) ‖ key ‖ version ‖ payload`: covering the key
//! catches a value stored under the wrong key, not only a flipped bit.
//!
//! postcard is not self-describing, so the payload layout is the serde shape
//! of [`Durable`] at `VERSION`. A change to that shape in `tenure-core` must
//! bump `VERSION` and teach [`decode_durable`] the old one.
//!
//! | version | payload |
//! |---------|---------|
//! | 1 | `Durable` before lease values carried waiters (`v1.rs`) |
//! | 2 | `Durable` with each value's queue of waiters (`v2.rs`) |
//! | 3 | `Durable` whose grants say whether they were found expired |

use tenure_core::{Configuration, Durable, InputError};

mod v1;
mod v2;

/// The layout version of every value this build writes.
const VERSION: u8 = 3;
/// The versions of register records this build still reads.
const VERSION_WITHOUT_WAITERS: u8 = 1;
const VERSION_WITHOUT_EXPIRY: u8 = 2;
/// The layout of the store's own numbers (incarnation, format, horizon):
/// a little-endian integer, unchanged since the first version.
const NUMBER_VERSION: u8 = 1;
/// Version byte plus checksum: the smallest possible value.
const FRAMING_BYTES: usize = 1 + 4;

/// Why a stored value was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    #[error("value is {len} bytes, shorter than its {FRAMING_BYTES} bytes of framing")]
    Truncated { len: usize },
    #[error("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum { stored: u32, computed: u32 },
    #[error("record layout version {found} is unknown to this build (it writes {VERSION})")]
    UnknownVersion { found: u8 },
    #[error("payload does not decode: {0}")]
    Payload(postcard::Error),
    #[error("payload has {trailing} bytes left over after decoding")]
    Trailing { trailing: usize },
    #[error("key is not a valid lease name: {0}")]
    Name(InputError),
    #[error("text is not UTF-8")]
    NotText,
}

/// Encode the acceptor state of `name` as a checksummed value.
pub(crate) fn encode_durable(name: &str, state: &Durable) -> Result<Vec<u8>, postcard::Error> {
    seal(name, |body| postcard::to_extend(state, body))
}

/// Decode and verify a value written by [`encode_durable`] under `name`.
pub(crate) fn decode_durable(name: &str, value: &[u8]) -> Result<Durable, RecordError> {
    let (version, payload) = verify_any(
        name,
        value,
        &[VERSION, VERSION_WITHOUT_EXPIRY, VERSION_WITHOUT_WAITERS],
    )?;
    let decoded = match version {
        VERSION_WITHOUT_WAITERS => v1::decode(payload),
        VERSION_WITHOUT_EXPIRY => v2::decode(payload),
        _ => postcard::take_from_bytes(payload),
    };
    let (state, rest) = decoded.map_err(RecordError::Payload)?;
    if !rest.is_empty() {
        return Err(RecordError::Trailing {
            trailing: rest.len(),
        });
    }
    Ok(state)
}

/// Encode a counter of the store's own (the incarnation, the format).
pub(crate) fn encode_u32(key: &str, n: u32) -> Vec<u8> {
    seal_bytes(key, &n.to_le_bytes())
}

pub(crate) fn decode_u32(key: &str, value: &[u8]) -> Result<u32, RecordError> {
    verify_bytes(key, value).map(u32::from_le_bytes)
}

/// Encode a 64-bit number of the store's own (the promise horizon).
pub(crate) fn encode_u64(key: &str, n: u64) -> Vec<u8> {
    seal_bytes(key, &n.to_le_bytes())
}

pub(crate) fn decode_u64(key: &str, value: &[u8]) -> Result<u64, RecordError> {
    verify_bytes(key, value).map(u64::from_le_bytes)
}

/// Encode the node's configuration (members and epoch).
pub(crate) fn encode_configuration(
    key: &str,
    configuration: &Configuration,
) -> Result<Vec<u8>, postcard::Error> {
    seal(key, |body| postcard::to_extend(configuration, body))
}

pub(crate) fn decode_configuration(key: &str, value: &[u8]) -> Result<Configuration, RecordError> {
    let (_, payload) = verify_any(key, value, &[VERSION])?;
    let (configuration, rest) = postcard::take_from_bytes(payload).map_err(RecordError::Payload)?;
    if !rest.is_empty() {
        return Err(RecordError::Trailing {
            trailing: rest.len(),
        });
    }
    Ok(configuration)
}

/// Encode a short text of the store's own (the cluster identity).
pub(crate) fn encode_text(key: &str, text: &str) -> Vec<u8> {
    seal_bytes(key, text.as_bytes())
}

pub(crate) fn decode_text(key: &str, value: &[u8]) -> Result<String, RecordError> {
    let (_, payload) = verify_any(key, value, &[NUMBER_VERSION])?;
    String::from_utf8(payload.to_vec()).map_err(|_| RecordError::NotText)
}

fn seal_bytes(key: &str, bytes: &[u8]) -> Vec<u8> {
    let mut value = Vec::with_capacity(FRAMING_BYTES + bytes.len());
    value.push(NUMBER_VERSION);
    value.extend_from_slice(bytes);
    let crc = checksum(key, &value);
    value.extend_from_slice(&crc.to_le_bytes());
    value
}

fn verify_bytes<const N: usize>(key: &str, value: &[u8]) -> Result<[u8; N], RecordError> {
    let (_, payload) = verify_any(key, value, &[NUMBER_VERSION])?;
    payload.try_into().map_err(|_| RecordError::Trailing {
        trailing: payload.len().saturating_sub(N),
    })
}

fn seal(
    key: &str,
    payload: impl FnOnce(Vec<u8>) -> Result<Vec<u8>, postcard::Error>,
) -> Result<Vec<u8>, postcard::Error> {
    let mut value = payload(vec![VERSION])?;
    let crc = checksum(key, &value);
    value.extend_from_slice(&crc.to_le_bytes());
    Ok(value)
}

/// Check framing and checksum of a value at one of `versions`; returns its
/// version and payload.
fn verify_any<'v>(
    key: &str,
    value: &'v [u8],
    versions: &[u8],
) -> Result<(u8, &'v [u8]), RecordError> {
    if value.len() < FRAMING_BYTES {
        return Err(RecordError::Truncated { len: value.len() });
    }
    let (body, crc) = value.split_at(value.len() - 4);
    let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    let computed = checksum(key, body);
    // The checksum comes before every other check: a flipped version byte is
    // corruption, not a newer format.
    if stored != computed {
        return Err(RecordError::Checksum { stored, computed });
    }
    match body.split_first() {
        Some((&version, payload)) if versions.contains(&version) => Ok((version, payload)),
        Some((&found, _)) => Err(RecordError::UnknownVersion { found }),
        None => Err(RecordError::Truncated { len: value.len() }),
    }
}

fn checksum(key: &str, body: &[u8]) -> u32 {
    let key_len = u32::try_from(key.len()).unwrap_or(u32::MAX);
    let mut crc = Crc32c::new();
    crc.update(&key_len.to_le_bytes());
    crc.update(key.as_bytes());
    crc.update(body);
    crc.finish()
}

/// CRC-32C (Castagnoli), the checksum of iSCSI, ext4 metadata and many
/// storage engines. A byte-at-a-time table is ample: records are about a
/// hundred bytes and every write of them waits for an fsync. Written here
/// rather than taken from a crate because it is twenty lines and fixed by
/// the test vectors of RFC 3720.
struct Crc32c(u32);

/// The reflected Castagnoli polynomial.
const POLY: u32 = 0x82F6_3B78;
const TABLE: [u32; 256] = table();

const fn table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut bit = 0;
        while bit < 8 {
            c = if c & 1 == 1 { (c >> 1) ^ POLY } else { c >> 1 };
            bit += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

impl Crc32c {
    fn new() -> Crc32c {
        Crc32c(u32::MAX)
    }

    fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = TABLE[usize::from((self.0 as u8) ^ b)] ^ (self.0 >> 8);
        }
    }

    fn finish(&self) -> u32 {
        !self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tenure_core::{Ballot, LeaseValue, Token};

    fn crc(bytes: &[u8]) -> u32 {
        let mut c = Crc32c::new();
        c.update(bytes);
        c.finish()
    }

    fn state() -> Durable {
        let b = Ballot {
            counter: 7,
            node: 2,
            incarnation: 3,
        };
        Durable {
            promised: b.successor(),
            accepted: Some((
                b,
                LeaseValue {
                    token: Token(41),
                    ..LeaseValue::default()
                },
            )),
        }
    }

    #[test]
    fn crc32c_matches_the_rfc_3720_vectors() {
        assert_eq!(crc(b"123456789"), 0xE306_9283);
        assert_eq!(crc(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc(&[0xFFu8; 32]), 0x62A8_AB43);
        let ascending: Vec<u8> = (0u8..32).collect();
        assert_eq!(crc(&ascending), 0x46DD_794E);
    }

    #[test]
    fn a_record_round_trips() {
        let value = encode_durable("lock/a", &state()).unwrap();
        assert_eq!(decode_durable("lock/a", &value), Ok(state()));
        let meta = encode_u32("incarnation", 9);
        assert_eq!(decode_u32("incarnation", &meta), Ok(9));
    }

    /// Pins the guarantee the checksum exists for: no single flipped bit
    /// anywhere in a value is served.
    #[test]
    fn every_single_bit_flip_is_refused() {
        let value = encode_durable("lock/a", &state()).unwrap();
        for byte in 0..value.len() {
            for bit in 0..8 {
                let mut bad = value.clone();
                bad[byte] ^= 1 << bit;
                assert!(
                    decode_durable("lock/a", &bad).is_err(),
                    "flip of bit {bit} in byte {byte} went unnoticed"
                );
            }
        }
    }

    #[test]
    fn a_value_under_the_wrong_key_is_refused() {
        let value = encode_durable("lock/a", &state()).unwrap();
        assert!(matches!(
            decode_durable("lock/b", &value),
            Err(RecordError::Checksum { .. })
        ));
    }

    #[test]
    fn truncated_and_extended_values_are_refused() {
        let value = encode_durable("lock/a", &state()).unwrap();
        for len in 0..value.len() {
            assert!(decode_durable("lock/a", &value[..len]).is_err());
        }
        let mut longer = value.clone();
        longer.insert(value.len() - 4, 0);
        assert!(decode_durable("lock/a", &longer).is_err());
    }

    /// Pins the upgrade: a store written before values carried waiters
    /// still opens, each value read with an empty queue.
    #[test]
    fn a_record_without_waiters_is_read_with_an_empty_queue() {
        #[derive(serde::Serialize)]
        struct GrantV1 {
            holder: tenure_core::HolderId,
            ttl: tenure_core::Ttl,
            lock_delay: tenure_core::LockDelay,
        }
        #[derive(serde::Serialize)]
        struct WriteLogV1 {
            count: u64,
            recent: [Ballot; 4],
        }
        #[derive(serde::Serialize)]
        struct ValueV1 {
            token: Token,
            grant: Option<GrantV1>,
            writes: WriteLogV1,
        }
        #[derive(serde::Serialize)]
        struct DurableV1 {
            promised: Ballot,
            accepted: Option<(Ballot, ValueV1)>,
        }
        let b = Ballot {
            counter: 7,
            node: 2,
            incarnation: 3,
        };
        let old = DurableV1 {
            promised: b.successor(),
            accepted: Some((
                b,
                ValueV1 {
                    token: Token(41),
                    grant: Some(GrantV1 {
                        holder: tenure_core::HolderId::new("web-1").unwrap(),
                        ttl: tenure_core::Ttl::from_millis(5_000).unwrap(),
                        lock_delay: tenure_core::LockDelay::NONE,
                    }),
                    // Writes 5 and 6 (at 5 % 4 = 1 and 6 % 4 = 2), four
                    // before them forgotten.
                    writes: WriteLogV1 {
                        count: 6,
                        recent: [b, b, b.successor(), b],
                    },
                },
            )),
        };
        let mut value = postcard::to_extend(&old, vec![VERSION_WITHOUT_WAITERS]).unwrap();
        let crc = checksum("lock/a", &value);
        value.extend_from_slice(&crc.to_le_bytes());
        let read = decode_durable("lock/a", &value).unwrap();
        let (ballot, value) = read.accepted.unwrap();
        assert_eq!((read.promised, ballot), (b.successor(), b));
        assert_eq!(value.token, Token(41));
        assert!(value.waiters.is_empty());
        // What the old log knew, it still knows; what it had forgotten, it
        // cannot tell.
        assert_eq!(value.writes.wrote(6, b.successor()), Some(true));
        assert_eq!(value.writes.wrote(5, b), Some(true));
        assert_eq!(value.writes.wrote(3, b), Some(true));
        assert_eq!(value.writes.wrote(2, b), None);
        let grant = value.grant.unwrap();
        assert_eq!((grant.holder.as_str(), grant.waiter), ("web-1", None));
    }

    #[test]
    fn a_record_without_expiry_is_read_with_its_grant_unmarked() {
        #[derive(serde::Serialize)]
        struct GrantV2 {
            holder: tenure_core::HolderId,
            ttl: tenure_core::Ttl,
            lock_delay: tenure_core::LockDelay,
            waiter: Option<tenure_core::lease::WaiterId>,
        }
        #[derive(serde::Serialize)]
        struct ValueV2 {
            token: Token,
            grant: Option<GrantV2>,
            waiters: tenure_core::lease::Waiters,
            writes: tenure_core::lease::WriteLog,
        }
        #[derive(serde::Serialize)]
        struct DurableV2 {
            promised: Ballot,
            accepted: Option<(Ballot, ValueV2)>,
        }
        let b = Ballot {
            counter: 9,
            node: 1,
            incarnation: 2,
        };
        let waiter = tenure_core::lease::WaiterId {
            node: 1,
            incarnation: 2,
            seq: 5,
        };
        let writes = tenure_core::lease::WriteLog::default().after(b);
        let old = DurableV2 {
            promised: b.successor(),
            accepted: Some((
                b,
                ValueV2 {
                    token: Token(3),
                    grant: Some(GrantV2 {
                        holder: tenure_core::HolderId::new("web-2").unwrap(),
                        ttl: tenure_core::Ttl::from_millis(2_000).unwrap(),
                        lock_delay: tenure_core::LockDelay::from_millis(50).unwrap(),
                        waiter: Some(waiter),
                    }),
                    waiters: Default::default(),
                    writes: writes.clone(),
                },
            )),
        };
        let mut value = postcard::to_extend(&old, vec![VERSION_WITHOUT_EXPIRY]).unwrap();
        let crc = checksum("lock/b", &value);
        value.extend_from_slice(&crc.to_le_bytes());
        let read = decode_durable("lock/b", &value).unwrap();
        let (ballot, value) = read.accepted.unwrap();
        assert_eq!(
            (read.promised, ballot, value.token),
            (b.successor(), b, Token(3))
        );
        assert_eq!(value.writes, writes);
        let grant = value.grant.unwrap();
        assert_eq!(
            (grant.holder.as_str(), grant.waiter, grant.expired),
            ("web-2", Some(waiter), false)
        );
        assert_eq!(grant.lock_delay.as_millis(), 50);
    }

    #[test]
    fn a_future_version_with_a_valid_checksum_is_refused_as_unknown() {
        let mut body = vec![VERSION + 1, 0, 0];
        let crc = checksum("k", &body);
        body.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(
            decode_durable("k", &body),
            Err(RecordError::UnknownVersion { found: VERSION + 1 })
        );
    }
}

/// Fuzzing: whatever bytes a disk hands back, decoding answers a value or
/// an error, never a panic. `PROPTEST_CASES=100000` for a long run;
/// `cargo test` runs proptest's 256 cases.
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;
    use tenure_core::{Ballot, LeaseValue, Token};

    /// `payload` framed at `version` with a valid checksum: the decoder
    /// gets past the checksum and must survive what postcard finds.
    fn sealed(key: &str, version: u8, payload: &[u8]) -> Vec<u8> {
        let mut value = vec![version];
        value.extend_from_slice(payload);
        let crc = checksum(key, &value);
        value.extend_from_slice(&crc.to_le_bytes());
        value
    }

    fn valid() -> Vec<u8> {
        let b = Ballot {
            counter: 3,
            node: 1,
            incarnation: 2,
        };
        let state = Durable {
            promised: b,
            accepted: Some((
                b,
                LeaseValue {
                    token: Token(9),
                    ..LeaseValue::default()
                },
            )),
        };
        encode_durable("a", &state).expect("encode")
    }

    proptest! {
        #[test]
        fn any_bytes_decode_or_are_refused(value in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_durable("a", &value);
            let _ = decode_u32("a", &value);
            let _ = decode_u64("a", &value);
        }

        #[test]
        fn any_payload_behind_a_valid_checksum_decodes_or_is_refused(
            version in 0u8..5,
            payload in prop::collection::vec(any::<u8>(), 0..256),
        ) {
            let _ = decode_durable("a", &sealed("a", version, &payload));
        }

        #[test]
        fn a_damaged_record_is_refused(at in 0usize..64, bit in 0u8..8, cut in 0usize..64) {
            let mut value = valid();
            let at = at % value.len();
            value[at] ^= 1 << bit;
            prop_assert!(decode_durable("a", &value).is_err());
            let mut short = valid();
            short.truncate(cut % short.len());
            prop_assert!(decode_durable("a", &short).is_err());
        }
    }
}
