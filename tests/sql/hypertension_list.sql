-- Nominal list of hypertensive citizens, in the style central teams extract from PEC every day.
-- One row per living, non-deleted citizen with at least one individual-care record coded for
-- hypertension: CID-10 I10-I13/I15 (with or without subcode) in ds_filtro_cids, or CIAP-2
-- K86/K87 in ds_filtro_ciaps. Joins the citizen table, individual-care and home-visit facts,
-- the latest registration version and the team, health unit, professional, CBO, sex and time
-- dimensions. Plain SQL for PostgreSQL 9.6-17; the code patterns use '[|]' rather than '\|' so
-- they mean the same whatever standard_conforming_strings says. Deterministic: every DISTINCT ON
-- is tie-broken by primary key.
WITH atd AS (
    SELECT a.co_seq_fat_atd_ind, a.co_fat_cidadao_pec, a.dt_inicial_atendimento,
           t.dt_registro AS dt_atendimento, a.nu_pressao_sistolica, a.nu_pressao_diastolica,
           a.co_dim_profissional_1, a.co_dim_cbo_1, a.co_dim_equipe_1, a.co_dim_unidade_saude_1,
           (COALESCE(a.ds_filtro_cids, '') ~ '[|]I1[0-35]'
            OR COALESCE(a.ds_filtro_ciaps, '') ~ '[|]K8[67][|]') AS is_has,
           (COALESCE(a.ds_filtro_cids, '') ~ '[|]E1[0-4]'
            OR COALESCE(a.ds_filtro_ciaps, '') ~ '[|]T(89|90)[|]') AS is_dm
    FROM tb_fat_atendimento_individual a
    JOIN tb_dim_tempo t ON t.co_seq_dim_tempo = a.co_dim_tempo
    WHERE a.co_fat_cidadao_pec IS NOT NULL
),
pacientes AS (
    SELECT co_fat_cidadao_pec,
           min(dt_atendimento) FILTER (WHERE is_has) AS dt_primeiro_atendimento_has,
           max(dt_atendimento) AS dt_ultimo_atendimento,
           count(*) FILTER (WHERE is_has) AS qt_atendimentos_has,
           count(nu_pressao_sistolica) AS qt_afericoes_pa,
           bool_or(is_dm) AS dm_diagnosticada
    FROM atd
    GROUP BY co_fat_cidadao_pec
    HAVING bool_or(is_has)
),
ultimo_atd AS (
    SELECT DISTINCT ON (co_fat_cidadao_pec)
           co_fat_cidadao_pec, co_dim_profissional_1, co_dim_cbo_1, co_dim_equipe_1,
           co_dim_unidade_saude_1
    FROM atd
    ORDER BY co_fat_cidadao_pec, dt_inicial_atendimento DESC, co_seq_fat_atd_ind DESC
),
ultima_pa AS (
    SELECT DISTINCT ON (co_fat_cidadao_pec)
           co_fat_cidadao_pec, dt_atendimento, nu_pressao_sistolica, nu_pressao_diastolica
    FROM atd
    WHERE nu_pressao_sistolica IS NOT NULL AND nu_pressao_diastolica IS NOT NULL
    ORDER BY co_fat_cidadao_pec, dt_inicial_atendimento DESC, co_seq_fat_atd_ind DESC
),
cadastro AS (                          -- latest version of the individual registration
    SELECT DISTINCT ON (co_fat_cidadao_pec)
           co_fat_cidadao_pec, nu_cpf_cidadao, nu_micro_area, st_hipertensao_arterial,
           st_diabete, co_dim_profissional
    FROM tb_fat_cad_individual
    WHERE co_fat_cidadao_pec IS NOT NULL
    ORDER BY co_fat_cidadao_pec, co_dim_tempo DESC, co_seq_fat_cad_individual DESC
),
visita AS (
    SELECT co_fat_cidadao_pec, max(co_dim_tempo) AS co_dim_tempo
    FROM tb_fat_visita_domiciliar
    WHERE co_fat_cidadao_pec IS NOT NULL
    GROUP BY co_fat_cidadao_pec
)
SELECT c.co_seq_fat_cidadao_pec                                   AS co_cidadao,
       c.no_cidadao::varchar                                      AS no_cidadao,
       COALESCE(c.nu_cpf_cidadao, cad.nu_cpf_cidadao)::varchar    AS nu_cpf,
       c.nu_cns::varchar                                          AS nu_cns,
       tn.dt_registro                                             AS dt_nascimento,
       sx.ds_sexo::varchar                                        AS ds_sexo,
       c.nu_telefone_celular::varchar                             AS nu_telefone_celular,
       eq.nu_ine::varchar                                         AS nu_ine,
       eq.no_equipe::varchar                                      AS no_equipe,
       us.nu_cnes::varchar                                        AS nu_cnes,
       us.no_unidade_saude::varchar                               AS no_unidade_saude,
       cad.nu_micro_area::varchar                                 AS nu_micro_area,
       acs.no_profissional::varchar                               AS no_acs,
       COALESCE(cad.st_hipertensao_arterial, 0)                   AS st_hipertensao_autorreferida,
       CASE WHEN p.dm_diagnosticada OR cad.st_diabete = 1 THEN 1 ELSE 0 END AS st_diabetes,
       p.dt_primeiro_atendimento_has,
       p.dt_ultimo_atendimento,
       prof.no_profissional::varchar                              AS no_profissional_ultimo_atendimento,
       cbo.no_cbo::varchar                                        AS no_cbo_ultimo_atendimento,
       p.qt_atendimentos_has,
       p.qt_afericoes_pa,
       pa.dt_atendimento                                          AS dt_ultima_afericao_pa,
       pa.nu_pressao_sistolica                                    AS nu_pressao_sistolica,
       pa.nu_pressao_diastolica                                   AS nu_pressao_diastolica,
       CASE WHEN pa.nu_pressao_sistolica IS NULL THEN NULL
            WHEN pa.nu_pressao_sistolica < 140 AND pa.nu_pressao_diastolica < 90 THEN 1
            ELSE 0 END                                            AS st_pa_controlada,
       tv.dt_registro                                             AS dt_ultima_visita_acs
FROM pacientes p
JOIN tb_fat_cidadao_pec c ON c.co_seq_fat_cidadao_pec = p.co_fat_cidadao_pec
LEFT JOIN tb_dim_tempo tn ON tn.co_seq_dim_tempo = c.co_dim_tempo_nascimento
LEFT JOIN tb_dim_sexo sx ON sx.co_seq_dim_sexo = c.co_dim_sexo
LEFT JOIN ultimo_atd u ON u.co_fat_cidadao_pec = p.co_fat_cidadao_pec
LEFT JOIN ultima_pa pa ON pa.co_fat_cidadao_pec = p.co_fat_cidadao_pec
LEFT JOIN cadastro cad ON cad.co_fat_cidadao_pec = p.co_fat_cidadao_pec
LEFT JOIN visita v ON v.co_fat_cidadao_pec = p.co_fat_cidadao_pec
LEFT JOIN tb_dim_tempo tv ON tv.co_seq_dim_tempo = v.co_dim_tempo
-- the team / unit the citizen is bound to, else those of the last care
LEFT JOIN tb_dim_equipe eq
       ON eq.co_seq_dim_equipe = COALESCE(NULLIF(c.co_dim_equipe_vinc, 1), u.co_dim_equipe_1)
LEFT JOIN tb_dim_unidade_saude us
       ON us.co_seq_dim_unidade_saude = COALESCE(NULLIF(c.co_dim_unidade_saude_vinc, 1), u.co_dim_unidade_saude_1)
LEFT JOIN tb_dim_profissional acs ON acs.co_seq_dim_profissional = cad.co_dim_profissional
LEFT JOIN tb_dim_profissional prof ON prof.co_seq_dim_profissional = u.co_dim_profissional_1
LEFT JOIN tb_dim_cbo cbo ON cbo.co_seq_dim_cbo = u.co_dim_cbo_1
WHERE COALESCE(c.st_deletar, 0) = 0
  AND COALESCE(c.st_faleceu, 0) = 0
ORDER BY eq.co_seq_dim_equipe, c.co_seq_fat_cidadao_pec
