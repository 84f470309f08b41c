--
-- Upgrading from version 0.1, through 0.2, gives exactly the objects of a
-- fresh install of the current version, and keeps every row of data
--
CREATE ROLE sync_regress_upgrader;
CREATE EXTENSION sync VERSION '0.1';
GRANT EXECUTE ON FUNCTION sync_add_table(regclass, name, text, jsonb) TO sync_regress_upgrader;
CREATE TABLE kept (id bigserial PRIMARY KEY, v text);
CREATE TABLE kept_levels (id bigint PRIMARY KEY, level integer, email text, note text);

-- a server's configuration and state at 0.1, a row or more in every table
-- of the extension, NULLs and values alike; written directly, as the 0.1
-- functions need the 0.1 library, and timestamps are given, not now()
INSERT INTO sync_machine (id, hostname, sync_url, sync_contact, sync_start, sync_end, created_at, updated_at) VALUES
	(0, 'zero.example.org', NULL, NULL, 1, 999999999,
	 '2023-01-02 03:04:05+00', '2023-01-02 03:04:05+00'),
	(1, 'one.example.org', 'https://one.example.org/sync/', 'Ana <ana@one.example.org>',
	 1000000001, 1999999999, '2023-02-01 00:00:00+00', '2023-06-30 23:59:59.5+00'),
	(2, 'two.example.org', 'http://two.example.org:8080/dumps/', NULL,
	 2000000001, 2999999999, '2023-03-01 12:00:00+00', '2023-03-01 12:00:00+00'),
	(7, 'seven.example.org', NULL, 'ops', 7000000001, 7000001000,
	 '2023-04-01 00:00:00+02', '2023-04-02 00:00:00+02');
INSERT INTO sync_instance (singleton, machine_id, initialized_at)
	VALUES (true, 0, '2023-01-02 03:05:00+00');
INSERT INTO sync_table (tbl, key_column, level_column, filter, anonymize, added_at, updated_at) VALUES
	('kept', 'id', NULL, NULL, NULL, '2023-01-03 00:00:00+00', '2023-01-03 00:00:00+00'),
	('kept_levels', 'id', 'level', 'note IS NOT NULL',
	 '{"email": "''user'' || id || ''@example.org''", "note": "NULL"}',
	 '2023-01-04 00:00:00+00', '2023-05-06 07:08:09+00');
INSERT INTO sync_remote (machine_id, ca_file, username, password, proxy, url, updated_at) VALUES
	(1, '/etc/ssl/certs/one-ca.pem', 'sync', 's3cret', 'http://proxyuser:proxypw@proxy.example.org:3128',
	 'https://one.example.org/sync/', '2023-02-02 00:00:00+00'),
	(2, NULL, NULL, NULL, NULL, 'http://two.example.org:8080/dumps/', '2023-03-02 00:00:00+00');
INSERT INTO sync_pull_state (machine_id, archive_sha256, table_sha256, applied_at) VALUES
	(1, repeat('ab', 32), jsonb_build_object('kept', repeat('01', 32), 'kept_levels', repeat('fe', 32)),
	 '2023-06-30 23:59:59+00'),
	(2, NULL, '{"kept": null}', '2023-03-03 00:00:00+00');
-- (jobs that are not due: no scheduled pull may change them meanwhile)
INSERT INTO sync_job (remote, every, start_at, end_at, max_runs, timeout, enabled, owner, next_run,
					  runs, failures, last_run, last_status, running_pid, running_since, created_at) VALUES
	(1, '15 minutes', '2023-02-01 00:00:00+00', NULL, NULL, '1 hour', true, 'sync_regress_upgrader',
	 '2999-01-01 00:00:00+00', 42, 0, '2023-06-30 23:59:00+00', 'applied', NULL, NULL,
	 '2023-02-01 00:00:00+00'),
	(2, '1 day 2 hours', '2023-03-01 00:00:00+00', '2024-03-01 00:00:00+00', 10, '5 minutes', false,
	 'sync_regress_upgrader', '2023-03-05 00:00:00+00', 4, 3, '2023-03-04 00:00:00+00', 'failed',
	 NULL, NULL, '2023-03-01 00:00:00+00');
INSERT INTO sync_log (kind, machine_id, job_id, started_at, finished_at, status, tables, rows,
					  excluded, inserted, updated, deleted, bytes, message, details) VALUES
	('dump', 0, NULL, '2023-06-01 00:00:00+00', '2023-06-01 00:00:01.25+00', 'ok', 2, 10, 1,
	 NULL, NULL, NULL, 4096, '/var/lib/sync/0.tar.zst',
	 '{"level": 3, "anonymized": true, "unchecked": false}'),
	('pull', 1, 1, '2023-06-30 23:59:00+00', '2023-06-30 23:59:59+00', 'applied', 2, NULL, NULL,
	 5, 3, 1, 8192, NULL, '{"sha256": "abab", "warnings": []}'),
	('pull', 2, 2, '2023-03-04 00:00:00+00', NULL, 'failed', NULL, NULL, NULL,
	 NULL, NULL, NULL, NULL, 'could not connect to two.example.org', NULL);

-- helpers: the rows of a table, and the rows in which a table and its
-- snapshot before_<table> differ, on the snapshot's columns (those the
-- table had at 0.1) as text, so that '26 hours' is not '1 day 2 hours':
-- 'lost' are the snapshot's, 'gained' the table's
CREATE FUNCTION pg_temp.row_count(tbl regclass)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
	n bigint;
BEGIN
	EXECUTE format('SELECT count(*) FROM %s', tbl) INTO n;
	RETURN n;
END
$$;
CREATE FUNCTION pg_temp.rows_changed(tbl name)
RETURNS TABLE (side text, row_value text)
LANGUAGE plpgsql AS $$
DECLARE
	cols text;
BEGIN
	SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) INTO STRICT cols
	  FROM pg_attribute a
	 WHERE a.attrelid = format('pg_temp.%I', 'before_' || tbl)::regclass
	   AND a.attnum > 0 AND NOT a.attisdropped;
	RETURN QUERY EXECUTE format(
		'SELECT ''lost'', * FROM (SELECT b::text FROM pg_temp.%1$I b'
		'                        EXCEPT ALL SELECT a::text FROM (SELECT %2$s FROM %3$I) a) l'
		' UNION ALL '
		'SELECT ''gained'', * FROM (SELECT a::text FROM (SELECT %2$s FROM %3$I) a'
		'                          EXCEPT ALL SELECT b::text FROM pg_temp.%1$I b) g',
		'before_' || tbl, cols, tbl);
END
$$;

-- a snapshot of every table, with the columns it has at 0.1, and of the
-- sequences that number sync_log and sync_job
CREATE TEMP TABLE before_sync_machine AS SELECT * FROM sync_machine;
CREATE TEMP TABLE before_sync_instance AS SELECT * FROM sync_instance;
CREATE TEMP TABLE before_sync_table AS SELECT * FROM sync_table;
CREATE TEMP TABLE before_sync_remote AS SELECT * FROM sync_remote;
CREATE TEMP TABLE before_sync_pull_state AS SELECT * FROM sync_pull_state;
CREATE TEMP TABLE before_sync_job AS SELECT * FROM sync_job;
CREATE TEMP TABLE before_sync_log AS SELECT * FROM sync_log;
CREATE TEMP TABLE before_sequences AS
SELECT sequencename, last_value FROM pg_sequences
 WHERE sequencename IN ('sync_log_id_seq', 'sync_job_id_seq');

-- that is every table of the extension at 0.1, and each has rows
CREATE TEMP TABLE tables_0_1 AS
SELECT c.relname
  FROM pg_depend d JOIN pg_class c ON c.oid = d.objid
 WHERE d.classid = 'pg_class'::regclass AND c.relkind IN ('r', 'p')
   AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'sync');
SELECT relname AS "table", pg_temp.row_count(relname::regclass) AS rows,
	   to_regclass(format('pg_temp.%I', 'before_' || relname)) IS NOT NULL AS snapshot
  FROM tables_0_1 ORDER BY 1;

-- the library refuses to work on SQL objects of another version
SELECT * FROM sync_range(0);

-- every object of the extension, and what defines it
CREATE FUNCTION pg_temp.sync_objects()
RETURNS TABLE (object text, definition text)
LANGUAGE sql AS $$
SELECT pg_describe_object(d.classid, d.objid, 0),
	   CASE d.classid
		 WHEN 'pg_proc'::regclass THEN
		   (SELECT pg_get_functiondef(p.oid) || coalesce(p.proacl::text, '')
			  FROM pg_proc p WHERE p.oid = d.objid)
		 WHEN 'pg_class'::regclass THEN
		   (SELECT c.relkind::text || coalesce(c.relacl::text, '')
				   || coalesce(pg_get_viewdef(c.oid), '')
				   || coalesce(obj_description(c.oid, 'pg_class'), '')
				   || coalesce((SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
												|| ' ' || a.attnotnull || ' ' || coalesce(pg_get_expr(ad.adbin, ad.adrelid), '')
												|| coalesce(col_description(c.oid, a.attnum), ''),
												', ' ORDER BY a.attnum)
								  FROM pg_attribute a
								  LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
								 WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '')
				   || coalesce((SELECT string_agg(co.conname || ' ' || pg_get_constraintdef(co.oid), ', ' ORDER BY co.conname)
								  FROM pg_constraint co WHERE co.conrelid = c.oid), '')
				   || coalesce((SELECT string_agg(pg_get_indexdef(i.indexrelid), ', ' ORDER BY 1)
								  FROM pg_index i WHERE i.indrelid = c.oid), '')
				   || coalesce((SELECT string_agg(pg_get_triggerdef(t.oid), ', ' ORDER BY t.tgname)
								  FROM pg_trigger t WHERE t.tgrelid = c.oid AND NOT t.tgisinternal), '')
			  FROM pg_class c WHERE c.oid = d.objid)
		 WHEN 'pg_event_trigger'::regclass THEN
		   (SELECT e.evtevent || ' ' || e.evtfoid::regprocedure::text || ' ' || coalesce(e.evttags::text, '')
			  FROM pg_event_trigger e WHERE e.oid = d.objid)
		 ELSE ''
	   END
  FROM pg_depend d
 WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'sync')
UNION ALL
SELECT 'configuration tables', (SELECT string_agg(c::regclass::text, ', ' ORDER BY c::regclass::text)
								  FROM pg_extension e, unnest(e.extconfig) c WHERE e.extname = 'sync')
$$;

-- a role granted the old sync_add_table is named, with the grant to make
ALTER EXTENSION sync UPDATE TO '0.2';
SELECT extversion FROM pg_extension WHERE extname = 'sync';
-- a role that 0.2's documentation had write the registry is named
GRANT SELECT, INSERT, UPDATE ON sync_machine TO sync_regress_upgrader;
ALTER EXTENSION sync UPDATE TO '0.3';
SELECT extversion FROM pg_extension WHERE extname = 'sync';
-- which the registry now stops: it changes only through sync's functions
SET ROLE sync_regress_upgrader;
UPDATE sync_machine SET sync_end = 5;
RESET ROLE;
REVOKE ALL ON sync_machine FROM sync_regress_upgrader;
-- a role granted 0.3's sync_pull is named, with the grant to make; the
-- registered tables get their guard
GRANT EXECUTE ON FUNCTION sync_pull(bigint) TO sync_regress_upgrader;
ALTER EXTENSION sync UPDATE TO '0.4';
SELECT extversion FROM pg_extension WHERE extname = 'sync';
SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = 'kept'::regclass ORDER BY 1;
SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint
 WHERE conrelid = 'kept'::regclass AND contype = 'c';
SELECT tbl, foreign_rows FROM sync_table ORDER BY tbl::text;

-- on to 0.5; then to 0.6, where a role granted the old sync_schedule,
-- sync_unschedule or sync_init is named, with the grant to make
SET client_min_messages = warning;
ALTER EXTENSION sync UPDATE TO '0.5';
GRANT EXECUTE ON FUNCTION sync_schedule(bigint, interval, timestamptz, timestamptz, integer, interval, boolean),
	sync_init(bigint) TO sync_regress_upgrader;
ALTER EXTENSION sync UPDATE TO '0.6';
-- the hints run as they are
GRANT EXECUTE ON FUNCTION public.sync_init(bigint) TO sync_regress_upgrader;
GRANT EXECUTE ON FUNCTION public.sync_schedule(bigint, interval, timestamptz, timestamptz, integer, interval, boolean, text), public.sync_schedule(text, interval, timestamptz, timestamptz, integer, interval, boolean, text), public.sync_schedule_dump(interval, integer, boolean, boolean, timestamptz, timestamptz, integer, interval, boolean, text, boolean) TO sync_regress_upgrader;
SELECT has_function_privilege('sync_regress_upgrader', 'sync_init(bigint)', 'EXECUTE') AS init,
	   has_function_privilege('sync_regress_upgrader', 'sync_schedule_dump(interval, integer, boolean, boolean, timestamptz, timestamptz, integer, interval, boolean, text, boolean)', 'EXECUTE') AS schedule_dump;
REVOKE EXECUTE ON FUNCTION sync_init(bigint),
	sync_schedule(bigint, interval, timestamptz, timestamptz, integer, interval, boolean, text),
	sync_schedule(text, interval, timestamptz, timestamptz, integer, interval, boolean, text),
	sync_schedule_dump(interval, integer, boolean, boolean, timestamptz, timestamptz, integer, interval, boolean, text, boolean)
	FROM sync_regress_upgrader;

-- and on to the default version, whatever that is (here already)
ALTER EXTENSION sync UPDATE;
RESET client_min_messages;
SELECT extversion = (SELECT default_version FROM pg_available_extensions WHERE name = 'sync')
	   AS at_default_version
  FROM pg_extension WHERE extname = 'sync';
CREATE TEMP TABLE upgraded AS SELECT * FROM pg_temp.sync_objects();
-- the configuration stays
SELECT id, hostname, learned_from FROM sync_machine ORDER BY id;
SELECT tbl, key_column, key_declared, depends_on, on_conflict FROM sync_table ORDER BY tbl::text;
SELECT * FROM sync_range(0);

-- every table of 0.1 keeps as many rows as it had
SELECT relname AS "table",
	   pg_temp.row_count(format('pg_temp.%I', 'before_' || relname)::regclass) AS before,
	   pg_temp.row_count(relname::regclass) AS after
  FROM tables_0_1 ORDER BY 1;
-- and each of them with the values of its 0.1 columns: none lost, none
-- gained (a changed row would be both)
SELECT t.relname AS "table", d.side, d.row_value
  FROM tables_0_1 t, pg_temp.rows_changed(t.relname) d
 ORDER BY 1, 2, 3;
-- the sequences go on from where they were
SELECT b.sequencename, b.last_value AS before, s.last_value AS after
  FROM before_sequences b LEFT JOIN pg_sequences s USING (sequencename)
 ORDER BY 1;
-- (kept_levels goes: kept alone shows what becomes of a guard below)
DROP TABLE kept_levels;

-- the guard depends on the extension: it goes with it, the table stays
DROP EXTENSION sync;
DROP EXTENSION sync CASCADE;
SELECT count(*) AS guards FROM pg_trigger WHERE tgrelid = 'kept'::regclass;
CREATE EXTENSION sync;
CREATE TEMP TABLE fresh AS SELECT * FROM pg_temp.sync_objects();
SELECT count(*) AS objects FROM fresh;
SELECT 'only after upgrading' AS side, * FROM (SELECT * FROM upgraded EXCEPT SELECT * FROM fresh) u
UNION ALL
SELECT 'only when fresh', * FROM (SELECT * FROM fresh EXCEPT SELECT * FROM upgraded) f
ORDER BY 1, 2;

DROP EXTENSION sync;
DROP TABLE kept;
DROP ROLE sync_regress_upgrader;
