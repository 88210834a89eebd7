-- Synthetic PEC-like data generator: fills the 13 tables of pec_schema.sql.
--
-- Placeholders, written as the NAME in double curly braces and substituted textually by
-- tests/src/pec.rs; they appear only in the pec_param statement below (never in comments):
--   IBGE       7-digit municipality code            MUNICIPIO  municipality name, SQL-escaped
--   SEED       integer, varies the data             CITIZENS   rows of tb_fat_cidadao_pec (>= 1)
--   VISITS     rows of tb_fat_visita_domiciliar     CARE       rows of tb_fat_atendimento_individual
--
-- Deterministic: every pseudo-random value is sliced from md5('<row>/<stream>/<seed>/<ibge>'), so
-- the same placeholders always give identical rows (no random(), clock or sequence is read).
-- Set-based (INSERT ... SELECT over generate_series) and PostgreSQL 9.6-17 compatible; no
-- extension is needed. Re-runnable: it truncates the 13 tables first. Helper functions and
-- tables live in the session's pg_temp schema and are dropped at the end. Everything is
-- synthetic: names are combinations of common given names and surnames, and CPF / CNS numbers
-- carry deliberately WRONG check digits, so they can never be a real person's document.
--
-- Shape: teams = max(6, citizens / 800) ESF teams of 6 professionals (doctor, nurse, nursing
-- technician, 3 community health workers / ACS); two teams per health unit; households of 3-4
-- citizens; 1 to 3 registration versions per citizen; facts dated 2024-01-01 .. 2026-10-31.
-- About 25% of citizens are hypertensive (mostly adults 40+), ~9% diabetic; chronic patients are
-- drawn twice as often for individual care, and about a quarter of care rows carry hypertension
-- codes (CID I10/I11x/I15x, CIAP K86/K87).

TRUNCATE tb_migracao, tb_dim_tempo, tb_dim_municipio, tb_dim_unidade_saude, tb_dim_equipe,
         tb_dim_profissional, tb_dim_cbo, tb_dim_sexo, tb_fat_cidadao_pec, tb_fat_cad_individual,
         tb_fat_atendimento_individual, tb_fat_visita_domiciliar, tb_fat_cad_domiciliar;

-- ---------------------------------------------------------------------------------------------
-- Helpers (session-temporary)
-- ---------------------------------------------------------------------------------------------

-- Unsigned 32-bit number from hex digits i .. i+7 of an md5 (use i = 1, 9, 17, 25).
CREATE OR REPLACE FUNCTION pg_temp.u(h text, i integer) RETURNS bigint LANGUAGE sql IMMUTABLE
AS $$ SELECT ('x' || substr(h, i, 8))::bit(32)::bigint $$;

-- YYYYMMDD key of tb_dim_tempo.
CREATE OR REPLACE FUNCTION pg_temp.dkey(d date) RETURNS bigint LANGUAGE sql IMMUTABLE
AS $$ SELECT (extract(year FROM d) * 10000 + extract(month FROM d) * 100 + extract(day FROM d))::bigint $$;

-- UUID-formatted text from an md5.
CREATE OR REPLACE FUNCTION pg_temp.uuid(h text) RETURNS text LANGUAGE sql IMMUTABLE
AS $$ SELECT substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-4' || substr(h, 14, 3) || '-a'
             || substr(h, 18, 3) || '-' || substr(h, 21, 12) $$;

-- ds_filtro style search text: accents folded, lower case (identical under any locale).
CREATE OR REPLACE FUNCTION pg_temp.filtro(x text) RETURNS text LANGUAGE sql IMMUTABLE
AS $$ SELECT lower(translate(x, 'ÁÀÂÃÉÊÍÓÔÕÚÜÇáàâãéêíóôõúüç', 'aaaaeeiooouucaaaaeeiooouuc')) $$;

-- CNS-like number: 14 given digits + a 15th chosen so that sum(d_i * (16 - i)) % 11 <> 0,
-- i.e. it FAILS the real CNS check.
CREATE OR REPLACE FUNCTION pg_temp.fake_cns(b text) RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE s integer := 0; d integer;
BEGIN
    FOR i IN 1..14 LOOP s := s + substr(b, i, 1)::integer * (16 - i); END LOOP;
    d := (s * 7) % 10;
    IF (s + d) % 11 = 0 THEN d := (d + 1) % 10; END IF;
    RETURN b || d;
END $$;

-- CPF-like number: 9 given digits + a first check digit that is never the valid one.
CREATE OR REPLACE FUNCTION pg_temp.fake_cpf(b text) RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE s integer := 0; dv integer;
BEGIN
    FOR i IN 1..9 LOOP s := s + substr(b, i, 1)::integer * (11 - i); END LOOP;
    dv := (s * 10) % 11 % 10;                        -- the valid first check digit ...
    RETURN b || ((dv + 1 + s % 9) % 10) || ((s * 3 + 1) % 10);  -- ... shifted by 1..9
END $$;

CREATE OR REPLACE FUNCTION pg_temp.nome_f(i bigint) RETURNS text LANGUAGE sql IMMUTABLE AS $$
SELECT (ARRAY['Ana','Maria','Francisca','Antônia','Adriana','Juliana','Márcia','Fernanda','Patrícia',
  'Aline','Sandra','Camila','Amanda','Bruna','Jéssica','Letícia','Júlia','Luíza','Gabriela','Vitória',
  'Conceição','Raimunda','Lúcia','Inês','Beatriz','Débora','Mônica','Cláudia','Tânia','Sebastiana',
  'Joana','Helena','Heloísa','Cecília','Valéria','Rosângela','Sônia','Fátima','Iracema','Lívia'])[1 + i % 40] $$;

CREATE OR REPLACE FUNCTION pg_temp.nome_m(i bigint) RETURNS text LANGUAGE sql IMMUTABLE AS $$
SELECT (ARRAY['José','João','Antônio','Francisco','Carlos','Paulo','Pedro','Lucas','Luiz','Marcos',
  'Luís','Gabriel','Rafael','Daniel','Marcelo','Bruno','Eduardo','Felipe','Raimundo','Rodrigo',
  'Sebastião','Vinícius','Otávio','Cícero','Joaquim','Benedito','Caetano','Simão','Estêvão','Fábio',
  'Márcio','Cláudio','Rogério','Sérgio','Flávio','André','Thiago','Matheus','Inácio','Gonçalo'])[1 + i % 40] $$;

CREATE OR REPLACE FUNCTION pg_temp.sobrenome(i bigint) RETURNS text LANGUAGE sql IMMUTABLE AS $$
SELECT (ARRAY['Silva','Santos','Oliveira','Souza','Rodrigues','Ferreira','Alves','Pereira','Lima',
  'Gomes','Ribeiro','Carvalho','Araújo','Gonçalves','Conceição','Magalhães','Guimarães','Brandão',
  'Simões','Assunção','Falcão','Romão','Nóbrega','Sá','Bragança','Loureiro','Damião','Mendonça',
  'Esteves','Antunes','Barbosa','Rocha','Dias','Nascimento','Andrade','Moreira','Nunes','Marques',
  'Machado','Mendes','Freitas','Cardoso','Ramos','Teixeira','Monteiro','Correia','Gusmão','Tavares',
  'Pinheiro','Aragão'])[1 + i % 50] $$;

-- Full name "First [Second] Surname Surname" from a 32-bit number; the last surname is
-- sometimes one with a particle ("da Silva").
CREATE OR REPLACE FUNCTION pg_temp.nome(sexo bigint, v bigint) RETURNS text LANGUAGE sql IMMUTABLE AS $$
SELECT CASE WHEN sexo = 2 THEN pg_temp.nome_m(v) ELSE pg_temp.nome_f(v) END
    || CASE WHEN v / 40 % 4 = 0 THEN ' ' || CASE WHEN sexo = 2 THEN pg_temp.nome_m(v / 160)
                                                 ELSE pg_temp.nome_f(v / 160) END ELSE '' END
    || ' ' || pg_temp.sobrenome(v / 6400) || ' '
    || CASE WHEN v / 320000 % 10 < 3
            THEN (ARRAY['da Silva','dos Santos','de Oliveira','de Souza','da Conceição','de Jesus',
                        'da Costa','de Almeida','do Nascimento','da Cruz'])[1 + v / 3200000 % 10]
            ELSE pg_temp.sobrenome(v / 3200000) END $$;

CREATE OR REPLACE FUNCTION pg_temp.bairro(i bigint) RETURNS text LANGUAGE sql IMMUTABLE AS $$
SELECT (ARRAY['Centro','Vila Nova','Jardim América','São Cristóvão','Boa Esperança','Conceição',
  'Santa Luzia','Alto da Glória','Bela Vista','Três Marias','Liberdade','Primavera','Vila Operária',
  'Alvorada','Nossa Senhora de Fátima','Esplanada','Jardim Paraíso','Santo Antônio','Ipê Amarelo',
  'Cruzeiro','Planalto','Lagoa Seca','Morada do Sol','Vila São José','Jatobá','Renascença',
  'Ribeirão','Várzea','Maracanã','Califórnia'])[1 + i % 30] $$;

CREATE OR REPLACE FUNCTION pg_temp.rua(i bigint) RETURNS text LANGUAGE sql IMMUTABLE AS $$
SELECT (ARRAY['Rua','Rua','Rua','Avenida','Travessa','Alameda'])[1 + i % 6] || ' '
    || (ARRAY['das Acácias','São Benedito','Tiradentes','Sete de Setembro','Dom Pedro II',
  'XV de Novembro','das Palmeiras','Santa Luzia','Marechal Deodoro','José Bonifácio','dos Ipês',
  'Castro Alves','Rui Barbosa','da Conceição','São João','das Mangueiras','Padre Cícero',
  'Coronel Antônio Simões','Frei Caneca','Duque de Caxias','Getúlio Vargas','Joaquim Nabuco',
  'Barão do Rio Branco','Princesa Isabel','Paraná','Amazonas','Goiás','Pernambuco','das Flores',
  'Projetada Um'])[1 + i / 6 % 30] $$;

-- ---------------------------------------------------------------------------------------------
-- Parameters: the only statement with placeholders
-- ---------------------------------------------------------------------------------------------
DROP TABLE IF EXISTS pg_temp.pec_param;
CREATE TEMP TABLE pec_param AS
SELECT s.*,
       greatest(6, least(300, s.citizens / 800)) AS teams,          -- ESF teams, 2 per unit
       (greatest(6, least(300, s.citizens / 800)) + 1) / 2 AS units,
       (s.citizens - 1) * 10 / 31 + 1 AS households,                 -- citizen n -> (n-1)*10/31+1
       -25.0 + (pg_temp.u(s.m, 1) % 1800) / 100.0 AS lat0,           -- municipality centre
       -56.0 + (pg_temp.u(s.m, 9) % 1600) / 100.0 AS lon0,
       (ARRAY['11','21','27','31','41','48','51','61','62','71','79','81','84','85','91','92'])
           [1 + pg_temp.u(s.m, 17) % 16] AS ddd,
       lpad((pg_temp.u(s.m, 25) % 90000 + 10000)::text, 5, '0') AS cep5,
       date '2024-01-01' AS start_date,                              -- a Monday
       date '2026-10-31' AS ref_date,                                -- last fact date
       1035 AS window_days,                                          -- ref_date - start_date + 1
       (SELECT setting FROM pg_settings WHERE name = 'jit') AS jit_before  -- NULL before PG 11
FROM (SELECT '{{IBGE}}'::text AS ibge,
             '{{MUNICIPIO}}'::text AS municipio,
             '/{{SEED}}/{{IBGE}}'::text AS salt,
             md5('municipio/{{SEED}}/{{IBGE}}') AS m,
             greatest(1, {{CITIZENS}})::bigint AS citizens,
             ({{VISITS}})::bigint AS visits,
             ({{CARE}})::bigint AS care) s;

-- JIT (PostgreSQL 11+) would spend seconds compiling these wide expressions for no gain; turn it
-- off for this session while generating, and restore it at the end.
DO $$ BEGIN PERFORM set_config('jit', 'off', false) FROM pg_settings WHERE name = 'jit'; END $$;

-- ---------------------------------------------------------------------------------------------
-- Dimensions (id 1 = placeholder row)
-- ---------------------------------------------------------------------------------------------
INSERT INTO tb_migracao (id, author, filename, dateexecuted, orderexecuted)
SELECT 'v' || v.ver || '-' || lpad(k::text, 3, '0'), 'esus-aps',
       'db/v' || v.ver || CASE WHEN k = 1 THEN '/changelog.xml' ELSE '/ddl/changeset-' || k || '.xml' END,
       timestamp '2021-03-01 22:00' + (v.ord * 110) * interval '1 day' + k * interval '7 second',
       ((v.ord - 1) * 4 + k)::integer
FROM unnest(ARRAY['4.2.7','4.5.5','5.0.8','5.0.14','5.1.18','5.2.28','5.2.38','5.3.19','5.3.26',
                  '5.4.13','5.5.28']) WITH ORDINALITY AS v(ver, ord),
     generate_series(1, 4) k
ORDER BY v.ord, k;

INSERT INTO tb_dim_tempo (co_seq_dim_tempo, dt_registro, nu_dia, nu_mes, nu_ano, ds_dia_semana)
SELECT pg_temp.dkey(d), d, extract(day FROM d)::integer, extract(month FROM d)::integer,
       extract(year FROM d)::integer,
       (ARRAY['DOMINGO','SEGUNDA-FEIRA','TERÇA-FEIRA','QUARTA-FEIRA','QUINTA-FEIRA','SEXTA-FEIRA',
              'SÁBADO'])[extract(dow FROM d)::integer + 1]
FROM (SELECT date '1925-01-01' + i AS d                 -- covers every birth and fact date
      FROM generate_series(0, date '2027-12-31' - date '1925-01-01') i) t
UNION ALL SELECT 30001231, date '3000-12-31', 31, 12, 3000, NULL
ORDER BY 1;

INSERT INTO tb_dim_sexo (co_seq_dim_sexo, nu_identificador, ds_sexo) VALUES
    (1, '-', 'NÃO INFORMADO'), (2, '0', 'MASCULINO'), (3, '1', 'FEMININO'), (4, '4', 'INDETERMINADO');

INSERT INTO tb_dim_cbo (co_seq_dim_cbo, nu_cbo, no_cbo, st_registro_valido, ds_filtro)
SELECT id, cbo, no, CASE WHEN id = 1 THEN 0 ELSE 1 END, pg_temp.filtro(cbo || ' ' || no)
FROM (VALUES (1, '-', 'NÃO INFORMADO'),
             (2, '225142', 'MÉDICO DA ESTRATÉGIA DE SAÚDE DA FAMÍLIA'),
             (3, '223565', 'ENFERMEIRO DA ESTRATÉGIA DE SAÚDE DA FAMÍLIA'),
             (4, '322245', 'TÉCNICO DE ENFERMAGEM DA ESTRATÉGIA DE SAÚDE DA FAMÍLIA'),
             (5, '515105', 'AGENTE COMUNITÁRIO DE SAÚDE'),
             (6, '225125', 'MÉDICO CLÍNICO'),
             (7, '223505', 'ENFERMEIRO'),
             (8, '223293', 'CIRURGIÃO-DENTISTA DA ESTRATÉGIA DE SAÚDE DA FAMÍLIA'),
             (9, '251510', 'PSICÓLOGO CLÍNICO'),
             (10, '223405', 'FARMACÊUTICO')) c(id, cbo, no);

-- 1 = placeholder, 2 = this installation, 3..22 = neighbours (birth municipalities).
INSERT INTO tb_dim_municipio (co_seq_dim_municipio, no_municipio, co_ibge, co_dim_uf,
                              st_registro_valido, ds_filtro)
SELECT 1::bigint, 'NÃO INFORMADO', '-', 1::bigint, 0, '-'
UNION ALL
SELECT 2, p.municipio, p.ibge, substr(p.ibge, 1, 2)::bigint, 1, pg_temp.filtro(p.municipio || ' ' || p.ibge)
FROM pec_param p
UNION ALL
SELECT i + 2, x.name, x.code, substr(p.ibge, 1, 2)::bigint, 1, pg_temp.filtro(x.name || ' ' || x.code)
FROM pec_param p, generate_series(1, 20) i,
     LATERAL (SELECT (ARRAY['São José','Santa Rita','Nova Esperança','Porto','Bom Jesus','Conceição',
                            'Santo Antônio','Vila Bela','Serra','Lagoa','Morro','Campo'])[1 + i % 12]
                     || (ARRAY[' do Norte',' da Serra',' das Flores',' do Sul',' dos Campos',
                               ' do Oeste',' da Boa Vista',' do Ribeirão',' Alegre',' do Araguaia'])[1 + i * 7 % 10]
                     AS name,
                     substr(p.ibge, 1, 2)
                     || lpad(((substr(p.ibge, 3, 5)::integer + i * 1543) % 100000)::text, 5, '0') AS code) x
ORDER BY 1;

INSERT INTO tb_dim_unidade_saude (co_seq_dim_unidade_saude, nu_cnes, no_unidade_saude, no_bairro,
                                  st_registro_valido, ds_filtro)
SELECT 1::bigint, '-', 'SEM UNIDADE DE SAÚDE', NULL, 0, '-'
UNION ALL
SELECT i + 1, x.cnes, x.nome, x.bairro, 1, pg_temp.filtro(x.cnes || ' ' || x.nome)
FROM pec_param p, generate_series(1, p.units) i,
     LATERAL (SELECT lpad((pg_temp.u(md5('unidade/' || i || p.salt), 1) % 9000000 + 1000000)::text, 7, '0') AS cnes,
                     CASE WHEN i % 4 = 0 THEN 'USF ' ELSE 'UBS ' END || pg_temp.bairro(i - 1)
                     || CASE WHEN i > 30 THEN ' ' || (i - 1) / 30 + 1 ELSE '' END AS nome,
                     pg_temp.bairro(i - 1) AS bairro) x
ORDER BY 1;

-- Team t (1..teams) has id t + 1 and belongs to unit id (t - 1) / 2 + 2.
INSERT INTO tb_dim_equipe (co_seq_dim_equipe, nu_ine, no_equipe, st_registro_valido, ds_filtro)
SELECT 1::bigint, '-', 'SEM EQUIPE', 0, '-'
UNION ALL
SELECT t + 1, x.ine, x.nome, 1, pg_temp.filtro(x.ine || ' ' || x.nome)
FROM pec_param p, generate_series(1, p.teams) t,
     LATERAL (SELECT lpad((pg_temp.u(md5('equipe/' || t || p.salt), 1) * 2 % 10000000000)::text, 10, '0') AS ine,
                     'ESF ' || lpad(t::text, 2, '0') || ' - ' || pg_temp.bairro((t - 1) / 2)
                     || CASE WHEN t % 2 = 1 THEN ' I' ELSE ' II' END AS nome) x
ORDER BY 1;

-- Professional of team t with role r (0 doctor, 1 nurse, 2 nursing technician, 3..5 ACS):
-- id (t - 1) * 6 + r + 2.
INSERT INTO tb_dim_profissional (co_seq_dim_profissional, nu_cns, no_profissional,
                                 st_registro_valido, ds_filtro)
SELECT 1::bigint, '-', 'NÃO INFORMADO', 0, '-'
UNION ALL
SELECT x.id, x.cns, x.nome, 1, pg_temp.filtro(x.cns || ' ' || x.nome)
FROM (SELECT q + 1 AS id,
             pg_temp.fake_cns('7' || lpad((pg_temp.u(h, 1) % 10000000)::text, 7, '0')
                                  || lpad((pg_temp.u(h, 9) % 1000000)::text, 6, '0')) AS cns,
             pg_temp.nome(CASE WHEN pg_temp.u(h, 17) % 2 = 0 THEN 2 ELSE 3 END, pg_temp.u(h, 25)) AS nome
      FROM (SELECT q, md5('profissional/' || q || p.salt) AS h
            FROM pec_param p, generate_series(1, p.teams * 6) q OFFSET 0) g) x
ORDER BY 1;

-- ---------------------------------------------------------------------------------------------
-- Households and citizens (temporary working tables)
-- ---------------------------------------------------------------------------------------------
DROP TABLE IF EXISTS pg_temp.pec_dom;
CREATE TEMP TABLE pec_dom AS
SELECT hh, t, t + 1 AS team_id, (t - 1) / 2 + 2 AS unit_id,
       CASE WHEN fa THEN 'FA' ELSE lpad((k + 1)::text, 2, '0') END AS micro_area,
       (t - 1) * 6 + CASE WHEN fa THEN 2 ELSE 3 + k END + 2 AS prof_id,     -- ACS (technician if FA)
       CASE WHEN fa THEN 4 ELSE 5 END AS cbo_id,
       ((hh - 1) * 31 + 9) / 10 + 1 AS responsavel,                         -- first member
       round((lat0 + (pg_temp.u(h, 9) % 8001 - 4000) / 100000.0)::numeric, 6)::double precision AS lat,
       round((lon0 + (pg_temp.u(h, 17) % 8001 - 4000) / 100000.0)::numeric, 6)::double precision AS lon,
       h
FROM (SELECT hh, md5(hh || '/dom' || p.salt) AS h, p.lat0, p.lon0,
             (hh - 1) * p.teams / p.households + 1 AS t,
             (hh - 1) * p.teams * 3 / p.households % 3 AS k,
             pg_temp.u(md5(hh || '/dom' || p.salt), 1) % 100 < 2 AS fa
      FROM pec_param p, generate_series(1, p.households) hh OFFSET 0) g;

DROP TABLE IF EXISTS pg_temp.pec_cid;
CREATE TEMP TABLE pec_cid AS
SELECT b.*,
       pg_temp.nome(b.sexo, b.v_nome) AS no_cidadao,
       CASE WHEN b.f1 % 200 = 0 THEN pg_temp.nome(5 - b.sexo, b.v_nome / 7) END AS no_social,
       CASE WHEN b.f1 / 200 % 20 <> 0
            THEN pg_temp.nome_f(b.v_mae) || ' ' || pg_temp.sobrenome(b.v_mae / 40)
                 || ' ' || pg_temp.sobrenome(b.v_nome / 6400) END AS no_mae,
       CASE WHEN b.f1 / 4000 % 100 < 93                                   -- 93% have a CNS
            THEN pg_temp.fake_cns((ARRAY['7','7','8','9','1','2'])[1 + b.v_cns1 % 6]
                                  || lpad((b.v_cns1 / 6 % 10000000)::text, 7, '0')
                                  || lpad((b.v_cns2 % 1000000)::text, 6, '0')) END AS cns,
       CASE WHEN b.f2 % 100 < CASE WHEN b.age < 18 THEN 55 ELSE 88 END    -- fewer children have a CPF
            THEN pg_temp.fake_cpf(lpad((b.v_cpf % 1000000000)::text, 9, '0')) END AS cpf,
       CASE WHEN b.f2 / 100 % 100 < 85
            THEN (SELECT ddd FROM pec_param) || '9' || lpad((b.v_cns2 / 7 % 100000000)::text, 8, '0') END AS phone
FROM (SELECT a.id, d.hh, d.t, d.team_id AS team_hh, d.unit_id AS unit_hh, d.micro_area,
             d.prof_id AS acs_id, d.cbo_id AS acs_cbo, d.responsavel, d.lat, d.lon,
             a.sexo, a.birth, a.age,
             CASE WHEN a.f1 / 100000 % 100 < 6 THEN 1 ELSE d.team_id END AS team_vinc,   -- 6% unbound
             CASE WHEN a.f1 / 100000 % 100 < 6 THEN 1 ELSE d.unit_id END AS unit_vinc,
             a.r_htn < CASE WHEN a.age >= 40 THEN 400 WHEN a.age >= 18 THEN 60 ELSE 0 END AS htn,
             a.r_dm < CASE WHEN a.age >= 40 THEN 140 WHEN a.age >= 18 THEN 25 ELSE 3 END AS dm,
             a.sexo = 3 AND a.age BETWEEN 15 AND 44 AND a.r_preg < 60 AS preg,
             a.r_dead < CASE WHEN a.age >= 60 THEN 30 ELSE 2 END AS dead,
             -- body measures: height (cm) and BMI, by age and sex
             CASE WHEN a.age >= 18 THEN CASE WHEN a.sexo = 2 THEN 160 + a.r_body % 28 ELSE 150 + a.r_body % 26 END
                  ELSE least(170, 52 + a.age * 7 + a.r_body % 8) END AS height,
             CASE WHEN a.age >= 18 THEN 19 + (a.r_body / 100 % 190) / 10.0
                  ELSE 14 + (a.r_body / 100 % 50) / 10.0 END AS bmi,
             1 + (a.f3 % 100 < 35)::integer + (a.f3 % 100 < 10)::integer AS versions,
             (a.f3 / 100 % 100 < 85) AS knows_htn,                     -- self-report matches diagnosis
             (a.f3 / 10000 % 100 < 80) AS knows_dm,
             a.f3 / 1000000 % 100 AS f_cad,
             greatest(a.birth, date '2019-01-01' + (a.f4 % 1826)::integer) AS reg_date,
             (ARRAY[2, 2, 2, 2, 3, 3, 3, 3, 4, 5, 6, 2, 3, 4, 2, 3, 2, 3, 2, 1])[1 + a.f4 / 2000 % 20] AS raca_cor,
             CASE WHEN a.f4 / 40000 % 100 < 60 THEN 2 WHEN a.f4 / 40000 % 100 < 65 THEN 1
                  ELSE 3 + a.f4 / 4000000 % 20 END AS birth_mun,
             a.f1, a.f2, a.v_nome, a.v_mae, a.v_cns1, a.v_cns2, a.v_cpf
      FROM (SELECT n AS id, (n - 1) * 10 / 31 + 1 AS hh,
                   CASE WHEN pg_temp.u(h1, 1) % 1000 < 3 THEN 4
                        WHEN pg_temp.u(h1, 1) % 1000 < 515 THEN 3 ELSE 2 END AS sexo,
                   p.ref_date - (pg_temp.u(h1, 9) % 34675)::integer AS birth,     -- 0 .. 94 years
                   (pg_temp.u(h1, 9) % 34675) / 365 AS age,
                   pg_temp.u(h1, 17) % 1000 AS r_htn, pg_temp.u(h1, 25) % 1000 AS r_dm,
                   pg_temp.u(h2, 1) % 1000 AS r_preg, pg_temp.u(h2, 9) % 1000 AS r_dead,
                   pg_temp.u(h2, 17) AS r_body, pg_temp.u(h2, 25) AS f1,
                   pg_temp.u(h3, 1) AS f2, pg_temp.u(h3, 9) AS f3, pg_temp.u(h3, 17) AS f4,
                   pg_temp.u(h3, 25) AS v_nome, pg_temp.u(h4, 1) AS v_mae,
                   pg_temp.u(h4, 9) AS v_cns1, pg_temp.u(h4, 17) AS v_cns2, pg_temp.u(h4, 25) AS v_cpf
            FROM (SELECT n, md5(n || '/cid1' || p.salt) AS h1, md5(n || '/cid2' || p.salt) AS h2,
                         md5(n || '/cid3' || p.salt) AS h3, md5(n || '/cid4' || p.salt) AS h4
                  FROM pec_param p, generate_series(1, p.citizens) n OFFSET 0) g,
                 pec_param p) a
      JOIN pec_dom d ON d.hh = a.hh
      OFFSET 0) b;

-- Draw table for individual care: every citizen once, living chronic patients a second time.
DROP TABLE IF EXISTS pg_temp.pec_pick;
CREATE TEMP TABLE pec_pick AS
SELECT id AS k, id AS cid FROM pec_cid
UNION ALL
SELECT (SELECT citizens FROM pec_param) + row_number() OVER (ORDER BY id), id
FROM pec_cid WHERE (htn OR dm) AND NOT dead;

-- ---------------------------------------------------------------------------------------------
-- Citizen, registration and household facts
-- ---------------------------------------------------------------------------------------------
INSERT INTO tb_fat_cidadao_pec (co_seq_fat_cidadao_pec, co_cidadao, nu_cns, nu_cpf_cidadao, no_cidadao,
    no_social_cidadao, co_dim_tempo_nascimento, co_dim_sexo, co_dim_identidade_genero,
    nu_telefone_celular, st_faleceu, st_lookup_etl, st_deletar, co_dim_unidade_saude_vinc,
    co_dim_equipe_vinc)
SELECT c.id, 100000 + c.id * 3 + c.f1 % 3, c.cns, c.cpf, c.no_cidadao, c.no_social,
       pg_temp.dkey(c.birth), c.sexo, CASE WHEN c.f1 / 20 % 10 = 0 THEN 1 END, c.phone,
       c.dead::integer, CASE WHEN c.f1 / 10000 % 10 = 0 THEN 0 ELSE 1 END,
       CASE WHEN c.f1 / 100000 % 1000 < 3 THEN 1 ELSE 0 END, c.unit_vinc, c.team_vinc
FROM pec_cid c
ORDER BY c.id;

INSERT INTO tb_fat_cad_individual (co_seq_fat_cad_individual, nu_uuid_ficha, nu_uuid_ficha_origem,
    co_fat_cidadao_pec, co_fat_cidadao_pec_responsvl, nu_cns, nu_cpf_cidadao, no_nome, no_nome_mae,
    nu_celular, dt_nascimento, dt_obito, nu_micro_area, st_recusa_cadastro, st_ficha_inativa,
    st_gestante, st_hipertensao_arterial, st_diabete, st_plano_saude_privado, co_dim_raca_cor,
    co_dim_identidade_genero, co_dim_tipo_saida_cadastro, co_dim_municipio, co_dim_municipio_cidadao,
    co_dim_unidade_saude, co_dim_equipe, co_dim_profissional, co_dim_tempo)
SELECT row_number() OVER (ORDER BY c.id, v),
       pg_temp.uuid(md5(c.id || '/cad/' || v || p.salt)), pg_temp.uuid(md5(c.id || '/cad/1' || p.salt)),
       c.id, c.responsavel, c.cns,
       CASE WHEN v = 1 AND c.versions > 1 AND c.f_cad < 40 THEN NULL ELSE c.cpf END,  -- CPF added later
       c.no_cidadao, c.no_mae,
       CASE WHEN v = 1 AND c.versions > 1 AND c.f_cad % 3 = 0 THEN NULL ELSE c.phone END,
       c.birth,
       CASE WHEN c.dead AND v = c.versions THEN p.ref_date - (c.f_cad * 7)::integer END,
       c.micro_area,
       CASE WHEN c.f_cad = 99 THEN 1 ELSE 0 END,
       CASE WHEN v < c.versions THEN 1 ELSE 0 END,
       CASE WHEN c.preg AND v = c.versions THEN 1 ELSE 0 END,
       CASE WHEN (c.htn AND c.knows_htn) OR (NOT c.htn AND c.age >= 30 AND c.f_cad < 3) THEN 1 ELSE 0 END,
       CASE WHEN c.dm AND c.knows_dm THEN 1 ELSE 0 END,
       CASE WHEN c.f_cad BETWEEN 50 AND 57 THEN 1 ELSE 0 END,
       c.raca_cor,
       CASE WHEN c.f1 / 20 % 10 = 0 THEN 1 END,
       CASE WHEN v < c.versions THEN 1 WHEN c.dead THEN 135 WHEN c.f_cad = 98 THEN 136 ELSE 1 END,
       2, c.birth_mun, c.unit_hh, c.team_hh, c.acs_id,
       pg_temp.dkey(c.reg_date + ((v - 1) * ((p.ref_date - c.reg_date) / c.versions))::integer)
FROM pec_param p, pec_cid c, generate_series(1, 3) v
WHERE v <= c.versions
ORDER BY c.id, v;

INSERT INTO tb_fat_cad_domiciliar (co_seq_fat_cad_domiciliar, nu_uuid_ficha, nu_uuid_ficha_origem,
    nu_micro_area, nu_cep, no_logradouro, nu_num_logradouro, no_complemento, no_bairro,
    nu_telefone_residencia, nu_latitude, nu_longitude, qt_morador, co_dim_tipo_localizacao,
    co_dim_municipio, co_dim_unidade_saude, co_dim_equipe, co_dim_profissional, co_dim_tempo)
SELECT d.hh, pg_temp.uuid(d.h), pg_temp.uuid(d.h), d.micro_area,
       p.cep5 || lpad(((d.hh - 1) / 20 % 1000)::text, 3, '0'),
       pg_temp.rua((d.hh - 1) / 20),
       CASE WHEN pg_temp.u(d.h, 25) % 100 < 3 THEN 'S/N'
            ELSE ((d.hh - 1) % 20 * 14 + 10 + pg_temp.u(d.h, 25) % 10)::text END,
       CASE pg_temp.u(d.h, 25) / 100 % 20 WHEN 0 THEN 'Casa 2' WHEN 1 THEN 'Fundos'
            WHEN 2 THEN 'Apto ' || (101 + pg_temp.u(d.h, 25) / 2000 % 4) END,
       pg_temp.bairro(d.unit_id - 2),
       CASE WHEN pg_temp.u(d.h, 25) / 10000 % 100 < 15
            THEN p.ddd || '3' || lpad((pg_temp.u(d.h, 1) % 10000000)::text, 7, '0') END,
       CASE WHEN pg_temp.u(d.h, 25) / 1000000 % 100 < 60 THEN d.lat END,
       CASE WHEN pg_temp.u(d.h, 25) / 1000000 % 100 < 60 THEN d.lon END,
       m.qt,
       CASE WHEN pg_temp.u(d.h, 1) / 10000000 % 100 < 12 THEN 3 ELSE 2 END,   -- 2 urbana, 3 rural
       2, d.unit_id, d.team_id, d.prof_id,
       pg_temp.dkey(date '2019-01-01' + (pg_temp.u(d.h, 1) % 1826)::integer)
FROM pec_param p, pec_dom d
JOIN (SELECT hh, count(*)::integer AS qt FROM pec_cid GROUP BY hh) m ON m.hh = d.hh
ORDER BY d.hh;

-- ---------------------------------------------------------------------------------------------
-- Individual care: CARE rows. Fact date in the window (never before birth), weekday 07-17h;
-- doctor (60%) or nurse of the citizen's team (8% another team); 1% without an identified citizen.
-- ---------------------------------------------------------------------------------------------
INSERT INTO tb_fat_atendimento_individual (co_seq_fat_atd_ind, co_fat_cidadao_pec, nu_uuid_ficha,
    nu_cns, nu_cpf_cidadao, dt_nascimento, dt_inicial_atendimento, dt_final_atendimento, nu_peso,
    nu_altura, nu_pressao_sistolica, nu_pressao_diastolica, nu_idade_gestacional_semanas,
    ds_filtro_cids, ds_filtro_ciaps, ds_filtro_proced_avaliados, ds_filtro_proced_solicitados,
    co_dim_municipio, co_dim_tempo, co_dim_tempo_dum, co_dim_tipo_atendimento,
    co_dim_local_atendimento, co_dim_sexo, co_dim_profissional_1, co_dim_cbo_1,
    co_dim_unidade_saude_1, co_dim_equipe_1)
SELECT x.n,
       CASE WHEN NOT x.anon THEN x.cid END, pg_temp.uuid(x.h),
       CASE WHEN NOT x.anon THEN x.cns END, CASE WHEN NOT x.anon THEN x.cpf END,
       x.birth::timestamp,
       x.dt + (420 + x.minute) * interval '1 minute',
       x.dt + (420 + x.minute + 5 + x.b2 % 40) * interval '1 minute',
       CASE WHEN x.body THEN round((x.bmi * x.height * x.height / 10000.0
                                    * (1 + (x.b1 / 100 % 41 - 20) / 1000.0))::numeric, 1)::double precision END,
       CASE WHEN x.body THEN x.height::double precision END,
       CASE WHEN x.bp THEN x.sys END::numeric,
       CASE WHEN x.bp THEN least(x.dia, x.sys - 30) END::numeric,
       CASE WHEN x.gest THEN (4 + x.b1 % 37)::integer END,
       NULLIF('|' || concat_ws('|',
           CASE WHEN x.c_htn AND x.cid_on
                THEN (ARRAY['I10','I10','I10','I10','I10','I10','I110','I119','I150','I159'])[1 + x.b3 % 10] END,
           CASE WHEN x.c_dm AND x.cid_on
                THEN (ARRAY['E119','E119','E119','E11','E109','E10','E14','E149','E118','E112'])[1 + x.b3 / 10 % 10] END,
           CASE WHEN x.c_preg AND x.cid_on THEN 'Z348' END,
           CASE WHEN x.c_other AND x.cid_on
                THEN (ARRAY['J069','Z000','M545','R51','A09','N390','F419','J00','K297','L309','B349','R104',
                            'Z001','H103','J029','E660','E785','M796','R05','G439'])[1 + x.b3 / 100 % 20] END)
           || '|', '||'),
       NULLIF('|' || concat_ws('|',
           CASE WHEN x.c_htn AND x.ciap_on THEN CASE WHEN x.b3 / 2000 % 100 < 85 THEN 'K86' ELSE 'K87' END END,
           CASE WHEN x.c_dm AND x.ciap_on THEN CASE WHEN x.b3 / 200000 % 100 < 85 THEN 'T90' ELSE 'T89' END END,
           CASE WHEN x.c_preg AND x.ciap_on THEN 'W78' END,
           CASE WHEN x.c_other AND x.ciap_on
                THEN (ARRAY['A03','R05','L03','D01','A98','P76','R74','S88','U71','T82','A97','T93','L84',
                            'N01','R76','D12','F70','S03','P01','A04'])[1 + x.b3 / 100 % 20] END)
           || '|', '||'),
       '|' || CASE WHEN x.doctor THEN '0301010064' ELSE '0301010030' END
           || CASE WHEN x.bp THEN '|0301100039' ELSE '' END || '|',
       CASE WHEN x.c_htn AND x.b4 / 100 % 100 < 25 THEN '|0202010295|0202010473|0202050017|'
            WHEN x.b4 / 100 % 100 < 8 THEN '|0202020380|' END,
       2, pg_temp.dkey(x.dt),
       CASE WHEN x.gest THEN pg_temp.dkey(x.dt - ((4 + x.b1 % 37) * 7)::integer) ELSE 30001231 END,
       CASE WHEN x.b4 / 10000 % 100 < 40 THEN 2 WHEN x.b4 / 10000 % 100 < 65 THEN 3
            WHEN x.b4 / 10000 % 100 < 95 THEN 4 ELSE 6 END,
       CASE WHEN x.b4 / 1000000 % 100 < 92 THEN 2 WHEN x.b4 / 1000000 % 100 < 98 THEN 5 ELSE 3 END,
       x.sexo,
       (x.team - 1) * 6 + CASE WHEN x.doctor THEN 0 ELSE 1 END + 2,
       CASE WHEN x.doctor THEN 2 ELSE 3 END,
       (x.team - 1) / 2 + 2, x.team + 1
FROM (SELECT g.n, g.h, g.a4, g.b1, g.b2, g.b3, g.b4,
             c.id AS cid, c.cns, c.cpf, c.birth, c.sexo, c.htn, c.height, c.bmi,
             g.b1 % 100 = 0 AS anon,
             CASE WHEN c.birth > p.start_date
                  THEN c.birth + (g.day * (p.ref_date - c.birth) / p.window_days)::integer
                  ELSE p.start_date + g.day::integer END AS dt,
             g.a2 / 74000 % 600 AS minute,
             g.b2 / 100 % 100 < 60 AS doctor,
             CASE WHEN c.team_vinc = 1 OR g.b2 / 10000 % 100 < 8 THEN 1 + g.b3 / 10000000 % p.teams
                  ELSE c.t END AS team,
             c.htn AND g.a3 % 100 < 70 AS c_htn,
             c.dm AND g.a3 / 100 % 100 < 65 AS c_dm,
             c.preg AND g.a3 / 10000 % 100 < 60 AS c_preg,
             g.a3 / 1000000 % 100 < 55 AS c_other,
             g.b2 / 100 % 100 < 60 OR g.b4 % 100 < 15 AS cid_on,       -- doctors code CID ...
             g.b2 / 100 % 100 >= 60 OR g.b4 % 100 < 35 AS ciap_on,     -- ... nurses CIAP
             c.age >= 18 AND g.a4 % 100 < CASE WHEN c.htn THEN 85 ELSE 40 END AS bp,
             -- blood pressure (mmHg, even numbers as read on a sphygmomanometer)
             CASE WHEN c.htn THEN 116 + 2 * (g.a4 / 100 % 34) ELSE 96 + 2 * (g.a4 / 100 % 24) END AS sys,
             CASE WHEN c.htn THEN 70 + 2 * (g.a4 / 10000 % 18) ELSE 56 + 2 * (g.a4 / 10000 % 15) END AS dia,
             g.a4 / 1000000 % 100 < 50 AS body,
             c.preg AND g.a3 / 10000 % 100 < 90 AS gest
      FROM (SELECT n, h, pg_temp.u(h, 1) % pk.npick + 1 AS k,
                   -- fact day: week 0..147 of the window, Monday-Friday (2% Saturday)
                   (pg_temp.u(h, 9) % 148) * 7
                   + CASE WHEN pg_temp.u(h, 9) / 148 % 100 < 2 THEN 5 ELSE pg_temp.u(h, 9) / 14800 % 5 END AS day,
                   pg_temp.u(h, 9) AS a2, pg_temp.u(h, 17) AS a3, pg_temp.u(h, 25) AS a4,
                   pg_temp.u(h2, 1) AS b1, pg_temp.u(h2, 9) AS b2, pg_temp.u(h2, 17) AS b3, pg_temp.u(h2, 25) AS b4
            FROM (SELECT n, md5(n || '/atd1' || p.salt) AS h, md5(n || '/atd2' || p.salt) AS h2
                  FROM pec_param p, generate_series(1, p.care) n OFFSET 0) s,
                 (SELECT count(*) AS npick FROM pec_pick) pk
            OFFSET 0) g
      JOIN pec_pick pp ON pp.k = g.k
      JOIN pec_cid c ON c.id = pp.cid,
      pec_param p
      OFFSET 0) x
ORDER BY x.n;

-- ---------------------------------------------------------------------------------------------
-- Home visits by the household's ACS: VISITS rows. 4% with no identified citizen.
-- ---------------------------------------------------------------------------------------------
INSERT INTO tb_fat_visita_domiciliar (co_seq_fat_visita_domiciliar, co_fat_cidadao_pec, nu_uuid_ficha,
    nu_cns, nu_cpf_cidadao, dt_nascimento, nu_micro_area, nu_peso, nu_altura, nu_latitude,
    nu_longitude, st_acomp_gestante, st_acomp_pessoa_hipertensao, st_acomp_pessoa_diabetes,
    co_dim_desfecho_visita, co_dim_municipio, co_dim_tempo, co_dim_profissional, co_dim_cbo,
    co_dim_unidade_saude, co_dim_equipe)
SELECT x.n,
       CASE WHEN x.known THEN x.id END, pg_temp.uuid(x.h),
       CASE WHEN x.known THEN x.cns END, CASE WHEN x.known THEN x.cpf END,
       CASE WHEN x.known THEN x.birth END,
       x.micro_area,
       CASE WHEN x.body THEN round((x.bmi * x.height * x.height / 10000.0
                                    * (1 + (x.a4 / 100 % 41 - 20) / 1000.0))::numeric, 1)::double precision END,
       CASE WHEN x.body THEN x.height::double precision END,
       CASE WHEN x.geo THEN round((x.lat::numeric + (x.a4 / 10000 % 201 - 100) / 1000000.0), 6)::double precision END,
       CASE WHEN x.geo THEN round((x.lon::numeric + (x.a4 / 2010000 % 201 - 100) / 1000000.0), 6)::double precision END,
       (x.known AND x.preg)::integer, (x.known AND x.htn)::integer, (x.known AND x.dm)::integer,
       x.desfecho, 2, pg_temp.dkey(x.dt), x.acs_id, x.acs_cbo, x.unit_hh, x.team_hh
FROM (SELECT g.n, g.h, g.a4, c.id, c.cns, c.cpf, c.birth, c.micro_area, c.preg, c.htn, c.dm,
             c.height, c.bmi, c.lat, c.lon, c.acs_id, c.acs_cbo, c.unit_hh, c.team_hh,
             g.a3 % 100 >= 4 AS known,
             CASE WHEN g.a3 / 100 % 100 < 85 THEN 2 WHEN g.a3 / 100 % 100 < 88 THEN 3 ELSE 4 END AS desfecho,
             g.a3 / 100 % 100 < 85 AND g.a3 / 10000 % 100 < 8 AS body,
             g.a3 / 1000000 % 100 < 55 AS geo,
             CASE WHEN c.birth > p.start_date
                  THEN c.birth + (g.day * (p.ref_date - c.birth) / p.window_days)::integer
                  ELSE p.start_date + g.day::integer END AS dt
      FROM (SELECT n, h, pg_temp.u(h, 1) % p.citizens + 1 AS cid,
                   (pg_temp.u(h, 9) % 148) * 7 + pg_temp.u(h, 9) / 148 % 5 AS day,   -- Monday-Friday
                   pg_temp.u(h, 17) AS a3, pg_temp.u(h, 25) AS a4
            FROM (SELECT n, md5(n || '/vis' || p.salt) AS h
                  FROM pec_param p, generate_series(1, p.visits) n OFFSET 0) s,
                 pec_param p
            OFFSET 0) g
      JOIN pec_cid c ON c.id = g.cid,
      pec_param p
      OFFSET 0) x
ORDER BY x.n;

-- ---------------------------------------------------------------------------------------------
-- Clean up and refresh planner statistics
-- ---------------------------------------------------------------------------------------------
DO $$ BEGIN PERFORM set_config('jit', jit_before, false) FROM pg_temp.pec_param WHERE jit_before IS NOT NULL; END $$;
DROP TABLE pg_temp.pec_pick;
DROP TABLE pg_temp.pec_cid;
DROP TABLE pg_temp.pec_dom;
DROP TABLE pg_temp.pec_param;
DROP FUNCTION pg_temp.rua(bigint);
DROP FUNCTION pg_temp.bairro(bigint);
DROP FUNCTION pg_temp.nome(bigint, bigint);
DROP FUNCTION pg_temp.sobrenome(bigint);
DROP FUNCTION pg_temp.nome_m(bigint);
DROP FUNCTION pg_temp.nome_f(bigint);
DROP FUNCTION pg_temp.fake_cpf(text);
DROP FUNCTION pg_temp.fake_cns(text);
DROP FUNCTION pg_temp.filtro(text);
DROP FUNCTION pg_temp.uuid(text);
DROP FUNCTION pg_temp.dkey(date);
DROP FUNCTION pg_temp.u(text, integer);

ANALYZE tb_migracao;
ANALYZE tb_dim_tempo;
ANALYZE tb_dim_municipio;
ANALYZE tb_dim_unidade_saude;
ANALYZE tb_dim_equipe;
ANALYZE tb_dim_profissional;
ANALYZE tb_dim_cbo;
ANALYZE tb_dim_sexo;
ANALYZE tb_fat_cidadao_pec;
ANALYZE tb_fat_cad_individual;
ANALYZE tb_fat_atendimento_individual;
ANALYZE tb_fat_visita_domiciliar;
ANALYZE tb_fat_cad_domiciliar;
