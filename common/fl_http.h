/* fl_http: a minimal HTTP/1.1 server on libuv for /healthz, /readyz and /metrics.
 *
 * Threads: everything runs on the thread that runs the loop, handler included; no function here
 * may be called from another thread.
 *
 * Each connection carries one GET or HEAD request and is closed after the response
 * ("Connection: close"; Content-Length always set). Requests come from outside and are checked
 * by fl_http_parse_request before any handler runs: head larger than FL_HTTP_MAX_HEAD -> 431,
 * methods other than GET/HEAD -> 405 with "Allow: GET, HEAD", malformed request line or headers
 * (or HTTP/1.1 without exactly one Host) -> 400, HTTP major version other than 1 -> 505. A
 * client has the idle timeout to send its whole request head, and again to read the response;
 * connections beyond the limit are closed as soon as they are accepted.
 *
 * The server sets SIGPIPE to SIG_IGN when it is still at SIG_DFL: libuv writes with write(2), and
 * a client that resets its connection would otherwise kill the process. */
#ifndef FL_HTTP_H
#define FL_HTTP_H

#include <stddef.h>
#include <uv.h>

#include "fl_err.h"

#define FL_HTTP_MAX_HEAD 8192 /* request line + headers, bytes */
#define FL_HTTP_DEFAULT_IDLE_TIMEOUT_MS 5000
#define FL_HTTP_DEFAULT_MAX_CONNECTIONS 64

typedef struct fl_http fl_http_t;

/* What a handler answers. The server prefills status 404, content_type "text/plain;
 * charset=utf-8", body NULL, body_len 0. content_type must be a static string (no CR or LF).
 * body is malloc'd by the handler and owned (freed) by the server from then on, also for HEAD,
 * where it is not sent but still gives Content-Length. A status outside 200..599 becomes 500. */
typedef struct fl_http_response {
    int status;
    const char *content_type;
    char *body;
    size_t body_len;
} fl_http_response_t;

/* Called on the loop thread once per valid request. method is "GET" or "HEAD"; path is the
 * request target's path with the query string stripped, not percent-decoded, starting with '/'
 * (absolute-form targets are reduced to their path). Both are valid only during the call. */
typedef void (*fl_http_handler_cb)(void *opaque, const char *method, const char *path,
                                   fl_http_response_t *resp);

/* Listen on host:port (host a numeric IPv4 or IPv6 address, NULL for 0.0.0.0; port 0 picks an
 * ephemeral port, see fl_http_port) and serve requests through cb(opaque, ...). On success
 * *out is the server, which the caller stops with fl_http_stop. On failure returns FL_EINVAL
 * (bad argument or address) or FL_EIO (bind/listen failed, with uv_strerror text in err) and
 * *out is NULL; the half-built server is then released by its close callback, so the caller
 * must run the loop before uv_loop_close. */
int fl_http_start(uv_loop_t *loop, const char *host, int port, fl_http_handler_cb cb, void *opaque,
                  fl_http_t **out, fl_error_t *err);

/* The port the server is bound to (the ephemeral one when started with port 0). */
int fl_http_port(const fl_http_t *http);

/* Limits for connections accepted from now on (defaults above). ms and max must be > 0;
 * other values are ignored. */
void fl_http_set_idle_timeout_ms(fl_http_t *http, unsigned ms);
void fl_http_set_max_connections(fl_http_t *http, int max);

/* Close the listener and every connection (pending responses are dropped). The server is freed
 * in the last close callback, so the caller runs the loop until it is done; afterwards
 * uv_loop_close can succeed. http must not be used after this call. NULL is a no-op. */
void fl_http_stop(fl_http_t *http);

/* ---- request parsing (pure: no I/O; exposed for tests) ------------------------------------ */

typedef struct fl_http_request {
    const char *method; /* "GET" or "HEAD" (static) */
    const char *path;   /* points into the parsed buffer; not NUL-terminated */
    size_t path_len;    /* query string excluded */
    size_t head_len;    /* bytes of request line + headers + empty line */
} fl_http_request_t;

/* Parse the request head at the start of buf[0..len). Returns 0 when more bytes are needed,
 * 200 when a complete valid GET/HEAD head was found (req is filled), or the error status to
 * answer with (400, 405, 431, 505) as soon as the bytes seen prove the request bad. A head that
 * is not complete within FL_HTTP_MAX_HEAD bytes is 431. Bare LF line ends are accepted, as are
 * empty lines before the request line; header folding is not. Bodies are ignored. */
int fl_http_parse_request(const char *buf, size_t len, fl_http_request_t *req);

#endif
