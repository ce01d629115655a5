/*
 * producers.c — idempotent producer registry and per-queue sequence state
 * (server/producers.h).
 *
 * DIR/producers (text, append-only, compacted by an atomic rewrite):
 *   runnel-producers 2
 *   block N             ids below N may have been issued (reserved durably)
 *   epoch ID E          id ID has epoch E (the last record of an id counts;
 *                       an id without one has epoch 0)
 * Format 1 (older brokers, rewritten whole per new producer) is still read:
 *   runnel-producers 1 / next N / "ID EPOCH" for every id 1..N-1.
 *
 * Invariants:
 *  1. An id or epoch is handed out only after a record making it durable
 *     was appended and fdatasynced ("block" covering the id; "epoch"), so a
 *     restart never issues the same (id, epoch) twice and fencing holds
 *     across restarts. After a reopen, next = the reserved block's end.
 *  2. The in-memory table (next, the epochs above 0) changes only under mu,
 *     after the record is durable; mu is never held across I/O. The file is
 *     written only under wmu (appends, and the compaction's rewrite).
 *  3. Compaction: when the file holds more than 2 x (live records) + 1024
 *     records it is rewritten atomically from the table (temp, fsync,
 *     rename, fsync dir), so its size stays O(state), and appends are O(1).
 *  4. Per queue and producer, next_seq is one past the last stored sequence
 *     of the entry's epoch (mod 2^31), and recent[] holds that producer's
 *     last RN_PSTATE_WINDOW stored batches on the queue, oldest first from
 *     head. Entries are found through slots[], an open-addressing hash of
 *     pid (linear probing, load below 1/2), rebuilt whenever v[] moves.
 *  5. A batch is a duplicate only when it equals a recent batch exactly
 *     (epoch, base sequence, record count); anything else that is not the
 *     next sequence is refused, so nothing is stored twice or out of order.
 *     A producer the queue has never seen (or no longer remembers: after a
 *     restart beyond the rebuilt tail, or idle past expire_ms) may start at
 *     any sequence; a new epoch must start at 0; an epoch above the one the
 *     registry issued is refused (it would fence out the real producer).
 */
#include "server/producers.h"

#include "common/error.h"
#include "common/sys.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PREG_MAX_BYTES (256u << 20)
#define PREG_MAX_ID    ((int64_t)1 << 53)
#define SEQ_MOD        ((int64_t)1 << 31)      /* sequences wrap as Kafka's */

typedef struct pe {              /* an id whose epoch is above 0 */
    int64_t id;                  /* 0: empty slot */
    int16_t epoch;
} pe_t;

struct rn_preg {
    char            dir[4096];
    pthread_mutex_t mu;          /* invariant 2: the table */
    pthread_mutex_t wmu;         /* invariant 2: the file */
    int64_t         next;        /* the next id to issue */
    int64_t         block_end;   /* ids below it are reserved durably */
    pe_t           *tab;         /* open addressing by id */
    size_t          tcap, tn;
    int             fd;          /* DIR/producers for appending; -1 until needed */
    uint64_t        records;     /* records in the file (under wmu) */
};

static size_t id_hash(int64_t id)
{
    uint64_t x = (uint64_t)id * 0x9E3779B97F4A7C15ull;
    return (size_t)(x ^ (x >> 29));
}

static pe_t *tab_slot(const rn_preg_t *r, int64_t id)
{
    size_t m = r->tcap - 1;
    for (size_t i = id_hash(id) & m;; i = (i + 1) & m)
        if (r->tab[i].id == id || r->tab[i].id == 0) return &r->tab[i];
}

/* The epoch of a known id (mu held). */
static int16_t tab_get(const rn_preg_t *r, int64_t id)
{
    if (!r->tcap) return 0;
    const pe_t *e = tab_slot(r, id);
    return e->id == id ? e->epoch : 0;
}

/* Set id's epoch (mu held; during open, alone). -ENOMEM. */
static int tab_set(rn_preg_t *r, int64_t id, int16_t epoch)
{
    if ((r->tn + 1) * 2 > r->tcap) {
        size_t cap = r->tcap ? r->tcap * 2 : 64;
        pe_t *t = calloc(cap, sizeof *t), *old = r->tab;
        if (!t) return -ENOMEM;
        size_t ocap = r->tcap;
        r->tab = t;
        r->tcap = cap;
        for (size_t i = 0; i < ocap; i++)
            if (old[i].id) *tab_slot(r, old[i].id) = old[i];
        free(old);
    }
    pe_t *e = tab_slot(r, id);
    if (e->id == 0) { e->id = id; r->tn++; }
    e->epoch = epoch;
    return 0;
}

static int parse_fail(const rn_preg_t *r, unsigned lineno, const char *what, char *errmsg)
{
    return rn_errf(errmsg, RN_ECORRUPT, "%s/%s: line %u: %s", r->dir, RN_PREG_FILE, lineno,
                   what);
}

/* Format 1 (whole-file rewrites of older brokers). text NUL-terminated. */
static int parse_v1(rn_preg_t *r, char *text, char *errmsg)
{
    char *save = NULL, *line = strtok_r(text, "\n", &save);
    int64_t next = -1, n = 0;
    unsigned lineno = 1;
    (void)line;                                       /* the header, checked by the caller */
    while ((line = strtok_r(NULL, "\n", &save)) != NULL) {
        lineno++;
        long long a, b;
        char extra;
        if (next < 0) {
            if (sscanf(line, "next %lld %c", &a, &extra) != 1 || a < 1 || a > PREG_MAX_ID)
                return rn_errf(errmsg, RN_ECORRUPT, "%s/%s: line %u: expected 'next N'", r->dir,
                               RN_PREG_FILE, lineno);
            next = a;
            continue;
        }
        if (sscanf(line, "%lld %lld %c", &a, &b, &extra) != 2 || a != (long long)n + 1 ||
            a >= next || b < 0 || b > INT16_MAX)
            return rn_errf(errmsg, RN_ECORRUPT, "%s/%s: line %u: expected '%lld EPOCH'", r->dir,
                           RN_PREG_FILE, lineno, (long long)n + 1);
        n++;
        if (b > 0 && tab_set(r, a, (int16_t)b) != 0)
            return rn_errf(errmsg, -ENOMEM, "out of memory");
    }
    if (next < 0 || n != next - 1)
        return rn_errf(errmsg, RN_ECORRUPT, "%s/%s: %lld ids listed, 'next' says %lld", r->dir,
                       RN_PREG_FILE, (long long)n, (long long)(next < 0 ? 0 : next - 1));
    r->next = r->block_end = next;
    return 0;
}

/* Format 2 (append-only records). A last line without its newline is a torn
 * append, never acknowledged: dropped. */
static int parse_v2(rn_preg_t *r, char *text, size_t n, char *errmsg)
{
    char *p = strchr(text, '\n');
    unsigned lineno = 1;
    int64_t block = 1;
    while (p && *++p) {
        char *nl = strchr(p, '\n');
        lineno++;
        if (!nl) break;                               /* torn tail */
        *nl = '\0';
        long long a, b;
        char extra;
        if (sscanf(p, "block %lld %c", &a, &extra) == 1) {
            if (a < block || a > PREG_MAX_ID)
                return parse_fail(r, lineno, "a block never goes back nor past 2^53", errmsg);
            block = a;
        } else if (sscanf(p, "epoch %lld %lld %c", &a, &b, &extra) == 2) {
            if (a < 1 || a >= block || b < 0 || b > INT16_MAX)
                return parse_fail(r, lineno, "'epoch ID E' needs an id below the block and "
                                  "E in 0..32767", errmsg);
            if (tab_set(r, a, (int16_t)b) != 0) return rn_errf(errmsg, -ENOMEM, "out of memory");
        } else {
            return parse_fail(r, lineno, "expected 'block N' or 'epoch ID E'", errmsg);
        }
        r->records++;
        p = nl;
    }
    (void)n;
    r->next = r->block_end = block;
    return 0;
}

/* Rewrite the file from the table (invariant 3). wmu held (or open, alone). */
static int preg_compact(rn_preg_t *r, char *errmsg)
{
    pthread_mutex_lock(&r->mu);
    size_t cap = 64 + r->tn * 48;
    char *buf = malloc(cap);
    size_t len = 0, live = 1;
    if (buf) {
        len = (size_t)snprintf(buf, cap, "runnel-producers 2\nblock %lld\n",
                               (long long)r->block_end);
        for (size_t i = 0; i < r->tcap; i++) {
            if (!r->tab[i].id) continue;
            len += (size_t)snprintf(buf + len, cap - len, "epoch %lld %d\n",
                                    (long long)r->tab[i].id, (int)r->tab[i].epoch);
            live++;
        }
    }
    pthread_mutex_unlock(&r->mu);
    if (!buf) return rn_errf(errmsg, -ENOMEM, "out of memory");
    int rc = rn_write_file_atomic(r->dir, RN_PREG_FILE, buf, len);
    free(buf);
    if (rc != 0)
        return rn_errf(errmsg, rc, "cannot write %s/%s: %s", r->dir, RN_PREG_FILE,
                       rn_strerror(rc));
    if (r->fd >= 0) rn_sys.close(r->fd);
    r->fd = -1;
    r->records = live;
    return 0;
}

/* Append one record durably (invariant 1). wmu held, mu not. */
static int preg_append(rn_preg_t *r, const char *rec, size_t n, char *errmsg)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", r->dir, RN_PREG_FILE);
    if (r->fd < 0) {
        r->fd = rn_sys.open(path, O_WRONLY | O_APPEND | O_CLOEXEC, 0);
        if (r->fd < 0)
            return rn_errf(errmsg, -errno, "cannot open %s: %s", path, strerror(errno));
    }
    ssize_t w = rn_sys.pwrite(r->fd, rec, n, 0);       /* O_APPEND: at the end */
    int rc = w == (ssize_t)n ? 0 : w < 0 ? -errno : -EIO;
    if (rc == 0 && rn_sys.fdatasync(r->fd) != 0) rc = -errno;
    if (rc != 0) {
        /* A torn or unsynced record may be in the file: rewrite it whole so
         * the next append does not follow a partial line. */
        char ignore[RN_ERRMSG_SIZE];
        preg_compact(r, ignore);
        return rn_errf(errmsg, rc, "cannot append to %s: %s", path, rn_strerror(rc));
    }
    r->records++;
    return 0;
}

int rn_preg_open(const char *dir, rn_preg_t **out, char *errmsg)
{
    *out = NULL;
    rn_preg_t *r = calloc(1, sizeof *r);
    if (!r) return rn_errf(errmsg, -ENOMEM, "out of memory");
    snprintf(r->dir, sizeof r->dir, "%s", dir);
    pthread_mutex_init(&r->mu, NULL);
    pthread_mutex_init(&r->wmu, NULL);
    r->fd = -1;
    r->next = r->block_end = 1;
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, RN_PREG_FILE);
    uint8_t *data = NULL;
    size_t n = 0;
    int rc = rn_read_file(path, PREG_MAX_BYTES, &data, &n);
    if (rc == -ENOENT) rc = 0;
    else if (rc != 0) rn_errf(errmsg, rc, "cannot read %s: %s", path, rn_strerror(rc));
    else {
        char *text = malloc(n + 1);
        if (!text) { rc = rn_errf(errmsg, -ENOMEM, "out of memory"); goto fail; }
        memcpy(text, data, n);
        text[n] = '\0';
        if (memchr(text, '\0', n)) rc = rn_errf(errmsg, RN_ECORRUPT, "%s holds a NUL byte", path);
        else if (!strncmp(text, "runnel-producers 2\n", 19)) rc = parse_v2(r, text, n, errmsg);
        else if (!strncmp(text, "runnel-producers 1\n", 19) || !strcmp(text, "runnel-producers 1"))
            rc = parse_v1(r, text, errmsg);
        else rc = rn_errf(errmsg, RN_ECORRUPT, "%s: line 1 is not 'runnel-producers 2' (or 1)",
                          path);
        free(text);
    }
    if (rc != 0) goto fail;
    free(data);
    data = NULL;
    if (n > 0 && (rc = preg_compact(r, errmsg)) != 0) goto fail;    /* format 2, no torn tail */
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
    if (r->fd >= 0) rn_sys.close(r->fd);
    pthread_mutex_destroy(&r->mu);
    pthread_mutex_destroy(&r->wmu);
    free(r->tab);
    free(r);
}

uint64_t rn_preg_file_records(rn_preg_t *r)
{
    pthread_mutex_lock(&r->wmu);
    uint64_t n = r->records;
    pthread_mutex_unlock(&r->wmu);
    return n;
}

/* A new file needs its header first: compaction writes it. wmu held. */
static int preg_ensure_file(rn_preg_t *r, char *errmsg)
{
    return r->records == 0 ? preg_compact(r, errmsg) : 0;
}

int rn_preg_init(rn_preg_t *r, int64_t id, int64_t *out_id, int16_t *out_epoch, char *errmsg)
{
    char rec[96];
    int rc = 0;
    pthread_mutex_lock(&r->wmu);
    pthread_mutex_lock(&r->mu);
    int64_t next = r->next, block_end = r->block_end;
    int16_t cur = id > 0 && id < next ? tab_get(r, id) : 0;
    pthread_mutex_unlock(&r->mu);
    if (id == 0) {
        if (next >= PREG_MAX_ID) {
            rc = rn_errf(errmsg, RN_EFULL, "this broker has issued 2^53 producer ids");
        } else if (next >= block_end) {
            int64_t end = next + RN_PREG_BLOCK;
            int n = snprintf(rec, sizeof rec, "block %lld\n", (long long)end);
            rc = preg_ensure_file(r, errmsg);
            if (rc == 0) rc = preg_append(r, rec, (size_t)n, errmsg);
            if (rc == 0) block_end = end;
        }
        if (rc == 0) {
            pthread_mutex_lock(&r->mu);
            r->block_end = block_end;
            r->next = next + 1;
            pthread_mutex_unlock(&r->mu);
            *out_id = next;
            *out_epoch = 0;
        }
    } else if (id < 0 || id >= next) {
        rc = rn_errf(errmsg, RN_ENOTFOUND, "unknown producer id %lld: this broker issued ids "
                     "1..%lld; ask for a new one with producer_id 0", (long long)id,
                     (long long)next - 1);
    } else if (cur == INT16_MAX) {
        rc = rn_errf(errmsg, RN_EFULL, "producer id %lld has used every epoch; ask for a new id",
                     (long long)id);
    } else {
        int n = snprintf(rec, sizeof rec, "epoch %lld %d\n", (long long)id, cur + 1);
        rc = preg_ensure_file(r, errmsg);
        if (rc == 0) rc = preg_append(r, rec, (size_t)n, errmsg);
        if (rc == 0) {
            pthread_mutex_lock(&r->mu);
            rc = tab_set(r, id, (int16_t)(cur + 1));
            size_t live = r->tn + 1;
            pthread_mutex_unlock(&r->mu);
            if (rc != 0) rc = rn_errf(errmsg, rc, "out of memory");
            else if (r->records > 2 * live + 1024) rc = preg_compact(r, errmsg);
            if (rc == 0) { *out_id = id; *out_epoch = (int16_t)(cur + 1); }
        }
    }
    pthread_mutex_unlock(&r->wmu);
    return rc;
}

int rn_preg_epoch(rn_preg_t *r, int64_t id, int16_t *epoch)
{
    int rc = RN_ENOTFOUND;
    pthread_mutex_lock(&r->mu);
    if (id >= 1 && id < r->next) { *epoch = tab_get(r, id); rc = 0; }
    pthread_mutex_unlock(&r->mu);
    return rc;
}

/* ---- per-queue state ------------------------------------------------------ */

/* The slot of pid in s->slots: its entry's, or the empty one it would take. */
static uint32_t *ps_slot(const rn_pstate_t *s, int64_t pid)
{
    size_t m = s->nslots - 1;
    for (size_t i = id_hash(pid) & m;; i = (i + 1) & m)
        if (s->slots[i] == 0 || s->v[s->slots[i] - 1].pid == pid) return &s->slots[i];
}

static const rn_pentry_t *find(const rn_pstate_t *s, int64_t pid)
{
    if (!s->nslots) return NULL;
    uint32_t k = *ps_slot(s, pid);
    return k ? &s->v[k - 1] : NULL;
}

/* Rebuild slots[] for v[0..n) with room for want entries (invariant 4). */
static int ps_reindex(rn_pstate_t *s, size_t want)
{
    size_t cap = s->nslots ? s->nslots : 16;
    while (cap < 2 * want + 2) cap *= 2;
    if (cap != s->nslots) {
        uint32_t *sl = calloc(cap, sizeof *sl);
        if (!sl) return -ENOMEM;
        free(s->slots);
        s->slots = sl;
        s->nslots = cap;
    } else {
        memset(s->slots, 0, cap * sizeof *s->slots);
    }
    for (size_t i = 0; i < s->n; i++) *ps_slot(s, s->v[i].pid) = (uint32_t)(i + 1);
    return 0;
}

/* Drop the entries idle since before now_ms - expire_ms (invariant 5). */
static void ps_sweep(rn_pstate_t *s, int64_t now_ms)
{
    size_t k = 0;
    for (size_t i = 0; i < s->n; i++)
        if (now_ms - s->v[i].last_ms <= s->expire_ms) s->v[k++] = s->v[i];
    if (k == s->n) return;
    s->n = k;
    ps_reindex(s, k);          /* same size or smaller: allocates nothing, cannot fail */
}

static int64_t seq_after(int32_t base, int32_t count)
{
    return ((int64_t)base + count) % SEQ_MOD;
}

int rn_pstate_check(const rn_pstate_t *s, rn_preg_t *reg, const rn_batch_header_t *h,
                    const rn_batch_header_t *prev, size_t nprev, rn_pbatch_t *dup,
                    rn_status_t *st)
{
    if (h->producer_id < 0) return 0;
    long long pid = (long long)h->producer_id;
    if (h->base_sequence < 0 || h->producer_epoch < 0)
        return rn_status_setr(st, RN_SR_SEQUENCE, RN_ST_INVALID_ARGUMENT, "producer %lld: base sequence %d and "
                             "epoch %d must not be negative", pid, (int)h->base_sequence,
                             (int)h->producer_epoch);
    if (reg) {
        int16_t cur;
        if (rn_preg_epoch(reg, h->producer_id, &cur) != 0)
            return rn_status_setr(st, RN_SR_UNKNOWN_PRODUCER, RN_ST_FAILED_PRECONDITION, "unknown producer id %lld: call "
                                 "InitProducer for an id", pid);
        if (h->producer_epoch < cur)
            return rn_status_setr(st, RN_SR_PRODUCER_EPOCH, RN_ST_FAILED_PRECONDITION, "producer %lld epoch %d is stale: "
                                 "the current epoch is %d (a newer instance took over)", pid,
                                 (int)h->producer_epoch, (int)cur);
        if (h->producer_epoch > cur)
            return rn_status_setr(st, RN_SR_PRODUCER_EPOCH, RN_ST_FAILED_PRECONDITION, "producer %lld epoch %d was never "
                                 "issued: the current epoch is %d (InitProducer hands out epochs)",
                                 pid, (int)h->producer_epoch, (int)cur);
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
        return rn_status_setr(st, RN_SR_PRODUCER_EPOCH, RN_ST_FAILED_PRECONDITION, "producer %lld epoch %d is stale: "
                             "this queue has epoch %d", pid, (int)h->producer_epoch, (int)epoch);
    if (h->producer_epoch > epoch) {
        if (h->base_sequence == 0) return 0;
        return rn_status_setr(st, RN_SR_SEQUENCE, RN_ST_FAILED_PRECONDITION, "producer %lld epoch %d: a new epoch "
                             "starts at sequence 0, got %d", pid, (int)h->producer_epoch,
                             (int)h->base_sequence);
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
        return rn_status_setr(st, RN_SR_SEQUENCE, RN_ST_FAILED_PRECONDITION, "producer %lld epoch %d: sequence %d "
                             "is a duplicate outside the last %d batches or does not match one "
                             "(expected %lld, got %d)", pid, (int)h->producer_epoch,
                             (int)h->base_sequence, RN_PSTATE_WINDOW, (long long)next,
                             (int)h->base_sequence);
    return rn_status_setr(st, RN_SR_SEQUENCE, RN_ST_FAILED_PRECONDITION, "producer %lld epoch %d: sequence gap "
                         "(expected %lld, got %d)", pid, (int)h->producer_epoch, (long long)next,
                         (int)h->base_sequence);
}

int rn_pstate_record(rn_pstate_t *s, const rn_batch_header_t *h, int64_t base_offset,
                     uint64_t ticket, int64_t now_ms)
{
    if (h->producer_id < 0) return 0;
    if (s->expire_ms > 0 && now_ms - s->swept_ms >= s->expire_ms / 4) {
        s->swept_ms = now_ms;
        ps_sweep(s, now_ms);
    }
    rn_pentry_t *e = (rn_pentry_t *)find(s, h->producer_id);
    if (!e) {
        if (s->n == s->cap) {
            size_t cap = s->cap ? s->cap * 2 : 4;
            if (cap > UINT32_MAX - 1) return -ENOMEM;
            rn_pentry_t *v = realloc(s->v, cap * sizeof *v);
            if (!v) return -ENOMEM;
            s->v = v;
            s->cap = cap;
        }
        if ((s->n + 1) * 2 + 2 > s->nslots && ps_reindex(s, s->n + 1) != 0) return -ENOMEM;
        e = &s->v[s->n++];
        memset(e, 0, sizeof *e);
        e->pid = h->producer_id;
        e->epoch = h->producer_epoch;
        *ps_slot(s, e->pid) = (uint32_t)s->n;
    }
    e->last_ms = now_ms;
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
    free(s->slots);
    s->v = NULL;
    s->slots = NULL;
    s->n = s->cap = s->nslots = 0;
}
