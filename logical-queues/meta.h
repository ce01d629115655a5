/*
 * meta.h — the topic metadata store (SQLite): topic → logical queues →
 * mapping items → physical queues of a store (DESIGN.md §3).
 *
 * A logical queue is an ordered list of mapping items
 *   {seq, logical_start, physical queue id, physical_start, physical_end}
 * where the last item is open (physical_end = -1 here, NULL in SQL). Logical
 * offset L in an item is physical offset L - logical_start + physical_start.
 * A queue starts with one item, opened at creation with logical_start =
 * physical_start = 0; rn_meta_remap seals the open item and appends a new one
 * on a fresh physical queue (physical_start 0), in one transaction. Retention
 * drops sealed items from the front (rn_meta_items_drop).
 *
 * Physical queue ids are allocated from a persistent counter and never reused;
 * every physical queue belongs to exactly one item.
 *
 * Consumer groups: committed offset = next offset to read, per (group, topic,
 * logical queue). A checkpoint is a named copy of a group's offsets on every
 * topic and queue, taken in one transaction. Group and checkpoint names follow
 * the topic name rules; checkpoint names are unique within their group.
 *
 * Durability: structural changes (topics, stores, items, checkpoints) commit
 * with synchronous=FULL (durable on return). Offset commits use
 * synchronous=NORMAL by default: durable against a process crash (kill -9),
 * while a power cut may lose the latest ones (consumers then re-read:
 * at-least-once); rn_meta_set_offset_sync(m, 1) makes them FULL too. Any later
 * FULL commit makes every earlier offset commit durable as well.
 *
 * Every function returns 0 or a negative code (common/error.h) and writes a
 * message naming the problem into errmsg (RN_ERRMSG_SIZE bytes, may be NULL).
 * A handle is used by one thread at a time.
 */
#ifndef RN_META_H
#define RN_META_H

#include <stddef.h>
#include <stdint.h>

#include "client/runnel.h"     /* the topic, item, offset, group and checkpoint records */

/* Version of the schema this code writes (PRAGMA user_version). */
#define RN_META_SCHEMA_VERSION   8
#define RN_META_MAX_QUEUES       10000
#define RN_META_MAX_STORES       64
#define RN_META_STREAM_FIELDS_MAX 8192    /* a stream's field list text */
#define RN_META_PIPELINE_SQL_MAX 16384    /* a pipeline's CREATE PIPELINE text */

typedef struct rn_meta rn_meta_t;

/* RN_META_TOPIC_NAME_MAX, RN_META_NAME_MAX, RN_META_PATH_MAX and the
 * records rn_meta_topic_t, rn_meta_item_t, rn_meta_offset_t, rn_meta_group_t
 * and rn_meta_checkpoint_t are defined in client/runnel.h. */

typedef struct rn_meta_store {
    uint32_t id;
    char     path[RN_META_PATH_MAX + 1];   /* relative to the data directory, or absolute */
    uint32_t physical_queues;              /* physical queues of live items on it */
} rn_meta_store_t;

/* Called at named points of multi-step changes (e.g. "remap:in-transaction",
 * just before COMMIT), so crash tests can stop a process exactly there. NULL
 * (the default) does nothing. Process-global; set it before starting work. */
extern void (*rn_meta_test_hook)(const char *point);
void rn_meta_test_point(const char *point);

/* Open (create = 1: creating when absent) the store at path, upgrading an
 * older schema in one transaction. RN_EFORMAT for a newer schema or a SQLite
 * file that is not a runnel metadata store; RN_ECORRUPT when SQLite says the
 * file is not a database or is damaged; RN_ESQLITE otherwise. */
int  rn_meta_open(const char *path, int create, rn_meta_t **out, char *errmsg);
void rn_meta_close(rn_meta_t *m);                 /* NULL is a no-op */

/* The schema version found in the file (after rn_meta_open: the current one). */
int  rn_meta_schema_version(rn_meta_t *m, int *version, char *errmsg);

/* RN_EINVAL unless name is 1..249 characters of [A-Za-z0-9._-] and not "."
 * or "..". kind ("topic", "group", "checkpoint") names it in errmsg. */
int  rn_meta_check_name(const char *kind, const char *name, char *errmsg);
int  rn_meta_check_topic_name(const char *name, char *errmsg);

/* This data directory's random identity (written once, at creation). */
int  rn_meta_datadir_id(rn_meta_t *m, int64_t *id, char *errmsg);

/* Offset commits with synchronous FULL (1) or NORMAL (0, the default). */
int  rn_meta_set_offset_sync(rn_meta_t *m, int full, char *errmsg);

/* Register store id at path (relative to the data directory); a no-op when
 * already registered with the same path, RN_EEXIST with another. */
int  rn_meta_store_register(rn_meta_t *m, uint32_t id, const char *path, char *errmsg);

/* Every store, by id; *out malloc'd (caller frees). */
int  rn_meta_store_list(rn_meta_t *m, rn_meta_store_t **out, size_t *n, char *errmsg);

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

/* Add queues to a topic so it has `queues` (more than today), each with one
 * open item on a new physical queue of store_id (ids >= min_physical_id).
 * RN_EINVAL naming the current count when queues is not more than it. */
int  rn_meta_topic_alter(rn_meta_t *m, const char *name, uint32_t queues, uint32_t store_id,
                         uint32_t min_physical_id, rn_meta_topic_t *out, char *errmsg);

/* Delete a topic in one transaction: its row, the items of every queue, the
 * offset reservations of their physical queues, and every consumer group's
 * and checkpoint's offsets on it (groups and checkpoints themselves stay).
 * The physical queues' records and data are not touched: their ids are
 * never reused, so a topic created again under the name starts empty at
 * offset 0. Stream definitions naming the topic stay. RN_ENOTFOUND naming
 * the topics that exist. *out (may be NULL) receives the deleted topic. */
int  rn_meta_topic_delete(rn_meta_t *m, const char *name, rn_meta_topic_t *out, char *errmsg);

/* Seal the open item of (topic_id, queue) — which must be item open_seq,
 * else RN_EEXIST (someone remapped it meanwhile) — at physical_end, and open
 * item open_seq + 1 at the logical end on a new physical queue of store_id
 * (id >= min_physical_id, physical_start 0). new_store_path != NULL registers
 * store_id at that path in the same transaction. One transaction: on any
 * failure nothing changed. *opened receives the new item. */
typedef struct rn_meta_remap {
    int64_t     topic_id;
    uint32_t    queue;
    uint32_t    open_seq;
    int64_t     physical_end;
    uint32_t    store_id;
    const char *new_store_path;
    uint32_t    min_physical_id;
} rn_meta_remap_t;
int  rn_meta_remap(rn_meta_t *m, const rn_meta_remap_t *r, rn_meta_item_t *opened,
                   char *errmsg);

/* Drop the sealed items of (topic_id, queue) whose seq is below below_seq
 * (retention emptied them). RN_EINVAL if that would drop the open item. */
int  rn_meta_items_drop(rn_meta_t *m, int64_t topic_id, uint32_t queue, uint32_t below_seq,
                        char *errmsg);

/* ---- consumer groups and checkpoints ---------------------------------- */

/* RN_ENOTFOUND naming the groups that exist when `name` is not one. */
int  rn_meta_group_get(rn_meta_t *m, const char *name, rn_meta_group_t *out, char *errmsg);
/* All groups by name; *out malloc'd (caller frees). */
int  rn_meta_group_list(rn_meta_t *m, rn_meta_group_t **out, size_t *n, char *errmsg);

/* Upsert offsets of group (created when absent) in one transaction. */
int  rn_meta_offsets_commit(rn_meta_t *m, const char *group, const rn_meta_offset_t *v,
                            size_t n, char *errmsg);
/* The group's offsets (topic_id < 0: of every topic) ordered by topic name
 * and queue; an unknown group has none. *out malloc'd (caller frees). */
int  rn_meta_offsets_get(rn_meta_t *m, const char *group, int64_t topic_id,
                         rn_meta_offset_t **out, size_t *n, char *errmsg);
/* In one transaction: delete the group's offsets on topic_id (< 0: on every
 * topic), then write v (creating the group when absent). */
int  rn_meta_offsets_replace(rn_meta_t *m, const char *group, int64_t topic_id,
                             const rn_meta_offset_t *v, size_t n, char *errmsg);

/* Snapshot every offset of group as checkpoint `name`, atomically. The group
 * must exist (RN_ENOTFOUND naming groups); RN_EEXIST for a duplicate name. */
int  rn_meta_checkpoint_create(rn_meta_t *m, const char *group, const char *name,
                               rn_meta_checkpoint_t *out, char *errmsg);
/* Checkpoints of group (NULL: of every group) by group, then creation. */
int  rn_meta_checkpoint_list(rn_meta_t *m, const char *group, rn_meta_checkpoint_t **out,
                             size_t *n, char *errmsg);
/* group NULL: the name must be unique across groups (RN_EINVAL naming the
 * groups that have it). RN_ENOTFOUND naming the valid checkpoints. */
int  rn_meta_checkpoint_get(rn_meta_t *m, const char *group, const char *name,
                            rn_meta_checkpoint_t *out, char *errmsg);
/* A checkpoint's offsets ordered by topic name and queue. */
int  rn_meta_checkpoint_offsets(rn_meta_t *m, int64_t checkpoint_id, rn_meta_offset_t **out,
                                size_t *n, char *errmsg);
int  rn_meta_checkpoint_drop(rn_meta_t *m, const char *group, const char *name, char *errmsg);

/* ---- stream definitions (streamsql's CREATE STREAM, schema version 3) --- */

/* A declared stream: a name over a topic, the record format, the field list
 * as streamsql writes it ("\"level\" TEXT, \"at\" INTEGER") and the field
 * holding the event time ("" when the record timestamp is used). This file
 * stores them; streamsql/ gives them meaning. */
typedef struct rn_meta_stream {
    char    name[RN_META_NAME_MAX + 1];
    char    topic[RN_META_TOPIC_NAME_MAX + 1];
    char    format[16];
    char    timestamp[RN_META_NAME_MAX + 1];
    char    fields[RN_META_STREAM_FIELDS_MAX + 1];
    int64_t created_ms;
} rn_meta_stream_t;

/* RN_EEXIST for a duplicate name; RN_ENOTFOUND when s->topic is not a topic
 * (naming the topics); RN_EINVAL for a bad name or too long a field list. */
int  rn_meta_stream_create(rn_meta_t *m, const rn_meta_stream_t *s, char *errmsg);
/* RN_ENOTFOUND naming the streams that exist. */
int  rn_meta_stream_get(rn_meta_t *m, const char *name, rn_meta_stream_t *out, char *errmsg);
/* All streams by name; *out malloc'd (caller frees; NULL when *n is 0). */
int  rn_meta_stream_list(rn_meta_t *m, rn_meta_stream_t **out, size_t *n, char *errmsg);
/* RN_ENOTFOUND naming the streams that exist. */
int  rn_meta_stream_drop(rn_meta_t *m, const char *name, char *errmsg);
/* "streams: a, b" or "there are no streams" into out. */
void rn_meta_stream_names(rn_meta_t *m, char *out, size_t size);

/* ---- SQL functions (streamsql's CREATE FUNCTION, schema version 6) ---------- */

#define RN_META_FUNCTION_MAX 8192     /* a function's definition text */

/* A function: its name and its definition as streamsql writes it
 * ("mask(ip TEXT) RETURNS TEXT AS '...'"). This file stores them; streamsql/
 * gives them meaning. */
typedef struct rn_meta_function {
    char    name[RN_META_NAME_MAX + 1];
    char    def[RN_META_FUNCTION_MAX + 1];
    int64_t created_ms;
} rn_meta_function_t;

/* RN_EEXIST for a duplicate name; RN_EINVAL for a bad name or too long a text. */
int  rn_meta_function_create(rn_meta_t *m, const rn_meta_function_t *f, char *errmsg);
/* All functions by name; *out malloc'd (caller frees; NULL when *n is 0). */
int  rn_meta_function_list(rn_meta_t *m, rn_meta_function_t **out, size_t *n, char *errmsg);
/* RN_ENOTFOUND when there is no such function. */
int  rn_meta_function_drop(rn_meta_t *m, const char *name, char *errmsg);

/* ---- tables (streamsql's CREATE TABLE, schema version 8) ------------------ */

#define RN_META_TABLE_MAX 8192        /* a table's definition text */

/* A lookup table: its name and its definition as streamsql writes it
 * ("CREATE TABLE \"users\" (\"id\" INTEGER PRIMARY KEY, ...) WITH (...)").
 * This file stores them; streamsql/ (table.c) gives them meaning. */
typedef struct rn_meta_table {
    char    name[RN_META_NAME_MAX + 1];
    char    def[RN_META_TABLE_MAX + 1];
    int64_t created_ms;
} rn_meta_table_t;

/* RN_EEXIST for a duplicate name; RN_EINVAL for a bad name or too long a text. */
int  rn_meta_table_create(rn_meta_t *m, const rn_meta_table_t *t, char *errmsg);
/* RN_ENOTFOUND (errmsg naming the tables that exist) when there is none. */
int  rn_meta_table_get(rn_meta_t *m, const char *name, rn_meta_table_t *out, char *errmsg);
/* All tables by name; *out malloc'd (caller frees; NULL when *n is 0). */
int  rn_meta_table_list(rn_meta_t *m, rn_meta_table_t **out, size_t *n, char *errmsg);
/* RN_ENOTFOUND when there is no such table. */
int  rn_meta_table_drop(rn_meta_t *m, const char *name, char *errmsg);

/* ---- offset reservations (schema version 5) -------------------------------- */

/* The offset of a physical queue below which offsets may have been handed
 * out: the data directory raises it, in steps, before it acknowledges an
 * append that reaches past it, so that an open which finds the queue's store
 * removed moves the queue's next offset there and never hands an offset out
 * twice. set keeps the larger of the stored and the given value (one
 * synchronous=FULL transaction); get gives 0 when none was recorded. */
int  rn_meta_reserve_set(rn_meta_t *m, uint32_t physical_id, int64_t upto, char *errmsg);
int  rn_meta_reserve_get(rn_meta_t *m, uint32_t physical_id, int64_t *upto, char *errmsg);

/* ---- access control lists (logical-queues/acl.h gives them meaning; schema 6) --
 *
 * An entry is stored as text, validated by acl.c before it gets here: the
 * principal, the resource type ("topic", "group", "cluster", "pipeline"),
 * the pattern ("literal", "prefixed"), the resource name ("" for the
 * cluster) and the operation (rn_meta_acl_t, client/runnel.h). Entries are
 * unique. */

/* RN_EEXIST when the same entry exists. */
int  rn_meta_acl_add(rn_meta_t *m, const rn_meta_acl_t *a, char *errmsg);
/* RN_ENOTFOUND when no such entry exists. */
int  rn_meta_acl_remove(rn_meta_t *m, const rn_meta_acl_t *a, char *errmsg);
/* Every entry, ordered; *out malloc'd (caller frees; NULL when *n is 0). */
int  rn_meta_acl_list(rn_meta_t *m, rn_meta_acl_t **out, size_t *n, char *errmsg);

/* ---- pipelines (etl/, schema version 4) ---------------------------------- */

/* A pipeline's definition: its name and the CREATE PIPELINE text (etl/
 * gives it meaning), whether it is paused, and when it last checkpointed
 * (0: never). Its checkpoint state is a blob read and written separately. */
typedef struct rn_meta_pipeline {
    char    name[RN_META_NAME_MAX + 1];
    char    sql[RN_META_PIPELINE_SQL_MAX + 1];
    char    creator[RN_META_ACL_PRINCIPAL_MAX + 1];   /* "" = the operator (schema 6) */
    int     paused;
    int64_t created_ms;
    int64_t checkpoint_ms;
} rn_meta_pipeline_t;

/* RN_EEXIST for a duplicate; RN_EINVAL for a bad name; RN_ETOOBIG for SQL
 * longer than RN_META_PIPELINE_SQL_MAX. creator: the principal whose rights
 * the pipeline runs with (server/acl), NULL or "" for the operator (an
 * embedded or --pipelines-file creation). */
int  rn_meta_pipeline_create(rn_meta_t *m, const char *name, const char *sql,
                             const char *creator, char *errmsg);
/* RN_ENOTFOUND naming the pipelines that exist (also for the functions below). */
int  rn_meta_pipeline_get(rn_meta_t *m, const char *name, rn_meta_pipeline_t *out,
                          char *errmsg);
/* All pipelines by name; *out malloc'd (caller frees; NULL when *n is 0). */
int  rn_meta_pipeline_list(rn_meta_t *m, rn_meta_pipeline_t **out, size_t *n, char *errmsg);
int  rn_meta_pipeline_set_paused(rn_meta_t *m, const char *name, int paused, char *errmsg);
/* Deletes the definition and its checkpoint state. */
int  rn_meta_pipeline_drop(rn_meta_t *m, const char *name, char *errmsg);
/* Replace the checkpoint state (NULL: none) and time, in ONE statement, so
 * one transaction: either the whole new state is visible or the old one. */
int  rn_meta_pipeline_checkpoint(rn_meta_t *m, const char *name, const void *state, size_t len,
                                 int64_t at_ms, char *errmsg);
/* The checkpoint state, malloc'd into *state (caller frees; NULL, 0: none). */
int  rn_meta_pipeline_state(rn_meta_t *m, const char *name, uint8_t **state, size_t *len,
                            char *errmsg);

#endif
