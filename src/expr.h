/*-------------------------------------------------------------------------
 *
 * expr.h
 *		Validating the filter and anonymize expressions of a registration.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SYNC_EXPR_H
#define SYNC_EXPR_H

#include "postgres.h"

#include "nodes/pg_list.h"
#include "utils/jsonb.h"
#include "utils/rel.h"

/* One anonymized column and the SQL of its published value. */
typedef struct SyncAnonymizedColumn
{
	char	   *column;
	char	   *sql;
} SyncAnonymizedColumn;

extern char *SyncFilterSql(Relation rel, const char *filter, const char *alias);
extern List *SyncAnonymizeSql(Relation rel, AttrNumber key_attnum,
							  Jsonb *rules, const char *alias);

#endif							/* SYNC_EXPR_H */
