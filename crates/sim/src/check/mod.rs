//! The checkers: each takes the history of one run and returns the first
//! violation of its property, if any.

pub mod exclusivity;
pub mod fencing;
pub mod linearizability;
pub mod spec;

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// The operations on `name` have no linearization.
    NotLinearizable { name: String, ops: usize },
    /// Two holders' validity intervals overlap.
    Overlap { name: String, detail: String },
    /// A token was granted twice, or went backwards in real time.
    Fencing { name: String, detail: String },
    /// A free name could not be acquired after faults healed.
    Liveness { detail: String },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::NotLinearizable { name, ops } => {
                write!(
                    f,
                    "linearizability: the {ops} operations on {name:?} have no linearization"
                )
            }
            Violation::Overlap { name, detail } => write!(f, "exclusivity on {name:?}: {detail}"),
            Violation::Fencing { name, detail } => write!(f, "fencing on {name:?}: {detail}"),
            Violation::Liveness { detail } => write!(f, "liveness: {detail}"),
        }
    }
}
