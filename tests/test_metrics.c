/*
 * test_metrics.c — runneld --metrics-listen against a real runneld: the
 * /metrics text is valid Prometheus exposition format (parsed here:
 * every sample belongs to a # TYPE'd family, counters end in _total,
 * histogram buckets are cumulative and end with +Inf equal to _count; and
 * checked by Debian's promtool), counters move exactly with what was
 * produced over gRPC and through the Kafka front (kcat), watermarks and
 * group lag match the queue; other paths are 404. Then a real Prometheus
 * (Debian's package) scrapes runneld every second and a counter is read
 * back through its HTTP API (/api/v1/query) equal to what was produced.
 * Last, a broker with --tls-cert/--tls-key and a user serves /metrics over
 * HTTPS only and answers a scrape only with "Authorization: Bearer TOKEN":
 * Prometheus scraping it over TLS with the token (its scrape config's
 * tls_config and authorization) finds it up; with a wrong token, and with
 * none, down (401), each refusal logged by the broker.
 */
#include "tests/test_server.h"
#include "tests/util/util.h"

#include "server/metrics.h"

#include <ctype.h>
#include <math.h>

#define HTTP_MAX      (8u << 20)
#define PROM_WAIT_MS  30000

typedef struct mfix {
    srv_t *s;
    int    kport, mport;
} mfix_t;

static int setup(void **state)
{
    static const char *const extra[] = {"--kafka-listen", "127.0.0.1:0", "--metrics-listen",
                                        "127.0.0.1:0", NULL};
    void *st = NULL;
    if (srv_init_all(&st, "group", SRV_MAX_BATCH, extra) != 0) return -1;
    mfix_t *f = calloc(1, sizeof *f);
    if (!f) return -1;
    f->s = st;
    FILE *fp = fopen(f->s->portf, "r");
    int g = 0;
    if (!fp || fscanf(fp, "%d %d %d", &g, &f->kport, &f->mport) != 3) return -1;
    fclose(fp);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    mfix_t *f = *state;
    void *st = f->s;
    free(f);
    return srv_teardown(&st);
}

/* ---- a plain HTTP/1.0 client ------------------------------------------------------ */

/* METHOD path on 127.0.0.1:port; the status code, and the body in *body
 * (malloc'd, NUL-terminated). */
static int http(int port, const char *method, const char *path, char **body)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        *body = NULL;
        return -1;
    }
    char req[4096];
    int n = snprintf(req, sizeof req, "%s %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", method, path);
    assert_int_equal(write(fd, req, (size_t)n), n);
    size_t len = 0, cap = 65536;
    char *buf = malloc(cap);
    assert_non_null(buf);
    for (;;) {
        if (len + 1 == cap) {
            assert_true(cap < HTTP_MAX);
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        ssize_t r = read(fd, buf + len, cap - 1 - len);
        if (r <= 0) break;
        len += (size_t)r;
    }
    close(fd);
    buf[len] = '\0';
    int code = -1;
    if (sscanf(buf, "HTTP/1.%*d %d", &code) != 1) code = -1;
    char *hdr_end = strstr(buf, "\r\n\r\n");
    size_t off = hdr_end ? (size_t)(hdr_end + 4 - buf) : len;
    memmove(buf, buf + off, len - off + 1);
    *body = buf;
    return code;
}

static char *scrape(mfix_t *f)
{
    char *body = NULL;
    assert_int_equal(http(f->mport, "GET", "/metrics", &body), 200);
    return body;
}

/* ---- the exposition format, parsed --------------------------------------------------- */

#define MAX_FAMS 256

typedef struct fam {
    char name[128], type[16];
    int  help;
} fam_t;

static int name_char(int c, int first)
{
    return isalpha(c) || c == '_' || c == ':' || (!first && isdigit(c));
}

/* Parse one sample line: name, labels (raw, without le) and le, value. */
static void parse_sample(const char *line, char *name, size_t nsz, char *labels, size_t lsz,
                         char *le, double *value)
{
    const char *p = line;
    size_t n = 0;
    assert_true(name_char((unsigned char)*p, 1));
    while (name_char((unsigned char)*p, 0)) {
        assert_true(n + 1 < nsz);
        name[n++] = *p++;
    }
    name[n] = '\0';
    size_t ln = 0;
    labels[0] = le[0] = '\0';
    if (*p == '{') {
        p++;
        while (*p != '}') {
            char lname[64], lval[512];
            size_t k = 0, v = 0;
            assert_true(name_char((unsigned char)*p, 1));
            while (name_char((unsigned char)*p, 0) && k + 1 < sizeof lname) lname[k++] = *p++;
            lname[k] = '\0';
            assert_true(*p == '=' && p[1] == '"');
            p += 2;
            while (*p != '"') {
                assert_true(*p && *p != '\n');
                char ch = *p++;
                if (ch == '\\') {
                    assert_true(*p == '\\' || *p == '"' || *p == 'n');
                    ch = *p == 'n' ? '\n' : *p;
                    p++;
                }
                assert_true(v + 1 < sizeof lval);
                lval[v++] = ch;
            }
            lval[v] = '\0';
            p++;
            if (!strcmp(lname, "le")) {
                snprintf(le, 64, "%.63s", lval);
            } else {
                int w = snprintf(labels + ln, lsz - ln, "%s%s=%s", ln ? "," : "", lname, lval);
                assert_true(w > 0 && (size_t)w < lsz - ln);
                ln += (size_t)w;
            }
            if (*p == ',') p++;
            else assert_true(*p == '}');
        }
        p++;
    }
    assert_true(*p == ' ');
    p++;
    char *end;
    if (!strncmp(p, "+Inf", 4)) { *value = INFINITY; end = (char *)p + 4; }
    else *value = strtod(p, &end);
    assert_true(end != p);
    assert_true(*end == '\0' || *end == ' ');
}

/* Check the whole text (see the file's comment); returns the number of
 * sample lines. */
static int check_format(const char *text)
{
    fam_t *fams = calloc(MAX_FAMS, sizeof *fams);
    assert_non_null(fams);
    int nf = 0, cur = -1, samples = 0;
    char *copy = strdup(text);
    assert_non_null(copy);
    assert_true(strlen(copy) > 0 && copy[strlen(copy) - 1] == '\n');
    /* the histogram being read */
    double last_le = -INFINITY, last_cum = -1, inf_count = -1;
    for (char *save = NULL, *line = strtok_r(copy, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        if (!strncmp(line, "# HELP ", 7) || !strncmp(line, "# TYPE ", 7)) {
            char nm[128], rest[64];
            assert_int_equal(sscanf(line + 7, "%127s %63s", nm, rest), 2);
            int i = 0;
            while (i < nf && strcmp(fams[i].name, nm)) i++;
            if (i == nf) {
                assert_true(nf < MAX_FAMS);
                snprintf(fams[nf++].name, sizeof fams[0].name, "%s", nm);
            }
            if (line[2] == 'H') {
                fams[i].help = 1;
            } else {
                /* A family is declared once, before its samples. */
                assert_true(fams[i].type[0] == '\0');
                assert_true(!strcmp(rest, "counter") || !strcmp(rest, "gauge") ||
                            !strcmp(rest, "histogram"));
                snprintf(fams[i].type, sizeof fams[i].type, "%.15s", rest);
                if (!strcmp(rest, "counter"))
                    assert_true(strlen(nm) > 6 && !strcmp(nm + strlen(nm) - 6, "_total"));
                cur = i;
                last_le = -INFINITY;
                last_cum = -1;
                inf_count = -1;
            }
            continue;
        }
        assert_true(line[0] != '#');
        char name[128], labels[1024], le[64];
        double v;
        parse_sample(line, name, sizeof name, labels, sizeof labels, le, &v);
        samples++;
        assert_true(cur >= 0);                        /* after a # TYPE */
        const fam_t *fm = &fams[cur];
        assert_true(fm->help);
        size_t fl = strlen(fm->name);
        if (strcmp(fm->type, "histogram") != 0) {
            if (strcmp(name, fm->name) != 0) fail_msg("sample %s outside its family", name);
            assert_true(le[0] == '\0');
            if (!strcmp(fm->type, "counter")) assert_true(v >= 0);
            continue;
        }
        assert_true(!strncmp(name, fm->name, fl));
        const char *suf = name + fl;
        if (!strcmp(suf, "_bucket")) {
            assert_true(le[0] != '\0');
            double b = !strcmp(le, "+Inf") ? INFINITY : strtod(le, NULL);
            assert_true(b > last_le);                 /* bounds ascend */
            assert_true(v >= last_cum);               /* cumulative */
            last_le = b;
            last_cum = v;
            if (isinf(b)) inf_count = v;
        } else if (!strcmp(suf, "_sum")) {
            assert_true(isinf(last_le));              /* buckets end with +Inf */
            assert_true(v >= 0);
        } else if (!strcmp(suf, "_count")) {
            assert_true(inf_count >= 0);
            if (v != inf_count) fail_msg("%s: +Inf %g != _count %g", fm->name, inf_count, v);
        } else {
            fail_msg("sample %s outside histogram %s", name, fm->name);
        }
    }
    for (int i = 0; i < nf; i++) assert_true(fams[i].type[0] != '\0');
    free(copy);
    free(fams);
    return samples;
}

/* The value of the sample `name{labels}` (labels as "k=v,k=v" in the
 * order printed); -1 when absent. */
static double value_of(const char *text, const char *name, const char *labels)
{
    char *copy = strdup(text);
    assert_non_null(copy);
    double found = -1;
    for (char *save = NULL, *line = strtok_r(copy, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '#') continue;
        char nm[128], lb[1024], le[64];
        double v;
        parse_sample(line, nm, sizeof nm, lb, sizeof lb, le, &v);
        if (!strcmp(nm, name) && !strcmp(lb, labels) && !le[0]) { found = v; break; }
    }
    free(copy);
    return found;
}

static double metric(mfix_t *f, const char *name, const char *labels)
{
    char *t = scrape(f);
    double v = value_of(t, name, labels);
    free(t);
    return v;
}

/* ---- helpers: produce, commit ---------------------------------------------------- */

/* nbatches batches of per records to (topic, q); *bytes += their sizes. */
static void produce_n(srv_t *s, const char *topic, uint32_t q, int nbatches, int per,
                      uint64_t *bytes)
{
    static int next = 0;
    for (int i = 0; i < nbatches; i++) {
        batch_t b;
        make_batch(&b, 0, per, next, -1, -1, -1);
        next += per;
        assert_int_equal(produce(s, topic, q, &b, 1, 0, NULL, NULL, NULL), 0);
        if (bytes) *bytes += b.len;
        batch_free(&b);
    }
}

static void commit(srv_t *s, const char *group, const char *topic, uint32_t q, int64_t off)
{
    Runnel__V1__QueueOffset qo = RUNNEL__V1__QUEUE_OFFSET__INIT;
    qo.topic = (char *)topic;
    qo.queue = q;
    qo.offset = off;
    Runnel__V1__QueueOffset *v[1] = {&qo};
    Runnel__V1__CommitOffsetsRequest req = RUNNEL__V1__COMMIT_OFFSETS_REQUEST__INIT;
    req.group = (char *)group;
    req.n_offsets = 1;
    req.offsets = v;
    ProtobufCMessage *m = NULL;
    char err[RN_ERRMSG_SIZE] = "";
    int st;
    int rc = rn_rpc_call(s->rpc, RN_RPC_METHOD("CommitOffsets"), &req.base,
                         &runnel__v1__commit_offsets_response__descriptor, &m, CALL_MS, &st, err);
    if (rc != 0) fail_msg("CommitOffsets: %s", err);
    protobuf_c_message_free_unpacked(m, NULL);
}

static void check_promtool(const char *text)
{
    char path[] = "/tmp/rn-metrics-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t n = strlen(text);
    assert_int_equal(write(fd, text, n), (ssize_t)n);
    close(fd);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "promtool check metrics < %s", path);
    int rc = system(cmd);
    unlink(path);
    if (rc != 0) fail_msg("promtool check metrics refused the text (%d)", rc);
}

/* ---- tests --------------------------------------------------------------------- */

/* Produced records, bytes and batches per queue move exactly; fetches count
 * whole batches; watermarks and group lag match; the text is valid. */
static void test_counters_exact(void **state)
{
    mfix_t *f = *state;
    srv_t *s = f->s;
    create_topic(s, "orders", 2);
    uint64_t b0 = 0, b1 = 0;
    produce_n(s, "orders", 0, 3, 100, &b0);
    produce_n(s, "orders", 1, 1, 7, &b1);
    char *t = scrape(f);
    assert_true(check_format(t) > 50);
    check_promtool(t);
    assert_true(value_of(t, "runnel_produce_records_total", "topic=orders,queue=0") == 300);
    assert_true(value_of(t, "runnel_produce_records_total", "topic=orders,queue=1") == 7);
    assert_true(value_of(t, "runnel_produce_batches_total", "topic=orders,queue=0") == 3);
    assert_true(value_of(t, "runnel_produce_bytes_total", "topic=orders,queue=0") == (double)b0);
    assert_true(value_of(t, "runnel_produce_bytes_total", "topic=orders,queue=1") == (double)b1);
    assert_true(value_of(t, "runnel_queue_high_watermark", "topic=orders,queue=0") == 300);
    assert_true(value_of(t, "runnel_queue_log_start", "topic=orders,queue=0") == 0);
    assert_true(value_of(t, "runnel_append_duration_seconds_count", "") >= 4);
    assert_true(value_of(t, "runnel_produce_ack_duration_seconds_count", "") >= 4);
    assert_true(value_of(t, "runnel_fsync_duration_seconds_count", "") >= 1);
    assert_true(value_of(t, "runnel_store_bytes", "store=0") > (double)(b0 + b1));
    assert_true(value_of(t, "runnel_recovery_scanned_bytes", "store=0") >= 0);
    assert_true(value_of(t, "runnel_grpc_calls_in_flight", "") >= 0);
    assert_true(value_of(t, "runnel_grpc_connections", "") >= 1);    /* the fixture's */
    free(t);

    /* N more records: the counter rises by exactly N. */
    double before = metric(f, "runnel_produce_records_total", "topic=orders,queue=0");
    produce_n(s, "orders", 0, 5, 37, NULL);
    assert_true(metric(f, "runnel_produce_records_total", "topic=orders,queue=0") ==
                before + 185);

    /* A fetch from offset 0 returns whole batches: 3 x 100 + 5 x 37 records. */
    fetch_t fr;
    assert_int_equal(fetch(s, "orders", 0, 0, 1 << 20, 0, &fr), 0);
    assert_int_equal(fr.nbatches, 8);
    fetch_free(&fr);
    t = scrape(f);
    assert_true(value_of(t, "runnel_fetch_records_total", "topic=orders,queue=0") == 485);
    assert_true(value_of(t, "runnel_fetch_batches_total", "topic=orders,queue=0") == 8);
    assert_true(value_of(t, "runnel_fetch_bytes_total", "topic=orders,queue=0") == (double)fr.len);
    free(t);

    /* Group lag: committed vs the high watermark. */
    commit(s, "billing", "orders", 0, 120);
    t = scrape(f);
    check_format(t);
    assert_true(value_of(t, "runnel_group_committed_offset",
                         "group=billing,topic=orders,queue=0") == 120);
    assert_true(value_of(t, "runnel_group_lag", "group=billing,topic=orders,queue=0") == 365);
    free(t);
}

/* The Kafka front goes through the same counters: kcat's records count once. */
static void test_kafka_front(void **state)
{
    mfix_t *f = *state;
    char cmd[256];
    snprintf(cmd, sizeof cmd, "seq 1 250 | kcat -b 127.0.0.1:%d -P -t kaf -X "
             "message.timeout.ms=20000 2>/dev/null", f->kport);
    assert_int_equal(system(cmd), 0);
    char *t = scrape(f);
    check_format(t);
    assert_true(value_of(t, "runnel_produce_records_total", "topic=kaf,queue=0") == 250);
    free(t);
    snprintf(cmd, sizeof cmd, "kcat -b 127.0.0.1:%d -C -t kaf -o beginning -c 250 -e "
             ">/dev/null 2>&1", f->kport);
    assert_int_equal(system(cmd), 0);
    t = scrape(f);
    assert_true(value_of(t, "runnel_fetch_records_total", "topic=kaf,queue=0") >= 250);
    free(t);
    /* kcat has gone: its connections close (the gauge comes back to 0). */
    double conns = -1;
    for (int i = 0; i < 200 && conns != 0; i++) {
        conns = metric(f, "runnel_kafka_connections", "");
        if (conns != 0) usleep(20000);
    }
    assert_true(conns == 0);
}

/* Only GET /metrics: other paths 404, other methods 405. */
static void test_paths(void **state)
{
    mfix_t *f = *state;
    char *body = NULL;
    assert_int_equal(http(f->mport, "GET", "/", &body), 404);
    free(body);
    assert_int_equal(http(f->mport, "GET", "/metricsx", &body), 404);
    free(body);
    assert_int_equal(http(f->mport, "DELETE", "/metrics", &body), 405);
    free(body);
}

/* A parked gRPC fetch shows in runnel_grpc_parked_fetches while it waits. */
static void *long_poll(void *arg)
{
    srv_t *s = arg;
    fetch_t fr;
    int64_t end = 0;
    /* offset at the end of queue 1 of orders (7 records): waits up to 3 s. */
    end = 7;
    if (fetch(s, "orders", 1, end, 1 << 20, 3000, &fr) == 0) fetch_free(&fr);
    return NULL;
}

static void test_parked_gauge(void **state)
{
    mfix_t *f = *state;
    /* A second connection: the fixture's is used by this thread. */
    srv_t s2 = *f->s;
    char target[64], err[RN_ERRMSG_SIZE];
    snprintf(target, sizeof target, "127.0.0.1:%d", f->s->port);
    assert_int_equal(rn_rpc_open(target, &s2.rpc, err), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, long_poll, &s2), 0);
    double parked = 0;
    for (int i = 0; i < 100 && parked < 1; i++) {
        parked = metric(f, "runnel_grpc_parked_fetches", "");
        if (parked < 1) usleep(20000);
    }
    assert_true(parked == 1);
    assert_true(metric(f, "runnel_grpc_calls_in_flight", "") >= 1);
    pthread_join(th, NULL);
    rn_rpc_close(s2.rpc);
    assert_true(metric(f, "runnel_grpc_parked_fetches", "") == 0);
}

/* A pipeline running inside runneld: its counts (as of its checkpoints),
 * lag and checkpoint age. */
static void test_pipeline(void **state)
{
    mfix_t *f = *state;
    char cmd[1024], srv[64];
    snprintf(srv, sizeof srv, "--server 127.0.0.1:%d", f->s->port);
    snprintf(cmd, sizeof cmd, "%s/runnel %s topic create pin >/dev/null && "
             "%s/streamsql %s -e \"CREATE STREAM pev (svc TEXT, lat INTEGER) WITH "
             "(topic = 'pin', format = 'json')\" && "
             "%s/runnel %s pipeline create \"CREATE PIPELINE slow AS INSERT INTO pout "
             "SELECT svc, lat FROM pev WHERE lat > 10\" >/dev/null && "
             "seq 1 100 | sed 's/.*/{\"svc\":\"a\",\"lat\":&}/' | "
             "%s/runnel %s produce pin >/dev/null 2>&1", RN_BIN_DIR, srv, RN_BIN_DIR, srv,
             RN_BIN_DIR, srv, RN_BIN_DIR, srv);
    assert_int_equal(system(cmd), 0);
    double in = -1, out = -1;
    for (int i = 0; i < 200 && !(in == 100 && out == 90); i++) {
        char *t = scrape(f);
        in = value_of(t, "runnel_pipeline_records_in_total", "pipeline=slow");
        out = value_of(t, "runnel_pipeline_records_out_total", "pipeline=slow");
        free(t);
        if (!(in == 100 && out == 90)) usleep(50000);
    }
    assert_true(in == 100 && out == 90);
    char *t = scrape(f);
    check_format(t);
    assert_true(value_of(t, "runnel_pipeline_errors_total", "pipeline=slow") == 0);
    assert_true(value_of(t, "runnel_pipeline_lag", "pipeline=slow,topic=pin,queue=0") == 0);
    double age = value_of(t, "runnel_pipeline_checkpoint_age_seconds", "pipeline=slow");
    assert_true(age >= 0 && age < 60);
    assert_true(value_of(t, "runnel_queue_high_watermark", "topic=pout,queue=0") == 90);
    free(t);
}

static void reread_ports(mfix_t *f)
{
    FILE *fp = fopen(f->s->portf, "r");
    int g = 0;
    assert_non_null(fp);
    assert_int_equal(fscanf(fp, "%d %d %d", &g, &f->kport, &f->mport), 3);
    fclose(fp);
}

/* What the last open's recovery did: clean after SIGTERM; after kill -9 not
 * clean, with the commit log scanned. Counters start again from zero. */
static void test_recovery(void **state)
{
    mfix_t *f = *state;
    srv_restart(f->s);
    reread_ports(f);
    char *t = scrape(f);
    check_format(t);
    assert_true(value_of(t, "runnel_recovery_clean", "store=0") == 1);
    assert_true(value_of(t, "runnel_produce_records_total", "topic=orders,queue=0") == -1);
    assert_true(value_of(t, "runnel_queue_high_watermark", "topic=orders,queue=0") == 485);
    free(t);
    produce_n(f->s, "orders", 1, 2, 10, NULL);
    rn_rpc_close(f->s->rpc);
    f->s->rpc = NULL;
    assert_int_equal(srv_kill_wait(f->s, SIGKILL), 128 + SIGKILL);
    srv_start(f->s);
    reread_ports(f);
    t = scrape(f);
    check_format(t);
    assert_true(value_of(t, "runnel_recovery_clean", "store=0") == 0);
    assert_true(value_of(t, "runnel_recovery_scanned_bytes", "store=0") > 0);
    assert_true(value_of(t, "runnel_recovery_truncated_bytes", "store=0") == 0);
    assert_true(value_of(t, "runnel_recovery_duration_seconds", "store=0") > 0);
    assert_true(value_of(t, "runnel_queue_high_watermark", "topic=orders,queue=1") == 27);
    free(t);
}

/* runneld refuses a bad --metrics-listen address (exit 2), and one it cannot
 * listen on (exit 1, port file not written), naming the flag. */
static void test_refusals(void **state)
{
    (void)state;
    char dir[] = "/tmp/rn-mref-XXXXXX", cmd[PATH_MAX + 512], log[64], *text = NULL;
    assert_non_null(mkdtemp(dir));
    snprintf(log, sizeof log, "%s/log", dir);
    /* runneld refuses uid 0 without --allow-root */
    const char *ar = getuid() == 0 ? "--allow-root" : "";
    snprintf(cmd, sizeof cmd, "timeout 30 %s/runneld --data %s/d --listen 127.0.0.1:0 %s "
             "--metrics-listen 127.0.0.1:99999 2>%s", RN_BIN_DIR, dir, ar, log);
    int st = system(cmd);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 2);
    FILE *fp = fopen(log, "r");
    assert_non_null(fp);
    text = calloc(1, 4096);
    assert_non_null(text);
    size_t n = fread(text, 1, 4095, fp);
    fclose(fp);
    text[n] = '\0';
    assert_non_null(strstr(text, "--metrics-listen"));
    free(text);

    /* A port already listened on. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 1), 0);
    socklen_t al = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
    snprintf(cmd, sizeof cmd, "timeout 30 %s/runneld --data %s/d --listen 127.0.0.1:0 %s "
             "--metrics-listen 127.0.0.1:%d --port-file %s/port 2>%s", RN_BIN_DIR, dir, ar,
             ntohs(a.sin_port), dir, log);
    st = system(cmd);
    close(fd);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 1);
    fp = fopen(log, "r");
    assert_non_null(fp);
    text = calloc(1, 65536);
    assert_non_null(text);
    n = fread(text, 1, 65535, fp);
    fclose(fp);
    text[n] = '\0';
    assert_non_null(strstr(text, "--metrics-listen"));
    free(text);
    snprintf(cmd, sizeof cmd, "%s/port", dir);
    assert_int_equal(access(cmd, F_OK), -1);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/* Label values are escaped (\\, \", \n) and read back unchanged; the text
 * stays valid. Rendered in process (no topic name holds these bytes). */
static void test_escaping(void **state)
{
    (void)state;
    const char *odd = "a\"b\\c\nd}e,f=g";
    rn_mqueue_t *m = rn_metrics_queue(odd, 3);
    assert_non_null(m);
    assert_ptr_equal(rn_metrics_queue(odd, 3), m);
    rn_metrics_produced(m, 5, 100);
    rn_metrics_produced(m, 2, 40);
    rn_buf_t b = RN_BUF_INIT;
    assert_int_equal(rn_metrics_render(NULL, &b), 0);
    assert_int_equal(rn_buf_append(&b, "", 1, 0), 0);
    const char *t = (const char *)b.data;
    check_format(t);
    assert_non_null(strstr(t, "topic=\"a\\\"b\\\\c\\nd}e,f=g\",queue=\"3\""));
    char want[128];
    snprintf(want, sizeof want, "topic=%s,queue=3", odd);
    assert_true(value_of(t, "runnel_produce_records_total", want) == 7);
    assert_true(value_of(t, "runnel_produce_bytes_total", want) == 140);
    assert_true(value_of(t, "runnel_produce_batches_total", want) == 2);
    rn_buf_free(&b);
}

/* ---- a real Prometheus scraping runneld ---------------------------------------------- */

/* Prometheus scraping 127.0.0.1:mport every second; scrape_configs: the
 * jobs' YAML (NULL: one plain HTTP job "runneld"). */
static pid_t spawn_prometheus(const char *dir, int mport, int pport, const char *scrape_configs)
{
    char cfg[PATH_MAX], tsdb[PATH_MAX], logf[PATH_MAX], listen[64], cfgarg[PATH_MAX + 16],
         tsdbarg[PATH_MAX + 32], webarg[96];
    snprintf(cfg, sizeof cfg, "%s/prometheus.yml", dir);
    snprintf(tsdb, sizeof tsdb, "%s/tsdb", dir);
    snprintf(logf, sizeof logf, "%s/prometheus.log", dir);
    FILE *fp = fopen(cfg, "w");
    assert_non_null(fp);
    if (scrape_configs)
        fprintf(fp, "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                    "scrape_configs:\n%s", scrape_configs);
    else
        fprintf(fp, "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                    "scrape_configs:\n  - job_name: runneld\n    static_configs:\n"
                    "      - targets: ['127.0.0.1:%d']\n", mport);
    fclose(fp);
    snprintf(listen, sizeof listen, "127.0.0.1:%d", pport);
    snprintf(cfgarg, sizeof cfgarg, "--config.file=%s", cfg);
    snprintf(tsdbarg, sizeof tsdbarg, "--storage.tsdb.path=%s", tsdb);
    snprintf(webarg, sizeof webarg, "--web.listen-address=%s", listen);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(logf, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) { dup2(fd, 1); dup2(fd, 2); close(fd); }
        execlp("prometheus", "prometheus", cfgarg, tsdbarg, webarg, "--log.level=warn",
               (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* The value Prometheus returns for an instant query (URL-encoded), or -1. */
static double prom_query(int pport, const char *encoded)
{
    char path[512], *body = NULL;
    snprintf(path, sizeof path, "/api/v1/query?query=%s", encoded);
    if (http(pport, "GET", path, &body) != 200) { free(body); return -1; }
    /* {"status":"success","data":{"resultType":"vector","result":[{"metric":{...},
     *  "value":[1700000000.123,"185"]}]}} */
    double v = -1;
    const char *p = strstr(body, "\"value\":[");
    if (p && (p = strchr(p, ',')) && p[1] == '"') v = strtod(p + 2, NULL);
    free(body);
    return v;
}

static void test_prometheus_scrapes(void **state)
{
    mfix_t *f = *state;
    create_topic(f->s, "scraped", 1);
    produce_n(f->s, "scraped", 0, 4, 123, NULL);  /* 492 records */
    char dir[] = "/tmp/rn-prom-XXXXXX";
    assert_non_null(mkdtemp(dir));
    int pport = free_port();
    pid_t pid = spawn_prometheus(dir, f->mport, pport, NULL);
    const char *q = "runnel_produce_records_total%7Btopic%3D%22scraped%22%2Cjob%3D%22runneld"
                    "%22%7D";
    double v = -1;
    uint64_t t0 = rn_mono_ns();
    while (rn_mono_ns() - t0 < (uint64_t)PROM_WAIT_MS * 1000000u) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            char cmd[PATH_MAX];
            snprintf(cmd, sizeof cmd, "cat %s/prometheus.log >&2", dir);
            if (system(cmd) != 0) fprintf(stderr, "(no log)\n");
            fail_msg("prometheus exited (status %d)", status);
        }
        v = prom_query(pport, q);
        if (v == 492) break;
        usleep(250000);
    }
    fprintf(stderr, "prometheus returned %g after %.1f s\n", v,
            (double)(rn_mono_ns() - t0) / 1e9);
    /* up{job="runneld"} is 1: Prometheus itself found the target healthy. */
    double up = prom_query(pport, "up%7Bjob%3D%22runneld%22%7D");
    kill(pid, SIGTERM);
    int status;
    waitpid(pid, &status, 0);
    char cmd[PATH_MAX];
    if (v != 492) {
        snprintf(cmd, sizeof cmd, "cat %s/prometheus.log >&2", dir);
        if (system(cmd) != 0) fprintf(stderr, "(no log)\n");
    }
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    assert_true(v == 492);
    assert_true(up == 1);
}

/* HTTPS and a bearer token: Prometheus with the token over TLS finds the
 * broker up; with a wrong token or none, down (each 401, logged). */
static void test_prometheus_tls_token(void **state)
{
    (void)state;
    char dir[] = "/tmp/rn-promtls-XXXXXX";
    assert_non_null(mkdtemp(dir));
    assert_int_equal(rn_test_make_certs(dir), 0);
    static char cert[PATH_MAX], key[PATH_MAX];
    snprintf(cert, sizeof cert, "%s/srv.pem", dir);
    snprintf(key, sizeof key, "%s/srv.key", dir);
    const char *extra[] = {"--metrics-listen", "127.0.0.1:0", "--tls-cert", cert, "--tls-key",
                           key, NULL};
    srv_t *s = srv_alloc("group", SRV_MAX_BATCH, extra);
    assert_non_null(s);
    srv_start(s);
    int g = 0, k = 0, mport = 0;
    FILE *fp = fopen(s->portf, "r");
    assert_non_null(fp);
    assert_int_equal(fscanf(fp, "%d %d %d", &g, &k, &mport), 3);
    fclose(fp);
    /* A user: from now on a scrape needs its token. */
    char outp[PATH_MAX], errp[PATH_MAX];
    snprintf(outp, sizeof outp, "%s/user.out", dir);
    snprintf(errp, sizeof errp, "%s/user.err", dir);
    const char *argv[] = {"runnel", "--data", s->data, "user", "add", "scraper", NULL};
    assert_int_equal(rn_test_run(RN_BIN_DIR "/runnel", argv, NULL, outp, errp), 0);
    char *tok = rn_test_slurp(outp, NULL);
    assert_non_null(tok);
    char *nl = strchr(tok, '\n');
    assert_non_null(nl);
    *nl = 0;
    /* Plain HTTP to the HTTPS port gets no HTTP answer. */
    char *body = NULL;
    assert_true(http(mport, "GET", "/metrics", &body) != 200);
    free(body);
    char jobs[4096];
    snprintf(jobs, sizeof jobs,
             "  - job_name: good\n    scheme: https\n    tls_config:\n      ca_file: %s/ca.pem\n"
             "    authorization:\n      type: Bearer\n      credentials: '%s'\n"
             "    static_configs:\n      - targets: ['127.0.0.1:%d']\n"
             "  - job_name: wrong\n    scheme: https\n    tls_config:\n      ca_file: %s/ca.pem\n"
             "    authorization:\n      type: Bearer\n      credentials: 'scraper.wrong'\n"
             "    static_configs:\n      - targets: ['127.0.0.1:%d']\n"
             "  - job_name: none\n    scheme: https\n    tls_config:\n      ca_file: %s/ca.pem\n"
             "    static_configs:\n      - targets: ['127.0.0.1:%d']\n",
             dir, tok, mport, dir, mport, dir, mport);
    free(tok);
    int pport = free_port();
    pid_t pid = spawn_prometheus(dir, mport, pport, jobs);
    double good = -1, wrong = -1, none = -1, rec = -1;
    uint64_t t0 = rn_mono_ns();
    while (rn_mono_ns() - t0 < (uint64_t)PROM_WAIT_MS * 1000000u) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            char cmd[PATH_MAX];
            snprintf(cmd, sizeof cmd, "cat %s/prometheus.log >&2", dir);
            if (system(cmd) != 0) fprintf(stderr, "(no log)\n");
            fail_msg("prometheus exited (status %d)", status);
        }
        good = prom_query(pport, "up%7Bjob%3D%22good%22%7D");
        wrong = prom_query(pport, "up%7Bjob%3D%22wrong%22%7D");
        none = prom_query(pport, "up%7Bjob%3D%22none%22%7D");
        rec = prom_query(pport, "runnel_recovery_duration_seconds%7Bjob%3D%22good%22%7D");
        if (good == 1 && wrong == 0 && none == 0 && rec >= 0) break;
        usleep(250000);
    }
    fprintf(stderr, "prometheus: up good %g, wrong token %g, no token %g after %.1f s\n", good,
            wrong, none, (double)(rn_mono_ns() - t0) / 1e9);
    kill(pid, SIGTERM);
    int status;
    waitpid(pid, &status, 0);
    char *log = rn_test_slurp(s->logf, NULL);
    int logged = log && strstr(log, "metrics: refused a scrape from 127.0.0.1: unknown or wrong "
                                    "token") &&
                 strstr(log, "metrics: refused a scrape from 127.0.0.1: no Authorization header");
    free(log);
    if (!(good == 1 && wrong == 0 && none == 0 && rec >= 0 && logged)) {
        char cmd[PATH_MAX];
        snprintf(cmd, sizeof cmd, "cat %s/prometheus.log >&2", dir);
        if (system(cmd) != 0) fprintf(stderr, "(no log)\n");
        srv_print_log(s);
    }
    void *sv = s;
    assert_int_equal(srv_teardown(&sv), 0);
    char cmd[PATH_MAX];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    assert_true(good == 1);
    assert_true(wrong == 0);
    assert_true(none == 0);
    assert_true(rec >= 0);
    assert_true(logged);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_counters_exact),
        cmocka_unit_test(test_kafka_front),
        cmocka_unit_test(test_paths),
        cmocka_unit_test(test_parked_gauge),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_pipeline),
        cmocka_unit_test(test_prometheus_scrapes),
        cmocka_unit_test(test_recovery),
        cmocka_unit_test(test_prometheus_tls_token),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
