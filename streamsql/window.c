/*
 * window.c — window state of an aggregating query, in C: groups hashed by
 * (window start, keys), each with incremental accumulators, plus the event
 * time watermark that decides when a window closes.
 *
 * sqlite computes, per row, the time, the keys and the aggregate arguments
 * (the per-batch statement); this file only assigns rows to windows and
 * folds values into accumulators (step / value / merge, sqlite's
 * xStep/xValue contract; sessions merge instead of retracting, so no
 * xInverse is needed). Nothing buffers a window's rows: count/sum/avg keep
 * counters, min/max/first/last one value, count(DISTINCT) etc. a set of the
 * distinct values (the one aggregate that needs memory per value).
 *
 * Invariants:
 *  1. Watermark = (event-time frontier) - delay; it only grows. The engine
 *     sets the frontier (rn_win_advance): the smallest, over the queues still
 *     being read, of the largest event time each has delivered, so one
 *     queue running ahead of another does not make the other's rows late. A window
 *     [start, end) closes when end <= watermark; closed windows are never
 *     re-opened: a row whose window is closed is late (counted, not added;
 *     for HOP, a row is late when any of its windows closed, and it is still
 *     added to the ones open). The decision is per row, arithmetic, so the
 *     result does not depend on how records were cut into batches.
 *  2. TUMBLE windows are [k*size, (k+1)*size), HOP windows [k*slide,
 *     k*slide + size), aligned on the epoch (floor division, so negative
 *     times work). A SESSION is [first ts, last ts + gap) per key: a row at
 *     ts joins (and merges) every open session of its key that overlaps
 *     [ts, ts + gap). GLOBAL (no window in GROUP BY) has one window that
 *     closes only at the end of input.
 *  3. Accumulators mirror sqlite's: count counts non-NULL values; sum/avg
 *     use sqlite's numeric conversion, sum stays integer until a REAL (or an
 *     overflow) appears; avg = real sum / count; min/max compare with the
 *     BINARY collation and NULL < numbers < text < blobs, ignoring NULLs;
 *     first/last keep the value of the first/last row in arrival order.
 *     variance/stddev keep Welford's running (n, mean, M2), combined by Chan's
 *     formula when sessions merge (numerically stable: no sum of squares);
 *     approx_count_distinct a HyperLogLog of 4096 registers over a 64-bit
 *     hash of the value in its key form (1 and 1.0 are one value; standard
 *     error 1.6%); percentile_approx a log-bucket sketch (relative error 1%,
 *     2048 buckets per sign, lower buckets folded). Both sketches end in the
 *     same state whatever order the values came in. With FILTER (WHERE c) an
 *     aggregate skips the rows where c is not true (win_t.skip). The TopN
 *     rows aggregate (AG_TOPN, topn.c's rows form) keeps the group's encoded
 *     rows sorted by their bytes and drops those ranked past the limit the
 *     rows carry: its state is bounded, and the same for any arrival order.
 *  4. Groups handed out by rn_win_collect stay valid until rn_win_release.
 *  5. rn_win_save / rn_win_load (checkpoints, sql.h's rn_sql_state_save) capture
 *     everything that decides future output: the frontier, closed_to, the
 *     sequence counter, and every open group with its accumulators exactly
 *     (values keep their type; DISTINCT sets their serialized members),
 *     session chains in chain order. Only at a step boundary (nothing
 *     handed out, no pending EMIT CHANGES), so a loaded state continues as
 *     the saved one would have.
 *  6. Groups closing together are emitted ordered by (end, start, creation
 *     order); with cfg.key_order by (end, start, key bytes) instead: an
 *     order that does not depend on how the queues' batches were
 *     interleaved, so a restarted pipeline emits in the same order. End
 *     first, because windows close in order of end as the watermark grows:
 *     the emission order is then the same whether a collect closed one
 *     window or many (one record per batch or one big batch).
 *  7. A GLOBAL aggregate without keys has one row even over no rows at
 *     all (count 0, sum NULL), as sqlite's: win_collect at the end of input
 *     creates the empty group when no row made one.
 */
#include "streamsql/sql_int.h"

#include "common/error.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- values ---------------------------------------------------------------- */

typedef struct val {
    uint8_t  type;      /* rn_sql_type_t */
    int64_t  i;
    double   d;
    uint8_t *s;         /* owned in accumulators, a view otherwise */
    uint32_t n;
} val_t;

static void val_view(sqlite3_value *v, val_t *out)
{
    out->s = NULL;
    out->n = 0;
    switch (sqlite3_value_type(v)) {
    case SQLITE_INTEGER: out->type = RN_SQL_INT; out->i = sqlite3_value_int64(v); break;
    case SQLITE_FLOAT: out->type = RN_SQL_REAL; out->d = sqlite3_value_double(v); break;
    case SQLITE_TEXT:
        out->type = RN_SQL_TEXT;
        out->s = (uint8_t *)rn_sql_text_view(v, &out->n);
        break;
    case SQLITE_BLOB:
        out->type = RN_SQL_BLOB;
        out->s = (uint8_t *)sqlite3_value_blob(v);
        out->n = (uint32_t)sqlite3_value_bytes(v);
        break;
    default: out->type = RN_SQL_NULL; break;
    }
}

static int val_class(const val_t *v)
{
    return v->type == RN_SQL_NULL ? 0 : v->type == RN_SQL_INT || v->type == RN_SQL_REAL ? 1
           : v->type == RN_SQL_TEXT ? 2 : 3;
}

static int val_cmp(const val_t *a, const val_t *b)
{
    int ca = val_class(a), cb = val_class(b);
    if (ca != cb) return ca < cb ? -1 : 1;
    if (ca == 0) return 0;
    if (ca == 1) {
        if (a->type == RN_SQL_INT && b->type == RN_SQL_INT)
            return a->i < b->i ? -1 : a->i > b->i;
        double x = a->type == RN_SQL_INT ? (double)a->i : a->d;
        double y = b->type == RN_SQL_INT ? (double)b->i : b->d;
        return x < y ? -1 : x > y;
    }
    uint32_t m = a->n < b->n ? a->n : b->n;
    int c = m ? memcmp(a->s, b->s, m) : 0;
    if (c) return c < 0 ? -1 : 1;
    return a->n < b->n ? -1 : a->n > b->n;
}

static int val_copy(val_t *dst, const val_t *src)
{
    uint8_t *s = NULL;
    if (src->type == RN_SQL_TEXT || src->type == RN_SQL_BLOB) {
        s = malloc(src->n ? src->n : 1);
        if (!s) return -ENOMEM;
        if (src->n) memcpy(s, src->s, src->n);
    }
    free(dst->s);
    *dst = *src;
    dst->s = s;
    return 0;
}

static void val_result(const val_t *v, sqlite3_context *ctx)
{
    switch (v->type) {
    case RN_SQL_INT: sqlite3_result_int64(ctx, v->i); break;
    case RN_SQL_REAL: sqlite3_result_double(ctx, v->d); break;
    case RN_SQL_TEXT: sqlite3_result_text(ctx, (const char *)v->s, (int)v->n, SQLITE_TRANSIENT); break;
    case RN_SQL_BLOB: sqlite3_result_blob(ctx, v->s, (int)v->n, SQLITE_TRANSIENT); break;
    default: sqlite3_result_null(ctx); break;
    }
}

/* Serialize a value (tag + payload) onto b; an integral REAL is written as
 * the integer, so 1 and 1.0 are one key and one distinct value, as in sqlite. */
static int val_ser(rn_buf_t *b, const val_t *v)
{
    uint8_t tmp[13];
    size_t n = 1;
    tmp[0] = v->type;
    if (v->type == RN_SQL_REAL && v->d == floor(v->d) && fabs(v->d) < 9.2e18) {
        int64_t i = (int64_t)v->d;
        tmp[0] = RN_SQL_INT;
        memcpy(tmp + 1, &i, 8);
        n = 9;
    } else if (v->type == RN_SQL_INT) {
        memcpy(tmp + 1, &v->i, 8);
        n = 9;
    } else if (v->type == RN_SQL_REAL) {
        memcpy(tmp + 1, &v->d, 8);
        n = 9;
    } else if (v->type == RN_SQL_TEXT || v->type == RN_SQL_BLOB) {
        memcpy(tmp + 1, &v->n, 4);
        n = 5;
    }
    if (rn_buf_append(b, tmp, n, 0) != 0) return -ENOMEM;
    if (n == 5 && v->n && rn_buf_append(b, v->s, v->n, 0) != 0) return -ENOMEM;
    return 0;
}

/* Read one serialized value at *p (a view into the bytes). */
static void val_deser(const uint8_t **p, val_t *v)
{
    const uint8_t *q = *p;
    memset(v, 0, sizeof *v);
    v->type = *q++;
    if (v->type == RN_SQL_INT) { memcpy(&v->i, q, 8); q += 8; }
    else if (v->type == RN_SQL_REAL) { memcpy(&v->d, q, 8); q += 8; }
    else if (v->type == RN_SQL_TEXT || v->type == RN_SQL_BLOB) {
        memcpy(&v->n, q, 4);
        q += 4;
        v->s = (uint8_t *)q;
        q += v->n;
    }
    *p = q;
}

/* ---- a byte-keyed hash map (open addressing, linear probing) ---------------- */

typedef struct ment {
    uint64_t       h;
    const uint8_t *k;      /* NULL: empty */
    uint32_t       kl;
    void          *v;
} ment_t;

typedef struct map {
    ment_t *e;
    size_t  cap, n;        /* cap is a power of two */
} map_t;

static uint64_t hash_bytes(const uint8_t *p, size_t n)
{
    uint64_t h = 0x9E3779B97F4A7C15ull ^ n;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdull;
        h ^= h >> 32;
        p += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, p, n);
    h = (h ^ w) * 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 29;
    return h;
}

static ment_t *map_find(map_t *m, uint64_t h, const uint8_t *k, uint32_t kl)
{
    if (!m->cap) return NULL;
    for (size_t i = h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        ment_t *e = &m->e[i];
        if (!e->k) return NULL;
        if (e->h == h && e->kl == kl && memcmp(e->k, k, kl) == 0) return e;
    }
}

static int map_put(map_t *m, uint64_t h, const uint8_t *k, uint32_t kl, void *v)
{
    if ((m->n + 1) * 10 > m->cap * 7) {
        size_t ncap = m->cap ? m->cap * 2 : 16;
        ment_t *ne = calloc(ncap, sizeof *ne);
        if (!ne) return -ENOMEM;
        for (size_t i = 0; i < m->cap; i++) {
            if (!m->e[i].k) continue;
            size_t j = m->e[i].h & (ncap - 1);
            while (ne[j].k) j = (j + 1) & (ncap - 1);
            ne[j] = m->e[i];
        }
        free(m->e);
        m->e = ne;
        m->cap = ncap;
    }
    size_t j = h & (m->cap - 1);
    while (m->e[j].k) j = (j + 1) & (m->cap - 1);
    m->e[j] = (ment_t){h, k, kl, v};
    m->n++;
    return 0;
}

/* ---- accumulators ----------------------------------------------------------- */

/* ---- sketches: HyperLogLog and a log-bucket quantile sketch ------------------- */

#define HLL_P    12                    /* 4096 one-byte registers: standard error 1.04/64 */
#define HLL_M    (1u << HLL_P)
#define DDS_ALPHA 0.01                 /* relative error of percentile_approx */
#define DDS_SPAN  2048                 /* buckets per sign; lower ones collapse */
#define DDS_MIN   1e-300               /* magnitudes below count as zero */

static uint64_t mix64(uint64_t h)
{
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebull;
    return h ^ (h >> 31);
}

static void hll_add(uint8_t *reg, uint64_t h)
{
    uint32_t j = (uint32_t)(h >> (64 - HLL_P));
    uint64_t w = h << HLL_P;
    uint8_t rank = w ? (uint8_t)(__builtin_clzll(w) + 1) : (uint8_t)(64 - HLL_P + 1);
    if (rank > reg[j]) reg[j] = rank;
}

static double hll_estimate(const uint8_t *reg)
{
    double sum = 0, m = HLL_M;
    uint32_t zeros = 0;
    for (uint32_t j = 0; j < HLL_M; j++) {
        sum += ldexp(1.0, -reg[j]);
        zeros += reg[j] == 0;
    }
    double e = 0.7213 / (1 + 1.079 / m) * m * m / sum;
    if (e <= 2.5 * m && zeros) e = m * log(m / zeros);      /* linear counting */
    return e;
}

/* One sign's buckets: counts of bucket lo + i for i < n. A bucket k holds
 * magnitudes in (g^(k-1), g^k], g = (1 + a)/(1 - a). At most DDS_SPAN buckets:
 * lower ones fold into the lowest kept, so the final state is the same
 * whatever the order values arrived in (each value ends in bucket
 * max(its own, top - DDS_SPAN + 1)). */
typedef struct dstore {
    int32_t   lo;
    uint32_t  n;
    uint64_t *c;
} dstore_t;

typedef struct dds {
    uint64_t count, zero;
    dstore_t pos, neg;
} dds_t;

static double dds_gamma(void) { return (1 + DDS_ALPHA) / (1 - DDS_ALPHA); }

static int dstore_add(dstore_t *d, int32_t k, uint64_t cnt)
{
    if (!d->n) {
        d->c = calloc(1, sizeof *d->c);
        if (!d->c) return -ENOMEM;
        d->lo = k;
        d->n = 1;
    }
    int32_t hi = d->lo + (int32_t)d->n - 1;
    if (k > hi) {
        /* grow up; fold what falls below the span */
        int32_t nlo = k - DDS_SPAN + 1 > d->lo ? k - DDS_SPAN + 1 : d->lo;
        uint32_t nn = (uint32_t)(k - nlo + 1);
        uint64_t *c = calloc(nn, sizeof *c);
        if (!c) return -ENOMEM;
        for (uint32_t i = 0; i < d->n; i++) {
            int32_t b = d->lo + (int32_t)i;
            c[(b < nlo ? nlo : b) - nlo] += d->c[i];
        }
        free(d->c);
        d->c = c;
        d->lo = nlo;
        d->n = nn;
        hi = k;
    }
    if (k < hi - DDS_SPAN + 1) k = hi - DDS_SPAN + 1;
    if (k < d->lo) {
        uint32_t nn = (uint32_t)(hi - k + 1);
        uint64_t *c = calloc(nn, sizeof *c);
        if (!c) return -ENOMEM;
        memcpy(c + (d->lo - k), d->c, d->n * sizeof *c);
        free(d->c);
        d->c = c;
        d->lo = k;
        d->n = nn;
    }
    d->c[k - d->lo] += cnt;
    return 0;
}

static int dds_add(dds_t *s, double x, uint64_t cnt)
{
    s->count += cnt;
    double a = fabs(x);
    if (!(a > DDS_MIN)) { s->zero += cnt; return 0; }
    int32_t k = (int32_t)ceil(log(a) / log(dds_gamma()));
    return dstore_add(x > 0 ? &s->pos : &s->neg, k, cnt);
}

static int dds_merge(dds_t *a, const dds_t *b)
{
    a->count += b->count;
    a->zero += b->zero;
    for (int sign = 0; sign < 2; sign++) {
        const dstore_t *src = sign ? &b->neg : &b->pos;
        dstore_t *dst = sign ? &a->neg : &a->pos;
        for (uint32_t i = 0; i < src->n; i++)
            if (src->c[i] && dstore_add(dst, src->lo + (int32_t)i, src->c[i]) != 0)
                return -ENOMEM;
    }
    return 0;
}

/* The value at rank floor(p * (count - 1)) (0-based, ascending), within
 * DDS_ALPHA relative error. */
static double dds_quantile(const dds_t *s, double p)
{
    double g = dds_gamma();
    uint64_t rank = (uint64_t)floor(p * (double)(s->count - 1)), seen = 0;
    for (uint32_t i = s->neg.n; i-- > 0;) {          /* most negative first */
        seen += s->neg.c[i];
        if (seen > rank) return -2 * pow(g, s->neg.lo + (int32_t)i) / (g + 1);
    }
    seen += s->zero;
    if (seen > rank) return 0;
    for (uint32_t i = 0; i < s->pos.n; i++) {
        seen += s->pos.c[i];
        if (seen > rank) return 2 * pow(g, s->pos.lo + (int32_t)i) / (g + 1);
    }
    return s->pos.n ? 2 * pow(g, s->pos.lo + (int32_t)s->pos.n - 1) / (g + 1) : 0;
}

static void dds_free(dds_t *s)
{
    if (!s) return;
    free(s->pos.c);
    free(s->neg.c);
    free(s);
}

typedef struct acc {
    int64_t  n;
    int64_t  isum;
    double   rsum;
    uint8_t  approx, overflow, has;
    uint64_t seq;          /* first/last: the row the value came from */
    val_t    v;
    map_t   *set;          /* DISTINCT: owned keys */
    double   mean, m2;     /* variance/stddev: Welford's running mean and sum of squares */
    uint8_t *hll;          /* approx_count_distinct: HLL_M registers, or NULL */
    dds_t   *dds;          /* percentile_approx, or NULL */
    val_t   *rows;         /* TopN (AG_TOPN): the kept encoded rows, sorted; owned */
    uint32_t nrows, caprows;
} acc_t;

struct wgroup {
    wgroup_t *next;        /* session chain */
    int64_t   start, end;
    uint64_t  seq;
    uint8_t  *kbuf;        /* 8 bytes start + serialized keys, after acc[] in g's block */
    uint32_t  klen;        /* of the serialized keys */
    uint32_t  kreal;       /* bit k: key k was an integral REAL (serialized as the
                              integer for equality; reported as a REAL, as sqlite) */
    uint8_t   dirty, closed, dead, seen;
    acc_t     acc[];
};

struct win {
    win_cfg_t  cfg;
    map_t      groups;     /* TUMBLE/HOP/GLOBAL: key = kbuf (start + keys) -> group;
                              SESSION: key = keys -> chain of sessions */
    int64_t    max_ts;     /* event-time frontier (rn_win_advance); INT64_MIN: none yet */
    int64_t    closed_to;  /* windows with end <= closed_to were closed */
    int64_t    min_end;    /* lower bound of open windows' ends */
    uint64_t   seq, ngroups;
    rn_buf_t   key;        /* scratch: serialized keys of the current row */
    uint32_t   kreal;      /* scratch: its integral-REAL keys (wgroup_t.kreal) */
    rn_buf_t   tmp;        /* scratch: a serialized distinct value */
    uint32_t   skip;       /* scratch: bit j, the current row is not for aggregate j
                              (its FILTER was not true) */
    wgroup_t **dirty;      /* EMIT CHANGES: touched since the last collect */
    size_t     ndirty, capdirty;
    wgroup_t **out;        /* handed out by rn_win_collect */
    size_t     nout, capout;
    wgroup_t **sorttmp;    /* capout entries: the merge sort's other half */
    size_t     capsort;
    wgroup_t **graveyard;  /* merged-away or closed groups, freed by rn_win_release */
    size_t     ngrave, capgrave;
};

static int push(wgroup_t ***v, size_t *n, size_t *cap, wgroup_t *g)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        wgroup_t **p = realloc(*v, nc * sizeof *p);
        if (!p) return -ENOMEM;
        *v = p;
        *cap = nc;
    }
    (*v)[(*n)++] = g;
    return 0;
}

static void set_free(map_t *s)
{
    if (!s) return;
    for (size_t i = 0; i < s->cap; i++) free((void *)s->e[i].k);
    free(s->e);
    free(s);
}

static void group_free(const win_t *w, wgroup_t *g)
{
    for (int j = 0; j < w->cfg.naggs; j++) {
        free(g->acc[j].v.s);
        set_free(g->acc[j].set);
        free(g->acc[j].hll);
        dds_free(g->acc[j].dds);
        for (uint32_t r = 0; r < g->acc[j].nrows; r++) free(g->acc[j].rows[r].s);
        free(g->acc[j].rows);
    }
    free(g);                   /* kbuf is inside g's allocation (group_new) */
}

/* Is v new to the DISTINCT set of a? (adds it) */
static int distinct_new(win_t *w, acc_t *a, const val_t *v, int *is_new)
{
    w->tmp.len = 0;
    if (val_ser(&w->tmp, v) != 0) return -ENOMEM;
    uint64_t h = hash_bytes(w->tmp.data, w->tmp.len);
    if (!a->set && !(a->set = calloc(1, sizeof *a->set))) return -ENOMEM;
    if (map_find(a->set, h, w->tmp.data, (uint32_t)w->tmp.len)) { *is_new = 0; return 0; }
    uint8_t *k = malloc(w->tmp.len);
    if (!k) return -ENOMEM;
    memcpy(k, w->tmp.data, w->tmp.len);
    if (map_put(a->set, h, k, (uint32_t)w->tmp.len, NULL) != 0) { free(k); return -ENOMEM; }
    *is_new = 1;
    return 0;
}

/* TopN (AG_TOPN): insert encoded row v into a's sorted rows (memcmp order is
 * the ranking order, topn.c), then keep only the rows whose rank is within
 * the limit the rows carry: the state is bounded by N (plus rows tied with
 * the N-th under RANK / DENSE_RANK). */
static int blob_cmp(const val_t *a, const val_t *b)
{
    int c = memcmp(a->s, b->s, a->n < b->n ? a->n : b->n);
    return c ? c : a->n < b->n ? -1 : a->n > b->n;
}

static int topn_add(acc_t *a, const val_t *v)
{
    if (v->type != RN_SQL_BLOB) return -EINVAL;
    uint32_t lo = 0, hi = a->nrows;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (blob_cmp(&a->rows[mid], v) <= 0) lo = mid + 1;
        else hi = mid;
    }
    int fn;
    int64_t limit;
    rn_topn_row_limit(v->s, v->n, &fn, &limit);
    if (fn == 0 && (int64_t)lo >= limit) return 0;      /* ROW_NUMBER: past the N-th */
    if (a->nrows == a->caprows) {
        uint32_t cap = a->caprows ? a->caprows * 2 : limit < 4 ? 1 : 4;   /* dedup: 1 */
        val_t *r = realloc(a->rows, cap * sizeof *r);
        if (!r) return -ENOMEM;
        a->rows = r;
        a->caprows = cap;
    }
    memmove(a->rows + lo + 1, a->rows + lo, (a->nrows - lo) * sizeof *a->rows);
    memset(&a->rows[lo], 0, sizeof a->rows[lo]);
    a->nrows++;
    if (val_copy(&a->rows[lo], v) != 0) {
        memmove(a->rows + lo, a->rows + lo + 1, (a->nrows - lo - 1) * sizeof *a->rows);
        a->nrows--;
        return -ENOMEM;
    }
    int64_t rank = 0, dense = 0;
    uint32_t keep = 0;
    for (uint32_t i = 0; i < a->nrows; i++) {
        int tie = i > 0 && rn_topn_row_tie(a->rows[i - 1].s, a->rows[i - 1].n, a->rows[i].s,
                                           a->rows[i].n);
        if (!tie) { rank = i + 1; dense++; }
        int64_t shown = fn == 0 ? (int64_t)i + 1 : fn == 1 ? rank : dense;
        if (shown > limit) break;
        keep = i + 1;
    }
    for (uint32_t i = keep; i < a->nrows; i++) free(a->rows[i].s);
    a->nrows = keep;
    a->n++;
    return 0;
}

/* Fold value v (already numerically converted for sum/avg) of row seq. */
static int acc_step(win_t *w, int j, acc_t *a, const val_t *v, uint64_t seq)
{
    agg_kind_t kind = w->cfg.agg[j];
    if (kind == AG_COUNT_STAR) { a->n++; return 0; }
    if (v->type == RN_SQL_NULL) {
        if (kind == AG_LAST || (kind == AG_FIRST && !a->has)) {
            free(a->v.s);
            memset(&a->v, 0, sizeof a->v);
            a->has = 1;
            a->seq = seq;
        }
        return 0;
    }
    if (w->cfg.distinct[j]) {
        int is_new;
        if (distinct_new(w, a, v, &is_new) != 0) return -ENOMEM;
        if (!is_new) return 0;
    }
    switch (kind) {
    case AG_COUNT: a->n++; break;
    case AG_SUM: case AG_TOTAL: case AG_AVG:
        a->n++;
        if (v->type == RN_SQL_INT) {
            a->rsum += (double)v->i;
            if (!a->approx && !a->overflow && __builtin_add_overflow(a->isum, v->i, &a->isum))
                a->overflow = 1;
        } else {
            a->rsum += v->type == RN_SQL_REAL ? v->d : 0.0;
            a->approx = 1;
        }
        break;
    case AG_MIN: case AG_MAX: {
        int c = a->has ? val_cmp(v, &a->v) : 0;
        if (!a->has || (kind == AG_MIN ? c < 0 : c > 0)) {
            if (val_copy(&a->v, v) != 0) return -ENOMEM;
            a->has = 1;
        }
        break;
    }
    case AG_FIRST: case AG_LAST:
        if (kind == AG_LAST || !a->has) {
            if (val_copy(&a->v, v) != 0) return -ENOMEM;
            a->has = 1;
            a->seq = seq;
        }
        break;
    case AG_VAR_SAMP: case AG_VAR_POP: case AG_STD_SAMP: case AG_STD_POP: {
        double x = v->type == RN_SQL_INT ? (double)v->i : v->type == RN_SQL_REAL ? v->d : 0.0;
        a->n++;
        double delta = x - a->mean;
        a->mean += delta / (double)a->n;
        a->m2 += delta * (x - a->mean);
        break;
    }
    case AG_PCTL: {
        double x = v->type == RN_SQL_INT ? (double)v->i : v->type == RN_SQL_REAL ? v->d : 0.0;
        if (!a->dds && !(a->dds = calloc(1, sizeof *a->dds))) return -ENOMEM;
        a->n++;
        if (dds_add(a->dds, x, 1) != 0) return -ENOMEM;
        break;
    }
    case AG_TOPN:
        return topn_add(a, v);
    case AG_HLL:
        w->tmp.len = 0;
        if (val_ser(&w->tmp, v) != 0) return -ENOMEM;
        if (!a->hll && !(a->hll = calloc(HLL_M, 1))) return -ENOMEM;
        a->n++;
        hll_add(a->hll, mix64(hash_bytes(w->tmp.data, w->tmp.len)));
        break;
    default: break;
    }
    return 0;
}

/* Merge accumulator b into a (sessions). */
static int acc_merge(win_t *w, int j, acc_t *a, acc_t *b)
{
    agg_kind_t kind = w->cfg.agg[j];
    if (w->cfg.distinct[j] && b->set && kind != AG_MIN && kind != AG_MAX) {
        for (size_t i = 0; i < b->set->cap; i++) {
            if (!b->set->e[i].k) continue;
            const uint8_t *p = b->set->e[i].k;
            val_t v;
            val_deser(&p, &v);
            if (acc_step(w, j, a, &v, b->seq) != 0) return -ENOMEM;
        }
        return 0;
    }
    switch (kind) {
    case AG_COUNT_STAR: case AG_COUNT: a->n += b->n; break;
    case AG_SUM: case AG_TOTAL: case AG_AVG:
        a->n += b->n;
        a->rsum += b->rsum;
        a->approx |= b->approx;
        a->overflow |= b->overflow;
        if (!a->approx && !a->overflow && __builtin_add_overflow(a->isum, b->isum, &a->isum))
            a->overflow = 1;
        break;
    case AG_MIN: case AG_MAX:
        if (b->has && (!a->has || (kind == AG_MIN ? val_cmp(&b->v, &a->v) < 0
                                                  : val_cmp(&b->v, &a->v) > 0))) {
            if (val_copy(&a->v, &b->v) != 0) return -ENOMEM;
            a->has = 1;
        }
        break;
    case AG_FIRST: case AG_LAST:
        if (b->has && (!a->has || (kind == AG_FIRST ? b->seq < a->seq : b->seq > a->seq))) {
            if (val_copy(&a->v, &b->v) != 0) return -ENOMEM;
            a->has = 1;
            a->seq = b->seq;
        }
        break;
    case AG_VAR_SAMP: case AG_VAR_POP: case AG_STD_SAMP: case AG_STD_POP:
        if (b->n) {
            /* Chan et al.'s pairwise combination of two Welford states */
            double n = (double)(a->n + b->n), delta = b->mean - a->mean;
            a->m2 += b->m2 + delta * delta * (double)a->n * (double)b->n / n;
            a->mean += delta * (double)b->n / n;
            a->n += b->n;
        }
        break;
    case AG_PCTL:
        if (b->dds) {
            if (!a->dds && !(a->dds = calloc(1, sizeof *a->dds))) return -ENOMEM;
            if (dds_merge(a->dds, b->dds) != 0) return -ENOMEM;
        }
        a->n += b->n;
        break;
    case AG_TOPN:
        for (uint32_t i = 0; i < b->nrows; i++)
            if (topn_add(a, &b->rows[i]) != 0) return -ENOMEM;
        break;
    case AG_HLL:
        if (b->hll) {
            if (!a->hll && !(a->hll = calloc(HLL_M, 1))) return -ENOMEM;
            for (uint32_t r = 0; r < HLL_M; r++)
                if (b->hll[r] > a->hll[r]) a->hll[r] = b->hll[r];
        }
        a->n += b->n;
        break;
    }
    return 0;
}

static void acc_result(const win_t *w, int j, const acc_t *a, sqlite3_context *ctx)
{
    switch (w->cfg.agg[j]) {
    case AG_COUNT_STAR: case AG_COUNT: sqlite3_result_int64(ctx, a->n); break;
    case AG_SUM:
        if (!a->n) sqlite3_result_null(ctx);
        else if (a->approx || a->overflow) sqlite3_result_double(ctx, a->rsum);
        else sqlite3_result_int64(ctx, a->isum);
        break;
    case AG_TOTAL: sqlite3_result_double(ctx, a->rsum); break;
    case AG_AVG:
        if (!a->n) sqlite3_result_null(ctx);
        else sqlite3_result_double(ctx, a->rsum / (double)a->n);
        break;
    case AG_VAR_SAMP: case AG_STD_SAMP: case AG_VAR_POP: case AG_STD_POP: {
        int samp = w->cfg.agg[j] == AG_VAR_SAMP || w->cfg.agg[j] == AG_STD_SAMP;
        int sd = w->cfg.agg[j] == AG_STD_SAMP || w->cfg.agg[j] == AG_STD_POP;
        if (a->n < (samp ? 2 : 1)) { sqlite3_result_null(ctx); break; }
        double var = (a->m2 > 0 ? a->m2 : 0) / (double)(a->n - samp);
        sqlite3_result_double(ctx, sd ? sqrt(var) : var);
        break;
    }
    case AG_PCTL:
        if (!a->dds || !a->dds->count) sqlite3_result_null(ctx);
        else sqlite3_result_double(ctx, dds_quantile(a->dds, w->cfg.param[j]));
        break;
    case AG_HLL:
        sqlite3_result_int64(ctx, a->hll ? llround(hll_estimate(a->hll)) : 0);
        break;
    case AG_TOPN: {
        /* the kept rows: per row its length (4 bytes, little-endian) and bytes */
        size_t total = 0;
        for (uint32_t i = 0; i < a->nrows; i++) total += 4 + a->rows[i].n;
        uint8_t *out = sqlite3_malloc64(total ? total : 1), *p = out;
        if (!out) { sqlite3_result_error_nomem(ctx); break; }
        for (uint32_t i = 0; i < a->nrows; i++) {
            uint32_t n = a->rows[i].n;
            for (int k = 0; k < 4; k++) *p++ = (uint8_t)(n >> (8 * k));
            memcpy(p, a->rows[i].s, n);
            p += n;
        }
        sqlite3_result_blob64(ctx, out, total, sqlite3_free);
        break;
    }
    default:
        if (a->has) val_result(&a->v, ctx);
        else sqlite3_result_null(ctx);
        break;
    }
}

/* ---- groups ----------------------------------------------------------------- */

int rn_win_create(const win_cfg_t *cfg, win_t **out, char *errmsg)
{
    win_t *w = calloc(1, sizeof *w);
    if (!w) return rn_errf(errmsg, -ENOMEM, "out of memory");
    w->cfg = *cfg;
    w->max_ts = INT64_MIN;
    w->closed_to = INT64_MIN;
    w->min_end = INT64_MAX;
    *out = w;
    return 0;
}

static void free_all(win_t *w)
{
    for (size_t i = 0; i < w->groups.cap; i++) {
        wgroup_t *g = w->groups.e[i].k ? w->groups.e[i].v : NULL;
        while (g) {
            wgroup_t *nx = g->next;
            group_free(w, g);
            g = nx;
        }
    }
    free(w->groups.e);
    memset(&w->groups, 0, sizeof w->groups);
}

void rn_win_destroy(win_t *w)
{
    if (!w) return;
    rn_win_release(w);
    free_all(w);
    rn_buf_free(&w->key);
    rn_buf_free(&w->tmp);
    free(w->dirty);
    free(w->out);
    free(w->sorttmp);
    free(w->graveyard);
    free(w);
}

static wgroup_t *group_new(win_t *w, int64_t start, int64_t end)
{
    /* one allocation: the group, its accumulators, then its key bytes */
    size_t head = sizeof(wgroup_t) + (size_t)w->cfg.naggs * sizeof(acc_t);
    wgroup_t *g = calloc(1, head + w->key.len);
    if (!g) return NULL;
    g->kbuf = (uint8_t *)g + head;
    memcpy(g->kbuf, &start, 8);
    memcpy(g->kbuf + 8, w->key.data + 8, w->key.len - 8);
    g->klen = (uint32_t)(w->key.len - 8);
    g->kreal = w->kreal;
    g->start = start;
    g->end = end;
    g->seq = w->seq++;
    w->ngroups++;
    if (end < w->min_end) w->min_end = end;
    return g;
}

static int touch(win_t *w, wgroup_t *g)
{
    if (!w->cfg.changes || g->dirty) return 0;
    if (w->cfg.first_seen) {
        if (g->seen) return 0;
        g->seen = 1;
    }
    g->dirty = 1;
    return push(&w->dirty, &w->ndirty, &w->capdirty, g);
}

/* Fold the row's values (one per aggregate) into g, but for the aggregates
 * whose FILTER rejected the row (bit j of w->skip). */
static int step_all(win_t *w, wgroup_t *g, const val_t *args, uint64_t seq)
{
    for (int j = 0; j < w->cfg.naggs; j++) {
        if (w->skip >> j & 1) continue;
        if (acc_step(w, j, &g->acc[j], &args[j], seq) != 0) return -ENOMEM;
    }
    return touch(w, g);
}

/* The group of window [start, end) for the current keys (TUMBLE/HOP/GLOBAL). */
static int fixed_group(win_t *w, int64_t start, int64_t end, wgroup_t **out)
{
    memcpy(w->key.data, &start, 8);
    uint64_t h = hash_bytes(w->key.data, w->key.len);
    ment_t *e = map_find(&w->groups, h, w->key.data, (uint32_t)w->key.len);
    if (e) { *out = e->v; return 0; }
    wgroup_t *g = group_new(w, start, end);
    if (!g) return -ENOMEM;
    if (map_put(&w->groups, h, g->kbuf, g->klen + 8, g) != 0) {
        group_free(w, g);
        return -ENOMEM;
    }
    *out = g;
    return 0;
}

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static int session_add(win_t *w, int64_t ts, const val_t *args, uint64_t seq)
{
    int64_t gap = w->cfg.size_ms;
    const uint8_t *kp = w->key.data + 8;
    uint32_t kl = (uint32_t)w->key.len - 8;
    uint64_t h = hash_bytes(kp, kl);
    ment_t *e = map_find(&w->groups, h, kp, kl);
    wgroup_t *target = NULL;
    int64_t lo = ts, hi = ts + gap;
    if (e) {
        for (wgroup_t *g = e->v; g; g = g->next)
            if (g->end > w->closed_to && g->end > lo && g->start < hi &&
                !(w->max_ts != INT64_MIN && g->end <= w->max_ts - w->cfg.delay_ms)) {
                target = g;
                break;
            }
    }
    if (!target) {
        wgroup_t *g = group_new(w, ts, hi);
        if (!g) return -ENOMEM;
        if (e) {
            g->next = e->v;
            e->v = g;
            e->k = g->kbuf + 8;
        } else if (map_put(&w->groups, h, g->kbuf + 8, g->klen, g) != 0) {
            group_free(w, g);
            return -ENOMEM;
        }
        return step_all(w, g, args, seq);
    }
    if (ts < target->start) target->start = ts;
    if (hi > target->end) target->end = hi;
    int rc = step_all(w, target, args, seq);
    if (rc != 0) return rc;
    /* merge every other open session the grown one now overlaps */
    int64_t wm = w->max_ts == INT64_MIN ? INT64_MIN : w->max_ts - w->cfg.delay_ms;
    for (int again = 1; again;) {
        again = 0;
        for (wgroup_t **pp = (wgroup_t **)&e->v; *pp;) {
            wgroup_t *g = *pp;
            if (g == target || g->end <= wm || g->end <= target->start || g->start >= target->end) {
                pp = &g->next;
                continue;
            }
            for (int j = 0; j < w->cfg.naggs; j++)
                if (acc_merge(w, j, &target->acc[j], &g->acc[j]) != 0) return -ENOMEM;
            if (g->start < target->start) target->start = g->start;
            if (g->end > target->end) target->end = g->end;
            *pp = g->next;
            g->dead = 1;
            w->ngroups--;
            if (push(&w->graveyard, &w->ngrave, &w->capgrave, g) != 0) return -ENOMEM;
            again = 1;
        }
    }
    e->k = ((wgroup_t *)e->v)->kbuf + 8;
    return touch(w, target);
}

int rn_win_add(win_t *w, int64_t ts, sqlite3_value **keys, sqlite3_value **args, uint64_t *late,
            char *errmsg)
{
    val_t av[RN_SQL_MAX_AGGS];
    w->key.len = 0;
    int64_t zero = 0;
    if (rn_buf_append(&w->key, &zero, 8, 0) != 0) goto oom;
    w->kreal = 0;
    for (int k = 0; k < w->cfg.nkeys; k++) {
        val_t v;
        val_view(keys[k], &v);
        if (v.type == RN_SQL_REAL) w->kreal |= 1u << k;
        if (val_ser(&w->key, &v) != 0) goto oom;
    }
    w->skip = 0;
    for (int j = 0, a = 0; j < w->cfg.naggs; j++) {
        agg_kind_t kind = w->cfg.agg[j];
        memset(&av[j], 0, sizeof av[j]);
        if (kind != AG_COUNT_STAR) {
            if (kind == AG_SUM || kind == AG_TOTAL || kind == AG_AVG ||
                (kind >= AG_VAR_SAMP && kind <= AG_PCTL))
                sqlite3_value_numeric_type(args[a]);
            val_view(args[a], &av[j]);
            a++;
        }
        if (w->cfg.filter[j]) {
            /* FILTER (WHERE c): the row counts when c is true, as in WHERE */
            sqlite3_value *c = args[a++];
            int t = sqlite3_value_numeric_type(c);
            int on = t == SQLITE_INTEGER ? sqlite3_value_int64(c) != 0
                     : t == SQLITE_FLOAT ? sqlite3_value_double(c) != 0.0 : 0;
            if (!on) w->skip |= 1u << j;
        }
    }
    uint64_t seq = w->seq++;
    int64_t wm = w->max_ts == INT64_MIN ? INT64_MIN : w->max_ts - w->cfg.delay_ms;
    if (w->closed_to > wm) wm = w->closed_to;
    int rc = 0, was_late = 0;
    wgroup_t *g;
    switch (w->cfg.kind) {
    case WK_GLOBAL:
        rc = fixed_group(w, 0, INT64_MAX, &g);
        if (rc == 0) rc = step_all(w, g, av, seq);
        break;
    case WK_TUMBLE: {
        int64_t s = floor_div(ts, w->cfg.size_ms) * w->cfg.size_ms;
        if (s + w->cfg.size_ms <= wm) { was_late = 1; break; }
        rc = fixed_group(w, s, s + w->cfg.size_ms, &g);
        if (rc == 0) rc = step_all(w, g, av, seq);
        break;
    }
    case WK_HOP: {
        int64_t s = floor_div(ts, w->cfg.slide_ms) * w->cfg.slide_ms;
        for (; rc == 0 && s > ts - w->cfg.size_ms; s -= w->cfg.slide_ms) {
            if (s + w->cfg.size_ms <= wm) { was_late = 1; continue; }
            rc = fixed_group(w, s, s + w->cfg.size_ms, &g);
            if (rc == 0) rc = step_all(w, g, av, seq);
        }
        break;
    }
    case WK_SESSION:
        if (ts + w->cfg.size_ms <= wm) { was_late = 1; break; }
        rc = session_add(w, ts, av, seq);
        break;
    default: break;
    }
    if (rc != 0) goto oom;
    if (was_late) (*late)++;
    return 0;
oom:
    return rn_errf(errmsg, -ENOMEM, "out of memory for window state");
}

/* Closing order: by end first. Windows close when the watermark passes
 * their end, so ordering each collect by end makes the concatenation of
 * collects the same whether windows closed one record at a time or many
 * together (invariant 6). */
static int cmp_groups(const void *a, const void *b)
{
    const wgroup_t *x = *(wgroup_t *const *)a, *y = *(wgroup_t *const *)b;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    if (x->start != y->start) return x->start < y->start ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int cmp_groups_keys(const void *a, const void *b)
{
    const wgroup_t *x = *(wgroup_t *const *)a, *y = *(wgroup_t *const *)b;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    if (x->start != y->start) return x->start < y->start ? -1 : 1;
    uint32_t m = x->klen < y->klen ? x->klen : y->klen;
    int c = m ? memcmp(x->kbuf + 8, y->kbuf + 8, m) : 0;
    if (c) return c < 0 ? -1 : 1;
    if (x->klen != y->klen) return x->klen < y->klen ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int groups_before(const wgroup_t *x, const wgroup_t *y, int keys)
{
    return (keys ? cmp_groups_keys(&x, &y) : cmp_groups(&x, &y)) < 0;
}

/* Sort a[0..n) in closing order: insertion sort of runs of 16, then merges
 * through tmp, the comparison inlined (qsort's indirect call per comparison
 * was most of the cost of emitting many small groups). Both orders end in
 * seq, unique per group, so the order is total: any correct sort gives the
 * same sequence as qsort did. */
static void sort_groups(wgroup_t **a, wgroup_t **tmp, size_t n, int keys)
{
    enum { RUN = 16 };
    for (size_t lo = 0; lo < n; lo += RUN) {
        size_t hi = lo + RUN < n ? lo + RUN : n;
        for (size_t i = lo + 1; i < hi; i++) {
            wgroup_t *g = a[i];
            size_t j = i;
            for (; j > lo && groups_before(g, a[j - 1], keys); j--) a[j] = a[j - 1];
            a[j] = g;
        }
    }
    wgroup_t **src = a, **dst = tmp;
    for (size_t width = RUN; width < n; width *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * width) {
            size_t mid = lo + width < n ? lo + width : n, hi = lo + 2 * width < n ? lo + 2 * width : n;
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi) dst[k++] = groups_before(src[j], src[i], keys) ? src[j++] : src[i++];
            while (i < mid) dst[k++] = src[i++];
            while (j < hi) dst[k++] = src[j++];
        }
        wgroup_t **t = src;
        src = dst;
        dst = t;
    }
    if (src != a) memcpy(a, src, n * sizeof *a);
}

int rn_win_collect(win_t *w, int close_all, wgroup_t ***out, size_t *n, char *errmsg)
{
    int64_t wm = w->max_ts == INT64_MIN ? INT64_MIN : w->max_ts - w->cfg.delay_ms;
    if (w->cfg.kind == WK_GLOBAL) wm = INT64_MIN;
    if (close_all == 1) wm = INT64_MAX;
    if (close_all == 2 && w->cfg.kind != WK_GLOBAL) {
        /* idle: the watermark moves to the end of the last open window */
        for (size_t i = 0; i < w->groups.cap; i++)
            for (wgroup_t *g = w->groups.e[i].k ? w->groups.e[i].v : NULL; g; g = g->next)
                if (g->end > wm) wm = g->end;
    }
    w->nout = 0;
    if (close_all == 1 && w->cfg.kind == WK_GLOBAL && w->cfg.nkeys == 0 && w->groups.n == 0) {
        /* a global aggregate over no rows still has its one row (count 0,
         * sum NULL, ...), as in sqlite */
        wgroup_t *g;
        int64_t zero = 0;
        w->key.len = 0;
        if (rn_buf_append(&w->key, &zero, 8, 0) != 0 || fixed_group(w, 0, INT64_MAX, &g) != 0 ||
            touch(w, g) != 0)
            goto oom;
    }
    if (w->cfg.changes) {
        for (size_t i = 0; i < w->ndirty; i++) {
            wgroup_t *g = w->dirty[i];
            g->dirty = 0;
            if (!g->dead && push(&w->out, &w->nout, &w->capout, g) != 0) goto oom;
        }
        w->ndirty = 0;
    }
    if (wm >= w->min_end && wm > w->closed_to) {
        /* rebuild the map without the groups that close */
        map_t old = w->groups;
        memset(&w->groups, 0, sizeof w->groups);
        w->min_end = INT64_MAX;
        int failed = 0;
        for (size_t i = 0; i < old.cap; i++) {
            if (!old.e[i].k) continue;
            wgroup_t *keep = NULL, **tail = &keep;
            for (wgroup_t *g = old.e[i].v, *nx; g; g = nx) {
                nx = g->next;
                g->next = NULL;
                if (g->end <= wm) {
                    g->closed = 1;
                    w->ngroups--;
                    if ((!w->cfg.changes && push(&w->out, &w->nout, &w->capout, g) != 0) ||
                        push(&w->graveyard, &w->ngrave, &w->capgrave, g) != 0)
                        failed = 1;
                } else {
                    *tail = g;
                    tail = &g->next;
                    if (g->end < w->min_end) w->min_end = g->end;
                }
            }
            if (keep) {
                const uint8_t *k = w->cfg.kind == WK_SESSION ? keep->kbuf + 8 : keep->kbuf;
                uint32_t kl = w->cfg.kind == WK_SESSION ? keep->klen : keep->klen + 8;
                if (map_put(&w->groups, old.e[i].h, k, kl, keep) != 0) failed = 1;
            }
        }
        free(old.e);
        w->closed_to = wm;
        if (failed) goto oom;
    }
    if (!w->cfg.changes && w->nout > 1) {
        if (w->capsort < w->nout) {
            wgroup_t **t = realloc(w->sorttmp, w->capout * sizeof *t);
            if (!t) goto oom;
            w->sorttmp = t;
            w->capsort = w->capout;
        }
        sort_groups(w->out, w->sorttmp, w->nout, w->cfg.key_order);
    }
    *out = w->out;
    *n = w->nout;
    return 0;
oom:
    return rn_errf(errmsg, -ENOMEM, "out of memory for window state");
}

void rn_win_release(win_t *w)
{
    for (size_t i = 0; i < w->ngrave; i++) group_free(w, w->graveyard[i]);
    w->ngrave = 0;
    w->nout = 0;
}

void rn_win_advance(win_t *w, int64_t frontier)
{
    if (w->cfg.kind != WK_GLOBAL && frontier > w->max_ts) w->max_ts = frontier;
}

int64_t rn_win_watermark(const win_t *w)
{
    if (w->max_ts == INT64_MIN) return w->closed_to;
    int64_t wm = w->max_ts - w->cfg.delay_ms;
    return wm > w->closed_to ? wm : w->closed_to;
}

int rn_win_has_open(const win_t *w)
{
    return w->ngroups > 0;
}

void rn_win_group_column(const win_t *w, const wgroup_t *g, int col, sqlite3_context *ctx)
{
    if (col == 0 || col == 1) {
        if (w->cfg.kind == WK_GLOBAL) sqlite3_result_null(ctx);
        else sqlite3_result_int64(ctx, col == 0 ? g->start : g->end);
        return;
    }
    col -= 2;
    if (col < w->cfg.nkeys) {
        const uint8_t *p = g->kbuf + 8;
        val_t v = {0};
        for (int k = 0; k <= col; k++) val_deser(&p, &v);
        if (v.type == RN_SQL_INT && (g->kreal >> col & 1)) {
            v.type = RN_SQL_REAL;
            v.d = (double)v.i;
        }
        val_result(&v, ctx);
        return;
    }
    col -= w->cfg.nkeys;
    if (col < w->cfg.naggs) acc_result(w, col, &g->acc[col], ctx);
    else sqlite3_result_null(ctx);
}

/* ---- saving and restoring (checkpoints) ------------------------------------- */

/* Saved window state (host byte order; read back by the same build's data
 * directory only):
 *
 *   u32 magic "RNW1" | u8 kind, nkeys, naggs, format | i64 max_ts | i64 closed_to
 *   | u64 seq | u64 ngroups | ngroups x group
 *   group: i64 start | i64 end | u64 seq | u32 klen | klen key bytes
 *          | [format >= 1] u32 kreal | naggs x acc
 *   acc:   i64 n | i64 isum | f64 rsum | u8 approx, overflow, has | u64 seq
 *          | value (u8 type, then i64 / f64 / u32 len + bytes) | u32 nset
 *          | nset x (u32 len, bytes)
 *          | [format >= 2] f64 mean | f64 m2 | u8 has_hll [+ 4096 registers]
 *          | u8 has_dds [+ u64 count | u64 zero | 2 x (i32 lo | u32 n | n x u64)]
 */
#define WIN_MAGIC 0x31574e52u   /* "RNW1" */
#define WIN_FORMAT 2            /* 0: groups without kreal; 1: with it; 2: with the
                                   statistical accumulators and sketches */
_Static_assert(RN_SQL_MAX_KEYS <= 32, "wgroup_t.kreal holds a bit per key");
_Static_assert(RN_SQL_MAX_AGGS <= 32, "win_t.skip holds a bit per aggregate");

static int put(rn_buf_t *b, const void *p, size_t n)
{
    return rn_buf_append(b, p, n, 0) == 0 ? 0 : -ENOMEM;
}

#define PUT(b, v) put((b), &(v), sizeof (v))

/* A value with its exact type (not val_ser's key form). */
static int val_save(rn_buf_t *b, const val_t *v)
{
    int rc = PUT(b, v->type);
    if (rc == 0 && v->type == RN_SQL_INT) rc = PUT(b, v->i);
    else if (rc == 0 && v->type == RN_SQL_REAL) rc = PUT(b, v->d);
    else if (rc == 0 && (v->type == RN_SQL_TEXT || v->type == RN_SQL_BLOB)) {
        rc = PUT(b, v->n);
        if (rc == 0 && v->n) rc = put(b, v->s, v->n);
    }
    return rc;
}

/* Format 2: mean, m2, then the HLL registers (u8 present + HLL_M bytes) and
 * the quantile sketch (u8 present, count, zero, then per sign lo, n, counts). */
static int sketch_save(const acc_t *a, rn_buf_t *b)
{
    uint8_t has_hll = a->hll != NULL, has_dds = a->dds != NULL;
    int rc = PUT(b, a->mean);
    if (rc == 0) rc = PUT(b, a->m2);
    if (rc == 0) rc = PUT(b, has_hll);
    if (rc == 0 && has_hll) rc = put(b, a->hll, HLL_M);
    if (rc == 0) rc = PUT(b, has_dds);
    if (rc == 0 && has_dds) {
        rc = PUT(b, a->dds->count);
        if (rc == 0) rc = PUT(b, a->dds->zero);
        for (int sign = 0; rc == 0 && sign < 2; sign++) {
            const dstore_t *d = sign ? &a->dds->neg : &a->dds->pos;
            rc = PUT(b, d->lo);
            if (rc == 0) rc = PUT(b, d->n);
            if (rc == 0 && d->n) rc = put(b, d->c, d->n * sizeof *d->c);
        }
    }
    return rc;
}

static int group_save(const win_t *w, const wgroup_t *g, rn_buf_t *b)
{
    int rc = PUT(b, g->start);
    if (rc == 0) rc = PUT(b, g->end);
    if (rc == 0) rc = PUT(b, g->seq);
    if (rc == 0) rc = PUT(b, g->klen);
    if (rc == 0 && g->klen) rc = put(b, g->kbuf + 8, g->klen);
    if (rc == 0) rc = PUT(b, g->kreal);
    for (int j = 0; rc == 0 && j < w->cfg.naggs; j++) {
        const acc_t *a = &g->acc[j];
        uint8_t fl[3] = {a->approx, a->overflow, a->has};
        uint32_t nset = a->set ? (uint32_t)a->set->n : 0;
        rc = PUT(b, a->n);
        if (rc == 0) rc = PUT(b, a->isum);
        if (rc == 0) rc = PUT(b, a->rsum);
        if (rc == 0) rc = put(b, fl, 3);
        if (rc == 0) rc = PUT(b, a->seq);
        if (rc == 0) rc = val_save(b, &a->v);
        if (rc == 0) rc = PUT(b, nset);
        for (size_t i = 0; rc == 0 && a->set && i < a->set->cap; i++) {
            const ment_t *e = &a->set->e[i];
            if (!e->k) continue;
            rc = PUT(b, e->kl);
            if (rc == 0) rc = put(b, e->k, e->kl);
        }
        if (rc == 0) rc = sketch_save(a, b);
        if (rc == 0 && w->cfg.agg[j] == AG_TOPN) {       /* its rows, in order */
            rc = PUT(b, a->nrows);
            for (uint32_t i = 0; rc == 0 && i < a->nrows; i++) rc = val_save(b, &a->rows[i]);
        }
    }
    return rc;
}

int rn_win_save(const win_t *w, rn_buf_t *b, char *errmsg)
{
    if (w->nout || w->ngrave || w->ndirty)
        return rn_errf(errmsg, RN_EINVAL, "window state can only be saved between steps");
    uint32_t magic = WIN_MAGIC;
    uint8_t hdr[4] = {(uint8_t)w->cfg.kind, (uint8_t)w->cfg.nkeys, (uint8_t)w->cfg.naggs,
                      WIN_FORMAT};
    uint64_t count = 0;
    for (size_t i = 0; i < w->groups.cap; i++)
        for (const wgroup_t *g = w->groups.e[i].k ? w->groups.e[i].v : NULL; g; g = g->next)
            count++;
    int rc = PUT(b, magic);
    if (rc == 0) rc = put(b, hdr, 4);
    if (rc == 0) rc = PUT(b, w->max_ts);
    if (rc == 0) rc = PUT(b, w->closed_to);
    if (rc == 0) rc = PUT(b, w->seq);
    if (rc == 0) rc = PUT(b, count);
    for (size_t i = 0; rc == 0 && i < w->groups.cap; i++)
        for (const wgroup_t *g = w->groups.e[i].k ? w->groups.e[i].v : NULL; rc == 0 && g;
             g = g->next)
            rc = group_save(w, g, b);
    return rc == 0 ? 0 : rn_errf(errmsg, rc, "out of memory saving window state");
}

/* A bounds-checked reader over saved bytes. */
typedef struct rd {
    const uint8_t *p, *end;
    int            bad;
} rd_t;

static const uint8_t *take(rd_t *r, size_t n)
{
    if (r->bad || (size_t)(r->end - r->p) < n) { r->bad = 1; return NULL; }
    const uint8_t *p = r->p;
    r->p += n;
    return p;
}

static void get(rd_t *r, void *out, size_t n)
{
    const uint8_t *p = take(r, n);
    if (p) memcpy(out, p, n);
    else memset(out, 0, n);
}

#define GET(r, v) get((r), &(v), sizeof (v))

static int val_load(rd_t *r, val_t *v)
{
    memset(v, 0, sizeof *v);
    GET(r, v->type);
    if (v->type == RN_SQL_INT) GET(r, v->i);
    else if (v->type == RN_SQL_REAL) GET(r, v->d);
    else if (v->type == RN_SQL_TEXT || v->type == RN_SQL_BLOB) {
        GET(r, v->n);
        const uint8_t *p = take(r, v->n);
        if (!p) return 0;
        v->s = malloc(v->n ? v->n : 1);
        if (!v->s) return -ENOMEM;
        if (v->n) memcpy(v->s, p, v->n);
    } else if (v->type != RN_SQL_NULL) {
        r->bad = 1;
    }
    return 0;
}

static int sketch_load(rd_t *r, acc_t *a)
{
    uint8_t has_hll, has_dds;
    GET(r, a->mean);
    GET(r, a->m2);
    GET(r, has_hll);
    if (has_hll) {
        const uint8_t *p = take(r, HLL_M);
        if (!p) return 0;
        if (!(a->hll = malloc(HLL_M))) return -ENOMEM;
        memcpy(a->hll, p, HLL_M);
    }
    GET(r, has_dds);
    if (!has_dds || r->bad) return 0;
    if (!(a->dds = calloc(1, sizeof *a->dds))) return -ENOMEM;
    GET(r, a->dds->count);
    GET(r, a->dds->zero);
    for (int sign = 0; sign < 2 && !r->bad; sign++) {
        dstore_t *d = sign ? &a->dds->neg : &a->dds->pos;
        GET(r, d->lo);
        GET(r, d->n);
        if (d->n > DDS_SPAN) { r->bad = 1; d->n = 0; break; }
        if (!d->n) continue;
        const uint8_t *p = take(r, d->n * sizeof *d->c);
        if (!p) { d->n = 0; break; }
        if (!(d->c = malloc(d->n * sizeof *d->c))) { d->n = 0; return -ENOMEM; }
        memcpy(d->c, p, d->n * sizeof *d->c);
    }
    return 0;
}

/* One saved group into w (sessions appended to their key's chain). */
static int group_load(win_t *w, rd_t *r, uint8_t format)
{
    int64_t start, end;
    uint64_t seq;
    uint32_t klen;
    GET(r, start);
    GET(r, end);
    GET(r, seq);
    GET(r, klen);
    const uint8_t *k = take(r, klen);
    if (!k) return 0;
    w->key.len = 0;
    if (rn_buf_append(&w->key, &start, 8, 0) != 0 || rn_buf_append(&w->key, k, klen, 0) != 0)
        return -ENOMEM;
    w->kreal = 0;
    if (format >= 1) GET(r, w->kreal);
    wgroup_t *g = group_new(w, start, end);
    if (!g) return -ENOMEM;
    g->seq = seq;
    g->seen = 1;                      /* saved between steps: it was emitted */
    w->seq--;                         /* group_new counted one; seq is restored whole */
    int rc = 0;
    for (int j = 0; rc == 0 && !r->bad && j < w->cfg.naggs; j++) {
        acc_t *a = &g->acc[j];
        uint8_t fl[3];
        uint32_t nset;
        GET(r, a->n);
        GET(r, a->isum);
        GET(r, a->rsum);
        get(r, fl, 3);
        a->approx = fl[0]; a->overflow = fl[1]; a->has = fl[2];
        GET(r, a->seq);
        if ((rc = val_load(r, &a->v)) != 0) break;
        GET(r, nset);
        for (uint32_t i = 0; rc == 0 && !r->bad && i < nset; i++) {
            uint32_t kl;
            GET(r, kl);
            const uint8_t *m = take(r, kl);
            if (!m) break;
            if (!a->set && !(a->set = calloc(1, sizeof *a->set))) { rc = -ENOMEM; break; }
            uint8_t *copy = malloc(kl ? kl : 1);
            if (!copy) { rc = -ENOMEM; break; }
            memcpy(copy, m, kl);
            if (map_put(a->set, hash_bytes(copy, kl), copy, kl, NULL) != 0) {
                free(copy);
                rc = -ENOMEM;
            }
        }
        if (rc == 0 && format >= 2) rc = sketch_load(r, a);
        if (rc == 0 && w->cfg.agg[j] == AG_TOPN) {
            uint32_t nrows = 0;
            GET(r, nrows);
            if (nrows > (uint32_t)(r->end - r->p)) { r->bad = 1; break; }
            if (nrows && !(a->rows = calloc(nrows, sizeof *a->rows))) { rc = -ENOMEM; break; }
            a->caprows = nrows;
            for (uint32_t i = 0; rc == 0 && !r->bad && i < nrows; i++) {
                rc = val_load(r, &a->rows[i]);
                a->nrows = i + 1;
                if (rc == 0 && a->rows[i].type != RN_SQL_BLOB) r->bad = 1;
            }
        }
    }
    if (rc == 0 && !r->bad) {
        if (w->cfg.kind == WK_SESSION) {
            uint64_t h = hash_bytes(g->kbuf + 8, g->klen);
            ment_t *e = map_find(&w->groups, h, g->kbuf + 8, g->klen);
            if (e) {
                wgroup_t **tail = (wgroup_t **)&e->v;
                while (*tail) tail = &(*tail)->next;
                *tail = g;
                return 0;
            }
            rc = map_put(&w->groups, h, g->kbuf + 8, g->klen, g);
        } else {
            uint64_t h = hash_bytes(g->kbuf, g->klen + 8);
            if (map_find(&w->groups, h, g->kbuf, g->klen + 8)) r->bad = 1;   /* duplicate */
            else rc = map_put(&w->groups, h, g->kbuf, g->klen + 8, g);
        }
        if (rc == 0 && !r->bad) return 0;
    }
    group_free(w, g);
    return rc;
}

int rn_win_load(win_t *w, const uint8_t *p, size_t n, char *errmsg)
{
    rd_t r = {p, p + n, 0};
    uint32_t magic;
    uint8_t hdr[4];
    uint64_t count, seq;
    int rc = 0;
    free_all(w);
    w->ngroups = 0;
    w->min_end = INT64_MAX;
    GET(&r, magic);
    get(&r, hdr, 4);
    if (r.bad || magic != WIN_MAGIC || hdr[0] != (uint8_t)w->cfg.kind ||
        hdr[1] != (uint8_t)w->cfg.nkeys || hdr[2] != (uint8_t)w->cfg.naggs || hdr[3] > WIN_FORMAT)
        return rn_errf(errmsg, RN_ECORRUPT, "saved window state does not match this query");
    GET(&r, w->max_ts);
    GET(&r, w->closed_to);
    GET(&r, seq);
    GET(&r, count);
    for (uint64_t i = 0; rc == 0 && !r.bad && i < count; i++) rc = group_load(w, &r, hdr[3]);
    w->seq = seq;
    if (rc == 0 && (r.bad || r.p != r.end))
        rc = rn_errf(errmsg, RN_ECORRUPT, "saved window state is damaged");
    else if (rc != 0)
        rc = rn_errf(errmsg, rc, "out of memory loading window state");
    if (rc != 0) {
        free_all(w);
        w->ngroups = 0;
        w->min_end = INT64_MAX;
    }
    return rc;
}
