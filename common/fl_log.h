/* fl_log: one line per event on stderr, level-gated. Thread-safe (librdkafka's log callback
 * may call it from its own threads). */
#ifndef FL_LOG_H
#define FL_LOG_H

typedef enum { FL_LOG_DEBUG = 0, FL_LOG_INFO, FL_LOG_WARN, FL_LOG_ERROR } fl_log_level_t;

/* Set the process-wide minimum level and the component name printed on each line
 * (name is copied). */
void fl_log_init(const char *component, fl_log_level_t level);

/* Parse "debug"/"info"/"warn"/"error"; returns 0 or FL_EINVAL. */
int fl_log_level_parse(const char *s, fl_log_level_t *out);

void fl_log_write(fl_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

int fl_log_enabled(fl_log_level_t level);

#define FL_LOG(level, ...)                                                                         \
    do {                                                                                           \
        if (fl_log_enabled(level))                                                                 \
            fl_log_write(level, __VA_ARGS__);                                                      \
    } while (0)
#define fl_debug(...) FL_LOG(FL_LOG_DEBUG, __VA_ARGS__)
#define fl_info(...) FL_LOG(FL_LOG_INFO, __VA_ARGS__)
#define fl_warn(...) FL_LOG(FL_LOG_WARN, __VA_ARGS__)
#define fl_error(...) FL_LOG(FL_LOG_ERROR, __VA_ARGS__)

#endif
