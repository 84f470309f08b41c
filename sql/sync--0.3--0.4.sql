/* sync--0.3--0.4.sql: upgrade the sync extension from 0.3 to 0.4 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION sync UPDATE TO '0.4'" to load this file. \quit

--
-- What a table registration says of other machines' rows here.
--
ALTER TABLE sync_table ADD COLUMN foreign_rows text NOT NULL DEFAULT 'read-only';
ALTER TABLE sync_table ADD CONSTRAINT sync_table_foreign_rows_check
	CHECK (foreign_rows IN ('read-only', 'writable'));

--
-- Rows this server's own triggers changed during a pull; verifications.
--
ALTER TABLE sync_log ADD COLUMN local_changed bigint;
ALTER TABLE sync_log DROP CONSTRAINT sync_log_kind_check;
ALTER TABLE sync_log ADD CONSTRAINT sync_log_kind_check CHECK (kind IN ('dump', 'pull', 'verify'));

-- the view reads every column of sync_log: it reads the new one too
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
	   st.applied_at
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


--
-- The functions whose parameters changed are dropped and created again:
-- a role granted the old one is named, with the grant to make.
--
DO $$
DECLARE
	grantee text;
	old text;
	new text;
BEGIN
	FOR old, new IN VALUES
		('sync_add_table(regclass, name, text, jsonb, name, regclass[], text)',
		 'sync_add_table(regclass, name, text, jsonb, name, regclass[], text, text)'),
		('sync_pull(bigint)', 'sync_pull(bigint, boolean)'),
		('sync_pull(text)', 'sync_pull(text, boolean)')
	LOOP
		FOR grantee IN
			SELECT DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC'
								 ELSE pg_catalog.quote_ident(r.rolname) END
			  FROM pg_catalog.pg_proc p
			 CROSS JOIN LATERAL pg_catalog.aclexplode(p.proacl) a
			  LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.grantee
			 WHERE p.oid = ('@extschema@.' || old)::pg_catalog.regprocedure
			   AND a.privilege_type = 'EXECUTE' AND a.grantee <> p.proowner
		LOOP
			RAISE WARNING 'role % may no longer run %', grantee, old
				USING DETAIL = 'The function has new parameters; the grant on the old one was dropped with it.',
					  HINT = pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %s;',
											   '@extschema@.' || new, grantee);
		END LOOP;
	END LOOP;
END
$$;

DROP FUNCTION sync_add_table(regclass, name, text, jsonb, name, regclass[], text);
DROP FUNCTION sync_pull(bigint);
DROP FUNCTION sync_pull(text);

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

CREATE FUNCTION sync_pull(remote bigint,
						  "full" boolean DEFAULT false,
						  OUT machine_id bigint, OUT status text,
						  OUT tables integer, OUT inserted bigint,
						  OUT updated bigint, OUT deleted bigint,
						  OUT bytes bigint, OUT duration interval,
						  OUT local_changed bigint)
RETURNS record
AS 'MODULE_PATHNAME', 'sync_pull_id'
LANGUAGE C STRICT VOLATILE;

CREATE FUNCTION sync_pull(remote text,
						  "full" boolean DEFAULT false,
						  OUT machine_id bigint, OUT status text,
						  OUT tables integer, OUT inserted bigint,
						  OUT updated bigint, OUT deleted bigint,
						  OUT bytes bigint, OUT duration interval,
						  OUT local_changed bigint)
RETURNS record
AS 'MODULE_PATHNAME', 'sync_pull_name'
LANGUAGE C STRICT VOLATILE;

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
-- The guard, on every table registered already.
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

CREATE TABLE sync_written (
	tbl				regclass NOT NULL,
	machine_id		bigint NOT NULL REFERENCES sync_machine (id) ON DELETE CASCADE,
	written_at		timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (tbl, machine_id)
);

COMMENT ON TABLE sync_written IS 'writable tables in which other machines'' rows were written here since their last pull';
SELECT pg_catalog.pg_extension_config_dump('sync_written', '');

DO $$
DECLARE
	t regclass;
	k name;
BEGIN
	FOR t, k IN SELECT tbl, key_column FROM @extschema@.sync_table ORDER BY tbl::text
	LOOP
		EXECUTE pg_catalog.format('ALTER TABLE %s ADD CONSTRAINT zz_sync_guard'
								  ' CHECK (@extschema@.sync_guard_key(%L::pg_catalog.regclass, %I))%s NOT VALID',
								  t, t::text, k,
								  CASE WHEN (SELECT relkind FROM pg_catalog.pg_class WHERE oid = t) = 'p'
									   THEN '' ELSE ' NO INHERIT' END);
		IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger
						WHERE tgrelid = t AND tgname = 'zz_sync_guard') THEN
			EXECUTE pg_catalog.format('CREATE TRIGGER zz_sync_guard BEFORE UPDATE OR DELETE ON %s'
									  ' FOR EACH ROW EXECUTE FUNCTION @extschema@.sync_guard_rows()', t);
		END IF;
		IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger
						WHERE tgrelid = t AND tgname = 'zz_sync_guard_truncate') THEN
			EXECUTE pg_catalog.format('CREATE TRIGGER zz_sync_guard_truncate BEFORE TRUNCATE ON %s'
									  ' FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.sync_guard_truncate()', t);
		END IF;
	END LOOP;
END
$$;

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

REVOKE ALL ON TABLE sync_written FROM PUBLIC;
REVOKE ALL ON FUNCTION
	sync_add_table(regclass, name, text, jsonb, name, regclass[], text, text),
	sync_pull(bigint, boolean),
	sync_pull(text, boolean),
	sync_verify(bigint),
	sync_verify(text),
	sync_keep_guards(),
	sync_guard_registration()
	FROM PUBLIC;
