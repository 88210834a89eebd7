//! A synthetic national fleet written straight into the collector's control
//! schema: municipalities with an agent each and a history of daily
//! transmissions, in a handful of set-based statements. For the dashboard
//! test and the render benchmark, which need 5,570 municipalities with
//! history rather than 5,570 real agents. The health evaluator then derives
//! their states from these rows like from any others.
//!
//! The mix, by municipality number `i` (deterministic):
//! - `i % 97 == 1`: enrolled, never heard from (`never`);
//! - `i % 53 == 2`: last heartbeat two hours ago (`offline`);
//! - `i % 89 == 3`: last heartbeat forty days ago (`inactive`);
//! - `i % 31 == 4`: the last transmission failed (`failing`);
//! - `i % 41 == 5`: certificate expiring tomorrow (`degraded`);
//! - `i % 17 == 6`: PEC 5.3.21 while the rest run 5.3.22 (`degraded`);
//! - the rest heartbeat now and commit every day (`ok`).

use anyhow::Result;
use sqlx::PgPool;

/// The 27 UF prefixes of IBGE codes, so the fleet spreads over every state.
const UF_PREFIXES: [&str; 27] = [
    "11", "12", "13", "14", "15", "16", "17", "21", "22", "23", "24", "25", "26", "27", "28", "29",
    "31", "32", "33", "35", "41", "42", "43", "50", "51", "52", "53",
];

/// The IBGE code of fleet municipality `i` (1-based): a UF prefix, a
/// number from 9999 down (never one of the codes the other tests use) and
/// a valid check digit, so the API takes it like a real one.
pub fn ibge(i: usize) -> String {
    let n = UF_PREFIXES.len();
    let six = format!("{}{:04}", UF_PREFIXES[i % n], 9_999 - i / n);
    transmissor_proto::identity::Ibge::with_check_digit(&six)
        .map(|c| c.to_string())
        .unwrap_or(six)
}

/// What [`seed`] wrote.
#[derive(Debug, Clone, Copy)]
pub struct Seeded {
    pub municipalities: u64,
    pub transmissions: u64,
}

/// Writes `count` municipalities with one agent each and `days` days of
/// one daily transmission per job in `jobs`.
pub async fn seed(pool: &PgPool, count: usize, days: u32, jobs: &[&str]) -> Result<Seeded> {
    let codes: Vec<String> = (1..=count).map(ibge).collect();
    let names: Vec<String> = (1..=count)
        .map(|i| format!("Município Sintético {i:04}"))
        .collect();
    let numbers: Vec<i32> = (1..=count as i32).collect();
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO transmissor.municipalities (ibge, name, created_at)
         SELECT ibge, name, now() - interval '400 days'
         FROM unnest($1::text[], $2::text[]) AS v(ibge, name)",
    )
    .bind(&codes)
    .bind(&names)
    .execute(&mut *tx)
    .await?;
    sqlx::query(include_str!("fleet/agents.sql"))
        .bind(&codes)
        .bind(&numbers)
        .execute(&mut *tx)
        .await?;
    let jobs: Vec<String> = jobs.iter().map(|j| j.to_string()).collect();
    let written = sqlx::query(include_str!("fleet/transmissions.sql"))
        .bind(&codes)
        .bind(&numbers)
        .bind(i32::try_from(days)?)
        .bind(&jobs)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    sqlx::query("ANALYZE transmissor.transmissions")
        .execute(pool)
        .await?;
    Ok(Seeded {
        municipalities: count as u64,
        transmissions: written,
    })
}
