# A hostile or broken publisher, roles holding only the documented grants,
# and limits, through nginx between three servers: machine 0 (the registry
# authority), machine 5 (the publisher whose archives the test forges) and
# machine 7 (the subscriber).  Every refused pull leaves the subscriber
# exactly as it was, is in sync_log, and leaves no file in the work
# directory (pull_fails).
use strict;
use warnings;
use Digest::SHA qw(sha256_hex);
use File::Path qw(make_path);
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use SyncFederation;
use SyncNginx;

my $tmp = $PostgreSQL::Test::Utils::tmp_check;
my $www = "$tmp/www";
make_path($www);

start_servers($www, 0, 5, 7);
my $nginx = SyncNginx->new(prefix => "$tmp/nginx", root => $www);

my $schema = q{
	CREATE EXTENSION sync;
	CREATE TABLE site (id bigserial PRIMARY KEY, name text NOT NULL, email text,
		access_level integer DEFAULT 4);
	CREATE TABLE trait (id bigserial PRIMARY KEY, site_id bigint REFERENCES site,
		value numeric, note text, access_level integer DEFAULT 4);
};
join_federation($nginx, $schema, q{
	SELECT sync_add_table('site', 'access_level');
	SELECT sync_add_table('trait', 'access_level');
});
my $url5 = $nginx->url('m5/');

sql(5, q{
	INSERT INTO site (name, email) VALUES ('north', 'ana@five'), ('south', 'ben@five');
	INSERT INTO trait (site_id, value, note) VALUES (5000000001, 1.5, 'first'), (5000000002, 2.5, 'second');
	SELECT sync_dump();
});
is(pull(7, 5), 'applied|4|0|0', 'the honest archive of machine 5 applies');
sql(5, q{UPDATE trait SET note = 'changed' WHERE id = 5000000001; SELECT sync_dump();});

# Publish a fake of machine $machine's latest archive, changed by $edit (as
# edit_archive), and point machine 7 at it (fake: of machine 5).
my $fakes = 0;
sub fake_of
{
	my ($machine, $edit) = @_;
	my $name = 'fake' . ++$fakes;
	fake_publication($www, $machine, $name, sub {
		my ($dir, $index) = @_;
		edit_archive($dir, $index, $edit);
	});
	sql(7, "SELECT sync_register_machine($machine, NULL, '" . $nginx->url("$name/") . "')");
}
sub fake { my ($edit) = @_; fake_of(5, $edit); }

# The manifest entry of a table.
sub entry
{
	my ($manifest, $name) = @_;
	my ($t) = grep { $_->{name} eq $name } @{ $manifest->{tables} };
	return $t;
}

###########################################################################
# Encodings: archives are UTF-8, and COPY alone reads the rows
###########################################################################

for my $encoding ('SJIS', 'BIG5', 'SQL_ASCII')
{
	fake(sub { my ($x, $header) = @_; $header->{encoding} = $encoding; });
	pull_fails(7, 5, qr/ERROR:  archive of machine 5 is in encoding $encoding, not UTF8\nDETAIL:  Archives are read as UTF-8 only/,
		"an archive in $encoding");
}

# bytes that are not UTF-8 in a row: COPY itself refuses them
fake(sub {
	my ($x, $header, $manifest) = @_;
	my $t = entry($manifest, 'site');
	rewrite_member($x, $t, "5000000001\tnorth\xff\xfe\tana\@five\t4\n5000000002\tsouth\tben\@five\t4\n");
});
pull_fails(7, 5, qr/ERROR:  invalid byte sequence for encoding "UTF8": 0xff/, 'a row that is not UTF-8');

# a table name that is not UTF-8 never reaches a message or the log
fake(sub {
	my ($x, $header, $manifest, $raw) = @_;
	my $json = encode_json($header);
	$json =~ s/"name":"site"/"name":"si\xc3\x28te"/;
	open(my $fh, '>:raw', "$x/header.json") or die;
	print $fh $json;
	close($fh);
	$raw->{header} = 1;
});
pull_fails(7, 5, qr/ERROR:  header of the archive of machine 5 is not valid\nDETAIL:  It is not valid UTF-8\./,
	'a header that is not UTF-8');
like(sql(7, q{SELECT message || ' ' || coalesce(details::text, '') FROM sync_log ORDER BY id DESC LIMIT 1}),
	qr/header of the archive of machine 5 is not valid/, 'and sync_log reads back');

# the end-of-data marker, in the middle of a row or at its start
for my $marker ("north\\.x", "\\.")
{
	fake(sub {
		my ($x, $header, $manifest) = @_;
		rewrite_member($x, entry($manifest, 'site'),
			"5000000001\t$marker\tana\@five\t4\n5000000002\tsouth\tben\@five\t4\n");
	});
	pull_fails(7, 5, qr/ERROR:  archive of machine 5 is not valid\nDETAIL:  The data of public\.site: It holds an end-of-data marker/,
		"an end-of-data marker in a row ($marker)");
}

# a carriage return, and a last row without its newline
fake(sub {
	my ($x, $header, $manifest) = @_;
	rewrite_member($x, entry($manifest, 'site'), "5000000001\tnorth\tana\@five\t4\r\n5000000002\tsouth\tben\@five\t4\n");
});
pull_fails(7, 5, qr/The data of public\.site: It holds a carriage return/, 'a carriage return');
fake(sub {
	my ($x, $header, $manifest) = @_;
	rewrite_member($x, entry($manifest, 'site'), "5000000001\tnorth\tana\@five\t4\n5000000002\tsouth\tben\@five\t4");
});
pull_fails(7, 5, qr/The data of public\.site: Its last row has no end\./, 'a last row without its newline');

# keys outside the range, however they are written: COPY parses them
for my $key ('7000000001', ' 7000000001', '+7000000001', '0007000000001', '\\N')
{
	fake(sub {
		my ($x, $header, $manifest) = @_;
		rewrite_member($x, entry($manifest, 'site'),
			"5000000001\tnorth\tana\@five\t4\n$key\tsquat\tx\@five\t4\n");
	});
	my $shown = $key eq '\\N' ? 'NULL' : '\s*\+?0*7000000001';
	pull_fails(7, 5, qr/ERROR:  archive of machine 5 has a row of table public\.site with key $shown, outside the machine's range \[5000000001, 5999999999\]/,
		"a key outside the range written as '$key'");
}
is(sql(7, q{SELECT count(*) FROM site WHERE id BETWEEN 7000000000 AND 7999999999}), '0',
	'no row of the subscriber\'s own range was ever written');

# what was handled before stays handled: a member the header does not
# describe, and a key column named otherwise
fake(sub { });
{
	# the new member must be in the tar stream: pack it by hand
	my $index = decode_json(slurp_file("$www/fake$fakes/sync-index.json"));
	my $archive = "$www/fake$fakes/$index->{archive}";
	my $x = PostgreSQL::Test::Utils::tempdir();
	system_or_bail('tar', '--zstd', '-xf', $archive, '-C', $x);
	my @members = split /\n/, `tar --zstd -tf $archive`;
	open(my $fh, '>', "$x/tables/9999-public.extra") or die;
	close($fh);
	splice(@members, -1, 0, 'tables/9999-public.extra');
	system_or_bail('tar', '--zstd', '-cf', $archive, '-C', $x, @members);
	$index->{sha256} = sha256_hex(slurp_file($archive));
	$index->{size} = -s $archive;
	open($fh, '>', "$www/fake$fakes/sync-index.json") or die;
	print $fh encode_json($index);
	close($fh);
}
pull_fails(7, 5, qr/ERROR:  archive of machine 5 is not valid\nDETAIL:  It holds "tables\/9999-public\.extra", which its header does not describe\./,
	'a member the header does not describe');
fake(sub {
	my ($x, $header, $manifest) = @_;
	for my $doc ($header, $manifest)
	{
		my $t = entry($doc, 'site');
		$t->{key} = 'name';
	}
});
pull_fails(7, 5, qr/ERROR:  key of table public\.site is "id" here but "name" in the archive of machine 5/,
	'another key column');

###########################################################################
# Documents: small, shallow, parsed once
###########################################################################

fake(sub { my ($x, $header) = @_; $header->{padding} = 'x' x (1100 * 1024); });
pull_fails(7, 5, qr/ERROR:  header of the archive is too large \(\d+ bytes, at most 1048576\)/, 'a header over 1 MB');
fake(sub { my ($x, $header, $manifest) = @_; $manifest->{padding} = 'x' x (4200 * 1024); });
pull_fails(7, 5, qr/ERROR:  manifest of the archive is too large \(\d+ bytes, at most 4194304\)/, 'a manifest over 4 MB');
fake(sub {
	my ($x, $header) = @_;
	my $deep = 1;
	$deep = [$deep] for 1 .. 40;
	$header->{padding} = $deep;
});
pull_fails(7, 5, qr/ERROR:  header of the archive of machine 5 is not valid\nDETAIL:  It nests deeper than 8 levels\./,
	'a header nested 40 deep');
fake(sub {
	my ($x, $header, $manifest, $raw) = @_;
	my $json = encode_json($header);
	$json =~ s/^\{/{"format":1,/;
	open(my $fh, '>', "$x/header.json") or die;
	print $fh $json;
	close($fh);
	$raw->{header} = 1;
});
pull_fails(7, 5, qr/DETAIL:  An object names the same member twice\./, 'a header naming a member twice');
fake(sub { my ($x, $header, $manifest) = @_; entry($manifest, 'trait')->{bytes}++; });
pull_fails(7, 5, qr/ERROR:  table public\.trait in the archive of machine 5 has \d+ bytes, not the \d+ its manifest gives/,
	'a manifest that misstates a size');

# what an archive may unpack to
fake(sub { });
pull_fails(7, 5, qr/ERROR:  archive ".*" is damaged\nDETAIL:  It unpacks to more than 4096 bytes\./,
	'an archive that unpacks to more than sync.max_unpacked_size',
	set => "SET sync.max_unpacked_size = '4kB';");

###########################################################################
# Registries: an archive describes its own machine, the authority the rest
###########################################################################

sql(7, "SELECT sync_register_machine(5, NULL, '$url5')");
is(pull(7, 5), 'applied|0|1|0', 'back to the real archive');

# machine 5's registry claims a machine nobody knows, with a range over
# everyone's, and another URL for machine 0
fake(sub {
	my ($x, $header, $manifest) = @_;
	my $r = $manifest->{registry};
	my $text = slurp_file("$x/$r->{files}[0]");
	$text =~ s/^0\tm0\.example\.org\t[^\t]*/0\tm0.example.org\thttp:\/\/evil.example.org\//m;
	$text .= "66\tsquatter.example.org\t\\N\t\\N\t1\t9000000000000000000\n";
	rewrite_member($x, $r, $text);
});
like(pull(7, 5), qr/^applied\|/, 'an archive whose registry squats does not fail the pull');
is(sql(7, q{SELECT count(*) FROM sync_machine WHERE id = 66}), '0', 'the squatter is not learnt');
is(sql(7, q{SELECT sync_url FROM sync_machine WHERE id = 0}), $nginx->url('m0/'),
	'nor another machine\'s URL');
sql(7, "SELECT sync_register_machine(5, NULL, '$url5')");

# the authority's word: new machines, a file:// URL never taken
sql(0, q{
	SELECT sync_register_machine(66, 'm66.example.org', 'http://m66.example.org/', sync_start => 66000000001, sync_end => 66999999999);
	SELECT sync_register_machine(68, 'm68.example.org', 'file:///etc/', sync_start => 68000000001, sync_end => 68000000009);
	SELECT sync_dump();
});
pull(7, 0);
is(sql(7, q{SELECT id || ':' || sync_start || ':' || coalesce(sync_url, '-') || ':' || learned_from FROM sync_machine WHERE id IN (66, 68) ORDER BY id}),
	"66:66000000001:http://m66.example.org/:0\n68:68000000001:-:0",
	'the authority\'s archive adds machines; a file:// URL is left out');

# the authority changes its word: what was learnt from it, and never used, follows
sql(0, q{
	UPDATE sync_machine SET sync_end = 68000000099 WHERE id = 68;
	DELETE FROM sync_machine WHERE id = 66;
	SELECT sync_register_machine(69, 'm69.example.org', NULL, sync_start => 66000000001, sync_end => 66000000100);
	SELECT sync_dump();
});
my ($rc, $out, $err) = $node{7}->psql('postgres', 'SELECT status FROM sync_pull(0)');
is($out, 'applied', 'an entry learnt earlier does not block the authority\'s later word');
like($err, qr/WARNING:  machine 66 \(m66\.example\.org\) is removed from the registry\nDETAIL:  It was learned from an archive and never pulled here, and the registry authority \(machine 0\) gives its range or hostname to machine 69\./,
	'what stood in its way is removed, with a WARNING');
is(sql(7, q{SELECT id || ':' || sync_start || '-' || sync_end FROM sync_machine WHERE id IN (66, 68, 69) ORDER BY id}),
	"68:68000000001-68000000099\n69:66000000001-66000000100", 'and the authority\'s ranges hold');

# an entry of the authority's registry that is not valid is passed over,
# the others taken
fake_of(0, sub {
	my ($x, $header, $manifest) = @_;
	my $r = $manifest->{registry};
	my $text = slurp_file("$x/$r->{files}[0]");
	$text .= "72\t\\N\t\\N\t\\N\t72000000001\t72000000002\n";
	$text .= "73\tm73.example.org\t\\N\t\\N\t73000000001\t73000000002\n";
	rewrite_member($x, $r, $text);
});
like(pull(7, 0), qr/^applied\|/, 'an authority\'s registry with an entry that is not valid still applies');
is(sql(7, q{SELECT string_agg(id || ':' || hostname, ',' ORDER BY id) FROM sync_machine WHERE id IN (72, 73)}),
	'73:m73.example.org', 'the valid entry is taken, the other passed over');
sql(7, "SELECT sync_register_machine(0, NULL, '" . $nginx->url('m0/') . "')");

# an object with more members than sync writes
fake(sub { my ($x, $header) = @_; $header->{source}{"k$_"} = $_ for 1 .. 70; });
pull_fails(7, 5, qr/DETAIL:  An object has more than 64 members\./, 'an object of 70 members');
sql(7, "SELECT sync_register_machine(5, NULL, '$url5')");

# a file:// URL is registered by a superuser only
sql(7, q{CREATE ROLE registrar;
	GRANT EXECUTE ON FUNCTION sync_register_machine(bigint, text, text, text, bigint, bigint) TO registrar;
	GRANT SELECT ON sync_machine, sync_instance TO registrar});
($rc, $out, $err) = $node{7}->psql('postgres', q{SET ROLE registrar; SELECT sync_register_machine(70, 'm70.example.org', 'file:///var/lib/')});
like($err, qr/ERROR:  only a superuser may register a file:\/\/ sync_url/, 'a file:// URL needs a superuser');
($rc, $out, $err) = $node{7}->psql('postgres', q{SET ROLE registrar; SELECT id FROM sync_register_machine(70, 'm70.example.org', 'http://m70.example.org/')});
is($out, '70', 'a role with EXECUTE and SELECT registers a machine, without a write grant on sync_machine');

###########################################################################
# Roles: what the documented grants allow, and no more
###########################################################################

sql(7, q{
	CREATE ROLE puller LOGIN;
	GRANT EXECUTE ON FUNCTION sync_pull(bigint, boolean, boolean, regclass[], regclass[], text), sync_pull(text, boolean, boolean, regclass[], regclass[], text) TO puller;
	GRANT SELECT ON sync_machine, sync_instance, sync_table TO puller;
	GRANT SELECT, INSERT, UPDATE, DELETE ON sync_pull_state TO puller;
	GRANT SELECT, INSERT, UPDATE, DELETE ON site, trait TO puller;
});
sql(5, q{UPDATE trait SET note = 'for the puller' WHERE id = 5000000002; SELECT sync_dump();});
($rc, $out, $err) = $node{7}->psql('postgres', 'SELECT status FROM sync_pull(5)', extra_params => [ '-U', 'puller' ]);
is($out, 'applied', 'a pull-only role pulls, the registry merged without a grant on it');
my $range_before = sql(7, q{SELECT sync_start || '-' || sync_end FROM sync_machine WHERE id = 7});
# even the write grants of 0.2's documentation do not move the local range
sql(7, q{GRANT UPDATE, INSERT, DELETE ON sync_machine, sync_instance TO puller});
for my $attack (
	q{UPDATE sync_machine SET sync_start = 1, sync_end = 9000000000000000000 WHERE id = 7},
	q{UPDATE sync_instance SET machine_id = 0},
	q{INSERT INTO sync_machine (id, hostname, sync_start, sync_end) VALUES (71, 'x', 71000000001, 71000000002)},
	q{DELETE FROM sync_instance})
{
	($rc, $out, $err) = $node{7}->psql('postgres', $attack, extra_params => [ '-U', 'puller' ]);
	like($err, qr/ERROR:  table sync_(machine|instance) changes only through sync's functions/,
		"a pull-only role cannot: $attack");
}
is(sql(7, q{SELECT sync_start || '-' || sync_end FROM sync_machine WHERE id = 7}), $range_before,
	'the local range is as it was');
sql(7, q{REVOKE UPDATE, INSERT, DELETE ON sync_machine, sync_instance FROM puller});

# a successful pull whose transaction rolls back is not in the log
sql(5, q{UPDATE trait SET note = 'rolled back' WHERE id = 5000000002; SELECT sync_dump();});
my $logged = sql(7, q{SELECT count(*) FROM sync_log});
($rc, $out, $err) = $node{7}->psql('postgres', 'BEGIN; SELECT status FROM sync_pull(5); ROLLBACK;');
is($out, 'applied', 'a pull applies inside a transaction');
is(sql(7, q{SELECT count(*) FROM sync_log}), $logged, 'which rolled back: nothing logged');
is(sql(7, q{SELECT note FROM trait WHERE id = 5000000002}), 'for the puller', 'and nothing applied');
is(pull(7, 5), 'applied|0|1|0', 'pulled again, it applies');
is(sql(7, q{SELECT status FROM sync_log WHERE kind = 'pull' ORDER BY id DESC LIMIT 1}), 'applied', 'and is logged');

###########################################################################
# Expressions: built-in only, run as the table's owner
###########################################################################

sql(5, q{
	CREATE ROLE mallory LOGIN;
	GRANT EXECUTE ON FUNCTION sync_add_table(regclass, name, text, jsonb, name, regclass[], text, text) TO mallory;
	GRANT SELECT, INSERT, UPDATE, DELETE ON sync_table TO mallory;
	GRANT SELECT ON sync_machine, sync_instance TO mallory;
	GRANT CREATE ON SCHEMA public TO mallory;
});
my $mallory = q{
	SET ROLE mallory;
	CREATE FUNCTION escalate(text) RETURNS boolean LANGUAGE plpgsql AS $$
	BEGIN
		IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
			ALTER ROLE mallory SUPERUSER;
		END IF;
		RETURN true;
	END $$;
	CREATE DOMAIN email_address AS text CHECK (escalate(VALUE));
	CREATE TABLE loot (id bigserial PRIMARY KEY, email text, secret text, access_level integer DEFAULT 4);
	INSERT INTO loot (id, email, secret) VALUES (5000000900, 'm@five', 'one');
	RESET ROLE;
};
sql(5, $mallory);
($rc, $out, $err) = $node{5}->psql('postgres',
	q{SET ROLE mallory; SELECT sync_add_table('loot', 'access_level', NULL, '{"email": "CAST(email AS public.email_address)"}')});
like($err, qr/ERROR:  anonymize rule for column "email" of table public\.loot must not use type (public\.)?email_address/,
	'a cast through a domain is refused at registration');
($rc, $out, $err) = $node{5}->psql('postgres',
	q{SET ROLE mallory; SELECT sync_add_table('loot', 'access_level', 'email::public.email_address IS NOT NULL')});
like($err, qr/ERROR:  filter of table public\.loot must not use type (public\.)?email_address/, 'and in a filter');
($rc, $out, $err) = $node{5}->psql('postgres',
	q{SET ROLE mallory; SELECT sync_add_table('loot', 'access_level', 'public.escalate(email)')});
like($err, qr/ERROR:  filter of table public\.loot must not call function public\.escalate\(text\)/,
	'a user function is refused, as before');
# planted as 0.2 allowed it: the dump checks again, and runs nothing
sql(5, q{INSERT INTO sync_table (tbl, key_column, level_column, anonymize)
	VALUES ('loot', 'id', 'access_level', '{"email": "CAST(email AS public.email_address)"}')});
($rc, $out, $err) = $node{5}->psql('postgres', 'SELECT sync_dump()');
like($err, qr/ERROR:  anonymize rule for column "email" of table public\.loot must not use type (public\.)?email_address/,
	'a planted cast through a domain fails the dump');
is(sql(5, q{SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'}), 'f', 'and mallory is no superuser');
# a filter runs as the table's owner, whoever dumps
sql(5, q{UPDATE sync_table SET anonymize = NULL, filter = 'current_user = ''mallory''' WHERE tbl = 'loot'::regclass});
my $path = sql(5, 'SELECT path FROM sync_dump()');
{
	my $x = PostgreSQL::Test::Utils::tempdir();
	system_or_bail('tar', '--zstd', '-xf', $path, '-C', $x, 'manifest.json');
	my $loot = entry(decode_json(slurp_file("$x/manifest.json")), 'loot');
	is("$loot->{rows}/$loot->{excluded}", '1/0', 'a filter runs as the table\'s owner, not as the superuser dumping');
}
sql(5, q{DELETE FROM sync_table WHERE tbl = 'loot'::regclass});
is(sql(5, q{SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'}), 'f', 'mallory is still no superuser');

# a role that row-level security binds may not dump the table as its owner
sql(5, q{
	CREATE ROLE dumper;
	GRANT pg_write_server_files TO dumper;
	GRANT SELECT ON site, trait TO dumper;
	ALTER TABLE site ENABLE ROW LEVEL SECURITY;
	CREATE POLICY some_sites ON site USING (name = 'north');
});
($rc, $out, $err) = $node{5}->psql('postgres', 'SET ROLE dumper; SELECT sync_dump()');
like($err, qr/ERROR:  row-level security on table public\.site applies to role dumper\nDETAIL:  A dump reads the table as its owner/,
	'row-level security on the dumping role is refused');
sql(5, q{ALTER TABLE site DISABLE ROW LEVEL SECURITY; DROP POLICY some_sites ON site});

###########################################################################
# Secrets: a proxy shown without its credentials
###########################################################################

my %proxies = (
	'user:secret@proxy.example.org:3128' => 'http://proxy.example.org:3128',
	'http://us@r:p@ss@proxy.example.org:8080/x?y' => undef,
	'http://user:p%40ss@proxy.example.org:8080/x?y' => 'http://proxy.example.org:8080',
	'socks5h://a:b@10.0.0.1:1080' => 'socks5h://10.0.0.1:1080',
	'https://[::1]:443' => 'https://[::1]:443',
	'::not a url::' => undef);
for my $proxy (sort keys %proxies)
{
	sql(7, "SELECT sync_set_remote(0, proxy => '$proxy')");
	my $shown = sql(7, q{SELECT coalesce(proxy, 'NULL') FROM sync_remote_options WHERE machine_id = 0});
	is($shown, $proxies{$proxy} // 'NULL', "proxy $proxy is shown as " . ($proxies{$proxy} // 'nothing'));
	unlike($shown, qr/secret|p\@ss|p%40ss|us\@r|user|a:b/, "and no credential of $proxy shows");
}
sql(7, "SELECT sync_set_remote(0)");

###########################################################################
# Sequences: every one that can feed a key is confined
###########################################################################

sql(7, q{
	CREATE SEQUENCE legacy_seq;
	CREATE TABLE legacy (id bigint NOT NULL DEFAULT nextval(('public.legacy_seq'::text)::regclass) PRIMARY KEY, v text);
	SELECT sync_add_table('legacy');
});
is(sql(7, q{SELECT sequence_name || ':' || confined || ':' || sequence_min FROM sync_sequence_usage WHERE table_name = 'legacy'::regclass}),
	'legacy_seq:true:7000000001', 'a default naming its sequence as text is read, listed and confined');
is(sql(7, q{INSERT INTO legacy (v) VALUES ('a') RETURNING id}), '7000000001', 'its keys come from the local range');
sql(7, q{CREATE SEQUENCE other_seq; ALTER TABLE legacy ALTER COLUMN id SET DEFAULT nextval('other_seq')});
is(sql(7, q{SELECT seqmin || '-' || seqmax FROM pg_sequence WHERE seqrelid = 'other_seq'::regclass}),
	'7000000001-7999999999', 'a default changed after registration is confined');
is(sql(7, q{INSERT INTO legacy (v) VALUES ('b') RETURNING id}), '7000000002', 'after the highest key in use');
sql(7, q{ALTER SEQUENCE other_seq MAXVALUE 9000000000000000000});
is(sql(7, q{SELECT seqmax FROM pg_sequence WHERE seqrelid = 'other_seq'::regclass}), '7999999999',
	'bounds changed after registration are confined again');
sql(7, q{CREATE FUNCTION next_id() RETURNS bigint LANGUAGE sql AS 'SELECT 42'});
($rc, $out, $err) = $node{7}->psql('postgres', q{ALTER TABLE legacy ALTER COLUMN id SET DEFAULT next_id()});
like($err, qr/ERROR:  cannot confine the default of key column "id" of table public\.legacy\nDETAIL:  It calls public\.next_id\(\), which could hand out any key\./,
	'a default sync cannot confine is refused');
like(sql(7, q{SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef WHERE adrelid = 'legacy'::regclass}),
	qr/nextval\('other_seq'/, 'and the old default stays');
($rc, $out, $err) = $node{7}->psql('postgres', q{
	CREATE TABLE computed (id bigint NOT NULL DEFAULT (nextval('other_seq') + 1000) PRIMARY KEY);
	SELECT sync_add_table('computed')});
like($err, qr/ERROR:  cannot confine the default of key column "id" of table public\.computed\nDETAIL:  It is an expression other than nextval\(\) of a sequence/,
	'and so is one registered so');

# an unqualified name is looked up in the table's schema, and reading it
# never gets in the way of other DDL
sql(7, q{
	CREATE SEQUENCE legacy2_seq;
	CREATE TABLE legacy2 (id bigint NOT NULL DEFAULT nextval(('legacy2_seq'::text)::regclass) PRIMARY KEY);
	SELECT sync_add_table('legacy2');
	CREATE TABLE unrelated (x int);
	ALTER TABLE unrelated ADD COLUMN y int;
});
is(sql(7, q{SELECT sequence_name || ':' || confined FROM sync_sequence_usage WHERE table_name = 'legacy2'::regclass}),
	'legacy2_seq:true', 'an unqualified sequence name is found in the table\'s schema');

# the sequences are the table owner's to change, whoever asks
sql(7, q{
	CREATE ROLE tabowner;
	CREATE SEQUENCE victim_seq;
	CREATE TABLE owned_by_other (id bigserial PRIMARY KEY);
	ALTER TABLE owned_by_other OWNER TO tabowner;
	SELECT sync_add_table('owned_by_other');
	GRANT USAGE ON SEQUENCE victim_seq TO tabowner;
});
($rc, $out, $err) = $node{7}->psql('postgres',
	q{SET ROLE tabowner; ALTER TABLE owned_by_other ALTER COLUMN id SET DEFAULT nextval('victim_seq')});
like($err, qr/ERROR:  sequence public\.victim_seq, which feeds the key of table public\.owned_by_other, is owned by role postgres, not by the table's owner tabowner\nHINT:  Make the table's owner own it: ALTER SEQUENCE public\.victim_seq OWNER TO tabowner\./,
	'a table owner cannot have sync alter a sequence of another role');
is(sql(7, q{SELECT seqmin || '-' || seqmax FROM pg_sequence WHERE seqrelid = 'victim_seq'::regclass}),
	'1-9223372036854775807', 'which stays as it was');

# a view planted in sync_table is no table: its "keys" are not read
sql(7, q{
	CREATE FUNCTION noisy() RETURNS bigint LANGUAGE plpgsql AS $$
	BEGIN RAISE NOTICE 'noisy ran'; RETURN 7000000500; END $$;
	CREATE VIEW planted AS SELECT noisy() AS id;
	INSERT INTO sync_table (tbl, key_column) VALUES ('planted', 'id');
});
($rc, $out, $err) = $node{7}->psql('postgres', q{SELECT machine_id FROM sync_init(7)});
like($err, qr/ERROR:  (public\.planted is not a table|table public\.planted has no primary key)/, 'a view planted in sync_table fails sync_init');
unlike($err, qr/noisy ran/, 'without running its function');
sql(7, q{DELETE FROM sync_table WHERE tbl = 'planted'::regclass});

###########################################################################
# The closure follows foreign keys declared on a partition
###########################################################################

sql(5, q{
	CREATE TABLE obs (id bigserial, site_id bigint, v numeric, PRIMARY KEY (id)) PARTITION BY RANGE (id);
	CREATE TABLE obs_a PARTITION OF obs FOR VALUES FROM (MINVALUE) TO (5500000000);
	CREATE TABLE obs_b PARTITION OF obs FOR VALUES FROM (5500000000) TO (MAXVALUE);
	ALTER TABLE obs_a ADD CONSTRAINT obs_a_site FOREIGN KEY (site_id) REFERENCES site;
	SELECT sync_add_table('obs');
	INSERT INTO site (name, access_level) VALUES ('private', 1);
	INSERT INTO obs (site_id, v) SELECT id, 1 FROM site;
});
$path = sql(5, 'SELECT path FROM sync_dump()');
{
	my $x = PostgreSQL::Test::Utils::tempdir();
	system_or_bail('tar', '--zstd', '-xf', $path, '-C', $x, 'manifest.json');
	my $obs = entry(decode_json(slurp_file("$x/manifest.json")), 'obs');
	is("$obs->{rows}/$obs->{excluded}", '2/1',
		'a row of a partition whose foreign key reaches a private row is left out');
}

$nginx->stop;
$node{$_}->stop for (0, 5, 7);
done_testing();
