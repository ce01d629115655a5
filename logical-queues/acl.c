/*
 * acl.c — access control lists (see acl.h for the model and the decision).
 *
 * Invariants (acl.h's, and):
 *  1. A snapshot (snap_t) is never written after it was published; its
 *     reference count is the only field that changes, atomically.
 *  2. Every entry in a snapshot was validated by rn_acl_entry_make or
 *     rn_acl_entry_from_meta, so a check trusts its fields.
 *  3. Which operations a resource type has is written once (op_valid), and
 *     used by both validation and the messages naming the valid ones.
 *  4. A refusal's message is one line: names from requests are cut to 100
 *     bytes and their control bytes shown as '?'.
 */
#include "logical-queues/acl.h"

#include "common/error.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct snap {
    atomic_uint     refs;
    size_t          n;
    rn_acl_entry_t *v;
} snap_t;

struct rn_acl {
    pthread_mutex_t  mu;            /* guards cur (the swap and taking a reference) */
    snap_t          *cur;
    atomic_uint_fast64_t gen;
    size_t           nsupers;
    char             supers[RN_ACL_MAX_SUPERS][RN_META_ACL_PRINCIPAL_MAX + 1];
};

static const char *const res_names[RN_ACL_NRES] = {"topic", "group", "cluster", "pipeline"};
static const char *const op_names[RN_ACL_NOPS] = {
    "produce", "consume", "describe", "create", "alter", "delete", "query", "pipeline", "all",
};

const char *rn_acl_res_name(rn_acl_res_t r) { return r < RN_ACL_NRES ? res_names[r] : "?"; }
const char *rn_acl_op_name(rn_acl_op_t o) { return o < RN_ACL_NOPS ? op_names[o] : "?"; }
const char *rn_acl_principal(const char *p) { return p && p[0] ? p : RN_ACL_ANONYMOUS; }

/* Invariant 3: the operations each resource type has. */
static int op_valid(rn_acl_res_t r, rn_acl_op_t o)
{
    if (o == RN_ACL_ALL || o == RN_ACL_DESCRIBE) return 1;
    switch (r) {
    case RN_ACL_TOPIC:
        return o == RN_ACL_PRODUCE || o == RN_ACL_CONSUME || o == RN_ACL_CREATE ||
               o == RN_ACL_ALTER || o == RN_ACL_DELETE;
    case RN_ACL_GROUP:
        return o == RN_ACL_CONSUME || o == RN_ACL_ALTER || o == RN_ACL_DELETE;
    case RN_ACL_CLUSTER:
        return o == RN_ACL_CREATE || o == RN_ACL_ALTER || o == RN_ACL_QUERY ||
               o == RN_ACL_PIPELINE_OP;
    case RN_ACL_PIPELINE:
        return o == RN_ACL_CREATE || o == RN_ACL_ALTER || o == RN_ACL_DELETE;
    default:
        return 0;
    }
}

static void valid_ops(rn_acl_res_t r, char *out, size_t size)
{
    size_t len = 0;
    out[0] = 0;
    for (int o = 0; o < RN_ACL_NOPS; o++) {
        if (!op_valid(r, (rn_acl_op_t)o)) continue;
        int w = snprintf(out + len, size - len, "%s%s", len ? ", " : "", op_names[o]);
        if (w < 0 || (size_t)w >= size - len) break;
        len += (size_t)w;
    }
}

static int principal_ok(const char *p)
{
    size_t n = strlen(p);
    if (n == 0 || n > RN_META_ACL_PRINCIPAL_MAX) return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] <= 0x20 || (unsigned char)p[i] >= 0x7f) return 0;
    return 1;
}

static int name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > RN_META_NAME_MAX) return 0;
    if (!strcmp(s, "*")) return 1;
    return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == n;
}

int rn_acl_entry_make(const char *principal, const char *res, const char *name, int prefix,
                      const char *op, rn_acl_entry_t *out, char *errmsg)
{
    memset(out, 0, sizeof *out);
    if (!principal || !principal_ok(principal))
        return rn_errf(errmsg, RN_EINVAL, "principal '%.70s': give a user name (1..%d printable "
                       "characters without spaces), '*' for every principal or 'anonymous'",
                       principal ? principal : "", RN_META_ACL_PRINCIPAL_MAX);
    snprintf(out->principal, sizeof out->principal, "%s", principal);
    int r = 0;
    while (r < RN_ACL_NRES && (!res || strcmp(res, res_names[r]))) r++;
    if (r == RN_ACL_NRES)
        return rn_errf(errmsg, RN_EINVAL, "resource type '%.40s': valid types are topic, group, "
                       "pipeline and cluster", res ? res : "");
    out->res = (rn_acl_res_t)r;
    int o = 0;
    while (o < RN_ACL_NOPS && (!op || strcmp(op, op_names[o]))) o++;
    char ops[200];
    valid_ops(out->res, ops, sizeof ops);
    if (o == RN_ACL_NOPS || !op_valid(out->res, (rn_acl_op_t)o))
        return rn_errf(errmsg, RN_EINVAL, "operation '%.40s' on a %s: valid operations are %s",
                       op ? op : "", res_names[r], ops);
    out->op = (rn_acl_op_t)o;
    if (out->res == RN_ACL_CLUSTER) {
        if ((name && name[0]) || prefix)
            return rn_errf(errmsg, RN_EINVAL, "the cluster has no name and no prefix");
        return 0;
    }
    if (!name || !name_ok(name))
        return rn_errf(errmsg, RN_EINVAL, "%s name '%.60s': give 1..%d characters of "
                       "[A-Za-z0-9._-], or '*' for every %s", res_names[r], name ? name : "",
                       RN_META_NAME_MAX, res_names[r]);
    if (prefix && !strcmp(name, "*"))
        return rn_errf(errmsg, RN_EINVAL, "a prefix cannot be '*'; give the literal name '*' "
                       "for every %s", res_names[r]);
    snprintf(out->name, sizeof out->name, "%s", name);
    out->prefix = prefix != 0;
    return 0;
}

void rn_acl_entry_to_meta(const rn_acl_entry_t *e, rn_meta_acl_t *out)
{
    memset(out, 0, sizeof *out);
    snprintf(out->principal, sizeof out->principal, "%s", e->principal);
    snprintf(out->resource, sizeof out->resource, "%s", rn_acl_res_name(e->res));
    snprintf(out->pattern, sizeof out->pattern, "%s", e->prefix ? "prefixed" : "literal");
    snprintf(out->name, sizeof out->name, "%s", e->name);
    snprintf(out->operation, sizeof out->operation, "%s", rn_acl_op_name(e->op));
}

int rn_acl_entry_from_meta(const rn_meta_acl_t *m, rn_acl_entry_t *out, char *errmsg)
{
    int prefix = !strcmp(m->pattern, "prefixed");
    if (!prefix && strcmp(m->pattern, "literal"))
        return rn_errf(errmsg, RN_ECORRUPT, "stored ACL entry with pattern '%.20s'", m->pattern);
    char e[RN_ERRMSG_SIZE];
    int rc = rn_acl_entry_make(m->principal, m->resource, m->name, prefix, m->operation, out, e);
    if (rc != 0) return rn_errf(errmsg, RN_ECORRUPT, "stored ACL entry: %s", e);
    return 0;
}

void rn_acl_entry_format(const rn_acl_entry_t *e, char *out, size_t size)
{
    if (e->res == RN_ACL_CLUSTER)
        snprintf(out, size, "%s cluster %s", e->principal, rn_acl_op_name(e->op));
    else
        snprintf(out, size, "%s %s %s %s %s", e->principal, rn_acl_res_name(e->res),
                 e->prefix ? "prefixed" : "literal", e->name, rn_acl_op_name(e->op));
}

/* ---- snapshots (invariant 1) ----------------------------------------------------- */

static void snap_unref(snap_t *s)
{
    if (s && atomic_fetch_sub(&s->refs, 1) == 1) {
        free(s->v);
        free(s);
    }
}

static snap_t *snap_get(rn_acl_t *a)
{
    pthread_mutex_lock(&a->mu);
    snap_t *s = a->cur;
    atomic_fetch_add(&s->refs, 1);
    pthread_mutex_unlock(&a->mu);
    return s;
}

static int snap_new(const rn_acl_entry_t *v, size_t n, snap_t **out, char *errmsg)
{
    if (n > RN_ACL_MAX_ENTRIES)
        return rn_errf(errmsg, RN_ETOOBIG, "more than %d ACL entries", RN_ACL_MAX_ENTRIES);
    snap_t *s = calloc(1, sizeof *s);
    if (!s) return rn_errf(errmsg, -ENOMEM, "out of memory");
    if (n && !(s->v = malloc(n * sizeof *v))) {
        free(s);
        return rn_errf(errmsg, -ENOMEM, "out of memory");
    }
    if (n) memcpy(s->v, v, n * sizeof *v);
    s->n = n;
    atomic_init(&s->refs, 1);
    *out = s;
    return 0;
}

int rn_acl_create(const char *const *supers, size_t nsupers, rn_acl_t **out, char *errmsg)
{
    *out = NULL;
    if (nsupers > RN_ACL_MAX_SUPERS)
        return rn_errf(errmsg, RN_EINVAL, "more than %d super users", RN_ACL_MAX_SUPERS);
    rn_acl_t *a = calloc(1, sizeof *a);
    if (!a) return rn_errf(errmsg, -ENOMEM, "out of memory");
    for (size_t i = 0; i < nsupers; i++) {
        if (!principal_ok(supers[i]) || !strcmp(supers[i], "*")) {
            free(a);
            return rn_errf(errmsg, RN_EINVAL, "super user '%.70s': give a user name (1..%d "
                           "printable characters without spaces, not '*')", supers[i],
                           RN_META_ACL_PRINCIPAL_MAX);
        }
        snprintf(a->supers[i], sizeof a->supers[i], "%s", supers[i]);
    }
    a->nsupers = nsupers;
    int rc = snap_new(NULL, 0, &a->cur, errmsg);
    if (rc != 0) { free(a); return rc; }
    pthread_mutex_init(&a->mu, NULL);
    atomic_init(&a->gen, 1);
    *out = a;
    return 0;
}

void rn_acl_destroy(rn_acl_t *a)
{
    if (!a) return;
    snap_unref(a->cur);
    pthread_mutex_destroy(&a->mu);
    free(a);
}

int rn_acl_set(rn_acl_t *a, const rn_acl_entry_t *v, size_t n, char *errmsg)
{
    snap_t *s = NULL;
    int rc = snap_new(v, n, &s, errmsg);
    if (rc != 0) return rc;
    pthread_mutex_lock(&a->mu);
    snap_t *old = a->cur;
    a->cur = s;
    atomic_fetch_add(&a->gen, 1);
    pthread_mutex_unlock(&a->mu);
    snap_unref(old);
    return 0;
}

int rn_acl_load(rn_acl_t *a, rn_meta_t *m, char *errmsg)
{
    rn_meta_acl_t *rows = NULL;
    size_t n = 0;
    int rc = rn_meta_acl_list(m, &rows, &n, errmsg);
    if (rc != 0) return rc;
    rn_acl_entry_t *v = n ? malloc(n * sizeof *v) : NULL;
    if (n && !v) rc = rn_errf(errmsg, -ENOMEM, "out of memory");
    for (size_t i = 0; rc == 0 && i < n; i++) rc = rn_acl_entry_from_meta(&rows[i], &v[i], errmsg);
    if (rc == 0) rc = rn_acl_set(a, v, n, errmsg);
    free(v);
    free(rows);
    return rc;
}

uint64_t rn_acl_generation(rn_acl_t *a) { return a ? atomic_load(&a->gen) : 0; }

size_t rn_acl_count(rn_acl_t *a)
{
    if (!a) return 0;
    snap_t *s = snap_get(a);
    size_t n = s->n;
    snap_unref(s);
    return n;
}

int rn_acl_is_super(rn_acl_t *a, const char *principal)
{
    const char *p = rn_acl_principal(principal);
    for (size_t i = 0; a && i < a->nsupers; i++)
        if (!strcmp(a->supers[i], p)) return 1;
    return 0;
}

/* ---- decisions ---------------------------------------------------------------- */

static int entry_matches(const rn_acl_entry_t *e, const char *p, rn_acl_res_t res,
                         const char *name, rn_acl_op_t op)
{
    if (e->res != res) return 0;
    if (strcmp(e->principal, "*") && strcmp(e->principal, p)) return 0;
    if (e->op != op && e->op != RN_ACL_ALL &&
        !(op == RN_ACL_DESCRIBE && e->op != RN_ACL_QUERY && e->op != RN_ACL_PIPELINE_OP))
        return 0;
    if (res == RN_ACL_CLUSTER) return 1;
    if (e->prefix) return strncmp(name, e->name, strlen(e->name)) == 0;
    return !strcmp(e->name, "*") || !strcmp(e->name, name);
}

int rn_acl_allowed(rn_acl_t *a, const char *principal, rn_acl_res_t res, const char *name,
                   rn_acl_op_t op, int flags)
{
    if (!a || rn_acl_is_super(a, principal)) return 1;
    const char *p = rn_acl_principal(principal);
    if (!name) name = "";
    snap_t *s = snap_get(a);
    int ok = s->n == 0 && !(flags & RN_ACL_STRICT);
    for (size_t i = 0; !ok && i < s->n; i++) ok = entry_matches(&s->v[i], p, res, name, op);
    snap_unref(s);
    return ok;
}

int rn_acl_allowed_any(rn_acl_t *a, const char *principal, rn_acl_res_t res, rn_acl_op_t op)
{
    if (!a || rn_acl_is_super(a, principal)) return 1;
    const char *p = rn_acl_principal(principal);
    snap_t *s = snap_get(a);
    int ok = s->n == 0;
    for (size_t i = 0; !ok && i < s->n; i++) {
        const rn_acl_entry_t *e = &s->v[i];
        ok = e->res == res && (!strcmp(e->principal, "*") || !strcmp(e->principal, p)) &&
             (e->op == op || e->op == RN_ACL_ALL);
    }
    snap_unref(s);
    return ok;
}

/* The words a verb takes in a message: "produce to topic 'x'". */
static const char *op_phrase(rn_acl_op_t op)
{
    switch (op) {
    case RN_ACL_PRODUCE: return "produce to";
    case RN_ACL_CONSUME: return "consume from";
    case RN_ACL_QUERY: return "run queries on";
    case RN_ACL_PIPELINE_OP: return "run pipelines with file sinks on";
    default: return op_names[op];
    }
}

/* s cut to n - 1 bytes with control bytes as '?': a name from a request goes
 * into messages and runneld's log one line each. */
static const char *printable(const char *s, char *out, size_t n)
{
    size_t i = 0;
    for (; s && s[i] && i + 1 < n; i++)
        out[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
    out[i] = 0;
    return out;
}

int rn_acl_check(rn_acl_t *a, const char *principal, rn_acl_res_t res, const char *name,
                 rn_acl_op_t op, int flags, char *msg, size_t size)
{
    if (rn_acl_allowed(a, principal, res, name, op, flags)) return 0;
    char pbuf[RN_META_ACL_PRINCIPAL_MAX + 1], nbuf[101];
    const char *p = printable(rn_acl_principal(principal), pbuf, sizeof pbuf);
    name = printable(name, nbuf, sizeof nbuf);
    if (res == RN_ACL_CLUSTER)
        snprintf(msg, size, "principal '%s' may not %s the cluster: no ACL allows it (`runnel "
                 "acl add --principal %s --cluster --op %s`, or runneld --super-user %s)", p,
                 op_phrase(op), p, op_names[op], p);
    else
        snprintf(msg, size, "principal '%s' may not %s %s '%s': no ACL allows it (`runnel "
                 "acl add --principal %s --%s %s --op %s`)", p, op_phrase(op), res_names[res],
                 name, p, res_names[res], name, op_names[op]);
    return -EPERM;
}
