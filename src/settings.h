/*-------------------------------------------------------------------------
 *
 * settings.h
 *		Every sync.* setting, defined in settings.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SYNC_SETTINGS_H
#define SYNC_SETTINGS_H

#include "postgres.h"

/* the most scheduled pulls that can be set to run at once */
#define SYNC_MAX_WORKERS_LIMIT 64

/* dumps */
extern char *sync_dump_directory;
extern int	sync_registry_authority;

/* pulls */
extern char *sync_work_directory;
extern int	sync_max_download_kb;
extern int	sync_max_unpacked_kb;
extern int	sync_connect_timeout;
extern int	sync_timeout;
extern int	sync_max_redirects;

/* the scheduler */
extern char *sync_database;
extern int	sync_max_workers;
extern int	sync_log_retention;
extern int	sync_dump_deltas;
extern double sync_dump_delta_ratio;

extern void SyncDefineSettings(void);

#endif							/* SYNC_SETTINGS_H */
