//! The wire format between nodes: length-delimited frames, each a
//! postcard-encoded [`Frame`] that starts with the protocol version.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tenure_core::{Message, NodeId, Stamp};
use tokio_util::codec::LengthDelimitedCodec;

/// Bumped on any change to [`Frame`] or to the core's `Message`. Nodes of
/// different versions refuse each other's connections rather than guess.
pub const PROTOCOL_VERSION: u16 = 15;

/// Largest frame. Names and holders are at most 128 bytes each, so a real
/// message is a few hundred bytes, and one carrying a full queue of
/// waiters (`MAX_WAITERS` of them, each with its holder) about 10 KiB; the
/// limit stops a bad peer from making this node allocate without bound.
pub const MAX_FRAME_BYTES: usize = 16 * 1024;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frame {
    /// First, so that a reader can check it before decoding the rest.
    pub version: u16,
    pub from: NodeId,
    /// The sender's clock when it wrote the frame (µs of its core clock):
    /// what the receiver measures the sender's clock rate by (`rates.rs`).
    pub sent_at_us: u64,
    /// The sender's recent lowest offset (its clock minus ours, plus the
    /// delay) of the frames the receiver sent it: with the receiver's own
    /// offset of this link, the round trip (`rates.rs`).
    pub echo_offset_us: Option<i64>,
    pub body: Body,
}

// Messages are the common frame; boxing them would allocate per frame.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    /// The first frame of every connection: who is dialling (the frame's
    /// `from`), and the drift bound it judges leases by. Members that judge
    /// by different bounds could free a lease early (docs/safety.md, A3),
    /// so a node refuses a peer whose bound differs from its own.
    Hello {
        max_drift_ppm: u32,
        /// The cluster id and member ids: a node of another cluster, or
        /// one told other members, is refused (`crate::identity`).
        identity: String,
        /// The dialling node's life: a member's never goes back.
        incarnation: u32,
        /// Random for each process of the dialling node.
        boot: u64,
    },
    /// The answer to an accepted hello: the link is up.
    Welcome,
    /// The answer to a refused hello, and why, before the connection
    /// closes: for the dialling node's log.
    Refused { reason: String },
    /// A core message, stamped with the sender's configuration (its stamp).
    Message(Stamp, Message),
    /// Nothing to say: sent on an idle link so that its clock can still be
    /// measured, and its silence noticed.
    Tick,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    #[error("peer speaks protocol version {0}, this node speaks {PROTOCOL_VERSION}")]
    Version(u16),
    #[error("undecodable frame: {0}")]
    Decode(#[from] postcard::Error),
}

pub fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME_BYTES)
        .new_codec()
}

pub fn encode(frame: &Frame) -> Result<Bytes, postcard::Error> {
    postcard::to_stdvec(frame).map(Bytes::from)
}

pub fn decode(bytes: &[u8]) -> Result<Frame, FrameError> {
    // Check the version alone first: a newer layout may not decode at all.
    let (version, _) = postcard::take_from_bytes::<u16>(bytes)?;
    if version != PROTOCOL_VERSION {
        return Err(FrameError::Version(version));
    }
    Ok(postcard::from_bytes(bytes)?)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use tenure_core::{Ballot, Epoch, LeaseName};

    /// Any stamp: the frame carries it untouched.
    pub(in crate::peer) const STAMP: Stamp = Stamp {
        epoch: Epoch::FIRST,
        digest: 7,
    };

    #[test]
    fn frames_round_trip() {
        let frame = Frame {
            version: PROTOCOL_VERSION,
            from: NodeId(3),
            sent_at_us: 42,
            echo_offset_us: None,
            body: Body::Message(
                STAMP,
                Message::Prepare {
                    name: LeaseName::new("a/b").unwrap(),
                    ballot: Ballot {
                        counter: 7,
                        node: 3,
                        incarnation: 2,
                    },
                },
            ),
        };
        let bytes = encode(&frame).unwrap();
        assert!(bytes.len() < MAX_FRAME_BYTES);
        assert_eq!(decode(&bytes).unwrap(), frame);
    }

    /// The largest news of a chosen value a node sends: as many changes
    /// as it tells, each with the longest holder and the largest numbers.
    #[test]
    fn the_largest_news_of_a_chosen_value_fits_a_frame() {
        use tenure_core::{Chosen, HolderId, Micros, Token, Transition, TransitionKind, Ttl};
        let holder = HolderId::new(&"h".repeat(tenure_core::input::MAX_HOLDER_BYTES)).unwrap();
        let change = Transition {
            kind: TransitionKind::Superseded,
            holder,
            token: Token(u64::MAX),
            ttl: Ttl::from_millis(tenure_core::input::MAX_TTL_MS).unwrap(),
            ago: Micros(u64::MAX),
        };
        let ballot = Ballot {
            counter: u64::MAX,
            node: u16::MAX,
            incarnation: u32::MAX,
        };
        let frame = Frame {
            version: PROTOCOL_VERSION,
            from: NodeId(u16::MAX),
            sent_at_us: u64::MAX,
            echo_offset_us: Some(i64::MIN),
            body: Body::Message(
                STAMP,
                Message::Chosen(Chosen {
                    name: LeaseName::new(&"n".repeat(tenure_core::input::MAX_NAME_BYTES)).unwrap(),
                    ballot,
                    took: Micros(u64::MAX),
                    changes: vec![change; tenure_core::MAX_CHANGES_TOLD],
                }),
            ),
        };
        let bytes = encode(&frame).unwrap();
        assert!(
            bytes.len() < MAX_FRAME_BYTES,
            "{} bytes do not fit a frame",
            bytes.len()
        );
        assert_eq!(decode(&bytes).unwrap(), frame);
    }

    /// The largest message a correct node sends: an accept of a value
    /// whose queue is full and whose every name and holder is as long as
    /// allowed. It must fit a frame, or that name could never be written.
    #[test]
    fn an_accept_with_a_full_queue_of_the_longest_holders_fits_a_frame() {
        use tenure_core::lease::{Grant, LeaseValue, Waiter, Waiters};
        use tenure_core::{HolderId, LockDelay, Micros, Token, Ttl, WaiterId, MAX_WAITERS};
        let ballot = Ballot {
            counter: u64::MAX,
            node: u16::MAX,
            incarnation: u32::MAX,
        };
        let holder = HolderId::new(&"h".repeat(tenure_core::input::MAX_HOLDER_BYTES)).unwrap();
        let ttl = Ttl::from_millis(tenure_core::input::MAX_TTL_MS).unwrap();
        let lock_delay = LockDelay::from_millis(tenure_core::input::MAX_LOCK_DELAY_MS).unwrap();
        let id = |seq| WaiterId {
            node: u16::MAX,
            incarnation: u32::MAX,
            seq,
        };
        let waiter = |seq| Waiter {
            id: id(seq),
            holder: holder.clone(),
            ttl,
            lock_delay,
            until: Micros(u64::MAX),
        };
        let mut value = LeaseValue {
            token: Token(u64::MAX),
            grant: Some(Grant {
                holder: holder.clone(),
                ttl,
                lock_delay,
                waiter: Some(id(u64::MAX)),
                expired: false,
            }),
            waiters: Waiters(
                (0..MAX_WAITERS as u64)
                    .map(|s| waiter(u64::MAX - s))
                    .collect(),
            ),
            ..LeaseValue::default()
        };
        value.writes.count = u64::MAX;
        value.writes.recent = [ballot; tenure_core::lease::REMEMBERED_WRITES];
        let frame = Frame {
            version: PROTOCOL_VERSION,
            from: NodeId(u16::MAX),
            sent_at_us: u64::MAX,
            echo_offset_us: Some(i64::MIN),
            body: Body::Message(
                STAMP,
                Message::Accept {
                    name: LeaseName::new(&"n".repeat(tenure_core::input::MAX_NAME_BYTES)).unwrap(),
                    ballot,
                    value,
                    age: Micros(u64::MAX),
                    origin: ballot,
                },
            ),
        };
        let bytes = encode(&frame).unwrap();
        assert!(
            bytes.len() < MAX_FRAME_BYTES,
            "{} bytes do not fit a frame",
            bytes.len()
        );
        assert_eq!(decode(&bytes).unwrap(), frame);
    }

    #[test]
    fn a_frame_of_another_version_is_refused() {
        let frame = Frame {
            version: PROTOCOL_VERSION + 1,
            from: NodeId(1),
            sent_at_us: 1,
            echo_offset_us: None,
            body: Body::Hello {
                max_drift_ppm: 1_000,
                identity: "cluster tenure, members 1,2,3".into(),
                incarnation: 1,
                boot: 1,
            },
        };
        let bytes = encode(&frame).unwrap();
        assert!(matches!(decode(&bytes), Err(FrameError::Version(_))));
    }

    #[test]
    fn an_invalid_name_inside_a_frame_is_refused() {
        // Names are validated on decode too: a peer cannot smuggle one in.
        let mut bytes = encode(&Frame {
            version: PROTOCOL_VERSION,
            from: NodeId(1),
            sent_at_us: 1,
            echo_offset_us: None,
            body: Body::Message(
                STAMP,
                Message::Peek {
                    name: LeaseName::new("ab").unwrap(),
                    id: 1,
                },
            ),
        })
        .unwrap()
        .to_vec();
        let at = bytes.iter().position(|b| *b == b'a').unwrap();
        bytes[at] = b' ';
        assert!(decode(&bytes).is_err());
    }
}

/// Fuzzing: whatever a peer (or a stranger) sends, decoding answers a frame
/// or an error, never a panic, and a frame that decodes holds only valid
/// names. `PROPTEST_CASES=100000` for a long run; `cargo test` runs
/// proptest's 256 cases.
#[cfg(test)]
mod fuzz {
    use super::tests::STAMP;
    use super::*;
    use proptest::prelude::*;
    use tenure_core::LeaseName;

    fn valid() -> Vec<u8> {
        encode(&Frame {
            version: PROTOCOL_VERSION,
            from: NodeId(2),
            sent_at_us: 5,
            echo_offset_us: None,
            body: Body::Message(
                STAMP,
                Message::Peek {
                    name: LeaseName::new("jobs/a").expect("name"),
                    id: 3,
                },
            ),
        })
        .expect("encode")
        .to_vec()
    }

    fn names_are_valid(frame: &Frame) -> bool {
        match &frame.body {
            Body::Message(_, m) => m.name().is_none_or(|n| LeaseName::new(n.as_str()).is_ok()),
            _ => true,
        }
    }

    proptest! {
        #[test]
        fn any_bytes_decode_or_are_refused(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(frame) = decode(&bytes) {
                prop_assert!(names_are_valid(&frame));
            }
        }

        #[test]
        fn any_tail_after_this_version_decodes_or_is_refused(
            tail in prop::collection::vec(any::<u8>(), 0..512),
        ) {
            let mut bytes = postcard::to_stdvec(&PROTOCOL_VERSION).expect("version");
            bytes.extend_from_slice(&tail);
            if let Ok(frame) = decode(&bytes) {
                prop_assert!(names_are_valid(&frame));
            }
        }

        #[test]
        fn a_damaged_frame_decodes_or_is_refused(at in 0usize..64, byte in any::<u8>(), cut in 0usize..64) {
            let mut bytes = valid();
            let at = at % bytes.len();
            bytes[at] = byte;
            if let Ok(frame) = decode(&bytes) {
                prop_assert!(names_are_valid(&frame));
            }
            let mut short = valid();
            short.truncate(cut % short.len());
            prop_assert!(decode(&short).is_err() || cut % valid().len() == valid().len());
        }
    }
}
