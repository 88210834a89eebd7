//! Row-count anomalies: the latest committed transmission of a job against
//! the municipality's own recent history of that job.
//!
//! The latest count is an anomaly when the history has at least
//! `min_history` points and
//!
//! ```text
//! |latest − median| > max(k · MAD · 1.4826, ratio · median, min_delta)
//! ```
//!
//! where MAD is the median absolute deviation (×1.4826 estimates a standard
//! deviation and ignores outliers). Defaults: `k = 4`, `ratio = 0.5` (a
//! change under half the usual count is never flagged), `min_delta = 10`
//! rows (so a job that usually brings 0 or 2 rows is not flagged for 5; an
//! all-zero history flags only a latest count above 10).

use std::fmt;

use serde::{Deserialize, Serialize};

/// MAD × this estimates the standard deviation of normal data.
const MAD_TO_SIGMA: f64 = 1.4826;

/// `[monitor.rows]`: when a row count is an anomaly.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnomalyRule {
    /// Fewer previous committed counts than this: no judgement.
    #[serde(default = "default_min_history")]
    pub min_history: usize,
    /// At most this many previous counts are used (the newest).
    #[serde(default = "default_window")]
    pub window: usize,
    /// Robust deviations (MAD × 1.4826) allowed.
    #[serde(default = "default_k")]
    pub k: f64,
    /// Fraction of the median always allowed.
    #[serde(default = "default_ratio")]
    pub ratio: f64,
    /// Rows always allowed.
    #[serde(default = "default_min_delta")]
    pub min_delta: u64,
}

impl Default for AnomalyRule {
    fn default() -> Self {
        Self {
            min_history: default_min_history(),
            window: default_window(),
            k: default_k(),
            ratio: default_ratio(),
            min_delta: default_min_delta(),
        }
    }
}

fn default_min_history() -> usize {
    5
}
fn default_window() -> usize {
    30
}
fn default_k() -> f64 {
    4.0
}
fn default_ratio() -> f64 {
    0.5
}
fn default_min_delta() -> u64 {
    10
}

/// A flagged count: `rows 120 against a usual 1,000 (median of 14 runs)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowAnomaly {
    pub latest: u64,
    /// The median of the history, rounded.
    pub usual: u64,
    /// Points of history the median was taken over.
    pub runs: usize,
}

impl fmt::Display for RowAnomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rows {} against a usual {} (median of {} runs)",
            group_thousands(self.latest, ','),
            group_thousands(self.usual, ','),
            self.runs
        )
    }
}

impl RowAnomaly {
    /// `120 linhas contra 1.000 habituais (mediana de 14 envios)`.
    pub fn pt_br(&self) -> String {
        format!(
            "{} linhas contra {} habituais (mediana de {} envios)",
            group_thousands(self.latest, '.'),
            group_thousands(self.usual, '.'),
            self.runs
        )
    }
}

/// `latest` against `history` (the previous committed counts of the job,
/// newest first; only the first `rule.window` are used).
pub fn row_anomaly(latest: u64, history: &[u64], rule: &AnomalyRule) -> Option<RowAnomaly> {
    let mut points: Vec<u64> = history.iter().copied().take(rule.window).collect();
    if points.is_empty() || points.len() < rule.min_history {
        return None;
    }
    points.sort_unstable();
    let median = median_sorted(&points)?;
    let mut deviations: Vec<f64> = points.iter().map(|&x| (x as f64 - median).abs()).collect();
    deviations.sort_unstable_by(f64::total_cmp);
    let mad = median_sorted_f64(&deviations)?;
    let allowed = (rule.k * mad * MAD_TO_SIGMA)
        .max(rule.ratio * median)
        .max(rule.min_delta as f64);
    ((latest as f64 - median).abs() > allowed).then(|| RowAnomaly {
        latest,
        usual: median.round() as u64,
        runs: points.len(),
    })
}

fn median_sorted(sorted: &[u64]) -> Option<f64> {
    let n = sorted.len();
    let hi = *sorted.get(n / 2)? as f64;
    if n % 2 == 1 {
        return Some(hi);
    }
    let lo = *sorted.get(n / 2 - 1)? as f64;
    Some((lo + hi) / 2.0)
}

fn median_sorted_f64(sorted: &[f64]) -> Option<f64> {
    let n = sorted.len();
    let hi = *sorted.get(n / 2)?;
    if n % 2 == 1 {
        return Some(hi);
    }
    let lo = *sorted.get(n / 2 - 1)?;
    Some((lo + hi) / 2.0)
}

/// `1234567` → `1,234,567` (with `sep` between groups of three).
pub fn group_thousands(n: u64, sep: char) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(sep);
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flagged(latest: u64, history: &[u64]) -> Option<RowAnomaly> {
        row_anomaly(latest, history, &AnomalyRule::default())
    }

    #[test]
    fn synthetic_histories() {
        let stable = [
            1000, 1010, 990, 1005, 995, 1002, 998, 1001, 999, 1003, 997, 1000, 1004, 996,
        ];
        let noisy = [100, 400, 250, 900, 50, 600, 300, 700, 150, 500];
        // (name, latest, history, (usual, runs) when flagged)
        type Case<'a> = (&'a str, u64, &'a [u64], Option<(u64, usize)>);
        let cases: [Case<'_>; 12] = [
            ("stable, same", 1001, &stable, None),
            ("stable, within half", 1400, &stable, None),
            ("stable, drop", 120, &stable, Some((1000, 14))),
            ("stable, to zero", 0, &stable, Some((1000, 14))),
            ("stable, spike", 5000, &stable, Some((1000, 14))),
            ("noisy, in range", 1200, &noisy, None),
            ("noisy, far spike", 5000, &noisy, Some((350, 10))),
            ("short history", 0, &[1000, 1000, 1000, 1000], None),
            ("no history", 5, &[], None),
            ("all zeros, zero", 0, &[0; 10], None),
            ("all zeros, a few", 7, &[0; 10], None),
            ("all zeros, many", 500, &[0; 10], Some((0, 10))),
        ];
        for (name, latest, history, want) in cases {
            let got = flagged(latest, history).map(|a| (a.usual, a.runs));
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn window_keeps_the_newest() {
        // Newest first: ten runs of ~10, then forty old runs of ~1,000.
        let mut history = vec![10u64; 10];
        history.extend([1000u64; 40]);
        let rule = AnomalyRule {
            window: 10,
            ..AnomalyRule::default()
        };
        assert_eq!(row_anomaly(12, &history, &rule), None);
        assert!(row_anomaly(1000, &history, &rule).is_some());
    }

    #[test]
    fn explanations() {
        let a = RowAnomaly {
            latest: 120,
            usual: 1000,
            runs: 14,
        };
        assert_eq!(
            a.to_string(),
            "rows 120 against a usual 1,000 (median of 14 runs)"
        );
        assert_eq!(
            a.pt_br(),
            "120 linhas contra 1.000 habituais (mediana de 14 envios)"
        );
        assert_eq!(group_thousands(0, ','), "0");
        assert_eq!(group_thousands(999, ','), "999");
        assert_eq!(group_thousands(1_234_567, '.'), "1.234.567");
    }
}
