/* fl_redis: Redis over hiredis 0.14 on the worker's libuv loop, with a deadline on every
 * command, reconnect with backoff, and Lua scripts run by SHA with a NOSCRIPT fallback.
 *
 * hiredis 0.14 has no async timeouts, so every command records its deadline; one timer checks
 * the oldest pending command (replies come in order on one connection) and, when it is late,
 * fails every pending command with FL_ETIMEOUT and drops the connection, which then reconnects
 * with backoff. While disconnected (or connected but not yet answering PING), commands fail at
 * once with FL_EREDIS (retriable). A connect that does not complete within the deadline is
 * abandoned and retried.
 *
 * Threads: loop thread only. */
#ifndef FL_REDIS_H
#define FL_REDIS_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "fl_err.h"

typedef struct fl_redis fl_redis_t;

/* Reply callback. err is 0 (reply is a non-error reply), FL_EREDIS (connection lost, or reply is
 * an error reply: then reply != NULL and reply->type == REDIS_REPLY_ERROR) or FL_ETIMEOUT (reply
 * NULL). The reply is borrowed: copy what you keep. Called exactly once per accepted command. */
typedef void (*fl_redis_reply_cb)(void *arg, redisReply *reply, int err);

/* Connection state changes (up = connected and answering). */
typedef void (*fl_redis_state_cb)(void *arg, bool up);

typedef struct fl_redis_script {
    const char *source; /* Lua text, static */
    char sha[41];       /* filled by fl_redis_script_init */
} fl_redis_script_t;

typedef struct fl_redis_opts {
    const char *host;
    int port;
    int timeout_ms;
    int backoff_ms;
    int backoff_max_ms;
} fl_redis_opts_t;

/* Start connecting (asynchronously). *out owns its handles; free with fl_redis_close. */
int fl_redis_new(uv_loop_t *loop, const fl_redis_opts_t *opts, fl_redis_state_cb state_cb,
                 void *state_arg, fl_redis_t **out, fl_error_t *err);

/* Fail pending commands with FL_EREDIS, close the connection and the timers. The struct is freed
 * after the last libuv close callback; the loop can then be closed. NULL is a no-op. */
void fl_redis_close(fl_redis_t *redis);

bool fl_redis_up(const fl_redis_t *redis);

/* Count of commands failed by deadline or connection loss since start. */
unsigned long fl_redis_error_count(const fl_redis_t *redis);

/* Send a command (argv copied by hiredis). Returns 0 (cb will be called exactly once) or
 * FL_EREDIS when not connected (cb not called). */
int fl_redis_command(fl_redis_t *redis, int argc, const char **argv, const size_t *argvlen,
                     fl_redis_reply_cb cb, void *arg);

/* Compute the script's SHA-1 (no I/O). */
void fl_redis_script_init(fl_redis_script_t *script, const char *source);

/* EVALSHA script numkeys keys... args...; script is borrowed and must outlive the command (its
 * source is resent on NOSCRIPT). on NOSCRIPT, EVAL with the same arguments (which also
 * caches the script server-side). argv holds the keys followed by the args. Same contract as
 * fl_redis_command. */
int fl_redis_eval(fl_redis_t *redis, const fl_redis_script_t *script, int numkeys, int argc,
                  const char **argv, const size_t *argvlen, fl_redis_reply_cb cb, void *arg);

#endif
