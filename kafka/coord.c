/*
 * coord.c — the Kafka group coordinator (coord.h): groups, members,
 * generations, the rebalance state machine, session and rebalance timeouts.
 *
 * States and what moves between them (coord.h has the overview):
 *   Empty               only pending members (first joins answered with
 *                       MEMBER_ID_REQUIRED): a join of one → PreparingRebalance
 *   PreparingRebalance  prepare(): waiting for every member's JoinGroup
 *                       (held) and every pending member; complete_join()
 *                       when all are in (try_complete) or at g->deadline
 *                       (tick): members that did not rejoin are removed
 *   CompletingRebalance complete_join(): generation + 1, joins answered,
 *                       waiting for the leader's SyncGroup (sync());
 *                       members that have not synced by g->deadline are
 *                       removed (tick) and a new rebalance starts
 *   Stable              the leader synced: every held SyncGroup answered
 *   (freed)             no member and no pending member left (settle())
 *
 * Invariants (beyond coord.h's):
 *  1. A member holding a JoinGroup or SyncGroup is alive (its session does
 *     not expire while it waits); otherwise it expires session_ms after its
 *     last JoinGroup, SyncGroup, Heartbeat or OffsetCommit.
 *  2. Requests to complete go through c->done (linked by q->link, free
 *     while the coordinator holds q) and are completed by flush() at the
 *     end of each entry point, after the state is consistent; a request of
 *     the entry point itself (c->current) is answered by returning
 *     RN_KH_DONE instead.
 *  3. c->bytes counts every member's copied strings, metadata and
 *     assignment; it never exceeds RN_KCOORD_MAX_BYTES.
 *  4. The published member list of a group (c->pub, under c->pmu) is
 *     rewritten whenever a member is added or removed.
 */
#include "kafka/coord.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "common/error.h"
#include "server/log.h"
#include "server/server.h"

enum { G_EMPTY, G_PREPARING, G_COMPLETING, G_STABLE };
static const char *const state_names[] = {"Empty", "PreparingRebalance", "CompletingRebalance",
                                          "Stable"};

typedef struct kproto {
    char    *name;
    uint8_t *meta;
    int32_t  len;
} kproto_t;

typedef struct kmember {
    struct kmember *next;
    char      *id, *instance, *client_id, *host;
    int32_t    session_ms, rebalance_ms;
    kproto_t  *protos;
    int32_t    nprotos;
    uint8_t   *assign;
    int32_t    assign_len;
    rn_kreq_t *join_req, *sync_req;      /* held (invariant 1) */
    int64_t    deadline;                 /* session expiry */
    size_t     bytes;                    /* counted in c->bytes */
} kmember_t;

typedef struct kpending {
    struct kpending *next;
    char    *id;
    int64_t  deadline;
} kpending_t;

typedef struct kgroup {
    struct kgroup *next;
    char      *name;
    int        state;
    int32_t    generation;
    char      *protocol_type;            /* of the members; NULL while none */
    char      *protocol;                 /* chosen at complete_join; NULL before */
    char      *leader;                   /* member id; NULL before */
    kmember_t *members;                  /* in join order */
    int32_t    nmembers;
    kpending_t *pending;
    int32_t    npending;
    int64_t    deadline;                 /* rebalance or sync deadline */
} kgroup_t;

typedef struct kpub {
    struct kpub *next;
    char *name, *members;
} kpub_t;

struct rn_kcoord {
    rn_kctx_t *ctx;
    kgroup_t  *groups;
    int        ngroups;
    size_t     bytes;                    /* invariant 3 */
    uint64_t   nonce, ids;               /* member ids: nonce and counter */
    rn_kreq_t *done, **done_tail;        /* invariant 2 */
    int        flushing;
    rn_kreq_t *current;
    int        current_done;
    pthread_mutex_t pmu;                 /* invariant 4 */
    kpub_t    *pub;
};

/* ---- small helpers ---------------------------------------------------------------- */

static int kstr_is(rn_kstr_t s, const char *z)
{
    return z && s.len >= 0 && (size_t)s.len == strlen(z) && memcmp(s.p, z, (size_t)s.len) == 0;
}

static char *kstr_dup(rn_kstr_t s)
{
    int32_t n = s.len < 0 ? 0 : s.len;
    char *p = malloc((size_t)n + 1);
    if (!p) return NULL;
    memcpy(p, s.p, (size_t)n);
    p[n] = 0;
    /* Ids and names are printed in logs and messages: no control bytes. */
    for (int32_t i = 0; i < n; i++)
        if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f) p[i] = '?';
    return p;
}

static int64_t now_ms(void) { return rn_server_now_ms(); }

static kgroup_t *group_find(rn_kcoord_t *c, const char *name)
{
    for (kgroup_t *g = c->groups; g; g = g->next)
        if (!strcmp(g->name, name)) return g;
    return NULL;
}

static kmember_t *member_find(kgroup_t *g, rn_kstr_t id)
{
    for (kmember_t *m = g->members; m; m = m->next)
        if (kstr_is(id, m->id)) return m;
    return NULL;
}

/* Queue q for completion (invariant 2). */
static void finish(rn_kcoord_t *c, rn_kreq_t *q)
{
    if (q == c->current) {
        c->current_done = 1;
        return;
    }
    q->link = NULL;
    *c->done_tail = q;
    c->done_tail = &q->link;
}

static void flush(rn_kcoord_t *c)
{
    if (c->flushing) return;         /* the outer flush takes what is added */
    c->flushing = 1;
    while (c->done) {
        rn_kreq_t *q = c->done;
        c->done = q->link;
        if (!c->done) c->done_tail = &c->done;
        q->link = NULL;
        rn_kreq_done(q);
    }
    c->flushing = 0;
}

/* ---- the published member lists (invariant 4) ------------------------------------- */

static void publish(rn_kcoord_t *c, kgroup_t *g)
{
    char *text = NULL;
    if (g->nmembers > 0) {
        size_t cap = 512, len = 0;
        text = malloc(cap);
        if (text) {
            text[0] = 0;
            int shown = 0;
            for (kmember_t *m = g->members; m && len < cap - 1; m = m->next) {
                if (shown == 3) {
                    len += (size_t)snprintf(text + len, cap - len, " and %d more",
                                            g->nmembers - shown);
                    break;
                }
                len += (size_t)snprintf(text + len, cap - len, "%s%.60s", shown ? ", " : "",
                                        m->id);
                shown++;
            }
        }
    }
    pthread_mutex_lock(&c->pmu);
    kpub_t **pp = &c->pub;
    while (*pp && strcmp((*pp)->name, g->name)) pp = &(*pp)->next;
    if (*pp) {
        kpub_t *p = *pp;
        if (text) {
            free(p->members);
            p->members = text;
            text = NULL;
        } else {
            *pp = p->next;
            free(p->name);
            free(p->members);
            free(p);
        }
    } else if (text) {
        kpub_t *p = calloc(1, sizeof *p);
        char *name = strdup(g->name);
        if (p && name) {
            p->name = name;
            p->members = text;
            text = NULL;
            p->next = c->pub;
            c->pub = p;
        } else {
            free(p);
            free(name);
        }
    }
    pthread_mutex_unlock(&c->pmu);
    free(text);
}

/* ResetGroup's guard (server/handlers.h), on a gRPC thread. */
static int reset_guard(void *arg, const char *group, char *msg, size_t n)
{
    rn_kcoord_t *c = arg;
    int refuse = 0;
    pthread_mutex_lock(&c->pmu);
    for (kpub_t *p = c->pub; p; p = p->next) {
        if (strcmp(p->name, group)) continue;
        snprintf(msg, n, "group '%s' has live Kafka members: %s; stop them before resetting "
                 "or committing its offsets", group, p->members);
        refuse = 1;
        break;
    }
    pthread_mutex_unlock(&c->pmu);
    return refuse;
}

/* ---- members ---------------------------------------------------------------------- */

static void member_free(rn_kcoord_t *c, kmember_t *m)
{
    for (int32_t i = 0; i < m->nprotos; i++) {
        free(m->protos[i].name);
        free(m->protos[i].meta);
    }
    free(m->protos);
    free(m->assign);
    free(m->id);
    free(m->instance);
    free(m->client_id);
    free(m->host);
    c->bytes -= m->bytes;
    free(m);
}

static void set_assign(rn_kcoord_t *c, kmember_t *m, const uint8_t *p, int32_t len)
{
    free(m->assign);
    m->assign = NULL;
    c->bytes -= (size_t)m->assign_len;
    m->bytes -= (size_t)m->assign_len;
    m->assign_len = 0;
    if (len <= 0 || c->bytes + (size_t)len > RN_KCOORD_MAX_BYTES) return;
    m->assign = malloc((size_t)len);
    if (!m->assign) return;
    memcpy(m->assign, p, (size_t)len);
    m->assign_len = len;
    c->bytes += (size_t)len;
    m->bytes += (size_t)len;
}

/* Replace m's protocols with a's; -1 when out of memory or over the bound. */
static int set_protos(rn_kcoord_t *c, kmember_t *m, const rn_kjoin_t *a)
{
    size_t need = 0;
    for (int32_t i = 0; i < a->nprotos; i++)
        need += (size_t)a->protos[i].name.len + 1 + (size_t)(a->protos[i].meta.len > 0 ? a->protos[i].meta.len : 0);
    size_t old = 0;
    for (int32_t i = 0; i < m->nprotos; i++) old += strlen(m->protos[i].name) + 1 + (size_t)m->protos[i].len;
    if (c->bytes - old + need > RN_KCOORD_MAX_BYTES) return -1;
    kproto_t *v = calloc((size_t)a->nprotos, sizeof *v);
    if (!v) return -1;
    for (int32_t i = 0; i < a->nprotos; i++) {
        v[i].name = kstr_dup(a->protos[i].name);
        int32_t len = a->protos[i].meta.len > 0 ? a->protos[i].meta.len : 0;
        v[i].meta = malloc(len ? (size_t)len : 1);
        if (!v[i].name || !v[i].meta) {
            for (int32_t k = 0; k <= i; k++) {
                free(v[k].name);
                free(v[k].meta);
            }
            free(v);
            return -1;
        }
        if (len) memcpy(v[i].meta, a->protos[i].meta.p, (size_t)len);
        v[i].len = len;
    }
    for (int32_t i = 0; i < m->nprotos; i++) {
        free(m->protos[i].name);
        free(m->protos[i].meta);
    }
    free(m->protos);
    m->protos = v;
    m->nprotos = a->nprotos;
    c->bytes = c->bytes - old + need;
    m->bytes = m->bytes - old + need;
    return 0;
}

static int same_protos(const kmember_t *m, const rn_kjoin_t *a)
{
    if (m->nprotos != a->nprotos) return 0;
    for (int32_t i = 0; i < a->nprotos; i++) {
        int32_t len = a->protos[i].meta.len > 0 ? a->protos[i].meta.len : 0;
        if (!kstr_is(a->protos[i].name, m->protos[i].name) || len != m->protos[i].len ||
            (len && memcmp(a->protos[i].meta.p, m->protos[i].meta, (size_t)len)))
            return 0;
    }
    return 1;
}

static const kproto_t *member_proto(const kmember_t *m, const char *name)
{
    for (int32_t i = 0; i < m->nprotos; i++)
        if (!strcmp(m->protos[i].name, name)) return &m->protos[i];
    return NULL;
}

/* Does every member but `skip` support one of a's protocols? */
static int supports(const kgroup_t *g, const kmember_t *skip, const rn_kjoin_t *a)
{
    for (int32_t i = 0; i < a->nprotos; i++) {
        char name[256];
        if (rn_kstr_copy(a->protos[i].name, name, sizeof name) != 0) continue;
        int all = 1;
        for (const kmember_t *m = g->members; m && all; m = m->next)
            if (m != skip && !member_proto(m, name)) all = 0;
        if (all) return 1;
    }
    return 0;
}

/* The protocol every member supports that most members list first among
 * those (Kafka's vote); NULL when none (cannot happen: joins check). */
static const char *choose_protocol(const kgroup_t *g)
{
    const char *best = NULL;
    int best_votes = -1;
    const kmember_t *first = g->members;
    for (int32_t i = 0; first && i < first->nprotos; i++) {
        const char *cand = first->protos[i].name;
        int all = 1;
        for (const kmember_t *m = g->members; m && all; m = m->next)
            if (!member_proto(m, cand)) all = 0;
        if (!all) continue;
        int votes = 0;
        for (const kmember_t *m = g->members; m; m = m->next) {
            /* m's vote: its first protocol every member supports */
            for (int32_t k = 0; k < m->nprotos; k++) {
                int ok = 1;
                for (const kmember_t *o = g->members; o && ok; o = o->next)
                    if (!member_proto(o, m->protos[k].name)) ok = 0;
                if (ok) {
                    if (!strcmp(m->protos[k].name, cand)) votes++;
                    break;
                }
            }
        }
        if (votes > best_votes) {
            best = cand;
            best_votes = votes;
        }
    }
    return best;
}

/* ---- answering held requests -------------------------------------------------------- */

static void answer_join_err(rn_kcoord_t *c, kmember_t *m, int16_t err)
{
    if (!m->join_req) return;
    rn_kgroup_write_join(m->join_req, err, -1, "", "", m->id, NULL, 0);
    finish(c, m->join_req);
    m->join_req = NULL;
}

static void answer_sync_err(rn_kcoord_t *c, kmember_t *m, int16_t err)
{
    if (!m->sync_req) return;
    rn_kgroup_write_sync(m->sync_req, err, NULL, 0);
    finish(c, m->sync_req);
    m->sync_req = NULL;
}

/* Answer m's join with the current generation (the leader gets the
 * members and their metadata of the chosen protocol). */
static void answer_join(rn_kcoord_t *c, kgroup_t *g, kmember_t *m, rn_kreq_t *q)
{
    rn_kjoin_member_t *v = NULL;
    int32_t n = 0;
    if (!strcmp(m->id, g->leader)) {
        v = calloc((size_t)g->nmembers, sizeof *v);
        if (!v) {
            rn_kgroup_write_join(q, RN_KERR_UNKNOWN_SERVER_ERROR, -1, "", "", m->id, NULL, 0);
            finish(c, q);
            return;
        }
        for (kmember_t *o = g->members; o; o = o->next) {
            const kproto_t *p = member_proto(o, g->protocol);
            v[n].id = o->id;
            v[n].instance = o->instance;
            v[n].meta = p ? p->meta : NULL;
            v[n].meta_len = p ? p->len : 0;
            n++;
        }
    }
    rn_kgroup_write_join(q, RN_KERR_NONE, g->generation, g->protocol, g->leader, m->id, v, n);
    free(v);
    finish(c, q);
}

/* ---- the state machine ---------------------------------------------------------------- */

static void member_remove(rn_kcoord_t *c, kgroup_t *g, kmember_t *m, const char *why)
{
    rn_slog(RN_SLOG_INFO, "kafka: group '%s': member %s (client '%s' at %s) removed: %s",
            g->name, m->id, m->client_id, m->host, why);
    kmember_t **pp = &g->members;
    while (*pp != m) pp = &(*pp)->next;
    *pp = m->next;
    g->nmembers--;
    answer_join_err(c, m, RN_KERR_UNKNOWN_MEMBER_ID);
    answer_sync_err(c, m, RN_KERR_UNKNOWN_MEMBER_ID);
    member_free(c, m);
    publish(c, g);
}

static int32_t max_rebalance_ms(const kgroup_t *g)
{
    int32_t t = 0;
    for (const kmember_t *m = g->members; m; m = m->next)
        if (m->rebalance_ms > t) t = m->rebalance_ms;
    return t;
}

static void prepare(rn_kcoord_t *c, kgroup_t *g, const char *why)
{
    if (g->state == G_COMPLETING)
        for (kmember_t *m = g->members; m; m = m->next)
            answer_sync_err(c, m, RN_KERR_REBALANCE_IN_PROGRESS);
    for (kmember_t *m = g->members; m; m = m->next) set_assign(c, m, NULL, 0);
    if (g->state != G_PREPARING)
        rn_slog(RN_SLOG_INFO, "kafka: group '%s' (generation %d, %d members) rebalancing: %s",
                g->name, g->generation, g->nmembers, why);
    g->state = G_PREPARING;
    g->deadline = now_ms() + max_rebalance_ms(g);
}

static void complete_join(rn_kcoord_t *c, kgroup_t *g)
{
    for (kmember_t *m = g->members, *next; m; m = next) {
        next = m->next;
        if (!m->join_req) member_remove(c, g, m, "it did not rejoin within the rebalance timeout");
    }
    while (g->pending) {
        kpending_t *p = g->pending;
        g->pending = p->next;
        free(p->id);
        free(p);
    }
    g->npending = 0;
    g->generation++;
    free(g->protocol);
    g->protocol = NULL;
    if (g->nmembers == 0) {
        g->state = G_EMPTY;
        return;
    }
    const char *proto = choose_protocol(g);
    g->protocol = strdup(proto ? proto : "");
    int leader_stays = 0;
    for (kmember_t *m = g->members; m && g->leader; m = m->next)
        if (!strcmp(m->id, g->leader)) leader_stays = 1;
    if (!leader_stays) {
        free(g->leader);
        g->leader = strdup(g->members->id);
    }
    if (!g->protocol || !g->leader) {
        /* Out of memory: fail every join; the members will rejoin. */
        for (kmember_t *m = g->members; m; m = m->next)
            answer_join_err(c, m, RN_KERR_UNKNOWN_SERVER_ERROR);
        free(g->protocol);
        g->protocol = NULL;
        g->state = G_PREPARING;
        g->deadline = now_ms() + max_rebalance_ms(g);
        return;
    }
    g->state = G_COMPLETING;
    int64_t now = now_ms();
    g->deadline = now + max_rebalance_ms(g);
    rn_slog(RN_SLOG_INFO, "kafka: group '%s' generation %d: %d members, protocol '%s', "
            "leader %s", g->name, g->generation, g->nmembers, g->protocol, g->leader);
    for (kmember_t *m = g->members; m; m = m->next) {
        rn_kreq_t *q = m->join_req;
        m->join_req = NULL;
        m->deadline = now + m->session_ms;
        answer_join(c, g, m, q);
    }
}

static void try_complete(rn_kcoord_t *c, kgroup_t *g)
{
    if (g->state != G_PREPARING || g->npending > 0) return;
    for (kmember_t *m = g->members; m; m = m->next)
        if (!m->join_req) return;
    complete_join(c, g);
}

/* After members left: rebalance, or complete a rebalance waiting for them. */
static void changed(rn_kcoord_t *c, kgroup_t *g, const char *why)
{
    if (g->state == G_STABLE || g->state == G_COMPLETING) {
        if (g->nmembers > 0) prepare(c, g, why);
        else g->state = G_EMPTY;
    } else if (g->state == G_PREPARING) {
        if (g->nmembers == 0 && g->npending == 0) g->state = G_EMPTY;
        else try_complete(c, g);
    }
}

static void group_free(rn_kcoord_t *c, kgroup_t *g)
{
    while (g->members) member_remove(c, g, g->members, "the coordinator is closing");
    while (g->pending) {
        kpending_t *p = g->pending;
        g->pending = p->next;
        free(p->id);
        free(p);
    }
    publish(c, g);
    free(g->name);
    free(g->protocol_type);
    free(g->protocol);
    free(g->leader);
    free(g);
}

/* Free g once nobody is in it. */
static void settle(rn_kcoord_t *c, kgroup_t *g)
{
    if (!g || g->nmembers > 0 || g->npending > 0) return;
    kgroup_t **pp = &c->groups;
    while (*pp && *pp != g) pp = &(*pp)->next;
    if (*pp) *pp = g->next;
    c->ngroups--;
    group_free(c, g);
}

/* ---- JoinGroup ---------------------------------------------------------------------- */

static void new_member_id(rn_kcoord_t *c, rn_kstr_t client_id, char *out, size_t n)
{
    char cid[65];
    int32_t len = client_id.len < 0 ? 0 : client_id.len > 64 ? 64 : client_id.len;
    int k = 0;
    for (int32_t i = 0; i < len; i++) {
        char ch = client_id.p[i];
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            ch == '.' || ch == '_' || ch == '-')
            cid[k++] = ch;
    }
    cid[k] = 0;
    uint64_t id = ++c->ids;
    snprintf(out, n, "%s-%08x-%04x-%04x-%012llx", k ? cid : "member",
             (unsigned)(c->nonce >> 32), (unsigned)(c->nonce >> 16) & 0xffff,
             (unsigned)(id >> 48) & 0xffff, (unsigned long long)(id & 0xffffffffffffull));
}

static kmember_t *member_new(rn_kcoord_t *c, kgroup_t *g, const char *id, rn_kreq_t *q,
                             const rn_kjoin_t *a)
{
    kmember_t *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->id = strdup(id);
    m->instance = a->instance_id.len >= 0 ? kstr_dup(a->instance_id) : NULL;
    m->client_id = kstr_dup(q->client_id);
    m->host = strdup(q->peer);
    if (!m->id || !m->client_id || !m->host || (a->instance_id.len >= 0 && !m->instance) ||
        set_protos(c, m, a) != 0) {
        member_free(c, m);
        return NULL;
    }
    m->session_ms = a->session_ms;
    m->rebalance_ms = a->rebalance_ms;
    m->deadline = now_ms() + a->session_ms;
    kmember_t **pp = &g->members;
    while (*pp) pp = &(*pp)->next;
    *pp = m;
    g->nmembers++;
    rn_slog(RN_SLOG_INFO, "kafka: group '%s': member %s (client '%s' at %s) joined", g->name,
            m->id, m->client_id, m->host);
    publish(c, g);
    return m;
}

static int join_err(rn_kreq_t *q, int16_t err, const char *member_id)
{
    rn_kgroup_write_join(q, err, -1, "", "", member_id, NULL, 0);
    return RN_KH_DONE;
}

static int join(rn_kcoord_t *c, rn_kreq_t *q, const rn_kjoin_t *a, kgroup_t **touched)
{
    char mid[256] = "";
    if (rn_kstr_copy(a->member_id, mid, sizeof mid) != 0)
        return join_err(q, RN_KERR_UNKNOWN_MEMBER_ID, "");
    if (a->session_ms < RN_KCOORD_MIN_SESSION_MS || a->session_ms > RN_KCOORD_MAX_SESSION_MS)
        return join_err(q, RN_KERR_INVALID_SESSION_TIMEOUT, mid);
    if (a->protocol_type.len <= 0 || a->nprotos <= 0 || a->nprotos > RN_KCOORD_MAX_PROTOCOLS)
        return join_err(q, RN_KERR_INCONSISTENT_GROUP_PROTOCOL, mid);
    kgroup_t *g = group_find(c, a->group);
    if (!g) {
        if (mid[0]) return join_err(q, RN_KERR_UNKNOWN_MEMBER_ID, mid);
        if (c->ngroups >= RN_KCOORD_MAX_GROUPS) {
            rn_slog(RN_SLOG_WARN, "kafka: JoinGroup from %s: %d groups already (the limit)",
                    q->peer, RN_KCOORD_MAX_GROUPS);
            return join_err(q, RN_KERR_GROUP_MAX_SIZE_REACHED, mid);
        }
        g = calloc(1, sizeof *g);
        if (!g || !(g->name = strdup(a->group))) {
            free(g);
            return join_err(q, RN_KERR_UNKNOWN_SERVER_ERROR, mid);
        }
        g->state = G_EMPTY;
        kgroup_t **pp = &c->groups;
        while (*pp) pp = &(*pp)->next;
        *pp = g;
        c->ngroups++;
    }
    *touched = g;
    if (g->protocol_type && g->nmembers > 0 && !kstr_is(a->protocol_type, g->protocol_type))
        return join_err(q, RN_KERR_INCONSISTENT_GROUP_PROTOCOL, mid);
    kmember_t *m = mid[0] ? member_find(g, a->member_id) : NULL;
    if (g->nmembers > 0 && !supports(g, m, a))
        return join_err(q, RN_KERR_INCONSISTENT_GROUP_PROTOCOL, mid);
    if (!g->protocol_type || g->nmembers == 0) {
        free(g->protocol_type);
        g->protocol_type = kstr_dup(a->protocol_type);
        if (!g->protocol_type) return join_err(q, RN_KERR_UNKNOWN_SERVER_ERROR, mid);
    }
    if (!mid[0] || !m) {
        /* A new member: first joins of v4+ get an id to come back with. */
        kpending_t **pp = &g->pending;
        while (mid[0] && *pp && strcmp((*pp)->id, mid)) pp = &(*pp)->next;
        int was_pending = mid[0] && *pp;
        if (mid[0] && !was_pending) return join_err(q, RN_KERR_UNKNOWN_MEMBER_ID, mid);
        if (!was_pending && g->nmembers + g->npending >= RN_KCOORD_MAX_MEMBERS)
            return join_err(q, RN_KERR_GROUP_MAX_SIZE_REACHED, mid);
        if (!mid[0]) new_member_id(c, q->client_id, mid, sizeof mid);
        if (!was_pending && a->require_member_id) {
            kpending_t *p = calloc(1, sizeof *p);
            if (!p || !(p->id = strdup(mid))) {
                free(p);
                return join_err(q, RN_KERR_UNKNOWN_SERVER_ERROR, "");
            }
            p->deadline = now_ms() + a->session_ms;
            p->next = g->pending;
            g->pending = p;
            g->npending++;
            return join_err(q, RN_KERR_MEMBER_ID_REQUIRED, mid);
        }
        if (was_pending) {
            kpending_t *p = *pp;
            *pp = p->next;
            free(p->id);
            free(p);
            g->npending--;
        }
        m = member_new(c, g, mid, q, a);
        if (!m) {
            rn_slog(RN_SLOG_WARN, "kafka: group '%s': no memory for member %s from %s (%zu "
                    "bytes of member metadata held)", g->name, mid, q->peer, c->bytes);
            return join_err(q, RN_KERR_UNKNOWN_SERVER_ERROR, mid);
        }
        m->join_req = q;
        char why[320];
        snprintf(why, sizeof why, "member %s joined", m->id);
        if (g->state != G_PREPARING) prepare(c, g, why);
        try_complete(c, g);
        return RN_KH_LATER;
    }
    /* A known member joins again. */
    int same = same_protos(m, a);
    if (!same && set_protos(c, m, a) != 0) return join_err(q, RN_KERR_UNKNOWN_SERVER_ERROR, mid);
    m->session_ms = a->session_ms;
    m->rebalance_ms = a->rebalance_ms;
    m->deadline = now_ms() + a->session_ms;
    if (g->state == G_PREPARING) {
        answer_join_err(c, m, RN_KERR_REBALANCE_IN_PROGRESS);   /* an earlier join */
        m->join_req = q;
        try_complete(c, g);
        return RN_KH_LATER;
    }
    if (same && (g->state == G_COMPLETING ||
                 (g->state == G_STABLE && strcmp(m->id, g->leader)))) {
        answer_join(c, g, m, q);        /* nothing changed: the current generation */
        return RN_KH_LATER;
    }
    char why[320];
    snprintf(why, sizeof why, "member %s joined again%s", m->id,
             same ? "" : " with other protocol metadata");
    m->join_req = q;
    prepare(c, g, why);
    try_complete(c, g);
    return RN_KH_LATER;
}

/* Run an entry point's body with q as c->current (invariant 2). */
#define ENTER(c, q)                                  \
    rn_kreq_t *saved_ = (c)->current;                \
    int saved_done_ = (c)->current_done;             \
    (c)->current = (q);                              \
    (c)->current_done = 0
#define LEAVE(c, r)                                                  \
    do {                                                             \
        if ((c)->current_done) (r) = RN_KH_DONE;                     \
        (c)->current = saved_;                                       \
        (c)->current_done = saved_done_;                             \
    } while (0)

int rn_kcoord_join(rn_kcoord_t *c, rn_kreq_t *q, const rn_kjoin_t *a)
{
    if (!c) return join_err(q, RN_KERR_COORDINATOR_NOT_AVAILABLE, "");
    kgroup_t *g = NULL;
    ENTER(c, q);
    int r = join(c, q, a, &g);
    LEAVE(c, r);
    settle(c, g);
    flush(c);
    return r;
}

/* ---- SyncGroup ------------------------------------------------------------------------ */

static int sync_err(rn_kreq_t *q, int16_t err)
{
    rn_kgroup_write_sync(q, err, NULL, 0);
    return RN_KH_DONE;
}

static int sync_group(rn_kcoord_t *c, rn_kreq_t *q, const char *group, int32_t generation,
                      rn_kstr_t member_id, const rn_kassign_t *v, int32_t n)
{
    kgroup_t *g = group_find(c, group);
    kmember_t *m = g ? member_find(g, member_id) : NULL;
    if (!m) return sync_err(q, RN_KERR_UNKNOWN_MEMBER_ID);
    if (generation != g->generation) return sync_err(q, RN_KERR_ILLEGAL_GENERATION);
    m->deadline = now_ms() + m->session_ms;
    switch (g->state) {
    case G_PREPARING: return sync_err(q, RN_KERR_REBALANCE_IN_PROGRESS);
    case G_STABLE:
        rn_kgroup_write_sync(q, RN_KERR_NONE, m->assign, m->assign_len);
        return RN_KH_DONE;
    case G_COMPLETING: break;
    default: return sync_err(q, RN_KERR_UNKNOWN_MEMBER_ID);
    }
    answer_sync_err(c, m, RN_KERR_REBALANCE_IN_PROGRESS);     /* an earlier sync */
    m->sync_req = q;
    if (strcmp(m->id, g->leader)) return RN_KH_LATER;
    /* The leader brought the assignments. */
    for (kmember_t *o = g->members; o; o = o->next) {
        set_assign(c, o, NULL, 0);
        for (int32_t i = 0; i < n; i++)
            if (kstr_is(v[i].member_id, o->id) && v[i].assignment.len > 0) {
                set_assign(c, o, (const uint8_t *)v[i].assignment.p, v[i].assignment.len);
                break;
            }
    }
    g->state = G_STABLE;
    rn_slog(RN_SLOG_INFO, "kafka: group '%s' generation %d is stable", g->name, g->generation);
    for (kmember_t *o = g->members; o; o = o->next) {
        if (!o->sync_req) continue;
        rn_kgroup_write_sync(o->sync_req, RN_KERR_NONE, o->assign, o->assign_len);
        finish(c, o->sync_req);
        o->sync_req = NULL;
    }
    return RN_KH_LATER;
}

int rn_kcoord_sync(rn_kcoord_t *c, rn_kreq_t *q, const char *group, int32_t generation,
                   rn_kstr_t member_id, const rn_kassign_t *v, int32_t n)
{
    if (!c) return sync_err(q, RN_KERR_COORDINATOR_NOT_AVAILABLE);
    ENTER(c, q);
    int r = sync_group(c, q, group, generation, member_id, v, n);
    LEAVE(c, r);
    flush(c);
    return r;
}

/* ---- Heartbeat, LeaveGroup, commits ------------------------------------------------------ */

int16_t rn_kcoord_heartbeat(rn_kcoord_t *c, const char *group, int32_t generation,
                            rn_kstr_t member_id)
{
    if (!c) return RN_KERR_COORDINATOR_NOT_AVAILABLE;
    kgroup_t *g = group_find(c, group);
    kmember_t *m = g ? member_find(g, member_id) : NULL;
    if (!m) return RN_KERR_UNKNOWN_MEMBER_ID;
    if (generation != g->generation) return RN_KERR_ILLEGAL_GENERATION;
    m->deadline = now_ms() + m->session_ms;
    return g->state == G_PREPARING ? RN_KERR_REBALANCE_IN_PROGRESS : RN_KERR_NONE;
}

int16_t rn_kcoord_leave(rn_kcoord_t *c, const char *group, rn_kstr_t member_id,
                        rn_kstr_t instance_id)
{
    if (!c) return RN_KERR_COORDINATOR_NOT_AVAILABLE;
    kgroup_t *g = group_find(c, group);
    if (!g) return RN_KERR_UNKNOWN_MEMBER_ID;
    kmember_t *m = NULL;
    if (member_id.len > 0) {
        m = member_find(g, member_id);
        if (!m) {
            /* A pending member (answered MEMBER_ID_REQUIRED) may leave too. */
            for (kpending_t **pp = &g->pending; *pp; pp = &(*pp)->next)
                if (kstr_is(member_id, (*pp)->id)) {
                    kpending_t *p = *pp;
                    *pp = p->next;
                    free(p->id);
                    free(p);
                    g->npending--;
                    changed(c, g, "a pending member left");
                    settle(c, g);
                    flush(c);
                    return RN_KERR_NONE;
                }
        }
    } else if (instance_id.len > 0) {
        for (kmember_t *o = g->members; o && !m; o = o->next)
            if (kstr_is(instance_id, o->instance)) m = o;
    }
    if (!m) return RN_KERR_UNKNOWN_MEMBER_ID;
    char why[320];
    snprintf(why, sizeof why, "member %s left", m->id);
    member_remove(c, g, m, "it left the group (LeaveGroup)");
    changed(c, g, why);
    settle(c, g);
    flush(c);
    return RN_KERR_NONE;
}

int16_t rn_kcoord_commit_check(rn_kcoord_t *c, const char *group, int32_t generation,
                               rn_kstr_t member_id)
{
    kgroup_t *g = c ? group_find(c, group) : NULL;
    if (!g || g->nmembers == 0)
        return generation < 0 ? RN_KERR_NONE : RN_KERR_ILLEGAL_GENERATION;
    if (g->state == G_COMPLETING) return RN_KERR_REBALANCE_IN_PROGRESS;
    kmember_t *m = member_find(g, member_id);
    if (!m) return RN_KERR_UNKNOWN_MEMBER_ID;
    if (generation != g->generation) return RN_KERR_ILLEGAL_GENERATION;
    m->deadline = now_ms() + m->session_ms;
    return RN_KERR_NONE;
}

/* ---- timeouts --------------------------------------------------------------------------- */

static void tick_group(rn_kcoord_t *c, kgroup_t *g, int64_t now)
{
    int gone = 0;
    char why[320] = "";
    for (kmember_t *m = g->members, *next; m; m = next) {
        next = m->next;
        if (m->join_req || m->sync_req || now < m->deadline) continue;
        char what[96];
        snprintf(what, sizeof what, "no heartbeat within its session timeout (%d ms)",
                 m->session_ms);
        snprintf(why, sizeof why, "member %s timed out", m->id);
        member_remove(c, g, m, what);
        gone++;
    }
    for (kpending_t **pp = &g->pending; *pp;) {
        kpending_t *p = *pp;
        if (now < p->deadline) {
            pp = &p->next;
            continue;
        }
        *pp = p->next;
        free(p->id);
        free(p);
        g->npending--;
        gone++;
        if (!why[0]) snprintf(why, sizeof why, "a new member did not come back");
    }
    if (gone) changed(c, g, why);
    if (g->state == G_PREPARING && now >= g->deadline) {
        complete_join(c, g);
    } else if (g->state == G_COMPLETING && now >= g->deadline) {
        for (kmember_t *m = g->members, *next; m; m = next) {
            next = m->next;
            if (!m->sync_req) member_remove(c, g, m, "no SyncGroup within the rebalance timeout");
        }
        changed(c, g, "members did not sync");
    }
}

void rn_kgroup_tick(rn_kctx_t *ctx, int64_t now_ms_)
{
    rn_kcoord_t *c = ctx->coord;
    if (!c) return;
    for (kgroup_t *g = c->groups, *next; g; g = next) {
        next = g->next;
        tick_group(c, g, now_ms_);
        settle(c, g);
    }
    flush(c);
}

/* ---- reading ------------------------------------------------------------------------------ */

static void info_of(const kgroup_t *g, rn_kgroup_info_t *gi)
{
    gi->name = g->name;
    gi->state = state_names[g->state];
    gi->protocol_type = g->protocol_type ? g->protocol_type : "";
    gi->protocol = g->state == G_STABLE && g->protocol ? g->protocol : "";
    gi->members = g->nmembers;
}

int rn_kcoord_group_at(rn_kcoord_t *c, int i, rn_kgroup_info_t *gi)
{
    if (!c) return -1;
    for (kgroup_t *g = c->groups; g; g = g->next) {
        if (g->nmembers == 0) continue;
        if (i-- == 0) {
            info_of(g, gi);
            return 0;
        }
    }
    return -1;
}

int rn_kcoord_group_get(rn_kcoord_t *c, const char *name, rn_kgroup_info_t *gi)
{
    kgroup_t *g = c ? group_find(c, name) : NULL;
    if (!g || g->nmembers == 0) return -1;
    info_of(g, gi);
    return 0;
}

int rn_kcoord_member_at(rn_kcoord_t *c, const char *name, int i, rn_kmember_info_t *mi)
{
    kgroup_t *g = c ? group_find(c, name) : NULL;
    if (!g) return -1;
    for (kmember_t *m = g->members; m; m = m->next) {
        if (i-- > 0) continue;
        memset(mi, 0, sizeof *mi);
        mi->id = m->id;
        mi->instance = m->instance;
        mi->client_id = m->client_id;
        mi->host = m->host;
        if (g->state == G_STABLE) {
            const kproto_t *p = g->protocol ? member_proto(m, g->protocol) : NULL;
            mi->meta = p ? p->meta : (const uint8_t *)"";
            mi->meta_len = p ? p->len : 0;
            mi->assign = m->assign ? m->assign : (const uint8_t *)"";
            mi->assign_len = m->assign_len;
        }
        return 0;
    }
    return -1;
}

/* ---- lifecycle ------------------------------------------------------------------------------ */

int rn_kcoord_open(rn_kctx_t *ctx, rn_kcoord_t **out, char *errmsg)
{
    *out = NULL;
    rn_kcoord_t *c = calloc(1, sizeof *c);
    if (!c) return rn_errf(errmsg, -ENOMEM, "out of memory");
    c->ctx = ctx;
    c->done_tail = &c->done;
    pthread_mutex_init(&c->pmu, NULL);
    /* Member ids differ across restarts: a nonce from the kernel, else the clock. */
    if (getrandom(&c->nonce, sizeof c->nonce, GRND_NONBLOCK) != (ssize_t)sizeof c->nonce) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        c->nonce = (uint64_t)ts.tv_sec * 1000000007ull ^ (uint64_t)ts.tv_nsec;
    }
    if (ctx->hd) rn_hd_set_group_guard(ctx->hd, reset_guard, c);
    *out = c;
    return 0;
}

void rn_kcoord_close(rn_kcoord_t *c)
{
    if (!c) return;
    if (c->ctx->hd) rn_hd_set_group_guard(c->ctx->hd, NULL, NULL);
    /* Held requests are answered (invariant 2) before the groups go. */
    for (kgroup_t *g = c->groups; g; g = g->next)
        for (kmember_t *m = g->members; m; m = m->next) {
            answer_join_err(c, m, RN_KERR_COORDINATOR_NOT_AVAILABLE);
            answer_sync_err(c, m, RN_KERR_COORDINATOR_NOT_AVAILABLE);
        }
    while (c->groups) {
        kgroup_t *g = c->groups;
        c->groups = g->next;
        group_free(c, g);
    }
    c->ctx->coord = NULL;        /* handlers run by the completions see no coordinator */
    flush(c);
    while (c->pub) {
        kpub_t *p = c->pub;
        c->pub = p->next;
        free(p->name);
        free(p->members);
        free(p);
    }
    pthread_mutex_destroy(&c->pmu);
    free(c);
}
