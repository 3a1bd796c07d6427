/* fl_codec: see fl_codec.h.
 *
 * Two views of each schema live side by side. avro-c's avro_schema_t gives the generic values
 * the workers fill and read, and the fast path for events written with the current schema
 * (avro_value_read / avro_value_write). feedloop's own node tree, parsed from the same JSON with
 * jansson, carries what avro-c does not expose reliably (field defaults, aliases, enum defaults)
 * and drives the binary reader that validates every datum and resolves older writer versions. */
#include "fl_codec.h"
#include "fl_mem.h"
#include "fl_schemas.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

/* Nesting limit for schemas and for data. A recursive schema lets garbage input nest as deep
 * as it has bytes; this keeps the reader (and avro_value_read after it) off the stack limit. */
#define FL_CODEC_MAX_DEPTH 64

/* Items whose encoding takes zero bytes (null, empty records) cost no input, so a hostile block
 * count could make the reader loop billions of times. Each datum may hold at most its length
 * plus this many array/map items. */
#define FL_CODEC_MAX_FREE_ITEMS 65536

#define FL_CRC64_EMPTY UINT64_C(0xc15d213aa4d7a795)

/* ---- memory: out of memory aborts ---- */

static char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xasprintf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        abort();
    char *s = fl_mem_alloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

/* ---- CRC-64-AVRO ---- */

uint64_t fl_crc64_avro(const void *buf, size_t len) {
    /* Bit at a time rather than the spec's 256-entry table: fingerprints are only computed when
     * schemas load, and this needs no table initialisation (so no thread-safety question). It is
     * the same function: the table entry for a byte is these eight steps applied to it. */
    const uint8_t *p = buf;
    uint64_t fp = FL_CRC64_EMPTY;
    for (size_t i = 0; i < len; i++) {
        fp ^= p[i];
        for (int bit = 0; bit < 8; bit++)
            fp = (fp >> 1) ^ (FL_CRC64_EMPTY & (0 - (fp & 1)));
    }
    return fp;
}

/* ---- names (shared by the canonical form and the schema parser) ---- */

static const char *const primitive_names[] = {"null",  "boolean", "int",   "long",
                                              "float", "double",  "bytes", "string"};

static int primitive_index(const char *s) {
    for (size_t i = 0; i < sizeof(primitive_names) / sizeof(primitive_names[0]); i++)
        if (strcmp(s, primitive_names[i]) == 0)
            return (int)i;
    return -1;
}

static bool is_named_kind(const char *type) {
    return strcmp(type, "record") == 0 || strcmp(type, "error") == 0 || strcmp(type, "enum") == 0 ||
           strcmp(type, "fixed") == 0;
}

/* Full name of a name written in namespace ns: a dotted name is already full. */
static char *full_name(const char *name, const char *ns) {
    if (strchr(name, '.') != NULL || ns == NULL || ns[0] == '\0')
        return fl_mem_strdup(name);
    return xasprintf("%s.%s", ns, name);
}

/* Namespace a named type defines for the names inside it. Returned string is malloc'd. */
static char *namespace_of(const char *fullname) {
    const char *dot = strrchr(fullname, '.');
    if (dot == NULL)
        return fl_mem_strdup("");
    size_t n = (size_t)(dot - fullname);
    char *ns = fl_mem_alloc(n + 1);
    memcpy(ns, fullname, n);
    ns[n] = '\0';
    return ns;
}

/* Full name of a named type definition: "name" may be dotted, else "namespace", else the
 * enclosing namespace. */
static char *definition_name(json_t *obj, const char *enclosing_ns) {
    const char *name = json_string_value(json_object_get(obj, "name"));
    json_t *ns = json_object_get(obj, "namespace");
    if (name == NULL)
        return NULL;
    if (strchr(name, '.') != NULL)
        return fl_mem_strdup(name);
    if (json_is_string(ns))
        return full_name(name, json_string_value(ns));
    return full_name(name, enclosing_ns);
}

typedef struct name_list {
    char **names;
    void **items;
    size_t len, cap;
} name_list_t;

static void name_list_add(name_list_t *l, char *name, void *item) {
    if (l->len == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 16;
        l->names = fl_mem_realloc(l->names, l->cap * sizeof(*l->names));
        l->items = fl_mem_realloc(l->items, l->cap * sizeof(*l->items));
    }
    l->names[l->len] = name;
    l->items[l->len] = item;
    l->len++;
}

static ssize_t name_list_find(const name_list_t *l, const char *name) {
    for (size_t i = 0; i < l->len; i++)
        if (strcmp(l->names[i], name) == 0)
            return (ssize_t)i;
    return -1;
}

/* Reference to a named type from namespace ns: the name in ns first, then as written (a name
 * in the null namespace referenced from inside a namespace). */
static ssize_t name_list_resolve(const name_list_t *l, const char *name, const char *ns) {
    char *full = full_name(name, ns);
    ssize_t i = name_list_find(l, full);
    free(full);
    if (i < 0)
        i = name_list_find(l, name);
    return i;
}

static void name_list_fini(name_list_t *l, bool free_names) {
    if (free_names)
        for (size_t i = 0; i < l->len; i++)
            free(l->names[i]);
    free(l->names);
    free(l->items);
}

/* ---- Parsing Canonical Form ---- */

static json_t *canon(json_t *s, const char *ns, name_list_t *defined, int depth, fl_error_t *err);

static json_t *canon_fail(fl_error_t *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static json_t *canon_fail(fl_error_t *err, const char *fmt, ...) {
    if (err != NULL) {
        err->code = FL_ESCHEMA;
        err->retriable = false;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->text, sizeof(err->text), fmt, ap);
        va_end(ap);
    }
    return NULL;
}

static json_t *canon_named(json_t *s, const char *type, const char *ns, name_list_t *defined,
                           int depth, fl_error_t *err) {
    json_t *c = NULL;
    bool ok = false;
    char *name = definition_name(s, ns);
    char *inner_ns = NULL;
    if (name == NULL)
        return canon_fail(err, "%s without a string \"name\"", type);
    if (name_list_find(defined, name) >= 0) {
        canon_fail(err, "%s redefined", name);
        goto out;
    }
    name_list_add(defined, fl_mem_strdup(name), NULL);
    inner_ns = namespace_of(name);

    /* [ORDER] name, type, fields, symbols, items, values, size. */
    c = json_object();
    json_object_set_new(c, "name", json_string(name));
    json_object_set_new(c, "type", json_string(type));
    if (strcmp(type, "record") == 0 || strcmp(type, "error") == 0) {
        json_t *fields = json_object_get(s, "fields");
        if (!json_is_array(fields)) {
            canon_fail(err, "%s: \"fields\" is not an array", name);
            goto out;
        }
        json_t *cfields = json_array();
        json_object_set_new(c, "fields", cfields);
        size_t i;
        json_t *f;
        json_array_foreach(fields, i, f) {
            const char *fname = json_string_value(json_object_get(f, "name"));
            json_t *ftype = json_object_get(f, "type");
            if (fname == NULL || ftype == NULL) {
                canon_fail(err, "%s: field %zu needs \"name\" and \"type\"", name, i);
                goto out;
            }
            json_t *ct = canon(ftype, inner_ns, defined, depth + 1, err);
            if (ct == NULL)
                goto out;
            json_t *cf = json_object();
            json_object_set_new(cf, "name", json_string(fname));
            json_object_set_new(cf, "type", ct);
            json_array_append_new(cfields, cf);
        }
    } else if (strcmp(type, "enum") == 0) {
        json_t *symbols = json_object_get(s, "symbols");
        if (!json_is_array(symbols)) {
            canon_fail(err, "%s: \"symbols\" is not an array", name);
            goto out;
        }
        json_object_set_new(c, "symbols", json_deep_copy(symbols));
    } else {
        /* [INTEGERS] a size may arrive as a quoted or zero-padded number. */
        json_t *size = json_object_get(s, "size");
        json_int_t n = -1;
        if (json_is_integer(size)) {
            n = json_integer_value(size);
        } else if (json_is_string(size)) {
            const char *t = json_string_value(size);
            char *end = NULL;
            long long v = strtoll(t, &end, 10);
            if (t[0] >= '0' && t[0] <= '9' && *end == '\0')
                n = v;
        }
        if (n < 0) {
            canon_fail(err, "%s: fixed \"size\" is not a non-negative integer", name);
            goto out;
        }
        json_object_set_new(c, "size", json_integer(n));
    }
    ok = true;
out:
    if (!ok) {
        json_decref(c);
        c = NULL;
    }
    free(name);
    free(inner_ns);
    return c;
}

static json_t *canon(json_t *s, const char *ns, name_list_t *defined, int depth, fl_error_t *err) {
    if (depth > FL_CODEC_MAX_DEPTH)
        return canon_fail(err, "schema nested deeper than %d", FL_CODEC_MAX_DEPTH);
    if (json_is_string(s)) {
        const char *t = json_string_value(s);
        if (primitive_index(t) >= 0)
            return json_string(t);
        ssize_t i = name_list_resolve(defined, t, ns);
        if (i < 0)
            return canon_fail(err, "unknown type \"%s\"", t);
        /* [FULLNAMES] */
        return json_string(defined->names[i]);
    }
    if (json_is_array(s)) {
        json_t *out = json_array();
        size_t i;
        json_t *b;
        json_array_foreach(s, i, b) {
            json_t *cb = canon(b, ns, defined, depth + 1, err);
            if (cb == NULL) {
                json_decref(out);
                return NULL;
            }
            json_array_append_new(out, cb);
        }
        return out;
    }
    if (!json_is_object(s))
        return canon_fail(err, "a schema must be a string, an array or an object");

    json_t *type = json_object_get(s, "type");
    if (!json_is_string(type)) {
        if (json_is_object(type) || json_is_array(type))
            return canon(type, ns, defined, depth + 1, err);
        return canon_fail(err, "schema object without a \"type\"");
    }
    const char *t = json_string_value(type);
    /* [PRIMITIVES] {"type":"int", ...} is "int"; [STRIP] drops logicalType and the rest. */
    if (primitive_index(t) >= 0)
        return json_string(t);
    if (is_named_kind(t))
        return canon_named(s, t, ns, defined, depth, err);
    if (strcmp(t, "array") == 0 || strcmp(t, "map") == 0) {
        const char *key = t[0] == 'a' ? "items" : "values";
        json_t *sub = json_object_get(s, key);
        if (sub == NULL)
            return canon_fail(err, "%s without \"%s\"", t, key);
        json_t *csub = canon(sub, ns, defined, depth + 1, err);
        if (csub == NULL)
            return NULL;
        json_t *out = json_object();
        json_object_set_new(out, "type", json_string(t));
        json_object_set_new(out, key, csub);
        return out;
    }
    /* {"type": "SomeRecord"}: a reference written as an object. */
    return canon(type, ns, defined, depth + 1, err);
}

static int canonical_of(json_t *schema, char **out, fl_error_t *err) {
    name_list_t defined = {0};
    int rc = 0;
    json_t *c = canon(schema, "", &defined, 0, err);
    if (c == NULL) {
        rc = FL_ESCHEMA;
        goto out;
    }
    /* [WHITESPACE] compact; [STRINGS] jansson writes UTF-8, escaping only what JSON requires. */
    *out = json_dumps(c, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
    if (*out == NULL)
        abort();
out:
    json_decref(c);
    name_list_fini(&defined, true);
    return rc;
}

int fl_schema_canonical_form(const char *schema_json, char **out, fl_error_t *err) {
    json_error_t jerr;
    json_t *doc = json_loads(schema_json, JSON_DECODE_ANY, &jerr);
    if (doc == NULL)
        return fl_error_set(err, FL_EPARSE, false, "schema JSON, line %d: %s", jerr.line,
                            jerr.text);
    int rc = canonical_of(doc, out, err);
    json_decref(doc);
    return rc;
}

/* ---- schema tree ---- */

typedef enum {
    K_NULL,
    K_BOOLEAN,
    K_INT,
    K_LONG,
    K_FLOAT,
    K_DOUBLE,
    K_BYTES,
    K_STRING, /* primitives in primitive_names order */
    K_RECORD,
    K_ENUM,
    K_ARRAY,
    K_MAP,
    K_UNION,
    K_FIXED,
} kind_t;

static const char *const kind_names[] = {"null",   "boolean", "int",    "long",   "float",
                                         "double", "bytes",   "string", "record", "enum",
                                         "array",  "map",     "union",  "fixed"};

typedef struct node node_t;

typedef struct field {
    char *name;
    char **aliases;
    size_t n_aliases;
    node_t *type;
    json_t *def; /* borrowed from the schema document; NULL: no default */
} field_t;

/* How a writer record reads into a reader record, worked out when the codec loads. */
typedef struct plan {
    const node_t *reader;
    int *w2r;         /* per writer field: reader field index, or -1 to skip */
    size_t *defaults; /* reader fields the writer lacks: filled from their default */
    size_t n_defaults;
    enum { PLAN_PENDING, PLAN_OK, PLAN_FAILED } status; /* pending: being checked (recursion) */
    struct plan *next; /* a writer record node may meet several reader nodes */
} plan_t;

struct node {
    kind_t kind;
    char *fullname;   /* named kinds */
    const char *name; /* unqualified, points into fullname */
    char **aliases;   /* named kinds: full names */
    size_t n_aliases;
    field_t *fields; /* record */
    size_t n_fields;
    char **symbols; /* enum */
    size_t n_symbols;
    int default_symbol; /* enum: index, -1 when none */
    node_t *items;      /* array items, map values */
    node_t **branches;  /* union */
    size_t n_branches;
    size_t size;   /* fixed */
    plan_t *plans; /* writer records only */
    node_t *next_alloc;
};

typedef struct schema {
    json_t *doc;
    node_t *root;
    node_t *nodes; /* every node, for freeing (named types may form cycles) */
} schema_t;

typedef struct sparse {
    schema_t *sch;
    name_list_t named;
    fl_error_t *err;
} sparse_t;

static node_t *node_new(sparse_t *p, kind_t kind) {
    node_t *n = fl_mem_calloc(1, sizeof(*n));
    n->kind = kind;
    n->default_symbol = -1;
    n->next_alloc = p->sch->nodes;
    p->sch->nodes = n;
    return n;
}

static void node_free(node_t *n) {
    free(n->fullname);
    for (size_t i = 0; i < n->n_aliases; i++)
        free(n->aliases[i]);
    free(n->aliases);
    for (size_t i = 0; i < n->n_fields; i++) {
        free(n->fields[i].name);
        for (size_t j = 0; j < n->fields[i].n_aliases; j++)
            free(n->fields[i].aliases[j]);
        free(n->fields[i].aliases);
    }
    free(n->fields);
    for (size_t i = 0; i < n->n_symbols; i++)
        free(n->symbols[i]);
    free(n->symbols);
    free(n->branches);
    while (n->plans != NULL) {
        plan_t *pl = n->plans;
        n->plans = pl->next;
        free(pl->w2r);
        free(pl->defaults);
        free(pl);
    }
    free(n);
}

static void schema_free(schema_t *sch) {
    if (sch == NULL)
        return;
    while (sch->nodes != NULL) {
        node_t *n = sch->nodes;
        sch->nodes = n->next_alloc;
        node_free(n);
    }
    json_decref(sch->doc);
    free(sch);
}

static node_t *sparse_fail(sparse_t *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static node_t *sparse_fail(sparse_t *p, const char *fmt, ...) {
    if (p->err != NULL) {
        p->err->code = FL_ESCHEMA;
        p->err->retriable = false;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->err->text, sizeof(p->err->text), fmt, ap);
        va_end(ap);
    }
    return NULL;
}

/* Strings of a JSON array as a malloc'd vector; names are made full in namespace ns when
 * ns != NULL. Returns false when j is present but not an array of strings. */
static bool string_vector(json_t *j, const char *ns, char ***out, size_t *n) {
    *out = NULL;
    *n = 0;
    if (j == NULL)
        return true;
    if (!json_is_array(j))
        return false;
    size_t len = json_array_size(j);
    for (size_t i = 0; i < len; i++)
        if (!json_is_string(json_array_get(j, i)))
            return false;
    *out = fl_mem_calloc(len, sizeof(char *));
    for (size_t i = 0; i < len; i++) {
        const char *s = json_string_value(json_array_get(j, i));
        (*out)[i] = ns != NULL ? full_name(s, ns) : fl_mem_strdup(s);
    }
    *n = len;
    return true;
}

static node_t *parse_node(sparse_t *p, json_t *j, const char *ns, int depth);

static node_t *parse_named(sparse_t *p, json_t *j, const char *type, const char *ns, int depth) {
    char *fullname = definition_name(j, ns);
    if (fullname == NULL)
        return sparse_fail(p, "%s without a string \"name\"", type);
    if (name_list_find(&p->named, fullname) >= 0) {
        sparse_fail(p, "%s redefined", fullname);
        free(fullname);
        return NULL;
    }
    kind_t kind = strcmp(type, "enum") == 0    ? K_ENUM
                  : strcmp(type, "fixed") == 0 ? K_FIXED
                                               : K_RECORD; /* "record" or "error" */
    node_t *n = node_new(p, kind);
    n->fullname = fullname;
    const char *dot = strrchr(fullname, '.');
    n->name = dot ? dot + 1 : fullname;
    /* Registered before the fields so a record may refer to itself. */
    name_list_add(&p->named, fullname, n);

    char *inner_ns = namespace_of(fullname);
    node_t *out = NULL;
    if (!string_vector(json_object_get(j, "aliases"), inner_ns, &n->aliases, &n->n_aliases)) {
        sparse_fail(p, "%s: \"aliases\" is not an array of strings", fullname);
        goto out;
    }
    if (kind == K_RECORD) {
        json_t *fields = json_object_get(j, "fields");
        if (!json_is_array(fields)) {
            sparse_fail(p, "%s: \"fields\" is not an array", fullname);
            goto out;
        }
        n->n_fields = json_array_size(fields);
        n->fields = fl_mem_calloc(n->n_fields, sizeof(field_t));
        for (size_t i = 0; i < n->n_fields; i++) {
            json_t *f = json_array_get(fields, i);
            field_t *fd = &n->fields[i];
            const char *fname = json_string_value(json_object_get(f, "name"));
            if (fname == NULL) {
                sparse_fail(p, "%s: field %zu without a string \"name\"", fullname, i);
                goto out;
            }
            fd->name = fl_mem_strdup(fname);
            for (size_t k = 0; k < i; k++)
                if (strcmp(n->fields[k].name, fname) == 0) {
                    sparse_fail(p, "%s: field '%s' defined twice", fullname, fname);
                    goto out;
                }
            if (!string_vector(json_object_get(f, "aliases"), NULL, &fd->aliases, &fd->n_aliases)) {
                sparse_fail(p, "%s.%s: \"aliases\" is not an array of strings", fullname, fname);
                goto out;
            }
            json_t *ftype = json_object_get(f, "type");
            if (ftype == NULL) {
                sparse_fail(p, "%s.%s: no \"type\"", fullname, fname);
                goto out;
            }
            fd->type = parse_node(p, ftype, inner_ns, depth + 1);
            if (fd->type == NULL) {
                fl_error_prefix(p->err, "%s.%s: ", fullname, fname);
                goto out;
            }
            fd->def = json_object_get(f, "default");
        }
    } else if (kind == K_ENUM) {
        if (!string_vector(json_object_get(j, "symbols"), NULL, &n->symbols, &n->n_symbols)) {
            sparse_fail(p, "%s: \"symbols\" is not an array of strings", fullname);
            goto out;
        }
        if (n->n_symbols > INT32_MAX) {
            sparse_fail(p, "%s: too many symbols", fullname);
            goto out;
        }
        json_t *def = json_object_get(j, "default");
        if (def != NULL) {
            for (size_t i = 0; i < n->n_symbols; i++)
                if (json_is_string(def) && strcmp(n->symbols[i], json_string_value(def)) == 0)
                    n->default_symbol = (int)i;
            if (n->default_symbol < 0) {
                sparse_fail(p, "%s: \"default\" is not one of the symbols", fullname);
                goto out;
            }
        }
    } else {
        json_t *size = json_object_get(j, "size");
        if (!json_is_integer(size) || json_integer_value(size) < 0 ||
            json_integer_value(size) > INT32_MAX) {
            sparse_fail(p, "%s: fixed \"size\" is not a non-negative integer", fullname);
            goto out;
        }
        n->size = (size_t)json_integer_value(size);
    }
    out = n;
out:
    free(inner_ns);
    return out;
}

static node_t *parse_node(sparse_t *p, json_t *j, const char *ns, int depth) {
    if (depth > FL_CODEC_MAX_DEPTH)
        return sparse_fail(p, "schema nested deeper than %d", FL_CODEC_MAX_DEPTH);
    if (json_is_string(j)) {
        const char *t = json_string_value(j);
        int prim = primitive_index(t);
        if (prim >= 0)
            return node_new(p, (kind_t)prim);
        ssize_t i = name_list_resolve(&p->named, t, ns);
        if (i < 0)
            return sparse_fail(p, "unknown type \"%s\"", t);
        return p->named.items[i];
    }
    if (json_is_array(j)) {
        node_t *n = node_new(p, K_UNION);
        n->n_branches = json_array_size(j);
        n->branches = fl_mem_calloc(n->n_branches, sizeof(node_t *));
        for (size_t i = 0; i < n->n_branches; i++) {
            n->branches[i] = parse_node(p, json_array_get(j, i), ns, depth + 1);
            if (n->branches[i] == NULL)
                return NULL;
            if (n->branches[i]->kind == K_UNION)
                return sparse_fail(p, "a union may not contain a union");
        }
        return n;
    }
    if (!json_is_object(j))
        return sparse_fail(p, "a schema must be a string, an array or an object");
    json_t *type = json_object_get(j, "type");
    if (!json_is_string(type)) {
        if (json_is_object(type) || json_is_array(type))
            return parse_node(p, type, ns, depth + 1);
        return sparse_fail(p, "schema object without a \"type\"");
    }
    const char *t = json_string_value(type);
    int prim = primitive_index(t);
    if (prim >= 0)
        return node_new(p, (kind_t)prim);
    if (is_named_kind(t))
        return parse_named(p, j, t, ns, depth);
    if (strcmp(t, "array") == 0 || strcmp(t, "map") == 0) {
        const char *key = t[0] == 'a' ? "items" : "values";
        json_t *sub = json_object_get(j, key);
        if (sub == NULL)
            return sparse_fail(p, "%s without \"%s\"", t, key);
        node_t *n = node_new(p, t[0] == 'a' ? K_ARRAY : K_MAP);
        n->items = parse_node(p, sub, ns, depth + 1);
        return n->items != NULL ? n : NULL;
    }
    return parse_node(p, type, ns, depth + 1);
}

/* ---- JSON -> value (also checks defaults at load time, with value == NULL) ---- */

typedef struct jctx {
    fl_error_t *err;
    bool defaults; /* filling a schema default: unions take their first branch */
    char path[256];
    size_t plen;
} jctx_t;

static int jfail(jctx_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int jfail(jctx_t *c, const char *fmt, ...) {
    if (c->err == NULL)
        return FL_EPARSE;
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (c->plen > 0)
        return fl_error_set(c->err, FL_EPARSE, false, "%s: %s", c->path, msg);
    return fl_error_set(c->err, FL_EPARSE, false, "%s", msg);
}

/* Appends to the path; returns the old length to restore. */
static size_t jpush(jctx_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static size_t jpush(jctx_t *c, const char *fmt, ...) {
    size_t old = c->plen;
    if (old < sizeof(c->path) - 1) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(c->path + old, sizeof(c->path) - old, fmt, ap);
        va_end(ap);
        c->plen = n < 0 ? old : old + (size_t)n;
        if (c->plen > sizeof(c->path) - 1)
            c->plen = sizeof(c->path) - 1;
    }
    return old;
}

static void jpop(jctx_t *c, size_t old) {
    c->plen = old;
    c->path[old] = '\0';
}

static const char *json_kind(const json_t *j) {
    switch (json_typeof(j)) {
    case JSON_OBJECT:
        return "object";
    case JSON_ARRAY:
        return "array";
    case JSON_STRING:
        return "string";
    case JSON_INTEGER:
        return "integer";
    case JSON_REAL:
        return "real";
    case JSON_TRUE:
    case JSON_FALSE:
        return "boolean";
    case JSON_NULL:
        return "null";
    }
    return "?";
}

static int avro_fail(jctx_t *c, const char *what) {
    return jfail(c, "avro %s: %s", what, avro_strerror());
}

/* Avro's JSON encoding of bytes and fixed: one code point U+0000..U+00FF per byte. Decodes into
 * a malloc'd buffer. */
static int latin1_decode(jctx_t *c, json_t *j, uint8_t **out, size_t *len) {
    const uint8_t *s = (const uint8_t *)json_string_value(j);
    size_t n = json_string_length(j);
    uint8_t *b = fl_mem_alloc(n);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < 0x80) {
            b[k++] = s[i];
        } else if ((s[i] == 0xC2 || s[i] == 0xC3) && i + 1 < n) {
            b[k++] = (uint8_t)(((s[i] & 0x03) << 6) | (s[i + 1] & 0x3F));
            i++;
        } else {
            free(b);
            return jfail(c, "bytes are written one character U+0000..U+00FF per byte");
        }
    }
    *out = b;
    *len = k;
    return 0;
}

static json_t *latin1_encode(const uint8_t *b, size_t n) {
    char *s = fl_mem_alloc(2 * n + 1);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (b[i] < 0x80) {
            s[k++] = (char)b[i];
        } else {
            s[k++] = (char)(0xC0 | (b[i] >> 6));
            s[k++] = (char)(0x80 | (b[i] & 0x3F));
        }
    }
    json_t *j = json_stringn_nocheck(s, k);
    free(s);
    if (j == NULL)
        abort();
    return j;
}

/* Name a union branch goes by in Avro's JSON encoding ({"<name>": value}). */
static const char *branch_name(const node_t *b) {
    return b->fullname != NULL ? b->fullname : kind_names[b->kind];
}

static int json_to_value(jctx_t *c, const node_t *n, json_t *j, avro_value_t *v, int depth);

/* One record field: its JSON member, else the field's default. */
static int json_to_field(jctx_t *c, const field_t *f, json_t *fj, avro_value_t *fv, int depth) {
    if (fj != NULL)
        return json_to_value(c, f->type, fj, fv, depth);
    if (f->def == NULL)
        return jfail(c, "missing required field");
    /* A default is Avro JSON, where a union's value belongs to its first branch. */
    bool was_defaults = c->defaults;
    c->defaults = true;
    int rc = json_to_value(c, f->type, f->def, fv, depth);
    c->defaults = was_defaults;
    return rc;
}

static int json_to_record(jctx_t *c, const node_t *n, json_t *j, avro_value_t *v, int depth) {
    if (!json_is_object(j))
        return jfail(c, "expected object (%s), got %s", n->fullname, json_kind(j));
    const char *key;
    json_t *jv;
    json_object_foreach(j, key, jv) {
        size_t i = 0;
        while (i < n->n_fields && strcmp(n->fields[i].name, key) != 0)
            i++;
        if (i == n->n_fields)
            return jfail(c, "unknown field '%s'", key);
    }
    for (size_t i = 0; i < n->n_fields; i++) {
        const field_t *f = &n->fields[i];
        avro_value_t fv;
        size_t old = jpush(c, c->plen ? ".%s" : "%s", f->name);
        if (v != NULL && avro_value_get_by_index(v, i, &fv, NULL) != 0)
            return avro_fail(c, "record field");
        int rc = json_to_field(c, f, json_object_get(j, f->name), v ? &fv : NULL, depth + 1);
        if (rc != 0)
            return rc; /* the path stays in the message */
        jpop(c, old);
    }
    return 0;
}

static int json_to_union(jctx_t *c, const node_t *n, json_t *j, avro_value_t *v, int depth) {
    ssize_t pick = -1;
    if (n->n_branches == 0)
        return jfail(c, "empty union has no values");
    if (c->defaults) {
        /* A union's default is a value of its first branch. */
        pick = 0;
    } else if (json_is_null(j)) {
        for (size_t i = 0; i < n->n_branches && pick < 0; i++)
            if (n->branches[i]->kind == K_NULL)
                pick = (ssize_t)i;
    } else if (json_is_object(j) && json_object_size(j) == 1) {
        /* Avro's JSON form {"<branch name>": value}. */
        const char *key = json_object_iter_key(json_object_iter(j));
        for (size_t i = 0; i < n->n_branches && pick < 0; i++) {
            const node_t *b = n->branches[i];
            if (strcmp(key, branch_name(b)) == 0 || (b->name && strcmp(key, b->name) == 0)) {
                pick = (ssize_t)i;
                j = json_object_iter_value(json_object_iter(j));
            }
        }
    }
    if (pick < 0 && !json_is_null(j)) {
        /* A bare value: the first non-null branch that takes it. */
        jctx_t probe = {.err = NULL, .defaults = false};
        size_t candidates = 0, last = 0;
        for (size_t i = 0; i < n->n_branches && pick < 0; i++) {
            if (n->branches[i]->kind == K_NULL)
                continue;
            candidates++;
            last = i;
            if (json_to_value(&probe, n->branches[i], j, NULL, depth + 1) == 0)
                pick = (ssize_t)i;
        }
        /* With a single candidate its own complaint is the clearest message. */
        if (pick < 0 && candidates == 1)
            pick = (ssize_t)last;
    }
    if (pick < 0) {
        char names[160] = "";
        size_t len = 0;
        for (size_t i = 0; i < n->n_branches && len < sizeof(names); i++)
            len += (size_t)snprintf(names + len, sizeof(names) - len, "%s%s", i ? ", " : "",
                                    branch_name(n->branches[i]));
        return jfail(c, "no branch of union [%s] accepts %s", names, json_kind(j));
    }
    avro_value_t bv;
    if (v != NULL && avro_value_set_branch(v, (int)pick, &bv) != 0)
        return avro_fail(c, "union branch");
    return json_to_value(c, n->branches[pick], j, v ? &bv : NULL, depth + 1);
}

static int json_to_value(jctx_t *c, const node_t *n, json_t *j, avro_value_t *v, int depth) {
    if (depth > FL_CODEC_MAX_DEPTH)
        return jfail(c, "nested deeper than %d", FL_CODEC_MAX_DEPTH);
    switch (n->kind) {
    case K_NULL:
        if (!json_is_null(j))
            return jfail(c, "expected null, got %s", json_kind(j));
        if (v != NULL && avro_value_set_null(v) != 0)
            return avro_fail(c, "null");
        return 0;
    case K_BOOLEAN:
        if (!json_is_boolean(j))
            return jfail(c, "expected boolean, got %s", json_kind(j));
        if (v != NULL && avro_value_set_boolean(v, json_is_true(j)) != 0)
            return avro_fail(c, "boolean");
        return 0;
    case K_INT: {
        if (!json_is_integer(j))
            return jfail(c, "expected integer, got %s", json_kind(j));
        json_int_t x = json_integer_value(j);
        if (x < INT32_MIN || x > INT32_MAX)
            return jfail(c, "integer %" JSON_INTEGER_FORMAT " out of int32 range", x);
        if (v != NULL && avro_value_set_int(v, (int32_t)x) != 0)
            return avro_fail(c, "int");
        return 0;
    }
    case K_LONG:
        if (!json_is_integer(j))
            return jfail(c, "expected integer, got %s", json_kind(j));
        if (v != NULL && avro_value_set_long(v, json_integer_value(j)) != 0)
            return avro_fail(c, "long");
        return 0;
    case K_FLOAT:
    case K_DOUBLE:
        if (!json_is_number(j))
            return jfail(c, "expected number, got %s", json_kind(j));
        if (v == NULL)
            return 0;
        if (n->kind == K_FLOAT ? avro_value_set_float(v, (float)json_number_value(j))
                               : avro_value_set_double(v, json_number_value(j)))
            return avro_fail(c, kind_names[n->kind]);
        return 0;
    case K_STRING:
        if (!json_is_string(j))
            return jfail(c, "expected string, got %s", json_kind(j));
        /* avro-c's string sizes count the terminating NUL, which jansson provides. */
        if (v != NULL &&
            avro_value_set_string_len(v, json_string_value(j), json_string_length(j) + 1) != 0)
            return avro_fail(c, "string");
        return 0;
    case K_BYTES:
    case K_FIXED: {
        if (!json_is_string(j))
            return jfail(c, "expected string (%s), got %s", kind_names[n->kind], json_kind(j));
        uint8_t *b = NULL;
        size_t len = 0;
        int rc = latin1_decode(c, j, &b, &len);
        if (rc != 0)
            return rc;
        if (n->kind == K_FIXED && len != n->size)
            rc = jfail(c, "fixed %s takes %zu bytes, got %zu", n->fullname, n->size, len);
        else if (v != NULL && (n->kind == K_BYTES ? avro_value_set_bytes(v, b, len)
                                                  : avro_value_set_fixed(v, b, len)) != 0)
            rc = avro_fail(c, kind_names[n->kind]);
        free(b);
        return rc;
    }
    case K_ENUM: {
        if (!json_is_string(j))
            return jfail(c, "expected string (enum %s), got %s", n->fullname, json_kind(j));
        const char *s = json_string_value(j);
        for (size_t i = 0; i < n->n_symbols; i++) {
            if (strcmp(s, n->symbols[i]) != 0)
                continue;
            if (v != NULL && avro_value_set_enum(v, (int)i) != 0)
                return avro_fail(c, "enum");
            return 0;
        }
        return jfail(c, "unknown enum symbol '%s' for %s", s, n->fullname);
    }
    case K_ARRAY: {
        if (!json_is_array(j))
            return jfail(c, "expected array, got %s", json_kind(j));
        size_t i;
        json_t *item;
        json_array_foreach(j, i, item) {
            avro_value_t iv;
            if (v != NULL && avro_value_append(v, &iv, NULL) != 0)
                return avro_fail(c, "array");
            size_t old = jpush(c, "[%zu]", i);
            int rc = json_to_value(c, n->items, item, v ? &iv : NULL, depth + 1);
            if (rc != 0)
                return rc;
            jpop(c, old);
        }
        return 0;
    }
    case K_MAP: {
        if (!json_is_object(j))
            return jfail(c, "expected object (map), got %s", json_kind(j));
        const char *key;
        json_t *item;
        json_object_foreach(j, key, item) {
            avro_value_t iv;
            if (v != NULL && avro_value_add(v, key, &iv, NULL, NULL) != 0)
                return avro_fail(c, "map");
            size_t old = jpush(c, c->plen ? ".%s" : "%s", key);
            int rc = json_to_value(c, n->items, item, v ? &iv : NULL, depth + 1);
            if (rc != 0)
                return rc;
            jpop(c, old);
        }
        return 0;
    }
    case K_RECORD:
        return json_to_record(c, n, j, v, depth);
    case K_UNION:
        return json_to_union(c, n, j, v, depth);
    }
    return jfail(c, "unsupported schema");
}

/* ---- value -> JSON ---- */

/* A string from the wire may hold invalid UTF-8, which jansson refuses: keep the valid parts and
 * replace each bad byte with U+FFFD rather than lose the whole event's JSON. */
static json_t *utf8_string(const char *s, size_t n) {
    json_t *j = json_stringn(s, n);
    if (j != NULL)
        return j;
    char *fixed = fl_mem_alloc(3 * n + 1);
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        const uint8_t *u = (const uint8_t *)s + i;
        size_t len = u[0] < 0x80             ? 1
                     : (u[0] & 0xE0) == 0xC0 ? 2
                     : (u[0] & 0xF0) == 0xE0 ? 3
                     : (u[0] & 0xF8) == 0xF0 ? 4
                                             : 0;
        if (len > 0 && i + len <= n) {
            json_t *probe = json_stringn(s + i, len);
            if (probe != NULL) {
                json_decref(probe);
                memcpy(fixed + k, s + i, len);
                k += len;
                i += len;
                continue;
            }
        }
        memcpy(fixed + k, "\xEF\xBF\xBD", 3);
        k += 3;
        i++;
    }
    j = json_stringn_nocheck(fixed, k);
    free(fixed);
    if (j == NULL)
        abort();
    return j;
}

static json_t *value_to_json(avro_value_t *v, int depth) {
    if (depth > FL_CODEC_MAX_DEPTH * 4)
        return NULL;
    switch (avro_value_get_type(v)) {
    case AVRO_NULL:
        return json_null();
    case AVRO_BOOLEAN: {
        int b = 0;
        if (avro_value_get_boolean(v, &b) != 0)
            return NULL;
        return json_boolean(b);
    }
    case AVRO_INT32: {
        int32_t x = 0;
        if (avro_value_get_int(v, &x) != 0)
            return NULL;
        return json_integer(x);
    }
    case AVRO_INT64: {
        int64_t x = 0;
        if (avro_value_get_long(v, &x) != 0)
            return NULL;
        return json_integer(x);
    }
    case AVRO_FLOAT:
    case AVRO_DOUBLE: {
        double d = 0;
        float f = 0;
        if (avro_value_get_type(v) == AVRO_FLOAT) {
            if (avro_value_get_float(v, &f) != 0)
                return NULL;
            d = f;
        } else if (avro_value_get_double(v, &d) != 0) {
            return NULL;
        }
        /* JSON has no NaN or infinities. */
        return isfinite(d) ? json_real(d) : json_null();
    }
    case AVRO_STRING: {
        const char *s = NULL;
        size_t size = 0;
        if (avro_value_get_string(v, &s, &size) != 0)
            return NULL;
        return utf8_string(s ? s : "", size > 0 ? size - 1 : 0);
    }
    case AVRO_BYTES:
    case AVRO_FIXED: {
        const void *b = NULL;
        size_t size = 0;
        int rc = avro_value_get_type(v) == AVRO_BYTES ? avro_value_get_bytes(v, &b, &size)
                                                      : avro_value_get_fixed(v, &b, &size);
        if (rc != 0)
            return NULL;
        return latin1_encode(b, size);
    }
    case AVRO_ENUM: {
        int idx = 0;
        if (avro_value_get_enum(v, &idx) != 0)
            return NULL;
        const char *sym = avro_schema_enum_get(avro_value_get_schema(v), idx);
        return sym ? json_string(sym) : NULL;
    }
    case AVRO_ARRAY:
    case AVRO_MAP:
    case AVRO_RECORD: {
        avro_type_t t = avro_value_get_type(v);
        size_t n = 0;
        if (avro_value_get_size(v, &n) != 0)
            return NULL;
        json_t *out = t == AVRO_ARRAY ? json_array() : json_object();
        for (size_t i = 0; i < n; i++) {
            avro_value_t item;
            const char *name = NULL;
            json_t *ji = NULL;
            if (avro_value_get_by_index(v, i, &item, &name) == 0)
                ji = value_to_json(&item, depth + 1);
            if (ji == NULL) {
                json_decref(out);
                return NULL;
            }
            if (t == AVRO_ARRAY)
                json_array_append_new(out, ji);
            else
                json_object_set_new(out, name, ji);
        }
        return out;
    }
    case AVRO_UNION: {
        avro_value_t b;
        if (avro_value_get_current_branch(v, &b) != 0)
            return json_null(); /* no branch chosen yet */
        return value_to_json(&b, depth + 1);
    }
    default:
        return NULL;
    }
}

json_t *fl_codec_to_json(avro_value_t *value) {
    return value_to_json(value, 0);
}

/* ---- resolution rules ---- */

static bool names_match(const node_t *w, const node_t *r) {
    if (strcmp(w->name, r->name) == 0)
        return true;
    for (size_t i = 0; i < r->n_aliases; i++)
        if (strcmp(r->aliases[i], w->fullname) == 0 || strcmp(r->aliases[i], w->name) == 0)
            return true;
    return false;
}

/* Avro's "schemas match" for non-unions. exact: the same type, no promotion. */
static bool kinds_match(const node_t *w, const node_t *r, bool exact) {
    if (w->kind == r->kind) {
        switch (w->kind) {
        case K_RECORD:
        case K_ENUM:
            return names_match(w, r);
        case K_FIXED:
            return names_match(w, r) && w->size == r->size;
        default:
            return true;
        }
    }
    if (exact)
        return false;
    switch (w->kind) {
    case K_INT:
        return r->kind == K_LONG || r->kind == K_FLOAT || r->kind == K_DOUBLE;
    case K_LONG:
        return r->kind == K_FLOAT || r->kind == K_DOUBLE;
    case K_FLOAT:
        return r->kind == K_DOUBLE;
    case K_STRING:
        return r->kind == K_BYTES;
    case K_BYTES:
        return r->kind == K_STRING;
    default:
        return false;
    }
}

/* Reader union branch for a non-union writer type: the first exact match, else the first that
 * accepts it by promotion. -1 when none. */
static int union_pick(const node_t *r, const node_t *w) {
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < r->n_branches; i++)
            if (kinds_match(w, r->branches[i], pass == 0))
                return (int)i;
    return -1;
}

static const plan_t *plan_find(const node_t *w, const node_t *r) {
    for (const plan_t *pl = w->plans; pl != NULL; pl = pl->next)
        if (pl->reader == r)
            return pl;
    return NULL;
}

static const char *type_label(const node_t *n) {
    return n->fullname != NULL ? n->fullname : kind_names[n->kind];
}

/* Checks at load time that data of writer type w can be read as reader type r, and records a
 * plan for every pair of records on the way. Data-dependent failures (a writer union branch or
 * enum symbol the reader lacks) are left to decode time, as the Avro spec says. */
static int check_resolvable(node_t *w, const node_t *r, int depth, fl_error_t *err) {
    if (depth > FL_CODEC_MAX_DEPTH)
        return fl_error_set(err, FL_ESCHEMA, false, "schemas nested deeper than %d",
                            FL_CODEC_MAX_DEPTH);
    if (w->kind == K_UNION) {
        int rc = 0;
        size_t ok = 0;
        for (size_t i = 0; i < w->n_branches; i++)
            if ((rc = check_resolvable(w->branches[i], r, depth + 1, err)) == 0)
                ok++;
        return ok > 0 || w->n_branches == 0 ? 0 : rc;
    }
    if (r->kind == K_UNION) {
        int b = union_pick(r, w);
        if (b < 0)
            return fl_error_set(err, FL_ESCHEMA, false, "%s is in no branch of the reader union",
                                type_label(w));
        return check_resolvable(w, r->branches[b], depth + 1, err);
    }
    if (!kinds_match(w, r, false))
        return fl_error_set(err, FL_ESCHEMA, false, "%s cannot be read as %s", type_label(w),
                            type_label(r));
    if (w->kind == K_ARRAY || w->kind == K_MAP)
        return check_resolvable(w->items, r->items, depth + 1, err);
    if (w->kind != K_RECORD)
        return 0;
    const plan_t *seen = plan_find(w, r);
    if (seen != NULL) /* checked already, or being checked higher up a recursive type */
        return seen->status == PLAN_FAILED
                   ? fl_error_set(err, FL_ESCHEMA, false, "%s cannot be read as %s", w->fullname,
                                  r->fullname)
                   : 0;

    plan_t *pl = fl_mem_calloc(1, sizeof(*pl));
    pl->status = PLAN_FAILED; /* until the end proves otherwise */
    pl->reader = r;
    pl->w2r = fl_mem_calloc(w->n_fields, sizeof(int));
    pl->defaults = fl_mem_calloc(r->n_fields, sizeof(size_t));
    pl->next = w->plans;
    w->plans = pl;
    for (size_t i = 0; i < w->n_fields; i++) {
        pl->w2r[i] = -1;
        for (size_t k = 0; k < r->n_fields && pl->w2r[i] < 0; k++) {
            bool same = strcmp(r->fields[k].name, w->fields[i].name) == 0;
            for (size_t a = 0; a < r->fields[k].n_aliases && !same; a++)
                same = strcmp(r->fields[k].aliases[a], w->fields[i].name) == 0;
            if (same)
                pl->w2r[i] = (int)k;
        }
    }
    for (size_t k = 0; k < r->n_fields; k++) {
        bool written = false;
        for (size_t i = 0; i < w->n_fields && !written; i++)
            written = pl->w2r[i] == (int)k;
        if (written)
            continue;
        if (r->fields[k].def == NULL)
            return fl_error_set(err, FL_ESCHEMA, false,
                                "%s: reader field '%s' has no default and the writer lacks it",
                                r->fullname, r->fields[k].name);
        pl->defaults[pl->n_defaults++] = k;
    }
    pl->status = PLAN_PENDING;
    for (size_t i = 0; i < w->n_fields; i++) {
        if (pl->w2r[i] < 0)
            continue;
        int rc = check_resolvable(w->fields[i].type, r->fields[pl->w2r[i]].type, depth + 1, err);
        if (rc != 0) {
            pl->status = PLAN_FAILED;
            fl_error_prefix(err, "%s.%s: ", w->fullname, w->fields[i].name);
            return rc;
        }
    }
    pl->status = PLAN_OK;
    return 0;
}

/* ---- binary datum reader ----
 *
 * One walk, driven by the writer schema, serves three purposes: with no reader it validates a
 * datum before avro_value_read (which trusts lengths, counts and indexes from the wire); with a
 * reader it resolves an older version into the reader's value. Every read is bounds-checked. */

typedef struct rd {
    const uint8_t *start, *p, *end;
    size_t items_left;
    fl_codec_t *codec;
    fl_error_t *err;
} rd_t;

struct fl_event_type {
    char *name;
    const char *path; /* of the source, borrowed */
    schema_t *reader;
    uint64_t fingerprint;
    avro_schema_t schema;
    avro_value_iface_t *iface;
    avro_value_t value; /* decode target, reused */
    char *buf;          /* encode buffer, reused */
    size_t cap;
    avro_writer_t writer;
};

typedef struct version {
    fl_event_type_t *type;
    uint64_t fingerprint;
    const char *path;
    schema_t *writer; /* NULL: the type's current schema */
} version_t;

struct fl_codec {
    fl_event_type_t *types; /* sorted by name */
    size_t n_types;
    version_t *versions; /* sorted by fingerprint */
    size_t n_versions;
    schema_t **history; /* owned writer schemas */
    size_t n_history;
    avro_reader_t reader;
    char *scratch; /* NUL-terminated copies of strings for avro-c */
    size_t scratch_cap;
};

static int rd_fail(rd_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int rd_fail(rd_t *r, const char *fmt, ...) {
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return fl_error_set(r->err, FL_EDECODE, false, "datum byte %zu: %s", (size_t)(r->p - r->start),
                        msg);
}

static int rd_long(rd_t *r, int64_t *out) {
    uint64_t u = 0;
    for (int i = 0;; i++) {
        if (r->p >= r->end)
            return rd_fail(r, "truncated varint");
        uint8_t b = *r->p++;
        /* The tenth byte holds only bit 63. */
        if (i == 9 && b > 1)
            return rd_fail(r, "bad varint: longer than 64 bits");
        u |= (uint64_t)(b & 0x7F) << (7 * i);
        if ((b & 0x80) == 0)
            break;
    }
    *out = (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
    return 0;
}

static int rd_int(rd_t *r, int32_t *out) {
    int64_t x = 0;
    int rc = rd_long(r, &x);
    if (rc != 0)
        return rc;
    if (x < INT32_MIN || x > INT32_MAX)
        return rd_fail(r, "int %" PRId64 " out of int32 range", x);
    *out = (int32_t)x;
    return 0;
}

static int rd_take(rd_t *r, size_t n, const uint8_t **out) {
    if ((size_t)(r->end - r->p) < n)
        return rd_fail(r, "truncated: %zu bytes needed, %zu left", n, (size_t)(r->end - r->p));
    *out = r->p;
    r->p += n;
    return 0;
}

static int rd_bytes(rd_t *r, const char *what, const uint8_t **out, size_t *len) {
    int64_t n = 0;
    int rc = rd_long(r, &n);
    if (rc != 0)
        return rc;
    if (n < 0)
        return rd_fail(r, "negative %s length %" PRId64, what, n);
    if ((uint64_t)n > (size_t)(r->end - r->p))
        return rd_fail(r, "%s length %" PRId64 " exceeds the %zu bytes left", what, n,
                       (size_t)(r->end - r->p));
    *len = (size_t)n;
    return rd_take(r, *len, out);
}

/* Array and map blocks: a count, negated when followed by the block's byte size. */
static int rd_block(rd_t *r, size_t *count) {
    int64_t n = 0;
    int rc = rd_long(r, &n);
    if (rc != 0)
        return rc;
    if (n < 0) {
        if (n == INT64_MIN)
            return rd_fail(r, "bad block count");
        n = -n;
        int64_t size = 0;
        if ((rc = rd_long(r, &size)) != 0)
            return rc;
        if (size < 0 || (uint64_t)size > (size_t)(r->end - r->p))
            return rd_fail(r, "block size %" PRId64 " out of range", size);
    }
    if ((uint64_t)n > r->items_left)
        return rd_fail(r, "block of %" PRId64 " items is more than the datum can hold", n);
    r->items_left -= (size_t)n;
    *count = (size_t)n;
    return 0;
}

/* NUL-terminated copy for avro-c, in the codec's scratch buffer. */
static const char *rd_cstr(rd_t *r, const uint8_t *s, size_t len) {
    fl_codec_t *codec = r->codec;
    if (codec->scratch_cap < len + 1) {
        codec->scratch_cap = len + 1 > 2 * codec->scratch_cap ? len + 1 : 2 * codec->scratch_cap;
        codec->scratch = fl_mem_realloc(codec->scratch, codec->scratch_cap);
    }
    memcpy(codec->scratch, s, len);
    codec->scratch[len] = '\0';
    return codec->scratch;
}

static int rd_avro_fail(rd_t *r, const char *what) {
    return rd_fail(r, "avro %s: %s", what, avro_strerror());
}

static int rd_set_default(rd_t *r, const field_t *f, avro_value_t *v) {
    jctx_t c = {.err = r->err, .defaults = true};
    int rc = json_to_value(&c, f->type, f->def, v, 0);
    if (rc == 0)
        return 0;
    fl_error_prefix(r->err, "default of '%s': ", f->name);
    if (r->err != NULL)
        r->err->code = FL_EDECODE;
    return FL_EDECODE;
}

/* Reads one datum of writer type w. With r_node == NULL it only validates and skips; otherwise
 * it stores the value, resolved into reader type r_node, in v. */
static int rd_datum(rd_t *r, const node_t *w, const node_t *rn, avro_value_t *v, int depth) {
    int rc = 0;
    if (depth > FL_CODEC_MAX_DEPTH)
        return rd_fail(r, "nested deeper than %d", FL_CODEC_MAX_DEPTH);

    if (w->kind == K_UNION) {
        int64_t idx = 0;
        if ((rc = rd_long(r, &idx)) != 0)
            return rc;
        if (idx < 0 || (uint64_t)idx >= w->n_branches)
            return rd_fail(r, "union index %" PRId64 " out of range (%zu branches)", idx,
                           w->n_branches);
        return rd_datum(r, w->branches[idx], rn, v, depth + 1);
    }
    if (rn != NULL && rn->kind == K_UNION) {
        int b = union_pick(rn, w);
        avro_value_t bv;
        if (b < 0)
            return rd_fail(r, "writer %s is in no branch of the reader union", type_label(w));
        if (avro_value_set_branch(v, b, &bv) != 0)
            return rd_avro_fail(r, "union");
        return rd_datum(r, w, rn->branches[b], &bv, depth + 1);
    }
    if (rn != NULL && !kinds_match(w, rn, false))
        return rd_fail(r, "writer %s cannot be read as %s", type_label(w), type_label(rn));

    const uint8_t *p = NULL;
    size_t len = 0;
    switch (w->kind) {
    case K_NULL:
        if (rn != NULL && avro_value_set_null(v) != 0)
            return rd_avro_fail(r, "null");
        return 0;
    case K_BOOLEAN:
        if ((rc = rd_take(r, 1, &p)) != 0)
            return rc;
        if (*p > 1)
            return rd_fail(r, "bad boolean byte 0x%02x", *p);
        if (rn != NULL && avro_value_set_boolean(v, *p) != 0)
            return rd_avro_fail(r, "boolean");
        return 0;
    case K_INT:
    case K_LONG: {
        int64_t x = 0;
        if (w->kind == K_INT) {
            int32_t i32 = 0;
            rc = rd_int(r, &i32);
            x = i32;
        } else {
            rc = rd_long(r, &x);
        }
        if (rc != 0 || rn == NULL)
            return rc;
        switch (rn->kind) {
        case K_INT:
            rc = avro_value_set_int(v, (int32_t)x);
            break;
        case K_LONG:
            rc = avro_value_set_long(v, x);
            break;
        case K_FLOAT:
            rc = avro_value_set_float(v, (float)x);
            break;
        default:
            rc = avro_value_set_double(v, (double)x);
            break;
        }
        return rc != 0 ? rd_avro_fail(r, "number") : 0;
    }
    case K_FLOAT:
    case K_DOUBLE: {
        if ((rc = rd_take(r, w->kind == K_FLOAT ? 4 : 8, &p)) != 0 || rn == NULL)
            return rc;
        uint64_t bits = 0;
        for (int i = w->kind == K_FLOAT ? 3 : 7; i >= 0; i--)
            bits = bits << 8 | p[i];
        double d;
        if (w->kind == K_FLOAT) {
            uint32_t b32 = (uint32_t)bits;
            float f;
            memcpy(&f, &b32, sizeof(f));
            d = f;
        } else {
            memcpy(&d, &bits, sizeof(d));
        }
        rc = rn->kind == K_FLOAT ? avro_value_set_float(v, (float)d) : avro_value_set_double(v, d);
        return rc != 0 ? rd_avro_fail(r, "number") : 0;
    }
    case K_STRING:
    case K_BYTES:
        if ((rc = rd_bytes(r, kind_names[w->kind], &p, &len)) != 0 || rn == NULL)
            return rc;
        if (rn->kind == K_STRING)
            rc = avro_value_set_string_len(v, rd_cstr(r, p, len), len + 1);
        else
            rc = avro_value_set_bytes(v, (void *)p, len);
        return rc != 0 ? rd_avro_fail(r, kind_names[rn->kind]) : 0;
    case K_FIXED:
        if ((rc = rd_take(r, w->size, &p)) != 0 || rn == NULL)
            return rc;
        return avro_value_set_fixed(v, (void *)p, w->size) != 0 ? rd_avro_fail(r, "fixed") : 0;
    case K_ENUM: {
        int32_t idx = 0;
        if ((rc = rd_int(r, &idx)) != 0)
            return rc;
        if (idx < 0 || (size_t)idx >= w->n_symbols)
            return rd_fail(r, "enum index %" PRId32 " out of range (%zu symbols)", idx,
                           w->n_symbols);
        if (rn == NULL)
            return 0;
        int ri = rn->default_symbol;
        for (size_t i = 0; i < rn->n_symbols; i++)
            if (strcmp(rn->symbols[i], w->symbols[idx]) == 0)
                ri = (int)i;
        if (ri < 0)
            return rd_fail(r, "enum symbol '%s' unknown to reader %s, which has no default",
                           w->symbols[idx], rn->fullname);
        return avro_value_set_enum(v, ri) != 0 ? rd_avro_fail(r, "enum") : 0;
    }
    case K_ARRAY:
    case K_MAP:
        for (;;) {
            size_t count = 0;
            if ((rc = rd_block(r, &count)) != 0)
                return rc;
            if (count == 0)
                return 0;
            for (size_t i = 0; i < count; i++) {
                avro_value_t iv;
                if (w->kind == K_MAP) {
                    if ((rc = rd_bytes(r, "map key", &p, &len)) != 0)
                        return rc;
                    int is_new = 0;
                    if (rn != NULL &&
                        avro_value_add(v, rd_cstr(r, p, len), &iv, NULL, &is_new) != 0)
                        return rd_avro_fail(r, "map");
                    /* A repeated key: the last value wins, whole. */
                    if (rn != NULL && !is_new)
                        avro_value_reset(&iv);
                } else if (rn != NULL && avro_value_append(v, &iv, NULL) != 0) {
                    return rd_avro_fail(r, "array");
                }
                rc = rd_datum(r, w->items, rn ? rn->items : NULL, rn ? &iv : NULL, depth + 1);
                if (rc != 0)
                    return rc;
            }
        }
    case K_RECORD: {
        const plan_t *pl = rn != NULL ? plan_find(w, rn) : NULL;
        if (rn != NULL && (pl == NULL || pl->status != PLAN_OK))
            return rd_fail(r, "no resolution from writer %s to reader %s", w->fullname,
                           rn->fullname);
        for (size_t i = 0; i < w->n_fields; i++) {
            avro_value_t fv;
            int ri = pl != NULL ? pl->w2r[i] : -1;
            if (ri >= 0 && avro_value_get_by_index(v, (size_t)ri, &fv, NULL) != 0)
                return rd_avro_fail(r, "record");
            rc = rd_datum(r, w->fields[i].type, ri >= 0 ? rn->fields[ri].type : NULL,
                          ri >= 0 ? &fv : NULL, depth + 1);
            if (rc != 0)
                return rc;
        }
        for (size_t k = 0; pl != NULL && k < pl->n_defaults; k++) {
            avro_value_t fv;
            size_t ri = pl->defaults[k];
            if (avro_value_get_by_index(v, ri, &fv, NULL) != 0)
                return rd_avro_fail(r, "record");
            if ((rc = rd_set_default(r, &rn->fields[ri], &fv)) != 0)
                return rc;
        }
        return 0;
    }
    case K_UNION:
        break; /* handled above */
    }
    return rd_fail(r, "unsupported schema");
}

/* ---- codec ---- */

static int load_schema(const fl_schema_src_t *src, schema_t **out, uint64_t *fp, fl_error_t *err) {
    json_error_t jerr;
    char *canonical = NULL;
    int rc = 0;
    schema_t *sch = fl_mem_calloc(1, sizeof(*sch));
    sparse_t p = {.sch = sch, .err = err};

    sch->doc = json_loadb(src->json, src->json_len, JSON_DECODE_ANY, &jerr);
    if (sch->doc == NULL) {
        rc = fl_error_set(err, FL_ESCHEMA, false, "%s:%d: %s", src->path, jerr.line, jerr.text);
        goto out;
    }
    sch->root = parse_node(&p, sch->doc, "", 0);
    if (sch->root == NULL) {
        rc = FL_ESCHEMA;
        fl_error_prefix(err, "%s: ", src->path);
        goto out;
    }
    if (sch->root->kind != K_RECORD) {
        rc =
            fl_error_set(err, FL_ESCHEMA, false, "%s: an event schema must be a record", src->path);
        goto out;
    }
    /* Defaults are checked once here so a bad one fails at start-up, not on some later event. */
    for (node_t *n = sch->nodes; n != NULL; n = n->next_alloc) {
        for (size_t i = 0; n->kind == K_RECORD && i < n->n_fields; i++) {
            jctx_t c = {.err = err, .defaults = true};
            if (n->fields[i].def == NULL)
                continue;
            if (json_to_value(&c, n->fields[i].type, n->fields[i].def, NULL, 0) != 0) {
                rc = FL_ESCHEMA;
                fl_error_prefix(err, "%s: %s.%s: bad default: ", src->path, n->fullname,
                                n->fields[i].name);
                if (err != NULL)
                    err->code = FL_ESCHEMA;
                goto out;
            }
        }
    }
    if ((rc = canonical_of(sch->doc, &canonical, err)) != 0) {
        fl_error_prefix(err, "%s: ", src->path);
        goto out;
    }
    *fp = fl_crc64_avro(canonical, strlen(canonical));
out:
    name_list_fini(&p.named, false); /* the names belong to the nodes */
    free(canonical);
    if (rc != 0) {
        schema_free(sch);
        sch = NULL;
    }
    *out = sch;
    return rc;
}

static int type_cmp(const void *a, const void *b) {
    return strcmp(((const fl_event_type_t *)a)->name, ((const fl_event_type_t *)b)->name);
}

static int version_cmp(const void *a, const void *b) {
    uint64_t x = ((const version_t *)a)->fingerprint, y = ((const version_t *)b)->fingerprint;
    return x < y ? -1 : x > y;
}

static int type_init(fl_event_type_t *t, const fl_schema_src_t *src, fl_error_t *err) {
    int rc = load_schema(src, &t->reader, &t->fingerprint, err);
    if (rc != 0)
        return rc;
    if (avro_schema_from_json_length(src->json, src->json_len, &t->schema) != 0)
        return fl_error_set(err, FL_ESCHEMA, false, "%s: avro-c: %s", src->path, avro_strerror());
    t->iface = avro_generic_class_from_schema(t->schema);
    if (t->iface == NULL || avro_generic_value_new(t->iface, &t->value) != 0)
        return fl_error_set(err, FL_ESCHEMA, false, "%s: avro-c value: %s", src->path,
                            avro_strerror());
    t->cap = 1024;
    t->buf = fl_mem_alloc(t->cap);
    t->writer = avro_writer_memory(t->buf, (int64_t)t->cap);
    if (t->writer == NULL)
        abort();
    return 0;
}

static void type_fini(fl_event_type_t *t) {
    if (t->writer != NULL)
        avro_writer_free(t->writer);
    free(t->buf);
    if (t->value.iface != NULL)
        avro_value_decref(&t->value);
    if (t->iface != NULL)
        avro_value_iface_decref(t->iface);
    if (t->schema != NULL)
        avro_schema_decref(t->schema);
    schema_free(t->reader);
    free(t->name);
}

static fl_event_type_t *find_type(fl_codec_t *codec, const char *name) {
    fl_event_type_t key = {.name = (char *)name};
    return bsearch(&key, codec->types, codec->n_types, sizeof(key), type_cmp);
}

static int add_history(fl_codec_t *codec, const fl_schema_src_t *src, fl_error_t *err) {
    fl_event_type_t *t = find_type(codec, src->type);
    schema_t *sch = NULL;
    uint64_t fp = 0;
    avro_schema_t check = NULL;
    if (t == NULL)
        return fl_error_set(err, FL_ESCHEMA, false, "%s: no current schema for type '%s'",
                            src->path, src->type);
    int rc = load_schema(src, &sch, &fp, err);
    if (rc != 0)
        return rc;
    codec->history[codec->n_history++] = sch;
    /* avro-c never reads history data; parsing it anyway rejects what avro-c would reject if
     * the file ever became the current schema. */
    if (avro_schema_from_json_length(src->json, src->json_len, &check) != 0)
        return fl_error_set(err, FL_ESCHEMA, false, "%s: avro-c: %s", src->path, avro_strerror());
    avro_schema_decref(check);
    if ((rc = check_resolvable(sch->root, t->reader->root, 0, err)) != 0) {
        fl_error_prefix(err, "%s cannot be read as the current %s: ", src->path, t->name);
        return rc;
    }
    codec->versions[codec->n_versions++] =
        (version_t){.type = t, .fingerprint = fp, .path = src->path, .writer = sch};
    return 0;
}

int fl_codec_new_from(const fl_schema_src_t *srcs, size_t n, fl_codec_t **out, fl_error_t *err) {
    int rc = 0;
    fl_codec_t *codec = fl_mem_calloc(1, sizeof(*codec));
    size_t n_current = 0;
    *out = NULL;

    for (size_t i = 0; i < n; i++) {
        if (srcs[i].type == NULL || srcs[i].json == NULL || srcs[i].path == NULL ||
            srcs[i].version < 0) {
            rc = fl_error_set(err, FL_EINVAL, false, "schema source %zu is incomplete", i);
            goto out;
        }
        n_current += srcs[i].version == 0;
    }
    codec->types = fl_mem_calloc(n_current, sizeof(fl_event_type_t));
    codec->versions = fl_mem_calloc(n, sizeof(version_t));
    codec->history = fl_mem_calloc(n - n_current, sizeof(schema_t *));
    for (size_t i = 0; i < n; i++) {
        if (srcs[i].version != 0)
            continue;
        fl_event_type_t *t = &codec->types[codec->n_types++];
        t->name = fl_mem_strdup(srcs[i].type);
        t->path = srcs[i].path;
        if ((rc = type_init(t, &srcs[i], err)) != 0)
            goto out;
    }
    qsort(codec->types, codec->n_types, sizeof(fl_event_type_t), type_cmp);
    for (size_t i = 0; i < codec->n_types; i++) {
        if (i > 0 && strcmp(codec->types[i - 1].name, codec->types[i].name) == 0) {
            rc = fl_error_set(err, FL_ESCHEMA, false, "type '%s' has two current schemas",
                              codec->types[i].name);
            goto out;
        }
        codec->versions[codec->n_versions++] =
            (version_t){.type = &codec->types[i],
                        .fingerprint = codec->types[i].fingerprint,
                        .path = codec->types[i].path};
    }
    for (size_t i = 0; i < n; i++)
        if (srcs[i].version != 0 && (rc = add_history(codec, &srcs[i], err)) != 0)
            goto out;

    qsort(codec->versions, codec->n_versions, sizeof(version_t), version_cmp);
    size_t kept = 0;
    for (size_t i = 0; i < codec->n_versions; i++) {
        version_t *v = &codec->versions[i];
        if (kept > 0 && codec->versions[kept - 1].fingerprint == v->fingerprint) {
            version_t *prev = &codec->versions[kept - 1];
            if (prev->type != v->type) {
                rc = fl_error_set(err, FL_ESCHEMA, false,
                                  "types '%s' and '%s' have the same schema (fingerprint "
                                  "%016" PRIx64 ")",
                                  prev->type->name, v->type->name, v->fingerprint);
                goto out;
            }
            /* A history file equal to another version adds nothing; the current one wins. */
            if (v->writer == NULL)
                *prev = *v;
            continue;
        }
        codec->versions[kept++] = *v;
    }
    codec->n_versions = kept;

    codec->reader = avro_reader_memory("", 0);
    if (codec->reader == NULL)
        abort();
    *out = codec;
    codec = NULL;
out:
    fl_codec_destroy(codec);
    return rc;
}

int fl_codec_new(fl_codec_t **out, fl_error_t *err) {
    return fl_codec_new_from(fl_schema_srcs, fl_schema_srcs_len, out, err);
}

void fl_codec_destroy(fl_codec_t *codec) {
    if (codec == NULL)
        return;
    for (size_t i = 0; i < codec->n_types; i++)
        type_fini(&codec->types[i]);
    free(codec->types);
    for (size_t i = 0; i < codec->n_history; i++)
        schema_free(codec->history[i]);
    free(codec->history);
    free(codec->versions);
    if (codec->reader != NULL)
        avro_reader_free(codec->reader);
    free(codec->scratch);
    free(codec);
}

const fl_event_type_t *fl_codec_type(const fl_codec_t *codec, const char *name) {
    return find_type((fl_codec_t *)codec, name);
}

size_t fl_codec_type_count(const fl_codec_t *codec) {
    return codec->n_types;
}

const fl_event_type_t *fl_codec_type_at(const fl_codec_t *codec, size_t i) {
    return i < codec->n_types ? &codec->types[i] : NULL;
}

const char *fl_event_type_name(const fl_event_type_t *type) {
    return type->name;
}

const char *fl_event_type_full_name(const fl_event_type_t *type) {
    return type->reader->root->fullname;
}

uint64_t fl_event_type_fingerprint(const fl_event_type_t *type) {
    return type->fingerprint;
}

avro_schema_t fl_event_type_schema(const fl_event_type_t *type) {
    return type->schema;
}

int fl_event_type_new_value(const fl_event_type_t *type, avro_value_t *out) {
    if (avro_generic_value_new(type->iface, out) != 0)
        abort(); /* avro-c fails here only when out of memory */
    return 0;
}

int fl_codec_encode(fl_codec_t *codec, const fl_event_type_t *ctype, avro_value_t *value,
                    const void **out, size_t *len, fl_error_t *err) {
    /* The codec owns its types; the const in the API keeps callers from touching them. */
    fl_event_type_t *t = (fl_event_type_t *)ctype;
    avro_schema_t vs = avro_value_get_schema(value);
    size_t size = 0;
    (void)codec;
    if (vs != t->schema && !avro_schema_equal(vs, t->schema))
        return fl_error_set(err, FL_EINVAL, false, "value is not a %s", fl_event_type_full_name(t));
    if (avro_value_sizeof(value, &size) != 0)
        return fl_error_set(err, FL_EENCODE, false, "%s: avro sizeof: %s", t->name,
                            avro_strerror());
    if (t->cap < FL_CODEC_HEADER_LEN + size) {
        t->cap = FL_CODEC_HEADER_LEN + size > 2 * t->cap ? FL_CODEC_HEADER_LEN + size : 2 * t->cap;
        t->buf = fl_mem_realloc(t->buf, t->cap);
    }
    uint8_t *b = (uint8_t *)t->buf;
    b[0] = FL_CODEC_MAGIC0;
    b[1] = FL_CODEC_MAGIC1;
    for (int i = 0; i < 8; i++)
        b[2 + i] = (uint8_t)(t->fingerprint >> (8 * i));
    avro_writer_memory_set_dest(t->writer, t->buf + FL_CODEC_HEADER_LEN, (int64_t)size);
    if (avro_value_write(t->writer, value) != 0)
        return fl_error_set(err, FL_EENCODE, false, "%s: avro write: %s", t->name, avro_strerror());
    if (avro_writer_tell(t->writer) != (int64_t)size)
        return fl_error_set(err, FL_EENCODE, false, "%s: avro wrote %" PRId64 " of %zu bytes",
                            t->name, avro_writer_tell(t->writer), size);
    *out = t->buf;
    *len = FL_CODEC_HEADER_LEN + size;
    return 0;
}

int fl_codec_decode(fl_codec_t *codec, const void *buf, size_t len, const fl_event_type_t **type,
                    avro_value_t **value, fl_error_t *err) {
    const uint8_t *b = buf;
    *type = NULL;
    *value = NULL;
    if (len < FL_CODEC_HEADER_LEN)
        return fl_error_set(err, FL_EDECODE, false,
                            "event is %zu bytes, shorter than the %d-byte single-object header",
                            len, FL_CODEC_HEADER_LEN);
    if (b[0] != FL_CODEC_MAGIC0 || b[1] != FL_CODEC_MAGIC1)
        return fl_error_set(err, FL_EDECODE, false,
                            "bad magic %02x %02x: not Avro single-object encoding (c3 01)", b[0],
                            b[1]);
    uint64_t fp = 0;
    for (int i = 7; i >= 0; i--)
        fp = fp << 8 | b[2 + i];
    version_t key = {.fingerprint = fp};
    const version_t *ver =
        bsearch(&key, codec->versions, codec->n_versions, sizeof(key), version_cmp);
    if (ver == NULL)
        return fl_error_set(
            err, FL_EFINGERPRINT, false,
            "unknown schema fingerprint %016" PRIx64 " (no such schema compiled in)", fp);

    fl_event_type_t *t = ver->type;
    rd_t r = {.start = b + FL_CODEC_HEADER_LEN,
              .p = b + FL_CODEC_HEADER_LEN,
              .end = b + len,
              .items_left = len + FL_CODEC_MAX_FREE_ITEMS,
              .codec = codec,
              .err = err};
    int rc = 0;
    /* Known type even when the datum is bad, so a caller can dead-letter it by type. */
    *type = t;
    avro_value_reset(&t->value);
    if (ver->writer == NULL) {
        if ((rc = rd_datum(&r, t->reader->root, NULL, NULL, 0)) != 0)
            goto out;
    } else if ((rc = rd_datum(&r, ver->writer->root, t->reader->root, &t->value, 0)) != 0) {
        fl_error_prefix(err, "%s: ", ver->path);
        goto out;
    }
    if (r.p != r.end) {
        rc = rd_fail(&r, "%zu trailing bytes after the datum", (size_t)(r.end - r.p));
        goto out;
    }
    if (ver->writer == NULL) {
        avro_reader_memory_set_source(codec->reader, (const char *)r.start,
                                      (int64_t)(len - FL_CODEC_HEADER_LEN));
        if (avro_value_read(codec->reader, &t->value) != 0) {
            rc =
                fl_error_set(err, FL_EDECODE, false, "%s: avro read: %s", t->name, avro_strerror());
            goto out;
        }
    }
    *value = &t->value;
out:
    return rc;
}

int fl_codec_from_json(const fl_event_type_t *type, json_t *json, avro_value_t *value,
                       fl_error_t *err) {
    jctx_t c = {.err = err};
    return json_to_value(&c, type->reader->root, json, value, 0);
}
