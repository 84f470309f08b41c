--
-- Privileges: nothing for PUBLIC; what a DBA grants to a sync role works
--
CREATE EXTENSION sync;

-- no function is executable and no table readable by PUBLIC, but for the
-- guard's trigger functions: they do nothing unless fired as a table's
-- guard, and whoever registers a table creates its triggers
SELECT p.proname
  FROM pg_proc p
 WHERE p.oid IN (SELECT objid FROM pg_depend WHERE refobjid =
				 (SELECT oid FROM pg_extension WHERE extname = 'sync')
				 AND classid = 'pg_proc'::regclass)
   AND has_function_privilege('public', p.oid, 'EXECUTE')
 ORDER BY 1;
SELECT c.relname
  FROM pg_class c
 WHERE c.oid IN (SELECT objid FROM pg_depend WHERE refobjid =
				 (SELECT oid FROM pg_extension WHERE extname = 'sync')
				 AND classid = 'pg_class'::regclass)
   AND (c.relacl IS NULL OR EXISTS (SELECT 1 FROM aclexplode(c.relacl) a WHERE a.grantee = 0));

CREATE ROLE sync_regress_nobody;
CREATE ROLE sync_regress_admin;
CREATE TABLE regress_owned (id bigserial PRIMARY KEY, v text);
ALTER TABLE regress_owned OWNER TO sync_regress_admin;
CREATE TABLE regress_not_owned (id bigserial PRIMARY KEY);

-- a role without grants can do nothing
SET ROLE sync_regress_nobody;
SELECT * FROM sync_machine;
SELECT * FROM sync_register_machine(1, 'one.example.org');
SELECT * FROM sync_range(1);
SELECT * FROM sync_init(1);
SELECT * FROM sync_add_table('regress_owned');
SELECT * FROM sync_sequence_usage;
RESET ROLE;

-- what doc/privileges.md tells a DBA to grant: no write privilege on the
-- registry or the identity, which sync's functions write themselves
GRANT SELECT ON sync_machine, sync_instance TO sync_regress_admin;
GRANT SELECT, INSERT, UPDATE, DELETE ON sync_table TO sync_regress_admin;
GRANT SELECT ON sync_sequence_usage TO sync_regress_admin;
GRANT EXECUTE ON FUNCTION sync_register_machine(bigint, text, text, text, bigint, bigint),
	sync_range(bigint), sync_init(bigint), sync_add_table(regclass, name, text, jsonb, name, regclass[], text, text),
	sync_remove_table(regclass), sync_key_sequences(regclass, name)
	TO sync_regress_admin;

SET ROLE sync_regress_admin;
SELECT id, hostname FROM sync_register_machine(1, 'one.example.org');
SELECT * FROM sync_range(1);
SELECT machine_id FROM sync_init(1);
SELECT tbl FROM sync_add_table('regress_owned');
INSERT INTO regress_owned (v) VALUES ('x') RETURNING id;
SELECT table_name, confined FROM sync_sequence_usage;
-- and the registry changes through those functions only
UPDATE sync_machine SET sync_end = 1000000005 WHERE id = 1;
DELETE FROM sync_instance;
-- a table the role does not own cannot be registered, nor unregistered
SELECT * FROM sync_add_table('regress_not_owned');
RESET ROLE;
SELECT tbl FROM sync_add_table('regress_not_owned');
SET ROLE sync_regress_admin;
SELECT * FROM sync_remove_table('regress_not_owned');
RESET ROLE;
SELECT tbl FROM sync_remove_table('regress_not_owned');
SET ROLE sync_regress_admin;
SELECT tbl FROM sync_remove_table('regress_owned');
RESET ROLE;

-- a monitoring role reads the views; last_value needs the sequence's privilege
CREATE ROLE sync_regress_monitor;
GRANT SELECT ON sync_machine, sync_instance, sync_table, sync_sequence_usage TO sync_regress_monitor;
GRANT EXECUTE ON FUNCTION sync_range(bigint), sync_key_sequences(regclass, name),
	sync_proxy_display(text) TO sync_regress_monitor;
SELECT tbl FROM sync_add_table('regress_owned');
SET ROLE sync_regress_monitor;
SELECT table_name, confined, last_value, percent_used FROM sync_sequence_usage;
RESET ROLE;
GRANT SELECT ON SEQUENCE regress_owned_id_seq TO sync_regress_monitor;
SET ROLE sync_regress_monitor;
SELECT table_name, confined, last_value, percent_used FROM sync_sequence_usage;
RESET ROLE;
SELECT tbl FROM sync_remove_table('regress_owned');
-- the federation's health, with SELECT on the view alone
SET ROLE sync_regress_monitor;
SELECT machine_id FROM sync_federation;
RESET ROLE;
GRANT SELECT ON sync_federation TO sync_regress_monitor;
SET ROLE sync_regress_monitor;
SELECT machine_id, hostname, this_server, published_at, last_status, failures, next_run
  FROM sync_federation ORDER BY machine_id;
RESET ROLE;

-- dropping a registered table needs no privilege on sync_table
SELECT tbl FROM sync_add_table('regress_owned');
REVOKE ALL ON sync_table FROM sync_regress_admin;
SET ROLE sync_regress_admin;
DROP TABLE regress_owned;
RESET ROLE;
SELECT count(*) FROM sync_table;

-- scheduling: what doc/privileges.md grants; a job cannot get another owner
SELECT id FROM sync_register_machine(2, 'two.example.org', 'https://two.example.org/sync/');
SET ROLE sync_regress_admin;
SELECT sync_schedule(2, '1 hour', enabled => false);
RESET ROLE;
GRANT EXECUTE ON FUNCTION
	sync_schedule(bigint, interval, timestamptz, timestamptz, integer, interval, boolean, text),
	sync_schedule(text, interval, timestamptz, timestamptz, integer, interval, boolean, text),
	sync_schedule_dump(interval, integer, boolean, boolean, timestamptz, timestamptz, integer, interval, boolean, text, boolean),
	sync_unschedule(bigint), sync_unschedule(text) TO sync_regress_admin;
GRANT SELECT, INSERT, UPDATE, DELETE ON sync_job TO sync_regress_admin;
GRANT USAGE ON SEQUENCE sync_job_id_seq TO sync_regress_admin;
SET ROLE sync_regress_admin;
SELECT sync_schedule(2, '1 hour', enabled => false) AS job \gset
SELECT remote, every, owner, enabled, runs FROM sync_job;
UPDATE sync_job SET owner = 'sync_regress_monitor';
UPDATE sync_job SET every = '2 hours' RETURNING every;
SELECT sync_schedule(1, '1 hour');
SELECT sync_schedule(3, '1 hour');
SELECT sync_schedule(2, '0.5 seconds');
SELECT sync_schedule(2, '1 hour', start_at => now(), end_at => now() - interval '1 day');
SELECT sync_schedule(2, '1 hour', max_runs => 0);
SELECT sync_schedule(2, '1 hour', timeout => '0');
SELECT sync_schedule(2, '1 hour', start_at => '-infinity');
SELECT sync_schedule(2, '-1 year 365 days 6 hours');
SELECT sync_schedule(2, '1 hour', timeout => NULL);
SELECT sync_unschedule(:job);
SELECT sync_unschedule(:job);
RESET ROLE;
-- nor can a job of another role be changed or removed
SELECT sync_schedule(2, '1 hour', enabled => false) AS job \gset
UPDATE sync_job SET owner = 'sync_regress_nobody' RETURNING owner;
SET ROLE sync_regress_admin;
UPDATE sync_job SET enabled = true;
SELECT sync_unschedule(:job);
RESET ROLE;
SELECT sync_unschedule(:job);

DROP TABLE regress_not_owned;
DROP EXTENSION sync;
DROP ROLE sync_regress_nobody;
DROP OWNED BY sync_regress_monitor;
DROP ROLE sync_regress_monitor;
DROP ROLE sync_regress_admin;
