//! Lease exclusivity: in true time, the validity intervals of two different
//! holders of one name never overlap.

use super::Violation;
use crate::history::Validity;
use tenure_core::LeaseName;

pub fn check(name: &LeaseName, intervals: &[Validity]) -> Result<(), Violation> {
    let mut sorted: Vec<&Validity> = intervals
        .iter()
        .filter(|v| v.from_us < v.until_us)
        .collect();
    sorted.sort_by_key(|v| (v.from_us, v.until_us));
    // Sweep: remember the interval reaching furthest so far, per client is
    // not needed: any earlier interval of ANOTHER client that ends after
    // this one starts is an overlap.
    let mut reach: Vec<&Validity> = Vec::new();
    for v in sorted {
        reach.retain(|r| r.until_us > v.from_us);
        if let Some(r) = reach.iter().find(|r| r.client != v.client) {
            return Err(Violation::Overlap {
                name: name.to_string(),
                detail: format!(
                    "client {} held token {} during [{}µs, {}µs) and client {} held token {} from {}µs",
                    r.client, r.token, r.from_us, r.until_us, v.client, v.token, v.from_us
                ),
            });
        }
        reach.push(v);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tenure_core::Token;

    fn v(client: usize, token: u64, from_us: u64, until_us: u64) -> Validity {
        Validity {
            client,
            token: Token(token),
            from_us,
            until_us,
        }
    }

    #[test]
    fn touching_intervals_are_fine_and_overlapping_ones_are_not() {
        let name = LeaseName::new("n").unwrap();
        assert!(check(&name, &[v(1, 1, 0, 100), v(2, 2, 100, 200)]).is_ok());
        assert!(check(&name, &[v(1, 1, 0, 100), v(1, 2, 50, 200)]).is_ok());
        assert!(check(&name, &[v(1, 1, 0, 100), v(2, 2, 99, 200)]).is_err());
        assert!(check(
            &name,
            &[v(1, 1, 0, 1000), v(3, 2, 10, 20), v(2, 3, 500, 600)]
        )
        .is_err());
    }
}
