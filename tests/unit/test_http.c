/* Unit tests for fl_http: the pure request parser, then a real server on 127.0.0.1 (ephemeral
 * port) whose loop runs in a second thread while the test thread plays the client with plain
 * blocking sockets and asserts exact responses. The test thread touches the loop only through
 * uv_async_send; each fixture ends with uv_loop_close() == 0. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "fl_err.h"
#include "fl_http.h"
#include "fl_metrics.h"

#define BIG_BODY (1024 * 1024)

/* ---- parser, no sockets ---------------------------------------------------------------- */

static int parse(const char *s, fl_http_request_t *req) {
    return fl_http_parse_request(s, strlen(s), req);
}

static void assert_parses(const char *s, const char *method, const char *path) {
    fl_http_request_t req;
    memset(&req, 0, sizeof(req));
    assert_int_equal(parse(s, &req), 200);
    assert_string_equal(req.method, method);
    assert_int_equal(req.path_len, strlen(path));
    assert_memory_equal(req.path, path, strlen(path));
    assert_int_equal(req.head_len, strlen(s));
}

static void test_parse_valid(void **state) {
    (void)state;
    assert_parses("GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n", "GET", "/healthz");
    assert_parses("HEAD /metrics HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n", "HEAD", "/metrics");
    assert_parses("GET /metrics?name[]=x&y HTTP/1.1\r\nhOsT: a\r\n\r\n", "GET", "/metrics");
    assert_parses("GET /?x HTTP/1.1\r\nHost: a\r\n\r\n", "GET", "/");
    assert_parses("GET http://h:9090/readyz?q=1 HTTP/1.1\r\nHost: h\r\n\r\n", "GET", "/readyz");
    assert_parses("GET HTTPS://h HTTP/1.1\r\nHost: h\r\n\r\n", "GET", "/");
    assert_parses("GET http://h?x HTTP/1.1\r\nHost: h\r\n\r\n", "GET", "/");
    assert_parses("GET / HTTP/1.0\r\n\r\n", "GET", "/");                /* 1.0: Host optional */
    assert_parses("GET / HTTP/1.1\nHost: a\n\n", "GET", "/");           /* bare LF */
    assert_parses("\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", "GET", "/"); /* one leading CRLF */
    assert_parses("GET / HTTP/1.9\r\nHost: a\r\nX-Empty:\r\nX-Tab: a\tb \r\n\r\n", "GET", "/");
    assert_parses("GET / HTTP/1.1\r\nHost: a\r\nX-Utf8: caf\xc3\xa9\r\n\r\n", "GET", "/");

    /* Bytes after the head (a body, a pipelined request) are not part of it. */
    fl_http_request_t req;
    const char *two = "GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\n";
    assert_int_equal(parse(two, &req), 200);
    assert_int_equal(req.head_len, strlen("GET /a HTTP/1.1\r\nHost: a\r\n\r\n"));
}

static void test_parse_incremental(void **state) {
    (void)state;
    const char *s = "GET /healthz?x=1 HTTP/1.1\r\nHost: example\r\nUser-Agent: t\r\n\r\n";
    size_t n = strlen(s);
    fl_http_request_t req;
    for (size_t i = 0; i < n; i++)
        assert_int_equal(fl_http_parse_request(s, i, &req), 0);
    assert_int_equal(fl_http_parse_request(s, n, &req), 200);
}

static void test_parse_rejects(void **state) {
    (void)state;
    static const struct {
        const char *in;
        int want;
    } cases[] = {
        {"GARBAGE\r\n\r\n", 400},
        {"\x16\x03\x01\x02\x00", 400}, /* TLS ClientHello: rejected before any line end */
        {" GET / HTTP/1.1\r\n", 400},
        {"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        {"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400},
        {"GET /\r\nHost: a\r\n\r\n", 400},
        {"GET / HTTP/1.1 extra\r\n", 400},
        {"GET / HTTP/11\r\n", 400},
        {"GET / http/1.1\r\n", 400},
        {"GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        {"GET example.com:80 HTTP/1.1\r\n", 400},
        {"GET http:/// HTTP/1.1\r\n", 400},
        {"GET /a#frag HTTP/1.1\r\n", 400},
        {"GET /a\x7f HTTP/1.1\r\n", 400},
        {"GET /a\xc3\xa9 HTTP/1.1\r\n", 400},
        {"GET /\rx HTTP/1.1\r\n", 400},
        {"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400}, /* only one leading empty line */
        {"\rGET / HTTP/1.1\r\n", 400},
        {"GET / HTTP/1.1\r\n\r\n", 400}, /* 1.1 without Host */
        {"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
        {"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: a\r\n: empty-name\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: a\r\nX\x7f: a\r\n\r\n", 400},
        {"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 400}, /* method token too long */
        {"GET / HTTP/2.0\r\n", 505},
        {"GET / HTTP/0.9\r\n", 505},
        {"POST /healthz HTTP/1.1\r\n", 405}, /* known from the request line alone */
        {"DELETE / HTTP/1.1\r\nHost: a\r\n\r\n", 405},
        {"get / HTTP/1.1\r\nHost: a\r\n\r\n", 405},     /* methods are case-sensitive */
        {"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", 405}, /* method judged before target */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        fl_http_request_t req;
        int got = fl_http_parse_request(cases[i].in, strlen(cases[i].in), &req);
        if (got != cases[i].want)
            fail_msg("case %zu: got %d, want %d", i, got, cases[i].want);
    }
    /* NUL bytes inside the head. */
    fl_http_request_t req;
    const char nul_target[] = "GET /a\0b HTTP/1.1\r\nHost: a\r\n\r\n";
    assert_int_equal(fl_http_parse_request(nul_target, sizeof(nul_target) - 1, &req), 400);
    const char nul_header[] = "GET / HTTP/1.1\r\nHost: a\0\r\n\r\n";
    assert_int_equal(fl_http_parse_request(nul_header, sizeof(nul_header) - 1, &req), 400);
}

/* A head of exactly n bytes: "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: aaa...\r\n\r\n". */
static char *head_of_size(size_t n) {
    const char *pre = "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: ";
    size_t pl = strlen(pre);
    char *s = malloc(n + 1);
    assert_non_null(s);
    memcpy(s, pre, pl);
    memset(s + pl, 'a', n - pl - 4);
    memcpy(s + n - 4, "\r\n\r\n", 5);
    return s;
}

static void test_parse_limits(void **state) {
    (void)state;
    fl_http_request_t req;
    char *ok = head_of_size(FL_HTTP_MAX_HEAD);
    assert_int_equal(fl_http_parse_request(ok, FL_HTTP_MAX_HEAD, &req), 200);
    assert_int_equal(req.head_len, FL_HTTP_MAX_HEAD);
    free(ok);
    char *big = head_of_size(FL_HTTP_MAX_HEAD + 1);
    assert_int_equal(fl_http_parse_request(big, FL_HTTP_MAX_HEAD, &req), 431);
    assert_int_equal(fl_http_parse_request(big, FL_HTTP_MAX_HEAD + 1, &req), 431);
    assert_int_equal(fl_http_parse_request(big, FL_HTTP_MAX_HEAD - 1, &req), 0);
    free(big);
}

/* ---- server fixture -------------------------------------------------------------------- */

typedef struct {
    unsigned idle_ms;
    int max_conns;
} srv_cfg_t;

typedef struct {
    uv_loop_t loop;
    uv_async_t stop_async;
    uv_thread_t thread;
    fl_http_t *http;
    fl_metrics_t *metrics;
    int port;
    bool stopped;
} srv_t;

static char *dup_mem(const char *s, size_t n) {
    char *p = malloc(n ? n : 1);
    assert_non_null(p);
    memcpy(p, s, n);
    return p;
}

/* Runs on the loop thread. */
static void handler(void *opaque, const char *method, const char *path, fl_http_response_t *resp) {
    srv_t *srv = opaque;
    (void)method;
    if (strcmp(path, "/healthz") == 0) {
        resp->status = 200;
        resp->body = dup_mem("ok", 2);
        resp->body_len = 2;
    } else if (strcmp(path, "/readyz") == 0) {
        resp->status = 503;
        resp->body = dup_mem("not ready\n", 10);
        resp->body_len = 10;
    } else if (strcmp(path, "/metrics") == 0) {
        resp->status = 200;
        resp->content_type = FL_METRICS_CONTENT_TYPE;
        resp->body = fl_metrics_render(srv->metrics, &resp->body_len);
    } else if (strcmp(path, "/big") == 0) {
        resp->status = 200;
        resp->body = malloc(BIG_BODY);
        memset(resp->body, 'x', BIG_BODY);
        resp->body_len = BIG_BODY;
    } else if (strcmp(path, "/bad") == 0) {
        resp->status = 42; /* not a status: the server answers 500 */
        resp->body = dup_mem("x", 1);
        resp->body_len = 1;
    } else if (strcmp(path, "/nocontent") == 0) {
        resp->status = 204;
        resp->body = dup_mem("dropped", 7);
        resp->body_len = 7;
    } else if (strcmp(path, "/quit") == 0) {
        fl_http_stop(srv->http);
        srv->http = NULL;
    } else {
        resp->status = 404;
        resp->body = dup_mem("not found\n", 10);
        resp->body_len = 10;
    }
}

static void on_stop_async(uv_async_t *async) {
    srv_t *srv = async->data;
    fl_http_stop(srv->http);
    srv->http = NULL;
    uv_close((uv_handle_t *)async, NULL);
}

static void loop_thread(void *arg) {
    srv_t *srv = arg;
    uv_run(&srv->loop, UV_RUN_DEFAULT);
}

static int srv_setup(void **state) {
    const srv_cfg_t *cfg = *state; /* prestate, or NULL for defaults */
    srv_t *srv = calloc(1, sizeof(*srv));
    assert_non_null(srv);
    assert_int_equal(uv_loop_init(&srv->loop), 0);
    srv->metrics = fl_metrics_new("feedloop");
    assert_int_equal(fl_metrics_counter_add(srv->metrics, "events_total", "Events consumed.",
                                            "type=\"ci_report\"", 3),
                     0);
    assert_int_equal(fl_metrics_gauge_set(srv->metrics, "up", NULL, NULL, 1), 0);
    fl_error_t err = {0};
    assert_int_equal(fl_http_start(&srv->loop, "127.0.0.1", 0, handler, srv, &srv->http, &err), 0);
    if (cfg != NULL) {
        fl_http_set_idle_timeout_ms(srv->http, cfg->idle_ms);
        fl_http_set_max_connections(srv->http, cfg->max_conns);
    }
    srv->port = fl_http_port(srv->http);
    assert_true(srv->port > 0);
    assert_int_equal(uv_async_init(&srv->loop, &srv->stop_async, on_stop_async), 0);
    srv->stop_async.data = srv;
    assert_int_equal(uv_thread_create(&srv->thread, loop_thread, srv), 0);
    *state = srv;
    return 0;
}

/* Stop the server from its own thread, wait for the loop to finish, and check that nothing was
 * left open. */
static void srv_stop(srv_t *srv) {
    if (srv->stopped)
        return;
    srv->stopped = true;
    assert_int_equal(uv_async_send(&srv->stop_async), 0);
    assert_int_equal(uv_thread_join(&srv->thread), 0);
    assert_int_equal(uv_loop_close(&srv->loop), 0);
}

static int srv_teardown(void **state) {
    srv_t *srv = *state;
    srv_stop(srv);
    fl_metrics_destroy(srv->metrics);
    free(srv);
    return 0;
}

/* ---- blocking client ------------------------------------------------------------------- */

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int client_connect(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct timeval tv = {5, 0}; /* no test may hang on a broken server */
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)), 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    return fd;
}

static void client_send(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        assert_true(w > 0);
        p += w;
        n -= (size_t)w;
    }
}

/* Read until EOF (or error / receive timeout); returns a malloc'd NUL-terminated copy. */
static char *client_read_all(int fd, size_t *len, int *last_errno) {
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    *last_errno = 0;
    for (;;) {
        if (cap - n < 4096) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        ssize_t r = recv(fd, buf + n, cap - n - 1, 0);
        if (r == 0)
            break;
        if (r < 0) {
            *last_errno = errno;
            break;
        }
        n += (size_t)r;
    }
    buf[n] = '\0';
    if (len != NULL)
        *len = n;
    return buf;
}

/* One request on a fresh connection; the whole response until the server closes. */
static char *exchange(const srv_t *srv, const char *raw, size_t raw_len, size_t *len) {
    int fd = client_connect(srv->port);
    client_send(fd, raw, raw_len);
    int e = 0;
    char *resp = client_read_all(fd, len, &e);
    assert_int_equal(e, 0); /* a clean EOF, not a reset or a timeout */
    close(fd);
    return resp;
}

static void assert_exchange(const srv_t *srv, const char *raw, const char *want) {
    char *got = exchange(srv, raw, strlen(raw), NULL);
    assert_string_equal(got, want);
    free(got);
}

/* Close with RST instead of FIN. */
static void client_reset(int fd) {
    struct linger lg = {1, 0};
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
    close(fd);
}

#define CT "Content-Type: text/plain; charset=utf-8\r\n"

/* ---- server tests ---------------------------------------------------------------------- */

static void test_routes(void **state) {
    srv_t *srv = *state;
    assert_exchange(srv, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n",
                    "HTTP/1.1 200 OK\r\n" CT "Content-Length: 2\r\nConnection: close\r\n\r\nok");
    assert_exchange(srv, "GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n",
                    "HTTP/1.1 503 Service Unavailable\r\n" CT
                    "Content-Length: 10\r\nConnection: close\r\n\r\nnot ready\n");
    assert_exchange(srv, "GET /nope HTTP/1.1\r\nHost: t\r\n\r\n",
                    "HTTP/1.1 404 Not Found\r\n" CT
                    "Content-Length: 10\r\nConnection: close\r\n\r\nnot found\n");
    /* The query string is stripped before the handler sees the path. */
    assert_exchange(srv, "GET /healthz?verbose=1&x HTTP/1.1\r\nHost: t\r\n\r\n",
                    "HTTP/1.1 200 OK\r\n" CT "Content-Length: 2\r\nConnection: close\r\n\r\nok");
    /* HEAD: the GET head, Content-Length included, and no body. */
    assert_exchange(srv, "HEAD /healthz HTTP/1.1\r\nHost: t\r\n\r\n",
                    "HTTP/1.1 200 OK\r\n" CT "Content-Length: 2\r\nConnection: close\r\n\r\n");
    assert_exchange(srv, "GET /healthz HTTP/1.0\r\n\r\n",
                    "HTTP/1.1 200 OK\r\n" CT "Content-Length: 2\r\nConnection: close\r\n\r\nok");
    assert_exchange(srv, "GET http://t/healthz HTTP/1.1\nHost: t\n\n",
                    "HTTP/1.1 200 OK\r\n" CT "Content-Length: 2\r\nConnection: close\r\n\r\nok");
}

static void test_metrics_endpoint(void **state) {
    srv_t *srv = *state;
    assert_exchange(srv, "GET /metrics HTTP/1.1\r\nHost: t\r\nAccept: text/plain\r\n\r\n",
                    "HTTP/1.1 200 OK\r\n"
                    "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
                    "Content-Length: 164\r\n"
                    "Connection: close\r\n"
                    "\r\n"
                    "# HELP feedloop_events_total Events consumed.\n"
                    "# TYPE feedloop_events_total counter\n"
                    "feedloop_events_total{type=\"ci_report\"} 3\n"
                    "# TYPE feedloop_up gauge\n"
                    "feedloop_up 1\n");
}

static void test_big_body(void **state) {
    srv_t *srv = *state;
    const char *req = "GET /big HTTP/1.1\r\nHost: t\r\n\r\n";
    size_t len = 0;
    char *resp = exchange(srv, req, strlen(req), &len);
    const char *head =
        "HTTP/1.1 200 OK\r\n" CT "Content-Length: 1048576\r\nConnection: close\r\n\r\n";
    assert_int_equal(len, strlen(head) + BIG_BODY);
    assert_memory_equal(resp, head, strlen(head));
    for (size_t i = strlen(head); i < len; i++)
        if (resp[i] != 'x')
            fail_msg("byte %zu", i);
    free(resp);
}

static void test_handler_misuse(void **state) {
    srv_t *srv = *state;
    assert_exchange(srv, "GET /bad HTTP/1.1\r\nHost: t\r\n\r\n",
                    "HTTP/1.1 500 Internal Server Error\r\n" CT
                    "Content-Length: 22\r\nConnection: close\r\n\r\nInternal Server Error\n");
    assert_exchange(srv, "GET /nocontent HTTP/1.1\r\nHost: t\r\n\r\n",
                    "HTTP/1.1 204 No Content\r\n" CT "Connection: close\r\n\r\n");
}

static void test_bad_request_line(void **state) {
    srv_t *srv = *state;
    const char *want = "HTTP/1.1 400 Bad Request\r\n" CT
                       "Content-Length: 12\r\nConnection: close\r\n\r\nBad Request\n";
    assert_exchange(srv, "GARBAGE\r\n\r\n", want);
    assert_exchange(srv, "GET /a b HTTP/1.1\r\nHost: t\r\n\r\n", want);
    assert_exchange(srv, "GET / HTTP/1.1\r\n\r\n", want); /* no Host */
    assert_exchange(srv, "GET / HTTP/1.1\r\nHost: t\r\n folded\r\n\r\n", want);
    /* Binary noise is answered at once, without a line end and long before any timeout. */
    double t0 = now_ms();
    assert_exchange(srv, "\x16\x03\x01\x02", want);
    assert_true(now_ms() - t0 < 2000);
    assert_exchange(srv, "GET / HTTP/2.0\r\nHost: t\r\n\r\n",
                    "HTTP/1.1 505 HTTP Version Not Supported\r\n" CT
                    "Content-Length: 27\r\nConnection: close\r\n\r\nHTTP Version Not Supported\n");
}

static void test_oversized_headers(void **state) {
    srv_t *srv = *state;
    /* More than the limit (and more than one read's worth): 431, and a clean close even though
     * the client is still sending when the server answers. */
    char *big = head_of_size(FL_HTTP_MAX_HEAD * 4);
    char *resp = exchange(srv, big, FL_HTTP_MAX_HEAD * 4, NULL);
    assert_string_equal(resp, "HTTP/1.1 431 Request Header Fields Too Large\r\n" CT
                              "Content-Length: 32\r\nConnection: close\r\n\r\n"
                              "Request Header Fields Too Large\n");
    free(resp);
    free(big);
    /* Exactly the limit is fine. */
    char *ok = head_of_size(FL_HTTP_MAX_HEAD);
    resp = exchange(srv, ok, FL_HTTP_MAX_HEAD, NULL);
    assert_string_equal(resp, "HTTP/1.1 200 OK\r\n" CT
                              "Content-Length: 2\r\nConnection: close\r\n\r\nok");
    free(resp);
    free(ok);
}

static void test_method_not_allowed(void **state) {
    srv_t *srv = *state;
    const char *want = "HTTP/1.1 405 Method Not Allowed\r\n" CT
                       "Content-Length: 19\r\nAllow: GET, HEAD\r\nConnection: close\r\n\r\n"
                       "Method Not Allowed\n";
    assert_exchange(srv, "POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
                    want);
    assert_exchange(srv, "DELETE /healthz HTTP/1.1\r\nHost: t\r\n\r\n", want);
    assert_exchange(srv, "OPTIONS /healthz HTTP/1.1\r\nHost: t\r\n\r\n", want);
}

static const srv_cfg_t fast_idle = {.idle_ms = 200, .max_conns = 64};

static void test_idle_client_closed(void **state) {
    srv_t *srv = *state;
    int fd = client_connect(srv->port);
    double t0 = now_ms();
    char c;
    ssize_t r = recv(fd, &c, 1, 0);
    double dt = now_ms() - t0;
    assert_int_equal(r, 0); /* EOF from the server, not our 5 s receive timeout */
    assert_true(dt >= 150 && dt < 3000);
    close(fd);

    /* Half a request, then silence: closed too. */
    fd = client_connect(srv->port);
    client_send(fd, "GET /healthz HTTP/1.1\r\nHo", 25);
    assert_int_equal(recv(fd, &c, 1, 0), 0);
    close(fd);
}

/* Activity does not extend the deadline: a byte every 40 ms still gets cut off. */
static void test_slow_client_closed(void **state) {
    srv_t *srv = *state;
    int fd = client_connect(srv->port);
    const char *req = "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    double t0 = now_ms();
    bool closed = false;
    for (size_t i = 0; req[i] != '\0' && !closed; i++) {
        if (send(fd, &req[i], 1, MSG_NOSIGNAL) < 0)
            break; /* reset by the server */
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 40) > 0) {
            char c;
            closed = recv(fd, &c, 1, 0) <= 0;
        }
    }
    double dt = now_ms() - t0;
    assert_true(closed);
    assert_true(dt >= 150 && dt < 3000);
    close(fd);
}

static void test_client_disconnects(void **state) {
    srv_t *srv = *state;
    /* Partial request, then FIN. */
    int fd = client_connect(srv->port);
    client_send(fd, "GET /heal", 9);
    close(fd);
    /* Partial request, then RST. */
    fd = client_connect(srv->port);
    client_send(fd, "GET /healthz HTTP/1.1\r\nHost:", 28);
    client_reset(fd);
    /* Full request, then RST before reading the answer. */
    fd = client_connect(srv->port);
    client_send(fd, "GET /big HTTP/1.1\r\nHost: t\r\n\r\n", 30);
    client_reset(fd);
    /* RST in the middle of a large response: the server's write fails. */
    fd = client_connect(srv->port);
    client_send(fd, "GET /big HTTP/1.1\r\nHost: t\r\n\r\n", 30);
    char c;
    assert_int_equal(recv(fd, &c, 1, 0), 1);
    client_reset(fd);
    /* Connect and vanish. */
    fd = client_connect(srv->port);
    client_reset(fd);
    /* The server is still fine; leaks would show under ASan at exit. */
    assert_exchange(srv, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n",
                    "HTTP/1.1 200 OK\r\n" CT "Content-Length: 2\r\nConnection: close\r\n\r\nok");
}

static const srv_cfg_t two_conns = {.idle_ms = 5000, .max_conns = 2};

static void test_max_connections(void **state) {
    srv_t *srv = *state;
    int a = client_connect(srv->port);
    int b = client_connect(srv->port);
    int c = client_connect(srv->port);
    /* The third is closed at once, long before the 5 s idle timeout. */
    double t0 = now_ms();
    char ch;
    assert_true(recv(c, &ch, 1, 0) <= 0);
    assert_true(now_ms() - t0 < 2000);
    close(c);
    /* The first two are still served. */
    client_send(a, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n", 34);
    int e = 0;
    char *resp = client_read_all(a, NULL, &e);
    assert_string_equal(resp, "HTTP/1.1 200 OK\r\n" CT
                              "Content-Length: 2\r\nConnection: close\r\n\r\nok");
    free(resp);
    close(a);
    close(b);
}

static void test_stop_with_open_connections(void **state) {
    srv_t *srv = *state;
    int idle = client_connect(srv->port);
    int partial = client_connect(srv->port);
    client_send(partial, "GET /", 5);
    int writing = client_connect(srv->port);
    client_send(writing, "GET /big HTTP/1.1\r\nHost: t\r\n\r\n", 30);
    char c;
    assert_int_equal(recv(writing, &c, 1, 0), 1); /* response under way, the rest stays queued */
    srv_stop(srv);                                /* asserts uv_loop_close() == 0 */
    int e = 0;
    char *rest = client_read_all(idle, NULL, &e);
    assert_string_equal(rest, "");
    free(rest);
    close(idle);
    close(partial);
    close(writing);
}

static void test_stop_from_handler(void **state) {
    srv_t *srv = *state;
    /* The handler stops the server: the connection closes with no response. */
    int fd = client_connect(srv->port);
    client_send(fd, "GET /quit HTTP/1.1\r\nHost: t\r\n\r\n", 31);
    int e = 0;
    size_t len = 1;
    char *resp = client_read_all(fd, &len, &e);
    assert_int_equal(len, 0);
    free(resp);
    close(fd);
    srv_stop(srv);
}

/* ---- start/stop without a fixture ------------------------------------------------------ */

static void dummy_handler(void *opaque, const char *method, const char *path,
                          fl_http_response_t *resp) {
    (void)opaque;
    (void)method;
    (void)path;
    (void)resp;
}

static void test_start_errors(void **state) {
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    fl_error_t err = {0};
    fl_http_t *http = (fl_http_t *)&err; /* must be reset to NULL on failure */

    assert_int_equal(fl_http_start(NULL, "127.0.0.1", 0, dummy_handler, NULL, &http, &err),
                     FL_EINVAL);
    assert_null(http);
    assert_int_equal(fl_http_start(&loop, "127.0.0.1", 0, NULL, NULL, &http, &err), FL_EINVAL);
    assert_int_equal(fl_http_start(&loop, "127.0.0.1", 65536, dummy_handler, NULL, &http, NULL),
                     FL_EINVAL);
    assert_int_equal(fl_http_start(&loop, "127.0.0.1", -1, dummy_handler, NULL, &http, &err),
                     FL_EINVAL);
    assert_int_equal(fl_http_start(&loop, "localhost", 0, dummy_handler, NULL, &http, &err),
                     FL_EINVAL);
    assert_int_equal(err.code, FL_EINVAL);
    assert_non_null(strstr(err.text, "localhost"));

    fl_http_t *first = NULL;
    assert_int_equal(fl_http_start(&loop, "127.0.0.1", 0, dummy_handler, NULL, &first, &err), 0);
    int port = fl_http_port(first);
    assert_true(port > 0 && port < 65536);
    memset(&err, 0, sizeof(err));
    assert_int_equal(fl_http_start(&loop, "127.0.0.1", port, dummy_handler, NULL, &http, &err),
                     FL_EIO);
    assert_null(http);
    assert_int_equal(err.code, FL_EIO);
    assert_true(err.retriable);
    assert_non_null(strstr(err.text, uv_strerror(UV_EADDRINUSE)));

    /* IPv6 loopback where the host has it. */
    fl_http_t *v6 = NULL;
    int rc = fl_http_start(&loop, "::1", 0, dummy_handler, NULL, &v6, &err);
    assert_true(rc == 0 || rc == FL_EIO);
    if (rc == 0)
        assert_true(fl_http_port(v6) > 0);

    fl_http_stop(first);
    fl_http_stop(v6);
    fl_http_stop(NULL);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
}

#define SRV_TEST(f) cmocka_unit_test_setup_teardown(f, srv_setup, srv_teardown)
#define SRV_TEST_CFG(f, cfg)                                                                       \
    cmocka_unit_test_prestate_setup_teardown(f, srv_setup, srv_teardown, (void *)&(cfg))

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_valid),
        cmocka_unit_test(test_parse_incremental),
        cmocka_unit_test(test_parse_rejects),
        cmocka_unit_test(test_parse_limits),
        cmocka_unit_test(test_start_errors),
        SRV_TEST(test_routes),
        SRV_TEST(test_metrics_endpoint),
        SRV_TEST(test_big_body),
        SRV_TEST(test_handler_misuse),
        SRV_TEST(test_bad_request_line),
        SRV_TEST(test_oversized_headers),
        SRV_TEST(test_method_not_allowed),
        SRV_TEST_CFG(test_idle_client_closed, fast_idle),
        SRV_TEST_CFG(test_slow_client_closed, fast_idle),
        SRV_TEST(test_client_disconnects),
        SRV_TEST_CFG(test_max_connections, two_conns),
        SRV_TEST(test_stop_with_open_connections),
        SRV_TEST(test_stop_from_handler),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
