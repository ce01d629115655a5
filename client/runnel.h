/*
 * runnel.h — librunnel, the runnel client library: one API whether the log
 * is an embedded data directory or a runneld broker across the network.
 *
 *   rn_client_t *c;
 *   rn_client_open_server("127.0.0.1:7070", NULL, &c, err);   // or _open_data(dir)
 *   rn_producer_t *p;
 *   rn_producer_open(c, "logs", NULL, &p, err);
 *   rn_producer_send(p, RN_PRODUCER_ANY_QUEUE, &rec, on_delivery, ctx, err);
 *   rn_producer_close(p, err);                   // flushes: every record delivered
 *   rn_client_consumer_t *k;
 *   rn_client_consumer_open(c, NULL, &k, err);
 *   rn_client_consumer_assign(k, "logs", 0, 0, err);
 *   while (rn_client_consumer_poll(k, &b, 100, err) == 1) use(b.records, b.count);
 *   rn_client_consumer_close(k);
 *   rn_client_close(c);
 *
 * Modes. rn_client_open_data locks and opens a data directory in this process
 * (logical-queues/datadir.h): admin calls run the core functions directly,
 * the producer appends with rn_datadir_append, the consumer is
 * logical-queues/consumer.h. rn_client_open_server talks to runneld over
 * gRPC (client/rpc.h, proto/runnel.proto); nothing is sent until the first
 * call. Every function behaves the same in both modes and returns the same
 * error codes with the same messages (the broker runs the same core code and
 * sends its errmsg back as the status message); where the protocol carries
 * less than the embedded metadata, the difference is named on the function.
 *
 * Errors: every function returns 0 (or 1 where said) or a negative code (a
 * negated errno or one of the RN_E* codes below), and writes one line
 * naming the problem into errmsg (RN_ERRMSG_SIZE bytes, may be NULL). Remote calls map gRPC status codes as
 * client/rpc.h says (e.g. an unreachable broker is -ECONNREFUSED with
 * "cannot reach HOST:PORT: ...").
 *
 * Ownership: arrays returned through `**out` are malloc'd and the caller
 * frees them with free() (rn_client_topic_desc_free for a description).
 * Strings passed in are copied when kept. Records handed to
 * rn_producer_send are copied (encoded) before it returns.
 *
 * Threading: an rn_client_t may be used by several threads at once, and a
 * producer and consumers on one client may run in different threads. A
 * producer is safe to call from several threads (one mutex); a consumer is
 * used by one thread at a time. Delivery callbacks run on a thread of the
 * producer (embedded: its acknowledger; remote: the gRPC completion thread),
 * never inside rn_producer_send; they must be quick and must not call
 * rn_producer_flush or rn_producer_close. Sending from a callback is
 * allowed: the completed records' memory is given back before their
 * callbacks run, and such a send never waits for memory (over the cap it
 * returns RN_EFULL, whatever `block` says, since it would wait for itself).
 * Close order: producers and consumers before their client.
 *
 * Stands alone: this header includes only standard C headers and defines
 * every type, constant and error code its functions use; the client's
 * handles are opaque. As sqliteInt.h includes sqlite3.h, the core's plain
 * public definitions live here once and the internal headers that used to
 * hold them include this file: common/error.h (the error table,
 * RN_ERRMSG_SIZE), batch/batch.h (rn_record_t, rn_header_t, the codecs),
 * log/log.h (rn_fsync_mode_t, rn_log_opts_t), logical-queues/meta.h (the
 * rn_meta_* records and name limits), logical-queues/datadir.h (positions,
 * rn_datadir_store_info_t), logical-queues/group.h (group targets and
 * changes), logical-queues/consumer.h (rn_consumer_batch_t) and etl/etl.h
 * (rn_etl_status_t). Everything else of the core stays behind it, and
 * tests/test_client.c:test_header_stands_alone compiles a use of every type
 * here against this file alone.
 */
#ifndef RN_RUNNEL_H
#define RN_RUNNEL_H

#include <stddef.h>
#include <stdint.h>

/* ---- Error codes ---------------------------------------------------------- */
/* (the core's one table; common/error.h adds the errmsg formatters) */

#define RN_EBASE (-10000)

/* X(name, value, message); every project code is below RN_EBASE, so none
 * collides with a negated errno. */
#define RN_ERRORS(X)                                                        \
    X(RN_ECORRUPT,  RN_EBASE - 1,  "data is corrupt")                       \
    X(RN_EFULL,     RN_EBASE - 2,  "limit reached")                         \
    X(RN_ECLOSED,   RN_EBASE - 3,  "handle is closed")                      \
    X(RN_ESTICKY,   RN_EBASE - 4,  "store refuses writes after an I/O error; reopen it") \
    X(RN_ERANGE,    RN_EBASE - 5,  "offset out of range")                   \
    X(RN_ENOTFOUND, RN_EBASE - 6,  "not found")                             \
    X(RN_EEXIST,    RN_EBASE - 7,  "already exists")                        \
    X(RN_EINVAL,    RN_EBASE - 8,  "invalid argument")                      \
    X(RN_ELOCKED,   RN_EBASE - 9,  "data directory is locked by another process") \
    X(RN_ETOOBIG,   RN_EBASE - 10, "too large")                             \
    X(RN_EFORMAT,   RN_EBASE - 11, "unsupported format or version")         \
    X(RN_ESQLITE,   RN_EBASE - 12, "metadata store error")                  \
    X(RN_EDAMAGED,  RN_EBASE - 13, "offsets are damaged or lost")

enum {
#define RN_X_ENUM(name, value, msg) name = value,
    RN_ERRORS(RN_X_ENUM)
#undef RN_X_ENUM
};

/* A static string naming the code; never NULL. Works for -errno as well. */
const char *rn_strerror(int code);

/* Size of every errmsg buffer. */
#define RN_ERRMSG_SIZE 256

/* ---- Records (batch/batch.h) --------------------------------------------- */

#define RN_BATCH_CODEC_NONE    0
#define RN_BATCH_CODEC_GZIP    1      /* read only: Kafka clients' codecs */
#define RN_BATCH_CODEC_SNAPPY  2
#define RN_BATCH_CODEC_LZ4     3
#define RN_BATCH_CODEC_ZSTD    4

typedef struct rn_header {
    const uint8_t *key;
    uint32_t       key_len;
    const uint8_t *value;      /* NULL with value_len -1 for a null value */
    int32_t        value_len;
} rn_header_t;

/* A record. Pointers are views: into the batch bytes or an iterator's scratch
 * when decoded; the caller's own memory when building. key_len/value_len of
 * -1 mean null. */
typedef struct rn_record {
    int64_t            timestamp;     /* ms since the epoch */
    int64_t            offset;        /* set by the iterator; ignored when building */
    const uint8_t     *key;
    int32_t            key_len;
    const uint8_t     *value;
    int32_t            value_len;
    const rn_header_t *headers;
    uint32_t           header_count;
} rn_record_t;

/* ---- Store options (log/log.h) ---------------------------------------------- */

typedef enum rn_fsync_mode {
    RN_FSYNC_ALWAYS,
    RN_FSYNC_GROUP,
    RN_FSYNC_INTERVAL,
    RN_FSYNC_NEVER,
} rn_fsync_mode_t;

/* log/log.h says what each mode guarantees (when an append is durable and
 * when it is acknowledged). */
typedef struct rn_log_opts {
    rn_fsync_mode_t fsync;
    uint32_t fsync_interval_ms;   /* for RN_FSYNC_INTERVAL */
    uint32_t group_window_us;     /* how long the group flusher gathers appends */
    uint64_t segment_bytes;       /* preallocated size of each commit-log segment */
    uint32_t index_file_units;    /* units per index file */
    uint32_t max_batch_bytes;     /* larger appends are refused (RN_ETOOBIG) */
    int64_t  retention_ms;        /* drop segments whose newest batch is older; 0 = keep */
    uint64_t retention_bytes;     /* drop oldest segments past this total; 0 = keep */
    int      accept_loss;         /* open even when acknowledged data is missing (see
                                     rn_log_open); 0 = refuse */
} rn_log_opts_t;

/* ---- Metadata records (logical-queues/meta.h) ------------------------------ */

#define RN_META_TOPIC_NAME_MAX   249
#define RN_META_NAME_MAX         249      /* groups and checkpoints */
#define RN_META_PATH_MAX         1024     /* a store's path */

typedef struct rn_meta_topic {
    int64_t  id;
    char     name[RN_META_TOPIC_NAME_MAX + 1];
    int64_t  created_ms;
    uint32_t queues;             /* logical queues 0..queues-1 */
} rn_meta_topic_t;

/* A mapping item of a logical queue (DESIGN.md §3): logical offset L in it
 * is physical offset L - logical_start + physical_start. */
typedef struct rn_meta_item {
    uint32_t queue;              /* logical queue */
    uint32_t seq;                /* position in the queue's item list, from 0 */
    int64_t  logical_start;
    uint32_t physical_id;
    uint32_t store_id;           /* store holding the physical queue */
    int64_t  physical_start;
    int64_t  physical_end;       /* -1 while the item is open */
} rn_meta_item_t;

typedef struct rn_meta_offset {
    int64_t  topic_id;
    char     topic[RN_META_TOPIC_NAME_MAX + 1];   /* filled by reads, ignored by writes */
    uint32_t queue;
    int64_t  offset;                             /* next offset to read */
} rn_meta_offset_t;

typedef struct rn_meta_group {
    char     name[RN_META_NAME_MAX + 1];
    int64_t  created_ms;
    uint32_t offsets;            /* (topic, queue) pairs with a committed offset */
    uint32_t checkpoints;
} rn_meta_group_t;

typedef struct rn_meta_checkpoint {
    int64_t  id;
    char     group[RN_META_NAME_MAX + 1];
    char     name[RN_META_NAME_MAX + 1];
    int64_t  created_ms;
    uint32_t offsets;
} rn_meta_checkpoint_t;

/* An access control entry in text form (logical-queues/acl.h gives it
 * meaning): principal (a user, "*", "anonymous"), resource ("topic",
 * "group", "pipeline", "cluster"), pattern ("literal", "prefixed"), name
 * ("" for the cluster), operation ("produce", "consume", "describe",
 * "create", "alter", "delete", "query", "pipeline", "all"). */
#define RN_META_ACL_PRINCIPAL_MAX 64
typedef struct rn_meta_acl {
    char    principal[RN_META_ACL_PRINCIPAL_MAX + 1];
    char    resource[16];
    char    pattern[16];
    char    name[RN_META_NAME_MAX + 1];
    char    operation[16];
    int64_t created_ms;
} rn_meta_acl_t;

/* ---- Positions, stores, group targets (logical-queues/datadir.h, group.h) -- */

/* A start position. */
typedef enum rn_datadir_pos_kind {
    RN_POS_EARLIEST, RN_POS_LATEST, RN_POS_OFFSET, RN_POS_TIME
} rn_datadir_pos_kind_t;

typedef struct rn_datadir_store_info {
    uint32_t id;
    char     path[RN_META_PATH_MAX + 1];   /* as registered */
    uint32_t physical_queues;              /* of live mapping items */
    uint64_t bytes;                        /* commit-log bytes in use (rn_log_bytes) */
} rn_datadir_store_info_t;

typedef enum rn_group_target_kind {
    RN_TARGET_EARLIEST, RN_TARGET_LATEST, RN_TARGET_OFFSET, RN_TARGET_TIME, RN_TARGET_CHECKPOINT
} rn_group_target_kind_t;

typedef struct rn_group_target {
    rn_group_target_kind_t kind;
    int64_t value;                              /* offset or timestamp (ms) */
    char    checkpoint[RN_META_NAME_MAX + 1];
} rn_group_target_t;

/* One offset a reset changed: before/after -1 = none. */
typedef struct rn_group_change {
    char     topic[RN_META_TOPIC_NAME_MAX + 1];
    uint32_t queue;
    int64_t  before, after;
} rn_group_change_t;

/* ---- A polled batch (logical-queues/consumer.h) ----------------------------- */

typedef struct rn_consumer_batch {
    const char        *topic;
    uint32_t           queue;
    const rn_record_t *records;      /* count records, offsets ascending, views */
    uint32_t           count;
    int64_t            next_offset;  /* the queue's position after this batch */
} rn_consumer_batch_t;

/* ---- A pipeline's status (etl/etl.h) ------------------------------------------ */

#define RN_ETL_MAX_QUEUES            1024     /* source / sink queues a status reports */

typedef struct rn_etl_status {
    char     name[256];
    int      paused;
    char     sink[1040];                 /* "topic out", "file /x", "stdout" */
    char     source[256];
    uint64_t in, out, late, errors;      /* as of the last checkpoint */
    int64_t  watermark;                  /* INT64_MIN: none */
    int64_t  checkpoint_ms;              /* 0: never */
    uint32_t nq;                         /* source queues (<= RN_ETL_MAX_QUEUES) */
    int64_t  lag[RN_ETL_MAX_QUEUES];     /* high watermark - checkpointed position */
} rn_etl_status_t;

/* ---- The client handle --------------------------------------------------- */

typedef struct rn_client rn_client_t;

typedef struct rn_client_opts {
    const char   *holder;       /* embedded: the LOCK holder text (default "librunnel") */
    int           create;       /* embedded: create the data directory when absent */
    rn_log_opts_t log;          /* embedded: store options (fsync policy, batch limit) */
    uint32_t      timeout_ms;   /* remote: deadline of each admin call; 0 = none (30000) */
    /* embedded: told what each store's recovery did (rn_datadir_opts_t.report) */
    void        (*report)(void *arg, int warn, const char *line);
    void         *report_arg;
    /* remote: TLS, PEM file names (NULL = not given). With tls_ca, or
     * tls_cert and tls_key, the connection is TLS only: tls_ca holds the CA
     * certificates the broker's certificate must chain to (NULL: the
     * system's roots), tls_cert and tls_key (both or neither) this client's
     * certificate for a broker started with --tls-client-ca. The files are
     * read and checked by rn_client_open_server; a bad one fails it, with
     * errmsg naming the file (as --tls-ca, --tls-cert or --tls-key). */
    const char   *tls_ca, *tls_cert, *tls_key;
    /* remote: a bearer token (`runnel user add`) sent as "authorization:
     * Bearer TOKEN" with every call; NULL = none. A malformed one fails
     * rn_client_open_server. */
    const char   *token;
    /* remote, a cluster: "HOST:PORT[,HOST:PORT...]", the nodes to ask for
     * the cluster's queue leaders (ClusterStatus) when a queue's leader is
     * unknown or has moved (NULL: the target only). Producers and consumers
     * then send each queue's calls to its leader and follow it on
     * NOT_LEADER or a transport failure (client.c invariant 5). */
    const char   *bootstrap;
} rn_client_opts_t;

void rn_client_opts_default(rn_client_opts_t *o);

/* Embedded: lock and open DIR (errors of rn_datadir_open; RN_ELOCKED names
 * the process holding it). */
int  rn_client_open_data(const char *dir, const rn_client_opts_t *o, rn_client_t **out,
                         char *errmsg);
/* Remote: a channel to runneld at "HOST:PORT"; connects lazily, so an
 * unreachable broker shows on the first call. */
int  rn_client_open_server(const char *target, const rn_client_opts_t *o, rn_client_t **out,
                           char *errmsg);
/* Close (embedded: flush and unlock the data directory; the first error is
 * returned). NULL is a no-op. */
int  rn_client_close(rn_client_t *c);
int  rn_client_is_remote(const rn_client_t *c);
/* The directory or "HOST:PORT", as given; lives as long as c. */
const char *rn_client_where(const rn_client_t *c);

/* Key placement, the one definition: murmur2(key) & 0x7fffffff mod n
 * (MurmurHash2 32-bit, seed 0x9747b28c, as Kafka's default partitioner). */
uint32_t rn_murmur2(const uint8_t *key, size_t len);
uint32_t rn_client_partition(const uint8_t *key, size_t len, uint32_t nqueues);

/* ---- Topics, queues, stores ----------------------------------------------- */

/* rn_meta_topic_t: name, queues, created_ms; id is the metadata id embedded
 * and 0 remote. */
int  rn_client_topic_create(rn_client_t *c, const char *name, uint32_t queues,
                            rn_meta_topic_t *out, char *errmsg);
/* rn_client_topic_create in a cluster: each queue gets `replicas` replicas
 * (0: the cluster's default, min(3, nodes); cluster/README.md). A
 * replicas count other than 0 needs a server (RN_EINVAL embedded). */
int  rn_client_topic_create_replicated(rn_client_t *c, const char *name, uint32_t queues,
                                       uint32_t replicas, rn_meta_topic_t *out, char *errmsg);
int  rn_client_topic_alter(rn_client_t *c, const char *name, uint32_t queues,
                           rn_meta_topic_t *out, char *errmsg);
/* Delete a topic (rn_datadir_topic_delete; remote: DeleteTopic). */
int  rn_client_topic_delete(rn_client_t *c, const char *name, char *errmsg);
int  rn_client_topic_get(rn_client_t *c, const char *name, rn_meta_topic_t *out, char *errmsg);
int  rn_client_topic_list(rn_client_t *c, rn_meta_topic_t **out, size_t *n, char *errmsg);

typedef struct rn_client_queue_desc {
    uint32_t        queue;
    int64_t         log_start, high_watermark;
    uint64_t        batches;
    rn_meta_item_t *items;       /* by seq; the last is open (physical_end -1) */
    size_t          nitems;
} rn_client_queue_desc_t;

typedef struct rn_client_topic_desc {
    rn_meta_topic_t         topic;
    rn_client_queue_desc_t *queues;   /* topic.queues entries, by queue */
} rn_client_topic_desc_t;

/* Each queue's range, batch count and mapping items. Free with
 * rn_client_topic_desc_free (also after a failure). */
int  rn_client_topic_describe(rn_client_t *c, const char *name, rn_client_topic_desc_t *out,
                              char *errmsg);
void rn_client_topic_desc_free(rn_client_topic_desc_t *d);

/* A queue's [log_start, high_watermark]; RN_ENOTFOUND naming the topics or
 * the valid queues. */
int  rn_client_queue_range(rn_client_t *c, const char *topic, uint32_t queue, int64_t *log_start,
                           int64_t *high_watermark, char *errmsg);
/* The offset a position names: RN_POS_EARLIEST, _LATEST, _OFFSET (RN_ERANGE
 * outside the range: "offset 9 is outside topic 't' queue 0's range [0, 5]")
 * or _TIME (first record with timestamp >= value; the high watermark when
 * none). */
int  rn_client_resolve(rn_client_t *c, const char *topic, uint32_t queue,
                       rn_datadir_pos_kind_t kind, int64_t value, int64_t *offset, char *errmsg);

/* Seal the queue's open item and open a new one (rn_datadir_remap): in the
 * same store (store NULL) or the store at path `store` on the machine
 * holding the data (relative to its data directory, or absolute). */
int  rn_client_queue_remap(rn_client_t *c, const char *topic, uint32_t queue, const char *store,
                           rn_meta_item_t *sealed, rn_meta_item_t *opened, char *errmsg);
/* Every store by id. Remote: physical_queues is counted from every topic's
 * mapping items (one DescribeTopic per topic). */
int  rn_client_stores(rn_client_t *c, rn_datadir_store_info_t **out, size_t *n, char *errmsg);

/* ---- Consumer groups and checkpoints -------------------------------------- */

/* rn_meta_offset_t: topic (name), queue, offset; topic_id is ignored on
 * input and only meaningful embedded on output. */

/* Remote: ListGroups names groups only, so created_ms is -1 (unknown), and
 * offsets/checkpoints are counted with one FetchOffsets and one
 * ListCheckpoints per group. */
int  rn_client_group_list(rn_client_t *c, rn_meta_group_t **out, size_t *n, char *errmsg);
/* The group's committed offsets (topic NULL: on every topic), by topic and
 * queue. RN_ENOTFOUND for an unknown group, naming the groups. */
int  rn_client_group_offsets(rn_client_t *c, const char *group, const char *topic,
                             rn_meta_offset_t **out, size_t *n, char *errmsg);
/* Commit offsets in one transaction, each checked against its queue's range
 * first (nothing is written when one is out of range). */
int  rn_client_group_commit(rn_client_t *c, const char *group, const rn_meta_offset_t *v,
                            size_t n, char *errmsg);
/* rn_group_reset: *changes (caller frees) lists each offset compared with
 * its value before and after (-1: none / removed). Remote: computed from the
 * group's offsets read before the reset and those the broker returns. */
int  rn_client_group_reset(rn_client_t *c, const char *group, const char *topic,
                           const rn_group_target_t *to, rn_group_change_t **changes, size_t *n,
                           char *errmsg);
int  rn_client_checkpoint_create(rn_client_t *c, const char *group, const char *name,
                                 rn_meta_checkpoint_t *out, char *errmsg);
/* Checkpoints of group (NULL: of every group); an unknown group is
 * RN_ENOTFOUND. */
int  rn_client_checkpoint_list(rn_client_t *c, const char *group, rn_meta_checkpoint_t **out,
                               size_t *n, char *errmsg);
int  rn_client_checkpoint_drop(rn_client_t *c, const char *group, const char *name,
                               char *errmsg);

/* Where a reader of topic's queues[0..n) starts (rn_group_start_offset):
 * from a checkpoint target, the checkpoint's offset (queues it lacks: the log
 * start); else group's committed offset when group != NULL and it has one
 * (an unknown group has none); else `from` resolved. A stored offset outside
 * its queue's range is RN_ERANGE naming the range. */
int  rn_client_start_offsets(rn_client_t *c, const char *topic, const uint32_t *queues, size_t n,
                             const char *group, const rn_group_target_t *from, int64_t *offsets,
                             char *errmsg);

/* ---- Producer -------------------------------------------------------------- */

typedef struct rn_producer rn_producer_t;

#define RN_PRODUCER_ANY_QUEUE UINT32_MAX

typedef enum rn_acks {
    RN_ACKS_DURABLE = 0,   /* after the store made the batch durable (its fsync policy) */
    RN_ACKS_WRITTEN = 1,   /* remote: after the broker wrote it, before fsync */
} rn_acks_t;

typedef struct rn_producer_opts {
    uint32_t  linger_ms;          /* send a batch this long after its first record (5) */
    uint32_t  batch_bytes;        /* batch size limit, 128..16 MiB (65536) */
    int       codec;              /* RN_BATCH_CODEC_NONE (default) or _LZ4 */
    uint32_t  max_in_flight;      /* requests in flight over all queues (16); at most one
                                     per queue, so a queue's batches land in order */
    size_t    max_memory;         /* bytes of records buffered, sealed or in flight
                                     (64 MiB); one record is always admitted */
    int       block;              /* 1 (default): send waits for room under max_memory;
                                     0: send returns RN_EFULL at once */
    rn_acks_t acks;               /* RN_ACKS_DURABLE */
    uint32_t  delivery_timeout_ms; /* remote: a record not acknowledged this long after
                                     send is failed (120000, as Kafka's
                                     delivery.timeout.ms); 0: no limit */
    uint32_t  retries;            /* remote: resends of a request after a transport
                                     failure (UINT32_MAX: until delivery_timeout_ms);
                                     0: none */
    uint32_t  retry_backoff_ms;   /* remote: wait before the first resend (50), doubled
                                     per resend up to retry_backoff_max_ms, jittered */
    uint32_t  retry_backoff_max_ms; /* remote: longest wait between resends (2000) */
    uint32_t  request_timeout_ms; /* remote: deadline of one Produce attempt (30000) */
    uint32_t  request_bytes;      /* batch bytes per request, more when one batch is
                                     larger; at most 5 batches (1 MiB) */
} rn_producer_opts_t;

void rn_producer_opts_default(rn_producer_opts_t *o);

/* What happened to one record. */
typedef struct rn_delivery {
    int         rc;          /* 0: stored and acknowledged; else why not */
    const char *errmsg;      /* "" when rc == 0; valid during the callback */
    const char *topic;
    uint32_t    queue;
    int64_t     offset;      /* the record's offset when rc == 0, else -1 */
    int64_t     timestamp;
} rn_delivery_t;
typedef void (*rn_delivery_fn)(void *arg, const rn_delivery_t *d);

typedef struct rn_producer_stats {
    uint64_t records, batches, bytes;     /* acknowledged: records, batches, batch bytes */
    uint64_t failed;                      /* records delivered with an error */
    uint64_t retries;                     /* requests resent */
    uint64_t unknown;                     /* of `failed`: records whose last attempt got
                                             no answer (a transport failure), so they
                                             may have been stored; the others failed
                                             are known not to be */
    uint64_t duplicates;                  /* batches the broker reported as already stored */
} rn_producer_stats_t;

/* A producer for one topic (its queue count is read now; `topic alter`
 * later is not seen by this producer). Remote: asks the broker for an
 * idempotent producer id and epoch (InitProducer); every batch carries them
 * with a per-queue base sequence, so a resent request is stored once. A
 * request that fails in transport (the broker restarting) is resent with
 * backoff until delivery_timeout_ms; the id and epoch are kept. */
int  rn_producer_open(rn_client_t *c, const char *topic, const rn_producer_opts_t *o,
                      rn_producer_t **out, char *errmsg);
uint32_t rn_producer_queues(const rn_producer_t *p);

/* Add one record (copied) to its queue's accumulator: `queue`, or with
 * RN_PRODUCER_ANY_QUEUE the key's queue (rn_client_partition) or, without a
 * key, the round-robin queue (which moves on each time its batch is sealed).
 * r->timestamp < 0 means now. cb (may be NULL) is called once with the
 * outcome. A batch is sealed when full or linger_ms after its first record.
 * Errors: RN_ENOTFOUND for a queue outside the topic (naming them);
 * RN_ETOOBIG for a record that cannot fit in a batch_bytes batch; RN_EFULL
 * (block = 0) at the memory cap; after a delivery failure the producer is
 * failed and send returns that error (rn_producer_flush tells it). */
int  rn_producer_send(rn_producer_t *p, uint32_t queue, const rn_record_t *r, rn_delivery_fn cb,
                      void *arg, char *errmsg);
/* Seal every accumulator now and wait until every record sent so far was
 * delivered (callbacks run). Returns 0, or the first delivery error of the
 * producer's life with its message. */
int  rn_producer_flush(rn_producer_t *p, char *errmsg);
void rn_producer_stats(rn_producer_t *p, rn_producer_stats_t *out);
/* Flush, stop the producer's threads and free it; returns what flush
 * returned. NULL is a no-op. */
int  rn_producer_close(rn_producer_t *p, char *errmsg);

/* Fault injection for tests (STYLE: injectable failures): when set, called
 * at named points; a nonzero return fails the operation there as if the
 * network had. Points: "produce:response" (a Produce answered OK: the answer
 * is dropped and the request fails with -ETIMEDOUT after the broker stored
 * it, so the retry goes through the idempotent path);
 * "producer:sequence-near-wrap" (checked when a producer opens: its queues'
 * sequences start at 2^31 - 10, so they wrap soon). Process-global; set it
 * before starting producers. */
extern int (*rn_client_test_hook)(const char *point);

/* ---- Consumer -------------------------------------------------------------- */

typedef struct rn_client_consumer rn_client_consumer_t;

typedef struct rn_client_consumer_opts {
    uint32_t fetch_bytes;    /* bytes asked per queue and fetch (1 MiB) */
    uint32_t prefetch;       /* remote: fetch responses buffered ahead per queue (2) */
    int      skip_damaged;   /* embedded: go past damaged offsets, counted (rn_consumer_opts_t) */
    uint32_t reconnect_timeout_ms; /* remote: a queue's Fetches failing in transport (runneld
                                      down or restarting) are resent from the same offset,
                                      with backoff, this long before poll returns the error
                                      (0: 120000; UINT32_MAX: forever) */
} rn_client_consumer_opts_t;

int  rn_client_consumer_open(rn_client_t *c, const rn_client_consumer_opts_t *o,
                             rn_client_consumer_t **out, char *errmsg);
/* Waits for the consumer's fetches still in flight (each at most its long
 * poll wait). NULL is a no-op. */
void rn_client_consumer_close(rn_client_consumer_t *k);
/* Offsets and ranges gone past under skip_damaged (0 remote). */
void rn_client_consumer_skipped(rn_client_consumer_t *k, uint64_t *offsets, uint64_t *ranges);

/* Read (topic, queue) from offset, which must lie in [log_start,
 * high_watermark] (RN_ERANGE naming the range); twice is RN_EEXIST. */
int  rn_client_consumer_assign(rn_client_consumer_t *k, const char *topic, uint32_t queue,
                               int64_t offset, char *errmsg);
/* Stop the queue at offset end (-1: no end): poll never returns a record at
 * or past it. */
int  rn_client_consumer_set_end(rn_client_consumer_t *k, const char *topic, uint32_t queue,
                                int64_t end, char *errmsg);
int  rn_client_consumer_seek(rn_client_consumer_t *k, const char *topic, uint32_t queue,
                             int64_t offset, char *errmsg);
int  rn_client_consumer_seek_time(rn_client_consumer_t *k, const char *topic, uint32_t queue,
                                  int64_t ts, char *errmsg);

/* 1 with *b = the next batch's records at or after the position (the same
 * order as logical-queues/consumer.h: assigned queues round-robin by batch);
 * 0 when no queue had a record within timeout_ms (0: one look, which remote
 * is one round trip) or every queue reached its end; negative on an error.
 * Remote: a queue at its high watermark is long-polled (Fetch max_wait_ms)
 * until data arrives or the timeout passes.
 * Lifetime: b's records (keys, values, headers) are views into the
 * consumer's buffers, valid until the next poll, seek, assign or close of
 * this consumer; b->topic lives as long as the assignment. */
int  rn_client_consumer_poll(rn_client_consumer_t *k, rn_consumer_batch_t *b, uint32_t timeout_ms,
                             char *errmsg);
int  rn_client_consumer_position(rn_client_consumer_t *k, const char *topic, uint32_t queue,
                                 int64_t *offset, char *errmsg);
/* The queue's log start and high watermark now (remote: one ListOffsets). */
int  rn_client_consumer_watermarks(rn_client_consumer_t *k, const char *topic, uint32_t queue,
                                   int64_t *log_start, int64_t *high_watermark, char *errmsg);
/* Commit every assigned queue's position for group, in one transaction. */
int  rn_client_consumer_commit(rn_client_consumer_t *k, const char *group, char *errmsg);

/* ---- ETL pipelines (etl/etl.h; runneld's pipeline RPCs) ------------------------ */

/* A pipeline's status: counts, watermark and lag as of its last checkpoint,
 * and its state: remote, runneld's ("running", "paused", "stopped",
 * "failed: <reason>"); embedded, "paused" or "stopped" (pipelines run only
 * inside `runnel pipeline run` or runneld). */
typedef struct rn_client_pipeline {
    rn_etl_status_t s;
    char            state[RN_ERRMSG_SIZE + 16];
} rn_client_pipeline_t;

/* Store (and, remote, start) a CREATE PIPELINE; bad SQL is RN_EINVAL with
 * the SQL error. */
int  rn_client_pipeline_create(rn_client_t *c, const char *sql, char *errmsg);
/* name NULL: every pipeline. *out malloc'd (caller frees). */
int  rn_client_pipeline_status(rn_client_t *c, const char *name, rn_client_pipeline_t **out,
                               size_t *n, char *errmsg);
/* Pause (remote: the running pipeline stops after a final checkpoint) or
 * resume (remote: it starts again). */
int  rn_client_pipeline_pause(rn_client_t *c, const char *name, int paused, char *errmsg);
/* Delete the definition and its state (remote: stopped first). */
int  rn_client_pipeline_drop(rn_client_t *c, const char *name, char *errmsg);

/* ---- access control lists (logical-queues/acl.h) ------------------------------ */

/* Embedded: the data directory's meta.db (a broker serving it loads them at
 * start); remote: the AddAcl, RemoveAcl and ListAcls RPCs, effective from
 * the broker's next call. add: RN_EEXIST for a duplicate; remove:
 * RN_ENOTFOUND; a refusal is -EPERM with the broker's message. list: *out
 * malloc'd (caller frees). */
int  rn_client_acl_add(rn_client_t *c, const rn_meta_acl_t *a, char *errmsg);
int  rn_client_acl_remove(rn_client_t *c, const rn_meta_acl_t *a, char *errmsg);
int  rn_client_acl_list(rn_client_t *c, rn_meta_acl_t **out, size_t *n, char *errmsg);

#endif
