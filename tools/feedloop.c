/* feedloop: the command line of the loop.
 *
 *   feedloop emit <event-type> [FILE|-]   JSON (one object, or JSON lines) -> Avro -> topic
 *   feedloop tail <event-type|topic>      topic -> JSON lines, until stopped or --count
 *   feedloop broker [...]                 host a librdkafka mock cluster (see feedloop broker
 * --help) feedloop types                        list the event types compiled in
 *
 * emit and tail take the same configuration as the workers (file, FEEDLOOP_* environment,
 * --key=value, --kafka.<property>). */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker.h"
#include "fl_codec.h"
#include "fl_config.h"
#include "fl_id.h"
#include "fl_kafka.h"
#include "fl_log.h"

extern char **environ;

static const fl_config_key_t emit_keys[] = {
    {"ce-id", FL_CFG_STRING, NULL, 0, -1,
     "ce_id header of the event (single event only; default: a random UUID)"},
    {"key-field", FL_CFG_STRING, NULL, 0, -1,
     "field whose value is the Kafka key (default: the type's key: change_id, service, ...)"},
    {"timeout.ms", FL_CFG_INT, "30000", 100, 3600000, "how long to wait for acknowledgements"},
};

static const fl_config_key_t tail_keys[] = {
    {"count", FL_CFG_INT, "0", 0, 1e12, "stop after this many events (0 = never)"},
    {"timeout.ms", FL_CFG_INT, "0", 0, 3600000,
     "stop when nothing arrived for this long (0 = never)"},
    {"headers", FL_CFG_BOOL, "false", 0, -1,
     "print {topic, partition, offset, key, headers, value} instead of the bare value"},
    {"from", FL_CFG_STRING, "beginning", 0, -1, "beginning or end"},
};

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

static void usage(FILE *out) {
    fprintf(out,
            "Usage: feedloop <command> [options]\n\n"
            "Commands:\n"
            "  emit <event-type> [FILE|-]   read JSON (one object or JSON lines) from FILE or\n"
            "                               stdin, check it against the schema, produce it\n"
            "  tail <event-type|topic>      decode a topic to JSON lines\n"
            "  broker [options]             host a librdkafka mock cluster (local runs, tests)\n"
            "  types                        list the event types and their topics\n"
            "  help                         this text\n\n"
            "Run `feedloop <command> --help` for the options of a command.\n");
}

static fl_config_t *load_config(const char *cmd, const char *summary, const fl_config_key_t *keys,
                                size_t nkeys, int argc, char **argv, int *exit_code) {
    char prog[64];
    fl_error_t err = {0};
    snprintf(prog, sizeof(prog), "feedloop %s", cmd);
    fl_config_t *cfg = fl_config_new(prog, summary);
    fl_config_declare(cfg, keys, nkeys);
    int rc = fl_config_load(cfg, argc, argv, environ, &err);
    if (rc == 1) {
        *exit_code = 0;
        fl_config_destroy(cfg);
        return NULL;
    }
    if (rc != 0) {
        fprintf(stderr, "%s: %s\n", prog, err.text);
        *exit_code = 2;
        fl_config_destroy(cfg);
        return NULL;
    }
    fl_log_level_t lvl = FL_LOG_WARN;
    if (fl_log_level_parse(fl_config_str(cfg, "log.level"), &lvl) != 0) {
        fprintf(stderr, "%s: log.level: '%s' is not one of debug, info, warn, error\n", prog,
                fl_config_str(cfg, "log.level"));
        *exit_code = 2;
        fl_config_destroy(cfg);
        return NULL;
    }
    /* The CLI is quiet at info: its output is the data. */
    fl_log_init(prog, lvl < FL_LOG_WARN && strcmp(fl_config_str(cfg, "log.level"), "info") == 0
                          ? FL_LOG_WARN
                          : lvl);
    return cfg;
}

/* ---------- emit ---------- */

typedef struct emit_state {
    int acked;
    int failed;
} emit_state_t;

static void emit_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *rkm, void *opaque) {
    emit_state_t *st = opaque;
    if (rkm->err) {
        fprintf(stderr, "feedloop emit: delivery failed: %s\n", rd_kafka_err2str(rkm->err));
        st->failed++;
    } else {
        st->acked++;
    }
}

static void emit_setup(rd_kafka_conf_t *conf, void *arg) {
    rd_kafka_conf_set_opaque(conf, arg);
    rd_kafka_conf_set_dr_msg_cb(conf, emit_dr_cb);
}

static void random_id(char out[FL_ID_LEN]) {
    unsigned char b[16];
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || read(fd, b, sizeof(b)) != (ssize_t)sizeof(b))
        abort();
    close(fd);
    b[6] = (unsigned char)((b[6] & 0x0F) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3F) | 0x80);
    snprintf(out, FL_ID_LEN, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
}

/* The Kafka key of each event type: the entity whose order matters (schemas/README.md). */
static const char *default_key(const char *type) {
    static const char *by_service[] = {"review_decision",
                                       "deploy_command",
                                       "deploy_status",
                                       "metrics_sample",
                                       "canary_alert",
                                       "rollback_request",
                                       "rollback_result",
                                       "error_event",
                                       "performance_feedback",
                                       "notification",
                                       NULL};
    for (const char **t = by_service; *t != NULL; t++)
        if (strcmp(type, *t) == 0)
            return "service";
    if (strcmp(type, "feedback_context") == 0)
        return "agent_session_id";
    if (strcmp(type, "pattern") == 0)
        return "pattern_id";
    if (strcmp(type, "rule_update") == 0)
        return "rule_id";
    if (strcmp(type, "circuit_breaker_event") == 0)
        return "scope";
    return "change_id";
}

/* Read every JSON value of the input: one document, or JSON lines. */
static json_t *read_events(FILE *in, const char *name, int *exit_code) {
    json_t *events = json_array();
    json_error_t jerr;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int lineno = 0;
    /* Slurp, then try a whole document first (pretty-printed JSON spans lines). */
    size_t total = 0, tcap = 0;
    char *all = NULL;
    while ((n = getline(&line, &cap, in)) > 0) {
        if (total + (size_t)n + 1 > tcap) {
            tcap = (total + (size_t)n + 1) * 2;
            all = realloc(all, tcap);
            if (all == NULL)
                abort();
        }
        memcpy(all + total, line, (size_t)n);
        total += (size_t)n;
        all[total] = '\0';
    }
    free(line);
    if (all == NULL) {
        fprintf(stderr, "feedloop emit: %s: no input\n", name);
        *exit_code = 2;
        json_decref(events);
        return NULL;
    }
    json_t *doc = json_loadb(all, total, 0, &jerr);
    if (doc != NULL) {
        if (json_is_array(doc))
            json_array_extend(events, doc);
        else
            json_array_append(events, doc);
        json_decref(doc);
        free(all);
        return events;
    }
    char *save = NULL;
    for (char *l = strtok_r(all, "\n", &save); l != NULL; l = strtok_r(NULL, "\n", &save)) {
        lineno++;
        while (*l == ' ' || *l == '\t' || *l == '\r')
            l++;
        if (*l == '\0')
            continue;
        json_t *v = json_loads(l, 0, &jerr);
        if (v == NULL) {
            fprintf(stderr, "feedloop emit: %s line %d: invalid JSON: %s\n", name, lineno,
                    jerr.text);
            *exit_code = 2;
            json_decref(events);
            free(all);
            return NULL;
        }
        json_array_append_new(events, v);
    }
    free(all);
    return events;
}

static int cmd_emit(int argc, char **argv) {
    int code = 0;
    fl_config_t *cfg = load_config(
        "emit",
        "Usage: feedloop emit <event-type> [FILE|-] [options]\n"
        "Reads JSON (one object, an array, or JSON lines) from FILE or stdin, checks every event\n"
        "against the event type's schema (errors name the field), encodes it (Avro single-object\n"
        "encoding) and produces it to <topic.prefix><event-type> with CloudEvents headers.",
        emit_keys, sizeof(emit_keys) / sizeof(emit_keys[0]), argc, argv, &code);
    if (cfg == NULL)
        return code;
    fl_codec_t *codec = NULL;
    rd_kafka_t *rk = NULL;
    json_t *events = NULL;
    FILE *in = stdin;
    fl_error_t err = {0};
    emit_state_t st = {0, 0};
    int produced = 0;
    if (fl_config_npos(cfg) < 1 || fl_config_npos(cfg) > 2) {
        fprintf(stderr, "feedloop emit: expected <event-type> [FILE|-] (see --help)\n");
        code = 2;
        goto out;
    }
    if (fl_codec_new(&codec, &err) != 0) {
        fprintf(stderr, "feedloop emit: %s\n", err.text);
        code = 1;
        goto out;
    }
    const char *tname = fl_config_pos(cfg, 0);
    const fl_event_type_t *type = fl_codec_type(codec, tname);
    if (type == NULL) {
        fprintf(stderr, "feedloop emit: unknown event type '%s' (see `feedloop types`)\n", tname);
        code = 2;
        goto out;
    }
    const char *file = fl_config_npos(cfg) == 2 ? fl_config_pos(cfg, 1) : "-";
    if (strcmp(file, "-") != 0 && (in = fopen(file, "r")) == NULL) {
        fprintf(stderr, "feedloop emit: %s: %s\n", file, strerror(errno));
        code = 2;
        goto out;
    }
    events = read_events(in, strcmp(file, "-") == 0 ? "stdin" : file, &code);
    if (events == NULL)
        goto out;
    const char *ce_id = fl_config_str(cfg, "ce-id");
    if (ce_id[0] && json_array_size(events) != 1) {
        fprintf(stderr, "feedloop emit: --ce-id needs exactly one event, got %zu\n",
                json_array_size(events));
        code = 2;
        goto out;
    }
    /* Check every event before producing any: a bad batch produces nothing. */
    size_t nev = json_array_size(events);
    avro_value_t *values = calloc(nev ? nev : 1, sizeof(*values));
    if (values == NULL)
        abort();
    size_t made = 0;
    for (size_t i = 0; i < nev; i++, made++) {
        fl_event_type_new_value(type, &values[i]);
        fl_error_t jerr = {0};
        if (fl_codec_from_json(type, json_array_get(events, i), &values[i], &jerr) != 0) {
            fprintf(stderr, "feedloop emit: event %zu: %s\n", i + 1, jerr.text);
            code = 2;
            made++;
            goto free_values;
        }
    }
    rk = fl_kafka_new(cfg, FL_KAFKA_PRODUCER, "feedloop-cli", NULL, emit_setup, &st, &err);
    if (rk == NULL) {
        fprintf(stderr, "feedloop emit: %s\n", err.text);
        code = 2;
        goto free_values;
    }
    char topic[256];
    fl_config_topic(cfg, tname, topic, sizeof(topic));
    const char *kf = fl_config_str(cfg, "key-field");
    for (size_t i = 0; i < nev && !stop_requested; i++) {
        const void *buf;
        size_t len;
        if (fl_codec_encode(codec, type, &values[i], &buf, &len, &err) != 0) {
            fprintf(stderr, "feedloop emit: event %zu: %s\n", i + 1, err.text);
            code = 1;
            break;
        }
        json_t *ev = json_array_get(events, i);
        const char *key = json_string_value(json_object_get(ev, kf[0] ? kf : default_key(tname)));
        char id[FL_ID_LEN];
        char tp[56];
        if (ce_id[0])
            snprintf(id, sizeof(id), "%s", ce_id);
        else
            random_id(id);
        fl_id_traceparent(NULL, id, "emit", tp);
        rd_kafka_headers_t *hdrs = rd_kafka_headers_new(8);
        fl_ce_t ce = {id, fl_event_type_full_name(type), "feedloop/cli", key, tp, fl_now_ms()};
        fl_kafka_headers_add_ce(hdrs, &ce);
        rd_kafka_resp_err_t kerr;
        do {
            kerr = rd_kafka_producev(
                rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                RD_KAFKA_V_KEY(key, key ? strlen(key) : 0), RD_KAFKA_V_VALUE((void *)buf, len),
                RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END);
            if (kerr == RD_KAFKA_RESP_ERR__QUEUE_FULL)
                rd_kafka_poll(rk, 100);
        } while (kerr == RD_KAFKA_RESP_ERR__QUEUE_FULL && !stop_requested);
        if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
            rd_kafka_headers_destroy(hdrs);
            fprintf(stderr, "feedloop emit: produce to %s: %s\n", topic, rd_kafka_err2str(kerr));
            code = 1;
            break;
        }
        produced++;
        rd_kafka_poll(rk, 0);
    }
    rd_kafka_flush(rk, (int)fl_config_int(cfg, "timeout.ms"));
    if (st.acked != produced) {
        fprintf(stderr, "feedloop emit: %d of %d events acknowledged by Kafka\n", st.acked,
                produced);
        code = 1;
    } else {
        fprintf(stderr, "feedloop emit: %d %s event(s) produced to %s\n", produced, tname, topic);
    }
free_values:
    for (size_t i = 0; i < made && i < nev; i++)
        avro_value_decref(&values[i]);
    free(values);
out:
    if (in != stdin && in != NULL)
        fclose(in);
    if (rk)
        rd_kafka_destroy(rk);
    json_decref(events);
    fl_codec_destroy(codec);
    fl_config_destroy(cfg);
    return code;
}

/* ---------- tail ---------- */

static json_t *headers_json(const rd_kafka_message_t *rkm) {
    json_t *obj = json_object();
    rd_kafka_headers_t *hdrs = NULL;
    if (rd_kafka_message_headers(rkm, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return obj;
    const char *name;
    const void *val;
    size_t size;
    for (size_t i = 0; rd_kafka_header_get_all(hdrs, i, &name, &val, &size) == 0; i++)
        json_object_set_new(obj, name, val ? json_stringn_nocheck(val, size) : json_null());
    return obj;
}

static int cmd_tail(int argc, char **argv) {
    int code = 0;
    fl_config_t *cfg = load_config(
        "tail",
        "Usage: feedloop tail <event-type|topic> [options]\n"
        "Reads every partition of the topic (no consumer group, nothing committed) and prints\n"
        "each event decoded to one JSON line, until interrupted, --count or --timeout.ms.",
        tail_keys, sizeof(tail_keys) / sizeof(tail_keys[0]), argc, argv, &code);
    if (cfg == NULL)
        return code;
    fl_codec_t *codec = NULL;
    rd_kafka_t *rk = NULL;
    const rd_kafka_metadata_t *md = NULL;
    rd_kafka_topic_partition_list_t *parts = NULL;
    fl_error_t err = {0};
    if (fl_config_npos(cfg) != 1) {
        fprintf(stderr, "feedloop tail: expected <event-type|topic> (see --help)\n");
        code = 2;
        goto out;
    }
    const char *from = fl_config_str(cfg, "from");
    if (strcmp(from, "beginning") != 0 && strcmp(from, "end") != 0) {
        fprintf(stderr, "feedloop tail: from: '%s' is not one of beginning, end\n", from);
        code = 2;
        goto out;
    }
    if (fl_codec_new(&codec, &err) != 0) {
        fprintf(stderr, "feedloop tail: %s\n", err.text);
        code = 1;
        goto out;
    }
    char topic[256];
    const char *arg = fl_config_pos(cfg, 0);
    if (fl_codec_type(codec, arg) != NULL)
        fl_config_topic(cfg, arg, topic, sizeof(topic));
    else
        snprintf(topic, sizeof(topic), "%s", arg);
    /* No group: tail is a read-only view and must not move anyone's offsets. */
    rk =
        fl_kafka_new(cfg, FL_KAFKA_CONSUMER, "feedloop-cli", "feedloop-cli-tail", NULL, NULL, &err);
    if (rk == NULL) {
        fprintf(stderr, "feedloop tail: %s\n", err.text);
        code = 2;
        goto out;
    }
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    rd_kafka_resp_err_t kerr = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
    rd_kafka_topic_destroy(rkt);
    if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR || md->topic_cnt != 1 ||
        md->topics[0].err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "feedloop tail: topic %s: %s\n", topic,
                rd_kafka_err2str(kerr ? kerr : md->topics[0].err));
        code = 1;
        goto out;
    }
    parts = rd_kafka_topic_partition_list_new(md->topics[0].partition_cnt);
    for (int i = 0; i < md->topics[0].partition_cnt; i++)
        rd_kafka_topic_partition_list_add(parts, topic, md->topics[0].partitions[i].id)->offset =
            strcmp(from, "end") == 0 ? RD_KAFKA_OFFSET_END : RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(rk, parts);
    long long want = fl_config_int(cfg, "count");
    long long idle_ms = fl_config_int(cfg, "timeout.ms");
    bool with_headers = fl_config_bool(cfg, "headers");
    long long seen = 0;
    int64_t last = fl_now_ms();
    while (!stop_requested && (want == 0 || seen < want)) {
        rd_kafka_message_t *rkm = rd_kafka_consumer_poll(rk, 100);
        if (rkm == NULL) {
            if (idle_ms > 0 && fl_now_ms() - last >= idle_ms) {
                if (want > 0) {
                    fprintf(stderr, "feedloop tail: %lld of %lld events before the timeout\n", seen,
                            want);
                    code = 1;
                }
                break;
            }
            continue;
        }
        if (rkm->err) {
            if (rkm->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                fprintf(stderr, "feedloop tail: %s\n", rd_kafka_message_errstr(rkm));
            rd_kafka_message_destroy(rkm);
            continue;
        }
        last = fl_now_ms();
        const fl_event_type_t *type = NULL;
        avro_value_t *value = NULL;
        json_t *vj;
        if (fl_codec_decode(codec, rkm->payload, rkm->payload ? rkm->len : 0, &type, &value,
                            &err) == 0)
            vj = fl_codec_to_json(value);
        else
            vj = json_pack("{s:s}", "error", err.text);
        json_t *outj = vj;
        if (with_headers) {
            outj = json_object();
            json_object_set_new(outj, "topic", json_string(rd_kafka_topic_name(rkm->rkt)));
            json_object_set_new(outj, "partition", json_integer(rkm->partition));
            json_object_set_new(outj, "offset", json_integer(rkm->offset));
            json_object_set_new(
                outj, "key", rkm->key ? json_stringn_nocheck(rkm->key, rkm->key_len) : json_null());
            json_object_set_new(outj, "type", json_string(type ? fl_event_type_name(type) : ""));
            json_object_set_new(outj, "headers", headers_json(rkm));
            json_object_set_new(outj, "value", vj);
        }
        char *s = json_dumps(outj, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_REAL_PRECISION(15));
        if (s != NULL) {
            fputs(s, stdout);
            fputc('\n', stdout);
            fflush(stdout);
            free(s);
        }
        json_decref(outj);
        rd_kafka_message_destroy(rkm);
        seen++;
    }
out:
    if (parts)
        rd_kafka_topic_partition_list_destroy(parts);
    if (md)
        rd_kafka_metadata_destroy(md);
    if (rk) {
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
    }
    fl_codec_destroy(codec);
    fl_config_destroy(cfg);
    return code;
}

static int cmd_types(void) {
    fl_codec_t *codec = NULL;
    fl_error_t err = {0};
    if (fl_codec_new(&codec, &err) != 0) {
        fprintf(stderr, "feedloop types: %s\n", err.text);
        return 1;
    }
    for (size_t i = 0; i < fl_codec_type_count(codec); i++) {
        const fl_event_type_t *t = fl_codec_type_at(codec, i);
        printf("%-24s feedloop.%-24s %s %016llx\n", fl_event_type_name(t), fl_event_type_name(t),
               fl_event_type_full_name(t), (unsigned long long)fl_event_type_fingerprint(t));
    }
    fl_codec_destroy(codec);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "broker") == 0)
        return fl_broker_main(argc - 1, argv + 1);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (strcmp(cmd, "emit") == 0)
        return cmd_emit(argc - 1, argv + 1);
    if (strcmp(cmd, "tail") == 0)
        return cmd_tail(argc - 1, argv + 1);
    if (strcmp(cmd, "types") == 0)
        return cmd_types();
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "feedloop: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return 2;
}
