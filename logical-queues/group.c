/*
 * group.c — consumer group offsets and checkpoints checked against the data
 * directory (see group.h).
 *
 * Invariants:
 *  1. Validate, then write: every offset a command would store is checked
 *     against its queue's [log_start, high_watermark] before the single
 *     transaction that stores them, so a failing command changes nothing.
 *  2. Each function holds the data directory's mutex from its first read to
 *     its write (rn_datadir_meta_lock), so reads of ranges and offsets and
 *     the write are one atomic step for other threads of the process; the
 *     data directory lock excludes other processes (group.h).
 *  3. A position in a group or checkpoint is a logical offset: remaps never
 *     change it, retention may leave it below the log start, which is then
 *     reported, never silently skipped.
 */
#include "logical-queues/group.h"

#include "common/error.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Strict decimal in [0, INT64_MAX]. */
static int parse_i64(const char *s, int64_t *out)
{
    uint64_t v = 0;
    if (!*s) return RN_EINVAL;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9' || v > ((uint64_t)INT64_MAX - (uint64_t)(*p - '0')) / 10)
            return RN_EINVAL;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    *out = (int64_t)v;
    return 0;
}

int rn_group_parse_target(const char *s, const char *flag, int allow_offset,
                          rn_group_target_t *t, char *errmsg)
{
    memset(t, 0, sizeof *t);
    const char *forms = allow_offset ? "earliest, latest, an OFFSET, @TIMESTAMP_MS or "
                                       "checkpoint:NAME"
                                     : "earliest, latest, @TIMESTAMP_MS or checkpoint:NAME";
    if (!strcmp(s, "earliest")) { t->kind = RN_TARGET_EARLIEST; return 0; }
    if (!strcmp(s, "latest")) { t->kind = RN_TARGET_LATEST; return 0; }
    if (s[0] == '@') {
        t->kind = RN_TARGET_TIME;
        if (parse_i64(s + 1, &t->value) != 0)
            return rn_errf(errmsg, RN_EINVAL, "%s @TIMESTAMP_MS: '%.40s' is not an integer in "
                           "0..%lld", flag, s + 1, (long long)INT64_MAX);
        return 0;
    }
    if (!strncmp(s, "checkpoint:", 11)) {
        t->kind = RN_TARGET_CHECKPOINT;
        int rc = rn_meta_check_name("checkpoint", s + 11, errmsg);
        if (rc != 0) return rc;
        snprintf(t->checkpoint, sizeof t->checkpoint, "%s", s + 11);
        return 0;
    }
    if (allow_offset && s[0] >= '0' && s[0] <= '9') {
        t->kind = RN_TARGET_OFFSET;
        if (parse_i64(s, &t->value) != 0)
            return rn_errf(errmsg, RN_EINVAL, "%s OFFSET: '%.40s' is not an integer in 0..%lld",
                           flag, s, (long long)INT64_MAX);
        return 0;
    }
    return rn_errf(errmsg, RN_EINVAL, "%s: '%.40s' is not %s", flag, s, forms);
}

/* The datadir position kind of a non-checkpoint target. */
static rn_datadir_pos_kind_t pos_kind(rn_group_target_kind_t k)
{
    switch (k) {
    case RN_TARGET_LATEST: return RN_POS_LATEST;
    case RN_TARGET_OFFSET: return RN_POS_OFFSET;
    case RN_TARGET_TIME: return RN_POS_TIME;
    default: return RN_POS_EARLIEST;
    }
}

/* Check a stored offset against q's range (invariant 3), naming what it is. */
/* what names the offset in a range error; hint (may be NULL) follows it. */
static int check_offset(rn_datadir_t *d, rn_datadir_queue_t *q, int64_t offset,
                        const char *what, const char *hint, char *errmsg)
{
    char inner[RN_ERRMSG_SIZE] = "";
    int64_t got;
    int rc = rn_datadir_resolve(d, q, RN_POS_OFFSET, offset, &got, inner);
    if (rc == RN_ERANGE && what)
        return rn_errf(errmsg, rc, "%s: %s%s", what, inner, hint ? hint : "");
    if (rc != 0) return rn_errf(errmsg, rc, "%s", inner);
    return 0;
}

int rn_group_commit(rn_datadir_t *d, const char *group, const char *topic, uint32_t queue,
                    int64_t offset, char *errmsg)
{
    rn_datadir_queue_t q;
    memset(&q, 0, sizeof q);
    rn_meta_t *m = rn_datadir_meta_lock(d);
    int rc = rn_meta_check_name("group", group, errmsg);
    if (rc == 0) rc = rn_datadir_queue_open(d, topic, queue, &q, errmsg);
    if (rc == 0) rc = check_offset(d, &q, offset, NULL, NULL, errmsg);
    if (rc == 0) {
        rn_meta_offset_t o = {.topic_id = q.topic.id, .queue = queue, .offset = offset};
        rc = rn_meta_offsets_commit(m, group, &o, 1, errmsg);
    }
    rn_datadir_meta_unlock(d);
    rn_datadir_queue_close(&q);
    return rc;
}

int rn_group_commit_offsets(rn_datadir_t *d, const char *group, const rn_meta_offset_t *v,
                            size_t n, char *errmsg)
{
    rn_meta_t *m = rn_datadir_meta_lock(d);
    int rc = rn_meta_offsets_commit(m, group, v, n, errmsg);
    rn_datadir_meta_unlock(d);
    return rc;
}

static const rn_meta_offset_t *find_offset(const rn_meta_offset_t *v, size_t n, int64_t topic_id,
                                           uint32_t queue)
{
    for (size_t i = 0; i < n; i++)
        if (v[i].topic_id == topic_id && v[i].queue == queue) return &v[i];
    return NULL;
}

/* Append one entry to a growing array of T. */
#define PUSH(arr, len, cap, val, rc, errmsg)                                          \
    do {                                                                              \
        if ((len) == (cap)) {                                                         \
            size_t nc_ = (cap) ? (cap) * 2 : 16;                                      \
            void *p_ = realloc((arr), nc_ * sizeof *(arr));                           \
            if (!p_) { (rc) = rn_errf((errmsg), -ENOMEM, "out of memory"); break; }   \
            (arr) = p_; (cap) = nc_;                                                  \
        }                                                                             \
        (arr)[(len)++] = (val);                                                       \
    } while (0)

/* The (topic, queue) pairs a reset covers, with their new offsets. */
typedef struct plan {
    rn_meta_offset_t *next;   size_t nnext, capnext;
    rn_group_change_t *chg;   size_t nchg, capchg;
} plan_t;

/* Resolve the new offset of (topic, queue) for a non-checkpoint target and
 * add it to the plan. */
static int plan_queue(rn_datadir_t *d, plan_t *p, const char *topic, uint32_t queue,
                      const rn_group_target_t *to, const rn_meta_offset_t *old, size_t nold,
                      char *errmsg)
{
    rn_datadir_queue_t q;
    int64_t off = 0;
    int rc = rn_datadir_queue_open(d, topic, queue, &q, errmsg);
    if (rc != 0) return rc;
    rc = rn_datadir_resolve(d, &q, pos_kind(to->kind), to->value, &off, errmsg);
    if (rc == 0) {
        rn_meta_offset_t o = {.topic_id = q.topic.id, .queue = queue, .offset = off};
        memcpy(o.topic, q.topic.name, sizeof o.topic);
        const rn_meta_offset_t *was = find_offset(old, nold, q.topic.id, queue);
        rn_group_change_t c = {.queue = queue, .before = was ? was->offset : -1, .after = off};
        memcpy(c.topic, q.topic.name, sizeof c.topic);
        PUSH(p->next, p->nnext, p->capnext, o, rc, errmsg);
        if (rc == 0) PUSH(p->chg, p->nchg, p->capchg, c, rc, errmsg);
    }
    rn_datadir_queue_close(&q);
    return rc;
}

/* A checkpoint reset: the checkpoint's offsets on the covered topics, each
 * checked; group offsets there that the checkpoint lacks are removed. */
static int plan_checkpoint(rn_datadir_t *d, rn_meta_t *m, plan_t *p, const char *group,
                           int64_t topic_id, const rn_group_target_t *to,
                           const rn_meta_offset_t *old, size_t nold, char *errmsg)
{
    rn_meta_checkpoint_t cp;
    rn_meta_offset_t *v = NULL;
    size_t n = 0;
    int rc = rn_meta_checkpoint_get(m, group, to->checkpoint, &cp, errmsg);
    if (rc == 0) rc = rn_meta_checkpoint_offsets(m, cp.id, &v, &n, errmsg);
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (topic_id >= 0 && v[i].topic_id != topic_id) continue;
        rn_datadir_queue_t q;
        char what[RN_META_NAME_MAX + 64];
        rc = rn_datadir_queue_open(d, v[i].topic, v[i].queue, &q, errmsg);
        if (rc != 0) break;
        snprintf(what, sizeof what, "checkpoint '%s'", to->checkpoint);
        rc = check_offset(d, &q, v[i].offset, what, NULL, errmsg);
        rn_datadir_queue_close(&q);
        const rn_meta_offset_t *was = find_offset(old, nold, v[i].topic_id, v[i].queue);
        rn_group_change_t c = {.queue = v[i].queue, .before = was ? was->offset : -1,
                               .after = v[i].offset};
        memcpy(c.topic, v[i].topic, sizeof c.topic);
        if (rc == 0) PUSH(p->next, p->nnext, p->capnext, v[i], rc, errmsg);
        if (rc == 0) PUSH(p->chg, p->nchg, p->capchg, c, rc, errmsg);
    }
    for (size_t i = 0; i < nold && rc == 0; i++) {
        if (find_offset(p->next, p->nnext, old[i].topic_id, old[i].queue)) continue;
        /* old holds only the covered topics' offsets: what the checkpoint
         * lacks there is removed. */
        rn_group_change_t c = {.queue = old[i].queue, .before = old[i].offset, .after = -1};
        memcpy(c.topic, old[i].topic, sizeof c.topic);
        PUSH(p->chg, p->nchg, p->capchg, c, rc, errmsg);
    }
    free(v);
    return rc;
}

int rn_group_reset(rn_datadir_t *d, const char *group, const char *topic,
                   const rn_group_target_t *to, rn_group_change_t **changes, size_t *n,
                   char *errmsg)
{
    plan_t p;
    memset(&p, 0, sizeof p);
    rn_meta_offset_t *old = NULL;
    size_t nold = 0;
    rn_meta_group_t g;
    rn_meta_topic_t t;
    int64_t topic_id = -1;
    *changes = NULL;
    *n = 0;
    if (to->kind == RN_TARGET_OFFSET)
        return rn_errf(errmsg, RN_EINVAL, "a reset goes to earliest, latest, @TIMESTAMP_MS or "
                       "checkpoint:NAME (use `group commit` for one offset)");
    rn_meta_t *m = rn_datadir_meta_lock(d);
    int rc = rn_meta_group_get(m, group, &g, errmsg);
    if (rc == 0 && topic) {
        rc = rn_meta_topic_get(m, topic, &t, errmsg);
        topic_id = t.id;
    }
    if (rc == 0) rc = rn_meta_offsets_get(m, group, topic_id, &old, &nold, errmsg);
    if (rc != 0) goto out;
    if (to->kind == RN_TARGET_CHECKPOINT) {
        rc = plan_checkpoint(d, m, &p, group, topic_id, to, old, nold, errmsg);
    } else if (topic) {
        for (uint32_t qi = 0; qi < t.queues && rc == 0; qi++)
            rc = plan_queue(d, &p, topic, qi, to, old, nold, errmsg);
    } else {
        if (nold == 0)
            rc = rn_errf(errmsg, RN_ENOTFOUND, "group '%s' has no offsets yet; name a topic with "
                         "--topic T", group);
        for (size_t i = 0; i < nold && rc == 0; i++)
            rc = plan_queue(d, &p, old[i].topic, old[i].queue, to, old, nold, errmsg);
    }
    if (rc != 0) goto out;
    /* A checkpoint reset without a topic replaces the group's offsets on
     * every topic: the group becomes exactly the checkpoint. */
    rc = rn_meta_offsets_replace(m, group, topic_id, p.next, p.nnext, errmsg);
    if (rc != 0) goto out;
    *changes = p.chg;
    *n = p.nchg;
    p.chg = NULL;
out:
    rn_datadir_meta_unlock(d);
    free(p.next);
    free(p.chg);
    free(old);
    return rc;
}

int rn_group_start_prepare(rn_datadir_t *d, rn_group_start_t *s, int64_t topic_id, char *errmsg)
{
    rn_meta_t *m = rn_datadir_meta_lock(d);
    int rc = 0;
    if (s->from.kind == RN_TARGET_CHECKPOINT) {
        rc = rn_meta_checkpoint_get(m, s->group, s->from.checkpoint, &s->cp, errmsg);
        if (rc == 0) rc = rn_meta_checkpoint_offsets(m, s->cp.id, &s->cp_offsets, &s->ncp, errmsg);
    }
    if (rc == 0 && s->group) {
        rc = rn_meta_check_name("group", s->group, errmsg);
        if (rc == 0) rc = rn_meta_offsets_get(m, s->group, topic_id, &s->offsets, &s->noffsets,
                                              errmsg);
    }
    rn_datadir_meta_unlock(d);
    return rc;
}

int rn_group_start_offset(rn_datadir_t *d, const rn_group_start_t *s, rn_datadir_queue_t *q,
                          int64_t *offset, const char **source, char *errmsg)
{
    char what[RN_META_NAME_MAX * 2 + 64], hint[RN_META_NAME_MAX * 2 + 96] = "";
    const rn_meta_offset_t *o = NULL;
    const char *src = "start";
    if (s->from.kind == RN_TARGET_CHECKPOINT) {
        o = find_offset(s->cp_offsets, s->ncp, q->topic.id, q->queue);
        snprintf(what, sizeof what, "checkpoint '%s' of group '%s'", s->cp.name, s->cp.group);
        src = "checkpoint";
        if (!o) {
            if (source) *source = src;
            return rn_datadir_resolve(d, q, RN_POS_EARLIEST, 0, offset, errmsg);
        }
    } else if (s->group) {
        o = find_offset(s->offsets, s->noffsets, q->topic.id, q->queue);
        snprintf(what, sizeof what, "group '%s' committed offset", s->group);
        snprintf(hint, sizeof hint, "; reset it with `runnel group reset %s --topic %s --to "
                 "earliest`", s->group, q->topic.name);
        if (o) src = "group";
    }
    if (source) *source = src;
    if (o) {
        int rc = check_offset(d, q, o->offset, what, hint, errmsg);
        if (rc == 0) *offset = o->offset;
        return rc;
    }
    return rn_datadir_resolve(d, q, pos_kind(s->from.kind), s->from.value, offset, errmsg);
}

void rn_group_start_free(rn_group_start_t *s)
{
    free(s->cp_offsets);
    free(s->offsets);
    s->cp_offsets = s->offsets = NULL;
    s->ncp = s->noffsets = 0;
}
