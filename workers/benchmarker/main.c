/* feedloop-benchmarker: the shell around benchmarker.c. Consumes bench reports and validation
 * results (both keyed by change id), keeps the base-branch history per metric and the pending
 * halves of each change in Redis, emits benchmark results and review requests. The verdicts, the
 * history window and the join decision are the core's; this file only moves bytes.
 *
 * Redis keys (all under redis.key.prefix, "fl:" by default):
 *   benchmarker:history:{repo}:{branch}:{metric}  hash unit, direction, samples ("%.17g" joined by
 *       ","), last_event_id, updates; TTL benchmarker.history.ttl.s, refreshed on every write.
 *   benchmarker:applied:{input id}  a base report's history write happened (TTL dedup.ttl.s).
 *   benchmarker:pending:{change_id}:{commit}  hash validation / benchmark (the encoded
 *       validation_result / benchmark_result of each half that arrived), validation_id /
 *       benchmark_id (their input ids); TTL benchmarker.join.ttl.s, refreshed by each half.
 *   benchmarker:closed:{change_id}:{commit}  the pending hash renamed once the pair is settled
 *       (REVIEW or CLOSE), plus closed_by (input id of the job that settled it), closer (its
 *       half) and action; TTL benchmarker.join.ttl.s.
 *
 * Redelivery (at-least-once input, deterministic output ids): the job that completes a pair
 * first closes it (close script: the first closer wins, atomically) and only then emits the
 * review request, whose ce_id derives from that job's input id and the step "review". The closed
 * hash keeps both halves, the action and closed_by, so when that same input comes again (crash
 * after the close, a Redis or Kafka retry, a rewind) the join script answers "closed" with
 * closed_by equal to its own id and the shell re-emits the same review request from the stored
 * halves: same ce_id, same content but requested_at. Any other input that finds the pair closed
 * (a late half, a redelivered first half) stores nothing and emits no review request. A bench
 * report's benchmark_result is emitted on every delivery (ce_id from its input id and the step
 * "benchmark"), before the join, so a retry anywhere re-emits it with the same id. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "benchmarker.h"
#include "fl_id.h"
#include "fl_log.h"
#include "fl_worker.h"

#define KEY_MAX 1280 /* prefix + "benchmarker:history:" + three ids of < 256 bytes */
#define HISTORY_WRITE_ATTEMPTS 5

static const fl_config_key_t benchmarker_keys[] = {
    {"benchmarker.threshold.percent", FL_CFG_DOUBLE, "5", 0, 1e6,
     "allowed worsening of a metric in percent, unless the report sets its own"},
    {"benchmarker.confidence", FL_CFG_DOUBLE, "0.95", 0.5, 1,
     "two-sided confidence of every interval, and 1 - the test's significance; in (0.5, 1)"},
    {"benchmarker.quantile", FL_CFG_DOUBLE, "0.95", 0, 1, "the quantile reported as p95"},
    {"benchmarker.min.samples", FL_CFG_INT, "10", 2, 1e9,
     "samples a side needs to be judged (fewer: INCONCLUSIVE TOO_FEW_SAMPLES)"},
    {"benchmarker.inconclusive.fails", FL_CFG_BOOL, "true", 0, -1,
     "an INCONCLUSIVE benchmark does not pass (no review request)"},
    {"benchmarker.bootstrap.resamples", FL_CFG_INT, "2000", 100, 1e6,
     "resamples of the p95 bootstrap interval"},
    {"benchmarker.noise.factor", FL_CFG_DOUBLE, "2", 1, 1e6,
     "PASS needs the interval's upper end <= noise.factor x threshold (else NOISY)"},
    {"benchmarker.tail.min.samples", FL_CFG_INT, "100", 2, 1e9,
     "samples a side to judge the p95 on its own bootstrap interval"},
    {"benchmarker.max.samples", FL_CFG_INT, "100000", 2, 1e9,
     "most samples a side; more is a dead letter (TOO_MANY_SAMPLES)"},
    {"benchmarker.history.max.samples", FL_CFG_INT, "300", 1, 1e7,
     "newest base-branch samples kept per metric"},
    {"benchmarker.seed", FL_CFG_INT, "0", 0, 9007199254740992.0,
     "bootstrap seed (mixed with change id and metric name)"},
    {"benchmarker.join.ttl.s", FL_CFG_INT, "604800", 60, 31536000,
     "how long a pending half waits for the other, and a settled pair is remembered"},
    {"benchmarker.history.ttl.s", FL_CFG_INT, "7776000", 60, 315360000,
     "how long a metric's base-branch history lives after its last update"},
};

/* benchmarker_config_check names the struct field first; the operator needs the key. */
static const struct {
    const char *field;
    const char *key;
} check_keys[] = {
    {"threshold_percent", "benchmarker.threshold.percent"},
    {"confidence", "benchmarker.confidence"},
    {"min_samples", "benchmarker.min.samples"},
    {"quantile", "benchmarker.quantile"},
    {"noise_factor", "benchmarker.noise.factor"},
    {"bootstrap_resamples", "benchmarker.bootstrap.resamples"},
    {"tail_min_samples", "benchmarker.tail.min.samples"},
    {"max_samples", "benchmarker.max.samples"},
    {"history_max_samples", "benchmarker.history.max.samples"},
};

/* Stores the arriving half unless the pair is already settled.
 * KEYS: pending, closed. ARGV: my field, other field, my bytes, input id, ttl.
 * Returns {"open", "", other half or ""} or
 *         {"closed", my stored half or "", other stored half or "", closed_by, action}. */
static const char join_script_src[] =
    "if redis.call('EXISTS', KEYS[2]) == 1 then\n"
    "  local c = redis.call('HMGET', KEYS[2], ARGV[1], ARGV[2], 'closed_by', 'action')\n"
    "  return {'closed', c[1] or '', c[2] or '', c[3] or '', c[4] or ''}\n"
    "end\n"
    "redis.call('HSET', KEYS[1], ARGV[1], ARGV[3], ARGV[1] .. '_id', ARGV[4])\n"
    "redis.call('EXPIRE', KEYS[1], ARGV[5])\n"
    "return {'open', '', redis.call('HGET', KEYS[1], ARGV[2]) or ''}\n";

/* Settles a pair once: the first closer wins and every later one learns who did.
 * KEYS: pending, closed. ARGV: input id, action, ttl, closer's field. Returns closed_by. */
static const char close_script_src[] =
    "local by = redis.call('HGET', KEYS[2], 'closed_by')\n"
    "if by then return by end\n"
    "if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('RENAME', KEYS[1], KEYS[2]) end\n"
    "redis.call('HSET', KEYS[2], 'closed_by', ARGV[1], 'action', ARGV[2], 'closer', ARGV[4])\n"
    "redis.call('EXPIRE', KEYS[2], ARGV[3])\n"
    "return ARGV[1]\n";

/* KEYS: history hashes. Returns one {unit, direction, samples, last_event_id} per key. */
static const char history_load_src[] =
    "local out = {}\n"
    "for i, k in ipairs(KEYS) do\n"
    "  out[i] = redis.call('HMGET', k, 'unit', 'direction', 'samples', 'last_event_id')\n"
    "end\n"
    "return out\n";

/* Writes a base report's new history windows, once per input and only over the windows they
 * were computed from (optimistic: a concurrent base report makes the caller reload and redo).
 * KEYS: n history hashes, then the applied marker.
 * ARGV: input id, history ttl, marker ttl, then per hash: expected last_event_id ("" = none),
 * unit, direction, samples.
 * Returns 1 written, 0 this input was already applied, 2 a window changed since it was read. */
static const char history_write_src[] =
    "local n = #KEYS - 1\n"
    "if redis.call('EXISTS', KEYS[#KEYS]) == 1 then return 0 end\n"
    "for i = 1, n do\n"
    "  local cur = redis.call('HGET', KEYS[i], 'last_event_id') or ''\n"
    "  if cur == ARGV[1] then return 0 end\n"
    "  if cur ~= ARGV[4 * i] then return 2 end\n"
    "end\n"
    "for i = 1, n do\n"
    "  local b = 4 * i\n"
    "  redis.call('HSET', KEYS[i], 'unit', ARGV[b + 1], 'direction', ARGV[b + 2],"
    " 'samples', ARGV[b + 3], 'last_event_id', ARGV[1])\n"
    "  redis.call('HINCRBY', KEYS[i], 'updates', 1)\n"
    "  redis.call('EXPIRE', KEYS[i], ARGV[2])\n"
    "end\n"
    "redis.call('SET', KEYS[#KEYS], '1', 'EX', ARGV[3])\n"
    "return 1\n";

typedef struct bench_app {
    benchmarker_config_t cfg;
    long long join_ttl, history_ttl, dedup_ttl;
    fl_redis_script_t join_script, close_script, history_load, history_write;
    const fl_event_type_t *validation_type, *result_type, *review_type;
    avro_value_t result, review;
    bool values_made;
} bench_app_t;

typedef enum { HALF_VALIDATION = 0, HALF_BENCHMARK = 1 } half_t;

static const char *const half_field[] = {"validation", "benchmark"};

/* One metric's base-branch history as loaded from Redis. */
typedef struct hist_slot {
    const benchmarker_metric_t *metric;
    char key[KEY_MAX];
    bool found; /* the hash had samples */
    char unit[BENCHMARKER_UNIT_MAX];
    char *direction; /* as stored; NULL when absent */
    char *last_id;   /* as stored; NULL when absent */
    double *samples;
    size_t n_samples;
} hist_slot_t;

typedef struct job_ctx {
    bench_app_t *app;
    half_t half;
    benchmarker_report_t *report; /* bench reports */
    hist_slot_t *hist;
    size_t nhist;
    int write_attempts;
    benchmarker_validation_t *val; /* this half or the other, once known */
    benchmarker_result_t *bench;   /* this half or the other, once known */
    void *bytes;                   /* this half, encoded, for the pending hash */
    size_t nbytes;
    char pending_key[KEY_MAX], closed_key[KEY_MAX];
    benchmarker_join_action_t action;
} job_ctx_t;

static void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size);
    if (p == NULL)
        abort();
    return p;
}

static char *xstrndup(const char *s, size_t n) {
    char *p = malloc(n + 1);
    if (p == NULL)
        abort();
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

static void hist_clear(job_ctx_t *ctx) {
    for (size_t i = 0; i < ctx->nhist; i++) {
        hist_slot_t *s = &ctx->hist[i];
        free(s->direction);
        free(s->last_id);
        free(s->samples);
        s->direction = s->last_id = NULL;
        s->samples = NULL;
        s->n_samples = 0;
        s->found = false;
        s->unit[0] = '\0';
    }
}

static void ctx_free(void *arg) {
    job_ctx_t *ctx = arg;
    if (ctx == NULL)
        return;
    hist_clear(ctx);
    free(ctx->hist);
    benchmarker_report_destroy(ctx->report);
    benchmarker_result_destroy(ctx->bench);
    free(ctx->val);
    free(ctx->bytes);
    free(ctx);
}

static void count(fl_job_t *job, const char *name, const char *help, const char *key,
                  const char *value) {
    char labels[96] = "";
    if (key != NULL)
        snprintf(labels, sizeof(labels), "%s=\"%s\"", key, value);
    fl_metrics_counter_add(fl_worker_metrics(fl_job_worker(job)), name, help, labels, 1);
}

static void bad_reply(fl_job_t *job, const char *what) {
    char why[128];
    snprintf(why, sizeof(why), "the %s script answered with an unexpected reply", what);
    fl_job_dead_letter(job, "STATE_ERROR", why);
}

/* A failed command retries, or dead-letters an error reply the same input would get again
 * (fl_job_redis_failed). A reply of the wrong shape comes from our own script and would come
 * again too: STATE_ERROR, not a retry loop. */
static bool reply_ok(fl_job_t *job, redisReply *reply, int err, int type, const char *what) {
    if (err != 0 || reply == NULL) {
        fl_job_redis_failed(job, reply, err);
        return false;
    }
    if (reply->type != type) {
        bad_reply(job, what);
        return false;
    }
    return true;
}

/* ---------- config ---------- */

static int app_configure(const fl_config_t *cfg, void *opaque, fl_error_t *err) {
    bench_app_t *app = opaque;
    benchmarker_config_t *c = &app->cfg;
    benchmarker_config_default(c);
    c->threshold_percent = fl_config_double(cfg, "benchmarker.threshold.percent");
    c->confidence = fl_config_double(cfg, "benchmarker.confidence");
    c->quantile = fl_config_double(cfg, "benchmarker.quantile");
    c->min_samples = (size_t)fl_config_int(cfg, "benchmarker.min.samples");
    c->inconclusive_fails = fl_config_bool(cfg, "benchmarker.inconclusive.fails");
    c->bootstrap_resamples = (unsigned)fl_config_int(cfg, "benchmarker.bootstrap.resamples");
    c->noise_factor = fl_config_double(cfg, "benchmarker.noise.factor");
    c->tail_min_samples = (size_t)fl_config_int(cfg, "benchmarker.tail.min.samples");
    c->max_samples = (size_t)fl_config_int(cfg, "benchmarker.max.samples");
    c->history_max_samples = (size_t)fl_config_int(cfg, "benchmarker.history.max.samples");
    c->seed = (uint64_t)fl_config_int(cfg, "benchmarker.seed");
    int rc = benchmarker_config_check(c, err);
    if (rc != 0) {
        const char *key = "benchmarker";
        size_t n = strcspn(err->text, " ");
        for (size_t i = 0; i < sizeof(check_keys) / sizeof(check_keys[0]); i++)
            if (strlen(check_keys[i].field) == n && strncmp(err->text, check_keys[i].field, n) == 0)
                key = check_keys[i].key;
        fl_error_prefix(err, "%s: ", key);
        return rc;
    }
    app->join_ttl = fl_config_int(cfg, "benchmarker.join.ttl.s");
    app->history_ttl = fl_config_int(cfg, "benchmarker.history.ttl.s");
    app->dedup_ttl = fl_config_int(cfg, "dedup.ttl.s");
    return 0;
}

static int app_init(fl_worker_t *w, void *opaque, fl_error_t *err) {
    bench_app_t *app = opaque;
    fl_redis_script_init(&app->join_script, join_script_src);
    fl_redis_script_init(&app->close_script, close_script_src);
    fl_redis_script_init(&app->history_load, history_load_src);
    fl_redis_script_init(&app->history_write, history_write_src);
    fl_codec_t *codec = fl_worker_codec(w);
    app->validation_type = fl_codec_type(codec, "validation_result");
    app->result_type = fl_codec_type(codec, "benchmark_result");
    app->review_type = fl_codec_type(codec, "review_request");
    if (app->validation_type == NULL || app->result_type == NULL || app->review_type == NULL)
        return fl_error_set(err, FL_ESCHEMA, false,
                            "schemas validation_result, benchmark_result and review_request must "
                            "be compiled in");
    fl_event_type_new_value(app->result_type, &app->result);
    fl_event_type_new_value(app->review_type, &app->review);
    app->values_made = true;
    return 0;
}

static void app_fini(fl_worker_t *w, void *opaque) {
    bench_app_t *app = opaque;
    (void)w;
    if (app->values_made) {
        avro_value_decref(&app->result);
        avro_value_decref(&app->review);
    }
}

/* ---------- keys and encodings ---------- */

static void history_key(fl_worker_t *w, const char *repo, const char *branch, const char *metric,
                        char *buf, size_t len) {
    char suffix[KEY_MAX];
    snprintf(suffix, sizeof(suffix), "benchmarker:history:%s:%s:%s", repo, branch, metric);
    fl_worker_rkey(w, suffix, buf, len);
}

static void pair_keys(fl_worker_t *w, job_ctx_t *ctx, const char *change_id, const char *commit) {
    char suffix[KEY_MAX];
    snprintf(suffix, sizeof(suffix), "benchmarker:pending:%s:%s", change_id, commit);
    fl_worker_rkey(w, suffix, ctx->pending_key, sizeof(ctx->pending_key));
    snprintf(suffix, sizeof(suffix), "benchmarker:closed:%s:%s", change_id, commit);
    fl_worker_rkey(w, suffix, ctx->closed_key, sizeof(ctx->closed_key));
}

/* "%.17g" joined by ",": exact round trip, readable with redis-cli. Caller frees. */
static char *samples_format(const double *x, size_t n) {
    size_t cap = n * 26 + 1, len = 0;
    char *s = xcalloc(cap, 1);
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(s + len, cap - len, "%s%.17g", i ? "," : "", x[i]);
    return s;
}

/* A token that does not parse becomes NaN, which the core reports as BAD_HISTORY. */
static size_t samples_parse(const char *s, size_t len, double **out) {
    size_t n = len == 0 ? 0 : 1;
    for (size_t i = 0; i < len; i++)
        n += s[i] == ',';
    char *copy = xstrndup(s, len);
    double *x = xcalloc(n, sizeof(double));
    char *p = copy;
    for (size_t i = 0; i < n; i++) {
        char *end = NULL;
        x[i] = strtod(p, &end);
        if (end == p || (*end != ',' && *end != '\0'))
            x[i] = NAN;
        char *comma = strchr(p, ',');
        p = comma != NULL ? comma + 1 : p + strlen(p);
    }
    free(copy);
    *out = x;
    return n;
}

static const char *pair_change(const job_ctx_t *ctx) {
    return ctx->half == HALF_VALIDATION ? ctx->val->change_id : ctx->bench->change_id;
}

static const char *pair_commit(const job_ctx_t *ctx) {
    return ctx->half == HALF_VALIDATION ? ctx->val->commit : ctx->bench->commit;
}

/* Copy the encoding of value (single-object bytes) as this job's half. */
static int keep_half(fl_job_t *job, const fl_event_type_t *type, avro_value_t *value) {
    job_ctx_t *ctx = fl_job_ctx(job);
    const void *buf;
    size_t len;
    fl_error_t err = {0};
    if (fl_codec_encode(fl_worker_codec(fl_job_worker(job)), type, value, &buf, &len, &err) != 0) {
        char why[600];
        snprintf(why, sizeof(why), "encoding %s failed: %s", fl_event_type_name(type), err.text);
        fl_job_dead_letter(job, "ENCODE_FAILED", why);
        return -1;
    }
    ctx->bytes = xstrndup(buf, len);
    ctx->nbytes = len;
    return 0;
}

/* Decode a half read back from Redis into ctx->val or ctx->bench. 0 loaded, 1 absent, -1
 * unreadable (our own state: logged, then treated as absent rather than retried forever). */
static int load_half(fl_job_t *job, half_t which, const redisReply *r) {
    job_ctx_t *ctx = fl_job_ctx(job);
    const fl_event_type_t *type = NULL;
    avro_value_t *value = NULL;
    fl_error_t err = {0};
    if (r == NULL || r->type != REDIS_REPLY_STRING || r->len == 0)
        return 1;
    const fl_event_type_t *want =
        which == HALF_VALIDATION ? ctx->app->validation_type : ctx->app->result_type;
    int rc = fl_codec_decode(fl_worker_codec(fl_job_worker(job)), r->str, (size_t)r->len, &type,
                             &value, &err);
    if (rc == 0 && type != want)
        rc = fl_error_set(&err, FL_ESCHEMA, false, "holds a %s", fl_event_type_name(type));
    if (rc == 0 && which == HALF_VALIDATION) {
        benchmarker_validation_t *val = xcalloc(1, sizeof(*val));
        if ((rc = benchmarker_validation_from_avro(value, val, &err)) == 0) {
            free(ctx->val);
            ctx->val = val;
        } else {
            free(val);
        }
    } else if (rc == 0) {
        benchmarker_result_t *bench = NULL;
        if ((rc = benchmarker_result_from_avro(value, &bench, &err)) == 0) {
            benchmarker_result_destroy(ctx->bench);
            ctx->bench = bench;
        }
    }
    if (rc != 0) {
        fl_error("change %s commit %s: the stored %s half is unreadable (%s); ignoring it",
                 pair_change(ctx), pair_commit(ctx), half_field[which], err.text);
        return -1;
    }
    return 0;
}

/* ---------- join ---------- */

static void emit_review(fl_job_t *job) {
    job_ctx_t *ctx = fl_job_ctx(job);
    bench_app_t *app = ctx->app;
    char source[160]; /* an input id (fl_job_id) or a derived id */
    fl_error_t err = {0};
    /* The event that completed the pair: the validation result itself, or the benchmark result
     * this job emitted (the bench report is not what the reviewer's trail shows). */
    if (ctx->half == HALF_VALIDATION)
        snprintf(source, sizeof(source), "%s", fl_job_id(job));
    else
        fl_id_derive(fl_job_id(job), "benchmark", source);
    int rc = benchmarker_review_request_to_avro(ctx->val, ctx->bench, NAN, source,
                                                fl_job_received_ms(job), &app->review, &err);
    if (rc == FL_ESCHEMA) {
        fl_job_dead_letter(job, "ENCODE_FAILED", err.text);
        return;
    }
    if (rc != 0) {
        /* Only reachable with stored halves that no longer make a REVIEW pair. */
        fl_error("change %s commit %s: no review request: %s", pair_change(ctx), pair_commit(ctx),
                 err.text);
        fl_job_done(job);
        return;
    }
    if (fl_job_emit(job, app->review_type, ctx->bench->change_id, strlen(ctx->bench->change_id),
                    &app->review, "review") != 0)
        return;
    count(job, "benchmarker_review_requests_total", "Review requests emitted", NULL, NULL);
    fl_info("change %s commit %s: review request (validation %s, benchmark %s)",
            ctx->bench->change_id, ctx->bench->commit, ctx->val->source_event_id,
            ctx->bench->source_event_id);
    fl_job_done(job);
}

static void close_cb(fl_job_t *job, redisReply *reply, int err) {
    job_ctx_t *ctx = fl_job_ctx(job);
    if (!reply_ok(job, reply, err, REDIS_REPLY_STRING, "close"))
        return;
    if (strcmp(reply->str, fl_job_id(job)) != 0) {
        fl_info("change %s commit %s was settled concurrently by %s", pair_change(ctx),
                pair_commit(ctx), reply->str);
        fl_job_done(job);
        return;
    }
    const char *action = benchmarker_join_action_name(ctx->action);
    count(job, "benchmarker_joins_total", "Pairs settled, by action", "action", action);
    if (ctx->action == BENCHMARKER_JOIN_REVIEW) {
        emit_review(job);
        return;
    }
    fl_info("change %s commit %s: closed without review (%s did not pass)", pair_change(ctx),
            pair_commit(ctx),
            ctx->val != NULL && ctx->val->verdict != BENCHMARKER_VALIDATION_PASSED ? "validation"
                                                                                   : "benchmark");
    fl_job_done(job);
}

static void join_cb(fl_job_t *job, redisReply *reply, int err) {
    job_ctx_t *ctx = fl_job_ctx(job);
    bench_app_t *app = ctx->app;
    if (!reply_ok(job, reply, err, REDIS_REPLY_ARRAY, "join"))
        return;
    if (reply->elements < 3 || reply->element[0]->type != REDIS_REPLY_STRING) {
        bad_reply(job, "join");
        return;
    }
    half_t other = ctx->half == HALF_VALIDATION ? HALF_BENCHMARK : HALF_VALIDATION;
    if (strcmp(reply->element[0]->str, "closed") == 0) {
        if (reply->elements < 5 || reply->element[3]->type != REDIS_REPLY_STRING ||
            reply->element[4]->type != REDIS_REPLY_STRING) {
            bad_reply(job, "join");
            return;
        }
        if (strcmp(reply->element[3]->str, fl_job_id(job)) != 0) {
            fl_info("change %s commit %s already settled (%s by %s); this %s is not kept",
                    pair_change(ctx), pair_commit(ctx), reply->element[4]->str,
                    reply->element[3]->str, half_field[ctx->half]);
            count(job, "benchmarker_late_halves_total", "Halves that found their pair settled",
                  NULL, NULL);
            fl_job_done(job);
            return;
        }
        /* This very input settled the pair before: re-emit what was decided then, from the
         * halves as they were stored. */
        fl_info("change %s commit %s: redelivery of the input that settled it (%s)",
                pair_change(ctx), pair_commit(ctx), reply->element[4]->str);
        load_half(job, ctx->half, reply->element[1]);
        load_half(job, other, reply->element[2]);
        if (strcmp(reply->element[4]->str, "REVIEW") == 0 && ctx->val != NULL &&
            ctx->bench != NULL) {
            emit_review(job);
            return;
        }
        fl_job_done(job);
        return;
    }
    load_half(job, other, reply->element[2]);
    if (benchmarker_join_decide(ctx->val, ctx->bench, &ctx->action) != 0) {
        fl_error("change %s commit %s: the stored %s half is of another change or commit",
                 pair_change(ctx), pair_commit(ctx), half_field[other]);
        fl_job_done(job);
        return;
    }
    if (ctx->action == BENCHMARKER_JOIN_WAIT || ctx->action == BENCHMARKER_JOIN_IGNORE) {
        fl_info("change %s commit %s: %s kept, waiting for the %s", pair_change(ctx),
                pair_commit(ctx), half_field[ctx->half], half_field[other]);
        fl_job_done(job);
        return;
    }
    char ttl[32];
    snprintf(ttl, sizeof(ttl), "%lld", app->join_ttl);
    const char *argv[] = {ctx->pending_key,
                          ctx->closed_key,
                          fl_job_id(job),
                          benchmarker_join_action_name(ctx->action),
                          ttl,
                          half_field[ctx->half]};
    fl_job_redis_eval(job, &app->close_script, 2, 6, argv, NULL, close_cb);
}

static void join_start(fl_job_t *job) {
    job_ctx_t *ctx = fl_job_ctx(job);
    bench_app_t *app = ctx->app;
    pair_keys(fl_job_worker(job), ctx, pair_change(ctx), pair_commit(ctx));
    half_t other = ctx->half == HALF_VALIDATION ? HALF_BENCHMARK : HALF_VALIDATION;
    char ttl[32];
    snprintf(ttl, sizeof(ttl), "%lld", app->join_ttl);
    const char *argv[] = {ctx->pending_key,
                          ctx->closed_key,
                          half_field[ctx->half],
                          half_field[other],
                          ctx->bytes,
                          fl_job_id(job),
                          ttl};
    size_t argvlen[7];
    for (int i = 0; i < 7; i++)
        argvlen[i] = i == 4 ? ctx->nbytes : strlen(argv[i]);
    fl_job_redis_eval(job, &app->join_script, 2, 7, argv, argvlen, join_cb);
}

/* ---------- bench reports ---------- */

/* The loaded histories as the core's views (only metrics whose hash held samples). */
static benchmarker_history_t *history_views(job_ctx_t *ctx, size_t *n) {
    benchmarker_history_t *views = xcalloc(ctx->nhist, sizeof(*views));
    *n = 0;
    for (size_t i = 0; i < ctx->nhist; i++) {
        hist_slot_t *s = &ctx->hist[i];
        if (!s->found)
            continue;
        fl_stats_direction_t dir;
        views[*n] = (benchmarker_history_t){
            .metric = s->metric->name,
            .unit = s->unit,
            /* An unknown stored direction never matches a metric: DIRECTION_MISMATCH. */
            .direction = fl_stats_direction_parse(s->direction, &dir) == 0 ? (int)dir : -1,
            .samples = s->samples,
            .n_samples = s->n_samples,
        };
        (*n)++;
    }
    return views;
}

static void judge_and_emit(fl_job_t *job) {
    job_ctx_t *ctx = fl_job_ctx(job);
    bench_app_t *app = ctx->app;
    const benchmarker_report_t *rep = ctx->report;
    fl_error_t err = {0};
    size_t nviews;
    benchmarker_history_t *views = history_views(ctx, &nviews);
    int rc = benchmarker_judge(&app->cfg, rep, views, nviews, fl_job_id(job),
                               fl_job_received_ms(job), &ctx->bench, &err);
    free(views);
    if (rc != 0) {
        fl_job_dead_letter(job, "INVALID_EVENT", err.text);
        return;
    }
    if (benchmarker_result_to_avro(ctx->bench, &app->result, &err) != 0) {
        fl_job_dead_letter(job, "ENCODE_FAILED", err.text);
        return;
    }
    if (keep_half(job, app->result_type, &app->result) != 0)
        return;
    const benchmarker_result_t *res = ctx->bench;
    count(job, "benchmarker_verdicts_total", "Benchmark verdicts by kind", "verdict",
          benchmarker_verdict_name(res->verdict));
    char reasons[512] = "";
    size_t n = 0;
    for (size_t i = 0; i < res->n_reasons && n < sizeof(reasons); i++)
        n += (size_t)snprintf(reasons + n, sizeof(reasons) - n, " %s %s", res->reasons[i].code,
                              res->reasons[i].detail);
    fl_info("change %s commit %s (%s): %s%s", res->change_id, res->commit, res->repo,
            benchmarker_verdict_name(res->verdict), reasons);
    if (fl_job_emit(job, app->result_type, res->change_id, strlen(res->change_id), &app->result,
                    "benchmark") != 0)
        return;
    join_start(job);
}

static void history_write(fl_job_t *job);

static void history_written_cb(fl_job_t *job, redisReply *reply, int err);

static void history_loaded_cb(fl_job_t *job, redisReply *reply, int err) {
    job_ctx_t *ctx = fl_job_ctx(job);
    if (!reply_ok(job, reply, err, REDIS_REPLY_ARRAY, "history load"))
        return;
    if (reply->elements != ctx->nhist) {
        bad_reply(job, "history load");
        return;
    }
    hist_clear(ctx);
    for (size_t i = 0; i < ctx->nhist; i++) {
        hist_slot_t *s = &ctx->hist[i];
        const redisReply *h = reply->element[i];
        if (h->type != REDIS_REPLY_ARRAY || h->elements != 4) {
            bad_reply(job, "history load");
            return;
        }
        const redisReply *unit = h->element[0], *dir = h->element[1], *samples = h->element[2],
                         *last = h->element[3];
        if (unit->type == REDIS_REPLY_STRING)
            snprintf(s->unit, sizeof(s->unit), "%s", unit->str);
        if (dir->type == REDIS_REPLY_STRING)
            s->direction = xstrndup(dir->str, (size_t)dir->len);
        if (last->type == REDIS_REPLY_STRING)
            s->last_id = xstrndup(last->str, (size_t)last->len);
        if (samples->type == REDIS_REPLY_STRING) {
            s->found = true;
            s->n_samples = samples_parse(samples->str, (size_t)samples->len, &s->samples);
        }
    }
    if (ctx->report->is_base_report)
        history_write(job);
    else
        judge_and_emit(job);
}

static void history_load(fl_job_t *job) {
    job_ctx_t *ctx = fl_job_ctx(job);
    const char **argv = xcalloc(ctx->nhist, sizeof(char *));
    for (size_t i = 0; i < ctx->nhist; i++)
        argv[i] = ctx->hist[i].key;
    fl_job_redis_eval(job, &ctx->app->history_load, (int)ctx->nhist, (int)ctx->nhist, argv, NULL,
                      history_loaded_cb);
    free(argv);
}

static const hist_slot_t *slot_of(const job_ctx_t *ctx, const char *metric) {
    for (size_t i = 0; i < ctx->nhist; i++)
        if (strcmp(ctx->hist[i].metric->name, metric) == 0)
            return &ctx->hist[i];
    return NULL;
}

static void history_write(fl_job_t *job) {
    job_ctx_t *ctx = fl_job_ctx(job);
    bench_app_t *app = ctx->app;
    fl_worker_t *w = fl_job_worker(job);
    const benchmarker_report_t *rep = ctx->report;
    fl_error_t err = {0};
    benchmarker_history_entry_t *entries = NULL;
    size_t n = 0, nviews;
    benchmarker_history_t *views = history_views(ctx, &nviews);
    int rc = benchmarker_history_apply(&app->cfg, rep, views, nviews, &entries, &n, &err);
    free(views);
    if (rc != 0) {
        fl_job_dead_letter(job, "INVALID_EVENT", err.text);
        return;
    }
    /* KEYS: n hashes + marker; ARGV: 3 + 4 per hash. */
    size_t argc = n + 1 + 3 + 4 * n;
    const char **argv = xcalloc(argc, sizeof(char *));
    char(*keys)[KEY_MAX] = xcalloc(n + 1, sizeof(*keys));
    char **samples = xcalloc(n, sizeof(char *));
    char suffix[256], ttl[32], dedup[32];
    for (size_t i = 0; i < n; i++) {
        history_key(w, rep->repo, rep->branch, entries[i].metric, keys[i], sizeof(keys[i]));
        argv[i] = keys[i];
    }
    snprintf(suffix, sizeof(suffix), "benchmarker:applied:%s", fl_job_id(job));
    argv[n] = fl_worker_rkey(w, suffix, keys[n], sizeof(keys[n]));
    snprintf(ttl, sizeof(ttl), "%lld", app->history_ttl);
    snprintf(dedup, sizeof(dedup), "%lld", app->dedup_ttl);
    const char **args = argv + n + 1;
    args[0] = fl_job_id(job);
    args[1] = ttl;
    args[2] = dedup;
    for (size_t i = 0; i < n; i++) {
        const hist_slot_t *s = slot_of(ctx, entries[i].metric);
        samples[i] = samples_format(entries[i].samples, entries[i].n_samples);
        args[3 + 4 * i] = s != NULL && s->last_id != NULL ? s->last_id : "";
        args[4 + 4 * i] = entries[i].unit;
        args[5 + 4 * i] = fl_stats_direction_name(entries[i].direction);
        args[6 + 4 * i] = samples[i];
    }
    fl_job_redis_eval(job, &app->history_write, (int)n + 1, (int)argc, argv, NULL,
                      history_written_cb);
    for (size_t i = 0; i < n; i++)
        free(samples[i]);
    free(samples);
    free(keys);
    free(argv);
    benchmarker_history_entries_free(entries, n);
}

static void history_written_cb(fl_job_t *job, redisReply *reply, int err) {
    job_ctx_t *ctx = fl_job_ctx(job);
    const benchmarker_report_t *rep = ctx->report;
    if (!reply_ok(job, reply, err, REDIS_REPLY_INTEGER, "history write"))
        return;
    if (reply->integer == 2) {
        /* Another base report of this branch wrote in between: redo over its window. */
        if (++ctx->write_attempts >= HISTORY_WRITE_ATTEMPTS) {
            fl_job_retry(job, "base-branch history keeps changing under this report");
            return;
        }
        fl_info("base report %s: history changed since it was read; reloading", fl_job_id(job));
        history_load(job);
        return;
    }
    if (reply->integer == 0) {
        fl_info("base report %s (%s %s) already applied (redelivery)", fl_job_id(job), rep->repo,
                rep->branch);
    } else {
        count(job, "benchmarker_history_updates_total", "Base reports recorded as history", NULL,
              NULL);
        fl_info("base report %s (%s %s commit %s): history of %zu metrics updated", fl_job_id(job),
                rep->repo, rep->branch, rep->commit, ctx->nhist);
    }
    fl_job_done(job);
}

/* Slots for the metrics whose history this report needs: a base report extends the history of
 * every metric it measured (under its own branch); a change report reads it for the metrics
 * that came without baseline samples (under its base branch). */
static void hist_slots(fl_worker_t *w, job_ctx_t *ctx) {
    const benchmarker_report_t *rep = ctx->report;
    ctx->hist = xcalloc(rep->n_metrics, sizeof(*ctx->hist));
    for (size_t i = 0; i < rep->n_metrics; i++) {
        const benchmarker_metric_t *m = &rep->metrics[i];
        if (rep->is_base_report ? m->n_candidate == 0 : m->n_baseline > 0)
            continue;
        hist_slot_t *s = &ctx->hist[ctx->nhist++];
        s->metric = m;
        history_key(w, rep->repo, rep->is_base_report ? rep->branch : rep->base_branch, m->name,
                    s->key, sizeof(s->key));
    }
}

static void handle_bench(fl_job_t *job, avro_value_t *value) {
    job_ctx_t *ctx = fl_job_ctx(job);
    fl_error_t err = {0};
    ctx->half = HALF_BENCHMARK;
    if (benchmarker_report_from_avro(value, &ctx->report, &err) != 0 ||
        benchmarker_report_check(&ctx->app->cfg, ctx->report, &err) != 0) {
        fl_job_dead_letter(job, "INVALID_EVENT", err.text);
        return;
    }
    hist_slots(fl_job_worker(job), ctx);
    if (ctx->nhist > 0) {
        history_load(job);
        return;
    }
    if (ctx->report->is_base_report) {
        fl_info("base report %s has no samples; nothing to record", fl_job_id(job));
        fl_job_done(job);
        return;
    }
    judge_and_emit(job);
}

/* ---------- validation results ---------- */

static void handle_validation(fl_job_t *job, const fl_event_type_t *type, avro_value_t *value) {
    job_ctx_t *ctx = fl_job_ctx(job);
    fl_error_t err = {0};
    ctx->half = HALF_VALIDATION;
    ctx->val = xcalloc(1, sizeof(*ctx->val));
    if (benchmarker_validation_from_avro(value, ctx->val, &err) != 0) {
        fl_job_dead_letter(job, "INVALID_EVENT", err.text);
        return;
    }
    if (ctx->val->change_id[0] == '\0' || ctx->val->commit[0] == '\0') {
        fl_job_dead_letter(job, "INVALID_EVENT",
                           ctx->val->change_id[0] ? "MISSING_ID commit" : "MISSING_ID change_id");
        return;
    }
    benchmarker_join_action_t action;
    if (benchmarker_join_decide(ctx->val, NULL, &action) == 0 &&
        action == BENCHMARKER_JOIN_IGNORE) {
        fl_debug("validation %s records a base branch; nothing to join", fl_job_id(job));
        fl_job_done(job);
        return;
    }
    if (keep_half(job, type, value) != 0)
        return;
    join_start(job);
}

static void handle(fl_job_t *job, const fl_event_type_t *type, avro_value_t *value, void *opaque) {
    bench_app_t *app = opaque;
    job_ctx_t *ctx = xcalloc(1, sizeof(*ctx));
    ctx->app = app;
    fl_job_set_ctx(job, ctx, ctx_free);
    if (type == app->validation_type)
        handle_validation(job, type, value);
    else
        handle_bench(job, value);
}

int main(int argc, char **argv) {
    static const char *const inputs[] = {"bench_report", "validation_result", NULL};
    static const char *const outputs[] = {"benchmark_result", "review_request", NULL};
    bench_app_t app;
    memset(&app, 0, sizeof(app));
    fl_worker_def_t def = {
        .name = "benchmarker",
        .summary = "Judges bench reports (p95 against the baseline or the base-branch history, "
                   "with a significance test), joins them with validation results and emits "
                   "benchmark results and review requests.",
        .inputs = inputs,
        .outputs = outputs,
        .keys = benchmarker_keys,
        .nkeys = sizeof(benchmarker_keys) / sizeof(benchmarker_keys[0]),
        .uses_redis = true,
        .configure = app_configure,
        .init = app_init,
        .handle = handle,
        .fini = app_fini,
    };
    return fl_worker_main(&def, &app, argc, argv);
}
