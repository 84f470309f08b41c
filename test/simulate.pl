#!/usr/bin/perl
# test/simulate.pl: a federation simulation, run by test/simulate.sh (which
# starts the servers and nginx, and says where they are in the environment).
#
# Each round, every machine writes at random (inserts, updates, deletes,
# unique codes re-created and swapped, references to other machines' rows,
# and an attempt to change another machine's row, which the guard must
# refuse), some dump, and some pull others in random order, with faults: a
# publisher that is down, a truncated archive, a puller killed mid-pull, a
# statement timeout.  Every few rounds (and at the last) a checking round
# has every machine dump and pull every other until nothing fails, then
# checks, on every server, that its copy of each machine's rows is what
# that machine published (sync_verify), that every foreign key holds, and
# that no server holds a row it may not (a private level, a filtered row,
# an email not anonymized).  Prints "R rounds, N divergences, N invariant
# violations" last; exits non-zero on any.
use strict;
use warnings;
use IPC::Run qw(run start finish);
use Time::HiRes qw(sleep time);

my %env = map { $_ => ($ENV{"SIM_\U$_"} // die "SIM_\U$_ is not set\n") }
  qw(machines rounds seed every sockets www bin port);
my @machines = (1 .. $env{machines});
srand($env{seed});
my $started = time;

my ($divergences, $violations) = (0, 0);
my %counter;				# per machine: the next code number
my %stats = (pulls => 0, failed => 0, faults => 0, writes => 0, refused => 0, dumps => 0);

sub say_ { print @_, "\n"; }

# Run SQL on machine $m; returns (ok, stdout, stderr).
sub sql
{
	my ($m, $q) = @_;
	my ($out, $err) = ('', '');
	my $ok = run([ "$env{bin}/psql", '-X', '-At', '-q', '-v', 'ON_ERROR_STOP=1',
			'-h', $env{sockets}, '-p', 5600 + $m, '-d', 'postgres', '-c', $q ],
		'<', \undef, '>', \$out, '2>', \$err);
	chomp $out;
	return ($ok, $out, $err);
}

# The same, dying on error (the simulation's own set-up and checks).
sub must
{
	my ($m, $q) = @_;
	my ($ok, $out, $err) = sql($m, $q);
	die "machine $m: $q\n$err" unless $ok;
	return $out;
}

sub pick { return $_[ int(rand(@_)) ]; }
sub chance { return rand() < $_[0]; }

sub ids
{
	my ($m, $q) = @_;
	my $out = must($m, $q);
	return grep { length } split /\n/, $out;
}

my $schema = q{
	CREATE EXTENSION sync;
	CREATE DOMAIN access_level AS integer CHECK (VALUE BETWEEN 0 AND 4);
	CREATE TABLE person (id bigserial PRIMARY KEY, name text NOT NULL, email text,
		level access_level DEFAULT 4,
		mentor_id bigint REFERENCES person ON DELETE SET NULL);
	CREATE TABLE site (id bigserial PRIMARY KEY, code text NOT NULL UNIQUE DEFERRABLE, name text,
		checked integer NOT NULL DEFAULT 0,
		contact_id bigint REFERENCES person ON DELETE SET NULL, main_plot_id bigint);
	CREATE TABLE plot (id bigserial PRIMARY KEY,
		site_id bigint NOT NULL REFERENCES site ON DELETE CASCADE, label text);
	ALTER TABLE site ADD FOREIGN KEY (main_plot_id) REFERENCES plot ON DELETE SET NULL;
	CREATE TABLE trait (id bigserial PRIMARY KEY,
		plot_id bigint NOT NULL REFERENCES plot ON DELETE CASCADE, value numeric,
		level access_level DEFAULT 4);
	CREATE TABLE site_person (id bigserial PRIMARY KEY,
		site_id bigint NOT NULL REFERENCES site ON DELETE CASCADE,
		person_id bigint NOT NULL REFERENCES person ON DELETE CASCADE,
		UNIQUE (site_id, person_id));
};
my $registrations = q{
	SELECT sync_add_table('person', 'level', NULL, '{"email": "''person'' || id || ''@example.org''"}');
	SELECT sync_add_table('site', NULL, 'checked <> -1');
	SELECT sync_add_table('plot');
	SELECT sync_add_table('trait', 'level');
	SELECT sync_add_table('site_person');
};

# Set up: schema, registry (machine 1 is the authority), identity, and
# three stable people per machine, which others may reference (never
# deleted, always public).
for my $m (@machines)
{
	must($m, $schema);
	for my $k (@machines)
	{
		must($m, "SELECT sync_register_machine($k, 'm$k.example.org', 'http://127.0.0.1:$env{port}/m$k/')");
	}
	must($m, "SELECT sync_init($m); $registrations");
	must($m, "INSERT INTO person (name, email) SELECT 'stable $m.' || i, 'p' || i || '\@m$m' FROM generate_series(1, 3) i");
}

sub own_range
{
	my ($m) = @_;
	return "BETWEEN ${m}000000001 AND ${m}999999999";
}

# One random write on machine $m; counts writes that got through.
sub random_write
{
	my ($m) = @_;
	my $own = own_range($m);
	my @people = ids($m, "SELECT id FROM person WHERE id $own ORDER BY id");
	my @changeable = ids($m, "SELECT id FROM person WHERE id $own AND name NOT LIKE 'stable%' ORDER BY id");
	my @foreign_stable = ids($m, "SELECT id FROM person WHERE id NOT $own AND name LIKE 'stable%' ORDER BY id");
	my @sites = ids($m, "SELECT id FROM site WHERE id $own ORDER BY id");
	my @plots = ids($m, "SELECT id FROM plot WHERE id $own ORDER BY id");
	my $anyone = sub { my @c = (@people, @foreign_stable); return @c ? pick(@c) : 'NULL'; };
	my $r = rand();
	my $q;
	if ($r < 0.12)
	{
		my $mentor = @people && chance(0.5) ? pick(@people) : 'NULL';
		my $level = chance(0.8) ? 4 : int(rand(5));
		$q = "INSERT INTO person (name, email, level, mentor_id) VALUES ('p" . int(rand(1e6)) . "', 'x\@m$m', $level, $mentor)";
	}
	elsif ($r < 0.20 && @changeable)
	{
		my $p = pick(@changeable);
		$q = chance(0.5) ? "UPDATE person SET level = " . int(rand(5)) . " WHERE id = $p"
		  : "UPDATE person SET name = name || '+', mentor_id = " . (chance(0.5) ? pick(@people) : 'NULL') . " WHERE id = $p";
	}
	elsif ($r < 0.25 && @changeable)
	{
		$q = "DELETE FROM person WHERE id = " . pick(@changeable);
	}
	elsif ($r < 0.40)
	{
		my $code = "m$m-" . ++$counter{$m};
		my $checked = chance(0.1) ? -1 : 0;
		$q = "INSERT INTO site (code, name, checked, contact_id) VALUES ('$code', 'site $code', $checked, " . $anyone->() . ")";
	}
	elsif ($r < 0.46 && @sites)
	{
		$q = "UPDATE site SET checked = CASE WHEN checked = -1 THEN 0 WHEN random() < 0.2 THEN -1 ELSE checked END,"
		  . " name = name || '*', contact_id = " . $anyone->() . " WHERE id = " . pick(@sites);
	}
	elsif ($r < 0.52 && @sites >= 2)
	{
		# swap the unique codes of two sites
		my ($a, $b) = (pick(@sites), pick(@sites));
		return if $a == $b;
		# the swap: a takes b's code and b takes a's
		$q = "BEGIN;"
		  . " CREATE TEMP TABLE codes ON COMMIT DROP AS SELECT id, code FROM site WHERE id IN ($a, $b);"
		  . " UPDATE site SET code = code || '~' WHERE id IN ($a, $b);"
		  . " UPDATE site s SET code = c.code FROM codes c WHERE s.id IN ($a, $b) AND c.id <> s.id;"
		  . " COMMIT;";
	}
	elsif ($r < 0.57 && @sites)
	{
		# re-create a site under the same code
		my $s = pick(@sites);
		$q = "BEGIN; CREATE TEMP TABLE gone ON COMMIT DROP AS SELECT code FROM site WHERE id = $s;"
		  . " DELETE FROM site WHERE id = $s;"
		  . " INSERT INTO site (code, name) SELECT code, 'again' FROM gone; COMMIT;";
	}
	elsif ($r < 0.67 && @sites)
	{
		my $s = pick(@sites);
		$q = "WITH p AS (INSERT INTO plot (site_id, label) VALUES ($s, 'plot') RETURNING id, site_id)"
		  . " UPDATE site SET main_plot_id = CASE WHEN random() < 0.5 THEN (SELECT id FROM p) ELSE main_plot_id END"
		  . " WHERE id = $s";
	}
	elsif ($r < 0.72 && @plots)
	{
		$q = "DELETE FROM plot WHERE id = " . pick(@plots);
	}
	elsif ($r < 0.85 && @plots)
	{
		my $level = chance(0.85) ? 4 : int(rand(5));
		$q = "INSERT INTO trait (plot_id, value, level) VALUES (" . pick(@plots) . ", " . int(rand(1000)) / 10 . ", $level)";
	}
	elsif ($r < 0.90)
	{
		$q = "DELETE FROM trait WHERE id = (SELECT id FROM trait WHERE id $own ORDER BY random() LIMIT 1)";
	}
	elsif ($r < 0.96 && @sites)
	{
		$q = "INSERT INTO site_person (site_id, person_id) VALUES (" . pick(@sites) . ", " . $anyone->() . ") ON CONFLICT DO NOTHING";
	}
	elsif (@sites)
	{
		$q = "DELETE FROM site_person WHERE id = (SELECT id FROM site_person WHERE id $own ORDER BY random() LIMIT 1)";
	}
	return unless $q;
	my ($ok, $out, $err) = sql($m, $q);
	$stats{writes}++ if $ok;
	# a write may fail on its own (a NULL person, a dangling choice); never
	# for the guard's reason
	if (!$ok && $err =~ /which belongs to machine/)
	{
		say_ "VIOLATION: machine $m: the guard refused a write to its own rows: $q\n$err";
		$violations++;
	}
}

# Try to change another machine's row on $m: the guard must refuse.
sub probe_guard
{
	my ($m) = @_;
	my $own = own_range($m);
	my ($id) = ids($m, "SELECT id FROM person WHERE id NOT $own ORDER BY random() LIMIT 1");
	return unless defined $id;
	my ($ok, $out, $err) = sql($m, pick("UPDATE person SET name = 'stolen' WHERE id = $id",
			"DELETE FROM person WHERE id = $id",
			"INSERT INTO person (id, name) VALUES ($id + 500000, 'forged')"));
	if ($ok)
	{
		say_ "VIOLATION: machine $m changed row $id of another machine";
		$violations++;
	}
	elsif ($err !~ /cannot (update|delete|write) row/)
	{
		say_ "VIOLATION: machine $m: unexpected refusal of a write to row $id: $err";
		$violations++;
	}
	else
	{
		$stats{refused}++;
	}
}

sub dump_
{
	my ($m) = @_;
	my ($ok, $out, $err) = sql($m, 'SELECT sync_dump()');
	die "machine $m: dump failed: $err" unless $ok;
	$stats{dumps}++;
}

# The newest archive machine $k's index names, in its dump directory.
sub served_archive
{
	my ($k) = @_;
	open(my $fh, '<', "$env{www}/d$k/sync-index.json") or return undef;
	local $/;
	my $index = <$fh>;
	close $fh;
	return $index =~ /"archive"\s*:\s*"([^"]+)"/ ? "$env{www}/d$k/$1" : undef;
}

# A pull of $k by $m, with a fault now and then; returns whether it applied.
sub pull
{
	my ($m, $k, $faults) = @_;
	my $fault = $faults && chance(0.15) ? pick(qw(down truncated killed timeout)) : '';
	my ($ok, $out, $err);
	$stats{pulls}++;
	$stats{faults}++ if $fault;
	if ($fault eq 'down')
	{
		rename("$env{www}/m$k", "$env{www}/m$k.down");
		($ok, $out, $err) = sql($m, "SELECT status FROM sync_pull($k)");
		rename("$env{www}/m$k.down", "$env{www}/m$k");
	}
	elsif ($fault eq 'truncated' && defined(my $archive = served_archive($k)))
	{
		my $size = -s $archive;
		rename($archive, "$archive.whole");
		open(my $in, '<:raw', "$archive.whole") or die;
		open(my $outf, '>:raw', $archive) or die;
		read($in, my $half, int($size / 2));
		print $outf $half;
		close $outf;
		close $in;
		($ok, $out, $err) = sql($m, "SELECT status FROM sync_pull($k)");
		rename("$archive.whole", $archive);
	}
	elsif ($fault eq 'killed')
	{
		my ($o, $e) = ('', '');
		my $h = start([ "$env{bin}/psql", '-X', '-At', '-q', '-h', $env{sockets}, '-p', 5600 + $m,
				'-d', 'postgres', '-c', "SELECT status FROM sync_pull($k)" ], '<', \undef, '>', \$o, '2>', \$e);
		sleep(rand(0.3));
		sql($m, q{SELECT pg_terminate_backend(pid) FROM pg_stat_activity
			WHERE pid <> pg_backend_pid()
			  AND (query LIKE 'sync_pull machine=%' OR query LIKE 'SELECT status FROM sync_pull%')});
		$ok = finish($h);
		($out, $err) = ($o, $e);
	}
	elsif ($fault eq 'timeout')
	{
		($ok, $out, $err) = sql($m, "SET statement_timeout = '" . (1 + int(rand(40))) . "ms'; SELECT status FROM sync_pull($k)");
	}
	else
	{
		($ok, $out, $err) = sql($m, "SELECT status FROM sync_pull($k)");
	}
	$stats{failed}++ unless $ok;
	return ($ok && $out =~ /^(applied|unchanged)$/, $err);
}

# Everything that must hold on server $m once it pulled every machine.
sub check_server
{
	my ($m) = @_;
	my $own = own_range($m);
	for my $k (@machines)
	{
		next if $k == $m;
		my $differs = must($m, "SELECT coalesce(string_agg(tbl || ' ' || missing || '/' || extra || '/' || changed"
			  . " || ' ' || first_missing::text || first_extra::text || first_changed::text, '; '), '')"
			  . " FROM sync_verify($k) WHERE missing + extra + changed > 0");
		if ($differs ne '')
		{
			say_ "DIVERGENCE: machine ${m}'s copy of machine $k: $differs";
			$divergences++;
		}
	}
	# rows it may not hold, of other machines
	for my $check (
		[ "a person of a private level", "SELECT count(*) FROM person WHERE id NOT $own AND level < 3" ],
		[ "a trait of a private level", "SELECT count(*) FROM trait WHERE id NOT $own AND level < 3" ],
		[ "a filtered site", "SELECT count(*) FROM site WHERE id NOT $own AND checked = -1" ],
		[ "an email not anonymized", "SELECT count(*) FROM person WHERE id NOT $own AND email IS DISTINCT FROM 'person' || id || '\@example.org'" ],
		[ "a row in no machine's range", "SELECT (SELECT count(*) FROM person WHERE id NOT BETWEEN 1000000001 AND $env{machines}999999999)"
			  . " + (SELECT count(*) FROM site WHERE id NOT BETWEEN 1000000001 AND $env{machines}999999999)" ],
		# every foreign key holds
		[ "a dangling mentor", "SELECT count(*) FROM person c WHERE mentor_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM person p WHERE p.id = c.mentor_id)" ],
		[ "a dangling contact", "SELECT count(*) FROM site c WHERE contact_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM person p WHERE p.id = c.contact_id)" ],
		[ "a dangling main plot", "SELECT count(*) FROM site c WHERE main_plot_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM plot p WHERE p.id = c.main_plot_id)" ],
		[ "a dangling plot", "SELECT count(*) FROM plot c WHERE NOT EXISTS (SELECT 1 FROM site p WHERE p.id = c.site_id)" ],
		[ "a dangling trait", "SELECT count(*) FROM trait c WHERE NOT EXISTS (SELECT 1 FROM plot p WHERE p.id = c.plot_id)" ],
		[ "a dangling link", "SELECT count(*) FROM site_person c WHERE NOT EXISTS (SELECT 1 FROM site p WHERE p.id = c.site_id)"
			  . " OR NOT EXISTS (SELECT 1 FROM person p WHERE p.id = c.person_id)" ],
		[ "two sites of one code", "SELECT count(*) - count(DISTINCT code) FROM site" ],
		[ "a guard missing", "SELECT 10 - count(*) FROM pg_trigger WHERE tgname LIKE 'zz_sync_guard%' AND tgenabled = 'O'" ])
	{
		my ($what, $q) = @$check;
		my $n = must($m, $q);
		if ($n != 0)
		{
			say_ "VIOLATION: machine $m holds $n x $what";
			$violations++;
		}
	}
	probe_guard($m);
}

# A checking round: everyone dumps, then pulls everyone until nothing fails
# (at most 4 passes), then every server is checked.
sub checking_round
{
	my ($round) = @_;
	dump_($_) for @machines;
	my %pending = map { my $m = $_; map { ("$m $_" => 1) } grep { $_ != $m } @machines } @machines;
	for my $pass (1 .. 4)
	{
		for my $pair (sort keys %pending)
		{
			my ($m, $k) = split / /, $pair;
			my ($applied, $err) = pull($m, $k, 0);
			delete $pending{$pair} if $applied;
			$pending{$pair} = $err unless $applied;
		}
		last unless %pending;
	}
	for my $pair (sort keys %pending)
	{
		my ($m, $k) = split / /, $pair;
		(my $why = $pending{$pair}) =~ s/\n.*//s;
		say_ "DIVERGENCE: round $round: machine $m cannot pull machine $k: $why";
		$divergences++;
	}
	check_server($_) for @machines;
}

# before the first round: everyone has everyone's stable people
checking_round(0);
for my $round (1 .. $env{rounds})
{
	for my $m (@machines)
	{
		random_write($m) for 1 .. 3 + int(rand(8));
		probe_guard($m) if chance(0.3);
	}
	for my $m (@machines)
	{
		dump_($m) if chance(0.6);
	}
	my @pairs = map { my $m = $_; map { [ $m, $_ ] } grep { $_ != $m } @machines } @machines;
	for my $pair (sort { rand() <=> 0.5 } @pairs)
	{
		pull(@$pair, 1) if chance(0.5);
	}
	if ($round % $env{every} == 0 || $round == $env{rounds})
	{
		checking_round($round);
		say_ sprintf("round %d: %d divergences, %d violations so far (%.0f s)",
			$round, $divergences, $violations, time - $started);
	}
}

say_ sprintf("%d writes, %d dumps, %d pulls (%d failed, %d with a fault), %d writes to other machines' rows refused",
	$stats{writes}, $stats{dumps}, $stats{pulls}, $stats{failed}, $stats{faults}, $stats{refused});
say_ "$env{rounds} rounds, $divergences divergences, $violations invariant violations";
exit(($divergences + $violations) ? 1 : 0);
