/*-------------------------------------------------------------------------
 *
 * schedule.h
 *		Scheduled pulls.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SYNC_SCHEDULE_H
#define SYNC_SCHEDULE_H

#include "postgres.h"

extern void SyncRegisterLauncher(void);

#endif							/* SYNC_SCHEDULE_H */
