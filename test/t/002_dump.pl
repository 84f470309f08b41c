# sync_dump writes an archive that standard tools open, holding exactly the
# rows it should (level, filter, closure, anonymization), consistent while
# other sessions write, and fails cleanly when the disk is full.
use strict;
use warnings;
use Digest::SHA qw(sha256_hex);
use File::Copy qw(copy);
use File::Path qw(make_path);
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('publisher');
$node->init;
$node->append_conf('postgresql.conf', 'max_worker_processes = 16');
$node->start;

my $tmp = $PostgreSQL::Test::Utils::tmp_check;

# Run a command, die with its output if it fails; return its stdout.
sub run_ok_output
{
	my @cmd = @_;
	my ($stdout, $stderr);
	IPC::Run::run(\@cmd, '>', \$stdout, '2>', \$stderr)
	  or die "@cmd failed: $stderr";
	return $stdout;
}

sub copy_file { my ($from, $to) = @_; copy($from, $to) or die "copy: $!"; }

# Extract an archive with tar into a fresh directory; return the manifest.
sub extract
{
	my ($archive, $dir) = @_;
	make_path($dir);
	run_ok_output('tar', '--zstd', '-xf', $archive, '-C', $dir);
	return decode_json(slurp_file("$dir/manifest.json"));
}

# The COPY text of a table in an extracted archive, all its files in order.
sub table_text
{
	my ($dir, $entry) = @_;
	return join('', map { slurp_file("$dir/$_") } @{ $entry->{files} });
}

sub manifest_table
{
	my ($manifest, $name) = @_;
	my ($t) = grep { $_->{name} eq $name } @{ $manifest->{tables} };
	return $t;
}

###########################################################################
# What goes in: level, filter, closure, anonymization, other machines' rows
###########################################################################

my $dumpdir = "$tmp/dump_content";
make_path($dumpdir);
$node->safe_psql('postgres', 'CREATE DATABASE content');
$node->safe_psql('content', qq{
	CREATE EXTENSION sync;
	ALTER DATABASE content SET sync.dump_directory = '$dumpdir';
	SELECT sync_register_machine(0, 'zero.example.org', 'https://zero.example.org/sync/');
	SELECT sync_register_machine(42, 'beta.example.org', 'https://beta.example.org/sync/', 'dba\@beta.example.org');
	SELECT sync_init(42);
	CREATE TABLE person (id bigserial PRIMARY KEY, name text, email text,
		password text, access_level integer DEFAULT 4);
	CREATE TABLE site (id bigserial PRIMARY KEY, name text,
		owner_id bigint REFERENCES person, parent_id bigint REFERENCES site,
		checked integer DEFAULT 0);
	CREATE TABLE trait (id bigserial PRIMARY KEY, site_id bigint REFERENCES site,
		value numeric, note text, access_level integer DEFAULT 4,
		doubled numeric GENERATED ALWAYS AS (value * 2) STORED);
	SELECT sync_add_table('person', 'access_level', NULL,
		'{"email": "''person'' || id || ''\@example.org''", "password": "NULL"}');
	SELECT sync_add_table('site', NULL, 'checked <> -1');
	SELECT sync_add_table('trait', 'access_level');

	-- machine 0's rows: copies (written as a pull of 0 would), never
	-- published by 42
	SET session_replication_role = replica;
	INSERT INTO person (id, name, email) VALUES (5, 'Zed', 'zed\@zero');
	INSERT INTO site (id, name, owner_id) VALUES (6, 'zero site', 5);
	RESET session_replication_role;

	INSERT INTO person (name, email, password, access_level) VALUES
		('Ana', 'ana\@beta', 'pw-a', 4),       -- 42000000001
		('Ben', 'ben\@beta', 'pw-b', 3),       -- 42000000002
		('Cy',  'cy\@beta',  'pw-c', 1),       -- 42000000003 private
		('Di',  NULL,        NULL,   NULL);    -- 42000000004 no level
	INSERT INTO site (name, owner_id, parent_id, checked) VALUES
		('north', 42000000001, NULL, 0),       -- 42000000001
		('north-east', 42000000002, 42000000001, 0), -- 42000000002
		('cy''s', 42000000003, NULL, 0),       -- 42000000003 owner private
		('under cy''s', 42000000001, 42000000003, 0), -- 42000000004 parent left out
		('rejected', 42000000001, NULL, -1),   -- 42000000005 filter
		('on zero', 5, 6, 0);                  -- 42000000006 refs machine 0
	INSERT INTO trait (site_id, value, note) VALUES
		(42000000001, 1.5, E'tab\\there'),   -- 42000000001
		(42000000002, 2.5, E'new\\nline \\\\ back'), -- 42000000002
		(42000000004, 3.5, 'under a left-out site'),  -- 42000000003
		(42000000005, 4.5, 'on a rejected site'),     -- 42000000004
		(42000000006, 5.5, NULL),            -- 42000000005
		(6, 6.5, 'on machine zero''s site'); -- 42000000006
	INSERT INTO trait (site_id, value, note, access_level) VALUES
		(42000000001, 7.5, 'private', 0);    -- 42000000007
});

my $res = $node->safe_psql('content',
	'SELECT path, tables, rows, excluded, bytes, sha256 FROM sync_dump()');
my ($path, $tables, $rows, $excluded, $bytes, $sha) = split /\|/, $res;
ok(-f $path, 'archive written into sync.dump_directory');
is("$tables|$rows|$excluded", '3|9|8', 'dump counts tables, rows and rows left out');
is(-s $path, $bytes, 'archive size as reported');
is(sha256_hex(slurp_file($path)), $sha, 'SHA-256 of the archive as reported');

run_ok_output('zstd', '-tq', $path);
pass('zstd -t verifies the archive');
my $listing = run_ok_output('tar', '--zstd', '-tf', $path);
is( $listing,
	"header.json\n"
	  . "registry/000001.copy\n"
	  . "tables/0001-public.person/000001.copy\n"
	  . "tables/0002-public.site/000001.copy\n"
	  . "tables/0003-public.trait/000001.copy\n"
	  . "manifest.json\n",
	'tar lists the header, the registry, one file per table (parents first) and the manifest');

my $index = decode_json(slurp_file("$dumpdir/sync-index.json"));
is($dumpdir . '/' . $index->{archive}, $path, 'index names the archive');
is($index->{sha256}, $sha, 'index carries the archive checksum');
is($index->{size}, $bytes, 'index carries the archive size');

my $x = "$tmp/extract1";
my $m = extract($path, $x);
is($m->{format}, 1, 'manifest format version');
is_deeply($m->{source},
	{ machine => 42, hostname => 'beta.example.org',
	  sync_start => 42000000001, sync_end => 42999999999 },
	'manifest names the source machine and its range');
is("$m->{level}|$m->{anonymized}|$m->{unchecked}", '3|1|0',
	'manifest records level, anonymization and unchecked');
like($m->{snapshot_time}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/,
	'manifest records the snapshot time');

is(table_text($x, $m->{registry}),
	"0\tzero.example.org\thttps://zero.example.org/sync/\t\\N\t1\t999999999\n"
	  . "42\tbeta.example.org\thttps://beta.example.org/sync/\tdba\@beta.example.org\t42000000001\t42999999999\n",
	'registry travels in the dump');

my $person = manifest_table($m, 'person');
is(table_text($x, $person),
	"42000000001\tAna\tperson42000000001\@example.org\t\\N\t4\n"
	  . "42000000002\tBen\tperson42000000002\@example.org\t\\N\t3\n",
	'person: levels below 3 and NULL left out, e-mail and password anonymized, machine 0 not published');
is_deeply([ map { $_->{name} . ($_->{anonymized} ? '*' : '') } @{ $person->{columns} } ],
	[ 'id', 'name', 'email*', 'password*', 'access_level' ],
	'manifest lists the columns and marks the anonymized ones');

my $site = manifest_table($m, 'site');
is(table_text($x, $site),
	"42000000001\tnorth\t42000000001\t\\N\t0\n"
	  . "42000000002\tnorth-east\t42000000002\t42000000001\t0\n"
	  . "42000000006\ton zero\t5\t6\t0\n",
	'site: filter applied; rows referencing left-out people or sites left out, transitively; references to machine 0 kept');

my $trait = manifest_table($m, 'trait');
is(table_text($x, $trait),
	"42000000001\t42000000001\t1.5\ttab\\there\t4\n"
	  . "42000000002\t42000000002\t2.5\tnew\\nline \\\\ back\t4\n"
	  . "42000000005\t42000000006\t5.5\t\\N\t4\n"
	  . "42000000006\t6\t6.5\ton machine zero's site\t4\n",
	'trait: closure through site, level applied, COPY escapes, generated column not exported');
is_deeply([ map { $_->{name} } @{ $trait->{columns} } ],
	[ 'id', 'site_id', 'value', 'note', 'access_level' ],
	'generated columns are left to the subscriber');

is("$person->{rows}/$person->{excluded} $site->{rows}/$site->{excluded} $trait->{rows}/$trait->{excluded}",
	'2/2 3/3 4/3', 'manifest counts rows and rows left out per table');
for my $t ($person, $site, $trait, $m->{registry})
{
	is(sha256_hex(table_text($x, $t)), $t->{sha256},
		"checksum of $t->{name} matches its COPY text");
}

# The COPY text loads back with plain COPY.
$node->safe_psql('content',
	'CREATE TABLE trait_check (id bigint, site_id bigint, value numeric, note text, access_level int)');
$node->safe_psql('content',
	"COPY trait_check FROM '$x/$trait->{files}[0]'");
is($node->safe_psql('content', q{SELECT note FROM trait_check WHERE id = 42000000002}),
	"new\nline \\ back", 'COPY FROM reads the archive\'s files back');

# anonymize => false: real values, and a warning that says so
my ($ret, $stdout, $stderr) = $node->psql('content',
	'SELECT path FROM sync_dump(level => 0, anonymize => false, unchecked => true)');
is($ret, 0, 'dump without anonymization runs');
like($stderr, qr/WARNING:  dump of table public\.person includes the real values of its anonymized columns/,
	'dump without anonymization warns');
my $m2 = extract($stdout, "$tmp/extract2");
like(table_text("$tmp/extract2", manifest_table($m2, 'person')),
	qr/^42000000003\tCy\tcy\@beta\tpw-c\t1$/m,
	'level 0, not anonymized: real values of a private row');
like(table_text("$tmp/extract2", manifest_table($m2, 'site')),
	qr/^42000000005\trejected\t/m, 'unchecked: filtered rows published');

# an unchanged table gives the same bytes, so subscribers can skip it
my $path3 = $node->safe_psql('content', 'SELECT path FROM sync_dump()');
my $m3 = extract($path3, "$tmp/extract3");
is(manifest_table($m3, 'trait')->{sha256}, $trait->{sha256},
	'unchanged table has the same checksum in the next dump');

# two archives kept: the newest and the one before it
my @archives = glob("$dumpdir/sync-42-*.tar.zst");
is(scalar(@archives), 2, 'older archives are removed, two kept');
ok(!-e $path, 'oldest archive removed');

# archives are told apart by name, not by time: a stray archive with a
# later name does not push out the new one or the one the index named
my $future = "$dumpdir/sync-42-29991231T000000000000Z.tar.zst";
copy_file($path3, $future);
my $path4 = $node->safe_psql('content', 'SELECT path FROM sync_dump()');
ok(-e $path4, 'a dump keeps its own archive even when a later-named one exists');
ok(-e $path3, 'and the archive the previous index named');
ok(!-e $future, 'and removes the stray one');

# an index that cannot be read names nothing worth keeping: the dump goes on
# and leaves the transaction it ran in clean (no snapshot, no SPI state of a
# caught error left behind: PostgreSQL would warn at commit)
{
	open(my $fh, '>', "$dumpdir/sync-index.json") or die;
	print $fh '{"archive": "sync-42-x.tar.zst", not json';
	close($fh);
	my ($rc, $out, $err) = $node->psql('content',
		q{BEGIN; SELECT path FROM sync_dump(); SELECT count(*) FROM sync_machine; COMMIT;});
	is($rc, 0, 'a dump over an unreadable index succeeds');
	is($err, '', 'and its transaction ends without a warning');
	my ($path5, $machines) = split /\n/, $out;
	is($machines, '2', 'statements after it in the same transaction run');
	is_deeply([ glob("$dumpdir/sync-42-*.tar.zst") ], [$path5],
		'only the new archive is kept when the old index could not be read');
	is($dumpdir . '/' . decode_json(slurp_file("$dumpdir/sync-index.json"))->{archive}, $path5,
		'a valid index names it');
}

# session settings do not change what is published
$node->safe_psql('content', q{
	CREATE TABLE formats (id bigserial PRIMARY KEY, f double precision, ts timestamptz,
		d date, iv interval, b bytea, m money);
	SELECT sync_add_table('formats');
	INSERT INTO formats (f, ts, d, iv, b, m) VALUES
		(0.1::float8 + 0.2::float8, '2026-01-02 03:04:05.678+02', '2026-01-02', '1 day 02:03:04', '\x00ff', 12.34);
});
my $plain = extract($node->safe_psql('content', 'SELECT path FROM sync_dump()'), "$tmp/extract_plain");
my $odd_path = $node->safe_psql('content', q{
	SET extra_float_digits = -10; SET DateStyle = 'SQL, DMY'; SET TimeZone = 'America/New_York';
	SET IntervalStyle = 'sql_standard'; SET bytea_output = 'escape';
	SELECT path FROM sync_dump()});
my $odd = extract($odd_path, "$tmp/extract_odd");
is(manifest_table($odd, 'formats')->{sha256}, manifest_table($plain, 'formats')->{sha256},
	'DateStyle, TimeZone, IntervalStyle, extra_float_digits, bytea_output do not change the published bytes');
is(table_text("$tmp/extract_plain", manifest_table($plain, 'formats')),
	"42000000001\t0.30000000000000004\t2026-01-02 01:04:05.678+00\t2026-01-02\t1 day 02:03:04\t\\\\x00ff\t\$12.34\n",
	'values are written in canonical formats, exactly');
$node->safe_psql('content', q{SELECT sync_remove_table('formats'); DROP TABLE formats;});


###########################################################################
# A consistent snapshot while another session writes, and nothing blocked
###########################################################################

my $dumpdir2 = "$tmp/dump_concurrent";
make_path($dumpdir2);
$node->safe_psql('postgres', 'CREATE DATABASE busy');
$node->safe_psql('busy', qq{
	CREATE EXTENSION sync;
	ALTER DATABASE busy SET sync.dump_directory = '$dumpdir2';
	SELECT sync_register_machine(1, 'one.example.org');
	SELECT sync_init(1);
	CREATE TABLE acct (id bigserial PRIMARY KEY, amount bigint NOT NULL);
	CREATE TABLE filler (id bigserial PRIMARY KEY, payload text);
	CREATE TABLE ledger (id bigserial PRIMARY KEY, amount bigint NOT NULL);
	CREATE TABLE progress (n bigint NOT NULL, stop boolean NOT NULL);
	SELECT sync_add_table('acct');
	SELECT sync_add_table('filler');
	SELECT sync_add_table('ledger');
	INSERT INTO progress VALUES (0, false);
	INSERT INTO acct (amount) SELECT 1000 FROM generate_series(1, 100);
	INSERT INTO ledger (amount) SELECT 0 FROM generate_series(1, 100);
	INSERT INTO filler (payload) SELECT repeat(md5(i::text), 6) FROM generate_series(1, 300000) i;
});

# The writer moves amounts from acct to ledger, one transaction per move,
# until told to stop (at most 200000 moves or 120 seconds).
my $writer = $node->background_psql('busy');
$writer->query_until(qr/writer started/, q{
\echo writer started
DO $$
DECLARE
	i integer := 0;
	deadline timestamptz := clock_timestamp() + interval '120 s';
BEGIN
	LOOP
		i := i + 1;
		UPDATE acct SET amount = amount - 1 WHERE id = 1000000001 + i % 100;
		UPDATE ledger SET amount = amount + 1 WHERE id = 1000000001 + i % 100;
		UPDATE progress SET n = n + 1;
		COMMIT;
		EXIT WHEN i >= 200000 OR clock_timestamp() > deadline
			OR (SELECT stop FROM progress);
	END LOOP;
END $$;
});

# wait until it is going (bounded)
my $started = 0;
for (1 .. 300)
{
	$started = $node->safe_psql('busy', 'SELECT n FROM progress');
	last if $started > 10;
	select(undef, undef, undef, 0.1);
}
ok($started > 10, 'writer is committing');

# an open transaction holding row locks does not block the dump
my $holder = $node->background_psql('busy');
$holder->query_safe('BEGIN');
$holder->query_safe("INSERT INTO acct (amount) VALUES (777777)");

my $before = $node->safe_psql('busy', 'SELECT n FROM progress');
my $busy_path = $node->safe_psql('busy', 'SELECT path FROM sync_dump()');
my $after = $node->safe_psql('busy', 'SELECT n FROM progress');
ok($after > $before, "writes went on during the dump ($before -> $after commits)");

$holder->query_safe('COMMIT');
$holder->quit;
$node->safe_psql('busy', 'UPDATE progress SET stop = true');
$writer->quit;

my $mb = extract($busy_path, "$tmp/extract_busy");
my $sum = 0;
for my $name ('acct', 'ledger')
{
	for my $line (split /\n/, table_text("$tmp/extract_busy", manifest_table($mb, $name)))
	{
		my (undef, $amount) = split /\t/, $line;
		$sum += $amount;
	}
}
is($sum, 100 * 1000, 'acct + ledger in the archive add up: one snapshot across tables');
unlike(table_text("$tmp/extract_busy", manifest_table($mb, 'acct')),
	qr/\t777777$/m, 'uncommitted row is not in the dump');
is(manifest_table($mb, 'filler')->{rows}, 300000, 'large table dumped whole');
ok(scalar(@{ manifest_table($mb, 'filler')->{files} }) > 1,
	'large table split into several archive members');

###########################################################################
# Disk full mid-write: clean error, previous dump intact, nothing left over
###########################################################################

SKIP:
{
	my $small = $ENV{SYNC_TEST_SMALLFS};
	skip 'no small file system to fill (test/run.sh mounts one when run as root)', 6
	  unless $small && -d $small && -w $small;

	$node->safe_psql('postgres', 'CREATE DATABASE diskfull');
	$node->safe_psql('diskfull', qq{
		CREATE EXTENSION sync;
		ALTER DATABASE diskfull SET sync.dump_directory = '$small';
		SELECT sync_register_machine(1, 'one.example.org');
		SELECT sync_init(1);
		CREATE TABLE blob (id bigserial PRIMARY KEY, data text);
		SELECT sync_add_table('blob');
		INSERT INTO blob (data) VALUES ('small');
	});
	my $first = $node->safe_psql('diskfull', 'SELECT path FROM sync_dump()');
	my $index_before = slurp_file("$small/sync-index.json");

	# incompressible data, several times the file system's size
	$node->safe_psql('diskfull', q{
		INSERT INTO blob (data)
		SELECT string_agg(md5(random()::text || i::text || j::text), '')
		  FROM generate_series(1, 2000) i, generate_series(1, 64) j GROUP BY i;
	});
	my ($rc, $out, $err) = $node->psql('diskfull', 'SELECT path FROM sync_dump()',
		extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	isnt($rc, 0, 'dump onto a full disk fails');
	like($err, qr/ERROR:  53100: could not write dump archive ".*": No space left on device/,
		'disk full is reported with SQLSTATE 53100');
	is(slurp_file("$small/sync-index.json"), $index_before, 'index still names the previous dump');
	ok(-f $first, 'previous archive intact');
	opendir(my $dh, $small) or die;
	my @left = sort grep { !/^\.\.?$/ } readdir($dh);
	closedir($dh);
	ok((grep { /^\.sync-\d+-\d+\.state$/ } @left) == 1, 'the state of the previous dump is kept');
	is_deeply([ grep { !/\.state$/ } @left ], [ (split m{/}, $first)[-1], 'sync-index.json' ],
		'no partial or temporary file left');
	is($node->safe_psql('diskfull',
			q{SELECT status || ': ' || (message LIKE '%No space left on device%')
			    FROM sync_log ORDER BY id DESC LIMIT 1}),
		'failed: true', 'the failure is recorded in sync_log');
}

# The HINT for a missing sync.dump_directory works as written, in a fresh
# session of a server without shared_preload_libraries (PostgreSQL 15 knows
# the setting only once the library is loaded: the hint loads it)
{
	$node->safe_psql('postgres', 'CREATE DATABASE hinted');
	$node->safe_psql('hinted', q{CREATE EXTENSION sync;
		SELECT sync_register_machine(5, 'five.example.org'); SELECT sync_init(5);
		CREATE TABLE note (id bigserial PRIMARY KEY, body text); SELECT sync_add_table('note');});
	my ($rc, $out, $err) = $node->psql('hinted', 'SELECT kind FROM sync_dump()');
	my ($hint) = $err =~ /HINT:  .*e\.g\. (.*)$/m;
	like($hint, qr/^LOAD 'sync'; ALTER SYSTEM SET sync\.dump_directory = '[^']+'; SELECT pg_reload_conf\(\);$/,
		'a dump without sync.dump_directory hints at the statements that set it');
	my $dir = "$tmp/dump_hinted";
	make_path($dir);
	$hint =~ s/'\/[^']+'/'$dir'/;
	($rc, $out, $err) = $node->psql('hinted', $hint);
	is($rc, 0, 'the hint runs in a fresh session (the example path replaced)');
	$node->poll_query_until('hinted', "SELECT current_setting('sync.dump_directory', true) = '$dir'")
	  or die 'the reload did not take';
	is($node->safe_psql('hinted', 'SELECT kind FROM sync_dump()'), 'full', 'and the next dump publishes');
	ok(-f "$dir/sync-index.json", 'into that directory');
	$node->safe_psql('hinted', 'ALTER SYSTEM RESET sync.dump_directory; SELECT pg_reload_conf();');
}

$node->stop;
done_testing();
