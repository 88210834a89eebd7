use super::*;

const SECRET: &str = "Joao7x9Secret";

fn redacted(code: &str, message: &str, detail: Option<&str>, hint: Option<&str>) -> String {
    RedactedDbError::new(PgErrorFields {
        code,
        message,
        detail,
        hint,
        ..Default::default()
    })
    .to_string()
}

#[test]
fn data_classes_are_withheld_whatever_the_wording_and_quotes() {
    let cases = [
        (
            "22P02",
            format!(r#"invalid input syntax for type integer: "{SECRET}""#),
        ),
        (
            "22P02",
            format!("la sintaxis de entrada no es válida para tipo integer: «{SECRET}»"),
        ),
        (
            "22P02",
            format!("sintaxe de entrada é inválida para tipo integer: \"{SECRET}\""),
        ),
        (
            "22003",
            format!(r#"value "{SECRET}" is out of range for type integer"#),
        ),
        ("22008", format!(r#"date out of range: "{SECRET}""#)),
        ("22007", format!(r#"invalid value "{SECRET}" for "DD""#)),
        ("22P02", format!("Token „{SECRET}“ ist ungültig.")),
        ("22P02", format!("le jeton « {SECRET} » n'est pas valide")),
        (
            "23505",
            format!("llave duplicada viola restricción de unicidad «{SECRET}»"),
        ),
        (
            "23514",
            format!("'{SECRET}' ‘{SECRET}’ “{SECRET}” {SECRET}"),
        ),
        ("P0001", format!("CPF {SECRET} inválido")),
        ("00000", format!("aviso: {SECRET}")),
        ("42601", format!(r#"syntax error in tsquery: "{SECRET}""#)),
        ("0A000", SECRET.to_string()),
        ("54000", SECRET.to_string()),
        ("XX000", SECRET.to_string()),
        ("HV000", SECRET.to_string()),
        ("22ZZZ", SECRET.to_string()),
        ("ZZ999", SECRET.to_string()),
        ("bogus", SECRET.to_string()),
    ];
    for (code, message) in cases {
        let out = redacted(
            code,
            &message,
            Some(&format!("Key (nu_cpf)=({SECRET}) already exists.")),
            Some(&format!("Perhaps «{SECRET}»")),
        );
        assert!(!out.contains(SECRET), "{code}: {out}");
        assert!(out.contains("text withheld"), "{code}: {out}");
        if code != "bogus" {
            assert!(out.starts_with(code), "{code}: {out}");
        }
    }
}

#[test]
fn codes_keep_their_condition_name() {
    assert_eq!(
        redacted("22P02", SECRET, None, None),
        "22P02 invalid_text_representation (text withheld: it may quote data)"
    );
    assert_eq!(condition_name("23505"), "unique_violation");
    assert_eq!(condition_name("22ZZZ"), "data_exception");
    assert_eq!(condition_name("ZZ999"), "unknown");
    assert_eq!(condition_name("x"), "unknown");
    assert_eq!(
        redacted("bad", SECRET, None, None),
        "????? unknown (text withheld: it may quote data)"
    );
}

#[test]
fn the_table_is_sorted_and_complete() {
    let codes: Vec<&str> = sqlstate::CONDITIONS.iter().map(|(c, _)| *c).collect();
    let mut sorted = codes.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(codes, sorted);
    for (code, name) in sqlstate::CONDITIONS {
        assert_eq!(condition_name(code), *name);
    }
}

#[test]
fn structured_names_are_kept_when_the_text_is_withheld() {
    let e = RedactedDbError::new(PgErrorFields {
        code: "23505",
        message: &format!("duplicate key value violates unique constraint \"u\" {SECRET}"),
        detail: Some(&format!("Key (nu_cpf)=({SECRET}) already exists.")),
        schema: Some("analytic"),
        table: Some("cidadao"),
        column: Some(""),
        constraint: Some("cidadao_nu_cpf_key"),
        ..Default::default()
    });
    assert!(e.withheld());
    assert_eq!(
        e.to_string(),
        "23505 unique_violation (text withheld: it may quote data; schema analytic; table cidadao; constraint cidadao_nu_cpf_key)"
    );
    let long = "x".repeat(70) + "é";
    let e = RedactedDbError::new(PgErrorFields {
        code: "23502",
        column: Some(&long),
        ..Default::default()
    });
    assert_eq!(e.objects, vec![("column", "x".repeat(63))]);
}

#[test]
fn classes_that_never_quote_data_pass_through() {
    for (code, message, detail, hint) in [
        ("42501", "permission denied for table segredo", None, None),
        (
            "42P01",
            "no existe la relación «pec.tb_cidadao»",
            None,
            None,
        ),
        (
            "42804",
            "column \"nu\" is of type integer but expression is of type text",
            None,
            Some("You will need to rewrite or cast the expression."),
        ),
        (
            "57014",
            "canceling statement due to statement timeout",
            None,
            None,
        ),
        ("08006", "connection to server was lost", None, None),
        (
            "28P01",
            "password authentication failed for user \"leitor\"",
            None,
            None,
        ),
        (
            "40P01",
            "deadlock detected",
            Some("Process 1 waits for ShareLock on transaction 2; blocked by process 3."),
            None,
        ),
        (
            "55P03",
            "could not obtain lock on relation \"t\"",
            None,
            None,
        ),
    ] {
        let e = RedactedDbError::new(PgErrorFields {
            code,
            message,
            detail,
            hint,
            ..Default::default()
        });
        assert!(!e.withheld(), "{code}");
        let out = e.to_string();
        assert!(
            out.starts_with(&format!("{code} {}: {message}", condition_name(code))),
            "{out}"
        );
        if let Some(d) = detail {
            assert!(out.contains(&format!("(detail: {d})")), "{out}");
        }
        if let Some(h) = hint {
            assert!(out.contains(&format!("(hint: {h})")), "{out}");
        }
    }
}

#[test]
fn the_policy_by_code() {
    for code in [
        "22000", "22P02", "23505", "44000", "42601", "40002", "P0001", "01000", "0A000", "54000",
        "XX000", "HV00N",
    ] {
        assert!(may_quote_data(code), "{code}");
    }
    for code in [
        "42501", "42P01", "42703", "42804", "40001", "57014", "08006", "53100", "55P03", "58030",
    ] {
        assert!(!may_quote_data(code), "{code}");
    }
}
