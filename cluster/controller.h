/*
 * controller.h — the cluster controller of one runneld node: a libraft
 * instance (Debian's libraft, canonical raft 0.15, over its libuv TCP
 * transport) replicating the controller state (cluster/fsm.h) among the
 * nodes of `--cluster`, on its own libuv loop thread.
 *
 * Threads: everything raft — raft_apply, the FSM callbacks, timers, the
 * heartbeats a follower sends the leader — runs on the controller's loop
 * thread. Other threads (gRPC handlers) only (a) submit inputs through a
 * bounded queue and a uv_async handle, and (b) read an immutable view of
 * the state (rn_ctl_view_get), which the loop thread swaps under a small
 * mutex after every change; nothing blocks under that mutex.
 *
 * Lifecycle: rn_cluster_conf_parse (flags) → rn_ctl_start (raft data under
 * DATA/raft/, bootstrapped with the flags' configuration on the first start
 * only, unless `--join`: then a member adds the node; later starts resume
 * from it) → rn_ctl_stop (raft closes, the thread is joined, memory freed).
 * Membership: rn_ctl_member_change (ClusterChange, `runnel cluster
 * add|remove`) through the controller leader, one change at a time.
 *
 * Liveness: every node heartbeats the controller leader (ClusterHeartbeat,
 * every RN_CTL_HEARTBEAT_MS); the leader keeps when it last heard from each
 * (its own memory, not replicated) and commits REGISTER when a node is new,
 * restarted, moved or was fenced, and FENCE when it heard nothing for
 * RN_CTL_SESSION_MS. A new leader counts every node as heard at the moment
 * it won, so a dead node is fenced RN_CTL_SESSION_MS after an election;
 * the previous leader, silent for at least an election timeout already,
 * RN_CTL_SESSION_MS - RN_CTL_ELECTION_MS after it.
 *
 * Queues (fsm.h): the ready leader moves the leadership of every queue
 * whose leader is not live to the first live member of its ISR (epoch + 1;
 * none live: the queue keeps its dead leader, no unclean election), drops
 * members that are not live from the ISR of live leaders, and commits the
 * ISR changes queue leaders ask for (rn_ctl_isr_request).
 *
 * Group offsets (fsm.h OFFSETS): the ready leader group-commits the
 * CommitOffsets handed to it (rn_ctl_commit_offsets: while one entry is in
 * flight, the commits arriving wait for it and go together in the next),
 * every node's apply queues the offsets for its meta.db, which the replica
 * module writes (rn_ctl_offsets_take / _written / _wait).
 */
#ifndef RN_CLUSTER_CONTROLLER_H
#define RN_CLUSTER_CONTROLLER_H

#include <stddef.h>
#include <stdint.h>

#include "cluster/fsm.h"

#define RN_CTL_HEARTBEAT_MS   200
#define RN_CTL_SESSION_MS     1500
#define RN_CTL_ELECTION_MS    1000   /* raft election timeout (randomised up to 2x) */
#define RN_CTL_RAFT_HEARTBEAT_MS 100
#define RN_CTL_SNAPSHOT_ENTRIES  64   /* the state is small: snapshot often */

typedef struct rn_cluster_peer {
    uint64_t id;
    char     addr[RN_CLUSTER_ADDR_MAX];    /* raft HOST:PORT */
} rn_cluster_peer_t;

typedef struct rn_cluster_conf {
    uint64_t          self;
    size_t            n;
    rn_cluster_peer_t peers[RN_CLUSTER_MAX_NODES];
} rn_cluster_conf_t;

/* Parse `--cluster 1=HOST:PORT,2=HOST:PORT,...` for node self_text
 * (`--node-id`). Ids are 1..4294967295; 1 to RN_CLUSTER_MAX_NODES nodes; no
 * id or address twice; every address as common/addr.h checks it (port
 * 1..65535); self among the ids. RN_EINVAL with a one-line errmsg saying
 * what is wrong and what is valid. */
int rn_cluster_conf_parse(const char *self_text, const char *spec, rn_cluster_conf_t *out,
                          char *errmsg);

typedef struct rn_ctl rn_ctl_t;

typedef struct rn_ctl_opts {
    const rn_cluster_conf_t *conf;
    const char *data_dir;           /* raft's files go in DATA/raft/ (created) */
    const char *client_addr;        /* this node's gRPC HOST:PORT as other nodes dial it */
    uint32_t    snapshot_entries;   /* raft snapshot every N entries, keeping N behind it;
                                       0 = RN_CTL_SNAPSHOT_ENTRIES */
    int         join;               /* `--join`: never bootstrap; a member adds this node
                                       (rn_ctl_member_change) */
    const char *kafka_addr;         /* its Kafka advertised HOST:PORT, registered with
                                       the client address; NULL: no Kafka front */
} rn_ctl_opts_t;

int  rn_ctl_start(const rn_ctl_opts_t *o, rn_ctl_t **out, char *errmsg);
void rn_ctl_stop(rn_ctl_t *c);      /* NULL is a no-op; any thread but the loop's */

/* ---- the view readers see ------------------------------------------------ */

typedef struct rn_ctl_vnode {
    uint64_t id;
    char     raft[RN_CLUSTER_ADDR_MAX];     /* "" when not in the raft configuration */
    char     client[RN_CLUSTER_ADDR_MAX];   /* "" until registered */
    char     role[8];                       /* "voter", "standby", "spare", "removed" */
    char     kafka[RN_CLUSTER_ADDR_MAX];    /* Kafka advertised address; "" none */
    int      live;
    uint64_t incarnation;
    int64_t  live_changed_ms;
    int64_t  heartbeat_age_ms;              /* on the leader; else -1 */
} rn_ctl_vnode_t;

typedef enum { RN_CTL_UNAVAILABLE, RN_CTL_FOLLOWER, RN_CTL_CANDIDATE, RN_CTL_LEADER } rn_ctl_role_t;

typedef struct rn_ctl_topics rn_ctl_topics_t;   /* shared by views until topics change */

typedef struct rn_ctl_view {
    int            refs;                    /* atomic */
    uint64_t       self, leader, term, commit_index, applied_index;
    rn_ctl_role_t  role;
    size_t         n;
    rn_ctl_vnode_t nodes[RN_CLUSTER_MAX_NODES];   /* ascending id */
    /* The state holds this start's own registration (live): everything the
     * cluster committed before this node (re)started is applied here, so
     * the queue leaders it shows are not those of before a restart. */
    int                   self_current;
    size_t                ntopics;          /* the replicated topics (fsm.h), ascending */
    const rn_fsm_topic_t *topics;
    uint64_t              topics_gen;       /* changes whenever topics or tombstones do */
    size_t                ntombs;           /* deleted replicated topics (fsm.h, DROP) */
    const rn_fsm_tomb_t  *tombs;
    rn_ctl_topics_t      *tblk;
} rn_ctl_view_t;

/* The view's node with this id (borrowed from v), or NULL. */
const rn_ctl_vnode_t *rn_ctl_view_node(const rn_ctl_view_t *v, uint64_t id);
/* The view's queue (topic, queue) (borrowed from v), or NULL. */
const rn_fsm_pq_t *rn_ctl_view_queue(const rn_ctl_view_t *v, const char *topic, uint32_t queue);

/* The current view: immutable, valid until rn_ctl_view_put. Never NULL
 * after rn_ctl_start succeeded. */
const rn_ctl_view_t *rn_ctl_view_get(rn_ctl_t *c);
void rn_ctl_view_put(const rn_ctl_view_t *v);
const char *rn_ctl_role_name(rn_ctl_role_t r);

/* A heartbeat from node id (any thread; queued for the loop thread, which
 * acts on it only while leader). 0, or RN_EFULL when the queue is full (the
 * next heartbeat will do). */
int rn_ctl_heartbeat(rn_ctl_t *c, uint64_t id, const char *client, const char *kafka,
                     uint64_t start_id);

/* ---- replicated topics ---------------------------------------------------- */

#define RN_CTL_DEFAULT_REPLICAS 3

/* Commit a replicated topic (any thread but the loop's; blocks up to
 * timeout_ms). The controller leader gives each queue `replicas` replicas
 * (0: min(RN_CTL_DEFAULT_REPLICAS, live nodes)) among the live registered
 * nodes, leaders spread over them, epoch 1, ISR = replicas. 0 once the
 * entry is applied on the leader; RN_EEXIST, RN_EINVAL (errmsg says why);
 * -EBUSY when fewer nodes are live than the replicas asked for;
 * -EAGAIN when this node is not the ready controller leader (*leader: the
 * leader it knows, 0 none); -ETIMEDOUT. */
int rn_ctl_create_topic(rn_ctl_t *c, const char *name, uint32_t nqueues, uint32_t replicas,
                        uint32_t timeout_ms, uint64_t *leader, char *errmsg);

/* Delete replicated topic name (DeleteTopic in a cluster): the controller
 * leader commits a DROP entry (fsm.h); every node then deletes its own
 * copy (a node that was down, when it comes back: the tombstones). Blocks
 * up to timeout_ms; 0 once applied on the leader; RN_ENOTFOUND (not
 * replicated), -EAGAIN (*leader as in rn_ctl_create_topic), -ETIMEDOUT. */
int rn_ctl_drop_topic(rn_ctl_t *c, const char *name, uint32_t timeout_ms, uint64_t *leader,
                      char *errmsg);

/* Grow replicated topic name to nqueues queues (AlterTopic in a cluster):
 * the controller leader commits a GROW entry (fsm.h), the new queues placed
 * as a new topic's are, with the topic's replica count. Blocks up to
 * timeout_ms; 0 once applied on the leader; RN_ENOTFOUND (not replicated),
 * RN_EINVAL (not more queues, or more than RN_FSM_MAX_QUEUES), -EBUSY (too
 * few live nodes), -EAGAIN (*leader as in rn_ctl_create_topic),
 * -ETIMEDOUT. */
int rn_ctl_grow_topic(rn_ctl_t *c, const char *name, uint32_t nqueues, uint32_t timeout_ms,
                      uint64_t *leader, char *errmsg);

/* ---- queue reassignment --------------------------------------------------- */

/* Move (topic, queue)'s replicas to ids[0..n) (`runnel queue reassign`):
 * the controller leader commits a REPLICAS entry (fsm.h) whose replicas are
 * the current ones and the new, the target ids; the new ones copy the log
 * from the leader like any follower and join the ISR once caught up; when
 * every target member is in the ISR, a second entry makes the replicas the
 * target (a leader outside it hands over, epoch + 1). Any thread but the
 * loop's; blocks up to timeout_ms for the first entry only. 0 once it is
 * applied on the leader; RN_ENOTFOUND (no such replicated queue),
 * RN_EEXIST (already on these replicas), RN_EINVAL (an id twice, not a live
 * member, too many; errmsg says which); -EBUSY (the queue has no leader
 * now), -EAGAIN (not the ready controller leader, *leader as in
 * rn_ctl_create_topic, or the queue changed meanwhile), -ETIMEDOUT. A new
 * reassignment of a queue replaces a pending one's target. */
int rn_ctl_reassign(rn_ctl_t *c, const char *topic, uint32_t queue, const uint64_t *ids,
                    uint32_t n, uint32_t timeout_ms, uint64_t *leader, char *errmsg);

/* ---- membership ------------------------------------------------------------ */

/* Add node id at raft_addr to the cluster (add = 1: libraft adds it as a
 * spare, catches it up, makes it a voter) or remove it (add = 0). Any
 * thread but the loop's; blocks up to timeout_ms. One change at a time
 * (libraft's rule). 0 once committed; RN_EEXIST (a voter already),
 * RN_ENOTFOUND (remove: not a member), RN_EINVAL (the address is another
 * node's, the cluster is full, the node holds replicas or is this leader:
 * errmsg says which); -EBUSY while another change is under way; -EAGAIN
 * when this node is not the ready controller leader (*leader as in
 * rn_ctl_create_topic); -EIO when raft did not commit it; -ETIMEDOUT (an
 * added node that is not running stays a spare, promoted once it runs and
 * has caught up; errmsg says how to start it). */
int rn_ctl_member_change(rn_ctl_t *c, int add, uint64_t id, const char *raft_addr,
                         uint32_t timeout_ms, uint64_t *leader, char *errmsg);

/* Log ends of replicated queues a node holds (failover picks the in-sync
 * replica with the longest log). Copied; at most RN_CTL_MAX_ENDS are kept. */
#define RN_CTL_MAX_ENDS 128
typedef struct rn_ctl_end {
    char     topic[RN_FSM_TOPIC_MAX];
    uint32_t queue;
    int64_t  end;
} rn_ctl_end_t;
/* This node's (the replica module, any thread): sent with its heartbeats. */
void rn_ctl_set_log_ends(rn_ctl_t *c, const rn_ctl_end_t *e, size_t n);
/* A peer's, from its heartbeat (any thread). */
void rn_ctl_peer_log_ends(rn_ctl_t *c, uint64_t id, const rn_ctl_end_t *e, size_t n);

/* The leader `from` of (topic, queue) at `epoch` asks for this ISR (any
 * thread; queued). The controller leader commits it when from still leads
 * at that epoch, the ISR holds from, lies within the replicas, and every
 * member is live; a follower node passes its own requests on with its
 * next heartbeat. Lost requests are asked again by the queue leader. */
void rn_ctl_isr_request(rn_ctl_t *c, uint64_t from, const char *topic, uint32_t queue,
                        uint64_t epoch, const uint64_t *isr, uint32_t nisr);

/* ---- group offsets (OFFSETS entries, fsm.h) ---------------------------------- */

/* Commit the group offsets v[0..n) (each names its group; any thread but
 * the loop's; blocks up to timeout_ms; v is copied). The ready controller
 * leader puts the commits waiting for it into one entry, as many as fit in
 * RN_FSM_OFFSETS_MAX_BYTES. 0 once the entry is applied on the leader
 * (committed: a majority holds it), *index its raft index; RN_EINVAL or
 * RN_EFULL (errmsg) when the state refuses it; -EAGAIN when this node is
 * not the ready controller leader (*leader: the one it knows, 0 none) or
 * lost the leadership before the entry was committed; -ETIMEDOUT. */
int rn_ctl_commit_offsets(rn_ctl_t *c, const rn_fsm_goff_t *v, size_t n, uint32_t timeout_ms,
                          uint64_t *leader, uint64_t *index, char *errmsg);

/* The node's meta.db follows the applied offsets: the replica manager takes
 * what was applied since its last take (*v malloc'd, caller frees; *n may
 * be 0; in apply order, so a later offset of a key comes after an earlier
 * one), writes it, then says so with rn_ctl_offsets_written(upto, ok): ok
 * = 1 marks every entry up to raft index upto as in meta.db; ok = 0 (the
 * write failed) makes the next take give every offset of the state. */
int  rn_ctl_offsets_take(rn_ctl_t *c, rn_fsm_goff_t **v, size_t *n, uint64_t *upto);
void rn_ctl_offsets_written(rn_ctl_t *c, uint64_t upto, int ok);
/* Block until this node's meta.db holds every offset of the entries up to
 * raft index `index` (at most timeout_ms): 0, or -ETIMEDOUT. */
int  rn_ctl_offsets_wait(rn_ctl_t *c, uint64_t index, uint32_t timeout_ms);

#endif
