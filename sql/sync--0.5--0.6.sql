-- Upgrade sync from 0.5 to 0.6: operations (scheduled dumps, named jobs,
-- diagnosable failures).
\echo Use "ALTER EXTENSION sync UPDATE TO '0.6'" to load this file. \quit

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
								   name text DEFAULT NULL)
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
	sync_schedule_dump(interval, integer, boolean, boolean, timestamptz, timestamptz, integer, interval, boolean, text),
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
					  WHERE l.kind = 'pull' AND l.machine_id = m.id
					  ORDER BY l.started_at DESC, l.id DESC LIMIT 1) a ON true
  LEFT JOIN LATERAL (SELECT l.* FROM sync_log l
					  WHERE l.kind = 'pull' AND l.machine_id = m.id
						AND l.status IN ('applied', 'partial', 'unchanged')
					  ORDER BY l.started_at DESC, l.id DESC LIMIT 1) s ON true
  LEFT JOIN sync_pull_state st ON st.machine_id = m.id
 WHERE m.id IS DISTINCT FROM i.machine_id;
