//! One transmission as an agent makes it: Begin → PutBatch… → Commit over
//! the agent's own mTLS channel, with COPY text batches (zstd, CRC-32C and
//! the transmission digest computed as the agent does).

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use tokio::time::Instant;
use tonic::transport::Channel;
use uuid::Uuid;

use transmissor_proto::identity::Ibge;
use transmissor_proto::pb::transmission_client::TransmissionClient;
use transmissor_proto::pb::{self, Mode, State};
use transmissor_proto::{batch, checksum};

use super::stats::Stats;

/// The columns and rows of a synthetic target.
#[derive(Clone, Copy)]
pub enum Shape {
    /// `(id integer, v text)`: the heartbeat phase's small transmissions.
    Small,
    /// `(id integer, born date, sex text, name text)`.
    Person,
    /// `(id integer, person_id integer, day date, code text)`; `person_id`
    /// is below the municipality's row count, so every visit of a
    /// municipality has its person when both targets hold as many rows.
    Visit,
}

/// Diagnosis codes of [`Shape::Visit`] rows (`id % 5`).
pub const CODES: [&str; 5] = ["A01", "J11", "I10", "E11", "Z00"];

impl Shape {
    fn columns(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Shape::Small => &[("id", "integer"), ("v", "text")],
            Shape::Person => &[
                ("id", "integer"),
                ("born", "date"),
                ("sex", "text"),
                ("name", "text"),
            ],
            Shape::Visit => &[
                ("id", "integer"),
                ("person_id", "integer"),
                ("day", "date"),
                ("code", "text"),
            ],
        }
    }

    /// Row `id` of `rows`, COPY text with its newline.
    fn row(self, ibge: Ibge, id: u64, rows: u64) -> String {
        let (month, day) = (1 + id % 12, 1 + (id / 12) % 28);
        match self {
            Shape::Small => format!("{id}\tmunicipality {ibge} row {id}\n"),
            Shape::Person => {
                let (year, sex) = (1930 + id % 90, if id.is_multiple_of(2) { 'F' } else { 'M' });
                format!("{id}\t{year}-{month:02}-{day:02}\t{sex}\tperson {id} of {ibge}\n")
            }
            Shape::Visit => {
                let person = (id * 7) % rows.max(1);
                let code = CODES[(id % 5) as usize];
                format!("{id}\t{person}\t2024-{month:02}-{day:02}\t{code}\n")
            }
        }
    }
}

/// One prepared transmission: its batches and what Commit must carry.
pub struct Payload {
    pub ibge: Ibge,
    pub target: String,
    shape: Shape,
    batches: Vec<pb::PutBatchRequest>,
    pub rows: u64,
    digest: String,
}

impl Payload {
    /// `rows` rows of `shape` for `target`, cut into batches of `per_batch` rows.
    pub fn new(ibge: Ibge, target: &str, shape: Shape, rows: u64, per_batch: u64) -> Result<Self> {
        let mut digest = checksum::TransmissionDigest::new();
        let mut batches = Vec::new();
        let per_batch = per_batch.max(1);
        for (k, first) in (0..rows).step_by(per_batch as usize).enumerate() {
            let seq = k as u32 + 1;
            let n = per_batch.min(rows - first);
            let raw: String = (first..first + n)
                .map(|id| shape.row(ibge, id, rows))
                .collect();
            let crc32c = checksum::crc32c(raw.as_bytes());
            digest.add(seq, n, crc32c);
            let data = batch::compress(raw.as_bytes(), 3).context("zstd")?.into();
            batches.push(pb::PutBatchRequest {
                transmission_id: 0,
                seq,
                rows: n,
                raw_len: raw.len() as u64,
                crc32c,
                data,
            });
        }
        Ok(Self {
            ibge,
            target: target.to_string(),
            shape,
            batches,
            rows,
            digest: digest.finish(),
        })
    }

    pub fn raw_bytes(&self) -> u64 {
        self.batches.iter().map(|b| b.raw_len).sum()
    }
}

/// Runs the transmission on `ch`; records each call's latency in `stats`
/// (and the transmission as committed, or its error). Returns the Commit
/// call's latency in ms.
pub async fn transmit(ch: Channel, p: &Payload, t0: Instant, stats: &mut Stats) -> Option<f64> {
    match calls(TransmissionClient::new(ch), p, t0, stats).await {
        Ok(ms) => {
            stats.commit(&p.target, p.ibge, p.rows);
            Some(ms)
        }
        Err(e) => {
            stats.error(e);
            None
        }
    }
}

async fn calls(
    mut c: TransmissionClient<Channel>,
    p: &Payload,
    t0: Instant,
    stats: &mut Stats,
) -> Result<f64, String> {
    let code = |call: &'static str| move |s: tonic::Status| format!("{call} {:?}", s.code());
    let column = |&(name, ty): &(&str, &str)| pb::Column {
        name: name.into(),
        source_type: ty.into(),
        target_type: ty.into(),
        pseudonymised: false,
    };
    let begin = pb::BeginRequest {
        run_id: Uuid::new_v4().to_string(),
        job: p.target.clone(),
        mode: Mode::Snapshot as i32,
        target: p.target.clone(),
        columns: p.shape.columns().iter().map(column).collect(),
        plan_version: "xtask-scale".into(),
        agent_version: "xtask-scale".into(),
        ..Default::default()
    };
    let t = Instant::now();
    let id = c.begin(begin).await.map_err(code("Begin"))?.into_inner();
    let id = id.transmission_id;
    stats.ok("Begin", t0, t);
    for b in &p.batches {
        let mut req = b.clone();
        req.transmission_id = id;
        let t = Instant::now();
        c.put_batch(req).await.map_err(code("PutBatch"))?;
        stats.ok("PutBatch", t0, t);
    }
    let commit = pb::CommitRequest {
        transmission_id: id,
        total_batches: p.batches.len() as u32,
        total_rows: p.rows,
        digest: p.digest.clone(),
        ..Default::default()
    };
    let t = Instant::now();
    let r = c.commit(commit).await.map_err(code("Commit"))?.into_inner();
    let ms = t.elapsed().as_secs_f64() * 1e3;
    stats.ok("Commit", t0, t);
    if r.state != State::Committed as i32 || r.rows != p.rows {
        return Err(format!(
            "Commit answered state {} and {} rows",
            r.state, r.rows
        ));
    }
    Ok(ms)
}

/// How many municipalities' row counts in `analytic.<target>` differ from
/// the last committed transmission of each (`committed`, in commit order).
pub async fn verify(
    c: &tokio_postgres::Client,
    target: &str,
    committed: &[(Ibge, u64)],
) -> Result<u64> {
    let expect = |(ibge, rows): &(Ibge, u64)| (ibge.to_string(), *rows as i64);
    let mut expected: BTreeMap<String, i64> = committed.iter().map(expect).collect();
    if expected.is_empty() {
        return Ok(0);
    }
    let sql = format!("SELECT _ibge::text, count(*) FROM analytic.{target} GROUP BY 1");
    let rows = (c.query(&sql, &[]).await).with_context(|| format!("counting {target}"))?;
    let mut bad = 0;
    for r in rows {
        let (ibge, count): (String, i64) = (r.get(0), r.get(1));
        bad += u64::from(expected.remove(&ibge) != Some(count));
    }
    Ok(bad + expected.len() as u64)
}
