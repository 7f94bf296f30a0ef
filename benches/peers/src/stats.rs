//! The median, min and max of one metric over a pair's rounds, and their
//! spread. Standalone (no other module, no dependency): it is also the root
//! of the `stats` test target, so that `cargo test -p peers` runs its unit
//! test without the bench target (whose `main` would run the comparison).

/// One metric over the rounds that reported it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stats {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Stats {
    /// `None` for no values; the median of an even count is the mean of the
    /// two middle values.
    pub fn of(values: &[f64]) -> Option<Stats> {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = match n {
            0 => return None,
            _ if n % 2 == 1 => v[n / 2],
            _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        };
        Some(Stats {
            median,
            min: v[0],
            max: v[n - 1],
        })
    }

    /// Half the range over the median, `(max - min) / 2 / median`: 0.05 is
    /// shown as "±5.0 %". `None` for a zero median.
    pub fn spread(&self) -> Option<f64> {
        (self.median != 0.0).then(|| (self.max - self.min) / 2.0 / self.median.abs())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn median_and_spread() {
        // Imported here: the bench target is checked with cfg(test) but
        // without its #[test] functions.
        use super::Stats;

        let odd = Stats::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!(
            odd,
            Stats {
                median: 2.0,
                min: 1.0,
                max: 3.0
            }
        );
        assert_eq!(odd.spread(), Some(0.5));
        let even = Stats::of(&[4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!(even.median, 2.5);
        assert_eq!(even.spread(), Some(0.6));
        let one = Stats::of(&[7.0]).unwrap();
        assert_eq!((one.median, one.spread()), (7.0, Some(0.0)));
        assert_eq!(Stats::of(&[]), None);
        assert_eq!(Stats::of(&[-1.0, 0.0, 1.0]).unwrap().spread(), None);
    }
}
