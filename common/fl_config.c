#include "fl_config.h"
#include "fl_mem.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define FL_CONFIG_MAX_DECLS 16

static const fl_config_key_t common_keys[] = {
    {"topic.prefix", FL_CFG_STRING, "feedloop.", 0, -1, "prefix of every topic name"},
    {"group.id", FL_CFG_STRING, NULL, 0, -1, "consumer group (default feedloop-<worker>)"},
    {"topics.create", FL_CFG_BOOL, "false", 0, -1,
     "create missing topics at start-up instead of failing"},
    {"topics.partitions", FL_CFG_INT, "4", 1, 10000, "partitions of topics created"},
    {"topics.replication", FL_CFG_INT, "1", 1, 100, "replication factor of topics created"},
    {"redis.host", FL_CFG_STRING, "127.0.0.1", 0, -1, "Redis host"},
    {"redis.port", FL_CFG_INT, "6379", 1, 65535, "Redis port"},
    {"redis.timeout.ms", FL_CFG_INT, "2000", 10, 600000, "deadline of every Redis command"},
    {"redis.key.prefix", FL_CFG_STRING, "fl:", 0, -1, "prefix of every Redis key"},
    {"http.host", FL_CFG_STRING, "0.0.0.0", 0, -1, "address of /healthz /readyz /metrics"},
    {"http.port", FL_CFG_INT, "8080", -1, 65535, "HTTP port (0 = ephemeral, -1 = disabled)"},
    {"log.level", FL_CFG_STRING, "info", 0, -1, "debug, info, warn or error"},
    {"shutdown.timeout.ms", FL_CFG_INT, "10000", 100, 600000,
     "longest drain on SIGTERM before giving up"},
    {"retry.backoff.ms", FL_CFG_INT, "200", 1, 600000, "first retry delay after a failure"},
    {"retry.backoff.max.ms", FL_CFG_INT, "5000", 1, 3600000, "longest retry delay"},
    {"max.in.flight", FL_CFG_INT, "1000", 1, 1000000, "events being processed at once"},
    {"dedup.ttl.s", FL_CFG_INT, "604800", 60, 31536000,
     "how long an applied input id is remembered"},
};

typedef struct cfg_value {
    const fl_config_key_t *decl;
    char *text;
    char origin[160];
    union {
        long long i;
        double d;
        bool b;
    } v;
} cfg_value_t;

typedef struct cfg_kv {
    char *key;
    char *value;
} cfg_kv_t;

struct fl_config {
    char *program;
    char *summary;
    const fl_config_key_t *decls[FL_CONFIG_MAX_DECLS];
    size_t ndecls_n[FL_CONFIG_MAX_DECLS];
    size_t ndecls;
    cfg_value_t *values;
    size_t nvalues;
    cfg_kv_t *kafka;
    size_t nkafka;
    char **pos;
    size_t npos;
};

static cfg_value_t *find_value(const fl_config_t *cfg, const char *key) {
    for (size_t i = 0; i < cfg->nvalues; i++)
        if (strcmp(cfg->values[i].decl->key, key) == 0)
            return &cfg->values[i];
    return NULL;
}

static int parse_value(cfg_value_t *val, const char *text, const char *origin, fl_error_t *err) {
    const fl_config_key_t *d = val->decl;
    char *end = NULL;
    switch (d->type) {
    case FL_CFG_STRING:
        break;
    case FL_CFG_INT: {
        errno = 0;
        long long n = strtoll(text, &end, 10);
        if (errno != 0 || end == text || *end != '\0')
            return fl_error_set(err, FL_ECONFIG, false, "%s (%s): '%s' is not an integer", d->key,
                                origin, text);
        if (d->min <= d->max && ((double)n < d->min || (double)n > d->max))
            return fl_error_set(err, FL_ECONFIG, false, "%s (%s): %lld is outside [%g, %g]", d->key,
                                origin, n, d->min, d->max);
        val->v.i = n;
        break;
    }
    case FL_CFG_DOUBLE: {
        errno = 0;
        double x = strtod(text, &end);
        if (errno != 0 || end == text || *end != '\0' || !isfinite(x))
            return fl_error_set(err, FL_ECONFIG, false, "%s (%s): '%s' is not a finite number",
                                d->key, origin, text);
        if (d->min <= d->max && (x < d->min || x > d->max))
            return fl_error_set(err, FL_ECONFIG, false, "%s (%s): %g is outside [%g, %g]", d->key,
                                origin, x, d->min, d->max);
        val->v.d = x;
        break;
    }
    case FL_CFG_BOOL:
        if (strcasecmp(text, "true") == 0 || strcmp(text, "1") == 0 ||
            strcasecmp(text, "yes") == 0 || strcasecmp(text, "on") == 0)
            val->v.b = true;
        else if (strcasecmp(text, "false") == 0 || strcmp(text, "0") == 0 ||
                 strcasecmp(text, "no") == 0 || strcasecmp(text, "off") == 0)
            val->v.b = false;
        else
            return fl_error_set(err, FL_ECONFIG, false,
                                "%s (%s): '%s' is not a boolean (true/false)", d->key, origin,
                                text);
        break;
    }
    free(val->text);
    val->text = fl_mem_strdup(text);
    snprintf(val->origin, sizeof(val->origin), "%s", origin);
    return 0;
}

static void add_decls(fl_config_t *cfg, const fl_config_key_t *keys, size_t n) {
    for (size_t i = 0; i < n; i++) {
        cfg_value_t *existing = find_value(cfg, keys[i].key);
        cfg_value_t *val = existing;
        if (val == NULL) {
            cfg->values = fl_mem_realloc(cfg->values, (cfg->nvalues + 1) * sizeof(*cfg->values));
            val = &cfg->values[cfg->nvalues++];
            memset(val, 0, sizeof(*val));
        }
        val->decl = &keys[i];
        /* Defaults are compile-time constants: a bad one is a programming error. */
        if (parse_value(val, keys[i].def ? keys[i].def : "", "default", NULL) != 0 &&
            keys[i].type != FL_CFG_STRING) {
            if (keys[i].def != NULL)
                abort();
        }
    }
}

fl_config_t *fl_config_new(const char *program, const char *summary) {
    fl_config_t *cfg = calloc(1, sizeof(*cfg));
    if (cfg == NULL)
        abort();
    cfg->program = fl_mem_strdup(program ? program : "feedloop");
    cfg->summary = fl_mem_strdup(summary ? summary : "");
    fl_config_declare(cfg, common_keys, sizeof(common_keys) / sizeof(common_keys[0]));
    return cfg;
}

void fl_config_declare(fl_config_t *cfg, const fl_config_key_t *keys, size_t n) {
    if (cfg->ndecls >= FL_CONFIG_MAX_DECLS)
        abort();
    cfg->decls[cfg->ndecls] = keys;
    cfg->ndecls_n[cfg->ndecls] = n;
    cfg->ndecls++;
    add_decls(cfg, keys, n);
}

void fl_config_destroy(fl_config_t *cfg) {
    if (cfg == NULL)
        return;
    for (size_t i = 0; i < cfg->nvalues; i++)
        free(cfg->values[i].text);
    free(cfg->values);
    for (size_t i = 0; i < cfg->nkafka; i++) {
        free(cfg->kafka[i].key);
        free(cfg->kafka[i].value);
    }
    free(cfg->kafka);
    for (size_t i = 0; i < cfg->npos; i++)
        free(cfg->pos[i]);
    free(cfg->pos);
    free(cfg->program);
    free(cfg->summary);
    free(cfg);
}

int fl_config_set(fl_config_t *cfg, const char *key, const char *value, const char *origin,
                  fl_error_t *err) {
    if (strncmp(key, "kafka.", 6) == 0) {
        const char *prop = key + 6;
        if (*prop == '\0')
            return fl_error_set(err, FL_ECONFIG, false, "%s (%s): empty librdkafka property", key,
                                origin);
        for (size_t i = 0; i < cfg->nkafka; i++) {
            if (strcmp(cfg->kafka[i].key, prop) == 0) {
                free(cfg->kafka[i].value);
                cfg->kafka[i].value = fl_mem_strdup(value);
                return 0;
            }
        }
        cfg->kafka = fl_mem_realloc(cfg->kafka, (cfg->nkafka + 1) * sizeof(*cfg->kafka));
        cfg->kafka[cfg->nkafka].key = fl_mem_strdup(prop);
        cfg->kafka[cfg->nkafka].value = fl_mem_strdup(value);
        cfg->nkafka++;
        return 0;
    }
    cfg_value_t *val = find_value(cfg, key);
    if (val == NULL)
        return fl_error_set(err, FL_ECONFIG, false, "%s (%s): unknown configuration key", key,
                            origin);
    return parse_value(val, value, origin, err);
}

static char *trim(char *s) {
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

int fl_config_load_file(fl_config_t *cfg, const char *path, fl_error_t *err) {
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return fl_error_set(err, FL_ECONFIG, false, "config file %s: %s", path, strerror(errno));
    char line[4096];
    int lineno = 0;
    int rc = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        lineno++;
        char origin[160];
        snprintf(origin, sizeof(origin), "%s:%d", path, lineno);
        if (strchr(line, '\n') == NULL && !feof(f)) {
            rc = fl_error_set(err, FL_ECONFIG, false, "%s: line too long", origin);
            goto out;
        }
        char *s = trim(line);
        if (*s == '\0' || *s == '#')
            continue;
        char *eq = strchr(s, '=');
        if (eq == NULL) {
            rc = fl_error_set(err, FL_ECONFIG, false, "%s: expected 'key = value', got '%s'",
                              origin, s);
            goto out;
        }
        *eq = '\0';
        char *key = trim(s);
        char *value = trim(eq + 1);
        if (*key == '\0') {
            rc = fl_error_set(err, FL_ECONFIG, false, "%s: missing key before '='", origin);
            goto out;
        }
        rc = fl_config_set(cfg, key, value, origin, err);
        if (rc != 0)
            goto out;
    }
    if (ferror(f))
        rc = fl_error_set(err, FL_ECONFIG, false, "config file %s: read error", path);
out:
    fclose(f);
    return rc;
}

/* FEEDLOOP_REDIS_PORT -> redis.port. Declared keys are matched by their own env spelling, so
 * keys that contain underscores stay unambiguous; what is left must be a kafka.* property. */
static void env_name(const char *key, char *buf, size_t len) {
    size_t n = (size_t)snprintf(buf, len, "FEEDLOOP_");
    for (const char *p = key; *p && n + 1 < len; p++)
        buf[n++] = (*p == '.' || *p == '-') ? '_' : (char)toupper((unsigned char)*p);
    buf[n] = '\0';
}

/* Docker/Kubernetes service-link variables: X_SERVICE_HOST, X_SERVICE_PORT[_NAME], X_PORT,
 * X_PORT_<n>_<PROTO>[_PROTO|_PORT|_ADDR]. */
static bool k8s_service_link(const char *name) {
    if (strstr(name, "_SERVICE_HOST") != NULL || strstr(name, "_SERVICE_PORT") != NULL)
        return true;
    size_t n = strlen(name);
    if (n >= 5 && strcmp(name + n - 5, "_PORT") == 0)
        return true;
    for (const char *p = strstr(name, "_PORT_"); p != NULL; p = strstr(p + 1, "_PORT_"))
        if (isdigit((unsigned char)p[6]) &&
            (strstr(p, "_TCP") != NULL || strstr(p, "_UDP") != NULL || strstr(p, "_SCTP") != NULL))
            return true;
    return false;
}

static int load_env(fl_config_t *cfg, char **envp, fl_error_t *err) {
    if (envp == NULL)
        return 0;
    for (char **e = envp; *e != NULL; e++) {
        if (strncmp(*e, "FEEDLOOP_", 9) != 0)
            continue;
        const char *eq = strchr(*e, '=');
        if (eq == NULL)
            continue;
        size_t nlen = (size_t)(eq - *e);
        char name[256];
        if (nlen >= sizeof(name))
            return fl_error_set(err, FL_ECONFIG, false, "environment: variable name too long");
        memcpy(name, *e, nlen);
        name[nlen] = '\0';
        if (strcmp(name, "FEEDLOOP_CONFIG") == 0)
            continue;

        char origin[300];
        snprintf(origin, sizeof(origin), "environment %s", name);
        const char *key = NULL;
        for (size_t i = 0; i < cfg->nvalues; i++) {
            char want[256];
            env_name(cfg->values[i].decl->key, want, sizeof(want));
            if (strcmp(want, name) == 0) {
                key = cfg->values[i].decl->key;
                break;
            }
        }
        int rc;
        if (key == NULL && k8s_service_link(name)) {
            /* Kubernetes injects <SERVICE>_SERVICE_HOST, <SERVICE>_PORT_80_TCP... for every
             * Service in the namespace: for Services named feedloop-*, those start with
             * FEEDLOOP_ and are not configuration. */
            continue;
        }
        if (key != NULL) {
            rc = fl_config_set(cfg, key, eq + 1, origin, err);
        } else if (strncmp(name, "FEEDLOOP_KAFKA_", 15) == 0 && name[15] != '\0') {
            char prop[256] = "kafka.";
            size_t n = 6;
            for (const char *p = name + 15; *p && n + 1 < sizeof(prop); p++)
                prop[n++] = *p == '_' ? '.' : (char)tolower((unsigned char)*p);
            prop[n] = '\0';
            rc = fl_config_set(cfg, prop, eq + 1, origin, err);
        } else {
            rc = fl_error_set(err, FL_ECONFIG, false, "%s: unknown configuration key", origin);
        }
        if (rc != 0)
            return rc;
    }
    return 0;
}

int fl_config_load(fl_config_t *cfg, int argc, char **argv, char **envp, fl_error_t *err) {
    const char *file = NULL;
    if (envp != NULL)
        for (char **e = envp; *e != NULL; e++)
            if (strncmp(*e, "FEEDLOOP_CONFIG=", 16) == 0)
                file = *e + 16;
    /* First pass: --help and --config, so the file is layered before env and argv. */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            break;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fl_config_usage(cfg, stdout);
            return 1;
        }
        if (strcmp(argv[i], "--config") == 0) {
            if (i + 1 >= argc)
                return fl_error_set(err, FL_ECONFIG, false, "--config: missing file name");
            file = argv[++i];
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            file = argv[i] + 9;
        }
    }
    int rc = 0;
    if (file != NULL && *file != '\0' && (rc = fl_config_load_file(cfg, file, err)) != 0)
        return rc;
    if ((rc = load_env(cfg, envp, err)) != 0)
        return rc;
    bool only_pos = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (only_pos || strncmp(a, "--", 2) != 0 || a[2] == '\0') {
            if (!only_pos && strcmp(a, "--") == 0) {
                only_pos = true;
                continue;
            }
            cfg->pos = fl_mem_realloc(cfg->pos, (cfg->npos + 1) * sizeof(*cfg->pos));
            cfg->pos[cfg->npos++] = fl_mem_strdup(a);
            continue;
        }
        if (strcmp(a, "--config") == 0) {
            i++;
            continue;
        }
        if (strncmp(a, "--config=", 9) == 0)
            continue;
        char key[256];
        const char *value;
        const char *eq = strchr(a + 2, '=');
        if (eq != NULL) {
            size_t n = (size_t)(eq - (a + 2));
            if (n >= sizeof(key))
                return fl_error_set(err, FL_ECONFIG, false, "%s: option name too long", a);
            memcpy(key, a + 2, n);
            key[n] = '\0';
            value = eq + 1;
        } else {
            snprintf(key, sizeof(key), "%s", a + 2);
            cfg_value_t *val = find_value(cfg, key);
            /* A bare boolean takes the next argument only when it is a boolean word, so
             * `--headers topic` keeps `topic` as a positional. */
            bool next_is_bool = false;
            if (i + 1 < argc) {
                static const char *words[] = {"true", "false", "1", "0", "yes", "no", "on", "off"};
                for (size_t k = 0; k < sizeof(words) / sizeof(words[0]); k++)
                    if (strcasecmp(argv[i + 1], words[k]) == 0)
                        next_is_bool = true;
            }
            if (val != NULL && val->decl->type == FL_CFG_BOOL && !next_is_bool) {
                value = "true";
            } else if (i + 1 < argc) {
                value = argv[++i];
            } else {
                return fl_error_set(err, FL_ECONFIG, false, "%s (command line): missing value",
                                    key);
            }
        }
        if ((rc = fl_config_set(cfg, key, value, "command line", err)) != 0)
            return rc;
    }
    return 0;
}

static const cfg_value_t *get_typed(const fl_config_t *cfg, const char *key,
                                    fl_config_type_t type) {
    const cfg_value_t *val = find_value(cfg, key);
    if (val == NULL || val->decl->type != type) {
        fprintf(stderr, "feedloop: config key %s undeclared or read with the wrong type\n", key);
        abort();
    }
    return val;
}

const char *fl_config_str(const fl_config_t *cfg, const char *key) {
    return get_typed(cfg, key, FL_CFG_STRING)->text;
}

long long fl_config_int(const fl_config_t *cfg, const char *key) {
    return get_typed(cfg, key, FL_CFG_INT)->v.i;
}

double fl_config_double(const fl_config_t *cfg, const char *key) {
    return get_typed(cfg, key, FL_CFG_DOUBLE)->v.d;
}

bool fl_config_bool(const fl_config_t *cfg, const char *key) {
    return get_typed(cfg, key, FL_CFG_BOOL)->v.b;
}

size_t fl_config_npos(const fl_config_t *cfg) {
    return cfg->npos;
}

const char *fl_config_pos(const fl_config_t *cfg, size_t i) {
    return i < cfg->npos ? cfg->pos[i] : NULL;
}

int fl_config_each_kafka(const fl_config_t *cfg,
                         int (*cb)(void *opaque, const char *prop, const char *value),
                         void *opaque) {
    for (size_t i = 0; i < cfg->nkafka; i++) {
        int rc = cb(opaque, cfg->kafka[i].key, cfg->kafka[i].value);
        if (rc != 0)
            return rc;
    }
    return 0;
}

const char *fl_config_kafka(const fl_config_t *cfg, const char *prop) {
    for (size_t i = 0; i < cfg->nkafka; i++)
        if (strcmp(cfg->kafka[i].key, prop) == 0)
            return cfg->kafka[i].value;
    return NULL;
}

void fl_config_usage(const fl_config_t *cfg, FILE *out) {
    static const char *type_names[] = {"string", "int", "number", "bool"};
    fprintf(out, "Usage: %s [options]%s\n\n", cfg->program, "");
    if (cfg->summary[0])
        fprintf(out, "%s\n\n", cfg->summary);
    fprintf(out, "Options (each also settable in a config file as `key = value` and in the\n"
                 "environment as FEEDLOOP_<KEY>, dots as underscores; precedence:\n"
                 "defaults < file < environment < command line):\n");
    fprintf(out, "  --help                 print this help and exit\n");
    fprintf(out, "  --config PATH          config file (also FEEDLOOP_CONFIG)\n");
    for (size_t d = 0; d < cfg->ndecls; d++) {
        for (size_t i = 0; i < cfg->ndecls_n[d]; i++) {
            const fl_config_key_t *k = &cfg->decls[d][i];
            char opt[128];
            snprintf(opt, sizeof(opt), "--%s=<%s>", k->key, type_names[k->type]);
            fprintf(out, "  %-36s %s (default: %s)\n", opt, k->help,
                    k->def && *k->def ? k->def : "none");
        }
    }
    fprintf(out,
            "  --kafka.<property>=<value>           any librdkafka property, passed through\n"
            "                                       (e.g. --kafka.bootstrap.servers=host:9092)\n");
}

const char *fl_config_topic(const fl_config_t *cfg, const char *type, char *buf, size_t len) {
    snprintf(buf, len, "%s%s", fl_config_str(cfg, "topic.prefix"), type);
    return buf;
}
