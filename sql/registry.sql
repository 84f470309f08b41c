--
-- Machine registry: sync_register_machine, sync_range, sync_machine
--
CREATE SCHEMA sync_ext;
CREATE EXTENSION sync SCHEMA sync_ext;
SET search_path = sync_ext, public;

-- every object lives in the extension's schema and is named sync_*
SELECT pg_describe_object(classid, objid, objsubid) AS object
  FROM pg_depend
 WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
   AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'sync')
 ORDER BY 1;
SELECT count(*) AS misnamed
  FROM pg_depend d
  JOIN pg_class c ON d.classid = 'pg_class'::regclass AND c.oid = d.objid
 WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'sync')
   AND (c.relname NOT LIKE 'sync\_%' OR c.relnamespace <> 'sync_ext'::regnamespace);
SELECT count(*) AS misplaced_functions
  FROM pg_proc p
 WHERE p.proname LIKE 'sync\_%' AND p.pronamespace <> 'sync_ext'::regnamespace;

-- default ranges, BETYdb's: machine N owns [N*10^9 + 1, (N+1)*10^9 - 1]
SELECT id, hostname, sync_url, sync_contact, sync_start, sync_end
  FROM sync_register_machine(0, 'alpha.example.org', 'https://alpha.example.org/sync/', 'dba@alpha.example.org');
SELECT id, hostname, sync_url, sync_start, sync_end
  FROM sync_register_machine(42, 'beta.example.org', 'http://beta.example.org/sync');
SELECT id, hostname, sync_start, sync_end
  FROM sync_register_machine(7, 'gamma.example.org');
-- an explicit range
SELECT id, hostname, sync_start, sync_end
  FROM sync_register_machine(99, 'delta.example.org', sync_start => 500000000000, sync_end => 500000000999);
-- the largest machine id whose default range fits in bigint
SELECT id, sync_start, sync_end
  FROM sync_register_machine(9223372035, 'last.example.org');

SELECT * FROM sync_range(42);
SELECT * FROM sync_range(0);
SELECT * FROM sync_range(99);

-- updating: NULL keeps a value, an empty string clears it, updated_at moves
-- only when something changed
SELECT created_at = updated_at AS untouched FROM sync_machine WHERE id = 7;
UPDATE sync_machine SET updated_at = '2000-01-01' WHERE id = 7;
SELECT id, hostname, sync_url, sync_contact FROM sync_register_machine(7, NULL, 'https://gamma.example.org/sync/');
SELECT updated_at > '2000-01-01' AS touched FROM sync_machine WHERE id = 7;
SELECT id, hostname, sync_url, sync_contact FROM sync_register_machine(7, 'gamma2.example.org');
SELECT id, hostname, sync_url, sync_contact FROM sync_register_machine(7, NULL, '', 'someone');
SELECT id, hostname, sync_url, sync_contact FROM sync_register_machine(7, NULL, NULL, '');
UPDATE sync_machine SET updated_at = '2000-01-01' WHERE id = 0;
SELECT id, hostname FROM sync_register_machine(0, 'alpha.example.org');
SELECT updated_at = '2000-01-01' AS unchanged FROM sync_machine WHERE id = 0;

-- functions and operators that a caller's search_path puts before
-- pg_catalog take no part in what the functions do
CREATE SCHEMA planted;
CREATE FUNCTION planted.now() RETURNS timestamptz LANGUAGE sql
	AS $$SELECT timestamptz '1999-01-01 00:00+00'$$;
CREATE FUNCTION planted.eq(bigint, bigint) RETURNS boolean LANGUAGE sql
	AS $$SELECT false$$;
CREATE OPERATOR planted.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = planted.eq);
UPDATE sync_machine SET updated_at = '2000-01-01' WHERE id = 7;
SET search_path = planted, pg_catalog, sync_ext, public;
SELECT id, sync_url, updated_at > '2000-01-01' AS updated_now
  FROM sync_register_machine(7, NULL, 'https://gamma.example.org/planted/');
SELECT * FROM sync_range(7);
SELECT id, sync_url FROM sync_register_machine(7, NULL, '');
SET search_path = sync_ext, public;
DROP SCHEMA planted CASCADE;

-- bad input
SELECT * FROM sync_register_machine(-1, 'negative.example.org');
SELECT * FROM sync_register_machine(NULL, 'null.example.org');
SELECT * FROM sync_register_machine(5, NULL);
SELECT * FROM sync_register_machine(5, '');
SELECT * FROM sync_register_machine(9223372036, 'too-far.example.org');
SELECT * FROM sync_register_machine(5, 'five.example.org', 'ftp://five.example.org/');
-- credentials never go into the registry, which every dump publishes,
-- and the error does not repeat them
SELECT * FROM sync_register_machine(5, 'five.example.org', 'https://user:s3cret@five.example.org/sync/');
SELECT * FROM sync_register_machine(5, 'five.example.org', 'ftp://user:s3cret@five.example.org/');
SELECT * FROM sync_register_machine(5, 'five.example.org', sync_start => 10);
SELECT * FROM sync_register_machine(5, 'five.example.org', sync_start => 20, sync_end => 10);
-- overlapping ranges name the machine whose range collides
SELECT * FROM sync_register_machine(5, 'five.example.org', sync_start => 42999999999, sync_end => 43000000005);
SELECT * FROM sync_register_machine(5, 'five.example.org', sync_start => 1, sync_end => 10);
SELECT * FROM sync_register_machine(5, 'five.example.org', sync_start => 500000000500, sync_end => 500000000500);
SELECT * FROM sync_register_machine(42, NULL, sync_start => 7000000500, sync_end => 42000000000);
-- a default range taken by an explicit one
SELECT * FROM sync_register_machine(500, 'five-hundred.example.org');
-- hostnames are unique
SELECT * FROM sync_register_machine(5, 'beta.example.org');
-- direct writes are held by the constraints (terse: the failing row has
-- timestamps)
\set VERBOSITY terse
INSERT INTO sync_machine (id, hostname, sync_start, sync_end) VALUES (6, 'six', 42000000005, 42000000006);
INSERT INTO sync_machine (id, hostname, sync_start, sync_end) VALUES (6, 'six', 20, 10);
INSERT INTO sync_machine (id, hostname, sync_start, sync_end) VALUES (-6, 'six', 6000000001, 6999999999);
\set VERBOSITY default
-- unknown machines
SELECT * FROM sync_range(5);
SELECT * FROM sync_range(-1);

SELECT id, hostname, sync_url, sync_contact, sync_start, sync_end FROM sync_machine ORDER BY id;

DROP EXTENSION sync;
DROP SCHEMA sync_ext;
