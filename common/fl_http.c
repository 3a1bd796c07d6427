#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* sigaction, strncasecmp */
#endif

#include "fl_http.h"
#include "fl_mem.h"

#include "fl_log.h"

#include <arpa/inet.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define LISTEN_BACKLOG 128
#define MAX_METHOD_LEN 32
#define DEFAULT_CONTENT_TYPE "text/plain; charset=utf-8"

typedef enum {
    CONN_READING,   /* waiting for the whole request head */
    CONN_WRITING,   /* response queued */
    CONN_LINGERING, /* response sent and FIN queued; reading and discarding until EOF */
} conn_state_t;

typedef struct conn {
    fl_http_t *http;
    struct conn *prev, *next;
    uv_tcp_t tcp;
    uv_timer_t timer; /* the deadline of the current state */
    uv_write_t write_req;
    uv_shutdown_t shutdown_req;
    conn_state_t state;
    bool closing;
    int open_handles; /* freed when both tcp and timer have closed */
    int lf_seen;
    char *head; /* response head and body, owned until the write callback */
    char *body;
    size_t len;
    char buf[FL_HTTP_MAX_HEAD];
} conn_t;

struct fl_http {
    uv_loop_t *loop;
    uv_tcp_t listener;
    fl_http_handler_cb cb;
    void *opaque;
    conn_t *conns;
    int nconns;
    int max_conns;
    unsigned idle_ms;
    int port;
    bool stopping;
    bool listener_closed;
};

/* ---- request parsing (pure) ------------------------------------------------------------ */

static bool is_tchar(unsigned char c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int need_more(size_t len) {
    return len >= FL_HTTP_MAX_HEAD ? 431 : 0;
}

/* The line [p, lf) without one trailing CR. */
static const char *line_end(const char *p, const char *lf) {
    return lf > p && lf[-1] == '\r' ? lf - 1 : lf;
}

/* method SP request-target SP HTTP-version, on one line [p, e). */
static int parse_request_line(const char *p, const char *e, fl_http_request_t *req, int *minor) {
    const char *sp1 = memchr(p, ' ', (size_t)(e - p));
    if (sp1 == NULL || sp1 == p)
        return 400;
    const char *t = sp1 + 1;
    const char *sp2 = memchr(t, ' ', (size_t)(e - t));
    if (sp2 == NULL || sp2 == t)
        return 400;
    for (const char *c = t; c < sp2; c++)
        if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f || *c == '#')
            return 400;

    const char *v = sp2 + 1;
    if (e - v != 8 || memcmp(v, "HTTP/", 5) != 0 || v[5] < '0' || v[5] > '9' || v[6] != '.' ||
        v[7] < '0' || v[7] > '9')
        return 400;
    if (v[5] != '1')
        return 505;
    *minor = v[7] - '0';

    size_t ml = (size_t)(sp1 - p);
    if (ml == 3 && memcmp(p, "GET", 3) == 0)
        req->method = "GET";
    else if (ml == 4 && memcmp(p, "HEAD", 4) == 0)
        req->method = "HEAD";
    else
        return 405;

    /* origin-form "/path?query", or absolute-form "http://authority/path?query" (which a
     * server must accept) reduced to its path. */
    const char *path = t;
    if (*t != '/') {
        size_t tl = (size_t)(sp2 - t);
        if (tl > 7 && strncasecmp(t, "http://", 7) == 0)
            path = t + 7;
        else if (tl > 8 && strncasecmp(t, "https://", 8) == 0)
            path = t + 8;
        else
            return 400;
        const char *auth = path;
        while (path < sp2 && *path != '/' && *path != '?')
            path++;
        if (path == auth)
            return 400;
        if (path == sp2 || *path == '?') {
            req->path = "/";
            req->path_len = 1;
            return 200;
        }
    }
    const char *q = memchr(path, '?', (size_t)(sp2 - path));
    req->path = path;
    req->path_len = (size_t)((q != NULL ? q : sp2) - path);
    return 200;
}

/* field-name ":" OWS field-value OWS on one line [p, e); counts Host fields. */
static int parse_header(const char *p, const char *e, int *hosts) {
    const char *n = p;
    while (n < e && is_tchar((unsigned char)*n))
        n++;
    /* Also rejects obs-fold (a line starting with SP or HTAB) and space before the colon. */
    if (n == p || n == e || *n != ':')
        return 400;
    for (const char *c = n + 1; c < e; c++) {
        unsigned char u = (unsigned char)*c;
        if (u != '\t' && (u < 0x20 || u == 0x7f))
            return 400;
    }
    if (n - p == 4 && strncasecmp(p, "host", 4) == 0)
        (*hosts)++;
    return 0;
}

int fl_http_parse_request(const char *buf, size_t len, fl_http_request_t *req) {
    if (len > FL_HTTP_MAX_HEAD)
        len = FL_HTTP_MAX_HEAD;
    const char *p = buf, *end = buf + len;

    /* One empty line before the request line is tolerated (RFC 9112 section 2.2). */
    if (p < end && *p == '\r') {
        if (p + 1 == end)
            return need_more(len);
        if (p[1] != '\n')
            return 400;
        p += 2;
    } else if (p < end && *p == '\n') {
        p++;
    }

    /* Judge the method before the line is complete, so that a TLS handshake or other binary
     * noise is answered at once instead of after the timeout. */
    const char *m = p;
    while (m < end && is_tchar((unsigned char)*m))
        m++;
    if (m - p > MAX_METHOD_LEN || (m < end && (*m != ' ' || m == p)))
        return 400;

    const char *lf = memchr(p, '\n', (size_t)(end - p));
    if (lf == NULL)
        return need_more(len);
    int minor = 0;
    int rc = parse_request_line(p, line_end(p, lf), req, &minor);
    if (rc != 200)
        return rc;

    int hosts = 0;
    for (;;) {
        p = lf + 1;
        lf = memchr(p, '\n', (size_t)(end - p));
        if (lf == NULL)
            return need_more(len);
        const char *e = line_end(p, lf);
        if (e == p)
            break;
        if (parse_header(p, e, &hosts) != 0)
            return 400;
    }
    /* RFC 9112 section 3.2: an HTTP/1.1 request has exactly one Host, any request at most one. */
    if (hosts > 1 || (minor >= 1 && hosts == 0))
        return 400;
    req->head_len = (size_t)(lf + 1 - buf);
    return 200;
}

/* ---- server ---------------------------------------------------------------------------- */

static const char *reason(int status) {
    switch (status) {
    case 200:
        return "OK";
    case 204:
        return "No Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return ""; /* the reason phrase may be empty; the space before it may not */
    }
}

static void maybe_free_http(fl_http_t *http) {
    if (http->stopping && http->listener_closed && http->conns == NULL)
        free(http);
}

static void on_listener_close(uv_handle_t *handle) {
    fl_http_t *http = handle->data;
    http->listener_closed = true;
    maybe_free_http(http);
}

static void on_conn_close(uv_handle_t *handle) {
    conn_t *conn = handle->data;
    if (--conn->open_handles > 0)
        return;
    fl_http_t *http = conn->http;
    if (conn->prev != NULL)
        conn->prev->next = conn->next;
    else
        http->conns = conn->next;
    if (conn->next != NULL)
        conn->next->prev = conn->prev;
    http->nconns--;
    free(conn->head);
    free(conn->body);
    free(conn);
    maybe_free_http(http);
}

/* Idempotent. Pending write and shutdown callbacks run (with UV_ECANCELED) before the close
 * callbacks, so conn outlives them. */
static void conn_close(conn_t *conn) {
    if (conn->closing)
        return;
    conn->closing = true;
    uv_close((uv_handle_t *)&conn->timer, on_conn_close);
    uv_close((uv_handle_t *)&conn->tcp, on_conn_close);
}

static void on_timeout(uv_timer_t *timer) {
    conn_close(timer->data);
}

static void arm_timer(conn_t *conn) {
    uv_timer_start(&conn->timer, on_timeout, conn->http->idle_ms, 0);
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf) {
    conn_t *conn = handle->data;
    (void)suggested;
    if (conn->state == CONN_READING) {
        /* Never empty: a full buffer is answered (431) and reading stopped before the next
         * allocation. */
        *buf = uv_buf_init(conn->buf + conn->len, (unsigned)(sizeof(conn->buf) - conn->len));
    } else {
        *buf = uv_buf_init(conn->buf, (unsigned)sizeof(conn->buf));
    }
}

static void on_shutdown(uv_shutdown_t *req, int status) {
    if (status < 0)
        conn_close(req->data);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

static void on_write(uv_write_t *req, int status) {
    conn_t *conn = req->data;
    free(conn->head);
    free(conn->body);
    conn->head = conn->body = NULL;
    if (status < 0 || conn->closing) {
        conn_close(conn);
        return;
    }
    /* Closing now could reset the connection (and lose the response at the client) if it
     * still has bytes in flight to us, e.g. the rest of an oversized head. So send FIN and
     * drain until the client closes or the deadline passes. */
    conn->state = CONN_LINGERING;
    arm_timer(conn);
    conn->shutdown_req.data = conn;
    if (uv_shutdown(&conn->shutdown_req, (uv_stream_t *)&conn->tcp, on_shutdown) != 0 ||
        uv_read_start((uv_stream_t *)&conn->tcp, on_alloc, on_read) != 0)
        conn_close(conn);
}

/* Queue the response and take ownership of body. */
static void respond(conn_t *conn, int status, const char *ctype, char *body, size_t body_len,
                    bool send_body, bool allow) {
    bool no_length = status == 204; /* RFC 9110 section 8.6: never for 204 */
    if (no_length) {
        free(body);
        body = NULL;
        body_len = 0;
    }
    char len_hdr[48] = "";
    if (!no_length)
        snprintf(len_hdr, sizeof(len_hdr), "Content-Length: %zu\r\n", body_len);
    const char *fmt = "HTTP/1.1 %d %s\r\n%s%s%s%s%sConnection: close\r\n\r\n";
    const char *ct1 = ctype != NULL ? "Content-Type: " : "";
    const char *ct2 = ctype != NULL ? ctype : "";
    const char *ct3 = ctype != NULL ? "\r\n" : "";
    const char *al = allow ? "Allow: GET, HEAD\r\n" : "";
    int n = snprintf(NULL, 0, fmt, status, reason(status), ct1, ct2, ct3, len_hdr, al);
    conn->head = fl_mem_alloc((size_t)n + 1);
    snprintf(conn->head, (size_t)n + 1, fmt, status, reason(status), ct1, ct2, ct3, len_hdr, al);
    conn->body = body;

    uv_buf_t bufs[2];
    unsigned nbufs = 0;
    bufs[nbufs++] = uv_buf_init(conn->head, (unsigned)n);
    if (send_body && body != NULL && body_len > 0)
        bufs[nbufs++] = uv_buf_init(body, (unsigned)body_len);

    conn->state = CONN_WRITING;
    arm_timer(conn); /* the client has the same time to read the response */
    conn->write_req.data = conn;
    if (uv_write(&conn->write_req, (uv_stream_t *)&conn->tcp, bufs, nbufs, on_write) != 0) {
        free(conn->head);
        free(conn->body);
        conn->head = conn->body = NULL;
        conn_close(conn);
    }
}

static void respond_error(conn_t *conn, int status) {
    const char *r = reason(status);
    size_t n = strlen(r);
    char *body = fl_mem_alloc(n + 2);
    memcpy(body, r, n);
    memcpy(body + n, "\n", 2);
    respond(conn, status, DEFAULT_CONTENT_TYPE, body, n + 1, true, status == 405);
}

static bool valid_content_type(const char *s) {
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s == 0x7f)
            return false;
    return true;
}

static void serve(conn_t *conn, const fl_http_request_t *req) {
    fl_http_t *http = conn->http;
    char *path = fl_mem_alloc(req->path_len + 1);
    memcpy(path, req->path, req->path_len);
    path[req->path_len] = '\0';
    fl_http_response_t resp = {404, DEFAULT_CONTENT_TYPE, NULL, 0};
    http->cb(http->opaque, req->method, path, &resp);
    free(path);
    if (conn->closing) { /* the handler stopped the server */
        free(resp.body);
        return;
    }
    if (resp.status < 200 || resp.status > 599 || (resp.body == NULL && resp.body_len > 0) ||
        (resp.content_type != NULL && !valid_content_type(resp.content_type))) {
        fl_warn("http: handler for %.*s gave a bad response (status %d)", (int)req->path_len,
                req->path, resp.status);
        free(resp.body);
        respond_error(conn, 500);
        return;
    }
    respond(conn, resp.status, resp.content_type, resp.body, resp.body_len,
            strcmp(req->method, "HEAD") != 0, false);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
    conn_t *conn = stream->data;
    (void)buf;
    if (nread < 0) { /* EOF, reset, or any read error: nothing more to do for this client */
        conn_close(conn);
        return;
    }
    if (nread == 0 || conn->state != CONN_READING)
        return; /* lingering: discard */

    size_t prev = conn->len;
    conn->len += (size_t)nread;
    /* Parse only when the answer may have changed: first bytes (early rejection), the first
     * line ends, a blank line may have ended the head, or the buffer is full. Parsing on every
     * read would be quadratic for a client sending a byte at a time. */
    bool parse = prev == 0 || conn->len == sizeof(conn->buf);
    for (size_t i = prev; i < conn->len; i++) {
        if (conn->buf[i] != '\n')
            continue;
        if (conn->lf_seen++ < 2 || (i >= 1 && conn->buf[i - 1] == '\n') ||
            (i >= 2 && conn->buf[i - 1] == '\r' && conn->buf[i - 2] == '\n'))
            parse = true;
    }
    if (!parse)
        return;
    fl_http_request_t req;
    int status = fl_http_parse_request(conn->buf, conn->len, &req);
    if (status == 0)
        return;
    uv_read_stop(stream);
    if (status == 200)
        serve(conn, &req);
    else
        respond_error(conn, status);
}

static void on_reject_close(uv_handle_t *handle) {
    free(handle);
}

static void on_connection(uv_stream_t *server, int status) {
    fl_http_t *http = server->data;
    if (status < 0) {
        fl_warn("http: accept: %s", uv_strerror(status));
        return;
    }
    if (http->nconns >= http->max_conns) {
        /* Accept and close: leaving it queued would stall the listener (libuv stops polling
         * it until the pending connection is accepted). */
        uv_tcp_t *tcp = fl_mem_alloc(sizeof(*tcp));
        if (uv_tcp_init(http->loop, tcp) != 0) {
            free(tcp);
            return;
        }
        uv_accept(server, (uv_stream_t *)tcp);
        uv_close((uv_handle_t *)tcp, on_reject_close);
        return;
    }

    conn_t *conn = fl_mem_calloc(1, sizeof(*conn));
    if (uv_tcp_init(http->loop, &conn->tcp) != 0) {
        free(conn);
        return;
    }
    uv_timer_init(http->loop, &conn->timer);
    conn->http = http;
    conn->tcp.data = conn;
    conn->timer.data = conn;
    conn->open_handles = 2;
    conn->state = CONN_READING;
    conn->next = http->conns;
    if (http->conns != NULL)
        http->conns->prev = conn;
    http->conns = conn;
    http->nconns++;

    int rc = uv_accept(server, (uv_stream_t *)&conn->tcp);
    if (rc == 0)
        rc = uv_read_start((uv_stream_t *)&conn->tcp, on_alloc, on_read);
    if (rc != 0) {
        fl_warn("http: accept: %s", uv_strerror(rc));
        conn_close(conn);
        return;
    }
    /* A deadline for the whole head, not reset on each read: a client dripping a byte at a time
     * gets no more time than one that sends nothing. */
    arm_timer(conn);
}

static void ignore_sigpipe(void) {
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) != 0 || (sa.sa_flags & SA_SIGINFO) ||
        sa.sa_handler != SIG_DFL)
        return;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_IGN;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGPIPE, &sa, NULL);
}

int fl_http_start(uv_loop_t *loop, const char *host, int port, fl_http_handler_cb cb, void *opaque,
                  fl_http_t **out, fl_error_t *err) {
    struct sockaddr_storage addr;
    fl_http_t *http = NULL;
    const char *what = NULL;
    int alen = (int)sizeof(addr);
    int rc = 0;

    if (out != NULL)
        *out = NULL;
    if (loop == NULL || cb == NULL || out == NULL || port < 0 || port > 65535)
        return fl_error_set(err, FL_EINVAL, false, "http: invalid argument");
    if (host == NULL)
        host = "0.0.0.0";
    memset(&addr, 0, sizeof(addr));
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&addr) != 0 &&
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)&addr) != 0)
        return fl_error_set(err, FL_EINVAL, false, "http: %s is not a numeric IP address", host);

    ignore_sigpipe();
    http = fl_mem_calloc(1, sizeof(*http));
    http->loop = loop;
    http->cb = cb;
    http->opaque = opaque;
    http->max_conns = FL_HTTP_DEFAULT_MAX_CONNECTIONS;
    http->idle_ms = FL_HTTP_DEFAULT_IDLE_TIMEOUT_MS;
    rc = uv_tcp_init(loop, &http->listener);
    if (rc != 0) {
        free(http); /* no handle to close yet */
        return fl_error_set(err, FL_EIO, false, "http: tcp init: %s", uv_strerror(rc));
    }
    http->listener.data = http;

    what = "bind";
    rc = uv_tcp_bind(&http->listener, (const struct sockaddr *)&addr, 0);
    if (rc != 0)
        goto out;
    what = "listen";
    rc = uv_listen((uv_stream_t *)&http->listener, LISTEN_BACKLOG, on_connection);
    if (rc != 0)
        goto out;
    what = "getsockname";
    rc = uv_tcp_getsockname(&http->listener, (struct sockaddr *)&addr, &alen);
    if (rc != 0)
        goto out;
    http->port = ntohs(addr.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&addr)->sin6_port
                                                  : ((struct sockaddr_in *)&addr)->sin_port);
out:
    if (rc != 0) {
        http->stopping = true;
        uv_close((uv_handle_t *)&http->listener, on_listener_close);
        return fl_error_set(err, FL_EIO, rc == UV_EADDRINUSE, "http: %s %s:%d: %s", what, host,
                            port, uv_strerror(rc));
    }
    *out = http;
    return 0;
}

int fl_http_port(const fl_http_t *http) {
    return http != NULL ? http->port : -1;
}

void fl_http_set_idle_timeout_ms(fl_http_t *http, unsigned ms) {
    if (http != NULL && ms > 0)
        http->idle_ms = ms;
}

void fl_http_set_max_connections(fl_http_t *http, int max) {
    if (http != NULL && max > 0)
        http->max_conns = max;
}

void fl_http_stop(fl_http_t *http) {
    if (http == NULL || http->stopping)
        return;
    http->stopping = true;
    uv_close((uv_handle_t *)&http->listener, on_listener_close);
    for (conn_t *conn = http->conns; conn != NULL; conn = conn->next)
        conn_close(conn);
}
