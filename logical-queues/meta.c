/*
 * meta.c — the topic metadata store in SQLite (see meta.h for the model).
 *
 * Schema (version 1, PRAGMA user_version):
 *
 *   stores(id, path)                       a store = an rn_log directory
 *   topics(id, name UNIQUE, created_ms)
 *   physical_queues(id, store_id)          id allocated from counters, never reused
 *   queue_items(topic_id, queue, seq, logical_start,
 *               physical_id, physical_start, physical_end NULL = open)
 *   counters(name, value)                  'next_physical_id'
 *
 * Invariants:
 *  1. Every change runs in one BEGIN IMMEDIATE transaction; a failure rolls it
 *     back whole, so a topic exists with all its queues or not at all.
 *  2. Each logical queue has exactly one open item (a partial UNIQUE index
 *     enforces "at most one"; creation writes one).
 *  3. Physical ids come from counters.next_physical_id, which only grows:
 *     an id is never handed out twice, even after a topic is deleted.
 *  4. The schema is upgraded step by step from the file's user_version to
 *     RN_META_SCHEMA_VERSION, each step with its version bump in one
 *     transaction; a newer file is refused, never downgraded.
 *  5. Durability: WAL with synchronous=FULL. Metadata changes are rare (topic
 *     creation, later remaps and offset commits) and a topic whose creation
 *     was lost by a power cut after a producer had already written to its
 *     physical queues would orphan that data; FULL makes each commit durable
 *     before it returns, at one fsync per change.
 */
#include "logical-queues/meta.h"

#include "common/error.h"
#include "common/sys.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define META_BUSY_TIMEOUT_MS 5000

struct rn_meta {
    sqlite3 *db;
};

/* Schema steps: migrations[v] takes a file from version v to v + 1. */
static const char *const migrations[RN_META_SCHEMA_VERSION] = {
    /* 0 -> 1 */
    "CREATE TABLE stores("
    "  id   INTEGER PRIMARY KEY CHECK (id >= 0 AND id <= 4294967295),"
    "  path TEXT NOT NULL UNIQUE);"
    "CREATE TABLE topics("
    "  id         INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  name       TEXT NOT NULL UNIQUE,"
    "  created_ms INTEGER NOT NULL);"
    "CREATE TABLE physical_queues("
    "  id       INTEGER PRIMARY KEY CHECK (id >= 0 AND id <= 4294967295),"
    "  store_id INTEGER NOT NULL REFERENCES stores(id));"
    "CREATE TABLE queue_items("
    "  topic_id       INTEGER NOT NULL REFERENCES topics(id),"
    "  queue          INTEGER NOT NULL CHECK (queue >= 0),"
    "  seq            INTEGER NOT NULL CHECK (seq >= 0),"
    "  logical_start  INTEGER NOT NULL CHECK (logical_start >= 0),"
    "  physical_id    INTEGER NOT NULL REFERENCES physical_queues(id),"
    "  physical_start INTEGER NOT NULL CHECK (physical_start >= 0),"
    "  physical_end   INTEGER CHECK (physical_end IS NULL OR physical_end >= physical_start),"
    "  PRIMARY KEY (topic_id, queue, seq)) WITHOUT ROWID;"
    "CREATE UNIQUE INDEX queue_items_open ON queue_items(topic_id, queue)"
    "  WHERE physical_end IS NULL;"
    "CREATE INDEX queue_items_physical ON queue_items(physical_id);"
    "CREATE TABLE counters("
    "  name  TEXT PRIMARY KEY,"
    "  value INTEGER NOT NULL) WITHOUT ROWID;"
    "INSERT INTO counters VALUES ('next_physical_id', 0);",
};

/* Map a SQLite failure to a runnel code and message. */
static int sql_err(rn_meta_t *m, int src, const char *what, char *errmsg)
{
    int code = RN_ESQLITE;
    int prim = src & 0xff;
    if (prim == SQLITE_NOTADB || prim == SQLITE_CORRUPT) code = RN_ECORRUPT;
    else if (prim == SQLITE_NOMEM) code = -ENOMEM;
    return rn_errf(errmsg, code, "meta.db: %s: %s", what,
                   m && m->db ? sqlite3_errmsg(m->db) : sqlite3_errstr(src));
}

static int exec(rn_meta_t *m, const char *sql, const char *what, char *errmsg)
{
    int rc = sqlite3_exec(m->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? 0 : sql_err(m, rc, what, errmsg);
}

static int prepare(rn_meta_t *m, const char *sql, sqlite3_stmt **st, char *errmsg)
{
    int rc = sqlite3_prepare_v2(m->db, sql, -1, st, NULL);
    return rc == SQLITE_OK ? 0 : sql_err(m, rc, "prepare", errmsg);
}

static int begin(rn_meta_t *m, char *errmsg)
{
    return exec(m, "BEGIN IMMEDIATE", "begin transaction", errmsg);
}

static int commit(rn_meta_t *m, char *errmsg)
{
    return exec(m, "COMMIT", "commit", errmsg);
}

static void rollback(rn_meta_t *m)
{
    if (!sqlite3_get_autocommit(m->db))
        sqlite3_exec(m->db, "ROLLBACK", NULL, NULL, NULL);
}

/* A single integer from a one-row query. */
static int query_int(rn_meta_t *m, const char *sql, int64_t *out, char *errmsg)
{
    sqlite3_stmt *st = NULL;
    int rc = prepare(m, sql, &st, errmsg);
    if (rc != 0) return rc;
    int s = sqlite3_step(st);
    if (s == SQLITE_ROW) {
        *out = sqlite3_column_int64(st, 0);
        rc = 0;
    } else {
        rc = s == SQLITE_DONE ? rn_errf(errmsg, RN_ESQLITE, "meta.db: no row for %s", sql)
                              : sql_err(m, s, "query", errmsg);
    }
    sqlite3_finalize(st);
    return rc;
}

int rn_meta_schema_version(rn_meta_t *m, int *version, char *errmsg)
{
    int64_t v = 0;
    int rc = query_int(m, "PRAGMA user_version", &v, errmsg);
    if (rc == 0) *version = (int)v;
    return rc;
}

static int migrate(rn_meta_t *m, char *errmsg)
{
    int rc = begin(m, errmsg);
    if (rc != 0) return rc;
    /* Read the version inside the write transaction: another process may
     * have upgraded the file since we looked. */
    int v;
    rc = rn_meta_schema_version(m, &v, errmsg);
    if (rc != 0) goto fail;
    if (v > RN_META_SCHEMA_VERSION) {
        rc = rn_errf(errmsg, RN_EFORMAT,
                     "meta.db has schema version %d, newer than this runnel's %d; "
                     "use a newer runnel", v, RN_META_SCHEMA_VERSION);
        goto fail;
    }
    if (v == 0) {
        int64_t tables = 0;
        rc = query_int(m, "SELECT count(*) FROM sqlite_master", &tables, errmsg);
        if (rc != 0) goto fail;
        if (tables != 0) {
            rc = rn_errf(errmsg, RN_EFORMAT,
                         "meta.db is a SQLite database but not a runnel metadata store "
                         "(it has tables and no schema version)");
            goto fail;
        }
    }
    for (; v < RN_META_SCHEMA_VERSION; v++) {
        char sql[64];
        rc = exec(m, migrations[v], "schema upgrade", errmsg);
        if (rc != 0) goto fail;
        snprintf(sql, sizeof sql, "PRAGMA user_version = %d", v + 1);
        rc = exec(m, sql, "schema version", errmsg);
        if (rc != 0) goto fail;
    }
    return commit(m, errmsg);
fail:
    rollback(m);
    return rc;
}

int rn_meta_open(const char *path, int create, rn_meta_t **out, char *errmsg)
{
    *out = NULL;
    rn_meta_t *m = calloc(1, sizeof *m);
    if (!m) return rn_errf(errmsg, -ENOMEM, "out of memory");
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (create ? SQLITE_OPEN_CREATE : 0);
    int rc = sqlite3_open_v2(path, &m->db, flags, NULL);
    if (rc != SQLITE_OK) {
        if (rc == SQLITE_CANTOPEN && !create)
            rc = rn_errf(errmsg, -ENOENT, "cannot open %s: %s", path,
                         m->db ? sqlite3_errmsg(m->db) : sqlite3_errstr(rc));
        else
            rc = sql_err(m, rc, "open", errmsg);
        goto fail;
    }
    sqlite3_extended_result_codes(m->db, 1);
    rc = sqlite3_busy_timeout(m->db, META_BUSY_TIMEOUT_MS);
    if (rc != SQLITE_OK) { rc = sql_err(m, rc, "busy timeout", errmsg); goto fail; }

    /* The first statement reads the file: a non-database fails here. */
    sqlite3_stmt *st = NULL;
    rc = prepare(m, "PRAGMA journal_mode = WAL", &st, errmsg);
    if (rc != 0) goto fail;
    int s = sqlite3_step(st);
    int wal = s == SQLITE_ROW &&
              sqlite3_stricmp((const char *)sqlite3_column_text(st, 0), "wal") == 0;
    if (s != SQLITE_ROW) rc = sql_err(m, s, "set WAL mode", errmsg);
    else if (!wal) rc = rn_errf(errmsg, RN_ESQLITE, "meta.db: cannot switch to WAL mode");
    sqlite3_finalize(st);
    if (rc != 0) goto fail;

    rc = exec(m, "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON", "pragmas", errmsg);
    if (rc != 0) goto fail;
    rc = migrate(m, errmsg);
    if (rc != 0) goto fail;
    *out = m;
    return 0;
fail:
    rn_meta_close(m);
    return rc;
}

void rn_meta_close(rn_meta_t *m)
{
    if (!m) return;
    sqlite3_close(m->db);   /* every statement is finalized by its user */
    free(m);
}

int rn_meta_check_topic_name(const char *name, char *errmsg)
{
    size_t len = strlen(name);
    int ok = len >= 1 && len <= RN_META_TOPIC_NAME_MAX &&
             strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
    for (size_t i = 0; ok && i < len; i++) {
        char c = name[i];
        ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '.' || c == '_' || c == '-';
    }
    if (ok) return 0;
    return rn_errf(errmsg, RN_EINVAL,
                   "invalid topic name '%.64s%s': use 1-%d characters of A-Z a-z 0-9 . _ - "
                   "(not '.' or '..')", name, len > 64 ? "..." : "", RN_META_TOPIC_NAME_MAX);
}

int rn_meta_store_register(rn_meta_t *m, uint32_t id, const char *path, char *errmsg)
{
    sqlite3_stmt *ins = NULL, *sel = NULL;
    int rc = begin(m, errmsg);
    if (rc != 0) return rc;
    rc = prepare(m, "INSERT OR IGNORE INTO stores(id, path) VALUES (?1, ?2)", &ins, errmsg);
    if (rc != 0) goto out;
    sqlite3_bind_int64(ins, 1, id);
    sqlite3_bind_text(ins, 2, path, -1, SQLITE_STATIC);
    int s = sqlite3_step(ins);
    if (s != SQLITE_DONE) { rc = sql_err(m, s, "register store", errmsg); goto out; }
    rc = prepare(m, "SELECT path FROM stores WHERE id = ?1", &sel, errmsg);
    if (rc != 0) goto out;
    sqlite3_bind_int64(sel, 1, id);
    s = sqlite3_step(sel);
    if (s != SQLITE_ROW) {
        rc = s == SQLITE_DONE
                 ? rn_errf(errmsg, RN_EEXIST, "meta.db: store path %s is registered "
                           "under another id than %u", path, id)
                 : sql_err(m, s, "read store", errmsg);
        goto out;
    }
    const char *have = (const char *)sqlite3_column_text(sel, 0);
    if (!have || strcmp(have, path) != 0) {
        rc = rn_errf(errmsg, RN_EEXIST, "meta.db: store %u is at %.100s, not %.100s", id,
                     have ? have : "(null)", path);
        goto out;
    }
    sqlite3_finalize(sel); sel = NULL;
    sqlite3_finalize(ins); ins = NULL;
    return commit(m, errmsg);
out:
    sqlite3_finalize(sel);
    sqlite3_finalize(ins);
    rollback(m);
    return rc;
}

static int topic_from_row(sqlite3_stmt *st, rn_meta_topic_t *t)
{
    const unsigned char *name = sqlite3_column_text(st, 1);
    int len = sqlite3_column_bytes(st, 1);
    if (!name || len < 0 || len > RN_META_TOPIC_NAME_MAX) return RN_ECORRUPT;
    memset(t, 0, sizeof *t);
    t->id = sqlite3_column_int64(st, 0);
    memcpy(t->name, name, (size_t)len);
    t->name[len] = '\0';
    t->created_ms = sqlite3_column_int64(st, 2);
    int64_t q = sqlite3_column_int64(st, 3);
    if (q < 0 || q > RN_META_MAX_QUEUES) return RN_ECORRUPT;
    t->queues = (uint32_t)q;
    return 0;
}

#define TOPIC_SELECT                                                          \
    "SELECT t.id, t.name, t.created_ms,"                                      \
    "  (SELECT count(DISTINCT queue) FROM queue_items WHERE topic_id = t.id)" \
    " FROM topics t"

int rn_meta_topic_create(rn_meta_t *m, const char *name, uint32_t queues,
                         uint32_t store_id, uint32_t min_physical_id,
                         rn_meta_topic_t *out, char *errmsg)
{
    sqlite3_stmt *st = NULL, *pq = NULL, *item = NULL;
    int rc = rn_meta_check_topic_name(name, errmsg);
    if (rc != 0) return rc;
    if (queues < 1 || queues > RN_META_MAX_QUEUES)
        return rn_errf(errmsg, RN_EINVAL, "a topic has 1..%d queues, not %u",
                       RN_META_MAX_QUEUES, queues);
    rc = begin(m, errmsg);
    if (rc != 0) return rc;

    int64_t n = 0;
    rc = prepare(m, "SELECT count(*) FROM stores WHERE id = ?1", &st, errmsg);
    if (rc != 0) goto out;
    sqlite3_bind_int64(st, 1, store_id);
    int s = sqlite3_step(st);
    if (s != SQLITE_ROW) { rc = sql_err(m, s, "find store", errmsg); goto out; }
    n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st); st = NULL;
    if (n != 1) { rc = rn_errf(errmsg, RN_ENOTFOUND, "meta.db: no store %u", store_id); goto out; }

    rc = prepare(m, "INSERT INTO topics(name, created_ms) VALUES (?1, ?2)", &st, errmsg);
    if (rc != 0) goto out;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, rn_sys.now_ms());
    s = sqlite3_step(st);
    if ((s & 0xff) == SQLITE_CONSTRAINT) {
        rc = rn_errf(errmsg, RN_EEXIST, "topic '%s' already exists", name);
        goto out;
    }
    if (s != SQLITE_DONE) { rc = sql_err(m, s, "insert topic", errmsg); goto out; }
    int64_t topic_id = sqlite3_last_insert_rowid(m->db);
    sqlite3_finalize(st); st = NULL;

    int64_t next = 0;
    rc = query_int(m, "SELECT value FROM counters WHERE name = 'next_physical_id'", &next, errmsg);
    if (rc != 0) goto out;
    if (next < min_physical_id) next = min_physical_id;
    if (next < 0 || next + queues - 1 > (int64_t)UINT32_MAX) {
        rc = rn_errf(errmsg, RN_EFULL, "physical queue ids are exhausted (next would be %lld)",
                     (long long)next);
        goto out;
    }

    rc = prepare(m, "INSERT INTO physical_queues(id, store_id) VALUES (?1, ?2)", &pq, errmsg);
    if (rc != 0) goto out;
    rc = prepare(m, "INSERT INTO queue_items(topic_id, queue, seq, logical_start, physical_id,"
                    " physical_start, physical_end) VALUES (?1, ?2, 0, 0, ?3, 0, NULL)",
                 &item, errmsg);
    if (rc != 0) goto out;
    for (uint32_t q = 0; q < queues; q++) {
        sqlite3_reset(pq);
        sqlite3_bind_int64(pq, 1, next + q);
        sqlite3_bind_int64(pq, 2, store_id);
        s = sqlite3_step(pq);
        if (s != SQLITE_DONE) { rc = sql_err(m, s, "insert physical queue", errmsg); goto out; }
        sqlite3_reset(item);
        sqlite3_bind_int64(item, 1, topic_id);
        sqlite3_bind_int64(item, 2, q);
        sqlite3_bind_int64(item, 3, next + q);
        s = sqlite3_step(item);
        if (s != SQLITE_DONE) { rc = sql_err(m, s, "insert queue item", errmsg); goto out; }
    }

    rc = prepare(m, "UPDATE counters SET value = ?1 WHERE name = 'next_physical_id'", &st, errmsg);
    if (rc != 0) goto out;
    sqlite3_bind_int64(st, 1, next + queues);
    s = sqlite3_step(st);
    if (s != SQLITE_DONE) { rc = sql_err(m, s, "advance physical id", errmsg); goto out; }
    sqlite3_finalize(st); st = NULL;
    sqlite3_finalize(pq); pq = NULL;
    sqlite3_finalize(item); item = NULL;

    rc = commit(m, errmsg);
    if (rc != 0) goto out;
    if (out) rc = rn_meta_topic_get(m, name, out, errmsg);
    return rc;
out:
    sqlite3_finalize(st);
    sqlite3_finalize(pq);
    sqlite3_finalize(item);
    rollback(m);
    return rc;
}

/* "topics: a, b, c" (the first few by name) or "there are no topics", for
 * the message of an unknown topic. Best effort: a failing query says less. */
static void topic_names(rn_meta_t *m, char *out, size_t size)
{
    sqlite3_stmt *st = NULL;
    size_t n = 0;
    int count = 0;
    out[0] = '\0';
    if (sqlite3_prepare_v2(m->db, "SELECT name FROM topics ORDER BY name LIMIT 9", -1, &st,
                           NULL) != SQLITE_OK) {
        snprintf(out, size, "`topic list` shows the topics");
        return;
    }
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(st, 0);
        if (!t) continue;
        if (count == 8 || n + strlen(t) + 8 >= size) {
            snprintf(out + n, size - n, ", ...");
            break;
        }
        int w = snprintf(out + n, size - n, "%s%s", count ? ", " : "topics: ", t);
        if (w < 0 || (size_t)w >= size - n) break;
        n += (size_t)w;
        count++;
    }
    sqlite3_finalize(st);
    if (count == 0) snprintf(out, size, "there are no topics");
}

int rn_meta_topic_get(rn_meta_t *m, const char *name, rn_meta_topic_t *out, char *errmsg)
{
    sqlite3_stmt *st = NULL;
    int rc = prepare(m, TOPIC_SELECT " WHERE t.name = ?1", &st, errmsg);
    if (rc != 0) return rc;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int s = sqlite3_step(st);
    if (s == SQLITE_ROW) {
        rc = topic_from_row(st, out);
        if (rc != 0) rc = rn_errf(errmsg, rc, "meta.db: topic row of '%.100s' is damaged", name);
    } else if (s == SQLITE_DONE) {
        char known[160];
        topic_names(m, known, sizeof known);
        rc = rn_errf(errmsg, RN_ENOTFOUND, "unknown topic '%.60s%s'; %s", name,
                     strlen(name) > 60 ? "..." : "", known);
    } else {
        rc = sql_err(m, s, "read topic", errmsg);
    }
    sqlite3_finalize(st);
    return rc;
}

int rn_meta_topic_list(rn_meta_t *m, rn_meta_topic_t **out, size_t *n, char *errmsg)
{
    *out = NULL; *n = 0;
    sqlite3_stmt *st = NULL;
    rn_meta_topic_t *v = NULL;
    size_t len = 0, cap = 0;
    int rc = prepare(m, TOPIC_SELECT " ORDER BY t.name", &st, errmsg);
    if (rc != 0) return rc;
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        if (len == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            rn_meta_topic_t *p = realloc(v, ncap * sizeof *p);
            if (!p) { rc = rn_errf(errmsg, -ENOMEM, "out of memory"); goto fail; }
            v = p; cap = ncap;
        }
        rc = topic_from_row(st, &v[len]);
        if (rc != 0) { rc = rn_errf(errmsg, rc, "meta.db: a topic row is damaged"); goto fail; }
        len++;
    }
    if (s != SQLITE_DONE) { rc = sql_err(m, s, "list topics", errmsg); goto fail; }
    sqlite3_finalize(st);
    *out = v; *n = len;
    return 0;
fail:
    sqlite3_finalize(st);
    free(v);
    return rc;
}

int rn_meta_items(rn_meta_t *m, int64_t topic_id, uint32_t queue,
                  rn_meta_item_t **items, size_t *n, char *errmsg)
{
    *items = NULL; *n = 0;
    sqlite3_stmt *st = NULL;
    rn_meta_item_t *v = NULL;
    size_t len = 0, cap = 0;
    const char *sql =
        "SELECT qi.queue, qi.seq, qi.logical_start, qi.physical_id, pq.store_id,"
        "       qi.physical_start, qi.physical_end"
        " FROM queue_items qi JOIN physical_queues pq ON pq.id = qi.physical_id"
        " WHERE qi.topic_id = ?1 AND (?2 < 0 OR qi.queue = ?2)"
        " ORDER BY qi.queue, qi.seq";
    int rc = prepare(m, sql, &st, errmsg);
    if (rc != 0) return rc;
    sqlite3_bind_int64(st, 1, topic_id);
    sqlite3_bind_int64(st, 2, queue == UINT32_MAX ? -1 : (int64_t)queue);
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        if (len == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            rn_meta_item_t *p = realloc(v, ncap * sizeof *p);
            if (!p) { rc = rn_errf(errmsg, -ENOMEM, "out of memory"); goto fail; }
            v = p; cap = ncap;
        }
        int64_t q = sqlite3_column_int64(st, 0), seq = sqlite3_column_int64(st, 1);
        int64_t pid = sqlite3_column_int64(st, 3), sid = sqlite3_column_int64(st, 4);
        rn_meta_item_t *it = &v[len];
        it->logical_start = sqlite3_column_int64(st, 2);
        it->physical_start = sqlite3_column_int64(st, 5);
        it->physical_end = sqlite3_column_type(st, 6) == SQLITE_NULL
                               ? -1 : sqlite3_column_int64(st, 6);
        if (q < 0 || q >= RN_META_MAX_QUEUES || seq < 0 || seq > UINT32_MAX || pid < 0 ||
            pid > UINT32_MAX || sid < 0 || sid > UINT32_MAX || it->logical_start < 0 ||
            it->physical_start < 0) {
            rc = rn_errf(errmsg, RN_ECORRUPT, "meta.db: a queue item of topic id %lld is damaged",
                         (long long)topic_id);
            goto fail;
        }
        it->queue = (uint32_t)q;
        it->seq = (uint32_t)seq;
        it->physical_id = (uint32_t)pid;
        it->store_id = (uint32_t)sid;
        len++;
    }
    if (s != SQLITE_DONE) { rc = sql_err(m, s, "read queue items", errmsg); goto fail; }
    if (len == 0) {
        rc = rn_errf(errmsg, RN_ENOTFOUND, "topic id %lld has no queue %u", (long long)topic_id,
                     queue);
        goto fail;
    }
    sqlite3_finalize(st);
    *items = v; *n = len;
    return 0;
fail:
    sqlite3_finalize(st);
    free(v);
    return rc;
}
