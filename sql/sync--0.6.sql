/* sync--0.6.sql: objects of the sync extension, version 0.6 */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION sync" to load this file. \quit

--
-- Machine registry: every server of the federation, with the key range it
-- owns.  Ranges never overlap; sync_register_machine() reports a collision
-- by name, the exclusion constraint is the backstop for direct writes.
--
CREATE TABLE sync_machine (
	id				bigint PRIMARY KEY,
	hostname		text NOT NULL,
	sync_url		text,
	sync_contact	text,
	sync_start		bigint NOT NULL,
	sync_end		bigint NOT NULL,
	created_at		timestamptz NOT NULL DEFAULT now(),
	updated_at		timestamptz NOT NULL DEFAULT now(),
	learned_from	bigint,
	CONSTRAINT sync_machine_id_check CHECK (id >= 0),
	CONSTRAINT sync_machine_hostname_key UNIQUE (hostname),
	CONSTRAINT sync_machine_hostname_check CHECK (hostname <> ''),
	CONSTRAINT sync_machine_range_check CHECK (sync_start <= sync_end),
	CONSTRAINT sync_machine_range_excl
		EXCLUDE USING gist (int8range(sync_start, sync_end, '[]') WITH &&)
);

COMMENT ON TABLE sync_machine IS 'machines of the federation and the key range each owns';
COMMENT ON COLUMN sync_machine.learned_from IS 'NULL: registered here; else the machine whose archive described it';

--
-- Local identity: which registered machine this server is.  At most one row.
--
CREATE TABLE sync_instance (
	singleton		boolean PRIMARY KEY DEFAULT true,
	machine_id		bigint NOT NULL REFERENCES sync_machine (id),
	initialized_at	timestamptz NOT NULL DEFAULT now(),
	CONSTRAINT sync_instance_singleton_check CHECK (singleton)
);

COMMENT ON TABLE sync_instance IS 'the machine this server is';

--
-- The registry and the identity change only through sync's functions (or a
-- superuser, restoring a dump): a range moved behind sync's back would leave
-- the sequences confined to the old one.
--
CREATE FUNCTION sync_guard_identity()
RETURNS trigger
AS 'MODULE_PATHNAME', 'sync_guard_identity'
LANGUAGE C;

CREATE TRIGGER sync_machine_guard
	BEFORE INSERT OR UPDATE OR DELETE ON sync_machine
	FOR EACH ROW EXECUTE FUNCTION sync_guard_identity();
CREATE TRIGGER sync_machine_guard_truncate
	BEFORE TRUNCATE ON sync_machine
	FOR EACH STATEMENT EXECUTE FUNCTION sync_guard_identity();
CREATE TRIGGER sync_instance_guard
	BEFORE INSERT OR UPDATE OR DELETE ON sync_instance
	FOR EACH ROW EXECUTE FUNCTION sync_guard_identity();
CREATE TRIGGER sync_instance_guard_truncate
	BEFORE TRUNCATE ON sync_instance
	FOR EACH STATEMENT EXECUTE FUNCTION sync_guard_identity();

--
-- Registered tables.  The key is the table's single-column primary key, or
-- (key_declared) a NOT NULL integer column the DBA named because the table
-- has none.  depends_on: tables whose rows this table's rows need beyond
-- foreign keys.  on_conflict: what a pull does with an incoming row whose
-- unique values another machine's row holds.
--
CREATE TABLE sync_table (
	tbl				regclass PRIMARY KEY,
	key_column		name NOT NULL,
	level_column	name,
	filter			text,
	anonymize		jsonb,
	added_at		timestamptz NOT NULL DEFAULT now(),
	updated_at		timestamptz NOT NULL DEFAULT now(),
	key_declared	boolean NOT NULL DEFAULT false,
	depends_on		regclass[] NOT NULL DEFAULT '{}',
	on_conflict		text NOT NULL DEFAULT 'error',
	foreign_rows	text NOT NULL DEFAULT 'read-only',
	CONSTRAINT sync_table_on_conflict_check CHECK (on_conflict IN ('error', 'skip')),
	CONSTRAINT sync_table_foreign_rows_check CHECK (foreign_rows IN ('read-only', 'writable'))
);

COMMENT ON TABLE sync_table IS 'tables that take part in sync';

-- pg_dump keeps the configuration with the database.
SELECT pg_catalog.pg_extension_config_dump('sync_machine', '');
SELECT pg_catalog.pg_extension_config_dump('sync_instance', '');
SELECT pg_catalog.pg_extension_config_dump('sync_table', '');


--
-- Functions.
--
CREATE FUNCTION sync_register_machine(id bigint,
									  hostname text,
									  sync_url text DEFAULT NULL,
									  sync_contact text DEFAULT NULL,
									  sync_start bigint DEFAULT NULL,
									  sync_end bigint DEFAULT NULL)
RETURNS sync_machine
AS 'MODULE_PATHNAME', 'sync_register_machine'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;

CREATE FUNCTION sync_range(machine_id bigint,
						   OUT sync_start bigint, OUT sync_end bigint)
RETURNS record
AS 'MODULE_PATHNAME', 'sync_range'
LANGUAGE C STRICT STABLE;

CREATE FUNCTION sync_init(machine_id bigint,
						  OUT machine_id bigint, OUT hostname text, OUT sync_url text,
						  OUT sync_start bigint, OUT sync_end bigint, OUT tables integer,
						  OUT initialized_at timestamptz)
RETURNS record
AS 'MODULE_PATHNAME', 'sync_init'
LANGUAGE C STRICT VOLATILE;

CREATE FUNCTION sync_add_table(tbl regclass,
							   level_column name DEFAULT NULL,
							   filter text DEFAULT NULL,
							   anonymize jsonb DEFAULT NULL,
							   key_column name DEFAULT NULL,
							   depends_on regclass[] DEFAULT NULL,
							   on_conflict text DEFAULT 'error',
							   foreign_rows text DEFAULT 'read-only')
RETURNS sync_table
AS 'MODULE_PATHNAME', 'sync_add_table'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;

CREATE FUNCTION sync_remove_table(tbl regclass)
RETURNS sync_table
AS 'MODULE_PATHNAME', 'sync_remove_table'
LANGUAGE C STRICT VOLATILE;

--
-- The guard of every registered table: only a pull of machine N writes N's
-- rows here (see doc/ownership.md).  sync_add_table installs a CHECK
-- constraint calling sync_guard_key (new rows and row versions) and two
-- triggers (rows written over or deleted, TRUNCATE); sync_remove_table
-- removes them; the event triggers refuse DDL that would drop, disable or
-- change them while the table is registered.  PUBLIC may run these
-- functions: every role writing a registered table runs the CHECK, and
-- whoever registers a table creates its triggers.
--
CREATE FUNCTION sync_guard_rows()
RETURNS trigger
AS 'MODULE_PATHNAME', 'sync_guard_rows'
LANGUAGE C;

CREATE FUNCTION sync_guard_truncate()
RETURNS trigger
AS 'MODULE_PATHNAME', 'sync_guard_truncate'
LANGUAGE C;

CREATE FUNCTION sync_guard_key(tbl regclass, key bigint)
RETURNS boolean
AS 'MODULE_PATHNAME', 'sync_guard_key'
LANGUAGE C STRICT VOLATILE;

--
-- A registration (and so what the guard lets through) changes only by the
-- table's owner, as sync_add_table requires, or a superuser; every change
-- makes the guard of every session read the registrations again.
--
CREATE FUNCTION sync_guard_registration()
RETURNS trigger
AS 'MODULE_PATHNAME', 'sync_guard_registration'
LANGUAGE C;

CREATE TRIGGER sync_table_guard
	BEFORE INSERT OR UPDATE OR DELETE ON sync_table
	FOR EACH ROW EXECUTE FUNCTION sync_guard_registration();

--
-- Rows of other machines written here in tables registered with
-- foreign_rows 'writable': the next pull of that machine merges the table
-- again, whatever its checksum, and the owner's version wins.
--
CREATE TABLE sync_written (
	tbl				regclass NOT NULL,
	machine_id		bigint NOT NULL REFERENCES sync_machine (id) ON DELETE CASCADE,
	written_at		timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (tbl, machine_id)
);

COMMENT ON TABLE sync_written IS 'writable tables in which other machines'' rows were written here since their last pull';
SELECT pg_catalog.pg_extension_config_dump('sync_written', '');

-- The sequences that feed a table's key column, found by reading its
-- default expression as PostgreSQL stores it (nextval of a name given as
-- text included), and through serial and identity ownership.
CREATE FUNCTION sync_key_sequences(tbl regclass, key_column name)
RETURNS SETOF regclass
AS 'MODULE_PATHNAME', 'sync_key_sequences'
LANGUAGE C STABLE STRICT;

--
-- Per sequence feeding a registered table: its bounds, the local range,
-- the last value handed out and how much of the range is used; last_value
-- is NULL for a role that may not read the sequence, as in pg_sequences.
--
CREATE VIEW sync_sequence_usage AS
SELECT t.tbl AS table_name,
	   t.key_column,
	   s.seqrelid::pg_catalog.regclass AS sequence_name,
	   m.id AS machine_id,
	   m.sync_start AS range_start,
	   m.sync_end AS range_end,
	   s.seqmin AS sequence_min,
	   s.seqmax AS sequence_max,
	   (s.seqmin = m.sync_start AND s.seqmax = m.sync_end
		AND NOT s.seqcycle AND s.seqincrement > 0) AS confined,
	   v.last_value,
	   CASE WHEN v.readable THEN
		   pg_catalog.round(100.0 * (COALESCE(v.last_value, s.seqmin - 1) - s.seqmin + 1)
							/ (s.seqmax::numeric - s.seqmin + 1), 2)
	   END AS percent_used
  FROM sync_table t
 CROSS JOIN LATERAL sync_key_sequences(t.tbl, t.key_column) AS ks(seq)
  JOIN pg_catalog.pg_sequence s ON s.seqrelid = ks.seq
 CROSS JOIN LATERAL (SELECT p.readable,
		CASE WHEN p.readable THEN pg_catalog.pg_sequence_last_value(s.seqrelid) END AS last_value
		FROM (SELECT pg_catalog.has_sequence_privilege(s.seqrelid, 'SELECT,USAGE') AS readable) p) v
  LEFT JOIN sync_instance inst ON true
  LEFT JOIN sync_machine m ON m.id = inst.machine_id;

COMMENT ON VIEW sync_sequence_usage IS 'sequences feeding registered tables and how much of their range is used';

--
-- A dropped table is no longer registered, nor a dependency of another.
-- SECURITY DEFINER so that a role that may drop a table but not write
-- sync_table is not stopped.
--
CREATE FUNCTION sync_forget_dropped_tables()
RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	dropped pg_catalog.oid;
BEGIN
	FOR dropped IN SELECT d.objid FROM pg_catalog.pg_event_trigger_dropped_objects() d
					WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
					  AND d.objsubid = 0
	LOOP
		DELETE FROM @extschema@.sync_table t WHERE t.tbl::pg_catalog.oid = dropped;
		UPDATE @extschema@.sync_table t
		   SET depends_on = pg_catalog.array_remove(t.depends_on, dropped::pg_catalog.regclass)
		 WHERE dropped::pg_catalog.regclass = ANY (t.depends_on);
	END LOOP;
END
$$;

CREATE EVENT TRIGGER sync_forget_dropped_tables ON sql_drop
	EXECUTE FUNCTION sync_forget_dropped_tables();

--
-- A renamed primary key column is followed in sync_table (the C code reads
-- the key from the primary key itself).  A declared key is a name: renaming
-- it means registering the table again.
--
CREATE FUNCTION sync_follow_renamed_keys()
RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	UPDATE @extschema@.sync_table t
	   SET key_column = a.attname, updated_at = now()
	  FROM pg_catalog.pg_index i
	  JOIN pg_catalog.pg_attribute a
		ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
	 WHERE i.indrelid = t.tbl AND i.indisprimary
	   AND NOT t.key_declared AND t.key_column <> a.attname;
END
$$;

CREATE EVENT TRIGGER sync_follow_renamed_keys ON ddl_command_end
	WHEN TAG IN ('ALTER TABLE')
	EXECUTE FUNCTION sync_follow_renamed_keys();

--
-- After ALTER TABLE or ALTER SEQUENCE, the sequences of the registered
-- tables concerned are confined again; a new key default that sync cannot
-- confine is refused.  SECURITY DEFINER: the role altering a table need not
-- own the sequences its key uses.  (Event triggers fire in the order of
-- their names: this one after sync_follow_renamed_keys.)
--
CREATE FUNCTION sync_reconfine_keys()
RETURNS event_trigger
AS 'MODULE_PATHNAME', 'sync_reconfine_keys'
LANGUAGE C SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

CREATE EVENT TRIGGER sync_reconfine_keys ON ddl_command_end
	WHEN TAG IN ('ALTER TABLE', 'ALTER SEQUENCE')
	EXECUTE FUNCTION sync_reconfine_keys();

--
-- The guard stays on every registered table: DDL that would drop, disable,
-- replace or rename its triggers is refused until the table is unregistered
-- with sync_remove_table().  SECURITY DEFINER: it reads sync_table.
--
CREATE FUNCTION sync_keep_guards()
RETURNS event_trigger
AS 'MODULE_PATHNAME', 'sync_keep_guards'
LANGUAGE C SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

CREATE EVENT TRIGGER sync_keep_guards ON ddl_command_end
	WHEN TAG IN ('ALTER TABLE', 'CREATE TRIGGER', 'ALTER TRIGGER')
	EXECUTE FUNCTION sync_keep_guards();

CREATE EVENT TRIGGER sync_keep_guards_dropped ON sql_drop
	WHEN TAG IN ('DROP TRIGGER', 'ALTER TABLE')
	EXECUTE FUNCTION sync_keep_guards();

--
-- Every dump and pull, successful or not.  Rows are written in a
-- transaction of their own, so a failure is recorded even though the
-- failed operation rolls back.
--
CREATE TABLE sync_log (
	id				bigserial PRIMARY KEY,
	kind			text NOT NULL,
	machine_id		bigint,
	job_id			bigint,
	started_at		timestamptz NOT NULL,
	finished_at		timestamptz,
	status			text NOT NULL,
	tables			integer,
	rows			bigint,
	excluded		bigint,
	inserted		bigint,
	updated			bigint,
	deleted			bigint,
	bytes			bigint,
	message			text,
	details			jsonb,
	local_changed	bigint,
	sqlstate		text,			-- of a failure: what its error said
	detail			text,
	hint			text,
	context			text,
	CONSTRAINT sync_log_kind_check CHECK (kind IN ('dump', 'pull', 'verify', 'push'))
);

CREATE INDEX sync_log_started_at_idx ON sync_log (started_at);
CREATE INDEX sync_log_machine_idx ON sync_log (machine_id, started_at);

COMMENT ON TABLE sync_log IS 'every dump and pull, successful or not';
SELECT pg_catalog.pg_extension_config_dump('sync_log', '');
SELECT pg_catalog.pg_extension_config_dump('sync_log_id_seq', '');

--
-- sync_dump: publish this server's own rows.
--
CREATE FUNCTION sync_dump(level integer DEFAULT 3,
						  anonymize boolean DEFAULT true,
						  unchecked boolean DEFAULT false,
						  "full" boolean DEFAULT false,
						  OUT path text, OUT tables integer, OUT rows bigint,
						  OUT excluded bigint, OUT bytes bigint,
						  OUT sha256 text, OUT duration interval,
						  OUT kind text, OUT seq bigint,
						  OUT changed bigint, OUT deleted bigint)
RETURNS record
AS 'MODULE_PATHNAME', 'sync_dump'
LANGUAGE C STRICT VOLATILE;

--
-- How to reach other machines: a CA file, HTTP credentials, a proxy.  Never
-- readable by PUBLIC, never copied into sync_log or a dump; written and read
-- by the extension's functions as the table's owner.
--
CREATE TABLE sync_remote (
	machine_id		bigint PRIMARY KEY REFERENCES sync_machine (id) ON DELETE CASCADE,
	ca_file			text,
	username		text,
	password		text,
	proxy			text,
	url				text,
	updated_at		timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE sync_remote IS 'how to reach other machines; holds credentials';
COMMENT ON COLUMN sync_remote.url IS 'the sync_url the credentials were set for; they are sent nowhere else';

CREATE FUNCTION sync_set_remote(machine_id bigint,
								ca_file text DEFAULT NULL,
								username text DEFAULT NULL,
								password text DEFAULT NULL,
								proxy text DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'sync_set_remote'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;

-- A proxy shown without its credentials: rebuilt from what libcurl parses.
CREATE FUNCTION sync_proxy_display(proxy text)
RETURNS text
AS 'MODULE_PATHNAME', 'sync_proxy_display'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- what is set, without the password
CREATE VIEW sync_remote_options AS
SELECT machine_id, ca_file, username, password IS NOT NULL AS has_password,
	   sync_proxy_display(proxy) AS proxy,
	   url AS credentials_for, updated_at
  FROM sync_remote;

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

--
-- What the last successful pull of each machine applied, so that the next
-- one skips an unchanged archive, and unchanged tables.
--
CREATE TABLE sync_pull_state (
	machine_id		bigint PRIMARY KEY REFERENCES sync_machine (id) ON DELETE CASCADE,
	archive_sha256	text,			-- NULL: some table was not applied whole
	table_sha256	jsonb NOT NULL,
	applied_at		timestamptz NOT NULL,
	chain			text,			-- the publisher's chain of states, if it has one
	seq				bigint,			-- the state applied; NULL: the next pull takes the full archive
	digests			jsonb,			-- per table: the digest and count of the rows applied
	published_at	timestamptz		-- when the publisher made the state applied
);

COMMENT ON TABLE sync_pull_state IS 'what the last successful pull of each machine applied';

--
-- sync_pull: fetch what a machine published and merge it, all or nothing.
--
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

--
-- sync_verify: fetch what a machine published and compare it with the copy
-- here, table by table, changing nothing.
--
CREATE FUNCTION sync_verify(remote bigint,
							OUT tbl regclass, OUT missing bigint,
							OUT extra bigint, OUT changed bigint,
							OUT first_missing bigint[], OUT first_extra bigint[],
							OUT first_changed bigint[])
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'sync_verify_id'
LANGUAGE C STRICT VOLATILE;

CREATE FUNCTION sync_verify(remote text,
							OUT tbl regclass, OUT missing bigint,
							OUT extra bigint, OUT changed bigint,
							OUT first_missing bigint[], OUT first_extra bigint[],
							OUT first_changed bigint[])
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'sync_verify_name'
LANGUAGE C STRICT VOLATILE;

--
-- Per remote machine: the last pull attempted, the last that succeeded.
--
CREATE VIEW sync_status AS
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

COMMENT ON VIEW sync_status IS 'per remote machine, the last pull attempted and the last that succeeded';

--
-- Pulls under way: what each is doing.
--
CREATE VIEW sync_progress AS
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

COMMENT ON VIEW sync_progress IS 'pulls under way and their phase';

--
-- Scheduled pulls and dumps (with shared_preload_libraries = 'sync').
--
CREATE TABLE sync_job (
	id				bigserial PRIMARY KEY,
	remote			bigint REFERENCES sync_machine (id) ON DELETE CASCADE,
	every			interval NOT NULL,
	start_at		timestamptz NOT NULL,
	end_at			timestamptz,
	max_runs		integer,
	timeout			interval NOT NULL,
	enabled			boolean NOT NULL,
	owner			name NOT NULL DEFAULT current_user,
	next_run		timestamptz NOT NULL,
	runs			integer NOT NULL DEFAULT 0,
	failures		integer NOT NULL DEFAULT 0,
	last_run		timestamptz,
	last_status		text,
	running_pid		integer,
	running_since	timestamptz,
	created_at		timestamptz NOT NULL DEFAULT now(),
	kind			text NOT NULL DEFAULT 'pull',
	name			text,
	level			integer,
	anonymize		boolean,
	unchecked		boolean,
	push			boolean NOT NULL DEFAULT false,
	CONSTRAINT sync_job_every_check CHECK (EXTRACT(EPOCH FROM every) >= 1),
	CONSTRAINT sync_job_timeout_check CHECK (EXTRACT(EPOCH FROM timeout) > 0),
	CONSTRAINT sync_job_times_check CHECK (isfinite(start_at) AND isfinite(next_run)),
	CONSTRAINT sync_job_max_runs_check CHECK (max_runs > 0),
	CONSTRAINT sync_job_end_check CHECK (end_at > start_at),
	CONSTRAINT sync_job_name_key UNIQUE (name),
	CONSTRAINT sync_job_kind_check CHECK (kind IN ('pull', 'dump')),
	CONSTRAINT sync_job_remote_check CHECK ((kind = 'pull') = (remote IS NOT NULL)),
	CONSTRAINT sync_job_dump_check
		CHECK (kind = 'pull' OR (level IS NOT NULL AND anonymize IS NOT NULL AND unchecked IS NOT NULL))
);

COMMENT ON TABLE sync_job IS 'scheduled pulls and dumps, their next run and the runs made';

-- A job runs as its owner: nobody may give a job an owner whose rights they
-- do not have, nor change or remove a job of such an owner.  A job whose
-- owner no longer exists is left to superusers.
CREATE FUNCTION sync_job_check_owner()
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

CREATE TRIGGER sync_job_owner_check
	BEFORE INSERT OR UPDATE OR DELETE ON sync_job
	FOR EACH ROW EXECUTE FUNCTION sync_job_check_owner();

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

SELECT pg_catalog.pg_extension_config_dump('sync_job', '');
SELECT pg_catalog.pg_extension_config_dump('sync_job_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('sync_remote', '');
SELECT pg_catalog.pg_extension_config_dump('sync_pull_state', '');

--
-- Nothing is open to PUBLIC; see doc/privileges.md for what to grant.
--
REVOKE ALL ON TABLE sync_machine, sync_instance, sync_table,
	sync_sequence_usage, sync_log, sync_remote, sync_remote_options,
	sync_pull_state, sync_status, sync_progress, sync_job, sync_written,
	sync_federation, sync_push_target FROM PUBLIC;
REVOKE ALL ON SEQUENCE sync_job_id_seq FROM PUBLIC;
REVOKE ALL ON SEQUENCE sync_log_id_seq FROM PUBLIC;
REVOKE ALL ON FUNCTION
	sync_register_machine(bigint, text, text, text, bigint, bigint),
	sync_range(bigint),
	sync_init(bigint),
	sync_add_table(regclass, name, text, jsonb, name, regclass[], text, text),
	sync_remove_table(regclass),
	sync_key_sequences(regclass, name),
	sync_forget_dropped_tables(),
	sync_follow_renamed_keys(),
	sync_guard_identity(),
	sync_reconfine_keys(),
	sync_proxy_display(text),
	sync_dump(integer, boolean, boolean, boolean),
	sync_set_remote(bigint, text, text, text, text),
	sync_set_push(text, text, text, text, text),
	sync_push(),
	sync_pull(bigint, boolean, boolean, regclass[], regclass[], text),
	sync_pull(text, boolean, boolean, regclass[], regclass[], text),
	sync_verify(bigint),
	sync_verify(text),
	sync_keep_guards(),
	sync_guard_registration(),
	sync_schedule(bigint, interval, timestamptz, timestamptz, integer, interval, boolean, text),
	sync_schedule(text, interval, timestamptz, timestamptz, integer, interval, boolean, text),
	sync_schedule_dump(interval, integer, boolean, boolean, timestamptz, timestamptz, integer, interval, boolean, text, boolean),
	sync_unschedule(bigint),
	sync_unschedule(text),
	sync_job_check_owner()
	FROM PUBLIC;

--
-- Writing files into the dump directory is what pg_write_server_files is
-- for: its members may publish dumps (they still need SELECT on the tables
-- they publish).
--
GRANT EXECUTE ON FUNCTION sync_dump(integer, boolean, boolean, boolean) TO pg_write_server_files;
GRANT SELECT ON TABLE sync_machine, sync_instance, sync_table TO pg_write_server_files;
