/* Config: layering defaults < file < environment < command line, typed parsing, and every class
 * of bad configuration producing an error that names the key and where it came from. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "fl_config.h"

static const fl_config_key_t keys[] = {
    {"demo.count", FL_CFG_INT, "5", 0, 100, "a bounded integer"},
    {"demo.ratio", FL_CFG_DOUBLE, "0.5", 0, 1, "a bounded number"},
    {"demo.flag", FL_CFG_BOOL, "false", 0, -1, "a boolean"},
    {"demo.name", FL_CFG_STRING, "x", 0, -1, "a string"},
};

static fl_config_t *new_cfg(void) {
    fl_config_t *cfg = fl_config_new("test", "config test");
    fl_config_declare(cfg, keys, sizeof(keys) / sizeof(keys[0]));
    return cfg;
}

static char *write_file(const char *text) {
    char *path = strdup("/tmp/fl-config-test-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static void test_defaults(void **state) {
    (void)state;
    fl_config_t *cfg = new_cfg();
    char *argv[] = {"prog", NULL};
    fl_error_t err = {0};
    assert_int_equal(fl_config_load(cfg, 1, argv, NULL, &err), 0);
    assert_int_equal(fl_config_int(cfg, "demo.count"), 5);
    assert_true(fl_config_double(cfg, "demo.ratio") == 0.5);
    assert_false(fl_config_bool(cfg, "demo.flag"));
    assert_string_equal(fl_config_str(cfg, "demo.name"), "x");
    assert_int_equal(fl_config_int(cfg, "redis.port"), 6379);
    assert_string_equal(fl_config_str(cfg, "topic.prefix"), "feedloop.");
    fl_config_destroy(cfg);
}

static void test_layering(void **state) {
    (void)state;
    char *path = write_file("# comment\n demo.count = 7\ndemo.name=from-file\n"
                            "demo.ratio = 0.25\nkafka.linger.ms = 5\n\n");
    fl_config_t *cfg = new_cfg();
    char cfgarg[256];
    snprintf(cfgarg, sizeof(cfgarg), "--config=%s", path);
    char *argv[] = {"prog", cfgarg, "--demo.count", "9", "--demo.flag", "pos1", NULL};
    /* Service-link variables Kubernetes injects for Services named feedloop-* are ignored. */
    char *envp[] = {"FEEDLOOP_DEMO_NAME=from-env",
                    "FEEDLOOP_DEMO_COUNT=8",
                    "FEEDLOOP_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:1",
                    "OTHER=1",
                    "FEEDLOOP_VALIDATOR_SERVICE_HOST=10.0.0.1",
                    "FEEDLOOP_VALIDATOR_SERVICE_PORT_HTTP=8080",
                    "FEEDLOOP_KAFKA_PORT=tcp://10.0.0.2:9092",
                    "FEEDLOOP_KAFKA_PORT_9092_TCP_ADDR=10.0.0.2",
                    NULL};
    fl_error_t err = {0};
    int rc = fl_config_load(cfg, 6, argv, envp, &err);
    if (rc != 0)
        fail_msg("load: %s", err.text);
    assert_int_equal(fl_config_int(cfg, "demo.count"), 9);            /* argv wins */
    assert_string_equal(fl_config_str(cfg, "demo.name"), "from-env"); /* env over file */
    assert_true(fl_config_double(cfg, "demo.ratio") == 0.25);         /* file over default */
    assert_true(fl_config_bool(cfg, "demo.flag"));                    /* bare boolean */
    assert_string_equal(fl_config_kafka(cfg, "linger.ms"), "5");
    assert_string_equal(fl_config_kafka(cfg, "bootstrap.servers"), "127.0.0.1:1");
    assert_int_equal(fl_config_npos(cfg), 1);
    assert_string_equal(fl_config_pos(cfg, 0), "pos1");
    fl_config_destroy(cfg);
    unlink(path);
    free(path);
}

typedef struct bad {
    const char *name;
    const char *file;  /* NULL: none */
    const char *env;   /* NULL: none */
    const char *arg;   /* NULL: none */
    const char *want1; /* substrings the error must contain */
    const char *want2;
} bad_t;

static const bad_t bads[] = {
    {"unknown key on the command line", NULL, NULL, "--demo.nope=1", "demo.nope",
     "unknown configuration key"},
    {"unknown key in a file", "demo.nope = 1\n", NULL, NULL, "demo.nope", ":1"},
    {"unknown key in the environment", NULL, "FEEDLOOP_DEMO_NOPE=1", NULL, "FEEDLOOP_DEMO_NOPE",
     "unknown"},
    {"integer not a number", NULL, NULL, "--demo.count=abc", "demo.count", "not an integer"},
    {"integer out of bounds", NULL, NULL, "--demo.count=101", "demo.count", "outside"},
    {"integer with trailing junk", NULL, NULL, "--demo.count=5x", "demo.count", "not an integer"},
    {"number out of bounds", NULL, "FEEDLOOP_DEMO_RATIO=2", NULL, "demo.ratio", "outside"},
    {"number NaN", NULL, NULL, "--demo.ratio=nan", "demo.ratio", "finite"},
    {"bad boolean", "demo.flag = maybe\n", NULL, NULL, "demo.flag", "boolean"},
    {"file line without =", "demo.count 5\n", NULL, NULL, "key = value", ":1"},
    {"empty kafka property", NULL, NULL, "--kafka.=1", "kafka.", "empty"},
    {"missing value", NULL, NULL, "--demo.count", "demo.count", "missing value"},
    {"redis port 0", NULL, "FEEDLOOP_REDIS_PORT=0", NULL, "redis.port", "outside"},
};

static void test_bad_config(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof(bads) / sizeof(bads[0]); i++) {
        const bad_t *b = &bads[i];
        char *path = b->file ? write_file(b->file) : NULL;
        char cfgarg[256];
        char *argv[4] = {"prog", NULL, NULL, NULL};
        int argc = 1;
        if (path) {
            snprintf(cfgarg, sizeof(cfgarg), "--config=%s", path);
            argv[argc++] = cfgarg;
        }
        if (b->arg)
            argv[argc++] = (char *)b->arg;
        char *envp[2] = {(char *)b->env, NULL};
        fl_config_t *cfg = new_cfg();
        fl_error_t err = {0};
        int rc = fl_config_load(cfg, argc, argv, b->env ? envp : NULL, &err);
        if (rc != FL_ECONFIG || strstr(err.text, b->want1) == NULL ||
            strstr(err.text, b->want2) == NULL)
            fail_msg("case '%s': rc %d, error '%s'", b->name, rc, err.text);
        fl_config_destroy(cfg);
        if (path) {
            unlink(path);
            free(path);
        }
    }
}

static void test_missing_file(void **state) {
    (void)state;
    fl_config_t *cfg = new_cfg();
    char *argv[] = {"prog", "--config", "/nonexistent/feedloop.conf", NULL};
    fl_error_t err = {0};
    assert_int_equal(fl_config_load(cfg, 3, argv, NULL, &err), FL_ECONFIG);
    assert_non_null(strstr(err.text, "/nonexistent/feedloop.conf"));
    fl_config_destroy(cfg);
}

static void test_help(void **state) {
    (void)state;
    fl_config_t *cfg = new_cfg();
    char *argv[] = {"prog", "--help", NULL};
    fl_error_t err = {0};
    FILE *saved = stdout;
    stdout = fopen("/dev/null", "w");
    int rc = fl_config_load(cfg, 2, argv, NULL, &err);
    fclose(stdout);
    stdout = saved;
    assert_int_equal(rc, 1);
    fl_config_destroy(cfg);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),   cmocka_unit_test(test_layering),
        cmocka_unit_test(test_bad_config), cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_help),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
