//! Workloads under contention: many clients on ONE name, the normal case
//! for a lock. Each system runs the recipe its users would use, through
//! the same HTTP client as every other step (ureq, one kept-alive
//! connection per client, clients spread round-robin over the nodes).
//!
//! Every failure is counted by kind (`outcome`): a 5xx or a timeout is an
//! error; a connection refused by a dead node is expected of it, and
//! counted apart. After a connection error a client moves to the next
//! node; after any other failure an acquire goes on through the same node,
//! and a release is sent again through the next (`release_retrying`).

pub mod client;
pub mod fifo;
pub mod outcome;
