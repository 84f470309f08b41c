-- ===================================================================
-- sync demo: a server of a federation gets its identity, registers a
-- table, hands out keys only from its own range, and publishes its own
-- rows as an archive any web server can serve.  (test/demo.sh started an
-- nginx on 127.0.0.1 that serves machine 42's dump directory at :url42,
-- as the web server of a real machine would.)
-- ===================================================================

CREATE EXTENSION sync;

-- The federation: every machine owns a key range.  Machine N owns
-- [N * 10^9 + 1, (N + 1) * 10^9 - 1] unless told otherwise.
SELECT id, hostname, sync_url, sync_start, sync_end
  FROM sync_register_machine(0, 'central.example.org', 'https://central.example.org/sync/');
-- Machine 42's sync_url is where its web server serves what it publishes.
SELECT id, hostname, sync_url, sync_start, sync_end
  FROM sync_register_machine(42, 'field-lab.example.org', :'url42');

-- Ranges never overlap; the error names the machine in the way.
\set ON_ERROR_STOP off
SELECT * FROM sync_register_machine(7, 'rogue.example.org',
									sync_start => 42000000500, sync_end => 42000009999);
\set ON_ERROR_STOP on

-- This server is machine 42: it says what it now is, and its range.
SELECT * FROM sync_init(42);

-- A table of observations: access level, a quality flag, a private column.
CREATE TABLE observation (
	id bigserial PRIMARY KEY,
	site text NOT NULL,
	value numeric,
	observer_email text,
	access_level integer DEFAULT 4,
	checked integer DEFAULT 0
);

-- Register it: publish rows by access level, skip rows marked bad, and
-- replace the observer's e-mail when anonymizing.
SELECT tbl, key_column, level_column, filter, anonymize
  FROM sync_add_table('observation', 'access_level', 'checked <> -1',
					  '{"observer_email": "''observer'' || id || ''@example.org''"}');

-- Its sequence is now confined to machine 42's range ...
SELECT table_name, sequence_name, range_start, range_end, confined, last_value, percent_used
  FROM sync_sequence_usage;

-- ... so new rows get keys that only machine 42 can own.
INSERT INTO observation (site, value, observer_email)
VALUES ('north plot', 12.5, 'ana@field-lab.example.org'),
	   ('south plot', 9.75, 'ben@field-lab.example.org')
RETURNING id, site, value;

-- Expressions are validated when registered: this one smuggles a statement.
\set ON_ERROR_STOP off
SELECT * FROM sync_add_table('observation', filter => 'true; DROP TABLE observation');
\set ON_ERROR_STOP on

SELECT table_name, last_value, percent_used FROM sync_sequence_usage;
SELECT * FROM sync_range(42);

-- A deliberate mistake: a row with an explicit key, 17.  That key lies in
-- machine 0's range, so the row would be machine 0's, which only a pull of
-- machine 0 may write here, whoever asks: the guard sync_add_table put on
-- the table refuses it, and says whose row it would be.
\set ON_ERROR_STOP off
INSERT INTO observation (id, site, value) VALUES (17, 'central plot', 3.25);
\set ON_ERROR_STOP on
-- A private row and a row marked bad: left out of a dump at level 3.
INSERT INTO observation (site, value, access_level) VALUES ('private plot', 1, 1);
INSERT INTO observation (site, value, checked) VALUES ('broken sensor', -999, -1);

-- Publish: rows of machine 42's range, level >= 3, filter passed,
-- e-mails anonymized, into sync.dump_directory.
SHOW sync.dump_directory;
SELECT tables, rows, excluded, bytes, sha256 FROM sync_dump();

-- The archive opens with standard tools; the index names it for subscribers.
SELECT pg_read_file(current_setting('sync.dump_directory') || '/sync-index.json') AS index;
SELECT path AS archive FROM sync_dump() \gset
\setenv ARCHIVE :archive
\! tar --zstd -tvf "$ARCHIVE"
\! tar --zstd -xOf "$ARCHIVE" tables/0001-public.observation/000001.copy

-- Every dump is recorded.
SELECT kind, machine_id, status, tables, rows, excluded FROM sync_log ORDER BY id;

-- ===================================================================
-- A second server of the federation (here a second database, machine 7)
-- pulls what machine 42 published, over HTTP from machine 42's nginx, as
-- any subscriber does.
-- ===================================================================
-- (test/demo.sh created database field_station before the server started,
-- and made it sync.database, where scheduled pulls run.)
\c field_station
CREATE EXTENSION sync;
SELECT id, hostname FROM sync_register_machine(42, 'field-lab.example.org', :'url42');
SELECT id, hostname FROM sync_register_machine(7, 'field-station.example.org');
SELECT machine_id, hostname, sync_start, sync_end FROM sync_init(7);
CREATE TABLE observation (
	id bigserial PRIMARY KEY,
	site text NOT NULL,
	value numeric,
	observer_email text,
	access_level integer DEFAULT 4,
	checked integer DEFAULT 0
);
SELECT tbl FROM sync_add_table('observation');

-- A dry run first: it downloads and checks the archive, and says what a
-- pull would insert, update and delete, changing nothing.
SELECT status, inserted, updated, deleted FROM sync_pull(42, dry_run => true);
SELECT count(*) AS rows_here FROM observation;

-- The pull checks the archive, then merges machine 42's rows in one
-- transaction; it also learns the federation from 42's registry.
SELECT * FROM sync_pull(42);
SELECT id, site, value, observer_email FROM observation ORDER BY id;
SELECT id, hostname FROM sync_machine ORDER BY id;

-- Machine 42 changes and deletes rows, and publishes again ...
\c postgres
UPDATE observation SET value = 13.0 WHERE site = 'north plot';
DELETE FROM observation WHERE site = 'south plot';
SELECT tables, rows FROM sync_dump();

-- ... and the next pull brings exactly that over; a pull with nothing new
-- downloads only the small index.
\c field_station
SELECT status, inserted, updated, deleted FROM sync_pull(42);
SELECT id, site, value FROM observation ORDER BY id;
SELECT status, inserted, updated, deleted FROM sync_pull('field-lab.example.org');
SELECT machine_id, hostname, status, last_success IS NOT NULL AS ok FROM sync_status WHERE machine_id = 42;

-- A pull that fails says why, and keeps it: here machine 5, whose web
-- server is down (nothing listens at its URL).  sync_log keeps the error's
-- SQLSTATE, detail and hint, and sync_federation shows every machine at a
-- glance.
SELECT id, sync_url FROM sync_register_machine(5, 'lab5.example.org', 'http://127.0.0.1:1/sync/');
\set ON_ERROR_STOP off
SELECT * FROM sync_pull(5);
\set ON_ERROR_STOP on
SELECT machine_id, status, sqlstate, hint FROM sync_log WHERE kind = 'pull' ORDER BY id DESC LIMIT 1;
SELECT machine_id, hostname, this_server, last_status, failures, rows, lag IS NOT NULL AS has_lag
  FROM sync_federation ORDER BY machine_id;

-- ===================================================================
-- Nobody has to call sync_pull: a background worker inside the server
-- (shared_preload_libraries = 'sync', sync.database = 'field_station')
-- pulls machine 42 every 2 seconds.
-- ===================================================================
SELECT sync_schedule('field-lab.example.org', '2 seconds', name => 'from the field lab') AS job \gset
SELECT id, kind, name, remote, every, next_run IS NOT NULL AS scheduled FROM sync_job;
-- One job per purpose: scheduling the same machine again without a name
-- is refused, naming the job that does it.
\set ON_ERROR_STOP off
SELECT sync_schedule(42, '1 hour');
\set ON_ERROR_STOP on

-- Machine 42 records a new observation and publishes ...
\c postgres
INSERT INTO observation (site, value) VALUES ('east plot', 7.5);
SELECT tables, rows FROM sync_dump();

-- ... and the field station catches up by itself (waiting at most 30 s).
\c field_station
DO $$
BEGIN
	FOR i IN 1..300 LOOP
		EXIT WHEN EXISTS (SELECT FROM observation WHERE site = 'east plot');
		PERFORM pg_sleep(0.1);
	END LOOP;
	IF NOT EXISTS (SELECT FROM observation WHERE site = 'east plot') THEN
		RAISE EXCEPTION 'the scheduled pull did not bring the new row within 30 s';
	END IF;
END
$$;
SELECT id, site, value FROM observation ORDER BY id;
SELECT job_id, status, inserted, updated, deleted
  FROM sync_log WHERE job_id = :job AND status = 'applied';
SELECT sync_unschedule('from the field lab');
