/* Unit tests for fl_redis against a private redis-server (Debian's) that the group setup starts
 * on a free 127.0.0.1 port with no persistence and a temp dir; the group teardown kills it and
 * removes the dir, whatever happened. Each test owns a libuv loop, drives it with uv_run in
 * bounded helper loops, and ends with fl_redis_close() and uv_loop_close() == 0. Tests that
 * stop or kill the server leave it running again for the next one (the per-test teardown makes
 * sure of it after a failure). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "fl_err.h"
#include "fl_log.h"
#include "fl_redis.h"

#define MAX_ARGS 16

/* ---- the private redis-server ------------------------------------------------------------- */

typedef struct server {
    pid_t pid;
    int port;
    char dir[64];
} server_t;

static server_t srv = {.pid = -1};

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void sleep_ms(int ms) {
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    int port = -1;
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
        port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

/* One blocking PING on a fresh connection: true when the server answers +PONG. */
static bool server_pings(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return false;
    bool ok = false;
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
        goto out;
    if (write(fd, "PING\r\n", 6) != 6)
        goto out;
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    char buf[16] = {0};
    if (poll(&pfd, 1, 500) == 1 && read(fd, buf, sizeof(buf) - 1) >= 7)
        ok = strncmp(buf, "+PONG\r\n", 7) == 0;
out:
    close(fd);
    return ok;
}

/* Start redis-server on srv.port and wait until it answers. The child dies with us
 * (PR_SET_PDEATHSIG), so even a test killed by a signal leaves no server behind. */
static int server_start(void) {
    char port[16], log[128];
    snprintf(port, sizeof(port), "%d", srv.port);
    snprintf(log, sizeof(log), "%s/redis.log", srv.dir);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2(null, STDIN_FILENO);
            dup2(null, STDOUT_FILENO);
        }
        execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--dir", srv.dir, "--logfile", log, "--daemonize", "no",
               (char *)NULL);
        _exit(127);
    }
    srv.pid = pid;
    double end = now_ms() + 5000;
    while (now_ms() < end) {
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            srv.pid = -1;
            return -1;
        }
        if (server_pings(srv.port))
            return 0;
        sleep_ms(10);
    }
    return -1;
}

static void server_kill(void) {
    if (srv.pid <= 0)
        return;
    kill(srv.pid, SIGKILL);
    while (waitpid(srv.pid, NULL, 0) < 0 && errno == EINTR)
        ;
    srv.pid = -1;
}

/* After a failed test: thaw a stopped server, restart a dead one. */
static int server_ensure(void) {
    if (srv.pid > 0) {
        kill(srv.pid, SIGCONT);
        if (waitpid(srv.pid, NULL, WNOHANG) == srv.pid)
            srv.pid = -1;
    }
    if (srv.pid > 0 && server_pings(srv.port))
        return 0;
    server_kill();
    return server_start();
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int group_teardown(void **state) {
    (void)state;
    server_kill();
    if (srv.dir[0] != '\0')
        nftw(srv.dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    srv.dir[0] = '\0';
    return 0;
}

static int group_setup(void **state) {
    (void)state;
    fl_log_init("test_redis", FL_LOG_ERROR);
    snprintf(srv.dir, sizeof(srv.dir), "/tmp/fl-test-redis-XXXXXX");
    if (mkdtemp(srv.dir) == NULL) {
        srv.dir[0] = '\0';
        return -1;
    }
    srv.port = free_port();
    if (srv.port <= 0 || server_start() != 0) {
        group_teardown(state);
        return -1;
    }
    return 0;
}

/* ---- the client side: loop, state, replies ------------------------------------------------ */

struct fixture;

/* What a reply callback saw, copied (the reply is borrowed). */
typedef struct reply_rec {
    struct fixture *fx;
    int calls;
    int err;
    int type; /* -1: NULL reply */
    long long integer;
    char str[4096];
    double at_ms;
    bool close_in_cb; /* call fl_redis_close from inside the callback */
} reply_rec_t;

#define MAX_RECS 128

/* Everything a callback may write lives here, on the heap until the teardown, so a test that
 * fails with commands pending leaves no callback pointing into its dead stack frame. */
typedef struct fixture {
    uv_loop_t loop;
    bool loop_open;
    fl_redis_t *redis;
    int ups, downs; /* state callbacks seen */
    bool up;
    int nrecs;
    reply_rec_t recs[MAX_RECS];
} fixture_t;

static reply_rec_t *rec_new(fixture_t *fx) {
    assert_true(fx->nrecs < MAX_RECS);
    reply_rec_t *rec = &fx->recs[fx->nrecs++];
    memset(rec, 0, sizeof(*rec));
    rec->fx = fx;
    return rec;
}

static void state_cb(void *arg, bool up) {
    fixture_t *fx = arg;
    fx->up = up;
    if (up)
        fx->ups++;
    else
        fx->downs++;
}

static void reply_cb(void *arg, redisReply *reply, int err) {
    reply_rec_t *rec = arg;
    rec->calls++;
    rec->err = err;
    rec->at_ms = now_ms();
    rec->type = reply ? reply->type : -1;
    rec->str[0] = '\0';
    if (reply != NULL) {
        rec->integer = reply->integer;
        if (reply->str != NULL)
            snprintf(rec->str, sizeof(rec->str), "%.*s", (int)reply->len, reply->str);
        if (reply->type == REDIS_REPLY_ARRAY && reply->elements > 0 &&
            reply->element[0]->type == REDIS_REPLY_INTEGER)
            rec->integer = reply->element[0]->integer;
    }
    if (rec->close_in_cb) {
        fl_redis_t *redis = rec->fx->redis;
        rec->fx->redis = NULL;
        fl_redis_close(redis);
    }
}

typedef bool (*pred_fn)(const void *arg);

/* Run the loop until pred holds or timeout_ms of wall clock passed. fl_redis keeps a repeating
 * deadline timer, so UV_RUN_ONCE never blocks for long; an idle loop is polled gently. */
static bool run_until(fixture_t *fx, pred_fn pred, const void *arg, double timeout_ms) {
    double end = now_ms() + timeout_ms;
    while (!pred(arg)) {
        if (now_ms() >= end)
            return false;
        if (uv_run(&fx->loop, UV_RUN_ONCE) == 0)
            sleep_ms(1);
    }
    return true;
}

static bool never(const void *arg) {
    (void)arg;
    return false;
}

static void run_for(fixture_t *fx, double ms) {
    run_until(fx, never, NULL, ms);
}

static bool is_up(const void *arg) {
    return ((const fixture_t *)arg)->up;
}

static bool is_down(const void *arg) {
    return !((const fixture_t *)arg)->up;
}

static bool called(const void *arg) {
    return ((const reply_rec_t *)arg)->calls > 0;
}

static void client_new(fixture_t *fx, int timeout_ms, int backoff_ms, int backoff_max_ms) {
    fl_redis_opts_t opts = {.host = "127.0.0.1",
                            .port = srv.port,
                            .timeout_ms = timeout_ms,
                            .backoff_ms = backoff_ms,
                            .backoff_max_ms = backoff_max_ms};
    fl_error_t err;
    if (!fx->loop_open) {
        assert_int_equal(uv_loop_init(&fx->loop), 0);
        fx->loop_open = true;
    }
    fx->up = false;
    assert_int_equal(fl_redis_new(&fx->loop, &opts, state_cb, fx, &fx->redis, &err), 0);
    assert_non_null(fx->redis);
}

/* Close the client, run the loop until every handle is closed, close the loop. */
static int client_finish(fixture_t *fx) {
    fl_redis_close(fx->redis);
    fx->redis = NULL;
    double end = now_ms() + 2000;
    while (uv_loop_alive(&fx->loop) && now_ms() < end)
        if (uv_run(&fx->loop, UV_RUN_NOWAIT) == 0)
            break;
    int rc = uv_loop_close(&fx->loop);
    if (rc == 0)
        fx->loop_open = false;
    return rc;
}

static void finish(fixture_t *fx) {
    assert_int_equal(client_finish(fx), 0);
}

static void walk_close(uv_handle_t *h, void *arg) {
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static int test_setup(void **state) {
    fixture_t *fx = calloc(1, sizeof(*fx));
    if (fx == NULL)
        return -1;
    *state = fx;
    return 0;
}

/* Normally the test already finished its loop; after a failed assertion clean up here (by force
 * if need be, so the next test starts clean) and put the server back. */
static int test_teardown(void **state) {
    fixture_t *fx = *state;
    int rc = 0;
    if (fx->loop_open && client_finish(fx) != 0) {
        uv_walk(&fx->loop, walk_close, NULL);
        uv_run(&fx->loop, UV_RUN_DEFAULT);
        uv_loop_close(&fx->loop);
        rc = -1;
    }
    free(fx);
    if (server_ensure() != 0)
        rc = -1;
    return rc;
}

/* Send argv (NULL-terminated strings); returns what fl_redis_command returned. */
static int send_argv(fixture_t *fx, reply_rec_t *rec, const char *const *args) {
    const char *argv[MAX_ARGS];
    int argc = 0;
    while (args[argc] != NULL && argc < MAX_ARGS) {
        argv[argc] = args[argc];
        argc++;
    }
    return fl_redis_command(fx->redis, argc, argv, NULL, reply_cb, rec);
}

#define SEND(fx, rec, ...) send_argv((fx), (rec), (const char *const[]){__VA_ARGS__, NULL})

/* Send and wait for the one reply. */
static reply_rec_t *sync_argv(fixture_t *fx, const char *const *args) {
    reply_rec_t *rec = rec_new(fx);
    assert_int_equal(send_argv(fx, rec, args), 0);
    assert_true(run_until(fx, called, rec, 2000));
    assert_int_equal(rec->calls, 1);
    return rec;
}

#define SYNC(fx, ...) sync_argv((fx), (const char *const[]){__VA_ARGS__, NULL})

static int eval(fixture_t *fx, reply_rec_t *rec, const fl_redis_script_t *script, int numkeys,
                int argc, const char **argv, const size_t *argvlen) {
    return fl_redis_eval(fx->redis, script, numkeys, argc, argv, argvlen, reply_cb, rec);
}

static void wait_up(fixture_t *fx, double timeout_ms) {
    assert_true(run_until(fx, is_up, fx, timeout_ms));
    assert_true(fl_redis_up(fx->redis));
}

/* Scripts outlive the commands that use them: fl_redis_eval keeps the pointer for NOSCRIPT. */
static fl_redis_script_t incr_script;
static fl_redis_script_t error_script;
static const char incr_source[] = "return redis.call('INCRBY', KEYS[1], ARGV[1])";

/* ---- 1. connect, state, round trip -------------------------------------------------------- */

static void test_connect_roundtrip(void **state) {
    fixture_t *fx = *state;
    client_new(fx, 1000, 50, 400);
    assert_false(fl_redis_up(fx->redis)); /* asynchronous: up only after the PING */
    wait_up(fx, 2000);
    assert_int_equal(fx->ups, 1);
    assert_int_equal(fx->downs, 0);

    reply_rec_t *set = SYNC(fx, "SET", "fl:rt", "hello world");
    assert_int_equal(set->err, 0);
    assert_int_equal(set->type, REDIS_REPLY_STATUS);
    assert_string_equal(set->str, "OK");

    /* Binary-safe arguments through argvlen. */
    reply_rec_t *get = rec_new(fx);
    const char *argv[] = {"GETxx", "fl:rtxx"};
    const size_t argvlen[] = {3, 5};
    assert_int_equal(fl_redis_command(fx->redis, 2, argv, argvlen, reply_cb, get), 0);
    assert_true(run_until(fx, called, get, 2000));
    assert_int_equal(get->err, 0);
    assert_int_equal(get->type, REDIS_REPLY_STRING);
    assert_string_equal(get->str, "hello world");

    /* Exactly once: nothing more arrives later. */
    run_for(fx, 150);
    assert_int_equal(set->calls, 1);
    assert_int_equal(get->calls, 1);
    assert_int_equal(fl_redis_error_count(fx->redis), 0);
    assert_int_equal(fx->ups, 1);
    assert_int_equal(fx->downs, 0);
    finish(fx);
}

/* ---- 2. deadline on a frozen server, then recovery --------------------------------------- */

#define T2_TIMEOUT 300
#define T2_TICK 50 /* fl_redis checks deadlines every 50 ms for timeouts >= 200 ms */

static void test_deadline(void **state) {
    fixture_t *fx = *state;
    client_new(fx, T2_TIMEOUT, 50, 200);
    wait_up(fx, 2000);

    assert_int_equal(kill(srv.pid, SIGSTOP), 0);
    reply_rec_t *rec = rec_new(fx);
    double t0 = now_ms();
    assert_int_equal(SEND(fx, rec, "GET", "fl:deadline"), 0);
    assert_true(run_until(fx, called, rec, 3000));
    double waited = rec->at_ms - t0;
    print_message("deadline: callback after %.0f ms (timeout %d ms)\n", waited, T2_TIMEOUT);
    assert_int_equal(rec->err, FL_ETIMEOUT);
    assert_int_equal(rec->type, -1);
    assert_true(waited >= T2_TIMEOUT - 20);
    assert_true(waited <= T2_TIMEOUT + T2_TICK + 150);
    assert_false(fl_redis_up(fx->redis));
    assert_false(fx->up);
    assert_int_equal(fx->downs, 1);
    assert_true(fl_redis_error_count(fx->redis) >= 1);

    /* Still frozen: the reconnects reach the backlog but the PING probe never answers, so the
     * client must stay down. */
    run_for(fx, 500);
    assert_false(fl_redis_up(fx->redis));
    assert_int_equal(fx->ups, 1);

    assert_int_equal(kill(srv.pid, SIGCONT), 0);
    t0 = now_ms();
    wait_up(fx, 3000);
    print_message("deadline: up again %.0f ms after SIGCONT\n", now_ms() - t0);
    assert_int_equal(fx->ups, 2);
    assert_int_equal(rec->calls, 1);

    assert_int_equal(SYNC(fx, "SET", "fl:deadline", "thawed")->err, 0);
    reply_rec_t *get = SYNC(fx, "GET", "fl:deadline");
    assert_int_equal(get->err, 0);
    assert_string_equal(get->str, "thawed");
    finish(fx);
}

/* ---- 3. server killed, commands fail fast, restart on the same port ----------------------- */

#define T3_BACKOFF_MAX 400

static void test_reconnect(void **state) {
    fixture_t *fx = *state;
    client_new(fx, 1000, 50, T3_BACKOFF_MAX);
    wait_up(fx, 2000);
    unsigned long errors0 = fl_redis_error_count(fx->redis);

    server_kill();
    /* Accepted before the client notices: fails with FL_EREDIS and no reply. */
    reply_rec_t *lost = rec_new(fx);
    assert_int_equal(SEND(fx, lost, "GET", "fl:lost"), 0);
    assert_true(run_until(fx, called, lost, 2000));
    assert_int_equal(lost->err, FL_EREDIS);
    assert_int_equal(lost->type, -1);
    assert_true(run_until(fx, is_down, fx, 2000));
    assert_false(fl_redis_up(fx->redis));
    assert_int_equal(fx->downs, 1);
    assert_true(fl_redis_error_count(fx->redis) >= errors0 + 1);

    /* While down: refused at once, the callback never runs, each refusal counted. */
    unsigned long errors1 = fl_redis_error_count(fx->redis);
    reply_rec_t *refused = rec_new(fx);
    double t0 = now_ms();
    assert_int_equal(SEND(fx, refused, "SET", "fl:refused", "x"), FL_EREDIS);
    assert_int_equal(eval(fx, refused, &incr_script, 1, 1, (const char *[]){"k"}, NULL), FL_EREDIS);
    assert_true(now_ms() - t0 < 50);
    assert_int_equal(fl_redis_error_count(fx->redis), errors1 + 2);
    run_for(fx, 100);
    assert_int_equal(refused->calls, 0);

    /* Let the backoff grow to its bound while refused, then restart on the same port. */
    run_for(fx, 700);
    assert_false(fl_redis_up(fx->redis));
    assert_int_equal(server_start(), 0);
    t0 = now_ms();
    wait_up(fx, T3_BACKOFF_MAX + 600);
    double took = now_ms() - t0;
    print_message("reconnect: up %.0f ms after restart (backoff max %d ms)\n", took,
                  T3_BACKOFF_MAX);
    assert_true(took <= T3_BACKOFF_MAX + 300);
    assert_int_equal(fx->ups, 2);

    assert_int_equal(SYNC(fx, "SET", "fl:reconnect", "back")->err, 0);
    assert_string_equal(SYNC(fx, "GET", "fl:reconnect")->str, "back");
    assert_int_equal(lost->calls, 1);
    assert_int_equal(refused->calls, 0);
    finish(fx);
}

/* ---- 4. scripts: SHA, NOSCRIPT fallback, EVALSHA afterwards ------------------------------- */

static long long commandstat_calls(fixture_t *fx, const char *cmd) {
    reply_rec_t *info = SYNC(fx, "INFO", "commandstats");
    assert_int_equal(info->err, 0);
    char key[64];
    snprintf(key, sizeof(key), "cmdstat_%s:calls=", cmd);
    const char *p = strstr(info->str, key);
    return p ? strtoll(p + strlen(key), NULL, 10) : 0;
}

static void test_scripts(void **state) {
    fixture_t *fx = *state;
    client_new(fx, 1000, 50, 400);
    wait_up(fx, 2000);

    /* The SHA matches Redis's for sources around the SHA-1 padding boundaries (55/56/64 bytes)
     * and over several blocks. */
    static const size_t lens[] = {8, 54, 55, 56, 63, 64, 65, 119, 120, 128, 300};
    char source[320];
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        memset(source, 0, sizeof(source));
        memcpy(source, "return 1", 8);
        if (lens[i] > 8) {
            memcpy(source + 8, " --", 3);
            memset(source + 11, 'x', lens[i] - 11);
        }
        assert_int_equal(strlen(source), lens[i]);
        fl_redis_script_t s;
        fl_redis_script_init(&s, source);
        assert_ptr_equal(s.source, source);
        reply_rec_t *load = SYNC(fx, "SCRIPT", "LOAD", source);
        assert_int_equal(load->err, 0);
        assert_string_equal(s.sha, load->str);
    }

    reply_rec_t *r = SYNC(fx, "SCRIPT", "LOAD", incr_source);
    assert_string_equal(incr_script.sha, r->str);
    SYNC(fx, "DEL", "fl:counter");
    assert_int_equal(SYNC(fx, "SCRIPT", "FLUSH")->err, 0);
    assert_int_equal(SYNC(fx, "CONFIG", "RESETSTAT")->err, 0);
    r = SYNC(fx, "SCRIPT", "EXISTS", incr_script.sha);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->integer, 0);

    /* Not cached: EVALSHA gets NOSCRIPT, the fallback EVALs. One callback, the script's value. */
    const char *argv[] = {"fl:counter", "5"};
    reply_rec_t *ev = rec_new(fx);
    assert_int_equal(eval(fx, ev, &incr_script, 1, 2, argv, NULL), 0);
    assert_true(run_until(fx, called, ev, 2000));
    assert_int_equal(ev->err, 0);
    assert_int_equal(ev->type, REDIS_REPLY_INTEGER);
    assert_int_equal(ev->integer, 5);
    assert_int_equal(commandstat_calls(fx, "eval"), 1);
    assert_int_equal(SYNC(fx, "SCRIPT", "EXISTS", incr_script.sha)->integer, 1);

    /* Cached now: served by EVALSHA alone, the EVAL count unchanged. */
    long long evalsha0 = commandstat_calls(fx, "evalsha");
    ev = rec_new(fx);
    const char *argv2[] = {"fl:counterXX", "5YY"};
    const size_t argvlen[] = {10, 1};
    assert_int_equal(eval(fx, ev, &incr_script, 1, 2, argv2, argvlen), 0);
    assert_true(run_until(fx, called, ev, 2000));
    assert_int_equal(ev->err, 0);
    assert_int_equal(ev->integer, 10);
    assert_int_equal(commandstat_calls(fx, "eval"), 1);
    assert_int_equal(commandstat_calls(fx, "evalsha"), evalsha0 + 1);

    /* A script's own error is an error reply, not a connection problem. */
    ev = rec_new(fx);
    assert_int_equal(eval(fx, ev, &error_script, 0, 0, NULL, NULL), 0);
    assert_true(run_until(fx, called, ev, 2000));
    assert_int_equal(ev->err, FL_EREDIS);
    assert_int_equal(ev->type, REDIS_REPLY_ERROR);
    assert_non_null(strstr(ev->str, "FLBAD nope"));
    run_for(fx, 50);
    assert_int_equal(ev->calls, 1);
    assert_true(fl_redis_up(fx->redis));
    finish(fx);
}

/* ---- 5. error replies --------------------------------------------------------------------- */

static void test_error_reply(void **state) {
    fixture_t *fx = *state;
    client_new(fx, 1000, 50, 400);
    wait_up(fx, 2000);
    assert_int_equal(SYNC(fx, "SET", "fl:str", "v")->err, 0);
    unsigned long errors0 = fl_redis_error_count(fx->redis);

    reply_rec_t *r = SYNC(fx, "LPUSH", "fl:str", "x");
    assert_int_equal(r->err, FL_EREDIS);
    assert_int_equal(r->type, REDIS_REPLY_ERROR);
    assert_int_equal(strncmp(r->str, "WRONGTYPE", 9), 0);

    r = SYNC(fx, "NOSUCHCOMMAND");
    assert_int_equal(r->err, FL_EREDIS);
    assert_int_equal(r->type, REDIS_REPLY_ERROR);

    /* An error reply is not a lost connection: still up, not counted, next command fine. */
    assert_true(fl_redis_up(fx->redis));
    assert_int_equal(fl_redis_error_count(fx->redis), errors0);
    r = SYNC(fx, "GET", "fl:str");
    assert_int_equal(r->err, 0);
    assert_string_equal(r->str, "v");
    assert_int_equal(fx->downs, 0);
    finish(fx);
}

/* ---- 6. close with commands pending ------------------------------------------------------- */

#define T6_N 24

static void send_batch(fixture_t *fx, reply_rec_t **recs) {
    for (int i = 0; i < T6_N; i++) {
        recs[i] = rec_new(fx);
        int rc;
        if (i % 3 == 2)
            rc = eval(fx, recs[i], &incr_script, 1, 2, (const char *[]){"fl:pending2", "1"}, NULL);
        else if (i % 3 == 1)
            rc = SEND(fx, recs[i], "SET", "fl:pending", "v");
        else
            rc = SEND(fx, recs[i], "GET", "fl:pending");
        assert_int_equal(rc, 0);
    }
}

static void assert_all_failed_once(reply_rec_t **recs, int from) {
    for (int i = from; i < T6_N; i++) {
        assert_int_equal(recs[i]->calls, 1);
        assert_int_equal(recs[i]->err, FL_EREDIS);
        assert_int_equal(recs[i]->type, -1);
    }
}

static void test_close_pending(void **state) {
    fixture_t *fx = *state;
    reply_rec_t *recs[T6_N];

    /* a) Closed before anything was written. */
    client_new(fx, 1000, 50, 400);
    wait_up(fx, 2000);
    send_batch(fx, recs);
    finish(fx);
    assert_all_failed_once(recs, 0);

    /* b) Written to a frozen server, closed before the deadline. */
    client_new(fx, 5000, 50, 400);
    wait_up(fx, 2000);
    assert_int_equal(kill(srv.pid, SIGSTOP), 0);
    send_batch(fx, recs);
    run_for(fx, 100);
    for (int i = 0; i < T6_N; i++)
        assert_int_equal(recs[i]->calls, 0);
    finish(fx);
    assert_int_equal(kill(srv.pid, SIGCONT), 0);
    assert_all_failed_once(recs, 0);

    /* c) Closed from inside the first reply callback (hiredis defers the free). */
    client_new(fx, 1000, 50, 400);
    wait_up(fx, 2000);
    send_batch(fx, recs);
    recs[0]->close_in_cb = true;
    assert_true(run_until(fx, called, recs[0], 2000));
    assert_null(fx->redis);
    assert_int_equal(recs[0]->err, 0);
    finish(fx);
    assert_all_failed_once(recs, 1);

    /* d) Closed while still connecting. */
    client_new(fx, 1000, 50, 400);
    finish(fx);
    assert_int_equal(fx->ups, 3);
}

int main(void) {
    fl_redis_script_init(&incr_script, incr_source);
    fl_redis_script_init(&error_script, "return redis.error_reply('FLBAD nope')");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_connect_roundtrip, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_deadline, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_reconnect, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_scripts, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_error_reply, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_close_pending, test_setup, test_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
