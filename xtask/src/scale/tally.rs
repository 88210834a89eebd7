//! What each attack got back: counts by attack and outcome, shared by the
//! attacking tasks, printed at the end of the attacked phase.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Counts by (attack, outcome).
#[derive(Default, Clone)]
pub struct Tally(Arc<Mutex<BTreeMap<(String, String), u64>>>);

impl Tally {
    /// One more `outcome` for `attack`.
    pub fn note(&self, attack: &str, outcome: impl Into<String>) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry((attack.to_string(), outcome.into())).or_default() += 1;
    }

    /// A gRPC call's outcome: accepted, or its status code.
    pub fn add<T>(&self, attack: &str, r: &Result<T, tonic::Status>) {
        match r {
            Ok(_) => self.note(attack, "OK (accepted)"),
            Err(s) => self.note(attack, format!("{:?}", s.code())),
        }
    }

    /// How many outcomes of `attack` start with `prefix`.
    pub fn count(&self, attack: &str, prefix: &str) -> u64 {
        let m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        (m.iter())
            .filter(|((a, o), _)| a == attack && o.starts_with(prefix))
            .map(|(_, n)| n)
            .sum()
    }

    pub fn print(&self) {
        let m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for ((attack, outcome), n) in m.iter() {
            println!("    {n:>8}  {attack:<40} {outcome}");
        }
    }
}

/// A duration as a coarse bucket, for outcomes such as "closed by the
/// server after 5–15 s".
pub fn bucket(d: Duration) -> &'static str {
    match d.as_secs_f64() {
        s if s < 1.0 => "< 1 s",
        s if s < 5.0 => "1–5 s",
        s if s < 15.0 => "5–15 s",
        s if s < 60.0 => "15–60 s",
        _ => "≥ 60 s",
    }
}
