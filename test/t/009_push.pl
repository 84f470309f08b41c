# Push: a machine nobody can reach (5) uploads its files to a hub's inbox
# (nginx with WebDAV PUT and basic auth), and another machine (7) pulls it
# from the hub as from any publisher.  A second push sends only what is
# new; every kind of failure leaves the inbox's index as it was; a
# scheduled dump pushes by itself.
use strict;
use warnings;
use File::Path qw(make_path);
use IO::Socket::INET;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use SyncFederation;
use SyncNginx;

my $tmp = $PostgreSQL::Test::Utils::tmp_check;
my $www = "$tmp/www";
my $hub = "$tmp/hub";
make_path("$hub/m5", "$tmp/laptop5");

start_servers($www, 0, 5, 7);

# the hub's inbox for machine 5: PUT with a password, a size cap; the same
# directory served read-only at machine 5's sync_url
my $hash = `openssl passwd -apr1 secret`;
chomp $hash;
open(my $fh, '>', "$tmp/htpasswd") or die;
print $fh "pusher:$hash\n";
close($fh);
my $inbox = qq{
		location /inbox/m5/ {
			alias $hub/m5/;
			dav_methods PUT;
			create_full_put_path on;
			client_max_body_size 10m;
			limit_except GET { auth_basic "inbox of machine 5"; auth_basic_user_file $tmp/htpasswd; }
		}
		location /hub/m5/ { alias $hub/m5/; }
		location /full/m5/ { return 507; }
		location /small/m5/ {
			alias $hub/m5/;
			dav_methods PUT;
			client_max_body_size 1k;
		}
};
my ($ca, $cert, $key) = SyncNginx::make_certificates("$tmp/certs");
my $nginx = SyncNginx->new(prefix => "$tmp/nginx", root => $www, extra => $inbox,
	cert => $cert, key => $key);

my $schema = q{
	CREATE EXTENSION sync;
	CREATE TABLE site (id bigserial PRIMARY KEY, name text NOT NULL);
	CREATE TABLE trait (id bigserial PRIMARY KEY, site_id bigint REFERENCES site, value numeric);
};
join_federation($nginx, $schema, q{SELECT sync_add_table('site'); SELECT sync_add_table('trait');});
# machine 5 has no web server: it is read at the hub; its own files are
# written where no web server serves them
for my $id (0, 5, 7)
{
	sql($id, "SELECT sync_register_machine(5, NULL, '" . $nginx->url('hub/m5/') . "')");
}
# (deltas, whatever their size against the full archive: the counts below
# are then the same on every machine)
sql(5, "LOAD 'sync'; ALTER SYSTEM SET sync.dump_directory = '$tmp/laptop5'; ALTER SYSTEM SET sync.dump_delta_ratio = 100; SELECT pg_reload_conf();");
$node{5}->poll_query_until('postgres', "SELECT current_setting('sync.dump_directory', true) = '$tmp/laptop5'")
  or die 'the reload did not take';

sql(5, q{INSERT INTO site (name) VALUES ('field'); INSERT INTO trait (site_id, value) VALUES (5000000001, 1.5), (5000000001, 2.5);
	SELECT sync_dump();});

# before a target is set, a push says how to set one
my ($rc, $out, $err) = $node{5}->psql('postgres', 'SELECT * FROM sync_push()');
like($err, qr/ERROR:  no push target is set\nHINT:  Say where to upload with sync_set_push\(/, 'no target: the hint says how to set one');
($rc, $out, $err) = $node{5}->psql('postgres',
	q{SELECT sync_set_push('http://hub.example.org/inbox/m5/', username => 'pusher', password => 'secret')});
like($err, qr/ERROR:  credentials for the push target are sent only over https/,
	'credentials go over plain http only to a loopback address');
($rc, $out, $err) = $node{5}->psql('postgres', q{SELECT sync_set_push('https://pusher:secret@hub.example.org/inbox/m5/')});
like($err, qr/ERROR:  push URL must not hold credentials/, 'a push URL holds no credentials (they would be logged)');
($rc, $out, $err) = $node{5}->psql('postgres', q{SELECT sync_set_push('https://hub.example.org/inbox/m5/?token=x')});
like($err, qr/ERROR:  push URL must not hold a query or a fragment/, 'nor a query');
($rc, $out, $err) = $node{5}->psql('postgres',
	q{SELECT sync_set_push('http://127.0.0.1:9/inbox/m5/', username => 'pusher', password => 'secret', proxy => 'http://proxy.example.org:3128')});
like($err, qr/ERROR:  credentials for the push target are sent only over https/,
	'credentials go in clear to a loopback address only without a proxy');

sql(5, "SELECT sync_set_push('" . $nginx->url('inbox/m5/') . "', username => 'pusher', password => 'secret')");
is(sql(5, q{SELECT count(*) FROM sync_push_target WHERE password = 'secret'}), '1', 'the target is set');
is($node{5}->safe_psql('postgres', q{SELECT has_table_privilege('public', 'sync_push_target', 'SELECT')}), 'f',
	'PUBLIC cannot read the push credentials');

like(sql(5, q{SELECT url || '|' || files || '|' || (bytes > 0) FROM sync_push()}),
	qr/^http:\/\/127\.0\.0\.1:\d+\/inbox\/m5\/\|2\|true$/, 'the first push uploads the archive and the index');
ok(-f "$hub/m5/sync-index.json", 'the index is in the inbox');
is(slurp_file("$hub/m5/sync-index.json"), slurp_file("$tmp/laptop5/sync-index.json"), 'as the dump wrote it');

like(pull(7, 5), qr/^applied\|3\|0\|0$/, 'machine 7 pulls machine 5 through the hub');
is(sql(7, q{SELECT string_agg(value::text, ',' ORDER BY id) FROM trait WHERE id > 5000000000}), '1.5,2.5',
	'the rows of machine 5 arrive');

is(sql(5, q{SELECT files FROM sync_push()}), '1', 'a push with nothing new sends the index only');
sql(5, q{INSERT INTO trait (site_id, value) VALUES (5000000001, 3.5); SELECT sync_dump();});
is(sql(5, q{SELECT files FROM sync_push()}), '2', 'after a change, the delta and the index: the full archive is there');
like(pull(7, 5), qr/^applied\|1\|0\|0$/, 'and machine 7 takes it');
is(sql(7, q{SELECT details->>'path' FROM sync_log WHERE kind = 'pull' ORDER BY id DESC LIMIT 1}), 'delta',
	'on the delta path');
is(sql(5, q{SELECT kind || ' ' || status || ' ' || (details->>'files') FROM sync_log WHERE kind = 'push' ORDER BY id DESC LIMIT 1}),
	'push ok 2', 'each push is in sync_log');

# every failure leaves the inbox's index as it was; the next push completes
sub push_fails
{
	my ($re, $name) = @_;
	my $before = slurp_file("$hub/m5/sync-index.json");
	my ($rc, $out, $err) = $node{5}->psql('postgres', 'SELECT * FROM sync_push()');
	isnt($rc, 0, "$name: the push fails");
	like($err, $re, "$name: error says why");
	is(slurp_file("$hub/m5/sync-index.json"), $before, "$name: the inbox's index is unchanged");
	is(sql(5, q{SELECT status FROM sync_log WHERE kind = 'push' ORDER BY id DESC LIMIT 1}), 'failed',
		"$name: failure recorded in sync_log");
}
sql(5, q{INSERT INTO trait (site_id, value) VALUES (5000000001, 4.5); SELECT sync_dump();});
sql(5, "SELECT sync_set_push('" . $nginx->url('inbox/m5/') . "', username => 'pusher', password => 'wrong')");
push_fails(qr/ERROR:  the push target refused the credentials for delta\nDETAIL:  .* answered HTTP status 401\./, 'wrong password');
sql(5, "SELECT sync_set_push('" . $nginx->url('hub/m5/') . "', username => '', password => '')");
push_fails(qr/ERROR:  the push target does not accept uploads at .*\nDETAIL:  It answered HTTP status 405\.\nHINT:  The URL given to sync_set_push\(\) must be an inbox/,
	'a target that is not an inbox');
sql(5, "SELECT sync_set_push('" . $nginx->url('full/m5/') . "')");
push_fails(qr/ERROR:  the push target could not store archive\nDETAIL:  .* answered HTTP status 507\./, 'a hub whose disk is full');
sql(5, "SELECT sync_set_push('" . $nginx->url('small/m5/') . "')");
push_fails(qr/ERROR:  the push target refused delta as too large/, 'a file over the hub\'s size cap');
my $closed = PostgreSQL::Test::Cluster::get_free_port();
sql(5, "SELECT sync_set_push('http://127.0.0.1:$closed/inbox/m5/')");
push_fails(qr/ERROR:  could not connect to the push target\nDETAIL:  .*\nHINT:  Check the URL given to sync_set_push\(\)/, 'a hub that is down');


# a hub that takes the connection and never answers: the push times out
my $silent = IO::Socket::INET->new(Listen => 5, LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp')
  or die "listen: $!";
sql(5, "SELECT sync_set_push('http://127.0.0.1:" . $silent->sockport . "/inbox/m5/')");
{
	my $before = slurp_file("$hub/m5/sync-index.json");
	my ($rc, $out, $err) = $node{5}->psql('postgres', q{SET sync.timeout = '1s'; SELECT * FROM sync_push()});
	like($err, qr/ERROR:  uploading archive to the push target timed out\n/, 'a hub that does not answer: the push times out');
	is(slurp_file("$hub/m5/sync-index.json"), $before, 'a hub that does not answer: the inbox\'s index is unchanged');
	# a cancel (here statement_timeout) stops the transfer promptly
	my $t0 = time;
	($rc, $out, $err) = $node{5}->psql('postgres', q{SET statement_timeout = '1s'; SELECT * FROM sync_push()});
	like($err, qr/ERROR:  canceling statement due to statement timeout/, 'a cancel stops a push');
	ok(time - $t0 < 15, 'promptly');
}
close($silent);

# a hub that cuts the upload off half-way
my $cutter = IO::Socket::INET->new(Listen => 5, LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp')
  or die "listen: $!";
my $child = fork();
die "fork: $!" unless defined $child;
if ($child == 0)
{
	# take each request's headers and a little of its body, then hang up
	for (1 .. 5)
	{
		my $c = $cutter->accept or last;
		my $got = '';
		while ($got !~ /\r\n\r\n/ && length($got) < 65536)
		{
			my $n = sysread($c, my $buf, 4096);
			last unless $n;
			$got .= $buf;
		}
		if ($got =~ /^HEAD /)
		{
			print $c "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
			$got = '';
			while ($got !~ /\r\n\r\n/ && length($got) < 65536)
			{
				my $n = sysread($c, my $buf, 4096);
				last unless $n;
				$got .= $buf;
			}
		}
		if ($got =~ /Expect: 100-continue/i)
		{
			print $c "HTTP/1.1 100 Continue\r\n\r\n";
		}
		sysread($c, my $part, 10);
		close($c);
	}
	exit 0;
}
sql(5, "SELECT sync_set_push('http://127.0.0.1:" . $cutter->sockport . "/inbox/m5/')");
push_fails(qr/ERROR:  could not upload archive to the push target\nDETAIL:  http:\S+: /, 'an upload cut off half-way');
kill 'TERM', $child;
waitpid($child, 0);
close($cutter);

# over https: the hub's certificate is verified, against the CA file given
sql(5, "SELECT sync_set_push('" . $nginx->tls_url('inbox/m5/') . "', username => 'pusher', password => 'secret')");
push_fails(qr/ERROR:  TLS certificate of the push target is not trusted\nDETAIL:  .*\nHINT:  If the push target uses a certificate of your own certificate authority, give its CA file with sync_set_push\(url, ca_file => '\.\.\.'\)\./,
	'an untrusted hub certificate');
sql(5, "SELECT sync_set_push('" . $nginx->tls_url('inbox/m5/') . "', ca_file => '$ca')");
is(sql(5, q{SELECT files FROM sync_push()}), '2', 'with its CA trusted, the push completes over https: the delta, then the index');
like(pull(7, 5), qr/^applied\|1\|0\|0$/, 'and machine 7 takes it');

# a scheduled dump pushes after each dump
$node{5}->append_conf('postgresql.conf', "shared_preload_libraries = 'sync'\nsync.database = 'postgres'\n");
$node{5}->restart;
sql(5, q{INSERT INTO trait (site_id, value) VALUES (5000000001, 5.5)});
my $job = sql(5, q{SELECT sync_schedule_dump('1 second', push => true)});
my $ok = 0;
for (1 .. 150)
{
	$ok = sql(5, qq{SELECT count(*) FROM sync_log WHERE job_id = $job AND kind = 'push' AND status = 'ok'});
	last if $ok > 0;
	select(undef, undef, undef, 0.1);
}
ok($ok > 0, 'a scheduled dump with push => true pushes');
like(pull(7, 5), qr/^applied\|1\|0\|0$/, 'and machine 7 takes the new row from the hub');

# a failed push fails the run, which backs off; a later run pushes again
sub wait_until
{
	my ($query, $secs) = @_;
	for (1 .. $secs * 10)
	{
		return 1 if sql(5, $query) eq 't';
		select(undef, undef, undef, 0.1);
	}
	return 0;
}
sql(5, "SELECT sync_set_push('" . $nginx->url('full/m5/') . "')");
sql(5, q{INSERT INTO trait (site_id, value) VALUES (5000000001, 6.5)});
ok(wait_until(qq{SELECT failures >= 1 AND last_status = 'failed' FROM sync_job WHERE id = $job}, 15),
	'a scheduled push that fails fails the run');
is(sql(5, qq{SELECT status || ' ' || sqlstate FROM sync_log WHERE job_id = $job AND kind = 'push' ORDER BY id DESC LIMIT 1}),
	'failed 08006', 'and is logged with its job');
ok(sql(5, qq{SELECT next_run >= last_run + interval '2 seconds' FROM sync_job WHERE id = $job}) eq 't',
	'the job backs off');
sql(5, "SELECT sync_set_push('" . $nginx->url('inbox/m5/') . "', username => 'pusher', password => 'secret')");
ok(wait_until(qq{SELECT failures = 0 FROM sync_job WHERE id = $job}, 30), 'a later run pushes again');
like(pull(7, 5), qr/^applied\|1\|0\|0$/, 'and the row the failed push held back arrives');
sql(5, qq{SELECT sync_unschedule($job)});

$nginx->stop;
$node{$_}->stop for (0, 5, 7);
done_testing();
