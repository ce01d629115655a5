/*
 * api_produce.c — Produce (0), versions 0–8.
 *
 * Each partition's records are split into their RecordBatch v2 batches and
 * handed to the broker's produce path (rn_hd_produce_begin: every batch of
 * the partition validated before any is stored, idempotent sequences
 * checked, appended in order); the batches are stored as received, only the
 * base offset rewritten. acks 0 answers nothing; acks 1 answers once
 * written; acks -1 answers once durable under the fsync policy, the wait
 * running on the front's waiter thread while the connection goes on
 * (responses stay in order: api.h invariant 2). Versions 0-2 differ only in
 * their layout (no transactional_id; v0 answers no throttle time, v0-1 no
 * log append time); their records must still be RecordBatch v2: a legacy
 * message set (magic 0 or 1) is refused per partition with
 * UNSUPPORTED_VERSION, as for any version.
 *
 * Invariants:
 *  1. Partitions are independent, as in Kafka: one partition's refusal
 *     stores nothing of that partition and does not affect the others.
 *  2. A duplicate of a stored idempotent batch (a retry) is answered as a
 *     success with the original base offset, after that batch is durable.
 *  3. Nothing is answered for acks -1 before every ticket of the partition
 *     (its new appends and the duplicates' originals) is durable.
 *  4. In a cluster (api.h invariant 7), acks -1 to a replicated queue is
 *     answered as a success only once the queue's high watermark covers
 *     the partition's batches (rn_hd_produce_replicated, the gRPC
 *     produce's wait); else NOT_LEADER_OR_FOLLOWER (the leadership moved),
 *     NOT_ENOUGH_REPLICAS_AFTER_APPEND or REQUEST_TIMED_OUT: stored on this
 *     node, perhaps not kept, and an idempotent producer's retry is safe.
 *     acks 1 answers after this node's write, as the gRPC ACKS_WRITTEN.
 */
#include "kafka/api.h"

#include <stdlib.h>
#include <string.h>

#include "common/bytes.h"
#include "server/log.h"

typedef struct kpart {
    rn_kstr_t    topic;
    int32_t      index;
    rn_kstr_t    records;
    int          ntopic;         /* position of its topic in the request */
    int16_t      err;
    const char  *msg;            /* error_message (v8+), NULL when none */
    rn_produce_t p;
    int          begun;
    rn_status_t  st;
} kpart_t;

typedef struct kproduce {
    int16_t  acks;
    int32_t  ntopics, nparts;
    uint64_t created;            /* ctx->created when the request began */
    kpart_t *parts;
} kproduce_t;

static void produce_free(rn_kreq_t *q)
{
    kproduce_t *s = q->hstate;
    for (int32_t i = 0; i < s->nparts; i++)
        if (s->parts[i].begun) rn_hd_produce_free(&s->parts[i].p);
    free(s->parts);
    free(s);
    q->hstate = NULL;
}

/* The Kafka error for a refused produce. */
static int16_t produce_err(const rn_kctx_t *ctx, const rn_status_t *st)
{
    int16_t c = rn_kerr_cluster(ctx, st);                  /* api.h invariant 7 */
    if (c) return c;
    switch (st->reason) {
    case RN_SR_BATCH_CORRUPT: return RN_KERR_CORRUPT_MESSAGE;
    case RN_SR_BATCH_TOO_LARGE: return RN_KERR_MESSAGE_TOO_LARGE;
    case RN_SR_BATCH_FORMAT: return RN_KERR_UNSUPPORTED_VERSION;
    case RN_SR_TIMESTAMP: return RN_KERR_INVALID_TIMESTAMP;
    case RN_SR_UNKNOWN_PRODUCER: return RN_KERR_UNKNOWN_PRODUCER_ID;
    case RN_SR_PRODUCER_EPOCH: return RN_KERR_INVALID_PRODUCER_EPOCH;
    case RN_SR_SEQUENCE: return RN_KERR_OUT_OF_ORDER_SEQUENCE_NUMBER;
    case RN_SR_NO_QUEUE: return RN_KERR_UNKNOWN_TOPIC_OR_PARTITION;
    default: break;
    }
    if (st->code == RN_ST_RESOURCE_EXHAUSTED) return RN_KERR_MESSAGE_TOO_LARGE;
    if (st->code == RN_ST_INVALID_ARGUMENT) return RN_KERR_INVALID_RECORD;
    return RN_KERR_KAFKA_STORAGE_ERROR;
}

/* Split records into batches: the count, and the batches when out != NULL.
 * -1 when a batch's length runs past the end. */
static int split_batches(rn_kstr_t r, ProtobufCBinaryData *out)
{
    const uint8_t *p = (const uint8_t *)r.p, *end = p + (r.len > 0 ? r.len : 0);
    int n = 0;
    while (p < end) {
        if (end - p < 17) return -1;       /* base offset, length, epoch, magic */
        int32_t len = (int32_t)rn_be32_get(p + 8);
        if (len < 5 || len > end - p - 12) return -1;
        if (out) {
            out[n].data = (uint8_t *)p;
            out[n].len = (size_t)len + 12;
        }
        n++;
        p += (size_t)len + 12;
    }
    return n;
}

/* Store one partition's batches (invariant 1). The topic is looked up in
 * the metadata (and auto-created) only when the broker's queue cache does
 * not know (topic, queue): the hot path reads no SQLite. */
static void produce_part(rn_kreq_t *q, kproduce_t *s, kpart_t *kp)
{
    char name[256];
    if (!rn_ktopic_valid(kp->topic) || rn_kstr_copy(kp->topic, name, sizeof name) != 0) {
        kp->err = RN_KERR_INVALID_TOPIC_EXCEPTION;
        return;
    }
    if (!rn_kacl(q, RN_ACL_TOPIC, name, RN_ACL_PRODUCE)) {     /* api.h invariant 6 */
        kp->err = RN_KERR_TOPIC_AUTHORIZATION_FAILED;
        return;
    }
    if (kp->index < 0) {
        kp->err = RN_KERR_UNKNOWN_TOPIC_OR_PARTITION;
        return;
    }
    int n = kp->records.len > 0 ? split_batches(kp->records, NULL) : -1;
    if (n <= 0) {
        kp->err = RN_KERR_CORRUPT_MESSAGE;
        kp->msg = "the records are not whole RecordBatch v2 batches";
        return;
    }
    ProtobufCBinaryData *b = malloc((size_t)n * sizeof *b);
    if (!b) {
        kp->err = RN_KERR_UNKNOWN_SERVER_ERROR;
        return;
    }
    split_batches(kp->records, b);
    Runnel__V1__ProduceRequest req = RUNNEL__V1__PRODUCE_REQUEST__INIT;
    req.topic = name;
    req.queue = (uint32_t)kp->index;
    req.n_batches = (size_t)n;
    req.batches = b;
    req.acks = s->acks == -1 ? RUNNEL__V1__ACKS__ACKS_DURABLE : RUNNEL__V1__ACKS__ACKS_WRITTEN;
    kp->begun = 1;
    int rc = rn_hd_produce_begin(q->ctx->hd, &req, &kp->p, &kp->st);
    int16_t unmade = rc != 0 && kp->st.reason == RN_SR_NO_QUEUE
                     ? rn_kcluster_unmade(q->ctx, name, (uint32_t)kp->index) : 0;
    if (unmade) {
        /* a replicated topic this node has not made yet: never auto-created
         * here (api.h invariant 7); the client retries */
        kp->err = unmade;
        kp->msg = "the topic is replicated and not made on this node yet; retry";
        free(b);
        return;
    }
    if (rc != 0 && kp->st.reason == RN_SR_NO_QUEUE) {
        rn_meta_topic_t t;
        rn_hd_produce_free(&kp->p);
        kp->begun = 0;
        /* At most RN_KAPI_MAX_AUTO_CREATE topics per request (api.h invariant 5). */
        kp->err = rn_ktopic_get(q->ctx, kp->topic,
                                q->ctx->created - s->created < RN_KAPI_MAX_AUTO_CREATE &&
                                rn_acl_allowed(rn_hd_opts(q->ctx->hd)->acl, q->principal,
                                               RN_ACL_TOPIC, name, RN_ACL_CREATE, 0), &t);
        if (!kp->err && (uint32_t)kp->index >= t.queues)
            kp->err = RN_KERR_UNKNOWN_TOPIC_OR_PARTITION;
        if (kp->err) {
            free(b);
            return;
        }
        kp->begun = 1;
        rc = rn_hd_produce_begin(q->ctx->hd, &req, &kp->p, &kp->st);
    }
    if (rc != 0) {
        kp->err = produce_err(q->ctx, &kp->st);
        kp->msg = kp->st.msg;
        rn_slog(RN_SLOG_DEBUG, "kafka: produce from %s to '%s' queue %d refused: %s", q->peer,
                name, kp->index, kp->st.msg);
    }
    free(b);
}

/* The response, once every partition is stored (and durable for acks -1). */
static void produce_answer(rn_kreq_t *q)
{
    kproduce_t *s = q->hstate;
    rn_kw_t *w = &q->w;
    /* The topics emitted: those with a partition (a topic naming none is
     * left out, so the count matches what follows). */
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
            kpart_t *kp = &s->parts[k];
            rn_kw_i32(w, kp->index);
            rn_kw_i16(w, kp->err);
            rn_kw_i64(w, kp->err ? -1 : kp->p.base[0]);
            if (q->version >= 2) rn_kw_i64(w, -1);         /* log_append_time_ms */
            if (q->version >= 5) rn_kw_i64(w, -1);         /* log_start_offset */
            if (q->version >= 8) {
                rn_kw_array(w, 0);                         /* record_errors */
                rn_kw_str(w, kp->err ? kp->msg : NULL);
            }
        }
        i = j;
    }
    if (q->version >= 1) rn_kw_i32(w, 0);                  /* throttle_time_ms */
}

/* The Kafka error of a replicated produce whose acks did not come
 * (invariant 4): stored on the leader, maybe not kept. */
static int16_t replicated_err(const rn_status_t *st)
{
    if (st->reason == RN_SR_NOT_LEADER) return RN_KERR_NOT_LEADER_OR_FOLLOWER;
    if (st->reason == RN_SR_NOT_ENOUGH_REPLICAS) return RN_KERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND;
    return RN_KERR_REQUEST_TIMED_OUT;
}

/* Waiter thread: wait for durability (invariant 3), then for a replicated
 * queue the in-sync replicas (invariant 4). */
static void produce_wait(rn_kreq_t *q)
{
    kproduce_t *s = q->hstate;
    for (int32_t i = 0; i < s->nparts; i++) {
        kpart_t *kp = &s->parts[i];
        if (kp->err || !kp->begun) continue;
        if (rn_hd_produce_wait(q->ctx->hd, &kp->p, &kp->st) != 0) {
            kp->err = RN_KERR_KAFKA_STORAGE_ERROR;
            kp->msg = kp->st.msg;
            rn_slog(RN_SLOG_ERROR, "kafka: produce from %s: %s", q->peer, kp->st.msg);
            continue;
        }
        if (!kp->p.replicated) continue;
        /* The followers' parked fetches see the batches now (as the gRPC
         * produce path does before it waits). */
        char name[256];
        if (rn_kstr_copy(kp->topic, name, sizeof name) == 0)
            rn_hd_wake(q->ctx->hd, name, (uint32_t)kp->index);
        if (rn_hd_produce_replicated(q->ctx->hd, &kp->p, &kp->st) != 0) {
            kp->err = replicated_err(&kp->st);
            kp->msg = kp->st.msg;
            rn_slog(RN_SLOG_INFO, "kafka: produce from %s not acknowledged: %s", q->peer,
                    kp->st.msg);
        }
    }
}

static void produce_then(rn_kreq_t *q)
{
    produce_answer(q);
    rn_kreq_done(q);
}

int rn_kh_produce(rn_kreq_t *q)
{
    rn_kr_t *r = &q->in;
    rn_kstr_t txn = {.p = NULL, .len = -1};
    if (q->version >= 3) txn = rn_kr_str(r, "transactional_id");
    int16_t acks = rn_kr_i16(r, "acks");
    rn_kr_i32(r, "timeout_ms");
    int32_t nt = rn_kr_array(r, "topic_data");
    if (r->err) return RN_KH_BAD;
    kproduce_t *s = calloc(1, sizeof *s);
    if (!s) return rn_kreq_bad(q, "out of memory");
    q->hstate = s;
    q->hfree = produce_free;
    s->acks = acks;
    s->created = q->ctx->created;
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
        int32_t np = rn_kr_array(r, "partition_data");
        for (int32_t i = 0; i < np && !r->err; i++, count++) {
            rn_kr_i32(r, "partition index");
            rn_kr_bytes(r, "records");
        }
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
        int32_t np = rn_kr_array(r, "partition_data");
        for (int32_t i = 0; i < np && !r->err; i++) {
            kpart_t *kp = &s->parts[s->nparts++];
            kp->topic = name;
            kp->ntopic = t;
            kp->index = rn_kr_i32(r, "partition index");
            kp->records = rn_kr_bytes(r, "records");
        }
    }
    if (r->err) return RN_KH_BAD;
    int16_t all = RN_KERR_NONE;
    const char *msg = NULL;
    if (acks != 0 && acks != 1 && acks != -1) {
        all = RN_KERR_INVALID_REQUIRED_ACKS;
        msg = "acks must be 0, 1 or -1";
    } else if (txn.len >= 0) {
        all = RN_KERR_INVALID_REQUEST;     /* transactions are not supported */
        msg = "transactional produce is not supported (idempotent producers are)";
    }
    int wait = 0;
    for (int32_t i = 0; i < s->nparts; i++) {
        kpart_t *kp = &s->parts[i];
        if (all) {
            kp->err = all;
            kp->msg = msg;
            continue;
        }
        produce_part(q, s, kp);
        if (!kp->err && acks == -1 && (kp->p.ntickets || kp->p.replicated)) wait = 1;
    }
    if (acks == 0) return RN_KH_NONE;
    if (wait) return rn_kreq_offload(q, produce_wait, produce_then, 1);
    produce_answer(q);
    return RN_KH_DONE;
}
