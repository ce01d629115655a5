/*
 * consumer.c — the embedded consumer (see consumer.h for the contract).
 *
 * State per assigned queue: a datadir queue snapshot, the position (next
 * logical offset to hand out), an optional end, and a read buffer of whole
 * batches fetched from the position with rn_datadir_read plus a cursor.
 *
 * Invariants:
 *  1. position only moves forward through poll (to just after the last
 *     record returned) or through seek/assign (which empty the buffer), so
 *     every record at or after the position is returned exactly once, in
 *     offset order, and records before it never are.
 *  2. Buffered bytes always start at a batch boundary and are consumed
 *     batch by batch; each batch is validated (rn_batch_validate, CRC) before
 *     its records are decoded.
 *  3. The record and header arrays handed out are owned by the consumer and
 *     rebuilt by each poll; headers are copied out of the iterator (which
 *     reuses its header array per record) so every record's view stays valid
 *     until the next poll, seek, assign or destroy.
 *  4. Round-robin: rr is the assignment after the one served last (or the
 *     one rn_consumer_prefer named); a poll looks at each assignment at
 *     most once, starting there.
 *  5. Waiting (rn_consumer_wait): poll samples the data directory's wake-up
 *     counter before it reads anything, and every store bumps it after it
 *     made appends visible, so an append the poll did not see makes the
 *     next wait return at once; no append is slept through.
 */
#include "logical-queues/consumer.h"

#include "common/error.h"
#include "logical-queues/group.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_FETCH (1u << 20)

typedef struct cqueue {
    rn_datadir_queue_t q;
    int64_t            pos;
    int64_t            end;        /* -1: none */
    rn_buf_t           buf;
    size_t             cur;        /* next batch in buf */
} cqueue_t;

struct rn_consumer {
    rn_datadir_t    *d;
    size_t           fetch;
    cqueue_t        *qs;
    size_t           nqs, capqs;
    size_t           rr;
    rn_batch_iter_t  it;
    rn_record_t     *recs;
    size_t           caprecs;
    rn_header_t     *hdrs;
    size_t           caphdrs;
    int              skip_damaged;
    uint64_t         skipped, skipped_ranges;
    uint64_t         seen;          /* the data directory's wake-up counter when the
                                       last poll began (invariant 5) */
};

int rn_consumer_create(rn_datadir_t *d, const rn_consumer_opts_t *o, rn_consumer_t **out,
                       char *errmsg)
{
    rn_consumer_t *c = calloc(1, sizeof *c);
    if (!c) return rn_errf(errmsg, -ENOMEM, "out of memory");
    c->d = d;
    c->fetch = o && o->fetch_bytes ? o->fetch_bytes : DEFAULT_FETCH;
    c->skip_damaged = (o && o->skip_damaged) || rn_datadir_skip_damaged(d);
    rn_batch_iter_init(&c->it, &rn_batch_default_limits);
    *out = c;
    return 0;
}

void rn_consumer_destroy(rn_consumer_t *c)
{
    if (!c) return;
    for (size_t i = 0; i < c->nqs; i++) {
        rn_datadir_queue_close(&c->qs[i].q);
        rn_buf_free(&c->qs[i].buf);
    }
    free(c->qs);
    rn_batch_iter_destroy(&c->it);
    free(c->recs);
    free(c->hdrs);
    free(c);
}

int rn_consumer_queues(rn_consumer_t *c, const char *topic, uint32_t *n, char *errmsg)
{
    rn_meta_topic_t t;
    rn_meta_t *m = rn_datadir_meta_lock(c->d);
    int rc = rn_meta_topic_get(m, topic, &t, errmsg);
    rn_datadir_meta_unlock(c->d);
    if (rc == 0) *n = t.queues;
    return rc;
}

static cqueue_t *find(rn_consumer_t *c, const char *topic, uint32_t queue)
{
    for (size_t i = 0; i < c->nqs; i++)
        if (c->qs[i].q.queue == queue && !strcmp(c->qs[i].q.topic.name, topic)) return &c->qs[i];
    return NULL;
}

static int find_or_fail(rn_consumer_t *c, const char *topic, uint32_t queue, cqueue_t **out,
                        char *errmsg)
{
    *out = find(c, topic, queue);
    if (*out) return 0;
    return rn_errf(errmsg, RN_ENOTFOUND, "topic '%s' queue %u is not assigned to this consumer",
                   topic, queue);
}

/* Move to offset (already checked) and drop buffered batches (invariant 1). */
static void reposition(cqueue_t *cq, int64_t offset)
{
    cq->pos = offset;
    cq->buf.len = 0;
    cq->cur = 0;
}

int rn_consumer_assign(rn_consumer_t *c, const char *topic, uint32_t queue, int64_t offset,
                       char *errmsg)
{
    if (find(c, topic, queue))
        return rn_errf(errmsg, RN_EEXIST, "topic '%s' queue %u is already assigned", topic,
                       queue);
    if (c->nqs == c->capqs) {
        size_t ncap = c->capqs ? c->capqs * 2 : 4;
        cqueue_t *p = realloc(c->qs, ncap * sizeof *p);
        if (!p) return rn_errf(errmsg, -ENOMEM, "out of memory");
        c->qs = p;
        c->capqs = ncap;
    }
    cqueue_t *cq = &c->qs[c->nqs];
    memset(cq, 0, sizeof *cq);
    int64_t at;
    int rc = rn_datadir_queue_open(c->d, topic, queue, &cq->q, errmsg);
    if (rc == 0) rc = rn_datadir_resolve(c->d, &cq->q, RN_POS_OFFSET, offset, &at, errmsg);
    if (rc != 0) {
        rn_datadir_queue_close(&cq->q);
        return rc;
    }
    cq->end = -1;
    reposition(cq, at);
    c->nqs++;
    return 0;
}

int rn_consumer_set_end(rn_consumer_t *c, const char *topic, uint32_t queue, int64_t end,
                        char *errmsg)
{
    cqueue_t *cq;
    int rc = find_or_fail(c, topic, queue, &cq, errmsg);
    if (rc == 0) cq->end = end < 0 ? -1 : end;
    return rc;
}

int rn_consumer_seek(rn_consumer_t *c, const char *topic, uint32_t queue, int64_t offset,
                     char *errmsg)
{
    cqueue_t *cq;
    int64_t at;
    int rc = find_or_fail(c, topic, queue, &cq, errmsg);
    if (rc == 0) rc = rn_datadir_resolve(c->d, &cq->q, RN_POS_OFFSET, offset, &at, errmsg);
    if (rc == 0) reposition(cq, at);
    return rc;
}

int rn_consumer_seek_time(rn_consumer_t *c, const char *topic, uint32_t queue, int64_t ts,
                          char *errmsg)
{
    cqueue_t *cq;
    int64_t at;
    int rc = find_or_fail(c, topic, queue, &cq, errmsg);
    if (rc == 0) rc = rn_datadir_lookup_time(c->d, &cq->q, ts, &at, errmsg);
    if (rc == 0) reposition(cq, at);
    return rc;
}

int rn_consumer_prefer(rn_consumer_t *c, const char *topic, uint32_t queue, char *errmsg)
{
    cqueue_t *cq;
    int rc = find_or_fail(c, topic, queue, &cq, errmsg);
    if (rc == 0) c->rr = (size_t)(cq - c->qs);
    return rc;
}

int rn_consumer_position(rn_consumer_t *c, const char *topic, uint32_t queue, int64_t *offset,
                         char *errmsg)
{
    cqueue_t *cq;
    int rc = find_or_fail(c, topic, queue, &cq, errmsg);
    if (rc == 0) *offset = cq->pos;
    return rc;
}

int rn_consumer_watermarks(rn_consumer_t *c, const char *topic, uint32_t queue,
                           int64_t *log_start, int64_t *high_watermark, char *errmsg)
{
    cqueue_t *cq;
    rn_datadir_queue_info_t info;
    int rc = find_or_fail(c, topic, queue, &cq, errmsg);
    if (rc == 0) rc = rn_datadir_queue_info(c->d, &cq->q, &info, errmsg);
    if (rc == 0) {
        *log_start = info.log_start;
        *high_watermark = info.high_watermark;
    }
    return rc;
}

/* Room for one more record and `more` headers. */
static int reserve(rn_consumer_t *c, size_t nrec, size_t nhdr, char *errmsg)
{
    if (nrec > c->caprecs) {
        size_t ncap = c->caprecs ? c->caprecs * 2 : 256;
        while (ncap < nrec) ncap *= 2;
        rn_record_t *p = realloc(c->recs, ncap * sizeof *p);
        if (!p) return rn_errf(errmsg, -ENOMEM, "out of memory");
        c->recs = p;
        c->caprecs = ncap;
    }
    if (nhdr > c->caphdrs) {
        size_t ncap = c->caphdrs ? c->caphdrs * 2 : 64;
        while (ncap < nhdr) ncap *= 2;
        rn_header_t *p = realloc(c->hdrs, ncap * sizeof *p);
        if (!p) return rn_errf(errmsg, -ENOMEM, "out of memory");
        c->hdrs = p;
        c->caphdrs = ncap;
    }
    return 0;
}

/* Under skip_damaged: move cq past the damaged or lost batch at its position
 * (counted), and 1; 0 when not skipping or nothing lies past it. */
static int skip_damaged(rn_consumer_t *c, cqueue_t *cq)
{
    int64_t past;
    if (!c->skip_damaged || rn_datadir_batch_end(c->d, &cq->q, cq->pos, &past, NULL) != 0 ||
        past <= cq->pos)
        return 0;
    if (cq->end >= 0 && past > cq->end) past = cq->end;
    c->skipped += (uint64_t)(past - cq->pos);
    c->skipped_ranges++;
    rn_datadir_count_skipped(c->d, (uint64_t)(past - cq->pos));
    cq->pos = past;
    return 1;
}

/* Decode the next buffered batch of cq into c->recs, keeping records in
 * [pos, end). *count may be 0 when none qualifies. */
static int decode_next(rn_consumer_t *c, cqueue_t *cq, uint32_t *count, char *errmsg)
{
    char inner[RN_ERRMSG_SIZE] = "";
    const uint8_t *b = cq->buf.data + cq->cur;
    size_t left = cq->buf.len - cq->cur, sz = 0;
    rn_batch_header_t h;
    int rc = 0;
    if (rn_batch_size(b, left, &sz) != 0 || sz > left ||
        (rc = rn_batch_validate(b, sz, &rn_batch_default_limits, 0, &h, inner)) != 0 ||
        (rc = rn_batch_iter_reset(&c->it, b, sz, inner)) != 0) {
        /* Damage recovery did not see (a clean open trusts what it wrote):
         * under skip_damaged, go past this batch as past a marked one. */
        if (skip_damaged(c, cq)) {
            cq->cur = cq->buf.len;         /* refetch from the new position */
            *count = 0;
            return 0;
        }
        return rn_errf(errmsg, rc ? rc : RN_ECORRUPT, "topic '%s' queue %u: the batch read at "
                       "offset %lld is damaged: %s (`runnel store check` finds every such "
                       "batch; --skip-damaged goes past)", cq->q.topic.name, cq->q.queue,
                       (long long)cq->pos, inner[0] ? inner : "bad size");
    }
    cq->cur += sz;
    size_t n = 0, nh = 0;
    rn_record_t r;
    while ((rc = rn_batch_iter_next(&c->it, &r, inner)) == 1) {
        if (r.offset < cq->pos) continue;
        if (cq->end >= 0 && r.offset >= cq->end) break;
        rc = reserve(c, n + 1, nh + r.header_count, errmsg);
        if (rc != 0) return rc;
        if (r.header_count) memcpy(c->hdrs + nh, r.headers, r.header_count * sizeof *r.headers);
        r.headers = NULL;                /* fixed below: c->hdrs may still move */
        c->recs[n] = r;
        c->recs[n].header_count = r.header_count;
        nh += r.header_count;
        n++;
    }
    if (rc < 0)
        return rn_errf(errmsg, rc, "topic '%s' queue %u: a record of the batch at offset %lld is "
                       "damaged: %s", cq->q.topic.name, cq->q.queue, (long long)h.base_offset,
                       inner);
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        c->recs[i].headers = c->recs[i].header_count ? c->hdrs + at : NULL;
        at += c->recs[i].header_count;
    }
    int64_t next = h.base_offset + (int64_t)h.last_offset_delta + 1;
    if (cq->end >= 0 && next > cq->end) next = cq->end;
    if (next > cq->pos) cq->pos = next;
    *count = (uint32_t)n;
    return 0;
}

/* 1 with records of cq decoded, 0 when cq has none now. */
static int poll_queue(rn_consumer_t *c, cqueue_t *cq, uint32_t *count, char *errmsg)
{
    for (;;) {
        if (cq->end >= 0 && cq->pos >= cq->end) return 0;
        if (cq->cur >= cq->buf.len) {
            uint32_t nb = 0;
            cq->buf.len = 0;
            cq->cur = 0;
            int rc = rn_datadir_read(c->d, &cq->q, cq->pos, c->fetch, &cq->buf, &nb, errmsg);
            if ((rc == RN_EDAMAGED || rc == RN_ECORRUPT) && skip_damaged(c, cq)) continue;
            if (rc != 0) return rc;
            if (nb == 0) return 0;
        }
        int rc = decode_next(c, cq, count, errmsg);
        if (rc != 0) return rc;
        if (*count > 0) return 1;
    }
}

void rn_consumer_skipped(const rn_consumer_t *c, uint64_t *offsets, uint64_t *ranges)
{
    *offsets = c->skipped;
    *ranges = c->skipped_ranges;
}

int rn_consumer_poll(rn_consumer_t *c, rn_consumer_batch_t *b, char *errmsg)
{
    c->seen = rn_notify_seq(rn_datadir_notify(c->d));        /* invariant 5 */
    for (size_t k = 0; k < c->nqs; k++) {
        size_t i = (c->rr + k) % c->nqs;
        cqueue_t *cq = &c->qs[i];
        uint32_t count = 0;
        int rc = poll_queue(c, cq, &count, errmsg);
        if (rc < 0) return rc;
        if (rc == 0) continue;
        c->rr = (i + 1) % c->nqs;
        b->topic = cq->q.topic.name;
        b->queue = cq->q.queue;
        b->records = c->recs;
        b->count = count;
        b->next_offset = cq->pos;
        return 1;
    }
    return 0;
}

int rn_consumer_wait(rn_consumer_t *c, uint32_t timeout_ms)
{
    return rn_notify_wait(rn_datadir_notify(c->d), c->seen, timeout_ms);
}

int rn_consumer_commit(rn_consumer_t *c, const char *group, char *errmsg)
{
    rn_meta_offset_t *v = calloc(c->nqs ? c->nqs : 1, sizeof *v);
    if (!v) return rn_errf(errmsg, -ENOMEM, "out of memory");
    for (size_t i = 0; i < c->nqs; i++) {
        v[i].topic_id = c->qs[i].q.topic.id;
        v[i].queue = c->qs[i].q.queue;
        v[i].offset = c->qs[i].pos;
    }
    int rc = rn_group_commit_offsets(c->d, group, v, c->nqs, errmsg);
    free(v);
    return rc;
}
