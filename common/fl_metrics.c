#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* strnlen */
#endif

#include "fl_metrics.h"
#include "fl_mem.h"

#include "fl_err.h"

#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const double fl_metrics_buckets[FL_METRICS_NBUCKETS] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
};

typedef enum { TYPE_COUNTER, TYPE_GAUGE, TYPE_HISTOGRAM } metric_type_t;

typedef struct family family_t;

/* One series: a family plus one label string. The public handle types are this struct under
 * other names, so that a counter handle cannot be passed where a gauge is expected. */
typedef struct series {
    family_t *fam;
    char *labels; /* validated, "" for none */
    uint64_t hash;
    double value;                              /* counter, gauge */
    double sum;                                /* histogram */
    uint64_t count;                            /* histogram */
    uint64_t buckets[FL_METRICS_NBUCKETS + 1]; /* histogram, not cumulative; last is +Inf */
} series_t;

struct family {
    char *name; /* as the caller spells it: the lookup key */
    char *full; /* prefix_name, as rendered */
    char *help; /* NULL when none */
    metric_type_t type;
    uint64_t hash;
    series_t **series; /* registration order */
    size_t nseries, capseries;
};

/* Open addressing, linear probing, power-of-two capacity; the hash is kept in the slot so that
 * growing needs no callback and most mismatches cost no string compare. */
typedef struct {
    uint64_t hash;
    void *item;
} slot_t;

typedef struct {
    slot_t *slots;
    size_t cap, n;
} table_t;

struct fl_metrics {
    char *prefix;      /* "feedloop_" or "" */
    table_t by_name;   /* family_t */
    table_t by_series; /* series_t, keyed by name + labels */
    family_t **fams;   /* registration order */
    size_t nfams, capfams;
};

/* ---- memory ---------------------------------------------------------------------------- */

/* Grow *arr (of elem-sized items) so it can hold need items. */
static void grow(void **arr, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap)
        return;
    size_t ncap = *cap ? *cap * 2 : 8;
    while (ncap < need)
        ncap *= 2;
    *arr = fl_mem_realloc(*arr, ncap * elem);
    *cap = ncap;
}

/* ---- growable text buffer -------------------------------------------------------------- */

typedef struct {
    char *p;
    size_t len, cap;
} sbuf_t;

static void sb_put(sbuf_t *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t ncap = b->cap ? b->cap * 2 : 4096;
        while (ncap < b->len + n + 1)
            ncap *= 2;
        b->p = fl_mem_realloc(b->p, ncap);
        b->cap = ncap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_puts(sbuf_t *b, const char *s) {
    sb_put(b, s, strlen(s));
}

/* ---- hashing and tables ---------------------------------------------------------------- */

static uint64_t fnv1a(uint64_t h, const char *s) {
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ULL;
    }
    return h;
}

#define FNV_BASIS 0xcbf29ce484222325ULL

static uint64_t hash_name(const char *name) {
    return fnv1a(FNV_BASIS, name);
}

static uint64_t hash_series(const char *name, const char *labels) {
    uint64_t h = fnv1a(FNV_BASIS, name);
    h ^= 0xff; /* a byte no name contains, so ("ab","") and ("a","b") differ */
    h *= 0x100000001b3ULL;
    return fnv1a(h, labels);
}

static void table_put(table_t *t, uint64_t hash, void *item);

static void table_grow(table_t *t) {
    table_t old = *t;
    t->cap = old.cap ? old.cap * 2 : 64;
    t->slots = fl_mem_calloc(t->cap, sizeof(*t->slots));
    t->n = 0;
    for (size_t i = 0; i < old.cap; i++)
        if (old.slots[i].item != NULL)
            table_put(t, old.slots[i].hash, old.slots[i].item);
    free(old.slots);
}

static void table_put(table_t *t, uint64_t hash, void *item) {
    if ((t->n + 1) * 4 > t->cap * 3)
        table_grow(t);
    size_t mask = t->cap - 1;
    size_t i = (size_t)hash & mask;
    while (t->slots[i].item != NULL)
        i = (i + 1) & mask;
    t->slots[i].hash = hash;
    t->slots[i].item = item;
    t->n++;
}

static family_t *find_family(const fl_metrics_t *m, uint64_t hash, const char *name) {
    if (m->by_name.cap == 0)
        return NULL;
    size_t mask = m->by_name.cap - 1;
    for (size_t i = (size_t)hash & mask;; i = (i + 1) & mask) {
        const slot_t *sl = &m->by_name.slots[i];
        if (sl->item == NULL)
            return NULL;
        family_t *f = sl->item;
        if (sl->hash == hash && strcmp(f->name, name) == 0)
            return f;
    }
}

static series_t *find_series(const fl_metrics_t *m, uint64_t hash, const char *name,
                             const char *labels) {
    if (m->by_series.cap == 0)
        return NULL;
    size_t mask = m->by_series.cap - 1;
    for (size_t i = (size_t)hash & mask;; i = (i + 1) & mask) {
        const slot_t *sl = &m->by_series.slots[i];
        if (sl->item == NULL)
            return NULL;
        series_t *s = sl->item;
        if (sl->hash == hash && strcmp(s->fam->name, name) == 0 && strcmp(s->labels, labels) == 0)
            return s;
    }
}

/* ---- validation ------------------------------------------------------------------------ */

static bool is_alpha_(int c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_digit(int c) {
    return c >= '0' && c <= '9';
}

static bool valid_metric_name(const char *s) {
    if (!is_alpha_(*s) && *s != ':')
        return false;
    for (s++; *s; s++)
        if (!is_alpha_(*s) && !is_digit(*s) && *s != ':')
            return false;
    return true;
}

/* Length of the label name at s (0 if none). Names starting "__" are reserved by Prometheus. */
static size_t label_name_len(const char *s) {
    if (!is_alpha_(s[0]) || (s[0] == '_' && s[1] == '_'))
        return 0;
    size_t n = 1;
    while (is_alpha_(s[n]) || is_digit(s[n]))
        n++;
    return n;
}

/* Length (1..4) of the well-formed UTF-8 sequence at s, or 0 (overlong forms, surrogates and
 * code points past U+10FFFF are ill-formed). s is NUL-terminated; a NUL fails every
 * continuation test, so this never reads past it. */
static size_t utf8_len(const unsigned char *s) {
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        return (s[1] & 0xc0) == 0x80 ? 2 : 0;
    if (c >= 0xe0 && c <= 0xef) {
        unsigned lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
        if (s[1] < lo || s[1] > hi || (s[2] & 0xc0) != 0x80)
            return 0;
        return 3;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        unsigned lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
        if (s[1] < lo || s[1] > hi || (s[2] & 0xc0) != 0x80 || (s[3] & 0xc0) != 0x80)
            return 0;
        return 4;
    }
    return 0;
}

/* Check a pre-formatted label string: name="value" pairs joined by ',', values escaped (only
 * \\ \" \n), well-formed UTF-8, no repeated name, and no "le" when forbid_le. */
static bool valid_labels(const char *s, bool forbid_le) {
    const char *names[32];
    size_t lens[32];
    size_t n = 0;
    if (*s == '\0')
        return true;
    for (;;) {
        size_t nl = label_name_len(s);
        if (nl == 0 || n == sizeof(names) / sizeof(names[0]))
            return false;
        if (forbid_le && nl == 2 && memcmp(s, "le", 2) == 0)
            return false;
        for (size_t i = 0; i < n; i++)
            if (lens[i] == nl && memcmp(names[i], s, nl) == 0)
                return false;
        names[n] = s;
        lens[n++] = nl;
        s += nl;
        if (s[0] != '=' || s[1] != '"')
            return false;
        s += 2;
        while (*s != '"') {
            if (*s == '\0' || *s == '\n')
                return false;
            if (*s == '\\') {
                if (s[1] != '\\' && s[1] != '"' && s[1] != 'n')
                    return false;
                s += 2;
                continue;
            }
            size_t u = utf8_len((const unsigned char *)s);
            if (u == 0)
                return false;
            s += u;
        }
        s++;
        if (*s == '\0')
            return true;
        if (*s != ',')
            return false;
        s++;
    }
}

/* ---- registry -------------------------------------------------------------------------- */

fl_metrics_t *fl_metrics_new(const char *prefix) {
    if (prefix != NULL && *prefix != '\0' && !valid_metric_name(prefix))
        return NULL;
    fl_metrics_t *m = fl_mem_calloc(1, sizeof(*m));
    if (prefix == NULL || *prefix == '\0') {
        m->prefix = fl_mem_strdup("");
    } else {
        size_t n = strlen(prefix);
        m->prefix = fl_mem_alloc(n + 2);
        memcpy(m->prefix, prefix, n);
        memcpy(m->prefix + n, "_", 2);
    }
    return m;
}

void fl_metrics_destroy(fl_metrics_t *m) {
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->nfams; i++) {
        family_t *f = m->fams[i];
        for (size_t j = 0; j < f->nseries; j++) {
            free(f->series[j]->labels);
            free(f->series[j]);
        }
        free(f->series);
        free(f->name);
        free(f->full);
        free(f->help);
        free(f);
    }
    free(m->fams);
    free(m->by_name.slots);
    free(m->by_series.slots);
    free(m->prefix);
    free(m);
}

/* The series name{labels} of the given type, created on first use; NULL when the name or labels
 * are invalid or the family exists with another type. The hit path is one hash and one probe. */
static series_t *get_series(fl_metrics_t *m, metric_type_t type, const char *name, const char *help,
                            const char *labels) {
    if (m == NULL || name == NULL)
        return NULL;
    if (labels == NULL)
        labels = "";
    uint64_t h = hash_series(name, labels);
    series_t *s = find_series(m, h, name, labels);
    if (s != NULL)
        return s->fam->type == type ? s : NULL;

    if (!valid_metric_name(name))
        return NULL;
    uint64_t fh = hash_name(name);
    family_t *f = find_family(m, fh, name);
    if (f != NULL && f->type != type)
        return NULL;
    if (!valid_labels(labels, type == TYPE_HISTOGRAM))
        return NULL;
    if (f == NULL) {
        f = fl_mem_calloc(1, sizeof(*f));
        f->name = fl_mem_strdup(name);
        size_t pl = strlen(m->prefix), nl = strlen(name);
        f->full = fl_mem_alloc(pl + nl + 1);
        memcpy(f->full, m->prefix, pl);
        memcpy(f->full + pl, name, nl + 1);
        f->help = help != NULL && *help != '\0' ? fl_mem_strdup(help) : NULL;
        f->type = type;
        f->hash = fh;
        table_put(&m->by_name, fh, f);
        grow((void **)&m->fams, &m->capfams, m->nfams + 1, sizeof(*m->fams));
        m->fams[m->nfams++] = f;
    }
    s = fl_mem_calloc(1, sizeof(*s));
    s->fam = f;
    s->labels = fl_mem_strdup(labels);
    s->hash = h;
    table_put(&m->by_series, h, s);
    grow((void **)&f->series, &f->capseries, f->nseries + 1, sizeof(*f->series));
    f->series[f->nseries++] = s;
    return s;
}

fl_metrics_counter_t *fl_metrics_counter(fl_metrics_t *m, const char *name, const char *help,
                                         const char *labels) {
    return (fl_metrics_counter_t *)get_series(m, TYPE_COUNTER, name, help, labels);
}

fl_metrics_gauge_t *fl_metrics_gauge(fl_metrics_t *m, const char *name, const char *help,
                                     const char *labels) {
    return (fl_metrics_gauge_t *)get_series(m, TYPE_GAUGE, name, help, labels);
}

fl_metrics_histogram_t *fl_metrics_histogram(fl_metrics_t *m, const char *name, const char *help,
                                             const char *labels) {
    return (fl_metrics_histogram_t *)get_series(m, TYPE_HISTOGRAM, name, help, labels);
}

void fl_metrics_inc(fl_metrics_counter_t *c, double v) {
    if (c == NULL || !(v >= 0)) /* also rejects NaN */
        return;
    ((series_t *)c)->value += v;
}

void fl_metrics_set(fl_metrics_gauge_t *g, double v) {
    if (g != NULL)
        ((series_t *)g)->value = v;
}

void fl_metrics_add(fl_metrics_gauge_t *g, double v) {
    if (g != NULL)
        ((series_t *)g)->value += v;
}

void fl_metrics_observe(fl_metrics_histogram_t *h, double seconds) {
    if (h == NULL)
        return;
    series_t *s = (series_t *)h;
    size_t i = 0;
    /* NaN compares false everywhere and lands in +Inf only, as the Go client does. */
    while (i < FL_METRICS_NBUCKETS && !(seconds <= fl_metrics_buckets[i]))
        i++;
    s->buckets[i]++;
    s->sum += seconds;
    s->count++;
}

int fl_metrics_counter_add(fl_metrics_t *m, const char *name, const char *help, const char *labels,
                           double v) {
    if (!(v >= 0))
        return FL_EINVAL;
    fl_metrics_counter_t *c = fl_metrics_counter(m, name, help, labels);
    if (c == NULL)
        return FL_EINVAL;
    fl_metrics_inc(c, v);
    return 0;
}

int fl_metrics_gauge_set(fl_metrics_t *m, const char *name, const char *help, const char *labels,
                         double v) {
    fl_metrics_gauge_t *g = fl_metrics_gauge(m, name, help, labels);
    if (g == NULL)
        return FL_EINVAL;
    fl_metrics_set(g, v);
    return 0;
}

int fl_metrics_gauge_add(fl_metrics_t *m, const char *name, const char *help, const char *labels,
                         double v) {
    fl_metrics_gauge_t *g = fl_metrics_gauge(m, name, help, labels);
    if (g == NULL)
        return FL_EINVAL;
    fl_metrics_add(g, v);
    return 0;
}

int fl_metrics_histogram_observe(fl_metrics_t *m, const char *name, const char *help,
                                 const char *labels, double seconds) {
    fl_metrics_histogram_t *h = fl_metrics_histogram(m, name, help, labels);
    if (h == NULL)
        return FL_EINVAL;
    fl_metrics_observe(h, seconds);
    return 0;
}

/* ---- label helper ---------------------------------------------------------------------- */

int fl_metrics_label_append(char *buf, size_t cap, const char *key, const char *value) {
    if (buf == NULL || key == NULL || value == NULL || cap == 0)
        return FL_EINVAL;
    size_t kl = label_name_len(key);
    if (kl == 0 || key[kl] != '\0')
        return FL_EINVAL;
    size_t len = strnlen(buf, cap);
    if (len == cap)
        return FL_EINVAL;

    /* Measure first so that a value that does not fit leaves buf untouched. */
    size_t need = len + (len > 0) + kl + 3; /* [,]key="" */
    for (const unsigned char *p = (const unsigned char *)value; *p;) {
        if (*p == '\\' || *p == '"' || *p == '\n') {
            need += 2;
            p++;
            continue;
        }
        size_t u = utf8_len(p);
        need += u ? u : 3;
        p += u ? u : 1;
    }
    if (need + 1 > cap)
        return FL_EINVAL;

    char *o = buf + len;
    if (len > 0)
        *o++ = ',';
    memcpy(o, key, kl);
    o += kl;
    *o++ = '=';
    *o++ = '"';
    for (const unsigned char *p = (const unsigned char *)value; *p;) {
        if (*p == '\\' || *p == '"' || *p == '\n') {
            *o++ = '\\';
            *o++ = *p == '\n' ? 'n' : (char)*p;
            p++;
            continue;
        }
        size_t u = utf8_len(p);
        if (u == 0) {
            memcpy(o, "\xef\xbf\xbd", 3);
            o += 3;
            p++;
            continue;
        }
        memcpy(o, p, u);
        o += u;
        p += u;
    }
    *o++ = '"';
    *o = '\0';
    return 0;
}

/* ---- rendering ------------------------------------------------------------------------- */

/* A sample value as Prometheus parses it: integers without exponent where exact, otherwise the
 * shortest %g that reads back to the same double, and NaN, +Inf, -Inf spelled its way. */
static void fmt_double(char *out, size_t cap, double v) {
    if (isnan(v)) {
        snprintf(out, cap, "NaN");
    } else if (isinf(v)) {
        snprintf(out, cap, v > 0 ? "+Inf" : "-Inf");
    } else if (v == 0) {
        snprintf(out, cap, "0"); /* also -0 */
    } else if (fabs(v) <= 9007199254740992.0 && v == trunc(v)) {
        snprintf(out, cap, "%.0f", v);
    } else {
        for (int prec = 15; prec <= 17; prec++) {
            snprintf(out, cap, "%.*g", prec, v);
            if (strtod(out, NULL) == v)
                break;
        }
    }
}

static void put_help(sbuf_t *b, const char *help) {
    for (const char *p = help; *p; p++) {
        if (*p == '\\')
            sb_put(b, "\\\\", 2);
        else if (*p == '\n')
            sb_put(b, "\\n", 2);
        else
            sb_put(b, p, 1);
    }
}

/* name{labels[,extra]} value\n, braces only when there is a label. */
static void put_sample(sbuf_t *b, const char *full, const char *suffix, const char *labels,
                       const char *extra, const char *value) {
    sb_puts(b, full);
    sb_puts(b, suffix);
    if (*labels != '\0' || extra != NULL) {
        sb_put(b, "{", 1);
        sb_puts(b, labels);
        if (extra != NULL) {
            if (*labels != '\0')
                sb_put(b, ",", 1);
            sb_puts(b, extra);
        }
        sb_put(b, "}", 1);
    }
    sb_put(b, " ", 1);
    sb_puts(b, value);
    sb_put(b, "\n", 1);
}

static void put_histogram(sbuf_t *b, const family_t *f, const series_t *s) {
    char num[64], le[80];
    uint64_t cum = 0;
    for (size_t i = 0; i <= FL_METRICS_NBUCKETS; i++) {
        cum += s->buckets[i];
        if (i < FL_METRICS_NBUCKETS) {
            fmt_double(num, sizeof(num), fl_metrics_buckets[i]);
            snprintf(le, sizeof(le), "le=\"%s\"", num);
        } else {
            snprintf(le, sizeof(le), "le=\"+Inf\"");
        }
        snprintf(num, sizeof(num), "%" PRIu64, cum);
        put_sample(b, f->full, "_bucket", s->labels, le, num);
    }
    fmt_double(num, sizeof(num), s->sum);
    put_sample(b, f->full, "_sum", s->labels, NULL, num);
    snprintf(num, sizeof(num), "%" PRIu64, s->count);
    put_sample(b, f->full, "_count", s->labels, NULL, num);
}

char *fl_metrics_render(const fl_metrics_t *m, size_t *len) {
    static const char *const type_names[] = {"counter", "gauge", "histogram"};
    sbuf_t b = {0};
    sb_put(&b, "", 0); /* an empty registry still renders as "" */
    for (size_t i = 0; m != NULL && i < m->nfams; i++) {
        const family_t *f = m->fams[i];
        if (f->help != NULL) {
            sb_puts(&b, "# HELP ");
            sb_puts(&b, f->full);
            sb_put(&b, " ", 1);
            put_help(&b, f->help);
            sb_put(&b, "\n", 1);
        }
        sb_puts(&b, "# TYPE ");
        sb_puts(&b, f->full);
        sb_put(&b, " ", 1);
        sb_puts(&b, type_names[f->type]);
        sb_put(&b, "\n", 1);
        for (size_t j = 0; j < f->nseries; j++) {
            const series_t *s = f->series[j];
            if (f->type == TYPE_HISTOGRAM) {
                put_histogram(&b, f, s);
            } else {
                char num[64];
                fmt_double(num, sizeof(num), s->value);
                put_sample(&b, f->full, "", s->labels, NULL, num);
            }
        }
    }
    if (len != NULL)
        *len = b.len;
    return b.p;
}
