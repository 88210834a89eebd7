//! The target registry (`transmissor.targets`, `target_columns`,
//! `target_slices`): what each target holds, which transmission brought
//! each column, and each municipality's slice of each target.

use sqlx::PgConnection;

use super::schema::ColumnSpec;
use crate::error::CollectorError;

/// A registered target.
#[derive(Debug, Clone)]
pub struct Target {
    pub mode: String,
    /// Hash partitions by `_ibge`; 0 for a plain table.
    pub partitions: i32,
    pub columns: Vec<ColumnSpec>,
    /// Upsert targets: the key columns.
    pub key: Option<Vec<String>>,
}

pub async fn read(conn: &mut PgConnection, name: &str) -> Result<Option<Target>, CollectorError> {
    let head: Option<(String, i32, Option<Vec<String>>)> =
        sqlx::query_as(include_str!("queries/target_read.sql"))
            .bind(name)
            .fetch_optional(&mut *conn)
            .await?;
    let Some((mode, partitions, key)) = head else {
        return Ok(None);
    };
    let cols: Vec<(String, String, String, bool)> =
        sqlx::query_as(include_str!("queries/target_columns_read.sql"))
            .bind(name)
            .fetch_all(&mut *conn)
            .await?;
    Ok(Some(Target {
        mode,
        partitions,
        columns: cols
            .into_iter()
            .map(
                |(name, source_type, target_type, pseudonymised)| ColumnSpec {
                    name,
                    source_type,
                    target_type,
                    pseudonymised,
                },
            )
            .collect(),
        key,
    }))
}

/// Registers a target created by transmission `by`.
pub async fn register(
    conn: &mut PgConnection,
    name: &str,
    mode: &str,
    partitions: u16,
    key: Option<&[String]>,
    cols: &[ColumnSpec],
    by: i64,
) -> Result<(), CollectorError> {
    sqlx::query(include_str!("queries/target_insert.sql"))
        .bind(name)
        .bind(mode)
        .bind(i32::from(partitions))
        .bind(key)
        .execute(&mut *conn)
        .await?;
    add_columns(conn, name, cols, by).await
}

/// Records columns added to `target` by transmission `by`.
pub async fn add_columns(
    conn: &mut PgConnection,
    target: &str,
    cols: &[ColumnSpec],
    by: i64,
) -> Result<(), CollectorError> {
    let names: Vec<&str> = cols.iter().map(|c| c.name.as_str()).collect();
    let sources: Vec<&str> = cols.iter().map(|c| c.source_type.as_str()).collect();
    let types: Vec<&str> = cols.iter().map(|c| c.target_type.as_str()).collect();
    let pseudonymised: Vec<bool> = cols.iter().map(|c| c.pseudonymised).collect();
    sqlx::query(include_str!("queries/target_columns_add.sql"))
        .bind(target)
        .bind(by)
        .bind(&names)
        .bind(&sources)
        .bind(&types)
        .bind(&pseudonymised)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Locks one municipality's slice of a target for the rest of the
/// transaction (creating its row on first use).
pub async fn lock_slice(
    conn: &mut PgConnection,
    target: &str,
    ibge: &str,
) -> Result<(), CollectorError> {
    sqlx::query(include_str!("queries/slice_ensure.sql"))
        .bind(target)
        .bind(ibge)
        .execute(&mut *conn)
        .await?;
    sqlx::query(include_str!("queries/slice_lock.sql"))
        .bind(target)
        .bind(ibge)
        .fetch_one(&mut *conn)
        .await?;
    Ok(())
}

/// Records the slice's last committed transmission and its columns.
pub async fn record_slice(
    conn: &mut PgConnection,
    target: &str,
    ibge: &str,
    transmission: i64,
    cols: &[ColumnSpec],
) -> Result<(), CollectorError> {
    let cols = serde_json::to_value(cols).map_err(|e| CollectorError::Internal(e.to_string()))?;
    sqlx::query(include_str!("queries/slice_record.sql"))
        .bind(target)
        .bind(ibge)
        .bind(transmission)
        .bind(cols)
        .execute(&mut *conn)
        .await?;
    Ok(())
}
