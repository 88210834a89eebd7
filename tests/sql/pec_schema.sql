-- Synthetic PEC-like source database: DDL.
--
-- The e-SUS APS PEC (primary-care record system of Brazil's SUS) keeps a reporting data
-- warehouse in its own PostgreSQL database. These 13 tables mirror the shape of that warehouse
-- (names follow the public dictionary; types are inferred, NOT official DDL). They exist so the
-- demo, tests and benchmarks have a realistic source to extract from; fill them with
-- pec_data.sql. Never load real citizen data into them.
--
-- Loads on PostgreSQL 9.6 through 17 (plain SQL only). Primary keys are declared here: the
-- generator inserts in key order, so maintaining them during the load is cheap.
--
-- Facts mirrored from real installations:
--   * Dimension id 1 is a placeholder row ('-', 'SEM EQUIPE', ...).
--   * Date keys (co_dim_tempo*) are YYYYMMDD bigints; 30001231 means "no date".
--   * ds_filtro_cids / ds_filtro_ciaps hold '|'-delimited code lists such as '|I10|E119|'.
--   * The PEC version is the newest 'db/v<version>/' entry in tb_migracao.filename.
--   * Columns marked PII are personal data under Brazil's LGPD; health data is "sensitive".

CREATE TABLE tb_migracao (                      -- Liquibase log; PEC version = newest 'db/v<ver>/' in filename
    id            varchar(255) NOT NULL,
    author        varchar(255) NOT NULL,
    filename      varchar(255) NOT NULL,         -- e.g. 'db/v5.5.28/changelog.xml'
    dateexecuted  timestamp    NOT NULL,
    orderexecuted integer      NOT NULL
);

CREATE TABLE tb_dim_tempo (
    co_seq_dim_tempo bigint PRIMARY KEY,         -- 20260315 ; 30001231 = sentinel
    dt_registro      date,
    nu_dia           integer,
    nu_mes           integer,
    nu_ano           integer,                    -- 3000 for the sentinel
    ds_dia_semana    varchar(20)
);

CREATE TABLE tb_dim_municipio (
    co_seq_dim_municipio bigint PRIMARY KEY,
    no_municipio         varchar(200),
    co_ibge              varchar(7),             -- 7-digit IBGE; the 6-digit form drops the check digit
    co_dim_uf            bigint,
    st_registro_valido   integer,
    ds_filtro            varchar(500)
);

CREATE TABLE tb_dim_unidade_saude (
    co_seq_dim_unidade_saude bigint PRIMARY KEY,
    nu_cnes                  varchar(7),         -- '-' on the placeholder row
    no_unidade_saude         varchar(500),
    no_bairro                varchar(500),
    st_registro_valido       integer,
    ds_filtro                varchar(500)
);

CREATE TABLE tb_dim_equipe (
    co_seq_dim_equipe  bigint PRIMARY KEY,
    nu_ine             varchar(10),              -- '-' = SEM EQUIPE
    no_equipe          varchar(500),
    st_registro_valido integer,
    ds_filtro          varchar(500)
);

CREATE TABLE tb_dim_profissional (
    co_seq_dim_profissional bigint PRIMARY KEY,
    nu_cns                  varchar(15),         -- PII (professional)
    no_profissional         varchar(500),        -- PII (professional)
    st_registro_valido      integer,
    ds_filtro               varchar(500)
);

CREATE TABLE tb_dim_cbo (
    co_seq_dim_cbo     bigint PRIMARY KEY,
    nu_cbo             varchar(10),              -- '225142' médico ESF, '223565' enfermeiro ESF, '515105' ACS ...
    no_cbo             varchar(500),
    st_registro_valido integer,
    ds_filtro          varchar(500)
);

CREATE TABLE tb_dim_sexo (
    co_seq_dim_sexo  bigint PRIMARY KEY,
    nu_identificador varchar(10),
    ds_sexo          varchar(100)
);

CREATE TABLE tb_fat_cidadao_pec (               -- one row per citizen record known to the DW
    co_seq_fat_cidadao_pec    bigint PRIMARY KEY,
    co_cidadao                bigint,            -- FK to OLTP tb_cidadao.co_seq_cidadao
    nu_cns                    varchar(15),       -- PII
    nu_cpf_cidadao            varchar(11),       -- PII
    no_cidadao                varchar(500),      -- PII
    no_social_cidadao         varchar(500),      -- PII
    co_dim_tempo_nascimento   bigint,            -- PII (birth date, YYYYMMDD key into tb_dim_tempo)
    co_dim_sexo               bigint,
    co_dim_identidade_genero  bigint,            -- sensitive
    nu_telefone_celular       varchar(30),       -- PII
    st_faleceu                integer,
    st_lookup_etl             integer,
    st_deletar                integer,
    co_dim_unidade_saude_vinc bigint,
    co_dim_equipe_vinc        bigint
);

CREATE TABLE tb_fat_cad_individual (            -- versioned: a new row per create/update of the registration
    co_seq_fat_cad_individual    bigint PRIMARY KEY,
    nu_uuid_ficha                varchar(100),
    nu_uuid_ficha_origem         varchar(100),
    co_fat_cidadao_pec           bigint,
    co_fat_cidadao_pec_responsvl bigint,
    nu_cns                       varchar(15),    -- PII
    nu_cpf_cidadao               varchar(64),    -- PII (encrypted in recent PEC versions)
    no_nome                      varchar(500),   -- PII (encrypted in recent PEC versions)
    no_nome_mae                  varchar(500),   -- PII
    nu_celular                   varchar(64),    -- PII
    dt_nascimento                date,           -- PII
    dt_obito                     date,           -- sensitive
    nu_micro_area                varchar(4),
    st_recusa_cadastro           integer,
    st_ficha_inativa             integer,
    st_gestante                  integer,        -- health (sensitive)
    st_hipertensao_arterial      integer,        -- health (sensitive)
    st_diabete                   integer,        -- health (sensitive)
    st_plano_saude_privado       integer,
    co_dim_raca_cor              bigint,         -- sensitive
    co_dim_identidade_genero     bigint,         -- sensitive
    co_dim_tipo_saida_cadastro   bigint,         -- óbito, mudança de território ...
    co_dim_municipio             bigint,         -- installation municipality
    co_dim_municipio_cidadao     bigint,         -- birth municipality (trap: not the installation's)
    co_dim_unidade_saude         bigint,
    co_dim_equipe                bigint,
    co_dim_profissional          bigint,
    co_dim_tempo                 bigint
);

CREATE TABLE tb_fat_atendimento_individual (
    co_seq_fat_atd_ind           bigint PRIMARY KEY,
    co_fat_cidadao_pec           bigint,
    nu_uuid_ficha                varchar(100),
    nu_cns                       varchar(15),    -- PII
    nu_cpf_cidadao               varchar(64),    -- PII
    dt_nascimento                timestamp,      -- PII
    dt_inicial_atendimento       timestamp,
    dt_final_atendimento         timestamp,
    nu_peso                      double precision,
    nu_altura                    double precision,
    nu_pressao_sistolica         numeric,        -- 5.5.28 name; docs say nu_medicao_pressao_sistolica
    nu_pressao_diastolica        numeric,
    nu_idade_gestacional_semanas integer,
    ds_filtro_cids               text,           -- health: '|I10|E119|'
    ds_filtro_ciaps              text,           -- health: '|K86|T90|'
    ds_filtro_proced_avaliados   text,
    ds_filtro_proced_solicitados text,
    co_dim_municipio             bigint,
    co_dim_tempo                 bigint,
    co_dim_tempo_dum             bigint,
    co_dim_tipo_atendimento      bigint,
    co_dim_local_atendimento     bigint,
    co_dim_sexo                  bigint,
    co_dim_profissional_1        bigint,
    co_dim_cbo_1                 bigint,
    co_dim_unidade_saude_1       bigint,
    co_dim_equipe_1              bigint
);

CREATE TABLE tb_fat_visita_domiciliar (
    co_seq_fat_visita_domiciliar bigint PRIMARY KEY,
    co_fat_cidadao_pec           bigint,
    nu_uuid_ficha                varchar(100),
    nu_cns                       varchar(15),    -- PII
    nu_cpf_cidadao               varchar(64),    -- PII
    dt_nascimento                date,           -- PII
    nu_micro_area                varchar(4),
    nu_peso                      double precision,
    nu_altura                    double precision,
    nu_latitude                  double precision, -- PII (home location)
    nu_longitude                 double precision, -- PII
    st_acomp_gestante            integer,
    st_acomp_pessoa_hipertensao  integer,
    st_acomp_pessoa_diabetes     integer,
    co_dim_desfecho_visita       bigint,
    co_dim_municipio             bigint,
    co_dim_tempo                 bigint,
    co_dim_profissional          bigint,
    co_dim_cbo                   bigint,
    co_dim_unidade_saude         bigint,
    co_dim_equipe                bigint
);

CREATE TABLE tb_fat_cad_domiciliar (            -- the address lives here (and in OLTP tb_cidadao)
    co_seq_fat_cad_domiciliar bigint PRIMARY KEY,
    nu_uuid_ficha             varchar(100),
    nu_uuid_ficha_origem      varchar(100),
    nu_micro_area             varchar(4),
    nu_cep                    varchar(8),        -- PII
    no_logradouro             varchar(500),      -- PII
    nu_num_logradouro         varchar(20),       -- PII
    no_complemento            varchar(500),      -- PII
    no_bairro                 varchar(500),      -- PII (quasi-identifier)
    nu_telefone_residencia    varchar(30),       -- PII
    nu_latitude               double precision,  -- PII
    nu_longitude              double precision,  -- PII
    qt_morador                integer,
    co_dim_tipo_localizacao   bigint,
    co_dim_municipio          bigint,
    co_dim_unidade_saude      bigint,
    co_dim_equipe             bigint,
    co_dim_profissional       bigint,
    co_dim_tempo              bigint
);
