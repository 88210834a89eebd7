-- The fidelity table: every tricky type, and extremes and special values
-- (rows 1 to 8). Runs on PostgreSQL 10 and later; numeric's infinities
-- (PostgreSQL 14 and later) are set by fidelity_numeric_infinity.sql, and
-- the generated rows come from fidelity_rows.sql. Assembled by
-- `transmissor_tests::fidelity::setup_sql`.
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
 (2, 32767, 2147483647, 9223372036854775807, NULL, '99999999999999999999.99999999999999999999',
  'Infinity', 'Infinity', E'new\nline', 'x ', 'x', '\xffff', false, '-infinity', '-infinity', '-infinity',
  '4713-01-01 00:00:00 BC', '00:00:00', '23:59:59.999999-12', '1 year 2 mons 3 days 04:05:06.789',
  'ffffffff-ffff-ffff-ffff-ffffffffffff', '  { "b" : [1, 2,  3] }  ', '  { "b" : [1, 2,  3] }  ',
  '{}', '{}', '{{NULL,NULL},{NULL,NULL}}', 'aspas"duplas', '{}', 2147483647, '', '::1', B'', 'empty'),
 (3, 0, 0, 0, NULL, '0.00000000000000000001', '-Infinity', '-Infinity', E'cr\rhere', '', '', '\x',
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
