-- Upgrade sync from 0.4 to 0.5: deltas beside full archives.
\echo Use "ALTER EXTENSION sync UPDATE TO '0.5'" to load this file. \quit

--
-- sync_dump gains "full" (write a full archive whatever changed) and says
-- what it published.
--
DROP FUNCTION sync_dump(integer, boolean, boolean);

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

REVOKE ALL ON FUNCTION sync_dump(integer, boolean, boolean, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION sync_dump(integer, boolean, boolean, boolean) TO pg_write_server_files;

--
-- What a pull applied of a publisher's chain: the state, and each table's
-- digest, so that the next pull applies only the deltas since.
--
ALTER TABLE sync_pull_state
	ADD COLUMN chain text,
	ADD COLUMN seq bigint,
	ADD COLUMN digests jsonb;
