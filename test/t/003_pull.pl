# sync_pull between three servers through a real nginx on loopback:
# machines 0 (central), 42 and 7.  42 and 7 pull 0, 7 pulls 42; changes
# propagate; failures of every kind leave the subscriber exactly as it was.
use strict;
use warnings;
use Digest::SHA qw(sha256_hex);
use File::Copy qw(copy);
use File::Path qw(make_path remove_tree);
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use SyncFederation;
use SyncNginx;

my $tmp = $PostgreSQL::Test::Utils::tmp_check;
my $www = "$tmp/www";
make_path($www);

# three servers, each publishing into its own directory under $www
start_servers($www, 0, 42, 7);

my ($ca, $cert, $key) = SyncNginx::make_certificates("$tmp/certs");
my $nginx = SyncNginx->new(prefix => "$tmp/nginx", root => $www, cert => $cert,
	key => $key, slow => "$www/m0", rate => '2k');

my $schema = q{
	CREATE EXTENSION sync;
	CREATE TABLE site (id bigserial PRIMARY KEY, name text NOT NULL,
		email text, access_level integer DEFAULT 4);
	CREATE TABLE trait (id bigserial PRIMARY KEY,
		site_id bigint REFERENCES site ON DELETE CASCADE,
		value numeric, note text, access_level integer DEFAULT 4);
};
join_federation($nginx, $schema, q{
	SELECT sync_add_table('site', 'access_level', NULL,
		'{"email": "''site'' || id || ''@example.org''"}');
	SELECT sync_add_table('trait', 'access_level');
});

###########################################################################
# First pulls: 42 and 7 pull machine 0
###########################################################################

sql(0, q{
	INSERT INTO site (name, email) VALUES ('north', 'ana@zero'), ('south', 'ben@zero');
	INSERT INTO site (name, email, access_level) VALUES ('secret', 'cy@zero', 1);
	INSERT INTO trait (site_id, value, note) VALUES (1, 1.5, 'first'), (2, 2.5, E'tab\there');
	INSERT INTO trait (site_id, value, access_level) VALUES (1, 9.9, 0);
	SELECT sync_dump();
});

is(pull(42, 0), 'applied|4|0|0', '42 pulls 0: rows inserted');
is(sql(42, 'SELECT id, name, email FROM site ORDER BY id'),
	"1|north|site1\@example.org\n2|south|site2\@example.org",
	'published rows arrive, anonymized, without the private one');
is(sql(42, 'SELECT id, site_id, value, note FROM trait ORDER BY id'),
	"1|1|1.5|first\n2|2|2.5|tab\there", 'traits arrive, level applied');
is(pull(7, "'m0.example.org'"), 'applied|4|0|0', '7 pulls 0 by hostname');
is(pull(42, 0), 'unchanged|0|0|0', 're-pull of an unchanged dump: nothing applied');
is(sql(42, q{SELECT status || '|' || bytes || '|' || tables FROM sync_status WHERE machine_id = 0}),
	sql(42, q{SELECT 'unchanged|' || bytes || '|' || tables FROM sync_log WHERE kind = 'pull' ORDER BY id DESC LIMIT 1}),
	'sync_status shows the last attempt');
ok(sql(42, q{SELECT bytes FROM sync_log WHERE kind = 'pull' ORDER BY id DESC LIMIT 1}) < 1024,
	'an unchanged re-pull downloads only the index');

###########################################################################
# 42's own rows reference 0's; 7 pulls 42
###########################################################################

sql(42, q{
	INSERT INTO site (name) VALUES ('lab');
	INSERT INTO trait (site_id, value, note) VALUES (1, 42.1, 'on 0''s site'), (42000000001, 42.2, 'on own site');
	SELECT sync_dump();
});
is(pull(7, 42), 'applied|3|0|0', '7 pulls 42: its site and traits');
is(sql(7, 'SELECT id, site_id, note FROM trait WHERE id > 1000 ORDER BY id'),
	"42000000001|1|on 0's site\n42000000002|42000000001|on own site",
	'42\'s rows referencing 0\'s rows arrive on 7');

###########################################################################
# Changes propagate; local rows untouched
###########################################################################

sql(42, q{INSERT INTO trait (site_id, value, note) VALUES (2, 0.5, 'local on 0''s south')});
my $local42 = sql(42, 'SELECT string_agg(t::text, \'|\' ORDER BY id) FROM trait t WHERE id > 1000');
sql(0, q{
	UPDATE site SET name = 'north (renamed)' WHERE id = 1;
	DELETE FROM trait WHERE id = 2;
	INSERT INTO trait (site_id, value) VALUES (2, 3.5);
	SELECT sync_dump();
});
is(pull(42, 0), 'applied|1|1|1', 'insert, update and delete propagate');
is(sql(42, 'SELECT name FROM site WHERE id = 1'), 'north (renamed)', 'update applied');
is(sql(42, 'SELECT count(*) FROM trait WHERE id = 2'), '0', 'delete applied');
is(sql(42, 'SELECT string_agg(t::text, \'|\' ORDER BY id) FROM trait t WHERE id > 1000'),
	$local42, 'local rows untouched');

# identical rows are not written: no new tuple version
my $xmin = sql(42, 'SELECT xmin FROM site WHERE id = 2');
sql(0, q{UPDATE trait SET note = 'changed' WHERE id = 1; SELECT sync_dump();});
is(pull(42, 0), 'applied|0|1|0', 'only the changed row is updated');
is(sql(42, 'SELECT xmin FROM site WHERE id = 2'), $xmin, 'an identical row is not rewritten');

# edits to another machine's rows are its owner's to settle: the guard
# refuses them, and a pull restores what went round it (replica mode)
my ($edit_rc, $edit_out, $edit_err) = $node{42}->psql('postgres',
	q{UPDATE site SET name = 'edited here' WHERE id = 2});
like($edit_err, qr/cannot update row 2 of table public\.site, which belongs to machine 0/,
	'a local edit of a copy is refused');
sql(42, q{SET session_replication_role = replica; UPDATE site SET name = 'edited here' WHERE id = 2});
sql(0, q{INSERT INTO site (name) VALUES ('west'); SELECT sync_dump();});
is(pull(42, 0), 'applied|1|1|0', 'the owner\'s version wins');
is(sql(42, 'SELECT name FROM site WHERE id = 2'), 'south', 'local edit of a copy replaced');

###########################################################################
# Registry through archives
###########################################################################

sql(0, q{
	SELECT sync_register_machine(8, 'm8.example.org', 'https://m8.example.org/sync/');
	SELECT sync_register_machine(42, NULL, NULL, 'admin@m42 (from authority)');
	SELECT sync_dump();
});
pull(7, 0);
is(sql(7, 'SELECT hostname, sync_start FROM sync_machine WHERE id = 8'),
	'm8.example.org|8000000001', 'a new machine is learnt from an archive');
is(sql(7, 'SELECT sync_contact FROM sync_machine WHERE id = 42'),
	'admin@m42 (from authority)', 'the registry authority may change another machine\'s entry');
sql(42, q{
	SELECT sync_register_machine(0, NULL, NULL, 'changed by 42');
	UPDATE site SET name = 'lab 2' WHERE id = 42000000001;
	SELECT sync_dump();
});
pull(7, 42);
is(sql(7, 'SELECT coalesce(sync_contact, \'none\') FROM sync_machine WHERE id = 0'), 'none',
	'another machine cannot change machine 0\'s entry');

###########################################################################
# Schema drift, both ways
###########################################################################

sql(0, q{ALTER TABLE site ADD COLUMN elevation integer DEFAULT 7;
	UPDATE site SET elevation = 100, name = 'north (elevated)' WHERE id = 1; SELECT sync_dump();});
# (a local note on a copy: written past the guard, as a superuser may;
# a site that annotates copies registers the table foreign_rows 'writable')
sql(42, q{ALTER TABLE site ADD COLUMN local_note text DEFAULT 'mine';
	SET session_replication_role = replica; UPDATE site SET local_note = 'kept' WHERE id = 1;});
my ($rc, $out, $err) = $node{42}->psql('postgres', 'SELECT status, updated FROM sync_pull(0)');
is($out, 'applied|1', 'pull applies although the archive has a column this server lacks');
like($err, qr/WARNING:  table public\.site here lacks column\(s\) "elevation".*values were dropped/,
	'the dropped column is named in a WARNING');
like(sql(42, q{SELECT details::text FROM sync_log WHERE kind = 'pull' ORDER BY id DESC LIMIT 1}),
	qr/elevation/, 'and in the log');
is(sql(42, 'SELECT local_note FROM site WHERE id = 1'), 'kept',
	'a local column the archive lacks keeps its value');
sql(0, q{INSERT INTO site (name) VALUES ('new with elevation'); SELECT sync_dump();});
pull(42, 0);
is(sql(42, q{SELECT local_note FROM site WHERE name = 'new with elevation'}), 'mine',
	'and its default on insert');

# a table the subscriber does not register is skipped with a warning
sql(0, q{CREATE TABLE note (id bigserial PRIMARY KEY, body text); SELECT sync_add_table('note');
	INSERT INTO note (body) VALUES ('hello'); SELECT sync_dump();});
($rc, $out, $err) = $node{7}->psql('postgres', 'SELECT status FROM sync_pull(0)');
is($out, 'applied', 'pull with a table not registered here succeeds');
like($err, qr/WARNING:  table public\.note of machine 0 is not registered here/,
	'unregistered table skipped with a warning');

###########################################################################
# A deletion that would reach another machine's row fails cleanly
###########################################################################

sql(0, q{DELETE FROM trait WHERE site_id = 2; DELETE FROM site WHERE id = 2; SELECT sync_dump();});
my $e = pull_fails(42, 0,
	qr/ERROR:  pull of machine 0 would delete rows of table public\.site that rows of table public\.trait still reference/,
	'cascade into 42\'s own row');
like($e, qr/public\.trait \(42000000003\) reference rows of public\.site \(keys 2\)/,
	'the error names the tables and keys');
sql(42, q{DELETE FROM trait WHERE id = 42000000003; SELECT sync_dump();});
like(pull(42, 0), qr/^applied\|/, 'after the local row is gone, the deletion applies');
is(sql(42, 'SELECT count(*) FROM site WHERE id = 2'), '0', 'the site is deleted');
like(pull(7, 42), qr/^applied\|/, '7 follows 42');

###########################################################################
# Failures of every kind leave the subscriber as it was
###########################################################################

sql(0, q{INSERT INTO trait (site_id, value) VALUES (1, 77); SELECT sync_dump();});
my $url0 = $nginx->url('m0/');
sub point_to { my ($id, $url) = @_; sql($id, "SELECT sync_register_machine(0, NULL, '$url')"); }

# server down
my $closed = PostgreSQL::Test::Cluster::get_free_port();
point_to(7, "http://127.0.0.1:$closed/");
pull_fails(7, 0, qr/ERROR:  could not connect to machine 0\nDETAIL:  http:\/\/127\.0\.0\.1:$closed\/sync-index\.json: .*\nHINT:  Check the machine's sync_url in sync_machine, and that its web server runs and is reachable from this server\./,
	'server down');
is(sql(7, q{SELECT sqlstate || '|' || (detail LIKE 'http://127.0.0.1:%/sync-index.json: %') || '|' || hint
			  FROM sync_log WHERE kind = 'pull' ORDER BY id DESC LIMIT 1}),
	"08006|true|Check the machine's sync_url in sync_machine, and that its web server runs and is reachable from this server.",
	'sync_log keeps the SQLSTATE, detail and hint of the failure');
is(sql(7, q{SELECT status || '|' || sqlstate || '|' || (detail IS NOT NULL) || '|' || (hint LIKE 'Check the machine%')
			  FROM sync_status WHERE machine_id = 0}),
	'failed|08006|true|true', 'and sync_status shows them');

# pulling this server: said first, even when it has no sync_url to pull from
{
	my $url7 = sql(7, 'SELECT sync_url FROM sync_machine WHERE id = 7');
	sql(7, 'UPDATE sync_machine SET sync_url = NULL WHERE id = 7');
	my ($rc, $out, $err) = $node{7}->psql('postgres', 'SELECT status FROM sync_pull(7)');
	is($err, "psql:<stdin>:1: ERROR:  machine 7 is this server\nDETAIL:  A server publishes its own rows; it pulls only other machines'.",
		'pulling this server says so, though it has no sync_url');
	sql(7, "UPDATE sync_machine SET sync_url = '$url7' WHERE id = 7");
}

# https:// where the web server speaks plain HTTP
point_to(7, $url0 =~ s/^http:/https:/r);
pull_fails(7, 0, qr/ERROR:  TLS handshake with machine 0 failed\nDETAIL:  https:.*\nHINT:  If the web server there serves plain HTTP on that port, the machine's sync_url must start with http:\/\//,
	'https against plain HTTP');

# 404 and 500
point_to(7, $nginx->url('nothing-here/'));
pull_fails(7, 0, qr/ERROR:  machine 0 has published no index at .*nothing-here/, '404');
point_to(7, $nginx->url('err500/'));
pull_fails(7, 0, qr/ERROR:  could not fetch index of machine 0\nDETAIL:  .* answered HTTP status 500/, '500');

# timeout: nginx sends 2 kB/s, the archive is larger than that
sql(0, q{INSERT INTO trait (site_id, note) SELECT 1, md5(i::text) FROM generate_series(1, 3000) i; SELECT sync_dump();});
point_to(7, $nginx->url('slow/'));
pull_fails(7, 0, qr/ERROR:  pull of machine 0 took longer than sync.timeout \(1000 ms\)\nDETAIL:  Downloading, checking and applying an archive must end within sync.timeout; nothing was applied\./,
	'timeout', set => "SET sync.timeout = '1s';", status => 'timeout');

# a cancel stops a transfer promptly
my $t0 = time;
pull_fails(7, 0, qr/ERROR:  canceling statement due to statement timeout/, 'cancel (statement_timeout)',
	set => "SET statement_timeout = '1500ms';");
ok(time - $t0 < 20, 'the cancel stopped the transfer promptly');

# a long pull shows its progress; pg_cancel_backend (as Ctrl-C) stops it
{
	my $before = fingerprint(7);
	my $slow_pull = $node{7}->background_psql('postgres', on_error_stop => 0);
	$slow_pull->query_until(qr/started/, "\\echo started\nSELECT status FROM sync_pull(0);\n");
	my $progress = '';
	for (1 .. 200)
	{
		$progress = sql(7, q{SELECT machine_id || ' ' || phase FROM sync_progress});
		last if $progress =~ /downloading/;
		select(undef, undef, undef, 0.05);
	}
	is($progress, '0 downloading', 'sync_progress shows the pull downloading from machine 0');
	my $first = sql(7, q{SELECT bytes || ' ' || bytes_total FROM sync_progress});
	select(undef, undef, undef, 1.5);
	my $later = sql(7, q{SELECT bytes || ' ' || bytes_total FROM sync_progress});
	my ($bytes1, $total1) = split / /, $first;
	my ($bytes2, $total2) = split / /, $later;
	ok($total1 > 0 && $total1 == $total2 && $bytes2 > $bytes1 && $bytes2 < $total2,
		"the bytes downloaded grow within a second and a half, towards the total the index gives ($first, then $later)");
	my $t1 = time;
	sql(7, q{SELECT pg_cancel_backend(pid) FROM sync_progress});
	for (1 .. 200)
	{
		last if sql(7, q{SELECT count(*) FROM sync_progress}) eq '0';
		select(undef, undef, undef, 0.05);
	}
	is(sql(7, q{SELECT count(*) FROM sync_progress}), '0', 'the cancelled pull is gone');
	ok(time - $t1 < 10, 'the cancel stopped the transfer promptly');
	$slow_pull->quit;
	is(fingerprint(7), $before, 'cancelled pull: subscriber exactly as before');
	like(sql(7, q{SELECT status || ': ' || message FROM sync_log WHERE kind = 'pull' ORDER BY id DESC LIMIT 1}),
		qr/^failed: canceling statement due to user request/, 'cancelled pull recorded in sync_log');
}

# download larger than sync.max_download_size
point_to(7, $url0);
pull_fails(7, 0, qr/ERROR:  archive of machine 0 is larger than sync.max_download_size \(8kB\)\nDETAIL:  .*\nHINT:  Raise sync\.max_download_size if the machine really publishes that much\./,
	'over the cap', set => "SET sync.max_download_size = '8kB';");
is(sql(7, "SET sync.max_download_size = '1MB'; SELECT status FROM sync_pull(0, dry_run => true)"), 'dry run',
	'raised as the hint says (a size with units), the archive is fetched (a dry run, changing nothing)');

# fake publications built from machine 0's real one
sub fake
{
	my ($name, $edit) = @_;
	fake_publication($www, 0, $name, $edit);
	point_to(7, $nginx->url("$name/"));
}

fake('truncated', sub {
	my ($dir, $index) = @_;
	truncate("$dir/$index->{archive}", $index->{size} - 100) or die;
});
pull_fails(7, 0, qr/ERROR:  archive of machine 0 has \d+ bytes, not the \d+ its index gives/, 'truncated download');

fake('tampered', sub {
	my ($dir, $index) = @_;
	$index->{sha256} = '0' x 64;
});
pull_fails(7, 0, qr/ERROR:  checksum of the archive of machine 0 does not match its index/, 'tampered checksum');

fake('corrupted', sub {
	my ($dir, $index) = @_;
	my $f = "$dir/$index->{archive}";
	open(my $fh, '+<:raw', $f) or die;
	seek($fh, int($index->{size} / 2), 0);
	read($fh, my $byte, 1);
	seek($fh, int($index->{size} / 2), 0);
	print $fh chr(ord($byte) ^ 0xff);
	close($fh);
	# an index that matches the damaged file: only the archive's own checks can tell
	$index->{sha256} = sha256_hex(slurp_file($f));
});
pull_fails(7, 0, qr/ERROR:  archive ".*" is damaged/, 'corrupted archive');

# the archive of another machine
point_to(7, $nginx->url('m42/'));
pull_fails(7, 0, qr/ERROR:  .*sync-index\.json is the index of machine 42, not of machine 0/, 'index of another machine');
fake('other', sub {
	my ($dir, $index) = @_;
	my $i42 = decode_json(slurp_file("$www/m42/sync-index.json"));
	unlink("$dir/$index->{archive}");
	copy("$www/m42/$i42->{archive}", "$dir/$index->{archive}") or die;
	$index->{sha256} = $i42->{sha256};
	$index->{size} = $i42->{size};
});
pull_fails(7, 0, qr/ERROR:  archive is machine 42's, not machine 0's/, 'archive of another machine');

# rows outside the machine's range, with checksums made to match
fake('outside', sub {
	my ($dir, $index) = @_;
	edit_archive($dir, $index, sub {
		my ($x, $header, $manifest) = @_;
		my ($site) = grep { $_->{name} eq 'site' } @{ $manifest->{tables} };
		my $file = "$x/$site->{files}[0]";
		open(my $fh, '>>', $file) or die;
		print $fh "7000000099\tsmuggled\t\\N\t4\t\\N\n";
		close($fh);
		$site->{rows}++;
		# (a forger drops the digest, which a manifest of revision 1 lacks)
		delete $site->{digest};
		delete $site->{published};
		$site->{sha256} = sha256_hex(join('', map { slurp_file("$x/$_") } @{ $site->{files} }));
		$site->{bytes} += length("7000000099\tsmuggled\t\\N\t4\t\\N\n");
	});
});
pull_fails(7, 0,
	qr/ERROR:  archive of machine 0 has a row of table public\.site with key 7000000099, outside the machine's range \[1, 999999999\]/,
	'keys outside the range');

# a range that conflicts with this server's registry
point_to(7, $url0);
sql(7, q{SELECT sync_register_machine(8, NULL, sync_start => 8000000001, sync_end => 8000000002)});
{
	my ($rc, $out, $err) = $node{7}->psql('postgres', 'SELECT status FROM sync_pull(0)');
	is($rc, 0, 'the authority\'s word against an entry registered here does not fail the pull');
	like($err, qr/WARNING:  registry authority \(machine 0\) says machine 8 is m8\.example\.org with \[8000000001, 8999999999\]; that is set aside\nDETAIL:  Here machine 8 owns \[8000000001, 8000000002\], registered here or already in use\./,
		'it is set aside with a WARNING');
	is(sql(7, q{SELECT sync_start || ',' || sync_end || ',' || coalesce(learned_from::text, 'here') FROM sync_machine WHERE id = 8}),
		'8000000001,8000000002,here', 'and the entry registered here stays');
}
sql(7, q{SELECT sync_register_machine(8, NULL, sync_start => 8000000001, sync_end => 8999999999)});

# untrusted TLS certificate, then trusted through a CA file
point_to(7, $nginx->tls_url('m0/'));
pull_fails(7, 0, qr/ERROR:  TLS certificate of machine 0 is not trusted\nDETAIL:  .*\nHINT:  If the machine uses a certificate of your own certificate authority, give its CA file with sync_set_remote\(0, ca_file => '...'\)\./,
	'untrusted TLS certificate');
PostgreSQL::Test::Utils::append_to_file("$tmp/not-a-ca.pem", "not a certificate\n");
sql(7, "SELECT sync_set_remote(0, ca_file => '$tmp/not-a-ca.pem')");
pull_fails(7, 0, qr/ERROR:  could not use the CA file set for machine 0\n/, 'a CA file that cannot be read');
sql(7, "SELECT sync_set_remote(0, ca_file => '$ca')");
like(pull(7, 0), qr/^applied\|/, 'with the test CA trusted, the TLS pull succeeds');
is(sql(7, 'SELECT count(*) FROM trait WHERE value = 77'), '1', 'and its rows arrive');

# credentials stay out of reach, and go only where they were set for
# (machine 0's own archive set its URL back to http: point to https again)
point_to(7, $nginx->tls_url('m0/'));
sql(7, "SELECT sync_set_remote(0, username => 'sync', password => 's3cret')");
is(sql(7, 'SELECT username, has_password, credentials_for FROM sync_remote_options WHERE machine_id = 0'),
	'sync|t|' . $nginx->tls_url('m0/'), 'sync_remote_options shows credentials are set, not the password');
sql(0, q{INSERT INTO trait (site_id, value) VALUES (1, 78); SELECT sync_dump();});
like(pull(7, 0), qr/^applied\|/, 'a pull with credentials over https works');
is(sql(7, q{SELECT count(*) FROM sync_log WHERE message LIKE '%s3cret%' OR details::text LIKE '%s3cret%'}),
	'0', 'the password never reaches sync_log');
sql(7, q{CREATE ROLE plain LOGIN});
($rc, $out, $err) = $node{7}->psql('postgres', 'SELECT password FROM sync_remote', extra_params => [ '-U', 'plain' ]);
like($err, qr/permission denied for table sync_remote/, 'PUBLIC cannot read credentials');
point_to(7, $url0);
pull_fails(7, 0, qr/ERROR:  sync_url of machine 0 changed since its credentials were set/,
	'credentials are not sent to a URL they were not set for');
sql(7, "SELECT sync_set_remote(0, username => 'sync')");
pull_fails(7, 0, qr/ERROR:  credentials for machine 0 are sent only over https/, 'credentials never go over http');
sql(7, "SELECT sync_set_remote(0, username => '', password => '')");
like(pull(7, 0), qr/^(applied|unchanged)\|/, 'without credentials the http pull works again');

# a role allowed to set options cannot borrow the owner's rights through
# an operator of its own
sql(7, q{
	CREATE ROLE alice LOGIN;
	CREATE SCHEMA evil AUTHORIZATION alice;
	GRANT EXECUTE ON FUNCTION sync_set_remote(bigint, text, text, text, text) TO alice;
	GRANT SELECT ON sync_machine TO alice;
});
$node{7}->psql('postgres', q{
	CREATE FUNCTION evil.eq(bigint, bigint) RETURNS boolean LANGUAGE plpgsql AS
	  $$BEGIN IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
	      EXECUTE 'ALTER ROLE alice SUPERUSER'; END IF; RETURN $1 OPERATOR(pg_catalog.=) $2; END$$;
	CREATE OPERATOR evil.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = evil.eq);
	SET search_path = evil, pg_catalog, public;
	SELECT public.sync_set_remote(0, proxy => 'http://127.0.0.1:1/');
	SELECT public.sync_set_remote(0, proxy => '');
}, extra_params => [ '-U', 'alice' ]);
is(sql(7, q{SELECT rolsuper FROM pg_roles WHERE rolname = 'alice'}), 'f',
	'an operator planted by the caller is not used as the options\' owner');

###########################################################################
# Exact copies, late registrations, triggers, references by other columns
###########################################################################

# equal is not enough: the copy is exactly what the publisher has
point_to(7, $url0);
sql(0, q{UPDATE trait SET value = 1.50 WHERE id = 1; SELECT sync_dump();});
like(pull(7, 0), qr/^applied\|0\|1\|0$/, '1.5 changed to 1.50 is an update');
is(sql(7, 'SELECT value FROM trait WHERE id = 1'), '1.50', 'the copy has the publisher\'s exact value');

# a table skipped because it was not registered arrives once it is
sql(7, q{CREATE TABLE note (id bigserial PRIMARY KEY, body text); SELECT sync_add_table('note');});
like(pull(7, 0), qr/^applied\|/, 'the same archive is applied again once a skipped table is registered');
is(sql(7, 'SELECT body FROM note'), 'hello', 'and its rows arrive');

# local triggers run with the caller's search_path during a pull
sql(42, q{
	CREATE TABLE audit (what text);
	CREATE FUNCTION audit_site() RETURNS trigger LANGUAGE plpgsql AS
	  $$BEGIN INSERT INTO audit VALUES (TG_OP || ' ' || NEW.name); RETURN NEW; END$$;
	CREATE TRIGGER audit_site AFTER INSERT OR UPDATE ON site FOR EACH ROW EXECUTE FUNCTION audit_site();
});
sql(0, q{UPDATE site SET name = 'north (audited)' WHERE id = 1; SELECT sync_dump();});
like(pull(42, 0), qr/^applied\|/, 'a pull fires local triggers');
is(sql(42, q{SELECT what FROM audit}), 'UPDATE north (audited)', 'which see the caller\'s search_path');

# references to another column: ON UPDATE CASCADE must not reach other machines' rows
for my $id (0, 42)
{
	sql($id, q{
		CREATE TABLE plot (id bigserial PRIMARY KEY, code text UNIQUE NOT NULL);
		CREATE TABLE visit (id bigserial PRIMARY KEY,
			plot_code text REFERENCES plot (code) ON UPDATE CASCADE);
		SELECT sync_add_table('plot'), sync_add_table('visit');
	});
}
sql(0, q{INSERT INTO plot (code) VALUES ('A'); SELECT sync_dump();});
like(pull(42, 0), qr/^applied\|/, 'plots arrive');
sql(42, q{INSERT INTO visit (plot_code) VALUES ('A')});
sql(0, q{UPDATE plot SET code = 'B'; SELECT sync_dump();});
pull_fails(42, 0, qr/ERROR:  pull of machine 0 would change values of table public\.plot that rows of table public\.visit reference\n.*public\.visit \(42000000001\)/s,
	'ON UPDATE CASCADE into 42\'s own row');
is(sql(42, 'SELECT plot_code FROM visit'), 'A', 'the local row is untouched');
sql(42, 'DELETE FROM visit');
like(pull(42, 0), qr/^applied\|0\|1\|0$/, 'with the referencing row gone, the change applies');

# the same through a two-column reference to columns whose names hold a
# comma and quotes (their names are quoted, never split on commas)
for my $id (0, 42)
{
	sql($id, q{
		CREATE TABLE bed (id bigserial PRIMARY KEY, "zone,row" text, "no. ""a""" integer,
			UNIQUE ("zone,row", "no. ""a"""));
		SELECT sync_add_table('bed');
	});
}
sql(42, q{CREATE TABLE planting (id bigserial PRIMARY KEY, zr text, n integer,
	FOREIGN KEY (zr, n) REFERENCES bed ("zone,row", "no. ""a""") ON UPDATE CASCADE)});
sql(0, q{INSERT INTO bed ("zone,row", "no. ""a""") VALUES ('A,1', 1); SELECT sync_dump();});
like(pull(42, 0), qr/^applied\|1\|0\|0$/, 'beds arrive');
sql(42, q{INSERT INTO planting (zr, n) VALUES ('A,1', 1)});
sql(0, q{UPDATE bed SET "zone,row" = 'B,2'; SELECT sync_dump();});
pull_fails(42, 0, qr/ERROR:  pull of machine 0 would change values of table public\.bed that rows of table public\.planting reference\nDETAIL:  Rows of public\.planting \(\d+\) reference columns "zone,row", "no\. ""a""" of rows of public\.bed/,
	'ON UPDATE CASCADE through columns named with a comma');
sql(42, 'DELETE FROM planting');
like(pull(42, 0), qr/^applied\|0\|1\|0$/, 'with the referencing row gone, it applies');
is(sql(42, q{SELECT "zone,row" FROM bed}), 'B,2', 'and the copy has the new value');

# a key smuggled past the check with an escaped tab is still found
fake('smuggled', sub {
	my ($dir, $index) = @_;
	edit_archive($dir, $index, sub {
		my ($x, $header, $manifest) = @_;
		for my $doc ($header, $manifest)
		{
			my ($t) = grep { $_->{name} eq 'plot' } @{ $doc->{tables} };
			# the key second: a field before it can hide a tab
			$t->{columns} = [ reverse @{ $t->{columns} } ];
		}
		my ($plot) = grep { $_->{name} eq 'plot' } @{ $manifest->{tables} };
		my $file = "$x/$plot->{files}[0]";
		open(my $fh, '>', $file) or die;
		print $fh "x\\\t1\t7000000099\n";
		close($fh);
		$plot->{rows} = 1;
		delete @$plot{qw(digest published)};	# (as a manifest of revision 1)
		$plot->{sha256} = sha256_hex(slurp_file($file));
		$plot->{bytes} = -s $file;
	});
});
sql(7, q{CREATE TABLE plot (id bigserial PRIMARY KEY, code text UNIQUE NOT NULL); SELECT sync_add_table('plot');});
pull_fails(7, 0, qr/ERROR:  archive of machine 0 has a row of table public\.plot with key 7000000099, outside the machine's range/,
	'escaped tab before the key');
point_to(7, $url0);

###########################################################################
# Pulls of the same machine are serialized; of different machines, not
###########################################################################

sql(0, q{INSERT INTO site (name) VALUES ('serial'); SELECT sync_dump();});
sql(42, q{INSERT INTO site (name) VALUES ('serial 42'); SELECT sync_dump();});
my $holder = $node{7}->background_psql('postgres');
$holder->query_safe('SET client_min_messages = error');
$holder->query_safe('BEGIN');
$holder->query_safe('SELECT status FROM sync_pull(0)');
is(sql(7, q{INSERT INTO site (name) VALUES ('written during a pull') RETURNING id}), '7000000001',
	'local writes to local rows go on during a pull');
pull_fails(7, 0, qr/ERROR:  canceling statement due to lock timeout/, 'a second pull of machine 0 waits',
	set => "SET lock_timeout = '300ms';");
like(sql(7, q{SET lock_timeout = '5s'; SELECT status FROM sync_pull(42)}), qr/^applied$/,
	'a pull of another machine runs meanwhile');
$holder->query_safe('COMMIT');
$holder->quit;
is(sql(7, q{SELECT count(*) FROM site WHERE name = 'serial'}), '1', 'the first pull committed');

###########################################################################
# A reference cycle between two tables, pulled by a role that is no superuser
###########################################################################

for my $id (0, 7)
{
	sql($id, q{
		CREATE TABLE team (id bigserial PRIMARY KEY, name text, captain_id bigint);
		CREATE TABLE player (id bigserial PRIMARY KEY, name text, team_id bigint REFERENCES team);
		ALTER TABLE team ADD FOREIGN KEY (captain_id) REFERENCES player;
		SELECT sync_add_table('team'), sync_add_table('player');
	});
}
sql(0, q{
	INSERT INTO team (name) VALUES ('red'), ('blue');
	INSERT INTO player (name, team_id) VALUES ('ana', 1), ('ben', 2), ('cy', 1);
	UPDATE team SET captain_id = 1 WHERE id = 1;
	UPDATE team SET captain_id = 2 WHERE id = 2;
	SELECT sync_dump();
});
sql(7, q{
	CREATE ROLE puller LOGIN;
	GRANT EXECUTE ON FUNCTION sync_pull(bigint, boolean, boolean, regclass[], regclass[], text), sync_pull(text, boolean, boolean, regclass[], regclass[], text) TO puller;
	GRANT SELECT ON sync_machine, sync_instance, sync_table TO puller;
	GRANT SELECT, INSERT, UPDATE ON sync_machine TO puller;
	GRANT SELECT, INSERT, UPDATE, DELETE ON sync_pull_state TO puller;
	GRANT SELECT, INSERT, UPDATE, DELETE ON site, trait, note, plot, team, player TO puller;
});
sub pull_as_puller
{
	my ($rc, $out, $err) = $node{7}->psql('postgres',
		'SELECT status, inserted, updated, deleted FROM sync_pull(0)',
		extra_params => [ '-U', 'puller' ]);
	die "pull as puller failed: $err" if $rc;
	return $out;
}
like(pull_as_puller(), qr/^applied\|/, 'a role that is no superuser pulls, with privileges on the tables only');
is(sql(7, q{SELECT string_agg(t.name || ':' || p.name, ',' ORDER BY t.id) FROM team t JOIN player p ON p.id = t.captain_id}),
	'red:ana,blue:ben', 'a reference cycle arrives whole');
sql(0, q{
	INSERT INTO team (name) VALUES ('green');
	INSERT INTO player (name, team_id) VALUES ('di', 3);
	UPDATE team SET captain_id = 4 WHERE id = 3;
	UPDATE team SET captain_id = 3 WHERE id = 1;
	UPDATE team SET captain_id = NULL WHERE id = 2;
	DELETE FROM player WHERE id = 2;
	SELECT sync_dump();
});
like(pull_as_puller(), qr/^applied\|2\|\d+\|1$/, 'changes through the cycle: new team and player, changed captains, a player deleted');
is(sql(7, q{SELECT string_agg(t.name || ':' || coalesce(p.name, '-'), ',' ORDER BY t.id) FROM team t LEFT JOIN player p ON p.id = t.captain_id}),
	'red:cy,blue:-,green:di', 'the cycle matches the publisher');
sql(0, q{UPDATE team SET captain_id = NULL; DELETE FROM player; DELETE FROM team; SELECT sync_dump();});
like(pull_as_puller(), qr/^applied\|0\|\d+\|6$/, 'and can be deleted whole');
is(sql(7, 'SELECT count(*) FROM team') . sql(7, 'SELECT count(*) FROM player'), '00', 'both tables empty');

###########################################################################
# Every foreign key holds, and 7 converges with what 0 and 42 publish
###########################################################################

pull(7, 0);
pull(7, 42);
pull(42, 0);
is(sql(7, q{SELECT count(*) FROM trait t WHERE NOT EXISTS (SELECT 1 FROM site s WHERE s.id = t.site_id)}),
	'0', 'every foreign key holds on 7');
is(sql(7, q{SELECT string_agg(id || ':' || name, ',' ORDER BY id) FROM site WHERE id < 1000000000}),
	sql(42, q{SELECT string_agg(id || ':' || name, ',' ORDER BY id) FROM site WHERE id < 1000000000}),
	'7 and 42 hold the same copy of machine 0\'s sites');

###########################################################################
# Pull options: a dry run, some tables only, files carried on a disk
###########################################################################

# a dry run fetches and verifies, says what would change, and changes nothing
sql(0, q{INSERT INTO site (name) VALUES ('east'); UPDATE site SET name = 'North' WHERE id = 1;
	INSERT INTO trait (site_id, value, note) VALUES (1, 3.5, 'dry'); SELECT sync_dump();});
{
	my $before = fingerprint(7);
	my $dry = sql(7, q{SELECT status || '|' || inserted || '|' || updated || '|' || deleted
						 FROM sync_pull(0, dry_run => true)});
	is($dry, 'dry run|2|1|0', 'a dry run says what it would insert, update and delete');
	is(fingerprint(7), $before, 'and changes nothing');
	is(join(' ', work_files(7)), '', 'nor leaves a file');
	is(sql(7, q{SELECT status || ' ' || (details->>'dry_run') || ' ' || inserted FROM sync_log
				 WHERE kind = 'pull' ORDER BY id DESC LIMIT 1}), 'dry run true 2', 'it is logged as a dry run');
	is(pull(7, 0), 'applied|2|1|0', 'the pull then does what the dry run said');
}

# some tables only: never a table without those it references
sql(0, q{INSERT INTO site (name) VALUES ('westward'); INSERT INTO trait (site_id, value, note) VALUES (1, 4.5, 'subset');
	SELECT sync_dump();});
{
	my $before = fingerprint(7);
	my ($rc, $out, $err) = $node{7}->psql('postgres', q{SELECT status FROM sync_pull(0, tables => '{trait}')});
	like($err, qr/ERROR:  table public\.trait cannot be pulled without table public\.site, which it references\nDETAIL:  A pull of some tables takes every registered table they reference, so that each row pulled finds the rows it references\.\nHINT:  Pull public\.site too, or leave public\.trait out as well\.$/,
		'a table cannot be pulled without the tables it references');
	($rc, $out, $err) = $node{7}->psql('postgres', q{SELECT status FROM sync_pull(0, exclude => '{site}')});
	like($err, qr/ERROR:  table public\.(trait|team|player) cannot be pulled without table public\.site, which it references/,
		'nor can what references a table left out');
	is(fingerprint(7), $before, 'the refused pulls changed nothing');
	($rc, $out, $err) = $node{7}->psql('postgres', q{SELECT status FROM sync_pull(0, tables => '{pg_class}')});
	is($err, "psql:<stdin>:1: ERROR:  table pg_catalog.pg_class is not registered for sync\n"
		. "HINT:  tables names registered tables; they are listed in sync_table.", 'tables names registered tables');
	is(sql(7, q{SELECT status || '|' || inserted FROM sync_pull(0, tables => '{site}')}), 'applied|1',
		'a table pulled alone: the new site');
	is(sql(7, q{SELECT count(*) FROM trait WHERE note = 'subset'}), '0', 'the tables left out are not touched');
	is(sql(7, q{SELECT details->>'tables' FROM sync_log WHERE kind = 'pull' ORDER BY id DESC LIMIT 1}),
		'["public.site"]', 'the log says which tables were pulled');
	is(sql(7, q{SELECT status || '|' || inserted FROM sync_pull(0)}), 'applied|1',
		'the next pull of every table brings the rest');
	is(sql(7, q{SELECT count(*) FROM trait WHERE note = 'subset'}), '1', 'the trait arrives');
	sql(0, q{UPDATE trait SET note = 'excluded' WHERE note = 'subset'; UPDATE site SET name = 'Westward' WHERE name = 'westward';
		SELECT sync_dump();});
	my $sum = sub { sql(7, "SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM $_[0] t") };
	my $trait = $sum->('trait');
	is(sql(7, q{SELECT status || '|' || updated FROM sync_pull(0, exclude => '{trait, team, player}')}),
		'applied|1', 'a pull with exclude applies');
	is($sum->('trait'), $trait, 'and leaves the excluded tables as they were');
	is(sql(7, q{SELECT (SELECT string_agg(name, ',') FROM site WHERE name ILIKE 'westward') || ' ' || (SELECT count(*) FROM trait WHERE note = 'excluded')}),
		'Westward 0', 'the site changed, the trait not yet');
	like(pull(7, 0), qr/^applied\|/, 'the next pull of every table');
	is(sql(7, q{SELECT count(*) FROM trait WHERE note = 'excluded'}), '1', 'brings the trait');
}

# the files of a machine carried on a disk to a server that cannot reach
# it: the same pull, from a path, with every check
{
	my $usb = "$tmp/usb/m0";
	make_path($usb);
	sql(0, q{INSERT INTO site (name) VALUES ('carried'); SELECT sync_dump();});
	opendir(my $dh, "$www/m0") or die;
	for my $f (grep { !/^\./ } readdir($dh))
	{
		copy("$www/m0/$f", "$usb/$f") or die "copy $f: $!";
	}
	closedir($dh);
	point_to(7, "http://127.0.0.1:$closed/");
	my $before = fingerprint(7);
	my $index = decode_json(slurp_file("$usb/sync-index.json"));
	my $archive = $index->{deltas} && @{ $index->{deltas} } ? $index->{deltas}[-1]{archive} : $index->{archive};
	my $saved = slurp_file("$usb/$archive");
	append_to_file("$usb/$archive", 'x');
	my ($rc, $out, $err) = $node{7}->psql('postgres', qq{SELECT status FROM sync_pull(0, source => '$usb')});
	like($err, qr/ERROR:  .*archive of machine 0/, 'a damaged carried archive is refused as a downloaded one is');
	is(fingerprint(7), $before, 'and changes nothing');
	open(my $fh, '>', "$usb/$archive") or die;
	print $fh $saved;
	close($fh);
	is(sql(7, qq{SELECT status || '|' || inserted FROM sync_pull(0, source => '$usb')}), 'applied|1',
		'the carried files are pulled from their path, the machine unreachable');
	is(sql(7, q{SELECT details->>'source' FROM sync_log WHERE kind = 'pull' ORDER BY id DESC LIMIT 1}),
		"file://$usb", 'the log says where from');
	($rc, $out, $err) = $node{7}->psql('postgres', qq{SELECT status FROM sync_pull(0, source => '$usb')},
		extra_params => [ '-U', 'puller' ]);
	is($err, "psql:<stdin>:1: ERROR:  permission denied to pull from a source\n"
		. "DETAIL:  Files read from a source stand in for the machine's own publication, whoever serves them.\n"
		. "HINT:  Only superusers may pull with source => ...; others pull from the machine's sync_url.",
		'only a superuser may pull from a source');
	($rc, $out, $err) = $node{7}->psql('postgres', q{SELECT status FROM sync_pull(0, source => 'https://me:secret@mirror.example.org/m0/')});
	like($err, qr/ERROR:  source must not hold credentials/, 'nor may a source URL hold credentials');
	point_to(7, $url0);
}

###########################################################################
# Progress counts rows while they load, against the archive's total
###########################################################################

# a table new to 7: its first pull loads it in place, through a trigger of
# 7's that takes 20 ms a row
for my $id (0, 7)
{
	sql($id, q{CREATE TABLE reading (id bigserial PRIMARY KEY, value integer); SELECT sync_add_table('reading');});
}
sql(7, q{CREATE FUNCTION slow_reading() RETURNS trigger LANGUAGE plpgsql AS
	$$BEGIN PERFORM pg_sleep(0.02); RETURN NEW; END$$;
	CREATE TRIGGER slow BEFORE INSERT ON reading FOR EACH ROW EXECUTE FUNCTION slow_reading();});
sql(0, q{INSERT INTO reading (value) SELECT i FROM generate_series(1, 150) i; SELECT sync_dump();});
{
	my $bg = $node{7}->background_psql('postgres', on_error_stop => 0);
	$bg->query_until(qr/started/, "\\echo started\nSELECT status FROM sync_pull(0);\n");
	my $seen = '';
	for (1 .. 200)
	{
		$seen = sql(7, q{SELECT phase || ' ' || table_name || ' ' || (rows > 0) || ' ' || rows_total
						   || ' ' || (bytes = bytes_total) FROM sync_progress WHERE phase = 'loading'});
		last if $seen ne '';
		select(undef, undef, undef, 0.05);
	}
	like($seen, qr/^loading public\.reading true \d+ true$/,
		'while a table loads, sync_progress counts its rows, against the rows of the archive, all bytes downloaded');
	my ($total) = $seen =~ /^loading \S+ \S+ (\d+)/;
	ok(defined $total && $total >= 150, "rows_total is the archive's rows ($total)");
	$bg->quit;
}
is(sql(7, 'SELECT count(*) FROM reading'), '150', 'and the rows arrive');

$nginx->stop;
$node{$_}->stop for (0, 42, 7);
done_testing();
