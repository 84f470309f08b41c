/*-------------------------------------------------------------------------
 *
 * arena.c
 *		The frontend memory functions (those of common/fe_memutils) for the
 *		fuzz targets, each block a malloc of its own, all of them freed
 *		after every input (FuzzArenaReset).
 *
 * The parsers allocate as the backend does, into a memory context that
 * goes away as a whole; a frontend has no such context.  So that a run of
 * millions of inputs does not grow without bound, and AddressSanitizer
 * still sees every block's own bounds, each block is linked into a list
 * that is freed between inputs.  Defining every function of fe_memutils
 * keeps the linker from taking libpgcommon's.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include "fuzz.h"

/* A block's header, before what the caller gets. */
typedef struct Block
{
	struct Block *prev;
	struct Block *next;
	size_t		size;
	/* keep the caller's memory maximally aligned */
	max_align_t align[];
} Block;

static Block *blocks = NULL;

#define HEADER(p) ((Block *) ((char *) (p) - offsetof(Block, align)))

static void
Unlink(Block *b)
{
	if (b->prev)
		b->prev->next = b->next;
	else
		blocks = b->next;
	if (b->next)
		b->next->prev = b->prev;
}

static void
Link(Block *b)
{
	b->prev = NULL;
	b->next = blocks;
	if (blocks)
		blocks->prev = b;
	blocks = b;
}

/* Allocate size bytes (zeroed with zero); NULL only with no_oom. */
static void *
Allocate(size_t size, bool zero, bool no_oom)
{
	Block	   *b = malloc(offsetof(Block, align) + (size ? size : 1));

	if (b == NULL)
	{
		if (no_oom)
			return NULL;
		fprintf(stderr, "out of memory\n");
		abort();
	}
	b->size = size;
	if (zero)
		memset(b->align, 0, size);
	Link(b);
	return b->align;
}

static void *
Reallocate(void *pointer, size_t size)
{
	Block	   *b;

	if (pointer == NULL)
		return Allocate(size, false, false);
	b = HEADER(pointer);
	Unlink(b);
	b = realloc(b, offsetof(Block, align) + (size ? size : 1));
	if (b == NULL)
	{
		fprintf(stderr, "out of memory\n");
		abort();
	}
	b->size = size;
	Link(b);
	return b->align;
}

static void
Free(void *pointer)
{
	Block	   *b;

	if (pointer == NULL)
		return;
	b = HEADER(pointer);
	Unlink(b);
	free(b);
}

/* Free every block allocated since the last reset. */
void
FuzzArenaReset(void)
{
	while (blocks)
	{
		Block	   *b = blocks;

		blocks = b->next;
		free(b);
	}
}

/* the size of s1 * s2 or s1 + s2, which must not overflow */
Size
add_size(Size s1, Size s2)
{
	if (s1 + s2 < s1)
		abort();
	return s1 + s2;
}

Size
mul_size(Size s1, Size s2)
{
	if (s1 != 0 && (s1 * s2) / s1 != s2)
		abort();
	return s1 * s2;
}

void *
pg_malloc(size_t size)
{
	return Allocate(size, false, false);
}

void *
pg_malloc0(size_t size)
{
	return Allocate(size, true, false);
}

void *
pg_malloc_extended(size_t size, int flags)
{
	return Allocate(size, (flags & MCXT_ALLOC_ZERO) != 0, (flags & MCXT_ALLOC_NO_OOM) != 0);
}

void *
pg_realloc(void *pointer, size_t size)
{
	return Reallocate(pointer, size);
}

char *
pg_strdup(const char *in)
{
	return pstrdup(in);
}

void
pg_free(void *pointer)
{
	Free(pointer);
}

void *
pg_malloc_mul(Size s1, Size s2)
{
	return Allocate(mul_size(s1, s2), false, false);
}

void *
pg_malloc0_mul(Size s1, Size s2)
{
	return Allocate(mul_size(s1, s2), true, false);
}

void *
pg_malloc_mul_extended(Size s1, Size s2, int flags)
{
	return pg_malloc_extended(mul_size(s1, s2), flags);
}

void *
pg_realloc_mul(void *p, Size s1, Size s2)
{
	return Reallocate(p, mul_size(s1, s2));
}

void *
palloc(Size size)
{
	return Allocate(size, false, false);
}

void *
palloc0(Size size)
{
	return Allocate(size, true, false);
}

void *
palloc_extended(Size size, int flags)
{
	return pg_malloc_extended(size, flags);
}

void *
repalloc(void *pointer, Size size)
{
	return Reallocate(pointer, size);
}

void
pfree(void *pointer)
{
	Free(pointer);
}

void *
palloc_mul(Size s1, Size s2)
{
	return Allocate(mul_size(s1, s2), false, false);
}

void *
palloc0_mul(Size s1, Size s2)
{
	return Allocate(mul_size(s1, s2), true, false);
}

void *
palloc_mul_extended(Size s1, Size s2, int flags)
{
	return pg_malloc_extended(mul_size(s1, s2), flags);
}

void *
repalloc_mul(void *p, Size s1, Size s2)
{
	return Reallocate(p, mul_size(s1, s2));
}

char *
pstrdup(const char *in)
{
	size_t		len = strlen(in);
	char	   *out = Allocate(len + 1, false, false);

	memcpy(out, in, len + 1);
	return out;
}

char *
pnstrdup(const char *in, Size size)
{
	size_t		len = strnlen(in, size);
	char	   *out = Allocate(len + 1, false, false);

	memcpy(out, in, len);
	out[len] = '\0';
	return out;
}
