#include "fl_redis.h"

#include <hiredis/async.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fl_id.h"
#include "fl_log.h"

/* ---------- hiredis <-> libuv glue ----------
 * Our own copy of hiredis 0.14's adapters/libuv.h with one fix: libuv reports a socket error
 * (a refused connect among them) as a negative status with no events, and the stock adapter
 * returns without telling hiredis, so a connect to a stopped Redis never completes and the
 * worker never reconnects. Here hiredis is handed the event and finds the error itself. */

typedef struct redis_events {
    redisAsyncContext *context;
    uv_poll_t handle;
    int events; /* what hiredis wants */
    int active; /* what the poll handle watches */
} redis_events_t;

static void events_update(redis_events_t *p);

static void events_poll_cb(uv_poll_t *handle, int status, int events) {
    redis_events_t *p = handle->data;
    if (p->context == NULL)
        return;
    if (status != 0) {
        p->active = 0; /* libuv stopped the handle */
        if (!(p->context->c.flags & REDIS_CONNECTED))
            redisAsyncHandleWrite(p->context); /* completes the connect with its error */
        else
            redisAsyncHandleRead(p->context); /* reads the error or EOF and disconnects */
        return;
    }
    if (events & UV_READABLE)
        redisAsyncHandleRead(p->context);
    if (p->context != NULL && (events & UV_WRITABLE))
        redisAsyncHandleWrite(p->context);
}

/* Only touch the poll when the interest really changes: hiredis asks for write interest on
 * every command, and each uv_poll_start costs libuv two epoll_ctl calls on the next pass. */
static void events_update(redis_events_t *p) {
    if (p->events == p->active)
        return;
    p->active = p->events;
    if (p->events)
        uv_poll_start(&p->handle, p->events, events_poll_cb);
    else
        uv_poll_stop(&p->handle);
}

static void events_add_read(void *privdata) {
    redis_events_t *p = privdata;
    p->events |= UV_READABLE;
    events_update(p);
}

static void events_del_read(void *privdata) {
    redis_events_t *p = privdata;
    p->events &= ~UV_READABLE;
    events_update(p);
}

static void events_add_write(void *privdata) {
    redis_events_t *p = privdata;
    p->events |= UV_WRITABLE;
    events_update(p);
}

static void events_del_write(void *privdata) {
    redis_events_t *p = privdata;
    p->events &= ~UV_WRITABLE;
    events_update(p);
}

static void events_closed(uv_handle_t *handle) {
    free(handle->data);
}

static void events_cleanup(void *privdata) {
    redis_events_t *p = privdata;
    p->context = NULL;
    uv_close((uv_handle_t *)&p->handle, events_closed);
}

static int events_attach(redisAsyncContext *ac, uv_loop_t *loop) {
    if (ac->ev.data != NULL)
        return REDIS_ERR;
    redis_events_t *p = calloc(1, sizeof(*p));
    if (p == NULL)
        abort();
    if (uv_poll_init(loop, &p->handle, ac->c.fd) != 0) {
        free(p);
        return REDIS_ERR;
    }
    ac->ev.addRead = events_add_read;
    ac->ev.delRead = events_del_read;
    ac->ev.addWrite = events_add_write;
    ac->ev.delWrite = events_del_write;
    ac->ev.cleanup = events_cleanup;
    ac->ev.data = p;
    p->handle.data = p;
    p->context = ac;
    return REDIS_OK;
}

/* One accepted command. Lives until hiredis calls back (always exactly once, with NULL on
 * disconnect), even after its deadline fired: `done` then says the user was already told. */
typedef struct redis_cmd {
    fl_redis_t *redis;
    struct redis_cmd *prev, *next;
    uint64_t deadline;
    bool done;
    fl_redis_reply_cb cb;
    void *arg;
    /* For the NOSCRIPT fallback: a copy of the EVALSHA argv. */
    const fl_redis_script_t *script;
    int argc;
    char **argv;
    size_t *argvlen;
} redis_cmd_t;

struct fl_redis {
    uv_loop_t *loop;
    redisAsyncContext *ac;
    bool connected;
    bool probing; /* TCP is up, the PING that proves the server answers is in flight */
    bool timing_out;
    uint64_t connect_deadline;
    bool closing;
    char *host;
    int port;
    int timeout_ms;
    int backoff_ms, backoff_max_ms, backoff_cur;
    uv_timer_t deadline_timer;
    uv_timer_t reconnect_timer;
    int open_handles;
    redis_cmd_t *head, *tail; /* pending, oldest first */
    fl_redis_state_cb state_cb;
    void *state_arg;
    unsigned long errors;
};

static void redis_connect(fl_redis_t *redis);
static void ping_cb(void *arg, redisReply *reply, int err);

static void reconnect_cb(uv_timer_t *timer) {
    redis_connect(timer->data);
}

static void cmd_unlink(fl_redis_t *redis, redis_cmd_t *cmd) {
    if (cmd->prev)
        cmd->prev->next = cmd->next;
    else
        redis->head = cmd->next;
    if (cmd->next)
        cmd->next->prev = cmd->prev;
    else
        redis->tail = cmd->prev;
    cmd->prev = cmd->next = NULL;
}

static void cmd_free(redis_cmd_t *cmd) {
    for (int i = 0; i < cmd->argc; i++)
        free(cmd->argv[i]);
    free(cmd->argv);
    free(cmd->argvlen);
    free(cmd);
}

static void cmd_finish(redis_cmd_t *cmd, redisReply *reply, int err) {
    if (cmd->done)
        return;
    cmd->done = true;
    if (err != 0 && err != FL_EREDIS)
        cmd->redis->errors++;
    else if (err == FL_EREDIS && reply == NULL)
        cmd->redis->errors++;
    cmd->cb(cmd->arg, reply, err);
}

static void set_state(fl_redis_t *redis, bool up) {
    if (redis->connected == up)
        return;
    redis->connected = up;
    if (redis->state_cb && !redis->closing)
        redis->state_cb(redis->state_arg, up);
}

static void schedule_reconnect(fl_redis_t *redis) {
    if (redis->closing)
        return;
    int delay = redis->backoff_cur;
    redis->backoff_cur = redis->backoff_cur * 2 > redis->backoff_max_ms ? redis->backoff_max_ms
                                                                        : redis->backoff_cur * 2;
    fl_debug("redis: reconnecting in %d ms", delay);
    uv_timer_start(&redis->reconnect_timer, reconnect_cb, (uint64_t)delay, 0);
}

static int send_cmd(fl_redis_t *redis, redis_cmd_t *cmd, int argc, const char **argv,
                    const size_t *argvlen);

static void reply_cb(redisAsyncContext *ac, void *r, void *privdata) {
    redis_cmd_t *cmd = privdata;
    fl_redis_t *redis = cmd->redis;
    redisReply *reply = r;
    cmd_unlink(redis, cmd);
    if (reply == NULL) {
        cmd_finish(cmd, NULL, redis->timing_out ? FL_ETIMEOUT : FL_EREDIS);
        cmd_free(cmd);
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR && cmd->script != NULL && !cmd->done &&
        strncmp(reply->str, "NOSCRIPT", 8) == 0 && redis->connected && !redis->closing) {
        /* The server lost its script cache (restart, SCRIPT FLUSH): resend as EVAL. */
        free(cmd->argv[0]);
        cmd->argv[0] = strdup("EVAL");
        cmd->argvlen[0] = 4;
        free(cmd->argv[1]);
        cmd->argv[1] = strdup(cmd->script->source);
        cmd->argvlen[1] = strlen(cmd->script->source);
        if (cmd->argv[0] == NULL || cmd->argv[1] == NULL)
            abort();
        cmd->script = NULL;
        if (send_cmd(redis, cmd, cmd->argc, (const char **)cmd->argv, cmd->argvlen) == 0)
            return;
        cmd_finish(cmd, NULL, FL_EREDIS);
        cmd_free(cmd);
        return;
    }
    (void)ac;
    cmd_finish(cmd, reply, reply->type == REDIS_REPLY_ERROR ? FL_EREDIS : 0);
    cmd_free(cmd);
}

static int send_cmd(fl_redis_t *redis, redis_cmd_t *cmd, int argc, const char **argv,
                    const size_t *argvlen) {
    bool probe = cmd->cb == ping_cb;
    if ((!redis->connected && !(probe && redis->probing)) || redis->ac == NULL || redis->closing)
        return FL_EREDIS;
    if (redisAsyncCommandArgv(redis->ac, reply_cb, cmd, argc, argv, argvlen) != REDIS_OK)
        return FL_EREDIS;
    cmd->deadline = uv_now(redis->loop) + (uint64_t)redis->timeout_ms;
    cmd->prev = redis->tail;
    cmd->next = NULL;
    if (redis->tail)
        redis->tail->next = cmd;
    else
        redis->head = cmd;
    redis->tail = cmd;
    return 0;
}

static void deadline_cb(uv_timer_t *timer) {
    fl_redis_t *redis = timer->data;
    uint64_t now = uv_now(redis->loop);
    if (redis->ac != NULL && !redis->connected && !redis->probing && redis->head == NULL &&
        now > redis->connect_deadline) {
        /* A connect that never completes (a black-holed address) would otherwise wait for the
         * kernel's own timeout, minutes. No connect or disconnect callback runs on this free. */
        fl_warn("redis: connect to %s:%d timed out after %d ms", redis->host, redis->port,
                redis->timeout_ms);
        redisAsyncContext *ac = redis->ac;
        redis->ac = NULL;
        redisAsyncFree(ac);
        schedule_reconnect(redis);
        return;
    }
    if (redis->head == NULL || redis->head->deadline > now)
        return;
    fl_warn("redis: command timed out after %d ms; dropping the connection", redis->timeout_ms);
    /* No user code runs while the list is walked: freeing the context calls reply_cb with NULL
     * for every pending command (reported as FL_ETIMEOUT while timing_out is set) and then the
     * disconnect callback. A callback may send (refused: no context) or close the client. */
    if (redis->ac != NULL) {
        redisAsyncContext *ac = redis->ac;
        redis->ac = NULL;
        redis->timing_out = true;
        redisAsyncFree(ac);
        redis->timing_out = false;
    }
    if (redis->closing)
        return;
    redis->probing = false;
    if (redis->connected)
        set_state(redis, false);
    /* The disconnect callback only runs for contexts hiredis saw connected; make sure a retry
     * is scheduled either way. */
    if (!uv_is_active((uv_handle_t *)&redis->reconnect_timer))
        schedule_reconnect(redis);
}

static void connect_cb(const redisAsyncContext *ac, int status) {
    fl_redis_t *redis = ac->data;
    if (status != REDIS_OK) {
        fl_warn("redis: connect to %s:%d failed: %s", redis->host, redis->port, ac->errstr);
        redis->ac = NULL; /* hiredis frees a context whose connect failed */
        set_state(redis, false);
        schedule_reconnect(redis);
        return;
    }
    /* A TCP connection is not an answering server (a frozen Redis still accepts into its
     * backlog): up only once a PING is answered within the deadline. */
    redis_cmd_t *cmd = calloc(1, sizeof(*cmd));
    if (cmd == NULL)
        abort();
    cmd->redis = redis;
    cmd->cb = ping_cb;
    cmd->arg = redis;
    const char *argv[] = {"PING"};
    redis->probing = true;
    if (send_cmd(redis, cmd, 1, argv, NULL) != 0) {
        redis->probing = false;
        cmd_free(cmd);
    }
}

static void ping_cb(void *arg, redisReply *reply, int err) {
    fl_redis_t *redis = arg;
    redis->probing = false;
    if (err != 0 || reply == NULL || reply->type != REDIS_REPLY_STATUS) {
        /* A deadline or a lost connection already reconnects; an error reply (LOADING, NOAUTH,
         * MASTERDOWN) leaves a live connection nobody would drop: drop it here. */
        if (reply != NULL && redis->ac != NULL) {
            fl_warn("redis: %s:%d answers PING with '%s'; reconnecting", redis->host, redis->port,
                    reply->str ? reply->str : "?");
            redisAsyncDisconnect(redis->ac);
        }
        return;
    }
    fl_info("redis: connected to %s:%d", redis->host, redis->port);
    redis->backoff_cur = redis->backoff_ms;
    set_state(redis, true);
}

static void disconnect_cb(const redisAsyncContext *ac, int status) {
    fl_redis_t *redis = ac->data;
    redis->ac = NULL;
    redis->probing = false;
    if (!redis->closing)
        fl_warn("redis: disconnected from %s:%d%s%s", redis->host, redis->port,
                status == REDIS_OK ? "" : ": ", status == REDIS_OK ? "" : ac->errstr);
    set_state(redis, false);
    schedule_reconnect(redis);
}

static void redis_connect(fl_redis_t *redis) {
    if (redis->closing || redis->ac != NULL)
        return;
    redisAsyncContext *ac = redisAsyncConnect(redis->host, redis->port);
    if (ac == NULL)
        abort();
    if (ac->err) {
        fl_warn("redis: connect to %s:%d failed: %s", redis->host, redis->port, ac->errstr);
        redisAsyncFree(ac);
        schedule_reconnect(redis);
        return;
    }
    ac->data = redis;
    if (events_attach(ac, redis->loop) != REDIS_OK) {
        redisAsyncFree(ac);
        schedule_reconnect(redis);
        return;
    }
    redisAsyncSetConnectCallback(ac, connect_cb);
    redisAsyncSetDisconnectCallback(ac, disconnect_cb);
    redis->ac = ac;
    redis->connect_deadline = uv_now(redis->loop) + (uint64_t)redis->timeout_ms;
}

int fl_redis_new(uv_loop_t *loop, const fl_redis_opts_t *opts, fl_redis_state_cb state_cb,
                 void *state_arg, fl_redis_t **out, fl_error_t *err) {
    if (opts->host == NULL || opts->port <= 0 || opts->timeout_ms <= 0)
        return fl_error_set(err, FL_EINVAL, false, "redis: bad options");
    fl_redis_t *redis = calloc(1, sizeof(*redis));
    if (redis == NULL)
        abort();
    redis->loop = loop;
    redis->host = strdup(opts->host);
    if (redis->host == NULL)
        abort();
    redis->port = opts->port;
    redis->timeout_ms = opts->timeout_ms;
    redis->backoff_ms = opts->backoff_ms > 0 ? opts->backoff_ms : 100;
    redis->backoff_max_ms =
        opts->backoff_max_ms >= redis->backoff_ms ? opts->backoff_max_ms : redis->backoff_ms;
    redis->backoff_cur = redis->backoff_ms;
    redis->state_cb = state_cb;
    redis->state_arg = state_arg;
    uv_timer_init(loop, &redis->deadline_timer);
    uv_timer_init(loop, &redis->reconnect_timer);
    redis->deadline_timer.data = redis;
    redis->reconnect_timer.data = redis;
    redis->open_handles = 2;
    uint64_t tick = (uint64_t)(redis->timeout_ms < 200 ? redis->timeout_ms / 4 + 1 : 50);
    uv_timer_start(&redis->deadline_timer, deadline_cb, tick, tick);
    redis_connect(redis);
    *out = redis;
    return 0;
}

static void handle_closed(uv_handle_t *h) {
    fl_redis_t *redis = h->data;
    if (--redis->open_handles == 0) {
        free(redis->host);
        free(redis);
    }
}

void fl_redis_close(fl_redis_t *redis) {
    if (redis == NULL || redis->closing)
        return;
    redis->closing = true;
    for (redis_cmd_t *c = redis->head; c != NULL; c = c->next)
        cmd_finish(c, NULL, FL_EREDIS);
    if (redis->ac != NULL) {
        redisAsyncContext *ac = redis->ac;
        redis->ac = NULL;
        redisAsyncFree(ac);
    }
    redis->connected = false;
    uv_close((uv_handle_t *)&redis->deadline_timer, handle_closed);
    uv_close((uv_handle_t *)&redis->reconnect_timer, handle_closed);
}

bool fl_redis_up(const fl_redis_t *redis) {
    return redis != NULL && redis->connected;
}

unsigned long fl_redis_error_count(const fl_redis_t *redis) {
    return redis != NULL ? redis->errors : 0;
}

static redis_cmd_t *cmd_new(fl_redis_t *redis, fl_redis_reply_cb cb, void *arg) {
    redis_cmd_t *cmd = calloc(1, sizeof(*cmd));
    if (cmd == NULL)
        abort();
    cmd->redis = redis;
    cmd->cb = cb;
    cmd->arg = arg;
    return cmd;
}

int fl_redis_command(fl_redis_t *redis, int argc, const char **argv, const size_t *argvlen,
                     fl_redis_reply_cb cb, void *arg) {
    redis_cmd_t *cmd = cmd_new(redis, cb, arg);
    int rc = send_cmd(redis, cmd, argc, argv, argvlen);
    if (rc != 0) {
        redis->errors++;
        cmd_free(cmd);
    }
    return rc;
}

void fl_redis_script_init(fl_redis_script_t *script, const char *source) {
    script->source = source;
    fl_sha1_hex(source, script->sha);
}

int fl_redis_eval(fl_redis_t *redis, const fl_redis_script_t *script, int numkeys, int argc,
                  const char **argv, const size_t *argvlen, fl_redis_reply_cb cb, void *arg) {
    redis_cmd_t *cmd = cmd_new(redis, cb, arg);
    cmd->script = script;
    cmd->argc = argc + 3;
    cmd->argv = calloc((size_t)cmd->argc, sizeof(char *));
    cmd->argvlen = calloc((size_t)cmd->argc, sizeof(size_t));
    if (cmd->argv == NULL || cmd->argvlen == NULL)
        abort();
    char nk[16];
    snprintf(nk, sizeof(nk), "%d", numkeys);
    const char *head[3] = {"EVALSHA", script->sha, nk};
    for (int i = 0; i < 3; i++) {
        cmd->argvlen[i] = strlen(head[i]);
        cmd->argv[i] = strdup(head[i]);
    }
    for (int i = 0; i < argc; i++) {
        size_t n = argvlen ? argvlen[i] : strlen(argv[i]);
        cmd->argv[i + 3] = malloc(n + 1);
        if (cmd->argv[i + 3] == NULL)
            abort();
        memcpy(cmd->argv[i + 3], argv[i], n);
        cmd->argv[i + 3][n] = '\0';
        cmd->argvlen[i + 3] = n;
    }
    for (int i = 0; i < 3; i++)
        if (cmd->argv[i] == NULL)
            abort();
    int rc = send_cmd(redis, cmd, cmd->argc, (const char **)cmd->argv, cmd->argvlen);
    if (rc != 0) {
        redis->errors++;
        cmd_free(cmd);
    }
    return rc;
}
