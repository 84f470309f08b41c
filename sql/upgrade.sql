--
-- Upgrading from version 0.1, through 0.2, gives exactly the objects of a
-- fresh install of the current version
--
CREATE ROLE sync_regress_upgrader;
CREATE EXTENSION sync VERSION '0.1';
GRANT EXECUTE ON FUNCTION sync_add_table(regclass, name, text, jsonb) TO sync_regress_upgrader;
INSERT INTO sync_machine (id, hostname, sync_start, sync_end) VALUES (0, 'zero.example.org', 1, 999999999);
CREATE TABLE kept (id bigserial PRIMARY KEY, v text);
INSERT INTO sync_table (tbl, key_column) VALUES ('kept', 'id');

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
SELECT tbl, foreign_rows FROM sync_table;
CREATE TEMP TABLE upgraded AS SELECT * FROM pg_temp.sync_objects();
-- the configuration stays
SELECT id, hostname, learned_from FROM sync_machine;
SELECT tbl, key_column, key_declared, depends_on, on_conflict FROM sync_table;
SELECT * FROM sync_range(0);

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
