#include "fl_worker.h"
#include "fl_mem.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "fl_http.h"
#include "fl_id.h"
#include "fl_kafka.h"
#include "fl_log.h"

extern char **environ;

#define TICK_MS 50
#define DRAIN_BATCH 500

typedef struct part {
    char *topic;
    int32_t partition;
    fl_job_t *head, *tail; /* jobs of the current generation, offset order */
    int64_t rewind;        /* offset to seek back to on recovery, -1 = none */
    int64_t store;         /* offset to store at the next flush, -1 = none */
    bool assigned;
} part_t;

struct fl_job {
    fl_worker_t *w;
    part_t *part; /* NULL once detached by a rewind or a revoke */
    fl_job_t *next;
    fl_job_t *all_prev, *all_next;
    rd_kafka_message_t *rkm;
    char id[160];
    char traceparent[64];
    const char *type_name;
    int pending; /* outstanding deliveries + Redis replies + 1 until fl_job_done */
    bool handler_done;
    bool failed;
    bool complete;
    uint64_t start_ns;
    int64_t received_ms;
    void *ctx;
    void (*ctx_free)(void *);
};

typedef struct redis_op {
    fl_job_t *job;
    fl_job_redis_cb cb;
} redis_op_t;

struct fl_worker {
    const fl_worker_def_t *def;
    void *opaque;
    fl_config_t *cfg;
    fl_codec_t *codec;
    fl_metrics_t *metrics;
    uv_loop_t loop;
    rd_kafka_t *consumer, *producer;
    rd_kafka_queue_t *cq, *pq;
    int cpipe[2], ppipe[2];
    uv_poll_t cpoll, ppoll;
    uv_idle_t idle;
    uv_timer_t tick;
    uv_signal_t sigterm, sigint;
    fl_redis_t *redis;
    fl_http_t *http;
    part_t **parts;
    size_t nparts;
    fl_job_t *all;
    int inflight, max_inflight;
    bool blocked;
    bool degraded;
    uint64_t retry_at;
    int backoff_ms, backoff_first_ms, backoff_max_ms;
    char degraded_why[256];
    bool draining, closing;
    bool loop_init, handles_init;
    uint64_t drain_deadline;
    bool kafka_up; /* producer_up || consumer_up */
    bool producer_up, consumer_up;
    int64_t consumer_lag;
    unsigned long redis_errors_seen;
    char **in_topics;
    size_t nin;
    char dlq_topic[256];
    char source[128];
    int exit_code;
    struct {
        int kind;
        const char *type;
        fl_metrics_counter_t *c;
    } counters[64];
    size_t ncounters;
    fl_metrics_histogram_t *latency;
};

/* ---------- small helpers ---------- */

static void count(fl_worker_t *w, const char *name, const char *help, const char *label_key,
                  const char *label_val) {
    char labels[256] = "";
    if (label_key != NULL)
        fl_metrics_label_append(labels, sizeof(labels), label_key, label_val);
    fl_metrics_counter_add(w->metrics, name, help, label_key ? labels : NULL, 1);
}

/* Per-event counters by type label, resolved once: labels are the codec's type names, whose
 * pointers live as long as the worker, so the cache is keyed by pointer. */
static fl_metrics_counter_t *type_counter(fl_worker_t *w, int kind, const char *type) {
    for (size_t i = 0; i < w->ncounters; i++)
        if (w->counters[i].kind == kind && w->counters[i].type == type)
            return w->counters[i].c;
    char labels[128] = "";
    fl_metrics_label_append(labels, sizeof(labels), "type", type);
    fl_metrics_counter_t *c =
        kind == 0 ? fl_metrics_counter(w->metrics, "events_in_total", "Events consumed", labels)
                  : fl_metrics_counter(w->metrics, "events_out_total", "Events produced", labels);
    if (c != NULL && w->ncounters < sizeof(w->counters) / sizeof(w->counters[0])) {
        w->counters[w->ncounters].kind = kind;
        w->counters[w->ncounters].type = type;
        w->counters[w->ncounters].c = c;
        w->ncounters++;
    }
    return c;
}

static void count_type(fl_worker_t *w, int kind, const char *type) {
    fl_metrics_counter_t *c = type_counter(w, kind, type);
    if (c != NULL)
        fl_metrics_inc(c, 1);
}

/* ---------- partitions ---------- */

static part_t *part_get(fl_worker_t *w, const char *topic, int32_t partition, bool create) {
    for (size_t i = 0; i < w->nparts; i++)
        if (w->parts[i]->partition == partition && strcmp(w->parts[i]->topic, topic) == 0)
            return w->parts[i];
    if (!create)
        return NULL;
    part_t *p = fl_mem_calloc(1, sizeof(*p));
    p->topic = fl_mem_strdup(topic);
    p->partition = partition;
    p->rewind = -1;
    p->store = -1;
    w->parts = realloc(w->parts, (w->nparts + 1) * sizeof(*w->parts));
    if (w->parts == NULL)
        abort();
    w->parts[w->nparts++] = p;
    return p;
}

static void idle_cb(uv_idle_t *h);

static void job_free(fl_job_t *job) {
    fl_worker_t *w = job->w;
    if (job->all_prev)
        job->all_prev->all_next = job->all_next;
    else
        w->all = job->all_next;
    if (job->all_next)
        job->all_next->all_prev = job->all_prev;
    if (job->ctx_free)
        job->ctx_free(job->ctx);
    if (job->rkm)
        rd_kafka_message_destroy(job->rkm);
    free(job);
}

/* Detach every job of a partition: they finish on their own but never store an offset. */
static void part_detach(part_t *p) {
    fl_job_t *j = p->head;
    while (j != NULL) {
        fl_job_t *next = j->next;
        j->part = NULL;
        j->next = NULL;
        if (j->complete)
            job_free(j);
        j = next;
    }
    p->head = p->tail = NULL;
}

/* Pop completed jobs off the head and store the offset after the last one. */
static void part_advance(fl_worker_t *w, part_t *p) {
    int64_t next = -1;
    while (p->head != NULL && p->head->complete) {
        fl_job_t *j = p->head;
        p->head = j->next;
        if (p->head == NULL)
            p->tail = NULL;
        next = j->rkm->offset + 1;
        job_free(j);
    }
    if (next >= 0)
        p->store = next;
}

/* Store every partition's completed offset in one call (once per loop pass, not per event). */
static void flush_offsets(fl_worker_t *w) {
    rd_kafka_topic_partition_list_t *list = NULL;
    for (size_t i = 0; i < w->nparts; i++) {
        part_t *p = w->parts[i];
        if (p->store < 0)
            continue;
        if (p->assigned) {
            if (list == NULL)
                list = rd_kafka_topic_partition_list_new((int)w->nparts);
            rd_kafka_topic_partition_list_add(list, p->topic, p->partition)->offset = p->store;
        }
        p->store = -1;
    }
    if (list == NULL)
        return;
    rd_kafka_resp_err_t err = rd_kafka_offsets_store(w->consumer, list);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
        fl_debug("offset store: %s", rd_kafka_err2str(err));
    rd_kafka_topic_partition_list_destroy(list);
}

static rd_kafka_topic_partition_list_t *assignment(fl_worker_t *w) {
    rd_kafka_topic_partition_list_t *list = NULL;
    if (rd_kafka_assignment(w->consumer, &list) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return NULL;
    return list;
}

static void pause_all(fl_worker_t *w) {
    rd_kafka_topic_partition_list_t *list = assignment(w);
    if (list == NULL)
        return;
    if (list->cnt > 0)
        rd_kafka_pause_partitions(w->consumer, list);
    rd_kafka_topic_partition_list_destroy(list);
}

/* ---------- degraded mode: pause, rewind, retry ---------- */

static void degrade(fl_worker_t *w, const char *why) {
    if (w->closing)
        return;
    if (w->degraded)
        return;
    w->degraded = true;
    snprintf(w->degraded_why, sizeof(w->degraded_why), "%s", why);
    fl_warn("pausing consumption: %s (retrying in %d ms)", why, w->backoff_ms);
    count(w, "degraded_total", "Times the worker paused for a failed dependency", NULL, NULL);
    for (size_t i = 0; i < w->nparts; i++) {
        part_t *p = w->parts[i];
        if (p->head != NULL && (p->rewind < 0 || p->head->rkm->offset < p->rewind))
            p->rewind = p->head->rkm->offset;
        part_detach(p);
    }
    pause_all(w);
    w->retry_at = uv_now(&w->loop) + (uint64_t)w->backoff_ms;
}

static bool dependencies_up(fl_worker_t *w) {
    if (w->def->uses_redis && !fl_redis_up(w->redis))
        return false;
    return w->kafka_up;
}

static void recover(fl_worker_t *w) {
    rd_kafka_topic_partition_list_t *seek = rd_kafka_topic_partition_list_new(4);
    for (size_t i = 0; i < w->nparts; i++) {
        part_t *p = w->parts[i];
        if (p->assigned && p->rewind >= 0)
            rd_kafka_topic_partition_list_add(seek, p->topic, p->partition)->offset = p->rewind;
        p->rewind = -1;
    }
    if (seek->cnt > 0) {
        rd_kafka_error_t *error = rd_kafka_seek_partitions(w->consumer, seek, 5000);
        if (error != NULL) {
            fl_warn("rewind failed: %s", rd_kafka_error_string(error));
            rd_kafka_error_destroy(error);
        }
    }
    rd_kafka_topic_partition_list_destroy(seek);
    rd_kafka_topic_partition_list_t *list = assignment(w);
    if (list != NULL) {
        if (list->cnt > 0)
            rd_kafka_resume_partitions(w->consumer, list);
        rd_kafka_topic_partition_list_destroy(list);
    }
    w->degraded = false;
    w->backoff_ms = w->backoff_first_ms;
    fl_info("dependencies answer again: resuming consumption");
    uv_idle_start(&w->idle, idle_cb);
}

/* ---------- jobs ---------- */

static void job_finish(fl_job_t *job) {
    fl_worker_t *w = job->w;
    w->inflight--;
    double secs = (double)(uv_hrtime() - job->start_ns) / 1e9;
    if (w->latency == NULL)
        w->latency = fl_metrics_histogram(
            w->metrics, "processing_seconds",
            "Time from consuming an event to its outputs being acknowledged", NULL);
    if (w->latency != NULL)
        fl_metrics_observe(w->latency, secs);
    /* Failing degrades, which detaches every job; only while closing (degrade does nothing) can
     * a failed job still be attached: then nothing after it on its partition may be stored. */
    if (job->failed && job->part != NULL)
        part_detach(job->part);
    if (job->part != NULL) {
        job->complete = true;
        part_advance(w, job->part);
    } else {
        job_free(job);
    }
    if (w->blocked && w->inflight < w->max_inflight && !w->draining) {
        w->blocked = false;
        uv_idle_start(&w->idle, idle_cb);
    }
}

static void job_release(fl_job_t *job) {
    if (--job->pending == 0)
        job_finish(job);
}

fl_worker_t *fl_job_worker(fl_job_t *job) {
    return job->w;
}
const char *fl_job_id(const fl_job_t *job) {
    return job->id;
}
const char *fl_job_topic(const fl_job_t *job) {
    return rd_kafka_topic_name(job->rkm->rkt);
}
int32_t fl_job_partition(const fl_job_t *job) {
    return job->rkm->partition;
}
int64_t fl_job_offset(const fl_job_t *job) {
    return job->rkm->offset;
}
const void *fl_job_key(const fl_job_t *job, size_t *len) {
    *len = job->rkm->key_len;
    return job->rkm->key;
}
int64_t fl_job_received_ms(const fl_job_t *job) {
    return job->received_ms;
}
void fl_job_set_ctx(fl_job_t *job, void *ctx, void (*free_fn)(void *)) {
    job->ctx = ctx;
    job->ctx_free = free_fn;
}
void *fl_job_ctx(fl_job_t *job) {
    return job->ctx;
}

void fl_job_done(fl_job_t *job) {
    if (job->handler_done)
        return;
    job->handler_done = true;
    job_release(job);
}

void fl_job_retry(fl_job_t *job, const char *why) {
    fl_worker_t *w = job->w;
    job->failed = true;
    count(w, "events_failed_total", "Events whose processing failed and will be retried", "type",
          job->type_name ? job->type_name : "unknown");
    degrade(w, why);
    fl_job_done(job);
}

/* Produce bytes with CloudEvents headers plus extra headers; the job waits for delivery. */
static int job_produce(fl_job_t *job, const char *topic, const char *ce_type, const char *step,
                       const void *key, size_t keylen, const void *buf, size_t len,
                       rd_kafka_headers_t *hdrs, const char *type_label) {
    fl_worker_t *w = job->w;
    char id[FL_ID_LEN];
    char tp[56];
    char subject[256];
    fl_id_derive(job->id, step, id);
    fl_id_traceparent(job->traceparent[0] ? job->traceparent : NULL, job->id, step, tp);
    size_t sn = keylen < sizeof(subject) - 1 ? keylen : sizeof(subject) - 1;
    memcpy(subject, key ? key : "", key ? sn : 0);
    subject[key ? sn : 0] = '\0';
    fl_ce_t ce = {id, ce_type, w->source, key ? subject : NULL, tp, fl_now_ms()};
    fl_kafka_headers_add_ce(hdrs, &ce);
    rd_kafka_resp_err_t err = rd_kafka_producev(
        w->producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_KEY(key, keylen), RD_KAFKA_V_VALUE((void *)buf, len), RD_KAFKA_V_HEADERS(hdrs),
        RD_KAFKA_V_OPAQUE(job), RD_KAFKA_V_END);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_headers_destroy(hdrs);
        char why[300];
        snprintf(why, sizeof(why), "produce to %s failed: %s", topic, rd_kafka_err2str(err));
        fl_job_retry(job, why);
        return FL_EKAFKA;
    }
    job->pending++;
    count_type(w, 1, type_label);
    return 0;
}

int fl_job_emit(fl_job_t *job, const fl_event_type_t *type, const void *key, size_t keylen,
                avro_value_t *value, const char *step) {
    fl_worker_t *w = job->w;
    const void *buf;
    size_t len;
    fl_error_t err = {0};
    if (fl_codec_encode(w->codec, type, value, &buf, &len, &err) != 0) {
        /* The worker built a value its own schema refuses: record the input, do not loop. */
        char why[600];
        snprintf(why, sizeof(why), "encoding %s failed: %s", fl_event_type_name(type), err.text);
        fl_job_dead_letter(job, "ENCODE_FAILED", why);
        return FL_EENCODE;
    }
    char topic[256];
    fl_config_topic(w->cfg, fl_event_type_name(type), topic, sizeof(topic));
    return job_produce(job, topic, fl_event_type_full_name(type), step, key, keylen, buf, len,
                       rd_kafka_headers_new(8), fl_event_type_name(type));
}

static void set_field_str(avro_value_t *rec, const char *name, const char *s) {
    avro_value_t f;
    if (avro_value_get_by_name(rec, name, &f, NULL) == 0)
        avro_value_set_string(&f, s);
}

void fl_job_dead_letter(fl_job_t *job, const char *code, const char *reason) {
    fl_worker_t *w = job->w;
    const fl_event_type_t *dl = fl_codec_type(w->codec, "dead_letter");
    avro_value_t v, f, b;
    const void *buf;
    size_t len;
    fl_error_t err = {0};
    fl_warn("dead letter %s[%d]@%lld %s: %s", fl_job_topic(job), fl_job_partition(job),
            (long long)fl_job_offset(job), code, reason);
    count(w, "events_dead_lettered_total", "Events sent to the dead-letter topic", "reason", code);
    fl_event_type_new_value(dl, &v);
    set_field_str(&v, "reason_code", code);
    set_field_str(&v, "reason", reason);
    set_field_str(&v, "worker", w->def->name);
    set_field_str(&v, "source_topic", fl_job_topic(job));
    if (avro_value_get_by_name(&v, "source_partition", &f, NULL) == 0)
        avro_value_set_int(&f, fl_job_partition(job));
    if (avro_value_get_by_name(&v, "source_offset", &f, NULL) == 0)
        avro_value_set_long(&f, fl_job_offset(job));
    if (avro_value_get_by_name(&v, "payload", &f, NULL) == 0)
        avro_value_set_bytes(&f, job->rkm->payload ? job->rkm->payload : (void *)"", job->rkm->len);
    if (avro_value_get_by_name(&v, "key", &f, NULL) == 0) {
        if (job->rkm->key != NULL) {
            avro_value_set_branch(&f, 1, &b);
            avro_value_set_bytes(&b, job->rkm->key, job->rkm->key_len);
        } else {
            avro_value_set_branch(&f, 0, &b);
            avro_value_set_null(&b);
        }
    }
    if (avro_value_get_by_name(&v, "dead_lettered_at", &f, NULL) == 0)
        avro_value_set_long(&f, job->received_ms);
    if (fl_codec_encode(w->codec, dl, &v, &buf, &len, &err) != 0) {
        fl_error("cannot encode dead letter: %s", err.text);
        avro_value_decref(&v);
        fl_job_retry(job, "dead-letter encoding failed");
        return;
    }
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(12);
    char num[32];
    rd_kafka_header_add(hdrs, "fl_dlq_reason_code", -1, code, -1);
    rd_kafka_header_add(hdrs, "fl_dlq_reason", -1, reason, -1);
    rd_kafka_header_add(hdrs, "fl_dlq_source_topic", -1, fl_job_topic(job), -1);
    snprintf(num, sizeof(num), "%d", (int)fl_job_partition(job));
    rd_kafka_header_add(hdrs, "fl_dlq_source_partition", -1, num, -1);
    snprintf(num, sizeof(num), "%lld", (long long)fl_job_offset(job));
    rd_kafka_header_add(hdrs, "fl_dlq_source_offset", -1, num, -1);
    rd_kafka_header_add(hdrs, "fl_dlq_worker", -1, w->def->name, -1);
    job_produce(job, w->dlq_topic, fl_event_type_full_name(dl), "dead-letter", job->rkm->key,
                job->rkm->key_len, buf, len, hdrs, "dead_letter");
    avro_value_decref(&v);
    fl_job_done(job);
}

void fl_job_redis_failed(fl_job_t *job, redisReply *reply, int err) {
    if (reply != NULL && reply->type == REDIS_REPLY_ERROR && reply->str != NULL &&
        (strncmp(reply->str, "WRONGTYPE", 9) == 0 || strncmp(reply->str, "ERR", 3) == 0)) {
        char why[300];
        snprintf(why, sizeof(why), "redis refused the state change: %.250s", reply->str);
        fl_job_dead_letter(job, "STATE_ERROR", why);
        return;
    }
    fl_job_retry(job, err == FL_ETIMEOUT ? "redis deadline passed" : "redis unreachable or busy");
}

static void redis_reply(void *arg, redisReply *reply, int err) {
    redis_op_t *op = arg;
    fl_job_t *job = op->job;
    if (!job->failed && !job->w->closing)
        op->cb(job, reply, err);
    else if (err != 0 && !job->failed)
        job->failed = true;
    free(op);
    job_release(job);
}

static int job_redis_sent(fl_job_t *job, redis_op_t *op, int rc) {
    if (rc != 0) {
        free(op);
        fl_job_retry(job, "redis unreachable");
        return rc;
    }
    job->pending++;
    return 0;
}

int fl_job_redis(fl_job_t *job, int argc, const char **argv, const size_t *argvlen,
                 fl_job_redis_cb cb) {
    redis_op_t *op = fl_mem_calloc(1, sizeof(*op));
    op->job = job;
    op->cb = cb;
    return job_redis_sent(job, op,
                          fl_redis_command(job->w->redis, argc, argv, argvlen, redis_reply, op));
}

int fl_job_redis_eval(fl_job_t *job, const fl_redis_script_t *script, int numkeys, int argc,
                      const char **argv, const size_t *argvlen, fl_job_redis_cb cb) {
    redis_op_t *op = fl_mem_calloc(1, sizeof(*op));
    op->job = job;
    op->cb = cb;
    return job_redis_sent(
        job, op,
        fl_redis_eval(job->w->redis, script, numkeys, argc, argv, argvlen, redis_reply, op));
}

/* ---------- consuming ---------- */

static const char *expected_type(fl_worker_t *w, const char *topic) {
    for (size_t i = 0; i < w->nin; i++)
        if (strcmp(w->in_topics[i], topic) == 0)
            return w->def->inputs[i];
    return NULL;
}

static void on_message(fl_worker_t *w, rd_kafka_message_t *rkm) {
    if (rkm->err) {
        if (rkm->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            fl_warn("consume: %s", rd_kafka_message_errstr(rkm));
        rd_kafka_message_destroy(rkm);
        return;
    }
    const char *topic = rd_kafka_topic_name(rkm->rkt);
    part_t *p = part_get(w, topic, rkm->partition, true);
    if (w->degraded || !p->assigned) {
        /* Paused: this prefetched message is replayed after the rewind. */
        if (p->rewind < 0 || rkm->offset < p->rewind)
            p->rewind = rkm->offset;
        rd_kafka_message_destroy(rkm);
        return;
    }
    fl_job_t *job = fl_mem_calloc(1, sizeof(*job));
    job->w = w;
    job->rkm = rkm;
    job->part = p;
    job->pending = 1;
    job->start_ns = uv_hrtime();
    job->received_ms = fl_now_ms();
    job->all_next = w->all;
    if (w->all)
        w->all->all_prev = job;
    w->all = job;
    if (p->tail)
        p->tail->next = job;
    else
        p->head = job;
    p->tail = job;
    w->inflight++;
    if (fl_kafka_header_str(rkm, "ce_id", job->id, sizeof(job->id)) == NULL || job->id[0] == 0)
        snprintf(job->id, sizeof(job->id), "%s/%d/%lld", topic, (int)rkm->partition,
                 (long long)rkm->offset);
    fl_kafka_header_str(rkm, "traceparent", job->traceparent, sizeof(job->traceparent));
    const char *want = expected_type(w, topic);
    if (want != NULL)
        count_type(w, 0, want);
    else
        count(w, "events_in_total", "Events consumed", "type", topic);

    const fl_event_type_t *type = NULL;
    avro_value_t *value = NULL;
    fl_error_t err = {0};
    int rc =
        fl_codec_decode(w->codec, rkm->payload, rkm->payload ? rkm->len : 0, &type, &value, &err);
    if (rc == FL_EFINGERPRINT) {
        fl_job_dead_letter(job, "UNKNOWN_FINGERPRINT", err.text);
        return;
    }
    if (rc != 0) {
        fl_job_dead_letter(job, "UNDECODABLE", err.text);
        return;
    }
    job->type_name = fl_event_type_name(type);
    if (want != NULL && strcmp(want, job->type_name) != 0) {
        char why[300];
        snprintf(why, sizeof(why), "topic %s carries %s events, got %s", topic, want,
                 job->type_name);
        fl_job_dead_letter(job, "UNEXPECTED_TYPE", why);
        return;
    }
    w->def->handle(job, type, value, w->opaque);
}

static void drain_consumer(fl_worker_t *w) {
    int n = 0;
    while (n < DRAIN_BATCH) {
        if (w->draining || w->closing) {
            uv_idle_stop(&w->idle);
            return;
        }
        if (w->inflight >= w->max_inflight) {
            w->blocked = true;
            uv_idle_stop(&w->idle);
            return;
        }
        rd_kafka_message_t *rkm = rd_kafka_consumer_poll(w->consumer, 0);
        if (rkm == NULL)
            break;
        on_message(w, rkm);
        n++;
    }
    if (n == DRAIN_BATCH)
        uv_idle_start(&w->idle, idle_cb);
    else
        uv_idle_stop(&w->idle);
    flush_offsets(w);
}

static void drain_pipe(int fd) {
    char buf[256];
    while (read(fd, buf, sizeof(buf)) > 0) {
    }
}

static void consumer_poll_cb(uv_poll_t *h, int status, int events) {
    fl_worker_t *w = h->data;
    drain_pipe(w->cpipe[0]);
    drain_consumer(w);
}

static void idle_cb(uv_idle_t *h) {
    drain_consumer(h->data);
}

static void producer_poll_cb(uv_poll_t *h, int status, int events) {
    fl_worker_t *w = h->data;
    drain_pipe(w->ppipe[0]);
    rd_kafka_poll(w->producer, 0);
    flush_offsets(w);
}

/* ---------- librdkafka callbacks (served on the loop thread by the polls above) ---------- */

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *rkm, void *opaque) {
    fl_job_t *job = rkm->_private;
    if (job == NULL)
        return;
    fl_worker_t *w = job->w;
    if (rkm->err) {
        char why[300];
        snprintf(why, sizeof(why), "delivery to %s failed: %s", rd_kafka_topic_name(rkm->rkt),
                 rd_kafka_err2str(rkm->err));
        fl_warn("%s", why);
        count(w, "delivery_failures_total", "Produced events Kafka did not acknowledge", NULL,
              NULL);
        if (!job->failed) {
            job->failed = true;
            degrade(w, why);
        }
    } else {
        w->producer_up = true;
        w->kafka_up = true;
    }
    job_release(job);
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
    fl_worker_t *w = opaque;
    fl_warn("kafka: %s: %s", rd_kafka_err2name(err), reason);
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
        if (rk == w->producer)
            w->producer_up = false;
        else
            w->consumer_up = false;
        w->kafka_up = w->producer_up || w->consumer_up;
    }
    if (rd_kafka_fatal_error(rk, NULL, 0) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fl_error("kafka: fatal error, shutting down");
        w->exit_code = 1;
    }
}

static int stats_cb(rd_kafka_t *rk, char *json, size_t len, void *opaque) {
    fl_worker_t *w = opaque;
    json_t *root = json_loadb(json, len, 0, NULL);
    if (root == NULL)
        return 0;
    json_t *brokers = json_object_get(root, "brokers");
    const char *name;
    json_t *b;
    bool up = false;
    json_object_foreach(brokers, name, b) {
        const char *state = json_string_value(json_object_get(b, "state"));
        if (state != NULL && strcmp(state, "UP") == 0)
            up = true;
    }
    /* Either client with a live broker connection means Kafka answers: an idle producer's
     * connections may be closed by the broker (connections.max.idle.ms) and only reopen on the
     * next produce, while the consumer keeps fetching. */
    if (rk == w->producer)
        w->producer_up = up;
    else
        w->consumer_up = up;
    w->kafka_up = w->producer_up || w->consumer_up;
    if (rk != w->producer) {
        int64_t lag = 0;
        json_t *topics = json_object_get(root, "topics");
        json_t *t, *parts, *pv;
        json_object_foreach(topics, name, t) {
            parts = json_object_get(t, "partitions");
            const char *pname;
            json_object_foreach(parts, pname, pv) {
                json_int_t l = json_integer_value(json_object_get(pv, "consumer_lag"));
                if (l > 0 && strcmp(pname, "-1") != 0)
                    lag += l;
            }
        }
        w->consumer_lag = lag;
    }
    json_decref(root);
    return 0;
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *list, void *opaque) {
    fl_worker_t *w = opaque;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        fl_info("assigned %d partitions", list->cnt);
        for (int i = 0; i < list->cnt; i++) {
            part_t *p = part_get(w, list->elems[i].topic, list->elems[i].partition, true);
            part_detach(p);
            p->assigned = true;
            p->rewind = -1;
            p->store = -1;
        }
        rd_kafka_assign(rk, list);
        if (w->degraded || w->draining)
            rd_kafka_pause_partitions(rk, list);
    } else {
        fl_info("revoked %d partitions", list->cnt);
        flush_offsets(w);
        for (int i = 0; i < list->cnt; i++) {
            part_t *p = part_get(w, list->elems[i].topic, list->elems[i].partition, false);
            if (p != NULL) {
                part_detach(p);
                p->assigned = false;
                p->rewind = -1;
            }
        }
        rd_kafka_assign(rk, NULL);
    }
}

static void producer_setup(rd_kafka_conf_t *conf, void *arg) {
    rd_kafka_conf_set_opaque(conf, arg);
    rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    rd_kafka_conf_set_stats_cb(conf, stats_cb);
}

static void consumer_setup(rd_kafka_conf_t *conf, void *arg) {
    rd_kafka_conf_set_opaque(conf, arg);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    rd_kafka_conf_set_stats_cb(conf, stats_cb);
    rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
}

/* ---------- health and metrics ---------- */

static bool ready(fl_worker_t *w, const char **why) {
    if (w->draining) {
        *why = "draining";
        return false;
    }
    if (w->def->uses_redis && !fl_redis_up(w->redis)) {
        *why = "redis unreachable";
        return false;
    }
    if (!w->kafka_up) {
        *why = "kafka unreachable";
        return false;
    }
    if (w->degraded) {
        *why = w->degraded_why;
        return false;
    }
    *why = "ready";
    return true;
}

static char *text(const char *s, size_t *len) {
    char *b = fl_mem_strdup(s);
    *len = strlen(b);
    return b;
}

static void http_cb(void *opaque, const char *method, const char *path, fl_http_response_t *resp) {
    fl_worker_t *w = opaque;
    resp->content_type = "text/plain; charset=utf-8";
    if (strcmp(path, "/healthz") == 0) {
        resp->status = 200;
        resp->body = text("ok\n", &resp->body_len);
    } else if (strcmp(path, "/readyz") == 0) {
        const char *why;
        bool ok = ready(w, &why);
        char buf[320];
        snprintf(buf, sizeof(buf), "%s\n", why);
        resp->status = ok ? 200 : 503;
        resp->body = text(buf, &resp->body_len);
    } else if (strcmp(path, "/metrics") == 0) {
        resp->status = 200;
        resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
        resp->body = fl_metrics_render(w->metrics, &resp->body_len);
    } else {
        resp->status = 404;
        resp->body = text("not found\n", &resp->body_len);
    }
}

static void update_gauges(fl_worker_t *w) {
    const char *why;
    fl_metrics_gauge_set(w->metrics, "ready", "1 when the worker is ready", NULL,
                         ready(w, &why) ? 1 : 0);
    fl_metrics_gauge_set(w->metrics, "events_in_flight", "Events being processed", NULL,
                         w->inflight);
    fl_metrics_gauge_set(w->metrics, "consumer_lag", "Messages behind the end of the input topics",
                         NULL, (double)w->consumer_lag);
    if (w->redis != NULL) {
        unsigned long e = fl_redis_error_count(w->redis);
        if (e > w->redis_errors_seen)
            fl_metrics_counter_add(w->metrics, "redis_errors_total",
                                   "Redis commands failed by deadline or connection loss", NULL,
                                   (double)(e - w->redis_errors_seen));
        else
            fl_metrics_counter_add(w->metrics, "redis_errors_total",
                                   "Redis commands failed by deadline or connection loss", NULL, 0);
        w->redis_errors_seen = e;
        fl_metrics_gauge_set(w->metrics, "redis_up", "1 when Redis answers", NULL,
                             fl_redis_up(w->redis) ? 1 : 0);
    }
}

/* ---------- shutdown ---------- */

static void close_cb(uv_handle_t *h) {
    (void)h;
}

static void close_all(fl_worker_t *w) {
    if (w->closing)
        return;
    w->closing = true;
    rd_kafka_queue_io_event_enable(w->cq, -1, NULL, 0);
    rd_kafka_queue_io_event_enable(w->pq, -1, NULL, 0);
    uv_close((uv_handle_t *)&w->cpoll, close_cb);
    uv_close((uv_handle_t *)&w->ppoll, close_cb);
    uv_close((uv_handle_t *)&w->idle, close_cb);
    uv_close((uv_handle_t *)&w->tick, close_cb);
    uv_close((uv_handle_t *)&w->sigterm, close_cb);
    uv_close((uv_handle_t *)&w->sigint, close_cb);
    fl_redis_close(w->redis);
    w->redis = NULL;
    if (w->http != NULL)
        fl_http_stop(w->http);
    w->http = NULL;
}

static void finish_drain(fl_worker_t *w) {
    uint64_t now = uv_now(&w->loop);
    int left = w->drain_deadline > now ? (int)(w->drain_deadline - now) : 0;
    rd_kafka_flush(w->producer, left > 100 ? left : 100);
    flush_offsets(w);
    if (w->inflight > 0)
        fl_warn("shutdown: %d events still in flight after %lld ms; they will be redelivered",
                w->inflight, fl_config_int(w->cfg, "shutdown.timeout.ms"));
    rd_kafka_resp_err_t err = rd_kafka_commit(w->consumer, NULL, 0);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
        fl_warn("final commit: %s", rd_kafka_err2str(err));
    fl_info("drained; leaving the group");
    close_all(w);
}

static void begin_drain(fl_worker_t *w, const char *why) {
    if (w->draining)
        return;
    fl_info("%s: draining (%d in flight)", why, w->inflight);
    w->draining = true;
    w->drain_deadline = uv_now(&w->loop) + (uint64_t)fl_config_int(w->cfg, "shutdown.timeout.ms");
    uv_idle_stop(&w->idle);
    pause_all(w);
}

static void signal_cb(uv_signal_t *h, int signum) {
    begin_drain(h->data, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

static void tick_cb(uv_timer_t *h) {
    fl_worker_t *w = h->data;
    uint64_t now = uv_now(&w->loop);
    flush_offsets(w);
    if (w->exit_code != 0 && !w->draining)
        begin_drain(w, "fatal error");
    if (w->draining) {
        if (w->inflight == 0 || now >= w->drain_deadline)
            finish_drain(w);
        return;
    }
    /* No broker answers the producer (statistics or an all-brokers-down error): stop consuming
     * now rather than after the first delivery times out (message.timeout.ms). */
    if (!w->kafka_up && !w->degraded)
        degrade(w, "kafka unreachable");
    if (w->degraded && now >= w->retry_at) {
        if (dependencies_up(w)) {
            recover(w);
        } else {
            w->backoff_ms =
                w->backoff_ms * 2 > w->backoff_max_ms ? w->backoff_max_ms : w->backoff_ms * 2;
            w->retry_at = now + (uint64_t)w->backoff_ms;
            fl_debug("dependencies still down; next try in %d ms", w->backoff_ms);
        }
    }
    update_gauges(w);
}

static void redis_state_cb(void *arg, bool up) {
    fl_worker_t *w = arg;
    if (!up && w->def->uses_redis && !w->closing)
        degrade(w, "redis unreachable");
}

/* ---------- set-up ---------- */

static int make_pipe(int fds[2]) {
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0)
        return FL_EIO;
    return 0;
}

const fl_config_t *fl_worker_config(const fl_worker_t *w) {
    return w->cfg;
}
fl_codec_t *fl_worker_codec(fl_worker_t *w) {
    return w->codec;
}
fl_metrics_t *fl_worker_metrics(fl_worker_t *w) {
    return w->metrics;
}
const char *fl_worker_name(const fl_worker_t *w) {
    return w->def->name;
}
const char *fl_worker_rkey(const fl_worker_t *w, const char *suffix, char *buf, size_t len) {
    snprintf(buf, len, "%s%s", fl_config_str(w->cfg, "redis.key.prefix"), suffix);
    return buf;
}

static int setup(fl_worker_t *w, fl_error_t *err) {
    const fl_worker_def_t *def = w->def;
    char client[128], group[256];
    snprintf(client, sizeof(client), "feedloop-%s", def->name);
    snprintf(w->source, sizeof(w->source), "feedloop/%s", def->name);
    const char *gid = fl_config_str(w->cfg, "group.id");
    snprintf(group, sizeof(group), "%s", gid[0] ? gid : client);
    int rc = fl_codec_new(&w->codec, err);
    if (rc != 0)
        return rc;
    if (fl_codec_type(w->codec, "dead_letter") == NULL)
        return fl_error_set(err, FL_ESCHEMA, false, "schema dead_letter is not compiled in");
    w->metrics = fl_metrics_new("feedloop");
    if (uv_loop_init(&w->loop) != 0)
        return fl_error_set(err, FL_EIO, false, "uv_loop_init failed");
    w->loop_init = true;

    w->producer = fl_kafka_new(w->cfg, FL_KAFKA_PRODUCER, client, NULL, producer_setup, w, err);
    if (w->producer == NULL)
        return FL_EKAFKA;

    /* Topics: every input, every output and the dead-letter topic must exist. */
    size_t nin = 0, nout = 0;
    while (def->inputs[nin])
        nin++;
    while (def->outputs && def->outputs[nout])
        nout++;
    w->nin = nin;
    w->in_topics = fl_mem_calloc(nin, sizeof(char *));
    const char **all = fl_mem_calloc(nin + nout + 1, sizeof(char *));
    char **owned = fl_mem_calloc(nout, sizeof(char *));
    char buf[256];
    for (size_t i = 0; i < nin; i++) {
        if (fl_codec_type(w->codec, def->inputs[i]) == NULL) {
            free(all);
            free(owned);
            return fl_error_set(err, FL_ESCHEMA, false, "no schema for input %s", def->inputs[i]);
        }
        w->in_topics[i] = fl_mem_strdup(fl_config_topic(w->cfg, def->inputs[i], buf, sizeof(buf)));
        all[i] = w->in_topics[i];
    }
    for (size_t i = 0; i < nout; i++) {
        owned[i] = fl_mem_strdup(fl_config_topic(w->cfg, def->outputs[i], buf, sizeof(buf)));
        all[nin + i] = owned[i];
    }
    fl_config_topic(w->cfg, "dead_letter", w->dlq_topic, sizeof(w->dlq_topic));
    all[nin + nout] = w->dlq_topic;
    rc = fl_kafka_ensure_topics(w->producer, all, nin + nout + 1,
                                fl_config_bool(w->cfg, "topics.create"),
                                (int)fl_config_int(w->cfg, "topics.partitions"),
                                (int)fl_config_int(w->cfg, "topics.replication"), 15000, err);
    for (size_t i = 0; i < nout; i++)
        free(owned[i]);
    free(owned);
    free(all);
    if (rc != 0)
        return rc;
    w->kafka_up = w->producer_up = w->consumer_up = true;

    w->consumer = fl_kafka_new(w->cfg, FL_KAFKA_CONSUMER, client, group, consumer_setup, w, err);
    if (w->consumer == NULL)
        return FL_EKAFKA;
    rd_kafka_poll_set_consumer(w->consumer);
    rd_kafka_topic_partition_list_t *subs = rd_kafka_topic_partition_list_new((int)nin);
    for (size_t i = 0; i < nin; i++)
        rd_kafka_topic_partition_list_add(subs, w->in_topics[i], RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t kerr = rd_kafka_subscribe(w->consumer, subs);
    rd_kafka_topic_partition_list_destroy(subs);
    if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR)
        return fl_error_set(err, FL_EKAFKA, false, "subscribe: %s", rd_kafka_err2str(kerr));

    if (make_pipe(w->cpipe) != 0 || make_pipe(w->ppipe) != 0)
        return fl_error_set(err, FL_EIO, false, "pipe: %s", strerror(errno));
    w->cq = rd_kafka_queue_get_consumer(w->consumer);
    w->pq = rd_kafka_queue_get_main(w->producer);
    uv_poll_init(&w->loop, &w->cpoll, w->cpipe[0]);
    uv_poll_init(&w->loop, &w->ppoll, w->ppipe[0]);
    uv_idle_init(&w->loop, &w->idle);
    uv_timer_init(&w->loop, &w->tick);
    uv_signal_init(&w->loop, &w->sigterm);
    uv_signal_init(&w->loop, &w->sigint);
    w->handles_init = true;
    w->cpoll.data = w->ppoll.data = w->idle.data = w->tick.data = w;
    w->sigterm.data = w->sigint.data = w;
    rd_kafka_queue_io_event_enable(w->cq, w->cpipe[1], "1", 1);
    rd_kafka_queue_io_event_enable(w->pq, w->ppipe[1], "1", 1);
    uv_poll_start(&w->cpoll, UV_READABLE, consumer_poll_cb);
    uv_poll_start(&w->ppoll, UV_READABLE, producer_poll_cb);
    uv_signal_start(&w->sigterm, signal_cb, SIGTERM);
    uv_signal_start(&w->sigint, signal_cb, SIGINT);
    uv_timer_start(&w->tick, tick_cb, TICK_MS, TICK_MS);

    if (def->uses_redis) {
        fl_redis_opts_t ro = {
            .host = fl_config_str(w->cfg, "redis.host"),
            .port = (int)fl_config_int(w->cfg, "redis.port"),
            .timeout_ms = (int)fl_config_int(w->cfg, "redis.timeout.ms"),
            .backoff_ms = w->backoff_first_ms,
            .backoff_max_ms = w->backoff_max_ms,
        };
        if ((rc = fl_redis_new(&w->loop, &ro, redis_state_cb, w, &w->redis, err)) != 0)
            return rc;
    }
    int port = (int)fl_config_int(w->cfg, "http.port");
    if (port >= 0) {
        rc = fl_http_start(&w->loop, fl_config_str(w->cfg, "http.host"), port, http_cb, w, &w->http,
                           err);
        if (rc != 0)
            return rc;
        fl_info("serving /healthz /readyz /metrics on %s:%d", fl_config_str(w->cfg, "http.host"),
                fl_http_port(w->http));
    }
    if (def->init != NULL && (rc = def->init(w, w->opaque, err)) != 0)
        return rc;
    /* Anything queued before the pipe was attached would never wake us: drain once now. */
    uv_idle_start(&w->idle, idle_cb);
    return 0;
}

static void teardown(fl_worker_t *w) {
    if (w->handles_init)
        close_all(w);
    if (w->loop_init)
        uv_run(&w->loop, UV_RUN_DEFAULT);
    /* Jobs cut short by a forced shutdown: drop them (their offsets were never stored). The
     * partition lists go first: closing the consumer below revokes, which walks them. */
    for (size_t i = 0; i < w->nparts; i++) {
        w->parts[i]->head = w->parts[i]->tail = NULL;
        w->parts[i]->store = -1;
    }
    while (w->all != NULL)
        job_free(w->all);
    if (w->consumer != NULL) {
        rd_kafka_consumer_close(w->consumer);
    }
    if (w->cq)
        rd_kafka_queue_destroy(w->cq);
    if (w->pq)
        rd_kafka_queue_destroy(w->pq);
    if (w->consumer)
        rd_kafka_destroy(w->consumer);
    if (w->producer) {
        rd_kafka_flush(w->producer, 2000);
        rd_kafka_destroy(w->producer);
    }
    for (int i = 0; i < 2; i++) {
        if (w->cpipe[i] > 0)
            close(w->cpipe[i]);
        if (w->ppipe[i] > 0)
            close(w->ppipe[i]);
    }
    if (w->loop_init) {
        int rc = uv_loop_close(&w->loop);
        if (rc != 0)
            fl_warn("uv_loop_close: %s", uv_strerror(rc));
    }
    for (size_t i = 0; i < w->nparts; i++) {
        free(w->parts[i]->topic);
        free(w->parts[i]);
    }
    free(w->parts);
    for (size_t i = 0; i < w->nin; i++)
        free(w->in_topics[i]);
    free(w->in_topics);
    fl_metrics_destroy(w->metrics);
    fl_codec_destroy(w->codec);
    fl_config_destroy(w->cfg);
}

int fl_worker_main(const fl_worker_def_t *def, void *opaque, int argc, char **argv) {
    fl_worker_t wk;
    fl_worker_t *w = &wk;
    fl_error_t err = {0};
    int code = 0;
    memset(w, 0, sizeof(*w));
    w->cpipe[0] = w->cpipe[1] = w->ppipe[0] = w->ppipe[1] = -1;
    w->def = def;
    w->opaque = opaque;
    char prog[128];
    snprintf(prog, sizeof(prog), "feedloop-%s", def->name);
    w->cfg = fl_config_new(prog, def->summary);
    if (def->keys != NULL)
        fl_config_declare(w->cfg, def->keys, def->nkeys);
    int rc = fl_config_load(w->cfg, argc, argv, environ, &err);
    if (rc == 1) {
        fl_config_destroy(w->cfg);
        return 0;
    }
    if (rc != 0) {
        fprintf(stderr, "%s: %s\n", prog, err.text);
        fl_config_destroy(w->cfg);
        return 2;
    }
    if (fl_config_npos(w->cfg) > 0) {
        fprintf(stderr, "%s: unexpected argument '%s' (see --help)\n", prog,
                fl_config_pos(w->cfg, 0));
        fl_config_destroy(w->cfg);
        return 2;
    }
    fl_log_level_t lvl;
    if (fl_log_level_parse(fl_config_str(w->cfg, "log.level"), &lvl) != 0) {
        fprintf(stderr, "%s: log.level: '%s' is not one of debug, info, warn, error\n", prog,
                fl_config_str(w->cfg, "log.level"));
        fl_config_destroy(w->cfg);
        return 2;
    }
    fl_log_init(prog, lvl);
    if (def->configure != NULL && (rc = def->configure(w->cfg, opaque, &err)) != 0) {
        fprintf(stderr, "%s: %s\n", prog, err.text[0] ? err.text : fl_strerror(rc));
        fl_config_destroy(w->cfg);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    w->max_inflight = (int)fl_config_int(w->cfg, "max.in.flight");
    w->backoff_first_ms = w->backoff_ms = (int)fl_config_int(w->cfg, "retry.backoff.ms");
    w->backoff_max_ms = (int)fl_config_int(w->cfg, "retry.backoff.max.ms");
    rc = setup(w, &err);
    if (rc != 0) {
        fl_error("start-up failed: %s", err.text[0] ? err.text : fl_strerror(rc));
        code = rc == FL_ECONFIG ? 2 : 1;
        goto out;
    }
    fl_info("started: consuming %zu topic(s) as group member", w->nin);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    code = w->exit_code;
out:
    if (def->fini != NULL)
        def->fini(w, opaque);
    teardown(w);
    if (code == 0)
        fl_info("stopped");
    return code;
}
