# SyncNginx: an nginx on 127.0.0.1 for the TAP tests, run as the test's
# own (unprivileged) user, serving a directory tree; optionally over TLS
# with a certificate of a test CA made with openssl.
package SyncNginx;

use strict;
use warnings;
use File::Path qw(make_path);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;

my $nginx_bin = -x '/usr/sbin/nginx' ? '/usr/sbin/nginx' : 'nginx';

# Make a test CA and a server certificate for 127.0.0.1 in $dir; returns
# the paths (ca, cert, key).
sub make_certificates
{
	my ($dir) = @_;
	make_path($dir);
	my @ec = ('-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes');
	for my $cmd (
		[ 'openssl', 'req', '-x509', @ec, '-keyout', "$dir/ca.key", '-out', "$dir/ca.crt",
		  '-days', '2', '-subj', '/CN=sync test CA' ],
		[ 'openssl', 'req', @ec, '-keyout', "$dir/server.key", '-out', "$dir/server.csr",
		  '-subj', '/CN=127.0.0.1' ])
	{
		system_or_bail(@$cmd);
	}
	open(my $fh, '>', "$dir/ext.cnf") or die;
	print $fh "subjectAltName=IP:127.0.0.1,DNS:localhost\n";
	close($fh);
	system_or_bail('openssl', 'x509', '-req', '-in', "$dir/server.csr", '-CA', "$dir/ca.crt",
		'-CAkey', "$dir/ca.key", '-CAcreateserial', '-out', "$dir/server.crt",
		'-days', '2', '-extfile', "$dir/ext.cnf");
	return ("$dir/ca.crt", "$dir/server.crt", "$dir/server.key");
}

# Start nginx serving $params{root} on a free port (and, with cert and key,
# over TLS on a second one).  Locations: /err500/ answers 500; /slow/ serves
# $params{slow} at $params{rate} bytes per second; $params{extra} adds locations.
sub new
{
	my ($class, %params) = @_;
	my $self = bless {}, $class;
	my $prefix = $self->{prefix} = $params{prefix};
	make_path("$prefix/logs", "$prefix/tmp");
	$self->{port} = PostgreSQL::Test::Cluster::get_free_port();
	$self->{tls_port} = PostgreSQL::Test::Cluster::get_free_port() if $params{cert};

	my $slow = $params{slow}
	  ? "location /slow/ { alias $params{slow}/; limit_rate $params{rate}; }" : '';
	# more locations, as given (a WebDAV inbox, say)
	my $extra = $params{extra} // '';
	my $locations = qq{
		root $params{root};
		location /err500/ { return 500; }
		$slow
		$extra
	};
	my $tls = '';
	if ($params{cert})
	{
		$tls = qq{
	server {
		listen 127.0.0.1:$self->{tls_port} ssl;
		ssl_certificate $params{cert};
		ssl_certificate_key $params{key};
		$locations
	}};
	}
	open(my $fh, '>', "$prefix/nginx.conf") or die;
	print $fh qq{
daemon on;
master_process on;
worker_processes 1;
pid $prefix/nginx.pid;
error_log $prefix/logs/error.log warn;
events { worker_connections 64; }
http {
	access_log $prefix/logs/access.log;
	client_body_temp_path $prefix/tmp/body;
	proxy_temp_path $prefix/tmp/proxy;
	fastcgi_temp_path $prefix/tmp/fastcgi;
	uwsgi_temp_path $prefix/tmp/uwsgi;
	scgi_temp_path $prefix/tmp/scgi;
	types { application/json json; application/zstd zst; }
	default_type application/octet-stream;
	etag on;
	server {
		listen 127.0.0.1:$self->{port};
		$locations
	}$tls
}
};
	close($fh);
	system_or_bail($nginx_bin, '-p', $prefix, '-c', "$prefix/nginx.conf",
		'-e', "$prefix/logs/error.log");
	# wait (bounded) for the pid file
	for (1 .. 100)
	{
		last if -s "$prefix/nginx.pid";
		select(undef, undef, undef, 0.05);
	}
	die "nginx did not start" unless -s "$prefix/nginx.pid";
	return $self;
}

sub url { my ($self, $path) = @_; return "http://127.0.0.1:$self->{port}/$path"; }
sub tls_url { my ($self, $path) = @_; return "https://127.0.0.1:$self->{tls_port}/$path"; }

sub stop
{
	my ($self) = @_;
	return unless -s "$self->{prefix}/nginx.pid";
	system($nginx_bin, '-p', $self->{prefix}, '-c', "$self->{prefix}/nginx.conf",
		'-e', "$self->{prefix}/logs/error.log", '-s', 'stop');
	for (1 .. 100)
	{
		last unless -e "$self->{prefix}/nginx.pid";
		select(undef, undef, undef, 0.05);
	}
}

sub DESTROY { my ($self) = @_; $self->stop; }

1;
