//! `transmissor-collector status`: the last transmission of every
//! municipality and job, for people watching many municipalities at once,
//! with each municipality's column set against its target's (PEC-version
//! drift).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use transmissor_proto::terminal::printable;

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct LastTransmission {
    pub ibge: String,
    pub municipality: String,
    pub job: String,
    pub target: String,
    pub transmission_id: i64,
    pub state: String,
    pub rows: i64,
    pub raw_bytes: i64,
    pub compressed_bytes: i64,
    pub batches: i32,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    /// Target columns this municipality's current rows lack (its PEC
    /// version sends fewer columns than the target has).
    pub missing_columns: Vec<String>,
    /// Columns of its last committed transmission (0: nothing committed).
    pub slice_columns: i32,
}

pub async fn last_transmissions(pool: &PgPool) -> Result<Vec<LastTransmission>, sqlx::Error> {
    sqlx::query_as(include_str!("status/last_transmissions.sql"))
        .fetch_all(pool)
        .await
}

fn human_bytes(n: i64) -> String {
    bytesize::ByteSize::b(n.max(0) as u64)
        .display()
        .iec()
        .to_string()
}

/// The municipality's column set against its target's: `41`, or `41, lacks
/// 2: a, b` when its PEC version sends fewer columns than the target has.
fn columns_cell(r: &LastTransmission) -> String {
    if r.slice_columns == 0 {
        return "-".into();
    }
    if r.missing_columns.is_empty() {
        return r.slice_columns.to_string();
    }
    let mut shown: Vec<&str> = r
        .missing_columns
        .iter()
        .take(3)
        .map(String::as_str)
        .collect();
    if r.missing_columns.len() > 3 {
        shown.push("...");
    }
    format!(
        "{}, lacks {}: {}",
        r.slice_columns,
        r.missing_columns.len(),
        shown.join(", ")
    )
}

/// Renders the table shown by `status`, every cell made safe for a
/// terminal ([`printable`]).
pub fn render(rows: &[LastTransmission]) -> String {
    let header = [
        "IBGE",
        "MUNICIPALITY",
        "JOB",
        "ID",
        "STATE",
        "ROWS",
        "RAW",
        "COMPRESSED",
        "DURATION",
        "FINISHED (UTC)",
        "COLUMNS",
        "ERROR",
    ];
    let mut table: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for r in rows {
        let duration = r
            .finished_at
            .map(|f| {
                format!(
                    "{:.1}s",
                    (f - r.started_at).num_milliseconds() as f64 / 1000.0
                )
            })
            .unwrap_or_else(|| "-".into());
        let mut error = r.error.clone().unwrap_or_default().replace('\n', " ");
        if error.chars().count() > 120 {
            error = error.chars().take(117).collect::<String>() + "...";
        }
        let cells = vec![
            r.ibge.clone(),
            r.municipality.clone(),
            r.job.clone(),
            r.transmission_id.to_string(),
            r.state.clone(),
            r.rows.to_string(),
            human_bytes(r.raw_bytes),
            human_bytes(r.compressed_bytes),
            duration,
            r.finished_at
                .map(|f| f.format("%Y-%m-%d %H:%M:%S").to_string())
                .unwrap_or_else(|| "-".into()),
            columns_cell(r),
            error,
        ];
        // Job, target, columns and error texts come from agents.
        table.push(cells.iter().map(|c| printable(c).into_owned()).collect());
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            table
                .iter()
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in &table {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    if rows.is_empty() {
        out.push_str("(no transmissions yet)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a hostile agent may put in any string it sends.
    const INJECTION: &str = "\x1b[2J\x1b]0;pwned\x07\u{9b}1m\u{202e}";

    #[test]
    fn agent_strings_reach_the_terminal_without_control_characters() {
        let t = Utc::now();
        let row = LastTransmission {
            ibge: "3550308".into(),
            municipality: "São Paulo".into(),
            job: format!("job{INJECTION}"),
            target: format!("target{INJECTION}"),
            transmission_id: 1,
            state: "failed".into(),
            rows: 0,
            raw_bytes: 0,
            compressed_bytes: 0,
            batches: 0,
            started_at: t,
            finished_at: Some(t),
            error: Some(format!("error{INJECTION}")),
            missing_columns: vec![format!("col{INJECTION}")],
            slice_columns: 2,
        };
        let out = render(&[row]);
        assert!(out.contains("job\\u{1b}[2J"), "{out}");
        for c in ['\x1b', '\x07', '\u{9b}', '\u{202e}'] {
            assert!(!out.contains(c), "{c:?} in {out:?}");
        }
    }
}
