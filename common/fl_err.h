/* fl_err: the one list of feedloop error codes, and the caller-owned error struct.
 *
 * Functions return 0 on success or a negative FL_E* code. Where a person needs detail, the
 * caller passes an fl_error_t that the callee fills (code, retriable, text). */
#ifndef FL_ERR_H
#define FL_ERR_H

#include <stdbool.h>
#include <stddef.h>

/* X(name, message) — codes are negative and stable within a build. */
#define FL_ERRNO_MAP(X)                                                                            \
    X(INVAL, "invalid argument")                                                                   \
    X(NOMEM, "out of memory")                                                                      \
    X(CONFIG, "bad configuration")                                                                 \
    X(IO, "I/O error")                                                                             \
    X(PARSE, "parse error")                                                                        \
    X(SCHEMA, "schema error")                                                                      \
    X(DECODE, "undecodable event")                                                                 \
    X(FINGERPRINT, "unknown schema fingerprint")                                                   \
    X(SEMANTIC, "semantically invalid event")                                                      \
    X(ENCODE, "encode failed")                                                                     \
    X(KAFKA, "kafka error")                                                                        \
    X(REDIS, "redis error")                                                                        \
    X(TIMEOUT, "timed out")                                                                        \
    X(NOTFOUND, "not found")                                                                       \
    X(EXISTS, "already exists")                                                                    \
    X(STATE, "invalid state")

enum {
    FL_OK = 0,
    FL_E__BASE = -1000,
#define FL_ERR_ENUM(name, msg) FL_E##name,
    FL_ERRNO_MAP(FL_ERR_ENUM)
#undef FL_ERR_ENUM
        FL_E__END
};

/* Human-readable message for an FL_E* code (static string, never NULL). */
const char *fl_strerror(int code);

/* Symbolic name ("FL_EINVAL") for an FL_E* code (static string, never NULL). */
const char *fl_errname(int code);

/* Caller-owned detail for a person. */
typedef struct fl_error {
    int code;
    bool retriable;
    char text[512];
} fl_error_t;

/* Fill err (when not NULL) with code and a printf-style text; returns code so callers can write
 * `return fl_error_set(err, FL_EINVAL, false, "key %s", k);`. */
int fl_error_set(fl_error_t *err, int code, bool retriable, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Prefix err->text with a printf-style context ("config: " + old text). */
void fl_error_prefix(fl_error_t *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
