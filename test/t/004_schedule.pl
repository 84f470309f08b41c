# Scheduled pulls: a launcher background worker runs due jobs in dynamic
# workers.  New rows arrive by themselves; a slow remote gives skipped and
# timed-out runs; a failing one backs off and recovers; unscheduling stops
# a job; restarts and crashed workers are recorded; other databases can be
# dropped while the launcher runs.
use strict;
use warnings;
use File::Path qw(make_path);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use SyncNginx;

my $tmp = $PostgreSQL::Test::Utils::tmp_check;
my $www = "$tmp/www";
make_path("$www/m0");

my $pub = PostgreSQL::Test::Cluster->new('publisher');
$pub->init;
$pub->append_conf('postgresql.conf', "sync.dump_directory = '$www/m0'");
$pub->start;
my $sub = PostgreSQL::Test::Cluster->new('subscriber');
$sub->init;
$sub->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'sync'
sync.database = 'postgres'
sync.max_workers = 4
restart_after_crash = on
});
$sub->start;

my $nginx = SyncNginx->new(prefix => "$tmp/nginx", root => $www,
	slow => "$www/m0", rate => '4k');

my $schema = q{
	CREATE EXTENSION sync;
	CREATE TABLE item (id bigserial PRIMARY KEY, name text, filler text);
};
for my $n ($pub, $sub)
{
	$n->safe_psql('postgres', $schema);
	$n->safe_psql('postgres', "SELECT sync_register_machine(0, 'm0.example.org', '" . $nginx->url('m0/') . "')");
	$n->safe_psql('postgres', "SELECT sync_register_machine(42, 'm42.example.org')");
}
$pub->safe_psql('postgres', q{SELECT sync_init(0); SELECT sync_add_table('item');
	INSERT INTO item (name) VALUES ('first'); SELECT sync_dump();});
$sub->safe_psql('postgres', q{SELECT sync_init(42); SELECT sync_add_table('item');});

sub ssql { return $sub->safe_psql('postgres', $_[0]); }

# Wait (at most $secs seconds) until $sql returns $want on the subscriber;
# errors (the server restarting) count as not yet.
sub wait_for
{
	my ($sql, $want, $secs) = @_;
	my $got = '';
	for (1 .. $secs * 10)
	{
		$sub->psql('postgres', $sql, stdout => \$got, on_error_die => 0);
		return 1 if $got eq $want;
		select(undef, undef, undef, 0.1);
	}
	diag("waited for '$want', got '$got': $sql");
	return 0;
}

ok(wait_for(q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'sync launcher'}, '1', 10),
	'the launcher runs');

# a job every 2 s brings new rows without any call
my $job = ssql(q{SELECT sync_schedule(0, '2 seconds')});
ok(wait_for(q{SELECT string_agg(name, ',' ORDER BY id) FROM item}, 'first', 10),
	'the scheduled job pulled the first row');
$pub->safe_psql('postgres', q{INSERT INTO item (name) VALUES ('second'); SELECT sync_dump();});
ok(wait_for(q{SELECT string_agg(name, ',' ORDER BY id) FROM item}, 'first,second', 10),
	'a new row arrives by itself');
like(ssql(qq{SELECT string_agg(DISTINCT status, ',' ORDER BY status) FROM sync_log WHERE job_id = $job}),
	qr/applied/, 'the runs are in sync_log with the job id');
is(ssql(qq{SELECT runs >= 2 AND failures = 0 AND last_status IN ('applied', 'unchanged') FROM sync_job WHERE id = $job}),
	't', 'sync_job counts the runs');

# changes take effect within a second: disable, then unschedule
ssql(qq{UPDATE sync_job SET enabled = false WHERE id = $job});
sleep(1);
my $count = ssql(qq{SELECT count(*) FROM sync_log WHERE job_id = $job});
sleep(3);
is(ssql(qq{SELECT count(*) FROM sync_log WHERE job_id = $job}), $count, 'a disabled job does not run');
is(ssql(qq{SELECT sync_unschedule($job)}), 't', 'sync_unschedule removes the job');
my ($rc, $out, $err) = $sub->psql('postgres', qq{SELECT sync_unschedule($job)});
is($err, "psql:<stdin>:1: ERROR:  job $job does not exist\nHINT:  Scheduled jobs are listed in sync_job.",
	'unscheduling an unknown job is an error, without a CONTEXT line');
($rc, $out, $err) = $sub->psql('postgres', q{SELECT sync_unschedule(-1)});
like($err, qr/ERROR:  job -1 does not exist/, 'a negative id is merely unknown');

# one job per purpose; names; hostnames
$job = ssql(q{SELECT sync_schedule('m0.example.org', '1 hour', enabled => false)});
is(ssql(qq{SELECT remote || ' ' || kind || ' ' || coalesce(name, '-') FROM sync_job WHERE id = $job}), '0 pull -',
	'sync_schedule takes a hostname too');
($rc, $out, $err) = $sub->psql('postgres', q{SELECT sync_schedule(0, '5 minutes')});
is($err, "psql:<stdin>:1: ERROR:  machine 0 is already pulled by job $job\n"
	. "HINT:  Remove that job with sync_unschedule($job), or give this job a name of its own.",
	'scheduling the same machine again without a name is refused, naming the job');
my $named = ssql(q{SELECT sync_schedule(0, '1 day', enabled => false, name => 'nightly')});
isnt($named, $job, 'with a name, a second job of the machine is made');
is(ssql(q{SELECT sync_schedule(0, '12 hours', enabled => false, name => 'nightly')}), $named,
	'scheduling with an existing name changes that job');
is(ssql(qq{SELECT every FROM sync_job WHERE id = $named}), '12:00:00', 'to the new schedule');
ssql(qq{SELECT sync_unschedule($job)});
($rc, $out, $err) = $sub->psql('postgres', q{SELECT sync_schedule(0, '5 minutes')});
like($err, qr/ERROR:  machine 0 is already pulled by job $named \("nightly"\)\nHINT:  Change that job with name => 'nightly', remove it with sync_unschedule\($named\), or give this job a name of its own\.$/,
	'the hint names a named job by its name');
($rc, $out, $err) = $sub->psql('postgres', q{SELECT sync_schedule(42, '5 minutes')});
like($err, qr/ERROR:  machine 42 is this server\nDETAIL:  A server pulls only other machines' rows\.\nHINT:  Schedule its dumps with sync_schedule_dump\(\)\.$/,
	'scheduling a pull of this server says how to schedule its dumps');
is(ssql(q{SELECT sync_unschedule('nightly')}), 't', 'sync_unschedule takes a name');
($rc, $out, $err) = $sub->psql('postgres', q{SELECT sync_unschedule('nightly')});
is($err, "psql:<stdin>:1: ERROR:  no job is named \"nightly\"\nHINT:  Scheduled jobs are listed in sync_job.",
	'an unknown name is an error');

# scheduled dumps: published without cron, nothing new while nothing changes
make_path("$www/m42");
ssql(qq{ALTER SYSTEM SET sync.dump_directory = '$www/m42'});
ssql(q{SELECT pg_reload_conf()});
my $dj = ssql(q{SELECT sync_schedule_dump('1 second', name => 'publish')});
ok(wait_for(qq{SELECT count(*) >= 3 FROM sync_log WHERE job_id = $dj AND kind = 'dump' AND status = 'ok'}, 't', 15),
	'a scheduled dump runs, and is logged as a dump of the job');
ok(-e "$www/m42/sync-index.json", 'and publishes an index');
is(ssql(qq{SELECT kind || ' ' || level || ' ' || anonymize || ' ' || unchecked || ' ' || last_status FROM sync_job WHERE id = $dj}),
	'dump 3 true false unchanged', 'sync_job has the dump\'s arguments, and says the dump published nothing new');
my @archives = glob("$www/m42/sync-42-*.tar.zst");
is(scalar(@archives), 1, 'one archive, whatever the number of runs');
($rc, $out, $err) = $sub->psql('postgres', q{SELECT sync_schedule_dump('1 hour')});
is($err, "psql:<stdin>:1: ERROR:  this server is already dumped by job $dj (\"publish\")\n"
	. "HINT:  Change that job with name => 'publish', remove it with sync_unschedule($dj), or give this job a name of its own.",
	'a second dump job without a name is refused');
($rc, $out, $err) = $sub->psql('postgres', q{SELECT sync_schedule(0, '1 hour', name => 'publish')});
like($err, qr/ERROR:  job $dj \("publish"\) is a dump job/, 'a pull cannot take the name of a dump job');
($rc, $out, $err) = $sub->psql('postgres', q{SELECT sync_schedule_dump('1 hour', level => 7, name => 'other')});
like($err, qr/ERROR:  invalid access level 7/, 'a scheduled dump checks its level');

# the federation at a glance: this server's dumps, machine 0's pulls
is(ssql(q{SELECT machine_id || ' ' || this_server || ' ' || (published_at IS NOT NULL) || ' ' || last_status
			|| ' ' || failures || ' ' || rows || ' ' || (next_run IS NOT NULL)
		  FROM sync_federation WHERE machine_id = 42}),
	'42 true true ok 0 0 true', 'sync_federation: this server, its last publication, its dump job');
is(ssql(q{SELECT machine_id || ' ' || this_server || ' ' || (published_at < last_success) || ' '
			|| (last_status IN ('applied', 'unchanged')) || ' ' || failures || ' ' || rows || ' ' || (lag > interval '0') || ' ' || (next_run IS NULL)
		  FROM sync_federation WHERE machine_id = 0}),
	'0 false true true 0 2 true true',
	'sync_federation: machine 0, what is applied of it, how late it is, and no job');

# a dump that fails is logged whole and backs off, as a failed pull does
ssql(qq{ALTER SYSTEM SET sync.dump_directory = '$www/m42/missing'});
ssql(q{SELECT pg_reload_conf()});
is(ssql(q{SELECT sync_schedule_dump('1 second', name => 'publish')}), $dj,
	'the named dump job is rescheduled');
ok(wait_for(qq{SELECT count(*) >= 2 FROM sync_log WHERE job_id = $dj AND kind = 'dump' AND status = 'failed'}, 't', 15),
	'a scheduled dump into a missing directory fails, and is logged as a failed dump of the job');
is(ssql(qq{SELECT sqlstate || '|' || hint FROM sync_log WHERE job_id = $dj AND status = 'failed' ORDER BY id DESC LIMIT 1}),
	'58P01|Create the directory, or set sync.dump_directory to one that exists.',
	'with its SQLSTATE and hint');
ok(wait_for(qq{SELECT failures >= 2 AND last_status = 'failed' AND next_run >= last_run + interval '2 seconds' FROM sync_job WHERE id = $dj}, 't', 10),
	'and the job backs off');
ssql(qq{ALTER SYSTEM SET sync.dump_directory = '$www/m42'});
ssql(q{SELECT pg_reload_conf()});
ssql(q{SELECT sync_unschedule('publish')});

# a slow remote: runs overlap the schedule (skipped) and pass the timeout
$pub->safe_psql('postgres', q{INSERT INTO item (name, filler) SELECT 'bulk', md5(i::text) || md5((i * 7)::text)
	FROM generate_series(1, 2000) i; SELECT sync_dump();});
ssql("SELECT sync_register_machine(0, NULL, '" . $nginx->url('slow/') . "')");
my $slow = ssql(q{SELECT sync_schedule(0, '1 second', timeout => '3 seconds')});
ok(wait_for(qq{SELECT count(*) > 0 FROM sync_log WHERE job_id = $slow AND status = 'skipped'}, 't', 15),
	'a run due while the previous one goes on is skipped and logged');
ok(wait_for(qq{SELECT count(*) > 0 FROM sync_log WHERE job_id = $slow AND status = 'timeout'}, 't', 20),
	'a run past its timeout is cancelled and logged as timed out');
is(ssql(q{SELECT count(*) FROM item WHERE name = 'bulk'}), '0', 'a timed-out run applied nothing');
is(ssql(qq{SELECT message FROM sync_log WHERE job_id = $slow AND status = 'timeout' LIMIT 1}),
	'canceling statement due to statement timeout', 'the timeout is the reason given');
ssql(qq{SELECT sync_unschedule($slow)});

# a failing remote backs off, then recovers
ssql("SELECT sync_register_machine(0, NULL, '" . $nginx->url('nothing-here/') . "')");
my $fail = ssql(q{SELECT sync_schedule(0, '1 second')});
ok(wait_for(qq{SELECT failures >= 3 FROM sync_job WHERE id = $fail}, 't', 30), 'failures are counted');
is(ssql(qq{SELECT sqlstate || '|' || hint FROM sync_log WHERE job_id = $fail ORDER BY id DESC LIMIT 1}),
	"58P01|Check the machine's sync_url, and that sync_dump() has run there.",
	'a scheduled failure keeps its SQLSTATE and hint in sync_log');
like(slurp_file($sub->logfile),
	qr/LOG:  machine 0 has published no index at http:\S+nothing-here\/sync-index\.json\n.*DETAIL:  The web server answered 404 Not Found\.\n.*HINT:  Check the machine's sync_url, and that sync_dump\(\) has run there\.\n.*CONTEXT:  sync job $fail \(pull of machine 0\)/,
	'and goes to the server log at LOG with its detail, hint and job');
my $gap = ssql(qq{SELECT EXTRACT(EPOCH FROM next_run - last_run)::int FROM sync_job WHERE id = $fail});
ok($gap >= 4 && $gap <= 8, "the next try backs off ($gap intervals of 1 s)");
my @times = split /\n/, ssql(qq{SELECT EXTRACT(EPOCH FROM started_at) FROM sync_log WHERE job_id = $fail ORDER BY id});
ok($times[-1] - $times[-2] > $times[1] - $times[0] + 0.5, 'the tries spread out');
ssql("SELECT sync_register_machine(0, NULL, '" . $nginx->url('m0/') . "')");
ok(wait_for(qq{SELECT failures = 0 AND last_status IN ('applied', 'unchanged') FROM sync_job WHERE id = $fail}, 't', 20),
	'one success resets the back-off');
is(ssql(q{SELECT count(*) FROM item WHERE name = 'bulk'}), '2000', 'and the rows arrive');
ssql(qq{SELECT sync_unschedule($fail)});

# a restart: the run under way is recorded as failed with 'server restarted'
ssql("SELECT sync_register_machine(0, NULL, '" . $nginx->url('slow/') . "')");
$pub->safe_psql('postgres', q{UPDATE item SET filler = filler || 'x'; SELECT sync_dump();});
my $long = ssql(q{SELECT sync_schedule(0, '1 hour', timeout => '10 minutes')});
ok(wait_for(qq{SELECT running_pid IS NOT NULL FROM sync_job WHERE id = $long}, 't', 10), 'a long run is under way');
$sub->restart;
ok(wait_for(qq{SELECT count(*) FROM sync_log WHERE job_id = $long AND status = 'failed' AND message = 'server restarted'}, '1', 15),
	'after a restart the interrupted run is recorded as failed');
is(ssql(qq{SELECT running_pid IS NULL FROM sync_job WHERE id = $long}), 't', 'and no longer shown as running');

# kill -9 of a job worker: the launcher comes back and records the run
ssql(qq{UPDATE sync_job SET next_run = now() WHERE id = $long});
ok(wait_for(qq{SELECT running_pid IS NOT NULL FROM sync_job WHERE id = $long}, 't', 10), 'the long job runs again');
my $pid = ssql(qq{SELECT running_pid FROM sync_job WHERE id = $long});
kill 'KILL', $pid;
ok(wait_for(q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'sync launcher'}, '1', 30),
	'the launcher runs again after a job worker was killed');
ok(wait_for(qq{SELECT count(*) FROM sync_log WHERE job_id = $long AND message = 'server restarted'}, '2', 15),
	'and the killed run is recorded as failed');
ssql(qq{SELECT sync_unschedule($long)});

# the launcher does not block DROP DATABASE of another database
ssql(q{CREATE DATABASE other});
($rc, $out, $err) = $sub->psql('postgres', q{DROP DATABASE other});
is($rc, 0, 'another database is dropped while the launcher runs');

# jobs are scheduled where the launcher reads them: sync.database
ssql(q{CREATE DATABASE elsewhere});
$sub->safe_psql('elsewhere', q{CREATE EXTENSION sync; SELECT sync_register_machine(0, 'm0.example.org')});
($rc, $out, $err) = $sub->psql('elsewhere', q{SELECT sync_schedule(0, '1 hour')});
is($err, qq{psql:<stdin>:1: ERROR:  scheduled jobs run only in database "postgres"\n}
	. qq{DETAIL:  This is database "elsewhere"; the launcher reads the jobs of sync.database alone.\n}
	. qq{HINT:  Schedule the job in database "postgres", or set sync.database and restart the server.},
	'a job scheduled in another database than sync.database is refused, not left never to run');
ssql(q{DROP DATABASE elsewhere});

# SIGHUP reloads settings; sync_log is pruned to sync.log_retention
my $launcher = ssql(q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'sync launcher'});
ssql(q{INSERT INTO sync_log (kind, started_at, status) VALUES ('pull', now() - interval '3 days', 'failed')});
ssql(q{ALTER SYSTEM SET sync.log_retention = '2d'});
ssql(q{SELECT pg_reload_conf()});
ok(wait_for(q{SELECT count(*) FROM sync_log WHERE started_at < now() - interval '2 days'}, '0', 20),
	'rows older than sync.log_retention are pruned');
is(ssql(q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'sync launcher'}), $launcher,
	'the launcher took the reload without restarting');

# at most sync.max_workers runs at once (reloaded); the others wait their turn
ssql(q{ALTER SYSTEM SET sync.max_workers = 1});
ssql(q{SELECT pg_reload_conf()});
ok(wait_for(q{SELECT setting FROM pg_settings WHERE name = 'sync.max_workers'}, '1', 5), 'sync.max_workers reloaded');
ssql("SELECT sync_register_machine(0, NULL, '" . $nginx->url('slow/') . "')");
my @pair = map { ssql(qq{SELECT sync_schedule(0, '1 hour', timeout => '2 seconds', name => 'pair $_')}) } 1 .. 2;
my $most = 0;
for (1 .. 50)
{
	my $now = ssql(q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'sync job'});
	$most = $now if $now > $most;
	select(undef, undef, undef, 0.1);
}
is($most, 1, 'with sync.max_workers = 1 one job runs at a time');
ok(wait_for(qq{SELECT count(*) FROM sync_log WHERE job_id IN ($pair[0], $pair[1]) AND status = 'timeout'}, '2', 15),
	'and the second job ran after the first');
ssql(qq{SELECT sync_unschedule($_)}) for @pair;
ssql(q{ALTER SYSTEM RESET sync.max_workers});
ssql(q{SELECT pg_reload_conf()});

# SIGTERM: a job worker stops at once, and the launcher records its run;
# a terminated launcher stops its workers and comes back
my $term = ssql(q{SELECT sync_schedule(0, '1 hour', timeout => '10 minutes')});
ok(wait_for(qq{SELECT running_pid IS NOT NULL FROM sync_job WHERE id = $term}, 't', 10), 'a slow run is under way');
$pid = ssql(qq{SELECT running_pid FROM sync_job WHERE id = $term});
ssql(qq{SELECT pg_terminate_backend($pid)});
ok(wait_for(qq{SELECT count(*) FROM pg_stat_activity WHERE pid = $pid}, '0', 3),
	'SIGTERM stops a job worker within 3 s');
ok(wait_for(qq{SELECT status || ': ' || message FROM sync_log WHERE job_id = $term},
	'failed: the job worker exited without recording the run', 5),
	'the launcher records the run its worker left');
is(ssql(qq{SELECT running_pid IS NULL AND failures = 1 FROM sync_job WHERE id = $term}), 't',
	'and the job is no longer shown as running');
ssql(qq{UPDATE sync_job SET next_run = now() WHERE id = $term});
ok(wait_for(qq{SELECT running_pid IS NOT NULL FROM sync_job WHERE id = $term}, 't', 10), 'the slow job runs again');
$pid = ssql(qq{SELECT running_pid FROM sync_job WHERE id = $term});
ssql(qq{SELECT pg_terminate_backend($launcher)});
ok(wait_for(qq{SELECT count(*) FROM pg_stat_activity WHERE pid IN ($pid, $launcher)}, '0', 3),
	'SIGTERM stops the launcher and its job worker within 3 s');
ok(wait_for(q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'sync launcher'}, '1', 15),
	'the launcher is started again');
ssql(qq{SELECT sync_unschedule($term)});

# a job whose owner cannot log in fails without a worker, and says why
ssql(q{CREATE ROLE nologin_admin NOLOGIN});
my $nl = ssql(q{SELECT sync_schedule(0, '1 hour')});
ssql(qq{UPDATE sync_job SET owner = 'nologin_admin' WHERE id = $nl});
ok(wait_for(qq{SELECT message FROM sync_log WHERE job_id = $nl},
	'role nologin_admin, the job\'s owner, does not exist or cannot log in', 5),
	'a job whose owner cannot log in is logged as failed');
ssql(qq{SELECT sync_unschedule($nl)});

# a job can only be given an owner whose rights one has
ssql(q{CREATE ROLE plain LOGIN; GRANT ALL ON sync_job TO plain; GRANT USAGE ON SEQUENCE sync_job_id_seq TO plain});
($rc, $out, $err) = $sub->psql('postgres',
	q{SET ROLE plain; INSERT INTO sync_job (remote, every, start_at, timeout, enabled, next_run, owner)
	  VALUES (0, '1 minute', now(), '1 hour', true, now(), 'postgres')});
like($err, qr/ERROR:  permission denied to run jobs as role postgres/, 'a job cannot be given a more privileged owner');

# a job runs with its owner's rights: the grants doc/privileges.md lists for
# pulling are enough (none on sync_job); without EXECUTE on sync_pull the
# run fails, and is logged with the reason
ssql("SELECT sync_register_machine(0, NULL, '" . $nginx->url('m0/') . "')");
ssql(q{CREATE ROLE puller LOGIN;
	GRANT EXECUTE ON FUNCTION sync_pull(bigint, boolean, boolean, regclass[], regclass[], text), sync_pull(text, boolean, boolean, regclass[], regclass[], text) TO puller;
	GRANT SELECT, INSERT, UPDATE, DELETE ON sync_pull_state, item TO puller;
	GRANT SELECT ON sync_instance, sync_table TO puller;
	GRANT SELECT, INSERT, UPDATE ON sync_machine TO puller});
my $pj = ssql(q{INSERT INTO sync_job (remote, every, start_at, timeout, enabled, next_run, owner)
	VALUES (0, '1 second', now(), '1 minute', true, now(), 'puller') RETURNING id});
ok(wait_for(qq{SELECT count(*) > 0 FROM sync_log WHERE job_id = $pj AND status IN ('applied', 'unchanged')}, 't', 15),
	'a job owned by a role with only the pulling grants pulls');
is(ssql(q{SELECT count(*) FROM item WHERE filler LIKE '%x'}), '2000', 'and its rows arrive');
ssql(q{REVOKE EXECUTE ON FUNCTION sync_pull(bigint, boolean, boolean, regclass[], regclass[], text) FROM puller});
ok(wait_for(qq{SELECT count(*) > 0 FROM sync_log WHERE job_id = $pj AND status = 'failed'
	AND message = 'permission denied for function sync_pull'}, 't', 15),
	'without EXECUTE on sync_pull the run fails, and the refusal is logged');
ok(wait_for(qq{SELECT last_status || ' ' || (failures > 0) FROM sync_job WHERE id = $pj}, 'failed true', 5),
	'sync_job shows the failure');
ssql(qq{SELECT sync_unschedule($pj)});

# without shared_preload_libraries, scheduling says what is missing
($rc, $out, $err) = $pub->psql('postgres', q{SELECT sync_schedule(42, '1 minute')});
like($err, qr/ERROR:  scheduled jobs need sync in shared_preload_libraries\nHINT:  Add 'sync' to shared_preload_libraries in postgresql\.conf, set sync\.database, and restart the server\./,
	'scheduling without preloading fails with a hint');
# what the hint says, done: then scheduling works
$pub->append_conf('postgresql.conf', "shared_preload_libraries = 'sync'\nsync.database = 'postgres'\n");
$pub->restart;
like($pub->safe_psql('postgres', q{SELECT sync_schedule(42, '1 minute', enabled => false)}), qr/^\d+$/,
	'with the library preloaded and sync.database set, as the hint says, the job is scheduled');

$nginx->stop;
$sub->stop;
$pub->stop;
done_testing();
