/* fl-bench: the measuring half of bench/run.sh.
 *
 *   fl-bench fill <bootstrap> <topic> <n>     produce n distinct CI reports (change reports
 *                                             against one repo), wait for every ack
 *   fl-bench fill-bench <bootstrap> <topic> <n> <samples>
 *                                             produce n bench reports, each with two metrics of
 *                                             <samples> baseline and <samples> candidate samples
 *   fl-bench consume <bootstrap> <topic> <n>  raw librdkafka consume of n messages from the
 *                                             beginning of every partition; prints msgs/s
 *   fl-bench watch <bootstrap> <topic> <n>    wait until the topic's high watermarks add up to
 *                                             n; prints msgs/s from the first output to the n-th
 *
 * Rates are printed as "rate <msgs/s>" on stdout. */
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fl_codec.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static rd_kafka_t *client(rd_kafka_type_t type, const char *bootstrap) {
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, errstr, sizeof(errstr));
    if (type == RD_KAFKA_PRODUCER) {
        rd_kafka_conf_set(conf, "linger.ms", "5", errstr, sizeof(errstr));
        rd_kafka_conf_set(conf, "queue.buffering.max.messages", "1000000", errstr, sizeof(errstr));
    } else {
        rd_kafka_conf_set(conf, "group.id", "fl-bench-raw", errstr, sizeof(errstr));
        rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, sizeof(errstr));
        rd_kafka_conf_set(conf, "fetch.wait.max.ms", "10", errstr, sizeof(errstr));
    }
    rd_kafka_t *rk = rd_kafka_new(type, conf, errstr, sizeof(errstr));
    if (rk == NULL) {
        fprintf(stderr, "fl-bench: %s\n", errstr);
        exit(1);
    }
    return rk;
}

/* The fixture tests/fixtures/events/<type>.json, as JSON (new reference) or NULL. */
static json_t *load_fixture(const char *type) {
    const char *src = getenv("FL_SOURCE_DIR");
    char path[1024];
    json_error_t jerr;
    snprintf(path, sizeof(path), "%s/tests/fixtures/events/%s.json", src ? src : ".", type);
    json_t *j = json_load_file(path, 0, &jerr);
    if (j == NULL)
        fprintf(stderr, "fl-bench: %s: %s\n", path, jerr.text);
    return j;
}

/* Produce n copies of the event j (of type) to topic, each with its own change_id and key, and
 * wait for every acknowledgement. */
static int fill_topic(const char *bootstrap, const char *topic, long n, const char *type,
                      json_t *j) {
    fl_codec_t *codec = NULL;
    fl_error_t err = {0};
    avro_value_t v, f;
    if (fl_codec_new(&codec, &err) != 0) {
        fprintf(stderr, "fl-bench: %s\n", err.text);
        return 1;
    }
    const fl_event_type_t *et = fl_codec_type(codec, type);
    fl_event_type_new_value(et, &v);
    if (fl_codec_from_json(et, j, &v, &err) != 0) {
        fprintf(stderr, "fl-bench: %s\n", err.text);
        return 1;
    }
    rd_kafka_t *rk = client(RD_KAFKA_PRODUCER, bootstrap);
    avro_value_get_by_name(&v, "change_id", &f, NULL);
    size_t bytes = 0;
    for (long i = 0; i < n; i++) {
        char id[64];
        snprintf(id, sizeof(id), "bench/change-%ld", i);
        avro_value_set_string(&f, id);
        const void *buf;
        size_t len;
        fl_codec_encode(codec, et, &v, &buf, &len, &err);
        bytes = len;
        while (rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic),
                                 RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                 RD_KAFKA_V_KEY(id, strlen(id)), RD_KAFKA_V_VALUE((void *)buf, len),
                                 RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
            rd_kafka_poll(rk, 10);
        rd_kafka_poll(rk, 0);
    }
    if (rd_kafka_flush(rk, 60000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "fl-bench: fill not acknowledged\n");
        return 1;
    }
    fprintf(stderr, "fl-bench: %ld %s events (%zu bytes each) in %s\n", n, type, bytes, topic);
    rd_kafka_destroy(rk);
    avro_value_decref(&v);
    fl_codec_destroy(codec);
    return 0;
}

static int fill(const char *bootstrap, const char *topic, long n) {
    json_t *j = load_fixture("ci_report");
    if (j == NULL)
        return 1;
    int rc = fill_topic(bootstrap, topic, n, "ci_report", j);
    json_decref(j);
    return rc;
}

/* Seeded uniform noise in [0, 1) (an LCG: reproducible, no libm). */
static double noise(uint64_t *state) {
    *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(*state >> 11) / 9007199254740992.0;
}

static int fill_bench(const char *bootstrap, const char *topic, long n, long samples) {
    json_t *j = load_fixture("bench_report");
    if (j == NULL)
        return 1;
    /* Two metrics with baseline and candidate samples each. */
    uint64_t st = 42;
    json_t *metrics = json_array();
    const char *names[2] = {"api.checkout.latency_p95", "tool_server.call_ms"};
    for (int m = 0; m < 2; m++) {
        json_t *base = json_array(), *cand = json_array();
        for (long i = 0; i < samples; i++) {
            json_array_append_new(base, json_real(200.0 * (0.97 + 0.06 * noise(&st))));
            json_array_append_new(cand, json_real(201.0 * (0.97 + 0.06 * noise(&st))));
        }
        json_array_append_new(metrics,
                              json_pack("{s:s,s:s,s:s,s:o,s:o,s:n}", "name", names[m], "unit", "ms",
                                        "direction", "LOWER_IS_BETTER", "baseline", base,
                                        "candidate", cand, "threshold_percent"));
    }
    json_object_set_new(j, "metrics", metrics);
    int rc = fill_topic(bootstrap, topic, n, "bench_report", j);
    json_decref(j);
    return rc;
}

static int partitions(rd_kafka_t *rk, const char *topic, rd_kafka_topic_partition_list_t **out) {
    const rd_kafka_metadata_t *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
    rd_kafka_topic_destroy(rkt);
    if (err || md->topic_cnt != 1)
        return -1;
    *out = rd_kafka_topic_partition_list_new(md->topics[0].partition_cnt);
    for (int i = 0; i < md->topics[0].partition_cnt; i++)
        rd_kafka_topic_partition_list_add(*out, topic, md->topics[0].partitions[i].id)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_metadata_destroy(md);
    return 0;
}

static int consume(const char *bootstrap, const char *topic, long n) {
    rd_kafka_t *rk = client(RD_KAFKA_CONSUMER, bootstrap);
    rd_kafka_topic_partition_list_t *list = NULL;
    if (partitions(rk, topic, &list) != 0)
        return 1;
    rd_kafka_assign(rk, list);
    long seen = 0;
    double t0 = 0, t1 = 0;
    size_t bytes = 0;
    while (seen < n) {
        rd_kafka_message_t *rkm = rd_kafka_consumer_poll(rk, 1000);
        if (rkm == NULL)
            continue;
        if (!rkm->err) {
            if (seen == 0)
                t0 = now_s();
            seen++;
            bytes += rkm->len;
        }
        rd_kafka_message_destroy(rkm);
    }
    t1 = now_s();
    printf("rate %.0f\n", (double)(n - 1) / (t1 - t0));
    rd_kafka_topic_partition_list_destroy(list);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return 0;
}

static int64_t high_sum(rd_kafka_t *rk, rd_kafka_topic_partition_list_t *list) {
    int64_t sum = 0;
    for (int i = 0; i < list->cnt; i++) {
        int64_t lo = 0, hi = 0;
        rd_kafka_query_watermark_offsets(rk, list->elems[i].topic, list->elems[i].partition, &lo,
                                         &hi, 5000);
        sum += hi;
    }
    return sum;
}

static int watch(const char *bootstrap, const char *topic, long n) {
    rd_kafka_t *rk = client(RD_KAFKA_CONSUMER, bootstrap);
    rd_kafka_topic_partition_list_t *list = NULL;
    if (partitions(rk, topic, &list) != 0)
        return 1;
    double t0 = 0;
    int64_t first = 0, s = 0;
    double deadline = now_s() + 600;
    while ((s = high_sum(rk, list)) < n && now_s() < deadline) {
        if (s > 0 && t0 == 0) {
            t0 = now_s();
            first = s;
        }
        struct timespec d = {0, 100 * 1000 * 1000};
        nanosleep(&d, NULL);
    }
    double t1 = now_s();
    if (s < n) {
        fprintf(stderr, "fl-bench: only %" PRId64 " of %ld outputs\n", s, n);
        return 1;
    }
    printf("rate %.0f\n", (double)(n - first) / (t1 - t0));
    rd_kafka_topic_partition_list_destroy(list);
    rd_kafka_destroy(rk);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 5 && strcmp(argv[1], "fill") == 0)
        return fill(argv[2], argv[3], atol(argv[4]));
    if (argc == 6 && strcmp(argv[1], "fill-bench") == 0)
        return fill_bench(argv[2], argv[3], atol(argv[4]), atol(argv[5]));
    if (argc == 5 && strcmp(argv[1], "consume") == 0)
        return consume(argv[2], argv[3], atol(argv[4]));
    if (argc == 5 && strcmp(argv[1], "watch") == 0)
        return watch(argv[2], argv[3], atol(argv[4]));
    fprintf(stderr, "usage: fl-bench fill|consume|watch <bootstrap> <topic> <n>\n"
                    "       fl-bench fill-bench <bootstrap> <topic> <n> <samples>\n");
    return 2;
}
