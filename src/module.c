/*-------------------------------------------------------------------------
 *
 * module.c
 *		The top floor of the sync extension: what happens when the library
 *		is loaded.
 *
 * Loading defines every sync.* setting (settings.c) and reserves the sync.
 * prefix; loaded by shared_preload_libraries, it also registers the
 * launcher of scheduled pulls (schedule.c).  The SQL-callable functions are
 * in the files of their concern: registry.c, identity.c, tables.c,
 * remote.c, dump.c, pull.c, schedule.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"

#include "schedule.h"
#include "settings.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/*
 * Module load: settings, libcurl, and with shared_preload_libraries the
 * launcher.
 */
void
_PG_init(void)
{
	SyncDefineSettings();

	if (process_shared_preload_libraries_in_progress)
		SyncRegisterLauncher();

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		elog(ERROR, "could not initialize libcurl");

#if PG_VERSION_NUM >= 150000
	MarkGUCPrefixReserved("sync");
#else
	EmitWarningsOnPlaceholders("sync");
#endif
}
