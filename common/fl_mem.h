/* fl_mem: allocation that aborts on out-of-memory (STYLE.md: callers never handle a half-built
 * object). Zero-sized requests return a unique non-NULL pointer. Thread-safe like malloc. The
 * caller frees with free(). */
#ifndef FL_MEM_H
#define FL_MEM_H

#include <stddef.h>

void *fl_mem_alloc(size_t n);
void *fl_mem_calloc(size_t n, size_t size);
void *fl_mem_realloc(void *p, size_t n);
char *fl_mem_strdup(const char *s);

#endif
