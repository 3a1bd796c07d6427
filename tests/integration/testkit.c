/* fl-testkit: what the integration tests need that the CLI deliberately does not offer.
 *
 *   fl-testkit payload <kind>                 write a crafted value to stdout:
 *       garbage | bad-magic | short | unknown-fingerprint | truncated | trailing |
 *       nan-coverage | wrong-type
 *   fl-testkit produce <bootstrap> <topic> <key> [ce_id]
 *                                             produce stdin's bytes verbatim, wait for the ack
 *   fl-testkit committed <bootstrap> <group> <topic>
 *                                             print the sum of the group's committed offsets
 *   fl-testkit ids <bootstrap> <topic>        print "<ce_id> <key>" of every message, then exit
 */
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fl_codec.h"

static int die(const char *msg) {
    fprintf(stderr, "fl-testkit: %s\n", msg);
    return 1;
}

static int payload(const char *kind) {
    fl_codec_t *codec = NULL;
    fl_error_t err = {0};
    if (fl_codec_new(&codec, &err) != 0)
        return die(err.text);
    const fl_event_type_t *ci = fl_codec_type(codec, "ci_report");
    const char *src = getenv("FL_SOURCE_DIR");
    char path[1024];
    snprintf(path, sizeof(path), "%s/tests/fixtures/events/ci_report.json", src ? src : ".");
    json_error_t jerr;
    json_t *j = json_load_file(path, 0, &jerr);
    if (j == NULL)
        return die(jerr.text);
    avro_value_t v;
    fl_event_type_new_value(ci, &v);
    if (fl_codec_from_json(ci, j, &v, &err) != 0)
        return die(err.text);
    const void *buf;
    size_t len;
    unsigned char out[65536];
    size_t n = 0;
    if (strcmp(kind, "nan-coverage") == 0) {
        avro_value_t tests, unit, cov;
        avro_value_get_by_name(&v, "tests", &tests, NULL);
        avro_value_get_by_name(&tests, "unit", &unit, NULL);
        avro_value_get_by_name(&unit, "coverage", &cov, NULL);
        avro_value_set_double(&cov, NAN);
    }
    if (strcmp(kind, "wrong-type") == 0) {
        const fl_event_type_t *dl = fl_codec_type(codec, "notification");
        snprintf(path, sizeof(path), "%s/tests/fixtures/events/notification.json", src ? src : ".");
        json_t *nj = json_load_file(path, 0, &jerr);
        avro_value_t nv;
        fl_event_type_new_value(dl, &nv);
        if (nj == NULL || fl_codec_from_json(dl, nj, &nv, &err) != 0)
            return die("notification fixture");
        fl_codec_encode(codec, dl, &nv, &buf, &len, &err);
        memcpy(out, buf, len);
        n = len;
        avro_value_decref(&nv);
        json_decref(nj);
    } else {
        if (fl_codec_encode(codec, ci, &v, &buf, &len, &err) != 0)
            return die(err.text);
        memcpy(out, buf, len);
        n = len;
    }
    if (strcmp(kind, "garbage") == 0) {
        n = 0;
        for (int i = 0; i < 40; i++)
            out[n++] = (unsigned char)(i * 37 + 11);
    } else if (strcmp(kind, "bad-magic") == 0) {
        out[0] = 0xC4;
    } else if (strcmp(kind, "short") == 0) {
        n = 5;
    } else if (strcmp(kind, "unknown-fingerprint") == 0) {
        for (int i = 2; i < 10; i++)
            out[i] ^= 0x5A;
    } else if (strcmp(kind, "truncated") == 0) {
        n = n / 2;
    } else if (strcmp(kind, "trailing") == 0) {
        out[n++] = 0x00;
        out[n++] = 0x42;
    } else if (strcmp(kind, "valid") != 0 && strcmp(kind, "nan-coverage") != 0 &&
               strcmp(kind, "wrong-type") != 0) {
        return die("unknown payload kind");
    }
    fwrite(out, 1, n, stdout);
    avro_value_decref(&v);
    json_decref(j);
    fl_codec_destroy(codec);
    return 0;
}

static rd_kafka_t *client(rd_kafka_type_t type, const char *bootstrap, const char *group) {
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, errstr, sizeof(errstr));
    if (group) {
        rd_kafka_conf_set(conf, "group.id", group, errstr, sizeof(errstr));
        rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, sizeof(errstr));
    }
    rd_kafka_t *rk = rd_kafka_new(type, conf, errstr, sizeof(errstr));
    if (rk == NULL) {
        fprintf(stderr, "fl-testkit: %s\n", errstr);
        exit(1);
    }
    return rk;
}

static int produce(const char *bootstrap, const char *topic, const char *key, const char *ce_id) {
    static unsigned char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof(buf), stdin);
    rd_kafka_t *rk = client(RD_KAFKA_PRODUCER, bootstrap, NULL);
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(2);
    if (ce_id)
        rd_kafka_header_add(hdrs, "ce_id", -1, ce_id, -1);
    rd_kafka_resp_err_t err =
        rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                          RD_KAFKA_V_KEY(key, strlen(key)), RD_KAFKA_V_VALUE(buf, n),
                          RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END);
    if (err)
        return die(rd_kafka_err2str(err));
    if (rd_kafka_flush(rk, 15000) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return die("not acknowledged");
    rd_kafka_destroy(rk);
    return 0;
}

static const rd_kafka_metadata_topic_t *topic_md(rd_kafka_t *rk, const char *topic,
                                                 const rd_kafka_metadata_t **md) {
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, md, 10000);
    rd_kafka_topic_destroy(rkt);
    if (err || (*md)->topic_cnt != 1)
        return NULL;
    return &(*md)->topics[0];
}

static int committed(const char *bootstrap, const char *group, const char *topic) {
    rd_kafka_t *rk = client(RD_KAFKA_CONSUMER, bootstrap, group);
    const rd_kafka_metadata_t *md = NULL;
    const rd_kafka_metadata_topic_t *t = topic_md(rk, topic, &md);
    if (t == NULL)
        return die("metadata");
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(t->partition_cnt);
    for (int i = 0; i < t->partition_cnt; i++)
        rd_kafka_topic_partition_list_add(list, topic, t->partitions[i].id);
    rd_kafka_resp_err_t err = rd_kafka_committed(rk, list, 10000);
    if (err)
        return die(rd_kafka_err2str(err));
    int64_t sum = 0;
    for (int i = 0; i < list->cnt; i++)
        if (list->elems[i].offset > 0)
            sum += list->elems[i].offset;
    printf("%" PRId64 "\n", sum);
    rd_kafka_topic_partition_list_destroy(list);
    rd_kafka_metadata_destroy(md);
    rd_kafka_destroy(rk);
    return 0;
}

/* Every message currently in the topic: "<ce_id> <key>" lines. */
static int ids(const char *bootstrap, const char *topic) {
    rd_kafka_t *rk = client(RD_KAFKA_CONSUMER, bootstrap, "fl-testkit-ids");
    const rd_kafka_metadata_t *md = NULL;
    const rd_kafka_metadata_topic_t *t = topic_md(rk, topic, &md);
    if (t == NULL)
        return die("metadata");
    int64_t remaining = 0;
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(t->partition_cnt);
    for (int i = 0; i < t->partition_cnt; i++) {
        int64_t lo = 0, hi = 0;
        rd_kafka_query_watermark_offsets(rk, topic, t->partitions[i].id, &lo, &hi, 10000);
        remaining += hi - lo;
        rd_kafka_topic_partition_list_add(list, topic, t->partitions[i].id)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
    }
    rd_kafka_assign(rk, list);
    int idle = 0;
    while (remaining > 0 && idle < 100) {
        rd_kafka_message_t *rkm = rd_kafka_consumer_poll(rk, 100);
        if (rkm == NULL) {
            idle++;
            continue;
        }
        idle = 0;
        if (!rkm->err) {
            rd_kafka_headers_t *hdrs = NULL;
            const void *val = NULL;
            size_t size = 0;
            if (rd_kafka_message_headers(rkm, &hdrs) == 0)
                rd_kafka_header_get_last(hdrs, "ce_id", &val, &size);
            printf("%.*s %.*s\n", (int)size, val ? (const char *)val : "", (int)rkm->key_len,
                   rkm->key ? (const char *)rkm->key : "");
            remaining--;
        }
        rd_kafka_message_destroy(rkm);
    }
    rd_kafka_topic_partition_list_destroy(list);
    rd_kafka_metadata_destroy(md);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return remaining == 0 ? 0 : die("could not read the whole topic");
}

int main(int argc, char **argv) {
    if (argc >= 3 && strcmp(argv[1], "payload") == 0)
        return payload(argv[2]);
    if (argc >= 5 && strcmp(argv[1], "produce") == 0)
        return produce(argv[2], argv[3], argv[4], argc >= 6 ? argv[5] : NULL);
    if (argc == 5 && strcmp(argv[1], "committed") == 0)
        return committed(argv[2], argv[3], argv[4]);
    if (argc == 4 && strcmp(argv[1], "ids") == 0)
        return ids(argv[2], argv[3]);
    fprintf(stderr, "usage: see the comment at the top of tests/integration/testkit.c\n");
    return 2;
}
