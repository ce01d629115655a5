/*
 * test_meta.c — the topic metadata store: schema and version (and the
 * upgrade from version 1), topic create/alter/list/get/delete, items, remap and
 * item drops in transactions (a refused change leaves everything as it
 * was), name and count validation, duplicates, persistence across reopen,
 * refusal of newer and foreign files, group offsets and checkpoints, the
 * upgrade from version 5 (ACL table, pipeline creators) and ACL entries.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "common/error.h"
#include "common/sys.h"
#include "logical-queues/meta.h"
#include "tests/util/util.h"

typedef struct fixture {
    char dir[64];
    char path[PATH_MAX];
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    if (!f) return -1;
    if (rn_test_tmpdir(f->dir, sizeof f->dir, "meta") != 0) { free(f); return -1; }
    snprintf(f->path, sizeof f->path, "%s/meta.db", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    int rc = rn_test_rmtree(f->dir);
    free(f);
    rn_sys_reset();
    return rc == 0 ? 0 : -1;
}

static rn_meta_t *open_meta(fixture_t *f)
{
    char err[RN_ERRMSG_SIZE] = "";
    rn_meta_t *m = NULL;
    int rc = rn_meta_open(f->path, 1, &m, err);
    if (rc != 0) fail_msg("rn_meta_open: %s", err);
    assert_int_equal(rn_meta_store_register(m, 0, "stores/0", err), 0);
    return m;
}

/* Read one integer with plain sqlite3, outside the module. */
static int64_t sql_int(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static void test_schema_version_and_wal(void **state)
{
    fixture_t *f = *state;
    rn_meta_t *m = open_meta(f);
    char err[RN_ERRMSG_SIZE];
    int v = -1;
    assert_int_equal(rn_meta_schema_version(m, &v, err), 0);
    assert_int_equal(v, RN_META_SCHEMA_VERSION);
    rn_meta_close(m);
    assert_int_equal(sql_int(f->path, "PRAGMA user_version"), RN_META_SCHEMA_VERSION);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM sqlite_master WHERE type = 'table' "
                                      "AND name IN ('stores','topics','physical_queues',"
                                      "'queue_items','counters')"), 5);
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    sqlite3_close(db);
}

static int64_t fixed_now(void) { return 1700000000123LL; }

static void test_create_get_items(void **state)
{
    fixture_t *f = *state;
    rn_meta_t *m = open_meta(f);
    char err[RN_ERRMSG_SIZE];
    rn_meta_topic_t t;
    rn_sys.now_ms = fixed_now;
    assert_int_equal(rn_meta_topic_create(m, "logs", 4, 0, 0, &t, err), 0);
    rn_sys_reset();
    assert_string_equal(t.name, "logs");
    assert_int_equal(t.queues, 4);
    assert_int_equal(t.created_ms, 1700000000123LL);

    rn_meta_item_t *items = NULL;
    size_t n = 0;
    assert_int_equal(rn_meta_items(m, t.id, 2, &items, &n, err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(items[0].queue, 2);
    assert_int_equal(items[0].seq, 0);
    assert_int_equal(items[0].logical_start, 0);
    assert_int_equal(items[0].physical_start, 0);
    assert_int_equal(items[0].physical_end, -1);
    assert_int_equal(items[0].store_id, 0);
    assert_int_equal(items[0].physical_id, 2);
    free(items);

    /* Every queue, ordered; distinct physical ids. */
    assert_int_equal(rn_meta_items(m, t.id, UINT32_MAX, &items, &n, err), 0);
    assert_int_equal(n, 4);
    for (uint32_t q = 0; q < 4; q++) {
        assert_int_equal(items[q].queue, q);
        assert_int_equal(items[q].physical_id, q);
    }
    free(items);

    assert_int_equal(rn_meta_items(m, t.id, 4, &items, &n, err), RN_ENOTFOUND);
    assert_null(items);

    /* A second topic continues the physical id sequence, above the floor. */
    rn_meta_topic_t t2;
    assert_int_equal(rn_meta_topic_create(m, "a.b_c-9", 2, 0, 10, &t2, err), 0);
    assert_int_equal(rn_meta_items(m, t2.id, UINT32_MAX, &items, &n, err), 0);
    assert_int_equal(items[0].physical_id, 10);
    assert_int_equal(items[1].physical_id, 11);
    free(items);
    rn_meta_topic_t t3;
    assert_int_equal(rn_meta_topic_create(m, "third", 1, 0, 0, &t3, err), 0);
    assert_int_equal(rn_meta_items(m, t3.id, 0, &items, &n, err), 0);
    assert_int_equal(items[0].physical_id, 12);
    free(items);

    rn_meta_topic_t *list = NULL;
    assert_int_equal(rn_meta_topic_list(m, &list, &n, err), 0);
    assert_int_equal(n, 3);
    assert_string_equal(list[0].name, "a.b_c-9");
    assert_int_equal(list[0].queues, 2);
    assert_string_equal(list[1].name, "logs");
    assert_int_equal(list[1].queues, 4);
    assert_string_equal(list[2].name, "third");
    free(list);

    assert_int_equal(rn_meta_topic_get(m, "nope", &t, err), RN_ENOTFOUND);
    assert_string_equal(err, "unknown topic 'nope'; topics: a.b_c-9, logs, third");
    rn_meta_close(m);
}

static void test_empty_list(void **state)
{
    fixture_t *f = *state;
    rn_meta_t *m = open_meta(f);
    char err[RN_ERRMSG_SIZE];
    rn_meta_topic_t t;
    assert_int_equal(rn_meta_topic_get(m, "nope", &t, err), RN_ENOTFOUND);
    assert_string_equal(err, "unknown topic 'nope'; there are no topics");
    rn_meta_topic_t *list = (rn_meta_topic_t *)1;
    size_t n = 99;
    assert_int_equal(rn_meta_topic_list(m, &list, &n, err), 0);
    assert_int_equal(n, 0);
    assert_null(list);
    rn_meta_close(m);
}

static void test_name_validation(void **state)
{
    fixture_t *f = *state;
    rn_meta_t *m = open_meta(f);
    char err[RN_ERRMSG_SIZE];
    char longname[260];
    memset(longname, 'x', 250);
    longname[250] = '\0';
    const char *bad[] = {"", "a b", "a/b", "é", ".", "..", "x\n", "tab\t", longname};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        assert_int_equal(rn_meta_topic_create(m, bad[i], 1, 0, 0, NULL, err), RN_EINVAL);
        assert_non_null(strstr(err, "1-249 characters of A-Z a-z 0-9 . _ -"));
    }
    longname[249] = '\0';
    assert_int_equal(rn_meta_topic_create(m, longname, 1, 0, 0, NULL, err), 0);
    assert_int_equal(rn_meta_check_topic_name("A-z_0.9", err), 0);

    size_t n = 1;
    rn_meta_topic_t *list = NULL;
    assert_int_equal(rn_meta_topic_list(m, &list, &n, err), 0);
    assert_int_equal(n, 1);
    free(list);
    rn_meta_close(m);
}

static void test_queue_count_limits(void **state)
{
    fixture_t *f = *state;
    rn_meta_t *m = open_meta(f);
    char err[RN_ERRMSG_SIZE];
    assert_int_equal(rn_meta_topic_create(m, "zero", 0, 0, 0, NULL, err), RN_EINVAL);
    assert_non_null(strstr(err, "1..10000"));
    assert_int_equal(rn_meta_topic_create(m, "many", 10001, 0, 0, NULL, err), RN_EINVAL);
    assert_non_null(strstr(err, "1..10000"));
    rn_meta_topic_t t;
    assert_int_equal(rn_meta_topic_create(m, "max", 10000, 0, 0, &t, err), 0);
    assert_int_equal(t.queues, 10000);
    /* The unknown store is refused and rolls back entirely. */
    assert_int_equal(rn_meta_topic_create(m, "elsewhere", 1, 7, 0, NULL, err), RN_ENOTFOUND);
    assert_int_equal(rn_meta_topic_get(m, "elsewhere", &t, err), RN_ENOTFOUND);
    rn_meta_close(m);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM physical_queues"), 10000);
}

static void test_duplicate_rolls_back(void **state)
{
    fixture_t *f = *state;
    rn_meta_t *m = open_meta(f);
    char err[RN_ERRMSG_SIZE];
    assert_int_equal(rn_meta_topic_create(m, "dup", 3, 0, 0, NULL, err), 0);
    assert_int_equal(rn_meta_topic_create(m, "dup", 5, 0, 0, NULL, err), RN_EEXIST);
    assert_non_null(strstr(err, "topic 'dup' already exists"));
    rn_meta_close(m);
    /* Nothing of the failed attempt remains; the id counter did not move. */
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM physical_queues"), 3);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM queue_items"), 3);
    assert_int_equal(sql_int(f->path, "SELECT value FROM counters WHERE name = 'next_physical_id'"),
                     3);
}

static void test_reopen_persists(void **state)
{
    fixture_t *f = *state;
    rn_meta_t *m = open_meta(f);
    char err[RN_ERRMSG_SIZE];
    rn_meta_topic_t a, b;
    assert_int_equal(rn_meta_topic_create(m, "kept", 2, 0, 0, &a, err), 0);
    rn_meta_close(m);

    m = NULL;
    assert_int_equal(rn_meta_open(f->path, 0, &m, err), 0);
    assert_int_equal(rn_meta_topic_get(m, "kept", &b, err), 0);
    assert_int_equal(b.id, a.id);
    assert_int_equal(b.queues, 2);
    assert_int_equal(b.created_ms, a.created_ms);
    /* Re-registering the same store is a no-op; another path is refused. */
    assert_int_equal(rn_meta_store_register(m, 0, "stores/0", err), 0);
    assert_int_equal(rn_meta_store_register(m, 0, "stores/x", err), RN_EEXIST);
    rn_meta_topic_t c;
    assert_int_equal(rn_meta_topic_create(m, "next", 1, 0, 0, &c, err), 0);
    rn_meta_item_t *items = NULL;
    size_t n = 0;
    assert_int_equal(rn_meta_items(m, c.id, 0, &items, &n, err), 0);
    assert_int_equal(items[0].physical_id, 2);   /* ids 0,1 used before the reopen */
    free(items);
    rn_meta_close(m);
}

static void test_open_refusals(void **state)
{
    fixture_t *f = *state;
    char err[RN_ERRMSG_SIZE];
    rn_meta_t *m = NULL;

    /* Absent without create. */
    assert_int_equal(rn_meta_open(f->path, 0, &m, err), -ENOENT);
    assert_null(m);

    /* Not a database. */
    FILE *fp = fopen(f->path, "w");
    assert_non_null(fp);
    fputs("this is not a sqlite database, just some text long enough to be a header\n", fp);
    fclose(fp);
    assert_int_equal(rn_meta_open(f->path, 0, &m, err), RN_ECORRUPT);
    assert_non_null(strstr(err, "meta.db"));
    unlink(f->path);

    /* A foreign SQLite file. */
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "CREATE TABLE other(x)", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(rn_meta_open(f->path, 0, &m, err), RN_EFORMAT);
    assert_non_null(strstr(err, "not a runnel metadata store"));
    unlink(f->path);

    /* A newer schema. */
    m = open_meta(f);
    rn_meta_close(m);
    m = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(rn_meta_open(f->path, 0, &m, err), RN_EFORMAT);
    assert_non_null(strstr(err, "schema version 99"));
    assert_null(m);
}

static void test_schema_enforces_one_open_item(void **state)
{
    fixture_t *f = *state;
    rn_meta_t *m = open_meta(f);
    char err[RN_ERRMSG_SIZE];
    assert_int_equal(rn_meta_topic_create(m, "t", 1, 0, 0, NULL, err), 0);
    rn_meta_close(m);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    /* A second open item for queue 0 violates the partial unique index. */
    int rc = sqlite3_exec(db, "INSERT INTO queue_items VALUES (1, 0, 1, 0, 0, 0, NULL)",
                          NULL, NULL, NULL);
    assert_int_equal(rc, SQLITE_CONSTRAINT);
    sqlite3_close(db);
}

static void test_upgrade_from_v1(void **state)
{
    fixture_t *f = *state;
    rn_meta_t *m = open_meta(f);
    char err[RN_ERRMSG_SIZE];
    assert_int_equal(rn_meta_topic_create(m, "old", 2, 0, 0, NULL, err), 0);
    rn_meta_close(m);
    /* Make it a version-1 file: what the first release wrote. */
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "DROP TABLE checkpoint_offsets; DROP TABLE checkpoints;"
                                      "DROP TABLE group_offsets; DROP TABLE consumer_groups;"
                                      "DELETE FROM counters WHERE name = 'datadir_id';"
                                      "PRAGMA user_version = 1", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    m = open_meta(f);
    int v = 0;
    assert_int_equal(rn_meta_schema_version(m, &v, err), 0);
    assert_int_equal(v, RN_META_SCHEMA_VERSION);
    int64_t id = 0;
    assert_int_equal(rn_meta_datadir_id(m, &id, err), 0);
    assert_true(id > 0);
    rn_meta_topic_t t;
    assert_int_equal(rn_meta_topic_get(m, "old", &t, err), 0);
    assert_int_equal(t.queues, 2);
    rn_meta_offset_t o = {.topic_id = t.id, .queue = 1, .offset = 0};
    assert_int_equal(rn_meta_offsets_commit(m, "g", &o, 1, err), 0);
    rn_meta_close(m);
}

/* A version-5 file (before ACLs and SQL functions) with a pipeline upgrades
 * to the current version: the pipeline keeps its definition with creator ''
 * (the operator), the acls and functions tables exist and take entries; a
 * second open changes nothing. */
static void test_upgrade_from_v5(void **state)
{
    fixture_t *f = *state;
    rn_meta_t *m = open_meta(f);
    char err[RN_ERRMSG_SIZE];
    assert_int_equal(rn_meta_pipeline_create(m, "p", "CREATE PIPELINE p AS ...", "alice", err), 0);
    rn_meta_close(m);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "DROP TABLE acls; DROP TABLE functions;"
                                      "ALTER TABLE pipelines DROP COLUMN creator;"
                                      "PRAGMA user_version = 5", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM sqlite_master WHERE name = 'acls'"), 0);
    for (int round = 0; round < 2; round++) {
        m = open_meta(f);
        int v = 0;
        assert_int_equal(rn_meta_schema_version(m, &v, err), 0);
        assert_int_equal(v, RN_META_SCHEMA_VERSION);
        rn_meta_pipeline_t *p = malloc(sizeof *p);
        assert_non_null(p);
        assert_int_equal(rn_meta_pipeline_get(m, "p", p, err), 0);
        assert_string_equal(p->sql, "CREATE PIPELINE p AS ...");
        assert_string_equal(p->creator, "");
        free(p);
        rn_meta_acl_t a = {.principal = "alice", .resource = "topic", .pattern = "prefixed",
                           .name = "app.", .operation = "produce"};
        assert_int_equal(rn_meta_acl_add(m, &a, err), round == 0 ? 0 : RN_EEXIST);
        rn_meta_acl_t *v6 = NULL;
        size_t n = 0;
        assert_int_equal(rn_meta_acl_list(m, &v6, &n, err), 0);
        assert_int_equal(n, 1);
        assert_string_equal(v6[0].name, "app.");
        assert_true(v6[0].created_ms > 0);
        free(v6);
        rn_meta_function_t fn = {.name = "twice", .def = "CREATE FUNCTION twice(x INTEGER) "
                                 "RETURNS INTEGER AS 'x * 2'"};
        assert_int_equal(rn_meta_function_create(m, &fn, err), round == 0 ? 0 : RN_EEXIST);
        rn_meta_close(m);
    }
    assert_int_equal(sql_int(f->path, "PRAGMA user_version"), RN_META_SCHEMA_VERSION);
}

/* ACL entries: add, duplicate, remove, remove of a missing one; the
 * pipeline's creator is stored. */
static void test_acl_entries(void **state)
{
    fixture_t *f = *state;
    rn_meta_t *m = open_meta(f);
    char err[RN_ERRMSG_SIZE];
    rn_meta_acl_t a = {.principal = "bob", .resource = "group", .pattern = "literal",
                       .name = "g1", .operation = "consume"};
    rn_meta_acl_t b = {.principal = "*", .resource = "cluster", .pattern = "literal",
                       .name = "", .operation = "describe"};
    assert_int_equal(rn_meta_acl_add(m, &a, err), 0);
    assert_int_equal(rn_meta_acl_add(m, &b, err), 0);
    assert_int_equal(rn_meta_acl_add(m, &a, err), RN_EEXIST);
    assert_int_equal(rn_meta_acl_remove(m, &a, err), 0);
    assert_int_equal(rn_meta_acl_remove(m, &a, err), RN_ENOTFOUND);
    assert_non_null(strstr(err, "no such ACL entry"));
    rn_meta_acl_t *v = NULL;
    size_t n = 0;
    assert_int_equal(rn_meta_acl_list(m, &v, &n, err), 0);
    assert_int_equal(n, 1);
    assert_string_equal(v[0].principal, "*");
    free(v);
    assert_int_equal(rn_meta_pipeline_create(m, "q", "x", "carol", err), 0);
    rn_meta_pipeline_t *p = malloc(sizeof *p);
    assert_non_null(p);
    assert_int_equal(rn_meta_pipeline_get(m, "q", p, err), 0);
    assert_string_equal(p->creator, "carol");
    free(p);
    rn_meta_close(m);
}

/* Items of every queue of topic 1 as "q:seq:ls:pid:store:ps:pe;" text. */
static void items_text(rn_meta_t *m, char *out, size_t size)
{
    char err[RN_ERRMSG_SIZE];
    rn_meta_item_t *v = NULL;
    size_t n = 0, len = 0;
    assert_int_equal(rn_meta_items(m, 1, UINT32_MAX, &v, &n, err), 0);
    out[0] = '\0';
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(out + len, size - len, "%u:%u:%lld:%u:%u:%lld:%lld;", v[i].queue,
                                v[i].seq, (long long)v[i].logical_start, v[i].physical_id,
                                v[i].store_id, (long long)v[i].physical_start,
                                (long long)v[i].physical_end);
    free(v);
}

static void test_remap_alter_drop(void **state)
{
    fixture_t *f = *state;
    rn_meta_t *m = open_meta(f);
    char err[RN_ERRMSG_SIZE], before[1024], after[1024];
    assert_int_equal(rn_meta_topic_create(m, "t", 2, 0, 0, NULL, err), 0);
    rn_meta_remap_t r = {.topic_id = 1, .queue = 0, .open_seq = 0, .physical_end = 7,
                         .store_id = 0, .min_physical_id = 0};
    rn_meta_item_t it;
    assert_int_equal(rn_meta_remap(m, &r, &it, err), 0);
    assert_int_equal(it.seq, 1);
    assert_int_equal(it.logical_start, 7);
    assert_int_equal(it.physical_id, 2);
    assert_int_equal(it.physical_start, 0);
    items_text(m, before, sizeof before);
    assert_string_equal(before, "0:0:0:0:0:0:7;0:1:7:2:0:0:-1;1:0:0:1:0:0:-1;");

    /* Refused remaps change nothing: a stale open item, a seal below the
     * start, an unknown store, a store path already registered. */
    assert_int_equal(rn_meta_remap(m, &r, &it, err), RN_EEXIST);
    assert_non_null(strstr(err, "remapped meanwhile"));
    r.open_seq = 1;
    r.physical_end = -1;
    assert_int_equal(rn_meta_remap(m, &r, &it, err), RN_EINVAL);
    r.physical_end = 3;
    r.store_id = 9;
    assert_int_equal(rn_meta_remap(m, &r, &it, err), RN_ENOTFOUND);
    r.new_store_path = "stores/0";
    assert_int_equal(rn_meta_remap(m, &r, &it, err), RN_EEXIST);
    items_text(m, after, sizeof after);
    assert_string_equal(before, after);

    /* To a new store, with ids above the floor. */
    r.new_store_path = "/mnt/b";
    r.min_physical_id = 40;
    assert_int_equal(rn_meta_remap(m, &r, &it, err), 0);
    assert_int_equal(it.physical_id, 40);
    assert_int_equal(it.store_id, 9);
    assert_int_equal(it.logical_start, 10);
    rn_meta_store_t *st = NULL;
    size_t n = 0;
    assert_int_equal(rn_meta_store_list(m, &st, &n, err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(st[1].path, "/mnt/b");
    assert_int_equal(st[1].physical_queues, 1);
    free(st);

    /* Alter adds queues only. */
    rn_meta_topic_t t;
    assert_int_equal(rn_meta_topic_alter(m, "t", 2, 0, 0, &t, err), RN_EINVAL);
    assert_string_equal(err, "topic 't' has 2 queues; --queues must be more than 2 and at most "
                             "10000 (queues are never removed)");
    assert_int_equal(rn_meta_topic_alter(m, "t", 4, 0, 0, &t, err), 0);
    assert_int_equal(t.queues, 4);
    assert_int_equal(rn_meta_topic_alter(m, "nope", 5, 0, 0, &t, err), RN_ENOTFOUND);

    /* Retention drops sealed items from the front, never the open one. */
    assert_int_equal(rn_meta_items_drop(m, 1, 0, 3, err), RN_EINVAL);
    assert_int_equal(rn_meta_items_drop(m, 1, 0, 2, err), 0);
    rn_meta_item_t *v = NULL;
    assert_int_equal(rn_meta_items(m, 1, 0, &v, &n, err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(v[0].seq, 2);
    assert_int_equal(v[0].logical_start, 10);
    free(v);
    rn_meta_close(m);
}

static void test_groups_and_checkpoints(void **state)
{
    fixture_t *f = *state;
    rn_meta_t *m = open_meta(f);
    char err[RN_ERRMSG_SIZE];
    assert_int_equal(rn_meta_topic_create(m, "b", 2, 0, 0, NULL, err), 0);
    assert_int_equal(rn_meta_topic_create(m, "a", 1, 0, 0, NULL, err), 0);
    rn_meta_group_t *g = NULL;
    size_t n = 0;
    assert_int_equal(rn_meta_group_list(m, &g, &n, err), 0);
    assert_int_equal(n, 0);
    assert_int_equal(rn_meta_group_get(m, "x", g, err), RN_ENOTFOUND);
    assert_non_null(strstr(err, "there are no groups"));
    rn_meta_offset_t o[3] = {{.topic_id = 1, .queue = 1, .offset = 5},
                             {.topic_id = 2, .queue = 0, .offset = 3},
                             {.topic_id = 1, .queue = 0, .offset = 9}};
    assert_int_equal(rn_meta_offsets_commit(m, "g1", o, 3, err), 0);
    o[0].offset = 6;
    assert_int_equal(rn_meta_offsets_commit(m, "g1", o, 1, err), 0);
    assert_int_equal(rn_meta_set_offset_sync(m, 1, err), 0);
    assert_int_equal(rn_meta_checkpoint_create(m, "g1", "c", NULL, err), 0);
    o[1].offset = 4;
    assert_int_equal(rn_meta_offsets_commit(m, "g1", &o[1], 1, err), 0);
    rn_meta_offset_t bad = {.topic_id = 1, .queue = 0, .offset = -1};
    assert_int_equal(rn_meta_offsets_commit(m, "g1", &bad, 1, err), RN_EINVAL);
    assert_int_equal(rn_meta_offsets_commit(m, "bad/name", o, 1, err), RN_EINVAL);
    assert_non_null(strstr(err, "invalid group name 'bad/name'"));
    rn_meta_offset_t *v = NULL;
    assert_int_equal(rn_meta_offsets_get(m, "g1", -1, &v, &n, err), 0);
    /* Ordered by topic name then queue: a/0, b/0, b/1. */
    assert_int_equal(n, 3);
    assert_string_equal(v[0].topic, "a");
    assert_int_equal(v[0].offset, 4);
    assert_string_equal(v[1].topic, "b");
    assert_int_equal(v[1].offset, 9);
    assert_int_equal(v[2].offset, 6);
    free(v);
    rn_meta_close(m);

    m = open_meta(f);
    rn_meta_checkpoint_t cp;
    assert_int_equal(rn_meta_checkpoint_get(m, "g1", "c", &cp, err), 0);
    assert_int_equal(cp.offsets, 3);
    assert_int_equal(rn_meta_checkpoint_offsets(m, cp.id, &v, &n, err), 0);
    assert_int_equal(v[0].offset, 3);                 /* the value at snapshot time */
    free(v);
    assert_int_equal(rn_meta_offsets_replace(m, "g1", 1, o, 0, err), 0);   /* clear topic b */
    assert_int_equal(rn_meta_offsets_get(m, "g1", -1, &v, &n, err), 0);
    assert_int_equal(n, 1);
    free(v);
    assert_int_equal(rn_meta_checkpoint_create(m, "g1", "bad name", NULL, err), RN_EINVAL);
    assert_non_null(strstr(err, "invalid checkpoint name 'bad name'"));
    assert_int_equal(rn_meta_checkpoint_get(m, NULL, "zz", &cp, err), RN_ENOTFOUND);
    assert_string_equal(err, "unknown checkpoint 'zz'; checkpoints (group/name): g1/c");
    rn_meta_checkpoint_t *cl = NULL;
    assert_int_equal(rn_meta_checkpoint_list(m, NULL, &cl, &n, err), 0);
    assert_int_equal(n, 1);
    free(cl);
    assert_int_equal(rn_meta_checkpoint_drop(m, "g1", "c", err), 0);
    assert_int_equal(rn_meta_checkpoint_list(m, "g1", &cl, &n, err), 0);
    assert_int_equal(n, 0);
    free(cl);
    assert_int_equal(rn_meta_group_list(m, &g, &n, err), 0);
    assert_int_equal(n, 1);
    assert_string_equal(g[0].name, "g1");
    assert_int_equal(g[0].offsets, 1);
    free(g);
    rn_meta_close(m);
}

/* A meta.db-shm this process cannot write (left by a run with other rights):
 * opening or the first write fails with a message naming the file and how
 * to fix it. As root the check runs in a child that drops to nobody. */
static void test_readonly_shm(void **state)
{
    fixture_t *f = *state;
    rn_meta_t *m = open_meta(f);
    rn_meta_close(m);
    char shm[PATH_MAX + 8];
    snprintf(shm, sizeof shm, "%s-shm", f->path);
    static const uint8_t zeros[32768];
    rn_test_write_file(shm, zeros, sizeof zeros);
    assert_int_equal(chmod(shm, 0444), 0);
    int drop = getuid() == 0;
    if (drop) {
        assert_int_equal(chown(f->dir, 65534, 65534), 0);
        assert_int_equal(chown(f->path, 65534, 65534), 0);
    }
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char err[RN_ERRMSG_SIZE] = "";
        if (drop && (setgid(65534) != 0 || setuid(65534) != 0)) _exit(3);
        rn_meta_t *c = NULL;
        int rc = rn_meta_open(f->path, 0, &c, err);
        rn_meta_topic_t t;
        if (rc == 0) rc = rn_meta_topic_create(c, "t", 1, 0, 0, &t, err);
        rn_meta_close(c);
        char want[2 * PATH_MAX + 200];
        snprintf(want, sizeof want, "%s is not writable by this process: with no runnel process "
                 "using the directory, remove it: rm %s", shm, shm);
        if (rc == 0 || !strstr(err, want)) {
            fprintf(stderr, "rc %d: %s\n  want: %s\n", rc, err, want);
            _exit(1);
        }
        _exit(0);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

/* Delete: every row naming the topic's id goes (items, group and checkpoint
 * offsets, reservations of its physical queues); physical ids stay used,
 * streams naming it stay, other topics are untouched. */
static void test_topic_delete(void **state)
{
    fixture_t *f = *state;
    rn_meta_t *m = open_meta(f);
    char err[RN_ERRMSG_SIZE] = "";
    rn_meta_topic_t a, b, gone;
    assert_int_equal(rn_meta_topic_create(m, "a", 2, 0, 0, &a, err), 0);
    assert_int_equal(rn_meta_topic_create(m, "b", 1, 0, 0, &b, err), 0);
    rn_meta_remap_t r = {.topic_id = a.id, .queue = 1, .open_seq = 0, .physical_end = 5,
                         .store_id = 0, .min_physical_id = 0};
    assert_int_equal(rn_meta_remap(m, &r, NULL, err), 0);
    assert_int_equal(rn_meta_reserve_set(m, 0, 100, err), 0);    /* a's queue 0 */
    assert_int_equal(rn_meta_reserve_set(m, 2, 100, err), 0);    /* b's queue 0 */
    rn_meta_offset_t v[2] = {{.topic_id = a.id, .queue = 1, .offset = 3},
                             {.topic_id = b.id, .queue = 0, .offset = 0}};
    assert_int_equal(rn_meta_offsets_commit(m, "g", v, 2, err), 0);
    assert_int_equal(rn_meta_checkpoint_create(m, "g", "cp", NULL, err), 0);
    rn_meta_stream_t st = {.name = "s", .topic = "a", .format = "json", .fields = "\"x\" TEXT"};
    assert_int_equal(rn_meta_stream_create(m, &st, err), 0);

    assert_int_equal(rn_meta_topic_delete(m, "a", &gone, err), 0);
    assert_int_equal(gone.id, a.id);
    assert_int_equal(rn_meta_topic_delete(m, "a", NULL, err), RN_ENOTFOUND);
    assert_non_null(strstr(err, "unknown topic 'a'; topics: b"));
    assert_int_equal(rn_meta_topic_get(m, "b", &b, err), 0);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM queue_items"), 1);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM group_offsets"), 1);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM checkpoint_offsets"), 1);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM offset_reservations"), 1);
    assert_int_equal(sql_int(f->path, "SELECT physical_id FROM offset_reservations"), 2);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM physical_queues"), 4);
    rn_meta_stream_t got;
    assert_int_equal(rn_meta_stream_get(m, "s", &got, err), 0);

    /* Recreated: a new id and fresh physical queues. */
    assert_int_equal(rn_meta_topic_create(m, "a", 1, 0, 0, &a, err), 0);
    assert_true(a.id != gone.id);
    rn_meta_item_t *items = NULL;
    size_t n = 0;
    assert_int_equal(rn_meta_items(m, a.id, 0, &items, &n, err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(items[0].physical_id, 4);
    assert_int_equal(items[0].logical_start, 0);
    free(items);
    rn_meta_close(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_schema_version_and_wal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_get_items, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_name_validation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_count_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_rolls_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_persists, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readonly_shm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_schema_enforces_one_open_item, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upgrade_from_v1, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upgrade_from_v5, setup, teardown),
        cmocka_unit_test_setup_teardown(test_acl_entries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remap_alter_drop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_groups_and_checkpoints, setup, teardown),
        cmocka_unit_test_setup_teardown(test_topic_delete, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
