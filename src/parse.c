/*-------------------------------------------------------------------------
 *
 * parse.c
 *		Parsers of the bytes a remote machine sends, before PostgreSQL
 *		takes over: the index, the header and the manifest (JSON), and the
 *		framing of the COPY text of each table.
 *
 * Each JSON document is parsed once, by PostgreSQL's own JSON parser
 * (common/jsonapi), into a small tree that is then read field by field;
 * a document that nests deeper than any sync writes is refused before it
 * is parsed, so parsing needs little stack whatever it is sent.  Names are
 * checked to be plain text (no control characters), which is all that may
 * reach a message.
 *
 * The rows of a table are parsed by COPY alone.  What is checked here is
 * only their framing, as COPY's text format has it for UTF-8: a row ends
 * at a newline that no backslash escapes; a carriage return, a NUL byte,
 * an end-of-data marker (\.) anywhere, or a last row without its newline
 * would make COPY read other rows than sync wrote, and are refused.
 *
 * Nothing here throws: a parser returns NULL, or a sentence saying what is
 * wrong.  Built with FRONTEND defined, this file is also the fuzz targets'
 * (fuzz/).
 *
 *-------------------------------------------------------------------------
 */
#include "parse.h"

#include "common/jsonapi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#ifndef FRONTEND
#include "miscadmin.h"
#endif

/* the encoding documents are parsed in: the database's, or UTF-8 */
#ifndef FRONTEND
#define DOCUMENT_ENCODING GetDatabaseEncoding()
#else
#define DOCUMENT_ENCODING PG_UTF8
#endif

/* the most tables an archive describes, and columns a table has */
#define MAX_TABLES 10000
#define MAX_COLUMNS 1600

/* the most members of an object (those sync writes have about ten) */
#define MAX_OBJECT_MEMBERS 64

/* A value of a JSON document. */
typedef enum JsonKind
{
	J_NULL, J_BOOL, J_NUMBER, J_STRING, J_ARRAY, J_OBJECT
} JsonKind;

typedef struct JsonNode
{
	JsonKind	kind;
	char	   *text;			/* a scalar's: the string, number or "true" */
	int			n;				/* members of an array or object */
	int			cap;
	char	  **keys;			/* an object's member names */
	struct JsonNode **items;
} JsonNode;

/* State of the tree being built by the parser's callbacks. */
typedef struct TreeBuilder
{
	JsonNode   *root;
	JsonNode   *stack[SYNC_MAX_JSON_DEPTH + 1];
	int			depth;
	char	   *key;			/* name of the member about to come */
	const char *error;
} TreeBuilder;

/* Add node to the container being built (or make it the root). */
static void
Attach(TreeBuilder *b, JsonNode *node)
{
	JsonNode   *parent;
	int			i;

#ifndef FRONTEND
	/* a big document takes a while: a cancel or sync.timeout stops it */
	CHECK_FOR_INTERRUPTS();
#endif
	/* past an error, or deeper than the stack, nothing more is built */
	if (b->error || b->depth > SYNC_MAX_JSON_DEPTH)
		return;
	if (b->depth == 0)
	{
		b->root = node;
		return;
	}
	parent = b->stack[b->depth - 1];
	if (parent->kind == J_OBJECT)
	{
		if (parent->n >= MAX_OBJECT_MEMBERS)
		{
			b->error = psprintf("An object has more than %d members.", MAX_OBJECT_MEMBERS);
			return;
		}
		for (i = 0; i < parent->n; i++)
			if (strcmp(parent->keys[i], b->key) == 0)
			{
				b->error = "An object names the same member twice.";
				return;
			}
	}
	if (parent->n == parent->cap)
	{
		parent->cap = parent->cap ? 2 * parent->cap : 8;
		parent->items = parent->items ?
			repalloc(parent->items, sizeof(JsonNode *) * parent->cap) :
			palloc(sizeof(JsonNode *) * parent->cap);
		parent->keys = parent->keys ?
			repalloc(parent->keys, sizeof(char *) * parent->cap) :
			palloc(sizeof(char *) * parent->cap);
	}
	parent->keys[parent->n] = (parent->kind == J_OBJECT) ? b->key : NULL;
	parent->items[parent->n++] = node;
}

static JsonNode *
NewNode(JsonKind kind, char *text)
{
	JsonNode   *node = palloc0(sizeof(JsonNode));

	node->kind = kind;
	node->text = text;
	return node;
}

/* Parser callback: an object or array starts. */
static void
ContainerStart(TreeBuilder *b, JsonKind kind)
{
	JsonNode   *node = NewNode(kind, NULL);

	Attach(b, node);
	/* the document was checked not to nest deeper than the stack */
	if (b->depth < SYNC_MAX_JSON_DEPTH)
		b->stack[b->depth] = node;
	else if (b->error == NULL)
		b->error = "It nests too deep.";
	b->depth++;
}

static void
ObjectStart(void *state)
{
	ContainerStart(state, J_OBJECT);
}

static void
ArrayStart(void *state)
{
	ContainerStart(state, J_ARRAY);
}

static void
ContainerEnd(void *state)
{
	((TreeBuilder *) state)->depth--;
}

static void
FieldStart(void *state, char *fname, bool isnull)
{
	((TreeBuilder *) state)->key = fname;
}

static void
Scalar(void *state, char *token, JsonTokenType type)
{
	JsonKind	kind;

	switch (type)
	{
		case JSON_TOKEN_STRING:
			kind = J_STRING;
			break;
		case JSON_TOKEN_NUMBER:
			kind = J_NUMBER;
			break;
		case JSON_TOKEN_TRUE:
		case JSON_TOKEN_FALSE:
			kind = J_BOOL;
			break;
		default:
			kind = J_NULL;
			break;
	}
	Attach(state, NewNode(kind, token));
}

/*
 * How deep does text nest its arrays and objects?  Counted outside its
 * strings, without parsing it: enough to refuse a document before the
 * parser recurses into it.
 */
static int
NestingDepth(const char *text, size_t len)
{
	int			depth = 0;
	int			deepest = 0;
	bool		in_string = false;
	size_t		i;

	for (i = 0; i < len; i++)
	{
		char		c = text[i];

		if (in_string)
		{
			if (c == '\\')
				i++;
			else if (c == '"')
				in_string = false;
		}
		else if (c == '"')
			in_string = true;
		else if (c == '[' || c == '{')
		{
			depth++;
			deepest = Max(deepest, depth);
		}
		else if (c == ']' || c == '}')
			depth--;
	}
	return deepest;
}

/*
 * Parse a JSON document of len bytes (in the database's encoding, checked
 * valid) into a tree.
 */
static const char *
ParseDocument(const char *text, size_t len, size_t limit, JsonNode **root)
{
	JsonLexContext *lex;
	JsonSemAction sem;
	TreeBuilder b;
	JsonParseErrorType rc;

	*root = NULL;
	if (len > limit)
		return psprintf("It has %zu bytes, more than the %zu a document may have.", len, limit);
	if (memchr(text, '\0', len) != NULL)
		return "It holds a NUL byte.";
	if (NestingDepth(text, len) > SYNC_MAX_JSON_DEPTH)
		return psprintf("It nests deeper than %d levels.", SYNC_MAX_JSON_DEPTH);

	memset(&b, 0, sizeof(b));
	memset(&sem, 0, sizeof(sem));
	sem.semstate = &b;
	sem.object_start = ObjectStart;
	sem.object_end = ContainerEnd;
	sem.array_start = ArrayStart;
	sem.array_end = ContainerEnd;
	sem.object_field_start = FieldStart;
	sem.scalar = Scalar;
	lex = makeJsonLexContextCstringLen(unconstify(char *, text), (int) len,
									   DOCUMENT_ENCODING, true);
	rc = pg_parse_json(lex, &sem);
	if (rc != JSON_SUCCESS)
		return psprintf("It is not valid JSON (line %d).", lex->line_number);
	if (b.error)
		return b.error;
	if (b.root == NULL || b.root->kind != J_OBJECT)
		return "It is not a JSON object.";
	*root = b.root;
	return NULL;
}

/* The member key of an object, or NULL. */
static JsonNode *
Member(const JsonNode *node, const char *key)
{
	int			i;

	if (node == NULL || node->kind != J_OBJECT)
		return NULL;
	for (i = 0; i < node->n; i++)
		if (strcmp(node->keys[i], key) == 0)
			return node->items[i];
	return NULL;
}

/* An integer without fraction or exponent, within int64. */
static bool
GetInt64(const JsonNode *node, int64 *value)
{
	const char *s;
	char	   *end;

	if (node == NULL || node->kind != J_NUMBER)
		return false;
	s = node->text;
	if (strspn(s + (*s == '-'), "0123456789") != strlen(s + (*s == '-')))
		return false;
	errno = 0;
	*value = strtoi64(s, &end, 10);
	return errno == 0 && *end == '\0' && end != s;
}

/* A string's text, or NULL. */
static char *
GetText(const JsonNode *node)
{
	return (node != NULL && node->kind == J_STRING) ? node->text : NULL;
}

/* A boolean (false when absent). */
static bool
GetBool(const JsonNode *node)
{
	return node != NULL && node->kind == J_BOOL && strcmp(node->text, "true") == 0;
}

/* Has s no control characters (so it may be shown as it is)? */
bool
SyncIsPlainText(const char *s)
{
	for (; *s; s++)
		if ((unsigned char) *s < 0x20 || *s == 0x7f)
			return false;
	return true;
}

/*
 * s (len bytes, of any encoding or none) as printable ASCII: bytes outside
 * it and backslashes are written \xNN.  For names that are not known to be
 * valid text, such as a tar member's.
 */
char *
SyncPrintable(const char *s, size_t len)
{
	StringInfoData buf;
	size_t		i;

	initStringInfo(&buf);
	for (i = 0; i < len && s[i] != '\0'; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (c < 0x20 || c >= 0x7f || c == '\\')
			appendStringInfo(&buf, "\\x%02x", c);
		else
			appendStringInfoChar(&buf, (char) c);
	}
	return buf.data;
}

/* A name the header gives: a non-empty string of plain text. */
static char *
GetName(const JsonNode *node)
{
	char	   *s = GetText(node);

	return (s != NULL && s[0] != '\0' && SyncIsPlainText(s)) ? s : NULL;
}

/*
 * Is dir a directory a table's files may be in: the registry's, or
 * "tables/" and one plain name?
 */
static bool
TableDirectory(const char *dir)
{
	if (strcmp(dir, "registry") == 0)
		return true;
	return strncmp(dir, "tables/", 7) == 0 && dir[7] != '\0' &&
		strchr(dir + 7, '/') == NULL && strstr(dir, "..") == NULL;
}

/* Read a table's description (schema, name, key, directory, columns). */
static const char *
TableFromNode(const JsonNode *node, SyncArchiveTable *t)
{
	JsonNode   *columns = Member(node, "columns");
	int			i;

	memset(t, 0, sizeof(*t));
	t->rows = t->excluded = t->bytes = -1;
	t->key_index = -1;
	if (node == NULL || node->kind != J_OBJECT)
		return "A table is not described by an object.";
	t->schema = GetName(Member(node, "schema"));
	t->name = GetName(Member(node, "name"));
	t->key = GetName(Member(node, "key"));
	t->dir = GetName(Member(node, "dir"));
	if (t->schema == NULL || t->name == NULL || t->key == NULL || t->dir == NULL ||
		columns == NULL || columns->kind != J_ARRAY || columns->n == 0)
		return "A table lacks its name, key, directory or columns.";
	if (!TableDirectory(t->dir))
		return "A table's directory is not one sync writes.";
	if (columns->n > MAX_COLUMNS)
		return psprintf("A table has more than %d columns.", MAX_COLUMNS);
	t->ncolumns = columns->n;
	t->columns = palloc0(sizeof(SyncColumn) * t->ncolumns);
	for (i = 0; i < t->ncolumns; i++)
	{
		SyncColumn *c = &t->columns[i];
		int			j;

		c->name = GetName(Member(columns->items[i], "name"));
		c->type = GetName(Member(columns->items[i], "type"));
		c->anonymized = GetBool(Member(columns->items[i], "anonymized"));
		if (c->name == NULL || c->type == NULL)
			return "A column lacks its name or type.";
		for (j = 0; j < i; j++)
			if (strcmp(t->columns[j].name, c->name) == 0)
				return psprintf("Table %s.%s has column \"%s\" twice.",
								t->schema, t->name, c->name);
		if (strcmp(c->name, t->key) == 0)
			t->key_index = i;
	}
	if (t->key_index < 0)
		return psprintf("The key of table %s.%s is not among its columns.",
						t->schema, t->name);
	return NULL;
}

/*
 * Read an index's chain (revision 2): its name, the newest state, the full
 * archive's state, and the deltas, which must follow each other from one
 * state to the next, end at the newest, and reach back to the full
 * archive's state or further.
 */
static const char *
ChainFromNode(const JsonNode *root, SyncIndex *index)
{
	JsonNode   *deltas = Member(root, "deltas");
	int			i;

	index->chain = GetName(Member(root, "chain"));
	if (index->chain == NULL || strlen(index->chain) > 64 ||
		strspn(index->chain, "0123456789abcdef") != strlen(index->chain) ||
		!GetInt64(Member(root, "seq"), &index->seq) || index->seq < 1 ||
		!GetInt64(Member(root, "full_seq"), &index->full_seq) ||
		index->full_seq < 1 || index->full_seq > index->seq)
		return "Its chain, state or full archive's state is missing or wrong.";
	if (deltas == NULL || deltas->kind != J_ARRAY)
		return "It has no list of deltas.";
	if (deltas->n > SYNC_MAX_DELTAS)
		return psprintf("It lists more than %d deltas.", SYNC_MAX_DELTAS);
	index->ndeltas = deltas->n;
	index->deltas = palloc0(sizeof(SyncIndexDelta) * (deltas->n + 1));
	for (i = 0; i < deltas->n; i++)
	{
		SyncIndexDelta *d = &index->deltas[i];
		int64		size;
		int64		base;

		d->archive = GetName(Member(deltas->items[i], "archive"));
		d->sha256 = GetName(Member(deltas->items[i], "sha256"));
		if (!GetInt64(Member(deltas->items[i], "seq"), &d->seq) ||
			!GetInt64(Member(deltas->items[i], "base"), &base) || base + 1 != d->seq ||
			!GetInt64(Member(deltas->items[i], "size"), &size) || size < 0 ||
			d->archive == NULL || d->sha256 == NULL)
			return "A delta lacks its states, file, size or checksum.";
		d->size = (uint64) size;
		if (i > 0 && d->seq != index->deltas[i - 1].seq + 1)
			return "Its deltas do not follow each other.";
	}
	if (index->ndeltas > 0 &&
		(index->deltas[index->ndeltas - 1].seq != index->seq ||
		 index->deltas[0].seq > index->full_seq + 1))
		return "Its deltas do not lead from the full archive to the newest state.";
	if (index->ndeltas == 0 && index->full_seq != index->seq)
		return "Its full archive is not the newest state, and it lists no deltas.";
	return NULL;
}

/*
 * Parse an index (sync-index.json).  Fields it lacks are left -1 or NULL,
 * for the caller to judge.
 */
const char *
SyncParseIndex(const char *text, size_t len, SyncIndex *index)
{
	JsonNode   *root;
	const char *error = ParseDocument(text, len, SYNC_MAX_INDEX, &root);
	int64		size;

	memset(index, 0, sizeof(*index));
	index->format = index->machine_id = -1;
	if (error)
		return error;
	if (!GetInt64(Member(root, "format"), &index->format))
		index->format = -1;
	if (!GetInt64(Member(root, "machine"), &index->machine_id))
		index->machine_id = -1;
	index->archive = GetName(Member(root, "archive"));
	index->sha256 = GetName(Member(root, "sha256"));
	if (GetInt64(Member(root, "size"), &size) && size >= 0)
		index->size = (uint64) size;
	else
		index->archive = NULL;	/* an archive whose size is not known */
	index->created = GetText(Member(root, "created_at"));
	if (!GetInt64(Member(root, "revision"), &index->revision))
		index->revision = 1;
	index->seq = index->full_seq = -1;
	if (index->revision >= 2)
		return ChainFromNode(root, index);
	return NULL;
}

/*
 * Read what a header of revision 2 says of its chain: the chain and the
 * state the archive results in; a delta also the state it applies to, and
 * per table the directory of the keys it deletes.
 */
static const char *
HeaderChain(const JsonNode *root, SyncArchiveHeader *h)
{
	JsonNode   *tables = Member(root, "tables");
	const char *kind = GetText(Member(root, "kind"));
	int			i;

	h->seq = h->base = -1;
	h->chain = GetName(Member(root, "chain"));
	if (h->chain != NULL && !GetInt64(Member(root, "seq"), &h->seq))
		return "It names a chain but no state.";
	h->delta = (kind != NULL && strcmp(kind, "delta") == 0);
	if (kind != NULL && !h->delta && strcmp(kind, "full") != 0)
		return "Its kind is neither full nor delta.";
	if (!h->delta)
		return NULL;
	if (h->chain == NULL || !GetInt64(Member(root, "base"), &h->base) ||
		h->base + 1 != h->seq)
		return "A delta must name its chain, and the state it applies to, one before the state it results in.";
	for (i = 0; i < h->ntables; i++)
	{
		SyncArchiveTable *t = h->tables[i];
		SyncArchiveTable *d = palloc0(sizeof(SyncArchiveTable));
		int			j;

		d->dir = GetName(Member(Member(tables->items[i], "deleted"), "dir"));
		if (d->dir == NULL || strncmp(d->dir, "deleted/", 8) != 0 ||
			d->dir[8] == '\0' || strchr(d->dir + 8, '/') != NULL ||
			strstr(d->dir, "..") != NULL)
			return psprintf("Table %s.%s of a delta has no directory of deleted keys.",
							t->schema, t->name);
		for (j = 0; j < i; j++)
			if (strcmp(h->tables[j]->deleted->dir, d->dir) == 0)
				return "Two tables of a delta share their directory of deleted keys.";
		d->schema = t->schema;
		d->name = t->name;
		d->key = t->key;
		d->key_index = 0;
		d->ncolumns = 1;
		d->columns = &t->columns[t->key_index];
		d->rows = d->excluded = d->bytes = -1;
		t->deleted = d;
	}
	return NULL;
}

/*
 * Parse an archive's header.json: format, source machine and range,
 * encoding, and the tables (parents first) and registry it holds, each
 * checked to be described whole, and none twice.
 */
const char *
SyncParseHeader(const char *text, size_t len, SyncArchiveHeader *h)
{
	JsonNode   *root;
	JsonNode   *source;
	JsonNode   *tables;
	const char *error = ParseDocument(text, len, SYNC_MAX_HEADER, &root);
	SyncArchiveTable *all;
	int			i;

	memset(h, 0, sizeof(*h));
	h->format = h->machine_id = -1;
	if (error)
		return error;
	if (!GetInt64(Member(root, "format"), &h->format))
		return "It has no format number.";
	source = Member(root, "source");
	if (!GetInt64(Member(source, "machine"), &h->machine_id) ||
		!GetInt64(Member(source, "sync_start"), &h->range.start) ||
		!GetInt64(Member(source, "sync_end"), &h->range.end))
		return "It does not say which machine and range it is of.";
	h->hostname = GetName(Member(source, "hostname"));
	h->encoding = GetName(Member(root, "encoding"));
	if (h->encoding == NULL)
		return "It names no encoding.";

	tables = Member(root, "tables");
	if (tables == NULL || tables->kind != J_ARRAY)
		return "It has no list of tables.";
	if (tables->n > MAX_TABLES)
		return psprintf("It lists more than %d tables.", MAX_TABLES);
	h->ntables = tables->n;
	all = palloc0(sizeof(SyncArchiveTable) * (h->ntables + 1));
	h->tables = palloc0(sizeof(SyncArchiveTable *) * (h->ntables + 1));
	for (i = 0; i < h->ntables; i++)
	{
		int			j;

		h->tables[i] = &all[i];
		if ((error = TableFromNode(tables->items[i], &all[i])) != NULL)
			return error;
		if (strcmp(all[i].dir, "registry") == 0)
			return "A table uses the registry's directory.";
		for (j = 0; j < i; j++)
			if (strcmp(all[i].dir, all[j].dir) == 0 ||
				(strcmp(all[i].schema, all[j].schema) == 0 &&
				 strcmp(all[i].name, all[j].name) == 0))
				return psprintf("It lists %s.%s twice.", all[i].schema, all[i].name);
	}
	if ((error = HeaderChain(root, h)) != NULL)
		return error;
	h->registry = &all[h->ntables];
	if (Member(root, "registry") == NULL)
		return "It describes no registry.";
	if ((error = TableFromNode(Member(root, "registry"), h->registry)) != NULL)
		return error;
	if (strcmp(h->registry->dir, "registry") != 0)
		return "Its registry is not in the registry's directory.";
	return NULL;
}

/* Read a table's account in the manifest into t. */
static const char *
AccountFromNode(const JsonNode *node, SyncArchiveTable *t)
{
	char	   *sha256 = GetText(Member(node, "sha256"));
	char	   *digest;

	if (!GetInt64(Member(node, "rows"), &t->rows) || t->rows < 0)
		t->rows = -1;
	if (!GetInt64(Member(node, "bytes"), &t->bytes) || t->bytes < 0)
		t->bytes = -1;
	/* a checksum of any other form matches none */
	if (sha256 && strlen(sha256) == SYNC_SHA256_HEX_LEN - 1 &&
		strspn(sha256, "0123456789abcdef") == SYNC_SHA256_HEX_LEN - 1)
		strlcpy(t->sha256, sha256, sizeof(t->sha256));
	else
		t->sha256[0] = '\0';

	/* revision 2: the digest of the published rows, and their count */
	digest = GetText(Member(node, "digest"));
	t->has_digest = false;
	if (digest != NULL)
	{
		char	   *end;

		if (strlen(digest) != 16 || strspn(digest, "0123456789abcdef") != 16 ||
			!GetInt64(Member(node, "published"), &t->published) || t->published < 0)
			return "A table's digest or count of published rows is not valid.";
		t->digest = strtou64(digest, &end, 16);
		t->has_digest = true;
	}
	if (t->deleted != NULL)
	{
		JsonNode   *deleted = Member(node, "deleted");
		char	   *dir = GetText(Member(deleted, "dir"));

		if (dir == NULL || strcmp(dir, t->deleted->dir) != 0)
			return "A table's deleted keys are not where the header says.";
		return AccountFromNode(deleted, t->deleted);
	}
	return NULL;
}

/*
 * Parse manifest.json: every table's row count, size and checksum, into
 * the tables of the header parsed before (matched by directory).
 */
const char *
SyncParseManifest(const char *text, size_t len, SyncArchiveHeader *h)
{
	JsonNode   *root;
	JsonNode   *tables;
	const char *error = ParseDocument(text, len, SYNC_MAX_MANIFEST, &root);
	bool	   *listed;
	int			i;

	if (error)
		return error;
	listed = palloc0(sizeof(bool) * (h->ntables + 1));
	tables = Member(root, "tables");
	if (tables == NULL || tables->kind != J_ARRAY || Member(root, "registry") == NULL)
		return "It has no list of tables and no registry.";
	for (i = 0; i < tables->n; i++)
	{
		char	   *dir = GetText(Member(tables->items[i], "dir"));
		SyncArchiveTable *t = NULL;
		int			j;

		for (j = 0; j < h->ntables && t == NULL && dir != NULL; j++)
			if (strcmp(dir, h->tables[j]->dir) == 0)
				t = h->tables[j];
		if (t == NULL)
			return "It lists a table the header does not.";
		if (listed[j - 1])
			return "It lists a table twice.";
		listed[j - 1] = true;
		if ((error = AccountFromNode(tables->items[i], t)) != NULL)
			return error;
	}
	if (!GetText(Member(Member(root, "registry"), "dir")) ||
		strcmp(GetText(Member(Member(root, "registry"), "dir")), h->registry->dir) != 0)
		return "Its registry is not the header's.";
	return AccountFromNode(Member(root, "registry"), h->registry);
}

/*
 * Bytes that end, escape or break a row of COPY text: a newline, a
 * backslash, a carriage return and NUL.
 */
static const bool row_special[256] = {
	['\0'] = true, ['\n'] = true, ['\r'] = true, ['\\'] = true
};

/*
 * Scan len more bytes of a table's COPY text; NULL, or what is wrong.
 */
const char *
SyncRowScanData(SyncRowScan *scan, const char *data, size_t len)
{
	size_t		i = 0;

	scan->bytes += len;
	while (i < len)
	{
		unsigned char c = (unsigned char) data[i++];

		if (scan->escape)
		{
			/* COPY ends its input at \. wherever it stands */
			if (c == '.')
				return "It holds an end-of-data marker (\\.).";
			if (c == '\0')
				return "It holds a NUL byte.";
			scan->escape = false;
			scan->in_row = true;
			continue;
		}
		if (likely(!row_special[c]))
		{
			scan->in_row = true;
			continue;
		}
		switch (c)
		{
			case '\n':
				scan->rows++;
				scan->in_row = false;
				break;
			case '\\':
				scan->escape = true;
				scan->in_row = true;
				break;
			case '\r':
				return "It holds a carriage return, which COPY would read as the end of a row.";
			default:
				return "It holds a NUL byte.";
		}
	}
	return NULL;
}

/* At the end of a table's COPY text: NULL, or what is wrong. */
const char *
SyncRowScanEnd(const SyncRowScan *scan)
{
	if (scan->in_row || scan->escape)
		return "Its last row has no end.";
	return NULL;
}
