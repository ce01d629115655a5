/*
 * api.h — the Kafka front's request handlers: what a handler is given, what it
 * answers, the API table (keys and the versions implemented), and Kafka's
 * error codes.
 *
 * A request arrives as an rn_kreq_t with its header parsed and a reader over
 * its body (q->in). The handler writes the response body with q->w (the
 * front writes the size and response header around it) and returns:
 *   RN_KH_DONE   the response is complete;
 *   RN_KH_NONE   no response is sent (Produce with acks 0);
 *   RN_KH_LATER  the handler completes it later on the loop thread with
 *                rn_kreq_done (directly, or through rn_kreq_offload /
 *                rn_kreq_park); the connection reads no further request
 *                until then, as Kafka's brokers do;
 *   RN_KH_LATER_PIPELINED  the same, but later requests of the connection
 *                are handled meanwhile (a produce waiting only for
 *                durability: its effects are already in order);
 *   RN_KH_BAD    the request does not parse or breaks the protocol: the
 *                connection is closed and q->why (or q->in.what) is logged
 *                with the peer. Nothing was changed.
 *
 * Invariants:
 *  1. Every handler runs on the front's loop thread, so the front's state
 *     (ctx, the group coordinator) needs no lock. Blocking work (waiting for
 *     durability) goes to the waiter thread through rn_kreq_offload.
 *  2. Responses leave a connection in request order, whatever order the
 *     requests complete in.
 *  3. A request lives until it is done, even when its connection closed
 *     meanwhile (its response is then dropped), so a handler or the
 *     coordinator may always complete what it holds.
 *  4. ApiVersions advertises exactly rn_kapi_table: a handler exists for
 *     every key and version listed there, and nothing else is answered.
 *  6. Authorization (logical-queues/acl.h, the broker's ACLs) with the
 *     request's principal ("" = anonymous), as Kafka's authorizer rules: a
 *     topic the principal may not describe is TOPIC_AUTHORIZATION_FAILED
 *     when named and absent from Metadata's full list (so its existence is
 *     not told); Produce needs produce, Fetch consume, ListOffsets describe,
 *     CreateTopics create (on the topic or the cluster; auto-creation the
 *     same, else UNKNOWN_TOPIC_OR_PARTITION), DeleteTopics delete; groups
 *     need consume (join, sync, heartbeat, leave, commit) or describe
 *     (FindCoordinator, OffsetFetch, DescribeGroups; ListGroups lists only
 *     those) or fail with GROUP_AUTHORIZATION_FAILED; InitProducerId needs
 *     produce on some topic (CLUSTER_AUTHORIZATION_FAILED). A refusal
 *     changes nothing and is logged at info with the peer and principal.
 *  7. In a cluster (ctx->self != 0) Metadata is answered from the
 *     controller's view: the brokers are the live nodes with a Kafka
 *     address (this node always), the controller the raft leader, and a
 *     replicated topic's partitions have the queue's leader (-1 and
 *     LEADER_NOT_AVAILABLE while it has none live), epoch, replicas and
 *     ISR; such a topic is never auto-created locally. Produce, Fetch and
 *     ListOffsets of a replicated queue on a node that does not lead it
 *     answer NOT_LEADER_OR_FOLLOWER (LEADER_NOT_AVAILABLE while no
 *     leader), stored or read nothing (rn_kerr_cluster); consumers see
 *     the high watermark only; acks -1 waits for the in-sync replicas as
 *     the gRPC produce does (rn_hd_produce_replicated).
 *  8. In a cluster each group has one coordinator: among the live nodes
 *     of the controller's view with a Kafka address, the one of highest
 *     rendezvous weight (a hash of group id and node id), so every node
 *     that sees the same view names the same one, and a node's death
 *     moves only the groups it coordinated. FindCoordinator answers it;
 *     JoinGroup, SyncGroup, Heartbeat, LeaveGroup and OffsetCommit on any
 *     other node answer NOT_COORDINATOR (COORDINATOR_NOT_AVAILABLE while
 *     none is known) and change nothing. Membership stays in the
 *     coordinator's memory; OffsetCommit of replicated topics goes through
 *     the controller (rn_hd_commit_offsets_req, as the gRPC CommitOffsets)
 *     and is answered once committed and in this node's meta.db; every
 *     node answers OffsetFetch from its own meta.db.
 *  5. Bounded work per request, whatever it names: at most
 *     RN_KAPI_MAX_PARTITIONS topic-partition entries (or topics) are
 *     decoded (more: the request is refused, RN_KH_BAD), at most
 *     RN_KAPI_MAX_AUTO_CREATE topics auto-created (later unknown topics
 *     get UNKNOWN_TOPIC_OR_PARTITION; the client's retry creates them), at
 *     most RN_KAPI_MAX_TIME_LOOKUPS lookups by timestamp (later partitions
 *     get REQUEST_TIMED_OUT, retriable), a Fetch's max_bytes is capped at
 *     the frame limit, and a response at RN_KW_MAX_RESPONSE (wire.h).
 */
#ifndef RN_KAFKA_API_H
#define RN_KAFKA_API_H

#include <stdint.h>

#include "client/users.h"
#include "kafka/wire.h"
#include "logical-queues/acl.h"
#include "server/handlers.h"

/* ---- Kafka error codes used by the front ------------------------------------ */

enum {
    RN_KERR_NONE = 0,
    RN_KERR_UNKNOWN_SERVER_ERROR = -1,
    RN_KERR_OFFSET_OUT_OF_RANGE = 1,
    RN_KERR_CORRUPT_MESSAGE = 2,
    RN_KERR_UNKNOWN_TOPIC_OR_PARTITION = 3,
    RN_KERR_INVALID_FETCH_SIZE = 4,
    RN_KERR_LEADER_NOT_AVAILABLE = 5,
    RN_KERR_NOT_LEADER_OR_FOLLOWER = 6,
    RN_KERR_REQUEST_TIMED_OUT = 7,
    RN_KERR_MESSAGE_TOO_LARGE = 10,
    RN_KERR_OFFSET_METADATA_TOO_LARGE = 12,
    RN_KERR_COORDINATOR_LOAD_IN_PROGRESS = 14,
    RN_KERR_COORDINATOR_NOT_AVAILABLE = 15,
    RN_KERR_NOT_COORDINATOR = 16,
    RN_KERR_INVALID_TOPIC_EXCEPTION = 17,
    RN_KERR_RECORD_LIST_TOO_LARGE = 18,
    RN_KERR_NOT_ENOUGH_REPLICAS = 19,
    RN_KERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND = 20,
    RN_KERR_INVALID_REQUIRED_ACKS = 21,
    RN_KERR_ILLEGAL_GENERATION = 22,
    RN_KERR_INCONSISTENT_GROUP_PROTOCOL = 23,
    RN_KERR_INVALID_GROUP_ID = 24,
    RN_KERR_UNKNOWN_MEMBER_ID = 25,
    RN_KERR_INVALID_SESSION_TIMEOUT = 26,
    RN_KERR_REBALANCE_IN_PROGRESS = 27,
    RN_KERR_INVALID_COMMIT_OFFSET_SIZE = 28,
    RN_KERR_TOPIC_AUTHORIZATION_FAILED = 29,
    RN_KERR_GROUP_AUTHORIZATION_FAILED = 30,
    RN_KERR_CLUSTER_AUTHORIZATION_FAILED = 31,
    RN_KERR_INVALID_TIMESTAMP = 32,
    RN_KERR_UNSUPPORTED_SASL_MECHANISM = 33,
    RN_KERR_ILLEGAL_SASL_STATE = 34,
    RN_KERR_UNSUPPORTED_VERSION = 35,
    RN_KERR_TOPIC_ALREADY_EXISTS = 36,
    RN_KERR_INVALID_PARTITIONS = 37,
    RN_KERR_INVALID_REPLICATION_FACTOR = 38,
    RN_KERR_INVALID_REPLICA_ASSIGNMENT = 39,
    RN_KERR_INVALID_CONFIG = 40,
    RN_KERR_NOT_CONTROLLER = 41,
    RN_KERR_INVALID_REQUEST = 42,
    RN_KERR_UNSUPPORTED_FOR_MESSAGE_FORMAT = 43,
    RN_KERR_POLICY_VIOLATION = 44,
    RN_KERR_OUT_OF_ORDER_SEQUENCE_NUMBER = 45,
    RN_KERR_DUPLICATE_SEQUENCE_NUMBER = 46,
    RN_KERR_INVALID_PRODUCER_EPOCH = 47,
    RN_KERR_INVALID_TXN_STATE = 48,
    RN_KERR_INVALID_PRODUCER_ID_MAPPING = 49,
    RN_KERR_INVALID_TRANSACTION_TIMEOUT = 50,
    RN_KERR_CONCURRENT_TRANSACTIONS = 51,
    RN_KERR_KAFKA_STORAGE_ERROR = 56,
    RN_KERR_UNKNOWN_PRODUCER_ID = 59,
    RN_KERR_GROUP_ID_NOT_FOUND = 69,
    RN_KERR_NON_EMPTY_GROUP = 68,
    RN_KERR_FENCED_LEADER_EPOCH = 74,
    RN_KERR_UNKNOWN_LEADER_EPOCH = 75,
    RN_KERR_MEMBER_ID_REQUIRED = 79,
    RN_KERR_GROUP_MAX_SIZE_REACHED = 81,
    RN_KERR_FENCED_INSTANCE_ID = 82,
    RN_KERR_INVALID_RECORD = 87,
    RN_KERR_UNSTABLE_OFFSET_COMMIT = 88,
};

/* ---- per-request bounds (invariant 5) --------------------------------------------- */

#define RN_KAPI_MAX_PARTITIONS   10000
#define RN_KAPI_MAX_AUTO_CREATE  16
#define RN_KAPI_MAX_TIME_LOOKUPS 64

/* ---- the front's state, shared by every handler (invariant 1) ------------------ */

struct rn_kcoord;

typedef struct rn_kctx {
    rn_hd_t          *hd;            /* the broker's handlers (produce, fetch, topics) */
    rn_datadir_t     *d;
    int32_t           node_id;       /* this broker's id in Metadata (0) */
    char              host[256];     /* advertised host and port */
    int               port;
    char              cluster_id[32];
    uint32_t          auto_create;   /* queues of an auto-created topic; 0 = off */
    uint32_t          max_frame;     /* the largest request frame accepted */
    struct rn_kcoord *coord;         /* the group coordinator (kafka/coord.h) */
    uint64_t          created;       /* topics auto-created so far (invariant 5) */
    struct rn_auth   *auth;          /* the credentials (server/auth.h); NULL: no SASL user */
    /* A cluster node's front (invariant 7): self is its node id (node_id
     * too), ctl its controller, set once the controller runs (atomic;
     * NULL before: Metadata names this node alone). self 0: one broker. */
    uint64_t          self;
    struct rn_ctl    *ctl;
} rn_kctx_t;

/* ---- requests ------------------------------------------------------------------ */

enum { RN_KH_DONE, RN_KH_NONE, RN_KH_LATER, RN_KH_LATER_PIPELINED, RN_KH_BAD };

typedef struct rn_kreq rn_kreq_t;
struct rn_kreq {
    int16_t     api, version;
    int32_t     corr;            /* correlation id */
    int         flex;            /* flexible version: compact forms, tagged fields */
    rn_kstr_t   client_id;       /* points into the frame */
    char        peer[64];        /* "HOST:PORT" of the client */
    char        principal[RN_USER_NAME_MAX + 1];  /* the connection's; "" = anonymous */
    rn_kctx_t  *ctx;
    rn_kr_t     in;              /* the request body */
    rn_buf_t    out;             /* the response body */
    rn_kw_t     w;               /* writer over out, flex as the request */
    const char *why;             /* RN_KH_BAD: what was wrong (static or in whybuf) */
    char        whybuf[160];
    void       *hstate;          /* the handler's own state across RN_KH_LATER */
    void      (*hfree)(rn_kreq_t *q);   /* frees hstate; called once when the request ends */
    /* the front's own fields (kafka/front.c) */
    struct rn_kreq *next;        /* the connection's requests, in arrival order */
    struct rn_kreq *link;        /* the parking lot, or the waiter's queues */
    void       *conn;
    uint8_t    *frame;
    uint32_t    frame_len;
    int         state;
    void      (*work)(rn_kreq_t *q);
    void      (*then)(rn_kreq_t *q);
    void      (*retry)(rn_kreq_t *q, int expired);
    int64_t     deadline;
    size_t      held_out;        /* response bytes counted as held (front.c) */
};

typedef int (*rn_kh_fn)(rn_kreq_t *q);

/* Complete a request that returned RN_KH_LATER*: its body is in q->out
 * (RN_KH_NONE-like completion: rn_kreq_drop). Loop thread only. */
void rn_kreq_done(rn_kreq_t *q);
void rn_kreq_drop(rn_kreq_t *q);
/* Run work(q) on the waiter thread (it may block), then then(q) on the loop
 * thread; then() completes q (rn_kreq_done). Returns RN_KH_LATER_PIPELINED
 * or RN_KH_LATER per `pipelined`, for the handler to return. */
int  rn_kreq_offload(rn_kreq_t *q, void (*work)(rn_kreq_t *q), void (*then)(rn_kreq_t *q),
                     int pipelined);
/* Call retry(q, expired) on the loop thread every few milliseconds until it
 * completes q; expired is 1 once deadline_ms (rn_server_now_ms clock) passed,
 * or the front is stopping. Returns RN_KH_LATER. */
int  rn_kreq_park(rn_kreq_t *q, int64_t deadline_ms, void (*retry)(rn_kreq_t *q, int expired));
/* 1 when every earlier request of q's connection is complete (its answer
 * written or waiting only for its turn to leave), 0 while one still runs
 * (a produce waiting for the in-sync replicas). */
int  rn_kreq_alone(const rn_kreq_t *q);
/* Fail q as RN_KH_BAD with a formatted reason; returns RN_KH_BAD. */
int  rn_kreq_bad(rn_kreq_t *q, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- the API table (invariant 4) ------------------------------------------------- */

typedef struct rn_kapi {
    int16_t     key;
    const char *name;
    int16_t     min, max;        /* versions implemented */
    int16_t     flex_min;        /* first flexible version; > max: none implemented */
    rn_kh_fn    fn;
} rn_kapi_t;

extern const rn_kapi_t rn_kapi_table[];
extern const int       rn_kapi_count;
const rn_kapi_t *rn_kapi_find(int16_t key);

/* ---- handlers (one per API; in kafka/api_*.c) --------------------------------- */

int rn_kh_api_versions(rn_kreq_t *q);
int rn_kh_metadata(rn_kreq_t *q);
int rn_kh_produce(rn_kreq_t *q);
int rn_kh_fetch(rn_kreq_t *q);
int rn_kh_list_offsets(rn_kreq_t *q);
int rn_kh_find_coordinator(rn_kreq_t *q);
int rn_kh_join_group(rn_kreq_t *q);
int rn_kh_sync_group(rn_kreq_t *q);
int rn_kh_heartbeat(rn_kreq_t *q);
int rn_kh_leave_group(rn_kreq_t *q);
int rn_kh_offset_commit(rn_kreq_t *q);
int rn_kh_offset_fetch(rn_kreq_t *q);
int rn_kh_list_groups(rn_kreq_t *q);
int rn_kh_describe_groups(rn_kreq_t *q);
int rn_kh_create_topics(rn_kreq_t *q);
int rn_kh_delete_topics(rn_kreq_t *q);
int rn_kh_init_producer_id(rn_kreq_t *q);

/* Periodic work of the group coordinator (session and rebalance timeouts),
 * called by the front every RN_KFRONT_TICK_MS on the loop thread. */
void rn_kgroup_tick(rn_kctx_t *ctx, int64_t now_ms);

/* Topic name valid for Kafka and runnel: [A-Za-z0-9._-]{1,249}, not "." or "..". */
int rn_ktopic_valid(rn_kstr_t name);
/* The topic named s, created with ctx->auto_create queues when absent and
 * `create` (auto-creation, logged). RN_KERR_NONE with *t, else the error
 * code for the topic (INVALID_TOPIC_EXCEPTION, UNKNOWN_TOPIC_OR_PARTITION). */
int16_t rn_ktopic_get(rn_kctx_t *ctx, rn_kstr_t s, int create, rn_meta_topic_t *t);
/* Invariant 6: may q's principal do op on (res, name)? 1 yes; 0 no, logged.
 * rn_kacl_topic takes a wire string (an invalid name is allowed here: the
 * caller refuses it on its own). */
int rn_kacl(rn_kreq_t *q, rn_acl_res_t res, const char *name, rn_acl_op_t op);
int rn_kacl_topic(rn_kreq_t *q, rn_kstr_t name, rn_acl_op_t op);
/* May q's principal create topic name (create on it or on the cluster)? */
int rn_kacl_create(rn_kreq_t *q, const char *name);
/* The Kafka error code nearest a handler status. */
int16_t rn_kerr_of(const rn_status_t *st);
/* Invariant 7: the Kafka error of a cluster refusal (NOT_LEADER_OR_FOLLOWER,
 * LEADER_NOT_AVAILABLE, NOT_ENOUGH_REPLICAS), 0 when st is none. */
int16_t rn_kerr_cluster(const rn_kctx_t *ctx, const rn_status_t *st);
/* rn_kerr_cluster when st is a cluster refusal, else rn_kerr_of. */
int16_t rn_kerr_status(const rn_kctx_t *ctx, const rn_status_t *st);
/* Invariant 7: the error for (topic, queue) not found in this node's store
 * while the controller replicates the topic (the node has not made it yet;
 * never auto-created here): LEADER_NOT_AVAILABLE when this node leads the
 * queue or none does, NOT_LEADER_OR_FOLLOWER when another does,
 * UNKNOWN_TOPIC_OR_PARTITION past its queues; 0 when the cluster does not
 * replicate the topic (or this is no cluster). */
int16_t rn_kcluster_unmade(rn_kctx_t *ctx, const char *topic, uint32_t queue);

/* Whether the controller replicates topic (0 on one broker, or before the
 * controller runs). */
int rn_kcluster_replicated(rn_kctx_t *ctx, const char *topic);
/* Invariant 8: the coordinator of group: 0 with its Kafka node id and
 * advertised address (this broker on one broker); -1 when none is known
 * (no controller view yet, this node's copy of the state not yet current
 * after its start, no live node with a Kafka address). */
int rn_kcluster_coordinator(rn_kctx_t *ctx, const char *group, int32_t *id, char *host,
                            size_t hn, int *port);
/* Invariant 8: RN_KERR_NONE when this node coordinates group (always on one
 * broker), NOT_COORDINATOR when another does, COORDINATOR_NOT_AVAILABLE
 * when none is known. */
int16_t rn_kcluster_coord_here(rn_kctx_t *ctx, const char *group);

#endif
