/* Unit tests for fl_metrics: exact exposition text, escaping, validation, scale. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fl_err.h"
#include "fl_metrics.h"

/* Render m and compare with want exactly. */
static void assert_render(const fl_metrics_t *m, const char *want) {
    size_t len = 0;
    char *got = fl_metrics_render(m, &len);
    assert_non_null(got);
    assert_string_equal(got, want);
    assert_int_equal(len, strlen(want));
    free(got);
}

static void test_new_destroy(void **state) {
    (void)state;
    fl_metrics_destroy(NULL);
    assert_null(fl_metrics_new("9bad"));
    assert_null(fl_metrics_new("bad-prefix"));
    fl_metrics_t *m = fl_metrics_new("feedloop");
    assert_non_null(m);
    assert_render(m, "");
    fl_metrics_destroy(m);
}

static void test_counter_render(void **state) {
    (void)state;
    fl_metrics_t *m = fl_metrics_new("feedloop");
    assert_int_equal(
        fl_metrics_counter_add(m, "events_total", "Events consumed.", "type=\"ci_report\"", 1), 0);
    assert_int_equal(
        fl_metrics_counter_add(m, "events_total", "ignored later help", "type=\"pr_opened\"", 2),
        0);
    assert_int_equal(fl_metrics_counter_add(m, "events_total", NULL, "type=\"ci_report\"", 2), 0);
    assert_int_equal(fl_metrics_counter_add(m, "restarts_total", "Restarts.", NULL, 0), 0);
    assert_int_equal(fl_metrics_counter_add(m, "bytes_total", "Bytes.", "", 0.5), 0);
    assert_render(m, "# HELP feedloop_events_total Events consumed.\n"
                     "# TYPE feedloop_events_total counter\n"
                     "feedloop_events_total{type=\"ci_report\"} 3\n"
                     "feedloop_events_total{type=\"pr_opened\"} 2\n"
                     "# HELP feedloop_restarts_total Restarts.\n"
                     "# TYPE feedloop_restarts_total counter\n"
                     "feedloop_restarts_total 0\n"
                     "# HELP feedloop_bytes_total Bytes.\n"
                     "# TYPE feedloop_bytes_total counter\n"
                     "feedloop_bytes_total 0.5\n");
    fl_metrics_destroy(m);
}

static void test_gauge_render_numbers(void **state) {
    (void)state;
    fl_metrics_t *m = fl_metrics_new("fl");
    static const struct {
        const char *labels;
        double v;
        const char *want;
    } cases[] = {
        {"v=\"int\"", 42, "42"},
        {"v=\"neg\"", -3, "-3"},
        {"v=\"tenth\"", 0.1, "0.1"},
        {"v=\"third\"", 1.0 / 3.0, "0.3333333333333333"},
        {"v=\"2p53\"", 9007199254740992.0, "9007199254740992"},
        {"v=\"big\"", 1e20, "1e+20"},
        {"v=\"small\"", 1e-7, "1e-07"},
        {"v=\"negzero\"", -0.0, "0"},
        {"v=\"nan\"", NAN, "NaN"},
        {"v=\"inf\"", INFINITY, "+Inf"},
        {"v=\"ninf\"", -INFINITY, "-Inf"},
    };
    char want[2048] = "# TYPE fl_g gauge\n";
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(fl_metrics_gauge_set(m, "g", NULL, cases[i].labels, cases[i].v), 0);
        char line[128];
        snprintf(line, sizeof(line), "fl_g{%s} %s\n", cases[i].labels, cases[i].want);
        strcat(want, line);
    }
    assert_render(m, want);

    /* Every finite value reads back exactly. */
    fl_metrics_t *m2 = fl_metrics_new(NULL);
    assert_int_equal(fl_metrics_gauge_set(m2, "x", NULL, NULL, 0.1 + 0.2), 0);
    char *text = fl_metrics_render(m2, NULL);
    const char *num = strrchr(text, ' ') + 1;
    assert_true(strtod(num, NULL) == 0.1 + 0.2);
    assert_string_equal(text, "# TYPE x gauge\nx 0.30000000000000004\n");
    free(text);

    assert_int_equal(fl_metrics_gauge_add(m2, "x", NULL, NULL, -0.30000000000000004), 0);
    assert_int_equal(fl_metrics_gauge_add(m2, "inflight", "In flight.", NULL, 2), 0);
    assert_int_equal(fl_metrics_gauge_add(m2, "inflight", NULL, NULL, -1), 0);
    assert_render(m2, "# TYPE x gauge\nx 0\n"
                      "# HELP inflight In flight.\n# TYPE inflight gauge\ninflight 1\n");
    fl_metrics_destroy(m2);
    fl_metrics_destroy(m);
}

static void test_histogram_render(void **state) {
    (void)state;
    fl_metrics_t *m = fl_metrics_new("feedloop");
    /* Binary-exact values so the sum is exact; 0.5 sits on a bound (le is inclusive). */
    const double obs[] = {0.000244140625, 0.25, 0.5, 3, 16};
    for (size_t i = 0; i < sizeof(obs) / sizeof(obs[0]); i++)
        assert_int_equal(fl_metrics_histogram_observe(m, "handle_seconds", "Handling latency.",
                                                      "stage=\"decode\",lane=\"a\"", obs[i]),
                         0);
    assert_int_equal(
        fl_metrics_histogram_observe(m, "handle_seconds", NULL, "stage=\"emit\"", 0.001), 0);
    assert_render(m, "# HELP feedloop_handle_seconds Handling latency.\n"
                     "# TYPE feedloop_handle_seconds histogram\n"
                     "feedloop_handle_seconds_bucket{stage=\"decode\",lane=\"a\",le=\"0.0005\"} 1\n"
                     "feedloop_handle_seconds_bucket{stage=\"decode\",lane=\"a\",le=\"0.001\"} 1\n"
                     "feedloop_handle_seconds_bucket{stage=\"decode\",lane=\"a\",le=\"0.0025\"} 1\n"
                     "feedloop_handle_seconds_bucket{stage=\"decode\",lane=\"a\",le=\"0.005\"} 1\n"
                     "feedloop_handle_seconds_bucket{stage=\"decode\",lane=\"a\",le=\"0.01\"} 1\n"
                     "feedloop_handle_seconds_bucket{stage=\"decode\",lane=\"a\",le=\"0.025\"} 1\n"
                     "feedloop_handle_seconds_bucket{stage=\"decode\",lane=\"a\",le=\"0.05\"} 1\n"
                     "feedloop_handle_seconds_bucket{stage=\"decode\",lane=\"a\",le=\"0.1\"} 1\n"
                     "feedloop_handle_seconds_bucket{stage=\"decode\",lane=\"a\",le=\"0.25\"} 2\n"
                     "feedloop_handle_seconds_bucket{stage=\"decode\",lane=\"a\",le=\"0.5\"} 3\n"
                     "feedloop_handle_seconds_bucket{stage=\"decode\",lane=\"a\",le=\"1\"} 3\n"
                     "feedloop_handle_seconds_bucket{stage=\"decode\",lane=\"a\",le=\"2.5\"} 3\n"
                     "feedloop_handle_seconds_bucket{stage=\"decode\",lane=\"a\",le=\"5\"} 4\n"
                     "feedloop_handle_seconds_bucket{stage=\"decode\",lane=\"a\",le=\"10\"} 4\n"
                     "feedloop_handle_seconds_bucket{stage=\"decode\",lane=\"a\",le=\"+Inf\"} 5\n"
                     "feedloop_handle_seconds_sum{stage=\"decode\",lane=\"a\"} 19.750244140625\n"
                     "feedloop_handle_seconds_count{stage=\"decode\",lane=\"a\"} 5\n"
                     "feedloop_handle_seconds_bucket{stage=\"emit\",le=\"0.0005\"} 0\n"
                     "feedloop_handle_seconds_bucket{stage=\"emit\",le=\"0.001\"} 1\n"
                     "feedloop_handle_seconds_bucket{stage=\"emit\",le=\"0.0025\"} 1\n"
                     "feedloop_handle_seconds_bucket{stage=\"emit\",le=\"0.005\"} 1\n"
                     "feedloop_handle_seconds_bucket{stage=\"emit\",le=\"0.01\"} 1\n"
                     "feedloop_handle_seconds_bucket{stage=\"emit\",le=\"0.025\"} 1\n"
                     "feedloop_handle_seconds_bucket{stage=\"emit\",le=\"0.05\"} 1\n"
                     "feedloop_handle_seconds_bucket{stage=\"emit\",le=\"0.1\"} 1\n"
                     "feedloop_handle_seconds_bucket{stage=\"emit\",le=\"0.25\"} 1\n"
                     "feedloop_handle_seconds_bucket{stage=\"emit\",le=\"0.5\"} 1\n"
                     "feedloop_handle_seconds_bucket{stage=\"emit\",le=\"1\"} 1\n"
                     "feedloop_handle_seconds_bucket{stage=\"emit\",le=\"2.5\"} 1\n"
                     "feedloop_handle_seconds_bucket{stage=\"emit\",le=\"5\"} 1\n"
                     "feedloop_handle_seconds_bucket{stage=\"emit\",le=\"10\"} 1\n"
                     "feedloop_handle_seconds_bucket{stage=\"emit\",le=\"+Inf\"} 1\n"
                     "feedloop_handle_seconds_sum{stage=\"emit\"} 0.001\n"
                     "feedloop_handle_seconds_count{stage=\"emit\"} 1\n");
    fl_metrics_destroy(m);
}

static void test_histogram_no_labels_and_nan(void **state) {
    (void)state;
    fl_metrics_t *m = fl_metrics_new("");
    fl_metrics_histogram_t *h = fl_metrics_histogram(m, "lat_seconds", NULL, NULL);
    assert_non_null(h);
    fl_metrics_observe(h, 11);
    fl_metrics_observe(h, NAN); /* +Inf bucket only; the sum becomes NaN */
    char *text = fl_metrics_render(m, NULL);
    assert_non_null(strstr(text, "# TYPE lat_seconds histogram\n"
                                 "lat_seconds_bucket{le=\"0.0005\"} 0\n"));
    assert_non_null(strstr(text, "lat_seconds_bucket{le=\"10\"} 0\n"
                                 "lat_seconds_bucket{le=\"+Inf\"} 2\n"
                                 "lat_seconds_sum NaN\n"
                                 "lat_seconds_count 2\n"));
    free(text);
    fl_metrics_destroy(m);
}

static void test_label_escaping(void **state) {
    (void)state;
    char labels[128] = "";
    assert_int_equal(fl_metrics_label_append(labels, sizeof(labels), "path", "C:\\dir\"x\"\nend"),
                     0);
    assert_int_equal(fl_metrics_label_append(labels, sizeof(labels), "u", "caf\xc3\xa9"), 0);
    /* A lone continuation byte and a truncated sequence become U+FFFD each. */
    assert_int_equal(fl_metrics_label_append(labels, sizeof(labels), "bad", "a\x80z\xe2\x82"), 0);
    assert_string_equal(labels, "path=\"C:\\\\dir\\\"x\\\"\\nend\",u=\"caf\xc3\xa9\","
                                "bad=\"a\xef\xbf\xbdz\xef\xbf\xbd\xef\xbf\xbd\"");

    fl_metrics_t *m = fl_metrics_new("feedloop");
    assert_int_equal(
        fl_metrics_counter_add(m, "odd_total", "Help with \\ and\nnewline.", labels, 1), 0);
    assert_render(m, "# HELP feedloop_odd_total Help with \\\\ and\\nnewline.\n"
                     "# TYPE feedloop_odd_total counter\n"
                     "feedloop_odd_total{path=\"C:\\\\dir\\\"x\\\"\\nend\",u=\"caf\xc3\xa9\","
                     "bad=\"a\xef\xbf\xbdz\xef\xbf\xbd\xef\xbf\xbd\"} 1\n");
    fl_metrics_destroy(m);

    /* Too small: rejected, buffer unchanged. */
    char small[16] = "a=\"b\"";
    assert_int_equal(fl_metrics_label_append(small, sizeof(small), "key", "0123456789"), FL_EINVAL);
    assert_string_equal(small, "a=\"b\"");
    assert_int_equal(fl_metrics_label_append(small, sizeof(small), "key", "01"), 0);
    assert_string_equal(small, "a=\"b\",key=\"01\"");
    /* Exactly full (15 chars + NUL) fits; one more does not. */
    char exact[16] = "";
    assert_int_equal(fl_metrics_label_append(exact, sizeof(exact), "k", "0123456789a"), 0);
    assert_int_equal(strlen(exact), 15);
    exact[0] = '\0';
    assert_int_equal(fl_metrics_label_append(exact, sizeof(exact), "k", "0123456789ab"), FL_EINVAL);
    assert_string_equal(exact, "");

    char buf[64] = "";
    assert_int_equal(fl_metrics_label_append(buf, sizeof(buf), "bad-key", "v"), FL_EINVAL);
    assert_int_equal(fl_metrics_label_append(buf, sizeof(buf), "__name", "v"), FL_EINVAL);
    assert_int_equal(fl_metrics_label_append(buf, sizeof(buf), "", "v"), FL_EINVAL);
    assert_int_equal(fl_metrics_label_append(buf, sizeof(buf), "k", NULL), FL_EINVAL);
    assert_string_equal(buf, "");
}

static void test_invalid_input(void **state) {
    (void)state;
    fl_metrics_t *m = fl_metrics_new("feedloop");
    static const char *const bad_labels[] = {
        "type=ci",               /* unquoted */
        "type=\"a\"b\"",         /* unescaped quote */
        "type=\"a\\tb\"",        /* escape the format does not have */
        "type=\"a\nb\"",         /* raw newline */
        "type=\"a",              /* unterminated */
        "type=\"a\",",           /* trailing comma */
        "type=\"a\",type=\"b\"", /* repeated name */
        "__name__=\"x\"",        /* reserved */
        "9x=\"a\"",              /* bad name */
        "type =\"a\"",           /* space */
        "type=\"\xc3\x28\"",     /* invalid UTF-8 */
        "type=\"\xed\xa0\x80\"", /* surrogate */
        "type=\"\xc0\xaf\"",     /* overlong */
        ",type=\"a\"",           /* leading comma */
    };
    for (size_t i = 0; i < sizeof(bad_labels) / sizeof(bad_labels[0]); i++) {
        assert_int_equal(fl_metrics_counter_add(m, "c_total", NULL, bad_labels[i], 1), FL_EINVAL);
        assert_null(fl_metrics_gauge(m, "g", NULL, bad_labels[i]));
    }
    assert_int_equal(fl_metrics_counter_add(m, "bad-name", NULL, NULL, 1), FL_EINVAL);
    assert_int_equal(fl_metrics_counter_add(m, "", NULL, NULL, 1), FL_EINVAL);
    assert_int_equal(fl_metrics_counter_add(m, NULL, NULL, NULL, 1), FL_EINVAL);
    assert_int_equal(fl_metrics_counter_add(NULL, "x", NULL, NULL, 1), FL_EINVAL);
    assert_int_equal(fl_metrics_histogram_observe(m, "h", NULL, "le=\"1\"", 1), FL_EINVAL);
    assert_render(m, "");

    /* A name keeps its first type; counters only go up. */
    assert_int_equal(fl_metrics_counter_add(m, "c_total", NULL, "k=\"a\"", 1), 0);
    assert_int_equal(fl_metrics_gauge_set(m, "c_total", NULL, "k=\"a\"", 1), FL_EINVAL);
    assert_int_equal(fl_metrics_gauge_set(m, "c_total", NULL, "k=\"b\"", 1), FL_EINVAL);
    assert_int_equal(fl_metrics_histogram_observe(m, "c_total", NULL, NULL, 1), FL_EINVAL);
    assert_int_equal(fl_metrics_counter_add(m, "c_total", NULL, "k=\"a\"", -1), FL_EINVAL);
    assert_int_equal(fl_metrics_counter_add(m, "c_total", NULL, "k=\"a\"", NAN), FL_EINVAL);
    fl_metrics_counter_t *c = fl_metrics_counter(m, "c_total", NULL, "k=\"a\"");
    fl_metrics_inc(c, -5);
    fl_metrics_inc(c, NAN);
    fl_metrics_inc(NULL, 1);
    fl_metrics_set(NULL, 1);
    fl_metrics_add(NULL, 1);
    fl_metrics_observe(NULL, 1);
    /* Valid escapes and multi-byte UTF-8 are accepted as given. */
    assert_int_equal(fl_metrics_gauge_set(m, "g", NULL, "a=\"\\\\\\\"\\n\",b=\"\xe2\x82\xac\"", 7),
                     0);
    assert_render(m, "# TYPE feedloop_c_total counter\n"
                     "feedloop_c_total{k=\"a\"} 1\n"
                     "# TYPE feedloop_g gauge\n"
                     "feedloop_g{a=\"\\\\\\\"\\n\",b=\"\xe2\x82\xac\"} 7\n");
    fl_metrics_destroy(m);
}

static void test_handles(void **state) {
    (void)state;
    fl_metrics_t *m = fl_metrics_new("feedloop");
    fl_metrics_counter_t *c1 = fl_metrics_counter(m, "ev_total", "Events.", NULL);
    fl_metrics_counter_t *c2 = fl_metrics_counter(m, "ev_total", NULL, "");
    assert_non_null(c1);
    assert_ptr_equal(c1, c2);
    fl_metrics_counter_t *c3 = fl_metrics_counter(m, "ev_total", NULL, "k=\"x\"");
    assert_ptr_not_equal(c1, c3);
    fl_metrics_inc(c1, 1);
    assert_int_equal(fl_metrics_counter_add(m, "ev_total", NULL, NULL, 1), 0);
    fl_metrics_inc(c3, 4);
    fl_metrics_gauge_t *g = fl_metrics_gauge(m, "up", NULL, NULL);
    fl_metrics_set(g, 1);
    fl_metrics_add(g, 0.5);
    /* Same name + labels in another family must not collide ("ab","" vs "a","b"-like keys). */
    assert_int_equal(fl_metrics_gauge_set(m, "ev", NULL, "_total=\"\"", 9), 0);
    assert_render(m, "# HELP feedloop_ev_total Events.\n"
                     "# TYPE feedloop_ev_total counter\n"
                     "feedloop_ev_total 2\n"
                     "feedloop_ev_total{k=\"x\"} 4\n"
                     "# TYPE feedloop_up gauge\n"
                     "feedloop_up 1.5\n"
                     "# TYPE feedloop_ev gauge\n"
                     "feedloop_ev{_total=\"\"} 9\n");
    fl_metrics_destroy(m);
}

/* Many families and label sets: every series is found again (hash table growth) and rendered
 * once, grouped under its family. */
static void test_many_families(void **state) {
    (void)state;
    enum { NFAM = 300, NLAB = 40 };
    fl_metrics_t *m = fl_metrics_new("feedloop");
    char name[64], labels[64];
    for (int round = 0; round < 3; round++) {
        for (int f = 0; f < NFAM; f++) {
            for (int l = 0; l < NLAB; l++) {
                snprintf(name, sizeof(name), "fam%d_total", f);
                snprintf(labels, sizeof(labels), "shard=\"%d\"", l);
                assert_int_equal(fl_metrics_counter_add(m, name, "Family.", labels, f + l), 0);
            }
        }
    }
    size_t len = 0;
    char *text = fl_metrics_render(m, &len);
    assert_int_equal(strlen(text), len);
    size_t lines = 0, helps = 0;
    for (const char *p = text; *p; p++)
        lines += *p == '\n';
    for (const char *p = text; (p = strstr(p, "# HELP ")) != NULL; p++)
        helps++;
    assert_int_equal(helps, NFAM);
    assert_int_equal(lines, NFAM * (2 + NLAB));
    assert_non_null(strstr(text, "# TYPE feedloop_fam299_total counter\n"
                                 "feedloop_fam299_total{shard=\"0\"} 897\n"
                                 "feedloop_fam299_total{shard=\"1\"} 900\n"));
    assert_non_null(strstr(text, "\nfeedloop_fam0_total{shard=\"39\"} 117\n"
                                 "# HELP feedloop_fam1_total Family.\n"));
    free(text);
    fl_metrics_destroy(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_destroy),
        cmocka_unit_test(test_counter_render),
        cmocka_unit_test(test_gauge_render_numbers),
        cmocka_unit_test(test_histogram_render),
        cmocka_unit_test(test_histogram_no_labels_and_nan),
        cmocka_unit_test(test_label_escaping),
        cmocka_unit_test(test_invalid_input),
        cmocka_unit_test(test_handles),
        cmocka_unit_test(test_many_families),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
