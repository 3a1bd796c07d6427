/* test_files: reading the source tree's fixtures from cmocka tests (FL_SOURCE_DIR is set by
 * feedloop_add_unit_test). Include after <cmocka.h>. Header-only: each test is one executable. */
#ifndef FL_TEST_FILES_H
#define FL_TEST_FILES_H

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

/* Contents of $FL_SOURCE_DIR/rel (malloc'd, NUL-terminated), or NULL when the file is absent. */
static inline char *test_slurp(const char *rel) {
    const char *root = getenv("FL_SOURCE_DIR");
    char path[1024];
    assert_non_null(root);
    snprintf(path, sizeof(path), "%s/%s", root, rel);
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    assert_non_null(s);
    assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = '\0';
    fclose(f);
    return s;
}

/* The same, failing the test when the file is absent. */
static inline char *test_slurp_required(const char *rel) {
    char *s = test_slurp(rel);
    if (s == NULL)
        fail_msg("cannot open %s under FL_SOURCE_DIR", rel);
    return s;
}

/* $FL_SOURCE_DIR/rel parsed as JSON (NUL allowed), NULL when absent; a parse error fails. */
static inline json_t *test_load_json(const char *rel) {
    char *text = test_slurp(rel);
    json_error_t jerr;
    if (text == NULL)
        return NULL;
    json_t *j = json_loads(text, JSON_ALLOW_NUL, &jerr);
    if (j == NULL)
        fail_msg("%s:%d: %s", rel, jerr.line, jerr.text);
    free(text);
    return j;
}

/* The same, failing the test when the file is absent. */
static inline json_t *test_load_json_required(const char *rel) {
    json_t *j = test_load_json(rel);
    if (j == NULL)
        fail_msg("cannot open %s under FL_SOURCE_DIR", rel);
    return j;
}

#endif
