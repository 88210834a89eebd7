//! The municipality's source table and the seeded changes the rounds make
//! to its rows and its columns.

use anyhow::Result;
use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use tokio_postgres::Client;

use transmissor_tests::stack::{Municipality, Stack};

pub(super) async fn load_source(stack: &Stack, m: &Municipality, rows: i64) -> Result<()> {
    let src = stack.source.connect(&m.db).await?;
    src.batch_execute(&format!(
        "CREATE TABLE grande AS SELECT g::int8 AS id, repeat(md5(g::text), 2) AS payload, \
         (g * 1.5)::numeric(14,2) AS valor, now() - interval '1 day' AS atualizado \
         FROM generate_series(1, {rows}) g; \
         ALTER TABLE grande ADD PRIMARY KEY (id), ALTER atualizado SET NOT NULL, \
           ALTER atualizado SET DEFAULT now()"
    ))
    .await?;
    stack.grant_reader(&m.db).await
}

/// A small seeded change: new rows (NULL in the columns the schema rounds
/// added), changed rows, deleted rows. Inserts and updates set
/// `atualizado` (the upsert job's watermark) to the transaction's time.
pub(super) fn mutation_sql(rng: &mut StdRng, round: u32) -> String {
    let inserts = rng.random_range(200..2000);
    let upd_mod = rng.random_range(50..400);
    let upd_rem = rng.random_range(0..upd_mod);
    let del_mod = rng.random_range(200..1000);
    let del_rem = rng.random_range(0..del_mod);
    format!(
        "INSERT INTO grande (id, payload, valor) \
           SELECT m + g, md5('r{round}-' || (m + g)), ((m + g) * 0.25)::numeric(14,2) \
           FROM (SELECT coalesce(max(id), 0) AS m FROM grande) s, generate_series(1, {inserts}) g; \
         UPDATE grande SET payload = md5(payload || 'r{round}'), valor = valor + {round}, \
           atualizado = now() \
           WHERE id % {upd_mod} = {upd_rem}; \
         DELETE FROM grande WHERE id % {del_mod} = {del_rem}"
    )
}

/// `(count, sum(id))` of the source table.
pub(super) async fn source_state(src: &Client) -> Result<(i64, i64)> {
    let r = src
        .query_one(
            "SELECT count(*), coalesce(sum(id), 0)::int8 FROM grande",
            &[],
        )
        .await?;
    Ok((r.get(0), r.get(1)))
}

/// The types a schema round picks from.
const TYPES: [&str; 5] = ["integer", "text", "numeric(12,2)", "date", "boolean"];

/// A schema round's change of the source table.
#[derive(Debug, Clone)]
pub(super) enum SchemaChange {
    /// A new column, filled by `fill` (an expression of `id`).
    Add {
        name: String,
        ty: &'static str,
        fill: String,
        nulls: bool,
    },
    /// A column an earlier round added.
    Drop { name: String },
}

impl SchemaChange {
    pub fn sql(&self) -> String {
        match self {
            Self::Add { name, ty, fill, .. } => format!(
                "ALTER TABLE grande ADD COLUMN {name} {ty}; UPDATE grande SET {name} = {fill}"
            ),
            Self::Drop { name } => format!("ALTER TABLE grande DROP COLUMN {name}"),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Self::Add {
                name, ty, nulls, ..
            } => format!(
                "source + {name} {ty}{}",
                if *nulls { " (some NULL)" } else { "" }
            ),
            Self::Drop { name } => format!("source - {name}"),
        }
    }
}

/// Adds a column `c_rNN` of a random type, or (when an earlier round added
/// columns the source still has) sometimes drops one of those.
pub(super) fn plan_schema_change(rng: &mut StdRng, round: u32, added: &[String]) -> SchemaChange {
    if !added.is_empty() && rng.random_bool(0.4) {
        let name = added.choose(rng).cloned().unwrap_or_default();
        return SchemaChange::Drop { name };
    }
    let ty = *TYPES.choose(rng).unwrap_or(&"text");
    let a = rng.random_range(3..10_000i64);
    let b = rng.random_range(0..1_000i64);
    let value = match ty {
        "integer" => format!("((id * {a} + {b}) % 2000001 - 1000000)::integer"),
        // Tabs, newlines, backslashes and non-ASCII text test COPY's escaping.
        "text" => format!(
            "CASE WHEN id % 7 = 0 THEN E'a\\tb\\\\c\\nd ção ' || id ELSE md5((id + {b})::text) END"
        ),
        "numeric(12,2)" => format!("(((id * {a}) % 100000000) / 100.0 - 400000)::numeric(12,2)"),
        "date" => format!("date '1900-01-01' + ((id * {a} + {b}) % 60000)::integer"),
        _ => format!("(id * {a} + {b}) % 3 = 0"),
    };
    let nulls = rng.random_bool(0.5);
    let fill = if nulls {
        let m = rng.random_range(2..20i64);
        format!("CASE WHEN id % {m} = {} THEN NULL ELSE {value} END", b % m)
    } else {
        value
    };
    SchemaChange::Add {
        name: format!("c_r{round:02}"),
        ty,
        fill,
        nulls,
    }
}

/// A table's columns (name, type) in order, from `information_schema`.
pub(super) async fn columns(
    client: &Client,
    schema: &str,
    table: &str,
) -> Result<Vec<(String, String)>> {
    let rows = client
        .query(
            "SELECT column_name::text, \
               CASE WHEN data_type = 'numeric' AND numeric_precision IS NOT NULL \
                    THEN format('numeric(%s,%s)', numeric_precision, numeric_scale) \
                    ELSE data_type::text END \
             FROM information_schema.columns \
             WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
            &[&schema, &table],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}
