/* fl_schemas: the Avro schemas compiled into the binary.
 *
 * The table is generated at build time by cmake/embed_schemas.cmake from schemas/<type>.avsc and
 * schemas/history/<type>.v<N>.avsc; fl_codec_new() reads it. Rows are sorted by path, so the
 * current schemas come first in type-name order, then the history files. */
#ifndef FL_SCHEMAS_H
#define FL_SCHEMAS_H

#include <stddef.h>

typedef struct fl_schema_src {
    const char *type; /* event type short name: the file name without .avsc / .v<N>.avsc */
    int version;      /* 0: current reader schema; N >= 1: schemas/history/<type>.v<N>.avsc */
    const char *path; /* "schemas/ci_report.avsc", for messages */
    const char *json; /* schema text, NUL-terminated */
    size_t json_len;  /* strlen(json) */
} fl_schema_src_t;

/* fl_schema_srcs_len rows, then a sentinel row of NULLs. Static storage, read-only. */
extern const fl_schema_src_t fl_schema_srcs[];
extern const size_t fl_schema_srcs_len;

#endif
