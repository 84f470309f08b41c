# Ownership on every server, through nginx between four servers: machine 0
# (the registry authority), machines 1 and 2 (publishers) and machine 3 (a
# subscriber).  The guard keeps copies read-only for every role, a writable
# table takes local edits until the owner's next pull puts its version
# back, sync_verify finds drift and a full pull repairs it, and a pull's
# triggers may change this server's own rows (counted) but not a third
# machine's (the pull fails).
use strict;
use warnings;
use File::Path qw(make_path);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use SyncFederation;
use SyncNginx;

my $tmp = $PostgreSQL::Test::Utils::tmp_check;
my $www = "$tmp/www";
make_path($www);

start_servers($www, 0, 1, 2, 3);
my $nginx = SyncNginx->new(prefix => "$tmp/nginx", root => $www);

my $schema = q{
	CREATE EXTENSION sync;
	CREATE TABLE site (id bigserial PRIMARY KEY, name text NOT NULL, access_level integer DEFAULT 4);
	CREATE TABLE trait (id bigserial PRIMARY KEY,
		site_id bigint REFERENCES site ON DELETE CASCADE, value numeric);
	CREATE TABLE curated (id bigserial PRIMARY KEY, label text);
	CREATE TABLE tally (id bigserial PRIMARY KEY, site_name text);
	CREATE ROLE clerk;
	GRANT ALL ON site, trait, curated, tally TO clerk;
	GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO clerk;
};
join_federation($nginx, $schema, q{
	SELECT sync_add_table('site', 'access_level');
	SELECT sync_add_table('trait');
	SELECT sync_add_table('curated', foreign_rows => 'writable');
	SELECT sync_add_table('tally');
});

sql(1, q{
	INSERT INTO site (name) VALUES ('north'), ('south');
	INSERT INTO trait (site_id, value) VALUES (1000000001, 1.5), (1000000002, 2.5), (1000000002, 3.5);
	INSERT INTO curated (label) VALUES ('one''s label'), ('another');
	SELECT sync_dump();
});
sql(2, q{INSERT INTO site (name) VALUES ('west'); SELECT sync_dump();});
is(pull(3, 1), 'applied|7|0|0', 'machine 3 pulls machine 1');
is(pull(3, 2), 'applied|1|0|0', 'machine 3 pulls machine 2');

# Run SQL on machine 3 as role $role; returns (exit code, stderr).
sub on3
{
	my ($q, $role) = @_;
	my ($rc, $out, $err) = $node{3}->psql('postgres',
		($role ? "SET ROLE $role; " : '') . $q,
		extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	return ($rc, $err);
}

# The guard: for every role, every statement on machine 1's rows is refused.
my $before = fingerprint(3);
for my $role ('', 'clerk')
{
	my $who = $role || 'superuser';
	for my $case (
		[ "INSERT INTO site (id, name) VALUES (1000000050, 'forged')", qr/cannot write row 1000000050 of table public\.site, which belongs to machine 1/ ],
		[ "UPDATE site SET name = 'edited' WHERE id = 1000000001", qr/cannot update row 1000000001 of table public\.site, which belongs to machine 1/ ],
		[ "DELETE FROM trait WHERE id = 1000000001", qr/cannot delete row 1000000001 of table public\.trait, which belongs to machine 1/ ],
		[ "UPDATE site SET id = 3000000099 WHERE id = 1000000002", qr/cannot update row 1000000002 of table public\.site/ ],
		[ "INSERT INTO site (name) VALUES ('mine'); UPDATE site SET id = 2000000099 WHERE name = 'mine'", qr/cannot write row 2000000099 of table public\.site, which belongs to machine 2/ ],
		[ "TRUNCATE trait", qr/cannot truncate table public\.trait, which holds rows of machine 1/ ],
		[ "TRUNCATE site CASCADE", qr/cannot truncate table public\.site, which holds rows of machine 1/ ])
	{
		my ($sql, $re) = @$case;
		my ($rc, $err) = on3("BEGIN; $sql; COMMIT;", $role);
		like($err, qr/ERROR:  42501: /, "$who: $sql: refused with 42501");
		like($err, $re, "$who: $sql: the message names table, key and owner");
	}
	my ($rc, $err) = on3("UPDATE site SET name = 'x' WHERE id = 1000000001", $role);
	like($err, qr/HINT:  Only machine 1 changes its rows; they arrive with sync_pull\(1\)\./,
		"$who: the hint says who changes the row");
}
is(fingerprint(3), $before, 'nothing changed on machine 3');
# a local row that a machine-1 row references cannot take it down with it
sql(3, q{INSERT INTO site (name) VALUES ('east');
	SET session_replication_role = replica;
	INSERT INTO trait (id, site_id, value) SELECT 1000000077, id, 7 FROM site WHERE name = 'east'});
my ($rc, $err) = on3(q{DELETE FROM site WHERE name = 'east'}, 'clerk');
like($err, qr/cannot delete row 1000000077 of table public\.trait, which belongs to machine 1/,
	'a local delete whose cascade reaches machine 1\'s row is refused');
sql(3, q{SET session_replication_role = replica; DELETE FROM trait WHERE id = 1000000077;
	RESET session_replication_role; DELETE FROM site WHERE name = 'east'});

# A writable table takes local edits; the owner's next pull puts its
# version back, although its archive did not change.
sql(3, q{UPDATE curated SET label = 'curated on three' WHERE id = 1000000001});
is(sql(3, 'SELECT tbl::text || machine_id FROM sync_written ORDER BY 1'), "curated1\ntrait1",
	'the local edit of machine 1\'s row is recorded, and so is the row written in replica mode');
is(sql(3, q{SELECT status, inserted, updated, deleted FROM sync_pull(1)}), 'applied|0|1|0',
	'the next pull of machine 1 merges the written table again');
is(sql(3, 'SELECT label FROM curated WHERE id = 1000000001'), "one's label",
	'the owner\'s version wins');
is(sql(3, 'SELECT count(*) FROM sync_written'), '0', 'and nothing is left recorded');
is(pull(3, 1), 'unchanged|0|0|0', 'the pull after that is unchanged');

# Drift behind the guard's back (a superuser in replica mode): sync_verify
# finds it; a row inserted or updated is recorded, so the next ordinary
# pull merges the tables whole; a delete is not (no trigger fires in
# replica mode): a full pull repairs it.
sql(3, q{
	SET session_replication_role = replica;
	UPDATE site SET name = 'drifted' WHERE id = 1000000002;
	DELETE FROM trait WHERE id = 1000000003;
	INSERT INTO trait (id, site_id, value) VALUES (1000000040, 1000000001, 9), (1000000041, 1000000001, 9);
	RESET session_replication_role;
});
is(sql(3, q{SELECT tbl, missing, extra, changed, first_missing, first_extra, first_changed
	FROM sync_verify(1) ORDER BY tbl::text}),
	"curated|0|0|0|{}|{}|{}\nsite|0|0|1|{}|{}|{1000000002}\ntally|0|0|0|{}|{}|{}\n"
	  . "trait|1|2|0|{1000000003}|{1000000040,1000000041}|{}",
	'sync_verify reports what is missing, extra and changed, with the first keys');
is(sql(3, q{SELECT kind || ' ' || status || ' ' || (details->'differs')::text FROM sync_log ORDER BY id DESC LIMIT 1}),
	'verify differs {"public.site": {"extra": 0, "changed": 1, "missing": 0}, "public.trait": {"extra": 2, "changed": 0, "missing": 1}}',
	'the verification is logged');
is(sql(3, q{SELECT count(*) FROM sync_verify('m1.example.org') WHERE missing + extra + changed > 0}), '2',
	'sync_verify takes a hostname too');
is(pull(3, 1), 'applied|1|1|2', 'an ordinary pull merges the tables written in replica mode whole, and repairs them');
is(pull(3, 1), 'unchanged|0|0|0', 'the next one skips the unchanged archive');
sql(3, q{SET session_replication_role = replica; DELETE FROM trait WHERE id = 1000000003});
is(sql(3, 'SELECT count(*) FROM sync_written'), '0', 'a delete in replica mode is not recorded');
is(pull(3, 1), 'unchanged|0|0|0', 'so an ordinary pull does not see it');
is(sql(3, q{SELECT missing FROM sync_verify(1) WHERE tbl = 'trait'::regclass}), '1', 'sync_verify does');
is(sql(3, q{SELECT status, inserted, updated, deleted FROM sync_pull(1, full => true)}), 'applied|1|0|0',
	'a full pull repairs it');
is(sql(3, q{SELECT count(*) FROM sync_verify(1) WHERE missing + extra + changed > 0}), '0',
	'sync_verify then finds nothing');
is(sql(3, q{SELECT status FROM sync_log WHERE kind = 'verify' ORDER BY id DESC LIMIT 1}), 'same',
	'and logs it so');
is(sql(3, q{SELECT details->>'full' FROM sync_log WHERE kind = 'pull' AND status = 'applied' ORDER BY id DESC LIMIT 1}),
	'true', 'the full pull is logged as one');
($rc, $err) = on3('SELECT * FROM sync_verify(42)');
like($err, qr/machine 42 is not registered/, 'sync_verify of an unknown machine fails');
($rc, $err) = on3('SELECT * FROM sync_verify(1)', 'clerk');
like($err, qr/permission denied for function sync_verify/, 'sync_verify is not open to every role');

# A trigger of this server reacting to a pull: writing this server's own
# rows is allowed and counted, a third machine's rows fail the pull.
sql(3, q{
	CREATE FUNCTION count_site() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN INSERT INTO tally (site_name) VALUES (NEW.name); RETURN NEW; END $$;
	CREATE TRIGGER count_site AFTER INSERT ON site FOR EACH ROW EXECUTE FUNCTION count_site();
});
sql(1, q{INSERT INTO site (name) VALUES ('up'), ('down'); SELECT sync_dump();});
is(sql(3, q{SELECT status, inserted, local_changed FROM sync_pull(1)}), 'applied|2|2',
	'rows this server\'s trigger wrote during the pull are counted');
is(sql(3, q{SELECT local_changed FROM sync_log WHERE kind = 'pull' ORDER BY id DESC LIMIT 1}), '2',
	'and logged');
is(sql(3, q{SELECT string_agg(site_name, ',' ORDER BY site_name) FROM tally}), 'down,up',
	'the trigger\'s rows are there');
sql(3, q{
	CREATE OR REPLACE FUNCTION count_site() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN UPDATE site SET name = name || '!' WHERE id = 2000000001; RETURN NEW; END $$;
});
sql(1, q{INSERT INTO site (name) VALUES ('left'); SELECT sync_dump();});
pull_fails(3, 1, qr/pull of machine 1 cannot update row 2000000001 of table public\.site, which belongs to machine 2/,
	'a trigger writing a third machine\'s row during a pull');
is(sql(3, q{SELECT name FROM site WHERE id = 2000000001}), 'west', 'machine 2\'s row is untouched');
# the guard is back on once the pull failed, even inside the same transaction
($rc, $err) = on3(q{
	DO $$ BEGIN PERFORM sync_pull(1); EXCEPTION WHEN OTHERS THEN NULL; END $$;
	UPDATE site SET name = 'sneaky' WHERE id = 1000000001});
like($err, qr/cannot update row 1000000001 of table public\.site, which belongs to machine 1/,
	'a failed pull leaves nothing open for the rest of the transaction');
sql(3, q{DROP TRIGGER count_site ON site});
is(sql(3, q{SELECT status, inserted FROM sync_pull(1)}), 'applied|1', 'without the trigger it applies');

# Rows in no machine's range: reported at registration, at sync_init and
# by the dump; rows of other machines are not, at sync_init.
sql(1, q{INSERT INTO curated (id, label) VALUES (-3, 'nobody''s')});
($rc, my $out, $err) = $node{1}->psql('postgres', 'SELECT rows FROM sync_dump()');
like($err, qr/WARNING:  table public\.curated has 1 row in no machine's range/, 'sync_dump reports a row nobody owns');
is(sql(1, q{SELECT details->'unowned' FROM sync_log WHERE kind = 'dump' ORDER BY id DESC LIMIT 1}),
	'{"public.curated": 1}', 'and logs it');
($rc, $out, $err) = $node{3}->psql('postgres', 'SELECT sync_init(3)');
is($err, '', 'sync_init on a subscriber says nothing of the copies it holds');
($rc, $out, $err) = $node{3}->psql('postgres', 'SELECT sync_add_table(\'site\', \'access_level\')');
like($err, qr/NOTICE:  table public\.site holds 5 rows of machine 1\n.*\n.*NOTICE:  table public\.site holds 1 row of machine 2/,
	'sync_add_table reports the copies it holds, by owner');

$nginx->stop;
done_testing();
