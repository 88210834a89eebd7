//! The fidelity data set: one table with every tricky type (enums, domains,
//! arrays of them, ranges, json, extreme timestamps, every byte value...),
//! eight rows of extremes and special values, and as many generated rows as
//! asked. Shared by `tests/fidelity.rs` (PostgreSQL 15, 200,000 rows) and
//! `tests/source_versions.rs` (PostgreSQL 10 to 18, a few thousand).
//!
//! The SQL lives in `tests/sql/fidelity_*.sql`; [`setup_sql`] assembles it
//! for one server version (numeric's infinities need PostgreSQL 14).

/// Types, the table and rows 1 to 8 (PostgreSQL 10 and later).
const SETUP_SQL: &str = include_str!("../sql/fidelity_setup.sql");
/// `c_numeric = ±Infinity` in rows 2 and 3 (PostgreSQL 14 and later).
const NUMERIC_INFINITY_SQL: &str = include_str!("../sql/fidelity_numeric_infinity.sql");
/// The generated rows; `{{ROWS}}` is their number.
const ROWS_SQL: &str = include_str!("../sql/fidelity_rows.sql");

/// Rows with extremes and special values (ids 1 to 8), before the generated ones.
pub const SPECIAL_ROWS: u64 = 8;

/// Every column of `fidelity`, in order.
pub const COLUMNS: &str = "id, c_smallint, c_int, c_bigint, c_numeric, c_numeric_p, c_real, c_double, c_text, \
    c_varchar, c_char, c_bytea, c_bool, c_date, c_ts, c_tstz, c_ts3, c_time, c_timetz, c_interval, c_uuid, \
    c_json, c_jsonb, c_int_arr, c_text_arr, c_int_arr2, c_humor, c_humor_arr, c_posint, c_curto, c_inet, \
    c_bits, c_range";

/// Every column but the array of enums, which has no portable binary form:
/// a job with these columns travels as COPY binary when asked to.
pub const BINARY_COLUMNS: &str = "id, c_smallint, c_int, c_bigint, c_numeric, c_numeric_p, c_real, c_double, c_text, \
    c_varchar, c_char, c_bytea, c_bool, c_date, c_ts, c_tstz, c_ts3, c_time, c_timetz, c_interval, c_uuid, \
    c_json, c_jsonb, c_int_arr, c_text_arr, c_int_arr2, c_humor, c_posint, c_curto, c_inet, \
    c_bits, c_range";

/// The script creating and filling `fidelity` on a server whose
/// `server_version_num` is `server_version_num`, with `rows` generated rows
/// (ids 101 to `100 + rows`) after the [`SPECIAL_ROWS`]. Send it as one
/// simple-query batch (`batch_execute`).
pub fn setup_sql(server_version_num: i32, rows: u64) -> String {
    let mut sql = String::from(SETUP_SQL);
    if server_version_num >= 140_000 {
        sql.push_str(NUMERIC_INFINITY_SQL);
    }
    sql.push_str(&ROWS_SQL.replace("{{ROWS}}", &rows.to_string()));
    sql
}
