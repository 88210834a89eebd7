use super::*;

/// Each output column's sources, or the refusal's text.
fn sources(sql: &str) -> Vec<Result<Vec<String>, String>> {
    lineage(sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .map(|c| {
            c.sources
                .map(|s| s.into_iter().collect())
                .map_err(|e| e.to_string())
        })
        .collect()
}

/// The sources of a one-column query.
fn one(sql: &str) -> Vec<String> {
    match sources(sql).as_slice() {
        [Ok(s)] => s.clone(),
        other => panic!("{sql}: {other:?}"),
    }
}

/// The refusal of a one-column query.
fn refused(sql: &str) -> String {
    match sources(sql).as_slice() {
        [Err(e)] => e.clone(),
        other => panic!("{sql} was not refused: {other:?}"),
    }
}

#[test]
fn expressions_read_their_columns() {
    for (sql, want) in [
        (
            "SELECT c.nu_cpf_cidadao AS documento FROM t c",
            &["nu_cpf_cidadao"][..],
        ),
        ("SELECT upper(nu_cns) FROM t", &["nu_cns"]),
        (
            "SELECT coalesce(nu_cpf_cidadao, nu_cns) FROM t",
            &["nu_cns", "nu_cpf_cidadao"],
        ),
        ("SELECT 'id:' || nu_cns FROM t", &["nu_cns"]),
        ("SELECT dt_nascimento::text AS d FROM t", &["dt_nascimento"]),
        (
            "SELECT round(nu_latitude::numeric, 6) AS y FROM t",
            &["nu_latitude"],
        ),
        ("SELECT CAST(a AS int) + -b FROM t", &["a", "b"]),
        ("SELECT substring(x FROM 1 FOR 3) FROM t", &["x"]),
        ("SELECT extract(year FROM d) FROM t", &["d"]),
        ("SELECT d AT TIME ZONE z FROM t", &["d", "z"]),
        ("SELECT x BETWEEN lo AND hi FROM t", &["hi", "lo", "x"]),
        ("SELECT x IN (a, b) FROM t", &["a", "b", "x"]),
        ("SELECT ROW(a, b) FROM t", &["a", "b"]),
        ("SELECT ARRAY[a, b] FROM t", &["a", "b"]),
        ("SELECT x ->> 'k' FROM t", &["x"]),
        ("SELECT 1, 'a'", &[]),
    ] {
        let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        assert_eq!(sources(sql)[0], Ok(want), "{sql}");
    }
}

#[test]
fn case_reads_conditions_and_results() {
    assert_eq!(
        one(
            "SELECT CASE WHEN c.nu_cpf_cidadao IS NOT NULL THEN c.nu_cpf_cidadao ELSE c.nu_cns END AS doc FROM t c"
        ),
        ["nu_cns", "nu_cpf_cidadao"]
    );
    // A condition alone can spell a value out.
    assert_eq!(
        one("SELECT CASE WHEN left(nu_cpf, 1) = '1' THEN 'a' ELSE 'b' END FROM t"),
        ["nu_cpf"]
    );
    assert_eq!(one("SELECT CASE k WHEN 1 THEN 'x' END FROM t"), ["k"]);
}

#[test]
fn aggregates_and_windows() {
    assert_eq!(one("SELECT string_agg(nu_cpf, ',') FROM t"), ["nu_cpf"]);
    assert_eq!(one("SELECT min(dt_nascimento) FROM t"), ["dt_nascimento"]);
    assert_eq!(
        one("SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY dt_nascimento) FROM t"),
        ["dt_nascimento"]
    );
    assert_eq!(
        one("SELECT first_value(nu_cns) OVER (PARTITION BY eq ORDER BY d) FROM t"),
        ["nu_cns"]
    );
    // Counting, filtering, grouping and ordering do not output the value.
    for sql in [
        "SELECT count(*) FROM t WHERE nu_cpf IS NOT NULL",
        "SELECT count(DISTINCT nu_cpf) FROM t",
        "SELECT pg_catalog.count(nu_cpf) FROM t",
        "SELECT count(*) FILTER (WHERE nu_cpf IS NULL) FROM t GROUP BY nu_cns HAVING min(nu_cns) > ''",
        "SELECT row_number() OVER (PARTITION BY nu_cns ORDER BY nu_cpf) FROM t ORDER BY nu_cpf",
        "SELECT string_agg('x', ',' ORDER BY nu_cpf) FROM t",
    ] {
        assert_eq!(one(sql), Vec::<String>::new(), "{sql}");
    }
}

#[test]
fn subqueries_are_followed() {
    assert_eq!(
        one("SELECT (SELECT c.nu_cpf_cidadao FROM tb_fat_cidadao_pec c \
             WHERE c.co_seq_fat_cidadao_pec = a.co_fat_cidadao_pec) AS ref \
             FROM tb_fat_atendimento_individual a"),
        ["nu_cpf_cidadao"]
    );
    // A correlated reference in a subquery's output resolves outwards.
    assert_eq!(
        one("SELECT (SELECT a.nu_cns || u.x FROM u LIMIT 1) AS r FROM t a"),
        ["nu_cns", "x"]
    );
    assert_eq!(
        one("SELECT EXISTS (SELECT 1 FROM u WHERE u.cpf = t.cpf) FROM t"),
        Vec::<String>::new()
    );
    assert_eq!(one("SELECT EXISTS (SELECT u.cpf FROM u) FROM t"), ["cpf"]);
    assert_eq!(
        one("SELECT k IN (SELECT nu_cns FROM u) FROM t"),
        ["k", "nu_cns"]
    );
    assert_eq!(one("SELECT ARRAY(SELECT nu_cns FROM u) FROM t"), ["nu_cns"]);
}

#[test]
fn ctes_and_derived_tables_are_followed_to_their_sources() {
    assert_eq!(
        one("WITH x AS (SELECT no_cidadao AS rotulo, co FROM t) SELECT x.rotulo FROM x"),
        ["no_cidadao"]
    );
    assert_eq!(
        one("WITH x AS (SELECT no_cidadao AS rotulo FROM t) SELECT rotulo AS r FROM x"),
        ["no_cidadao", "rotulo"]
    );
    // Column aliases of a CTE or a subquery rename by position.
    assert_eq!(
        one("WITH x (a, b) AS (SELECT co, nu_cns FROM t) SELECT y.b FROM x y"),
        ["nu_cns"]
    );
    assert_eq!(
        one("SELECT s.p FROM (SELECT upper(nu_cns), 1) AS s (p, q)"),
        ["nu_cns"]
    );
    // Nested CTEs, and a CTE read by another.
    assert_eq!(
        one(
            "WITH a AS (SELECT nu_cpf AS k FROM t), b AS (SELECT k AS j FROM a) \
             SELECT (WITH c AS (SELECT j AS i FROM b) SELECT i FROM c) AS z"
        ),
        ["i", "j", "k", "nu_cpf"]
    );
    // A non-personal CTE column stays clean.
    assert_eq!(
        one("WITH x AS (SELECT co_seq AS id, nu_cns FROM t) SELECT x.id FROM x"),
        ["co_seq"]
    );
    // `*` over a CTE or subquery at the top is expanded.
    assert_eq!(
        sources("SELECT * FROM (SELECT nu_cns AS a, co AS b FROM t) s"),
        [Ok(vec!["nu_cns".to_string()]), Ok(vec!["co".to_string()])]
    );
    // A `*` over a table inside a subquery passes its columns by name.
    assert_eq!(
        one("SELECT s.nu_cns AS a FROM (SELECT * FROM t) s"),
        ["nu_cns"]
    );
}

#[test]
fn recursive_ctes_reach_a_fixed_point() {
    assert_eq!(
        sources(
            "WITH RECURSIVE r (a, b) AS (SELECT 1, nu_cpf FROM t UNION ALL SELECT b, a FROM r) \
             SELECT a, b FROM r"
        ),
        [
            Ok(vec!["a".into(), "b".into(), "nu_cpf".into()]),
            Ok(vec!["a".into(), "b".into(), "nu_cpf".into()])
        ]
    );
}

#[test]
fn joins_and_unqualified_names() {
    // Unqualified: the source column of that name, and every same-named
    // column of a CTE or subquery in scope.
    assert_eq!(
        one(
            "WITH p AS (SELECT nu_cns AS k FROM u) SELECT k FROM t JOIN p ON p.k = t.k \
             LEFT JOIN (SELECT no_mae AS k FROM v) q ON true"
        ),
        ["k", "no_mae", "nu_cns"]
    );
    assert_eq!(
        one("SELECT e.no_equipe FROM t c JOIN tb_dim_equipe e ON e.co = c.nu_cpf"),
        ["no_equipe"]
    );
    assert_eq!(one("SELECT public.t.x FROM public.t"), ["x"]);
    assert_eq!(
        one("SELECT l.v FROM t, LATERAL (SELECT t.nu_cns AS v) l"),
        ["nu_cns"]
    );
    assert_eq!(
        one("SELECT u FROM t, unnest(ARRAY[t.nu_cpf]) u"),
        ["nu_cpf", "u"]
    );
    assert_eq!(one("SELECT g FROM generate_series(1, 3) g"), ["g"]);
}

#[test]
fn set_operations_read_every_branch() {
    assert_eq!(
        sources("SELECT co, 1 FROM t UNION SELECT 2, nu_cns FROM u EXCEPT SELECT 3, no_mae FROM v"),
        [
            Ok(vec!["co".to_string()]),
            Ok(vec!["no_mae".to_string(), "nu_cns".to_string()])
        ]
    );
    assert_eq!(one("VALUES (1), ((SELECT nu_cns FROM t))"), ["nu_cns"]);
}

#[test]
fn whole_rows_of_tables_are_refused() {
    for (sql, fragment) in [
        (
            "SELECT row_to_json(v)::text FROM tb_fat_visita_domiciliar v",
            "`v`",
        ),
        ("SELECT to_json(t) FROM tb_fat_cidadao_pec t", "`t`"),
        ("SELECT hstore(t) FROM tb_fat_cidadao_pec t", "`t`"),
        (
            "SELECT json_agg(tb_fat_cidadao_pec) FROM tb_fat_cidadao_pec",
            "`tb_fat_cidadao_pec`",
        ),
        (
            "SELECT row_to_json(v.*) FROM tb_fat_visita_domiciliar v",
            "`v.*`",
        ),
        ("SELECT ROW(v.*) FROM tb_fat_visita_domiciliar v", "v.*"),
        ("SELECT md5(v::text) FROM tb_fat_visita_domiciliar v", "`v`"),
        (
            "SELECT (SELECT s FROM tb_fat_cidadao_pec s LIMIT 1)::text",
            "`s`",
        ),
        (
            "SELECT (SELECT * FROM tb_fat_cidadao_pec LIMIT 1) AS x",
            "tb_fat_cidadao_pec",
        ),
        (
            "SELECT to_json(s) FROM (SELECT * FROM tb_fat_cidadao_pec) s",
            "`s`",
        ),
    ] {
        let e = refused(sql);
        assert!(e.contains(fragment), "{sql}: {e}");
        assert!(
            e.contains("whole rows of table") || e.contains("name the columns"),
            "{sql}: {e}"
        );
    }
    let e = refused("SELECT row_to_json(v)::text FROM tb_fat_visita_domiciliar v");
    assert!(e.contains("table tb_fat_visita_domiciliar"), "{e}");
    // A whole row of what the query defines is the union of its columns.
    assert_eq!(
        one("WITH c AS (SELECT nu_cns, co FROM t) SELECT row_to_json(c) FROM c"),
        ["c", "co", "nu_cns"]
    );
}

#[test]
fn what_cannot_be_followed_is_refused_naming_it() {
    for (sql, fragment) in [
        ("SELECT count(*) + json_agg(*) FROM t", "*"),
        ("SELECT x.a FROM t AS x (a, b)", "x (a, b)"),
        ("SELECT s.a FROM (SELECT * FROM t) AS s (a)", "s (a)"),
        ("SELECT (x).f FROM t", "(x).f"),
    ] {
        let got = sources(sql);
        let [got] = got.as_slice() else {
            panic!("{sql}: {got:?}")
        };
        match got {
            Err(e) => assert!(e.contains(fragment), "{sql}: {e}"),
            // `(x).f` is a field of column x: followed as x.
            Ok(s) => assert!(s.contains(&"x".to_string()), "{sql}: {s:?}"),
        }
    }
    // Functions that run SQL given as text, or read a table by name.
    for sql in [
        "SELECT query_to_xml('SELECT nu_cpf FROM t', true, false, '')",
        "SELECT table_to_xml('tb_fat_cidadao_pec', true, false, '')::text AS x",
        "SELECT d.x FROM dblink('db', 'SELECT nu_cpf FROM t') AS d (x text)",
    ] {
        let got = sources(sql);
        assert!(
            matches!(got.as_slice(), [Err(e)] if e.contains("runs a query given as text")),
            "{sql}: {got:?}"
        );
    }
    // A subquery in a form this module does not follow is refused.
    let e = refused("SELECT POSITION((SELECT nu_cns FROM u) IN x) FROM t");
    assert!(e.contains("SELECT nu_cns FROM u"), "{e}");
    // Long fragments are cut.
    let long = format!("SELECT row_to_json({}) FROM t {}", "v", "v");
    assert!(refused(&long).len() < 400);
    assert_eq!(
        fragment_of(&"x ".repeat(100)).chars().count(),
        FRAGMENT_CHARS
    );
}

#[test]
fn a_star_over_a_table_at_the_top_is_refused() {
    assert!(matches!(
        lineage("SELECT t.* FROM tb_fat_cidadao_pec t"),
        Err(OutputColumnsError::Wildcard(_))
    ));
}
