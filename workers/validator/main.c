/* feedloop-validator: the shell around validator.c. Consumes CI reports, keeps the base-branch
 * coverage per repo/branch in Redis, emits validation results. No decisions are made here. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fl_kafka.h"
#include "fl_log.h"
#include "fl_worker.h"
#include "validator.h"

static const fl_config_key_t validator_keys[] = {
    {"validator.max.failed.unit", FL_CFG_INT, "0", 0, 1e9, "unit test failures allowed"},
    {"validator.max.failed.integration", FL_CFG_INT, "0", 0, 1e9,
     "integration test failures allowed"},
    {"validator.max.failed.e2e", FL_CFG_INT, "0", 0, 1e9, "end-to-end test failures allowed"},
    {"validator.coverage.tolerance", FL_CFG_DOUBLE, "0", 0, 100,
     "coverage points a change may lose against the base branch"},
    {"validator.max.cyclomatic", FL_CFG_INT, "10", 0, 1e9, "highest cyclomatic complexity allowed"},
    {"validator.max.duplication", FL_CFG_DOUBLE, "5", 0, 100, "highest duplication % allowed"},
    {"validator.max.vulnerabilities", FL_CFG_INT, "0", 0, 1e9, "vulnerabilities allowed"},
    {"validator.no.base", FL_CFG_STRING, "reject", 0, -1,
     "when no base coverage is known: reject (fail closed) or accept (skip the coverage rule)"},
};

/* Records a base-branch coverage once per input id, and only when newer than what is stored.
 * KEYS: base hash, applied marker. ARGV: coverage, produced_at, commit, event id, marker ttl.
 * Returns 1 applied, 0 duplicate input, 2 older than the stored base (ignored). */
static const char base_script_src[] =
    "if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[5]) then return 0 end\n"
    "local cur = redis.call('HGET', KEYS[1], 'produced_at')\n"
    "if cur and tonumber(cur) > tonumber(ARGV[2]) then return 2 end\n"
    "redis.call('HSET', KEYS[1], 'coverage', ARGV[1], 'produced_at', ARGV[2], 'commit', ARGV[3],"
    " 'source_event_id', ARGV[4])\n"
    "redis.call('HINCRBY', KEYS[1], 'updates', 1)\n"
    "return 1\n";

typedef struct validator_app {
    validator_rules_t rules;
    fl_redis_script_t base_script;
    const fl_event_type_t *result_type;
    avro_value_t result;
    long long dedup_ttl;
} validator_app_t;

typedef struct job_ctx {
    validator_app_t *app;
    validator_report_t report;
} job_ctx_t;

static int app_configure(const fl_config_t *cfg, void *opaque, fl_error_t *err) {
    validator_app_t *app = opaque;
    validator_rules_default(&app->rules);
    app->rules.max_failed_unit = (int)fl_config_int(cfg, "validator.max.failed.unit");
    app->rules.max_failed_integration = (int)fl_config_int(cfg, "validator.max.failed.integration");
    app->rules.max_failed_e2e = (int)fl_config_int(cfg, "validator.max.failed.e2e");
    app->rules.coverage_tolerance = fl_config_double(cfg, "validator.coverage.tolerance");
    app->rules.max_cyclomatic = (int)fl_config_int(cfg, "validator.max.cyclomatic");
    app->rules.max_duplication = fl_config_double(cfg, "validator.max.duplication");
    app->rules.max_vulnerabilities = (int)fl_config_int(cfg, "validator.max.vulnerabilities");
    const char *nb = fl_config_str(cfg, "validator.no.base");
    if (strcmp(nb, "reject") == 0)
        app->rules.no_base = VALIDATOR_NO_BASE_REJECT;
    else if (strcmp(nb, "accept") == 0)
        app->rules.no_base = VALIDATOR_NO_BASE_ACCEPT;
    else
        return fl_error_set(err, FL_ECONFIG, false,
                            "validator.no.base: '%s' is not one of reject, accept", nb);
    app->dedup_ttl = fl_config_int(cfg, "dedup.ttl.s");
    return 0;
}

static int app_init(fl_worker_t *w, void *opaque, fl_error_t *err) {
    validator_app_t *app = opaque;
    fl_redis_script_init(&app->base_script, base_script_src);
    app->result_type = fl_codec_type(fl_worker_codec(w), "validation_result");
    if (app->result_type == NULL)
        return fl_error_set(err, FL_ESCHEMA, false, "schema validation_result is not compiled in");
    fl_event_type_new_value(app->result_type, &app->result);
    return 0;
}

static void app_fini(fl_worker_t *w, void *opaque) {
    validator_app_t *app = opaque;
    if (app->result_type != NULL)
        avro_value_decref(&app->result);
}

static void base_key(fl_worker_t *w, const char *repo, const char *branch, char *buf, size_t len) {
    char suffix[VALIDATOR_ID_MAX * 2 + 32];
    snprintf(suffix, sizeof(suffix), "validator:base:%s:%s", repo, branch);
    fl_worker_rkey(w, suffix, buf, len);
}

static void emit_verdict(fl_job_t *job, validator_app_t *app, const validator_report_t *rep,
                         bool has_base, double base_cov) {
    validator_verdict_t verdict;
    validator_judge(rep, &app->rules, has_base, base_cov, &verdict);
    avro_value_reset(&app->result);
    if (validator_result_to_avro(rep, &verdict, has_base, base_cov, fl_job_id(job),
                                 fl_job_received_ms(job), &app->result) != 0) {
        fl_job_dead_letter(job, "ENCODE_FAILED", "validation_result schema does not match");
        return;
    }
    char labels[64];
    snprintf(labels, sizeof(labels), "verdict=\"%s\"", validator_verdict_name(verdict.kind));
    fl_metrics_counter_add(fl_worker_metrics(fl_job_worker(job)), "validator_verdicts_total",
                           "Validation verdicts by kind", labels, 1);
    char reasons[512] = "";
    size_t n = 0;
    for (size_t i = 0; i < verdict.nreasons && n < sizeof(reasons); i++)
        n += (size_t)snprintf(reasons + n, sizeof(reasons) - n, " %s %s", verdict.reasons[i].code,
                              verdict.reasons[i].detail);
    fl_info("change %s (%s %s): %s%s", rep->change_id, rep->repo, rep->branch,
            validator_verdict_name(verdict.kind), reasons);
    if (fl_job_emit(job, app->result_type, rep->change_id, strlen(rep->change_id), &app->result,
                    "validation") != 0)
        return;
    fl_job_done(job);
}

static void base_applied_cb(fl_job_t *job, redisReply *reply, int err) {
    job_ctx_t *ctx = fl_job_ctx(job);
    if (err != 0 || reply == NULL) {
        fl_job_redis_failed(job, reply, err);
        return;
    }
    if (reply->type != REDIS_REPLY_INTEGER) {
        fl_job_dead_letter(job, "STATE_ERROR", "base script answered with a non-integer");
        return;
    }
    if (reply->integer == 0)
        fl_info("base report %s already applied (redelivery)", fl_job_id(job));
    else if (reply->integer == 2)
        fl_info("base report %s is older than the stored base; ignored", fl_job_id(job));
    emit_verdict(job, ctx->app, &ctx->report, false, 0);
}

static void base_loaded_cb(fl_job_t *job, redisReply *reply, int err) {
    job_ctx_t *ctx = fl_job_ctx(job);
    if (err != 0 || reply == NULL) {
        fl_job_redis_failed(job, reply, err);
        return;
    }
    bool has_base = false;
    double base_cov = 0;
    if (reply->type == REDIS_REPLY_STRING) {
        char *end = NULL;
        base_cov = strtod(reply->str, &end);
        has_base = end != reply->str && *end == '\0';
        if (!has_base)
            fl_warn("stored base coverage '%s' is not a number; treating as unknown", reply->str);
    }
    emit_verdict(job, ctx->app, &ctx->report, has_base, base_cov);
}

static void handle(fl_job_t *job, const fl_event_type_t *type, avro_value_t *value, void *opaque) {
    validator_app_t *app = opaque;
    fl_worker_t *w = fl_job_worker(job);
    job_ctx_t *ctx = malloc(sizeof(*ctx));
    char why[256];
    char key[VALIDATOR_ID_MAX * 2 + 64];
    if (ctx == NULL)
        abort();
    ctx->app = app;
    fl_job_set_ctx(job, ctx, free);
    if (validator_report_from_avro(value, &ctx->report, why, sizeof(why)) != 0 ||
        validator_check(&ctx->report, why, sizeof(why)) != 0) {
        fl_job_dead_letter(job, "INVALID_EVENT", why);
        return;
    }
    validator_report_t *rep = &ctx->report;
    if (rep->is_base) {
        char marker[256], cov[64], at[32];
        char suffix[200];
        base_key(w, rep->repo, rep->branch, key, sizeof(key));
        snprintf(suffix, sizeof(suffix), "validator:applied:%s", fl_job_id(job));
        fl_worker_rkey(w, suffix, marker, sizeof(marker));
        snprintf(cov, sizeof(cov), "%.17g", rep->coverage);
        snprintf(at, sizeof(at), "%lld", (long long)rep->produced_at);
        char ttl[32];
        snprintf(ttl, sizeof(ttl), "%lld", app->dedup_ttl);
        const char *argv[] = {key, marker, cov, at, rep->commit, fl_job_id(job), ttl};
        fl_job_redis_eval(job, &app->base_script, 2, 7, argv, NULL, base_applied_cb);
        return;
    }
    base_key(w, rep->repo, rep->base_branch, key, sizeof(key));
    const char *argv[] = {"HGET", key, "coverage"};
    fl_job_redis(job, 3, argv, NULL, base_loaded_cb);
}

int main(int argc, char **argv) {
    static const char *const inputs[] = {"ci_report", NULL};
    static const char *const outputs[] = {"validation_result", NULL};
    validator_app_t app;
    memset(&app, 0, sizeof(app));
    fl_worker_def_t def = {
        .name = "validator",
        .summary = "Judges CI reports (tests, coverage against the base branch, code quality) "
                   "and emits validation results.",
        .inputs = inputs,
        .outputs = outputs,
        .keys = validator_keys,
        .nkeys = sizeof(validator_keys) / sizeof(validator_keys[0]),
        .uses_redis = true,
        .configure = app_configure,
        .init = app_init,
        .handle = handle,
        .fini = app_fini,
    };
    return fl_worker_main(&def, &app, argc, argv);
}
