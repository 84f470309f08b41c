/*-------------------------------------------------------------------------
 *
 * fuzz.h
 *		What the fuzz targets share.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SYNC_FUZZ_H
#define SYNC_FUZZ_H

#include <stddef.h>
#include <stdint.h>

extern void FuzzArenaReset(void);
extern int	LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif							/* SYNC_FUZZ_H */
