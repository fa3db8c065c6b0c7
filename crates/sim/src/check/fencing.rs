//! Fencing: no token is granted twice, and a grant that completes before
//! another begins carries a smaller token.

use super::Violation;
use crate::history::OpRecord;
use std::collections::BTreeMap;
use tenure_core::{LeaseName, Outcome};

pub fn check(name: &LeaseName, ops: &[OpRecord]) -> Result<(), Violation> {
    let grants: Vec<(u64, u64, u64)> = ops
        .iter()
        .filter_map(|o| match &o.returned {
            Some((at, Outcome::Granted { token, .. })) => Some((o.invoked_us, *at, token.0)),
            _ => None,
        })
        .collect();
    let mut seen = BTreeMap::new();
    for (invoked, returned, token) in &grants {
        if let Some(earlier) = seen.insert(*token, (*invoked, *returned)) {
            return Err(Violation::Fencing {
                name: name.to_string(),
                detail: format!(
                    "token {token} granted twice (replies at {}µs and {returned}µs)",
                    earlier.1
                ),
            });
        }
    }
    for a in &grants {
        for b in &grants {
            if a.1 < b.0 && a.2 >= b.2 {
                return Err(Violation::Fencing {
                    name: name.to_string(),
                    detail: format!(
                        "grant of token {} returned at {}µs, before a grant of token {} was asked for at {}µs",
                        a.2, a.1, b.2, b.0
                    ),
                });
            }
        }
    }
    Ok(())
}
