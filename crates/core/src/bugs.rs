//! Deliberate protocol bugs, off by default.
//!
//! The simulator and the model check switch one on at a time to prove that
//! their checkers catch it. Each flag sits on the real code path it breaks,
//! so what is tested is the code that runs in production with the flag off.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Bug {
    /// Send replies before the writes they depend on are durable.
    ReplyBeforePersist,
    /// Judge a lease by the largest age among all promises, including those
    /// that report an older ballot than the highest, ignoring which value
    /// each age belongs to.
    AgeOfAnyBallot,
    /// On restart, load accepted values but forget promises: the floor the
    /// last horizon sets, and every promise stored with a record.
    ForgetPromises,
    /// A re-grant to the current holder keeps its token.
    NoTokenBump,
    /// The holder's deadline is `sent + ttl`, without the drift margin.
    NoDriftMargin,
    /// An acquire that will be refused runs phase 1 instead of a quorum
    /// read, and a pre-empted round prepares again at once: under
    /// contention, refusals pre-empt the holder's renewals and releases.
    PrepareToRefuse,
    /// Trust one clock: judge a lease by the largest age among the
    /// promises of the top value, and on the fast path by this node's
    /// clock alone, so that one fast clock ends leases early.
    TrustOneClock,
    /// Answer that a grant expired without writing so first: a later
    /// answer judged at a younger age (another quorum, a restart) may show
    /// it held again.
    UnwrittenExpiry,
    /// Accept lazily whenever the holder is the same, even when the token,
    /// ttl or lock-delay change: a crash can then forget a new grant.
    LazyForTheHolder,
    /// Count a lazy acceptance as durable from a bare majority: one node
    /// that forgets it and runs a fast clock ages the lease alone.
    LazyMajority,
    /// A register that holds only a promise reports nothing accepted
    /// without the token floor: a compacted name read or granted through
    /// it starts again at token 0.
    PromiseHidesFloor,
    /// Settle a name for compaction with a majority, not every member: a
    /// member that missed the settle keeps an older value, which a quorum
    /// with members that deleted then takes for the latest.
    CompactOnMajority,
    /// The coordinator of a change of members moves to the new members as
    /// soon as the joint configuration is in force, without the rescan: a
    /// value only the old members held is lost to the new quorums.
    SkipRescan,
    /// A look whose majority disagrees waits a whole phase for the other
    /// members, which may be down: under contention with a node lost, the
    /// name moves on meanwhile, the round can no longer learn the fate of
    /// its own earlier write, and its request fails.
    LookWaitsForTheSilent,
}

impl Bug {
    pub const ALL: [Bug; 14] = [
        Bug::ReplyBeforePersist,
        Bug::AgeOfAnyBallot,
        Bug::ForgetPromises,
        Bug::NoTokenBump,
        Bug::NoDriftMargin,
        Bug::PrepareToRefuse,
        Bug::TrustOneClock,
        Bug::UnwrittenExpiry,
        Bug::LazyForTheHolder,
        Bug::LazyMajority,
        Bug::PromiseHidesFloor,
        Bug::CompactOnMajority,
        Bug::SkipRescan,
        Bug::LookWaitsForTheSilent,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Bug::ReplyBeforePersist => "reply-before-persist",
            Bug::AgeOfAnyBallot => "age-of-any-ballot",
            Bug::ForgetPromises => "forget-promises",
            Bug::NoTokenBump => "no-token-bump",
            Bug::NoDriftMargin => "no-drift-margin",
            Bug::PrepareToRefuse => "prepare-to-refuse",
            Bug::TrustOneClock => "trust-one-clock",
            Bug::UnwrittenExpiry => "unwritten-expiry",
            Bug::LazyForTheHolder => "lazy-for-the-holder",
            Bug::LazyMajority => "lazy-majority",
            Bug::PromiseHidesFloor => "promise-hides-floor",
            Bug::CompactOnMajority => "compact-on-majority",
            Bug::SkipRescan => "skip-rescan",
            Bug::LookWaitsForTheSilent => "look-waits-for-the-silent",
        }
    }

    pub fn from_name(name: &str) -> Option<Bug> {
        Bug::ALL.into_iter().find(|b| b.name() == name)
    }
}

/// The set of injected bugs; empty in production.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Bugs(Option<Bug>);

impl Bugs {
    pub const NONE: Bugs = Bugs(None);

    pub fn inject(bug: Bug) -> Bugs {
        Bugs(Some(bug))
    }

    pub fn has(self, bug: Bug) -> bool {
        self.0 == Some(bug)
    }
}
