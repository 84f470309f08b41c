# Incremental publication through a real nginx on loopback: machine 0
# publishes deltas beside full archives, machine 42 pulls them.  Deltas in
# sequence and several at once, rows leaving and entering the published
# set, deletes with dependents, drift forcing the full path, a subscriber
# whose deltas were pruned, and tampered, truncated or reordered deltas
# refused with the subscriber unchanged.
use strict;
use warnings;
use Digest::SHA;
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
start_servers($www, 0, 42);
my $nginx = SyncNginx->new(prefix => "$tmp/nginx", root => $www);
# tables this small make deltas about as large as full archives: keep them
# all (the retention section below tries the limit by count)
$node{0}->append_conf('postgresql.conf', 'sync.dump_delta_ratio = 50');
$node{0}->reload;

join_federation($nginx, q{
	CREATE EXTENSION sync;
	CREATE TABLE site (id bigserial PRIMARY KEY, name text NOT NULL,
		email text, access_level integer DEFAULT 4);
	CREATE TABLE trait (id bigserial PRIMARY KEY,
		site_id bigint REFERENCES site ON DELETE CASCADE,
		value double precision, measured timestamptz, note text,
		access_level integer DEFAULT 4);
}, q{
	SELECT sync_add_table('site', 'access_level', NULL,
		'{"email": "''site'' || id || ''@example.org''"}');
	SELECT sync_add_table('trait', 'access_level');
});

# what 42 holds of 0's rows, and what 0 publishes, compared by sync_verify
sub same { return sql(42, q{SELECT count(*) FILTER (WHERE missing + extra + changed > 0) FROM sync_verify(0)}); }
sub publish { return sql(0, q{SELECT kind || '|' || seq || '|' || coalesce(changed::text, '-') || '|' || coalesce(deleted::text, '-') FROM sync_dump()}); }
sub last_pull { return sql(42, q{SELECT details->>'path' || '|' || (details->>'archives') || '|' || coalesce(details->>'fallback', '') FROM sync_log WHERE kind = 'pull' ORDER BY id DESC LIMIT 1}); }
sub index_of { return decode_json(slurp_file("$www/m0/sync-index.json")); }

sql(0, q{
	INSERT INTO site (name, email) SELECT 'site ' || i, 'x' || i || '@zero' FROM generate_series(1, 20) i;
	INSERT INTO trait (site_id, value, measured, note)
		SELECT 1 + i % 20, i / 7.0, '2026-01-01'::timestamptz + i * interval '1 hour', E'row\t' || i
		FROM generate_series(1, 200) i;
});
is(publish(), 'full|1|-|-', 'the first dump writes a full archive, state 1');
is(pull(42, 0), 'applied|220|0|0', 'first pull');
is(last_pull(), 'full|1|', 'the first pull takes the full path');

###########################################################################
# One delta
###########################################################################

sql(0, q{
	UPDATE trait SET value = value + 1 WHERE id IN (3, 4);
	DELETE FROM trait WHERE id = 5;
	INSERT INTO trait (site_id, value, note) VALUES (2, 99.5, 'new');
});
is(publish(), 'delta|2|3|1', 'a dump after a change writes a delta: 3 rows changed or new, 1 deleted');
my $index = index_of();
is(scalar @{ $index->{deltas} }, 1, 'the index lists the delta');
is("$index->{revision}|$index->{seq}|$index->{full_seq}", '2|2|1', 'the index: revision 2, state 2, full archive of state 1');
ok(-f "$www/m0/$index->{archive}", 'the full archive is still served');
ok($index->{deltas}[0]{size} < 2000, 'the delta is small');
is(pull(42, 0), 'applied|1|2|1', 'the pull applies the delta');
is(last_pull(), 'delta|1|', 'it took the delta path');
ok(sql(42, q{SELECT bytes FROM sync_log WHERE kind = 'pull' ORDER BY id DESC LIMIT 1}) < 3000,
	'it downloaded the index and the delta only');
is(same(), 0, 'the copy equals what 0 publishes');
is(sql(42, q{SELECT seq FROM sync_pull_state WHERE machine_id = 0}), 2, 'the state reached is recorded');
is(publish(), 'unchanged|2|0|0', 'a dump without changes writes nothing new');
is(index_of()->{seq}, 2, 'the index is the same');
is(pull(42, 0), 'unchanged|0|0|0', 'nothing to pull');

###########################################################################
# Several deltas at once; rows leaving the published set
###########################################################################

sql(0, q{UPDATE trait SET note = 'second' WHERE id = 10});
is(publish(), 'delta|3|1|0', 'second delta');
# a site made private: it and the traits that reference it leave the published set
sql(0, q{UPDATE site SET access_level = 1 WHERE id = 3});
like(publish(), qr/^delta\|4\|0\|\d+$/, 'third delta: a site and its traits no longer published');
my $gone = sql(0, q{SELECT 1 + count(*) FROM trait WHERE site_id = 3});
is(sql(0, q{SELECT (details->>'deleted') FROM sync_log WHERE kind = 'dump' ORDER BY id DESC LIMIT 1}), $gone,
	'the delta deletes the site and its dependents');
sql(0, q{UPDATE site SET email = 'changed@zero' WHERE id = 4});
is(publish(), 'unchanged|4|0|0', 'a change to an anonymized column only changes nothing published');
my $out = pull(42, 0);
is($out, "applied|0|1|$gone", 'two deltas applied in one pull');
is(last_pull(), 'delta|2|', 'both on the delta path');
is(sql(42, q{SELECT count(*) FROM site WHERE id = 3}), 0, 'the private site is gone here');
is(same(), 0, 'the copy equals what 0 publishes');
sql(0, q{UPDATE site SET access_level = 4 WHERE id = 3});
like(publish(), qr/^delta\|5\|\d+\|0$/, 'the site published again');
is(pull(42, 0), "applied|$gone|0|0", 'it and its traits come back');
is(same(), 0, 'the copy equals what 0 publishes');

###########################################################################
# Deletes of rows with dependents
###########################################################################

sql(0, q{DELETE FROM site WHERE id = 6});
like(publish(), qr/^delta\|6\|0\|\d+$/, 'a deleted site, its traits cascaded');
like(pull(42, 0), qr/^applied\|0\|0\|\d+$/, 'the deletion applies');
is(sql(42, q{SELECT count(*) FROM trait WHERE site_id = 6}), 0, 'no trait of the site is left');
is(same(), 0, 'the copy equals what 0 publishes');

###########################################################################
# Drift: a copy written here takes the full path
###########################################################################

sql(42, q{SET session_replication_role = replica; UPDATE trait SET note = 'drift' WHERE id = 20});
sql(0, q{UPDATE trait SET note = 'moved on' WHERE id = 21});
is(publish(), 'delta|7|1|0', 'a delta');
pull(42, 0);
like(last_pull(), qr/^full\|/, 'a copy written here takes the full path');
is(sql(42, q{SELECT note FROM trait WHERE id = 20}), "row\t20", 'the drift is repaired');
is(same(), 0, 'the copy equals what 0 publishes');

# drift nothing recorded: the proof fails, and the pull falls back
sql(42, q{SET session_replication_role = replica; UPDATE trait SET note = 'hidden drift' WHERE id = 30;
	DELETE FROM sync_written});
sql(0, q{UPDATE trait SET value = -1 WHERE id = 30});
is(publish(), 'delta|8|1|0', 'a delta over the drifted row');
like(pull(42, 0), qr/^applied\|/, 'the pull applies');
like(last_pull(), qr/^full\|\d+\|copy of table public\.trait differs from what machine 0 published$/,
	'the delta did not prove the copy: it fell back to the full path, and says why');
is(same(), 0, 'the copy equals what 0 publishes');

###########################################################################
# Tampered, truncated and reordered deltas
###########################################################################

sql(0, q{UPDATE trait SET note = 'tamper target' WHERE id = 40});
is(publish(), 'delta|9|1|0', 'a delta to tamper with');
$index = index_of();
my $delta = "$www/m0/$index->{deltas}[-1]{archive}";
my $bytes = slurp_file($delta);
{
	open(my $fh, '>', $delta) or die; binmode $fh;
	my $bad = $bytes; substr($bad, length($bad) / 2, 1) = chr(ord(substr($bad, length($bad) / 2, 1)) ^ 1);
	print $fh $bad; close $fh;
}
pull_fails(42, 0, qr/checksum of the archive of machine 0 does not match its index/, 'tampered delta');
{
	open(my $fh, '>', $delta) or die; binmode $fh;
	print $fh substr($bytes, 0, length($bytes) - 10); close $fh;
}
pull_fails(42, 0, qr/archive of machine 0 has \d+ bytes, not the \d+ its index gives/, 'truncated delta');
{
	open(my $fh, '>', $delta) or die; binmode $fh; print $fh $bytes; close $fh;
}
# reordered: 42 at state 8 is offered delta 8 as if it led to state 9
my $saved = slurp_file("$www/m0/sync-index.json");
my $fake = index_of();
$fake->{deltas}[-1]{archive} = $fake->{deltas}[-2]{archive};
$fake->{deltas}[-1]{size} = $fake->{deltas}[-2]{size};
$fake->{deltas}[-1]{sha256} = $fake->{deltas}[-2]{sha256};
{ open(my $fh, '>', "$www/m0/sync-index.json") or die; print $fh encode_json($fake); close $fh; }
pull_fails(42, 0, qr/It is not the delta of state 9 of chain/, 'reordered delta');
{ open(my $fh, '>', "$www/m0/sync-index.json") or die; print $fh $saved; close $fh; }
is(pull(42, 0), 'applied|0|1|0', 'with the files restored, the delta applies');
is(same(), 0, 'the copy equals what 0 publishes');

# a hostile publisher's delta: a row, or a deleted key, outside its range
sql(0, q{UPDATE trait SET note = 'hostile' WHERE id = 41});
is(publish(), 'delta|10|1|0', 'a delta to forge');
$saved = slurp_file("$www/m0/sync-index.json");
for my $forge (['tables', "7000000099\t1\t1\t\\N\tsmuggled\t4\n", 'a row outside the range',
		qr/archive of machine 0 has a row of table public\.trait with key 7000000099, outside the machine's range/],
	['deleted', "7000000001\n", 'a deleted key outside the range',
		qr/archive of machine 0 has a row of table public\.trait with key 7000000001, outside the machine's range/],
	['deleted', "41\n", 'a key both in its rows and deleted',
		qr/delta of machine 0 both has and deletes rows of table public\.trait/])
{
	my ($where, $line, $what, $re) = @$forge;
	my $fake = index_of();
	my $d = $fake->{deltas}[-1];
	my $orig = slurp_file("$www/m0/$d->{archive}");
	my %pseudo = (archive => $d->{archive});
	edit_archive("$www/m0", \%pseudo, sub {
		my ($x, $header, $manifest) = @_;
		my ($trait) = grep { $_->{name} eq 'trait' } @{ $manifest->{tables} };
		my $t = $where eq 'tables' ? $trait : $trait->{deleted};
		my $file = "$x/$t->{files}[0]";
		open(my $fh, '>>', $file) or die;
		print $fh $line;
		close($fh);
		$t->{rows}++;
		$t->{bytes} += length($line);
		$t->{sha256} = Digest::SHA::sha256_hex(slurp_file($file));
	});
	$d->{sha256} = $pseudo{sha256};
	$d->{size} = $pseudo{size};
	{ open(my $fh, '>', "$www/m0/sync-index.json") or die; print $fh encode_json($fake); close $fh; }
	pull_fails(42, 0, $re, "a delta with $what");
	{ open(my $fh, '>', "$www/m0/$d->{archive}") or die; binmode $fh; print $fh $orig; close $fh; }
	{ open(my $fh, '>', "$www/m0/sync-index.json") or die; print $fh $saved; close $fh; }
}
is(pull(42, 0), 'applied|0|1|0', 'the genuine delta applies');

# a delta deleting a row that one of 42's own rows references
sql(42, q{INSERT INTO trait (site_id, note) VALUES (7, 'mine, on 0''s site')});
sql(0, q{DELETE FROM site WHERE id = 7});
like(publish(), qr/^delta\|11\|0\|\d+$/, 'a delta deleting a site');
pull_fails(42, 0, qr/pull of machine 0 would delete rows of table public\.site that rows of table public\.trait still reference/,
	'a delete reaching a row of 42 through a cascade');
sql(42, q{DELETE FROM trait WHERE id > 42000000000});
like(pull(42, 0), qr/^applied\|0\|0\|\d+$/, 'with 42\'s row gone, the delta applies');
is(same(), 0, 'the copy equals what 0 publishes');

# a filter that leaves a row out, and then lets it in again
sql(0, q{SELECT sync_add_table('trait', 'access_level', 'note IS DISTINCT FROM ''hidden''')});
sql(0, q{UPDATE trait SET note = 'hidden' WHERE id = 12});
like(publish(), qr/^delta\|\d+\|0\|1$/, 'a row the filter now leaves out is a deleted key of the delta');
is(pull(42, 0), 'applied|0|0|1', 'it goes');
sql(0, q{SELECT sync_add_table('trait', 'access_level')});
like(publish(), qr/^delta\|\d+\|1\|0$/, 'without the filter, it is a new row of the delta');
is(pull(42, 0), 'applied|1|0|0', 'it comes back');
is(sql(42, q{SELECT note FROM trait WHERE id = 12}), 'hidden', 'with its values');
is(same(), 0, 'the copy equals what 0 publishes');

# what a subscriber of 0.4 reads: format 1, and a full archive of format 1
$index = index_of();
is("$index->{format}|" . (-f "$www/m0/$index->{archive}" ? 'there' : 'missing') . '|' . length($index->{sha256}),
	'1|there|64', 'the index names a full archive of format 1, with its size and checksum, as 0.4 reads it');
{
	my $x = PostgreSQL::Test::Utils::tempdir();
	system_or_bail('tar', '--zstd', '-xf', "$www/m0/$index->{archive}", '-C', $x, 'header.json');
	my $header = decode_json(slurp_file("$x/header.json"));
	is("$header->{format}|$header->{kind}", '1|full', 'and the full archive is of format 1');
}

###########################################################################
# Retention: a subscriber whose deltas were pruned takes the full path
###########################################################################

$node{0}->append_conf('postgresql.conf', 'sync.dump_deltas = 2');
$node{0}->reload;
for my $i (1 .. 4)
{
	sql(0, "UPDATE trait SET value = $i WHERE id = 50");
	like(publish(), qr/^(delta|full and delta)\|/, "dump $i while 42 does not pull");
}
$index = index_of();
ok(scalar @{ $index->{deltas} } <= 2, 'the index keeps at most 2 deltas');
ok($index->{deltas}[0]{seq} > 10, 'the delta 42 needs next is gone');
my @files = glob("$www/m0/sync-0-*.tar.zst");
ok(@files <= 2 * 2 + 2, 'old files are removed');
like(pull(42, 0), qr/^applied\|/, 'the pull applies');
like(last_pull(), qr/^full\|/, 'the full path, its state having left the chain');
is(same(), 0, 'the copy equals what 0 publishes');

# a new subscriber takes the full archive with the deltas since folded in,
# and the registry of the newest state
sql(0, q{SELECT sync_register_machine(0, NULL, NULL, 'admin@zero')});
sql(0, q{UPDATE trait SET value = 77 WHERE id = 51});
like(publish(), qr/^delta\|/, 'a delta with a new registry entry');
sql(42, q{DELETE FROM sync_pull_state});
is(pull(42, 0), 'applied|0|1|0', 'as a new subscriber: one merge of the full archive and the deltas');
like(last_pull(), qr/^full\|[2-9]\|$/, 'the full path, deltas folded in');
is(sql(42, q{SELECT sync_contact FROM sync_machine WHERE id = 0}), 'admin@zero',
	'the registry of the newest state arrives');
is(same(), 0, 'the copy equals what 0 publishes');

###########################################################################
# Level, anonymization and a forced full archive
###########################################################################

is(sql(0, q{SELECT kind FROM sync_dump(level => 4, "full" => true)}), 'full and delta', 'a full archive on request, with the delta');
like(sql(0, q{SELECT kind FROM sync_dump(anonymize => false)}), qr/^full/, 'published columns changed: a full archive');
like(pull(42, 0), qr/^applied\|/, 'the pull applies');
is(sql(42, q{SELECT email FROM site WHERE id = 4}), 'changed@zero', 'the real values arrive');
is(same(), 0, 'the copy equals what 0 publishes');

done_testing();
