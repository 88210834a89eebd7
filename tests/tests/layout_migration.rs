//! An installation on the former layout (a list partition per municipality)
//! moves to the national layout with `migrate`, without losing a row or a
//! grant, and loads into it afterwards.

use transmissor_tests::stack::{Job, Stack, StackOptions, copy_dump};

const A: (&str, &str) = ("3550308", "São Paulo");
const B: (&str, &str) = ("2304400", "Fortaleza");

const COLUMNS: &str = r#"[{"name":"id","source_type":"integer","target_type":"integer"},{"name":"h","source_type":"text","target_type":"text"}]"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_partitions_become_hash_partitions() -> anyhow::Result<()> {
    let mut stack = Stack::with_options(
        &[A, B],
        StackOptions {
            // The control schema as the previous release left it.
            migrate_to: Some(3),
            ..Default::default()
        },
    )
    .await?;
    let (a, b) = (stack.munis[0].clone(), stack.munis[1].clone());
    let analytic = stack.analytic_client().await?;

    // What the previous release built: a snapshot target with one list
    // partition per municipality, an append target, their transmissions,
    // and an analysts' role with a grant.
    analytic
        .execute(
            "INSERT INTO transmissor.targets (name, mode, columns) VALUES \
             ('visitas', 'snapshot', $1::text::jsonb), ('lista', 'append', $1::text::jsonb)",
            &[&COLUMNS],
        )
        .await?;
    for (id, m, target, mode, rows) in [
        (1i64, &a, "visitas", "snapshot", 3000i64),
        (2, &b, "visitas", "snapshot", 2000),
        (3, &a, "lista", "append", 30),
    ] {
        analytic
            .execute(
                "INSERT INTO transmissor.transmissions \
                   (id, ibge, agent_id, run_id, job, mode, target, columns, state, finished_at, rows) \
                 VALUES ($1, $2, $3, $4, $5, $6, $5, $7::text::jsonb, 'committed', now(), $8)",
                &[
                    &id,
                    &m.ibge.as_str(),
                    &m.agent_id,
                    &uuid::Uuid::now_v7(),
                    &target,
                    &mode,
                    &COLUMNS,
                    &rows,
                ],
            )
            .await?;
    }
    analytic
        .batch_execute(&format!(
            "SELECT setval('transmissor.transmissions_id_seq', 3);
             CREATE TABLE analytic.visitas (_ibge char(7) NOT NULL, _transmission_id bigint NOT NULL, id integer, h text)
                 PARTITION BY LIST (_ibge);
             CREATE TABLE transmissor_parts.t_1 (LIKE analytic.visitas INCLUDING DEFAULTS);
             INSERT INTO transmissor_parts.t_1 SELECT '{a}', 1, g, md5(g::text) FROM generate_series(1, 3000) g;
             ALTER TABLE analytic.visitas ATTACH PARTITION transmissor_parts.t_1 FOR VALUES IN ('{a}');
             CREATE TABLE transmissor_parts.t_2 (LIKE analytic.visitas INCLUDING DEFAULTS);
             INSERT INTO transmissor_parts.t_2 SELECT '{b}', 2, g, 'b' || g FROM generate_series(1, 2000) g;
             ALTER TABLE analytic.visitas ATTACH PARTITION transmissor_parts.t_2 FOR VALUES IN ('{b}');
             CREATE TABLE analytic.lista (_ibge char(7) NOT NULL, _transmission_id bigint NOT NULL, id integer, h text);
             CREATE INDEX ON analytic.lista (_ibge, _transmission_id);
             INSERT INTO analytic.lista SELECT '{a}', 3, g, 'l' FROM generate_series(1, 30) g;
             CREATE ROLE analista;
             GRANT SELECT ON analytic.visitas, analytic.lista TO analista;",
            a = A.0,
            b = B.0
        ))
        .await?;
    let all = "SELECT * FROM analytic.visitas ORDER BY _ibge, id";
    let before = copy_dump(&analytic, all).await?;
    let lista_before = copy_dump(&analytic, "SELECT * FROM analytic.lista ORDER BY id").await?;

    // The upgrade.
    let pool = stack.collector_pool().await?;
    transmissor_collector::db::migrate(&pool, "analytic").await?;

    let (strategy, partitions): (String, i64) = analytic
        .query_one(
            "SELECT p.partstrat::text, (SELECT count(*) FROM pg_inherits i WHERE i.inhparent = p.partrelid) \
             FROM pg_partitioned_table p WHERE p.partrelid = 'analytic.visitas'::regclass",
            &[],
        )
        .await
        .map(|r| (r.get(0), r.get(1)))?;
    assert_eq!((strategy.as_str(), partitions), ("h", 16));
    assert_eq!(copy_dump(&analytic, all).await?, before, "every row kept");
    assert_eq!(
        copy_dump(&analytic, "SELECT * FROM analytic.lista ORDER BY id").await?,
        lista_before
    );
    let granted: bool = analytic
        .query_one(
            "SELECT has_table_privilege('analista', 'analytic.visitas', 'SELECT')",
            &[],
        )
        .await?
        .get(0);
    assert!(granted, "the analysts' grant survives");
    let old_parts: i64 = analytic
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'transmissor_parts' AND tablename LIKE 't\\_%'",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(old_parts, 0, "the old partitions are gone");
    let slices: Vec<(String, String, i64)> = analytic
        .query(
            "SELECT target, ibge::text, transmission_id FROM transmissor.target_slices ORDER BY 1, 2",
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        slices,
        vec![
            ("lista".into(), A.0.into(), 3),
            ("visitas".into(), B.0.into(), 2),
            ("visitas".into(), A.0.into(), 1),
        ]
    );
    let cols: i64 = analytic
        .query_one(
            "SELECT count(*) FROM transmissor.target_columns WHERE target = 'visitas'",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(cols, 2);

    // Loading goes on in the new layout: A's new snapshot replaces A's rows only.
    stack.start_collector_in_process().await?;
    let src = stack.source.connect(&a.db).await?;
    src.batch_execute(
        "CREATE TABLE visitas AS SELECT g AS id, 'novo' || g AS h FROM generate_series(1, 2500) g",
    )
    .await?;
    stack.grant_reader(&a.db).await?;
    let cfg = stack.agent_config(
        &a,
        &[Job::new(
            "visitas",
            "snapshot",
            "visitas",
            "SELECT * FROM visitas",
        )],
        "",
    )?;
    let r = stack.run_agent_in_process(&cfg).await?;
    assert!(r.all_committed(), "{r}");
    assert_eq!(
        copy_dump(
            &analytic,
            &format!(
                "SELECT id, h FROM analytic.visitas WHERE _ibge = '{}' ORDER BY id",
                A.0
            )
        )
        .await?,
        copy_dump(&src, "SELECT id, h FROM visitas ORDER BY id").await?
    );
    let b_rows: i64 = analytic
        .query_one(
            "SELECT count(*) FROM analytic.visitas WHERE _ibge = $1 AND h LIKE 'b%'",
            &[&B.0],
        )
        .await?
        .get(0);
    assert_eq!(b_rows, 2000, "B's rows untouched");
    stack.stop_collector().await?;
    Ok(())
}
