//! pgpart's notion of "now": the wall clock, or an instant given on the command line
//! (`--now`) that then advances with real time. Tests hand every pgpart process its clock
//! this way, so nothing they check depends on the date they run on.

use std::time::Instant;

use chrono::{DateTime, Utc};

#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// `--now` and the moment it was taken; `None` for the wall clock.
    start: Option<(DateTime<Utc>, Instant)>,
}

impl Clock {
    /// The wall clock, or `start` advancing with the monotonic clock from this moment.
    pub fn new(start: Option<DateTime<Utc>>) -> Clock {
        Clock {
            start: start.map(|t| (t, Instant::now())),
        }
    }

    /// Whether this is the wall clock (no `--now`): only then is it checked against the
    /// database's clock.
    pub fn is_wall(&self) -> bool {
        self.start.is_none()
    }

    pub fn now(&self) -> DateTime<Utc> {
        match self.start {
            None => Utc::now(),
            Some((t, at)) => {
                t + chrono::Duration::from_std(at.elapsed()).unwrap_or(chrono::Duration::MAX)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_given_start_advances_from_that_instant() {
        let start = DateTime::parse_from_rfc3339("2027-01-31T23:59:30Z")
            .unwrap()
            .to_utc();
        let clock = Clock::new(Some(start));
        let a = clock.now();
        let b = clock.now();
        assert!(start <= a && a <= b, "{start} {a} {b}");
        assert!(a - start < chrono::Duration::seconds(60), "{a}");
    }
}
