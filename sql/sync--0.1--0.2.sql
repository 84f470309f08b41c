/* sync--0.1--0.2.sql: from version 0.1 to 0.2 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION sync UPDATE TO '0.2'" to load this file. \quit

--
-- Registered tables: keys without a primary key, declared dependencies,
-- a policy for unique values another machine holds.
--
ALTER TABLE sync_table
	ADD COLUMN key_declared boolean NOT NULL DEFAULT false,
	ADD COLUMN depends_on regclass[] NOT NULL DEFAULT '{}',
	ADD COLUMN on_conflict text NOT NULL DEFAULT 'error',
	ADD CONSTRAINT sync_table_on_conflict_check CHECK (on_conflict IN ('error', 'skip'));

-- key_column now names the key for everyone (sync_sequence_usage reads it):
-- make sure it is the primary key's current name
UPDATE sync_table t
   SET key_column = a.attname
  FROM pg_catalog.pg_index i
  JOIN pg_catalog.pg_attribute a
	ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
 WHERE i.indrelid = t.tbl AND i.indisprimary AND t.key_column <> a.attname;

--
-- sync_add_table takes the new options.  A grant on the old function does
-- not carry over to the new one by itself (a grant made by this script
-- would count as the extension's own, and pg_dump would leave it out), so
-- the roles that had one are named, with the statement that restores it.
--
CREATE FUNCTION sync_add_table(tbl regclass,
							   level_column name DEFAULT NULL,
							   filter text DEFAULT NULL,
							   anonymize jsonb DEFAULT NULL,
							   key_column name DEFAULT NULL,
							   depends_on regclass[] DEFAULT NULL,
							   on_conflict text DEFAULT 'error')
RETURNS sync_table
AS 'MODULE_PATHNAME', 'sync_add_table'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;

REVOKE ALL ON FUNCTION sync_add_table(regclass, name, text, jsonb, name, regclass[], text) FROM PUBLIC;

DO $$
DECLARE
	grantee text;
BEGIN
	FOR grantee IN
		SELECT DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC'
							 ELSE pg_catalog.quote_ident(r.rolname) END
		  FROM pg_catalog.pg_proc p
		 CROSS JOIN LATERAL pg_catalog.aclexplode(p.proacl) a
		  LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.grantee
		 WHERE p.oid = '@extschema@.sync_add_table(regclass, name, text, jsonb)'::pg_catalog.regprocedure
		   AND a.privilege_type = 'EXECUTE' AND a.grantee <> p.proowner
	LOOP
		RAISE WARNING 'role % may no longer run sync_add_table', grantee
			USING DETAIL = 'sync_add_table has new parameters; the grant on the old function was dropped with it.',
				  HINT = pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %s;',
										   '@extschema@.sync_add_table(regclass, name, text, jsonb, name, regclass[], text)',
										   grantee);
	END LOOP;
END
$$;

DROP FUNCTION sync_add_table(regclass, name, text, jsonb);

--
-- Sequence usage reads the key from the registration: a declared key has
-- no primary key to read it from.
--
CREATE OR REPLACE VIEW sync_sequence_usage AS
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

--
-- A dropped table is no longer a dependency of another either.
--
CREATE OR REPLACE FUNCTION sync_forget_dropped_tables()
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

--
-- Only primary keys are followed when renamed.
--
CREATE OR REPLACE FUNCTION sync_follow_renamed_keys()
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

--
-- A pull that left rows out by its tables' on_conflict policy ('partial')
-- succeeded.
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
