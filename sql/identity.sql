--
-- Local identity: sync_init, sync_instance
--
CREATE EXTENSION sync;

-- no identity yet
SELECT count(*) FROM sync_instance;

SELECT id FROM sync_register_machine(1, 'one.example.org');
SELECT id FROM sync_register_machine(2, 'two.example.org');

-- unknown machine, negative id
SELECT * FROM sync_init(3);
SELECT * FROM sync_init(-1);
SELECT count(*) FROM sync_instance;

SELECT machine_id FROM sync_init(1);
SELECT machine_id FROM sync_instance;
-- initializing again to the same machine is harmless
SELECT machine_id FROM sync_init(1);

-- switching machines is fine while nothing of the old range is held
CREATE TABLE item (id bigserial PRIMARY KEY, name text);
SELECT tbl FROM sync_add_table('item');
SELECT machine_id FROM sync_init(2);
-- what sync_init says: the machine, its range, the tables whose sequences it confined
SELECT machine_id, hostname, sync_url, sync_start, sync_end, tables, initialized_at > now() - interval '1 hour' AS recent
  FROM sync_init(1);

-- re-initializing with rows in the old range is refused
INSERT INTO item (name) VALUES ('first'), ('second') RETURNING id;
SELECT * FROM sync_init(2);
SELECT machine_id FROM sync_instance;
-- one row left is one too many
DELETE FROM item WHERE name = 'second';
SELECT * FROM sync_init(2);
-- rows in other ranges do not stand in the way; the sequence moves past
-- the keys already used in the new range
DELETE FROM item;
-- (as a pull of machine 2 would write it: the guard lets nothing else)
INSERT INTO item (id, name) VALUES (2000000005, 'copy of two''s row');
SET session_replication_role = replica;
INSERT INTO item (id, name) VALUES (2000000005, 'copy of two''s row');
RESET session_replication_role;
SELECT machine_id FROM sync_init(2);
SELECT last_value FROM item_id_seq;

-- the local machine cannot be removed from the registry
DELETE FROM sync_machine WHERE id = 2;

-- the local machine's range may change only while it keeps every local key
SELECT * FROM sync_register_machine(2, NULL, sync_start => 2000000001, sync_end => 2000000004);
SELECT id, sync_start, sync_end FROM sync_register_machine(2, NULL, sync_start => 2000000001, sync_end => 2000000100);
SELECT sequence_min, sequence_max, last_value FROM sync_sequence_usage;

DROP TABLE item;
DROP EXTENSION sync;
