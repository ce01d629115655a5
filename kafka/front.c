/*
 * front.c — the Kafka listener (front.h): connections, frames, the order of
 * responses, the waiter thread and the parking lot.
 *
 * A connection reads size-prefixed frames; a frame's body is read straight
 * into its own allocation (only the 4-byte size and small pipelined frames
 * pass through the staging buffer). Each frame becomes an rn_kreq_t at the
 * tail of the connection's list; requests are handled in that order, and
 * answered from its head (api.h invariant 2).
 *
 * Request states: QUEUED (received) → RUNNING (its handler returned
 * RN_KH_LATER*) → READY (response complete) or NORESP → written → freed.
 *
 * Invariants:
 *  1. Everything here runs on the loop thread, except waiter_main (which
 *     touches only f->wq / f->done under f->wmu, and the request it runs)
 *     and rn_kfront_stats (atomics).
 *  2. A connection holds one reference for its TCP handle and one per live
 *     request; it is freed when the handle closed and the last request
 *     ended, so a request completed after its connection closed finds the
 *     connection still allocated (api.h invariant 3).
 *  3. At most one RN_KH_LATER request runs per connection (c->blocked), and
 *     no later request is handled while it does.
 *  4. f->inflight counts the bytes held for every connection (c->held: the
 *     frame being read, frames queued or running, responses complete or
 *     being written); reading pauses on every connection while it is over
 *     RN_KFRONT_MAX_INFLIGHT, and on a connection while its c->held is over
 *     RN_KFRONT_MAX_CONN_HELD.
 *  5. A connection handles no further request while its responses not yet
 *     written (c->out_held) exceed RN_KFRONT_MAX_CONN_HELD: a client that
 *     pipelines requests and never reads the answers holds at most that
 *     much, plus one frame and one response (RN_KW_MAX_RESPONSE).
 *  6. A frame begun must be whole within the frame timeout while the
 *     connection is being read (a client trickling bytes, slowloris, is
 *     closed); an idle connection between frames is not timed out.
 *  7. SIGPIPE is ignored once the front starts: a write to a peer that
 *     closed fails with EPIPE on that connection only.
 *  8. Authentication (kafka/sasl.h): when the credentials require it (a
 *     user exists, or --require-auth; asked once per connection, at its
 *     first request that needs it), a connection that has no principal yet
 *     (SASL not DONE, no client certificate) may send only ApiVersions,
 *     SaslHandshake and SaslAuthenticate, in frames of at most
 *     RN_KFRONT_PREAUTH_MAX_FRAME bytes; any other request closes it with
 *     a log line, before its handler runs. A request gets the principal its
 *     connection has when the request is handled (requests are handled in
 *     order, and an exchange's last step blocks the connection until it
 *     ends). A failed exchange handles no further request and closes the
 *     connection once its answer is written, logging why.
 *  9. TLS (kafka/tls.h), when the listener has a certificate: every byte
 *     read goes through the connection's TLS state before the framer sees
 *     it, and every byte written (responses, handshake records) leaves as
 *     ciphertext, in order, through one uv_write each. A handshake or
 *     record failure (a plaintext client, an untrusted client certificate)
 *     closes the connection with a log line. Under mutual TLS the client
 *     certificate's CN is the principal from the handshake on. Without TLS
 *     the read and write paths are unchanged (frames read in place, no
 *     copy).
 */
#include "kafka/front.h"

#include <arpa/inet.h>
#include <errno.h>
#include <assert.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "common/addr.h"
#include "common/bytes.h"
#include "common/error.h"
#include "kafka/api.h"
#include "kafka/coord.h"
#include "kafka/frame.h"
#include "kafka/sasl.h"
#include "kafka/tls.h"
#include "server/auth.h"
#include "server/log.h"
#include "server/metrics.h"
#include "server/server.h"

enum { Q_QUEUED, Q_RUNNING, Q_READY, Q_NORESP };

#define STAGE_SIZE 16384

typedef struct kconn kconn_t;

struct rn_kfront {
    rn_kctx_t        ctx;
    char             advertised[300];   /* HOST:PORT (the controller registers it) */
    uv_loop_t        loop;
    uv_tcp_t         listener;
    uv_async_t       async;
    uv_timer_t       tick, park;
    pthread_t        thread, waiter;
    int              waiter_started, thread_started;
    /* the waiter's queues (invariant 1) */
    pthread_mutex_t  wmu;
    pthread_cond_t   wcv;
    rn_kreq_t       *wq, **wq_tail, *done, **done_tail;
    int              wstop;
    atomic_int       stopping;
    int              closing;          /* the loop began closing (loop thread) */
    kconn_t         *conns;
    rn_kreq_t       *parked;
    uint64_t         live;             /* requests allocated */
    size_t           inflight;         /* invariant 4 */
    int64_t          frame_timeout_ms; /* invariant 6 */
    int              paused;           /* reading paused by invariant 4 */
    atomic_uint_fast64_t nconns, nreqs, nbad;
    rn_ktls_ctx_t   *tls;              /* NULL: plaintext listener (invariant 9) */
    uint8_t          plain[STAGE_SIZE];   /* TLS: plaintext of one read (loop thread) */
};

struct kconn {
    uv_tcp_t     tcp;
    rn_kfront_t *f;
    char         peer[64];
    char         principal[RN_USER_NAME_MAX + 1];  /* authenticated; "" = anonymous */
    rn_ksasl_t   sasl;               /* SASL exchange (kafka/sasl.h), invariant 8 */
    int          auth_known, auth_required;   /* invariant 8: asked once per connection */
    rn_kframer_t fr;                 /* the frame being read (kafka/frame.h) */
    int64_t      frame_start;        /* when its first byte came (invariant 6) */
    size_t       held, out_held;     /* invariants 4 and 5 */
    int          direct;             /* the last buffer given was the frame's */
    uint8_t      stage[STAGE_SIZE];
    rn_kreq_t   *head, *tail;        /* live requests in order */
    uint32_t     queued;             /* requests not yet answered */
    rn_kreq_t   *blocked;            /* invariant 3 */
    int          closing, reading;
    uint32_t     writes;             /* uv_writes not yet called back */
    rn_ktls_t   *tls;                /* invariant 9; NULL on a plaintext listener */
    int          in_pump, repump;    /* pump is not re-entered (rn_kreq_done inside it) */
    int          refs;               /* invariant 2 */
    kconn_t     *prev, *next;
};

typedef struct kwrite {
    uv_write_t w;
    uint8_t    hdr[9];
    rn_kreq_t *q;          /* NULL: TLS bytes of no request (handshake, alerts) */
    kconn_t   *c;
    uint8_t   *ct;         /* TLS: the ciphertext written (freed with the write) */
} kwrite_t;

static void pump(kconn_t *c);
static void conn_close(kconn_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void maybe_finish(rn_kfront_t *f);

/* ---- connections and requests ------------------------------------------------- */

static void conn_unref(kconn_t *c)
{
    if (--c->refs > 0) return;
    rn_kfront_t *f = c->f;
    if (c->prev) c->prev->next = c->next;
    else f->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    f->inflight -= c->fr.frame ? c->fr.frame_len : 0;
    rn_kframer_free(&c->fr);
    rn_ktls_free(c->tls);
    free(c);
    rn_metrics_gauge(RN_MG_KAFKA_CONNS, -1);
    maybe_finish(f);
}

/* Account n more (or fewer) bytes held for c (invariant 4). */
static void hold(kconn_t *c, size_t n) { c->held += n; c->f->inflight += n; }
static void unhold(kconn_t *c, size_t n) { c->held -= n; c->f->inflight -= n; }

/* q's response is complete: its bytes are held until written (invariant 5). */
static void hold_out(rn_kreq_t *q)
{
    kconn_t *c = q->conn;
    q->held_out = q->out.len;
    hold(c, q->held_out);
    c->out_held += q->held_out;
}

static void req_free(rn_kreq_t *q)
{
    kconn_t *c = q->conn;
    rn_kfront_t *f = c->f;
    if (q->hfree) q->hfree(q);
    unhold(c, q->frame_len + q->held_out);
    c->out_held -= q->held_out;
    free(q->frame);
    rn_buf_free(&q->out);
    free(q);
    f->live--;
    rn_metrics_gauge(RN_MG_KAFKA_REQS, -1);
    conn_unref(c);
}

/* Unlink the head of c's list. */
static rn_kreq_t *pop_head(kconn_t *c)
{
    rn_kreq_t *q = c->head;
    c->head = q->next;
    if (!c->head) c->tail = NULL;
    c->queued--;
    return q;
}

static void on_closed(uv_handle_t *h)
{
    conn_unref(h->data);
}

static void conn_close(kconn_t *c, const char *fmt, ...)
{
    if (c->closing) return;
    c->closing = 1;
    if (fmt) {
        char why[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, sizeof why, fmt, ap);
        va_end(ap);
        rn_slog(RN_SLOG_WARN, "kafka: closing the connection from %s: %s", c->peer, why);
        atomic_fetch_add(&c->f->nbad, 1);
    }
    uv_read_stop((uv_stream_t *)&c->tcp);
    /* Requests not running end now; running ones end when done (invariant 2). */
    rn_kreq_t **pp = &c->head;
    c->tail = NULL;
    while (*pp) {
        rn_kreq_t *q = *pp;
        if (q->state == Q_RUNNING) {
            c->tail = q;
            pp = &q->next;
            continue;
        }
        *pp = q->next;
        c->queued--;
        req_free(q);
    }
    uv_close((uv_handle_t *)&c->tcp, on_closed);
}

static void on_written(uv_write_t *w, int status)
{
    kwrite_t *kw = (kwrite_t *)w;
    rn_kreq_t *q = kw->q;
    kconn_t *c = kw->c;
    free(kw->ct);
    free(kw);
    c->refs++;                           /* req_free may drop the last reference */
    c->writes--;
    if (q) req_free(q);
    if (status < 0) conn_close(c, NULL);
    else if (!c->closing) pump(c);
    conn_unref(c);
}

/* Invariant 9: write the ciphertext TLS holds for c, on behalf of q (NULL:
 * of no request). 0, or -1 (q not consumed). */
static int tls_send(kconn_t *c, rn_kreq_t *q)
{
    size_t n = 0;
    uint8_t *ct = rn_ktls_take(c->tls, &n);
    if (!ct && n) return -1;
    if (!ct && !q) return 0;
    kwrite_t *kw = malloc(sizeof *kw);
    if (!kw) {
        free(ct);
        return -1;
    }
    kw->q = q;
    kw->c = c;
    kw->ct = ct;
    uv_buf_t b = uv_buf_init((char *)(ct ? ct : kw->hdr), (unsigned)n);
    if (uv_write(&kw->w, (uv_stream_t *)&c->tcp, &b, 1, on_written) != 0) {
        free(ct);
        free(kw);
        return -1;
    }
    c->writes++;
    return 0;
}

/* Send q's response (size, header, body). */
static int send_response(kconn_t *c, rn_kreq_t *q)
{
    kwrite_t *kw = malloc(sizeof *kw);
    if (!kw) return -1;
    kw->q = q;
    kw->c = c;
    kw->ct = NULL;
    /* Response header v1 (flexible) has tagged fields, except ApiVersions'
     * response, whose header is always v0 (KIP-511). */
    int tags = q->flex && q->api != 18;
    size_t hl = q->api == -1 ? 4 : 8 + (tags ? 1 : 0);     /* -1: a raw SASL token */
    rn_be32_put(kw->hdr, (uint32_t)(hl - 4 + q->out.len));
    if (q->api != -1) rn_be32_put(kw->hdr + 4, (uint32_t)q->corr);
    kw->hdr[8] = 0;
    if (c->tls) {                                        /* invariant 9 */
        int bad = rn_ktls_write(c->tls, kw->hdr, hl) != 0 ||
                  (q->out.len && rn_ktls_write(c->tls, q->out.data, q->out.len) != 0);
        free(kw);
        return bad ? -1 : tls_send(c, q);
    }
    uv_buf_t b[2] = {uv_buf_init((char *)kw->hdr, (unsigned)hl),
                     uv_buf_init((char *)q->out.data, (unsigned)q->out.len)};
    if (uv_write(&kw->w, (uv_stream_t *)&c->tcp, b, q->out.len ? 2 : 1, on_written) != 0) {
        free(kw);
        return -1;
    }
    c->writes++;
    return 0;
}

/* Answer from the head while the head is complete (api.h invariant 2). */
static void flush(kconn_t *c)
{
    while (c->head && (c->head->state == Q_READY || c->head->state == Q_NORESP)) {
        rn_kreq_t *q = pop_head(c);
        if (q->state == Q_NORESP || c->closing) {
            req_free(q);
            continue;
        }
        if (send_response(c, q) != 0) {
            req_free(q);
            conn_close(c, "cannot send a response (out of memory)");
            return;
        }
    }
}

/* ---- handling ------------------------------------------------------------------- */

rn_ksasl_t *rn_kreq_sasl(rn_kreq_t *q) { return &((kconn_t *)q->conn)->sasl; }

/* Invariant 8: c must authenticate before anything but SASL. */
static int must_auth(kconn_t *c)
{
    if (c->principal[0]) return 0;
    if (!c->auth_known) {
        c->auth_required = c->f->ctx.auth ? rn_auth_required(c->f->ctx.auth) : 0;
        c->auth_known = 1;
    }
    return c->auth_required;
}

/* Invariant 8: may this request run on c now? */
static int allowed(kconn_t *c, int16_t key)
{
    return key == 18 || key == 17 || key == 36 || key == -1 || !must_auth(c);
}

/* Why a response could not be built (wire.h invariants 4 and 5). */
static const char *werr(const rn_kreq_t *q)
{
    return q->w.err == RN_KW_ETOOBIG ? "the response would exceed its size limit"
                                     : "out of memory building the response";
}

static void handle(kconn_t *c, rn_kreq_t *q)
{
    rn_kfront_t *f = c->f;
    atomic_fetch_add(&f->nreqs, 1);
    static const rn_kapi_t raw_token = {-1, "SASL token", 0, 0, 1, rn_ksasl_raw};
    const rn_kapi_t *a;
    char why[256];
    if (c->sasl.raw && c->sasl.state != RN_KSASL_DONE) {
        /* After SaslHandshake v0 a frame is a bare SASL token (sasl.h). */
        a = &raw_token;
        q->api = -1;
        rn_kr_init(&q->in, q->frame, q->frame_len, 0);
        rn_kw_init(&q->w, &q->out, 0);
    } else if (rn_kreq_header(q, &a, why, sizeof why) != 0) {
        conn_close(c, "%s", why);
        return;
    }
    if (!allowed(c, a->key)) {                          /* invariant 8 */
        conn_close(c, "%s before authenticating: this broker requires SASL (SCRAM-SHA-256, or "
                   "PLAIN over TLS) or a client certificate", a->name);
        return;
    }
    memcpy(q->principal, c->principal, sizeof q->principal);
    q->state = Q_RUNNING;
    int r = a->fn(q);
    if (r == RN_KH_BAD || (r == RN_KH_DONE && q->w.err)) q->state = Q_QUEUED;   /* freed below */
    if (r == RN_KH_BAD) {
        conn_close(c, "%s v%d: %s", a->name, q->version,
                   q->why ? q->why : q->in.what ? q->in.what : "malformed request");
        return;
    }
    if ((r == RN_KH_DONE) && q->w.err) {
        conn_close(c, "%s v%d: %s", a->name, q->version, werr(q));
        return;
    }
    switch (r) {
    case RN_KH_DONE: q->state = Q_READY; hold_out(q); break;
    case RN_KH_NONE: q->state = Q_NORESP; break;
    case RN_KH_LATER: if (q->state == Q_RUNNING) c->blocked = q; break;
    default: break;    /* RN_KH_LATER_PIPELINED */
    }
}

/* Invariant 8: the SASL exchange's principal, once DONE; a failed one
 * closes the connection once the requests before it were answered. */
static void sasl_after(kconn_t *c)
{
    if (c->sasl.state == RN_KSASL_DONE && !c->principal[0])
        memcpy(c->principal, c->sasl.principal, sizeof c->principal);
    if (c->sasl.state == RN_KSASL_FAILED && !c->writes &&
        (!c->head || c->head->state == Q_QUEUED))
        conn_close(c, "SASL authentication failed: %s", c->sasl.why);
}

static void read_control(kconn_t *c);

/* Handle what may be handled, answer what is complete, and pause or resume
 * reading. */
static void pump(kconn_t *c)
{
    if (c->in_pump) {
        c->repump = 1;
        return;
    }
    c->in_pump = 1;
    do {
        c->repump = 0;
        for (rn_kreq_t *q = c->head; q && !c->blocked && c->out_held < RN_KFRONT_MAX_CONN_HELD;
             q = q->next) {      /* invariant 5 */
            if (c->sasl.state == RN_KSASL_FAILED) break;     /* invariant 8 */
            if (q->state != Q_QUEUED) continue;
            handle(c, q);
            if (c->closing) break;       /* q may be freed */
            sasl_after(c);
            if (c->closing) break;
        }
        if (!c->closing) flush(c);
        if (!c->closing) sasl_after(c);
    } while (c->repump && !c->closing);
    c->in_pump = 0;
    if (!c->closing) read_control(c);
}

/* q (RUNNING) ends in state st. */
static void complete(rn_kreq_t *q, int st)
{
    kconn_t *c = q->conn;
    assert(q->state == Q_RUNNING);
    q->state = st;
    if (c->blocked == q) c->blocked = NULL;
    if (c->closing) {
        /* The connection is gone: drop the request (invariant 2). */
        rn_kreq_t **pp = &c->head;
        while (*pp && *pp != q) pp = &(*pp)->next;
        if (*pp) {
            *pp = q->next;
            c->queued--;
        }
        req_free(q);
        return;
    }
    if (q->w.err) {
        conn_close(c, "%s", werr(q));
        return;
    }
    if (st == Q_READY) hold_out(q);
    pump(c);
}

void rn_kreq_done(rn_kreq_t *q) { complete(q, Q_READY); }
void rn_kreq_drop(rn_kreq_t *q) { complete(q, Q_NORESP); }

int rn_kreq_bad(rn_kreq_t *q, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(q->whybuf, sizeof q->whybuf, fmt, ap);
    va_end(ap);
    q->why = q->whybuf;
    return RN_KH_BAD;
}

/* ---- reading -------------------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    kconn_t *c = h->data;
    if (c->fr.frame && !c->tls) {
        c->direct = 1;
        *b = uv_buf_init((char *)c->fr.frame + c->fr.frame_have,
                         c->fr.frame_len - c->fr.frame_have);
    } else {
        c->direct = 0;
        *b = uv_buf_init((char *)c->stage, sizeof c->stage);
    }
}

/* A whole frame arrived: queue its request (its bytes stay held). */
static int frame_done(kconn_t *c)
{
    rn_kreq_t *q = calloc(1, sizeof *q);
    if (!q) return -1;
    q->frame = rn_kframer_release(&c->fr, &q->frame_len);
    q->conn = c;
    q->ctx = &c->f->ctx;
    snprintf(q->peer, sizeof q->peer, "%s", c->peer);
    q->state = Q_QUEUED;
    if (c->tail) c->tail->next = q;
    else c->head = q;
    c->tail = q;
    c->queued++;
    c->refs++;
    c->f->live++;
    rn_metrics_gauge(RN_MG_KAFKA_REQS, 1);
    return 0;
}

/* Take n bytes of p into the frame being assembled; returns bytes used or
 * -1 after closing c. */
static ssize_t take_bytes(kconn_t *c, const uint8_t *p, size_t n)
{
    rn_kfront_t *f = c->f;
    int mid = rn_kframer_mid(&c->fr), had = c->fr.frame != NULL;
    size_t used = 0;
    char why[256];
    /* Before authentication a frame is at most RN_KFRONT_PREAUTH_MAX_FRAME
     * (invariant 8): SASL messages are small. */
    uint32_t max = must_auth(c) ? RN_KFRONT_PREAUTH_MAX_FRAME : f->ctx.max_frame;
    int r = rn_kframer_take(&c->fr, max, p, n, &used, why, sizeof why);
    if (r == RN_KF_BAD) {
        if (max < f->ctx.max_frame)
            conn_close(c, "%s; before authenticating, frames are limited to %u bytes", why, max);
        else
            conn_close(c, "%s", why);
        return -1;
    }
    if (!mid && used) c->frame_start = rn_server_now_ms();     /* invariant 6 */
    if (!had && c->fr.frame) hold(c, c->fr.frame_len);
    if (r == RN_KF_FRAME && frame_done(c) != 0) {
        conn_close(c, "out of memory queueing a request");
        return -1;
    }
    return (ssize_t)used;
}

/* Invariant 9: decrypt the n bytes in c->stage and frame the plaintext;
 * answer the handshake. 0, or -1 after closing c. */
static int tls_read(kconn_t *c, size_t n)
{
    rn_kfront_t *f = c->f;
    char why[300];
    int was_ready = rn_ktls_ready(c->tls);
    if (rn_ktls_feed(c->tls, c->stage, n) != 0) {
        conn_close(c, "out of memory (TLS)");
        return -1;
    }
    for (;;) {
        ssize_t k = rn_ktls_read(c->tls, f->plain, sizeof f->plain, why, sizeof why);
        if (k == -2) {                   /* close_notify: an orderly end */
            conn_close(c, NULL);
            return -1;
        }
        if (k < 0) {
            tls_send(c, NULL);           /* the alert, if any */
            conn_close(c, "%s%s", why, was_ready || rn_ktls_ready(c->tls) ? ""
                       : " (a plaintext client on the TLS port, or a certificate not trusted)");
            return -1;
        }
        if (k == 0) break;
        size_t off = 0;
        while (off < (size_t)k) {
            ssize_t u = take_bytes(c, f->plain + off, (size_t)k - off);
            if (u < 0) return -1;
            off += (size_t)u;
        }
    }
    if (tls_send(c, NULL) != 0) {
        conn_close(c, "cannot send TLS records (out of memory)");
        return -1;
    }
    if (!was_ready && rn_ktls_ready(c->tls) && rn_ktls_ctx_mtls(f->tls) && !c->principal[0]) {
        if (rn_ktls_peer_cn(c->tls, c->principal, sizeof c->principal) != 0) {
            conn_close(c, "the client certificate has no usable subject CN (1 to %d bytes)",
                       RN_USER_NAME_MAX);
            return -1;
        }
        rn_slog(RN_SLOG_DEBUG, "kafka: %s authenticated as %s (client certificate)", c->peer,
                c->principal);
    }
    return 0;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    kconn_t *c = s->data;
    if (n < 0) {
        if (rn_kframer_mid(&c->fr) && n != UV_EOF)
            rn_slog(RN_SLOG_DEBUG, "kafka: %s: %s", c->peer, uv_strerror((int)n));
        conn_close(c, rn_kframer_mid(&c->fr) && n == UV_EOF
                          ? "the connection ended inside a frame (truncated request)" : NULL);
        return;
    }
    if (n == 0) return;
    if (c->tls) {
        if (tls_read(c, (size_t)n) != 0) return;
    } else if (c->direct) {
        c->fr.frame_have += (uint32_t)n;
        if (c->fr.frame_have == c->fr.frame_len && frame_done(c) != 0) {
            conn_close(c, "out of memory queueing a request");
            return;
        }
    } else {
        size_t off = 0;
        while (off < (size_t)n) {
            ssize_t k = take_bytes(c, c->stage + off, (size_t)n - off);
            if (k < 0) return;
            off += (size_t)k;
        }
    }
    pump(c);
}

static void read_control(kconn_t *c)
{
    rn_kfront_t *f = c->f;
    int want = !f->closing && c->queued < RN_KFRONT_MAX_QUEUED
               && c->held < RN_KFRONT_MAX_CONN_HELD && f->inflight < RN_KFRONT_MAX_INFLIGHT;
    if (f->inflight >= RN_KFRONT_MAX_INFLIGHT) f->paused = 1;
    if (want && !c->reading) {
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0) {
            c->reading = 1;
            /* The time a frame may take counts only while it is read (invariant 6). */
            if (rn_kframer_mid(&c->fr)) c->frame_start = rn_server_now_ms();
        }
    } else if (!want && c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    }
}

static void on_connection(uv_stream_t *srv, int status)
{
    rn_kfront_t *f = srv->data;
    if (status < 0 || f->closing) return;
    kconn_t *c = calloc(1, sizeof *c);
    if (!c) return;
    c->f = f;
    uv_tcp_init(&f->loop, &c->tcp);
    c->tcp.data = c;
    c->refs = 1;
    rn_metrics_gauge(RN_MG_KAFKA_CONNS, 1);
    c->next = f->conns;
    if (f->conns) f->conns->prev = c;
    f->conns = c;
    if (uv_accept(srv, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c, NULL);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    struct sockaddr_storage ss;
    int len = sizeof ss;
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
            uv_ip6_name(a, host, sizeof host);
            port = ntohs(a->sin6_port);
        } else {
            struct sockaddr_in *a = (struct sockaddr_in *)&ss;
            uv_ip4_name(a, host, sizeof host);
            port = ntohs(a->sin_port);
        }
    }
    snprintf(c->peer, sizeof c->peer, "%s:%d", host, port);
    atomic_fetch_add(&f->nconns, 1);
    if (f->tls) {                                        /* invariant 9 */
        c->sasl.tls = 1;
        if (!(c->tls = rn_ktls_new(f->tls))) {
            conn_close(c, "out of memory (TLS)");
            return;
        }
    }
    read_control(c);
}

/* ---- waiter thread and parking lot ---------------------------------------------- */

static void *waiter_main(void *arg)
{
    rn_kfront_t *f = arg;
    pthread_mutex_lock(&f->wmu);
    for (;;) {
        while (!f->wq && !f->wstop) pthread_cond_wait(&f->wcv, &f->wmu);
        if (!f->wq) break;
        rn_kreq_t *q = f->wq;
        f->wq = q->link;
        if (!f->wq) f->wq_tail = &f->wq;
        pthread_mutex_unlock(&f->wmu);
        q->work(q);
        pthread_mutex_lock(&f->wmu);
        q->link = NULL;
        *f->done_tail = q;
        f->done_tail = &q->link;
        uv_async_send(&f->async);
    }
    pthread_mutex_unlock(&f->wmu);
    return NULL;
}

int rn_kreq_offload(rn_kreq_t *q, void (*work)(rn_kreq_t *q), void (*then)(rn_kreq_t *q),
                    int pipelined)
{
    rn_kfront_t *f = ((kconn_t *)q->conn)->f;
    q->work = work;
    q->then = then;
    q->link = NULL;
    pthread_mutex_lock(&f->wmu);
    *f->wq_tail = q;
    f->wq_tail = &q->link;
    pthread_cond_signal(&f->wcv);
    pthread_mutex_unlock(&f->wmu);
    return pipelined ? RN_KH_LATER_PIPELINED : RN_KH_LATER;
}

int rn_kreq_alone(const rn_kreq_t *q)
{
    const kconn_t *c = q->conn;
    for (const rn_kreq_t *e = c->head; e && e != q; e = e->next)
        if (e->state != Q_READY && e->state != Q_NORESP) return 0;
    return 1;
}

static void on_park(uv_timer_t *t);

int rn_kreq_park(rn_kreq_t *q, int64_t deadline_ms, void (*retry)(rn_kreq_t *q, int expired))
{
    rn_kfront_t *f = ((kconn_t *)q->conn)->f;
    q->retry = retry;
    q->deadline = deadline_ms;
    q->link = f->parked;
    f->parked = q;
    rn_metrics_gauge(RN_MG_KAFKA_PARKED, 1);
    if (!uv_is_active((uv_handle_t *)&f->park))
        uv_timer_start(&f->park, on_park, RN_KFRONT_PARK_MS, RN_KFRONT_PARK_MS);
    return RN_KH_LATER;
}

static void on_park(uv_timer_t *t)
{
    rn_kfront_t *f = t->data;
    rn_kreq_t *q = f->parked;
    f->parked = NULL;
    int64_t now = rn_server_now_ms();
    while (q) {
        rn_kreq_t *next = q->link;
        q->link = NULL;
        rn_metrics_gauge(RN_MG_KAFKA_PARKED, -1);
        /* retry completes q or parks it again. */
        q->retry(q, f->closing || now >= q->deadline || ((kconn_t *)q->conn)->closing);
        q = next;
    }
    if (!f->parked) uv_timer_stop(&f->park);
}

static void on_tick(uv_timer_t *t)
{
    rn_kfront_t *f = t->data;
    int64_t now = rn_server_now_ms();
    rn_kgroup_tick(&f->ctx, now);
    for (kconn_t *c = f->conns, *next; c; c = next) {     /* invariant 6 */
        next = c->next;
        if (c->closing || !c->reading || !rn_kframer_mid(&c->fr)) continue;
        if (now - c->frame_start >= f->frame_timeout_ms) {
            c->refs++;                   /* conn_close may free it otherwise */
            conn_close(c, "a frame begun %lld ms ago is still not whole (%u of %u bytes; "
                       "runneld --kafka-frame-timeout-ms)", (long long)(now - c->frame_start),
                       c->fr.frame ? c->fr.frame_have : c->fr.size_have,
                       c->fr.frame ? c->fr.frame_len : 4);
            next = c->next;
            conn_unref(c);
        }
    }
    if (f->paused && f->inflight < RN_KFRONT_MAX_INFLIGHT) {
        f->paused = 0;
        for (kconn_t *c = f->conns; c; c = c->next)
            if (!c->closing) read_control(c);
    }
}

/* ---- lifecycle ------------------------------------------------------------------ */

static void begin_close(rn_kfront_t *f)
{
    if (f->closing) return;
    f->closing = 1;
    uv_close((uv_handle_t *)&f->listener, NULL);
    uv_timer_stop(&f->tick);
    rn_kcoord_close(f->ctx.coord);      /* answers pending joins */
    f->ctx.coord = NULL;
    for (kconn_t *c = f->conns, *next; c; c = next) {
        next = c->next;
        c->refs++;                      /* conn_close may free it otherwise */
        conn_close(c, NULL);
        conn_unref(c);
    }
    maybe_finish(f);
}

static void on_async(uv_async_t *a)
{
    rn_kfront_t *f = a->data;
    pthread_mutex_lock(&f->wmu);
    rn_kreq_t *q = f->done;
    f->done = NULL;
    f->done_tail = &f->done;
    pthread_mutex_unlock(&f->wmu);
    while (q) {
        rn_kreq_t *next = q->link;
        q->link = NULL;
        q->then(q);
        q = next;
    }
    if (atomic_load(&f->stopping)) begin_close(f);
}

/* Close the loop's own handles once every request and connection ended. */
static void maybe_finish(rn_kfront_t *f)
{
    if (!f->closing || f->live || f->conns) return;
    if (uv_is_closing((uv_handle_t *)&f->async)) return;
    uv_close((uv_handle_t *)&f->async, NULL);
    uv_close((uv_handle_t *)&f->tick, NULL);
    uv_close((uv_handle_t *)&f->park, NULL);
}

static void *loop_main(void *arg)
{
    rn_kfront_t *f = arg;
    uv_run(&f->loop, UV_RUN_DEFAULT);
    return NULL;
}

/* Split "HOST:PORT" ("[v6]:PORT" too). */
int rn_kfront_start(rn_hd_t *hd, const rn_kfront_opts_t *o, rn_kfront_t **out, int *port,
                    char *errmsg)
{
    char host[256];
    int lport;
    if (rn_addr_split(o->listen, host, sizeof host, &lport, 1, errmsg) != 0) return RN_EINVAL;
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", lport);
    int g = getaddrinfo(host[0] ? host : NULL, ps, &hints, &ai);
    if (g != 0)
        return rn_errf(errmsg, RN_EINVAL, "--kafka-listen %s: %s", o->listen, gai_strerror(g));
    rn_kfront_t *f = calloc(1, sizeof *f);
    if (!f) {
        freeaddrinfo(ai);
        return rn_errf(errmsg, -ENOMEM, "out of memory");
    }
    f->ctx.hd = hd;
    f->ctx.d = rn_hd_datadir(hd);
    f->ctx.node_id = (int32_t)o->node_id;       /* runneld keeps it within int32 */
    f->ctx.self = o->node_id;
    f->ctx.auto_create = o->auto_create;
    f->ctx.max_frame = o->max_frame ? o->max_frame : RN_KFRONT_DEFAULT_MAX_FRAME;
    f->ctx.auth = o->auth;
    if (o->tls_cert) {
        int trc = rn_ktls_ctx_create(o->tls_cert, o->tls_key, o->tls_ca, &f->tls, errmsg);
        if (trc != 0) {
            free(f);
            freeaddrinfo(ai);
            return trc;
        }
    }
    f->frame_timeout_ms = o->frame_timeout_ms ? o->frame_timeout_ms
                                              : RN_KFRONT_DEFAULT_FRAME_TIMEOUT_MS;
    /* Invariant 7: libuv writes with write(2), which raises SIGPIPE when
     * the peer is gone; that must end the connection, not the broker. */
    signal(SIGPIPE, SIG_IGN);
    pthread_mutex_init(&f->wmu, NULL);
    pthread_cond_init(&f->wcv, NULL);
    f->wq_tail = &f->wq;
    f->done_tail = &f->done;
    uv_loop_init(&f->loop);
    uv_tcp_init(&f->loop, &f->listener);
    uv_async_init(&f->loop, &f->async, on_async);
    uv_timer_init(&f->loop, &f->tick);
    uv_timer_init(&f->loop, &f->park);
    f->listener.data = f->async.data = f->tick.data = f->park.data = f;
    int rc = uv_tcp_bind(&f->listener, ai->ai_addr, 0);
    freeaddrinfo(ai);
    if (rc == 0) rc = uv_listen((uv_stream_t *)&f->listener, 512, on_connection);
    if (rc != 0) {
        rc = rn_errf(errmsg, -EIO, "--kafka-listen %s: %s", o->listen, uv_strerror(rc));
        goto fail;
    }
    struct sockaddr_storage ss;
    int len = sizeof ss;
    uv_tcp_getsockname(&f->listener, (struct sockaddr *)&ss, &len);
    *port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                           : ((struct sockaddr_in *)&ss)->sin_port);
    /* The advertised address: --kafka-advertise, else the listen address
     * with the bound port (a wildcard host advertises this host's name). */
    if (o->advertise) {
        rc = rn_addr_split(o->advertise, f->ctx.host, sizeof f->ctx.host, &f->ctx.port, 0,
                           errmsg);
        if (rc == 0 && !f->ctx.host[0])
            rc = rn_errf(errmsg, RN_EINVAL, "--kafka-advertise '%.100s' names no host",
                         o->advertise);
        if (rc != 0) goto fail;
    } else {
        snprintf(f->ctx.host, sizeof f->ctx.host, "%s", host);
        if (!host[0] || !strcmp(host, "0.0.0.0") || !strcmp(host, "::"))
            gethostname(f->ctx.host, sizeof f->ctx.host - 1);
        f->ctx.port = *port;
    }
    /* A cluster id stable for this data directory (a cluster's nodes: for
     * the cluster, so every node names the same). */
    uint64_t hsh = 1469598103934665603ull;
    const char *seed = o->cluster_seed ? o->cluster_seed : rn_datadir_path(f->ctx.d);
    for (const char *p = seed; *p; p++) hsh = (hsh ^ (uint8_t)*p) * 1099511628211ull;
    snprintf(f->advertised, sizeof f->advertised, "%s:%d", f->ctx.host, f->ctx.port);
    snprintf(f->ctx.cluster_id, sizeof f->ctx.cluster_id, "runnel-%016llx", (unsigned long long)hsh);
    rc = rn_kcoord_open(&f->ctx, &f->ctx.coord, errmsg);
    if (rc != 0) goto fail;
    uv_timer_start(&f->tick, on_tick, RN_KFRONT_TICK_MS, RN_KFRONT_TICK_MS);
    if (pthread_create(&f->waiter, NULL, waiter_main, f) != 0) {
        rc = rn_errf(errmsg, -EIO, "cannot start the Kafka front's waiter thread");
        goto fail;
    }
    f->waiter_started = 1;
    if (pthread_create(&f->thread, NULL, loop_main, f) != 0) {
        rc = rn_errf(errmsg, -EIO, "cannot start the Kafka front's thread");
        goto fail;
    }
    f->thread_started = 1;
    *out = f;
    return 0;
fail:
    atomic_store(&f->stopping, 1);
    begin_close(f);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    rn_kfront_stop(f);
    return rc;
}

void rn_kfront_stop(rn_kfront_t *f)
{
    if (!f) return;
    if (f->thread_started) {
        atomic_store(&f->stopping, 1);
        uv_async_send(&f->async);
        pthread_join(f->thread, NULL);
    }
    if (f->waiter_started) {
        pthread_mutex_lock(&f->wmu);
        f->wstop = 1;
        pthread_cond_signal(&f->wcv);
        pthread_mutex_unlock(&f->wmu);
        pthread_join(f->waiter, NULL);
    }
    uv_loop_close(&f->loop);
    rn_ktls_ctx_free(f->tls);
    pthread_mutex_destroy(&f->wmu);
    pthread_cond_destroy(&f->wcv);
    free(f);
}

void rn_kfront_set_ctl(rn_kfront_t *f, struct rn_ctl *ctl)
{
    __atomic_store_n(&f->ctx.ctl, ctl, __ATOMIC_RELEASE);
}

const char *rn_kfront_advertised(const rn_kfront_t *f) { return f->advertised; }

void rn_kfront_stats(rn_kfront_t *f, rn_kfront_stats_t *out)
{
    out->connections = atomic_load(&f->nconns);
    out->requests = atomic_load(&f->nreqs);
    out->closed_bad = atomic_load(&f->nbad);
}
