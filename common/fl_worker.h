/* fl_worker: the runtime every feedloop worker stands on.
 *
 * fl_worker_main() loads config, connects Kafka (consumer group + producer) and Redis, serves
 * /healthz /readyz /metrics, and runs one libuv loop on one thread. Kafka wakes the loop through
 * rd_kafka_queue_io_event_enable() on a non-blocking pipe watched by a uv_poll_t.
 *
 * Each consumed message becomes a job. The runtime decodes it (undecodable bytes, unknown
 * fingerprints and unexpected event types go to the dead-letter topic without reaching the
 * worker) and calls def->handle with the decoded value. The handler converts what it needs
 * (the value is reused after it returns), then issues Redis commands and emits outputs through the
 * job, and calls fl_job_done() when it has issued everything. A job is complete when the handler
 * is done, every output is acknowledged by Kafka and every Redis reply has arrived; only then,
 * and only in offset order per partition, is its offset stored for commit.
 *
 * A transient failure (Redis or Kafka unreachable, a deadline passed) is reported with
 * fl_job_retry(): the worker pauses every partition, reports not ready, rewinds each partition to
 * its oldest incomplete offset, and resumes with backoff once its dependencies answer. Outputs
 * carry deterministic ids (fl_id_derive of the input id and the step), and state scripts record
 * the inputs they applied, so the replay changes nothing twice.
 *
 * SIGTERM/SIGINT drain: stop fetching, finish in-flight jobs, flush, commit, leave the group,
 * exit 0, within shutdown.timeout.ms.
 *
 * Threads: everything here runs on the loop thread. */
#ifndef FL_WORKER_H
#define FL_WORKER_H

#include <avro.h>
#include <stdbool.h>
#include <stdint.h>

#include "fl_codec.h"
#include "fl_config.h"
#include "fl_metrics.h"
#include "fl_redis.h"

typedef struct fl_worker fl_worker_t;
typedef struct fl_job fl_job_t;

typedef struct fl_worker_def {
    const char *name;            /* "validator": client id feedloop-<name>, group default */
    const char *summary;         /* one line for --help */
    const char *const *inputs;   /* event types consumed, NULL-terminated */
    const char *const *outputs;  /* event types produced (checked at start), NULL-terminated */
    const fl_config_key_t *keys; /* worker-specific config keys */
    size_t nkeys;
    bool uses_redis; /* readiness and retries depend on Redis */
    /* Right after the configuration is loaded, before anything connects: read and check the
     * worker's own keys. Non-zero exits 2 (bad configuration) with err's text. May be NULL. */
    int (*configure)(const fl_config_t *cfg, void *opaque, fl_error_t *err);
    /* After config, codec, Redis and Kafka are set up; before consuming. Non-zero aborts start. */
    int (*init)(fl_worker_t *w, void *opaque, fl_error_t *err);
    /* One decoded input. value is borrowed and reused after return. */
    void (*handle)(fl_job_t *job, const fl_event_type_t *type, avro_value_t *value, void *opaque);
    void (*fini)(fl_worker_t *w, void *opaque); /* after the loop ended */
} fl_worker_def_t;

/* Run a worker to completion. Returns the process exit code (0 after a clean drain; 2 for bad
 * configuration; 1 for a start-up failure). */
int fl_worker_main(const fl_worker_def_t *def, void *opaque, int argc, char **argv);

const fl_config_t *fl_worker_config(const fl_worker_t *w);
fl_codec_t *fl_worker_codec(fl_worker_t *w);
fl_metrics_t *fl_worker_metrics(fl_worker_t *w);
const char *fl_worker_name(const fl_worker_t *w);

/* Redis key "<redis.key.prefix><suffix>" into buf. */
const char *fl_worker_rkey(const fl_worker_t *w, const char *suffix, char *buf, size_t len);

/* ---- jobs ---- */

fl_worker_t *fl_job_worker(fl_job_t *job);
const char *fl_job_id(const fl_job_t *job); /* ce_id of the input, or topic/partition/offset */
const char *fl_job_topic(const fl_job_t *job);
int32_t fl_job_partition(const fl_job_t *job);
int64_t fl_job_offset(const fl_job_t *job);
const void *fl_job_key(const fl_job_t *job, size_t *len);
int64_t fl_job_received_ms(const fl_job_t *job);

/* Per-job handler state; free_fn (may be NULL) runs when the job is freed. */
void fl_job_set_ctx(fl_job_t *job, void *ctx, void (*free_fn)(void *));
void *fl_job_ctx(fl_job_t *job);

/* Encode value (type's current schema) and produce it to the type's topic with key and
 * CloudEvents headers; ce_id = fl_id_derive(job id, step). Returns 0, or a negative code after
 * which the job has already been failed (retry or dead letter) — the handler just returns. */
int fl_job_emit(fl_job_t *job, const fl_event_type_t *type, const void *key, size_t keylen,
                avro_value_t *value, const char *step);

/* Redis command / script on behalf of the job; cb runs once on the loop with the reply. A
 * command that cannot be sent fails the job with a retry and returns non-zero (cb not called). */
typedef void (*fl_job_redis_cb)(fl_job_t *job, redisReply *reply, int err);
int fl_job_redis(fl_job_t *job, int argc, const char **argv, const size_t *argvlen,
                 fl_job_redis_cb cb);
int fl_job_redis_eval(fl_job_t *job, const fl_redis_script_t *script, int numkeys, int argc,
                      const char **argv, const size_t *argvlen, fl_job_redis_cb cb);

/* What to do when a Redis command of the job failed: connection loss, a deadline or a transient
 * server state (LOADING, BUSY, OOM, READONLY, MASTERDOWN...) retries; an error reply that the
 * same input would get again (WRONGTYPE, ERR: a script error, a bad command) would retry forever,
 * so the input goes to the dead-letter topic as STATE_ERROR with the reply's text. */
void fl_job_redis_failed(fl_job_t *job, redisReply *reply, int err);

/* Send the input to the dead-letter topic with a stable reason code and a reason text; the
 * partition moves on. Implies fl_job_done(). */
void fl_job_dead_letter(fl_job_t *job, const char *code, const char *reason);

/* A transient failure: pause, rewind and retry later. Implies fl_job_done(). */
void fl_job_retry(fl_job_t *job, const char *why);

/* The handler has issued everything it will for this job. */
void fl_job_done(fl_job_t *job);

#endif
