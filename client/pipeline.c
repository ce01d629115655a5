/*
 * pipeline.c — the client's pipeline calls (runnel.h): embedded they call
 * etl/etl.h on the data directory; remote, runneld's pipeline RPCs.
 *
 * Invariants:
 *  1. One result shape both ways (rn_client_pipeline_t); remote statuses
 *     are converted field by field, lag entries beyond RN_ETL_MAX_QUEUES
 *     dropped, the sink described from the stored SQL.
 *  2. A remote error keeps the broker's message and maps its status to the
 *     core code (rn_client_call), so the CLI prints the same line both ways.
 */
#include "client/client_int.h"

#include "common/error.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int rn_client_pipeline_create(rn_client_t *c, const char *sql, char *errmsg)
{
    if (!c->remote) return rn_etl_create(c->d, sql, strlen(sql), errmsg);
    Runnel__V1__CreatePipelineRequest req = RUNNEL__V1__CREATE_PIPELINE_REQUEST__INIT;
    ProtobufCMessage *resp = NULL;
    req.sql = (char *)sql;
    int rc = rn_client_call(c, RN_RPC_METHOD("CreatePipeline"), &req.base,
                            &runnel__v1__pipeline_status__descriptor, &resp, errmsg);
    rn_client_free_msg(resp);
    return rc;
}

static void from_msg(const Runnel__V1__PipelineStatus *m, rn_client_pipeline_t *o)
{
    memset(o, 0, sizeof *o);
    rn_etl_status_t *s = &o->s;
    snprintf(s->name, sizeof s->name, "%s", m->name);
    snprintf(o->state, sizeof o->state, "%s", m->state);
    s->paused = !strcmp(m->state, "paused");
    s->in = m->records_in;
    s->out = m->records_out;
    s->late = m->late;
    s->errors = m->errors;
    s->watermark = m->watermark_ms;
    s->checkpoint_ms = m->last_checkpoint_ms;
    s->nq = m->n_lag < RN_ETL_MAX_QUEUES ? (uint32_t)m->n_lag : RN_ETL_MAX_QUEUES;
    for (uint32_t i = 0; i < s->nq; i++) s->lag[i] = m->lag[i]->lag;
    if (m->n_lag) snprintf(s->source, sizeof s->source, "%s", m->lag[0]->topic);
    rn_etl_def_t def;
    char err[RN_ERRMSG_SIZE];
    if (rn_etl_parse(m->sql, strlen(m->sql), &def, err) == 0) {
        rn_etl_describe_sink(&def, s->sink, sizeof s->sink);
        rn_etl_def_free(&def);
    }
}

int rn_client_pipeline_status(rn_client_t *c, const char *name, rn_client_pipeline_t **out,
                              size_t *n, char *errmsg)
{
    *out = NULL;
    *n = 0;
    if (!c->remote) {
        rn_etl_status_t *s = NULL;
        size_t ns = 0;
        int rc = rn_etl_status(c->d, name, &s, &ns, errmsg);
        if (rc != 0) return rc;
        rn_client_pipeline_t *v = calloc(ns ? ns : 1, sizeof *v);
        if (!v) { free(s); return rn_errf(errmsg, -ENOMEM, "out of memory"); }
        for (size_t i = 0; i < ns; i++) {
            v[i].s = s[i];
            snprintf(v[i].state, sizeof v[i].state, "%s", s[i].paused ? "paused" : "stopped");
        }
        free(s);
        *out = v;
        *n = ns;
        return 0;
    }
    ProtobufCMessage *resp = NULL;
    int rc;
    if (name) {
        Runnel__V1__PipelineRequest req = RUNNEL__V1__PIPELINE_REQUEST__INIT;
        req.name = (char *)name;
        rc = rn_client_call(c, RN_RPC_METHOD("GetPipeline"), &req.base,
                            &runnel__v1__pipeline_status__descriptor, &resp, errmsg);
        if (rc != 0) return rc;
        rn_client_pipeline_t *v = malloc(sizeof *v);
        if (!v) rc = rn_errf(errmsg, -ENOMEM, "out of memory");
        else { from_msg((const void *)resp, v); *out = v; *n = 1; }
        rn_client_free_msg(resp);
        return rc;
    }
    Runnel__V1__ListPipelinesRequest req = RUNNEL__V1__LIST_PIPELINES_REQUEST__INIT;
    rc = rn_client_call(c, RN_RPC_METHOD("ListPipelines"), &req.base,
                        &runnel__v1__list_pipelines_response__descriptor, &resp, errmsg);
    if (rc != 0) return rc;
    const Runnel__V1__ListPipelinesResponse *l = (const void *)resp;
    rn_client_pipeline_t *v = calloc(l->n_pipelines ? l->n_pipelines : 1, sizeof *v);
    if (!v) {
        rn_client_free_msg(resp);
        return rn_errf(errmsg, -ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < l->n_pipelines; i++) from_msg(l->pipelines[i], &v[i]);
    *out = v;
    *n = l->n_pipelines;
    rn_client_free_msg(resp);
    return 0;
}

/* A PipelineRequest RPC whose answer is dropped. */
static int named(rn_client_t *c, const char *method, const ProtobufCMessageDescriptor *desc,
                 const char *name, char *errmsg)
{
    Runnel__V1__PipelineRequest req = RUNNEL__V1__PIPELINE_REQUEST__INIT;
    ProtobufCMessage *resp = NULL;
    req.name = (char *)name;
    int rc = rn_client_call(c, method, &req.base, desc, &resp, errmsg);
    rn_client_free_msg(resp);
    return rc;
}

int rn_client_pipeline_pause(rn_client_t *c, const char *name, int paused, char *errmsg)
{
    if (!c->remote) return rn_etl_set_paused(c->d, name, paused, errmsg);
    return named(c, paused ? RN_RPC_METHOD("PausePipeline") : RN_RPC_METHOD("ResumePipeline"),
                 &runnel__v1__pipeline_status__descriptor, name, errmsg);
}

int rn_client_pipeline_drop(rn_client_t *c, const char *name, char *errmsg)
{
    if (!c->remote) return rn_etl_drop(c->d, name, errmsg);
    return named(c, RN_RPC_METHOD("DropPipeline"), &runnel__v1__drop_pipeline_response__descriptor,
                 name, errmsg);
}
