/* feedloop-kafka-admin: the two admin steps the test harness needs on a real Kafka broker,
 * done with librdkafka rather than Kafka's Java tools because a JVM start costs more than the
 * whole operation (see tests/kafka/create-topics.sh):
 *
 *   metadata                         succeed once the cluster answers a Metadata request
 *   create-topics <partitions> <topic...>
 *                                    CreateTopics (existing topics are fine), then wait until
 *                                    every partition of every topic has a leader
 *
 * It also proves that librdkafka's Admin API works against the broker the tests run. */
#include "fl_err.h"
#include "fl_log.h"

#include <librdkafka/rdkafka.h>

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct kadmin_opts {
    const char *bootstrap;
    int timeout_ms;
    int replication;
} kadmin_opts_t;

static void usage(FILE *out, const char *prog) {
    fprintf(out,
            "usage: %s -b BOOTSTRAP [-t TIMEOUT_MS] [-r REPLICATION] <command> [args]\n"
            "\n"
            "commands:\n"
            "  metadata                              wait until the cluster serves metadata\n"
            "  create-topics <partitions> <topic...> create topics (existing ones are left as\n"
            "                                        they are) and wait for their leaders\n"
            "\n"
            "options:\n"
            "  -b, --bootstrap HOST:PORT[,...]  brokers to ask\n"
            "  -t, --timeout MS                 give up after MS (default 30000)\n"
            "  -r, --replication N              replication factor of new topics (default 1)\n"
            "  -h, --help                       this text\n",
            prog);
}

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int parse_int(const char *s, long lo, long hi, long *out) {
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
        return FL_EINVAL;
    *out = v;
    return 0;
}

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
    /* Connection refusals while the broker starts are expected; only errors matter here. */
    if (level <= 3)
        fl_debug("rdkafka %s: %s", fac, buf);
}

static rd_kafka_t *client_new(const kadmin_opts_t *o) {
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk = NULL;

    rd_kafka_conf_set_log_cb(conf, log_cb);
    if (rd_kafka_conf_set(conf, "bootstrap.servers", o->bootstrap, errstr, sizeof(errstr)) !=
            RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "client.id", "feedloop-kafka-admin", errstr, sizeof(errstr)) !=
            RD_KAFKA_CONF_OK) {
        fl_error("config: %s", errstr);
        goto out;
    }
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (rk == NULL) {
        fl_error("rd_kafka_new: %s", errstr);
        goto out;
    }
    conf = NULL;
out:
    if (conf != NULL)
        rd_kafka_conf_destroy(conf);
    return rk;
}

/* True when every named topic exists with at least `partitions` partitions, each led. */
static bool topics_ready(const rd_kafka_metadata_t *md, char **topics, int ntopics,
                         int partitions) {
    for (int i = 0; i < ntopics; i++) {
        const rd_kafka_metadata_topic_t *t = NULL;
        for (int j = 0; j < md->topic_cnt; j++) {
            if (strcmp(md->topics[j].topic, topics[i]) == 0)
                t = &md->topics[j];
        }
        if (t == NULL || t->err != RD_KAFKA_RESP_ERR_NO_ERROR || t->partition_cnt < partitions)
            return false;
        for (int p = 0; p < t->partition_cnt; p++) {
            if (t->partitions[p].err != RD_KAFKA_RESP_ERR_NO_ERROR || t->partitions[p].leader < 0)
                return false;
        }
    }
    return true;
}

/* Poll Metadata (all topics, so nothing is auto-created) until ready or the deadline. */
static int metadata_wait(rd_kafka_t *rk, char **topics, int ntopics, int partitions,
                         int64_t deadline) {
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR__TIMED_OUT;

    for (;;) {
        const rd_kafka_metadata_t *md = NULL;
        int64_t left = deadline - now_ms();
        if (left <= 0)
            break;
        err = rd_kafka_metadata(rk, 1, NULL, &md, (int)(left < 2000 ? left : 2000));
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            bool ready = md->broker_cnt > 0 && topics_ready(md, topics, ntopics, partitions);
            if (ready && ntopics == 0)
                printf("brokers %d topics %d\n", md->broker_cnt, md->topic_cnt);
            rd_kafka_metadata_destroy(md);
            if (ready)
                return 0;
        }
        usleep(100 * 1000);
    }
    fl_error("metadata not ready before the deadline (last: %s)", rd_kafka_err2str(err));
    return FL_ETIMEOUT;
}

static int create_topics(rd_kafka_t *rk, const kadmin_opts_t *o, int partitions, char **topics,
                         int ntopics, int64_t deadline) {
    char errstr[512];
    rd_kafka_NewTopic_t **newt = calloc((size_t)ntopics, sizeof(*newt));
    rd_kafka_AdminOptions_t *options = NULL;
    rd_kafka_queue_t *rkqu = NULL;
    rd_kafka_event_t *rkev = NULL;
    int ret = FL_EKAFKA;

    if (newt == NULL)
        abort();
    for (int i = 0; i < ntopics; i++) {
        newt[i] =
            rd_kafka_NewTopic_new(topics[i], partitions, o->replication, errstr, sizeof(errstr));
        if (newt[i] == NULL) {
            fl_error("topic %s: %s", topics[i], errstr);
            ret = FL_EINVAL;
            goto out;
        }
    }
    options = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    int timeout = (int)(deadline - now_ms());
    if (timeout < 1000)
        timeout = 1000;
    if (rd_kafka_AdminOptions_set_request_timeout(options, timeout, errstr, sizeof(errstr)) ||
        rd_kafka_AdminOptions_set_operation_timeout(options, timeout, errstr, sizeof(errstr))) {
        fl_error("admin options: %s", errstr);
        goto out;
    }
    rkqu = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, newt, (size_t)ntopics, options, rkqu);
    rkev = rd_kafka_queue_poll(rkqu, timeout + 5000);
    if (rkev == NULL) {
        fl_error("CreateTopics: no result within %d ms", timeout + 5000);
        ret = FL_ETIMEOUT;
        goto out;
    }
    if (rd_kafka_event_error(rkev) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fl_error("CreateTopics: %s", rd_kafka_event_error_string(rkev));
        goto out;
    }
    size_t cnt = 0;
    const rd_kafka_topic_result_t **res =
        rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(rkev), &cnt);
    bool failed = false;
    for (size_t i = 0; i < cnt; i++) {
        rd_kafka_resp_err_t err = rd_kafka_topic_result_error(res[i]);
        if (err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
            fl_debug("topic %s already exists", rd_kafka_topic_result_name(res[i]));
        } else if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            const char *msg = rd_kafka_topic_result_error_string(res[i]);
            fl_error("topic %s: %s", rd_kafka_topic_result_name(res[i]),
                     msg != NULL ? msg : rd_kafka_err2str(err));
            failed = true;
        }
    }
    if (failed)
        goto out;
    /* CreateTopics answers once the controller has the topics; the broker's metadata cache
     * (what clients see) follows a moment later. A test that produces right away must not
     * race it. */
    ret = metadata_wait(rk, topics, ntopics, 1, deadline);
out:
    if (rkev != NULL)
        rd_kafka_event_destroy(rkev);
    if (rkqu != NULL)
        rd_kafka_queue_destroy(rkqu);
    if (options != NULL)
        rd_kafka_AdminOptions_destroy(options);
    for (int i = 0; i < ntopics; i++) {
        if (newt[i] != NULL)
            rd_kafka_NewTopic_destroy(newt[i]);
    }
    free(newt);
    return ret;
}

int main(int argc, char **argv) {
    static const struct option opts[] = {
        {"bootstrap", required_argument, NULL, 'b'},
        {"timeout", required_argument, NULL, 't'},
        {"replication", required_argument, NULL, 'r'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    kadmin_opts_t o = {.timeout_ms = 30000, .replication = 1};
    rd_kafka_t *rk = NULL;
    long v;
    int opt, status = 2;

    fl_log_init("feedloop-kafka-admin",
                getenv("FL_KAFKA_ADMIN_DEBUG") ? FL_LOG_DEBUG : FL_LOG_INFO);
    /* '+': stop at the command so that its arguments are not taken for options. */
    while ((opt = getopt_long(argc, argv, "+b:t:r:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'b':
            o.bootstrap = optarg;
            break;
        case 't':
            if (parse_int(optarg, 1, 3600 * 1000, &v) != 0) {
                fprintf(stderr, "%s: --timeout %s: must be 1..3600000 ms\n", argv[0], optarg);
                goto out;
            }
            o.timeout_ms = (int)v;
            break;
        case 'r':
            if (parse_int(optarg, 1, 32767, &v) != 0) {
                fprintf(stderr, "%s: --replication %s: must be >= 1\n", argv[0], optarg);
                goto out;
            }
            o.replication = (int)v;
            break;
        case 'h':
            usage(stdout, argv[0]);
            status = 0;
            goto out;
        default:
            fprintf(stderr, "%s: see --help\n", argv[0]);
            goto out;
        }
    }
    if (o.bootstrap == NULL || optind >= argc) {
        usage(stderr, argv[0]);
        goto out;
    }

    const char *cmd = argv[optind];
    int64_t deadline = now_ms() + o.timeout_ms;
    if (strcmp(cmd, "metadata") == 0 && optind + 1 == argc) {
        rk = client_new(&o);
        status = rk != NULL && metadata_wait(rk, NULL, 0, 0, deadline) == 0 ? 0 : 1;
    } else if (strcmp(cmd, "create-topics") == 0 && optind + 2 < argc) {
        if (parse_int(argv[optind + 1], 1, 100000, &v) != 0) {
            fprintf(stderr, "%s: create-topics: bad partition count '%s'\n", argv[0],
                    argv[optind + 1]);
            goto out;
        }
        rk = client_new(&o);
        status = rk != NULL && create_topics(rk, &o, (int)v, argv + optind + 2, argc - optind - 2,
                                             deadline) == 0
                     ? 0
                     : 1;
    } else {
        usage(stderr, argv[0]);
    }
out:
    if (rk != NULL)
        rd_kafka_destroy(rk);
    return status;
}
