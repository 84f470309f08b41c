/*-------------------------------------------------------------------------
 *
 * settings.c
 *		Every sync.* setting: its variable, its default and its definition.
 *
 * The settings are defined when the library is loaded (module.c), and the
 * sync. prefix is reserved there, so that a misspelt setting is reported
 * instead of silently ignored.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "miscadmin.h"
#include "utils/guc.h"

#include "parse.h"
#include "settings.h"

char	   *sync_dump_directory = NULL;
int			sync_registry_authority = 0;
char	   *sync_work_directory = NULL;
int			sync_max_download_kb = 1024 * 1024;
int			sync_max_unpacked_kb = 16 * 1024 * 1024;
int			sync_connect_timeout = 10 * 1000;
int			sync_timeout = 30 * 60 * 1000;
int			sync_max_redirects = 5;
char	   *sync_database = NULL;
int			sync_max_workers = 2;
int			sync_log_retention = 30 * 24 * 60;	/* minutes */
int			sync_dump_deltas = 100;
double		sync_dump_delta_ratio = 1.0;

/*
 * Define every setting.  Only a library loaded by shared_preload_libraries
 * may define a setting fixed at server start (sync.database); loaded later,
 * that setting is accepted but has no use.
 */
void
SyncDefineSettings(void)
{
	DefineCustomStringVariable("sync.dump_directory",
							   "Directory that sync_dump() writes archives into.",
							   "Serve it at this machine's sync_url. A relative path is relative to the data directory.",
							   &sync_dump_directory,
							   "",
							   PGC_SUSET,
							   0,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("sync.work_directory",
							   "Directory where sync_pull() keeps downloads while it verifies and applies them.",
							   "Empty means the data directory's pgsql_tmp. A relative path is relative to the data directory.",
							   &sync_work_directory,
							   "",
							   PGC_SUSET,
							   0,
							   NULL, NULL, NULL);
	DefineCustomIntVariable("sync.max_download_size",
							"Largest archive sync_pull() downloads.",
							NULL,
							&sync_max_download_kb,
							1024 * 1024, 1, INT_MAX,
							PGC_SUSET,
							GUC_UNIT_KB,
							NULL, NULL, NULL);
	DefineCustomIntVariable("sync.max_unpacked_size",
							"Most bytes an archive sync_pull() reads may unpack to.",
							"Bounds what a small archive can make a pull decompress; archives compress their rows about fourfold.",
							&sync_max_unpacked_kb,
							16 * 1024 * 1024, 1, INT_MAX,
							PGC_SUSET,
							GUC_UNIT_KB,
							NULL, NULL, NULL);
	DefineCustomIntVariable("sync.connect_timeout",
							"Time allowed to connect to another machine.",
							NULL,
							&sync_connect_timeout,
							10 * 1000, 1, INT_MAX,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("sync.timeout",
							"Time allowed for one pull: download, checks and merge.",
							NULL,
							&sync_timeout,
							30 * 60 * 1000, 1, INT_MAX,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("sync.max_redirects",
							"Most HTTP redirects followed when fetching from another machine.",
							NULL,
							&sync_max_redirects,
							5, 0, 50,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("sync.registry_authority",
							"Machine whose archives may change other machines' registry entries.",
							"Hostnames, URLs and contacts of a machine change through that machine's own archive or the authority's.",
							&sync_registry_authority,
							0, 0, INT_MAX,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);
	DefineCustomStringVariable("sync.database",
							   "Database the sync launcher runs scheduled pulls in.",
							   NULL, &sync_database, "postgres",
							   process_shared_preload_libraries_in_progress ? PGC_POSTMASTER : PGC_SIGHUP,
							   0, NULL, NULL, NULL);
	DefineCustomIntVariable("sync.max_workers",
							"Most scheduled pulls that run at once.",
							NULL, &sync_max_workers, 2, 1, SYNC_MAX_WORKERS_LIMIT,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("sync.log_retention",
							"How long rows of sync_log are kept.",
							NULL, &sync_log_retention, 30 * 24 * 60, 1, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MIN, NULL, NULL, NULL);
	DefineCustomIntVariable("sync.dump_deltas",
							"Most deltas a dump's index keeps; 0 writes a full archive at every dump.",
							"A dump writes a new full archive once this many deltas follow the last one.",
							&sync_dump_deltas, 100, 0, SYNC_MAX_DELTAS - 1,
							PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomRealVariable("sync.dump_delta_ratio",
							 "Size of the deltas a dump's index keeps, as a fraction of the full archive.",
							 "A dump writes a new full archive once the deltas that follow the last one add up to this fraction of its size.",
							 &sync_dump_delta_ratio, 1.0, 0.01, 100.0,
							 PGC_SUSET, 0, NULL, NULL, NULL);
}
