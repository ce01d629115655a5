/*
 * acl.h — access control lists: who (a principal) may do what (an
 * operation) to which resource (a topic, a consumer group, a pipeline, or
 * the cluster), evaluated per request from an in-memory snapshot.
 *
 * An entry allows; nothing denies explicitly:
 *   principal  a user name (server/auth.h: a token's user or a client
 *              certificate's CN), "*" for every principal, "anonymous" for
 *              calls without one (rn_acl_principal maps "" to it)
 *   resource   topic | group | pipeline NAME, literal or prefixed (Kafka's
 *              LITERAL / PREFIXED; a literal "*" names every resource of the
 *              type), or cluster (no name)
 *   operation  produce | consume | describe | create | alter | delete |
 *              query | pipeline | all; describe is implied by every other
 *              operation on the same resource (as Kafka's DESCRIBE by READ,
 *              WRITE, ALTER, DELETE)
 *
 * Decision for (principal, resource, name, operation):
 *   1. a super user (runneld --super-user) is allowed everything;
 *   2. with no entry at all, every principal is allowed (the broker is as
 *      open as before ACLs existed), except in RN_ACL_STRICT checks (the
 *      ACL RPCs themselves), which need rule 1 or 3 even then;
 *   3. otherwise allowed iff an entry matches the principal (itself or "*"),
 *      the resource type, the name (equal, "*", or a prefix entry's prefix)
 *      and the operation (itself, "all", or any for describe).
 *
 * Invariants:
 *  1. The entries a check sees are one immutable snapshot: rn_acl_set and
 *     rn_acl_load build a new one off to the side and swap the pointer under
 *     a mutex held for the swap only; a check holds the mutex only to take a
 *     reference. No check touches SQLite or any I/O.
 *  2. A snapshot is freed when its last reader let go of it.
 *  3. The generation (rn_acl_generation) grows with every swap, so a
 *     long-running reader (a pipeline) can tell that it must check again.
 *  4. Bounded: at most RN_ACL_MAX_ENTRIES entries and RN_ACL_MAX_SUPERS super
 *     users; names and principals within their stored sizes.
 *
 * Threading: every function may be called from any thread at once.
 */
#ifndef RN_ACL_H
#define RN_ACL_H

#include <stddef.h>
#include <stdint.h>

#include "logical-queues/meta.h"

#define RN_ACL_MAX_ENTRIES 10000
#define RN_ACL_MAX_SUPERS  64
#define RN_ACL_ANONYMOUS   "anonymous"

typedef enum rn_acl_res {
    RN_ACL_TOPIC, RN_ACL_GROUP, RN_ACL_CLUSTER, RN_ACL_PIPELINE, RN_ACL_NRES
} rn_acl_res_t;

typedef enum rn_acl_op {
    RN_ACL_PRODUCE, RN_ACL_CONSUME, RN_ACL_DESCRIBE, RN_ACL_CREATE, RN_ACL_ALTER,
    RN_ACL_DELETE, RN_ACL_QUERY, RN_ACL_PIPELINE_OP, RN_ACL_ALL, RN_ACL_NOPS
} rn_acl_op_t;

typedef struct rn_acl_entry {
    char         principal[RN_META_ACL_PRINCIPAL_MAX + 1];
    rn_acl_res_t res;
    int          prefix;                    /* PREFIXED: name is a prefix */
    char         name[RN_META_NAME_MAX + 1];   /* "" for the cluster */
    rn_acl_op_t  op;
} rn_acl_entry_t;

const char *rn_acl_res_name(rn_acl_res_t r);     /* "topic", ... */
const char *rn_acl_op_name(rn_acl_op_t o);       /* "produce", ... */
/* The principal a check uses: p, or "anonymous" for "" (borrowed). */
const char *rn_acl_principal(const char *p);

/* An entry from its words (the command line, an RPC): RN_EINVAL with
 * errmsg naming the bad word and the valid values. name is ignored (must be
 * empty or absent) for the cluster. */
int  rn_acl_entry_make(const char *principal, const char *res, const char *name, int prefix,
                       const char *op, rn_acl_entry_t *out, char *errmsg);
/* To and from the metadata store's text form (RN_ECORRUPT for a stored
 * entry that does not parse). */
void rn_acl_entry_to_meta(const rn_acl_entry_t *e, rn_meta_acl_t *out);
int  rn_acl_entry_from_meta(const rn_meta_acl_t *m, rn_acl_entry_t *out, char *errmsg);
/* "alice topic prefixed app. produce" style one-line text for lists. */
void rn_acl_entry_format(const rn_acl_entry_t *e, char *out, size_t size);

typedef struct rn_acl rn_acl_t;

/* An ACL with no entry (everything allowed) and these super users (copied). */
int  rn_acl_create(const char *const *supers, size_t nsupers, rn_acl_t **out, char *errmsg);
void rn_acl_destroy(rn_acl_t *a);                 /* NULL is a no-op */

/* Replace the entries with a copy of v (invariant 1). */
int  rn_acl_set(rn_acl_t *a, const rn_acl_entry_t *v, size_t n, char *errmsg);
/* Replace the entries with those stored in m (the caller serialises m). */
int  rn_acl_load(rn_acl_t *a, rn_meta_t *m, char *errmsg);

uint64_t rn_acl_generation(rn_acl_t *a);
/* Entries in the current snapshot. */
size_t   rn_acl_count(rn_acl_t *a);
int      rn_acl_is_super(rn_acl_t *a, const char *principal);

#define RN_ACL_STRICT 1       /* rule 2 does not apply */

/* 1 when allowed, else 0 (a NULL a allows everything). */
int  rn_acl_allowed(rn_acl_t *a, const char *principal, rn_acl_res_t res, const char *name,
                    rn_acl_op_t op, int flags);
/* 0 when allowed; else -EPERM with msg (size bytes) naming the principal,
 * the operation, the resource and the `runnel acl add` that would allow it. */
int  rn_acl_check(rn_acl_t *a, const char *principal, rn_acl_res_t res, const char *name,
                  rn_acl_op_t op, int flags, char *msg, size_t size);
/* 1 when the principal may do op on at least one resource of type res
 * (InitProducer: produce to some topic). */
int  rn_acl_allowed_any(rn_acl_t *a, const char *principal, rn_acl_res_t res, rn_acl_op_t op);

#endif
