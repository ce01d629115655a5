/*
 * meta.c — the topic metadata store in SQLite (see meta.h for the model).
 *
 * Schema (version 8, PRAGMA user_version):
 *
 *   stores(id, path)                       a store = an rn_log directory
 *   topics(id, name UNIQUE, created_ms)
 *   physical_queues(id, store_id)          id allocated from counters, never reused
 *   queue_items(topic_id, queue, seq, logical_start,
 *               physical_id, physical_start, physical_end NULL = open)
 *   counters(name, value)                  'next_physical_id', 'datadir_id'
 *   -- version 2:
 *   consumer_groups(name, created_ms)
 *   group_offsets(group_name, topic_id, queue, next_offset, updated_ms)
 *   checkpoints(id, group_name, name, created_ms)   UNIQUE(group_name, name)
 *   checkpoint_offsets(checkpoint_id, topic_id, queue, next_offset)
 *   -- version 3:
 *   streams(name, topic, format, timestamp, fields, created_ms)
 *                                          streamsql's CREATE STREAM
 *   -- version 5:
 *   offset_reservations(physical_id, upto)  offsets below upto may have been
 *                                          acknowledged (rn_meta_reserve_set)
 *   -- version 4:
 *   pipelines(name, sql, paused, created_ms, checkpoint_ms, state BLOB NULL)
 *                                          etl/'s pipelines; state is the last
 *                                          checkpoint, opaque here (etl.c),
 *                                          written by one UPDATE = one
 *                                          transaction
 *   -- version 6:
 *   acls(principal, resource, pattern, name, operation, created_ms)
 *                                          access control entries (acl.h)
 *   pipelines.creator                      the principal a pipeline runs as
 *                                          ('' = the operator)
 *   -- version 7:
 *   functions(name COLLATE NOCASE, def, created_ms)   streamsql's CREATE FUNCTION
 *   -- version 8:
 *   sql_tables(name COLLATE NOCASE, def, created_ms)  streamsql's CREATE TABLE
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
 *  5. Durability: WAL with synchronous=FULL for structural changes (topic
 *     creation, alter, remap, stores, checkpoints): a topic or item whose
 *     creation was lost by a power cut after a producer had already written to
 *     its physical queues would orphan that data; FULL makes each commit
 *     durable before it returns, at one fsync per change. Offset commits are
 *     frequent and re-derivable (a consumer re-reads from an older offset), so
 *     they run with synchronous=NORMAL unless asked otherwise: a WAL commit
 *     that survives kill -9 (it is in the OS) at no fsync; see meta.h.
 *  6. A remap or an alter writes items only through this file, always with
 *     physical_start 0 on a physical queue no other item uses; a remap
 *     checks the open item's seq inside its transaction, so two remaps
 *     cannot both seal the same item.
 *  7. Deleting a topic removes, in one transaction, its row, its items, the
 *     offset reservations of their physical queues, and every group offset
 *     and checkpoint offset on it; nothing else names a topic id. Its
 *     physical_queues rows stay, so their ids are never handed out again
 *     (invariant 3) and a topic recreated under the same name starts on
 *     fresh physical queues at offset 0. Streams name topics by text and
 *     are left alone.
 */
#include "logical-queues/meta.h"

#include "common/error.h"
#include "common/sys.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define META_BUSY_TIMEOUT_MS 5000

struct rn_meta {
    sqlite3 *db;
    int      offsets_full;     /* offset commits with synchronous=FULL */
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
    /* 1 -> 2 */
    "CREATE TABLE consumer_groups("
    "  name       TEXT PRIMARY KEY,"
    "  created_ms INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE group_offsets("
    "  group_name  TEXT NOT NULL REFERENCES consumer_groups(name),"
    "  topic_id    INTEGER NOT NULL REFERENCES topics(id),"
    "  queue       INTEGER NOT NULL CHECK (queue >= 0),"
    "  next_offset INTEGER NOT NULL CHECK (next_offset >= 0),"
    "  updated_ms  INTEGER NOT NULL,"
    "  PRIMARY KEY (group_name, topic_id, queue)) WITHOUT ROWID;"
    "CREATE TABLE checkpoints("
    "  id         INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  group_name TEXT NOT NULL REFERENCES consumer_groups(name),"
    "  name       TEXT NOT NULL,"
    "  created_ms INTEGER NOT NULL,"
    "  UNIQUE (group_name, name));"
    "CREATE TABLE checkpoint_offsets("
    "  checkpoint_id INTEGER NOT NULL REFERENCES checkpoints(id) ON DELETE CASCADE,"
    "  topic_id      INTEGER NOT NULL REFERENCES topics(id),"
    "  queue         INTEGER NOT NULL CHECK (queue >= 0),"
    "  next_offset   INTEGER NOT NULL CHECK (next_offset >= 0),"
    "  PRIMARY KEY (checkpoint_id, topic_id, queue)) WITHOUT ROWID;"
    "INSERT INTO counters VALUES ('datadir_id', abs(random() % 9007199254740991));",
    /* 2 -> 3 */
    "CREATE TABLE IF NOT EXISTS streams("
    "  name       TEXT PRIMARY KEY,"
    "  topic      TEXT NOT NULL,"
    "  format     TEXT NOT NULL,"
    "  timestamp  TEXT NOT NULL,"
    "  fields     TEXT NOT NULL,"
    "  created_ms INTEGER NOT NULL) WITHOUT ROWID;",
    /* 3 -> 4 */
    "CREATE TABLE IF NOT EXISTS pipelines("
    "  name          TEXT PRIMARY KEY,"
    "  sql           TEXT NOT NULL,"
    "  paused        INTEGER NOT NULL DEFAULT 0,"
    "  created_ms    INTEGER NOT NULL,"
    "  checkpoint_ms INTEGER NOT NULL DEFAULT 0,"
    "  state         BLOB) WITHOUT ROWID;",
    /* 4 -> 5 */
    "CREATE TABLE IF NOT EXISTS offset_reservations("
    "  physical_id INTEGER PRIMARY KEY,"
    "  upto        INTEGER NOT NULL CHECK (upto >= 0));",
    /* 5 -> 6 */
    "CREATE TABLE IF NOT EXISTS acls("
    "  principal  TEXT NOT NULL,"
    "  resource   TEXT NOT NULL,"
    "  pattern    TEXT NOT NULL,"
    "  name       TEXT NOT NULL,"
    "  operation  TEXT NOT NULL,"
    "  created_ms INTEGER NOT NULL,"
    "  PRIMARY KEY (principal, resource, pattern, name, operation)) WITHOUT ROWID;",
    /* 6 -> 7 */
    "CREATE TABLE IF NOT EXISTS functions("
    "  name       TEXT PRIMARY KEY COLLATE NOCASE,"
    "  def        TEXT NOT NULL,"
    "  created_ms INTEGER NOT NULL) WITHOUT ROWID;",
    /* 7 -> 8 */
    "CREATE TABLE IF NOT EXISTS sql_tables("
    "  name       TEXT PRIMARY KEY COLLATE NOCASE,"
    "  def        TEXT NOT NULL,"
    "  created_ms INTEGER NOT NULL) WITHOUT ROWID;",
};

/* Columns a step adds (ALTER TABLE is not idempotent as CREATE TABLE IF NOT
 * EXISTS is): added after migrations[version - 1] unless already there. */
static const struct { int version; const char *table, *column, *def; } added_columns[] = {
    {6, "pipelines", "creator", "TEXT NOT NULL DEFAULT ''"},
};

void (*rn_meta_test_hook)(const char *point);

void rn_meta_test_point(const char *point)
{
    if (rn_meta_test_hook) rn_meta_test_hook(point);
}

/* For a read-only failure: which of meta.db and its -wal and -shm files
 * this process cannot write, and what to do (a read-only -shm, left by a run
 * with other rights, makes every write fail until it is removed; it holds
 * nothing SQLite needs while no process has the database open; -wal holds
 * committed data and must be made writable, never removed). */
static void readonly_hint(rn_meta_t *m, char *out, size_t size)
{
    out[0] = '\0';
    const char *db = m && m->db ? sqlite3_db_filename(m->db, "main") : NULL;
    if (!db || !db[0]) return;
    static const char *const sfx[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        char p[4200];
        snprintf(p, sizeof p, "%s%s", db, sfx[i]);
        if (access(p, F_OK) != 0 || access(p, W_OK) == 0) continue;
        if (errno == EROFS)
            snprintf(out, size, " (%.4000s is on a read-only file system)", p);
        else if (i == 2)
            snprintf(out, size, " (%.2000s is not writable by this process: with no runnel "
                     "process using the directory, remove it: rm %.2000s)", p, p);
        else
            snprintf(out, size, " (%.4000s is not writable by this process: make it writable "
                     "for the user running runnel)", p);
        return;
    }
}

/* Map a SQLite failure to a runnel code and message. */
static int sql_err(rn_meta_t *m, int src, const char *what, char *errmsg)
{
    int code = RN_ESQLITE;
    int prim = src & 0xff;
    char hint[4400] = "";
    if (prim == SQLITE_NOTADB || prim == SQLITE_CORRUPT) code = RN_ECORRUPT;
    else if (prim == SQLITE_NOMEM) code = -ENOMEM;
    else if (prim == SQLITE_READONLY) readonly_hint(m, hint, sizeof hint);
    return rn_errf(errmsg, code, "meta.db: %s: %s%s", what,
                   m && m->db ? sqlite3_errmsg(m->db) : sqlite3_errstr(src), hint);
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
        for (size_t i = 0; i < sizeof added_columns / sizeof added_columns[0]; i++) {
            if (added_columns[i].version != v + 1) continue;
            char q[256];
            int64_t has = 0;
            snprintf(q, sizeof q, "SELECT count(*) FROM pragma_table_info('%s') WHERE name = '%s'",
                     added_columns[i].table, added_columns[i].column);
            if ((rc = query_int(m, q, &has, errmsg)) != 0) goto fail;
            if (has) continue;
            snprintf(q, sizeof q, "ALTER TABLE %s ADD COLUMN %s %s", added_columns[i].table,
                     added_columns[i].column, added_columns[i].def);
            if ((rc = exec(m, q, "schema upgrade", errmsg)) != 0) goto fail;
        }
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

int rn_meta_check_name(const char *kind, const char *name, char *errmsg)
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
                   "invalid %s name '%.64s%s': use 1-%d characters of A-Z a-z 0-9 . _ - "
                   "(not '.' or '..')", kind, name, len > 64 ? "..." : "", RN_META_TOPIC_NAME_MAX);
}

int rn_meta_check_topic_name(const char *name, char *errmsg)
{
    return rn_meta_check_name("topic", name, errmsg);
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

/* Decodes the current row into *elem; non-zero when the row is damaged. */
typedef int (*row_fn)(sqlite3_stmt *st, void *elem);
static int collect_rows(rn_meta_t *m, sqlite3_stmt *st, size_t elem, row_fn from_row,
                        const char *what, void **out, size_t *n, char *errmsg);
static int get_by_name(rn_meta_t *m, const char *sql, const char *name, row_fn from_row,
                       void *out, const char *what,
                       void (*names)(rn_meta_t *, char *, size_t), char *errmsg);

static int topic_from_row(sqlite3_stmt *st, void *elem)
{
    rn_meta_topic_t *t = elem;
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

/* Queues are dense (0..N-1, each with its open item: invariant 2), so the
 * count is max(queue) + 1, one lookup in the primary key; count(DISTINCT)
 * visited every item of the topic on each call. */
#define TOPIC_SELECT                                                          \
    "SELECT t.id, t.name, t.created_ms,"                                      \
    "  coalesce((SELECT max(queue) + 1 FROM queue_items WHERE topic_id = t.id), 0)" \
    " FROM topics t"

/* Step a statement that returns no row; reset it for reuse. */
static int step_done(rn_meta_t *m, sqlite3_stmt *st, const char *what, char *errmsg)
{
    int s = sqlite3_step(st);
    sqlite3_reset(st);
    return s == SQLITE_DONE ? 0 : sql_err(m, s, what, errmsg);
}

/* Inside a transaction: RN_ENOTFOUND unless store_id is registered. */
static int check_store(rn_meta_t *m, uint32_t store_id, char *errmsg)
{
    sqlite3_stmt *st = NULL;
    int rc = prepare(m, "SELECT count(*) FROM stores WHERE id = ?1", &st, errmsg);
    if (rc != 0) return rc;
    sqlite3_bind_int64(st, 1, store_id);
    int s = sqlite3_step(st);
    if (s != SQLITE_ROW) rc = sql_err(m, s, "find store", errmsg);
    else if (sqlite3_column_int64(st, 0) != 1)
        rc = rn_errf(errmsg, RN_ENOTFOUND, "meta.db: no store %u", store_id);
    sqlite3_finalize(st);
    return rc;
}

/* Inside a transaction: reserve `count` fresh physical ids on store_id, all
 * >= min_id (invariant 3), recording them in physical_queues. *first is the
 * first of them; they are consecutive. */
static int alloc_physical(rn_meta_t *m, uint32_t count, uint32_t store_id, uint32_t min_id,
                          int64_t *first, char *errmsg)
{
    sqlite3_stmt *st = NULL;
    int64_t next = 0;
    int rc = query_int(m, "SELECT value FROM counters WHERE name = 'next_physical_id'", &next,
                       errmsg);
    if (rc != 0) return rc;
    if (next < min_id) next = min_id;
    if (next < 0 || next + count - 1 > (int64_t)UINT32_MAX)
        return rn_errf(errmsg, RN_EFULL, "physical queue ids are exhausted (next would be %lld)",
                       (long long)next);
    rc = prepare(m, "INSERT INTO physical_queues(id, store_id) VALUES (?1, ?2)", &st, errmsg);
    if (rc != 0) return rc;
    for (uint32_t i = 0; i < count && rc == 0; i++) {
        sqlite3_bind_int64(st, 1, next + i);
        sqlite3_bind_int64(st, 2, store_id);
        rc = step_done(m, st, "insert physical queue", errmsg);
    }
    sqlite3_finalize(st);
    st = NULL;
    if (rc != 0) return rc;
    rc = prepare(m, "UPDATE counters SET value = ?1 WHERE name = 'next_physical_id'", &st, errmsg);
    if (rc != 0) return rc;
    sqlite3_bind_int64(st, 1, next + count);
    rc = step_done(m, st, "advance physical id", errmsg);
    sqlite3_finalize(st);
    if (rc == 0) *first = next;
    return rc;
}

/* Inside a transaction: queues [from, to) of topic_id, each with one open
 * item at logical 0 on a fresh physical queue of store_id. */
static int add_queues(rn_meta_t *m, int64_t topic_id, uint32_t from, uint32_t to,
                      uint32_t store_id, uint32_t min_physical_id, char *errmsg)
{
    sqlite3_stmt *item = NULL;
    int64_t first = 0;
    int rc = check_store(m, store_id, errmsg);
    if (rc == 0) rc = alloc_physical(m, to - from, store_id, min_physical_id, &first, errmsg);
    if (rc != 0) return rc;
    rc = prepare(m, "INSERT INTO queue_items(topic_id, queue, seq, logical_start, physical_id,"
                    " physical_start, physical_end) VALUES (?1, ?2, 0, 0, ?3, 0, NULL)",
                 &item, errmsg);
    for (uint32_t q = from; q < to && rc == 0; q++) {
        sqlite3_bind_int64(item, 1, topic_id);
        sqlite3_bind_int64(item, 2, q);
        sqlite3_bind_int64(item, 3, first + (q - from));
        rc = step_done(m, item, "insert queue item", errmsg);
    }
    sqlite3_finalize(item);
    return rc;
}

int rn_meta_topic_create(rn_meta_t *m, const char *name, uint32_t queues,
                         uint32_t store_id, uint32_t min_physical_id,
                         rn_meta_topic_t *out, char *errmsg)
{
    sqlite3_stmt *st = NULL;
    int rc = rn_meta_check_topic_name(name, errmsg);
    if (rc != 0) return rc;
    if (queues < 1 || queues > RN_META_MAX_QUEUES)
        return rn_errf(errmsg, RN_EINVAL, "a topic has 1..%d queues, not %u",
                       RN_META_MAX_QUEUES, queues);
    rc = begin(m, errmsg);
    if (rc != 0) return rc;
    rc = check_store(m, store_id, errmsg);
    if (rc != 0) goto out;

    rc = prepare(m, "INSERT INTO topics(name, created_ms) VALUES (?1, ?2)", &st, errmsg);
    if (rc != 0) goto out;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, rn_sys.now_ms());
    int s = sqlite3_step(st);
    if ((s & 0xff) == SQLITE_CONSTRAINT) {
        rc = rn_errf(errmsg, RN_EEXIST, "topic '%s' already exists", name);
        goto out;
    }
    if (s != SQLITE_DONE) { rc = sql_err(m, s, "insert topic", errmsg); goto out; }
    int64_t topic_id = sqlite3_last_insert_rowid(m->db);
    sqlite3_finalize(st); st = NULL;

    rc = add_queues(m, topic_id, 0, queues, store_id, min_physical_id, errmsg);
    if (rc != 0) goto out;
    rc = commit(m, errmsg);
    if (rc != 0) goto out;
    if (out) rc = rn_meta_topic_get(m, name, out, errmsg);
    return rc;
out:
    sqlite3_finalize(st);
    rollback(m);
    return rc;
}

int rn_meta_topic_alter(rn_meta_t *m, const char *name, uint32_t queues, uint32_t store_id,
                        uint32_t min_physical_id, rn_meta_topic_t *out, char *errmsg)
{
    rn_meta_topic_t t;
    int rc = begin(m, errmsg);
    if (rc != 0) return rc;
    rc = rn_meta_topic_get(m, name, &t, errmsg);
    if (rc != 0) goto out;
    if (queues <= t.queues || queues > RN_META_MAX_QUEUES) {
        rc = rn_errf(errmsg, RN_EINVAL, "topic '%s' has %u queue%s; --queues must be more than "
                     "%u and at most %d (queues are never removed)", name, t.queues,
                     t.queues == 1 ? "" : "s", t.queues, RN_META_MAX_QUEUES);
        goto out;
    }
    rc = add_queues(m, t.id, t.queues, queues, store_id, min_physical_id, errmsg);
    if (rc != 0) goto out;
    rc = commit(m, errmsg);
    if (rc != 0) goto out;
    if (out) rc = rn_meta_topic_get(m, name, out, errmsg);
    return rc;
out:
    rollback(m);
    return rc;
}

/* Inside a transaction: run sql (one statement) with ?1 bound to id. */
static int exec_id(rn_meta_t *m, const char *sql, int64_t id, const char *what, char *errmsg)
{
    sqlite3_stmt *st = NULL;
    int rc = prepare(m, sql, &st, errmsg);
    if (rc != 0) return rc;
    sqlite3_bind_int64(st, 1, id);
    rc = step_done(m, st, what, errmsg);
    sqlite3_finalize(st);
    return rc;
}

int rn_meta_topic_delete(rn_meta_t *m, const char *name, rn_meta_topic_t *out, char *errmsg)
{
    rn_meta_topic_t t;
    int rc = begin(m, errmsg);
    if (rc != 0) return rc;
    rc = rn_meta_topic_get(m, name, &t, errmsg);
    /* Invariant 7: everything that names the topic's id goes with it. The
     * physical_queues rows stay (invariant 3 keeps their ids used). */
    if (rc == 0)
        rc = exec_id(m, "DELETE FROM offset_reservations WHERE physical_id IN (SELECT "
                        "physical_id FROM queue_items WHERE topic_id = ?1)", t.id,
                     "drop offset reservations", errmsg);
    if (rc == 0)
        rc = exec_id(m, "DELETE FROM group_offsets WHERE topic_id = ?1", t.id,
                     "drop group offsets", errmsg);
    if (rc == 0)
        rc = exec_id(m, "DELETE FROM checkpoint_offsets WHERE topic_id = ?1", t.id,
                     "drop checkpoint offsets", errmsg);
    if (rc == 0)
        rc = exec_id(m, "DELETE FROM queue_items WHERE topic_id = ?1", t.id, "drop items",
                     errmsg);
    if (rc == 0)
        rc = exec_id(m, "DELETE FROM topics WHERE id = ?1", t.id, "drop topic", errmsg);
    if (rc == 0) rc = commit(m, errmsg);
    if (rc != 0) { rollback(m); return rc; }
    if (out) *out = t;
    return 0;
}

/* "LEAD a, b, c" (the first few rows of a one-column query, bound to text
 * arg1 when not NULL) or `none` when there are none, for messages that name
 * the valid values. Best effort: a failing query says less. */
static void names_list(rn_meta_t *m, const char *sql, const char *arg1, const char *lead,
                       const char *none, char *out, size_t size)
{
    sqlite3_stmt *st = NULL;
    size_t n = 0;
    int count = 0;
    out[0] = '\0';
    if (sqlite3_prepare_v2(m->db, sql, -1, &st, NULL) != SQLITE_OK) {
        snprintf(out, size, "%s", none);
        return;
    }
    if (arg1) sqlite3_bind_text(st, 1, arg1, -1, SQLITE_STATIC);
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(st, 0);
        if (!t) continue;
        if (count == 8 || n + strlen(t) + 8 >= size) {
            snprintf(out + n, size - n, ", ...");
            break;
        }
        int w = snprintf(out + n, size - n, "%s%s", count ? ", " : lead, t);
        if (w < 0 || (size_t)w >= size - n) break;
        n += (size_t)w;
        count++;
    }
    sqlite3_finalize(st);
    if (count == 0) snprintf(out, size, "%s", none);
}

static void topic_names(rn_meta_t *m, char *out, size_t size)
{
    names_list(m, "SELECT name FROM topics ORDER BY name LIMIT 9", NULL, "topics: ",
               "there are no topics", out, size);
}

int rn_meta_topic_get(rn_meta_t *m, const char *name, rn_meta_topic_t *out, char *errmsg)
{
    return get_by_name(m, TOPIC_SELECT " WHERE t.name = ?1", name, topic_from_row, out, "topic",
                       topic_names, errmsg);
}

int rn_meta_topic_list(rn_meta_t *m, rn_meta_topic_t **out, size_t *n, char *errmsg)
{
    sqlite3_stmt *st = NULL;
    *out = NULL; *n = 0;
    int rc = prepare(m, TOPIC_SELECT " ORDER BY t.name", &st, errmsg);
    if (rc != 0) return rc;
    return collect_rows(m, st, sizeof **out, topic_from_row, "list topics", (void **)out, n,
                        errmsg);
}

int rn_meta_items(rn_meta_t *m, int64_t topic_id, uint32_t queue,
                  rn_meta_item_t **items, size_t *n, char *errmsg)
{
    *items = NULL; *n = 0;
    sqlite3_stmt *st = NULL;
    rn_meta_item_t *v = NULL;
    size_t len = 0, cap = 0;
#define ITEMS_SELECT                                                          \
        "SELECT qi.queue, qi.seq, qi.logical_start, qi.physical_id, pq.store_id,"  \
        "       qi.physical_start, qi.physical_end"                                 \
        " FROM queue_items qi JOIN physical_queues pq ON pq.id = qi.physical_id"
    /* Two statements, not "(?2 < 0 OR qi.queue = ?2)": the OR keeps SQLite
     * from using the queue part of the key, which made describing a topic of
     * N queues (one call per queue) cost N^2 row visits. */
    const char *sql = queue == UINT32_MAX
        ? ITEMS_SELECT " WHERE qi.topic_id = ?1 ORDER BY qi.queue, qi.seq"
        : ITEMS_SELECT " WHERE qi.topic_id = ?1 AND qi.queue = ?2 ORDER BY qi.seq";
#undef ITEMS_SELECT
    int rc = prepare(m, sql, &st, errmsg);
    if (rc != 0) return rc;
    sqlite3_bind_int64(st, 1, topic_id);
    if (queue != UINT32_MAX) sqlite3_bind_int64(st, 2, (int64_t)queue);
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

/* ---- data directory identity, offset durability, stores ----------------- */

/* Make room for one more element in a malloc'd array. */
static int grow(void **v, size_t *cap, size_t len, size_t elem, char *errmsg)
{
    if (len < *cap) return 0;
    size_t ncap = *cap ? *cap * 2 : 8;
    void *p = realloc(*v, ncap * elem);
    if (!p) return rn_errf(errmsg, -ENOMEM, "out of memory");
    *v = p;
    *cap = ncap;
    return 0;
}

/* Copy a text column into out[0..max] or fail as damaged. */
static int text_col(sqlite3_stmt *st, int col, char *out, size_t max)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    int len = sqlite3_column_bytes(st, col);
    if (!t || len < 0 || (size_t)len > max) return RN_ECORRUPT;
    memcpy(out, t, (size_t)len);
    out[len] = '\0';
    return 0;
}

/* Step st (prepared and bound) to its end, decoding each row with from_row
 * into a malloc'd array of elem-sized items, and finalize st. The one loop
 * behind every list function: *out (free() it) and *n on success. */
static int collect_rows(rn_meta_t *m, sqlite3_stmt *st, size_t elem, row_fn from_row,
                        const char *what, void **out, size_t *n, char *errmsg)
{
    void *v = NULL;
    size_t len = 0, cap = 0;
    int rc = 0, s;
    *out = NULL; *n = 0;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        if ((rc = grow(&v, &cap, len, elem, errmsg)) != 0) goto fail;
        if (from_row(st, (char *)v + len * elem) != 0) {
            rc = rn_errf(errmsg, RN_ECORRUPT, "meta.db: a damaged row stopped '%s'", what);
            goto fail;
        }
        len++;
    }
    if (s != SQLITE_DONE) { rc = sql_err(m, s, what, errmsg); goto fail; }
    sqlite3_finalize(st);
    *out = v; *n = len;
    return 0;
fail:
    sqlite3_finalize(st);
    free(v);
    return rc;
}

/* The one row named `name` (sql binds it as ?1), decoded by from_row into
 * out. RN_ENOTFOUND when there is none, naming what was asked for and the
 * first few that exist (names); RN_ECORRUPT for a damaged row. */
static int get_by_name(rn_meta_t *m, const char *sql, const char *name, row_fn from_row,
                       void *out, const char *what,
                       void (*names)(rn_meta_t *, char *, size_t), char *errmsg)
{
    sqlite3_stmt *st = NULL;
    int rc = prepare(m, sql, &st, errmsg);
    if (rc != 0) return rc;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int s = sqlite3_step(st);
    if (s == SQLITE_ROW) {
        if (from_row(st, out) != 0)
            rc = rn_errf(errmsg, RN_ECORRUPT, "meta.db: the row of %s '%.100s' is damaged",
                         what, name);
    } else if (s == SQLITE_DONE) {
        char known[200];
        names(m, known, sizeof known);
        rc = rn_errf(errmsg, RN_ENOTFOUND, "unknown %s '%.60s%s'; %s", what, name,
                     strlen(name) > 60 ? "..." : "", known);
    } else {
        char doing[64];
        snprintf(doing, sizeof doing, "read %s", what);
        rc = sql_err(m, s, doing, errmsg);
    }
    sqlite3_finalize(st);
    return rc;
}

int rn_meta_datadir_id(rn_meta_t *m, int64_t *id, char *errmsg)
{
    return query_int(m, "SELECT value FROM counters WHERE name = 'datadir_id'", id, errmsg);
}

int rn_meta_set_offset_sync(rn_meta_t *m, int full, char *errmsg)
{
    m->offsets_full = full ? 1 : 0;
    return 0;
}

static int store_from_row(sqlite3_stmt *st, void *elem)
{
    rn_meta_store_t *o = elem;
    int64_t id = sqlite3_column_int64(st, 0), nq = sqlite3_column_int64(st, 2);
    if (id < 0 || id >= RN_META_MAX_STORES || nq < 0 || nq > UINT32_MAX ||
        text_col(st, 1, o->path, RN_META_PATH_MAX) != 0)
        return RN_ECORRUPT;
    o->id = (uint32_t)id;
    o->physical_queues = (uint32_t)nq;
    return 0;
}

int rn_meta_store_list(rn_meta_t *m, rn_meta_store_t **out, size_t *n, char *errmsg)
{
    sqlite3_stmt *st = NULL;
    *out = NULL; *n = 0;
    int rc = prepare(m, "SELECT s.id, s.path, (SELECT count(*) FROM queue_items qi JOIN "
                        "physical_queues pq ON pq.id = qi.physical_id WHERE pq.store_id = s.id)"
                        " FROM stores s ORDER BY s.id", &st, errmsg);
    if (rc != 0) return rc;
    return collect_rows(m, st, sizeof **out, store_from_row, "list stores", (void **)out, n,
                        errmsg);
}

/* ---- remap and retention ------------------------------------------------ */

int rn_meta_remap(rn_meta_t *m, const rn_meta_remap_t *r, rn_meta_item_t *opened, char *errmsg)
{
    sqlite3_stmt *st = NULL;
    rn_meta_item_t *items = NULL;
    size_t n = 0;
    int rc = begin(m, errmsg);
    if (rc != 0) return rc;
    if (r->new_store_path) {
        rc = prepare(m, "INSERT INTO stores(id, path) VALUES (?1, ?2)", &st, errmsg);
        if (rc != 0) goto out;
        sqlite3_bind_int64(st, 1, r->store_id);
        sqlite3_bind_text(st, 2, r->new_store_path, -1, SQLITE_STATIC);
        int s = sqlite3_step(st);
        if ((s & 0xff) == SQLITE_CONSTRAINT) {
            rc = rn_errf(errmsg, RN_EEXIST, "store %u or path %.200s is already registered",
                         r->store_id, r->new_store_path);
            goto out;
        }
        if (s != SQLITE_DONE) { rc = sql_err(m, s, "register store", errmsg); goto out; }
        sqlite3_finalize(st); st = NULL;
    }
    rc = check_store(m, r->store_id, errmsg);
    if (rc != 0) goto out;
    /* Re-read the items inside the transaction (invariant 6). */
    rc = rn_meta_items(m, r->topic_id, r->queue, &items, &n, errmsg);
    if (rc != 0) goto out;
    const rn_meta_item_t *open = &items[n - 1];
    if (open->seq != r->open_seq || open->physical_end != -1) {
        rc = rn_errf(errmsg, RN_EEXIST, "queue %u was remapped meanwhile (open item %u, not %u)",
                     r->queue, open->seq, r->open_seq);
        goto out;
    }
    if (r->physical_end < open->physical_start || open->seq == UINT32_MAX) {
        rc = rn_errf(errmsg, RN_EINVAL, "queue %u: cannot seal item %u at physical %lld, below "
                     "its start %lld", r->queue, open->seq, (long long)r->physical_end,
                     (long long)open->physical_start);
        goto out;
    }
    rc = prepare(m, "UPDATE queue_items SET physical_end = ?1 WHERE topic_id = ?2 AND queue = ?3"
                    " AND seq = ?4 AND physical_end IS NULL", &st, errmsg);
    if (rc != 0) goto out;
    sqlite3_bind_int64(st, 1, r->physical_end);
    sqlite3_bind_int64(st, 2, r->topic_id);
    sqlite3_bind_int64(st, 3, r->queue);
    sqlite3_bind_int64(st, 4, open->seq);
    rc = step_done(m, st, "seal item", errmsg);
    sqlite3_finalize(st); st = NULL;
    if (rc != 0) goto out;
    if (sqlite3_changes(m->db) != 1) {
        rc = rn_errf(errmsg, RN_ECORRUPT, "meta.db: queue %u item %u could not be sealed",
                     r->queue, open->seq);
        goto out;
    }
    int64_t pid = 0;
    rc = alloc_physical(m, 1, r->store_id, r->min_physical_id, &pid, errmsg);
    if (rc != 0) goto out;
    rn_meta_item_t it = {
        .queue = r->queue, .seq = open->seq + 1,
        .logical_start = open->logical_start + (r->physical_end - open->physical_start),
        .physical_id = (uint32_t)pid, .store_id = r->store_id,
        .physical_start = 0, .physical_end = -1,
    };
    rc = prepare(m, "INSERT INTO queue_items(topic_id, queue, seq, logical_start, physical_id,"
                    " physical_start, physical_end) VALUES (?1, ?2, ?3, ?4, ?5, 0, NULL)",
                 &st, errmsg);
    if (rc != 0) goto out;
    sqlite3_bind_int64(st, 1, r->topic_id);
    sqlite3_bind_int64(st, 2, it.queue);
    sqlite3_bind_int64(st, 3, it.seq);
    sqlite3_bind_int64(st, 4, it.logical_start);
    sqlite3_bind_int64(st, 5, it.physical_id);
    rc = step_done(m, st, "insert queue item", errmsg);
    sqlite3_finalize(st); st = NULL;
    if (rc != 0) goto out;
    rn_meta_test_point("remap:in-transaction");
    rc = commit(m, errmsg);
    if (rc != 0) goto out;
    free(items);
    if (opened) *opened = it;
    return 0;
out:
    sqlite3_finalize(st);
    free(items);
    rollback(m);
    return rc;
}

int rn_meta_items_drop(rn_meta_t *m, int64_t topic_id, uint32_t queue, uint32_t below_seq,
                       char *errmsg)
{
    sqlite3_stmt *st = NULL;
    int rc = begin(m, errmsg);
    if (rc != 0) return rc;
    rc = prepare(m, "SELECT count(*) FROM queue_items WHERE topic_id = ?1 AND queue = ?2 AND "
                    "seq < ?3 AND physical_end IS NULL", &st, errmsg);
    if (rc != 0) goto out;
    sqlite3_bind_int64(st, 1, topic_id);
    sqlite3_bind_int64(st, 2, queue);
    sqlite3_bind_int64(st, 3, below_seq);
    int s = sqlite3_step(st);
    if (s != SQLITE_ROW) { rc = sql_err(m, s, "find open item", errmsg); goto out; }
    if (sqlite3_column_int64(st, 0) != 0) {
        rc = rn_errf(errmsg, RN_EINVAL, "queue %u: items below seq %u include the open one",
                     queue, below_seq);
        goto out;
    }
    sqlite3_finalize(st); st = NULL;
    rc = prepare(m, "DELETE FROM queue_items WHERE topic_id = ?1 AND queue = ?2 AND seq < ?3",
                 &st, errmsg);
    if (rc != 0) goto out;
    sqlite3_bind_int64(st, 1, topic_id);
    sqlite3_bind_int64(st, 2, queue);
    sqlite3_bind_int64(st, 3, below_seq);
    rc = step_done(m, st, "drop items", errmsg);
    sqlite3_finalize(st); st = NULL;
    if (rc != 0) goto out;
    return commit(m, errmsg);
out:
    sqlite3_finalize(st);
    rollback(m);
    return rc;
}

/* ---- consumer groups ---------------------------------------------------- */

#define GROUP_SELECT                                                                     \
    "SELECT g.name, g.created_ms,"                                                       \
    "  (SELECT count(*) FROM group_offsets o WHERE o.group_name = g.name),"              \
    "  (SELECT count(*) FROM checkpoints c WHERE c.group_name = g.name)"                 \
    " FROM consumer_groups g"

static int group_from_row(sqlite3_stmt *st, void *elem)
{
    rn_meta_group_t *g = elem;
    memset(g, 0, sizeof *g);
    if (text_col(st, 0, g->name, RN_META_NAME_MAX) != 0) return RN_ECORRUPT;
    g->created_ms = sqlite3_column_int64(st, 1);
    g->offsets = (uint32_t)sqlite3_column_int64(st, 2);
    g->checkpoints = (uint32_t)sqlite3_column_int64(st, 3);
    return 0;
}

static void group_names(rn_meta_t *m, char *out, size_t size)
{
    names_list(m, "SELECT name FROM consumer_groups ORDER BY name LIMIT 9", NULL, "groups: ",
               "there are no groups (consuming with --group G creates one)", out, size);
}

int rn_meta_group_get(rn_meta_t *m, const char *name, rn_meta_group_t *out, char *errmsg)
{
    return get_by_name(m, GROUP_SELECT " WHERE g.name = ?1", name, group_from_row, out, "group",
                       group_names, errmsg);
}

int rn_meta_group_list(rn_meta_t *m, rn_meta_group_t **out, size_t *n, char *errmsg)
{
    sqlite3_stmt *st = NULL;
    *out = NULL; *n = 0;
    int rc = prepare(m, GROUP_SELECT " ORDER BY g.name", &st, errmsg);
    if (rc != 0) return rc;
    return collect_rows(m, st, sizeof **out, group_from_row, "list groups", (void **)out, n,
                        errmsg);
}

/* Inside a transaction: the group exists afterwards. */
static int ensure_group(rn_meta_t *m, const char *group, char *errmsg)
{
    int rc = rn_meta_check_name("group", group, errmsg);
    if (rc != 0) return rc;
    sqlite3_stmt *st = NULL;
    rc = prepare(m, "INSERT OR IGNORE INTO consumer_groups(name, created_ms) VALUES (?1, ?2)",
                 &st, errmsg);
    if (rc != 0) return rc;
    sqlite3_bind_text(st, 1, group, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, rn_sys.now_ms());
    rc = step_done(m, st, "create group", errmsg);
    sqlite3_finalize(st);
    return rc;
}

/* Inside a transaction: upsert v as the group's offsets. */
static int write_offsets(rn_meta_t *m, const char *group, const rn_meta_offset_t *v, size_t n,
                         char *errmsg)
{
    sqlite3_stmt *st = NULL;
    int rc = prepare(m, "INSERT INTO group_offsets(group_name, topic_id, queue, next_offset,"
                        " updated_ms) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(group_name,"
                        " topic_id, queue) DO UPDATE SET next_offset = excluded.next_offset,"
                        " updated_ms = excluded.updated_ms", &st, errmsg);
    if (rc != 0) return rc;
    int64_t now = rn_sys.now_ms();
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (v[i].offset < 0) {
            rc = rn_errf(errmsg, RN_EINVAL, "offset %lld of queue %u is negative",
                         (long long)v[i].offset, v[i].queue);
            break;
        }
        sqlite3_bind_text(st, 1, group, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, v[i].topic_id);
        sqlite3_bind_int64(st, 3, v[i].queue);
        sqlite3_bind_int64(st, 4, v[i].offset);
        sqlite3_bind_int64(st, 5, now);
        rc = step_done(m, st, "write offset", errmsg);
    }
    sqlite3_finalize(st);
    return rc;
}

/* Begin a transaction for offsets at their durability (invariant 5). */
static int begin_offsets(rn_meta_t *m, char *errmsg)
{
    int rc = exec(m, m->offsets_full ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL",
                  "offset durability", errmsg);
    return rc == 0 ? begin(m, errmsg) : rc;
}

/* Commit or roll back an offsets transaction, then restore FULL. */
static int end_offsets(rn_meta_t *m, int rc, char *errmsg)
{
    if (rc == 0) rc = commit(m, errmsg);
    if (rc != 0) rollback(m);
    int r2 = exec(m, "PRAGMA synchronous = FULL", "restore durability", rc ? NULL : errmsg);
    return rc ? rc : r2;
}

int rn_meta_offsets_commit(rn_meta_t *m, const char *group, const rn_meta_offset_t *v, size_t n,
                           char *errmsg)
{
    int rc = begin_offsets(m, errmsg);
    if (rc != 0) return rc;
    rc = ensure_group(m, group, errmsg);
    if (rc == 0) rc = write_offsets(m, group, v, n, errmsg);
    return end_offsets(m, rc, errmsg);
}

int rn_meta_offsets_replace(rn_meta_t *m, const char *group, int64_t topic_id,
                            const rn_meta_offset_t *v, size_t n, char *errmsg)
{
    sqlite3_stmt *st = NULL;
    int rc = begin_offsets(m, errmsg);
    if (rc != 0) return rc;
    rc = ensure_group(m, group, errmsg);
    if (rc == 0)
        rc = prepare(m, "DELETE FROM group_offsets WHERE group_name = ?1 AND (?2 < 0 OR "
                        "topic_id = ?2)", &st, errmsg);
    if (rc == 0) {
        sqlite3_bind_text(st, 1, group, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, topic_id);
        rc = step_done(m, st, "clear offsets", errmsg);
    }
    sqlite3_finalize(st);
    if (rc == 0) rc = write_offsets(m, group, v, n, errmsg);
    return end_offsets(m, rc, errmsg);
}

/* A row (topic_id, topic name, queue, offset). */
static int offset_from_row(sqlite3_stmt *st, void *elem)
{
    rn_meta_offset_t *o = elem;
    int64_t q = sqlite3_column_int64(st, 2);
    o->topic_id = sqlite3_column_int64(st, 0);
    o->offset = sqlite3_column_int64(st, 3);
    if (text_col(st, 1, o->topic, RN_META_TOPIC_NAME_MAX) != 0 || q < 0 ||
        q >= RN_META_MAX_QUEUES || o->offset < 0)
        return RN_ECORRUPT;
    o->queue = (uint32_t)q;
    return 0;
}

int rn_meta_offsets_get(rn_meta_t *m, const char *group, int64_t topic_id,
                        rn_meta_offset_t **out, size_t *n, char *errmsg)
{
    *out = NULL; *n = 0;
    sqlite3_stmt *st = NULL;
    int rc = prepare(m, "SELECT o.topic_id, t.name, o.queue, o.next_offset FROM group_offsets o"
                        " JOIN topics t ON t.id = o.topic_id WHERE o.group_name = ?1 AND"
                        " (?2 < 0 OR o.topic_id = ?2) ORDER BY t.name, o.queue", &st, errmsg);
    if (rc != 0) return rc;
    sqlite3_bind_text(st, 1, group, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, topic_id);
    return collect_rows(m, st, sizeof **out, offset_from_row, "read offsets", (void **)out, n,
                        errmsg);
}

/* ---- checkpoints -------------------------------------------------------- */

#define CHECKPOINT_SELECT                                                                \
    "SELECT c.id, c.group_name, c.name, c.created_ms,"                                   \
    "  (SELECT count(*) FROM checkpoint_offsets o WHERE o.checkpoint_id = c.id)"         \
    " FROM checkpoints c"

static int checkpoint_from_row(sqlite3_stmt *st, void *elem)
{
    rn_meta_checkpoint_t *c = elem;
    memset(c, 0, sizeof *c);
    c->id = sqlite3_column_int64(st, 0);
    if (text_col(st, 1, c->group, RN_META_NAME_MAX) != 0 ||
        text_col(st, 2, c->name, RN_META_NAME_MAX) != 0)
        return RN_ECORRUPT;
    c->created_ms = sqlite3_column_int64(st, 3);
    c->offsets = (uint32_t)sqlite3_column_int64(st, 4);
    return 0;
}

int rn_meta_checkpoint_create(rn_meta_t *m, const char *group, const char *name,
                              rn_meta_checkpoint_t *out, char *errmsg)
{
    sqlite3_stmt *st = NULL;
    rn_meta_group_t g;
    int rc = rn_meta_check_name("checkpoint", name, errmsg);
    if (rc != 0) return rc;
    rc = begin(m, errmsg);
    if (rc != 0) return rc;
    rc = rn_meta_group_get(m, group, &g, errmsg);
    if (rc != 0) goto out;
    rc = prepare(m, "INSERT INTO checkpoints(group_name, name, created_ms) VALUES (?1, ?2, ?3)",
                 &st, errmsg);
    if (rc != 0) goto out;
    sqlite3_bind_text(st, 1, group, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, rn_sys.now_ms());
    int s = sqlite3_step(st);
    if ((s & 0xff) == SQLITE_CONSTRAINT) {
        rc = rn_errf(errmsg, RN_EEXIST, "group '%s' already has a checkpoint '%s' (drop it "
                     "first, or pick another name)", group, name);
        goto out;
    }
    if (s != SQLITE_DONE) { rc = sql_err(m, s, "insert checkpoint", errmsg); goto out; }
    int64_t id = sqlite3_last_insert_rowid(m->db);
    sqlite3_finalize(st); st = NULL;
    rc = prepare(m, "INSERT INTO checkpoint_offsets(checkpoint_id, topic_id, queue, next_offset)"
                    " SELECT ?1, topic_id, queue, next_offset FROM group_offsets"
                    " WHERE group_name = ?2", &st, errmsg);
    if (rc != 0) goto out;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_text(st, 2, group, -1, SQLITE_STATIC);
    rc = step_done(m, st, "copy offsets", errmsg);
    sqlite3_finalize(st); st = NULL;
    if (rc != 0) goto out;
    rc = commit(m, errmsg);
    if (rc != 0) goto out;
    if (out) rc = rn_meta_checkpoint_get(m, group, name, out, errmsg);
    return rc;
out:
    sqlite3_finalize(st);
    rollback(m);
    return rc;
}

int rn_meta_checkpoint_list(rn_meta_t *m, const char *group, rn_meta_checkpoint_t **out,
                            size_t *n, char *errmsg)
{
    sqlite3_stmt *st = NULL;
    *out = NULL; *n = 0;
    int rc = prepare(m, CHECKPOINT_SELECT " WHERE ?1 IS NULL OR c.group_name = ?1"
                     " ORDER BY c.group_name, c.id", &st, errmsg);
    if (rc != 0) return rc;
    if (group) sqlite3_bind_text(st, 1, group, -1, SQLITE_STATIC);
    return collect_rows(m, st, sizeof **out, checkpoint_from_row, "list checkpoints",
                        (void **)out, n, errmsg);
}

int rn_meta_checkpoint_get(rn_meta_t *m, const char *group, const char *name,
                           rn_meta_checkpoint_t *out, char *errmsg)
{
    sqlite3_stmt *st = NULL;
    char known[200];
    int rc = prepare(m, CHECKPOINT_SELECT " WHERE (?1 IS NULL OR c.group_name = ?1) AND"
                     " c.name = ?2 ORDER BY c.group_name LIMIT 2", &st, errmsg);
    if (rc != 0) return rc;
    if (group) sqlite3_bind_text(st, 1, group, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
    int s = sqlite3_step(st);
    if (s == SQLITE_ROW) {
        if (checkpoint_from_row(st, out) != 0) {
            rc = rn_errf(errmsg, RN_ECORRUPT, "meta.db: a checkpoint row is damaged");
        } else if (!group && (s = sqlite3_step(st)) == SQLITE_ROW) {
            names_list(m, "SELECT group_name FROM checkpoints WHERE name = ?1 ORDER BY "
                       "group_name LIMIT 9", name, "", "", known, sizeof known);
            rc = rn_errf(errmsg, RN_EINVAL, "checkpoint '%.60s' exists in several groups (%s); "
                         "name the group with --group G", name, known);
        }
    } else if (s == SQLITE_DONE) {
        if (group) {
            rn_meta_group_t g;
            rc = rn_meta_group_get(m, group, &g, errmsg);
            if (rc == 0) {
                names_list(m, "SELECT name FROM checkpoints WHERE group_name = ?1 ORDER BY id "
                           "LIMIT 9", group, "its checkpoints: ", "it has no checkpoints", known,
                           sizeof known);
                rc = rn_errf(errmsg, RN_ENOTFOUND, "group '%s' has no checkpoint '%.60s'; %s",
                             group, name, known);
            }
        } else {
            names_list(m, "SELECT group_name || '/' || name FROM checkpoints ORDER BY "
                       "group_name, id LIMIT 9", NULL, "checkpoints (group/name): ",
                       "there are no checkpoints", known, sizeof known);
            rc = rn_errf(errmsg, RN_ENOTFOUND, "unknown checkpoint '%.60s'; %s", name, known);
        }
    } else {
        rc = sql_err(m, s, "read checkpoint", errmsg);
    }
    sqlite3_finalize(st);
    return rc;
}

int rn_meta_checkpoint_offsets(rn_meta_t *m, int64_t checkpoint_id, rn_meta_offset_t **out,
                               size_t *n, char *errmsg)
{
    *out = NULL; *n = 0;
    sqlite3_stmt *st = NULL;
    int rc = prepare(m, "SELECT o.topic_id, t.name, o.queue, o.next_offset FROM "
                        "checkpoint_offsets o JOIN topics t ON t.id = o.topic_id WHERE "
                        "o.checkpoint_id = ?1 ORDER BY t.name, o.queue", &st, errmsg);
    if (rc != 0) return rc;
    sqlite3_bind_int64(st, 1, checkpoint_id);
    return collect_rows(m, st, sizeof **out, offset_from_row, "read offsets", (void **)out, n,
                        errmsg);
}

int rn_meta_checkpoint_drop(rn_meta_t *m, const char *group, const char *name, char *errmsg)
{
    sqlite3_stmt *st = NULL;
    rn_meta_checkpoint_t c;
    int rc = begin(m, errmsg);
    if (rc != 0) return rc;
    rc = rn_meta_checkpoint_get(m, group, name, &c, errmsg);
    if (rc == 0) rc = prepare(m, "DELETE FROM checkpoints WHERE id = ?1", &st, errmsg);
    if (rc == 0) {
        sqlite3_bind_int64(st, 1, c.id);
        rc = step_done(m, st, "drop checkpoint", errmsg);
    }
    sqlite3_finalize(st);
    if (rc == 0) return commit(m, errmsg);
    rollback(m);
    return rc;
}

/* ---- stream definitions ----------------------------------------------------- */

void rn_meta_stream_names(rn_meta_t *m, char *out, size_t size)
{
    names_list(m, "SELECT name FROM streams ORDER BY name LIMIT 9", NULL, "streams: ",
               "there are no streams", out, size);
}

static int stream_from_row(sqlite3_stmt *st, void *elem)
{
    rn_meta_stream_t *s = elem;
    memset(s, 0, sizeof *s);
    if (text_col(st, 0, s->name, RN_META_NAME_MAX) != 0 ||
        text_col(st, 1, s->topic, RN_META_TOPIC_NAME_MAX) != 0 ||
        text_col(st, 2, s->format, sizeof s->format - 1) != 0 ||
        text_col(st, 3, s->timestamp, RN_META_NAME_MAX) != 0 ||
        text_col(st, 4, s->fields, RN_META_STREAM_FIELDS_MAX) != 0)
        return RN_ECORRUPT;
    s->created_ms = sqlite3_column_int64(st, 5);
    return 0;
}

#define STREAM_SELECT "SELECT name, topic, format, timestamp, fields, created_ms FROM streams"

int rn_meta_stream_create(rn_meta_t *m, const rn_meta_stream_t *s, char *errmsg)
{
    int rc = rn_meta_check_name("stream", s->name, errmsg);
    if (rc != 0) return rc;
    if (strlen(s->fields) > RN_META_STREAM_FIELDS_MAX)
        return rn_errf(errmsg, RN_EINVAL, "the field list is longer than %d bytes",
                       RN_META_STREAM_FIELDS_MAX);
    sqlite3_stmt *st = NULL;
    rn_meta_topic_t t;
    if ((rc = begin(m, errmsg)) != 0) return rc;
    if ((rc = rn_meta_topic_get(m, s->topic, &t, errmsg)) != 0) goto fail;
    rc = prepare(m, "INSERT INTO streams VALUES (?1, ?2, ?3, ?4, ?5, ?6)", &st, errmsg);
    if (rc != 0) goto fail;
    sqlite3_bind_text(st, 1, s->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, s->topic, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, s->format, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, s->timestamp, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, s->fields, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, rn_sys.now_ms());
    int r = sqlite3_step(st);
    if ((r & 0xff) == SQLITE_CONSTRAINT) {
        rc = rn_errf(errmsg, RN_EEXIST, "stream '%.100s' already exists", s->name);
        goto fail;
    }
    if (r != SQLITE_DONE) { rc = sql_err(m, r, "create stream", errmsg); goto fail; }
    sqlite3_finalize(st);
    return commit(m, errmsg);
fail:
    sqlite3_finalize(st);
    rollback(m);
    return rc;
}

int rn_meta_stream_get(rn_meta_t *m, const char *name, rn_meta_stream_t *out, char *errmsg)
{
    return get_by_name(m, STREAM_SELECT " WHERE name = ?1", name, stream_from_row, out, "stream",
                       rn_meta_stream_names, errmsg);
}

int rn_meta_stream_list(rn_meta_t *m, rn_meta_stream_t **out, size_t *n, char *errmsg)
{
    sqlite3_stmt *st = NULL;
    *out = NULL; *n = 0;
    int rc = prepare(m, STREAM_SELECT " ORDER BY name", &st, errmsg);
    if (rc != 0) return rc;
    return collect_rows(m, st, sizeof **out, stream_from_row, "list streams", (void **)out, n,
                        errmsg);
}

int rn_meta_stream_drop(rn_meta_t *m, const char *name, char *errmsg)
{
    rn_meta_stream_t s;
    int rc = rn_meta_stream_get(m, name, &s, errmsg);
    if (rc != 0) return rc;
    sqlite3_stmt *st = NULL;
    if ((rc = prepare(m, "DELETE FROM streams WHERE name = ?1", &st, errmsg)) != 0) return rc;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    rc = step_done(m, st, "drop stream", errmsg);
    sqlite3_finalize(st);
    return rc;
}

/* ---- SQL functions ------------------------------------------------------------ */

static int function_from_row(sqlite3_stmt *st, void *elem)
{
    rn_meta_function_t *f = elem;
    memset(f, 0, sizeof *f);
    if (text_col(st, 0, f->name, RN_META_NAME_MAX) != 0 ||
        text_col(st, 1, f->def, RN_META_FUNCTION_MAX) != 0)
        return RN_ECORRUPT;
    f->created_ms = sqlite3_column_int64(st, 2);
    return 0;
}

int rn_meta_function_create(rn_meta_t *m, const rn_meta_function_t *f, char *errmsg)
{
    int rc = rn_meta_check_name("function", f->name, errmsg);
    if (rc != 0) return rc;
    if (strlen(f->def) > RN_META_FUNCTION_MAX)
        return rn_errf(errmsg, RN_EINVAL, "the function's definition is longer than %d bytes",
                       RN_META_FUNCTION_MAX);
    sqlite3_stmt *st = NULL;
    if ((rc = prepare(m, "INSERT INTO functions VALUES (?1, ?2, ?3)", &st, errmsg)) != 0)
        return rc;
    sqlite3_bind_text(st, 1, f->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, f->def, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, rn_sys.now_ms());
    int r = sqlite3_step(st);
    sqlite3_finalize(st);
    if ((r & 0xff) == SQLITE_CONSTRAINT)
        return rn_errf(errmsg, RN_EEXIST, "function '%.100s' already exists", f->name);
    return r == SQLITE_DONE ? 0 : sql_err(m, r, "create function", errmsg);
}

int rn_meta_function_list(rn_meta_t *m, rn_meta_function_t **out, size_t *n, char *errmsg)
{
    sqlite3_stmt *st = NULL;
    *out = NULL; *n = 0;
    int rc = prepare(m, "SELECT name, def, created_ms FROM functions ORDER BY name", &st, errmsg);
    if (rc != 0) return rc;
    return collect_rows(m, st, sizeof **out, function_from_row, "list functions", (void **)out,
                        n, errmsg);
}

int rn_meta_function_drop(rn_meta_t *m, const char *name, char *errmsg)
{
    sqlite3_stmt *st = NULL;
    int rc = prepare(m, "DELETE FROM functions WHERE name = ?1", &st, errmsg);
    if (rc != 0) return rc;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    rc = step_done(m, st, "drop function", errmsg);
    sqlite3_finalize(st);
    if (rc == 0 && sqlite3_changes(m->db) == 0)
        rc = rn_errf(errmsg, RN_ENOTFOUND, "no function '%.100s'", name);
    return rc;
}

/* ---- tables (schema version 8) ------------------------------------------------- */

static int table_from_row(sqlite3_stmt *st, void *elem)
{
    rn_meta_table_t *t = elem;
    memset(t, 0, sizeof *t);
    if (text_col(st, 0, t->name, RN_META_NAME_MAX) != 0 ||
        text_col(st, 1, t->def, RN_META_TABLE_MAX) != 0)
        return RN_ECORRUPT;
    t->created_ms = sqlite3_column_int64(st, 2);
    return 0;
}

int rn_meta_table_create(rn_meta_t *m, const rn_meta_table_t *t, char *errmsg)
{
    int rc = rn_meta_check_name("table", t->name, errmsg);
    if (rc != 0) return rc;
    if (strlen(t->def) > RN_META_TABLE_MAX)
        return rn_errf(errmsg, RN_EINVAL, "the table's definition is longer than %d bytes",
                       RN_META_TABLE_MAX);
    sqlite3_stmt *st = NULL;
    if ((rc = prepare(m, "INSERT INTO sql_tables VALUES (?1, ?2, ?3)", &st, errmsg)) != 0)
        return rc;
    sqlite3_bind_text(st, 1, t->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, t->def, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, rn_sys.now_ms());
    int r = sqlite3_step(st);
    sqlite3_finalize(st);
    if ((r & 0xff) == SQLITE_CONSTRAINT)
        return rn_errf(errmsg, RN_EEXIST, "table '%.100s' already exists", t->name);
    return r == SQLITE_DONE ? 0 : sql_err(m, r, "create table", errmsg);
}

int rn_meta_table_list(rn_meta_t *m, rn_meta_table_t **out, size_t *n, char *errmsg)
{
    sqlite3_stmt *st = NULL;
    *out = NULL; *n = 0;
    int rc = prepare(m, "SELECT name, def, created_ms FROM sql_tables ORDER BY name", &st,
                     errmsg);
    if (rc != 0) return rc;
    return collect_rows(m, st, sizeof **out, table_from_row, "list tables", (void **)out, n,
                        errmsg);
}

int rn_meta_table_get(rn_meta_t *m, const char *name, rn_meta_table_t *out, char *errmsg)
{
    sqlite3_stmt *st = NULL;
    int rc = prepare(m, "SELECT name, def, created_ms FROM sql_tables WHERE name = ?1", &st,
                     errmsg);
    if (rc != 0) return rc;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int s = sqlite3_step(st);
    if (s == SQLITE_ROW) rc = table_from_row(st, out);
    else if (s == SQLITE_DONE) rc = RN_ENOTFOUND;
    else rc = sql_err(m, s, "get table", errmsg);
    sqlite3_finalize(st);
    if (rc == RN_ECORRUPT) return rn_errf(errmsg, rc, "table '%.100s' is damaged", name);
    if (rc == RN_ENOTFOUND) {
        char names[160];
        names_list(m, "SELECT name FROM sql_tables ORDER BY name LIMIT 9", NULL, "tables: ",
                   "there are no tables", names, sizeof names);
        return rn_errf(errmsg, rc, "unknown table '%.60s'; %s", name, names);
    }
    return rc;
}

int rn_meta_table_drop(rn_meta_t *m, const char *name, char *errmsg)
{
    sqlite3_stmt *st = NULL;
    int rc = prepare(m, "DELETE FROM sql_tables WHERE name = ?1", &st, errmsg);
    if (rc != 0) return rc;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    rc = step_done(m, st, "drop table", errmsg);
    sqlite3_finalize(st);
    if (rc == 0 && sqlite3_changes(m->db) == 0)
        rc = rn_errf(errmsg, RN_ENOTFOUND, "no table '%.100s'", name);
    return rc;
}

/* ---- offset reservations (schema version 5) ------------------------------------ */

int rn_meta_reserve_set(rn_meta_t *m, uint32_t physical_id, int64_t upto, char *errmsg)
{
    sqlite3_stmt *st = NULL;
    int rc = prepare(m, "INSERT INTO offset_reservations(physical_id, upto) VALUES (?1, ?2) "
                        "ON CONFLICT(physical_id) DO UPDATE SET upto = max(upto, excluded.upto)",
                     &st, errmsg);
    if (rc != 0) return rc;
    sqlite3_bind_int64(st, 1, physical_id);
    sqlite3_bind_int64(st, 2, upto);
    int s = sqlite3_step(st);
    rc = s == SQLITE_DONE ? 0 : sql_err(m, s, "offset reservation", errmsg);
    sqlite3_finalize(st);
    return rc;
}

int rn_meta_reserve_get(rn_meta_t *m, uint32_t physical_id, int64_t *upto, char *errmsg)
{
    sqlite3_stmt *st = NULL;
    *upto = 0;
    int rc = prepare(m, "SELECT upto FROM offset_reservations WHERE physical_id = ?1", &st,
                     errmsg);
    if (rc != 0) return rc;
    sqlite3_bind_int64(st, 1, physical_id);
    int s = sqlite3_step(st);
    if (s == SQLITE_ROW) *upto = sqlite3_column_int64(st, 0);
    else if (s != SQLITE_DONE) rc = sql_err(m, s, "offset reservation", errmsg);
    sqlite3_finalize(st);
    return rc;
}

/* ---- pipelines (etl/, schema version 4) -------------------------------------- */

static int pipeline_from_row(sqlite3_stmt *st, void *elem)
{
    rn_meta_pipeline_t *p = elem;
    memset(p, 0, sizeof *p);
    if (text_col(st, 0, p->name, RN_META_NAME_MAX) != 0 ||
        text_col(st, 1, p->sql, RN_META_PIPELINE_SQL_MAX) != 0 ||
        text_col(st, 5, p->creator, RN_META_ACL_PRINCIPAL_MAX) != 0)
        return RN_ECORRUPT;
    p->paused = sqlite3_column_int(st, 2) != 0;
    p->created_ms = sqlite3_column_int64(st, 3);
    p->checkpoint_ms = sqlite3_column_int64(st, 4);
    return 0;
}

#define PIPELINE_SELECT "SELECT name, sql, paused, created_ms, checkpoint_ms, creator " \
                        "FROM pipelines"

static void pipeline_names(rn_meta_t *m, char *out, size_t size)
{
    names_list(m, "SELECT name FROM pipelines ORDER BY name LIMIT 9", NULL, "pipelines: ",
               "there are no pipelines", out, size);
}

static int pipeline_missing(rn_meta_t *m, const char *name, char *errmsg)
{
    char known[160];
    pipeline_names(m, known, sizeof known);
    return rn_errf(errmsg, RN_ENOTFOUND, "unknown pipeline '%.60s%s'; %s", name,
                   strlen(name) > 60 ? "..." : "", known);
}

int rn_meta_pipeline_create(rn_meta_t *m, const char *name, const char *sql,
                            const char *creator, char *errmsg)
{
    int rc = rn_meta_check_name("pipeline", name, errmsg);
    if (rc != 0) return rc;
    if (strlen(sql) > RN_META_PIPELINE_SQL_MAX)
        return rn_errf(errmsg, RN_ETOOBIG, "the pipeline's SQL is longer than %d bytes",
                       RN_META_PIPELINE_SQL_MAX);
    sqlite3_stmt *st = NULL;
    if (!creator) creator = "";
    if (strlen(creator) > RN_META_ACL_PRINCIPAL_MAX)
        return rn_errf(errmsg, RN_EINVAL, "a pipeline's creator is at most %d bytes",
                       RN_META_ACL_PRINCIPAL_MAX);
    rc = prepare(m, "INSERT INTO pipelines(name, sql, created_ms, creator) "
                    "VALUES (?1, ?2, ?3, ?4)", &st, errmsg);
    if (rc != 0) return rc;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, sql, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, rn_sys.now_ms());
    sqlite3_bind_text(st, 4, creator, -1, SQLITE_STATIC);
    int r = sqlite3_step(st);
    if ((r & 0xff) == SQLITE_CONSTRAINT)
        rc = rn_errf(errmsg, RN_EEXIST, "pipeline '%.100s' already exists", name);
    else if (r != SQLITE_DONE)
        rc = sql_err(m, r, "create pipeline", errmsg);
    sqlite3_finalize(st);
    return rc;
}

int rn_meta_pipeline_get(rn_meta_t *m, const char *name, rn_meta_pipeline_t *out, char *errmsg)
{
    return get_by_name(m, PIPELINE_SELECT " WHERE name = ?1", name, pipeline_from_row, out,
                       "pipeline", pipeline_names, errmsg);
}

int rn_meta_pipeline_list(rn_meta_t *m, rn_meta_pipeline_t **out, size_t *n, char *errmsg)
{
    sqlite3_stmt *st = NULL;
    *out = NULL; *n = 0;
    int rc = prepare(m, PIPELINE_SELECT " ORDER BY name", &st, errmsg);
    if (rc != 0) return rc;
    return collect_rows(m, st, sizeof **out, pipeline_from_row, "list pipelines", (void **)out,
                        n, errmsg);
}

/* Run one statement binding ?1 = name (and ?2 = v when v >= 0); RN_ENOTFOUND
 * when it changed no row. */
static int pipeline_update(rn_meta_t *m, const char *sql, const char *name, int64_t v,
                           const char *what, char *errmsg)
{
    sqlite3_stmt *st = NULL;
    int rc = prepare(m, sql, &st, errmsg);
    if (rc != 0) return rc;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    if (v >= 0) sqlite3_bind_int64(st, 2, v);
    rc = step_done(m, st, what, errmsg);
    sqlite3_finalize(st);
    if (rc == 0 && sqlite3_changes(m->db) == 0) rc = pipeline_missing(m, name, errmsg);
    return rc;
}

int rn_meta_pipeline_set_paused(rn_meta_t *m, const char *name, int paused, char *errmsg)
{
    return pipeline_update(m, "UPDATE pipelines SET paused = ?2 WHERE name = ?1", name,
                           paused ? 1 : 0, "pause pipeline", errmsg);
}

int rn_meta_pipeline_drop(rn_meta_t *m, const char *name, char *errmsg)
{
    return pipeline_update(m, "DELETE FROM pipelines WHERE name = ?1", name, -1,
                           "drop pipeline", errmsg);
}

int rn_meta_pipeline_checkpoint(rn_meta_t *m, const char *name, const void *state, size_t len,
                                int64_t at_ms, char *errmsg)
{
    sqlite3_stmt *st = NULL;
    int rc = prepare(m, "UPDATE pipelines SET state = ?2, checkpoint_ms = ?3 WHERE name = ?1",
                     &st, errmsg);
    if (rc != 0) return rc;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    if (state) sqlite3_bind_blob(st, 2, state, (int)len, SQLITE_STATIC);
    else sqlite3_bind_null(st, 2);
    sqlite3_bind_int64(st, 3, at_ms);
    rc = step_done(m, st, "checkpoint pipeline", errmsg);
    sqlite3_finalize(st);
    if (rc == 0 && sqlite3_changes(m->db) == 0) rc = pipeline_missing(m, name, errmsg);
    return rc;
}

int rn_meta_pipeline_state(rn_meta_t *m, const char *name, uint8_t **state, size_t *len,
                           char *errmsg)
{
    sqlite3_stmt *st = NULL;
    *state = NULL; *len = 0;
    int rc = prepare(m, "SELECT state FROM pipelines WHERE name = ?1", &st, errmsg);
    if (rc != 0) return rc;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int s = sqlite3_step(st);
    if (s == SQLITE_ROW) {
        int n = sqlite3_column_bytes(st, 0);
        const void *p = sqlite3_column_blob(st, 0);
        if (p && n > 0) {
            if (!(*state = malloc((size_t)n))) rc = rn_errf(errmsg, -ENOMEM, "out of memory");
            else { memcpy(*state, p, (size_t)n); *len = (size_t)n; }
        }
    } else if (s == SQLITE_DONE) {
        rc = pipeline_missing(m, name, errmsg);
    } else {
        rc = sql_err(m, s, "read pipeline state", errmsg);
    }
    sqlite3_finalize(st);
    return rc;
}

/* ---- access control lists (schema version 6) ------------------------------------ */

static int acl_from_row(sqlite3_stmt *st, void *elem)
{
    rn_meta_acl_t *a = elem;
    memset(a, 0, sizeof *a);
    if (text_col(st, 0, a->principal, RN_META_ACL_PRINCIPAL_MAX) != 0 ||
        text_col(st, 1, a->resource, sizeof a->resource - 1) != 0 ||
        text_col(st, 2, a->pattern, sizeof a->pattern - 1) != 0 ||
        text_col(st, 3, a->name, RN_META_NAME_MAX) != 0 ||
        text_col(st, 4, a->operation, sizeof a->operation - 1) != 0)
        return RN_ECORRUPT;
    a->created_ms = sqlite3_column_int64(st, 5);
    return 0;
}

static void acl_bind(sqlite3_stmt *st, const rn_meta_acl_t *a)
{
    sqlite3_bind_text(st, 1, a->principal, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, a->resource, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, a->pattern, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, a->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, a->operation, -1, SQLITE_STATIC);
}

int rn_meta_acl_add(rn_meta_t *m, const rn_meta_acl_t *a, char *errmsg)
{
    sqlite3_stmt *st = NULL;
    int rc = prepare(m, "INSERT INTO acls(principal, resource, pattern, name, operation, "
                        "created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)", &st, errmsg);
    if (rc != 0) return rc;
    acl_bind(st, a);
    sqlite3_bind_int64(st, 6, rn_sys.now_ms());
    int r = sqlite3_step(st);
    if ((r & 0xff) == SQLITE_CONSTRAINT)
        rc = rn_errf(errmsg, RN_EEXIST, "that ACL entry exists already");
    else if (r != SQLITE_DONE)
        rc = sql_err(m, r, "add ACL", errmsg);
    sqlite3_finalize(st);
    return rc;
}

int rn_meta_acl_remove(rn_meta_t *m, const rn_meta_acl_t *a, char *errmsg)
{
    sqlite3_stmt *st = NULL;
    int rc = prepare(m, "DELETE FROM acls WHERE principal = ?1 AND resource = ?2 AND "
                        "pattern = ?3 AND name = ?4 AND operation = ?5", &st, errmsg);
    if (rc != 0) return rc;
    acl_bind(st, a);
    rc = step_done(m, st, "remove ACL", errmsg);
    sqlite3_finalize(st);
    if (rc == 0 && sqlite3_changes(m->db) == 0)
        rc = rn_errf(errmsg, RN_ENOTFOUND, "no such ACL entry (see `runnel acl list`)");
    return rc;
}

int rn_meta_acl_list(rn_meta_t *m, rn_meta_acl_t **out, size_t *n, char *errmsg)
{
    sqlite3_stmt *st = NULL;
    *out = NULL; *n = 0;
    int rc = prepare(m, "SELECT principal, resource, pattern, name, operation, created_ms "
                        "FROM acls ORDER BY principal, resource, name, pattern, operation",
                     &st, errmsg);
    if (rc != 0) return rc;
    return collect_rows(m, st, sizeof **out, acl_from_row, "list ACLs", (void **)out, n, errmsg);
}
