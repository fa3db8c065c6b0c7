//! The wire format between nodes: length-delimited frames, each a
//! postcard-encoded [`Frame`] that starts with the protocol version.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tenure_core::{Message, NodeId};
use tokio_util::codec::LengthDelimitedCodec;

/// Bumped on any change to [`Frame`] or to the core's `Message`. Nodes of
/// different versions refuse each other's connections rather than guess.
pub const PROTOCOL_VERSION: u16 = 1;

/// Largest frame. Names and holders are at most 128 bytes each, so a real
/// message is a few hundred bytes; the limit stops a bad peer from making
/// this node allocate without bound.
pub const MAX_FRAME_BYTES: usize = 16 * 1024;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frame {
    /// First, so that a reader can check it before decoding the rest.
    pub version: u16,
    pub from: NodeId,
    pub body: Body,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    /// The first frame of every connection: who is dialling.
    Hello,
    Message(Message),
}

#[derive(Debug, thiserror::Error)]
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
mod tests {
    use super::*;
    use tenure_core::{Ballot, LeaseName};

    #[test]
    fn frames_round_trip() {
        let frame = Frame {
            version: PROTOCOL_VERSION,
            from: NodeId(3),
            body: Body::Message(Message::Prepare {
                name: LeaseName::new("a/b").unwrap(),
                ballot: Ballot {
                    counter: 7,
                    node: 3,
                    incarnation: 2,
                },
            }),
        };
        let bytes = encode(&frame).unwrap();
        assert!(bytes.len() < MAX_FRAME_BYTES);
        assert_eq!(decode(&bytes).unwrap(), frame);
    }

    #[test]
    fn a_frame_of_another_version_is_refused() {
        let frame = Frame {
            version: PROTOCOL_VERSION + 1,
            from: NodeId(1),
            body: Body::Hello,
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
            body: Body::Message(Message::Peek {
                name: LeaseName::new("ab").unwrap(),
                id: 1,
            }),
        })
        .unwrap()
        .to_vec();
        let at = bytes.iter().position(|b| *b == b'a').unwrap();
        bytes[at] = b' ';
        assert!(decode(&bytes).is_err());
    }
}
