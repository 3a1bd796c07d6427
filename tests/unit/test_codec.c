/* Unit tests of fl_codec: CRC-64-AVRO and Parsing Canonical Form against the Avro reference
 * vectors, round trips, JSON conversion and its errors, hostile input, the compiled-in schemas.
 * Schema resolution (older writer versions) is in test_codec_resolve.c.
 *
 * Fixture files are read from $FL_SOURCE_DIR (set by the test registration). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fl_codec.h"
#include "test_files.h"

/* ---- helpers ---- */

/* Codec of one type from inline JSON: current schema, plus an optional older version 1. */
static int codec_of(const char *type, const char *current, const char *v1, fl_codec_t **out,
                    fl_error_t *err) {
    fl_schema_src_t srcs[2] = {
        {type, 0, "current.avsc", current, strlen(current)},
        {type, 1, "history.v1.avsc", v1, v1 ? strlen(v1) : 0},
    };
    return fl_codec_new_from(srcs, v1 ? 2 : 1, out, err);
}

/* The fixture codec: sample (current + v1) and tree. */
static fl_codec_t *fixture_codec(void) {
    char *sample = test_slurp("tests/fixtures/codec/sample.avsc");
    char *v1 = test_slurp("tests/fixtures/codec/history/sample.v1.avsc");
    char *tree = test_slurp("tests/fixtures/codec/tree.avsc");
    assert_non_null(sample);
    assert_non_null(v1);
    assert_non_null(tree);
    fl_schema_src_t srcs[] = {
        {"sample", 0, "sample.avsc", sample, strlen(sample)},
        {"tree", 0, "tree.avsc", tree, strlen(tree)},
        {"sample", 1, "history/sample.v1.avsc", v1, strlen(v1)},
    };
    fl_codec_t *codec = NULL;
    fl_error_t err = {0};
    int rc = fl_codec_new_from(srcs, 3, &codec, &err);
    if (rc != 0)
        fail_msg("fixture codec: %s", err.text);
    free(sample);
    free(v1);
    free(tree);
    return codec;
}

/* Encodes the fixture JSON of a type; returns a malloc'd copy of the bytes. */
static uint8_t *encode_json(fl_codec_t *codec, const char *type_name, json_t *j, size_t *len) {
    const fl_event_type_t *type = fl_codec_type(codec, type_name);
    avro_value_t v;
    fl_error_t err = {0};
    const void *out = NULL;
    assert_non_null(type);
    assert_int_equal(fl_event_type_new_value(type, &v), 0);
    if (fl_codec_from_json(type, j, &v, &err) != 0)
        fail_msg("from_json %s: %s", type_name, err.text);
    if (fl_codec_encode(codec, type, &v, &out, len, &err) != 0)
        fail_msg("encode %s: %s", type_name, err.text);
    avro_value_decref(&v);
    uint8_t *copy = malloc(*len);
    assert_non_null(copy);
    memcpy(copy, out, *len);
    return copy;
}

static void write_varint(uint8_t **p, int64_t x) {
    uint64_t u = ((uint64_t)x << 1) ^ (uint64_t)(x >> 63);
    while (u >= 0x80) {
        *(*p)++ = (uint8_t)(u | 0x80);
        u >>= 7;
    }
    *(*p)++ = (uint8_t)u;
}

static size_t put_header(uint8_t *b, uint64_t fp) {
    b[0] = FL_CODEC_MAGIC0;
    b[1] = FL_CODEC_MAGIC1;
    for (int i = 0; i < 8; i++)
        b[2 + i] = (uint8_t)(fp >> (8 * i));
    return FL_CODEC_HEADER_LEN;
}

/* ---- CRC-64-AVRO and Parsing Canonical Form ---- */

/* From apache/avro share/test/data/schema-tests.txt (the Java/C reference test file; commit
 * 0ea74a36cebb2e5fbc37e599814a05c33cb7d424), entries 000-033: input, canonical form, and the
 * CRC-64-AVRO fingerprint as a signed decimal (0 where the file gives none). */
static const struct {
    const char *id, *input, *canonical;
    int64_t fingerprint;
} spec_vectors[] = {
    {"000", "\"null\"", "\"null\"", 7195948357588979594},
    {"001", "{\"type\":\"null\"}", "\"null\"", 0},
    {"002", "\"boolean\"", "\"boolean\"", -6970731678124411036},
    {"003", "{\"type\":\"boolean\"}", "\"boolean\"", 0},
    {"004", "\"int\"", "\"int\"", 8247732601305521295},
    {"005", "{\"type\":\"int\"}", "\"int\"", 0},
    {"006", "\"long\"", "\"long\"", -3434872931120570953},
    {"007", "{\"type\":\"long\"}", "\"long\"", 0},
    {"008", "\"float\"", "\"float\"", 5583340709985441680},
    {"009", "{\"type\":\"float\"}", "\"float\"", 0},
    {"010", "\"double\"", "\"double\"", -8181574048448539266},
    {"011", "{\"type\":\"double\"}", "\"double\"", 0},
    {"012", "\"bytes\"", "\"bytes\"", 5746618253357095269},
    {"013", "{\"type\":\"bytes\"}", "\"bytes\"", 0},
    {"014", "\"string\"", "\"string\"", -8142146995180207161},
    {"015", "{\"type\":\"string\"}", "\"string\"", 0},
    {"016", "[  ]", "[]", -1241056759729112623},
    {"017", "[ \"int\"  ]", "[\"int\"]", -5232228896498058493},
    {"018", "[ \"int\" , {\"type\":\"boolean\"} ]", "[\"int\",\"boolean\"]", 5392556393470105090},
    {"019", "{\"fields\":[], \"type\":\"record\", \"name\":\"foo\"}",
     "{\"name\":\"foo\",\"type\":\"record\",\"fields\":[]}", -4824392279771201922},
    {"020", "{\"fields\":[], \"type\":\"record\", \"name\":\"foo\", \"namespace\":\"x.y\"}",
     "{\"name\":\"x.y.foo\",\"type\":\"record\",\"fields\":[]}", 5916914534497305771},
    {"021", "{\"fields\":[], \"type\":\"record\", \"name\":\"a.b.foo\", \"namespace\":\"x.y\"}",
     "{\"name\":\"a.b.foo\",\"type\":\"record\",\"fields\":[]}", -4616218487480524110},
    {"022", "{\"fields\":[], \"type\":\"record\", \"name\":\"foo\", \"doc\":\"Useful info\"}",
     "{\"name\":\"foo\",\"type\":\"record\",\"fields\":[]}", -4824392279771201922},
    {"023", "{\"fields\":[], \"type\":\"record\", \"name\":\"foo\", \"aliases\":[\"foo\",\"bar\"]}",
     "{\"name\":\"foo\",\"type\":\"record\",\"fields\":[]}", -4824392279771201922},
    {"024",
     "{\"fields\":[], \"type\":\"record\", \"name\":\"foo\", \"doc\":\"foo\", "
     "\"aliases\":[\"foo\",\"bar\"]}",
     "{\"name\":\"foo\",\"type\":\"record\",\"fields\":[]}", -4824392279771201922},
    {"025",
     "{\"fields\":[{\"type\":{\"type\":\"boolean\"}, \"name\":\"f1\"}], \"type\":\"record\", "
     "\"name\":\"foo\"}",
     "{\"name\":\"foo\",\"type\":\"record\",\"fields\":[{\"name\":\"f1\",\"type\":\"boolean\"}]}",
     7843277075252814651},
    {"026",
     "{ \"fields\":[{\"type\":\"boolean\", \"aliases\":[], \"name\":\"f1\", "
     "\"default\":\"true\"},\n"
     "            {\"order\":\"descending\",\"name\":\"f2\",\"doc\":\"Hello\",\"type\":\"int\"}],\n"
     "  \"type\":\"record\", \"name\":\"foo\"\n}",
     "{\"name\":\"foo\",\"type\":\"record\",\"fields\":[{\"name\":\"f1\",\"type\":\"boolean\"},"
     "{\"name\":\"f2\",\"type\":\"int\"}]}",
     -4860222112080293046},
    {"027", "{\"type\":\"enum\", \"name\":\"foo\", \"symbols\":[\"A1\"]}",
     "{\"name\":\"foo\",\"type\":\"enum\",\"symbols\":[\"A1\"]}", -6342190197741309591},
    {"028",
     "{\"namespace\":\"x.y.z\", \"type\":\"enum\", \"name\":\"foo\", \"doc\":\"foo bar\", "
     "\"symbols\":[\"A1\", \"A2\"]}",
     "{\"name\":\"x.y.z.foo\",\"type\":\"enum\",\"symbols\":[\"A1\",\"A2\"]}",
     -4448647247586288245},
    {"029", "{\"name\":\"foo\",\"type\":\"fixed\",\"size\":15}",
     "{\"name\":\"foo\",\"type\":\"fixed\",\"size\":15}", 1756455273707447556},
    {"030",
     "{\"namespace\":\"x.y.z\", \"type\":\"fixed\", \"name\":\"foo\", \"doc\":\"foo bar\", "
     "\"size\":32}",
     "{\"name\":\"x.y.z.foo\",\"type\":\"fixed\",\"size\":32}", -3064184465700546786},
    {"031", "{ \"items\":{\"type\":\"null\"}, \"type\":\"array\"}",
     "{\"type\":\"array\",\"items\":\"null\"}", -589620603366471059},
    {"032", "{ \"values\":\"string\", \"type\":\"map\"}",
     "{\"type\":\"map\",\"values\":\"string\"}", -8732877298790414990},
    {"033",
     "  {\"name\":\"PigValue\",\"type\":\"record\",\n"
     "   \"fields\":[{\"name\":\"value\", \"type\":[\"null\", \"int\", \"long\", \"PigValue\"]}]}",
     "{\"name\":\"PigValue\",\"type\":\"record\",\"fields\":[{\"name\":\"value\",\"type\":["
     "\"null\","
     "\"int\",\"long\",\"PigValue\"]}]}",
     -1759257747318642341},
};

static void test_crc64_and_canonical_spec_vectors(void **state) {
    size_t with_fp = 0;
    for (size_t i = 0; i < sizeof(spec_vectors) / sizeof(spec_vectors[0]); i++) {
        char *canonical = NULL;
        fl_error_t err = {0};
        if (fl_schema_canonical_form(spec_vectors[i].input, &canonical, &err) != 0)
            fail_msg("vector %s: %s", spec_vectors[i].id, err.text);
        if (strcmp(canonical, spec_vectors[i].canonical) != 0)
            fail_msg("vector %s: canonical %s, want %s", spec_vectors[i].id, canonical,
                     spec_vectors[i].canonical);
        uint64_t fp = fl_crc64_avro(canonical, strlen(canonical));
        if (spec_vectors[i].fingerprint != 0) {
            with_fp++;
            if (fp != (uint64_t)spec_vectors[i].fingerprint)
                fail_msg("vector %s: fingerprint %" PRId64 ", want %" PRId64, spec_vectors[i].id,
                         (int64_t)fp, spec_vectors[i].fingerprint);
        }
        free(canonical);
    }
    assert_true(with_fp >= 15);
    /* The empty input leaves the initial value, the spec's EMPTY constant. */
    assert_true(fl_crc64_avro("", 0) == UINT64_C(0xc15d213aa4d7a795));
}

static void test_canonical_nested_namespaces(void **state) {
    /* Derived from the spec's rules (not in the reference file): nested definitions inherit the
     * enclosing namespace, references become full names, a dotted name sets its own namespace,
     * "namespace": "" resets it, attributes are ordered and the rest stripped. */
    const char *in =
        "{\"type\":\"record\",\"name\":\"Outer\",\"namespace\":\"a.b\",\"doc\":\"d\",\"fields\":["
        " {\"name\":\"in\",\"type\":{\"fields\":[],\"type\":\"record\",\"name\":\"Inner\"}},"
        " {\"name\":\"again\",\"type\":\"Inner\",\"default\":{}},"
        " {\"name\":\"far\",\"type\":{\"type\":\"enum\",\"name\":\"c.E\",\"symbols\":[\"X\"],"
        "   \"default\":\"X\"}},"
        " {\"name\":\"ref\",\"type\":[\"null\",\"c.E\",{\"type\":\"map\",\"values\":\"Outer\"}]},"
        " {\"name\":\"root\",\"type\":{\"type\":\"fixed\",\"size\":\"016\",\"name\":\"F\","
        "   \"namespace\":\"\"}},"
        " {\"name\":\"ts\",\"type\":{\"type\":\"long\",\"logicalType\":\"timestamp-millis\"}},"
        " {\"name\":\"s\",\"type\":{\"type\":\"string\"},\"doc\":\"caf\\u00e9 \\/\"}]}";
    const char *want =
        "{\"name\":\"a.b.Outer\",\"type\":\"record\",\"fields\":["
        "{\"name\":\"in\",\"type\":{\"name\":\"a.b.Inner\",\"type\":\"record\",\"fields\":[]}},"
        "{\"name\":\"again\",\"type\":\"a.b.Inner\"},"
        "{\"name\":\"far\",\"type\":{\"name\":\"c.E\",\"type\":\"enum\",\"symbols\":[\"X\"]}},"
        "{\"name\":\"ref\",\"type\":[\"null\",\"c.E\",{\"type\":\"map\",\"values\":\"a.b.Outer\"}]}"
        ","
        "{\"name\":\"root\",\"type\":{\"name\":\"F\",\"type\":\"fixed\",\"size\":16}},"
        "{\"name\":\"ts\",\"type\":\"long\"},"
        "{\"name\":\"s\",\"type\":\"string\"}]}";
    char *canonical = NULL;
    fl_error_t err = {0};
    if (fl_schema_canonical_form(in, &canonical, &err) != 0)
        fail_msg("%s", err.text);
    assert_string_equal(canonical, want);
    free(canonical);

    /* [STRINGS]: escapes in names become UTF-8. */
    assert_int_equal(fl_schema_canonical_form("{\"type\":\"enum\",\"name\":\"\\u00e9\","
                                              "\"symbols\":[\"\\u0041\"]}",
                                              &canonical, &err),
                     0);
    assert_string_equal(canonical, "{\"name\":\"\xc3\xa9\",\"type\":\"enum\",\"symbols\":[\"A\"]}");
    free(canonical);
}

static void test_canonical_errors(void **state) {
    char *canonical = NULL;
    fl_error_t err = {0};
    assert_int_equal(fl_schema_canonical_form("{\"type\":", &canonical, &err), FL_EPARSE);
    assert_int_equal(fl_schema_canonical_form("\"Nope\"", &canonical, &err), FL_ESCHEMA);
    assert_non_null(strstr(err.text, "Nope"));
    assert_int_equal(
        fl_schema_canonical_form("{\"type\":\"record\",\"fields\":[]}", &canonical, &err),
        FL_ESCHEMA);
    assert_int_equal(fl_schema_canonical_form("{\"type\":\"record\",\"name\":\"R\",\"fields\":["
                                              "{\"name\":\"a\",\"type\":\"R2\"}]}",
                                              &canonical, &err),
                     FL_ESCHEMA);
    assert_null(canonical);

    /* A schema object whose "type" is itself a schema. */
    assert_int_equal(fl_schema_canonical_form("{\"type\":{\"type\":\"array\",\"items\":"
                                              "{\"type\":\"int\"}},\"doc\":\"x\"}",
                                              &canonical, &err),
                     0);
    assert_string_equal(canonical, "{\"type\":\"array\",\"items\":\"int\"}");
    free(canonical);
}

/* ---- round trip ---- */

static void test_roundtrip_sample(void **state) {
    fl_codec_t *codec = fixture_codec();
    json_t *j = test_load_json("tests/fixtures/codec/sample.json");
    const fl_event_type_t *type = fl_codec_type(codec, "sample");
    fl_error_t err = {0};
    avro_value_t v;

    assert_non_null(j);
    assert_non_null(type);
    assert_string_equal(fl_event_type_name(type), "sample");
    assert_string_equal(fl_event_type_full_name(type), "io.feedloop.test.Sample");
    assert_int_equal(fl_codec_type_count(codec), 2);
    assert_ptr_equal(fl_codec_type_at(codec, 0), type); /* sorted by name */
    assert_null(fl_codec_type_at(codec, 2));
    assert_null(fl_codec_type(codec, "nope"));

    fl_event_type_new_value(type, &v);
    if (fl_codec_from_json(type, j, &v, &err) != 0)
        fail_msg("%s", err.text);

    const void *out = NULL;
    size_t len = 0;
    assert_int_equal(fl_codec_encode(codec, type, &v, &out, &len, &err), 0);
    const uint8_t *b = out;
    assert_true(len > FL_CODEC_HEADER_LEN);
    assert_int_equal(b[0], 0xC3);
    assert_int_equal(b[1], 0x01);
    uint64_t fp = 0;
    for (int i = 7; i >= 0; i--)
        fp = fp << 8 | b[2 + i];
    assert_true(fp == fl_event_type_fingerprint(type));

    const fl_event_type_t *dtype = NULL;
    avro_value_t *dv = NULL;
    if (fl_codec_decode(codec, out, len, &dtype, &dv, &err) != 0)
        fail_msg("%s", err.text);
    assert_ptr_equal(dtype, type);
    assert_true(avro_value_equal(&v, dv));

    json_t *j1 = fl_codec_to_json(&v);
    json_t *j2 = fl_codec_to_json(dv);
    assert_non_null(j1);
    assert_true(json_equal(j1, j2));
    /* The JSON form is bare unions; it reads back to the same value. */
    assert_string_equal(json_string_value(json_object_get(j1, "note")), "wrapped form");
    assert_string_equal(json_string_value(json_object_get(j1, "choice")), "1234");
    assert_int_equal(json_integer_value(json_object_get(j1, "added_long")), INT64_MIN);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j1, "counters"), "y")),
                     -9007199254740993LL);
    json_t *items = json_object_get(j1, "items");
    assert_true(json_real_value(json_object_get(json_array_get(items, 1), "v")) == 1.5);
    avro_value_t v2;
    fl_event_type_new_value(type, &v2);
    if (fl_codec_from_json(type, j1, &v2, &err) != 0)
        fail_msg("%s", err.text);
    json_t *j3 = fl_codec_to_json(&v2);
    assert_true(json_equal(j1, j3));
    json_decref(j3);
    /* Bare unions are ambiguous where two branches take a JSON string: "1234" went back into
     * the string branch, not the Digest one. Everything else reads back to the same value. */
    avro_value_t choice, branch;
    int disc = -1;
    avro_value_get_by_name(&v2, "choice", &choice, NULL);
    avro_value_get_discriminant(&choice, &disc);
    assert_int_equal(disc, 2);
    avro_value_get_by_name(&v, "choice", &choice, NULL);
    avro_value_get_discriminant(&choice, &disc);
    assert_int_equal(disc, 3);
    avro_value_get_by_name(&v2, "choice", &choice, NULL);
    avro_value_set_branch(&choice, 3, &branch);
    avro_value_set_fixed(&branch, "1234", 4);
    assert_true(avro_value_equal(&v, &v2));

    /* Decoding again reuses the value: same pointer, same content. */
    avro_value_t *dv2 = NULL;
    assert_int_equal(fl_codec_decode(codec, out, len, &dtype, &dv2, &err), 0);
    assert_ptr_equal(dv, dv2);
    assert_true(avro_value_equal(&v, dv2));

    json_decref(j);
    json_decref(j1);
    json_decref(j2);
    avro_value_decref(&v);
    avro_value_decref(&v2);
    fl_codec_destroy(codec);
}

static void test_roundtrip_grows_buffer(void **state) {
    fl_codec_t *codec = fixture_codec();
    const fl_event_type_t *type = fl_codec_type(codec, "tree");
    fl_error_t err = {0};
    /* Well beyond the initial encode buffer. */
    json_t *j = json_pack("{s:s, s:[], s:n}", "label", "root", "children", "left");
    json_t *kids = json_object_get(j, "children");
    for (int i = 0; i < 2000; i++)
        json_array_append_new(
            kids, json_pack("{s:s, s:[]}", "label", "a fairly long child label", "children"));
    uint8_t *copy = NULL;
    size_t len = 0;
    copy = encode_json(codec, "tree", j, &len);
    assert_true(len > 40000);
    const fl_event_type_t *dtype = NULL;
    avro_value_t *dv = NULL;
    assert_int_equal(fl_codec_decode(codec, copy, len, &dtype, &dv, &err), 0);
    assert_ptr_equal(dtype, type);
    size_t n = 0;
    avro_value_t children;
    avro_value_get_by_name(dv, "children", &children, NULL);
    avro_value_get_size(&children, &n);
    assert_int_equal(n, 2000);
    free(copy);
    json_decref(j);
    fl_codec_destroy(codec);
}

static void test_encode_rejects_other_type(void **state) {
    fl_codec_t *codec = fixture_codec();
    const fl_event_type_t *sample = fl_codec_type(codec, "sample");
    const fl_event_type_t *tree = fl_codec_type(codec, "tree");
    avro_value_t v;
    fl_error_t err = {0};
    const void *out = NULL;
    size_t len = 0;
    fl_event_type_new_value(tree, &v);
    assert_int_equal(fl_codec_encode(codec, sample, &v, &out, &len, &err), FL_EINVAL);
    assert_non_null(strstr(err.text, "io.feedloop.test.Sample"));
    /* A union with no branch chosen cannot be written. */
    assert_int_equal(fl_codec_encode(codec, tree, &v, &out, &len, &err), FL_EENCODE);
    avro_value_decref(&v);
    fl_codec_destroy(codec);
}

/* ---- JSON conversion ---- */

static void test_to_json_special_values(void **state) {
    const char *schema =
        "{\"type\":\"record\",\"name\":\"S\",\"fields\":["
        "{\"name\":\"d\",\"type\":\"double\"},{\"name\":\"inf\",\"type\":\"double\"},"
        "{\"name\":\"f\",\"type\":\"float\"},{\"name\":\"b\",\"type\":\"bytes\"},"
        "{\"name\":\"s\",\"type\":\"string\"},{\"name\":\"u\",\"type\":[\"null\",\"double\"]},"
        "{\"name\":\"e\",\"type\":{\"type\":\"enum\",\"name\":\"E\",\"symbols\":[\"A\",\"B\"]}}]}";
    fl_codec_t *codec = NULL;
    fl_error_t err = {0};
    assert_int_equal(codec_of("s", schema, NULL, &codec, &err), 0);
    const fl_event_type_t *type = fl_codec_type(codec, "s");
    avro_value_t v, f;
    fl_event_type_new_value(type, &v);
    avro_value_get_by_name(&v, "d", &f, NULL);
    avro_value_set_double(&f, NAN);
    avro_value_get_by_name(&v, "inf", &f, NULL);
    avro_value_set_double(&f, -INFINITY);
    avro_value_get_by_name(&v, "f", &f, NULL);
    avro_value_set_float(&f, INFINITY);
    avro_value_get_by_name(&v, "b", &f, NULL);
    avro_value_set_bytes(&f, "\x00\x7f\x80\xff\"\\", 6);
    avro_value_get_by_name(&v, "s", &f, NULL);
    avro_value_set_string_len(&f, "ok\xff\xfe!", 6); /* invalid UTF-8 */
    avro_value_t u, branch;
    avro_value_get_by_name(&v, "u", &u, NULL);
    avro_value_set_branch(&u, 1, &branch);
    avro_value_set_double(&branch, 2.5);
    avro_value_get_by_name(&v, "e", &f, NULL);
    avro_value_set_enum(&f, 1);

    json_t *j = fl_codec_to_json(&v);
    assert_non_null(j);
    assert_true(json_is_null(json_object_get(j, "d")));
    assert_true(json_is_null(json_object_get(j, "inf")));
    assert_true(json_is_null(json_object_get(j, "f")));
    json_t *b = json_object_get(j, "b");
    assert_int_equal(json_string_length(b), 8); /* 00 7f c2 80 c3 bf 22 5c: UTF-8 */
    assert_memory_equal(json_string_value(b), "\x00\x7f\xc2\x80\xc3\xbf\"\\", 8);
    assert_string_equal(json_string_value(json_object_get(j, "s")), "ok\xef\xbf\xbd\xef\xbf\xbd!");
    assert_true(json_real_value(json_object_get(j, "u")) == 2.5);
    assert_string_equal(json_string_value(json_object_get(j, "e")), "B");

    /* Bytes read back from their JSON form. */
    avro_value_t v2;
    fl_event_type_new_value(type, &v2);
    json_object_set_new(j, "d", json_real(1));
    json_object_set_new(j, "inf", json_integer(2)); /* an integer is a fine double */
    json_object_set_new(j, "f", json_real(3));
    json_object_set_new(j, "s", json_string("s"));
    if (fl_codec_from_json(type, j, &v2, &err) != 0)
        fail_msg("%s", err.text);
    const void *bytes = NULL;
    size_t size = 0;
    avro_value_get_by_name(&v2, "b", &f, NULL);
    avro_value_get_bytes(&f, &bytes, &size);
    assert_int_equal(size, 6);
    assert_memory_equal(bytes, "\x00\x7f\x80\xff\"\\", 6);

    json_decref(j);
    avro_value_decref(&v);
    avro_value_decref(&v2);
    fl_codec_destroy(codec);
}

/* Applies a JSON patch (key -> value, at a dotted path into the sample fixture) and expects
 * from_json to fail naming the path. */
static void expect_json_error(fl_codec_t *codec, const char *patch_json, const char *want_path,
                              const char *want_text) {
    json_t *j = test_load_json("tests/fixtures/codec/sample.json");
    json_t *patch = json_loads(patch_json, 0, NULL);
    const fl_event_type_t *type = fl_codec_type(codec, "sample");
    fl_error_t err = {0};
    avro_value_t v;
    assert_non_null(patch);
    /* patch: {"op": "set"|"del", "at": [keys...], "value": v} */
    json_t *at = json_object_get(patch, "at");
    json_t *target = j;
    for (size_t i = 0; i + 1 < json_array_size(at); i++) {
        json_t *k = json_array_get(at, i);
        target = json_is_integer(k) ? json_array_get(target, json_integer_value(k))
                                    : json_object_get(target, json_string_value(k));
        assert_non_null(target);
    }
    const char *last = json_string_value(json_array_get(at, json_array_size(at) - 1));
    if (strcmp(json_string_value(json_object_get(patch, "op")), "del") == 0)
        assert_int_equal(json_object_del(target, last), 0);
    else
        json_object_set(target, last, json_object_get(patch, "value"));

    fl_event_type_new_value(type, &v);
    int rc = fl_codec_from_json(type, j, &v, &err);
    if (rc != FL_EPARSE)
        fail_msg("patch %s: rc %d (%s), want FL_EPARSE", patch_json, rc, err.text);
    if (strstr(err.text, want_path) == NULL || strstr(err.text, want_text) == NULL)
        fail_msg("patch %s: error \"%s\" lacks \"%s\" / \"%s\"", patch_json, err.text, want_path,
                 want_text);
    avro_value_decref(&v);
    json_decref(patch);
    json_decref(j);
}

static void test_from_json_errors_name_the_field(void **state) {
    fl_codec_t *codec = fixture_codec();
    expect_json_error(codec, "{\"op\":\"del\",\"at\":[\"id\"]}", "id: ", "missing required field");
    expect_json_error(codec, "{\"op\":\"set\",\"at\":[\"small\"],\"value\":\"7\"}",
                      "small: ", "expected integer, got string");
    expect_json_error(codec, "{\"op\":\"set\",\"at\":[\"small\"],\"value\":2147483648}",
                      "small: ", "out of int32 range");
    expect_json_error(codec, "{\"op\":\"set\",\"at\":[\"small\"],\"value\":1.5}",
                      "small: ", "expected integer, got real");
    expect_json_error(codec, "{\"op\":\"set\",\"at\":[\"status\"],\"value\":\"MAYBE\"}",
                      "status: ", "unknown enum symbol 'MAYBE'");
    expect_json_error(codec, "{\"op\":\"set\",\"at\":[\"bogus\"],\"value\":1}", "",
                      "unknown field 'bogus'");
    expect_json_error(codec, "{\"op\":\"set\",\"at\":[\"nested\",\"bogus\"],\"value\":1}",
                      "nested: ", "unknown field 'bogus'");
    expect_json_error(codec, "{\"op\":\"del\",\"at\":[\"nested\",\"next\",\"a\"]}",
                      "nested.next.a: ", "missing required field");
    expect_json_error(codec, "{\"op\":\"set\",\"at\":[\"items\",1,\"k\"],\"value\":3}",
                      "items[1].k: ", "expected string, got integer");
    expect_json_error(codec, "{\"op\":\"set\",\"at\":[\"counters\",\"x\"],\"value\":true}",
                      "counters.x: ", "expected integer, got boolean");
    expect_json_error(codec, "{\"op\":\"set\",\"at\":[\"note\"],\"value\":5}",
                      "note: ", "expected string, got integer");
    expect_json_error(codec, "{\"op\":\"set\",\"at\":[\"choice\"],\"value\":true}",
                      "choice: ", "no branch of union");
    expect_json_error(codec, "{\"op\":\"set\",\"at\":[\"digest\"],\"value\":\"abc\"}",
                      "digest: ", "takes 4 bytes, got 3");
    expect_json_error(codec, "{\"op\":\"set\",\"at\":[\"blob\"],\"value\":\"\\u0100\"}",
                      "blob: ", "U+00FF");
    expect_json_error(codec, "{\"op\":\"set\",\"at\":[\"tags\"],\"value\":{}}",
                      "tags: ", "expected array, got object");
    expect_json_error(codec, "{\"op\":\"set\",\"at\":[\"flag\"],\"value\":null}",
                      "flag: ", "expected boolean, got null");
    expect_json_error(codec, "{\"op\":\"set\",\"at\":[\"added_record\"],\"value\":{}}",
                      "added_record.team: ", "missing required field");
    fl_codec_destroy(codec);
}

static void test_from_json_defaults_and_union_forms(void **state) {
    fl_codec_t *codec = fixture_codec();
    const fl_event_type_t *type = fl_codec_type(codec, "sample");
    json_t *j = test_load_json("tests/fixtures/codec/sample.json");
    fl_error_t err = {0};
    avro_value_t v;
    const char *omit[] = {
        "added_record", "added_union",  "added_union_str", "added_enum",  "added_array",
        "added_map",    "added_string", "added_int",       "added_long",  "added_float",
        "added_double", "added_bool",   "added_bytes",     "added_fixed", "level"};
    for (size_t i = 0; i < sizeof(omit) / sizeof(omit[0]); i++)
        json_object_del(j, omit[i]);
    json_object_set_new(j, "choice", json_integer(5)); /* bare: the long branch */
    json_object_set_new(j, "note", json_pack("{s:n}", "null"));
    fl_event_type_new_value(type, &v);
    if (fl_codec_from_json(type, j, &v, &err) != 0)
        fail_msg("%s", err.text);
    json_t *out = fl_codec_to_json(&v);
    json_t *want = json_loads(
        "{\"added_record\":{\"team\":\"platform\",\"oncall\":null},\"added_union\":null,"
        "\"added_union_str\":\"first-branch\",\"added_enum\":\"SKIP\",\"added_array\":[1,2,3],"
        "\"added_map\":{\"a\":\"b\"},\"added_string\":\"none\",\"added_int\":-7,"
        "\"added_long\":1099511627776,\"added_float\":2.0,\"added_double\":0.25,"
        "\"added_bool\":true,\"added_bytes\":\"\\u00ff\\u0001A\",\"added_fixed\":\"abcd\","
        "\"level\":null,\"choice\":5,\"note\":null}",
        0, NULL);
    const char *key;
    json_t *wv;
    json_object_foreach(want, key, wv) {
        if (!json_equal(json_object_get(out, key), wv)) {
            char *got = json_dumps(json_object_get(out, key), JSON_ENCODE_ANY);
            fail_msg("%s: got %s", key, got);
        }
    }
    /* The long branch, not string, took 5. */
    avro_value_t choice, branch;
    int disc = -1;
    avro_value_get_by_name(&v, "choice", &choice, NULL);
    avro_value_get_discriminant(&choice, &disc);
    assert_int_equal(disc, 1);
    avro_value_get_current_branch(&choice, &branch);
    assert_int_equal(avro_value_get_type(&branch), AVRO_INT64);
    json_decref(out);
    json_decref(want);
    json_decref(j);
    avro_value_decref(&v);
    fl_codec_destroy(codec);
}

/* ---- codec construction errors ---- */

static void test_codec_new_rejects_bad_schemas(void **state) {
    fl_codec_t *codec = NULL;
    fl_error_t err = {0};
    const char *ok = "{\"type\":\"record\",\"name\":\"A\",\"fields\":[{\"name\":\"x\","
                     "\"type\":\"int\"}]}";

    assert_int_equal(codec_of("a", "{\"type\":", NULL, &codec, &err), FL_ESCHEMA);
    assert_int_equal(codec_of("a", "\"int\"", NULL, &codec, &err), FL_ESCHEMA);
    assert_non_null(strstr(err.text, "must be a record"));
    /* A default that does not fit: a ["null", "string"] union's default must be null. */
    assert_int_equal(codec_of("a",
                              "{\"type\":\"record\",\"name\":\"A\",\"fields\":[{\"name\":\"x\","
                              "\"type\":[\"null\",\"string\"],\"default\":\"x\"}]}",
                              NULL, &codec, &err),
                     FL_ESCHEMA);
    assert_non_null(strstr(err.text, "A.x: bad default"));
    assert_int_equal(codec_of("a",
                              "{\"type\":\"record\",\"name\":\"A\",\"fields\":[{\"name\":\"x\","
                              "\"type\":\"int\",\"default\":4294967296}]}",
                              NULL, &codec, &err),
                     FL_ESCHEMA);
    assert_int_equal(codec_of("a",
                              "{\"type\":\"record\",\"name\":\"A\",\"fields\":[{\"name\":\"e\","
                              "\"type\":{\"type\":\"enum\",\"name\":\"E\",\"symbols\":[\"X\"],"
                              "\"default\":\"Y\"}}]}",
                              NULL, &codec, &err),
                     FL_ESCHEMA);
    assert_int_equal(codec_of("a",
                              "{\"type\":\"record\",\"name\":\"A\",\"fields\":[{\"name\":\"x\","
                              "\"type\":\"Missing\"}]}",
                              NULL, &codec, &err),
                     FL_ESCHEMA);
    assert_non_null(strstr(err.text, "Missing"));

    assert_int_equal(codec_of("a",
                              "{\"type\":\"record\",\"name\":\"A\",\"fields\":[{\"name\":\"x\","
                              "\"type\":[\"null\",[\"int\"]]}]}",
                              NULL, &codec, &err),
                     FL_ESCHEMA);
    assert_non_null(strstr(err.text, "A.x: a union may not contain a union"));

    /* History without a current schema; two types with one schema. */
    fl_schema_src_t orphan[] = {{"a", 0, "a.avsc", ok, strlen(ok)},
                                {"b", 1, "history/b.v1.avsc", ok, strlen(ok)}};
    assert_int_equal(fl_codec_new_from(orphan, 2, &codec, &err), FL_ESCHEMA);
    assert_non_null(strstr(err.text, "no current schema for type 'b'"));
    fl_schema_src_t twins[] = {{"a", 0, "a.avsc", ok, strlen(ok)},
                               {"b", 0, "b.avsc", ok, strlen(ok)}};
    assert_int_equal(fl_codec_new_from(twins, 2, &codec, &err), FL_ESCHEMA);
    assert_non_null(strstr(err.text, "same schema"));
    fl_schema_src_t dup[] = {{"a", 0, "a.avsc", ok, strlen(ok)},
                             {"a", 0, "a2.avsc", ok, strlen(ok)}};
    assert_int_equal(fl_codec_new_from(dup, 2, &codec, &err), FL_ESCHEMA);
    assert_null(codec);

    /* A history identical to the current schema is harmless. */
    fl_schema_src_t same[] = {{"a", 0, "a.avsc", ok, strlen(ok)},
                              {"a", 1, "history/a.v1.avsc", ok, strlen(ok)}};
    assert_int_equal(fl_codec_new_from(same, 2, &codec, NULL), 0);
    fl_codec_destroy(codec);
    fl_codec_destroy(NULL);
}

/* ---- hostile input ---- */

/* Schema for hand-made datums: a string, a [null, int] union, an enum, an array of longs. */
static const char *small_schema =
    "{\"type\":\"record\",\"name\":\"Small\",\"fields\":["
    "{\"name\":\"s\",\"type\":\"string\"},"
    "{\"name\":\"u\",\"type\":[\"null\",\"int\"]},"
    "{\"name\":\"e\",\"type\":{\"type\":\"enum\",\"name\":\"E\",\"symbols\":[\"A\",\"B\"]}},"
    "{\"name\":\"a\",\"type\":{\"type\":\"array\",\"items\":\"long\"}},"
    "{\"name\":\"b\",\"type\":\"boolean\"}]}";

static int decode_bytes(fl_codec_t *codec, const uint8_t *b, size_t len, fl_error_t *err) {
    const fl_event_type_t *type = NULL;
    avro_value_t *v = NULL;
    int rc = fl_codec_decode(codec, b, len, &type, &v, err);
    if (rc == 0)
        assert_non_null(v);
    else
        assert_null(v);
    return rc;
}

/* Builds header + s="hi", u=int 3, e=B, a=[1,2], b=true, then overrides via the callback. */
static size_t small_datum(uint8_t *buf, uint64_t fp, int variant) {
    uint8_t *p = buf + put_header(buf, fp);
    switch (variant) {
    case 1: /* negative string length */
        write_varint(&p, -3);
        return (size_t)(p - buf);
    case 2: /* string length far beyond the buffer */
        write_varint(&p, INT64_C(1) << 40);
        return (size_t)(p - buf);
    case 3: /* varint that never ends */
        for (int i = 0; i < 11; i++)
            *p++ = 0xFF;
        *p++ = 0x01;
        return (size_t)(p - buf);
    default:
        break;
    }
    write_varint(&p, 2);
    *p++ = 'h';
    *p++ = 'i';
    write_varint(&p, variant == 4 ? 2 : variant == 5 ? -1 : 1); /* union index */
    write_varint(&p, 3);
    write_varint(&p, variant == 6 ? 2 : variant == 7 ? -1 : 1); /* enum index */
    if (variant == 8) {
        write_varint(&p, INT64_C(1) << 50); /* array block count */
        return (size_t)(p - buf);
    }
    if (variant == 9) {
        write_varint(&p, INT64_MIN);
        return (size_t)(p - buf);
    }
    if (variant == 10) { /* negative count: 2 items, then the block's byte size */
        write_varint(&p, -2);
        write_varint(&p, 2);
    } else {
        write_varint(&p, 2);
    }
    write_varint(&p, 1);
    write_varint(&p, 2);
    write_varint(&p, 0);
    *p++ = variant == 11 ? 2 : 1; /* boolean */
    if (variant == 12)
        *p++ = 0;        /* trailing byte */
    if (variant == 13) { /* an int beyond int32 in the union */
        p = buf + FL_CODEC_HEADER_LEN + 3;
        write_varint(&p, 1);
        write_varint(&p, INT64_C(1) << 33);
    }
    return (size_t)(p - buf);
}

static void test_decode_rejects_bad_input(void **state) {
    fl_codec_t *codec = NULL;
    fl_error_t err = {0};
    uint8_t buf[256];
    assert_int_equal(codec_of("small", small_schema, NULL, &codec, &err), 0);
    uint64_t fp = fl_event_type_fingerprint(fl_codec_type(codec, "small"));

    size_t len = small_datum(buf, fp, 0);
    assert_int_equal(decode_bytes(codec, buf, len, &err), 0);
    len = small_datum(buf, fp, 10);
    assert_int_equal(decode_bytes(codec, buf, len, &err), 0); /* negative block count is valid */

    /* Header. */
    assert_int_equal(decode_bytes(codec, buf, 0, &err), FL_EDECODE);
    assert_int_equal(decode_bytes(codec, buf, 9, &err), FL_EDECODE);
    assert_non_null(strstr(err.text, "shorter than the 10-byte"));
    len = small_datum(buf, fp, 0);
    buf[1] = 0x02;
    assert_int_equal(decode_bytes(codec, buf, len, &err), FL_EDECODE);
    assert_non_null(strstr(err.text, "bad magic"));
    buf[0] = 0x00;
    buf[1] = 0x01;
    assert_int_equal(decode_bytes(codec, buf, len, &err), FL_EDECODE);
    small_datum(buf, UINT64_C(0x0123456789abcdef), 0);
    assert_int_equal(decode_bytes(codec, buf, len, &err), FL_EFINGERPRINT);
    assert_non_null(strstr(err.text, "0123456789abcdef"));

    /* Datum. */
    static const struct {
        int variant;
        const char *text;
    } bad[] = {
        {1, "negative string length -3"},
        {2, "exceeds the"},
        {3, "bad varint"},
        {4, "union index 2 out of range"},
        {5, "union index -1"},
        {6, "enum index 2 out"},
        {7, "enum index -1"},
        {8, "items is more than"},
        {9, "bad block count"},
        {11, "bad boolean"},
        {12, "1 trailing bytes"},
        {13, "out of int32 range"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        len = small_datum(buf, fp, bad[i].variant);
        const fl_event_type_t *type = NULL;
        avro_value_t *v = NULL;
        int rc = fl_codec_decode(codec, buf, len, &type, &v, &err);
        if (rc != FL_EDECODE || strstr(err.text, bad[i].text) == NULL)
            fail_msg("variant %d: rc %d \"%s\", want FL_EDECODE \"%s\"", bad[i].variant, rc,
                     err.text, bad[i].text);
        assert_non_null(type); /* known type, for dead-lettering */
        assert_null(v);
    }

    /* Every truncation of a good datum; err is optional. */
    len = small_datum(buf, fp, 0);
    for (size_t n = 0; n < len; n++)
        assert_int_equal(decode_bytes(codec, buf, n, n % 2 ? &err : NULL), FL_EDECODE);
    assert_int_equal(decode_bytes(codec, buf, len, &err), 0);
    fl_codec_destroy(codec);
}

static void test_decode_depth_limit(void **state) {
    fl_codec_t *codec = fixture_codec();
    fl_error_t err = {0};
    uint64_t fp = fl_event_type_fingerprint(fl_codec_type(codec, "tree"));
    /* Tree{label "", children [], left: Tree{...}} nested 100000 deep: 3 bytes a level. */
    size_t levels = 100000, len = FL_CODEC_HEADER_LEN + 3 * levels + 8;
    uint8_t *buf = malloc(len);
    uint8_t *p = buf + put_header(buf, fp);
    for (size_t i = 0; i < levels; i++) {
        *p++ = 0; /* label "" */
        *p++ = 0; /* children: empty */
        *p++ = 2; /* left: branch 1 */
    }
    assert_int_equal(decode_bytes(codec, buf, (size_t)(p - buf), &err), FL_EDECODE);
    assert_non_null(strstr(err.text, "nested deeper"));

    /* Zero-byte items cost nothing to claim: many of them are refused, not looped over. */
    p = buf + FL_CODEC_HEADER_LEN;
    *p++ = 0;
    *p++ = 0;
    *p++ = 0;
    write_varint(&p, INT64_C(1) << 40); /* nothing: a block of 2^40 nulls */
    assert_int_equal(decode_bytes(codec, buf, (size_t)(p - buf), &err), FL_EDECODE);
    free(buf);
    fl_codec_destroy(codec);
}

/* xorshift: a fixed sequence, so a failure reproduces. */
static uint64_t rng_state = 0x9E3779B97F4A7C15u;
static uint64_t rng(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void fuzz_one(fl_codec_t *codec, const uint8_t *good, size_t len, int rounds) {
    uint8_t *buf = malloc(len + 16);
    fl_error_t err = {0};
    for (int r = 0; r < rounds; r++) {
        size_t n = len;
        memcpy(buf, good, len);
        int edits = 1 + (int)(rng() % 4);
        for (int e = 0; e < edits; e++) {
            size_t at = FL_CODEC_HEADER_LEN + rng() % (len - FL_CODEC_HEADER_LEN);
            switch (rng() % 4) {
            case 0:
                buf[at] ^= (uint8_t)(1u << (rng() % 8));
                break;
            case 1:
                buf[at] = (uint8_t)rng();
                break;
            case 2:
                buf[at] = (uint8_t)(0x80 | rng()); /* a varint continues */
                break;
            default:
                n = at; /* truncate */
                break;
            }
        }
        int rc = decode_bytes(codec, buf, n, &err);
        if (rc != 0 && rc != FL_EDECODE)
            fail_msg("round %d: rc %d (%s)", r, rc, err.text);
    }
    /* Pure noise after a valid header. */
    for (int r = 0; r < rounds / 4; r++) {
        size_t n = FL_CODEC_HEADER_LEN + rng() % 16;
        memcpy(buf, good, FL_CODEC_HEADER_LEN);
        for (size_t i = FL_CODEC_HEADER_LEN; i < n; i++)
            buf[i] = (uint8_t)rng();
        int rc = decode_bytes(codec, buf, n, &err);
        assert_true(rc == 0 || rc == FL_EDECODE);
    }
    free(buf);
}

static void test_decode_fuzz(void **state) {
    fl_codec_t *codec = fixture_codec();
    json_t *j = test_load_json("tests/fixtures/codec/sample.json");
    size_t len = 0;
    uint8_t *good = encode_json(codec, "sample", j, &len);
    fuzz_one(codec, good, len, 20000);
    free(good);
    json_decref(j);

    j = json_loads("{\"label\":\"r\",\"children\":[{\"label\":\"c\",\"children\":[],"
                   "\"left\":{\"label\":\"l\",\"children\":[]}}],\"nothing\":[null,null]}",
                   0, NULL);
    good = encode_json(codec, "tree", j, &len);
    fuzz_one(codec, good, len, 20000);
    free(good);
    json_decref(j);
    fl_codec_destroy(codec);
}

/* ---- the compiled-in schemas ---- */

static void test_compiled_types_have_fixtures_and_round_trip(void **state) {
    fl_codec_t *codec = NULL;
    fl_error_t err = {0};
    if (fl_codec_new(&codec, &err) != 0)
        fail_msg("compiled-in schemas: %s", err.text);
    size_t n = fl_codec_type_count(codec), missing = 0;
    if (n == 0)
        print_message("no schemas compiled in yet\n");
    for (size_t i = 0; i < n; i++) {
        const fl_event_type_t *type = fl_codec_type_at(codec, i);
        const char *name = fl_event_type_name(type);
        char rel[256];
        snprintf(rel, sizeof(rel), "tests/fixtures/events/%s.json", name);
        json_t *j = test_load_json(rel);
        if (j == NULL) {
            print_error("%s: no fixture %s\n", name, rel);
            missing++;
            continue;
        }
        avro_value_t v;
        fl_event_type_new_value(type, &v);
        if (fl_codec_from_json(type, j, &v, &err) != 0)
            fail_msg("%s: %s", rel, err.text);
        const void *out = NULL;
        size_t len = 0;
        if (fl_codec_encode(codec, type, &v, &out, &len, &err) != 0)
            fail_msg("%s: encode: %s", name, err.text);
        const fl_event_type_t *dtype = NULL;
        avro_value_t *dv = NULL;
        if (fl_codec_decode(codec, out, len, &dtype, &dv, &err) != 0)
            fail_msg("%s: decode: %s", name, err.text);
        assert_ptr_equal(dtype, type);
        assert_true(avro_value_equal(&v, dv));
        json_t *j1 = fl_codec_to_json(&v), *j2 = fl_codec_to_json(dv);
        assert_non_null(j1);
        assert_true(json_equal(j1, j2));
        json_decref(j1);
        json_decref(j2);
        json_decref(j);
        avro_value_decref(&v);
    }

    /* Older versions with a fixture: written with that version, read as the current one. */
    for (size_t i = 0; i < fl_schema_srcs_len; i++) {
        const fl_schema_src_t *src = &fl_schema_srcs[i];
        char rel[256];
        if (src->version == 0)
            continue;
        snprintf(rel, sizeof(rel), "tests/fixtures/events/history/%s.v%d.json", src->type,
                 src->version);
        json_t *j = test_load_json(rel);
        if (j == NULL)
            continue;
        fl_schema_src_t as_current = *src;
        as_current.version = 0;
        fl_codec_t *old = NULL;
        if (fl_codec_new_from(&as_current, 1, &old, &err) != 0)
            fail_msg("%s: %s", src->path, err.text);
        size_t len = 0;
        uint8_t *bytes = encode_json(old, src->type, j, &len);
        const fl_event_type_t *dtype = NULL;
        avro_value_t *dv = NULL;
        if (fl_codec_decode(codec, bytes, len, &dtype, &dv, &err) != 0)
            fail_msg("%s read as current: %s", rel, err.text);
        assert_string_equal(fl_event_type_name(dtype), src->type);
        free(bytes);
        json_decref(j);
        fl_codec_destroy(old);
    }
    fl_codec_destroy(codec);
    if (missing > 0)
        fail_msg("%zu compiled-in type(s) without tests/fixtures/events/<type>.json", missing);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc64_and_canonical_spec_vectors),
        cmocka_unit_test(test_canonical_nested_namespaces),
        cmocka_unit_test(test_canonical_errors),
        cmocka_unit_test(test_roundtrip_sample),
        cmocka_unit_test(test_roundtrip_grows_buffer),
        cmocka_unit_test(test_encode_rejects_other_type),
        cmocka_unit_test(test_to_json_special_values),
        cmocka_unit_test(test_from_json_errors_name_the_field),
        cmocka_unit_test(test_from_json_defaults_and_union_forms),
        cmocka_unit_test(test_codec_new_rejects_bad_schemas),
        cmocka_unit_test(test_decode_rejects_bad_input),
        cmocka_unit_test(test_decode_depth_limit),
        cmocka_unit_test(test_decode_fuzz),
        cmocka_unit_test(test_compiled_types_have_fixtures_and_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
