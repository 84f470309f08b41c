/*-------------------------------------------------------------------------
 *
 * fetch.c
 *		Fetching what another machine published, with libcurl.
 *
 * Only http and https (and file, for roles allowed to read server files)
 * are spoken, redirects are bounded and may not leave http(s) (nor https
 * for http), TLS peers are verified (against a per-remote CA file where
 * one is configured), and connect and total timeouts come from settings.
 * A progress callback lets a cancel or statement_timeout stop a transfer
 * promptly.  Downloads are capped by sync.max_download_size.  The curl
 * handle is released on every path, errors included.
 *
 * Credentials (user name, password, proxy) never appear in an error
 * message, a log row or a dump.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <unistd.h>
#include <curl/curl.h>

#include "catalog/pg_authid.h"
#include "common/cryptohash.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"

#include "archive.h"
#include "fetch.h"
#include "format.h"
#include "progress.h"
#include "settings.h"

/* State of one transfer, shared with the callbacks. */
typedef struct Transfer
{
	const char *what;			/* for messages: "index", "archive" */
	int			fd;				/* destination file, or -1 */
	StringInfo	buf;			/* destination buffer, or NULL */
	pg_cryptohash_ctx *sha;		/* digest of what is received, or NULL */
	uint64		received;
	uint64		limit;
	bool		too_large;
	int			write_errno;	/* errno of a failed write, or 0 */
	bool		interrupted;
	bool		upload;			/* fd is read from, not written */
} Transfer;

/*
 * curl write callback: append to the file or buffer, within the cap.
 * Returning less than asked aborts the transfer.
 */
static size_t
WriteCallback(char *data, size_t size, size_t nmemb, void *arg)
{
	Transfer   *t = (Transfer *) arg;
	size_t		len = size * nmemb;

	if (t->received + len > t->limit)
	{
		t->too_large = true;
		return 0;
	}
	if (t->fd >= 0)
	{
		size_t		done = 0;

		while (done < len)
		{
			ssize_t		n = write(t->fd, data + done, len - done);

			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
			{
				t->write_errno = (n < 0) ? errno : ENOSPC;
				return 0;
			}
			done += n;
		}
	}
	else
	{
		/* room was made before the transfer: never allocate in a callback */
		memcpy(t->buf->data + t->buf->len, data, len);
		t->buf->len += len;
		t->buf->data[t->buf->len] = '\0';
	}
	if (t->sha && pg_cryptohash_update(t->sha, (uint8 *) data, len) < 0)
	{
		t->write_errno = EIO;
		return 0;
	}
	t->received += len;
	return len;
}

/*
 * curl progress callback: abort the transfer when the backend is asked to
 * cancel or terminate; the caller then raises the interrupt.
 */
static int
ProgressCallback(void *arg, curl_off_t dltotal, curl_off_t dlnow,
				 curl_off_t ultotal, curl_off_t ulnow)
{
	Transfer   *t = (Transfer *) arg;

	if (InterruptPending && (QueryCancelPending || ProcDiePending))
	{
		t->interrupted = true;
		return 1;
	}
	if (t->fd >= 0 && !t->upload)
		SyncProgressDownloaded((int64) t->received, false);
	return 0;
}

/*
 * The URL of a file published under a machine's sync_url.
 */
char *
SyncRemoteUrl(const SyncRemote *remote, const char *name)
{
	size_t		len = strlen(remote->url);

	return psprintf("%s%s%s", remote->url,
					(len > 0 && remote->url[len - 1] == '/') ? "" : "/", name);
}

/* Set a curl option; a failure is a bug or an old libcurl. */
#define SET_OPT(handle, opt, value) \
	do { \
		CURLcode rc_ = curl_easy_setopt((handle), (opt), (value)); \
		if (rc_ != CURLE_OK) \
			elog(ERROR, "could not set curl option %s: %s", #opt, \
				 curl_easy_strerror(rc_)); \
	} while (0)

/* A new curl handle; the caller releases it on every path. */
static CURL *
CreateHandle(void)
{
	CURL	   *handle = curl_easy_init();

	if (handle == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create a curl handle")));
	return handle;
}

/*
 * Set what every transfer with remote at url has: the protocols allowed,
 * bounded redirects, the timeouts, TLS verified, the CA file, credentials
 * and proxy, errors into errbuf, and the progress callback (with t) that
 * lets a cancel stop the transfer.
 */
static void
SetupHandle(CURL *handle, const SyncRemote *remote, const char *url, char *errbuf,
			Transfer *t, bool file_allowed)
{
	SET_OPT(handle, CURLOPT_URL, url);
	SET_OPT(handle, CURLOPT_PROTOCOLS_STR, file_allowed ? "http,https,file" : "http,https");
	/* a redirect never leaves https for http, nor http(s) for anything */
	SET_OPT(handle, CURLOPT_REDIR_PROTOCOLS_STR,
			pg_strncasecmp(url, "https:", 6) == 0 ? "https" : "http,https");
	SET_OPT(handle, CURLOPT_FOLLOWLOCATION, 1L);
	SET_OPT(handle, CURLOPT_MAXREDIRS, (long) sync_max_redirects);
	SET_OPT(handle, CURLOPT_CONNECTTIMEOUT_MS, (long) sync_connect_timeout);
	SET_OPT(handle, CURLOPT_TIMEOUT_MS, (long) sync_timeout);
	SET_OPT(handle, CURLOPT_NOSIGNAL, 1L);
	SET_OPT(handle, CURLOPT_SSL_VERIFYPEER, 1L);
	SET_OPT(handle, CURLOPT_SSL_VERIFYHOST, 2L);
	SET_OPT(handle, CURLOPT_ERRORBUFFER, errbuf);
	SET_OPT(handle, CURLOPT_NOPROGRESS, 0L);
	SET_OPT(handle, CURLOPT_XFERINFOFUNCTION, ProgressCallback);
	SET_OPT(handle, CURLOPT_XFERINFODATA, t);
	SET_OPT(handle, CURLOPT_USERAGENT, "sync/" SYNC_EXTENSION_VERSION);
	/* an archive is already compressed; the index is tiny */
	SET_OPT(handle, CURLOPT_ACCEPT_ENCODING, NULL);
	if (remote->ca_file)
		SET_OPT(handle, CURLOPT_CAINFO, remote->ca_file);
	if (remote->username)
	{
		SET_OPT(handle, CURLOPT_HTTPAUTH, (long) CURLAUTH_BASIC);
		SET_OPT(handle, CURLOPT_USERNAME, remote->username);
		SET_OPT(handle, CURLOPT_PASSWORD, remote->password ? remote->password : "");
	}
	if (remote->proxy)
		SET_OPT(handle, CURLOPT_PROXY, remote->proxy);
}

/*
 * Report a failed transfer of url from remote (a machine, or the push
 * target).
 */
static void
ReportCurlError(const SyncRemote *remote, const char *url, Transfer *t,
				CURLcode rc, const char *errbuf)
{
	/* libcurl may quote the proxy setting, credentials and all */
	const char *detail = (errbuf[0] && !(remote->proxy && strstr(errbuf, remote->proxy))) ?
		errbuf : curl_easy_strerror(rc);

	/* a machine, or (no machine id) the push target */
	bool		push = (remote->machine_id < 0);
	const char *who = push ? "the push target" :
		psprintf("machine " INT64_FORMAT, remote->machine_id);
	const char *where = push ? "the URL given to sync_set_push()" :
		"the machine's sync_url in sync_machine";
	const char *set_ca = push ? "sync_set_push(url, ca_file => '...')" :
		psprintf("sync_set_remote(%lld, ca_file => '...')", (long long) remote->machine_id);

	if (t->interrupted)
		CHECK_FOR_INTERRUPTS();
	if (t->too_large && t->fd < 0)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s of machine " INT64_FORMAT " is larger than " UINT64_FORMAT " bytes",
						t->what, remote->machine_id, t->limit),
				 errdetail("Fetching %s was stopped after " UINT64_FORMAT " bytes; an index is a few kilobytes.",
						   url, t->received),
				 errhint("Check the machine's sync_url: it must name the directory its dumps are served from.")));
	if (t->too_large)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s of machine " INT64_FORMAT " is larger than sync.max_download_size (%s)",
						t->what, remote->machine_id,
						GetConfigOptionByName("sync.max_download_size", NULL, false)),
				 errdetail("Fetching %s was stopped after " UINT64_FORMAT " bytes.", url, t->received),
				 errhint("Raise sync.max_download_size if the machine really publishes that much.")));
	if (t->write_errno)
	{
		errno = t->write_errno;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not store %s of machine " INT64_FORMAT ": %m",
						t->what, remote->machine_id),
				 errhint("Check the space in sync.work_directory.")));
	}
	switch (rc)
	{
		case CURLE_OPERATION_TIMEDOUT:
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("%s %s %s %s timed out", push ? "uploading" : "fetching", t->what,
							push ? "to" : "of", who),
					 errdetail("%s: %s", url, detail),
					 errhint("See sync.connect_timeout and sync.timeout.")));
			break;
		case CURLE_COULDNT_CONNECT:
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("could not connect to %s", who),
					 errdetail("%s: %s", url, detail),
					 errhint("Check %s, and that its web server runs and is reachable from this server.", where)));
			break;
		case CURLE_COULDNT_RESOLVE_HOST:
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("could not resolve the host name of %s", who),
					 errdetail("%s: %s", url, detail),
					 errhint("Check %s, and this server's name resolution.", where)));
			break;
		case CURLE_PEER_FAILED_VERIFICATION:
		case CURLE_SSL_CERTPROBLEM:
		case CURLE_SSL_ISSUER_ERROR:
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("TLS certificate of %s is not trusted", who),
					 errdetail("%s: %s", url, detail),
					 errhint("If %s uses a certificate of your own certificate authority, give its CA file with %s.",
							 push ? "the push target" : "the machine", set_ca)));
			break;
		case CURLE_SSL_CACERT_BADFILE:
			ereport(ERROR,
					(errcode(ERRCODE_CONFIG_FILE_ERROR),
					 errmsg("could not use the CA file set for %s", who),
					 errdetail("%s: %s", url, detail),
					 errhint("Give %s the path of a PEM file that the server's operating system user can read.",
							 set_ca)));
			break;
		case CURLE_SSL_CONNECT_ERROR:
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("TLS handshake with %s failed", who),
					 errdetail("%s: %s", url, detail),
					 errhint("If the web server there serves plain HTTP on that port, %s must start with http://.",
							 push ? "the push URL" : "the machine's sync_url")));
			break;
		case CURLE_UNSUPPORTED_PROTOCOL:
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("protocol of %s is not allowed", url),
					 errdetail("%s", detail),
					 errhint("Machines are reached over http or https; file:// URLs only by superusers and members of pg_read_server_files.")));
			break;
		default:
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("could not %s %s %s %s", push ? "upload" : "fetch", t->what,
							push ? "to" : "of", who),
					 errdetail("%s: %s", url, detail)));
	}
}

/*
 * Fetch name from remote into fd (or, with fd < 0, into buf), at most
 * limit bytes, computing its SHA-256 into sha when given.  Any failure is
 * an ERROR.
 */
static void
Fetch(const SyncRemote *remote, const char *name, const char *what,
	  int fd, StringInfo buf, pg_cryptohash_ctx *sha, uint64 limit,
	  SyncFetchResult *result)
{
	char	   *url = SyncRemoteUrl(remote, name);
	CURL	   *volatile handle = NULL;
	char		errbuf[CURL_ERROR_SIZE];
	Transfer	t;
	bool		file_allowed;

	memset(&t, 0, sizeof(t));
	t.what = what;
	t.fd = fd;
	t.buf = buf;
	t.sha = sha;
	t.limit = limit;
	memset(result, 0, sizeof(*result));
	errbuf[0] = '\0';

	file_allowed = superuser() ||
		has_privs_of_role(GetUserId(), ROLE_PG_READ_SERVER_FILES);

	PG_TRY();
	{
		CURLcode	rc;
		long		status = 0;

		handle = CreateHandle();
		SetupHandle(handle, remote, url, errbuf, &t, file_allowed);
		SET_OPT(handle, CURLOPT_WRITEFUNCTION, WriteCallback);
		SET_OPT(handle, CURLOPT_WRITEDATA, &t);

		rc = curl_easy_perform(handle);
		CHECK_FOR_INTERRUPTS();
		if (rc != CURLE_OK)
			ReportCurlError(remote, url, &t, rc, errbuf);

		curl_easy_getinfo(handle, CURLINFO_RESPONSE_CODE, &status);
		if (pg_strncasecmp(url, "file:", 5) == 0)
			status = 200;
		result->http_status = status;
		if (status == 404)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_FILE),
					 errmsg("machine " INT64_FORMAT " has published no %s at %s",
							remote->machine_id, what, url),
					 errdetail("The web server answered 404 Not Found."),
					 errhint("Check the machine's sync_url, and that sync_dump() has run there.")));
		else if (status != 200)
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("could not fetch %s of machine " INT64_FORMAT, what,
							remote->machine_id),
					 errdetail("%s answered HTTP status %ld.", url, status)));
		result->bytes = t.received;
		if (fd >= 0)
			SyncProgressDownloaded((int64) t.received, true);
	}
	PG_FINALLY();
	{
		if (handle)
			curl_easy_cleanup(handle);
	}
	PG_END_TRY();
}

/*
 * Fetch a machine's index (small, into memory): its text and length.
 */
char *
SyncFetchIndex(const SyncRemote *remote, SyncFetchResult *result, size_t *len)
{
	StringInfoData buf;

	initStringInfo(&buf);
	enlargeStringInfo(&buf, SYNC_MAX_INDEX + 1);
	Fetch(remote, SYNC_INDEX_NAME, "index", -1, &buf, NULL, SYNC_MAX_INDEX, result);
	*len = buf.len;
	return buf.data;
}

/*
 * Fetch an archive into the open file fd, computing its SHA-256 as hex.
 */
void
SyncFetchArchive(const SyncRemote *remote, const char *name, int fd,
				 char *sha256_hex, SyncFetchResult *result)
{
	pg_cryptohash_ctx *volatile sha = SyncSha256Begin();

	PG_TRY();
	{
		Fetch(remote, name, "archive", fd, NULL, sha,
			  (uint64) sync_max_download_kb * 1024, result);
		SyncSha256Finish(sha, sha256_hex);
		sha = NULL;
	}
	PG_FINALLY();
	{
		if (sha)
			pg_cryptohash_free(sha);
	}
	PG_END_TRY();
}

/*
 * curl read callback: the next bytes of the file being uploaded.
 */
static size_t
ReadCallback(char *buffer, size_t size, size_t nitems, void *arg)
{
	Transfer   *t = (Transfer *) arg;
	ssize_t		n;

	do
		n = read(t->fd, buffer, size * nitems);
	while (n < 0 && errno == EINTR);
	if (n < 0)
	{
		t->write_errno = errno;
		return CURL_READFUNC_ABORT;
	}
	t->received += n;
	return (size_t) n;
}

/*
 * Refuse what the push target answered with status to a request for url
 * (what: "archive", "index"): its credentials, its methods, its space.
 */
static void
ReportPushStatus(const char *url, const char *what, long status)
{
	if (status == 401 || status == 403)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("the push target refused the credentials for %s", what),
				 errdetail("%s answered HTTP status %ld.", url, status),
				 errhint("Check the user name and password given to sync_set_push(), and what the hub lets that user write.")));
	if (status == 405 || status == 501)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("the push target does not accept uploads at %s", url),
				 errdetail("It answered HTTP status %ld.", status),
				 errhint("The URL given to sync_set_push() must be an inbox that takes PUT (nginx: dav_methods PUT), not the directory it is served from.")));
	if (status == 413)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("the push target refused %s as too large", what),
				 errdetail("%s answered HTTP status 413.", url),
				 errhint("Raise the hub's limit for this inbox (nginx: client_max_body_size).")));
	if (status == 507 || status >= 500)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("the push target could not store %s", what),
				 errdetail("%s answered HTTP status %ld.", url, status),
				 errhint("Check the space and the log of the hub's web server; the next push sends it again.")));
	ereport(ERROR,
			(errcode(ERRCODE_CONNECTION_FAILURE),
			 errmsg("the push target answered HTTP status %ld for %s", status, what),
			 errdetail("URL: %s.", url)));
}

/*
 * One request to the push target for name: HEAD (fd < 0), or PUT of the
 * open file fd, size bytes.  Returns the HTTP status; a failed transfer is
 * an ERROR.  *length receives the Content-Length of a HEAD (-1: none).
 */
static long
PushRequest(const SyncRemote *target, const char *name, const char *what,
			int fd, uint64 size, int64 *length)
{
	char	   *url = SyncRemoteUrl(target, name);
	CURL	   *volatile handle = NULL;
	char		errbuf[CURL_ERROR_SIZE];
	Transfer	t;
	long		status = 0;

	memset(&t, 0, sizeof(t));
	t.what = what;
	t.fd = -1;
	errbuf[0] = '\0';
	PG_TRY();
	{
		CURLcode	rc;
		curl_off_t	len = -1;

		handle = CreateHandle();
		SetupHandle(handle, target, url, errbuf, &t, false);
		/* never follow a redirect with a body or credentials */
		SET_OPT(handle, CURLOPT_FOLLOWLOCATION, 0L);
		if (fd < 0)
			SET_OPT(handle, CURLOPT_NOBODY, 1L);
		else
		{
			t.fd = fd;
			t.upload = true;
			SET_OPT(handle, CURLOPT_UPLOAD, 1L);
			SET_OPT(handle, CURLOPT_READFUNCTION, ReadCallback);
			SET_OPT(handle, CURLOPT_READDATA, &t);
			SET_OPT(handle, CURLOPT_INFILESIZE_LARGE, (curl_off_t) size);
		}
		rc = curl_easy_perform(handle);
		CHECK_FOR_INTERRUPTS();
		if (t.write_errno)
		{
			errno = t.write_errno;
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not read %s to push: %m", what)));
		}
		if (rc != CURLE_OK)
			ReportCurlError(target, url, &t, rc, errbuf);
		curl_easy_getinfo(handle, CURLINFO_RESPONSE_CODE, &status);
		curl_easy_getinfo(handle, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &len);
		if (length)
			*length = (int64) len;
		if (fd >= 0 && status != 200 && status != 201 && status != 204)
			ReportPushStatus(url, what, status);
		if (fd < 0 && status != 200 && status != 404)
			ReportPushStatus(url, what, status);
	}
	PG_FINALLY();
	{
		if (handle)
			curl_easy_cleanup(handle);
	}
	PG_END_TRY();
	return status;
}

/*
 * The size of name at the push target, -1 if it has no such file.
 */
int64
SyncPushedSize(const SyncRemote *target, const char *name, const char *what)
{
	int64		length = -1;

	if (PushRequest(target, name, what, -1, 0, &length) == 404)
		return -1;
	return length;
}

/*
 * Upload the open file fd, size bytes, as name to the push target.
 */
void
SyncPushFile(const SyncRemote *target, const char *name, const char *what,
			 int fd, uint64 size)
{
	(void) PushRequest(target, name, what, fd, size, NULL);
}
