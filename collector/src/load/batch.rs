//! One batch = one database transaction: the ledger row and the batch's rows
//! in the transmission's staging table commit together, or neither does.

use super::schema::{self, ColumnSpec};
use super::{Loader, TxState, staging_table};
use crate::error::CollectorError;
use crate::identity::Caller;
use transmissor_proto::copy_binary;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchOutcome {
    Loaded,
    Duplicate,
}

/// A batch as received.
pub struct IncomingBatch {
    pub transmission_id: i64,
    pub seq: u32,
    pub rows: u64,
    pub raw_len: u64,
    pub crc32c: u32,
    pub data: bytes::Bytes,
}

impl Loader {
    pub async fn put_batch(
        &self,
        caller: Caller,
        b: IncomingBatch,
    ) -> Result<BatchOutcome, CollectorError> {
        let id = b.transmission_id;
        if b.seq == 0 {
            return Err(CollectorError::InvalidArgument(format!(
                "batch of transmission {id}: sequence numbers start at 1"
            )));
        }
        // Nothing is decompressed before the transmission is known to be
        // the caller's and the agent's quotas leave room for the batch.
        self.admit_batch(caller, id, b.seq, b.raw_len).await?;
        // Decompress under the cap, off the async threads, within the
        // collector-wide budget held until the rows are in the database.
        let max = self.max_batch_raw_bytes;
        let _budget = self.budget.reserve(b.raw_len.min(max)).await?;
        let (data, raw_len, crc) = (b.data.clone(), b.raw_len, b.crc32c);
        let raw = tokio::task::spawn_blocking(move || {
            transmissor_proto::batch::decompress_checked(&data, raw_len, crc, max)
        })
        .await
        .map_err(|e| CollectorError::Internal(e.to_string()))?
        .map_err(|source| CollectorError::Batch {
            transmission: id,
            seq: b.seq,
            source,
        })?;

        let mut tx = self.pool.begin().await?;
        // A batch need not wait for its own WAL flush: if the analytic server
        // crashes and loses it, it loses its ledger row with it (same
        // transaction; WAL is replayed in order), `Commit` then reports it
        // missing and the agent resends it from its spool. `Commit` itself is
        // synchronous, and its flush makes every earlier batch durable.
        sqlx::query("SET LOCAL synchronous_commit = off")
            .execute(&mut *tx)
            .await?;
        type Row = (
            uuid::Uuid,
            String,
            sqlx::types::Json<Vec<ColumnSpec>>,
            String,
        );
        let row: Option<Row> = sqlx::query_as(
            "SELECT agent_id, state, columns, copy_format FROM transmissor.transmissions WHERE id = $1 FOR SHARE",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((agent, state, cols, format)) =
            row.filter(|(agent, _, _, _)| *agent == caller.agent_id)
        else {
            return Err(CollectorError::TransmissionNotFound(id));
        };
        let _ = agent;
        let state = TxState::parse(&state);

        let inserted = sqlx::query(
            "INSERT INTO transmissor.batches (transmission_id, seq, rows, raw_bytes, compressed_bytes, crc32c) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (transmission_id, seq) DO NOTHING",
        )
        .bind(id)
        .bind(b.seq as i32)
        .bind(b.rows as i64)
        .bind(b.raw_len as i64)
        .bind(b.data.len() as i64)
        .bind(i64::from(b.crc32c))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            let (held,): (i64,) = sqlx::query_as(
                "SELECT crc32c FROM transmissor.batches WHERE transmission_id = $1 AND seq = $2",
            )
            .bind(id)
            .bind(b.seq as i32)
            .fetch_one(&mut *tx)
            .await?;
            tx.rollback().await?;
            if held as u32 != b.crc32c {
                return Err(CollectorError::BatchConflict {
                    transmission: id,
                    seq: b.seq,
                    held: held as u32,
                    sent: b.crc32c,
                });
            }
            tracing::debug!(
                transmission = id,
                seq = b.seq,
                "duplicate batch acknowledged"
            );
            return Ok(BatchOutcome::Duplicate);
        }
        if state != TxState::Open {
            return Err(CollectorError::FailedPrecondition(format!(
                "transmission {id} is {}; it takes no more batches",
                state.as_str()
            )));
        }

        let binary = format == "binary";
        let copy = schema::copy_in_sql(&staging_table(id), &cols.0, binary);
        let mut sink = (*tx).copy_in_raw(&copy).await?;
        // A binary batch is whole tuples: the stream's header and trailer
        // are added here.
        let sent = async {
            if binary {
                sink.send(&copy_binary::HEADER[..]).await?;
            }
            sink.send(raw.as_slice()).await?;
            if binary {
                sink.send(&copy_binary::TRAILER[..]).await?;
            }
            Ok::<(), sqlx::Error>(())
        }
        .await;
        let loaded = match sent {
            Ok(()) => sink.finish().await,
            Err(e) => {
                let _ = sink.abort("transmissor: batch send failed").await;
                Err(e)
            }
        };
        let loaded = match loaded {
            Ok(n) => n,
            Err(sqlx::Error::Database(db)) => {
                return Err(CollectorError::Copy {
                    transmission: id,
                    seq: b.seq,
                    message: crate::pg_error::redact(db.as_ref()).to_string(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        if loaded != b.rows {
            return Err(CollectorError::InvalidArgument(format!(
                "batch {} of transmission {id} declares {} rows but holds {loaded}",
                b.seq, b.rows
            )));
        }
        tx.commit().await?;
        Ok(BatchOutcome::Loaded)
    }
}
