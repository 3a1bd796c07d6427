/* Unit tests of fl_codec's schema resolution: events written with an older version of a schema
 * (schemas/history/) read as the current version. The writer side is a codec whose current
 * schema is the old version, so the bytes are exactly what an old producer put on the topic.
 *
 * Fixture files are read from $FL_SOURCE_DIR (set by the test registration). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fl_codec.h"
#include "test_files.h"

/* ---- helpers ---- */

static int codec_of(const char *current, const char *v1, fl_codec_t **out, fl_error_t *err) {
    fl_schema_src_t srcs[2] = {
        {"t", 0, "t.avsc", current, strlen(current)},
        {"t", 1, "history/t.v1.avsc", v1, v1 ? strlen(v1) : 0},
    };
    return fl_codec_new_from(srcs, v1 ? 2 : 1, out, err);
}

static uint8_t *encode_json(fl_codec_t *codec, const char *type_name, json_t *j, size_t *len) {
    const fl_event_type_t *type = fl_codec_type(codec, type_name);
    avro_value_t v;
    fl_error_t err = {0};
    const void *out = NULL;
    assert_non_null(type);
    fl_event_type_new_value(type, &v);
    if (fl_codec_from_json(type, j, &v, &err) != 0)
        fail_msg("from_json: %s", err.text);
    if (fl_codec_encode(codec, type, &v, &out, len, &err) != 0)
        fail_msg("encode: %s", err.text);
    avro_value_decref(&v);
    uint8_t *copy = malloc(*len);
    assert_non_null(copy);
    memcpy(copy, out, *len);
    return copy;
}

/* Old and new codecs of a single type "t"; encodes json with the old one (from its text), decodes
 * with the new one and returns the value's JSON (NULL on a decode error, err filled). */
static json_t *resolve_json(const char *old_schema, const char *new_schema, const char *json_text,
                            int *rc, fl_error_t *err) {
    fl_codec_t *writer = NULL, *reader = NULL;
    json_t *out = NULL;
    if (codec_of(old_schema, NULL, &writer, err) != 0)
        fail_msg("writer schema: %s", err->text);
    if (codec_of(new_schema, old_schema, &reader, err) != 0)
        fail_msg("reader schema: %s", err->text);
    json_t *j = json_loads(json_text, 0, NULL);
    assert_non_null(j);
    size_t len = 0;
    uint8_t *bytes = encode_json(writer, "t", j, &len);
    const fl_event_type_t *type = NULL;
    avro_value_t *v = NULL;
    *rc = fl_codec_decode(reader, bytes, len, &type, &v, err);
    if (*rc == 0)
        out = fl_codec_to_json(v);
    free(bytes);
    json_decref(j);
    fl_codec_destroy(writer);
    fl_codec_destroy(reader);
    return out;
}

static void assert_json_text(json_t *got, const char *want_text) {
    json_t *want = json_loads(want_text, 0, NULL);
    assert_non_null(want);
    if (!json_equal(got, want)) {
        char *g = json_dumps(got, JSON_SORT_KEYS);
        char *w = json_dumps(want, JSON_SORT_KEYS);
        fail_msg("got  %s\nwant %s", g, w);
    }
    json_decref(want);
}

/* ---- tests ---- */

/* The fixture pair: v1 has a removed record-with-map field, a removed double, int/float/string
 * fields since widened, a reordered enum with a symbol the reader lacks, a reordered union, an
 * aliased field; v2 adds fields with defaults of every kind. */
static void test_resolve_fixture_v1_to_current(void **state) {
    char *v1 = test_slurp_required("tests/fixtures/codec/history/sample.v1.avsc");
    char *v2 = test_slurp_required("tests/fixtures/codec/sample.avsc");
    fl_schema_src_t wsrc = {"sample", 0, "v1 as current", v1, strlen(v1)};
    fl_schema_src_t rsrcs[] = {{"sample", 0, "sample.avsc", v2, strlen(v2)},
                               {"sample", 1, "history/sample.v1.avsc", v1, strlen(v1)}};
    fl_codec_t *writer = NULL, *reader = NULL;
    fl_error_t err = {0};
    if (fl_codec_new_from(&wsrc, 1, &writer, &err) != 0 ||
        fl_codec_new_from(rsrcs, 2, &reader, &err) != 0)
        fail_msg("%s", err.text);
    const fl_event_type_t *rtype = fl_codec_type(reader, "sample");
    uint64_t v1_fp = fl_event_type_fingerprint(fl_codec_type(writer, "sample"));
    assert_true(v1_fp != fl_event_type_fingerprint(rtype));

    json_t *j = test_load_json_required("tests/fixtures/codec/sample.v1.json");
    size_t len = 0;
    uint8_t *bytes = encode_json(writer, "sample", j, &len);
    const fl_event_type_t *type = NULL;
    avro_value_t *v = NULL;
    if (fl_codec_decode(reader, bytes, len, &type, &v, &err) != 0)
        fail_msg("%s", err.text);
    assert_ptr_equal(type, rtype); /* the old fingerprint maps to the same event type */
    json_t *got = fl_codec_to_json(v);
    json_t *want = test_load_json_required("tests/fixtures/codec/sample.v1.as_current.json");
    if (!json_equal(got, want)) {
        const char *key;
        json_t *wv;
        json_object_foreach(want, key, wv) {
            char *g = json_dumps(json_object_get(got, key), JSON_ENCODE_ANY);
            char *w = json_dumps(wv, JSON_ENCODE_ANY);
            if (strcmp(g, w) != 0)
                print_error("%s: got %s want %s\n", key, g, w);
            free(g);
            free(w);
        }
        fail_msg("v1 event read as current differs");
    }
    /* Resolved values have the reader's types. */
    avro_value_t f;
    avro_value_get_by_name(v, "count", &f, NULL);
    assert_int_equal(avro_value_get_type(&f), AVRO_INT64);
    avro_value_get_by_name(v, "blob", &f, NULL);
    assert_int_equal(avro_value_get_type(&f), AVRO_BYTES);
    json_decref(got);
    free(bytes);

    /* The writer's enum symbol the reader lacks takes the reader enum's default; other union
     * branches resolve too. */
    json_object_set_new(j, "status", json_string("BROKEN"));
    json_object_set_new(j, "note", json_null());
    json_object_set_new(j, "choice", json_string("s"));
    bytes = encode_json(writer, "sample", j, &len);
    if (fl_codec_decode(reader, bytes, len, &type, &v, &err) != 0)
        fail_msg("%s", err.text);
    got = fl_codec_to_json(v);
    assert_string_equal(json_string_value(json_object_get(got, "status")), "UNKNOWN");
    assert_true(json_is_null(json_object_get(got, "note")));
    assert_string_equal(json_string_value(json_object_get(got, "choice")), "s");
    /* The reused value was reset: nothing of the first decode lingers. */
    assert_int_equal(json_array_size(json_object_get(got, "items")), 2);
    json_decref(got);

    /* Every truncation of an old-version event fails cleanly. */
    for (size_t n = 0; n < len; n++) {
        v = NULL;
        assert_int_equal(fl_codec_decode(reader, bytes, n, &type, &v, &err), FL_EDECODE);
        assert_null(v);
    }
    free(bytes);
    json_decref(j);
    json_decref(want);
    fl_codec_destroy(writer);
    fl_codec_destroy(reader);
    free(v1);
    free(v2);
}

static void test_resolve_promotions(void **state) {
    const char *old = "{\"type\":\"record\",\"name\":\"P\",\"fields\":["
                      "{\"name\":\"a\",\"type\":\"int\"},{\"name\":\"b\",\"type\":\"int\"},"
                      "{\"name\":\"c\",\"type\":\"int\"},{\"name\":\"d\",\"type\":\"long\"},"
                      "{\"name\":\"e\",\"type\":\"long\"},{\"name\":\"f\",\"type\":\"float\"},"
                      "{\"name\":\"g\",\"type\":\"bytes\"},{\"name\":\"h\",\"type\":\"string\"},"
                      "{\"name\":\"i\",\"type\":{\"type\":\"array\",\"items\":\"int\"}},"
                      "{\"name\":\"j\",\"type\":{\"type\":\"map\",\"values\":\"int\"}},"
                      "{\"name\":\"k\",\"type\":[\"null\",\"int\"]}]}";
    const char *new = "{\"type\":\"record\",\"name\":\"P\",\"fields\":["
                      "{\"name\":\"a\",\"type\":\"long\"},{\"name\":\"b\",\"type\":\"float\"},"
                      "{\"name\":\"c\",\"type\":\"double\"},{\"name\":\"d\",\"type\":\"float\"},"
                      "{\"name\":\"e\",\"type\":\"double\"},{\"name\":\"f\",\"type\":\"double\"},"
                      "{\"name\":\"g\",\"type\":\"string\"},{\"name\":\"h\",\"type\":\"bytes\"},"
                      "{\"name\":\"i\",\"type\":{\"type\":\"array\",\"items\":\"long\"}},"
                      "{\"name\":\"j\",\"type\":{\"type\":\"map\",\"values\":\"double\"}},"
                      "{\"name\":\"k\",\"type\":[\"null\",\"string\",\"double\",\"int\"]}]}";
    int rc = 0;
    fl_error_t err = {0};
    json_t *got = resolve_json(old, new,
                               "{\"a\":-5,\"b\":3,\"c\":2147483647,\"d\":1099511627776,"
                               "\"e\":-9007199254740992,\"f\":0.5,\"g\":\"xyz\",\"h\":\"\\u00e9\","
                               "\"i\":[1,-2],\"j\":{\"m\":7},\"k\":9}",
                               &rc, &err);
    if (rc != 0)
        fail_msg("%s", err.text);
    /* k: the exact branch (int) wins over the earlier promotable one (double). */
    assert_json_text(got, "{\"a\":-5,\"b\":3.0,\"c\":2147483647.0,\"d\":1099511627776.0,"
                          "\"e\":-9007199254740992.0,\"f\":0.5,\"g\":\"xyz\","
                          "\"h\":\"\\u00c3\\u00a9\",\"i\":[1,-2],\"j\":{\"m\":7.0},\"k\":9}");
    json_decref(got);
}

static void test_resolve_added_and_removed_fields(void **state) {
    /* A removed field of every shape is skipped; a nested record gains a field with a default;
     * a reader field aliased to a writer name takes its value. */
    const char *old =
        "{\"type\":\"record\",\"name\":\"R\",\"fields\":["
        "{\"name\":\"gone_s\",\"type\":\"string\"},"
        "{\"name\":\"keep\",\"type\":\"int\"},"
        "{\"name\":\"gone_u\",\"type\":[\"null\",\"string\",{\"type\":\"fixed\",\"name\":\"F\","
        "\"size\":3}]},"
        "{\"name\":\"gone_a\",\"type\":{\"type\":\"array\",\"items\":{\"type\":\"map\","
        "\"values\":\"double\"}}},"
        "{\"name\":\"gone_e\",\"type\":{\"type\":\"enum\",\"name\":\"E\",\"symbols\":[\"X\"]}},"
        "{\"name\":\"gone_b\",\"type\":\"boolean\"},"
        "{\"name\":\"gone_f\",\"type\":\"float\"},"
        "{\"name\":\"sub\",\"type\":{\"type\":\"record\",\"name\":\"Sub\",\"fields\":["
        "{\"name\":\"x\",\"type\":\"long\"}]}},"
        "{\"name\":\"before\",\"type\":\"string\"}]}";
    const char *new =
        "{\"type\":\"record\",\"name\":\"R\",\"fields\":["
        "{\"name\":\"sub\",\"type\":{\"type\":\"record\",\"name\":\"Sub\",\"fields\":["
        "{\"name\":\"y\",\"type\":{\"type\":\"array\",\"items\":\"string\"},\"default\":[\"d\"]},"
        "{\"name\":\"x\",\"type\":\"long\"}]}},"
        "{\"name\":\"keep\",\"type\":\"int\"},"
        "{\"name\":\"after\",\"aliases\":[\"before\"],\"type\":\"string\"},"
        "{\"name\":\"extra\",\"type\":[\"null\",\"Sub\"],\"default\":null}]}";
    int rc = 0;
    fl_error_t err = {0};
    json_t *got = resolve_json(old, new,
                               "{\"gone_s\":\"s\",\"keep\":4,\"gone_u\":{\"F\":\"abc\"},"
                               "\"gone_a\":[{\"p\":1.0},{}],\"gone_e\":\"X\",\"gone_b\":true,"
                               "\"gone_f\":1.0,\"sub\":{\"x\":10},\"before\":\"b\"}",
                               &rc, &err);
    if (rc != 0)
        fail_msg("%s", err.text);
    assert_json_text(got, "{\"sub\":{\"y\":[\"d\"],\"x\":10},\"keep\":4,\"after\":\"b\","
                          "\"extra\":null}");
    json_decref(got);
}

static void test_resolve_record_alias_and_non_union_to_union(void **state) {
    const char *old = "{\"type\":\"record\",\"name\":\"Old\",\"namespace\":\"n\",\"fields\":["
                      "{\"name\":\"v\",\"type\":\"string\"}]}";
    const char *new = "{\"type\":\"record\",\"name\":\"New\",\"namespace\":\"n\","
                      "\"aliases\":[\"Old\"],\"fields\":["
                      "{\"name\":\"v\",\"type\":[\"null\",\"int\",\"string\"]}]}";
    int rc = 0;
    fl_error_t err = {0};
    json_t *got = resolve_json(old, new, "{\"v\":\"x\"}", &rc, &err);
    if (rc != 0)
        fail_msg("%s", err.text);
    assert_json_text(got, "{\"v\":\"x\"}");
    json_decref(got);
}

static void test_resolve_data_dependent_failures(void **state) {
    int rc = 0;
    fl_error_t err = {0};
    /* An enum symbol the reader lacks, with no reader default. */
    const char *e_old = "{\"type\":\"record\",\"name\":\"R\",\"fields\":[{\"name\":\"e\",\"type\":"
                        "{\"type\":\"enum\",\"name\":\"E\",\"symbols\":[\"A\",\"B\",\"C\"]}}]}";
    const char *e_new = "{\"type\":\"record\",\"name\":\"R\",\"fields\":[{\"name\":\"e\",\"type\":"
                        "{\"type\":\"enum\",\"name\":\"E\",\"symbols\":[\"B\",\"A\"]}}]}";
    json_t *got = resolve_json(e_old, e_new, "{\"e\":\"A\"}", &rc, &err);
    assert_int_equal(rc, 0);
    assert_json_text(got, "{\"e\":\"A\"}");
    json_decref(got);
    assert_null(resolve_json(e_old, e_new, "{\"e\":\"C\"}", &rc, &err));
    assert_int_equal(rc, FL_EDECODE);
    assert_non_null(strstr(err.text, "enum symbol 'C' unknown"));
    assert_non_null(strstr(err.text, "history/t.v1.avsc"));

    /* A writer union branch the reader union lacks. */
    const char *u_old = "{\"type\":\"record\",\"name\":\"R\",\"fields\":[{\"name\":\"u\","
                        "\"type\":[\"null\",\"string\",\"boolean\"]}]}";
    const char *u_new = "{\"type\":\"record\",\"name\":\"R\",\"fields\":[{\"name\":\"u\","
                        "\"type\":[\"null\",\"string\"]}]}";
    got = resolve_json(u_old, u_new, "{\"u\":\"s\"}", &rc, &err);
    assert_int_equal(rc, 0);
    json_decref(got);
    assert_null(resolve_json(u_old, u_new, "{\"u\":true}", &rc, &err));
    assert_int_equal(rc, FL_EDECODE);
    assert_non_null(strstr(err.text, "boolean is in no branch"));

    /* A writer union read as a plain type: only the matching branch reads. */
    const char *n_new = "{\"type\":\"record\",\"name\":\"R\",\"fields\":[{\"name\":\"u\","
                        "\"type\":\"string\"}]}";
    got = resolve_json(u_old, n_new, "{\"u\":\"s\"}", &rc, &err);
    assert_int_equal(rc, 0);
    assert_json_text(got, "{\"u\":\"s\"}");
    json_decref(got);
    assert_null(resolve_json(u_old, n_new, "{\"u\":null}", &rc, &err));
    assert_int_equal(rc, FL_EDECODE);
    assert_non_null(strstr(err.text, "writer null cannot be read as string"));
}

static void test_resolve_incompatible_history_fails_at_load(void **state) {
    fl_codec_t *codec = NULL;
    fl_error_t err = {0};
    const char *base = "{\"type\":\"record\",\"name\":\"R\",\"fields\":["
                       "{\"name\":\"a\",\"type\":\"string\"}]}";
    /* A reader field without a default that old events lack. */
    assert_int_equal(codec_of("{\"type\":\"record\",\"name\":\"R\",\"fields\":["
                              "{\"name\":\"a\",\"type\":\"string\"},"
                              "{\"name\":\"b\",\"type\":\"int\"}]}",
                              base, &codec, &err),
                     FL_ESCHEMA);
    assert_non_null(strstr(err.text, "history/t.v1.avsc"));
    assert_non_null(strstr(err.text, "'b' has no default"));
    /* A type change that is no promotion. */
    assert_int_equal(codec_of("{\"type\":\"record\",\"name\":\"R\",\"fields\":["
                              "{\"name\":\"a\",\"type\":\"int\"}]}",
                              base, &codec, &err),
                     FL_ESCHEMA);
    assert_non_null(strstr(err.text, "R.a: string cannot be read as int"));
    /* A narrowing. */
    assert_int_equal(codec_of("{\"type\":\"record\",\"name\":\"R\",\"fields\":["
                              "{\"name\":\"a\",\"type\":\"int\"}]}",
                              "{\"type\":\"record\",\"name\":\"R\",\"fields\":["
                              "{\"name\":\"a\",\"type\":\"long\"}]}",
                              &codec, &err),
                     FL_ESCHEMA);
    /* A renamed record without an alias. */
    assert_int_equal(codec_of("{\"type\":\"record\",\"name\":\"S\",\"fields\":["
                              "{\"name\":\"a\",\"type\":\"string\"}]}",
                              base, &codec, &err),
                     FL_ESCHEMA);
    assert_null(codec);
}

static uint64_t rng_state = 0xD1B54A32D192ED03u;
static uint64_t rng(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void test_resolve_fuzz(void **state) {
    char *v1 = test_slurp_required("tests/fixtures/codec/history/sample.v1.avsc");
    char *v2 = test_slurp_required("tests/fixtures/codec/sample.avsc");
    fl_schema_src_t wsrc = {"sample", 0, "v1", v1, strlen(v1)};
    fl_schema_src_t rsrcs[] = {{"sample", 0, "sample.avsc", v2, strlen(v2)},
                               {"sample", 1, "history/sample.v1.avsc", v1, strlen(v1)}};
    fl_codec_t *writer = NULL, *reader = NULL;
    fl_error_t err = {0};
    assert_int_equal(fl_codec_new_from(&wsrc, 1, &writer, &err), 0);
    assert_int_equal(fl_codec_new_from(rsrcs, 2, &reader, &err), 0);
    json_t *j = test_load_json_required("tests/fixtures/codec/sample.v1.json");
    size_t len = 0;
    uint8_t *good = encode_json(writer, "sample", j, &len);
    uint8_t *buf = malloc(len);
    for (int r = 0; r < 30000; r++) {
        size_t n = len;
        memcpy(buf, good, len);
        for (int e = 1 + (int)(rng() % 4); e > 0; e--) {
            size_t at = FL_CODEC_HEADER_LEN + rng() % (len - FL_CODEC_HEADER_LEN);
            switch (rng() % 3) {
            case 0:
                buf[at] ^= (uint8_t)(1u << (rng() % 8));
                break;
            case 1:
                buf[at] = (uint8_t)rng();
                break;
            default:
                n = at;
                break;
            }
        }
        const fl_event_type_t *type = NULL;
        avro_value_t *v = NULL;
        int rc = fl_codec_decode(reader, buf, n, &type, &v, &err);
        if (rc != 0 && rc != FL_EDECODE)
            fail_msg("round %d: rc %d (%s)", r, rc, err.text);
        if (rc == 0) {
            json_t *out = fl_codec_to_json(v);
            assert_non_null(out);
            json_decref(out);
        }
    }
    free(buf);
    free(good);
    json_decref(j);
    fl_codec_destroy(writer);
    fl_codec_destroy(reader);
    free(v1);
    free(v2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resolve_fixture_v1_to_current),
        cmocka_unit_test(test_resolve_promotions),
        cmocka_unit_test(test_resolve_added_and_removed_fields),
        cmocka_unit_test(test_resolve_record_alias_and_non_union_to_union),
        cmocka_unit_test(test_resolve_data_dependent_failures),
        cmocka_unit_test(test_resolve_incompatible_history_fails_at_load),
        cmocka_unit_test(test_resolve_fuzz),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
