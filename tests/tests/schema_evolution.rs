//! Schema evolution across PEC versions: municipalities on different PEC
//! releases load the same target. A column the target lacks is added (old
//! rows read NULL) and recorded with the transmission that brought it; a
//! column a municipality does not send reads NULL in its new rows; a
//! changed type fails naming the column and both types, and changes
//! nothing; each municipality's column set shows in `status`.

use transmissor_tests::stack::{Job, Stack, copy_dump};

/// On PEC 5.5.21: no `st_nao_possui_cpf` / `co_dim_just_nao_possui_cpf`.
const OLD: (&str, &str) = ("3550308", "São Paulo");
/// On PEC 5.5.23: with both.
const NEW: (&str, &str) = ("2304400", "Fortaleza");
/// Sends `nu_visitas` as text instead of integer.
const ODD: (&str, &str) = ("4106902", "Curitiba");

const OLD_TABLE: &str = "CREATE TABLE tb_fat_visita_domiciliar AS \
    SELECT g AS co_seq, (g % 7)::integer AS nu_visitas, md5(g::text) AS ds_obs \
    FROM generate_series(1, 2000) g";
const NEW_TABLE: &str = "CREATE TABLE tb_fat_visita_domiciliar AS \
    SELECT g AS co_seq, md5(g::text) AS ds_obs, (g % 7)::integer AS nu_visitas, \
           (g % 2)::smallint AS st_nao_possui_cpf, \
           CASE WHEN g % 3 = 0 THEN g::bigint END AS co_dim_just_nao_possui_cpf \
    FROM generate_series(1, 1500) g";
const ODD_TABLE: &str = "CREATE TABLE tb_fat_visita_domiciliar AS \
    SELECT g AS co_seq, (g % 7)::text AS nu_visitas, md5(g::text) AS ds_obs \
    FROM generate_series(1, 10) g";

/// A municipality's rows of the target, as COPY text.
async fn slice(
    analytic: &tokio_postgres::Client,
    cols: &str,
    ibge: &str,
) -> anyhow::Result<Vec<u8>> {
    copy_dump(
        analytic,
        &format!(
            "SELECT {cols} FROM analytic.tb_fat_visita_domiciliar WHERE _ibge = '{ibge}' ORDER BY co_seq"
        ),
    )
    .await
}

/// The target's columns and types, in order.
async fn columns(analytic: &tokio_postgres::Client) -> anyhow::Result<String> {
    let q = "SELECT string_agg(column_name::text || ' ' || data_type::text, ', ' ORDER BY ordinal_position) \
             FROM information_schema.columns \
             WHERE table_schema = 'analytic' AND table_name = 'tb_fat_visita_domiciliar'";
    Ok(analytic.query_one(q, &[]).await?.get(0))
}

fn job() -> Job {
    Job::new(
        "visitas",
        "snapshot",
        "tb_fat_visita_domiciliar",
        "SELECT * FROM tb_fat_visita_domiciliar",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_follow_pec_versions() -> anyhow::Result<()> {
    let mut stack = Stack::new(&[OLD, NEW, ODD]).await?;
    stack.start_collector_in_process().await?;
    let (old, new, odd) = (
        stack.munis[0].clone(),
        stack.munis[1].clone(),
        stack.munis[2].clone(),
    );
    for (m, sql) in [(&old, OLD_TABLE), (&new, NEW_TABLE), (&odd, ODD_TABLE)] {
        stack
            .source
            .connect(&m.db)
            .await?
            .batch_execute(sql)
            .await?;
        stack.grant_reader(&m.db).await?;
    }
    let analytic = stack.analytic_client().await?;
    // The older release creates the target.
    let r = stack
        .run_agent_in_process(&stack.agent_config(&old, &[job()], "")?)
        .await?;
    assert!(r.all_committed(), "{r}");
    assert_eq!(
        columns(&analytic).await?,
        "_ibge character, _transmission_id bigint, co_seq integer, nu_visitas integer, ds_obs text"
    );

    // The newer release brings two columns (in another order): they are
    // added, the older municipality's rows read NULL in them.
    let r = stack
        .run_agent_in_process(&stack.agent_config(&new, &[job()], "")?)
        .await?;
    assert!(r.all_committed(), "{r}");
    assert_eq!(
        columns(&analytic).await?,
        "_ibge character, _transmission_id bigint, co_seq integer, nu_visitas integer, ds_obs text, \
         st_nao_possui_cpf smallint, co_dim_just_nao_possui_cpf bigint"
    );
    let new_tid: i64 = analytic
        .query_one(
            "SELECT id FROM transmissor.transmissions WHERE ibge = $1 AND state = 'committed'",
            &[&NEW.0],
        )
        .await?
        .get(0);
    let added: Vec<(String, Option<i64>)> = analytic
        .query(
            "SELECT name, added_by FROM transmissor.target_columns \
             WHERE target = 'tb_fat_visita_domiciliar' AND position > 3 ORDER BY position",
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        added,
        vec![
            ("st_nao_possui_cpf".to_string(), Some(new_tid)),
            ("co_dim_just_nao_possui_cpf".to_string(), Some(new_tid)),
        ],
        "added columns are recorded with the transmission that brought them"
    );
    let all = "co_seq, nu_visitas, ds_obs, st_nao_possui_cpf, co_dim_just_nao_possui_cpf";
    let src_new = stack.source.connect(&new.db).await?;
    assert_eq!(
        slice(&analytic, all, NEW.0).await?,
        copy_dump(
            &src_new,
            &format!("SELECT {all} FROM tb_fat_visita_domiciliar ORDER BY co_seq")
        )
        .await?
    );

    // The older release loads again (its source changed): its new rows read
    // NULL in the columns it does not send; the newer one's rows are untouched.
    let src_old = stack.source.connect(&old.db).await?;
    src_old
        .batch_execute("DELETE FROM tb_fat_visita_domiciliar WHERE co_seq > 1800")
        .await?;
    let new_before = slice(&analytic, all, NEW.0).await?;
    let r = stack
        .run_agent_in_process(&stack.agent_config(&old, &[job()], "")?)
        .await?;
    assert!(r.all_committed(), "{r}");
    assert_eq!(
        copy_dump(
            &analytic,
            &format!(
                "SELECT co_seq, nu_visitas, ds_obs, st_nao_possui_cpf IS NULL AND co_dim_just_nao_possui_cpf IS NULL \
                 FROM analytic.tb_fat_visita_domiciliar WHERE _ibge = '{}' ORDER BY co_seq",
                OLD.0
            )
        )
        .await?,
        copy_dump(
            &src_old,
            "SELECT co_seq, nu_visitas, ds_obs, true FROM tb_fat_visita_domiciliar ORDER BY co_seq"
        )
        .await?
    );
    assert_eq!(slice(&analytic, all, NEW.0).await?, new_before);

    // A changed type fails, naming the column and both types; nothing changes.
    let before = copy_dump(
        &analytic,
        "SELECT * FROM analytic.tb_fat_visita_domiciliar ORDER BY _ibge, co_seq",
    )
    .await?;
    let r = stack
        .run_agent_in_process(&stack.agent_config(&odd, &[job()], "")?)
        .await?;
    assert!(!r.all_committed(), "{r}");
    let err: String = analytic
        .query_one(
            "SELECT error FROM transmissor.transmissions WHERE ibge = $1",
            &[&ODD.0],
        )
        .await?
        .get(0);
    assert!(
        err.contains("column nu_visitas is integer in the target but text in this transmission"),
        "{err}"
    );
    assert_eq!(
        copy_dump(
            &analytic,
            "SELECT * FROM analytic.tb_fat_visita_domiciliar ORDER BY _ibge, co_seq"
        )
        .await?,
        before,
        "a refused transmission changes nothing"
    );

    // Each municipality's column set is kept, and `status` shows the drift.
    let pool = stack.collector_pool().await?;
    let status = transmissor_collector::status::last_transmissions(&pool).await?;
    let old_row = status.iter().find(|r| r.ibge == OLD.0).expect("old row");
    assert_eq!(
        old_row.missing_columns,
        vec!["st_nao_possui_cpf", "co_dim_just_nao_possui_cpf"]
    );
    let new_row = status.iter().find(|r| r.ibge == NEW.0).expect("new row");
    assert!(new_row.missing_columns.is_empty(), "{new_row:?}");
    let table = transmissor_collector::status::render(&status);
    assert!(
        table.contains("3, lacks 2: st_nao_possui_cpf, co_dim_just_nao_possui_cpf"),
        "{table}"
    );
    stack.stop_collector().await?;
    Ok(())
}
