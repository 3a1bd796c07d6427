/* fl_id: SHA-1 (for Redis script SHAs) and deterministic event ids.
 *
 * An output's ce_id is a name-based UUID (RFC 4122 version 5 layout) of the input's id and the
 * step that produced the output, so a redelivered input re-emits the same ids. Pure, no I/O. */
#ifndef FL_ID_H
#define FL_ID_H

#include <stddef.h>
#include <stdint.h>

#define FL_ID_LEN 37 /* 36 chars + NUL */

/* SHA-1 of buf into out[20]. */
void fl_sha1(const void *buf, size_t len, uint8_t out[20]);

/* Lower-case hex SHA-1 of a NUL-terminated string into hex[41]. */
void fl_sha1_hex(const char *s, char hex[41]);

/* Deterministic id of (input_id, step) into out[FL_ID_LEN]. */
void fl_id_derive(const char *input_id, const char *step, char out[FL_ID_LEN]);

/* W3C traceparent for a trace derived from input_id: "00-<32 hex>-<16 hex>-01" (56 chars + NUL).
 * When parent is a valid traceparent its trace id is kept and a new span id is derived. */
void fl_id_traceparent(const char *parent, const char *input_id, const char *step, char out[56]);

#endif
