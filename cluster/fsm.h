/*
 * fsm.h — the cluster controller's replicated state and its commands: what
 * the raft log (cluster/controller.h) carries and every node applies in the
 * same order. Pure: no I/O, no clock, no libraft; the controller drives it.
 *
 * State: the nodes that registered (id, client gRPC address, the start id
 * and incarnation of their latest registration, liveness as the controller
 * leader committed it). Topics, queue replicas, leaders, epochs and ISRs
 * join later as more command types (cluster/README.md).
 *
 * Command encoding, version 1 (integers big-endian):
 *
 *   +---------+------+------------------------------------------------+
 *   | version | type | body                                           |
 *   |  u8 = 1 |  u8  |                                                |
 *   +---------+------+------------------------------------------------+
 *   REGISTER (1): id u64 | start_id u64 | at_ms i64 | len u16 | client[len]
 *   FENCE    (2): id u64 | at_ms i64
 *   then 0 to 7 zero bytes: a command is a multiple of 8 bytes long, because
 *   libraft 0.15's disk log (raft/uv) writes an entry of any other length
 *   wrongly and then cannot load its segment (cluster/README.md, libraft).
 *
 * Snapshot encoding (what raft_fsm snapshot gives and restore takes):
 *
 *   "RNCS" | version u8 = 1 | n u32 | n × node
 *   node: id u64 | start_id u64 | incarnation u64 | live u8 |
 *         live_changed_ms i64 | len u16 | client[len]
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
#define RN_FSM_CMD_MAX       ((2 + 8 + 8 + 8 + 2 + RN_CLUSTER_ADDR_MAX + 7) / 8 * 8)

typedef enum rn_fsm_cmd_type {
    RN_FSM_REGISTER = 1,    /* a node (re)started and serves clients at `client` */
    RN_FSM_FENCE = 2,       /* the leader saw no heartbeat from the node for too long */
} rn_fsm_cmd_type_t;

typedef struct rn_fsm_cmd {
    rn_fsm_cmd_type_t type;
    uint64_t id;
    uint64_t start_id;                      /* REGISTER */
    int64_t  at_ms;                         /* the leader's wall clock when it proposed */
    char     client[RN_CLUSTER_ADDR_MAX];   /* REGISTER */
} rn_fsm_cmd_t;

typedef struct rn_fsm_node {
    uint64_t id;
    char     client[RN_CLUSTER_ADDR_MAX];
    uint64_t start_id;       /* of the latest registration */
    uint64_t incarnation;    /* registrations with a new start id: one per start */
    int      live;
    int64_t  live_changed_ms;
} rn_fsm_node_t;

typedef struct rn_fsm {
    size_t        n;
    rn_fsm_node_t nodes[RN_CLUSTER_MAX_NODES];   /* ascending id */
} rn_fsm_t;

void rn_fsm_init(rn_fsm_t *f);

/* Encode c into out (RN_FSM_CMD_MAX bytes); *len gets its size. RN_EINVAL
 * when the client address does not fit. */
int rn_fsm_cmd_encode(const rn_fsm_cmd_t *c, uint8_t *out, size_t *len);
/* Decode p[0..n); RN_ECORRUPT with errmsg when it is not a valid command. */
int rn_fsm_cmd_decode(const uint8_t *p, size_t n, rn_fsm_cmd_t *c, char *errmsg);

/* Apply one command. Deterministic: the same commands in the same order
 * give the same state on every node. REGISTER of a new node when
 * RN_CLUSTER_MAX_NODES are known: RN_EFULL (state unchanged). FENCE of an
 * unknown node changes nothing. */
int rn_fsm_apply(rn_fsm_t *f, const rn_fsm_cmd_t *c, char *errmsg);

/* The node with this id, or NULL (borrowed from f). */
const rn_fsm_node_t *rn_fsm_find(const rn_fsm_t *f, uint64_t id);

/* Snapshot: rn_fsm_snapshot_bound(f) bytes suffice for out. */
size_t rn_fsm_snapshot_bound(const rn_fsm_t *f);
size_t rn_fsm_snapshot_encode(const rn_fsm_t *f, uint8_t *out);
/* Replace *f with the snapshot's state; on error (RN_ECORRUPT, errmsg) *f
 * is unchanged. */
int rn_fsm_snapshot_decode(rn_fsm_t *f, const uint8_t *p, size_t n, char *errmsg);

#endif
