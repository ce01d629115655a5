/*
 * api_fetch.c — Fetch (1), versions 4–11, and ListOffsets (2), versions 1–5.
 *
 * Fetch returns whole stored batches from the one holding the requested
 * offset (the client skips the records before it), with their logical base
 * offsets. Limits: per partition partition_max_bytes, per response
 * max_bytes, except that the first partition with data returns at least one
 * batch (KIP-74), so a batch larger than both still moves. When less than
 * min_bytes is available the request is parked and re-read when a queue's
 * high watermark moves or max_wait_ms passes. Batches are read from the
 * store straight into the response buffer (one copy, then writev). Fetch sessions (KIP-227) are
 * not kept: every answer is a full response with session id 0, which
 * clients treat as "no session".
 *
 * Invariants:
 *  1. A partition's answer is OFFSET_OUT_OF_RANGE exactly when its offset is
 *     outside [log start, high watermark]; offset == high watermark is
 *     empty, not an error.
 *  2. No transactions: the last stable offset is the high watermark, and
 *     read_committed reads what read_uncommitted reads.
 */
#include "kafka/api.h"

#include <stdlib.h>
#include <string.h>

#include "batch/batch.h"
#include "common/bytes.h"
#include "server/log.h"
#include "server/server.h"

typedef struct fpart {
    rn_kstr_t  topic;
    int32_t    ntopic, index;
    int64_t    offset;
    int32_t    max_bytes;
    int16_t    err;          /* found before reading (bad name, unknown queue) */
    rn_qent_t *qe;           /* the broker's queue entry, once resolved */
    char       name[256];
} fpart_t;

typedef struct kfetch {
    int32_t  min_bytes, max_bytes, ntopics, nparts;
    int64_t  deadline;
    fpart_t *parts;
} kfetch_t;

static void fetch_free(rn_kreq_t *q)
{
    kfetch_t *s = q->hstate;
    free(s->parts);
    free(s);
    q->hstate = NULL;
}

/* Whether to answer now: a partition has records past its offset (or its
 * offset is out of range), or an error to report. Cheap: no read. */
static int fetch_due(rn_kreq_t *q, kfetch_t *s)
{
    int due = 0;
    for (int32_t i = 0; i < s->nparts; i++) {
        fpart_t *fp = &s->parts[i];
        if (!fp->err && !fp->qe) {
            rn_status_t st;
            if (rn_hd_queue(q->ctx->hd, fp->name, (uint32_t)fp->index, &fp->qe, &st) != 0) {
                int16_t c = rn_kcluster_unmade(q->ctx, fp->name, (uint32_t)fp->index);
                fp->err = c ? c : rn_kerr_of(&st);          /* api.h invariant 7 */
            }
        }
        int64_t hwm;
        rn_status_t st;
        if (!fp->err && rn_hd_visible_end(q->ctx->hd, fp->qe, &hwm, &st) != 0)
            fp->err = rn_kerr_status(q->ctx, &st);          /* api.h invariant 7 */
        if (fp->err || hwm != fp->offset) due = 1;
    }
    return due;
}

/* The whole response into q->out, each partition's batches read straight
 * into it; the record bytes written. */
static size_t fetch_write(rn_kreq_t *q, kfetch_t *s)
{
    rn_kw_t *w = &q->w;
    size_t total = 0;
    rn_kw_i32(w, 0);                                        /* throttle_time_ms */
    if (q->version >= 7) {
        rn_kw_i16(w, RN_KERR_NONE);
        rn_kw_i32(w, 0);                                    /* session_id: none */
    }
    /* The topics emitted: those with a partition. */
    int32_t emitted = 0;
    for (int32_t i = 0; i < s->nparts; i++)
        emitted += i == 0 || s->parts[i].ntopic != s->parts[i - 1].ntopic;
    rn_kw_array(w, emitted);
    for (int32_t i = 0; i < s->nparts;) {
        int32_t j = i;
        while (j < s->nparts && s->parts[j].ntopic == s->parts[i].ntopic) j++;
        rn_kw_strn(w, s->parts[i].topic.p, s->parts[i].topic.len);
        rn_kw_array(w, j - i);
        for (int32_t k = i; k < j; k++) {
            fpart_t *fp = &s->parts[k];
            rn_kw_i32(w, fp->index);
            size_t head = rn_kw_slot(w, 2 + 8 + 8 + (q->version >= 5 ? 8 : 0));
            rn_kw_array(w, 0);                                /* aborted transactions */
            if (q->version >= 11) rn_kw_i32(w, -1);           /* preferred read replica */
            size_t len = rn_kw_slot(w, 4);
            size_t at = w->b->len;
            int16_t err = fp->err;
            rn_fetch_t f = {0};
            if (!err && !w->err) {
                /* Per partition its own limit, per response what is left;
                 * the first partition with data returns at least one batch
                 * (KIP-74). A full response gets the watermarks only. */
                size_t left = (size_t)s->max_bytes > total ? (size_t)s->max_bytes - total : 0;
                size_t max = (size_t)fp->max_bytes < left ? (size_t)fp->max_bytes : left;
                rn_status_t st;
                rn_datadir_queue_info_t info;
                int64_t off;
                if (max == 0 && total > 0) {
                    /* The response is full: watermarks only, without
                     * reading a batch only to drop it (bounded work). */
                    if (rn_hd_offset_at(q->ctx->hd, fp->name, (uint32_t)fp->index,
                                        RN_POS_EARLIEST, 0, &off, &info, &st) != 0) {
                        err = rn_kerr_of(&st);
                    } else {
                        f.high_watermark = info.high_watermark;
                        f.log_start = info.log_start;
                        if (fp->offset < info.log_start || fp->offset > info.high_watermark)
                            err = RN_KERR_OFFSET_OUT_OF_RANGE;
                        int64_t ve;                         /* api.h invariant 7 */
                        if (rn_hd_visible_end(q->ctx->hd, fp->qe, &ve, &st) != 0)
                            err = rn_kerr_status(q->ctx, &st);
                        else if (ve < f.high_watermark)
                            f.high_watermark = ve;
                    }
                } else if (rn_hd_read_visible(q->ctx->hd, fp->qe, fp->offset,
                                              (uint32_t)(max ? max : 1), w->b, &f, &st) != 0) {
                    err = rn_kerr_status(q->ctx, &st);          /* api.h invariant 7 */
                    if (st.code == RN_ST_DATA_LOSS) err = RN_KERR_CORRUPT_MESSAGE;
                    if (err != RN_KERR_OFFSET_OUT_OF_RANGE && !rn_kerr_cluster(q->ctx, &st))
                        rn_slog(RN_SLOG_WARN, "kafka: fetch from %s: %s", q->peer, st.msg);
                } else if (w->b->len > w->max) {
                    w->err = RN_KW_ETOOBIG;             /* wire.h invariant 5 */
                }
            }
            if (err) w->b->len = at;
            total += w->b->len - at;
            uint8_t *p = w->err ? NULL : w->b->data + head;
            if (p) {
                rn_be16_put(p, (uint16_t)err);
                rn_be64_put(p + 2, (uint64_t)(err ? -1 : f.high_watermark));
                rn_be64_put(p + 10, (uint64_t)(err ? -1 : f.high_watermark));   /* invariant 2 */
                if (q->version >= 5) rn_be64_put(p + 18, (uint64_t)(err ? -1 : f.log_start));
            }
            rn_kw_fill32(w, len, (int32_t)(w->b->len - at));
        }
        i = j;
    }
    return total;
}

/* Answer when enough is there (or the wait ended); else park again. */
static int fetch_try(rn_kreq_t *q, int expired)
{
    kfetch_t *s = q->hstate;
    /* fetch_due also resolves each partition's queue, which fetch_write
     * needs: called even when the wait is over (max_wait_ms 0). */
    int due = fetch_due(q, s);
    if (expired || due) {
        size_t mark = q->out.len;
        size_t total = fetch_write(q, s);
        if (expired || total >= (size_t)(s->min_bytes > 0 ? s->min_bytes : 0)) return 1;
        q->out.len = mark;                 /* too little yet: wait for more */
    }
    return 0;
}

static void fetch_retry(rn_kreq_t *q, int expired)
{
    if (fetch_try(q, expired)) rn_kreq_done(q);
    else rn_kreq_park(q, ((kfetch_t *)q->hstate)->deadline, fetch_retry);
}

/* One partition's fields of a Fetch request (into fp when not NULL). */
static void partition_fields(rn_kreq_t *q, rn_kr_t *r, fpart_t *fp)
{
    int32_t index = rn_kr_i32(r, "partition");
    if (q->version >= 9) rn_kr_i32(r, "current_leader_epoch");
    int64_t offset = rn_kr_i64(r, "fetch_offset");
    if (q->version >= 5) rn_kr_i64(r, "log_start_offset");
    int32_t max = rn_kr_i32(r, "partition_max_bytes");
    if (!fp) return;
    fp->index = index;
    fp->offset = offset;
    fp->max_bytes = max > 0 ? max : 1;
    if ((uint32_t)fp->max_bytes > q->ctx->max_frame) fp->max_bytes = (int32_t)q->ctx->max_frame;
}

int rn_kh_fetch(rn_kreq_t *q)
{
    rn_kr_t *r = &q->in;
    rn_kr_i32(r, "replica_id");
    int32_t max_wait = rn_kr_i32(r, "max_wait_ms");
    int32_t min_bytes = rn_kr_i32(r, "min_bytes");
    int32_t max_bytes = rn_kr_i32(r, "max_bytes");
    rn_kr_i8(r, "isolation_level");
    if (q->version >= 7) {
        rn_kr_i32(r, "session_id");
        rn_kr_i32(r, "session_epoch");
    }
    int32_t nt = rn_kr_array(r, "topics");
    if (r->err) return RN_KH_BAD;
    kfetch_t *s = calloc(1, sizeof *s);
    if (!s) return rn_kreq_bad(q, "out of memory");
    q->hstate = s;
    q->hfree = fetch_free;
    s->min_bytes = min_bytes;
    /* At most the frame limit per response (api.h invariant 5), and per
     * partition (below): one batch past it at most (KIP-74). */
    s->max_bytes = max_bytes > 0 ? max_bytes : 1;
    if ((uint32_t)s->max_bytes > q->ctx->max_frame) s->max_bytes = (int32_t)q->ctx->max_frame;
    s->ntopics = nt < 0 ? 0 : nt;
    if (s->ntopics > RN_KAPI_MAX_PARTITIONS)            /* api.h invariant 5 */
        return rn_kreq_bad(q, "%d topics in one request; at most %d", s->ntopics,
                           RN_KAPI_MAX_PARTITIONS);
    /* Two passes: count the partitions, then decode them into an array of
     * exactly that size. */
    rn_kr_t start = *r;
    size_t count = 0;
    for (int32_t t = 0; t < s->ntopics && !r->err; t++) {
        rn_kr_str(r, "topic name");
        int32_t np = rn_kr_array(r, "partitions");
        for (int32_t i = 0; i < np && !r->err; i++, count++)
            partition_fields(q, r, NULL);
        if (count > RN_KAPI_MAX_PARTITIONS)             /* api.h invariant 5 */
            return rn_kreq_bad(q, "more than %d partitions in one request",
                               RN_KAPI_MAX_PARTITIONS);
    }
    if (r->err) return RN_KH_BAD;
    *r = start;
    s->parts = calloc(count ? count : 1, sizeof *s->parts);
    if (!s->parts) return rn_kreq_bad(q, "out of memory");
    for (int32_t t = 0; t < s->ntopics && !r->err; t++) {
        rn_kstr_t name = rn_kr_str(r, "topic name");
        int32_t np = rn_kr_array(r, "partitions");
        for (int32_t i = 0; i < np && !r->err; i++) {
            fpart_t *fp = &s->parts[s->nparts++];
            fp->topic = name;
            fp->ntopic = t;
            partition_fields(q, r, fp);
            if (!rn_ktopic_valid(name) || rn_kstr_copy(name, fp->name, sizeof fp->name) != 0)
                fp->err = RN_KERR_INVALID_TOPIC_EXCEPTION;
            else if (!rn_kacl(q, RN_ACL_TOPIC, fp->name, RN_ACL_CONSUME))   /* api.h inv. 6 */
                fp->err = RN_KERR_TOPIC_AUTHORIZATION_FAILED;
            else if (fp->index < 0)
                fp->err = RN_KERR_UNKNOWN_TOPIC_OR_PARTITION;
        }
    }
    /* forgotten_topics_data (v7+) and rack_id (v11+) need no answer. */
    if (r->err) return RN_KH_BAD;
    if (fetch_try(q, max_wait <= 0)) return RN_KH_DONE;
    if (max_wait > 60000) max_wait = 60000;
    s->deadline = rn_server_now_ms() + max_wait;
    return rn_kreq_park(q, s->deadline, fetch_retry);
}

/* ---- ListOffsets ---------------------------------------------------------------- */

/* The timestamp of the record at offset in (topic, queue), or -1. */
static int64_t record_time(rn_kreq_t *q, const char *topic, int32_t queue, int64_t offset)
{
    Runnel__V1__FetchRequest req = RUNNEL__V1__FETCH_REQUEST__INIT;
    req.topic = (char *)topic;
    req.queue = (uint32_t)queue;
    req.offset = offset;
    req.max_bytes = 1;
    rn_fetch_t f;
    memset(&f, 0, sizeof f);
    rn_status_t st;
    int64_t ts = -1;
    if (rn_hd_fetch(q->ctx->hd, &req, &f, &st) == 0 && f.records.len) {
        rn_batch_iter_t it;
        char err[RN_ERRMSG_SIZE];
        rn_batch_iter_init(&it, &rn_batch_default_limits);
        if (rn_batch_iter_reset(&it, f.records.data, f.records.len, err) == 0) {
            rn_record_t rec;
            while (rn_batch_iter_next(&it, &rec, err) == 1)
                if (rec.offset >= offset) {
                    ts = rec.timestamp;
                    break;
                }
        }
        rn_batch_iter_destroy(&it);
    }
    rn_hd_fetch_free(&f);
    return ts;
}

/* In a cluster, the end consumers of (topic, part) may read to (*end; -1
 * on a single broker or for an unknown queue, which the lookup reports),
 * or the Kafka error refusing it here (api.h invariant 7). */
static int16_t visible_end(rn_kreq_t *q, const char *topic, int32_t part, int64_t *end)
{
    *end = -1;
    if (!rn_hd_clustered(q->ctx->hd)) return RN_KERR_NONE;
    rn_qent_t *qe;
    rn_status_t st;
    if (rn_hd_queue(q->ctx->hd, topic, (uint32_t)part, &qe, &st) != 0)
        return rn_kcluster_unmade(q->ctx, topic, (uint32_t)part);
    if (rn_hd_visible_end(q->ctx->hd, qe, end, &st) == 0) return RN_KERR_NONE;
    *end = -1;
    return rn_kerr_status(q->ctx, &st);
}

int rn_kh_list_offsets(rn_kreq_t *q)
{
    rn_kr_t *r = &q->in;
    rn_kw_t *w = &q->w;
    rn_kr_i32(r, "replica_id");
    if (q->version >= 2) rn_kr_i8(r, "isolation_level");
    int32_t nt = rn_kr_array(r, "topics");
    if (r->err) return RN_KH_BAD;
    if (q->version >= 2) rn_kw_i32(w, 0);                  /* throttle_time_ms */
    rn_kw_array(w, nt < 0 ? 0 : nt);
    int32_t nparts = 0, lookups = 0;                       /* api.h invariant 5 */
    for (int32_t t = 0; t < nt && !r->err; t++) {
        rn_kstr_t name = rn_kr_str(r, "topic name");
        int32_t np = rn_kr_array(r, "partitions");
        rn_kw_strn(w, name.p, name.len);
        rn_kw_array(w, np < 0 ? 0 : np);
        char topic[256];
        int valid = rn_ktopic_valid(name) && rn_kstr_copy(name, topic, sizeof topic) == 0;
        int allowed = !valid || rn_kacl(q, RN_ACL_TOPIC, topic, RN_ACL_DESCRIBE);  /* inv. 6 */
        if (np > 0 && (nparts += np) > RN_KAPI_MAX_PARTITIONS)
            return rn_kreq_bad(q, "more than %d partitions in one request",
                               RN_KAPI_MAX_PARTITIONS);
        for (int32_t i = 0; i < np && !r->err; i++) {
            int32_t part = rn_kr_i32(r, "partition_index");
            if (q->version >= 4) rn_kr_i32(r, "current_leader_epoch");
            int64_t ts = rn_kr_i64(r, "timestamp");
            int16_t err = RN_KERR_NONE;
            int64_t off = -1, rts = -1, vend = -1;
            if (!valid) {
                err = RN_KERR_INVALID_TOPIC_EXCEPTION;
            } else if (!allowed) {
                err = RN_KERR_TOPIC_AUTHORIZATION_FAILED;
            } else if (part < 0) {
                err = RN_KERR_UNKNOWN_TOPIC_OR_PARTITION;
            } else {
                rn_datadir_pos_kind_t kind = ts == -2 ? RN_POS_EARLIEST
                                             : ts == -1 ? RN_POS_LATEST : RN_POS_TIME;
                rn_datadir_queue_info_t info;
                rn_status_t st;
                if (kind == RN_POS_TIME && ts < 0) {
                    err = RN_KERR_INVALID_REQUEST;      /* -3 (max timestamp) and others */
                } else if (kind == RN_POS_TIME && ++lookups > RN_KAPI_MAX_TIME_LOOKUPS) {
                    /* Each decodes batches: bounded per request; retriable. */
                    err = RN_KERR_REQUEST_TIMED_OUT;
                } else if ((err = visible_end(q, topic, part, &vend)) != RN_KERR_NONE) {
                    /* not the leader of a replicated queue (api.h invariant 7) */
                } else if (rn_hd_offset_at(q->ctx->hd, topic, (uint32_t)part, kind, ts, &off,
                                           &info, &st) != 0) {
                    err = rn_kerr_of(&st);
                    off = -1;
                } else if (kind == RN_POS_TIME) {
                    /* Kafka: no record at or after ts is offset -1. */
                    if (vend >= 0 && vend < info.high_watermark) info.high_watermark = vend;
                    if (off >= info.high_watermark) off = -1;
                    else rts = record_time(q, topic, part, off);
                } else if (kind == RN_POS_LATEST && vend >= 0 && vend < off) {
                    off = vend;                     /* the high watermark */
                }
            }
            rn_kw_i32(w, part);
            rn_kw_i16(w, err);
            rn_kw_i64(w, rts);
            rn_kw_i64(w, off);
            if (q->version >= 4) rn_kw_i32(w, err ? -1 : 0);   /* leader_epoch */
        }
    }
    if (r->err) return RN_KH_BAD;
    return RN_KH_DONE;
}
