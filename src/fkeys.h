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
	List	   *parent_columns; /* the parent's referenced column names */
	List	   *operators;		/* their equality operators: OPERATOR(schema.op) */
	bool		deferrable;
	bool		nullable;		/* no referencing column is NOT NULL */
	char	   *name;			/* quoted, qualified, for SET CONSTRAINTS */
	bool		declared;		/* no foreign key: a registration's depends_on
								 * (then no join, columns or name) */
} SyncForeignKey;

/* A foreign key from any table into one table (or its partitions). */
typedef struct SyncReference
{
	Oid			child;			/* the referencing table */
	char	   *join_sql;		/* condition joining alias c (child) to p (the table) */
	List	   *columns;		/* the referenced column names */
	List	   *child_columns;	/* the referencing column names */
	List	   *operators;		/* their equality operators: OPERATOR(schema.op) */
} SyncReference;

extern List *SyncForeignKeysAmong(const Oid *relids, int n);
extern char *SyncForeignKeyJoin(SyncForeignKey *fk, const char *child,
								const char *parent);
extern int *SyncParentsFirst(int n, List *fkeys, const bool *include);
extern List *SyncReferencesTo(Oid relid);
extern char *SyncReferenceJoin(SyncReference *ref, const char *child,
							   const char *parent);
extern bool SyncColumnInForeignKey(Oid relid, AttrNumber attnum);

#endif							/* SYNC_FKEYS_H */
