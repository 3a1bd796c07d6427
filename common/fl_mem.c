#include "fl_mem.h"

#include <stdlib.h>
#include <string.h>

void *fl_mem_alloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (p == NULL)
        abort();
    return p;
}

void *fl_mem_calloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p == NULL)
        abort();
    return p;
}

void *fl_mem_realloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (q == NULL)
        abort();
    return q;
}

char *fl_mem_strdup(const char *s) {
    char *d = strdup(s);
    if (d == NULL)
        abort();
    return d;
}
