/*
 * coord.h — the Kafka group coordinator: consumer groups' membership
 * (JoinGroup, SyncGroup, Heartbeat, LeaveGroup) with generations, member
 * ids, session and rebalance timeouts, and the member metadata and
 * assignments the clients' assignors exchange through it.
 *
 * The coordinator holds membership only; committed offsets are runnel's
 * group offsets (logical-queues/group.h), written by kafka/api_group.c.
 * Membership lives in memory and is lost when runneld stops: clients then
 * get UNKNOWN_MEMBER_ID and join again, as after a coordinator move in
 * Kafka.
 *
 * Group states, as Kafka's (GroupMetadata): Empty → PreparingRebalance (a
 * member joins or leaves, a session expires) → CompletingRebalance (every
 * member rejoined, or the rebalance timeout passed: the generation moves
 * on, the leader gets the members' metadata) → Stable (the leader's
 * SyncGroup brought the assignments) → PreparingRebalance ... A group with
 * no member left is Dead and freed; a group known only by its committed
 * offsets is described as Empty.
 *
 * Invariants:
 *  1. Every function runs on the front's loop thread (api.h invariant 1):
 *     no lock guards the groups. The one exception is the ResetGroup guard
 *     (server/handlers.h rn_hd_set_group_guard), called on gRPC threads: it
 *     reads only a published copy of each group's member list, under its
 *     own mutex.
 *  2. A JoinGroup or SyncGroup that must wait is held by its member
 *     (RN_KH_LATER) and answered exactly once: when the rebalance
 *     completes, the leader syncs, the member is removed, a new rebalance
 *     starts, or the coordinator closes. Requests are completed only after
 *     the coordinator's state is consistent (a completion may run other
 *     requests' handlers, which re-enter the coordinator).
 *  3. Memory is bounded: at most RN_KCOORD_MAX_GROUPS groups,
 *     RN_KCOORD_MAX_MEMBERS members (joined or pending) per group,
 *     RN_KCOORD_MAX_PROTOCOLS protocols per member and RN_KCOORD_MAX_BYTES
 *     of member metadata and assignments in all.
 *  4. Group ids are valid runnel group names (the topic name rules), so a
 *     group's committed offsets can be runnel's; others are refused with
 *     INVALID_GROUP_ID.
 *  5. Static membership (group_instance_id, JoinGroup v5) is recorded and
 *     reported but not acted on: such members are dynamic members (a
 *     restarted static member joins as a new member; the old one leaves at
 *     its session timeout).
 */
#ifndef RN_KAFKA_COORD_H
#define RN_KAFKA_COORD_H

#include "kafka/api.h"

#define RN_KCOORD_MAX_GROUPS       4096
#define RN_KCOORD_MAX_MEMBERS      1000
#define RN_KCOORD_MAX_PROTOCOLS    32
#define RN_KCOORD_MAX_BYTES        (256u << 20)
#define RN_KCOORD_MIN_SESSION_MS   1000       /* Kafka: group.min.session.timeout.ms */
#define RN_KCOORD_MAX_SESSION_MS   1800000    /* Kafka: group.max.session.timeout.ms */

typedef struct rn_kcoord rn_kcoord_t;

/* Open the coordinator of ctx (and install the ResetGroup guard on
 * ctx->hd). Close answers every held request with COORDINATOR_NOT_AVAILABLE
 * and frees everything; NULL is a no-op. Loop thread. */
int  rn_kcoord_open(rn_kctx_t *ctx, rn_kcoord_t **out, char *errmsg);
void rn_kcoord_close(rn_kcoord_t *c);

/* ---- membership operations (api_group.c parses, these decide) ---------------- */

/* A protocol a joining member supports: borrowed from the request frame. */
typedef struct rn_kproto {
    rn_kstr_t name, meta;
} rn_kproto_t;

typedef struct rn_kjoin {
    const char        *group;          /* valid (invariant 4) */
    rn_kstr_t          member_id;      /* "" for a first join */
    rn_kstr_t          instance_id;    /* null unless v5 static membership */
    rn_kstr_t          protocol_type;
    const rn_kproto_t *protos;
    int32_t            nprotos;
    int32_t            session_ms, rebalance_ms;
    int                require_member_id;   /* v4+: MEMBER_ID_REQUIRED first */
} rn_kjoin_t;

/* JoinGroup: answers q now (RN_KH_DONE) or holds it (RN_KH_LATER) until
 * the rebalance completes; the answer is written by rn_kgroup_write_join. */
int rn_kcoord_join(rn_kcoord_t *c, rn_kreq_t *q, const rn_kjoin_t *a);

/* One assignment of the leader's SyncGroup: borrowed from the frame. */
typedef struct rn_kassign {
    rn_kstr_t member_id, assignment;
} rn_kassign_t;

/* SyncGroup: answered now or held until the leader's sync (as join). */
int rn_kcoord_sync(rn_kcoord_t *c, rn_kreq_t *q, const char *group, int32_t generation,
                   rn_kstr_t member_id, const rn_kassign_t *v, int32_t n);

/* Heartbeat: the error code to answer. */
int16_t rn_kcoord_heartbeat(rn_kcoord_t *c, const char *group, int32_t generation,
                            rn_kstr_t member_id);

/* LeaveGroup of one member (by member id, or by instance id when the
 * member id is empty): the error code for it. */
int16_t rn_kcoord_leave(rn_kcoord_t *c, const char *group, rn_kstr_t member_id,
                        rn_kstr_t instance_id);

/* May (generation, member) commit offsets of group now? RN_KERR_NONE, or
 * the error code of every partition (Kafka's rules: generation -1 commits
 * to a group without members). Refreshes the member's session. */
int16_t rn_kcoord_commit_check(rn_kcoord_t *c, const char *group, int32_t generation,
                               rn_kstr_t member_id);

/* ---- reading groups (DescribeGroups, ListGroups) ------------------------------ */

typedef struct rn_kgroup_info {
    const char *name;
    const char *state;            /* "PreparingRebalance", "CompletingRebalance", "Stable" */
    const char *protocol_type;
    const char *protocol;         /* the chosen protocol; "" unless Stable */
    int32_t     members;
} rn_kgroup_info_t;

typedef struct rn_kmember_info {
    const char    *id, *instance;     /* instance NULL: none */
    const char    *client_id, *host;
    const uint8_t *meta;              /* the chosen protocol's; NULL unless Stable */
    int32_t        meta_len;
    const uint8_t *assign;            /* NULL unless Stable */
    int32_t        assign_len;
} rn_kmember_info_t;

/* Groups with members, in creation order: the i-th (0 <= i), 0 with *gi,
 * or -1 past the last. Views are borrowed until the coordinator is next
 * entered. c NULL has no groups. */
int rn_kcoord_group_at(rn_kcoord_t *c, int i, rn_kgroup_info_t *gi);
/* The group named `name`: 0 with *gi, or -1 when it has no members. */
int rn_kcoord_group_get(rn_kcoord_t *c, const char *name, rn_kgroup_info_t *gi);
/* Its i-th member: 0 with *mi, or -1. */
int rn_kcoord_member_at(rn_kcoord_t *c, const char *name, int i, rn_kmember_info_t *mi);

/* ---- answers, written by api_group.c ------------------------------------------ */

typedef struct rn_kjoin_member {
    const char    *id, *instance;
    const uint8_t *meta;
    int32_t        meta_len;
} rn_kjoin_member_t;

/* Write q's JoinGroup response (members: the leader's list, else n 0). */
void rn_kgroup_write_join(rn_kreq_t *q, int16_t err, int32_t generation, const char *protocol,
                          const char *leader, const char *member_id,
                          const rn_kjoin_member_t *members, int32_t n);
/* Write q's SyncGroup response. */
void rn_kgroup_write_sync(rn_kreq_t *q, int16_t err, const uint8_t *assignment, int32_t len);

#endif
