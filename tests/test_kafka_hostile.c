/*
 * test_kafka_hostile.c — the Kafka front against hostile clients: a real
 * runneld with --kafka-listen, raw sockets sending what no Kafka client
 * would (frames too large, negative, truncated or trickled, unknown keys
 * and versions, requests naming 100k partitions or topics, Fetch asking for
 * 2 GiB, pipelines never read, peers that vanish, corrupt batches).
 *
 * Invariants checked, after every attack:
 *  1. A bad frame or request closes only that connection, with a log line
 *     in runneld.log naming the peer (HOST:PORT) and the reason.
 *  2. runneld is still alive and serves a good client (ApiVersions,
 *     Metadata, Produce round trips on raw sockets, and the gRPC front).
 *  3. Nothing of a refused request is stored (checked with `runnel consume`).
 *  4. Work and memory are bounded: responses are at most the frame limit
 *     plus one batch; runneld's RSS (/proc/PID/status) grows by less than
 *     RSS_BOUND_KIB under a pipeline that is never read.
 *
 * The broker runs with a 1 MiB frame limit, 64 KiB batches and a 2 s frame
 * timeout, so that every bound is reached in a few seconds.
 */
#include "tests/test_server.h"

#include <poll.h>
#include <sys/time.h>

#define MAX_FRAME     (1u << 20)
#define FRAME_TIMEOUT 2000
#define RSS_BOUND_KIB (320L * 1024)   /* 4 connections x 64 MiB held, and slack */

static int kport;

static int64_t now_ms(void) { return (int64_t)(rn_mono_ns() / 1000000); }

/* ---- a request builder and a response reader --------------------------------- */

typedef struct kb {
    uint8_t *p;
    size_t   len, cap;
} kb_t;

static void kb_raw(kb_t *b, const void *src, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
}
static void kb_i8(kb_t *b, int8_t v) { kb_raw(b, &v, 1); }
static void kb_i16(kb_t *b, int16_t v)
{
    uint8_t x[2] = {(uint8_t)((uint16_t)v >> 8), (uint8_t)v};
    kb_raw(b, x, 2);
}
static void kb_i32(kb_t *b, int32_t v)
{
    uint8_t x[4];
    put_be32(x, (uint32_t)v);
    kb_raw(b, x, 4);
}
static void kb_i64(kb_t *b, int64_t v)
{
    kb_i32(b, (int32_t)((uint64_t)v >> 32));
    kb_i32(b, (int32_t)(uint32_t)v);
}
static void kb_str(kb_t *b, const char *s)
{
    if (!s) {
        kb_i16(b, -1);
        return;
    }
    kb_i16(b, (int16_t)strlen(s));
    kb_raw(b, s, strlen(s));
}
static void kb_bytes(kb_t *b, const void *p, int32_t n)
{
    kb_i32(b, n);
    if (n > 0) kb_raw(b, p, (size_t)n);
}

/* A frame: size, request header v1 (v2 with flex: an empty tag section). */
static void kb_begin(kb_t *b, int16_t api, int16_t ver, int32_t corr, int flex)
{
    b->len = 0;
    kb_i32(b, 0);
    kb_i16(b, api);
    kb_i16(b, ver);
    kb_i32(b, corr);
    kb_str(b, "hostile");
    if (flex) kb_i8(b, 0);
}
static void kb_end(kb_t *b) { put_be32(b->p, (uint32_t)(b->len - 4)); }

typedef struct rd {
    const uint8_t *p, *end;
    int            err;
} rd_t;

static const uint8_t *rd_take(rd_t *r, size_t n)
{
    if (r->err || (size_t)(r->end - r->p) < n) {
        r->err = 1;
        return NULL;
    }
    const uint8_t *p = r->p;
    r->p += n;
    return p;
}
static int16_t rd_i16(rd_t *r)
{
    const uint8_t *p = rd_take(r, 2);
    return p ? (int16_t)(p[0] << 8 | p[1]) : 0;
}
static int32_t rd_i32(rd_t *r)
{
    const uint8_t *p = rd_take(r, 4);
    return p ? (int32_t)((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3])
             : 0;
}
static int64_t rd_i64(rd_t *r)
{
    uint64_t hi = (uint32_t)rd_i32(r);
    return (int64_t)(hi << 32 | (uint32_t)rd_i32(r));
}
static void rd_str(rd_t *r)
{
    int16_t n = rd_i16(r);
    if (n > 0) rd_take(r, (size_t)n);
}
static int32_t rd_bytes(rd_t *r)
{
    int32_t n = rd_i32(r);
    if (n > 0) rd_take(r, (size_t)n);
    return n;
}

/* ---- sockets ------------------------------------------------------------------ */

static int kconnect(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)kport);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

/* "127.0.0.1:PORT" of fd's own end: the peer runneld names. */
static void peer_of(int fd, char *out, size_t n)
{
    struct sockaddr_in a;
    socklen_t l = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &l), 0);
    snprintf(out, n, "127.0.0.1:%d", ntohs(a.sin_port));
}

static void send_all(int fd, const void *p, size_t n)
{
    const uint8_t *c = p;
    while (n) {
        ssize_t k = send(fd, c, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR) continue;
        assert_true(k > 0);
        c += k;
        n -= (size_t)k;
    }
}

static int recv_all(int fd, void *p, size_t n)
{
    uint8_t *c = p;
    while (n) {
        ssize_t k = recv(fd, c, n, 0);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        c += k;
        n -= (size_t)k;
    }
    return 0;
}

/* One response frame (malloc'd, without its size), its correlation id checked. */
static uint8_t *recv_resp(int fd, int32_t corr, size_t *len)
{
    uint8_t sz[4];
    if (recv_all(fd, sz, 4) != 0) fail_msg("no response (correlation id %d)", corr);
    uint32_t n = (uint32_t)sz[0] << 24 | (uint32_t)sz[1] << 16 | (uint32_t)sz[2] << 8 | sz[3];
    assert_true(n >= 4 && n < (64u << 20));
    uint8_t *p = malloc(n);
    assert_non_null(p);
    assert_int_equal(recv_all(fd, p, n), 0);
    rd_t r = {p, p + n, 0};
    assert_int_equal(rd_i32(&r), corr);
    *len = n;
    return p;
}

/* The peer closed fd (EOF or reset) within ms; whatever came first is drained. */
static int closed_within(int fd, int ms)
{
    int64_t end = now_ms() + ms;
    uint8_t buf[65536];
    while (now_ms() < end) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 100) <= 0) continue;
        ssize_t k = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (k == 0 || (k < 0 && errno != EAGAIN && errno != EINTR)) return 1;
    }
    return 0;
}

/* runneld.log holds a line naming peer and holding reason (invariant 1). */
static void expect_log(srv_t *s, const char *peer, const char *reason)
{
    for (int i = 0; i < 200; i++) {
        FILE *f = fopen(s->logf, "r");
        assert_non_null(f);
        char line[2048];
        int found = 0;
        while (!found && fgets(line, sizeof line, f))
            found = strstr(line, peer) && strstr(line, reason) && strstr(line, "closing");
        fclose(f);
        if (found) return;
        usleep(10000);
    }
    srv_print_log(s);
    fail_msg("runneld.log has no line naming %s and '%s'", peer, reason);
}

/* A frame sent on a new connection: closed, logged with reason. */
static void expect_refused(srv_t *s, const kb_t *b, const char *reason)
{
    int fd = kconnect();
    char peer[64];
    peer_of(fd, peer, sizeof peer);
    send_all(fd, b->p, b->len);
    assert_true(closed_within(fd, 5000));
    close(fd);
    expect_log(s, peer, reason);
}

static long rss_kib(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    long kib = -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) kib = atol(line + 6);
    fclose(f);
    return kib;
}

/* ---- requests --------------------------------------------------------------------- */

/* Produce v3 (acks 1) of one batch per (topic, partition 0); the error codes. */
static void produce_topics(int fd, const char *const *topics, int n, const batch_t *bt,
                           int16_t *errs)
{
    kb_t b = {0};
    kb_begin(&b, 0, 3, 77, 0);
    kb_str(&b, NULL);
    kb_i16(&b, 1);
    kb_i32(&b, 10000);
    kb_i32(&b, n);
    for (int i = 0; i < n; i++) {
        kb_str(&b, topics[i]);
        kb_i32(&b, 1);
        kb_i32(&b, 0);
        kb_bytes(&b, bt->data, (int32_t)bt->len);
    }
    kb_end(&b);
    send_all(fd, b.p, b.len);
    free(b.p);
    size_t len;
    uint8_t *p = recv_resp(fd, 77, &len);
    rd_t r = {p + 4, p + len, 0};
    assert_int_equal(rd_i32(&r), n);
    for (int i = 0; i < n; i++) {
        rd_str(&r);
        assert_int_equal(rd_i32(&r), 1);
        rd_i32(&r);
        errs[i] = rd_i16(&r);
        rd_i64(&r);
        rd_i64(&r);
    }
    assert_false(r.err);
    free(p);
}

/* Invariant 2: ApiVersions, Metadata and a Produce on a new connection, and gRPC. */
static void good_client(srv_t *s)
{
    int fd = kconnect();
    kb_t b = {0};
    kb_begin(&b, 18, 2, 1, 0);
    kb_end(&b);
    send_all(fd, b.p, b.len);
    size_t len;
    uint8_t *p = recv_resp(fd, 1, &len);
    rd_t r = {p + 4, p + len, 0};
    assert_int_equal(rd_i16(&r), 0);
    assert_true(rd_i32(&r) >= 5);
    free(p);
    kb_begin(&b, 3, 1, 2, 0);
    kb_i32(&b, 1);
    kb_str(&b, "good");
    kb_end(&b);
    send_all(fd, b.p, b.len);
    p = recv_resp(fd, 2, &len);
    free(p);
    free(b.p);
    batch_t bt;
    make_batch(&bt, 0, 3, 0, -1, -1, -1);
    const char *t[] = {"good"};
    int16_t err;
    produce_topics(fd, t, 1, &bt, &err);
    assert_int_equal(err, 0);
    batch_free(&bt);
    close(fd);
    assert_int_equal(kill(s->pid, 0), 0);
    served_still(s);
}

/* Records `runnel consume` prints for topic (invariant 3). */
static int consumed(srv_t *s, const char *topic)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s/runnel --server 127.0.0.1:%d consume %s 2>&1", RN_BIN_DIR,
             s->port, topic);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "rec-", 4)) n++;
        else fprintf(stderr, "runnel consume: %s", line);
    }
    pclose(f);
    return n;
}

/* ---- the attacks ------------------------------------------------------------------ */

static void t_oversized_and_negative(void **state)
{
    srv_t *s = *state;
    kb_t b = {0};
    kb_i32(&b, (int32_t)MAX_FRAME + 1);
    expect_refused(s, &b, "outside the valid");
    b.len = 0;
    kb_i32(&b, INT32_MIN);
    expect_refused(s, &b, "outside the valid");
    b.len = 0;
    kb_i32(&b, 3);                      /* too short for a header */
    expect_refused(s, &b, "outside the valid");
    free(b.p);
    good_client(s);
}

static void t_truncated(void **state)
{
    srv_t *s = *state;
    /* A size, part of the frame, then the write side closed. */
    int fd = kconnect();
    char peer[64];
    peer_of(fd, peer, sizeof peer);
    uint8_t x[4 + 10] = {0, 0, 0, 100, 0, 18, 0, 0};
    send_all(fd, x, sizeof x);
    shutdown(fd, SHUT_WR);
    assert_true(closed_within(fd, 5000));
    close(fd);
    expect_log(s, peer, "truncated");
    /* Only two bytes of the size. */
    fd = kconnect();
    peer_of(fd, peer, sizeof peer);
    send_all(fd, x, 2);
    shutdown(fd, SHUT_WR);
    assert_true(closed_within(fd, 5000));
    close(fd);
    expect_log(s, peer, "truncated");
    good_client(s);
}

static void t_slowloris(void **state)
{
    srv_t *s = *state;
    /* One byte a second of a frame that never ends: closed by the frame
     * timeout, while a good client is served meanwhile. */
    int fd = kconnect();
    char peer[64];
    peer_of(fd, peer, sizeof peer);
    uint8_t x[64] = {0, 0, 0, 60, 0, 18, 0, 0, 0, 0, 0, 1};
    int64_t t0 = now_ms();
    int closed = 0;
    for (size_t i = 0; i < sizeof x && !closed; i++) {
        if (send(fd, &x[i], 1, MSG_NOSIGNAL) != 1) break;
        if (i == 1) good_client(s);
        closed = closed_within(fd, 1000);
    }
    if (!closed) closed = closed_within(fd, 3000);
    int64_t took = now_ms() - t0;
    close(fd);
    assert_true(closed);
    assert_true(took < FRAME_TIMEOUT + 3000);
    expect_log(s, peer, "still not whole");
    good_client(s);
}

static void t_unknown_api_and_versions(void **state)
{
    srv_t *s = *state;
    kb_t b = {0};
    kb_begin(&b, 999, 0, 5, 0);
    kb_end(&b);
    expect_refused(s, &b, "unknown API key 999");
    kb_begin(&b, -1, 0, 5, 0);
    kb_end(&b);
    expect_refused(s, &b, "unknown API key -1");
    kb_begin(&b, 0, 9, 5, 0);
    kb_end(&b);
    expect_refused(s, &b, "Produce version 9 is not supported");
    kb_begin(&b, 1, 99, 5, 0);
    kb_end(&b);
    expect_refused(s, &b, "Fetch version 99 is not supported");
    /* ApiVersions with a version too new or negative: error 35 in the v0
     * layout (KIP-511), and the connection stays usable. */
    int16_t vs[] = {4, 99, -1, INT16_MIN};
    int fd = kconnect();
    for (size_t i = 0; i < sizeof vs / sizeof vs[0]; i++) {
        kb_begin(&b, 18, vs[i], 40 + (int)i, 0);
        kb_end(&b);
        send_all(fd, b.p, b.len);
        size_t len;
        uint8_t *p = recv_resp(fd, 40 + (int)i, &len);
        rd_t r = {p + 4, p + len, 0};
        assert_int_equal(rd_i16(&r), 35);
        assert_int_equal(rd_i32(&r), 1);
        assert_int_equal(rd_i16(&r), 18);
        assert_int_equal(rd_i16(&r), 0);
        assert_int_equal(rd_i16(&r), 3);
        assert_false(r.err);
        assert_true(r.p == r.end);
        free(p);
    }
    close(fd);
    /* A request that does not parse: Metadata naming 5 topics and holding none. */
    kb_begin(&b, 3, 1, 6, 0);
    kb_i32(&b, 5);
    kb_end(&b);
    expect_refused(s, &b, "Metadata v1");
    free(b.p);
    good_client(s);
}

static void t_huge_counts(void **state)
{
    srv_t *s = *state;
    /* Produce naming 100k partitions of one topic: refused whole. */
    kb_t b = {0};
    kb_begin(&b, 0, 3, 9, 0);
    kb_str(&b, NULL);
    kb_i16(&b, 1);
    kb_i32(&b, 1000);
    kb_i32(&b, 1);
    kb_str(&b, "many");
    kb_i32(&b, 100000);
    for (int i = 0; i < 100000; i++) {
        kb_i32(&b, i);
        kb_i32(&b, -1);
    }
    kb_end(&b);
    int64_t t0 = now_ms();
    expect_refused(s, &b, "partitions in one request");
    /* 100k topics naming no partition. */
    kb_begin(&b, 0, 3, 10, 0);
    kb_str(&b, NULL);
    kb_i16(&b, 1);
    kb_i32(&b, 1000);
    kb_i32(&b, 100000);
    for (int i = 0; i < 100000; i++) {
        kb_str(&b, "m");
        kb_i32(&b, 0);
    }
    kb_end(&b);
    expect_refused(s, &b, "topics in one request");
    /* Metadata and Fetch naming 100k topics or partitions. */
    kb_begin(&b, 3, 1, 11, 0);
    kb_i32(&b, 100000);
    for (int i = 0; i < 100000; i++) kb_str(&b, "md");
    kb_end(&b);
    expect_refused(s, &b, "topics named");
    kb_begin(&b, 1, 4, 12, 0);
    kb_i32(&b, -1);
    kb_i32(&b, 0);
    kb_i32(&b, 0);
    kb_i32(&b, 1 << 20);
    kb_i8(&b, 0);
    kb_i32(&b, 1);
    kb_str(&b, "good");
    kb_i32(&b, 50000);
    for (int i = 0; i < 50000; i++) {
        kb_i32(&b, 0);
        kb_i64(&b, 0);
        kb_i32(&b, 1 << 20);
    }
    kb_end(&b);
    expect_refused(s, &b, "partitions in one request");
    assert_true(now_ms() - t0 < 10000);     /* bounded work */
    assert_int_equal(consumed(s, "many"), 0);
    /* 40 unknown topics in one Produce: at most 16 auto-created. */
    const char *names[40];
    char buf[40][16];
    for (int i = 0; i < 40; i++) {
        snprintf(buf[i], sizeof buf[i], "auto%d", i);
        names[i] = buf[i];
    }
    batch_t bt;
    make_batch(&bt, 0, 2, 0, -1, -1, -1);
    int16_t errs[40];
    int fd = kconnect();
    produce_topics(fd, names, 40, &bt, errs);
    int ok = 0;
    for (int i = 0; i < 40; i++) {
        if (errs[i] == 0) ok++;
        else assert_int_equal(errs[i], 3);        /* UNKNOWN_TOPIC_OR_PARTITION */
    }
    assert_int_equal(ok, 16);
    /* The client's retry creates the next ones. */
    produce_topics(fd, names, 40, &bt, errs);
    ok = 0;
    for (int i = 0; i < 40; i++) ok += errs[i] == 0;
    assert_int_equal(ok, 32);
    close(fd);
    batch_free(&bt);
    free(b.p);
    good_client(s);
}

/* Fetch v4 of topic partition 0 from offset 0 with these limits; the
 * response frame's size. */
static void fetch_req(kb_t *b, int32_t corr, const char *topic, int32_t max, int32_t pmax)
{
    kb_begin(b, 1, 4, corr, 0);
    kb_i32(b, -1);
    kb_i32(b, 0);
    kb_i32(b, 0);
    kb_i32(b, max);
    kb_i8(b, 0);
    kb_i32(b, 1);
    kb_str(b, topic);
    kb_i32(b, 1);
    kb_i32(b, 0);
    kb_i64(b, 0);
    kb_i32(b, pmax);
    kb_end(b);
}

/* About 4 MiB in topic "big" (64 KiB batches), produced over gRPC, durable
 * (the Kafka high watermark is the durable end). */
static void fill_big(srv_t *s)
{
    static int done;
    if (done) return;
    done = 1;
    create_topic(s, "big", 1);
    batch_t bt;
    make_batch(&bt, 0, 800, 0, -1, -1, -1);
    assert_true(bt.len > 40000 && bt.len <= SRV_MAX_BATCH);
    for (int i = 0; i < 80; i++) assert_int_equal(produce(s, "big", 0, &bt, 1, 0, NULL, NULL, NULL), 0);
    batch_free(&bt);
}

static void t_fetch_huge_max_bytes(void **state)
{
    srv_t *s = *state;
    fill_big(s);
    int fd = kconnect();
    kb_t b = {0};
    fetch_req(&b, 20, "big", INT32_MAX, INT32_MAX);
    send_all(fd, b.p, b.len);
    size_t len;
    uint8_t *p = recv_resp(fd, 20, &len);
    rd_t r = {p + 4, p + len, 0};
    rd_i32(&r);
    assert_int_equal(rd_i32(&r), 1);
    rd_str(&r);
    assert_int_equal(rd_i32(&r), 1);
    assert_int_equal(rd_i32(&r), 0);
    assert_int_equal(rd_i16(&r), 0);
    assert_true(rd_i64(&r) >= 80 * 800);        /* high watermark */
    rd_i64(&r);
    int32_t na = rd_i32(&r);
    assert_true(na <= 0);
    int32_t nrec = rd_bytes(&r);
    assert_false(r.err);
    /* Capped at the frame limit, plus one batch at most (KIP-74). */
    assert_true(nrec > 0);
    assert_true((size_t)nrec <= MAX_FRAME + SRV_MAX_BATCH);
    assert_true(len <= MAX_FRAME + SRV_MAX_BATCH + 1024);
    free(p);
    free(b.p);
    close(fd);
    good_client(s);
}

static void t_pipeline_never_read(void **state)
{
    srv_t *s = *state;
    fill_big(s);
    long before = rss_kib(s->pid);
    /* Four connections each pipelining Fetches of ~1 MiB answers and never
     * reading them: runneld stops reading each once it holds its bound. */
    int fds[4];
    kb_t b = {0};
    fetch_req(&b, 30, "big", INT32_MAX, INT32_MAX);
    size_t sent_total = 0;
    for (int c = 0; c < 4; c++) {
        fds[c] = kconnect();
        int rcv = 4096;
        setsockopt(fds[c], SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
        fcntl(fds[c], F_SETFL, O_NONBLOCK);
        int64_t last = now_ms();
        for (int i = 0; i < 5000 && now_ms() - last < 1000;) {
            ssize_t k = send(fds[c], b.p, b.len, MSG_NOSIGNAL);
            if (k == (ssize_t)b.len) {
                i++;
                sent_total++;
                last = now_ms();
            } else if (k > 0) {
                /* finish this frame blocking-free: spin until it is out */
                size_t off = (size_t)k;
                while (off < b.len && now_ms() - last < 2000) {
                    ssize_t m = send(fds[c], b.p + off, b.len - off, MSG_NOSIGNAL);
                    if (m > 0) off += (size_t)m;
                    else usleep(1000);
                }
                if (off < b.len) break;
                i++;
                sent_total++;
            } else {
                usleep(5000);
            }
        }
    }
    usleep(500000);
    long after = rss_kib(s->pid);
    print_message("pipelined %zu Fetch requests on 4 connections never read: runneld RSS "
                  "%ld -> %ld KiB\n", sent_total, before, after);
    assert_true(sent_total > 100);
    assert_true(after - before < RSS_BOUND_KIB);
    /* Closing them frees it all; the broker goes on. */
    for (int c = 0; c < 4; c++) close(fds[c]);
    free(b.p);
    good_client(s);
}

static void t_sigpipe(void **state)
{
    srv_t *s = *state;
    fill_big(s);
    /* Requests with large answers, then the peer resets: runneld's writes
     * fail with EPIPE/ECONNRESET on that connection only. */
    for (int round = 0; round < 5; round++) {
        int fd = kconnect();
        kb_t b = {0};
        fetch_req(&b, 50, "big", INT32_MAX, INT32_MAX);
        for (int i = 0; i < 8; i++) send_all(fd, b.p, b.len);
        free(b.p);
        usleep(20000);
        struct linger lg = {1, 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        close(fd);
    }
    usleep(200000);
    assert_int_equal(kill(s->pid, 0), 0);
    int status;
    assert_int_equal(waitpid(s->pid, &status, WNOHANG), 0);
    good_client(s);
}

static void t_corrupt_batch(void **state)
{
    srv_t *s = *state;
    batch_t bt;
    make_batch(&bt, 0, 5, 0, -1, -1, -1);
    bt.data[bt.len - 3] ^= 0x55;                 /* CRC-32C no longer matches */
    const char *t[] = {"corrupt"};
    int16_t err;
    int fd = kconnect();
    produce_topics(fd, t, 1, &bt, &err);
    assert_int_equal(err, 2);                    /* CORRUPT_MESSAGE */
    close(fd);
    /* A batch length running past the records: the request does not split. */
    bt.data[bt.len - 3] ^= 0x55;
    put_be32(bt.data + 8, (uint32_t)bt.len);     /* 12 bytes too long */
    fd = kconnect();
    produce_topics(fd, t, 1, &bt, &err);
    assert_int_equal(err, 2);
    close(fd);
    /* A records field longer than the frame: does not parse, closed. */
    kb_t b = {0};
    kb_begin(&b, 0, 3, 8, 0);
    kb_str(&b, NULL);
    kb_i16(&b, 1);
    kb_i32(&b, 1000);
    kb_i32(&b, 1);
    kb_str(&b, "corrupt");
    kb_i32(&b, 1);
    kb_i32(&b, 0);
    kb_i32(&b, 1000);
    kb_raw(&b, bt.data, 100);
    kb_end(&b);
    expect_refused(s, &b, "Produce v3");
    free(b.p);
    batch_free(&bt);
    assert_int_equal(consumed(s, "corrupt"), 0);
    good_client(s);
    assert_int_equal(consumed(s, "good") > 0, 1);
}

/* Produce v0-2 (advertised for librdkafka): a RecordBatch v2 is stored and
 * answered in the version's layout; a legacy message set (magic 1) is
 * refused per partition with UNSUPPORTED_VERSION and stores nothing. */
static void t_old_produce_versions(void **state)
{
    srv_t *s = *state;
    batch_t bt;
    make_batch(&bt, 0, 3, 0, -1, -1, -1);
    uint8_t legacy[12 + 26];
    memset(legacy, 0, sizeof legacy);
    put_be32(legacy + 8, 26);                    /* crc magic attrs ts key value */
    legacy[16] = 1;                              /* magic 1 */
    put_be32(legacy + 26, 0xffffffffu);          /* null key */
    put_be32(legacy + 30, 4);
    memcpy(legacy + 34, "old!", 4);
    for (int16_t v = 0; v <= 2; v++) {
        for (int old = 0; old <= 1; old++) {
            kb_t b = {0};
            kb_begin(&b, 0, v, 60 + v, 0);
            kb_i16(&b, 1);
            kb_i32(&b, 10000);
            kb_i32(&b, 1);
            kb_str(&b, old ? "oldfmt" : "oldver");
            kb_i32(&b, 1);
            kb_i32(&b, 0);
            if (old) kb_bytes(&b, legacy, (int32_t)sizeof legacy);
            else kb_bytes(&b, bt.data, (int32_t)bt.len);
            kb_end(&b);
            int fd = kconnect();
            send_all(fd, b.p, b.len);
            free(b.p);
            size_t len;
            uint8_t *p = recv_resp(fd, 60 + v, &len);
            rd_t r = {p + 4, p + len, 0};
            assert_int_equal(rd_i32(&r), 1);
            rd_str(&r);
            assert_int_equal(rd_i32(&r), 1);
            assert_int_equal(rd_i32(&r), 0);
            assert_int_equal(rd_i16(&r), old ? 35 : 0);
            int64_t base = rd_i64(&r);
            assert_true(old ? base == -1 : base == 3 * v);
            if (v >= 2) assert_int_equal(rd_i64(&r), -1);     /* log_append_time */
            if (v >= 1) assert_int_equal(rd_i32(&r), 0);      /* throttle_time */
            assert_false(r.err);
            assert_true(r.p == r.end);                         /* nothing else */
            free(p);
            close(fd);
        }
    }
    batch_free(&bt);
    assert_int_equal(consumed(s, "oldver"), 9);
    assert_int_equal(consumed(s, "oldfmt"), 0);
}

/* ---- the broker ----------------------------------------------------------------- */

static int setup(void **state)
{
    static const char *const extra[] = {"--kafka-listen", "127.0.0.1:0",
                                         "--kafka-max-frame-bytes", "1048576",
                                         "--kafka-frame-timeout-ms", "2000", NULL};
    if (srv_init_all(state, "group", SRV_MAX_BATCH, extra) != 0) return -1;
    srv_t *s = *state;
    FILE *f = fopen(s->portf, "r");
    if (!f) return -1;
    int grpc = 0;
    int n = fscanf(f, "%d %d", &grpc, &kport);
    fclose(f);
    return n == 2 && kport > 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_oversized_and_negative),
        cmocka_unit_test(t_truncated),
        cmocka_unit_test(t_unknown_api_and_versions),
        cmocka_unit_test(t_huge_counts),
        cmocka_unit_test(t_fetch_huge_max_bytes),
        cmocka_unit_test(t_pipeline_never_read),
        cmocka_unit_test(t_sigpipe),
        cmocka_unit_test(t_corrupt_batch),
        cmocka_unit_test(t_old_produce_versions),
        cmocka_unit_test(t_slowloris),
    };
    return cmocka_run_group_tests(tests, setup, srv_teardown);
}
