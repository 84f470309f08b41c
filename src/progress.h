/*-------------------------------------------------------------------------
 *
 * progress.h
 *		Showing what a pull is doing, for the sync_progress view.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SYNC_PROGRESS_H
#define SYNC_PROGRESS_H

#include "postgres.h"

extern void SyncReportProgress(int64 machine_id, const char *phase,
							   const char *table, int64 bytes, int64 rows);
extern void SyncReportDone(void);

#endif							/* SYNC_PROGRESS_H */
