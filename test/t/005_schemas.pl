# A schema shaped like a real federation's, registered unchanged, through
# nginx between three servers (machines 1, 2 and 3): link tables keyed by an
# id without a primary key, levels of a domain, a CHECK calling a function
# that reads another table, triggers that skip rows, unique values that are
# deleted and re-created, swapped, and created on two machines.  Every
# failure leaves the subscriber exactly as before and is recorded.
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

start_servers($www, 1, 2, 3);
my $nginx = SyncNginx->new(prefix => "$tmp/nginx", root => $www);

# the schema every site shares through its migrations (none of it is changed
# for sync)
my $schema = q{
	CREATE EXTENSION sync;
	CREATE DOMAIN level_of_access AS integer NOT NULL CHECK (VALUE BETWEEN 1 AND 4);
	CREATE DOMAIN yield_level AS level_of_access;
	CREATE TABLE species (id bigserial PRIMARY KEY, scientificname text);
	CREATE TABLE pfts (id bigserial PRIMARY KEY, name text);
	CREATE SEQUENCE pfts_species_id_seq;
	CREATE TABLE pfts_species (
		id bigint NOT NULL DEFAULT nextval('pfts_species_id_seq'::regclass),
		pft_id bigint NOT NULL REFERENCES pfts,
		specie_id bigint NOT NULL REFERENCES species,
		note text);
	CREATE UNIQUE INDEX pfts_species_pair ON pfts_species (pft_id, specie_id);
	-- keyed by an id too, with no unique constraint at all
	CREATE SEQUENCE species_synonyms_id_seq;
	CREATE TABLE species_synonyms (
		id bigint NOT NULL DEFAULT nextval('species_synonyms_id_seq'::regclass),
		specie_id bigint NOT NULL REFERENCES species,
		synonym text);
	CREATE TABLE sites (id bigserial PRIMARY KEY, sitename text UNIQUE, code text NOT NULL,
		CONSTRAINT sites_code_key UNIQUE (code) DEFERRABLE);
	CREATE TABLE plots (id bigserial PRIMARY KEY, site_id bigint REFERENCES sites,
		label text NOT NULL UNIQUE);
	CREATE TABLE yields (id bigserial PRIMARY KEY, site_id bigint REFERENCES sites,
		mean numeric, checked integer DEFAULT 0, access_level yield_level);
	CREATE TABLE mimetypes (id bigserial PRIMARY KEY, type_string text NOT NULL UNIQUE);
	CREATE TABLE formats (id bigserial PRIMARY KEY, name text,
		mimetype_id bigint REFERENCES mimetypes);
	CREATE TABLE inputs (id bigserial PRIMARY KEY, name text);
	CREATE FUNCTION get_input_ids() RETURNS bigint[] LANGUAGE sql STABLE
		AS $$SELECT array_agg(id) FROM inputs$$;
	CREATE TABLE dbfiles (id bigserial PRIMARY KEY, file_name text, container_id bigint,
		CONSTRAINT dbfiles_container CHECK (container_id = ANY (get_input_ids())));
	-- an input still in use is not deleted: the delete is skipped, with a notice
	CREATE FUNCTION keep_used_inputs() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		IF EXISTS (SELECT 1 FROM dbfiles WHERE container_id = OLD.id) THEN
			RAISE NOTICE 'input % is in use and stays', OLD.id;
			RETURN NULL;
		END IF;
		RETURN OLD;
	END $$;
	CREATE TRIGGER keep_used_inputs BEFORE DELETE ON inputs
		FOR EACH ROW EXECUTE FUNCTION keep_used_inputs();
};
join_federation($nginx, $schema, q{
	SELECT sync_add_table('species'), sync_add_table('pfts');
	SELECT sync_add_table('pfts_species', key_column => 'id');
	SELECT sync_add_table('species_synonyms', key_column => 'id');
	SELECT sync_add_table('sites'), sync_add_table('plots');
	SELECT sync_add_table('yields', 'access_level', 'checked <> -1');
	SELECT sync_add_table('mimetypes'), sync_add_table('formats');
	SELECT sync_add_table('inputs'), sync_add_table('dbfiles');
});

# The rows of a machine's range in a table, as the owner and as a copy have them.
sub rows_of
{
	my ($id, $table, $machine, $columns) = @_;
	return sql($id, "SELECT string_agg(row($columns)::text, ' ' ORDER BY id) FROM $table"
		  . " WHERE id BETWEEN ${machine}000000001 AND ${machine}999999999");
}

###########################################################################
# Link tables keyed by an id, without a primary key
###########################################################################

sql(1, q{
	INSERT INTO species (scientificname) VALUES ('Acer rubrum'), ('Betula nigra'), ('Frozen');
	INSERT INTO pfts (name) VALUES ('temperate deciduous'), ('boreal');
	INSERT INTO pfts_species (pft_id, specie_id, note) VALUES
		(1000000001, 1000000001, 'a'), (1000000001, 1000000002, 'b'), (1000000002, 1000000002, 'c');
	INSERT INTO species_synonyms (specie_id, synonym) VALUES
		(1000000001, 'red maple'), (1000000002, 'river birch');
	SELECT sync_dump();
});
is(pull(2, 1), 'applied|10|0|0', 'link table rows arrive with their parents');
is(rows_of(2, 'species_synonyms', 1, 'id, specie_id, synonym'),
	'(1000000001,1000000001,"red maple") (1000000002,1000000002,"river birch")',
	'a table keyed by an id with no unique constraint at all arrives too');
is(rows_of(2, 'pfts_species', 1, 'id, pft_id, specie_id, note'),
	rows_of(1, 'pfts_species', 1, 'id, pft_id, specie_id, note'),
	'the copy of the link table equals its owner\'s');
is(sql(1, q{SELECT id FROM pfts_species WHERE note = 'c'}), '1000000003',
	'the link table\'s sequence hands out keys of the local range');

sql(1, q{
	DELETE FROM pfts_species WHERE note = 'a';
	UPDATE pfts_species SET note = 'b2' WHERE note = 'b';
	INSERT INTO pfts_species (pft_id, specie_id, note) VALUES (1000000002, 1000000001, 'd');
	SELECT sync_dump();
});
is(pull(2, 1), 'applied|1|1|1', 'insert, update and delete in a link table');
is(rows_of(2, 'pfts_species', 1, 'id, pft_id, specie_id, note'),
	rows_of(1, 'pfts_species', 1, 'id, pft_id, specie_id, note'), 'and the copy converges');

# a key that is not unique fails the dump
sql(1, q{INSERT INTO pfts_species (id, pft_id, specie_id, note) VALUES (1000000003, 1000000001, 1000000003, 'dup')});
my ($rc, $out, $err) = $node{1}->psql('postgres', 'SELECT sync_dump()');
isnt($rc, 0, 'a dump with two rows of one key fails');
like($err, qr/ERROR:  table public\.pfts_species has more than one row with the same key\nDETAIL:  Key column "id" is not unique: 1000000003\./,
	'and names the table and the key');
sql(1, q{DELETE FROM pfts_species WHERE note = 'dup'});

# so does a copy here with two rows of one key
sql(2, q{SET session_replication_role = replica;
	INSERT INTO pfts_species (id, pft_id, specie_id, note) VALUES (1000000003, 1000000001, 1000000003, 'stray')});
sql(1, q{UPDATE pfts_species SET note = 'b3' WHERE note = 'b2'; SELECT sync_dump();});
pull_fails(2, 1, qr/ERROR:  the copy here of table public\.pfts_species has more than one row of machine 1 with the same key\nDETAIL:  Keys 1000000003 appear more than once/,
	'two rows of one key in the copy here');
sql(2, q{SET session_replication_role = replica; DELETE FROM pfts_species WHERE note = 'stray'});
is(pull(2, 1), 'applied|0|1|0', 'with the stray copy gone, the pull applies');

# and an archive with two rows of one key, loaded straight into place (3) or staged (2)
sub fake_archive
{
	my ($name, $edit) = @_;
	fake_publication($www, 1, $name, sub {
		my ($dir, $index) = @_;
		edit_archive($dir, $index, sub { my ($x, $header, $manifest) = @_; $edit->($x, $manifest); });
	});
	return $nginx->url("$name/");
}
# an archive whose table has its first row twice
sub repeat_first_row
{
	my ($table) = @_;
	return sub {
		my ($x, $manifest) = @_;
		my ($t) = grep { $_->{name} eq $table } @{ $manifest->{tables} };
		my $file = "$x/$t->{files}[0]";
		my ($first) = split /\n/, slurp_file($file);
		open(my $fh, '>>', $file) or die;
		print $fh "$first\n";
		close($fh);
		$t->{rows}++;
		delete @$t{qw(digest published)};	# (as a manifest of revision 1)
		$t->{sha256} = sha256_hex(slurp_file($file));
		$t->{bytes} = -s $file;
	};
}
# machine 2 stages pfts_species (it has rows of machine 1 and a unique
# pair), machine 3 has none of machine 1's rows: species_synonyms goes
# straight into place there
my $dup_url = fake_archive('dup', repeat_first_row('pfts_species'));
my $dup2_url = fake_archive('dup2', repeat_first_row('species_synonyms'));
my %dup = (
	2 => [ $dup_url, qr/ERROR:  archive of machine 1 has more than one row of table public\.pfts_species with the same key\nDETAIL:  Key \(id\)=\(\d+\) already exists\. Rows are matched by key; nothing was applied\./, 'staged' ],
	3 => [ $dup2_url, qr/ERROR:  the archive of table public\.species_synonyms has more than one row of machine 1 with the same key\nDETAIL:  Keys 100000000[12] appear more than once; rows are matched by key\. Nothing was applied\.\nHINT:  Its publisher must give each of its rows a key of its own and dump again\./, 'loaded in place' ]);
for my $id (2, 3)
{
	sql($id, "SELECT sync_register_machine(1, NULL, '$dup{$id}[0]')");
	pull_fails($id, 1, $dup{$id}[1], "an archive with two rows of one key ($dup{$id}[2])");
	sql($id, "SELECT sync_register_machine(1, NULL, '" . $nginx->url('m1/') . "')");
}

###########################################################################
# Levels of a domain over integer, at every dump level
###########################################################################

sql(1, q{
	INSERT INTO sites (sitename, code) VALUES ('alpha', 'A'), ('beta', 'B');
	INSERT INTO yields (site_id, mean, access_level) VALUES
		(1000000001, 1.1, 1), (1000000001, 2.2, 2), (1000000001, 3.3, 3), (1000000001, 4.4, 4);
	INSERT INTO yields (site_id, mean, access_level, checked) VALUES (1000000002, 9.9, 4, -1);
});
my %published = (0 => 4, 1 => 4, 2 => 3, 3 => 2, 4 => 1);
for my $level (0 .. 4)
{
	sql(1, "SELECT sync_dump(level => $level)");
	pull(2, 1);
	is(sql(2, 'SELECT count(*) FROM yields WHERE id BETWEEN 1000000001 AND 1999999999'),
		$published{$level}, "dump at level $level publishes the yields of level $level and above");
}
sql(1, 'SELECT sync_dump(level => 4, unchecked => true)');
pull(2, 1);
is(sql(2, 'SELECT string_agg(mean::text, \',\' ORDER BY id) FROM yields WHERE id BETWEEN 1000000001 AND 1999999999'),
	'4.4,9.9', 'unchecked publishes what the filter leaves out, still by level');
sql(1, 'SELECT sync_dump()');
pull(2, 1);
is(sql(2, q{SELECT min(pg_typeof(access_level)::text) || ':' || string_agg(access_level::text, ',' ORDER BY id)
		FROM yields WHERE id BETWEEN 1000000001 AND 1999999999}),
	'yield_level:3,4', 'levels arrive in the domain, at the default level 3');

###########################################################################
# A CHECK that reads another table; dependencies beyond foreign keys
###########################################################################

# machine 2 has inputs of its own, machine 3 none
sql(2, q{INSERT INTO inputs (name) VALUES ('local input')});
sql(1, q{
	INSERT INTO inputs (name) VALUES ('met driver');
	INSERT INTO dbfiles (file_name, container_id) VALUES ('met.nc', 1000000001);
	SELECT sync_dump();
});
my $err = pull_fails(2, 1, qr/ERROR:  new row for relation "dbfiles" violates check constraint "dbfiles_container"\nDETAIL:  Failing row contains/,
	'a CHECK that needs rows of a table that comes later');
is(sql(2, q{SELECT sqlstate || '|' || detail || '|' || (context IS NULL) FROM sync_log WHERE kind = 'pull' ORDER BY id DESC LIMIT 1}),
	'23514|Withheld from sync_log, as it may quote row values; the server log has it.|true',
	'sync_log keeps the SQLSTATE of PostgreSQL\'s own constraint error, but not the row values its detail quotes');
like(pull(3, 1), qr/^applied\|/, 'on a subscriber with no inputs of its own the same pull passes');
sql(2, q{SELECT sync_add_table('dbfiles', depends_on => '{inputs}')});
is(sql(2, q{SELECT depends_on::text FROM sync_table WHERE tbl = 'dbfiles'::regclass}), '{inputs}',
	'sync_table shows the dependency');
like(pull(2, 1), qr/^applied\|/, 'with dbfiles depending on inputs, the pull applies');
is(sql(2, q{SELECT file_name FROM dbfiles WHERE id > 1000000000}), 'met.nc', 'and the file arrives');

# the publisher deletes the file, then the input
sql(1, q{DELETE FROM dbfiles; DELETE FROM inputs; SELECT sync_dump();});
my $e = pull_fails(3, 1,
	qr/ERROR:  pull of machine 1 planned to delete 1 rows of table public\.inputs, but 0 were\nDETAIL:  Not done for keys 1000000001\. A trigger, rule or other session changed what the statement did/,
	'a BEFORE DELETE trigger that skips the delete');
like($e, qr/HINT:  Sync does not disable triggers/, 'the hint points at triggers');
sql(3, q{SELECT sync_add_table('dbfiles', depends_on => '{inputs}')});
like(pull(3, 1), qr/^applied\|0\|0\|2$/, 'with the dependency declared, the file goes first, then the input');
like(pull(2, 1), qr/^applied\|0\|0\|2$/, 'on machine 2 too');

# a publisher that declares the dependency writes inputs before dbfiles
{
	my $path = sql(3, 'SELECT path FROM sync_dump()');
	my $x = "$tmp/order-x";
	make_path($x);
	system_or_bail('tar', '--zstd', '-xf', $path, '-C', $x, 'header.json');
	my @names = map { $_->{name} } @{ decode_json(slurp_file("$x/header.json"))->{tables} };
	my ($inputs) = grep { $names[$_] eq 'inputs' } 0 .. $#names;
	my ($dbfiles) = grep { $names[$_] eq 'dbfiles' } 0 .. $#names;
	ok($inputs < $dbfiles, 'the archive of a publisher with depends_on has inputs before dbfiles');
}
is(sql(2, q{SELECT count(*) FROM inputs}) . sql(2, q{SELECT count(*) FROM dbfiles}), '10',
	'machine 2 keeps only its own input');

# a BEFORE UPDATE trigger that skips the update
sql(2, q{
	CREATE FUNCTION frozen() RETURNS trigger LANGUAGE plpgsql AS
	  $$BEGIN RETURN NULL; END$$;
	CREATE TRIGGER frozen BEFORE UPDATE ON species FOR EACH ROW
	  WHEN (OLD.scientificname = 'Frozen') EXECUTE FUNCTION frozen();
});
sql(1, q{UPDATE species SET scientificname = 'Thawed' WHERE scientificname = 'Frozen'; SELECT sync_dump();});
pull_fails(2, 1, qr/ERROR:  pull of machine 1 planned to update 1 rows of table public\.species, but 0 were\nDETAIL:  Not done for keys 1000000003\./,
	'a BEFORE UPDATE trigger that skips the update');
is(sql(2, q{SELECT status FROM sync_status WHERE machine_id = 1}), 'failed', 'sync_status shows the failure');
sql(2, q{DROP TRIGGER frozen ON species});
is(pull(2, 1), 'applied|0|1|0', 'without the trigger the update applies');

# a trigger that inserts the row under another key: as many rows, not the same
sql(2, q{
	CREATE FUNCTION shift() RETURNS trigger LANGUAGE plpgsql AS
	  $$BEGIN NEW.id := NEW.id + 500; RETURN NEW; END$$;
	CREATE TRIGGER shift BEFORE INSERT ON species FOR EACH ROW
	  WHEN (NEW.scientificname = 'Shifted') EXECUTE FUNCTION shift();
});
sql(1, q{INSERT INTO species (scientificname) VALUES ('Shifted'); SELECT sync_dump();});
pull_fails(2, 1, qr/ERROR:  pull of machine 1 planned to insert 1 rows of table public\.species, but 1 were\nDETAIL:  Not done for keys 1000000004\./,
	'a trigger that changes the key of an inserted row');
sql(2, q{DROP TRIGGER shift ON species});
is(pull(2, 1), 'applied|1|0|0', 'without the trigger the row arrives under its key');

# a DO INSTEAD rule that turns deletes into updates (a "soft delete"): its
# RETURNING would report the rows as deleted, so rules are refused
sql(2, q{
	CREATE RULE species_soft_delete AS ON DELETE TO species DO INSTEAD
	  UPDATE species SET scientificname = scientificname || ' (gone)' WHERE id = OLD.id
	  RETURNING species.*;
});
sql(1, q{DELETE FROM species WHERE scientificname = 'Shifted'; SELECT sync_dump();});
$e = pull_fails(2, 1, qr/ERROR:  pull of machine 1 cannot delete rows of table public\.species, which has rule "species_soft_delete"\nDETAIL:  A rule rewrites the DELETE statements of a pull/,
	'a DO INSTEAD rule');
like($e, qr/HINT:  Sync does not disable rules/, 'the hint points at the rule');
sql(2, q{
	DROP RULE species_soft_delete ON species;
	CREATE RULE species_audit AS ON DELETE TO species DO ALSO NOTIFY species_changed;
});
pull_fails(2, 1, qr/ERROR:  pull of machine 1 cannot delete rows of table public\.species, which has rule "species_audit"/,
	'a DO ALSO rule');
sql(2, q{CREATE RULE species_insert_audit AS ON INSERT TO species DO ALSO NOTIFY species_changed;
	ALTER TABLE species DISABLE RULE species_audit});
is(pull(2, 1), 'applied|0|0|1', 'a disabled rule, and a rule on inserts when nothing is inserted, let it through');
sql(2, q{DROP RULE species_audit ON species; DROP RULE species_insert_audit ON species});

# row-level security that hides machine 1's rows from the role pulling
sql(2, q{
	CREATE ROLE puller;
	GRANT EXECUTE ON FUNCTION sync_pull(bigint, boolean, boolean, regclass[], regclass[], text) TO puller;
	GRANT SELECT, INSERT, UPDATE ON sync_machine TO puller;
	GRANT SELECT ON sync_instance, sync_table TO puller;
	GRANT SELECT, INSERT, UPDATE, DELETE ON sync_pull_state TO puller;
	GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO puller;
	ALTER TABLE species ENABLE ROW LEVEL SECURITY;
	CREATE POLICY own_species ON species USING (id NOT BETWEEN 1000000001 AND 1999999999);
});
sql(1, q{UPDATE species SET scientificname = 'Acer saccharum' WHERE scientificname = 'Acer rubrum'; SELECT sync_dump();});
pull_fails(2, 1, qr/ERROR:  row-level security on table public\.species applies to role puller\nDETAIL:  Rows a policy hides from the role pulling would be neither updated nor deleted/,
	'row-level security', set => 'SET ROLE puller; ');
is(pull(2, 1), 'applied|0|1|0', 'pulled by the table\'s owner, whom the policy does not bind, it applies');
sql(2, q{ALTER TABLE species DISABLE ROW LEVEL SECURITY; DROP POLICY own_species ON species});

###########################################################################
# Unique values within one machine: re-created, swapped, moved in a chain
###########################################################################

sql(1, q{INSERT INTO plots (site_id, label) VALUES (1000000001, 'p1'), (1000000001, 'p2'); SELECT sync_dump();});
like(pull(2, 1), qr/^applied\|/, 'sites and plots arrive');

sql(1, q{
	DELETE FROM yields WHERE site_id = 1000000002;
	DELETE FROM sites WHERE sitename = 'beta';
	INSERT INTO sites (sitename, code) VALUES ('beta', 'B');
	SELECT sync_dump();
});
is(pull(2, 1), 'applied|1|0|1', 'a site deleted and re-created with the same unique values');
is(rows_of(2, 'sites', 1, 'id, sitename, code'), rows_of(1, 'sites', 1, 'id, sitename, code'),
	'the copy matches');

sql(1, q{
	UPDATE sites SET sitename = NULL WHERE sitename = 'alpha';
	UPDATE sites SET sitename = 'alpha' WHERE sitename = 'beta';
	UPDATE sites SET sitename = 'beta' WHERE sitename IS NULL;
	BEGIN;
	SET CONSTRAINTS sites_code_key DEFERRED;
	UPDATE sites SET code = CASE code WHEN 'A' THEN 'B' ELSE 'A' END;
	COMMIT;
	SELECT sync_dump();
});
is(pull(2, 1), 'applied|0|2|0', 'two sites swap their names (a column that may be NULL) and codes (deferrable)');
is(rows_of(2, 'sites', 1, 'id, sitename, code'), rows_of(1, 'sites', 1, 'id, sitename, code'),
	'the copy matches');

sql(1, q{
	UPDATE plots SET label = 'p3' WHERE label = 'p2';
	UPDATE plots SET label = 'p2' WHERE label = 'p1';
	INSERT INTO plots (site_id, label) VALUES (1000000001, 'p1');
	SELECT sync_dump();
});
is(pull(2, 1), 'applied|1|2|0', 'labels that move along a chain are written in rounds');
is(rows_of(2, 'plots', 1, 'id, label'), rows_of(1, 'plots', 1, 'id, label'), 'the copy matches');

sql(1, q{
	SET sync.dump_delta_ratio = 100;
	UPDATE plots SET label = 'tmp' WHERE label = 'p1';
	UPDATE plots SET label = 'p1' WHERE label = 'p2';
	UPDATE plots SET label = 'p2' WHERE label = 'tmp';
	SELECT sync_dump();
});
pull_fails(2, 1, qr/ERROR:  cannot apply the rows of machine 1 to table public\.plots: values of plots_label_key move between its rows in a cycle\n.*\nHINT:  Make plots_label_key DEFERRABLE, or allow NULL in one of its columns/s,
	'a swap through a NOT NULL, immediate unique constraint');
sql(1, q{SET sync.dump_delta_ratio = 100; UPDATE plots SET label = 'p4' WHERE label = 'p1'; SELECT sync_dump();});
like(pull(2, 1), qr/^applied\|0\|\d\|0$/, 'once the publisher breaks the cycle, the pull applies');
like(sql(2, q{SELECT details->>'path' || ': ' || (details->>'fallback') FROM sync_log WHERE kind = 'pull' ORDER BY id DESC LIMIT 1}),
	qr/^full: cannot apply the rows of machine 1 to table public\.plots: values of plots_label_key move between its rows in a cycle$/,
	'the delta with the swap cannot be applied here on its own: the full path goes to the newest state at once, and says why');

is(rows_of(2, 'plots', 1, 'id, label'), rows_of(1, 'plots', 1, 'id, label'), 'the copy matches');

###########################################################################
# Unique values created on two machines
###########################################################################

# machines 1 and 3 each create text/csv, and the same pair in the link
# table, before either has seen the other's
sql(1, q{
	INSERT INTO mimetypes (type_string) VALUES ('text/csv'), ('application/x-netcdf');
	INSERT INTO formats (name, mimetype_id) VALUES ('csv of machine 1', 1000000001);
	INSERT INTO pfts_species (pft_id, specie_id, note) VALUES (1000000002, 1000000003, 'pair of 1');
	SELECT sync_dump();
});
sql(3, q{
	INSERT INTO mimetypes (type_string) VALUES ('text/csv'), ('image/png');
	INSERT INTO formats (name, mimetype_id) VALUES ('csv of machine 3', 3000000001), ('png', 3000000002);
	INSERT INTO pfts (name) VALUES ('arctic');
	INSERT INTO pfts_species (pft_id, specie_id, note) VALUES (1000000002, 1000000003, 'same pair as 1');
	INSERT INTO pfts_species (pft_id, specie_id, note) VALUES (3000000001, 1000000001, 'own pair');
	SELECT sync_dump();
});
like(pull(2, 1), qr/^applied\|/, 'machine 2 has machine 1\'s mimetypes');
$e = pull_fails(2, 3,
	qr/ERROR:  row 3000000001 of table public\.mimetypes from machine 3 conflicts with row 1000000001 of machine 1\nDETAIL:  Both hold the same values of mimetypes_type_string_key \(type_string\)/,
	'a value created on two machines (on_conflict error)');
like($e, qr/HINT:  Resolve it on one of the machines .*on_conflict => 'skip'/, 'the hint says how to resolve it');

sql(2, q{
	SELECT sync_add_table('mimetypes', on_conflict => 'skip');
	SELECT sync_add_table('pfts_species', key_column => 'id', on_conflict => 'skip');
});
($rc, $out, $err) = $node{2}->psql('postgres', 'SELECT status, inserted FROM sync_pull(3)');
is($out, 'partial|4', 'with on_conflict skip the rest of machine 3\'s archive applies');
like($err, qr/WARNING:  1 row of table public\.mimetypes from machine 3 left out: it holds unique values of other machines' rows, or references a row that does\nDETAIL:  Keys 3000000001\./,
	'a WARNING names the row left out');
like($err, qr/WARNING:  1 row of table public\.pfts_species from machine 3 left out/, 'and the link table\'s');
is(sql(2, 'SELECT string_agg(name, \',\' ORDER BY id) FROM formats WHERE id > 3000000000'), 'png',
	'a row referencing a row left out is left out too');
is(sql(2, 'SELECT count(*) FROM mimetypes WHERE type_string = \'text/csv\'') . ':'
	  . sql(2, 'SELECT id FROM mimetypes WHERE type_string = \'text/csv\''),
	'1:1000000001', 'machine 1\'s row is untouched');
is(sql(2, q{SELECT status || ' ' || (details->'skipped'->'public.mimetypes'->>'rows') FROM sync_log
		WHERE kind = 'pull' AND machine_id = 3 ORDER BY id DESC LIMIT 1}),
	'partial 1', 'sync_log records what was left out');
is(sql(2, q{SELECT status FROM sync_status WHERE machine_id = 3}), 'partial', 'sync_status shows it');
($rc, $out, $err) = $node{2}->psql('postgres', 'SELECT status FROM sync_pull(3)');
is($out, 'partial', 'an unchanged archive is tried again while rows are left out');

# machine 3 resolves it; the rows left out arrive
sql(3, q{
	UPDATE mimetypes SET type_string = 'text/csv; header=present' WHERE id = 3000000001;
	DELETE FROM pfts_species WHERE note = 'same pair as 1';
	SELECT sync_dump();
});
is(pull(2, 3), 'applied|2|0|0', 'once the conflict is gone the rows left out arrive');
is(sql(2, 'SELECT string_agg(name, \',\' ORDER BY id) FROM formats WHERE id > 3000000000'),
	'csv of machine 3,png', 'with the rows that reference them');
is(rows_of(2, 'mimetypes', 3, 'id, type_string'), rows_of(3, 'mimetypes', 3, 'id, type_string'),
	'the copy of machine 3 matches');

# a row left out keeps the row it still references here: machine 3 moves its
# png format to a new mimetype whose value machine 1 also has, and deletes
# the old one
sql(1, q{INSERT INTO mimetypes (type_string) VALUES ('image/x-png'); SELECT sync_dump();});
like(pull(2, 1), qr/^applied\|/, 'machine 2 has machine 1\'s image/x-png');
sql(3, q{
	INSERT INTO mimetypes (type_string) VALUES ('image/x-png');
	UPDATE formats SET mimetype_id = 3000000003 WHERE name = 'png';
	DELETE FROM mimetypes WHERE type_string = 'image/png';
	SELECT sync_dump();
});
($rc, $out, $err) = $node{2}->psql('postgres', 'SELECT status, inserted, updated, deleted FROM sync_pull(3)');
is($out, 'partial|0|0|0', 'the new mimetype and the format moved to it are left out');
is(sql(2, q{SELECT m.type_string FROM formats f JOIN mimetypes m ON m.id = f.mimetype_id WHERE f.name = 'png'}),
	'image/png', 'the mimetype the format still references here stays, though machine 3 deleted it');
sql(3, q{UPDATE mimetypes SET type_string = 'image/png; legacy' WHERE id = 3000000003; SELECT sync_dump();});
is(pull(2, 3), 'applied|1|1|1', 'once resolved, the format moves and the old mimetype goes');
is(rows_of(2, 'mimetypes', 3, 'id, type_string'), rows_of(3, 'mimetypes', 3, 'id, type_string'),
	'the copy of machine 3 matches again');

###########################################################################
# Every machine converges, in any order
###########################################################################

for my $round (1, 2)
{
	for my $pair ([ 1, 2 ], [ 1, 3 ], [ 3, 1 ], [ 3, 2 ], [ 2, 1 ], [ 2, 3 ])
	{
		my ($to, $from) = @$pair;
		sql($from, 'SELECT sync_dump()');
		like(sql($to, "SELECT status FROM sync_pull($from)"), qr/^(applied|unchanged)$/,
			"round $round: machine $to pulls machine $from");
	}
}
for my $table (qw(species pfts pfts_species sites plots mimetypes formats))
{
	for my $owner (1, 3)
	{
		my $theirs = rows_of($owner, $table, $owner, "$table.*");
		for my $copy (grep { $_ != $owner } (1, 2, 3))
		{
			is(rows_of($copy, $table, $owner, "$table.*"), $theirs,
				"$table: machine $copy holds what machine $owner publishes");
		}
	}
}
is(sql(1, q{SELECT count(*) FROM mimetypes WHERE type_string = 'text/csv'}), '1',
	'machine 1 (on_conflict error) holds one text/csv');

$nginx->stop;
$node{$_}->stop for (1, 2, 3);
done_testing();
