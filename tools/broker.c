/* broker: the librdkafka mock cluster host (see broker.h).
 *
 * The mock cluster runs on librdkafka's own thread; this file only sets it up and then waits in
 * poll() for a signal or a control line, so every fault-injection call is made from the main
 * thread through librdkafka's thread-safe mock API. */
#include "broker.h"
#include "fl_err.h"
#include "fl_log.h"

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define FL_BROKER_MAX_BROKERS 64
#define FL_BROKER_MAX_PARTITIONS 10000
#define FL_BROKER_MAX_CONTROLS 4
#define FL_BROKER_MAX_ERRCNT 10000
#define FL_BROKER_LINE_MAX 1024
/* How often a regular control file is re-read for appended lines (a FIFO or stdin wakes poll
 * by itself; a regular file is always "readable" and would make poll spin). */
#define FL_BROKER_FILE_POLL_MS 200

/* The loop's default topics are "feedloop.<type>", one per event type. */
static const char *const default_types[] = {
    "ci_report",        "validation_result",    "bench_report",    "benchmark_result",
    "review_request",   "review_decision",      "deploy_command",  "deploy_status",
    "metrics_sample",   "rollback_request",     "rollback_result", "deployment_outcome",
    "error_event",      "deployment_analysis",  "rule_update",     "risk_assessment",
    "feedback_context", "performance_feedback", "pattern",         "circuit_breaker_event",
    "notification",     "canary_alert",         "dead_letter",
};

/* Kafka protocol ApiKey names, indexed by key, for `request-error <ApiKey>`. librdkafka keeps
 * its own table private (rdkafka_protocol.h is not installed). */
static const char *const api_names[] = {
    "Produce",
    "Fetch",
    "ListOffsets",
    "Metadata",
    "LeaderAndIsr",
    "StopReplica",
    "UpdateMetadata",
    "ControlledShutdown",
    "OffsetCommit",
    "OffsetFetch",
    "FindCoordinator",
    "JoinGroup",
    "Heartbeat",
    "LeaveGroup",
    "SyncGroup",
    "DescribeGroups",
    "ListGroups",
    "SaslHandshake",
    "ApiVersions",
    "CreateTopics",
    "DeleteTopics",
    "DeleteRecords",
    "InitProducerId",
    "OffsetForLeaderEpoch",
    "AddPartitionsToTxn",
    "AddOffsetsToTxn",
    "EndTxn",
    "WriteTxnMarkers",
    "TxnOffsetCommit",
    "DescribeAcls",
    "CreateAcls",
    "DeleteAcls",
    "DescribeConfigs",
    "AlterConfigs",
    "AlterReplicaLogDirs",
    "DescribeLogDirs",
    "SaslAuthenticate",
    "CreatePartitions",
    "CreateDelegationToken",
    "RenewDelegationToken",
    "ExpireDelegationToken",
    "DescribeDelegationToken",
    "DeleteGroups",
    "ElectLeaders",
    "IncrementalAlterConfigs",
    "AlterPartitionReassignments",
    "ListPartitionReassignments",
    "OffsetDelete",
    "DescribeClientQuotas",
    "AlterClientQuotas",
    "DescribeUserScramCredentials",
    "AlterUserScramCredentials",
    "Vote",
    "BeginQuorumEpoch",
    "EndQuorumEpoch",
    "DescribeQuorum",
    "AlterPartition",
    "UpdateFeatures",
    "Envelope",
    "FetchSnapshot",
    "DescribeCluster",
    "DescribeProducers",
    "BrokerRegistration",
    "BrokerHeartbeat",
    "UnregisterBroker",
    "DescribeTransactions",
    "ListTransactions",
    "AllocateProducerIds",
};

typedef struct fl_broker_topic {
    char *name;
    int partitions;
} fl_broker_topic_t;

typedef enum {
    FL_BROKER_CTL_STDIN,
    FL_BROKER_CTL_FIFO,
    FL_BROKER_CTL_FILE,
} fl_broker_ctl_kind_t;

/* One source of control lines. */
typedef struct fl_broker_ctl {
    const char *path; /* borrowed from argv; "-" for stdin */
    fl_broker_ctl_kind_t kind;
    int fd;          /* -1 when not open */
    bool created;    /* we made the FIFO, so we remove it at exit */
    bool discarding; /* the current line overflowed buf: drop it up to its newline */
    off_t file_off;  /* FL_BROKER_CTL_FILE: how far the file has been read */
    size_t len;
    char buf[FL_BROKER_LINE_MAX];
} fl_broker_ctl_t;

typedef struct fl_broker {
    int broker_cnt;
    int partitions;
    const char *bootstrap_file; /* borrowed from argv */
    const char *debug;          /* borrowed from argv */
    bool wrote_bootstrap_file;
    fl_broker_topic_t *topics;
    size_t ntopics;
    fl_broker_ctl_t ctls[FL_BROKER_MAX_CONTROLS];
    size_t nctls;
    rd_kafka_t *rk;
    rd_kafka_mock_cluster_t *mcluster;
} fl_broker_t;

static int sig_pipe[2] = {-1, -1};
static volatile sig_atomic_t sig_caught;

static void signal_cb(int sig) {
    int saved = errno;
    sig_caught = sig;
    if (sig_pipe[1] >= 0) {
        char c = 1;
        /* A full pipe already holds a wake-up: nothing is lost by ignoring the result. */
        ssize_t n = write(sig_pipe[1], &c, 1);
        (void)n;
    }
    errno = saved;
}

static void usage(FILE *out, const char *prog) {
    fprintf(
        out,
        "usage: %s [options]\n"
        "\n"
        "Hosts a librdkafka mock Kafka cluster on 127.0.0.1 (random ports) until SIGTERM or\n"
        "SIGINT. Prints its bootstrap servers on stdout as the first line.\n"
        "\n"
        "options:\n"
        "  -b, --brokers N           brokers in the cluster (1..%d, default 1)\n"
        "  -p, --partitions N        partitions of the default feedloop.* topics (default 4)\n"
        "  -t, --topic NAME[:N]      also create topic NAME with N partitions (default: -p);\n"
        "                            repeatable; overrides a default topic of the same name\n"
        "  -f, --bootstrap-file PATH also write the bootstrap servers to PATH (atomically);\n"
        "                            removed again at exit\n"
        "  -c, --control PATH        read commands from PATH, one per line: a FIFO (created\n"
        "                            when missing, reopened after each writer closes) or a\n"
        "                            regular file (followed for appended lines); '-' reads\n"
        "                            stdin; repeatable (up to %d)\n"
        "  -d, --debug CONTEXTS      librdkafka debug contexts for the mock (e.g. mock,protocol)\n"
        "  -l, --list-topics         print the topics it would create, NAME PARTITIONS a line,\n"
        "                            and exit (the test harness creates the same on real Kafka)\n"
        "  -h, --help                this text\n"
        "\n"
        "commands (each answered on stdout with 'ok <command>' or 'error <text>'):\n"
        "  broker-down <id>                      close the broker's connections, refuse new\n"
        "  broker-up <id>                        accept connections again\n"
        "  request-error <api> <err> [count]     fail the next count (default 1) requests of\n"
        "                                        ApiKey <api> (name like Produce, or number)\n"
        "                                        with <err> (name like NOT_LEADER_FOR_PARTITION\n"
        "                                        or REQUEST_TIMED_OUT, or number)\n"
        "  request-error-clear <api>             drop the pending errors of <api>\n"
        "  rtt <id> <ms>                         delay the broker's responses by ms\n"
        "  topic-create <name> <partitions>      create a topic\n"
        "\n"
        "Broker ids are 1..N. The mock's known gaps: the first group join takes ~3 s;\n"
        "rebalances wait session.timeout.ms - 1 s (use ~6000 ms); an empty fetch waits the\n"
        "full fetch.wait.max.ms (use 1-10 ms); ~5 MiB kept per partition; topics are\n"
        "auto-created even for consumers.\n",
        prog, FL_BROKER_MAX_BROKERS, FL_BROKER_MAX_CONTROLS);
}

/* Strict decimal parse into [lo, hi]: the whole string must be the number. */
static int parse_int(const char *s, long lo, long hi, long *out) {
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
        return FL_EINVAL;
    *out = v;
    return 0;
}

/* Kafka's own rule: 1..249 characters of [a-zA-Z0-9._-], and not "." or "..". */
static bool topic_name_valid(const char *name) {
    size_t len = strlen(name);
    if (len == 0 || len > 249 || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* Add or override (same name) a topic in the start-up list; takes a copy of name. */
static void topic_set(fl_broker_t *b, const char *name, size_t name_len, int partitions) {
    for (size_t i = 0; i < b->ntopics; i++) {
        if (strlen(b->topics[i].name) == name_len &&
            strncmp(b->topics[i].name, name, name_len) == 0) {
            b->topics[i].partitions = partitions;
            return;
        }
    }
    b->topics = realloc(b->topics, (b->ntopics + 1) * sizeof(*b->topics));
    if (b->topics == NULL)
        abort();
    char *copy = strndup(name, name_len);
    if (copy == NULL)
        abort();
    b->topics[b->ntopics].name = copy;
    b->topics[b->ntopics].partitions = partitions;
    b->ntopics++;
}

/* "--topic NAME[:N]" options are applied after the defaults so that they override them; their
 * partition count defaults to --partitions, whichever order the options came in. */
static int parse_topic_opt(fl_broker_t *b, const char *arg, const char *prog) {
    const char *colon = strrchr(arg, ':');
    size_t name_len = colon != NULL ? (size_t)(colon - arg) : strlen(arg);
    long partitions = b->partitions;
    char name[256];

    if (name_len >= sizeof(name)) {
        fprintf(stderr, "%s: --topic %s: name too long\n", prog, arg);
        return FL_EINVAL;
    }
    memcpy(name, arg, name_len);
    name[name_len] = '\0';
    if (!topic_name_valid(name)) {
        fprintf(stderr, "%s: --topic %s: invalid topic name\n", prog, arg);
        return FL_EINVAL;
    }
    if (colon != NULL && parse_int(colon + 1, 1, FL_BROKER_MAX_PARTITIONS, &partitions) != 0) {
        fprintf(stderr, "%s: --topic %s: partitions must be 1..%d\n", prog, arg,
                FL_BROKER_MAX_PARTITIONS);
        return FL_EINVAL;
    }
    topic_set(b, name, name_len, (int)partitions);
    return 0;
}

static int parse_args(fl_broker_t *b, int argc, char **argv, bool *help, bool *list) {
    static const struct option opts[] = {
        {"brokers", required_argument, NULL, 'b'},
        {"partitions", required_argument, NULL, 'p'},
        {"topic", required_argument, NULL, 't'},
        {"bootstrap-file", required_argument, NULL, 'f'},
        {"control", required_argument, NULL, 'c'},
        {"debug", required_argument, NULL, 'd'},
        {"list-topics", no_argument, NULL, 'l'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *prog = argc > 0 ? argv[0] : "feedloop-broker";
    const char *topic_args[256];
    size_t ntopic_args = 0;
    long v;
    int opt;

    /* optind = 0 makes glibc re-initialise getopt, which a caller that parsed its own options
     * before handing us a sub-argv (the `feedloop broker` subcommand) needs. */
    optind = 0;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":b:p:t:f:c:d:lh", opts, NULL)) != -1) {
        switch (opt) {
        case 'b':
            if (parse_int(optarg, 1, FL_BROKER_MAX_BROKERS, &v) != 0) {
                fprintf(stderr, "%s: --brokers %s: must be 1..%d\n", prog, optarg,
                        FL_BROKER_MAX_BROKERS);
                return FL_EINVAL;
            }
            b->broker_cnt = (int)v;
            break;
        case 'p':
            if (parse_int(optarg, 1, FL_BROKER_MAX_PARTITIONS, &v) != 0) {
                fprintf(stderr, "%s: --partitions %s: must be 1..%d\n", prog, optarg,
                        FL_BROKER_MAX_PARTITIONS);
                return FL_EINVAL;
            }
            b->partitions = (int)v;
            break;
        case 't':
            if (ntopic_args == sizeof(topic_args) / sizeof(topic_args[0])) {
                fprintf(stderr, "%s: too many --topic options\n", prog);
                return FL_EINVAL;
            }
            topic_args[ntopic_args++] = optarg;
            break;
        case 'f':
            if (*optarg == '\0') {
                fprintf(stderr, "%s: --bootstrap-file: empty path\n", prog);
                return FL_EINVAL;
            }
            b->bootstrap_file = optarg;
            break;
        case 'c':
            if (*optarg == '\0' || b->nctls == FL_BROKER_MAX_CONTROLS) {
                fprintf(stderr, "%s: --control %s: empty path or more than %d controls\n", prog,
                        optarg, FL_BROKER_MAX_CONTROLS);
                return FL_EINVAL;
            }
            b->ctls[b->nctls].path = optarg;
            b->ctls[b->nctls].fd = -1;
            b->nctls++;
            break;
        case 'd':
            b->debug = optarg;
            break;
        case 'l':
            *list = true;
            break;
        case 'h':
            *help = true;
            return 0;
        case ':':
            fprintf(stderr, "%s: option %s needs a value (see --help)\n", prog, argv[optind - 1]);
            return FL_EINVAL;
        default:
            fprintf(stderr, "%s: unknown option %s (see --help)\n", prog, argv[optind - 1]);
            return FL_EINVAL;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "%s: unexpected argument '%s' (see --help)\n", prog, argv[optind]);
        return FL_EINVAL;
    }
    for (size_t i = 0; i < b->nctls; i++) {
        for (size_t j = 0; j < i; j++) {
            if (strcmp(b->ctls[i].path, b->ctls[j].path) == 0) {
                fprintf(stderr, "%s: --control %s given twice\n", prog, b->ctls[i].path);
                return FL_EINVAL;
            }
        }
    }

    for (size_t i = 0; i < sizeof(default_types) / sizeof(default_types[0]); i++) {
        char name[128];
        int n = snprintf(name, sizeof(name), "feedloop.%s", default_types[i]);
        topic_set(b, name, (size_t)n, b->partitions);
    }
    for (size_t i = 0; i < ntopic_args; i++) {
        if (parse_topic_opt(b, topic_args[i], prog) != 0)
            return FL_EINVAL;
    }
    return 0;
}

/* Mock cluster and client-internal log lines: librdkafka's syslog levels onto ours. The
 * dummy handle's own notices (no bootstrap.servers, by design) are noise, hence debug. */
static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
    if (level <= 3)
        fl_error("rdkafka %s: %s", fac, buf);
    else if (level == 4)
        fl_warn("rdkafka %s: %s", fac, buf);
    else
        fl_debug("rdkafka %s: %s", fac, buf);
}

/* librdkafka 2.0.2's mock thread serves its op queue and only then drains its wake-up pipe, so
 * the wake-up of an op enqueued in between is thrown away and that op waits for the thread's
 * 1 s poll timeout (start-up with 23 topics took 8 s in one of two runs here). Giving the
 * thread a moment to finish its loop before the next op makes that window rare; when it is
 * still hit, the cost is a 1 s delay, never a hang. */
static void mock_settle(void) {
    struct timespec ts = {.tv_sec = 0, .tv_nsec = 2 * 1000 * 1000};
    nanosleep(&ts, NULL);
}

static int replication_factor(const fl_broker_t *b) {
    return b->broker_cnt < 3 ? b->broker_cnt : 3;
}

static int cluster_start(fl_broker_t *b) {
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    int ret = FL_EKAFKA;

    rd_kafka_conf_set_log_cb(conf, log_cb);
    if (b->debug != NULL &&
        rd_kafka_conf_set(conf, "debug", b->debug, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
        fl_error("--debug %s: %s", b->debug, errstr);
        ret = FL_EINVAL;
        goto out;
    }
    /* The handle only owns the mock cluster's thread and logger; it never produces. */
    b->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (b->rk == NULL) {
        fl_error("rd_kafka_new: %s", errstr);
        goto out;
    }
    conf = NULL;

    b->mcluster = rd_kafka_mock_cluster_new(b->rk, b->broker_cnt);
    if (b->mcluster == NULL) {
        fl_error("rd_kafka_mock_cluster_new(%d brokers) failed", b->broker_cnt);
        goto out;
    }
    for (size_t i = 0; i < b->ntopics; i++) {
        rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(
            b->mcluster, b->topics[i].name, b->topics[i].partitions, replication_factor(b));
        mock_settle();
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            fl_error("creating topic %s: %s", b->topics[i].name, rd_kafka_err2str(err));
            goto out;
        }
    }
    ret = 0;
out:
    if (conf != NULL)
        rd_kafka_conf_destroy(conf);
    return ret;
}

/* Readers poll for the file and must never see it half written: write aside, then rename. */
static int bootstrap_file_write(fl_broker_t *b, const char *bootstraps) {
    char tmp[PATH_MAX];
    FILE *f = NULL;
    int ret = FL_EIO;

    if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", b->bootstrap_file, (long)getpid()) >=
        (int)sizeof(tmp)) {
        fl_error("--bootstrap-file %s: path too long", b->bootstrap_file);
        goto out;
    }
    f = fopen(tmp, "w");
    if (f == NULL) {
        fl_error("--bootstrap-file: %s: %s", tmp, strerror(errno));
        goto out;
    }
    fprintf(f, "%s\n", bootstraps);
    if (fclose(f) != 0) {
        f = NULL;
        fl_error("--bootstrap-file: writing %s: %s", tmp, strerror(errno));
        unlink(tmp);
        goto out;
    }
    f = NULL;
    if (rename(tmp, b->bootstrap_file) != 0) {
        fl_error("--bootstrap-file: rename to %s: %s", b->bootstrap_file, strerror(errno));
        unlink(tmp);
        goto out;
    }
    b->wrote_bootstrap_file = true;
    ret = 0;
out:
    if (f != NULL)
        fclose(f);
    return ret;
}

/* A FIFO is opened non-blocking so that start-up does not wait for the first writer. On Linux
 * a FIFO reader that has never seen a writer gets no POLLHUP, so after a writer leaves we close
 * and reopen rather than spin on the hang-up. */
static int ctl_open(fl_broker_ctl_t *ctl) {
    struct stat st;

    if (strcmp(ctl->path, "-") == 0) {
        ctl->kind = FL_BROKER_CTL_STDIN;
        ctl->fd = STDIN_FILENO;
        return 0;
    }
    if (stat(ctl->path, &st) != 0) {
        if (errno != ENOENT || mkfifo(ctl->path, 0600) != 0) {
            fl_error("--control %s: %s", ctl->path, strerror(errno));
            return FL_EIO;
        }
        ctl->created = true;
        st.st_mode = S_IFIFO;
    }
    if (S_ISFIFO(st.st_mode)) {
        ctl->kind = FL_BROKER_CTL_FIFO;
    } else if (S_ISREG(st.st_mode)) {
        ctl->kind = FL_BROKER_CTL_FILE;
    } else {
        fl_error("--control %s: neither a FIFO nor a regular file", ctl->path);
        return FL_EINVAL;
    }
    ctl->fd = open(ctl->path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (ctl->fd < 0) {
        fl_error("--control %s: %s", ctl->path, strerror(errno));
        return FL_EIO;
    }
    return 0;
}

static void ctl_close(fl_broker_ctl_t *ctl) {
    if (ctl->fd >= 0 && ctl->kind != FL_BROKER_CTL_STDIN)
        close(ctl->fd);
    ctl->fd = -1;
}

static void reply(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Every command gets exactly one line back, flushed at once: a test waits for it. */
static void reply(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

static int parse_api_key(const char *s, int16_t *out) {
    long v;
    if (parse_int(s, 0, INT16_MAX, &v) == 0) {
        *out = (int16_t)v;
        return 0;
    }
    for (size_t i = 0; i < sizeof(api_names) / sizeof(api_names[0]); i++) {
        if (strcasecmp(s, api_names[i]) == 0) {
            *out = (int16_t)i;
            return 0;
        }
    }
    /* librdkafka's own older spellings. */
    if (strcasecmp(s, "Offset") == 0) {
        *out = 2;
        return 0;
    }
    if (strcasecmp(s, "ApiVersion") == 0) {
        *out = 18;
        return 0;
    }
    return FL_EINVAL;
}

/* Error codes by librdkafka's names, with or without the RD_KAFKA_RESP_ERR_ prefix. */
static int parse_err(const char *s, rd_kafka_resp_err_t *out) {
    static const char prefix[] = "RD_KAFKA_RESP_ERR_";
    const struct rd_kafka_err_desc *descs = NULL;
    size_t cnt = 0;
    long v;

    if (parse_int(s, INT16_MIN, INT16_MAX, &v) == 0) {
        *out = (rd_kafka_resp_err_t)v;
        return 0;
    }
    if (strncasecmp(s, prefix, sizeof(prefix) - 1) == 0)
        s += sizeof(prefix) - 1;
    rd_kafka_get_err_descs(&descs, &cnt);
    for (size_t i = 0; i < cnt; i++) {
        if (descs[i].name != NULL && strcasecmp(s, descs[i].name) == 0) {
            *out = descs[i].code;
            return 0;
        }
    }
    return FL_EINVAL;
}

static int parse_broker_id(const fl_broker_t *b, const char *s, int32_t *out) {
    long v;
    if (parse_int(s, 1, b->broker_cnt, &v) != 0)
        return FL_EINVAL;
    *out = (int32_t)v;
    return 0;
}

/* Run one command line (argv-split) and answer it. Never fails the process: a bad command is
 * an "error" reply, the cluster keeps running. */
static void command_run(fl_broker_t *b, char **av, int ac, const char *line) {
    const char *cmd = av[0];
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
    int32_t id;
    long v;

    if (strcmp(cmd, "broker-down") == 0 || strcmp(cmd, "broker-up") == 0) {
        if (ac != 2 || parse_broker_id(b, av[1], &id) != 0) {
            reply("error %s: usage: %s <id 1..%d>", line, cmd, b->broker_cnt);
            return;
        }
        if (strcmp(cmd, "broker-down") == 0)
            err = rd_kafka_mock_broker_set_down(b->mcluster, id);
        else
            err = rd_kafka_mock_broker_set_up(b->mcluster, id);
    } else if (strcmp(cmd, "request-error") == 0) {
        int16_t api;
        rd_kafka_resp_err_t code;
        long cnt = 1;
        if (ac < 3 || ac > 4 || parse_api_key(av[1], &api) != 0 || parse_err(av[2], &code) != 0 ||
            (ac == 4 && parse_int(av[3], 1, FL_BROKER_MAX_ERRCNT, &cnt) != 0)) {
            reply("error %s: usage: request-error <ApiKey name|number> <error name|number> "
                  "[count 1..%d]",
                  line, FL_BROKER_MAX_ERRCNT);
            return;
        }
        rd_kafka_resp_err_t *errs = malloc((size_t)cnt * sizeof(*errs));
        if (errs == NULL)
            abort();
        for (long i = 0; i < cnt; i++)
            errs[i] = code;
        rd_kafka_mock_push_request_errors_array(b->mcluster, api, (size_t)cnt, errs);
        free(errs);
    } else if (strcmp(cmd, "request-error-clear") == 0) {
        int16_t api;
        if (ac != 2 || parse_api_key(av[1], &api) != 0) {
            reply("error %s: usage: request-error-clear <ApiKey name|number>", line);
            return;
        }
        rd_kafka_mock_clear_request_errors(b->mcluster, api);
    } else if (strcmp(cmd, "rtt") == 0) {
        if (ac != 3 || parse_broker_id(b, av[1], &id) != 0 ||
            parse_int(av[2], 0, 3600 * 1000, &v) != 0) {
            reply("error %s: usage: rtt <id 1..%d> <ms>", line, b->broker_cnt);
            return;
        }
        err = rd_kafka_mock_broker_set_rtt(b->mcluster, id, (int)v);
    } else if (strcmp(cmd, "topic-create") == 0) {
        if (ac != 3 || !topic_name_valid(av[1]) ||
            parse_int(av[2], 1, FL_BROKER_MAX_PARTITIONS, &v) != 0) {
            reply("error %s: usage: topic-create <name> <partitions 1..%d>", line,
                  FL_BROKER_MAX_PARTITIONS);
            return;
        }
        err = rd_kafka_mock_topic_create(b->mcluster, av[1], (int)v, replication_factor(b));
    } else {
        reply("error %s: unknown command (broker-down, broker-up, request-error, "
              "request-error-clear, rtt, topic-create)",
              line);
        return;
    }
    mock_settle();
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        reply("error %s: %s", line, rd_kafka_err2str(err));
        return;
    }
    fl_info("control: %s", line);
    reply("ok %s", line);
}

/* Split a line on blanks, rebuild it normalised (single spaces) for the reply, run it. Blank
 * lines and '#' comments are skipped so a control file can be annotated. */
static void line_run(fl_broker_t *b, char *line) {
    char *av[8];
    int ac = 0;
    char *save = NULL;
    char norm[FL_BROKER_LINE_MAX] = "";
    size_t off = 0;

    for (char *tok = strtok_r(line, " \t\r\n", &save); tok != NULL;
         tok = strtok_r(NULL, " \t\r\n", &save)) {
        if (ac == (int)(sizeof(av) / sizeof(av[0]))) {
            reply("error %s ...: too many words", norm);
            return;
        }
        av[ac++] = tok;
        off += (size_t)snprintf(norm + off, sizeof(norm) - off, "%s%s", off ? " " : "", tok);
        if (off >= sizeof(norm))
            off = sizeof(norm) - 1;
    }
    if (ac == 0 || av[0][0] == '#')
        return;
    command_run(b, av, ac, norm);
}

/* Feed bytes read from a control source; runs every complete line. */
static void ctl_feed(fl_broker_t *b, fl_broker_ctl_t *ctl, const char *data, size_t n) {
    for (size_t i = 0; i < n; i++) {
        char c = data[i];
        if (c == '\n') {
            if (ctl->discarding)
                reply("error line longer than %d bytes", FL_BROKER_LINE_MAX - 1);
            else {
                ctl->buf[ctl->len] = '\0';
                line_run(b, ctl->buf);
            }
            ctl->len = 0;
            ctl->discarding = false;
        } else if (ctl->len + 1 >= sizeof(ctl->buf)) {
            ctl->discarding = true;
        } else if (!ctl->discarding) {
            ctl->buf[ctl->len++] = c;
        }
    }
}

/* A writer may close without a final newline (`printf 'broker-down 1' > fifo`). */
static void ctl_flush_partial(fl_broker_t *b, fl_broker_ctl_t *ctl) {
    if (ctl->len > 0 || ctl->discarding)
        ctl_feed(b, ctl, "\n", 1);
}

/* Read what is available. Returns false when the source is finished (stdin at EOF). */
static bool ctl_read(fl_broker_t *b, fl_broker_ctl_t *ctl) {
    char data[4096];
    for (;;) {
        ssize_t n = read(ctl->fd, data, sizeof(data));
        if (n > 0) {
            ctl_feed(b, ctl, data, (size_t)n);
            if (ctl->kind == FL_BROKER_CTL_FILE)
                ctl->file_off += n;
            /* stdin is left blocking (its file description is shared with our parent), so
             * one read per wake-up; poll tells when there is more. */
            if (ctl->kind == FL_BROKER_CTL_STDIN)
                return true;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return true;
        if (n < 0)
            fl_warn("--control %s: read: %s", ctl->path, strerror(errno));
        break;
    }
    /* End of input. */
    switch (ctl->kind) {
    case FL_BROKER_CTL_STDIN:
        ctl_flush_partial(b, ctl);
        ctl->fd = -1;
        fl_info("control: end of stdin; still running until SIGTERM/SIGINT");
        return false;
    case FL_BROKER_CTL_FIFO:
        ctl_flush_partial(b, ctl);
        ctl_close(ctl);
        return ctl_open(ctl) == 0;
    case FL_BROKER_CTL_FILE:
        /* Followed like `tail -f`; a truncated file is read again from its start. */
        {
            struct stat st;
            if (fstat(ctl->fd, &st) == 0 && st.st_size < ctl->file_off) {
                ctl->file_off = 0;
                ctl->len = 0;
                if (lseek(ctl->fd, 0, SEEK_SET) < 0)
                    return false;
            }
        }
        return true;
    }
    return true;
}

static int signals_install(struct sigaction *old_term, struct sigaction *old_int,
                           struct sigaction *old_pipe) {
    struct sigaction sa;

    if (pipe2(sig_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
        fl_error("pipe: %s", strerror(errno));
        return FL_EIO;
    }
    sig_caught = 0;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = signal_cb;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, old_term);
    sigaction(SIGINT, &sa, old_int);
    /* A reader of our stdout that went away must not kill the cluster mid-test. */
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, old_pipe);
    return 0;
}

static void signals_restore(const struct sigaction *old_term, const struct sigaction *old_int,
                            const struct sigaction *old_pipe) {
    sigaction(SIGTERM, old_term, NULL);
    sigaction(SIGINT, old_int, NULL);
    sigaction(SIGPIPE, old_pipe, NULL);
    for (int i = 0; i < 2; i++) {
        if (sig_pipe[i] >= 0)
            close(sig_pipe[i]);
        sig_pipe[i] = -1;
    }
}

static int run(fl_broker_t *b) {
    while (sig_caught == 0) {
        struct pollfd pfds[1 + FL_BROKER_MAX_CONTROLS];
        fl_broker_ctl_t *owners[1 + FL_BROKER_MAX_CONTROLS];
        nfds_t n = 0;
        bool follow_files = false;

        pfds[n].fd = sig_pipe[0];
        pfds[n].events = POLLIN;
        owners[n++] = NULL;
        for (size_t i = 0; i < b->nctls; i++) {
            fl_broker_ctl_t *ctl = &b->ctls[i];
            if (ctl->fd < 0)
                continue;
            if (ctl->kind == FL_BROKER_CTL_FILE) {
                follow_files = true;
                continue;
            }
            pfds[n].fd = ctl->fd;
            pfds[n].events = POLLIN;
            owners[n++] = ctl;
        }

        int rc = poll(pfds, n, follow_files ? FL_BROKER_FILE_POLL_MS : -1);
        if (rc < 0 && errno != EINTR) {
            fl_error("poll: %s", strerror(errno));
            return FL_EIO;
        }
        if (sig_caught != 0)
            break;
        for (nfds_t i = 1; rc > 0 && i < n; i++) {
            if (pfds[i].revents != 0)
                ctl_read(b, owners[i]);
        }
        for (size_t i = 0; follow_files && i < b->nctls; i++) {
            if (b->ctls[i].fd >= 0 && b->ctls[i].kind == FL_BROKER_CTL_FILE)
                ctl_read(b, &b->ctls[i]);
        }
    }
    fl_info("caught signal %d, stopping", (int)sig_caught);
    return 0;
}

int fl_broker_main(int argc, char **argv) {
    fl_broker_t b = {.broker_cnt = 1, .partitions = 4};
    struct sigaction old_term, old_int, old_pipe;
    bool help = false, list = false, signals = false;
    int status = 1;

    fl_log_init("feedloop-broker", FL_LOG_INFO);
    if (parse_args(&b, argc, argv, &help, &list) != 0) {
        status = 2;
        goto out;
    }
    if (help) {
        usage(stdout, argc > 0 ? argv[0] : "feedloop-broker");
        status = 0;
        goto out;
    }
    if (list) {
        for (size_t i = 0; i < b.ntopics; i++)
            printf("%s %d\n", b.topics[i].name, b.topics[i].partitions);
        status = fflush(stdout) == 0 ? 0 : 1;
        goto out;
    }
    /* Signals first: a SIGTERM that arrives while the cluster starts must still end us
     * cleanly, with the FIFO and the bootstrap file removed. */
    if (signals_install(&old_term, &old_int, &old_pipe) != 0)
        goto out;
    signals = true;
    for (size_t i = 0; i < b.nctls; i++) {
        if (ctl_open(&b.ctls[i]) != 0)
            goto out;
    }
    if (cluster_start(&b) != 0)
        goto out;

    const char *bootstraps = rd_kafka_mock_cluster_bootstraps(b.mcluster);
    if (b.bootstrap_file != NULL && bootstrap_file_write(&b, bootstraps) != 0)
        goto out;
    printf("%s\n", bootstraps);
    fflush(stdout);
    fl_info("mock cluster up: %d broker(s) at %s, %zu topics", b.broker_cnt, bootstraps, b.ntopics);

    if (run(&b) != 0)
        goto out;
    status = 0;
out:
    if (b.mcluster != NULL)
        rd_kafka_mock_cluster_destroy(b.mcluster);
    if (b.rk != NULL)
        rd_kafka_destroy(b.rk);
    if (b.wrote_bootstrap_file)
        unlink(b.bootstrap_file);
    for (size_t i = 0; i < b.nctls; i++) {
        ctl_close(&b.ctls[i]);
        if (b.ctls[i].created)
            unlink(b.ctls[i].path);
    }
    for (size_t i = 0; i < b.ntopics; i++)
        free(b.topics[i].name);
    free(b.topics);
    if (signals)
        signals_restore(&old_term, &old_int, &old_pipe);
    return status;
}
