/*
 * meta.h — the topic metadata store (SQLite): topic → logical queues →
 * mapping items → physical queues of a store (DESIGN.md §3).
 *
 * A logical queue is an ordered list of mapping items
 *   {seq, logical_start, physical queue id, physical_start, physical_end}
 * where the last item is open (physical_end = -1 here, NULL in SQL). Logical
 * offset L in an item is physical offset L - logical_start + physical_start.
 * Today every logical queue has exactly one item, opened at creation with
 * logical_start = physical_start = 0; remapping (a later issue) seals the open
 * item and appends a new one, which this schema already holds.
 *
 * Physical queue ids are allocated from a persistent counter and never reused.
 *
 * Every function returns 0 or a negative code (common/error.h) and writes a
 * message naming the problem into errmsg (RN_ERRMSG_SIZE bytes, may be NULL).
 * A handle is used by one thread at a time.
 */
#ifndef RN_META_H
#define RN_META_H

#include <stddef.h>
#include <stdint.h>

/* Version of the schema this code writes (PRAGMA user_version). */
#define RN_META_SCHEMA_VERSION   1
#define RN_META_TOPIC_NAME_MAX   249
#define RN_META_MAX_QUEUES       10000

typedef struct rn_meta rn_meta_t;

typedef struct rn_meta_topic {
    int64_t  id;
    char     name[RN_META_TOPIC_NAME_MAX + 1];
    int64_t  created_ms;
    uint32_t queues;             /* logical queues 0..queues-1 */
} rn_meta_topic_t;

typedef struct rn_meta_item {
    uint32_t queue;              /* logical queue */
    uint32_t seq;                /* position in the queue's item list, from 0 */
    int64_t  logical_start;
    uint32_t physical_id;
    uint32_t store_id;           /* store holding the physical queue */
    int64_t  physical_start;
    int64_t  physical_end;       /* -1 while the item is open */
} rn_meta_item_t;

/* Open (create = 1: creating when absent) the store at path, upgrading an
 * older schema in one transaction. RN_EFORMAT for a newer schema or a SQLite
 * file that is not a runnel metadata store; RN_ECORRUPT when SQLite says the
 * file is not a database or is damaged; RN_ESQLITE otherwise. */
int  rn_meta_open(const char *path, int create, rn_meta_t **out, char *errmsg);
void rn_meta_close(rn_meta_t *m);                 /* NULL is a no-op */

/* The schema version found in the file (after rn_meta_open: the current one). */
int  rn_meta_schema_version(rn_meta_t *m, int *version, char *errmsg);

/* RN_EINVAL unless name is 1..249 characters of [A-Za-z0-9._-] and not "."
 * or "..". */
int  rn_meta_check_topic_name(const char *name, char *errmsg);

/* Register store id at path (relative to the data directory); a no-op when
 * already registered with the same path, RN_EEXIST with another. */
int  rn_meta_store_register(rn_meta_t *m, uint32_t id, const char *path, char *errmsg);

/* Create a topic with `queues` logical queues (1..RN_META_MAX_QUEUES), each
 * with one open item on a new physical queue of store_id. New physical ids
 * are >= min_physical_id (the caller passes one past the largest queue id its
 * store already holds, so a lost or foreign meta.db cannot alias old data).
 * One transaction. RN_EEXIST for a duplicate name, RN_EINVAL for a bad name
 * or count, RN_ENOTFOUND for an unregistered store. *out may be NULL. */
int  rn_meta_topic_create(rn_meta_t *m, const char *name, uint32_t queues,
                          uint32_t store_id, uint32_t min_physical_id,
                          rn_meta_topic_t *out, char *errmsg);

/* RN_ENOTFOUND when absent; errmsg names the topic and the first few that
 * exist ("unknown topic 'x'; topics: a, b"). */
int  rn_meta_topic_get(rn_meta_t *m, const char *name, rn_meta_topic_t *out, char *errmsg);

/* All topics by name; *out is malloc'd (caller frees with free(); NULL when
 * *n is 0). */
int  rn_meta_topic_list(rn_meta_t *m, rn_meta_topic_t **out, size_t *n, char *errmsg);

/* The items of one logical queue ordered by seq (queue = UINT32_MAX: of every
 * queue, ordered by queue then seq). *items is malloc'd, caller frees with
 * free(). RN_ENOTFOUND when the topic has no such queue. */
int  rn_meta_items(rn_meta_t *m, int64_t topic_id, uint32_t queue,
                   rn_meta_item_t **items, size_t *n, char *errmsg);

#endif
