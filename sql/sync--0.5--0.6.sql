-- Upgrade sync from 0.5 to 0.6: operations (scheduled dumps, named jobs,
-- diagnosable failures).
\echo Use "ALTER EXTENSION sync UPDATE TO '0.6'" to load this file. \quit

--
-- sync_pull, sync_schedule, sync_unschedule and sync_init get new parameters or
-- results, so they are new functions: a role granted EXECUTE on the old
-- ones is named, with the GRANT to run again (a grant made by the update
-- itself would be taken for the extension's own).
--
DO $$
DECLARE
	r record;
BEGIN
	FOR r IN
		SELECT DISTINCT f.old, f.new,
			   CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(ro.rolname) END AS grantee
		  FROM (VALUES ('sync_schedule(bigint, interval, timestamptz, timestamptz, integer, interval, boolean)',
						'sync_schedule(bigint, interval, timestamptz, timestamptz, integer, interval, boolean, text), '
						'@extschema@.sync_schedule(text, interval, timestamptz, timestamptz, integer, interval, boolean, text), '
						'@extschema@.sync_schedule_dump(interval, integer, boolean, boolean, timestamptz, timestamptz, integer, interval, boolean, text, boolean)'),
					   ('sync_unschedule(bigint)', 'sync_unschedule(bigint), @extschema@.sync_unschedule(text)'),
					   ('sync_init(bigint)', 'sync_init(bigint)'),
					   ('sync_pull(bigint, boolean)',
						'sync_pull(bigint, boolean, boolean, regclass[], regclass[], text), '
						'@extschema@.sync_pull(text, boolean, boolean, regclass[], regclass[], text)'),
					   ('sync_pull(text, boolean)',
						'sync_pull(bigint, boolean, boolean, regclass[], regclass[], text), '
						'@extschema@.sync_pull(text, boolean, boolean, regclass[], regclass[], text)')) f (old, new)
		  JOIN pg_catalog.pg_proc p ON p.oid = pg_catalog.to_regprocedure('@extschema@.' || f.old)
		 CROSS JOIN LATERAL pg_catalog.aclexplode(p.proacl) a
		  LEFT JOIN pg_catalog.pg_roles ro ON ro.oid = a.grantee
		 WHERE a.privilege_type = 'EXECUTE' AND a.grantee <> p.proowner
	LOOP
		RAISE WARNING 'role % may no longer run %', r.grantee, pg_catalog.split_part(r.old, '(', 1)
			USING DETAIL = 'The function changed in version 0.6; the grant on the old one was dropped with it.',
				  HINT = pg_catalog.format('GRANT EXECUTE ON FUNCTION @extschema@.%s TO %s;', r.new, r.grantee);
	END LOOP;
END
$$;

--
-- A failure keeps all its error says.
--
ALTER TABLE sync_log
	ADD COLUMN sqlstate text,
	ADD COLUMN detail text,
	ADD COLUMN hint text,
	ADD COLUMN context text;

--
-- Jobs pull a machine or dump this one, and may have a name.
--
ALTER TABLE sync_job
	ADD COLUMN kind text NOT NULL DEFAULT 'pull',
	ADD COLUMN name text,
	ADD COLUMN level integer,
	ADD COLUMN anonymize boolean,
	ADD COLUMN unchecked boolean,
	ADD COLUMN push boolean NOT NULL DEFAULT false,
	ALTER COLUMN remote DROP NOT NULL,
	ADD CONSTRAINT sync_job_name_key UNIQUE (name),
	ADD CONSTRAINT sync_job_kind_check CHECK (kind IN ('pull', 'dump')),
	ADD CONSTRAINT sync_job_remote_check CHECK ((kind = 'pull') = (remote IS NOT NULL)),
	ADD CONSTRAINT sync_job_dump_check
		CHECK (kind = 'pull' OR (level IS NOT NULL AND anonymize IS NOT NULL AND unchecked IS NOT NULL));

COMMENT ON TABLE sync_job IS 'scheduled pulls and dumps, their next run and the runs made';

DROP FUNCTION sync_schedule(bigint, interval, timestamptz, timestamptz, integer, interval, boolean);
DROP FUNCTION sync_unschedule(bigint);

-- A job runs as its owner (pull or dump).
CREATE OR REPLACE FUNCTION sync_job_check_owner()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	superuser boolean := (SELECT rolsuper FROM pg_roles WHERE rolname = current_user);
BEGIN
	IF TG_OP <> 'INSERT' AND NOT coalesce((SELECT pg_has_role(current_user, oid, 'MEMBER')
											 FROM pg_roles WHERE rolname = OLD.owner), superuser) THEN
		RAISE EXCEPTION 'permission denied for job % of role %', OLD.id, OLD.owner
			USING ERRCODE = 'insufficient_privilege',
				  HINT = 'Only members of a job''s owner may change or remove it.';
	END IF;
	IF TG_OP <> 'DELETE' AND NOT coalesce((SELECT pg_has_role(current_user, oid, 'MEMBER')
											 FROM pg_roles WHERE rolname = NEW.owner), superuser) THEN
		RAISE EXCEPTION 'permission denied to run jobs as role %', NEW.owner
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'A scheduled job runs with the privileges of its owner.',
				  HINT = 'Make the owner a role you are a member of.';
	END IF;
	IF TG_OP = 'DELETE' THEN
		RETURN OLD;
	END IF;
	RETURN NEW;
END
$$;

CREATE FUNCTION sync_schedule(remote bigint, every interval,
							  start_at timestamptz DEFAULT now(),
							  end_at timestamptz DEFAULT NULL,
							  max_runs integer DEFAULT NULL,
							  timeout interval DEFAULT '1 hour',
							  enabled boolean DEFAULT true,
							  name text DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'sync_schedule_id'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;

CREATE FUNCTION sync_schedule(remote text, every interval,
							  start_at timestamptz DEFAULT now(),
							  end_at timestamptz DEFAULT NULL,
							  max_runs integer DEFAULT NULL,
							  timeout interval DEFAULT '1 hour',
							  enabled boolean DEFAULT true,
							  name text DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'sync_schedule_name'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;

CREATE FUNCTION sync_schedule_dump(every interval,
								   level integer DEFAULT 3,
								   anonymize boolean DEFAULT true,
								   unchecked boolean DEFAULT false,
								   start_at timestamptz DEFAULT now(),
								   end_at timestamptz DEFAULT NULL,
								   max_runs integer DEFAULT NULL,
								   timeout interval DEFAULT '1 hour',
								   enabled boolean DEFAULT true,
								   name text DEFAULT NULL,
								   push boolean DEFAULT false)
RETURNS bigint
AS 'MODULE_PATHNAME', 'sync_schedule_dump'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;

CREATE FUNCTION sync_unschedule(job bigint)
RETURNS boolean
AS 'MODULE_PATHNAME', 'sync_unschedule_id'
LANGUAGE C STRICT VOLATILE;

CREATE FUNCTION sync_unschedule(name text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'sync_unschedule_name'
LANGUAGE C STRICT VOLATILE;

REVOKE ALL ON FUNCTION
	sync_schedule(bigint, interval, timestamptz, timestamptz, integer, interval, boolean, text),
	sync_schedule(text, interval, timestamptz, timestamptz, integer, interval, boolean, text),
	sync_schedule_dump(interval, integer, boolean, boolean, timestamptz, timestamptz, integer, interval, boolean, text, boolean),
	sync_unschedule(bigint),
	sync_unschedule(text)
	FROM PUBLIC;

--
-- The last attempt's error, whole.
--
CREATE OR REPLACE VIEW sync_status AS
SELECT m.id AS machine_id,
	   m.hostname,
	   m.sync_url,
	   a.started_at AS last_attempt,
	   a.status,
	   a.message,
	   s.started_at AS last_success,
	   a.tables,
	   a.inserted,
	   a.updated,
	   a.deleted,
	   a.bytes,
	   st.applied_at,
	   a.sqlstate,
	   a.detail,
	   a.hint
  FROM sync_machine m
  LEFT JOIN sync_instance i ON true
  LEFT JOIN LATERAL (SELECT l.* FROM sync_log l
					  WHERE l.kind = 'pull' AND l.machine_id = m.id AND l.status <> 'dry run'
					  ORDER BY l.started_at DESC, l.id DESC LIMIT 1) a ON true
  LEFT JOIN LATERAL (SELECT l.* FROM sync_log l
					  WHERE l.kind = 'pull' AND l.machine_id = m.id
						AND l.status IN ('applied', 'partial', 'unchanged')
					  ORDER BY l.started_at DESC, l.id DESC LIMIT 1) s ON true
  LEFT JOIN sync_pull_state st ON st.machine_id = m.id
 WHERE m.id IS DISTINCT FROM i.machine_id;

--
-- sync_init says what this server now is: its machine, range, and the
-- tables whose sequences it confined.
--
DROP FUNCTION sync_init(bigint);
CREATE FUNCTION sync_init(machine_id bigint,
						  OUT machine_id bigint, OUT hostname text, OUT sync_url text,
						  OUT sync_start bigint, OUT sync_end bigint, OUT tables integer,
						  OUT initialized_at timestamptz)
RETURNS record
AS 'MODULE_PATHNAME', 'sync_init'
LANGUAGE C STRICT VOLATILE;
REVOKE ALL ON FUNCTION sync_init(bigint) FROM PUBLIC;

--
-- When the publisher made the state applied here, and the federation at a
-- glance.
--
ALTER TABLE sync_pull_state ADD COLUMN published_at timestamptz;

--
-- The federation at a glance: one row per known machine, this server's
-- own (its dumps) included.
--
CREATE VIEW sync_federation AS
SELECT m.id AS machine_id,
	   m.hostname,
	   m.sync_url,
	   m.id IS NOT DISTINCT FROM i.machine_id AS this_server,
	   CASE WHEN m.id IS NOT DISTINCT FROM i.machine_id THEN p.started_at
			ELSE st.published_at END AS published_at,
	   a.started_at AS last_attempt,
	   a.status AS last_status,
	   s.started_at AS last_success,
	   CASE WHEN m.id IS DISTINCT FROM i.machine_id
			THEN pg_catalog.now() - st.published_at END AS lag,
	   f.failures,
	   CASE WHEN m.id IS NOT DISTINCT FROM i.machine_id THEN s.rows
			ELSE (SELECT pg_catalog.sum((d.value ->> 'rows')::bigint)
					FROM pg_catalog.jsonb_each(st.digests) d) END AS rows,
	   j.next_run,
	   a.message AS last_message
  FROM sync_machine m
  LEFT JOIN sync_instance i ON true
  LEFT JOIN sync_pull_state st ON st.machine_id = m.id
  CROSS JOIN LATERAL (SELECT CASE WHEN m.id IS NOT DISTINCT FROM i.machine_id
								  THEN 'dump' ELSE 'pull' END AS kind) k
  LEFT JOIN LATERAL (SELECT l.* FROM sync_log l
					  WHERE l.machine_id = m.id AND l.kind = k.kind
						AND l.status NOT IN ('skipped', 'dry run')
					  ORDER BY l.started_at DESC, l.id DESC LIMIT 1) a ON true
  LEFT JOIN LATERAL (SELECT l.* FROM sync_log l
					  WHERE l.machine_id = m.id AND l.kind = k.kind
						AND l.status IN ('ok', 'applied', 'partial', 'unchanged')
					  ORDER BY l.started_at DESC, l.id DESC LIMIT 1) s ON true
  LEFT JOIN LATERAL (SELECT l.started_at FROM sync_log l
					  WHERE l.machine_id = m.id AND l.kind = 'dump' AND l.status = 'ok'
						AND l.details ->> 'published' IS DISTINCT FROM 'unchanged'
					  ORDER BY l.started_at DESC, l.id DESC LIMIT 1) p ON k.kind = 'dump'
  LEFT JOIN LATERAL (SELECT pg_catalog.count(*) AS failures FROM sync_log l
					  WHERE l.machine_id = m.id AND l.kind = k.kind
						AND l.status IN ('failed', 'timeout')
						AND l.started_at > coalesce(s.started_at, '-infinity')) f ON true
  LEFT JOIN LATERAL (SELECT pg_catalog.min(jb.next_run) AS next_run FROM sync_job jb
					  WHERE jb.enabled AND jb.kind = k.kind
						AND jb.remote IS NOT DISTINCT FROM CASE WHEN k.kind = 'pull' THEN m.id END) j ON true;

COMMENT ON VIEW sync_federation IS 'every known machine: what is published, applied, how late, how it fails, when next';

REVOKE ALL ON TABLE sync_federation FROM PUBLIC;

--
-- Progress with totals.
--
CREATE OR REPLACE VIEW sync_progress AS
SELECT a.pid,
	   (pg_catalog.regexp_match(a.query, 'machine=(-?[0-9]+)'))[1]::bigint AS machine_id,
	   (pg_catalog.regexp_match(a.query, 'phase=([a-z]+)'))[1] AS phase,
	   NULLIF((pg_catalog.regexp_match(a.query, 'table=(.*)$'))[1], '-') AS table_name,
	   (pg_catalog.regexp_match(a.query, ' bytes=([0-9]+)'))[1]::bigint AS bytes,
	   (pg_catalog.regexp_match(a.query, ' rows=([0-9]+)'))[1]::bigint AS rows,
	   a.query_start AS started_at,
	   (pg_catalog.regexp_match(a.query, ' bytes_total=([0-9]+)'))[1]::bigint AS bytes_total,
	   (pg_catalog.regexp_match(a.query, ' rows_total=([0-9]+)'))[1]::bigint AS rows_total
  FROM pg_catalog.pg_stat_activity a
 WHERE a.state = 'active' AND a.query LIKE 'sync_pull machine=%';

--
-- sync_pull gains a dry run, a subset of tables, and a source to read from
-- in place of the machine's sync_url.
--
DROP FUNCTION sync_pull(bigint, boolean);
DROP FUNCTION sync_pull(text, boolean);

CREATE FUNCTION sync_pull(remote bigint,
						  "full" boolean DEFAULT false,
						  dry_run boolean DEFAULT false,
						  tables regclass[] DEFAULT NULL,
						  exclude regclass[] DEFAULT NULL,
						  source text DEFAULT NULL,
						  OUT machine_id bigint, OUT status text,
						  OUT tables integer, OUT inserted bigint,
						  OUT updated bigint, OUT deleted bigint,
						  OUT bytes bigint, OUT duration interval,
						  OUT local_changed bigint)
RETURNS record
AS 'MODULE_PATHNAME', 'sync_pull_id'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;

CREATE FUNCTION sync_pull(remote text,
						  "full" boolean DEFAULT false,
						  dry_run boolean DEFAULT false,
						  tables regclass[] DEFAULT NULL,
						  exclude regclass[] DEFAULT NULL,
						  source text DEFAULT NULL,
						  OUT machine_id bigint, OUT status text,
						  OUT tables integer, OUT inserted bigint,
						  OUT updated bigint, OUT deleted bigint,
						  OUT bytes bigint, OUT duration interval,
						  OUT local_changed bigint)
RETURNS record
AS 'MODULE_PATHNAME', 'sync_pull_name'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;

REVOKE ALL ON FUNCTION sync_pull(bigint, boolean, boolean, regclass[], regclass[], text),
	sync_pull(text, boolean, boolean, regclass[], regclass[], text) FROM PUBLIC;

--
-- Push: a machine nobody can reach uploads its files to a hub.
--
ALTER TABLE sync_log DROP CONSTRAINT sync_log_kind_check,
	ADD CONSTRAINT sync_log_kind_check CHECK (kind IN ('dump', 'pull', 'verify', 'push'));

--
-- Where this machine uploads its files (sync_push): a hub's inbox.  Holds
-- credentials: never readable by PUBLIC, written and read by the
-- extension's functions as the table's owner.
--
CREATE TABLE sync_push_target (
	singleton		boolean PRIMARY KEY DEFAULT true,
	url				text NOT NULL,
	ca_file			text,
	username		text,
	password		text,
	proxy			text,
	updated_at		timestamptz NOT NULL DEFAULT now(),
	CONSTRAINT sync_push_target_singleton_check CHECK (singleton)
);

COMMENT ON TABLE sync_push_target IS 'where sync_push uploads this machine''s files; holds credentials';

CREATE FUNCTION sync_set_push(url text,
							  ca_file text DEFAULT NULL,
							  username text DEFAULT NULL,
							  password text DEFAULT NULL,
							  proxy text DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'sync_set_push'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;

CREATE FUNCTION sync_push(OUT url text, OUT files integer, OUT bytes bigint,
						  OUT duration interval)
RETURNS record
AS 'MODULE_PATHNAME', 'sync_push'
LANGUAGE C STRICT VOLATILE;

SELECT pg_catalog.pg_extension_config_dump('sync_push_target', '');

REVOKE ALL ON TABLE sync_push_target FROM PUBLIC;
REVOKE ALL ON FUNCTION sync_set_push(text, text, text, text, text), sync_push() FROM PUBLIC;
