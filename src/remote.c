/*-------------------------------------------------------------------------
 *
 * remote.c
 *		How to reach other machines (sync_remote): a CA file to trust,
 *		HTTP credentials, a proxy.
 *
 * sync_remote holds secrets: no role but its owner can read or write it,
 * and the extension's functions read and write it as that owner.  Nothing
 * of it reaches sync_log, a dump or an error message.  Credentials are
 * bound to the machine's sync_url at the time they were set, and are sent
 * only there, and only over https.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <unistd.h>

#include <curl/curl.h>

#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"

#include "remote.h"

PG_FUNCTION_INFO_V1(sync_set_remote);
PG_FUNCTION_INFO_V1(sync_set_push);
PG_FUNCTION_INFO_V1(sync_proxy_display);

/*
 * Run one statement as the owner of sync_remote, which no one else need be
 * able to read or write; returns the rows processed.  The caller is
 * connected to SPI.
 */
static int
ExecuteAsOwner(const char *sql, int nargs, Oid *argtypes, Datum *values,
			   const char *nulls)
{
	Oid			relid = get_relname_relid("sync_remote", SyncSchemaOid());

	return SyncExecuteAs(SyncRelationOwner(relid), sql, nargs, argtypes, values, nulls);
}

/*
 * How to reach machine: its sync_url, or source (a mirror, or a copy of its
 * files carried here) when given, and the options set for it.  Credentials
 * go only to the URL they were set for: never to a source, and set for
 * another URL than the machine has now, or to be sent over anything but
 * https, they are an ERROR.  The caller is connected to SPI.
 */
void
SyncReadRemote(const SyncMachine *machine, const char *source, SyncRemote *remote)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(machine->id)};
	char	   *url;

	memset(remote, 0, sizeof(*remote));
	remote->machine_id = machine->id;
	remote->url = source ? pstrdup(source) : machine->url;
	if (remote->url == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("machine " INT64_FORMAT " has no sync_url", machine->id),
				 errhint("Set it with sync_register_machine(" INT64_FORMAT ", NULL, 'https://...').",
						 machine->id)));

	if (ExecuteAsOwner(psprintf("SELECT ca_file, username, password, proxy, url FROM %s WHERE machine_id = $1",
								SyncObject("sync_remote")),
					   1, argtypes, values, NULL) == 0)
		return;
	remote->ca_file = SyncGetText(0, 1);
	remote->proxy = SyncGetText(0, 4);
	if (source != NULL)
		return;
	remote->username = SyncGetText(0, 2);
	remote->password = SyncGetText(0, 3);
	url = SyncGetText(0, 5);

	if (remote->username && (url == NULL || strcmp(url, remote->url) != 0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("sync_url of machine " INT64_FORMAT " changed since its credentials were set",
						machine->id),
				 errdetail("Credentials are sent only to the URL they were set for."),
				 errhint("Check the new URL, then set the credentials again with sync_set_remote().")));
	if (remote->username && pg_strncasecmp(remote->url, "https://", 8) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("credentials for machine " INT64_FORMAT " are sent only over https",
						machine->id),
				 errhint("Serve the machine's dumps over https, or remove its credentials with sync_set_remote().")));
}

/*
 * Check the CA file argument: trusting another CA means reading a server
 * file, so only superusers and members of pg_read_server_files may set or
 * remove one, and it must be a file the server can read.
 */
static void
CheckCaFile(int64 id, text *ca_file)
{
	char	   *path;

	if (!superuser() &&
		!has_privs_of_role(GetUserId(), ROLE_PG_READ_SERVER_FILES))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to change the CA file of machine " INT64_FORMAT, id),
				 errdetail("Trusting another certificate authority reads a file on the server."),
				 errhint("Only superusers and members of pg_read_server_files may set or remove ca_file.")));
	if (VARSIZE_ANY_EXHDR(ca_file) == 0)
		return;
	path = text_to_cstring(ca_file);
	if (!is_absolute_path(path) || access(path, R_OK) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not read CA file \"%s\": %m", path),
				 errhint("Give the absolute path of a PEM file the server can read.")));
}

/*
 * sync_set_remote(machine_id, ca_file, username, password, proxy)
 *
 * Set how to reach a machine: a CA file to trust for its TLS certificate,
 * HTTP basic credentials, a proxy.  NULL keeps an option as it is, an empty
 * string removes it.  Credentials are bound to the machine's sync_url at
 * this moment.
 */
Datum
sync_set_remote(PG_FUNCTION_ARGS)
{
	int64		id;
	Oid			argtypes[6] = {INT8OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[6];
	char		nulls[6] = "      ";
	SyncMachine machine;
	int			save_nestlevel;
	int			i;

	SyncEnter(fcinfo);
	id = SyncMachineIdArg(fcinfo, 0);
	values[0] = Int64GetDatum(id);
	for (i = 1; i < 5; i++)
	{
		values[i] = PG_ARGISNULL(i) ? (Datum) 0 : PointerGetDatum(PG_GETARG_TEXT_PP(i));
		nulls[i] = PG_ARGISNULL(i) ? 'n' : ' ';
	}
	if (!PG_ARGISNULL(1))
		CheckCaFile(id, PG_GETARG_TEXT_PP(1));

	save_nestlevel = SyncPinSettings(false);
	SPI_connect();
	if (!SyncLookupMachine(id, &machine))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("machine " INT64_FORMAT " is not registered", id),
				 errhint("Register it with sync_register_machine() first.")));
	values[5] = machine.url ? CStringGetTextDatum(machine.url) : (Datum) 0;
	nulls[5] = machine.url ? ' ' : 'n';
	ExecuteAsOwner(psprintf("INSERT INTO %s AS r (machine_id, ca_file, username, password, proxy, url)"
							" VALUES ($1, NULLIF($2, ''), NULLIF($3, ''), NULLIF($4, ''), NULLIF($5, ''), $6)"
							" ON CONFLICT (machine_id) DO UPDATE SET"
							"   ca_file = CASE WHEN $2 IS NULL THEN r.ca_file ELSE EXCLUDED.ca_file END,"
							"   username = CASE WHEN $3 IS NULL THEN r.username ELSE EXCLUDED.username END,"
							"   password = CASE WHEN $4 IS NULL THEN r.password ELSE EXCLUDED.password END,"
							"   proxy = CASE WHEN $5 IS NULL THEN r.proxy ELSE EXCLUDED.proxy END,"
							"   url = EXCLUDED.url, updated_at = pg_catalog.now()",
							SyncObject("sync_remote")),
				   6, argtypes, values, nulls);
	if (ExecuteAsOwner(psprintf("SELECT 1 FROM %s WHERE machine_id = $1 AND password IS NOT NULL AND username IS NULL",
								SyncObject("sync_remote")),
					   1, argtypes, values, NULL) > 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a password needs a user name")));
	ExecuteAsOwner(psprintf("DELETE FROM %s WHERE machine_id = $1 AND ca_file IS NULL"
							" AND username IS NULL AND password IS NULL AND proxy IS NULL",
							SyncObject("sync_remote")),
				   1, argtypes, values, NULL);
	SPI_finish();
	AtEOXact_GUC(true, save_nestlevel);
	PG_RETURN_VOID();
}

/*
 * Does url hold user:password@ in its authority?  Such a URL would carry
 * its credentials into the log; options say them instead.
 */
static bool
UrlHasCredentials(const char *url)
{
	const char *authority = strstr(url, "://");
	const char *at;
	const char *slash;

	if (authority == NULL || (at = strchr(authority + 3, '@')) == NULL)
		return false;
	slash = strchr(authority + 3, '/');
	return slash == NULL || at < slash;
}

/*
 * Is url's host this machine itself (a loopback address), where
 * credentials may go over plain http?
 */
static bool
LoopbackUrl(const char *url)
{
	static const char *const hosts[] = {"127.0.0.1", "localhost", "[::1]"};
	const char *host = strstr(url, "://");
	int			i;

	if (host == NULL)
		return false;
	host += 3;
	for (i = 0; i < (int) lengthof(hosts); i++)
	{
		size_t		len = strlen(hosts[i]);

		if (pg_strncasecmp(host, hosts[i], len) == 0 &&
			(host[len] == ':' || host[len] == '/' || host[len] == '\0'))
			return true;
	}
	return false;
}

/*
 * sync_set_push(url, ca_file, username, password, proxy)
 *
 * Say where this machine uploads its files (sync_push): a URL of http(s),
 * and how to reach it, as sync_set_remote says for a machine.  NULL keeps
 * an option as it is, an empty string removes it; a new URL drops
 * credentials set for another.  Credentials go only over https, or to a
 * loopback address.
 */
Datum
sync_set_push(PG_FUNCTION_ARGS)
{
	Oid			argtypes[5] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[5];
	char		nulls[5] = "     ";
	char	   *url;
	int			save_nestlevel;
	int			i;

	SyncEnter(fcinfo);
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("url must not be null")));
	url = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (pg_strncasecmp(url, "http://", 7) != 0 && pg_strncasecmp(url, "https://", 8) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("push URL must start with http:// or https://"),
				 errhint("Give the URL of the hub's inbox for this machine, e.g. https://hub.example.org/inbox/42/.")));
	if (strpbrk(url, "?#") != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("push URL must not hold a query or a fragment"),
				 errhint("Give the URL of the inbox's directory: the names of the files are appended to it.")));
	if (UrlHasCredentials(url))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("push URL must not hold credentials"),
				 errhint("Give them as username => and password => of sync_set_push(), which keeps them out of the log.")));
	for (i = 0; i < 5; i++)
	{
		values[i] = PG_ARGISNULL(i) ? (Datum) 0 : PointerGetDatum(PG_GETARG_TEXT_PP(i));
		nulls[i] = PG_ARGISNULL(i) ? 'n' : ' ';
	}
	if (!PG_ARGISNULL(1))
		CheckCaFile(-1, PG_GETARG_TEXT_PP(1));

	save_nestlevel = SyncPinSettings(false);
	SPI_connect();
	ExecuteAsOwner(psprintf("INSERT INTO %s AS p (url, ca_file, username, password, proxy)"
							" VALUES ($1, NULLIF($2, ''), NULLIF($3, ''), NULLIF($4, ''), NULLIF($5, ''))"
							" ON CONFLICT (singleton) DO UPDATE SET url = EXCLUDED.url,"
							"   ca_file = CASE WHEN $2 IS NULL THEN p.ca_file ELSE EXCLUDED.ca_file END,"
							"   username = CASE WHEN $3 IS NOT NULL THEN EXCLUDED.username"
							"     WHEN p.url = EXCLUDED.url THEN p.username END,"
							"   password = CASE WHEN $4 IS NOT NULL THEN EXCLUDED.password"
							"     WHEN p.url = EXCLUDED.url THEN p.password END,"
							"   proxy = CASE WHEN $5 IS NULL THEN p.proxy ELSE EXCLUDED.proxy END,"
							"   updated_at = pg_catalog.now()",
							SyncObject("sync_push_target")),
				   5, argtypes, values, nulls);
	if (ExecuteAsOwner(psprintf("SELECT 1 FROM %s WHERE password IS NOT NULL AND username IS NULL",
								SyncObject("sync_push_target")),
					   0, NULL, NULL, NULL) > 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a password needs a user name")));
	{
		SyncRemote	target;

		(void) SyncReadPushTarget(&target);
	}
	SPI_finish();
	AtEOXact_GUC(true, save_nestlevel);
	PG_RETURN_VOID();
}

/*
 * Where this machine pushes its files, and how (machine_id -1 in target:
 * no machine); false if sync_set_push has not said.  Credentials to be
 * sent in clear to anything but this machine itself are an ERROR.  The
 * caller is connected to SPI.
 */
bool
SyncReadPushTarget(SyncRemote *target)
{
	memset(target, 0, sizeof(*target));
	target->machine_id = -1;
	if (ExecuteAsOwner(psprintf("SELECT url, ca_file, username, password, proxy FROM %s",
								SyncObject("sync_push_target")),
					   0, NULL, NULL, NULL) == 0)
		return false;
	target->url = SyncGetText(0, 1);
	target->ca_file = SyncGetText(0, 2);
	target->username = SyncGetText(0, 3);
	target->password = SyncGetText(0, 4);
	target->proxy = SyncGetText(0, 5);

	/* plain http only to this machine itself, and not through a proxy */
	if (target->username && pg_strncasecmp(target->url, "https://", 8) != 0 &&
		(!LoopbackUrl(target->url) || target->proxy != NULL))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("credentials for the push target are sent only over https"),
				 errhint("Give an https:// URL (plain http is allowed to a loopback address only, without a proxy).")));
	return true;
}

/*
 * sync_proxy_display(proxy) returns text: the proxy's scheme, host and port
 * as libcurl itself parses the setting (a scheme it guesses included), and
 * nothing else: no user name, password, path or query.  NULL for a setting
 * libcurl cannot parse, which shows nothing of it.
 */
Datum
sync_proxy_display(PG_FUNCTION_ARGS)
{
	char	   *proxy = text_to_cstring(PG_GETARG_TEXT_PP(0));
	CURLU	   *url = curl_url();
	char	   *scheme = NULL;
	char	   *host = NULL;
	char	   *port = NULL;
	text	   *result = NULL;

	if (url == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	if (curl_url_set(url, CURLUPART_URL, proxy, CURLU_GUESS_SCHEME | CURLU_NON_SUPPORT_SCHEME) == CURLUE_OK &&
		curl_url_get(url, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
		curl_url_get(url, CURLUPART_HOST, &host, 0) == CURLUE_OK)
	{
		bool		has_port = curl_url_get(url, CURLUPART_PORT, &port, 0) == CURLUE_OK;

		result = cstring_to_text(psprintf("%s://%s%s%s", scheme, host,
										  has_port ? ":" : "", has_port ? port : ""));
	}
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(url);
	if (result == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(result);
}

/*
 * The URL of a source given to sync_pull: an absolute directory path is
 * read as a file:// URL (the files of a machine carried on a disk).
 */
char *
SyncSourceUrl(const char *source)
{
	if (source[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("source must not be empty"),
				 errhint("Give the directory holding the machine's sync-index.json, or a URL serving it.")));
	if (is_absolute_path(source))
		return psprintf("file://%s", source);
	if (UrlHasCredentials(source))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("source must not hold credentials"),
				 errhint("A source is read without credentials; serve it where none are needed, or copy its files here.")));
	return pstrdup(source);
}
