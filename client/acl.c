/*
 * acl.c — the client's access-control-list calls (runnel.h): embedded they
 * change the data directory's meta.db; remote, the broker's AddAcl,
 * RemoveAcl and ListAcls RPCs.
 *
 * Invariants:
 *  1. The entry travels in the metadata store's text form (rn_meta_acl_t)
 *     both ways; the broker, or logical-queues/acl.h embedded, validates it,
 *     so a bad word gets the same message either way.
 *  2. A remote refusal keeps the broker's message (PERMISSION_DENIED: -EPERM).
 */
#include "client/client_int.h"

#include "common/error.h"
#include "logical-queues/acl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Embedded: validate (invariant 1), then add or remove. */
static int local_change(rn_client_t *c, const rn_meta_acl_t *a, int add, char *errmsg)
{
    rn_acl_entry_t e;
    int rc = rn_acl_entry_make(a->principal, a->resource, a->name,
                               !strcmp(a->pattern, "prefixed"), a->operation, &e, errmsg);
    if (rc != 0) return rc;
    rn_meta_acl_t norm;
    rn_acl_entry_to_meta(&e, &norm);
    rn_meta_t *m = rn_datadir_meta_lock(c->d);
    rc = add ? rn_meta_acl_add(m, &norm, errmsg) : rn_meta_acl_remove(m, &norm, errmsg);
    rn_datadir_meta_unlock(c->d);
    return rc;
}

static int remote_change(rn_client_t *c, const rn_meta_acl_t *a, int add, char *errmsg)
{
    Runnel__V1__AclEntry req = RUNNEL__V1__ACL_ENTRY__INIT;
    req.principal = (char *)a->principal;
    req.resource = (char *)a->resource;
    req.pattern = (char *)a->pattern;
    req.name = (char *)a->name;
    req.operation = (char *)a->operation;
    ProtobufCMessage *resp = NULL;
    int rc = rn_client_call(c, add ? RN_RPC_METHOD("AddAcl") : RN_RPC_METHOD("RemoveAcl"),
                            &req.base, &runnel__v1__acl_response__descriptor, &resp, errmsg);
    rn_client_free_msg(resp);
    return rc;
}

int rn_client_acl_add(rn_client_t *c, const rn_meta_acl_t *a, char *errmsg)
{
    return c->remote ? remote_change(c, a, 1, errmsg) : local_change(c, a, 1, errmsg);
}

int rn_client_acl_remove(rn_client_t *c, const rn_meta_acl_t *a, char *errmsg)
{
    return c->remote ? remote_change(c, a, 0, errmsg) : local_change(c, a, 0, errmsg);
}

int rn_client_acl_list(rn_client_t *c, rn_meta_acl_t **out, size_t *n, char *errmsg)
{
    *out = NULL;
    *n = 0;
    if (!c->remote) {
        rn_meta_t *m = rn_datadir_meta_lock(c->d);
        int rc = rn_meta_acl_list(m, out, n, errmsg);
        rn_datadir_meta_unlock(c->d);
        return rc;
    }
    Runnel__V1__ListAclsRequest req = RUNNEL__V1__LIST_ACLS_REQUEST__INIT;
    ProtobufCMessage *resp = NULL;
    int rc = rn_client_call(c, RN_RPC_METHOD("ListAcls"), &req.base,
                            &runnel__v1__list_acls_response__descriptor, &resp, errmsg);
    if (rc != 0) return rc;
    const Runnel__V1__ListAclsResponse *l = (const void *)resp;
    rn_meta_acl_t *v = calloc(l->n_acls ? l->n_acls : 1, sizeof *v);
    if (!v) {
        rn_client_free_msg(resp);
        return rn_errf(errmsg, -ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < l->n_acls; i++) {
        const Runnel__V1__AclEntry *e = l->acls[i];
        snprintf(v[i].principal, sizeof v[i].principal, "%s", e->principal);
        snprintf(v[i].resource, sizeof v[i].resource, "%s", e->resource);
        snprintf(v[i].pattern, sizeof v[i].pattern, "%s", e->pattern);
        snprintf(v[i].name, sizeof v[i].name, "%s", e->name);
        snprintf(v[i].operation, sizeof v[i].operation, "%s", e->operation);
        v[i].created_ms = e->created_ms;
    }
    *out = v;
    *n = l->n_acls;
    rn_client_free_msg(resp);
    return 0;
}
