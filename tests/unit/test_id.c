/* SHA-1 against FIPS 180 test vectors, and deterministic ids / traceparents. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "fl_id.h"

static void test_sha1_vectors(void **state) {
    (void)state;
    char hex[41];
    /* FIPS 180-2 appendix A vectors, and the empty string (RFC 3174 / widely published). */
    fl_sha1_hex("abc", hex);
    assert_string_equal(hex, "a9993e364706816aba3e25717850c26c9cd0d89d");
    fl_sha1_hex("", hex);
    assert_string_equal(hex, "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    fl_sha1_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", hex);
    assert_string_equal(hex, "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
    /* Redis computes script SHAs the same way: SCRIPT LOAD "return 1" answers this. */
    fl_sha1_hex("return 1", hex);
    assert_string_equal(hex, "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
}

static void test_derive(void **state) {
    (void)state;
    char a[FL_ID_LEN], b[FL_ID_LEN], c[FL_ID_LEN];
    fl_id_derive("input-1", "validation", a);
    fl_id_derive("input-1", "validation", b);
    fl_id_derive("input-1", "dead-letter", c);
    assert_string_equal(a, b);
    assert_string_not_equal(a, c);
    assert_int_equal(strlen(a), 36);
    assert_int_equal(a[14], '5'); /* version 5 layout */
}

static void test_traceparent(void **state) {
    (void)state;
    char tp[56];
    const char *parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    fl_id_traceparent(parent, "in", "step", tp);
    assert_int_equal(strlen(tp), 55);
    assert_memory_equal(tp, parent, 36); /* the trace id is kept */
    assert_string_not_equal(tp + 36, parent + 36);
    fl_id_traceparent("garbage", "in", "step", tp);
    assert_int_equal(strlen(tp), 55);
    assert_memory_equal(tp, "00-", 3);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha1_vectors),
        cmocka_unit_test(test_derive),
        cmocka_unit_test(test_traceparent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
