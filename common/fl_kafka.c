#include "fl_kafka.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fl_log.h"

int64_t fl_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void fl_kafka_format_time(int64_t ms, char *buf, size_t len) {
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    /* strftime has no truncation warning to silence and the year always fits. */
    char head[32];
    strftime(head, sizeof(head), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, len, "%.19s.%03dZ", head, (int)((ms % 1000 + 1000) % 1000));
}

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
    /* syslog levels: 0-3 error, 4 warning, 5-6 info, 7 debug */
    fl_log_level_t lvl = level <= 3   ? FL_LOG_ERROR
                         : level == 4 ? FL_LOG_WARN
                         : level <= 6 ? FL_LOG_INFO
                                      : FL_LOG_DEBUG;
    FL_LOG(lvl, "librdkafka %s %s: %s", rd_kafka_name(rk), fac, buf);
}

typedef struct conf_ctx {
    rd_kafka_conf_t *conf;
    fl_error_t *err;
} conf_ctx_t;

static int set_prop(void *opaque, const char *prop, const char *value) {
    conf_ctx_t *ctx = opaque;
    char errstr[512];
    if (rd_kafka_conf_set(ctx->conf, prop, value, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
        return fl_error_set(ctx->err, FL_ECONFIG, false, "kafka.%s: %s", prop, errstr);
    return 0;
}

rd_kafka_t *fl_kafka_new(const fl_config_t *cfg, fl_kafka_role_t role, const char *client_id,
                         const char *group_id, void (*setup)(rd_kafka_conf_t *conf, void *arg),
                         void *setup_arg, fl_error_t *err) {
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    conf_ctx_t ctx = {conf, err};
    rd_kafka_t *rk = NULL;
    /* Defaults chosen for feedloop: small events, low latency, explicit offset discipline. */
    static const char *common[][2] = {
        {"bootstrap.servers", "127.0.0.1:9092"},
        {"statistics.interval.ms", "1000"},
        {"socket.keepalive.enable", "true"},
    };
    static const char *producer[][2] = {
        {"acks", "all"},
        {"linger.ms", "1"},
        {"message.timeout.ms", "30000"},
        /* Idempotence stays off: duplicates are dropped by ce_id downstream, and the mock
         * cluster silently drops batches on injected errors when it is on. */
        {"enable.idempotence", "false"},
    };
    static const char *consumer[][2] = {
        {"enable.auto.commit", "true"},        {"auto.commit.interval.ms", "1000"},
        {"enable.auto.offset.store", "false"}, {"auto.offset.reset", "earliest"},
        {"session.timeout.ms", "6000"},        {"heartbeat.interval.ms", "1000"},
        {"fetch.wait.max.ms", "10"},           {"enable.partition.eof", "false"},
    };
    for (size_t i = 0; i < sizeof(common) / sizeof(common[0]); i++)
        if (set_prop(&ctx, common[i][0], common[i][1]) != 0)
            goto fail;
    if (role == FL_KAFKA_PRODUCER) {
        for (size_t i = 0; i < sizeof(producer) / sizeof(producer[0]); i++)
            if (set_prop(&ctx, producer[i][0], producer[i][1]) != 0)
                goto fail;
    } else {
        for (size_t i = 0; i < sizeof(consumer) / sizeof(consumer[0]); i++)
            if (set_prop(&ctx, consumer[i][0], consumer[i][1]) != 0)
                goto fail;
        if (group_id != NULL && set_prop(&ctx, "group.id", group_id) != 0)
            goto fail;
    }
    if (client_id != NULL && set_prop(&ctx, "client.id", client_id) != 0)
        goto fail;
    if (fl_config_each_kafka(cfg, set_prop, &ctx) != 0)
        goto fail;
    /* Consumer-only keys set on a producer (or the reverse) are harmless warnings in librdkafka;
     * a user passing kafka.* for one worker gets it on both handles. */
    rd_kafka_conf_set_log_cb(conf, log_cb);
    if (setup != NULL)
        setup(conf, setup_arg);
    char errstr[512];
    rk = rd_kafka_new(role == FL_KAFKA_PRODUCER ? RD_KAFKA_PRODUCER : RD_KAFKA_CONSUMER, conf,
                      errstr, sizeof(errstr));
    if (rk == NULL) {
        fl_error_set(err, FL_EKAFKA, false, "kafka: %s", errstr);
        goto fail;
    }
    return rk; /* rd_kafka_new took the conf */
fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

static int topic_exists(const rd_kafka_metadata_t *md, const char *topic) {
    for (int i = 0; i < md->topic_cnt; i++)
        if (strcmp(md->topics[i].topic, topic) == 0)
            return md->topics[i].err == RD_KAFKA_RESP_ERR_NO_ERROR &&
                   md->topics[i].partition_cnt > 0;
    return 0;
}

static int create_topics(rd_kafka_t *rk, const char *const *topics, size_t n, int partitions,
                         int replication, int timeout_ms, fl_error_t *err) {
    int rc = 0;
    rd_kafka_NewTopic_t **nt = calloc(n, sizeof(*nt));
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *opts = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_event_t *ev = NULL;
    char errstr[512];
    if (nt == NULL)
        abort();
    rd_kafka_AdminOptions_set_operation_timeout(opts, timeout_ms, errstr, sizeof(errstr));
    for (size_t i = 0; i < n; i++) {
        nt[i] = rd_kafka_NewTopic_new(topics[i], partitions, replication, errstr, sizeof(errstr));
        if (nt[i] == NULL) {
            rc = fl_error_set(err, FL_EKAFKA, false, "create topic %s: %s", topics[i], errstr);
            goto out;
        }
    }
    rd_kafka_CreateTopics(rk, nt, n, opts, q);
    ev = rd_kafka_queue_poll(q, timeout_ms + 2000);
    if (ev == NULL) {
        rc = fl_error_set(err, FL_ETIMEOUT, true, "create topics: no answer in %d ms", timeout_ms);
        goto out;
    }
    if (rd_kafka_event_error(ev)) {
        rc = fl_error_set(err, FL_EKAFKA, true, "create topics: %s",
                          rd_kafka_event_error_string(ev));
        goto out;
    }
    size_t cnt = 0;
    const rd_kafka_topic_result_t **res =
        rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &cnt);
    for (size_t i = 0; i < cnt; i++) {
        rd_kafka_resp_err_t e = rd_kafka_topic_result_error(res[i]);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR && e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
            rc = fl_error_set(err, FL_EKAFKA, false, "create topic %s: %s",
                              rd_kafka_topic_result_name(res[i]),
                              rd_kafka_topic_result_error_string(res[i])
                                  ? rd_kafka_topic_result_error_string(res[i])
                                  : rd_kafka_err2str(e));
            goto out;
        }
        fl_info("kafka: created topic %s (%d partitions)", rd_kafka_topic_result_name(res[i]),
                partitions);
    }
out:
    if (ev)
        rd_kafka_event_destroy(ev);
    for (size_t i = 0; i < n; i++)
        if (nt[i])
            rd_kafka_NewTopic_destroy(nt[i]);
    free(nt);
    rd_kafka_AdminOptions_destroy(opts);
    rd_kafka_queue_destroy(q);
    return rc;
}

int fl_kafka_ensure_topics(rd_kafka_t *rk, const char *const *topics, size_t ntopics, bool create,
                           int partitions, int replication, int timeout_ms, fl_error_t *err) {
    const rd_kafka_metadata_t *md = NULL;
    const char **missing = calloc(ntopics ? ntopics : 1, sizeof(*missing));
    size_t nmissing = 0;
    int rc = 0;
    if (missing == NULL)
        abort();
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 1, NULL, &md, timeout_ms);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rc = fl_error_set(err, FL_EKAFKA, true, "kafka: cannot read cluster metadata: %s",
                          rd_kafka_err2str(e));
        goto out;
    }
    for (size_t i = 0; i < ntopics; i++)
        if (!topic_exists(md, topics[i]))
            missing[nmissing++] = topics[i];
    if (nmissing == 0)
        goto out;
    if (!create) {
        rc = fl_error_set(err, FL_ENOTFOUND, false,
                          "kafka: topic %s does not exist (%zu missing; create it, or start with "
                          "--topics.create=true)",
                          missing[0], nmissing);
        goto out;
    }
    rc = create_topics(rk, missing, nmissing, partitions, replication, timeout_ms, err);
out:
    if (md)
        rd_kafka_metadata_destroy(md);
    free(missing);
    return rc;
}

static void add_str(rd_kafka_headers_t *hdrs, const char *name, const char *value) {
    rd_kafka_header_add(hdrs, name, -1, value ? value : "", -1);
}

void fl_kafka_headers_add_ce(rd_kafka_headers_t *hdrs, const fl_ce_t *ce) {
    char t[40];
    fl_kafka_format_time(ce->time_ms, t, sizeof(t));
    add_str(hdrs, "ce_specversion", "1.0");
    add_str(hdrs, "ce_id", ce->id);
    add_str(hdrs, "ce_type", ce->type);
    add_str(hdrs, "ce_source", ce->source);
    add_str(hdrs, "ce_time", t);
    if (ce->subject != NULL)
        add_str(hdrs, "ce_subject", ce->subject);
    add_str(hdrs, "content-type", "application/avro");
    add_str(hdrs, "traceparent", ce->traceparent);
}

const char *fl_kafka_header_str(const rd_kafka_message_t *rkm, const char *name, char *buf,
                                size_t len) {
    rd_kafka_headers_t *hdrs = NULL;
    const void *val = NULL;
    size_t size = 0;
    if (rd_kafka_message_headers(rkm, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return NULL;
    if (rd_kafka_header_get_last(hdrs, name, &val, &size) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        val == NULL)
        return NULL;
    if (size >= len)
        size = len - 1;
    for (size_t i = 0; i < size; i++) {
        unsigned char c = ((const unsigned char *)val)[i];
        if (c < 0x20 || c == 0x7f)
            return NULL;
    }
    memcpy(buf, val, size);
    buf[size] = '\0';
    return buf;
}
