/*-------------------------------------------------------------------------
 *
 * fkeys.h
 *		Foreign keys among registered tables, and into them.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SYNC_FKEYS_H
#define SYNC_FKEYS_H

#include "postgres.h"

#include "access/attnum.h"
#include "nodes/pg_list.h"

/*
 * A foreign key from one table of a list (the child) to one of the same
 * list (the parent, maybe the child itself).
 */
typedef struct SyncForeignKey
{
	int			child;			/* index of the referencing table */
	int			parent;			/* index of the referenced table */
	char	   *join_sql;		/* condition joining alias c (child) to p (parent) */
	List	   *columns;		/* the child's referencing column names */
	bool		deferrable;
	char	   *name;			/* quoted, qualified, for SET CONSTRAINTS */
} SyncForeignKey;

/* A foreign key from any table into one table (or its partitions). */
typedef struct SyncReference
{
	Oid			child;			/* the referencing table */
	char	   *join_sql;		/* condition joining alias c (child) to p (the table) */
	List	   *columns;		/* the referenced column names */
} SyncReference;

extern List *SyncForeignKeysAmong(const Oid *relids, int n);
extern int *SyncParentsFirst(int n, List *fkeys, const bool *include);
extern List *SyncReferencesTo(Oid relid);
extern bool SyncColumnInForeignKey(Oid relid, AttrNumber attnum);

#endif							/* SYNC_FKEYS_H */
