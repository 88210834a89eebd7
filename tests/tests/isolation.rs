//! Isolation between municipalities: A's snapshot replaces exactly A's rows;
//! B's stay as they were; append keeps each transmission's rows apart; and an
//! agent that claims to be B is refused and loads nothing for anyone.

use transmissor_tests::stack::{Job, Stack, copy_dump};

const A: (&str, &str) = ("3550308", "São Paulo");
const B: (&str, &str) = ("2304400", "Fortaleza");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_replaces_only_its_municipality() -> anyhow::Result<()> {
    let mut stack = Stack::new(&[A, B]).await?;
    stack.start_collector_in_process().await?;
    let (a, b) = (stack.munis[0].clone(), stack.munis[1].clone());
    for (m, n) in [(&a, 3000), (&b, 2000)] {
        stack
            .source
            .connect(&m.db)
            .await?
            .batch_execute(&format!(
                "CREATE TABLE cad AS SELECT g AS id, md5(g::text) AS h FROM generate_series(1, {n}) g"
            ))
            .await?;
        stack.grant_reader(&m.db).await?;
    }
    let jobs = [
        Job::new("cadastro", "snapshot", "cad", "SELECT * FROM cad"),
        Job::new(
            "lista",
            "append",
            "cad_lista",
            "SELECT * FROM cad WHERE id % 10 = 0",
        ),
    ];
    for m in [&a, &b] {
        let cfg = stack.agent_config(m, &jobs, "")?;
        let r = stack.run_agent_in_process(&cfg).await?;
        assert!(r.all_committed(), "{r}");
    }
    let analytic = stack.analytic_client().await?;
    let slice =
        |ibge: &str| format!("SELECT id, h FROM analytic.cad WHERE _ibge = '{ibge}' ORDER BY id");
    let b_before = copy_dump(&analytic, &slice(B.0)).await?;

    // A's source changes; A transmits again.
    let src_a = stack.source.connect(&a.db).await?;
    src_a
        .batch_execute("DELETE FROM cad WHERE id > 1000; UPDATE cad SET h = 'mudou' WHERE id = 1")
        .await?;
    let cfg = stack.agent_config(&a, &jobs, "")?;
    let r = stack.run_agent_in_process(&cfg).await?;
    assert!(r.all_committed(), "{r}");

    assert_eq!(
        copy_dump(&analytic, &slice(A.0)).await?,
        copy_dump(&src_a, "SELECT id, h FROM cad ORDER BY id").await?
    );
    assert_eq!(
        copy_dump(&analytic, &slice(B.0)).await?,
        b_before,
        "B's rows were touched"
    );

    // Append: A has two transmissions (300 then 100 rows), B one (200).
    let rows = analytic
        .query(
            "SELECT _ibge::text, _transmission_id, count(*) FROM analytic.cad_lista GROUP BY 1, 2 ORDER BY 1, 2",
            &[],
        )
        .await?;
    let got: Vec<(String, i64)> = rows.iter().map(|r| (r.get(0), r.get(2))).collect();
    assert_eq!(
        got,
        vec![(B.0.into(), 200), (A.0.into(), 300), (A.0.into(), 100)]
    );
    stack.stop_collector().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_claiming_another_municipality_is_refused() -> anyhow::Result<()> {
    let mut stack = Stack::new(&[A, B]).await?;
    stack.start_collector_in_process().await?;
    let a = stack.munis[0].clone();
    stack
        .source
        .connect(&a.db)
        .await?
        .batch_execute("CREATE TABLE cad AS SELECT g AS id FROM generate_series(1, 10) g")
        .await?;
    stack.grant_reader(&a.db).await?;
    let cfg = stack.agent_config(
        &a,
        &[Job::new("cadastro", "snapshot", "cad", "SELECT * FROM cad")],
        "",
    )?;
    // The config claims B, the certificate says A.
    let text = std::fs::read_to_string(&cfg)?
        .replace("[agent]\n", &format!("[agent]\nibge = \"{}\"\n", B.0));
    std::fs::write(&cfg, text)?;
    let r = stack.run_agent_in_process(&cfg).await?;
    let text = r.to_string();
    assert!(!r.all_committed(), "{text}");
    assert!(text.contains("claims municipality 2304400"), "{text}");
    let analytic = stack.analytic_client().await?;
    let n: i64 = analytic
        .query_one("SELECT count(*) FROM transmissor.transmissions", &[])
        .await?
        .get(0);
    assert_eq!(n, 0, "nothing was recorded for anyone");
    stack.stop_collector().await?;
    Ok(())
}
