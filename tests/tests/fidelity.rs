//! Fidelity: every tricky value survives agent → gRPC → collector → analytic
//! byte for byte (compared as ordered COPY text dumps of source and target),
//! in both COPY formats: text (the job with an array of enums, which has no
//! portable binary form) and binary (the same columns without it).

use transmissor_tests::stack::{Job, Stack, copy_dump};

const MUNI: (&str, &str) = ("3550308", "São Paulo");

const SETUP: &str = r#"
CREATE TYPE humor AS ENUM ('triste', 'ok', 'feliz', 'com espaço', 'aspas"duplas');
CREATE DOMAIN inteiro_positivo AS integer CHECK (VALUE > 0);
CREATE DOMAIN texto_curto AS varchar(20);
CREATE TABLE fidelity (
    id          bigint PRIMARY KEY,
    c_smallint  smallint,
    c_int       integer,
    c_bigint    bigint,
    c_numeric   numeric,
    c_numeric_p numeric(40,20),
    c_real      real,
    c_double    double precision,
    c_text      text,
    c_varchar   varchar(50),
    c_char      char(10),
    c_bytea     bytea,
    c_bool      boolean,
    c_date      date,
    c_ts        timestamp,
    c_tstz      timestamptz,
    c_ts3       timestamp(3),
    c_time      time,
    c_timetz    timetz,
    c_interval  interval,
    c_uuid      uuid,
    c_json      json,
    c_jsonb     jsonb,
    c_int_arr   integer[],
    c_text_arr  text[],
    c_int_arr2  integer[],
    c_humor     humor,
    c_humor_arr humor[],
    c_posint    inteiro_positivo,
    c_curto     texto_curto,
    c_inet      inet,
    c_bits      bit varying(16),
    c_range     int4range
);

-- Extremes and special values, one row each.
INSERT INTO fidelity VALUES
 (1, -32768, -2147483648, -9223372036854775808, 'NaN', '-99999999999999999999.99999999999999999999',
  'NaN', 'NaN', E'tab\there', 'ab', 'ab', '\x00', true, 'infinity', 'infinity', 'infinity',
  '294276-12-31 23:59:59.999', '24:00:00', '00:00:00+14', '-178000000 years',
  '00000000-0000-0000-0000-000000000000', '{"a":1,"a":2}', '{"a":1,"a":2}', '{1,NULL,3}',
  '{"quote\"d","com,vírgula",NULL,"NULL",""}', '{{1,2},{3,NULL}}', 'feliz', '{triste,"com espaço"}',
  1, 'abc', '192.168.0.1/24', B'1010', '[1,10)'),
 (2, 32767, 2147483647, 9223372036854775807, 'Infinity', '99999999999999999999.99999999999999999999',
  'Infinity', 'Infinity', E'new\nline', 'x ', 'x', '\xffff', false, '-infinity', '-infinity', '-infinity',
  '4713-01-01 00:00:00 BC', '00:00:00', '23:59:59.999999-12', '1 year 2 mons 3 days 04:05:06.789',
  'ffffffff-ffff-ffff-ffff-ffffffffffff', '  { "b" : [1, 2,  3] }  ', '  { "b" : [1, 2,  3] }  ',
  '{}', '{}', '{{NULL,NULL},{NULL,NULL}}', 'aspas"duplas', '{}', 2147483647, '', '::1', B'', 'empty'),
 (3, 0, 0, 0, '-Infinity', '0.00000000000000000001', '-Infinity', '-Infinity', E'cr\rhere', '', '', '\x',
  NULL, '4713-01-01 BC', '4713-01-01 00:00:00 BC', '2020-06-01 12:00:00.123456-03', '2000-01-01 00:00:00.001',
  '23:59:59.999999', '12:00:00+05:30', '00:00:00.000001', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
  '"só uma string"', '"só uma string"', '{-2147483648,2147483647}', '{"tab\there","nl\nx","back\\slash"}',
  '{{-1}}', 'triste', '{feliz,NULL}', 42, 'texto curto çãé', '2001:db8::/32', B'1111111111111111', '(,)'),
 (4, -1, -1, -1, '123456789012345678901234567890.123456789012345678901234567890', '-0.00000000000000000001',
  '-0', '-0', E'back\\slash', 'ünïcödé', 'çã', NULL, true, '5874897-12-31', '294276-12-31 23:59:59.999999',
  '294276-12-31 23:59:59.999999+00', NULL, '12:34:56.789', NULL, '-1 days -00:00:01', NULL, '[]', '[]',
  NULL, '{"\\.",".\\"}', NULL, 'ok', '{ok,ok,ok}', NULL, NULL, NULL, NULL, '[-5,5]'),
 (5, NULL, NULL, NULL, '1e-1000', NULL, '1.4e-45', '4.9e-324', E'\\.', E'\\.', NULL, NULL, NULL, '2000-02-29',
  '2000-02-29 23:59:59', '1999-12-31 23:59:59.999999-15:59', NULL, NULL, NULL, NULL, NULL,
  '{"nested":{"deep":[{"x":null}]}}', '{"nested":{"deep":[{"x":null}]}}', NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL),
 (6, NULL, NULL, NULL, '-0.0', NULL, '3.4028235e38', '1.7976931348623157e308', E'line1\n\\.\nline3', NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL),
 (7, NULL, NULL, NULL, NULL, NULL, '1.17549435e-38', '2.2250738585072014e-308', E'emoji 😀 clef 𝄞 \\N literal',
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL),
 (8, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);

-- Every byte value in one bytea.
UPDATE fidelity SET c_bytea = (SELECT decode(string_agg(lpad(to_hex(b), 2, '0'), ''), 'hex')
                               FROM generate_series(0, 255) b) WHERE id = 8;

-- Many ordinary-but-varied rows so that many batches are used.
INSERT INTO fidelity
SELECT i + 100,
       (i % 65536 - 32768)::smallint,
       (i * 7919) % 2147483647 - 1073741823,
       i::bigint * 922337203685 - 4611686018427387904,
       (i::numeric * 1.000000001) ^ 2 / 7,
       round((i::numeric / 13), 20),
       (i::real / 3.0::real),
       (i::double precision / 7.0) * 1e-300,
       'linha ' || i || CASE i % 5 WHEN 0 THEN E'\t' WHEN 1 THEN E'\n' WHEN 2 THEN E'\\' WHEN 3 THEN 'ção' ELSE '😀' END,
       md5(i::text),
       substr(md5(i::text), 1, i % 10),
       decode(md5(i::text), 'hex'),
       CASE i % 3 WHEN 0 THEN true WHEN 1 THEN false END,
       date '2000-01-01' + (i % 20000),
       timestamp '2000-01-01' + i * interval '1.000001 second',
       timestamptz '2000-01-01 00:00:00+00' + i * interval '37.123457 second',
       timestamp '2000-01-01' + i * interval '1.001 second',
       time '00:00' + i * interval '1.5 second',
       (time '00:00' + i * interval '1 second')::timetz,
       i * interval '1 day 1.5 second',
       md5(i::text)::uuid,
       ('{"i": ' || i || ', "s": "v' || i || '", "i": ' || (i * 2) || '}')::json,
       ('{"i": ' || i || ', "arr": [' || i || ', null, "x"]}')::jsonb,
       ARRAY[i, NULL, -i],
       ARRAY['a' || i, NULL, 'com "aspas"', 'vír,gula'],
       ARRAY[ARRAY[i, i + 1], ARRAY[NULL::int, i]],
       (ARRAY['triste', 'ok', 'feliz', 'com espaço', 'aspas"duplas'])[i % 5 + 1]::humor,
       ARRAY[(ARRAY['triste', 'ok', 'feliz'])[i % 3 + 1]::humor, NULL],
       i % 100000 + 1,
       substr(md5(i::text), 1, 20),
       ('10.' || (i % 256) || '.' || ((i / 256) % 256) || '.1')::inet,
       (i % 65536)::bit(16)::varbit,
       int4range(i, i + 10)
FROM generate_series(1, 200000) AS i;
"#;

const COLUMNS: &str = "id, c_smallint, c_int, c_bigint, c_numeric, c_numeric_p, c_real, c_double, c_text, \
    c_varchar, c_char, c_bytea, c_bool, c_date, c_ts, c_tstz, c_ts3, c_time, c_timetz, c_interval, c_uuid, \
    c_json, c_jsonb, c_int_arr, c_text_arr, c_int_arr2, c_humor, c_humor_arr, c_posint, c_curto, c_inet, \
    c_bits, c_range";

/// Every column but the array of enums: this job travels as COPY binary.
const BINARY_COLUMNS: &str = "id, c_smallint, c_int, c_bigint, c_numeric, c_numeric_p, c_real, c_double, c_text, \
    c_varchar, c_char, c_bytea, c_bool, c_date, c_ts, c_tstz, c_ts3, c_time, c_timetz, c_interval, c_uuid, \
    c_json, c_jsonb, c_int_arr, c_text_arr, c_int_arr2, c_humor, c_posint, c_curto, c_inet, \
    c_bits, c_range";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_survives_byte_for_byte() -> anyhow::Result<()> {
    let mut stack = Stack::new(&[MUNI]).await?;
    let m = stack.munis[0].clone();
    let src = stack.source.connect(&m.db).await?;
    src.batch_execute(SETUP).await?;
    stack.grant_reader(&m.db).await?;
    stack.start_collector_in_process().await?;

    // The same agent runs twice: in the default COPY text, then with
    // `copy_format = "binary"` on the columns that allow it.
    let text_job = Job::new(
        "fidelidade",
        "snapshot",
        "fidelity",
        "SELECT * FROM fidelity",
    );
    let binary_job = Job::new(
        "fidelidade_binaria",
        "snapshot",
        "fidelity_bin",
        &format!("SELECT {BINARY_COLUMNS} FROM fidelity"),
    );
    for (job, format) in [(text_job, "text"), (binary_job, "binary")] {
        let cfg = stack.agent_config(&m, &[job], "[spool]\nbatch_raw_bytes = \"1MiB\"\n")?;
        let toml = std::fs::read_to_string(&cfg)?.replacen(
            "[source]\n",
            &format!("[source]\ncopy_format = \"{format}\"\n"),
            1,
        );
        std::fs::write(&cfg, toml)?;
        let report = stack.run_agent_in_process(&cfg).await?;
        assert!(report.all_committed(), "{report}");
    }

    let analytic = stack.analytic_client().await?;
    // Enum and domain columns arrive as text / their base type.
    let types: Vec<(String, String)> = analytic
        .query(
            "SELECT column_name::text, data_type::text FROM information_schema.columns \
             WHERE table_schema = 'analytic' AND table_name = 'fidelity' AND column_name IN ('c_humor', 'c_humor_arr', 'c_posint', 'c_curto') \
             ORDER BY column_name",
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        types,
        vec![
            ("c_curto".into(), "character varying".into()),
            ("c_humor".into(), "text".into()),
            ("c_humor_arr".into(), "ARRAY".into()),
            ("c_posint".into(), "integer".into()),
        ]
    );

    for (job, table, columns, format) in [
        ("fidelidade", "fidelity", COLUMNS, "text"),
        (
            "fidelidade_binaria",
            "fidelity_bin",
            BINARY_COLUMNS,
            "binary",
        ),
    ] {
        let source_dump =
            copy_dump(&src, &format!("SELECT {columns} FROM fidelity ORDER BY id")).await?;
        let target_dump = copy_dump(
            &analytic,
            &format!(
                "SELECT {columns} FROM analytic.{table} WHERE _ibge = '{}' ORDER BY id",
                m.ibge
            ),
        )
        .await?;
        assert_eq!(
            source_dump.len(),
            target_dump.len(),
            "{job}: dump sizes differ"
        );
        if source_dump != target_dump {
            let s = String::from_utf8_lossy(&source_dump);
            let t = String::from_utf8_lossy(&target_dump);
            for (a, b) in s.lines().zip(t.lines()) {
                assert_eq!(a, b, "{job}: first differing row");
            }
            panic!("{job}: dumps differ");
        }
        let rows: i64 = analytic
            .query_one(&format!("SELECT count(*) FROM analytic.{table}"), &[])
            .await?
            .get(0);
        assert_eq!(rows, 200_008, "{job}");
        let (batches, used): (i32, String) = analytic
            .query_one(
                "SELECT batches, copy_format FROM transmissor.transmissions WHERE job = $1",
                &[&job],
            )
            .await
            .map(|r| (r.get(0), r.get(1)))?;
        assert!(batches > 20, "{job}: expected many batches, got {batches}");
        assert_eq!(used, format, "{job}: COPY format");
    }
    stack.stop_collector().await?;
    Ok(())
}

/// A type the analytic side cannot reproduce fails with the column named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_type_fails_naming_the_column() -> anyhow::Result<()> {
    let mut stack = Stack::new(&[MUNI]).await?;
    let m = stack.munis[0].clone();
    let src = stack.source.connect(&m.db).await?;
    src.batch_execute(
        "CREATE TYPE endereco AS (rua text, numero int); \
         CREATE TABLE pessoas (id int, casa endereco); INSERT INTO pessoas VALUES (1, ROW('Rua A', 10));",
    )
    .await?;
    stack.grant_reader(&m.db).await?;
    stack.start_collector_in_process().await?;
    let cfg = stack.agent_config(
        &m,
        &[
            Job::new("pessoas", "snapshot", "pessoas", "SELECT * FROM pessoas"),
            Job::new(
                "pessoas_texto",
                "snapshot",
                "pessoas_texto",
                "SELECT id, casa::text AS casa FROM pessoas",
            ),
        ],
        "",
    )?;
    let report = stack.run_agent_in_process(&cfg).await?;
    let text = report.to_string();
    assert!(
        text.contains("pessoas (run") && text.contains("FAILED"),
        "{text}"
    );
    assert!(
        text.contains("\"casa\"") && text.contains("endereco"),
        "{text}"
    );
    assert!(
        text.contains("pessoas_texto (run") && text.contains("committed"),
        "{text}"
    );
    let analytic = stack.analytic_client().await?;
    let err: String = analytic
        .query_one(
            "SELECT error FROM transmissor.transmissions WHERE job = 'pessoas'",
            &[],
        )
        .await?
        .get(0);
    assert!(err.contains("casa") && err.contains("endereco"), "{err}");
    stack.stop_collector().await?;
    Ok(())
}
