/*
 * pipelines.c — runneld's pipeline runner (see pipelines.h).
 *
 * States of a runner thread: STARTING (rn_etl_open) -> RUNNING (stepping;
 * sleeping 20 ms when caught up) -> STOPPED (asked to stop, the pipeline
 * paused or dropped, or an error) -> joined by rn_pl_destroy.
 *
 * Invariants:
 *  1. A thread that stops cleanly takes a final checkpoint; one whose step
 *     failed does not (the failed batch is half done: its last checkpoint
 *     stands, so a restart loses nothing), and logs why. A pipeline resumed
 *     in this process after a failure (rn_pl_start) reopens through
 *     rn_etl_open, which syncs the sink's stores before reading their ends
 *     and replays the failed run's order journal: appends the failed run
 *     never waited for (unpublished under group commit) are counted, not
 *     written again.
 *  2. The stop flag is read before open and by rn_etl_step (rn_etl_stop), so
 *     a stop at any moment ends the thread within one step.
 *  3. Pipelines share the broker's data directory handle (thread-safe); each
 *     pipeline's sink and dead-letter topics have no other writer.
 *  4. Confinement: with a sink root (runneld --sink-dir) every file sink,
 *     whoever created it (a request, the --pipelines file, an embedded
 *     `runnel pipeline create`), is opened beneath the root (relative paths
 *     are relative to it). CreatePipeline refuses with PERMISSION_DENIED,
 *     storing nothing: a 'stdout' sink always (it would write into the
 *     broker's log), a file sink when there is no root or its path leads
 *     outside it.
 *  5. Creator's rights (logical-queues/acl.h): CreatePipeline stores its
 *     caller as the creator ("anonymous" without a principal) after
 *     checking, before anything is stored, that it may create the pipeline
 *     (create on pipeline NAME), consume its source (and the topic its query
 *     joins: rn_etl_join_source), produce to its sink and
 *     dead-letter topics, and, for a file sink, run pipelines on the cluster
 *     (op pipeline). A runner re-checks the same before its first step and
 *     whenever the ACLs changed (their generation moved): a creator that
 *     lost a right stops the pipeline after a final checkpoint, its state
 *     "failed: ..." naming the right. Pipelines without a creator (embedded,
 *     or the --pipelines file: the operator's) are not checked.
 */
#include "server/pipelines.h"

#include "common/error.h"
#include "common/root.h"
#include "common/sys.h"
#include "etl/etl.h"
#include "logical-queues/acl.h"
#include "server/authz.h"
#include "server/log.h"
#include "streamsql/sql.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RUNNER_IDLE_MS 20

typedef struct runner {
    struct runner  *next;
    rn_pl_t        *pl;
    char            name[256];
    pthread_t       tid;
    atomic_int      stop;
    atomic_int      done;       /* the thread has ended (join it) */
    pthread_mutex_t mu;         /* guards p and failed */
    rn_etl_t       *p;
    char            failed[RN_ERRMSG_SIZE];   /* "" unless it stopped on an error */
} runner_t;

struct rn_pl {
    rn_datadir_t   *d;
    const rn_root_t *sink_root;  /* file sinks open beneath it (invariant 4), or NULL */
    pthread_mutex_t mu;         /* the runner list (RPC threads start and stop) */
    runner_t       *runners;
    rn_acl_t       *acl;        /* invariant 5, or NULL */
};

void rn_pl_set_acl(rn_pl_t *pl, rn_acl_t *acl) { pl->acl = acl; }

/* Invariant 5: may principal run a pipeline reading source into def's
 * sinks? 0, or -EPERM with msg naming the missing right. */
static int creator_rights(rn_acl_t *acl, const char *principal, const char *source,
                          const rn_etl_def_t *def, char *msg, size_t size)
{
    if (rn_acl_check(acl, principal, RN_ACL_TOPIC, source, RN_ACL_CONSUME, 0, msg, size) != 0)
        return -EPERM;
    if (def->sink_kind == RN_ETL_SINK_TOPIC &&
        rn_acl_check(acl, principal, RN_ACL_TOPIC, def->sink, RN_ACL_PRODUCE, 0, msg, size) != 0)
        return -EPERM;
    if (def->sink_kind != RN_ETL_SINK_TOPIC &&
        rn_acl_check(acl, principal, RN_ACL_CLUSTER, "", RN_ACL_PIPELINE_OP, 0, msg, size) != 0)
        return -EPERM;
    if (rn_acl_check(acl, principal, RN_ACL_TOPIC, def->dead_letter, RN_ACL_PRODUCE, 0, msg,
                     size) != 0)
        return -EPERM;
    return 0;
}

/* A runner's check (invariant 5): "" when its creator may go on. */
static void runner_rights(runner_t *r, rn_etl_t *p, const char *creator, char *why, size_t size)
{
    char msg[RN_ERRMSG_SIZE];
    why[0] = 0;
    if (!creator[0] || !r->pl->acl) return;
    const char *js = rn_etl_join_source(p);    /* read too: the same right */
    if (creator_rights(r->pl->acl, creator, rn_etl_source(p), rn_etl_def(p), msg,
                       sizeof msg) != 0 ||
        (js && rn_acl_check(r->pl->acl, creator, RN_ACL_TOPIC, js, RN_ACL_CONSUME, 0, msg,
                            sizeof msg) != 0))
        snprintf(why, size, "stopped: its creator lost a right it needs: %.200s", msg);
}

int rn_pl_create(rn_datadir_t *d, const rn_root_t *sink_root, rn_pl_t **out, char *errmsg)
{
    rn_pl_t *pl = calloc(1, sizeof *pl);
    if (!pl) return rn_errf(errmsg, -ENOMEM, "out of memory");
    pl->d = d;
    pl->sink_root = sink_root;
    pthread_mutex_init(&pl->mu, NULL);
    *out = pl;
    return 0;
}

static void *run_thread(void *arg)
{
    runner_t *r = arg;
    char err[RN_ERRMSG_SIZE];
    rn_etl_t *p = NULL;
    if (atomic_load(&r->stop)) { atomic_store(&r->done, 1); return NULL; }
    if (rn_etl_open_in(r->pl->d, r->name, r->pl->sink_root, &p, err) != 0) {
        rn_slog(RN_SLOG_ERROR, "pipeline %s: %s", r->name, err);
        pthread_mutex_lock(&r->mu);
        snprintf(r->failed, sizeof r->failed, "%s", err);
        pthread_mutex_unlock(&r->mu);
        atomic_store(&r->done, 1);
        return NULL;
    }
    pthread_mutex_lock(&r->mu);
    r->p = p;
    if (atomic_load(&r->stop)) rn_etl_stop(p);
    pthread_mutex_unlock(&r->mu);
    char creator[RN_META_ACL_PRINCIPAL_MAX + 1] = "";
    rn_meta_pipeline_t *mp = malloc(sizeof *mp);
    if (mp) {
        rn_meta_t *m = rn_datadir_meta_lock(r->pl->d);
        if (rn_meta_pipeline_get(m, r->name, mp, err) == 0)
            snprintf(creator, sizeof creator, "%s", mp->creator);
        rn_datadir_meta_unlock(r->pl->d);
        free(mp);
    }
    uint64_t gen = 0;           /* the ACL generation last checked; 0 = not yet */
    rn_slog(RN_SLOG_INFO, "pipeline %s: running%s%s", r->name, creator[0] ? " as " : "",
            creator);
    rn_etl_state_t st = RN_ETL_MORE;
    int failed = 0;
    while (st != RN_ETL_STOPPED) {
        uint64_t now = rn_acl_generation(r->pl->acl);
        if (now != gen) {                               /* invariant 5 */
            gen = now;
            runner_rights(r, p, creator, err, sizeof err);
            if (err[0]) {
                rn_slog(RN_SLOG_ERROR, "pipeline %s %s", r->name, err);
                pthread_mutex_lock(&r->mu);
                snprintf(r->failed, sizeof r->failed, "%s", err);
                pthread_mutex_unlock(&r->mu);
                break;                                  /* a final checkpoint below */
            }
        }
        if (rn_etl_step(p, &st, err) != 0) {
            rn_slog(RN_SLOG_ERROR, "pipeline %s stopped: %s", r->name, err);
            pthread_mutex_lock(&r->mu);
            snprintf(r->failed, sizeof r->failed, "%s", err);
            pthread_mutex_unlock(&r->mu);
            failed = 1;
            break;
        }
        if (st == RN_ETL_IDLE) rn_etl_wait(p, RUNNER_IDLE_MS);
    }
    if (!failed) {
        int rc = rn_etl_checkpoint(p, err);
        if (rc != 0 && rc != RN_ENOTFOUND)
            rn_slog(RN_SLOG_ERROR, "pipeline %s: final checkpoint: %s", r->name, err);
        uint64_t in, out, errors, ck;
        rn_etl_counters(p, &in, &out, &errors, &ck);
        rn_slog(RN_SLOG_INFO, "pipeline %s stopped: %llu records in, %llu out, %llu errors, "
                "%llu checkpoints", r->name, (unsigned long long)in, (unsigned long long)out,
                (unsigned long long)errors, (unsigned long long)ck);
    }
    pthread_mutex_lock(&r->mu);
    r->p = NULL;
    pthread_mutex_unlock(&r->mu);
    rn_etl_close(p);
    atomic_store(&r->done, 1);
    return NULL;
}

/* Stop r's thread (a final checkpoint unless it failed) and join it. */
static void runner_stop(runner_t *r)
{
    atomic_store(&r->stop, 1);
    pthread_mutex_lock(&r->mu);
    if (r->p) rn_etl_stop(r->p);
    pthread_mutex_unlock(&r->mu);
    pthread_join(r->tid, NULL);
    pthread_mutex_destroy(&r->mu);
}

/* With pl->mu held: unlink and return the runner of name, or NULL. */
static runner_t *unlink_runner(rn_pl_t *pl, const char *name)
{
    for (runner_t **pp = &pl->runners; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->name, name) != 0) continue;
        runner_t *r = *pp;
        *pp = r->next;
        return r;
    }
    return NULL;
}

int rn_pl_stop(rn_pl_t *pl, const char *name)
{
    pthread_mutex_lock(&pl->mu);
    runner_t *r = unlink_runner(pl, name);
    pthread_mutex_unlock(&pl->mu);
    if (!r) return 0;
    runner_stop(r);
    free(r);
    return 1;
}

int rn_pl_start(rn_pl_t *pl, const char *name, char *errmsg)
{
    pthread_mutex_lock(&pl->mu);
    runner_t *old = unlink_runner(pl, name);
    if (old && !atomic_load(&old->done)) {      /* running: keep it */
        old->next = pl->runners;
        pl->runners = old;
        pthread_mutex_unlock(&pl->mu);
        return 0;
    }
    pthread_mutex_unlock(&pl->mu);
    if (old) { runner_stop(old); free(old); }   /* ended: joined, replaced */
    runner_t *r = calloc(1, sizeof *r);
    if (!r) return rn_errf(errmsg, -ENOMEM, "out of memory");
    r->pl = pl;
    snprintf(r->name, sizeof r->name, "%s", name);
    pthread_mutex_init(&r->mu, NULL);
    int e = pthread_create(&r->tid, NULL, run_thread, r);
    if (e != 0) {
        pthread_mutex_destroy(&r->mu);
        free(r);
        return rn_errf(errmsg, -e, "pipeline %s: cannot start a thread", name);
    }
    pthread_mutex_lock(&pl->mu);
    r->next = pl->runners;
    pl->runners = r;
    pthread_mutex_unlock(&pl->mu);
    return 0;
}

void rn_pl_state(rn_pl_t *pl, const char *name, int paused, char *out, size_t size)
{
    snprintf(out, size, "%s", paused ? "paused" : "stopped");
    pthread_mutex_lock(&pl->mu);
    for (runner_t *r = pl->runners; r; r = r->next) {
        if (strcmp(r->name, name) != 0) continue;
        pthread_mutex_lock(&r->mu);
        if (r->failed[0]) snprintf(out, size, "failed: %s", r->failed);
        else if (!atomic_load(&r->done)) snprintf(out, size, "running");
        pthread_mutex_unlock(&r->mu);
    }
    pthread_mutex_unlock(&pl->mu);
}

int rn_pl_start_all(rn_pl_t *pl, char *errmsg)
{
    rn_etl_status_t *s = NULL;
    size_t n = 0;
    int rc = rn_etl_status(pl->d, NULL, &s, &n, errmsg);
    if (rc != 0) return rc;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (s[i].paused) rn_slog(RN_SLOG_INFO, "pipeline %s is paused; not started", s[i].name);
        else rc = rn_pl_start(pl, s[i].name, errmsg);
    }
    free(s);
    return rc;
}

void rn_pl_destroy(rn_pl_t *pl)
{
    if (!pl) return;
    for (runner_t *r = pl->runners; r; r = r->next) {   /* ask all first, then join */
        atomic_store(&r->stop, 1);
        pthread_mutex_lock(&r->mu);
        if (r->p) rn_etl_stop(r->p);
        pthread_mutex_unlock(&r->mu);
    }
    for (runner_t *r = pl->runners, *nx; r; r = nx) {
        nx = r->next;
        runner_stop(r);
        free(r);
    }
    pthread_mutex_destroy(&pl->mu);
    free(pl);
}

/* ---- the pipeline RPCs ------------------------------------------------------------ */

static char *arena_str(rn_arena_t *a, const char *s)
{
    size_t n = strlen(s);
    char *c = rn_arena_alloc(a, n + 1);
    if (c) memcpy(c, s, n + 1);
    return c;
}

/* One PipelineStatus from a status (and the stored SQL). */
static int status_msg(rn_hd_t *h, const rn_etl_status_t *s, rn_arena_t *a,
                      Runnel__V1__PipelineStatus **out, rn_status_t *st)
{
    char err[RN_ERRMSG_SIZE], state[RN_ERRMSG_SIZE + 16];
    rn_meta_pipeline_t *mp = malloc(sizeof *mp);
    if (!mp) return rn_hd_fail(st, -ENOMEM, "out of memory");
    rn_meta_t *m = rn_datadir_meta_lock(rn_hd_datadir(h));
    int rc = rn_meta_pipeline_get(m, s->name, mp, err);
    rn_datadir_meta_unlock(rn_hd_datadir(h));
    if (rc != 0) { free(mp); return rn_hd_fail(st, rc, err); }
    if (rn_hd_pipelines(h)) rn_pl_state(rn_hd_pipelines(h), s->name, s->paused, state, sizeof state);
    else snprintf(state, sizeof state, "%s", s->paused ? "paused" : "stopped");
    Runnel__V1__PipelineStatus *p = rn_arena_alloc(a, sizeof *p);
    Runnel__V1__QueueLag **lag = rn_arena_alloc(a, (s->nq ? s->nq : 1) * sizeof *lag);
    if (p) {
        runnel__v1__pipeline_status__init(p);
        p->name = arena_str(a, s->name);
        p->sql = arena_str(a, mp->sql);
        p->state = arena_str(a, state);
    }
    free(mp);
    if (!p || !lag || !p->name || !p->sql || !p->state)
        return rn_hd_fail(st, -ENOMEM, "out of memory");
    p->records_in = s->in;
    p->records_out = s->out;
    p->late = s->late;
    p->errors = s->errors;
    p->watermark_ms = s->watermark;
    p->last_checkpoint_ms = s->checkpoint_ms;
    for (uint32_t i = 0; i < s->nq; i++) {
        lag[i] = rn_arena_alloc(a, sizeof **lag);
        if (!lag[i]) return rn_hd_fail(st, -ENOMEM, "out of memory");
        runnel__v1__queue_lag__init(lag[i]);
        lag[i]->topic = arena_str(a, s->source);
        if (!lag[i]->topic) return rn_hd_fail(st, -ENOMEM, "out of memory");
        lag[i]->queue = i;
        lag[i]->lag = s->lag[i];
    }
    p->lag = lag;
    p->n_lag = s->nq;
    *out = p;
    return 0;
}

/* The status of one pipeline as the response. */
static int answer_one(rn_hd_t *h, const char *name, rn_arena_t *a, ProtobufCMessage **resp,
                      rn_status_t *st)
{
    char err[RN_ERRMSG_SIZE];
    rn_etl_status_t *s = NULL;
    size_t n = 0;
    int rc = rn_etl_status(rn_hd_datadir(h), name, &s, &n, err);
    if (rc != 0) return rn_hd_fail(st, rc, err);
    Runnel__V1__PipelineStatus *p = NULL;
    rc = status_msg(h, &s[0], a, &p, st);
    free(s);
    if (rc != 0) return rc;
    *resp = &p->base;
    return 0;
}

/* Start (after create / resume) unless the broker runs no pipelines. */
static int start(rn_hd_t *h, const char *name, rn_status_t *st)
{
    char err[RN_ERRMSG_SIZE];
    if (!rn_hd_pipelines(h)) return 0;
    int rc = rn_pl_start(rn_hd_pipelines(h), name, err);
    return rc == 0 ? 0 : rn_hd_fail(st, rc, err);
}

/* Invariant 4: may a request create a pipeline writing to def's sink? */
static int sink_allowed(rn_hd_t *h, const rn_etl_def_t *def, rn_status_t *st)
{
    char err[RN_ERRMSG_SIZE] = "";
    const rn_root_t *root = rn_hd_opts(h)->sink_root;
    if (def->sink_kind == RN_ETL_SINK_STDOUT)
        return rn_status_set(st, RN_ST_PERMISSION_DENIED, "INSERT INTO 'stdout' is not available "
                             "through the broker (it would write into runneld's log); use a "
                             "topic, or 'file:PATH' with runneld --sink-dir");
    if (def->sink_kind != RN_ETL_SINK_FILE) return 0;
    if (!root)
        return rn_status_set(st, RN_ST_PERMISSION_DENIED, "INSERT INTO 'file:...': file sinks "
                             "are not created over the network: start runneld with --sink-dir "
                             "DIR to allow files inside DIR");
    int rc = rn_root_check_file(root, def->sink, err);
    if (rc == -EPERM) return rn_status_set(st, RN_ST_PERMISSION_DENIED, "file sink: %s", err);
    if (rc != 0) return rn_status_set(st, RN_ST_INVALID_ARGUMENT, "file sink: %s", err);
    return 0;
}

/* rn_etl_create_as's check: the caller's rights (invariant 5). */
static int create_check(void *arg, const char *source, const rn_etl_def_t *def, char *errmsg)
{
    rn_hd_t *h = ((void **)arg)[0];
    const char *principal = ((void **)arg)[1];
    return creator_rights(rn_hd_opts(h)->acl, principal, source, def, errmsg, RN_ERRMSG_SIZE);
}

int rn_pl_hd_create(rn_hd_t *h, const ProtobufCMessage *m, rn_arena_t *a,
                    ProtobufCMessage **resp, rn_status_t *st)
{
    const Runnel__V1__CreatePipelineRequest *req = (const void *)m;
    char err[RN_ERRMSG_SIZE] = "";
    rn_etl_def_t def;
    int rc = rn_etl_parse(req->sql, strlen(req->sql), &def, err);
    if (rc != 0) return rn_hd_fail(st, rc, err);
    char name[sizeof def.name];
    snprintf(name, sizeof name, "%s", def.name);
    rc = sink_allowed(h, &def, st);
    rn_etl_def_free(&def);
    if (rc != 0) return rc;
    const char *principal = rn_authz_principal(a);
    if (rn_acl_check(rn_hd_opts(h)->acl, principal, RN_ACL_PIPELINE, name, RN_ACL_CREATE, 0,
                     err, sizeof err) != 0)
        return rn_status_set(st, RN_ST_PERMISSION_DENIED, "%s", err);
    void *arg[2] = {h, (void *)principal};
    if ((rc = rn_etl_create_as(rn_hd_datadir(h), req->sql, strlen(req->sql),
                               rn_acl_principal(principal), create_check, arg, err)) != 0)
        return rn_hd_fail(st, rc, err);
    if (start(h, name, st) != 0) return -1;
    return answer_one(h, name, a, resp, st);
}

int rn_pl_hd_list(rn_hd_t *h, const ProtobufCMessage *m, rn_arena_t *a,
                  ProtobufCMessage **resp, rn_status_t *st)
{
    char err[RN_ERRMSG_SIZE] = "";
    rn_etl_status_t *s = NULL;
    size_t n = 0;
    int rc = rn_etl_status(rn_hd_datadir(h), NULL, &s, &n, err);
    if (rc != 0) return rn_hd_fail(st, rc, err);
    Runnel__V1__ListPipelinesResponse *r = rn_arena_alloc(a, sizeof *r);
    Runnel__V1__PipelineStatus **v = rn_arena_alloc(a, (n ? n : 1) * sizeof *v);
    if (!r || !v) { free(s); return rn_hd_fail(st, -ENOMEM, "out of memory"); }
    runnel__v1__list_pipelines_response__init(r);
    for (size_t i = 0; i < n; i++)
        if (status_msg(h, &s[i], a, &v[i], st) != 0) { free(s); return -1; }
    free(s);
    r->pipelines = v;
    r->n_pipelines = n;
    *resp = &r->base;
    return 0;
}

int rn_pl_hd_get(rn_hd_t *h, const ProtobufCMessage *m, rn_arena_t *a,
                 ProtobufCMessage **resp, rn_status_t *st)
{
    const Runnel__V1__PipelineRequest *req = (const void *)m;
    return answer_one(h, req->name, a, resp, st);
}

/* Pause: the flag, then stop the thread (final checkpoint). Resume: the
 * flag, then start it. */
static int set_paused(rn_hd_t *h, const char *name, int paused, rn_arena_t *a,
                      ProtobufCMessage **resp, rn_status_t *st)
{
    char err[RN_ERRMSG_SIZE] = "";
    int rc = rn_etl_set_paused(rn_hd_datadir(h), name, paused, err);
    if (rc != 0) return rn_hd_fail(st, rc, err);
    if (paused && rn_hd_pipelines(h)) rn_pl_stop(rn_hd_pipelines(h), name);
    if (!paused && start(h, name, st) != 0) return -1;
    return answer_one(h, name, a, resp, st);
}

int rn_pl_hd_pause(rn_hd_t *h, const ProtobufCMessage *m, rn_arena_t *a,
                   ProtobufCMessage **resp, rn_status_t *st)
{
    return set_paused(h, ((const Runnel__V1__PipelineRequest *)(const void *)m)->name, 1, a,
                      resp, st);
}

int rn_pl_hd_resume(rn_hd_t *h, const ProtobufCMessage *m, rn_arena_t *a,
                    ProtobufCMessage **resp, rn_status_t *st)
{
    return set_paused(h, ((const Runnel__V1__PipelineRequest *)(const void *)m)->name, 0, a,
                      resp, st);
}

int rn_pl_hd_drop(rn_hd_t *h, const ProtobufCMessage *m, rn_arena_t *a,
                  ProtobufCMessage **resp, rn_status_t *st)
{
    const Runnel__V1__PipelineRequest *req = (const void *)m;
    char err[RN_ERRMSG_SIZE] = "";
    if (rn_hd_pipelines(h)) rn_pl_stop(rn_hd_pipelines(h), req->name);
    int rc = rn_etl_drop(rn_hd_datadir(h), req->name, err);
    if (rc != 0) return rn_hd_fail(st, rc, err);
    Runnel__V1__DropPipelineResponse *r = rn_arena_alloc(a, sizeof *r);
    if (!r) return rn_hd_fail(st, -ENOMEM, "out of memory");
    runnel__v1__drop_pipeline_response__init(r);
    *resp = &r->base;
    return 0;
}
