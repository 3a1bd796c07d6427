/* kafka_roundtrip: proves a broker (the mock or a real Kafka) does what feedloop needs of it.
 *
 *   kafka_roundtrip -b BOOTSTRAP [-t TOPIC] [-n COUNT] [-g GROUP] [-T TIMEOUT_S]
 *
 * 1. produces COUNT messages tagged with a run id and waits for every delivery report;
 * 2. consumes them back in consumer group GROUP (fresh by default), then commits the offsets
 *    synchronously and reads them back with a committed-offsets request;
 * 3. produces COUNT more, and a second consumer in the same group must get exactly those: none
 *    of step 1's come again, which only holds if the commit really was stored and fetched.
 *
 * Messages of other runs on the same topic are ignored. Exits 0 on success, 1 on any mismatch
 * or timeout (saying which step), 2 on a usage error. */
#include <librdkafka/rdkafka.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct rt {
    const char *bootstrap;
    const char *topic;
    char group[128];
    char run_id[64];
    int count;
    int64_t deadline;
    int delivered;
    int delivery_failed;
} rt_t;

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int time_left(const rt_t *rt) {
    int64_t left = rt->deadline - now_ms();
    return left > 0 ? (int)left : 0;
}

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
    /* Connection errors are expected in the fault-injection steps; keep them for a reader of
     * a failed run, on stderr, without failing anything. */
    if (level <= 4)
        fprintf(stderr, "kafka_roundtrip: rdkafka %s: %s\n", fac, buf);
}

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *rkm, void *opaque) {
    rt_t *rt = opaque;
    if (rkm->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        rt->delivered++;
    } else {
        rt->delivery_failed++;
        fprintf(stderr, "kafka_roundtrip: delivery failed: %s\n", rd_kafka_err2str(rkm->err));
    }
}

static bool conf_set(rd_kafka_conf_t *conf, const char *name, const char *value) {
    char errstr[512];
    if (rd_kafka_conf_set(conf, name, value, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "kafka_roundtrip: %s=%s: %s\n", name, value, errstr);
        return false;
    }
    return true;
}

/* Step 1 and 3: COUNT messages with values "<run_id>:<phase>:<i>". */
static int produce(rt_t *rt, char phase) {
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk = NULL;
    int ret = 1;

    rd_kafka_conf_set_opaque(conf, rt);
    rd_kafka_conf_set_log_cb(conf, log_cb);
    rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
    if (!conf_set(conf, "bootstrap.servers", rt->bootstrap) || !conf_set(conf, "acks", "all") ||
        !conf_set(conf, "linger.ms", "5") || !conf_set(conf, "message.timeout.ms", "60000"))
        goto out;
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (rk == NULL) {
        fprintf(stderr, "kafka_roundtrip: producer: %s\n", errstr);
        goto out;
    }
    conf = NULL;

    rt->delivered = 0;
    rt->delivery_failed = 0;
    for (int i = 0; i < rt->count; i++) {
        char key[32], value[128];
        snprintf(key, sizeof(key), "k%d", i);
        int len = snprintf(value, sizeof(value), "%s:%c:%d", rt->run_id, phase, i);
        rd_kafka_resp_err_t err =
            rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(rt->topic), RD_KAFKA_V_KEY(key, strlen(key)),
                              RD_KAFKA_V_VALUE(value, (size_t)len),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            rd_kafka_poll(rk, 100);
            i--;
            continue;
        }
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            fprintf(stderr, "kafka_roundtrip: produce: %s\n", rd_kafka_err2str(err));
            goto out;
        }
        rd_kafka_poll(rk, 0);
    }
    rd_kafka_flush(rk, time_left(rt));
    if (rt->delivered != rt->count) {
        fprintf(stderr, "kafka_roundtrip: phase %c: %d of %d delivered (%d failed)\n", phase,
                rt->delivered, rt->count, rt->delivery_failed);
        goto out;
    }
    printf("produced %d (phase %c)\n", rt->count, phase);
    ret = 0;
out:
    if (conf != NULL)
        rd_kafka_conf_destroy(conf);
    if (rk != NULL)
        rd_kafka_destroy(rk);
    return ret;
}

static rd_kafka_t *consumer_new(const rt_t *rt) {
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk = NULL;
    rd_kafka_topic_partition_list_t *topics = NULL;

    rd_kafka_conf_set_log_cb(conf, log_cb);
    /* session.timeout.ms and fetch.wait.max.ms as the mock's gaps require (see broker.h). */
    if (!conf_set(conf, "bootstrap.servers", rt->bootstrap) ||
        !conf_set(conf, "group.id", rt->group) ||
        !conf_set(conf, "auto.offset.reset", "earliest") ||
        !conf_set(conf, "enable.auto.commit", "false") ||
        !conf_set(conf, "session.timeout.ms", "6000") ||
        !conf_set(conf, "heartbeat.interval.ms", "500") ||
        !conf_set(conf, "fetch.wait.max.ms", "10"))
        goto out;
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (rk == NULL) {
        fprintf(stderr, "kafka_roundtrip: consumer: %s\n", errstr);
        goto out;
    }
    conf = NULL;
    rd_kafka_poll_set_consumer(rk);
    topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, rt->topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(rk, topics);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "kafka_roundtrip: subscribe: %s\n", rd_kafka_err2str(err));
        rd_kafka_destroy(rk);
        rk = NULL;
    }
out:
    if (topics != NULL)
        rd_kafka_topic_partition_list_destroy(topics);
    if (conf != NULL)
        rd_kafka_conf_destroy(conf);
    return rk;
}

/* Consume until every message of `phase` has been seen. Messages of this run's other phase are
 * counted in *stale (they must not appear once offsets were committed past them). */
static int consume(rt_t *rt, rd_kafka_t *rk, char phase, int *stale) {
    bool *seen = calloc((size_t)rt->count, sizeof(*seen));
    size_t prefix_len = strlen(rt->run_id);
    int nseen = 0, dups = 0, ret = 1;

    if (seen == NULL)
        abort();
    *stale = 0;
    while (nseen < rt->count && time_left(rt) > 0) {
        rd_kafka_message_t *rkm = rd_kafka_consumer_poll(rk, 100);
        if (rkm == NULL)
            continue;
        if (rkm->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            /* Transient errors (broker down, rebalance) are retried by librdkafka itself. */
            if (rkm->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                fprintf(stderr, "kafka_roundtrip: consume: %s\n", rd_kafka_message_errstr(rkm));
            rd_kafka_message_destroy(rkm);
            continue;
        }
        const char *v = rkm->payload;
        char p;
        int i;
        if (rkm->len > prefix_len + 3 && rkm->len < 128 && memcmp(v, rt->run_id, prefix_len) == 0 &&
            v[prefix_len] == ':') {
            char buf[128];
            memcpy(buf, v + prefix_len + 1, rkm->len - prefix_len - 1);
            buf[rkm->len - prefix_len - 1] = '\0';
            if (sscanf(buf, "%c:%d", &p, &i) == 2 && i >= 0 && i < rt->count) {
                if (p != phase)
                    (*stale)++;
                else if (seen[i])
                    dups++;
                else {
                    seen[i] = true;
                    nseen++;
                }
            }
        }
        rd_kafka_message_destroy(rkm);
    }
    if (nseen < rt->count) {
        fprintf(stderr, "kafka_roundtrip: phase %c: consumed %d of %d before the deadline\n", phase,
                nseen, rt->count);
        goto out;
    }
    /* Duplicates are legitimate (a produce retried after a lost response, without
     * idempotence); they are reported, not failed. */
    printf("consumed %d (phase %c, %d duplicates, %d of the other phase)\n", nseen, phase, dups,
           *stale);
    ret = 0;
out:
    free(seen);
    return ret;
}

/* Commit synchronously, then ask the coordinator what it stored and compare with our
 * positions. */
static int commit_and_check(rt_t *rt, rd_kafka_t *rk) {
    rd_kafka_topic_partition_list_t *assigned = NULL, *positions = NULL;
    rd_kafka_resp_err_t err;
    int ret = 1, committed = 0;

    for (;;) {
        err = rd_kafka_commit(rk, NULL, 0);
        /* The mock refuses commits during a rebalance; retry until the deadline. */
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR || time_left(rt) == 0)
            break;
        fprintf(stderr, "kafka_roundtrip: commit: %s (retrying)\n", rd_kafka_err2str(err));
        usleep(200 * 1000);
    }
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "kafka_roundtrip: commit: %s\n", rd_kafka_err2str(err));
        goto out;
    }
    err = rd_kafka_assignment(rk, &assigned);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "kafka_roundtrip: assignment: %s\n", rd_kafka_err2str(err));
        goto out;
    }
    positions = rd_kafka_topic_partition_list_copy(assigned);
    rd_kafka_position(rk, positions);
    err = rd_kafka_committed(rk, assigned, time_left(rt));
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "kafka_roundtrip: committed: %s\n", rd_kafka_err2str(err));
        goto out;
    }
    for (int i = 0; i < assigned->cnt; i++) {
        const rd_kafka_topic_partition_t *c = &assigned->elems[i];
        const rd_kafka_topic_partition_t *p = &positions->elems[i];
        if (p->offset < 0)
            continue; /* nothing consumed there: nothing to commit */
        if (c->err != RD_KAFKA_RESP_ERR_NO_ERROR || c->offset != p->offset) {
            fprintf(stderr,
                    "kafka_roundtrip: %s[%" PRId32 "]: committed %" PRId64
                    " (%s), position %" PRId64 "\n",
                    c->topic, c->partition, c->offset, rd_kafka_err2str(c->err), p->offset);
            goto out;
        }
        committed++;
    }
    printf("committed offsets of %d partitions, read back equal\n", committed);
    ret = 0;
out:
    if (assigned != NULL)
        rd_kafka_topic_partition_list_destroy(assigned);
    if (positions != NULL)
        rd_kafka_topic_partition_list_destroy(positions);
    return ret;
}

static int run(rt_t *rt) {
    rd_kafka_t *rk = NULL;
    int stale = 0, ret = 1;

    if (produce(rt, 'a') != 0)
        goto out;
    rk = consumer_new(rt);
    if (rk == NULL || consume(rt, rk, 'a', &stale) != 0 || commit_and_check(rt, rk) != 0)
        goto out;
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    rk = NULL;

    if (produce(rt, 'b') != 0)
        goto out;
    rk = consumer_new(rt);
    if (rk == NULL || consume(rt, rk, 'b', &stale) != 0)
        goto out;
    if (stale != 0) {
        fprintf(stderr,
                "kafka_roundtrip: %d phase-a messages redelivered: committed offsets not "
                "honoured\n",
                stale);
        goto out;
    }
    if (commit_and_check(rt, rk) != 0)
        goto out;
    printf("resumed from committed offsets: ok\n");
    ret = 0;
out:
    if (rk != NULL) {
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
    }
    return ret;
}

int main(int argc, char **argv) {
    rt_t rt = {.topic = "feedloop.ci_report", .count = 100};
    const char *group = NULL;
    int timeout_s = 60, opt;

    while ((opt = getopt(argc, argv, "b:t:n:g:T:h")) != -1) {
        switch (opt) {
        case 'b':
            rt.bootstrap = optarg;
            break;
        case 't':
            rt.topic = optarg;
            break;
        case 'n':
            rt.count = atoi(optarg);
            break;
        case 'g':
            group = optarg;
            break;
        case 'T':
            timeout_s = atoi(optarg);
            break;
        default:
            fprintf(stderr,
                    "usage: %s -b BOOTSTRAP [-t TOPIC] [-n COUNT] [-g GROUP] "
                    "[-T TIMEOUT_S]\n",
                    argv[0]);
            return opt == 'h' ? 0 : 2;
        }
    }
    if (rt.bootstrap == NULL || rt.count <= 0 || rt.count > 1000000 || timeout_s <= 0 ||
        optind != argc) {
        fprintf(stderr, "%s: -b is required; -n 1..1000000, -T > 0 (see -h)\n", argv[0]);
        return 2;
    }
    snprintf(rt.run_id, sizeof(rt.run_id), "rt%ld-%lld", (long)getpid(), (long long)time(NULL));
    snprintf(rt.group, sizeof(rt.group), "%s", group != NULL ? group : rt.run_id);
    rt.deadline = now_ms() + (int64_t)timeout_s * 1000;

    int64_t t0 = now_ms();
    int ret = run(&rt);
    printf("%s in %.1f s\n", ret == 0 ? "roundtrip ok" : "roundtrip FAILED",
           (double)(now_ms() - t0) / 1000.0);
    return ret;
}
