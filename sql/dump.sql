--
-- sync_dump: the SQL surface, its errors, the log, the files it leaves
--
CREATE EXTENSION sync;
\getenv abs_builddir PG_ABS_BUILDDIR
\set dumpdir :abs_builddir '/dump_regress'
\setenv DUMPDIR :dumpdir
\! rm -rf "$DUMPDIR"

-- the dump directory: not set, missing, not a directory, not writable
SELECT * FROM sync_dump();
SET sync.dump_directory = 'no_such_directory';
SELECT * FROM sync_dump();
SET sync.dump_directory = 'postgresql.conf';
SELECT * FROM sync_dump();
SET sync.dump_directory = '/';
SELECT * FROM sync_dump();
\! mkdir -m 0777 "$DUMPDIR"
SET sync.dump_directory = :'dumpdir';

-- no identity, no tables, a level outside 0..4
SELECT * FROM sync_dump();
SELECT id FROM sync_register_machine(0, 'zero.example.org', 'https://zero.example.org/sync/');
SELECT id FROM sync_register_machine(1, 'one.example.org', 'https://one.example.org/sync/');
SELECT machine_id FROM sync_init(1);
SELECT * FROM sync_dump();
CREATE TABLE person (id bigserial PRIMARY KEY, name text, email text,
					 password text, access_level integer DEFAULT 4);
CREATE TABLE site (id bigserial PRIMARY KEY, name text,
				   owner_id bigint REFERENCES person, checked integer DEFAULT 0);
CREATE TABLE measurement (id bigserial PRIMARY KEY, site_id bigint REFERENCES site,
						  value numeric, access_level integer DEFAULT 4);
SELECT tbl FROM sync_add_table('person', 'access_level', NULL,
	'{"email": "''person'' || id || ''@example.org''", "password": "NULL"}');
SELECT tbl FROM sync_add_table('site', NULL, 'checked <> -1');
SELECT tbl FROM sync_add_table('measurement', 'access_level');
SELECT * FROM sync_dump(level => -1);
SELECT * FROM sync_dump(level => 5);
SELECT * FROM sync_dump(level => NULL);

-- a dump of empty tables
SELECT path LIKE :'dumpdir' || '/sync-1-%.tar.zst' AS path_ok, tables, rows, excluded,
	   bytes > 0 AS has_bytes, sha256 ~ '^[0-9a-f]{64}$' AS sha_ok, duration >= '0' AS timed
  FROM sync_dump();

-- rows: a private person, a rejected site, rows that reference them, and
-- rows of machine 0 that are not ours to publish
INSERT INTO person (name, email, password) VALUES ('Ana', 'ana@lab', 'pw1'), ('Ben', 'ben@lab', 'pw2');
INSERT INTO person (name, email, password, access_level) VALUES ('Private', 'p@lab', 'pw3', 1);
-- (a copy of machine 0's row, as its pull would write it)
SET session_replication_role = replica;
INSERT INTO person (id, name) VALUES (7, 'machine zero''s person');
RESET session_replication_role;
-- a row in no machine's range: nobody publishes it, and the dump says so
INSERT INTO person (id, name) VALUES (-5, 'nobody''s person');
INSERT INTO site (name, owner_id) VALUES ('north', 1000000001), ('south', 1000000003), ('rejected', 1000000002);
UPDATE site SET checked = -1 WHERE name = 'rejected';
INSERT INTO measurement (site_id, value) VALUES (1000000001, 1.5), (1000000002, 2.5), (1000000003, 3.5);
INSERT INTO measurement (site_id, value, access_level) VALUES (1000000001, 4.5, NULL);

SELECT tables, rows, excluded FROM sync_dump();
SELECT tables, rows, excluded FROM sync_dump(level => 0);
SELECT tables, rows, excluded FROM sync_dump(unchecked => true);
SELECT tables, rows, excluded FROM sync_dump(anonymize => false);

-- every dump is in the log, failures included
SELECT kind, machine_id, status, tables, rows, excluded, bytes > 0 AS has_bytes,
	   CASE WHEN status = 'ok' THEN message LIKE :'dumpdir' || '/%' ELSE NULL END AS path_ok,
	   CASE WHEN status = 'failed' THEN message END AS error,
	   details->>'level' AS level, details->>'anonymized' AS anonymized,
	   details->'unowned' AS unowned
  FROM sync_log ORDER BY id;

-- what is on disk: the files the index names and those the previous one
-- named, the index, and the state the next dump computes its delta from
SELECT count(*) FILTER (WHERE f LIKE 'sync-1-%.tar.zst') AS archives,
	   count(*) FILTER (WHERE f = 'sync-index.json') AS index,
	   count(*) FILTER (WHERE f LIKE '.%.tmp') AS temporary,
	   count(*) FILTER (WHERE f LIKE '.%.state') AS state
  FROM pg_ls_dir(:'dumpdir') AS f;
SELECT d.sha256 = i->>'sha256' AS same_sha, d.bytes = (i->>'size')::bigint AS same_size,
	   d.path = :'dumpdir' || '/' || (i->>'archive') AS same_archive,
	   i->>'machine' AS machine, i->>'level' AS level, i->>'format' AS format
  FROM sync_dump(level => 2) d,
	   LATERAL (SELECT pg_read_file(:'dumpdir' || '/sync-index.json')::jsonb AS i) x;

-- a dump that fails half way leaves the previous one as it was, and no
-- partial file
SELECT pg_read_file(:'dumpdir' || '/sync-index.json') AS index_before \gset
SELECT tbl FROM sync_add_table('measurement', 'access_level', 'value / (id - id) > 0');
\set VERBOSITY terse
SELECT * FROM sync_dump();
\set VERBOSITY default
SELECT pg_read_file(:'dumpdir' || '/sync-index.json') = :'index_before' AS index_unchanged;
SELECT count(*) FILTER (WHERE f LIKE 'sync-1-%.tar.zst') AS archives,
	   count(*) FILTER (WHERE f LIKE '.%.tmp') AS temporary,
	   count(*) FILTER (WHERE f LIKE '.%.state') AS state
  FROM pg_ls_dir(:'dumpdir') AS f;
SELECT status, message FROM sync_log ORDER BY id DESC LIMIT 1;
SELECT tbl FROM sync_add_table('measurement', 'access_level');

-- a dump publishes committed rows only
BEGIN;
UPDATE person SET name = 'uncommitted draft' WHERE id = 1000000001;
SELECT * FROM sync_dump();
ROLLBACK;

-- an operator planted in public is never used by the log writer, which runs
-- as the log's owner
CREATE FUNCTION public.sync_regress_trap(bigint, interval) RETURNS interval
	LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'trap called'; END$$;
CREATE OPERATOR public.* (LEFTARG = bigint, RIGHTARG = interval,
						 FUNCTION = public.sync_regress_trap);
SELECT tables FROM sync_dump();
SELECT status FROM sync_log ORDER BY id DESC LIMIT 1;
DROP OPERATOR public.* (bigint, interval);
DROP FUNCTION public.sync_regress_trap(bigint, interval);

-- rows of tables that inherit from a registered table are not its rows
CREATE TABLE animal (id bigserial PRIMARY KEY, name text);
CREATE TABLE dog (breed text) INHERITS (animal);
ALTER TABLE dog ADD PRIMARY KEY (id);
SELECT tbl FROM sync_add_table('animal');
INSERT INTO animal (name) VALUES ('generic');
INSERT INTO dog (id, name, breed) VALUES (1000000500, 'rex', 'collie');
SELECT tables, rows, excluded FROM sync_dump(level => 0);
SELECT tbl FROM sync_add_table('dog');
SELECT tables, rows, excluded FROM sync_dump(level => 0);
SELECT tbl FROM sync_remove_table('dog');
SELECT tbl FROM sync_remove_table('animal');
DROP TABLE animal CASCADE;

-- who may dump: members of pg_write_server_files (with SELECT on the
-- tables), or a role granted EXECUTE; nobody else
CREATE ROLE sync_regress_writer IN ROLE pg_write_server_files;
CREATE ROLE sync_regress_reader;
GRANT SELECT ON person, site, measurement TO sync_regress_writer;
SET ROLE sync_regress_reader;
SELECT * FROM sync_dump();
RESET ROLE;
SET ROLE sync_regress_writer;
SELECT tables, rows, excluded FROM sync_dump();
RESET ROLE;
-- the writer cannot change where dumps go
SET ROLE sync_regress_writer;
SET sync.dump_directory = '/tmp';
RESET ROLE;

DROP TABLE measurement, site, person;
DROP EXTENSION sync;
DROP OWNED BY sync_regress_writer;
DROP ROLE sync_regress_writer;
DROP ROLE sync_regress_reader;
\! rm -rf "$DUMPDIR"
