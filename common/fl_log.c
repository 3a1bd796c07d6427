#include "fl_log.h"
#include "fl_err.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static fl_log_level_t log_level = FL_LOG_INFO;
static char log_component[64] = "feedloop";
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

void fl_log_init(const char *component, fl_log_level_t level) {
    log_level = level;
    if (component != NULL)
        snprintf(log_component, sizeof(log_component), "%s", component);
}

int fl_log_level_parse(const char *s, fl_log_level_t *out) {
    static const char *names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, names[i]) == 0) {
            *out = (fl_log_level_t)i;
            return 0;
        }
    }
    return FL_EINVAL;
}

int fl_log_enabled(fl_log_level_t level) {
    return level >= log_level;
}

void fl_log_write(fl_log_level_t level, const char *fmt, ...) {
    static const char *tags[] = {"DEBUG", "INFO", "WARN", "ERROR"};
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, tags[level], log_component);
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof(line))
        vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&log_lock);
    fputs(line, stderr);
    fputc('\n', stderr);
    pthread_mutex_unlock(&log_lock);
}
