/*
 * fsm.h — the cluster controller's replicated state and its commands: what
 * the raft log (cluster/controller.h) carries and every node applies in the
 * same order. Pure: no I/O, no clock, no libraft; the controller drives it.
 *
 * State: the nodes that registered (id, client gRPC address, the start id
 * and incarnation of their latest registration, liveness as the controller
 * leader committed it), and the replicated topics: per topic its queue
 * count, per queue the replica set, the leader, the leader epoch and the
 * in-sync replicas (ISR); and the consumer groups' committed offsets on
 * the replicated topics' queues.
 *
 * Command encoding, version 1 (integers big-endian):
 *
 *   +---------+------+------------------------------------------------+
 *   | version | type | body                                           |
 *   |  u8 = 1 |  u8  |                                                |
 *   +---------+------+------------------------------------------------+
 *   REGISTER (1): id u64 | start_id u64 | at_ms i64 | len u16 | client[len]
 *                 [| klen u16 >= 1 | kafka[klen]]
 *                 (optional: the node's Kafka advertised address, present
 *                 when it serves --kafka-listen; absent, the bytes are those
 *                 of the first slice, and klen's non-zero bytes tell it from
 *                 the zero padding)
 *   FENCE    (2): id u64 | at_ms i64
 *   TOPIC    (3): id u64 = 0 | at_ms i64 | len u16 | name[len] | nq u32 |
 *                 nq × (leader u64 | nrep u8 | nrep × replica u64)
 *                 (every queue starts at epoch 1 with ISR = replicas)
 *   LEADER   (4): id u64 = new leader | at_ms i64 | len u16 | name[len] |
 *                 queue u32 | prev_epoch u64 | epoch u64 | nisr u8 |
 *                 nisr × isr u64
 *                 (applied only when the queue's epoch is still prev_epoch:
 *                 a stale proposal changes nothing)
 *   REPLICAS (6): id u64 = leader | at_ms i64 | len u16 | name[len] |
 *                 queue u32 | prev_epoch u64 | epoch u64 | nrep u8 |
 *                 nrep × replica u64 | ntarget u8 | ntarget × target u64
 *                 (a reassignment: the replica set, and the set it moves to,
 *                 none when done; the ISR becomes the old ISR within the new
 *                 replicas, which must hold the leader; epoch + 1 exactly
 *                 when the leader changes; applied only at prev_epoch)
 *   GROW     (7): id u64 = 0 | at_ms i64 | len u16 | name[len] | first u32 |
 *                 nq u32 | (nq - first) × (leader u64 | nrep u8 |
 *                 nrep × replica u64)
 *                 (the topic grows from first queues, its count now, to nq:
 *                 q[0..nq-first) of the command are queues first..nq-1, each
 *                 at epoch 1 with ISR = replicas; applied only when the topic
 *                 has first queues)
 *   DROP     (8): id u64 = 0 | at_ms i64 | len u16 | name[len]
 *                 (the topic and its group offsets leave the state; its name
 *                 joins the tombstones, the last RN_FSM_MAX_TOMBS deleted
 *                 names with their at_ms, so that a node that was down
 *                 deletes its own copy when it comes back, a copy made
 *                 before at_ms only: a topic made again under the name
 *                 keeps its tombstone, which its new copies postdate)
 *   OFFSETS  (5): ng u32 | ng × (len u16 | group[len] | n u32 |
 *                 n × (len u16 | topic[len] | queue u32 | offset i64))
 *                 (group offsets committed on replicated topics: one or
 *                 several commits batched; no id, no clock. Its own codec,
 *                 rn_fsm_offsets_encode / _decode)
 *   then 0 to 7 zero bytes: a command is a multiple of 8 bytes long, because
 *   libraft 0.15's disk log (raft/uv) writes an entry of any other length
 *   wrongly and then cannot load its segment (cluster/README.md, libraft).
 *
 * Snapshot encoding (what raft_fsm snapshot gives and restore takes):
 *
 *   "RNCS" | version u8 | n u32 | n × node [| t u32 | t × topic]
 *   node: id u64 | start_id u64 | incarnation u64 | live u8 |
 *         live_changed_ms i64 | len u16 | client[len] [| klen u16 | kafka[klen]]
 *   topic: len u16 | name[len] | nq u32 | nq × (leader u64 | epoch u64 |
 *          nrep u8 | nrep × u64 | nisr u8 | nisr × u64)
 *   Version 1 (no topic part) is written when there is no topic, version 2
 *   (with it, t >= 1) otherwise. Version 3, written when the state holds
 *   group offsets and no node has a Kafka address, has the topic part
 *   (t >= 0) and then
 *   g u32 | g × (len u16 | group[len] | len u16 | topic[len] | queue u32 |
 *   offset i64), ascending by (group, topic, queue), g >= 1. Version 4,
 *   written when a node has a Kafka address: every node with its kafka part
 *   (klen 0 for none), the topic part (t >= 0) and the offsets part
 *   (g >= 0). Version 5, written while a queue is being reassigned: version
 *   4's layout with, per queue after its ISR, ntarget u8 | ntarget × u64.
 *   Version 6, written while there are tombstones: version 5's layout, then
 *   nt u32 >= 1 | nt × (len u16 | name[len] | at_ms i64), oldest first.
 *   One encoding per state, and older snapshots still load.
 *
 * A newer version or an unknown type is refused (RN_ECORRUPT with a
 * message), never guessed at.
 */
#ifndef RN_CLUSTER_FSM_H
#define RN_CLUSTER_FSM_H

#include <stddef.h>
#include <stdint.h>

#define RN_CLUSTER_MAX_NODES 16     /* nodes the controller knows (raft voters and others) */
#define RN_CLUSTER_ADDR_MAX  256    /* a HOST:PORT address, NUL included */
#define RN_FSM_CMD_VERSION   1
#define RN_FSM_TOPIC_MAX     250     /* a topic name, NUL included (249 characters) */
#define RN_FSM_MAX_QUEUES    64      /* queues of one replicated topic */
#define RN_FSM_MAX_TOPICS    4096
#define RN_FSM_MAX_TOMBS     64      /* deleted topic names kept (DROP) */
#define RN_FSM_CMD_MAX       ((2 + 8 + 8 + 2 + RN_FSM_TOPIC_MAX + 4 + 8 + 8 + 1 + \
                               RN_FSM_MAX_QUEUES * (8 + 1 + 8 * RN_CLUSTER_MAX_NODES) + \
                               2 * (2 + RN_CLUSTER_ADDR_MAX) + 7) / 8 * 8)

typedef enum rn_fsm_cmd_type {
    RN_FSM_REGISTER = 1,    /* a node (re)started and serves clients at `client` */
    RN_FSM_FENCE = 2,       /* the leader saw no heartbeat from the node for too long */
    RN_FSM_TOPIC = 3,       /* a replicated topic and its queues' replica sets */
    RN_FSM_LEADER = 4,      /* a queue's new leader (epoch + 1) or ISR (same epoch) */
    RN_FSM_OFFSETS = 5,     /* group offsets on replicated topics (rn_fsm_offsets_*) */
    RN_FSM_REPLICAS = 6,    /* a queue's replica set and reassignment target (queue reassign) */
    RN_FSM_GROW = 7,        /* more queues for a replicated topic (topic alter) */
    RN_FSM_DROP = 8,        /* a replicated topic deleted (topic delete) */
} rn_fsm_cmd_type_t;

/* One queue of a replicated topic. Invariants: 1 <= nrep <= MAX_NODES,
 * replicas distinct; leader is one of them (0 = none: no replica of the
 * ISR was live to take over); isr is a subset of replicas holding the
 * leader when there is one; epoch >= 1 grows by one at every change of
 * leader. */
typedef struct rn_fsm_pq {
    uint64_t leader;
    uint64_t epoch;
    uint32_t nrep, nisr;
    uint64_t replicas[RN_CLUSTER_MAX_NODES];
    uint64_t isr[RN_CLUSTER_MAX_NODES];
    /* A reassignment under way (`runnel queue reassign`): the replica set
     * the queue moves to, a subset of replicas (which hold both sets until
     * every target member is in the ISR); ntarget 0: none. */
    uint32_t ntarget;
    uint64_t target[RN_CLUSTER_MAX_NODES];
} rn_fsm_pq_t;

typedef struct rn_fsm_topic {
    char         name[RN_FSM_TOPIC_MAX];
    uint32_t     nqueues;
    rn_fsm_pq_t *q;                         /* nqueues, owned */
} rn_fsm_topic_t;

typedef struct rn_fsm_cmd {
    rn_fsm_cmd_type_t type;
    uint64_t id;                            /* REGISTER, FENCE: the node; LEADER: the leader */
    uint64_t start_id;                      /* REGISTER */
    int64_t  at_ms;                         /* the leader's wall clock when it proposed */
    char     client[RN_CLUSTER_ADDR_MAX];   /* REGISTER */
    char     kafka[RN_CLUSTER_ADDR_MAX];    /* REGISTER: Kafka HOST:PORT, "" none */
    char     topic[RN_FSM_TOPIC_MAX];       /* TOPIC, LEADER */
    uint32_t nqueues;                       /* TOPIC */
    uint32_t queue;                         /* LEADER, REPLICAS; GROW: the first new queue */
    uint64_t prev_epoch, epoch;             /* LEADER */
    rn_fsm_pq_t q[RN_FSM_MAX_QUEUES];       /* TOPIC: leader, replicas; LEADER: q[0].isr;
                                               REPLICAS: q[0].replicas, q[0].target */
} rn_fsm_cmd_t;

typedef struct rn_fsm_node {
    uint64_t id;
    char     client[RN_CLUSTER_ADDR_MAX];
    char     kafka[RN_CLUSTER_ADDR_MAX];    /* Kafka advertised HOST:PORT; "" none */
    uint64_t start_id;       /* of the latest registration */
    uint64_t incarnation;    /* registrations with a new start id: one per start */
    int      live;
    int64_t  live_changed_ms;
} rn_fsm_node_t;

/* One committed offset of a consumer group on a queue of a replicated
 * topic (the next offset to read). Names as topic names: 1..249 bytes. */
typedef struct rn_fsm_goff {
    char     group[RN_FSM_TOPIC_MAX];
    char     topic[RN_FSM_TOPIC_MAX];
    uint32_t queue;
    int64_t  offset;
} rn_fsm_goff_t;

#define RN_FSM_MAX_GOFFS         65536        /* group offsets the cluster holds */
#define RN_FSM_OFFSETS_MAX_BYTES (256u << 10) /* one OFFSETS entry, padding included */

typedef struct rn_fsm_tomb {
    char    name[RN_FSM_TOPIC_MAX];
    int64_t at_ms;                      /* the leader's wall clock when it was deleted */
} rn_fsm_tomb_t;

typedef struct rn_fsm {
    size_t          ntombs;
    rn_fsm_tomb_t   tombs[RN_FSM_MAX_TOMBS];       /* deleted topics, oldest first */
    size_t          n;
    rn_fsm_node_t   nodes[RN_CLUSTER_MAX_NODES];   /* ascending id */
    size_t          ntopics;
    rn_fsm_topic_t *topics;                        /* ascending name, owned */
    uint64_t        topics_gen;                    /* +1 at every change of topics (local) */
    size_t          ngoffs;
    rn_fsm_goff_t  *goffs;         /* ascending (group, topic, queue), owned */
} rn_fsm_t;

void rn_fsm_init(rn_fsm_t *f);
void rn_fsm_free(rn_fsm_t *f);      /* the topics; f is then as after rn_fsm_init */
/* A deep copy of topics[0..n) (NULL when n = 0 or out of memory: *ok = 0). */
rn_fsm_topic_t *rn_fsm_topics_copy(const rn_fsm_topic_t *t, size_t n, int *ok);
void rn_fsm_topics_free(rn_fsm_topic_t *t, size_t n);
/* The topic with this name, or NULL (borrowed). */
const rn_fsm_topic_t *rn_fsm_topic_find(const rn_fsm_t *f, const char *name);
/* 1 when id is among ids[0..n). */
int rn_fsm_has(const uint64_t *ids, uint32_t n, uint64_t id);

/* Encode c into out (RN_FSM_CMD_MAX bytes); *len gets its size. RN_EINVAL
 * when the client or Kafka address does not fit. */
int rn_fsm_cmd_encode(const rn_fsm_cmd_t *c, uint8_t *out, size_t *len);
/* Decode p[0..n); RN_ECORRUPT with errmsg when it is not a valid command. */
int rn_fsm_cmd_decode(const uint8_t *p, size_t n, rn_fsm_cmd_t *c, char *errmsg);

/* Apply one command. Deterministic: the same commands in the same order
 * give the same state on every node. REGISTER of a new node when
 * RN_CLUSTER_MAX_NODES are known: RN_EFULL (state unchanged). FENCE of an
 * unknown node changes nothing. TOPIC of a name that exists: RN_EEXIST
 * (unchanged); with a bad replica set (none, too many, twice, a leader not
 * among them): RN_EINVAL. LEADER of an unknown topic or queue, or whose
 * prev_epoch is not the queue's epoch (stale), or naming a leader or ISR
 * outside the replicas: RN_EINVAL, unchanged. */
int rn_fsm_apply(rn_fsm_t *f, const rn_fsm_cmd_t *c, char *errmsg);

/* The node with this id, or NULL (borrowed from f). */
const rn_fsm_node_t *rn_fsm_find(const rn_fsm_t *f, uint64_t id);

/* Snapshot: rn_fsm_snapshot_bound(f) bytes suffice for out. */
size_t rn_fsm_snapshot_bound(const rn_fsm_t *f);
size_t rn_fsm_snapshot_encode(const rn_fsm_t *f, uint8_t *out);
/* Replace *f with the snapshot's state; on error (RN_ECORRUPT, errmsg) *f
 * is unchanged. */
int rn_fsm_snapshot_decode(rn_fsm_t *f, const uint8_t *p, size_t n, char *errmsg);

/* ---- group offsets (OFFSETS entries) -------------------------------------- */

/* Bytes rn_fsm_offsets_encode needs for v[0..n) (padding included). */
size_t rn_fsm_offsets_bound(const rn_fsm_goff_t *v, size_t n);
/* Encode v[0..n) (n >= 1; consecutive offsets of one group share its
 * header) into out (rn_fsm_offsets_bound bytes); *len gets the size, a
 * multiple of 8. RN_EINVAL when a name is empty or too long, an offset is
 * negative or the entry would pass RN_FSM_OFFSETS_MAX_BYTES. */
int rn_fsm_offsets_encode(const rn_fsm_goff_t *v, size_t n, uint8_t *out, size_t *len);
/* Decode an OFFSETS command p[0..len): *v malloc'd (caller frees), *n
 * offsets in entry order. RN_ECORRUPT with errmsg when it does not check. */
int rn_fsm_offsets_decode(const uint8_t *p, size_t len, rn_fsm_goff_t **v, size_t *n,
                          char *errmsg);
/* Apply v[0..n) in order (an offset given twice: the later wins), all or
 * nothing: RN_EINVAL when a queue is not one of a replicated topic's or an
 * offset is negative, RN_EFULL when the state would pass RN_FSM_MAX_GOFFS;
 * state unchanged then. An upsert, as a single node's CommitOffsets: an
 * offset may move back (a consumer rewinding). */
int rn_fsm_offsets_apply(rn_fsm_t *f, const rn_fsm_goff_t *v, size_t n, char *errmsg);
/* The group's committed offset on (topic, queue), or NULL (borrowed). */
const rn_fsm_goff_t *rn_fsm_goff_find(const rn_fsm_t *f, const char *group, const char *topic,
                                      uint32_t queue);

#endif
