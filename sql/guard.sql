--
-- The guard: on this server, only a pull of machine N writes N's rows
--
CREATE EXTENSION sync;
SELECT id FROM sync_register_machine(1, 'one.example.org', sync_start => 1, sync_end => 100);
SELECT id FROM sync_register_machine(2, 'two.example.org', sync_start => 101, sync_end => 200);
SELECT id FROM sync_register_machine(3, 'three.example.org', sync_start => 201, sync_end => 300);

CREATE TABLE parent (id bigint PRIMARY KEY, name text UNIQUE);
CREATE TABLE child (id bigint PRIMARY KEY,
					parent_id bigint REFERENCES parent ON DELETE CASCADE ON UPDATE CASCADE);
CREATE TABLE loose (id bigint PRIMARY KEY,
					parent_id bigint REFERENCES parent ON DELETE SET NULL);
CREATE TABLE part (id bigint PRIMARY KEY, v text) PARTITION BY RANGE (id);
CREATE TABLE part_low PARTITION OF part FOR VALUES FROM (MINVALUE) TO (150);
CREATE TABLE part_high PARTITION OF part FOR VALUES FROM (150) TO (MAXVALUE);
CREATE TABLE curated (id integer PRIMARY KEY, v text);

-- rows before any identity: nothing to guard yet
INSERT INTO parent VALUES (1, 'one'), (4, 'four'), (101, 'two'), (102, 'two b'), (201, 'three'), (-1, 'nobody');
INSERT INTO child VALUES (1, 101), (102, 101), (2, 1), (105, 4);
INSERT INTO loose VALUES (103, 1), (3, 101);
INSERT INTO part VALUES (1, 'mine'), (120, 'two'), (160, 'two high'), (250, 'three');
INSERT INTO curated VALUES (1, 'mine'), (110, 'two');

SELECT machine_id FROM sync_init(1);

-- registering reports what the table holds beyond this server's rows
SELECT tbl FROM sync_add_table('parent');
SELECT tbl FROM sync_add_table('child');
SELECT tbl FROM sync_add_table('loose');
SELECT tbl FROM sync_add_table('part');
SELECT tbl, foreign_rows FROM sync_add_table('curated', foreign_rows => 'writable');
SELECT * FROM sync_add_table('curated', foreign_rows => 'anything');
SELECT tgrelid::regclass, tgname, tgenabled FROM pg_trigger
 WHERE tgname LIKE 'zz_sync_guard%' ORDER BY 1::text, 2;

-- every statement on another machine's rows is refused, for every role
INSERT INTO parent VALUES (150, 'new two');
UPDATE parent SET name = 'changed' WHERE id = 101;
DELETE FROM parent WHERE id = 201;
UPDATE parent SET id = 199 WHERE id = 1;
UPDATE parent SET id = 2 WHERE id = 102;
INSERT INTO parent VALUES (101, 'upsert') ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name;
INSERT INTO parent VALUES (101, 'upsert') ON CONFLICT (id) DO NOTHING;
MERGE INTO parent p USING (VALUES (101, 'merged')) v(id, name) ON p.id = v.id
 WHEN MATCHED THEN UPDATE SET name = v.name;
COPY parent FROM STDIN;
5	five
150	copied two
\.
SELECT id FROM parent ORDER BY id;
-- a local delete whose cascade or SET NULL reaches another machine's rows
DELETE FROM parent WHERE id = 1;
DELETE FROM parent WHERE id = 4;
UPDATE parent SET id = 6 WHERE id = 4;
-- partitions: through the parent, or straight into a partition
UPDATE part SET v = 'x' WHERE id = 160;
INSERT INTO part_low VALUES (130, 'two');
DELETE FROM part_high WHERE id = 250;
-- TRUNCATE of a table holding other machines' rows
TRUNCATE child;
TRUNCATE parent CASCADE;

-- as a role with every privilege on the table, and its owner
CREATE ROLE sync_regress_writer;
GRANT ALL ON parent, child, loose TO sync_regress_writer;
SET ROLE sync_regress_writer;
UPDATE parent SET name = 'changed' WHERE id = 101;
DELETE FROM child WHERE id = 102;
RESET ROLE;
ALTER TABLE parent OWNER TO sync_regress_writer;
SET ROLE sync_regress_writer;
DELETE FROM parent WHERE id = 102;
-- nor can the owner take the guard away
DROP TRIGGER zz_sync_guard ON parent;
ALTER TABLE parent DISABLE TRIGGER zz_sync_guard;
ALTER TABLE parent DISABLE TRIGGER USER;
ALTER TABLE parent ENABLE REPLICA TRIGGER zz_sync_guard;
CREATE OR REPLACE TRIGGER zz_sync_guard BEFORE INSERT OR UPDATE OR DELETE ON parent
	FOR EACH ROW WHEN (false) EXECUTE FUNCTION sync_guard_rows();
ALTER TRIGGER zz_sync_guard ON parent RENAME TO gone;
DROP TRIGGER zz_sync_guard_truncate ON parent;
ALTER TABLE parent DROP CONSTRAINT zz_sync_guard;
ALTER TABLE parent RENAME CONSTRAINT zz_sync_guard TO gone;
RESET ROLE;
ALTER TABLE part_high DROP CONSTRAINT zz_sync_guard;
ALTER TABLE part_high DISABLE TRIGGER zz_sync_guard;
-- other triggers come and go as usual
CREATE FUNCTION regress_noop() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$;
CREATE TRIGGER regress_noop BEFORE INSERT ON parent FOR EACH ROW EXECUTE FUNCTION regress_noop();
DROP TRIGGER regress_noop ON parent;

-- this server's own rows, and rows in no machine's range, are written freely
INSERT INTO parent VALUES (5, 'five'), (-2, 'nobody two');
UPDATE parent SET name = 'uno' WHERE id = 1;
UPDATE loose SET parent_id = 101 WHERE id = 3;
DELETE FROM child WHERE id = 2;
DELETE FROM parent WHERE id IN (5, -1, -2);
UPDATE parent SET id = 7 WHERE id = 4;
UPDATE part SET v = 'still mine' WHERE id = 1;
SELECT id, name FROM parent ORDER BY id;

-- a writable table: other machines' rows may change here, and the next
-- pull of their machine is told to merge the table again
SELECT count(*) FROM sync_written;
-- (what a rolled-back savepoint recorded is recorded again)
BEGIN;
SAVEPOINT s;
UPDATE curated SET v = 'undone' WHERE id = 110;
ROLLBACK TO SAVEPOINT s;
UPDATE curated SET v = 'curated here' WHERE id = 110;
COMMIT;
SELECT tbl, machine_id FROM sync_written ORDER BY 1, 2;
INSERT INTO curated VALUES (250, 'three, curated');
SELECT tbl, machine_id FROM sync_written ORDER BY 1, 2;
TRUNCATE curated;
SELECT tbl, machine_id FROM sync_written ORDER BY 1, 2;
-- an unregistered table loses its guard and what was recorded for it
SELECT tbl FROM sync_remove_table('curated');
SELECT count(*) FROM sync_written;
SELECT count(*) FROM pg_trigger WHERE tgrelid = 'curated'::regclass;
INSERT INTO curated VALUES (150, 'anything goes');
-- and registering it again puts the guard back
SELECT tbl FROM sync_add_table('curated');
INSERT INTO curated VALUES (151, 'two again');

-- a superuser may still write in replica mode (as a restore would), and
-- sync_verify finds the difference
SET session_replication_role = replica;
UPDATE parent SET name = 'edited by a superuser' WHERE id = 101;
RESET session_replication_role;
SELECT name FROM parent WHERE id = 101;

-- a declared key cannot be renamed from under the guard, nor its triggers
-- tied to another extension (which would drop them with it)
CREATE TABLE link (a bigint NOT NULL, b text);
SELECT tbl FROM sync_add_table('link', key_column => 'a');
ALTER TABLE link RENAME COLUMN a TO a2;
ALTER TRIGGER zz_sync_guard ON link DEPENDS ON EXTENSION plpgsql;
-- a policy cannot hide other machines' rows from the TRUNCATE check
ALTER TABLE child OWNER TO sync_regress_writer;
SET ROLE sync_regress_writer;
ALTER TABLE child ENABLE ROW LEVEL SECURITY;
ALTER TABLE child FORCE ROW LEVEL SECURITY;
CREATE POLICY hide_all ON child USING (false);
TRUNCATE child;
RESET ROLE;
-- only a table's owner changes its registration, whatever the grants
CREATE ROLE sync_regress_registrar;
GRANT SELECT, INSERT, UPDATE, DELETE ON sync_table TO sync_regress_registrar;
SET ROLE sync_regress_registrar;
UPDATE sync_table SET foreign_rows = 'writable' WHERE tbl = 'parent'::regclass;
DELETE FROM sync_table WHERE tbl = 'parent'::regclass;
RESET ROLE;
GRANT SELECT, UPDATE ON sync_table TO sync_regress_writer;
SET ROLE sync_regress_writer;
UPDATE sync_table SET foreign_rows = 'writable' WHERE tbl = 'parent'::regclass;
UPDATE parent SET name = 'curated by its owner' WHERE id = 101;
UPDATE sync_table SET foreign_rows = 'read-only' WHERE tbl = 'parent'::regclass;
UPDATE parent SET name = 'two' WHERE id = 101;
RESET ROLE;

-- sync_init reports only rows no machine owns
SELECT machine_id FROM sync_init(1);
INSERT INTO parent VALUES (-7, 'nobody seven');
SELECT machine_id FROM sync_init(1);

ALTER TABLE parent OWNER TO CURRENT_USER;
ALTER TABLE child OWNER TO CURRENT_USER;
DROP TABLE child, loose, parent, part, curated, link;
DROP FUNCTION regress_noop();
REVOKE ALL ON sync_table FROM sync_regress_registrar, sync_regress_writer;
DROP ROLE sync_regress_writer, sync_regress_registrar;
DROP EXTENSION sync;
