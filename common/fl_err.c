#include "fl_err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *fl_strerror(int code) {
    switch (code) {
    case 0:
        return "success";
#define FL_ERR_MSG(name, msg)                                                                      \
    case FL_E##name:                                                                               \
        return msg;
        FL_ERRNO_MAP(FL_ERR_MSG)
#undef FL_ERR_MSG
    default:
        return "unknown error";
    }
}

const char *fl_errname(int code) {
    switch (code) {
    case 0:
        return "FL_OK";
#define FL_ERR_NAME(name, msg)                                                                     \
    case FL_E##name:                                                                               \
        return "FL_E" #name;
        FL_ERRNO_MAP(FL_ERR_NAME)
#undef FL_ERR_NAME
    default:
        return "FL_EUNKNOWN";
    }
}

int fl_error_set(fl_error_t *err, int code, bool retriable, const char *fmt, ...) {
    if (err == NULL)
        return code;
    err->code = code;
    err->retriable = retriable;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->text, sizeof(err->text), fmt, ap);
    va_end(ap);
    return code;
}

void fl_error_prefix(fl_error_t *err, const char *fmt, ...) {
    if (err == NULL)
        return;
    char prefix[256];
    char old[sizeof(err->text)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    memcpy(old, err->text, sizeof(old));
    size_t plen = strnlen(prefix, sizeof(prefix));
    if (plen >= sizeof(err->text))
        plen = sizeof(err->text) - 1;
    memcpy(err->text, prefix, plen);
    size_t olen = strnlen(old, sizeof(old));
    if (olen > sizeof(err->text) - 1 - plen)
        olen = sizeof(err->text) - 1 - plen;
    memcpy(err->text + plen, old, olen);
    err->text[plen + olen] = '\0';
}
