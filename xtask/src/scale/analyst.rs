//! Phase 3: an analyst's queries over all municipalities, on a plain
//! connection of their own, against the default-configured server.

use anyhow::{Context, Result, bail};
use tokio::time::Instant;
use tokio_postgres::Client;

use transmissor_proto::identity::Ibge;
use transmissor_tests::stack::Stack;

use super::national::{PERSON, VISIT};
use super::stats::median;

pub struct Outcome {
    /// Median wall time (ms) of `count(*)` on the person target.
    pub count_ms: f64,
    /// Median planning time (ms) of the data-column filter over all municipalities.
    pub plan_ms: f64,
    /// Median wall time (ms) of the join of the two targets.
    pub join_ms: f64,
    /// Relations of the target (table, partitions, indexes) `count(*)` locks.
    pub count_locks: i64,
}

struct Query {
    label: &'static str,
    sql: String,
    /// What the first column summed over the result's rows must be, if known.
    expect: Option<i64>,
}

/// Medians over `repeat` runs of one query.
struct Timed {
    wall_ms: f64,
    plan_ms: f64,
    exec_ms: f64,
    result: i64,
}

/// `expected`: municipalities × rows per municipality in each target, when
/// every municipality's transmissions committed (the count and the join
/// must then return it).
pub async fn run(
    stack: &Stack,
    one: Ibge,
    expected: Option<i64>,
    repeat: usize,
) -> Result<Outcome> {
    let c = stack.analytic_client().await?;
    let r = c
        .query_one(
            "SELECT current_setting('server_version'), current_setting('max_connections'), \
               current_setting('max_locks_per_transaction'), \
               current_setting('max_prepared_transactions'), current_setting('fsync'), \
               (SELECT count(*) FROM pg_inherits WHERE inhparent = $1::text::regclass)",
            &[&format!("analytic.{PERSON}")],
        )
        .await
        .context("reading the server's settings")?;
    let (version, conns, locks, prepared, fsync, parts): (
        String,
        String,
        String,
        String,
        String,
        i64,
    ) = (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5));
    let slots = |s: &str| s.parse::<i64>().unwrap_or(0);
    println!(
        "==> phase 3: analyst queries on a plain connection, median of {repeat} \
         (PostgreSQL {version}, max_connections={conns}, max_locks_per_transaction={locks}: \
         {} lock slots; fsync={fsync}; {PERSON} has {parts} partitions)",
        slots(&locks) * (slots(&conns) + slots(&prepared))
    );
    let count_sql = format!("SELECT count(*) FROM analytic.{PERSON}");
    let join_sql = format!(
        "SELECT count(*) FROM analytic.{PERSON} p JOIN analytic.{VISIT} v \
         ON v._ibge = p._ibge AND v.person_id = p.id GROUP BY v.code"
    );
    let queries = [
        Query {
            label: "count(*), all municipalities",
            sql: count_sql.clone(),
            expect: expected,
        },
        Query {
            label: "filter on one municipality",
            sql: format!("SELECT count(*), min(day) FROM analytic.{VISIT} WHERE _ibge = '{one}'"),
            expect: None,
        },
        Query {
            label: "filter on data columns, all",
            sql: format!(
                "SELECT count(*) FROM analytic.{VISIT} \
                 WHERE code = 'I10' AND day >= DATE '2024-06-01'"
            ),
            expect: None,
        },
        Query {
            label: "join of the two targets, all",
            sql: join_sql.clone(),
            expect: expected,
        },
    ];
    println!(
        "    {:<32} {:>9} {:>11} {:>12} {:>10}",
        "query", "wall ms", "planning ms", "execution ms", "result"
    );
    let mut timed = Vec::new();
    for q in &queries {
        let t = time(&c, q, repeat).await.map_err(|e| {
            println!("    {:<32} FAILED: {e:#}", q.label);
            e.context(format!("analyst query {:?} failed: {}", q.label, q.sql))
        })?;
        println!(
            "    {:<32} {:>9.1} {:>11.2} {:>12.1} {:>10}",
            q.label, t.wall_ms, t.plan_ms, t.exec_ms, t.result
        );
        if let Some(want) = q.expect
            && want != t.result
        {
            bail!("{}: {} rows where {want} were loaded", q.label, t.result);
        }
        timed.push(t);
    }

    let count_locks = locks_held(&c, "count(*)", &count_sql).await?;
    locks_held(&c, "the join", &join_sql).await?;
    Ok(Outcome {
        count_ms: timed[0].wall_ms,
        plan_ms: timed[2].plan_ms,
        join_ms: timed[3].wall_ms,
        count_locks,
    })
}

/// PostgreSQL's own message (code, detail, hint), not just "db error".
fn pg_error(e: tokio_postgres::Error) -> anyhow::Error {
    match e.as_db_error() {
        Some(d) => anyhow::anyhow!(
            "{}: {} [SQLSTATE {}]{}",
            d.severity(),
            d.message(),
            d.code().code(),
            d.hint()
                .map(|h| format!(" (hint: {h})"))
                .unwrap_or_default()
        ),
        None => anyhow::Error::new(e),
    }
}

async fn time(c: &Client, q: &Query, repeat: usize) -> Result<Timed> {
    let (mut wall, mut plan, mut exec, mut result) = (Vec::new(), Vec::new(), Vec::new(), 0);
    for _ in 0..repeat {
        let t = Instant::now();
        let rows = c.query(&q.sql, &[]).await.map_err(pg_error)?;
        wall.push(t.elapsed().as_secs_f64() * 1e3);
        result = rows.iter().map(|r| r.get::<_, i64>(0)).sum();
    }
    let explain = format!("EXPLAIN (ANALYZE, TIMING OFF, SUMMARY ON) {}", q.sql);
    for _ in 0..repeat {
        let rows = c.query(&explain, &[]).await.map_err(pg_error)?;
        let lines: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        let find = |what: &str| -> Result<f64> {
            let line = (lines.iter().find_map(|l| l.trim().strip_prefix(what)))
                .with_context(|| format!("no {what} in the plan:\n{}", lines.join("\n")))?;
            let ms = line.trim().trim_end_matches("ms").trim();
            ms.parse().with_context(|| format!("{what} {line:?}"))
        };
        plan.push(find("Planning Time:")?);
        exec.push(find("Execution Time:")?);
    }
    Ok(Timed {
        wall_ms: median(&wall),
        plan_ms: median(&plan),
        exec_ms: median(&exec),
        result,
    })
}

/// Runs `sql` in a transaction and prints the relation locks the session
/// then holds; returns those on the targets' tables, partitions and indexes.
async fn locks_held(c: &Client, label: &str, sql: &str) -> Result<i64> {
    c.batch_execute("BEGIN").await.map_err(pg_error)?;
    let listed = async {
        c.query(sql, &[]).await?;
        c.query_one(
            "SELECT count(*) FILTER (WHERE ours AND c.relkind IN ('r', 'p')), \
                    count(*) FILTER (WHERE ours AND c.relkind IN ('i', 'I')), \
                    count(*), count(*) FILTER (WHERE l.fastpath) \
             FROM pg_locks l \
             LEFT JOIN pg_class c ON c.oid = l.relation \
             LEFT JOIN pg_namespace n ON n.oid = c.relnamespace, \
             LATERAL (SELECT n.nspname IN ('analytic', 'transmissor_parts') AS ours) o \
             WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation'",
            &[],
        )
        .await
    }
    .await;
    c.batch_execute("ROLLBACK").await.map_err(pg_error)?;
    let r = listed.map_err(pg_error)?;
    let (tables, indexes, all, fast): (i64, i64, i64, i64) =
        (r.get(0), r.get(1), r.get(2), r.get(3));
    println!(
        "    locks held after {label}: {tables} tables/partitions + {indexes} indexes of the \
         targets ({all} relation locks in all with this query's catalogs, {fast} fast-path)"
    );
    Ok(tables + indexes)
}
