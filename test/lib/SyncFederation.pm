# SyncFederation: the servers of a TAP test's federation, one
# PostgreSQL::Test::Cluster per machine id, each publishing into its own
# directory of the web root, and what the tests ask of them: run SQL, pull,
# and check that a failed pull changed nothing and was logged.
package SyncFederation;

use strict;
use warnings;
use Exporter 'import';
use Digest::SHA qw(sha256_hex);
use File::Copy qw(copy);
use File::Path qw(make_path remove_tree);
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

our @EXPORT = qw(%node start_servers join_federation sql pull fingerprint pull_fails
  fake_publication edit_archive rewrite_member work_files);

# the servers, by machine id
our %node;

# Start a server for each machine id, publishing into $www/m<id>, and
# keeping its downloads in a work directory of its own.
sub start_servers
{
	my ($www, @ids) = @_;
	for my $id (@ids)
	{
		my $n = PostgreSQL::Test::Cluster->new("m$id");
		my $work = "$PostgreSQL::Test::Utils::tmp_check/work_m$id";
		$n->init;
		make_path("$www/m$id", $work);
		$n->append_conf('postgresql.conf', "sync.dump_directory = '$www/m$id'\nsync.work_directory = '$work'");
		$n->start;
		$node{$id} = $n;
	}
}

# The files in a server's work directory (a pull leaves none behind).
sub work_files
{
	my ($id) = @_;
	my $work = "$PostgreSQL::Test::Utils::tmp_check/work_m$id";
	opendir(my $dh, $work) or die "opendir $work: $!";
	my @files = grep { $_ ne '.' && $_ ne '..' } readdir($dh);
	closedir($dh);
	return @files;
}

# On every server: create the schema, register every machine with the URL
# nginx serves its directory at, say which machine the server is, and run
# $tables (the SQL that registers the tables shared).
sub join_federation
{
	my ($nginx, $schema, $tables) = @_;
	my @ids = sort { $a <=> $b } keys %node;
	for my $id (@ids)
	{
		my $n = $node{$id};
		$n->safe_psql('postgres', $schema);
		for my $m (@ids)
		{
			$n->safe_psql('postgres',
				"SELECT sync_register_machine($m, 'm$m.example.org', '" . $nginx->url("m$m/") . "')");
		}
		$n->safe_psql('postgres', "SELECT sync_init($id); $tables");
	}
}

sub sql { my ($id, $q) = @_; return $node{$id}->safe_psql('postgres', $q); }

sub pull
{
	my ($id, $remote) = @_;
	return sql($id, "SELECT status, inserted, updated, deleted FROM sync_pull($remote)");
}

# Everything a pull may change on a server, as one checksum: the rows of
# every registered table, the registry, and what the last pulls applied.
sub fingerprint
{
	my ($id) = @_;
	my @parts = ("SELECT 'machine' || m::text AS x FROM sync_machine m",
		"SELECT 'state' || s::text FROM sync_pull_state s");
	for my $tbl (split /\n/, sql($id, 'SELECT tbl::text FROM sync_table ORDER BY 1'))
	{
		push @parts, "SELECT '$tbl' || r::text FROM $tbl r";
	}
	return sql($id, "SELECT md5(string_agg(x, '|' ORDER BY x)) FROM ("
		  . join(' UNION ALL ', @parts) . ') f');
}

# A pull that must fail: the error matches, nothing changed, the failure
# logged.  $opt{set}: SQL to run before the pull, in the same session;
# $opt{status}: the status logged, if not 'failed'.
sub pull_fails
{
	my ($id, $remote, $re, $name, %opt) = @_;
	my $status = $opt{status} // 'failed';
	my $before = fingerprint($id);
	my ($rc, $out, $err) = $node{$id}->psql('postgres',
		($opt{set} // '') . "SELECT status FROM sync_pull($remote)");
	isnt($rc, 0, "$name: pull fails");
	like($err, $re, "$name: error says why");
	is(fingerprint($id), $before, "$name: subscriber exactly as before");
	like(sql($id, q{SELECT status || ': ' || message FROM sync_log WHERE kind = 'pull' ORDER BY id DESC LIMIT 1}),
		qr/^\Q$status\E: /, "$name: failure recorded in sync_log");
	is(join(' ', work_files($id)), '', "$name: no file left in the work directory");
	return $err;
}

# Publish a fake in $www/$name: a copy of machine $machine's publication,
# changed by $edit->($dir, $index) before the index is written.
sub fake_publication
{
	my ($www, $machine, $name, $edit) = @_;
	my $dir = "$www/$name";
	remove_tree($dir);
	make_path($dir);
	my $index = decode_json(slurp_file("$www/m$machine/sync-index.json"));
	copy("$www/m$machine/$index->{archive}", "$dir/$index->{archive}") or die "copy: $!";
	# the full archive alone, as a publisher without deltas names it
	delete @$index{qw(revision chain seq full_seq deltas)};
	$edit->($dir, $index);
	open(my $fh, '>', "$dir/sync-index.json") or die;
	print $fh encode_json($index);
	close($fh);
}

# Change what is inside the archive $index names in $dir:
# $edit->($x, $header, $manifest, $raw) changes the files extracted into
# $x and the two documents, which are written back (but for those the edit
# wrote itself and marked in %$raw, as header => 1); the members are packed
# again in their order, and the index's checksum and size made to match.
sub edit_archive
{
	my ($dir, $index, $edit) = @_;
	my $archive = "$dir/$index->{archive}";
	my $x = PostgreSQL::Test::Utils::tempdir();
	system_or_bail('tar', '--zstd', '-xf', $archive, '-C', $x);
	my @members = split /\n/, `tar --zstd -tf $archive`;
	my %doc = map { $_ => decode_json(slurp_file("$x/$_.json")) } ('header', 'manifest');
	my %raw;
	$edit->($x, $doc{header}, $doc{manifest}, \%raw);
	for my $name (keys %doc)
	{
		next if $raw{$name};
		open(my $fh, '>', "$x/$name.json") or die;
		print $fh encode_json($doc{$name});
		close($fh);
	}
	unlink($archive);
	system_or_bail('tar', '--zstd', '-cf', $archive, '-C', $x, @members);
	$index->{sha256} = sha256_hex(slurp_file($archive));
	$index->{size} = -s $archive;
}

# Give the single file of table $t (its manifest entry) the rows $text, and
# make the manifest's count, size and checksum match.
sub rewrite_member
{
	my ($x, $t, $text) = @_;
	my $file = "$x/$t->{files}[0]";
	open(my $fh, '>:raw', $file) or die "open $file: $!";
	print $fh $text;
	close($fh);
	$t->{rows} = () = $text =~ /\n/g;
	$t->{bytes} = length($text);
	$t->{sha256} = sha256_hex($text);
	# (a forger drops the digest, which a manifest of revision 1 lacks)
	delete @$t{qw(digest published)};
}

1;
