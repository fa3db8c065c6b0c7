//! The progress lines on stderr: a bar, the line's number of how many the
//! run will print, the time since the start, and what is running.

use std::time::Instant;

/// Width of the bar, in characters.
const BAR: usize = 20;

pub struct Progress {
    pub began: Instant,
    /// Lines printed so far.
    pub printed: usize,
    /// Lines the run will print in all (from the step table).
    total: usize,
}

impl Progress {
    pub fn new(total: usize) -> Progress {
        Progress {
            began: Instant::now(),
            printed: 0,
            total,
        }
    }

    /// The next line: a new part of the run begins.
    pub fn next(&mut self, what: &str) {
        self.printed += 1;
        // The total comes from the step table and each step's lines are
        // checked against it as it ends, so this never passes the total.
        assert!(
            self.printed <= self.total,
            "progress line {} of {}: the step table undercounts ({what})",
            self.printed,
            self.total
        );
        eprintln!("{}  {what}", self.head());
    }

    /// A line within the current part (a long one).
    pub fn note(&self, what: &str) {
        eprintln!("{:>27.1}s    {what}", self.began.elapsed().as_secs_f64());
    }

    fn head(&self) -> String {
        let done = self.printed * BAR / self.total.max(1);
        format!(
            "[{}{}] {:>2}/{} {:>5.1}s",
            "#".repeat(done),
            ".".repeat(BAR - done),
            self.printed,
            self.total,
            self.began.elapsed().as_secs_f64()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_fills_as_lines_are_printed() {
        let mut p = Progress::new(4);
        assert!(p.head().starts_with("[....................]  0/4"));
        p.printed = 2;
        assert!(p.head().starts_with("[##########..........]  2/4"));
        p.printed = 4;
        assert!(p.head().starts_with("[####################]  4/4"));
    }

    #[test]
    #[should_panic(expected = "undercounts")]
    fn a_line_past_the_total_is_a_bug_in_the_table() {
        let mut p = Progress::new(1);
        p.next("one");
        p.next("two");
    }
}
