/*
 * authz.h — which ACL check (logical-queues/acl.h) each gRPC method of
 * runnel.v1.Runnel needs: the one table mapping a method and its request to
 * a resource and an operation, the filters that cut list answers down to
 * what the caller may describe, and the ACL RPCs' handlers.
 *
 * server.c calls rn_authz_call after unpacking a request and before its
 * handler (or its produce, fetch or query path), and rn_authz_filter on a
 * unary answer before packing it. Checks that need what only the handler
 * learns (a pipeline's source and sinks, a query's source) are made there
 * with rn_authz_principal's caller and rn_acl_check.
 */
#ifndef RN_AUTHZ_H
#define RN_AUTHZ_H

#include "logical-queues/acl.h"
#include "server/handlers.h"

/* 1 when method has a row in the table (server.c checks every method at
 * start; a method without one is refused to all but super users). */
int  rn_authz_known(const char *method);
/* 0 when principal may call method with req; else -1 with st
 * PERMISSION_DENIED naming principal, operation, resource and the ACL that
 * would allow it. acl NULL allows everything. */
int  rn_authz_call(rn_acl_t *acl, const char *principal, const char *method,
                   const ProtobufCMessage *req, rn_status_t *st);
/* Drop from a ListTopics, ListGroups or ListPipelines answer what principal
 * may not describe (in place; other answers are left alone). */
void rn_authz_filter(rn_acl_t *acl, const char *principal, const char *method,
                     ProtobufCMessage *resp);

/* The principal of the call a unary handler is running for ("" anonymous),
 * set by server.c in the call's arena; "" outside a call. */
const char *rn_authz_principal(const rn_arena_t *a);

/* AddAcl, RemoveAcl, ListAcls (handlers.h's unary signature): the entry is
 * validated (INVALID_ARGUMENT naming the bad word), stored in meta.db and
 * the broker's snapshot reloaded before the answer, so the next call sees
 * it. */
int rn_authz_hd_add(rn_hd_t *, const ProtobufCMessage *, rn_arena_t *, ProtobufCMessage **,
                    rn_status_t *);
int rn_authz_hd_remove(rn_hd_t *, const ProtobufCMessage *, rn_arena_t *, ProtobufCMessage **,
                       rn_status_t *);
int rn_authz_hd_list(rn_hd_t *, const ProtobufCMessage *, rn_arena_t *, ProtobufCMessage **,
                     rn_status_t *);

/* Reload h's ACL snapshot from meta.db (under the metadata lock). */
int  rn_authz_reload(rn_hd_t *h, char *errmsg);

#endif
