/*
 * test_meta.c — the topic metadata store: schema and version, topic
 * create/list/get, items, name and count validation, duplicates, persistence
 * across reopen, refusal of newer and foreign files.
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

#include "common/error.h"
#include "common/sys.h"
#include "logical-queues/meta.h"

typedef struct fixture {
    char dir[64];
    char path[PATH_MAX];
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    if (!f) return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/rn-meta-XXXXXX");
    if (!mkdtemp(f->dir)) { free(f); return -1; }
    snprintf(f->path, sizeof f->path, "%s/meta.db", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    int rc = system(cmd);
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
    assert_int_equal(sql_int(f->path, "SELECT value FROM counters"), 3);
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
        cmocka_unit_test_setup_teardown(test_schema_enforces_one_open_item, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
