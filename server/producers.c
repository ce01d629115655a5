/*
 * producers.c — idempotent producer registry and per-queue sequence state
 * (server/producers.h).
 *
 * DIR/producers (text, rewritten whole with rn_write_file_atomic):
 *   runnel-producers 1
 *   next N              the next id to issue (ids 1..N-1 were issued)
 *   ID EPOCH            one line per issued id, ascending, every id present
 *
 * Invariants:
 *  1. An id or epoch is handed out only after the file naming it is durable,
 *     so a restart never issues the same (id, epoch) twice and fencing holds
 *     across restarts.
 *  2. epochs[i] is the current epoch of id i + 1; ids are dense from 1.
 *  3. Per queue and producer, next_seq is one past the last stored sequence
 *     of the entry's epoch, and recent[] holds that producer's last
 *     RN_PSTATE_WINDOW stored batches on the queue, oldest first from head.
 *  4. A batch is a duplicate only when it equals a recent batch exactly
 *     (epoch, base sequence, record count); anything else that is not the
 *     next sequence is refused, so nothing is stored twice or out of order.
 *     A producer the queue has never seen (or no longer remembers after a
 *     restart beyond the rebuilt tail) may start at any sequence; a new
 *     epoch must start at 0.
 */
#include "server/producers.h"

#include "common/error.h"
#include "common/sys.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PREG_MAX_BYTES (64u << 20)
#define PREG_MAX_IDS   (4u << 20)
#define SEQ_MOD        ((int64_t)1 << 31)      /* sequences wrap as Kafka's */

struct rn_preg {
    char            dir[4096];
    pthread_mutex_t mu;
    int16_t        *epochs;      /* invariant 2 */
    size_t          n, cap;
};

static int preg_grow(rn_preg_t *r, size_t want)
{
    if (want <= r->cap) return 0;
    size_t cap = r->cap ? r->cap * 2 : 64;
    while (cap < want) cap *= 2;
    int16_t *v = realloc(r->epochs, cap * sizeof *v);
    if (!v) return -ENOMEM;
    r->epochs = v;
    r->cap = cap;
    return 0;
}

/* Parse the file's text (NUL-terminated) into r. */
static int preg_parse(rn_preg_t *r, char *text, char *errmsg)
{
    char *save = NULL, *line = strtok_r(text, "\n", &save);
    int64_t next = -1;
    unsigned lineno = 1;
    if (!line || strcmp(line, "runnel-producers 1") != 0)
        return rn_errf(errmsg, RN_ECORRUPT, "%s/%s: line 1 is not 'runnel-producers 1'", r->dir,
                       RN_PREG_FILE);
    while ((line = strtok_r(NULL, "\n", &save)) != NULL) {
        lineno++;
        long long a, b;
        char extra;
        if (next < 0) {
            if (sscanf(line, "next %lld %c", &a, &extra) != 1 || a < 1 || a > PREG_MAX_IDS + 1)
                return rn_errf(errmsg, RN_ECORRUPT, "%s/%s: line %u: expected 'next N'", r->dir,
                               RN_PREG_FILE, lineno);
            next = a;
            if (preg_grow(r, (size_t)(next - 1)) != 0)
                return rn_errf(errmsg, -ENOMEM, "out of memory");
            continue;
        }
        if (sscanf(line, "%lld %lld %c", &a, &b, &extra) != 2 || a != (long long)r->n + 1 ||
            a >= next || b < 0 || b > INT16_MAX)
            return rn_errf(errmsg, RN_ECORRUPT, "%s/%s: line %u: expected '%zu EPOCH'", r->dir,
                           RN_PREG_FILE, lineno, r->n + 1);
        r->epochs[r->n++] = (int16_t)b;
    }
    if (next < 0 || (int64_t)r->n != next - 1)
        return rn_errf(errmsg, RN_ECORRUPT, "%s/%s: %zu ids listed, 'next' says %lld", r->dir,
                       RN_PREG_FILE, r->n, (long long)(next < 0 ? 0 : next - 1));
    return 0;
}

int rn_preg_open(const char *dir, rn_preg_t **out, char *errmsg)
{
    *out = NULL;
    rn_preg_t *r = calloc(1, sizeof *r);
    if (!r) return rn_errf(errmsg, -ENOMEM, "out of memory");
    snprintf(r->dir, sizeof r->dir, "%s", dir);
    pthread_mutex_init(&r->mu, NULL);
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, RN_PREG_FILE);
    uint8_t *data = NULL;
    size_t n = 0;
    int rc = rn_read_file(path, PREG_MAX_BYTES, &data, &n);
    if (rc == -ENOENT) { *out = r; return 0; }
    if (rc != 0) {
        rn_errf(errmsg, rc, "cannot read %s: %s", path, rn_strerror(rc));
        goto fail;
    }
    char *text = malloc(n + 1);
    if (!text) { rc = rn_errf(errmsg, -ENOMEM, "out of memory"); goto fail; }
    memcpy(text, data, n);
    text[n] = '\0';
    rc = memchr(text, '\0', n) ? rn_errf(errmsg, RN_ECORRUPT, "%s holds a NUL byte", path)
                               : preg_parse(r, text, errmsg);
    free(text);
    if (rc != 0) goto fail;
    free(data);
    *out = r;
    return 0;
fail:
    free(data);
    rn_preg_close(r);
    return rc;
}

void rn_preg_close(rn_preg_t *r)
{
    if (!r) return;
    pthread_mutex_destroy(&r->mu);
    free(r->epochs);
    free(r);
}

/* Write the registry durably (invariant 1). r->mu held. */
static int preg_save(rn_preg_t *r, char *errmsg)
{
    size_t cap = 64 + r->n * 24;
    char *buf = malloc(cap);
    if (!buf) return rn_errf(errmsg, -ENOMEM, "out of memory");
    size_t len = (size_t)snprintf(buf, cap, "runnel-producers 1\nnext %zu\n", r->n + 1);
    for (size_t i = 0; i < r->n; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%zu %d\n", i + 1, (int)r->epochs[i]);
    int rc = rn_write_file_atomic(r->dir, RN_PREG_FILE, buf, len);
    free(buf);
    if (rc != 0)
        return rn_errf(errmsg, rc, "cannot write %s/%s: %s", r->dir, RN_PREG_FILE,
                       rn_strerror(rc));
    return 0;
}

int rn_preg_init(rn_preg_t *r, int64_t id, int64_t *out_id, int16_t *out_epoch, char *errmsg)
{
    int rc = 0;
    pthread_mutex_lock(&r->mu);
    if (id == 0) {
        if (r->n >= PREG_MAX_IDS) {
            rc = rn_errf(errmsg, RN_EFULL, "this broker has issued its %u producer ids",
                         PREG_MAX_IDS);
        } else if (preg_grow(r, r->n + 1) != 0) {
            rc = rn_errf(errmsg, -ENOMEM, "out of memory");
        } else {
            r->epochs[r->n++] = 0;
            rc = preg_save(r, errmsg);
            if (rc != 0) r->n--;
            else { *out_id = (int64_t)r->n; *out_epoch = 0; }
        }
    } else if (id < 0 || (uint64_t)id > r->n) {
        rc = rn_errf(errmsg, RN_ENOTFOUND, "unknown producer id %lld: this broker issued ids "
                     "1..%zu; ask for a new one with producer_id 0", (long long)id, r->n);
    } else if (r->epochs[id - 1] == INT16_MAX) {
        rc = rn_errf(errmsg, RN_EFULL, "producer id %lld has used every epoch; ask for a new id",
                     (long long)id);
    } else {
        r->epochs[id - 1]++;
        rc = preg_save(r, errmsg);
        if (rc != 0) r->epochs[id - 1]--;
        else { *out_id = id; *out_epoch = r->epochs[id - 1]; }
    }
    pthread_mutex_unlock(&r->mu);
    return rc;
}

int rn_preg_epoch(rn_preg_t *r, int64_t id, int16_t *epoch)
{
    int rc = RN_ENOTFOUND;
    pthread_mutex_lock(&r->mu);
    if (id >= 1 && (uint64_t)id <= r->n) { *epoch = r->epochs[id - 1]; rc = 0; }
    pthread_mutex_unlock(&r->mu);
    return rc;
}

/* ---- per-queue state ------------------------------------------------------ */

static const rn_pentry_t *find(const rn_pstate_t *s, int64_t pid)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->v[i].pid == pid) return &s->v[i];
    return NULL;
}

static int64_t seq_after(int32_t base, int32_t count)
{
    return ((int64_t)base + count) % SEQ_MOD;
}

static int refuse(rn_status_t *st, rn_st_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int refuse(rn_status_t *st, rn_st_t code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(st->msg, sizeof st->msg, fmt, ap);
    va_end(ap);
    st->code = code;
    return -1;
}

int rn_pstate_check(const rn_pstate_t *s, rn_preg_t *reg, const rn_batch_header_t *h,
                    const rn_batch_header_t *prev, size_t nprev, rn_pbatch_t *dup,
                    rn_status_t *st)
{
    if (h->producer_id < 0) return 0;
    long long pid = (long long)h->producer_id;
    if (h->base_sequence < 0 || h->producer_epoch < 0)
        return refuse(st, RN_ST_INVALID_ARGUMENT, "producer %lld: base sequence %d and epoch %d "
                    "must not be negative", pid, (int)h->base_sequence, (int)h->producer_epoch);
    if (reg) {
        int16_t cur;
        if (rn_preg_epoch(reg, h->producer_id, &cur) != 0)
            return refuse(st, RN_ST_FAILED_PRECONDITION, "unknown producer id %lld: call "
                        "InitProducer for an id", pid);
        if (h->producer_epoch < cur)
            return refuse(st, RN_ST_FAILED_PRECONDITION, "producer %lld epoch %d is stale: the "
                        "current epoch is %d (a newer instance took over)", pid,
                        (int)h->producer_epoch, (int)cur);
    }
    /* Where this producer stands: after the request's own earlier batches,
     * else the stored state. */
    int known = 0;
    int16_t epoch = 0;
    int64_t next = 0;
    for (size_t i = nprev; i-- > 0;) {
        if (prev[i].producer_id != h->producer_id) continue;
        known = 1;
        epoch = prev[i].producer_epoch;
        next = seq_after(prev[i].base_sequence, prev[i].record_count);
        break;
    }
    const rn_pentry_t *e = find(s, h->producer_id);
    if (!known && e) { known = 1; epoch = e->epoch; next = e->next_seq; }
    if (!known) return 0;
    if (h->producer_epoch < epoch)
        return refuse(st, RN_ST_FAILED_PRECONDITION, "producer %lld epoch %d is stale: this queue "
                    "has epoch %d", pid, (int)h->producer_epoch, (int)epoch);
    if (h->producer_epoch > epoch) {
        if (h->base_sequence == 0) return 0;
        return refuse(st, RN_ST_FAILED_PRECONDITION, "producer %lld epoch %d: a new epoch starts at "
                    "sequence 0, got %d", pid, (int)h->producer_epoch, (int)h->base_sequence);
    }
    if (h->base_sequence == next) return 0;
    if (e && e->epoch == h->producer_epoch) {
        for (uint32_t k = 0; k < e->nrecent; k++) {
            const rn_pbatch_t *b = &e->recent[(e->head + k) % RN_PSTATE_WINDOW];
            if (b->epoch == h->producer_epoch && b->base_seq == h->base_sequence &&
                b->count == h->record_count) {
                *dup = *b;
                return 1;
            }
        }
    }
    int64_t behind = (next - h->base_sequence + SEQ_MOD) % SEQ_MOD;
    if (behind > 0 && behind < SEQ_MOD / 2)
        return refuse(st, RN_ST_FAILED_PRECONDITION, "producer %lld epoch %d: sequence %d is a "
                    "duplicate outside the last %d batches or does not match one (expected %lld, "
                    "got %d)", pid, (int)h->producer_epoch, (int)h->base_sequence,
                    RN_PSTATE_WINDOW, (long long)next, (int)h->base_sequence);
    return refuse(st, RN_ST_FAILED_PRECONDITION, "producer %lld epoch %d: sequence gap (expected "
                "%lld, got %d)", pid, (int)h->producer_epoch, (long long)next,
                (int)h->base_sequence);
}

int rn_pstate_record(rn_pstate_t *s, const rn_batch_header_t *h, int64_t base_offset,
                     uint64_t ticket)
{
    if (h->producer_id < 0) return 0;
    rn_pentry_t *e = (rn_pentry_t *)find(s, h->producer_id);
    if (!e) {
        if (s->n == s->cap) {
            size_t cap = s->cap ? s->cap * 2 : 4;
            rn_pentry_t *v = realloc(s->v, cap * sizeof *v);
            if (!v) return -ENOMEM;
            s->v = v;
            s->cap = cap;
        }
        e = &s->v[s->n++];
        memset(e, 0, sizeof *e);
        e->pid = h->producer_id;
        e->epoch = h->producer_epoch;
    }
    if (h->producer_epoch != e->epoch) {
        e->epoch = h->producer_epoch;
        e->nrecent = e->head = 0;
    }
    rn_pbatch_t b = {h->producer_epoch, h->base_sequence, h->record_count, base_offset, ticket};
    if (e->nrecent < RN_PSTATE_WINDOW) {
        e->recent[(e->head + e->nrecent) % RN_PSTATE_WINDOW] = b;
        e->nrecent++;
    } else {
        e->recent[e->head] = b;
        e->head = (e->head + 1) % RN_PSTATE_WINDOW;
    }
    e->next_seq = seq_after(h->base_sequence, h->record_count);
    return 0;
}

void rn_pstate_free(rn_pstate_t *s)
{
    free(s->v);
    s->v = NULL;
    s->n = s->cap = 0;
}
