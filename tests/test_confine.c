/*
 * test_confine.c — nothing a client sends over the network can make runneld
 * touch the filesystem outside the roots its operator gave (--sink-dir for
 * pipeline file sinks, --store-root for RemapQueue store paths), and runneld
 * refuses to run as root without --allow-root. A real runneld on loopback:
 *
 *  1. Every path-traversal form — "..", an absolute path outside the root,
 *     a symbolic link to a directory outside, a symbolic link as the final
 *     file or store, the root itself, an empty path, a NUL byte in the SQL
 *     text or the store path — is refused (PERMISSION_DENIED naming the root
 *     and its flag; the empty and NUL forms INVALID_ARGUMENT, from the
 *     parser and the request check), and afterwards the directory outside
 *     the roots is exactly as before and no pipeline or store was added.
 *  2. The allowed forms work: a file sink inside --sink-dir receives every
 *     row; a remap onto a new store inside --store-root keeps offsets dense
 *     and the group's committed offset unchanged. A pipeline stored earlier
 *     (embedded) with a file outside the root fails at open, writing nothing.
 *  3. Without roots both are refused over gRPC, naming the flag, and work
 *     embedded (runnel --data DIR). A 'stdout' sink is refused over gRPC.
 *  4. As root runneld without --allow-root exits 2 saying why, creating
 *     nothing; as another user it starts. A --sink-dir overlapping the data
 *     directory stops it (exit 2): a sink could name meta.db.
 *  5. Through Query, the SQL statements that would write a file (ATTACH,
 *     VACUUM INTO, load_extension) are refused.
 */
#include "tests/test_server.h"
#include "tests/util/util.h"

#include <dirent.h>

#include "etl/etl.h"
#include "server/status.h"
#include "streamsql/sql.h"

#define NREC 20

typedef struct fx {
    srv_t *s;
    char   sinks[PATH_MAX], stores[PATH_MAX], outside[PATH_MAX];
    char   rsinks[PATH_MAX], rstores[PATH_MAX];   /* their canonical paths */
} fx_t;

static void mkdir_ok(const char *path)
{
    if (mkdir(path, 0755) != 0) fail_msg("mkdir %s: %s", path, strerror(errno));
}

static void symlink_ok(const char *target, const char *dir, const char *name)
{
    char p[PATH_MAX + 64];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    if (symlink(target, p) != 0) fail_msg("symlink %s: %s", p, strerror(errno));
}

/* The names in dir, sorted, joined by ' ' (caller frees). */
static char *listing(const char *dir)
{
    struct dirent **v = NULL;
    int n = scandir(dir, &v, NULL, alphasort);
    assert_true(n >= 0);
    char *out = calloc(1, 4096);
    assert_non_null(out);
    for (int i = 0; i < n; i++) {
        if (strcmp(v[i]->d_name, ".") && strcmp(v[i]->d_name, ".."))
            snprintf(out + strlen(out), 4096 - strlen(out), "%s ", v[i]->d_name);
        free(v[i]);
    }
    free(v);
    return out;
}

/* Topic "in" (1 queue) with NREC JSON records, stream ev over it, and a
 * pipeline created embedded whose file sink is outside (a path the operator
 * wrote, before --sink-dir): runneld must not open it. */
static void prepare(fx_t *f)
{
    char err[RN_ERRMSG_SIZE];
    rn_datadir_opts_t o;
    rn_datadir_opts_default(&o);
    o.create = 1;
    rn_datadir_t *d = NULL;
    assert_int_equal(rn_datadir_open(f->s->data, &o, &d, err), 0);
    assert_int_equal(rn_datadir_topic_create(d, "in", 1, NULL, err), 0);
    const char *cs = "CREATE STREAM ev (n INTEGER) WITH (topic = 'in', format = 'json')";
    rn_sql_t *q = NULL;
    assert_int_equal(rn_sql_open(d, cs, strlen(cs), NULL, &q, NULL, err), 0);
    assert_int_equal(rn_sql_run(q, err), 0);
    rn_sql_close(q);
    rn_batch_builder_t b;
    rn_batch_opts_t bo;
    rn_batch_opts_default(&bo);
    assert_int_equal(rn_batch_builder_init(&b, &bo), 0);
    char vals[NREC][32];
    for (int i = 0; i < NREC; i++) {
        snprintf(vals[i], sizeof vals[i], "{\"n\":%d}", i);
        rn_record_t r = {.timestamp = 1700000000000LL + i, .key_len = -1,
                         .value = (const uint8_t *)vals[i], .value_len = (int32_t)strlen(vals[i])};
        assert_int_equal(rn_batch_builder_add(&b, &r), 0);
    }
    const uint8_t *bytes;
    size_t len;
    int64_t base;
    uint64_t ticket;
    rn_datadir_queue_t dq;
    assert_int_equal(rn_batch_builder_finish(&b, &bytes, &len), 0);
    assert_int_equal(rn_datadir_queue_open(d, "in", 0, &dq, err), 0);
    assert_int_equal(rn_datadir_append(d, &dq, bytes, len, &base, &ticket, err), 0);
    assert_int_equal(rn_datadir_wait(d, ticket), 0);
    rn_datadir_queue_close(&dq);
    rn_batch_builder_destroy(&b);
    char sql[PATH_MAX + 128];
    snprintf(sql, sizeof sql, "CREATE PIPELINE emb AS INSERT INTO 'file:%s/emb.jsonl' "
             "SELECT n FROM ev", f->outside);
    if (rn_etl_create(d, sql, strlen(sql), err) != 0) fail_msg("embedded create: %s", err);
    assert_int_equal(rn_datadir_close(d), 0);
}

/* A broker with (roots 1) or without the two roots; outside/ holds a
 * symlink target directory "empty" and nothing else. */
static fx_t *fx_new(int roots)
{
    fx_t *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->s = srv_alloc("group", SRV_MAX_BATCH, NULL);
    assert_non_null(f->s);
    snprintf(f->sinks, sizeof f->sinks, "%s/sinks", f->s->root);
    snprintf(f->stores, sizeof f->stores, "%s/stores", f->s->root);
    snprintf(f->outside, sizeof f->outside, "%s/outside", f->s->root);
    mkdir_ok(f->sinks);
    mkdir_ok(f->stores);
    mkdir_ok(f->outside);
    char p[PATH_MAX + 16];
    snprintf(p, sizeof p, "%s/empty", f->outside);
    mkdir_ok(p);
    snprintf(p, sizeof p, "%s/out", f->sinks);
    mkdir_ok(p);
    /* links out of each root: a directory, a final file, a final store */
    symlink_ok(f->outside, f->sinks, "linkdir");
    snprintf(p, sizeof p, "%s/target.txt", f->outside);
    symlink_ok(p, f->sinks, "linkfile");
    symlink_ok(f->outside, f->stores, "linkdir");
    snprintf(p, sizeof p, "%s/empty", f->outside);
    symlink_ok(p, f->stores, "linkstore");
    assert_non_null(realpath(f->sinks, f->rsinks));
    assert_non_null(realpath(f->stores, f->rstores));
    prepare(f);
    if (roots) {
        f->s->extra[0] = "--sink-dir";
        f->s->extra[1] = f->sinks;
        f->s->extra[2] = "--store-root";
        f->s->extra[3] = f->stores;
    }
    srv_start(f->s);
    return f;
}

static int setup_roots(void **state) { *state = fx_new(1); return 0; }
static int setup_none(void **state) { *state = fx_new(0); return 0; }

static int teardown(void **state)
{
    fx_t *f = *state;
    void *s = f->s;
    free(f);
    return srv_teardown(&s);
}

/* CreatePipeline with sql: its status (0 = created) and message in err. */
static int create_pipeline(srv_t *s, const char *sql, char *err)
{
    Runnel__V1__CreatePipelineRequest cp = RUNNEL__V1__CREATE_PIPELINE_REQUEST__INIT;
    cp.sql = (char *)sql;
    ProtobufCMessage *m = NULL;
    int st = 0;
    err[0] = '\0';
    int rc = rn_rpc_call(s->rpc, RN_RPC_METHOD("CreatePipeline"), &cp.base,
                         &runnel__v1__pipeline_status__descriptor, &m, CALL_MS, &st, err);
    if (m) protobuf_c_message_free_unpacked(m, NULL);
    return rc == 0 ? 0 : st;
}

/* RemapQueue t/0 onto store (raw: sent with its bytes, NUL included). */
static int remap(srv_t *s, const char *topic, const char *store, size_t raw_len, char *err)
{
    Runnel__V1__RemapQueueRequest rr = RUNNEL__V1__REMAP_QUEUE_REQUEST__INIT;
    ProtobufCMessageUnknownField uf;
    uint8_t buf[128];
    rr.topic = (char *)topic;
    rr.queue = 0;
    if (raw_len) {                 /* protobuf-c packs with strlen: send it unknown */
        assert_true(raw_len < sizeof buf);
        buf[0] = (uint8_t)raw_len;
        memcpy(buf + 1, store, raw_len);
        uf.tag = 3;
        uf.wire_type = PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED;
        uf.len = raw_len + 1;
        uf.data = buf;
        rr.base.n_unknown_fields = 1;
        rr.base.unknown_fields = &uf;
    } else {
        rr.store_path = (char *)store;
    }
    ProtobufCMessage *m = NULL;
    int st = 0;
    err[0] = '\0';
    int rc = rn_rpc_call(s->rpc, RN_RPC_METHOD("RemapQueue"), &rr.base,
                         &runnel__v1__topic_info__descriptor, &m, CALL_MS, &st, err);
    if (m) protobuf_c_message_free_unpacked(m, NULL);
    return rc == 0 ? 0 : st;
}

static size_t pipeline_count(srv_t *s)
{
    Runnel__V1__ListPipelinesRequest lp = RUNNEL__V1__LIST_PIPELINES_REQUEST__INIT;
    ProtobufCMessage *m = NULL;
    char err[RN_ERRMSG_SIZE];
    assert_int_equal(rn_rpc_call(s->rpc, RN_RPC_METHOD("ListPipelines"), &lp.base,
                                 &runnel__v1__list_pipelines_response__descriptor, &m, CALL_MS,
                                 NULL, err), 0);
    size_t n = ((Runnel__V1__ListPipelinesResponse *)m)->n_pipelines;
    protobuf_c_message_free_unpacked(m, NULL);
    return n;
}

static size_t store_count(srv_t *s)
{
    Runnel__V1__ListStoresRequest lr = RUNNEL__V1__LIST_STORES_REQUEST__INIT;
    ProtobufCMessage *m = NULL;
    char err[RN_ERRMSG_SIZE];
    assert_int_equal(rn_rpc_call(s->rpc, RN_RPC_METHOD("ListStores"), &lr.base,
                                 &runnel__v1__list_stores_response__descriptor, &m, CALL_MS,
                                 NULL, err), 0);
    size_t n = ((Runnel__V1__ListStoresResponse *)m)->n_stores;
    protobuf_c_message_free_unpacked(m, NULL);
    return n;
}

/* The state string of pipeline name (caller frees). */
static char *pipeline_state(srv_t *s, const char *name)
{
    Runnel__V1__PipelineRequest pr = RUNNEL__V1__PIPELINE_REQUEST__INIT;
    pr.name = (char *)name;
    ProtobufCMessage *m = NULL;
    char err[RN_ERRMSG_SIZE];
    if (rn_rpc_call(s->rpc, RN_RPC_METHOD("GetPipeline"), &pr.base,
                    &runnel__v1__pipeline_status__descriptor, &m, CALL_MS, NULL, err) != 0)
        fail_msg("GetPipeline %s: %s", name, err);
    char *st = strdup(((Runnel__V1__PipelineStatus *)m)->state);
    protobuf_c_message_free_unpacked(m, NULL);
    return st;
}

/* Lines in path once it holds want of them (at most 10 s). */
static int wait_lines(const char *path, int want)
{
    int n = 0;
    for (int i = 0; i < 1000; i++) {
        size_t len = 0;
        if (access(path, F_OK) != 0) { usleep(10000); continue; }
        char *t = rn_test_slurp(path, &len);
        n = 0;
        for (size_t k = 0; t && k < len; k++) n += t[k] == '\n';
        free(t);
        if (n >= want) break;
        usleep(10000);
    }
    return n;
}

static void expect_denied(int st, const char *err, const char *what, const char *root,
                          const char *flag)
{
    if (st != RN_ST_PERMISSION_DENIED || !strstr(err, root) || !strstr(err, flag))
        fail_msg("%s: status %d \"%s\", wanted PERMISSION_DENIED naming %s (%s)", what, st, err,
                 root, flag);
}

/* 1 and 2 for file sinks. */
static void test_sink_paths(void **state)
{
    fx_t *f = *state;
    srv_t *s = f->s;
    char err[RN_ERRMSG_SIZE], sql[PATH_MAX + 256];
    char *before = listing(f->outside), *root_before = listing(f->s->root);
    struct { const char *path; const char *why; } bad[] = {
        {"../escape.txt", "holds '..'"},
        {"out/../../escape.txt", "holds '..'"},
        {"@OUT/abs.txt", "outside the root"},
        {"linkdir/x.txt", "symbolic link"},
        {"linkfile", "symbolic link"},
        {".", "root directory itself"},
        {"@ROOT", "root directory itself"},
        {"@ROOT/", "root directory itself"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char path[PATH_MAX + 32];
        if (!strncmp(bad[i].path, "@OUT", 4))
            snprintf(path, sizeof path, "%s%s", f->outside, bad[i].path + 4);
        else if (!strncmp(bad[i].path, "@ROOT", 5))
            snprintf(path, sizeof path, "%s%s", f->sinks, bad[i].path + 5);
        else
            snprintf(path, sizeof path, "%s", bad[i].path);
        snprintf(sql, sizeof sql, "CREATE PIPELINE p%zu AS INSERT INTO 'file:%s' SELECT n FROM ev",
                 i, path);
        int st = create_pipeline(s, sql, err);
        expect_denied(st, err, path, f->rsinks, "--sink-dir");
        if (!strstr(err, bad[i].why)) fail_msg("%s: \"%s\" lacks \"%s\"", path, err, bad[i].why);
    }
    /* An empty path is no file sink at all: the parser refuses it. */
    assert_int_equal(create_pipeline(s, "CREATE PIPELINE pe AS INSERT INTO 'file:' SELECT n "
                                        "FROM ev", err), RN_ST_INVALID_ARGUMENT);
    assert_non_null(strstr(err, "'file:PATH'"));
    /* stdout would write into runneld's log. */
    assert_int_equal(create_pipeline(s, "CREATE PIPELINE ps AS INSERT INTO 'stdout' SELECT n "
                                        "FROM ev", err), RN_ST_PERMISSION_DENIED);
    assert_non_null(strstr(err, "not available through the broker"));
    /* A NUL in the SQL text cannot cut the path short: over gRPC the request
     * check refuses it; the parser itself refuses one too (files, embedded). */
    Runnel__V1__CreatePipelineRequest cp = RUNNEL__V1__CREATE_PIPELINE_REQUEST__INIT;
    static const char nul_sql[] = "CREATE PIPELINE pn AS INSERT INTO 'file:ok.txt\0/../../x' "
                                  "SELECT n FROM ev";
    ProtobufCMessageUnknownField uf;
    uint8_t buf[128];
    buf[0] = (uint8_t)(sizeof nul_sql - 1);
    memcpy(buf + 1, nul_sql, sizeof nul_sql - 1);
    uf.tag = 1;
    uf.wire_type = PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED;
    uf.len = sizeof nul_sql;
    uf.data = buf;
    cp.base.n_unknown_fields = 1;
    cp.base.unknown_fields = &uf;
    ProtobufCMessage *m = NULL;
    int st = 0;
    assert_true(rn_rpc_call(s->rpc, RN_RPC_METHOD("CreatePipeline"), &cp.base,
                            &runnel__v1__pipeline_status__descriptor, &m, CALL_MS, &st, err) < 0);
    assert_int_equal(st, RN_ST_INVALID_ARGUMENT);
    assert_non_null(strstr(err, "NUL byte"));
    rn_etl_def_t def;
    assert_int_equal(rn_etl_parse(nul_sql, sizeof nul_sql - 1, &def, err), RN_EINVAL);
    assert_non_null(strstr(err, "NUL byte (at byte 46)"));

    /* Nothing was created outside the root, or beside it; no pipeline stored
     * but the embedded one. */
    char *after = listing(f->outside), *root_after = listing(f->s->root);
    assert_string_equal(after, before);
    assert_string_equal(after, "empty ");
    assert_string_equal(root_after, root_before);
    free(after);
    free(root_after);
    assert_int_equal(pipeline_count(s), 1);

    /* The embedded pipeline's file outside the root is refused at open. */
    char *es = NULL;
    for (int i = 0; i < 1000; i++) {              /* its thread opens it: at most 10 s */
        free(es);
        es = pipeline_state(s, "emb");
        if (strstr(es, "failed")) break;
        usleep(10000);
    }
    if (!strstr(es, "failed") || !strstr(es, "outside the root"))
        fail_msg("pipeline emb: state \"%s\"", es);
    free(es);

    /* Allowed: relative and absolute inside; both receive every row. */
    assert_int_equal(create_pipeline(s, "CREATE PIPELINE rel AS INSERT INTO "
                                        "'file:out/rows.jsonl' SELECT n FROM ev", err), 0);
    snprintf(sql, sizeof sql, "CREATE PIPELINE abs AS INSERT INTO 'file:%s/abs.jsonl' "
             "SELECT n FROM ev", f->sinks);
    if (create_pipeline(s, sql, err) != 0) fail_msg("abs: %s", err);
    char p[PATH_MAX + 32];
    snprintf(p, sizeof p, "%s/out/rows.jsonl", f->sinks);
    assert_int_equal(wait_lines(p, NREC), NREC);
    snprintf(p, sizeof p, "%s/abs.jsonl", f->sinks);
    assert_int_equal(wait_lines(p, NREC), NREC);
    after = listing(f->outside);
    assert_string_equal(after, "empty ");
    free(after);
    free(before);
    free(root_before);
}

static void fill(srv_t *s, const char *topic, int n, int first)
{
    batch_t b;
    make_batch(&b, RN_BATCH_CODEC_NONE, n, first, -1, -1, -1);
    assert_int_equal(produce(s, topic, 0, &b, 1, 0, NULL, NULL, NULL), 0);
    batch_free(&b);
}

static void commit_offset(srv_t *s, const char *g, const char *t, int64_t off)
{
    Runnel__V1__QueueOffset a = RUNNEL__V1__QUEUE_OFFSET__INIT;
    a.topic = (char *)t;
    a.offset = off;
    Runnel__V1__QueueOffset *v[1] = {&a};
    Runnel__V1__CommitOffsetsRequest r = RUNNEL__V1__COMMIT_OFFSETS_REQUEST__INIT;
    r.group = (char *)g;
    r.n_offsets = 1;
    r.offsets = v;
    ProtobufCMessage *m = NULL;
    char err[RN_ERRMSG_SIZE];
    if (rn_rpc_call(s->rpc, RN_RPC_METHOD("CommitOffsets"), &r.base,
                    &runnel__v1__commit_offsets_response__descriptor, &m, CALL_MS, NULL, err))
        fail_msg("CommitOffsets: %s", err);
    protobuf_c_message_free_unpacked(m, NULL);
}

static int64_t committed(srv_t *s, const char *g, const char *t)
{
    Runnel__V1__FetchOffsetsRequest r = RUNNEL__V1__FETCH_OFFSETS_REQUEST__INIT;
    r.group = (char *)g;
    r.topic = (char *)t;
    ProtobufCMessage *m = NULL;
    char err[RN_ERRMSG_SIZE];
    if (rn_rpc_call(s->rpc, RN_RPC_METHOD("FetchOffsets"), &r.base,
                    &runnel__v1__fetch_offsets_response__descriptor, &m, CALL_MS, NULL, err))
        fail_msg("FetchOffsets: %s", err);
    Runnel__V1__FetchOffsetsResponse *o = (void *)m;
    assert_int_equal(o->n_offsets, 1);
    int64_t v = o->offsets[0]->offset;
    protobuf_c_message_free_unpacked(m, NULL);
    return v;
}

/* 1 and 2 for store paths. */
static void test_store_paths(void **state)
{
    fx_t *f = *state;
    srv_t *s = f->s;
    char err[RN_ERRMSG_SIZE];
    create_topic(s, "mv", 1);
    fill(s, "mv", 10, 0);
    commit_offset(s, "g", "mv", 5);
    char *before = listing(f->outside), *root_before = listing(f->s->root);
    char *stores_before = listing(f->stores);
    struct { const char *path; const char *why; } bad[] = {
        {"../escape", "holds '..'"},
        {"a/../../escape", "holds '..'"},
        {"@OUT/s", "outside the root"},
        {"linkdir/s", "symbolic link"},
        {"linkstore", "symbolic link"},
        {".", "root directory itself"},
        {"@ROOT", "root directory itself"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char path[PATH_MAX + 32];
        if (!strncmp(bad[i].path, "@OUT", 4))
            snprintf(path, sizeof path, "%s%s", f->outside, bad[i].path + 4);
        else if (!strncmp(bad[i].path, "@ROOT", 5))
            snprintf(path, sizeof path, "%s%s", f->stores, bad[i].path + 5);
        else
            snprintf(path, sizeof path, "%s", bad[i].path);
        int st = remap(s, "mv", path, 0, err);
        expect_denied(st, err, path, f->rstores, "--store-root");
        if (!strstr(err, bad[i].why)) fail_msg("%s: \"%s\" lacks \"%s\"", path, err, bad[i].why);
    }
    /* A NUL byte: refused by the request check, not cut at "s". */
    assert_int_equal(remap(s, "mv", "s\0/../../x", 10, err), RN_ST_INVALID_ARGUMENT);
    assert_non_null(strstr(err, "NUL byte"));
    char *after = listing(f->outside), *root_after = listing(f->s->root);
    char *stores_after = listing(f->stores);
    assert_string_equal(after, before);
    assert_string_equal(root_after, root_before);
    assert_string_equal(stores_after, stores_before);
    assert_string_equal(stores_after, "linkdir linkstore ");
    free(after);
    free(root_after);
    free(stores_after);
    free(before);
    free(root_before);
    free(stores_before);
    assert_int_equal(store_count(s), 1);
    assert_int_equal(hwm_of(s, "mv", 0), 10);

    /* An empty store_path (proto3 cannot tell it from none) names no path:
     * the queue moves to a new item in its current store. */
    assert_int_equal(remap(s, "mv", "", 0, err), 0);
    assert_int_equal(store_count(s), 1);

    /* Allowed: a new store inside the root; offsets and the group's go on. */
    if (remap(s, "mv", "s1", 0, err) != 0) fail_msg("remap s1: %s", err);
    assert_int_equal(store_count(s), 2);
    char p[PATH_MAX + 32];
    snprintf(p, sizeof p, "%s/s1/STORE", f->stores);
    assert_int_equal(access(p, F_OK), 0);
    fill(s, "mv", 5, 10);
    fetch_t fr;
    assert_int_equal(fetch(s, "mv", 0, 0, 0, 0, &fr), 0);
    assert_int_equal(check_records(&fr, 0), 15);
    fetch_free(&fr);
    assert_int_equal(committed(s, "g", "mv"), 5);
}

/* A Query that must end with an error status, or rejected records, holding
 * want; its status (0 for rejected records). */
static int query_fails(srv_t *s, const char *sql, const char *want)
{
    Runnel__V1__QueryRequest req = RUNNEL__V1__QUERY_REQUEST__INIT;
    req.sql = (char *)sql;
    rn_rpc_stream_t *qs = NULL;
    char err[RN_ERRMSG_SIZE] = "";
    assert_int_equal(rn_rpc_stream_open(s->rpc, RN_RPC_METHOD("Query"), &req.base, &qs, err), 0);
    int rc = 0, st = 0;
    for (;;) {
        ProtobufCMessage *m = NULL;
        rc = rn_rpc_stream_next(qs, &runnel__v1__query_response__descriptor, &m, &st, err);
        Runnel__V1__QueryResponse *r = (void *)m;
        /* an expression refused per record: the record is rejected, counted */
        if (rc > 0 && r->stats && r->stats->errors > 0 && r->stats->first_error) {
            snprintf(err, sizeof err, "%s", r->stats->first_error);
            rc = -1;
        }
        if (m) protobuf_c_message_free_unpacked(m, NULL);
        if (rc <= 0) break;
    }
    rn_rpc_stream_close(qs);
    if (rc == 0 || !strstr(err, want))
        fail_msg("Query %s: rc %d status %d \"%s\", wanted an error with \"%s\"", sql, rc, st,
                 err, want);
    return st;
}

/* SQL text is the other way a request could name a file: the statements
 * sqlite would write a file for are not streamsql's, and load_extension()
 * is refused before sqlite sees it. */
static void test_query_paths(void **state)
{
    fx_t *f = *state;
    srv_t *s = f->s;
    char sql[PATH_MAX + 64];
    char *before = listing(f->outside);
    snprintf(sql, sizeof sql, "ATTACH DATABASE '%s/a.db' AS a", f->outside);
    query_fails(s, sql, "unknown statement 'ATTACH'");
    snprintf(sql, sizeof sql, "VACUUM INTO '%s/v.db'", f->outside);
    query_fails(s, sql, "unknown statement 'VACUUM'");
    snprintf(sql, sizeof sql, "SELECT load_extension('%s/x') FROM ev", f->outside);
    query_fails(s, sql, "load_extension() is not available to statements");
    char *after = listing(f->outside);
    assert_string_equal(after, before);
    free(before);
    free(after);
}

/* 3: no roots: refused over gRPC naming the flag; embedded still works. */
static void test_no_roots(void **state)
{
    fx_t *f = *state;
    srv_t *s = f->s;
    char err[RN_ERRMSG_SIZE];
    create_topic(s, "mv", 1);
    fill(s, "mv", 3, 0);
    assert_int_equal(create_pipeline(s, "CREATE PIPELINE rel AS INSERT INTO 'file:rows.jsonl' "
                                        "SELECT n FROM ev", err), RN_ST_PERMISSION_DENIED);
    assert_non_null(strstr(err, "--sink-dir"));
    assert_int_equal(create_pipeline(s, "CREATE PIPELINE ps AS INSERT INTO 'stdout' SELECT n "
                                        "FROM ev", err), RN_ST_PERMISSION_DENIED);
    assert_non_null(strstr(err, "not available through the broker"));
    char store[PATH_MAX + 16];
    snprintf(store, sizeof store, "%s/s1", f->stores);
    assert_int_equal(remap(s, "mv", store, 0, err), RN_ST_PERMISSION_DENIED);
    assert_non_null(strstr(err, "--store-root"));
    assert_int_equal(access(store, F_OK), -1);
    /* The pipeline stored embedded runs as before: no root, the operator's path. */
    char p[PATH_MAX + 32];
    snprintf(p, sizeof p, "%s/emb.jsonl", f->outside);
    assert_int_equal(wait_lines(p, NREC), NREC);
    srv_stop(s);

    /* Embedded: both work as before. */
    char out[PATH_MAX + 16], errf[PATH_MAX + 16], sql[PATH_MAX + 128], rows[PATH_MAX + 16];
    snprintf(out, sizeof out, "%s/cli.out", s->root);
    snprintf(errf, sizeof errf, "%s/cli.err", s->root);
    snprintf(rows, sizeof rows, "%s/rows.jsonl", f->outside);
    snprintf(sql, sizeof sql, "CREATE PIPELINE e2 AS INSERT INTO 'file:%s' SELECT n FROM ev",
             rows);
    const char *create[] = {"runnel", "--data", s->data, "pipeline", "create", sql, NULL};
    int w = rn_test_run(RN_BIN_DIR "/runnel", create, NULL, out, errf);
    assert_true(WIFEXITED(w) && WEXITSTATUS(w) == 0);
    const char *run[] = {"runnel", "--data", s->data, "pipeline", "run", "e2",
                         "--until-caught-up", NULL};
    w = rn_test_run(RN_BIN_DIR "/runnel", run, NULL, out, errf);
    assert_true(WIFEXITED(w) && WEXITSTATUS(w) == 0);
    assert_int_equal(wait_lines(rows, NREC), NREC);
    const char *rm[] = {"runnel", "--data", s->data, "queue", "remap", "mv", "0", "--store",
                        store, NULL};
    w = rn_test_run(RN_BIN_DIR "/runnel", rm, NULL, out, errf);
    assert_true(WIFEXITED(w) && WEXITSTATUS(w) == 0);
    snprintf(p, sizeof p, "%s/STORE", store);
    assert_int_equal(access(p, F_OK), 0);
    srv_start(s);
    assert_int_equal(store_count(s), 2);
    assert_int_equal(hwm_of(s, "mv", 0), 3);
}

/* 4: runneld as root without --allow-root. */
static void test_root_refused(void **state)
{
    (void)state;
    char dir[] = "/tmp/rn-confroot-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char data[64], portf[64], log[64];
    snprintf(data, sizeof data, "%s/d", dir);
    snprintf(portf, sizeof portf, "%s/port", dir);
    snprintf(log, sizeof log, "%s/log", dir);
    const char *argv[] = {"runneld", "--data", data, "--listen", "127.0.0.1:0", "--port-file",
                          portf, NULL};
    if (getuid() == 0) {
        int w = rn_test_run(RN_BIN_DIR "/runneld", argv, NULL, log, log);
        assert_true(WIFEXITED(w) && WEXITSTATUS(w) == 2);
        size_t n = 0;
        char *t = rn_test_slurp(log, &n);
        assert_non_null(t);
        assert_non_null(strstr(t, "refusing to run as root"));
        assert_non_null(strstr(t, "--allow-root"));
        assert_int_equal(strchr(t, '\n') - t + 1, (long)n);      /* one line */
        free(t);
        assert_int_equal(access(data, F_OK), -1);                 /* nothing opened */
        print_message("as root: refused without --allow-root (exit 2)\n");
    } else {
        rn_test_runneld_t r;
        assert_int_equal(rn_test_runneld_start(&r, data, NULL), 0);
        assert_int_equal(rn_test_runneld_stop(&r), 0);
        print_message("not root (uid %d): runneld starts without --allow-root\n", (int)getuid());
    }
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/* A --sink-dir that is, holds or lies inside the data directory would let a
 * file sink name meta.db or a segment: runneld exits 2 before listening. */
static void test_sink_dir_overlap(void **state)
{
    (void)state;
    char dir[] = "/tmp/rn-confov-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char data[64], portf[64], log[64], inner[80];
    snprintf(data, sizeof data, "%s/d", dir);
    snprintf(portf, sizeof portf, "%s/port", dir);
    snprintf(log, sizeof log, "%s/log", dir);
    snprintf(inner, sizeof inner, "%s/d/sinks", dir);
    char err[RN_ERRMSG_SIZE];
    rn_datadir_opts_t o;
    rn_datadir_opts_default(&o);
    o.create = 1;
    rn_datadir_t *d = NULL;
    assert_int_equal(rn_datadir_open(data, &o, &d, err), 0);
    assert_int_equal(rn_datadir_close(d), 0);
    mkdir_ok(inner);
    const char *roots[] = {data, dir, inner};
    for (int i = 0; i < 3; i++) {
        const char *argv[] = {"runneld", "--data", data, "--listen", "127.0.0.1:0",
                              "--port-file", portf, "--sink-dir", roots[i],
                              getuid() == 0 ? "--allow-root" : NULL, NULL};
        int w = rn_test_run(RN_BIN_DIR "/runneld", argv, NULL, log, log);
        char *t = rn_test_slurp(log, NULL);
        if (!WIFEXITED(w) || WEXITSTATUS(w) != 2 || !t || !strstr(t, "overlap"))
            fail_msg("--sink-dir %s: status %d, log: %s", roots[i], w, t ? t : "");
        free(t);
        assert_int_equal(access(portf, F_OK), -1);
    }
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sink_paths, setup_roots, teardown),
        cmocka_unit_test_setup_teardown(test_store_paths, setup_roots, teardown),
        cmocka_unit_test_setup_teardown(test_query_paths, setup_roots, teardown),
        cmocka_unit_test_setup_teardown(test_no_roots, setup_none, teardown),
        cmocka_unit_test(test_root_refused),
        cmocka_unit_test(test_sink_dir_overlap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
