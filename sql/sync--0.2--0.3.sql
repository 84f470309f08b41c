/* sync--0.2--0.3.sql: upgrade the sync extension from 0.2 to 0.3 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION sync UPDATE TO '0.3'" to load this file. \quit

--
-- Where a registry entry came from: NULL, registered here; otherwise the
-- machine whose archive described it (the registry authority's).
--
ALTER TABLE sync_machine ADD COLUMN learned_from bigint;
COMMENT ON COLUMN sync_machine.learned_from IS 'NULL: registered here; else the machine whose archive described it';

--
-- The registry and the identity change only through sync's functions (or a
-- superuser): a range moved behind sync's back would leave the sequences
-- confined to the old one.
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
-- The sequences that feed a key, found by reading its default expression
-- as PostgreSQL stores it (nextval of a name given as text included), and
-- through serial and identity ownership.
--
CREATE OR REPLACE FUNCTION sync_key_sequences(tbl regclass, key_column name)
RETURNS SETOF regclass
AS 'MODULE_PATHNAME', 'sync_key_sequences'
LANGUAGE C STABLE STRICT;

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
-- A proxy shown without its credentials: rebuilt from what libcurl parses.
--
CREATE FUNCTION sync_proxy_display(proxy text)
RETURNS text
AS 'MODULE_PATHNAME', 'sync_proxy_display'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE OR REPLACE VIEW sync_remote_options AS
SELECT machine_id, ca_file, username, password IS NOT NULL AS has_password,
	   sync_proxy_display(proxy) AS proxy,
	   url AS credentials_for, updated_at
  FROM sync_remote;

REVOKE ALL ON FUNCTION sync_guard_identity(), sync_reconfine_keys(),
	sync_proxy_display(text) FROM PUBLIC;

--
-- Grants from 0.2's documentation that are no longer needed: sync writes the
-- registry and the identity itself.  Roles that hold them are named (the
-- guard trigger stops them either way).
--
DO $$
DECLARE
	holders text;
BEGIN
	SELECT pg_catalog.string_agg(DISTINCT r.rolname::text, ', ')
	  INTO holders
	  FROM pg_catalog.pg_class c
	 CROSS JOIN LATERAL pg_catalog.aclexplode(c.relacl) a
	  JOIN pg_catalog.pg_roles r ON r.oid = a.grantee
	 WHERE c.oid IN ('@extschema@.sync_machine'::pg_catalog.regclass,
					 '@extschema@.sync_instance'::pg_catalog.regclass)
	   AND a.privilege_type IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE')
	   AND a.grantee <> c.relowner AND NOT r.rolsuper;
	IF holders IS NOT NULL THEN
		RAISE WARNING 'roles % may write sync_machine or sync_instance directly', holders
			USING DETAIL = 'Since 0.3 sync writes the registry and the identity itself, and a trigger stops other writers.',
				  HINT = 'Revoke INSERT, UPDATE, DELETE and TRUNCATE on them from these roles; see doc/privileges.md.';
	END IF;
END
$$;
