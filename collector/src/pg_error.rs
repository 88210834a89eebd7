//! The analytic database's errors without their data values: the one way a
//! `sqlx` error becomes text (a log line, a gRPC status, a transmission's
//! stored error). See [`transmissor_proto::redact`] for what is kept.

use sqlx::error::DatabaseError;
use sqlx::postgres::PgDatabaseError;
use transmissor_proto::redact::{PgErrorFields, RedactedDbError};

/// A database error as [`RedactedDbError`]: SQLSTATE always, texts only when
/// its class never quotes data, object names from the structured fields.
pub fn redact(db: &dyn DatabaseError) -> RedactedDbError {
    match db.try_downcast_ref::<PgDatabaseError>() {
        Some(pg) => RedactedDbError::new(PgErrorFields {
            code: pg.code(),
            message: pg.message(),
            detail: pg.detail(),
            hint: pg.hint(),
            schema: pg.schema(),
            table: pg.table(),
            column: pg.column(),
            datatype: pg.data_type(),
            constraint: pg.constraint(),
        }),
        None => RedactedDbError::new(PgErrorFields {
            code: db.code().as_deref().unwrap_or_default(),
            message: db.message(),
            table: db.table(),
            constraint: db.constraint(),
            ..Default::default()
        }),
    }
}

/// `sqlx::Error` as text: a database error redacted, anything else (I/O,
/// pool, protocol) as `sqlx` words it, which quotes no data.
pub fn describe(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => {
            format!("error returned from database: {}", redact(db.as_ref()))
        }
        other => other.to_string(),
    }
}
