/* fl_kafka: librdkafka set-up shared by the workers and the CLI: configuration from fl_config
 * (feedloop defaults, then `kafka.<property>` pass-through), CloudEvents headers, and the
 * start-up check that topics exist (creating them when configured to).
 *
 * Threads: functions here are called from the owning thread; librdkafka's own threads only call
 * the log callback, which is thread-safe. */
#ifndef FL_KAFKA_H
#define FL_KAFKA_H

#include <librdkafka/rdkafka.h>
#include <stdint.h>

#include "fl_config.h"
#include "fl_err.h"

typedef enum { FL_KAFKA_PRODUCER, FL_KAFKA_CONSUMER } fl_kafka_role_t;

/* New librdkafka handle for role: feedloop's defaults for the role, then every `kafka.*` key of
 * cfg on top (so users override anything), group.id from cfg for consumers. client_id names the
 * process ("feedloop-validator"). setup (may be NULL) adds callbacks and
 * the opaque to the conf before the handle is made. Returns NULL with err filled (naming the
 * property). */
rd_kafka_t *fl_kafka_new(const fl_config_t *cfg, fl_kafka_role_t role, const char *client_id,
                         const char *group_id, void (*setup)(rd_kafka_conf_t *conf, void *arg),
                         void *setup_arg, fl_error_t *err);

/* Check that every topic exists; when create is true, create the missing ones with the given
 * partitions and replication (Admin CreateTopics) and wait for them. A missing topic otherwise
 * is FL_ENOTFOUND with err naming it. Blocking, up to timeout_ms. */
int fl_kafka_ensure_topics(rd_kafka_t *rk, const char *const *topics, size_t ntopics, bool create,
                           int partitions, int replication, int timeout_ms, fl_error_t *err);

/* CloudEvents Kafka binding (binary mode) headers plus traceparent, appended to hdrs. Every
 * value is non-NULL (some clients crash on NULL-valued headers). */
typedef struct fl_ce {
    const char *id;          /* ce_id */
    const char *type;        /* ce_type, e.g. io.feedloop.ValidationResult */
    const char *source;      /* ce_source, e.g. feedloop/validator */
    const char *subject;     /* ce_subject (the key), may be NULL: then omitted */
    const char *traceparent; /* W3C traceparent */
    int64_t time_ms;         /* ce_time */
} fl_ce_t;

void fl_kafka_headers_add_ce(rd_kafka_headers_t *hdrs, const fl_ce_t *ce);

/* Copy header `name` of a message into buf as a string (truncated to len-1); returns buf, or NULL
 * when the header is absent, NULL-valued or not valid text. */
const char *fl_kafka_header_str(const rd_kafka_message_t *rkm, const char *name, char *buf,
                                size_t len);

/* RFC 3339 UTC time with milliseconds. */
void fl_kafka_format_time(int64_t ms, char *buf, size_t len);

/* Wall clock in milliseconds. */
int64_t fl_now_ms(void);

#endif
