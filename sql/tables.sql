--
-- Table registration: sync_add_table, sync_remove_table, sync_table
--
CREATE EXTENSION sync;

CREATE TABLE users (
	id bigserial PRIMARY KEY,
	login text NOT NULL,
	email text,
	crypted_password text,
	access_level integer,
	checked integer DEFAULT 0,
	created_at timestamptz DEFAULT now()
);

-- a full registration, and its row in sync_table
SELECT tbl, key_column, level_column, filter, anonymize
  FROM sync_add_table('users', 'access_level', 'checked <> -1',
					  '{"email": "''user'' || id || ''@example.org''", "crypted_password": "NULL"}');
-- registering again replaces the options
SELECT tbl, key_column, level_column, filter, anonymize FROM sync_add_table('users');
SELECT tbl, key_column, level_column, filter, anonymize
  FROM sync_add_table('users', filter => 'checked IS DISTINCT FROM -1 AND users.login <> ''''');
SELECT tbl, key_column, level_column, filter, anonymize
  FROM sync_add_table('users', anonymize => '{"login": "upper(login)", "created_at": "date_trunc(''day'', created_at)"}');
SELECT tbl, key_column, level_column, filter, anonymize FROM sync_table;

-- integer keys of both sizes, in any schema, quoted names
CREATE SCHEMA "Other Schema";
CREATE TABLE "Other Schema"."Mixed Case" ("Key" integer PRIMARY KEY, "Level" smallint);
SELECT tbl, key_column, level_column FROM sync_add_table('"Other Schema"."Mixed Case"', 'Level');

-- keys: no primary key, text, composite, numeric, deferrable
CREATE TABLE no_pk (id integer, v text);
SELECT * FROM sync_add_table('no_pk');
CREATE TABLE text_pk (id text PRIMARY KEY);
SELECT * FROM sync_add_table('text_pk');
CREATE TABLE composite_pk (a integer, b integer, PRIMARY KEY (a, b));
SELECT * FROM sync_add_table('composite_pk');
CREATE TABLE numeric_pk (id numeric PRIMARY KEY);
SELECT * FROM sync_add_table('numeric_pk');
CREATE TABLE deferred_pk (id bigint PRIMARY KEY DEFERRABLE);
SELECT * FROM sync_add_table('deferred_pk');
-- only tables
CREATE VIEW users_view AS SELECT * FROM users;
SELECT * FROM sync_add_table('users_view');
CREATE TEMP TABLE temp_t (id integer PRIMARY KEY);
SELECT * FROM sync_add_table('temp_t');
-- a partitioned table, not its partitions
CREATE TABLE parted (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, yr int) PARTITION BY HASH (id);
CREATE TABLE parted_0 PARTITION OF parted FOR VALUES WITH (modulus 2, remainder 0);
CREATE TABLE parted_1 PARTITION OF parted FOR VALUES WITH (modulus 2, remainder 1);
SELECT tbl, key_column FROM sync_add_table('parted');
SELECT * FROM sync_add_table('parted_0');
SELECT * FROM sync_add_table(NULL);
SELECT * FROM sync_add_table('no_such_table');

-- level column: missing, system, not an integer
SELECT * FROM sync_add_table('users', 'no_such_column');
SELECT * FROM sync_add_table('users', 'xmin');
SELECT * FROM sync_add_table('users', 'login');
ALTER TABLE users ADD COLUMN dropped integer;
ALTER TABLE users DROP COLUMN dropped;
SELECT * FROM sync_add_table('users', 'dropped');

-- filter: must parse, be one boolean expression over the table's own columns
SELECT * FROM sync_add_table('users', filter => 'checked <> ');
SELECT * FROM sync_add_table('users', filter => 'checked + 1');
SELECT * FROM sync_add_table('users', filter => 'no_such_column > 0');
SELECT * FROM sync_add_table('users', filter => 'other.id > 0');
SELECT * FROM sync_add_table('users', filter => 'true; DROP TABLE users');
SELECT * FROM sync_add_table('users', filter => 'true FROM pg_class');
SELECT * FROM sync_add_table('users', filter => 'true WHERE false');
SELECT * FROM sync_add_table('users', filter => 'true UNION SELECT false');
SELECT * FROM sync_add_table('users', filter => 'true, false');
SELECT * FROM sync_add_table('users', filter => 'true AS ok');
SELECT * FROM sync_add_table('users', filter => 'id IN (SELECT id FROM users)');
SELECT * FROM sync_add_table('users', filter => 'EXISTS (SELECT 1)');
SELECT * FROM sync_add_table('users', filter => 'count(*) > 0');
SELECT * FROM sync_add_table('users', filter => 'row_number() OVER () > 0');
SELECT * FROM sync_add_table('users', filter => 'generate_series(1, 2) > 0');
SELECT * FROM sync_add_table('users', filter => 'random() > 0.5');
SELECT * FROM sync_add_table('users', filter => 'nextval(''public.users_id_seq'') > 0');
-- only built-in functions, and none that reads other tables, settings or activity
CREATE FUNCTION sync_regress_lookup(bigint) RETURNS text STABLE LANGUAGE sql
	AS 'SELECT login FROM users WHERE id = $1';
SELECT * FROM sync_add_table('users', anonymize => '{"email": "public.sync_regress_lookup(id)"}');
SELECT * FROM sync_add_table('users', anonymize => '{"email": "sync_regress_lookup(id)"}');
SELECT * FROM sync_add_table('users', anonymize => '{"email": "table_to_xml(''pg_authid'', true, false, '''')::text"}');
SELECT * FROM sync_add_table('users', anonymize => '{"email": "current_setting(''data_directory'')"}');
SELECT * FROM sync_add_table('users', filter => 'pg_stat_get_backend_pid(1) > 0');
-- what the expressions may use: built-in operators, functions, casts
SELECT tbl, filter FROM sync_add_table('users', filter => 'lower(login) LIKE ''a%'' AND coalesce(checked, 0) BETWEEN -1 AND 4');
SELECT * FROM sync_add_table('users', filter => 'ctid IS NOT NULL');
SELECT * FROM sync_add_table('users', filter => 'users IS NOT NULL');
SELECT * FROM sync_add_table('users', filter => '$1');
SELECT * FROM sync_add_table('users', filter => '');
SELECT * FROM sync_add_table('users', filter => '/* unterminated');

-- anonymize: a JSON object of column => expression string
SELECT * FROM sync_add_table('users', anonymize => '["email"]');
SELECT * FROM sync_add_table('users', anonymize => '"email"');
SELECT * FROM sync_add_table('users', anonymize => '{"email": null}');
SELECT * FROM sync_add_table('users', anonymize => '{"email": 5}');
SELECT * FROM sync_add_table('users', anonymize => '{"no_such_column": "NULL"}');
SELECT * FROM sync_add_table('users', anonymize => '{"id": "0"}');
SELECT * FROM sync_add_table('users', anonymize => '{"email": "''a'' || "}');
SELECT * FROM sync_add_table('users', anonymize => '{"email": "(SELECT min(login) FROM users)"}');
SELECT * FROM sync_add_table('users', anonymize => '{"email": "md5(random()::text)"}');
SELECT * FROM sync_add_table('users', anonymize => '{"access_level": "''secret''::text"}');
SELECT * FROM sync_add_table('users', anonymize => '{"email": "NULL; DELETE FROM users"}');
SELECT * FROM sync_add_table('users', anonymize => '{"email": "string_agg(login, '','')"}');
SELECT * FROM sync_add_table('users', anonymize => '{"email": "nosuch || ''x''"}');
-- a column that takes part in a foreign key cannot be anonymized
CREATE TABLE account (id bigint PRIMARY KEY, email text UNIQUE);
CREATE TABLE message (id bigint PRIMARY KEY, author_email text REFERENCES account (email));
SELECT * FROM sync_add_table('account', anonymize => '{"email": "''x'' || id"}');
SELECT * FROM sync_add_table('message', anonymize => '{"author_email": "NULL"}');
DROP TABLE message, account;
-- an empty object means no rules
SELECT tbl, anonymize FROM sync_add_table('users', anonymize => '{}');

-- failures changed nothing
SELECT tbl, key_column, level_column, filter, anonymize FROM sync_table ORDER BY tbl::text;

-- removal
SELECT tbl, key_column FROM sync_remove_table('"Other Schema"."Mixed Case"');
SELECT * FROM sync_remove_table('"Other Schema"."Mixed Case"');
SELECT * FROM sync_remove_table('no_pk');
-- a dropped table is no longer registered
SELECT tbl FROM sync_add_table('"Other Schema"."Mixed Case"');
DROP SCHEMA "Other Schema" CASCADE;
SELECT tbl FROM sync_table ORDER BY tbl::text;
-- a table without a (usable) primary key is registered with a key the DBA
-- names: a NOT NULL integer column, such as a link table's id
CREATE TABLE species (id bigserial PRIMARY KEY, name text);
CREATE TABLE pfts (id bigserial PRIMARY KEY, name text);
CREATE SEQUENCE pfts_species_id_seq;
CREATE TABLE pfts_species (
	id bigint NOT NULL DEFAULT nextval('pfts_species_id_seq'::regclass),
	pft_id bigint NOT NULL REFERENCES pfts,
	specie_id bigint NOT NULL REFERENCES species,
	note text,
	nullable_id bigint,
	UNIQUE (pft_id, specie_id));
SELECT * FROM sync_add_table('pfts_species');
SELECT tbl, key_column, key_declared FROM sync_add_table('pfts_species', key_column => 'id');
SELECT * FROM sync_add_table('pfts_species', key_column => 'nosuch');
SELECT * FROM sync_add_table('pfts_species', key_column => 'note');
SELECT * FROM sync_add_table('pfts_species', key_column => 'nullable_id');
-- a table with a primary key has it as its key
SELECT tbl, key_column, key_declared FROM sync_add_table('species', key_column => 'id');
SELECT * FROM sync_add_table('species', key_column => 'name');
-- a composite primary key is not the key; a named column is
CREATE TABLE composite_keyed (a integer, b integer, id integer NOT NULL, PRIMARY KEY (a, b));
SELECT tbl, key_column, key_declared FROM sync_add_table('composite_keyed', key_column => 'id');
SELECT tbl FROM sync_remove_table('composite_keyed');
DROP TABLE composite_keyed;

-- a level column of a domain over an integer type, through two domains
CREATE DOMAIN level_of_access AS integer NOT NULL CHECK (VALUE BETWEEN 1 AND 4);
CREATE DOMAIN site_level AS level_of_access;
CREATE DOMAIN textual_level AS text;
CREATE TABLE yields (id bigserial PRIMARY KEY, mean numeric, access_level site_level,
	other_level textual_level);
SELECT tbl, level_column FROM sync_add_table('yields', 'access_level');
SELECT * FROM sync_add_table('yields', 'other_level');

-- dependencies beyond foreign keys: registered tables other than itself,
-- in no cycle (a foreign key closes one as well as a declared dependency)
CREATE TABLE inputs (id bigserial PRIMARY KEY, name text);
CREATE TABLE dbfiles (id bigserial PRIMARY KEY, container_id bigint);
CREATE TABLE formats (id bigserial PRIMARY KEY, dbfile_id bigint REFERENCES dbfiles);
SELECT tbl FROM sync_add_table('inputs');
SELECT * FROM sync_add_table('dbfiles', depends_on => '{formats}');
SELECT tbl, depends_on FROM sync_add_table('dbfiles', depends_on => '{inputs, inputs}');
SELECT * FROM sync_add_table('dbfiles', depends_on => '{dbfiles}');
SELECT * FROM sync_add_table('dbfiles', depends_on => '{inputs, NULL}');
SELECT tbl, depends_on FROM sync_add_table('formats');
SELECT * FROM sync_add_table('inputs', depends_on => '{dbfiles}');
SELECT * FROM sync_add_table('dbfiles', depends_on => '{inputs, formats}');
-- a table others depend on stays registered; a dropped one leaves depends_on
SELECT * FROM sync_remove_table('inputs');
DROP TABLE inputs;
SELECT tbl, depends_on FROM sync_table WHERE tbl = 'dbfiles'::regclass;
DROP TABLE formats, dbfiles;

-- what a pull does with values another machine's row holds
SELECT tbl, on_conflict FROM sync_add_table('pfts_species', key_column => 'id', on_conflict => 'skip');
SELECT * FROM sync_add_table('pfts_species', key_column => 'id', on_conflict => 'overwrite');
SELECT tbl, on_conflict FROM sync_add_table('species');
DROP TABLE pfts_species, pfts, species, yields;
DROP DOMAIN site_level, level_of_access, textual_level;

-- a now() that the caller's search_path puts before pg_catalog is not used
CREATE SCHEMA planted;
CREATE FUNCTION planted.now() RETURNS timestamptz LANGUAGE sql
	AS $$SELECT timestamptz '1999-01-01 00:00+00'$$;
SET search_path = planted, pg_catalog, public;
SELECT tbl, updated_at > '2000-01-01' AS updated_now FROM sync_add_table('users');
RESET search_path;
DROP SCHEMA planted CASCADE;
-- renaming keeps the registration, and a renamed key column is followed
ALTER TABLE users RENAME TO people;
ALTER TABLE people RENAME COLUMN id TO person_id;
SELECT tbl, key_column FROM sync_table;

DROP TABLE people, parted, no_pk, text_pk, composite_pk, numeric_pk, deferred_pk CASCADE;
DROP FUNCTION sync_regress_lookup(bigint);
DROP EXTENSION sync;
