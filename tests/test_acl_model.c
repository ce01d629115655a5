/*
 * test_acl_model.c — logical-queues/acl.c without a broker: the decision
 * rules against a table of (entries, question) → answer, entry validation
 * and its messages, the text round trip through meta.db, and snapshot swaps
 * under readers on other threads (run under TSan with the core tests).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "logical-queues/acl.h"
#include "logical-queues/meta.h"
#include "tests/util/util.h"

static rn_acl_entry_t E(const char *p, const char *res, const char *name, int prefix,
                        const char *op)
{
    rn_acl_entry_t e;
    char err[RN_ERRMSG_SIZE];
    if (rn_acl_entry_make(p, res, name, prefix, op, &e, err) != 0) fail_msg("%s", err);
    return e;
}

/* Each question asked of the same entries, with its answer. */
static void test_decisions(void **state)
{
    (void)state;
    const char *supers[] = {"root"};
    rn_acl_t *a = NULL;
    char err[RN_ERRMSG_SIZE];
    assert_int_equal(rn_acl_create(supers, 1, &a, err), 0);
    /* No entry: open, except strict checks. */
    assert_true(rn_acl_allowed(a, "x", RN_ACL_TOPIC, "t", RN_ACL_DELETE, 0));
    assert_true(rn_acl_allowed(a, "", RN_ACL_CLUSTER, "", RN_ACL_ALTER, 0));
    assert_false(rn_acl_allowed(a, "x", RN_ACL_CLUSTER, "", RN_ACL_ALTER, RN_ACL_STRICT));
    assert_true(rn_acl_allowed(a, "root", RN_ACL_CLUSTER, "", RN_ACL_ALTER, RN_ACL_STRICT));
    uint64_t g0 = rn_acl_generation(a);
    rn_acl_entry_t v[] = {
        E("alice", "topic", "app.", 1, "produce"),
        E("alice", "group", "g1", 0, "consume"),
        E("*", "topic", "pub", 0, "consume"),
        E("anonymous", "topic", "*", 0, "describe"),
        E("bob", "cluster", "", 0, "query"),
        E("bob", "pipeline", "p", 1, "all"),
    };
    assert_int_equal(rn_acl_set(a, v, sizeof v / sizeof v[0], err), 0);
    assert_true(rn_acl_generation(a) > g0);
    assert_int_equal(rn_acl_count(a), 6);
    static const struct {
        const char *p;
        rn_acl_res_t res;
        const char *name;
        rn_acl_op_t op;
        int want;
    } q[] = {
        {"alice", RN_ACL_TOPIC, "app.x", RN_ACL_PRODUCE, 1},
        {"alice", RN_ACL_TOPIC, "app.", RN_ACL_PRODUCE, 1},
        {"alice", RN_ACL_TOPIC, "app", RN_ACL_PRODUCE, 0},        /* shorter than the prefix */
        {"alice", RN_ACL_TOPIC, "apps.x", RN_ACL_PRODUCE, 0},
        {"alice", RN_ACL_TOPIC, "app.x", RN_ACL_DESCRIBE, 1},     /* implied */
        {"alice", RN_ACL_TOPIC, "app.x", RN_ACL_CONSUME, 0},
        {"alice", RN_ACL_GROUP, "app.x", RN_ACL_PRODUCE, 0},      /* another type */
        {"alice", RN_ACL_GROUP, "g1", RN_ACL_CONSUME, 1},
        {"alice", RN_ACL_GROUP, "g10", RN_ACL_CONSUME, 0},        /* literal */
        {"alice", RN_ACL_TOPIC, "pub", RN_ACL_CONSUME, 1},        /* "*" principal */
        {"zed", RN_ACL_TOPIC, "pub", RN_ACL_CONSUME, 1},
        {"zed", RN_ACL_TOPIC, "pub", RN_ACL_PRODUCE, 0},
        {"", RN_ACL_TOPIC, "pub", RN_ACL_CONSUME, 1},             /* "*" includes anonymous */
        {"", RN_ACL_TOPIC, "any", RN_ACL_DESCRIBE, 1},            /* literal "*" name */
        {"", RN_ACL_TOPIC, "any", RN_ACL_CONSUME, 0},
        {"anonymous", RN_ACL_TOPIC, "any", RN_ACL_DESCRIBE, 1},
        {"zed", RN_ACL_TOPIC, "any", RN_ACL_DESCRIBE, 0},
        {"bob", RN_ACL_CLUSTER, "", RN_ACL_QUERY, 1},
        {"bob", RN_ACL_CLUSTER, "", RN_ACL_DESCRIBE, 0},          /* query implies no describe */
        {"bob", RN_ACL_CLUSTER, "", RN_ACL_ALTER, 0},
        {"bob", RN_ACL_PIPELINE, "p1", RN_ACL_DELETE, 1},         /* all */
        {"bob", RN_ACL_PIPELINE, "q1", RN_ACL_DESCRIBE, 0},
        {"root", RN_ACL_TOPIC, "secret", RN_ACL_DELETE, 1},       /* super user */
        {"zed", RN_ACL_CLUSTER, "", RN_ACL_ALTER, 0},             /* deny by default */
    };
    for (size_t i = 0; i < sizeof q / sizeof q[0]; i++)
        if (rn_acl_allowed(a, q[i].p, q[i].res, q[i].name, q[i].op, 0) != q[i].want)
            fail_msg("question %zu (%s %s %s %s): want %d", i, q[i].p, rn_acl_res_name(q[i].res),
                     q[i].name, rn_acl_op_name(q[i].op), q[i].want);
    assert_true(rn_acl_allowed_any(a, "alice", RN_ACL_TOPIC, RN_ACL_PRODUCE));
    assert_false(rn_acl_allowed_any(a, "zed", RN_ACL_TOPIC, RN_ACL_PRODUCE));
    char msg[RN_ERRMSG_SIZE];
    assert_int_equal(rn_acl_check(a, "", RN_ACL_TOPIC, "x", RN_ACL_PRODUCE, 0, msg, sizeof msg),
                     -EPERM);
    assert_string_equal(msg, "principal 'anonymous' may not produce to topic 'x': no ACL allows "
                             "it (`runnel acl add --principal anonymous --topic x --op produce`)");
    assert_int_equal(rn_acl_check(a, "zed", RN_ACL_CLUSTER, "", RN_ACL_ALTER, 0, msg, sizeof msg),
                     -EPERM);
    assert_non_null(strstr(msg, "may not alter the cluster"));
    assert_non_null(strstr(msg, "runneld --super-user zed"));
    /* A name from a request stays on one line in the message. */
    assert_int_equal(rn_acl_check(a, "zed", RN_ACL_TOPIC, "a\nb\x7f", RN_ACL_CONSUME, 0, msg,
                                  sizeof msg), -EPERM);
    assert_non_null(strstr(msg, "may not consume from topic 'a?b?'"));
    assert_null(strchr(msg, '\n'));
    /* Removing every entry opens it again. */
    assert_int_equal(rn_acl_set(a, NULL, 0, err), 0);
    assert_true(rn_acl_allowed(a, "zed", RN_ACL_CLUSTER, "", RN_ACL_ALTER, 0));
    rn_acl_destroy(a);
}

static void test_bad_entries(void **state)
{
    (void)state;
    rn_acl_entry_t e;
    char err[RN_ERRMSG_SIZE];
    static const struct {
        const char *p, *res, *name;
        int prefix;
        const char *op, *msg;
    } bad[] = {
        {"", "topic", "t", 0, "all", "principal '': give a user name"},
        {"a b", "topic", "t", 0, "all", "principal 'a b'"},
        {"a", "queue", "t", 0, "all", "resource type 'queue': valid types are topic, group"},
        {"a", "topic", "t", 0, "query", "operation 'query' on a topic: valid operations are "
                                        "produce, consume, describe, create, alter, delete, all"},
        {"a", "cluster", "", 0, "produce", "valid operations are describe, create, alter, "
                                          "query, pipeline, all"},
        {"a", "cluster", "x", 0, "all", "the cluster has no name"},
        {"a", "topic", "", 0, "all", "topic name '': give 1..249 characters"},
        {"a", "topic", "a/b", 0, "all", "topic name 'a/b'"},
        {"a", "group", "*", 1, "all", "a prefix cannot be '*'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(rn_acl_entry_make(bad[i].p, bad[i].res, bad[i].name, bad[i].prefix,
                                           bad[i].op, &e, err), RN_EINVAL);
        if (!strstr(err, bad[i].msg)) fail_msg("case %zu: %s", i, err);
    }
    rn_acl_t *a = NULL;
    const char *star[] = {"*"};
    assert_int_equal(rn_acl_create(star, 1, &a, err), RN_EINVAL);
    assert_null(a);
    /* The text form round-trips; a damaged stored entry is RN_ECORRUPT. */
    rn_acl_entry_t in = E("carol", "pipeline", "etl.", 1, "alter"), out;
    rn_meta_acl_t m;
    rn_acl_entry_to_meta(&in, &m);
    assert_string_equal(m.pattern, "prefixed");
    assert_int_equal(rn_acl_entry_from_meta(&m, &out, err), 0);
    assert_memory_equal(&in, &out, sizeof in);
    char line[200];
    rn_acl_entry_format(&out, line, sizeof line);
    assert_string_equal(line, "carol pipeline prefixed etl. alter");
    snprintf(m.pattern, sizeof m.pattern, "regex");
    assert_int_equal(rn_acl_entry_from_meta(&m, &out, err), RN_ECORRUPT);
}

/* Readers on other threads while the entries are swapped (2000 times at
 * least, until every reader made its 20000 checks): no
 * snapshot is freed under a reader (ASan) and no access races (TSan). */
typedef struct rd {
    rn_acl_t   *a;
    atomic_int *done;
    long        torn, checks;
} rd_t;

static void *reader(void *arg)
{
    rd_t *r = arg;
    for (int i = 0; i < 20000; i++) {
        /* Every snapshot holds carol's entry, so rule 2 never applies. */
        if (!rn_acl_allowed(r->a, "carol", RN_ACL_TOPIC, "c", RN_ACL_CONSUME, 0)) r->torn++;
        rn_acl_allowed(r->a, "alice", RN_ACL_TOPIC, "t", RN_ACL_PRODUCE, 0);
        r->checks++;
    }
    atomic_fetch_add(r->done, 1);
    return NULL;
}

static void test_swaps_under_readers(void **state)
{
    (void)state;
    rn_acl_t *a = NULL;
    char err[RN_ERRMSG_SIZE];
    assert_int_equal(rn_acl_create(NULL, 0, &a, err), 0);
    rn_acl_entry_t both[] = {E("carol", "topic", "c", 0, "all"), E("alice", "topic", "t", 0, "produce"),
                             E("alice", "topic", "t", 0, "consume")};
    atomic_int done;
    atomic_init(&done, 0);
    rd_t r[3];
    pthread_t t[3];
    for (int i = 0; i < 3; i++) {
        r[i] = (rd_t){a, &done, 0, 0};
        assert_int_equal(pthread_create(&t[i], NULL, reader, &r[i]), 0);
    }
    long swaps = 0;
    while (atomic_load(&done) < 3 || swaps < 2000)
        assert_int_equal(rn_acl_set(a, both, swaps++ % 2 ? 3 : 1, err), 0);
    assert_int_equal(rn_acl_set(a, both, 3, err), 0);
    long checks = 0;
    for (int i = 0; i < 3; i++) {
        pthread_join(t[i], NULL);
        checks += r[i].checks;
    }
    assert_true(checks > 0);
    for (int i = 0; i < 3; i++) assert_int_equal(r[i].torn, 0);
    /* The last swap holds all three entries. */
    assert_true(rn_acl_allowed(a, "alice", RN_ACL_TOPIC, "t", RN_ACL_PRODUCE, 0));
    assert_int_equal(rn_acl_count(a), 3);
    rn_acl_destroy(a);
}

/* Entries stored in meta.db load into a snapshot (rn_acl_load). */
static void test_load_from_meta(void **state)
{
    (void)state;
    char dir[64], path[PATH_MAX], err[RN_ERRMSG_SIZE];
    assert_int_equal(rn_test_tmpdir(dir, sizeof dir, "aclm"), 0);
    snprintf(path, sizeof path, "%s/meta.db", dir);
    rn_meta_t *m = NULL;
    assert_int_equal(rn_meta_open(path, 1, &m, err), 0);
    rn_acl_entry_t e = E("dave", "topic", "d.", 1, "consume");
    rn_meta_acl_t row;
    rn_acl_entry_to_meta(&e, &row);
    assert_int_equal(rn_meta_acl_add(m, &row, err), 0);
    rn_acl_t *a = NULL;
    assert_int_equal(rn_acl_create(NULL, 0, &a, err), 0);
    assert_int_equal(rn_acl_load(a, m, err), 0);
    assert_int_equal(rn_acl_count(a), 1);
    assert_true(rn_acl_allowed(a, "dave", RN_ACL_TOPIC, "d.1", RN_ACL_CONSUME, 0));
    assert_false(rn_acl_allowed(a, "dave", RN_ACL_TOPIC, "e.1", RN_ACL_CONSUME, 0));
    rn_acl_destroy(a);
    rn_meta_close(m);
    assert_int_equal(rn_test_rmtree(dir), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decisions),
        cmocka_unit_test(test_bad_entries),
        cmocka_unit_test(test_swaps_under_readers),
        cmocka_unit_test(test_load_from_meta),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
