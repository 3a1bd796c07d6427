/* fl_config: typed configuration, layered defaults < file < environment < command line.
 *
 * Keys are declared up front with a type, a default, bounds and a help line. Sources:
 *   - file: `--config PATH` (or FEEDLOOP_CONFIG), lines `key = value`, `#` comments;
 *   - environment: FEEDLOOP_<KEY> with dots as underscores, upper case
 *     (redis.port -> FEEDLOOP_REDIS_PORT; kafka.bootstrap.servers ->
 * FEEDLOOP_KAFKA_BOOTSTRAP_SERVERS);
 *   - command line: `--key=value` or `--key value`; booleans also as bare `--key`.
 * Unknown keys and values that do not parse or are out of bounds are errors naming the key and
 * the source. Keys starting with `kafka.` are not declared: they pass through to librdkafka.
 *
 * Threads: build and read from one thread; reading after load is safe from any thread. */
#ifndef FL_CONFIG_H
#define FL_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "fl_err.h"

typedef enum { FL_CFG_STRING, FL_CFG_INT, FL_CFG_DOUBLE, FL_CFG_BOOL } fl_config_type_t;

typedef struct fl_config_key {
    const char *key;
    fl_config_type_t type;
    const char *def; /* default as text; NULL = no default (string: empty) */
    double min, max; /* bounds for INT/DOUBLE; ignored when min > max */
    const char *help;
} fl_config_key_t;

typedef struct fl_config fl_config_t;

/* A config with the common keys every worker has (kafka/topic/redis/http/log/shutdown). */
fl_config_t *fl_config_new(const char *program, const char *summary);
void fl_config_destroy(fl_config_t *cfg); /* NULL is a no-op */

/* Declare more keys; keys is borrowed and must outlive cfg (use static arrays). */
void fl_config_declare(fl_config_t *cfg, const fl_config_key_t *keys, size_t n);

/* Layer file, environment (envp, NULL-terminated "K=V" list; NULL = none) and argv.
 * argv[0] is skipped. Arguments not starting with `--` are positionals, kept in order.
 * Returns 0, 1 when --help was asked (usage already printed to stdout), or FL_ECONFIG with err
 * naming the key and where it came from. */
int fl_config_load(fl_config_t *cfg, int argc, char **argv, char **envp, fl_error_t *err);

/* Set one key from text, as source `origin` would (used by the loader and by tests). */
int fl_config_set(fl_config_t *cfg, const char *key, const char *value, const char *origin,
                  fl_error_t *err);

/* Parse a config file. */
int fl_config_load_file(fl_config_t *cfg, const char *path, fl_error_t *err);

/* Typed getters. Aborts on an undeclared key or a type mismatch (a programming error). */
const char *fl_config_str(const fl_config_t *cfg, const char *key);
long long fl_config_int(const fl_config_t *cfg, const char *key);
double fl_config_double(const fl_config_t *cfg, const char *key);
bool fl_config_bool(const fl_config_t *cfg, const char *key);

/* Positional arguments left after load. */
size_t fl_config_npos(const fl_config_t *cfg);
const char *fl_config_pos(const fl_config_t *cfg, size_t i);

/* Pass-through librdkafka properties (key without the `kafka.` prefix). Calls cb for each in
 * the order they were set; stops and returns the first non-zero cb result. */
int fl_config_each_kafka(const fl_config_t *cfg,
                         int (*cb)(void *opaque, const char *prop, const char *value),
                         void *opaque);
const char *fl_config_kafka(const fl_config_t *cfg, const char *prop); /* NULL when unset */

/* Print usage: summary, every key with type, default and help, and the sources. */
void fl_config_usage(const fl_config_t *cfg, FILE *out);

/* Topic name for an event type: `<topic.prefix><type>`, written into buf. */
const char *fl_config_topic(const fl_config_t *cfg, const char *type, char *buf, size_t len);

#endif
