//! The cost of pseudonymising, against copying rows as they are (what a
//! job without pseudonymised columns does): PEC-like rows of 20 fields, 3
//! of them pseudonymised, in COPY text and COPY binary. A measurement, not
//! a check (it asserts nothing about time); run in release:
//!
//! ```sh
//! cargo run -p transmissor-agent --release --example pseudonym_cost
//! ```

use std::time::Instant;

use bytes::BytesMut;
use transmissor_agent::pipeline::pseudonym::Pseudonymiser;
use transmissor_agent::pipeline::spool::CopyFormat;
use transmissor_agent::pseudonym_key::PseudonymKey;
use transmissor_proto::copy_binary;

const ROWS: usize = 200_000;

/// A row as COPY TO writes it in text format (these values need no escape).
fn text_row(fields: &[Option<&[u8]>]) -> Vec<u8> {
    let mut row = Vec::new();
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            row.push(b'\t');
        }
        match f {
            Some(v) => row.extend_from_slice(v),
            None => row.extend_from_slice(b"\\N"),
        }
    }
    row.push(b'\n');
    row
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let key = PseudonymKey::generate()?;
    let mut text_rows = Vec::with_capacity(ROWS);
    let mut binary_rows = Vec::with_capacity(ROWS);
    for i in 0..ROWS {
        let cpf = format!("{:011}", 12_345_678_901u64 + i as u64);
        let cns = format!("{:015}", 700_000_000_000_000u64 + i as u64);
        let name = format!("Maria José da Silva {i}");
        let mut fields: Vec<Vec<u8>> = (0..17)
            .map(|f| format!("{}", i * 31 + f).into_bytes())
            .collect();
        fields.insert(3, cpf.into_bytes());
        fields.insert(7, cns.into_bytes());
        fields.insert(11, name.into_bytes());
        let refs: Vec<Option<&[u8]>> = fields.iter().map(|f| Some(&f[..])).collect();
        text_rows.push(text_row(&refs));
        let mut t = Vec::new();
        copy_binary::encode_tuple(&refs, &mut t);
        binary_rows.push(t);
    }
    let flags: Vec<bool> = (0..20).map(|i| [3, 7, 11].contains(&i)).collect();
    let bytes: usize = text_rows.iter().map(Vec::len).sum();
    let mut out = BytesMut::with_capacity(bytes * 2);
    let mut measure = |what: &str, f: &mut dyn FnMut(&mut BytesMut)| {
        let mut best = f64::MAX;
        for _ in 0..5 {
            out.clear();
            let t0 = Instant::now();
            f(&mut out);
            best = best.min(t0.elapsed().as_secs_f64());
        }
        println!(
            "RESULT pseudonym_{what}_ns_per_row={:.0} ({:.0} MB/s of COPY text, {ROWS} rows)",
            best * 1e9 / ROWS as f64,
            bytes as f64 / best / 1e6,
        );
    };
    measure("copy", &mut |out| {
        for r in &text_rows {
            out.extend_from_slice(r);
        }
    });
    let mut p = Pseudonymiser::new(&key, CopyFormat::Text, flags.clone());
    measure("text", &mut |out| {
        for r in &text_rows {
            p.append_row(r, out).expect("a well-formed row");
        }
    });
    let mut p = Pseudonymiser::new(&key, CopyFormat::Binary, flags);
    measure("binary", &mut |out| {
        for r in &binary_rows {
            p.append_row(r, out).expect("a well-formed tuple");
        }
    });
    Ok(())
}
