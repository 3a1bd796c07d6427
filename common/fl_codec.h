/* fl_codec: Avro single-object encoding of feedloop events, schema registry, schema resolution,
 * JSON conversion.
 *
 * Wire format (Avro spec "Single object encoding"): 0xC3 0x01, the 8-byte little-endian
 * CRC-64-AVRO fingerprint of the writer schema's Parsing Canonical Form, then the Avro binary
 * datum.
 *
 * Every schema in schemas/<type>.avsc (the current reader schema of each event type) and every
 * older version kept in schemas/history/ (writer schemas that may still be on a topic) is compiled
 * into the binary and parsed once by fl_codec_new(). A datum written with an older version is
 * resolved into the current reader schema by feedloop's own resolver (fields added with defaults
 * take the default, removed fields are skipped, promotions int->long->float->double), not avro-c's
 * resolved readers.
 *
 * Threads: an fl_codec_t is used from one thread (it reuses its values and buffers). */
#ifndef FL_CODEC_H
#define FL_CODEC_H

#include <avro.h>
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "fl_err.h"
#include "fl_schemas.h"

#define FL_CODEC_MAGIC0 0xC3
#define FL_CODEC_MAGIC1 0x01
#define FL_CODEC_HEADER_LEN 10

/* ---- schema algorithms (pure, usable on their own) ---- */

/* CRC-64-AVRO (Rabin) fingerprint of bytes, as the Avro spec defines it. */
uint64_t fl_crc64_avro(const void *buf, size_t len);

/* Parsing Canonical Form of a schema given as JSON text. On success *out is a malloc'd
 * NUL-terminated string the caller frees. Returns 0 or FL_ESCHEMA/FL_EPARSE with err filled. */
int fl_schema_canonical_form(const char *schema_json, char **out, fl_error_t *err);

/* ---- event types ---- */

typedef struct fl_codec fl_codec_t;
typedef struct fl_event_type fl_event_type_t;

/* Parse every compiled-in schema once. Returns 0 or an FL_E* code with err filled. */
int fl_codec_new(fl_codec_t **out, fl_error_t *err);

/* Like fl_codec_new() over the n given sources instead of the compiled-in table (tests, schema
 * checks). Fails with FL_ESCHEMA when a schema does not parse, a default does not fit its field,
 * a history version has no current schema or cannot be resolved into it, or two types share a
 * schema. srcs is only read during the call. */
int fl_codec_new_from(const fl_schema_src_t *srcs, size_t n, fl_codec_t **out, fl_error_t *err);
void fl_codec_destroy(fl_codec_t *codec); /* NULL is a no-op */

/* Look up an event type by its short name ("ci_report", "validation_result", ...). NULL when
 * unknown. The returned pointer lives as long as the codec. */
const fl_event_type_t *fl_codec_type(const fl_codec_t *codec, const char *name);

/* Number of event types and the i-th one (stable order: schema file name). */
size_t fl_codec_type_count(const fl_codec_t *codec);
const fl_event_type_t *fl_codec_type_at(const fl_codec_t *codec, size_t i);

const char *fl_event_type_name(const fl_event_type_t *type);      /* "ci_report" */
const char *fl_event_type_full_name(const fl_event_type_t *type); /* "io.feedloop.CiReport" */
uint64_t fl_event_type_fingerprint(const fl_event_type_t *type);  /* current version */
avro_schema_t fl_event_type_schema(const fl_event_type_t *type);  /* borrowed */

/* A fresh value of the type's current schema. Caller owns it: avro_value_decref(). */
int fl_event_type_new_value(const fl_event_type_t *type, avro_value_t *out);

/* Encode value (of type's current schema) in single-object encoding. *out points into a buffer
 * owned by the codec, valid until the next call on this codec; *len is its length. */
int fl_codec_encode(fl_codec_t *codec, const fl_event_type_t *type, avro_value_t *value,
                    const void **out, size_t *len, fl_error_t *err);

/* Decode single-object bytes. Finds the writer schema by fingerprint (FL_EFINGERPRINT when
 * unknown, FL_EDECODE for bad magic / truncated / trailing bytes / malformed datum), resolves it
 * into the reader schema of its event type and returns that type and a value owned by the codec
 * (reused: valid until the next decode of the same type). On FL_EDECODE after the fingerprint
 * matched, *type is still set (for dead-lettering by type) and *value is NULL. Never trusts a
 * length, count or index from buf: garbage yields FL_EDECODE. */
int fl_codec_decode(fl_codec_t *codec, const void *buf, size_t len, const fl_event_type_t **type,
                    avro_value_t **value, fl_error_t *err);

/* JSON -> Avro value of type's schema. The value must be fresh from fl_event_type_new_value()
 * or reset. Returns 0 or FL_EPARSE; errors name the field path ("tests.unit.failed: expected
 * integer, got string"; "repo: missing required field"; "unknown field 'x'"). Fields with defaults
 * may be omitted. Unions are written either as the bare value (null, or the first non-null branch
 * that accepts it) or in Avro JSON form {"type": v}; an object whose single key names a branch is
 * read as the latter. Bytes and fixed are strings of U+0000..U+00FF, one character per byte
 * (load JSON holding "\u0000" with JSON_ALLOW_NUL). Borrows json. */
int fl_codec_from_json(const fl_event_type_t *type, json_t *json, avro_value_t *value,
                       fl_error_t *err);

/* Avro value -> JSON: unions as bare values (an unset union is null), enums as strings, bytes and
 * fixed as strings of U+0000..U+00FF, NaN and infinities as null, invalid UTF-8 in a string as
 * U+FFFD. New reference, caller decrefs; NULL only for a value avro-c cannot read. Bare unions
 * are ambiguous where two branches take the same JSON type (string vs bytes/fixed/enum): reading
 * the JSON back picks the first. */
json_t *fl_codec_to_json(avro_value_t *value);

#endif
