/*
 * sasl.c — SaslHandshake, SaslAuthenticate and raw SASL tokens
 * (kafka/sasl.h): PLAIN and SCRAM-SHA-256 against the credentials file.
 *
 * Invariants (besides sasl.h's):
 *  1. Every client token is parsed within its bounds (RN_KSASL_MAX_TOKEN);
 *     a token that breaks the mechanism's grammar fails the exchange, as a
 *     wrong password does: one error answer, then the front closes.
 *  2. Proofs and keys compare with CRYPTO_memcmp, and the keys of an
 *     exchange are wiped when it ends.
 *  3. The client is told only "authentication failed" (no reason that
 *     would tell a name from a password); the log line names the peer, the
 *     mechanism, the user and the reason.
 */
#include "kafka/sasl.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "server/auth.h"
#include "server/log.h"

#define SASL_AUTHENTICATION_FAILED 58
#define SCRAM_NAME "SCRAM-SHA-256"

static const char failed_msg[] = "Authentication failed: invalid credentials";

/* ---- helpers ---------------------------------------------------------------------- */

static uint8_t fake_key[32];                     /* sasl.h invariant 3 */
static pthread_once_t fake_once = PTHREAD_ONCE_INIT;
static void fake_init(void) { RAND_bytes(fake_key, sizeof fake_key); }

static void hmac(const uint8_t *key, size_t kn, const void *p, size_t n, uint8_t out[32])
{
    unsigned int len = 32;
    HMAC(EVP_sha256(), key, (int)kn, p, n, out, &len);
}

/* Standard base64 of p[0..n) into out (4 * ceil(n / 3) + 1 bytes). */
static void b64enc(const uint8_t *p, size_t n, char *out)
{
    EVP_EncodeBlock((unsigned char *)out, p, (int)n);
}

/* Decode base64 s (len bytes) into out (cap): 0 and *olen, or -1. */
static int b64dec(const char *s, size_t len, uint8_t *out, size_t cap, size_t *olen)
{
    if (len % 4 || len / 4 * 3 > cap + 2) return -1;
    uint8_t tmp[RN_KSASL_MAX_TOKEN];
    if (len / 4 * 3 > sizeof tmp) return -1;
    int n = EVP_DecodeBlock(tmp, (const unsigned char *)s, (int)len);
    if (n < 0) return -1;
    size_t pad = len && s[len - 1] == '=' ? (len > 1 && s[len - 2] == '=' ? 2 : 1) : 0;
    size_t got = (size_t)n - pad;
    if (got > cap) return -1;
    memcpy(out, tmp, got);
    *olen = got;
    return 0;
}

static const char *mech_name(int m) { return m == RN_KSASL_PLAIN ? "PLAIN" : SCRAM_NAME; }

static void wipe(rn_ksasl_t *s)
{
    OPENSSL_cleanse(s->stored_key, sizeof s->stored_key);
    OPENSSL_cleanse(s->server_key, sizeof s->server_key);
    OPENSSL_cleanse(s->msg, sizeof s->msg);
}

/* The answer to a token: a SaslAuthenticate response, or (raw, q->api -1)
 * the bare token; a raw failure gets no answer (Kafka closes). */
static int answer(rn_kreq_t *q, int16_t err, const char *msg, const void *tok, size_t n)
{
    rn_kw_t *w = &q->w;
    if (q->api == -1) {
        if (err) return RN_KH_NONE;
        rn_kw_raw(w, tok, n);
        return RN_KH_DONE;
    }
    rn_kw_i16(w, err);
    rn_kw_str(w, msg);
    rn_kw_bytes(w, tok ? tok : "", (int32_t)n);
    if (q->version >= 1) rn_kw_i64(w, 0);          /* session_lifetime_ms: none */
    rn_kw_tags(w);
    return RN_KH_DONE;
}

/* Fail the exchange (invariant 3): why is logged when the front closes. */
static int fail(rn_kreq_t *q, rn_ksasl_t *s, int16_t err, const char *msg, const char *fmt,
                ...) __attribute__((format(printf, 5, 6)));
static int fail(rn_kreq_t *q, rn_ksasl_t *s, int16_t err, const char *msg, const char *fmt,
                ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->why, sizeof s->why, fmt, ap);
    va_end(ap);
    s->state = RN_KSASL_FAILED;
    wipe(s);
    return answer(q, err, msg, NULL, 0);
}

static int done(rn_kreq_t *q, rn_ksasl_t *s, const char *who, const void *tok, size_t n)
{
    snprintf(s->principal, sizeof s->principal, "%s", who);
    s->state = RN_KSASL_DONE;
    wipe(s);
    rn_slog(RN_SLOG_DEBUG, "kafka: %s authenticated as %s (%s)", q->peer, s->principal,
            mech_name(s->mech));
    return answer(q, 0, NULL, tok, n);
}

/* ---- PLAIN -------------------------------------------------------------------- */

typedef struct plain {
    char tok[RN_TOKEN_MAX + 1];
    char user[RN_USER_NAME_MAX + 1];
    size_t len;
    int  rc;
    char principal[RN_USER_NAME_MAX + 1];
} plain_t;

static void plain_free(rn_kreq_t *q)
{
    if (q->hstate) OPENSSL_cleanse(q->hstate, sizeof(plain_t));
    free(q->hstate);
    q->hstate = NULL;
}

static void plain_work(rn_kreq_t *q)              /* the waiter thread: the KDF */
{
    plain_t *p = q->hstate;
    p->rc = q->ctx->auth ? rn_auth_token(q->ctx->auth, p->tok, p->len, q->peer, p->principal)
                         : -1;
}

static void plain_then(rn_kreq_t *q)
{
    plain_t *p = q->hstate;
    rn_ksasl_t *s = rn_kreq_sasl(q);
    int r = p->rc == 0 ? done(q, s, p->principal, NULL, 0)
                       : fail(q, s, SASL_AUTHENTICATION_FAILED, failed_msg,
                              "SASL PLAIN: wrong password or unknown user '%s'", p->user);
    if (r == RN_KH_DONE) rn_kreq_done(q);
    else rn_kreq_drop(q);
}

/* authzid NUL authcid NUL passwd (RFC 4616). */
static int plain(rn_kreq_t *q, rn_ksasl_t *s, const char *t, size_t n)
{
    const char *z1 = memchr(t, 0, n);
    const char *z2 = z1 ? memchr(z1 + 1, 0, n - (size_t)(z1 + 1 - t)) : NULL;
    if (!z2 || memchr(z2 + 1, 0, n - (size_t)(z2 + 1 - t)))
        return fail(q, s, SASL_AUTHENTICATION_FAILED, failed_msg,
                    "SASL PLAIN: the token is not 'authzid NUL username NUL password'");
    size_t azn = (size_t)(z1 - t), un = (size_t)(z2 - z1 - 1), pn = n - (size_t)(z2 + 1 - t);
    if (un == 0 || un > RN_USER_NAME_MAX || un + 1 + pn > RN_TOKEN_MAX)
        return fail(q, s, SASL_AUTHENTICATION_FAILED, failed_msg,
                    "SASL PLAIN: username or password too long or empty");
    if (azn && (azn != un || memcmp(t, z1 + 1, un)))
        return fail(q, s, SASL_AUTHENTICATION_FAILED, failed_msg,
                    "SASL PLAIN: an authorization id other than the username is not supported");
    plain_t *p = calloc(1, sizeof *p);
    if (!p) return rn_kreq_bad(q, "out of memory");
    memcpy(p->user, z1 + 1, un);
    memcpy(p->tok, z1 + 1, un);               /* the token "NAME.SECRET" */
    p->tok[un] = '.';
    memcpy(p->tok + un + 1, z2 + 1, pn);
    p->len = un + 1 + pn;
    q->hstate = p;
    q->hfree = plain_free;
    return rn_kreq_offload(q, plain_work, plain_then, 0);   /* invariant 2 of sasl.h */
}

/* ---- SCRAM-SHA-256 -------------------------------------------------------------- */

/* A SCRAM nonce: printable ASCII but ','. */
static int nonce_ok(const char *p, size_t n)
{
    if (n == 0 || n > 64) return 0;
    for (size_t i = 0; i < n; i++)
        if (p[i] < 0x21 || p[i] > 0x7e || p[i] == ',') return 0;
    return 1;
}

/* client-first: gs2-header client-first-bare; answers server-first. */
static int scram_first(rn_kreq_t *q, rn_ksasl_t *s, const char *t, size_t n)
{
    char m[RN_KSASL_MAX_TOKEN + 1];
    memcpy(m, t, n);
    m[n] = 0;
    if (strlen(m) != n)
        return fail(q, s, SASL_AUTHENTICATION_FAILED, failed_msg, "SCRAM: a NUL byte in client-first");
    /* gs2-cbind-flag "," [authzid] "," */
    if (!(m[0] == 'n' || m[0] == 'y') || m[1] != ',')
        return fail(q, s, SASL_AUTHENTICATION_FAILED, failed_msg,
                    "SCRAM: client-first must start with 'n,' or 'y,' (channel binding is not "
                    "supported)");
    const char *c2 = strchr(m + 2, ',');
    if (!c2 || (size_t)(c2 + 1 - m) >= sizeof s->gs2)
        return fail(q, s, SASL_AUTHENTICATION_FAILED, failed_msg, "SCRAM: malformed GS2 header");
    const char *authz = m + 2;
    size_t azn = (size_t)(c2 - authz);
    const char *bare = c2 + 1;
    if (strncmp(bare, "n=", 2))
        return fail(q, s, SASL_AUTHENTICATION_FAILED, failed_msg,
                    "SCRAM: client-first-bare must start with 'n=USER'");
    const char *user = bare + 2, *ue = strchr(user, ',');
    if (!ue || strncmp(ue, ",r=", 3))
        return fail(q, s, SASL_AUTHENTICATION_FAILED, failed_msg,
                    "SCRAM: client-first-bare must be 'n=USER,r=NONCE'");
    size_t un = (size_t)(ue - user);
    const char *cn = ue + 3, *ce = strchr(cn, ',');
    size_t cnn = ce ? (size_t)(ce - cn) : strlen(cn);
    if (!nonce_ok(cn, cnn))
        return fail(q, s, SASL_AUTHENTICATION_FAILED, failed_msg, "SCRAM: bad client nonce");
    if (azn && !(azn == un + 2 && !strncmp(authz, "a=", 2) && !memcmp(authz + 2, user, un)))
        return fail(q, s, SASL_AUTHENTICATION_FAILED, failed_msg,
                    "SCRAM: an authorization id other than the username is not supported");
    if (un == 0 || un > RN_USER_NAME_MAX)
        return fail(q, s, SASL_AUTHENTICATION_FAILED, failed_msg, "SCRAM: bad user name length");
    memcpy(s->gs2, m, (size_t)(bare - m));
    s->gs2[bare - m] = 0;
    memcpy(s->principal, user, un);            /* the name claimed; DONE confirms it */
    s->principal[un] = 0;
    /* The user's keys from the stored SaltedPassword (no KDF), or a
     * simulated exchange for an unknown name (sasl.h invariant 3). */
    rn_user_t e;
    uint8_t salted[32];
    uint32_t iter = RN_USERS_ITER;
    uint8_t salt[16];
    if (q->ctx->auth && rn_auth_user(q->ctx->auth, user, un, &e) == 0) {
        memcpy(salted, e.hash, 32);
        memcpy(salt, e.salt, 16);
        iter = e.iter;
    } else {
        pthread_once(&fake_once, fake_init);
        uint8_t h[32];
        hmac(fake_key, sizeof fake_key, user, un, h);
        memcpy(salt, h, 16);
        RAND_bytes(salted, sizeof salted);     /* no proof can match */
    }
    OPENSSL_cleanse(&e, sizeof e);
    uint8_t ck[32];
    hmac(salted, 32, "Client Key", 10, ck);
    SHA256(ck, 32, s->stored_key);
    hmac(salted, 32, "Server Key", 10, s->server_key);
    OPENSSL_cleanse(ck, sizeof ck);
    OPENSSL_cleanse(salted, sizeof salted);
    uint8_t rnd[18];
    char snonce[32], salt64[32];
    if (RAND_bytes(rnd, sizeof rnd) != 1) return rn_kreq_bad(q, "cannot draw random bytes");
    b64enc(rnd, sizeof rnd, snonce);
    b64enc(salt, sizeof salt, salt64);
    snprintf(s->nonce, sizeof s->nonce, "%.*s%s", (int)cnn, cn, snonce);
    s->cnonce_len = (int)cnn;
    char sf[256];
    int sfn = snprintf(sf, sizeof sf, "r=%s,s=%s,i=%u", s->nonce, salt64, (unsigned)iter);
    size_t bn = strlen(bare);
    if (bn + 1 + (size_t)sfn + 1 > sizeof s->msg)
        return fail(q, s, SASL_AUTHENTICATION_FAILED, failed_msg, "SCRAM: client-first too long");
    memcpy(s->msg, bare, bn);
    s->msg[bn] = ',';
    memcpy(s->msg + bn + 1, sf, (size_t)sfn + 1);
    s->state = RN_KSASL_SCRAM1;
    return answer(q, 0, NULL, sf, (size_t)sfn);
}

/* client-final: "c=" B64(gs2) ",r=" NONCE [",..."] ",p=" PROOF. */
static int scram_final(rn_kreq_t *q, rn_ksasl_t *s, const char *t, size_t n)
{
    char m[RN_KSASL_MAX_TOKEN + 1];
    memcpy(m, t, n);
    m[n] = 0;
    char want[256], alt[256], g64[128];
    b64enc((const uint8_t *)s->gs2, strlen(s->gs2), g64);
    int wn = snprintf(want, sizeof want, "c=%s,r=%s", g64, s->nonce);
    /* librdkafka before 2.6.1 sends its own nonce again in front of the
     * server's (r=CNONCE CNONCE SNONCE); the proof covers what it sent, so
     * that form is accepted too. */
    int an = snprintf(alt, sizeof alt, "c=%s,r=%.*s%s", g64, s->cnonce_len, s->nonce, s->nonce);
    char *pp = NULL;
    for (char *x = strstr(m, ",p="); x; x = strstr(x + 1, ",p=")) pp = x;
    int good = (!strncmp(m, want, (size_t)wn) && m[wn] == ',') ||
               (!strncmp(m, alt, (size_t)an) && m[an] == ',');
    if (strlen(m) != n || !pp || !good)
        return fail(q, s, SASL_AUTHENTICATION_FAILED, failed_msg,
                    "SCRAM: client-final for user '%s' does not carry this exchange's channel "
                    "binding and nonce", s->principal);
    uint8_t proof[32];
    size_t pn = 0;
    if (b64dec(pp + 3, strlen(pp + 3), proof, sizeof proof, &pn) != 0 || pn != 32)
        return fail(q, s, SASL_AUTHENTICATION_FAILED, failed_msg,
                    "SCRAM: the proof of user '%s' is not 32 bytes of base64", s->principal);
    /* AuthMessage = client-first-bare "," server-first "," client-final-without-proof */
    size_t ml = strlen(s->msg), wl = (size_t)(pp - m);
    if (ml + 1 + wl >= sizeof s->msg)
        return fail(q, s, SASL_AUTHENTICATION_FAILED, failed_msg, "SCRAM: client-final too long");
    s->msg[ml] = ',';
    memcpy(s->msg + ml + 1, m, wl);
    size_t am = ml + 1 + wl;
    uint8_t sig[32], key[32], h[32];
    hmac(s->stored_key, 32, s->msg, am, sig);
    for (int i = 0; i < 32; i++) key[i] = proof[i] ^ sig[i];
    SHA256(key, 32, h);
    int ok = CRYPTO_memcmp(h, s->stored_key, 32) == 0;
    OPENSSL_cleanse(key, sizeof key);
    if (!ok)
        return fail(q, s, SASL_AUTHENTICATION_FAILED, failed_msg,
                    "SASL SCRAM-SHA-256: wrong password or unknown user '%s'", s->principal);
    uint8_t ssig[32];
    char v[80];
    hmac(s->server_key, 32, s->msg, am, ssig);
    memcpy(v, "v=", 2);
    b64enc(ssig, 32, v + 2);
    char who[RN_USER_NAME_MAX + 1];
    snprintf(who, sizeof who, "%s", s->principal);
    return done(q, s, who, v, strlen(v));
}

/* One client token in the current state. */
static int token(rn_kreq_t *q, rn_ksasl_t *s, const char *t, int32_t n)
{
    if (n < 0 || n > RN_KSASL_MAX_TOKEN)
        return fail(q, s, SASL_AUTHENTICATION_FAILED, failed_msg,
                    "a SASL token of %d bytes (at most %d)", (int)n, RN_KSASL_MAX_TOKEN);
    if (s->state == RN_KSASL_MECH && s->mech == RN_KSASL_PLAIN) return plain(q, s, t, (size_t)n);
    if (s->state == RN_KSASL_MECH) return scram_first(q, s, t, (size_t)n);
    if (s->state == RN_KSASL_SCRAM1) return scram_final(q, s, t, (size_t)n);
    return fail(q, s, RN_KERR_ILLEGAL_SASL_STATE, "SaslAuthenticate before SaslHandshake or "
                "after authentication", "SaslAuthenticate out of turn (no SaslHandshake before "
                "it, or already authenticated)");
}

/* ---- the API handlers ------------------------------------------------------------ */

int rn_kh_sasl_handshake(rn_kreq_t *q)
{
    rn_ksasl_t *s = rn_kreq_sasl(q);
    rn_kstr_t mech = rn_kr_str(&q->in, "mechanism");
    if (q->in.err) return RN_KH_BAD;
    if (!s) return rn_kreq_bad(q, "no SASL state for this connection");
    rn_kw_t *w = &q->w;
    int16_t err = RN_KERR_NONE;
    if (s->state != RN_KSASL_NONE) {
        err = RN_KERR_ILLEGAL_SASL_STATE;
        snprintf(s->why, sizeof s->why, "a second SaslHandshake on one connection");
    } else if (rn_kstr_eq(mech, SCRAM_NAME)) {
        s->mech = RN_KSASL_SCRAM;
    } else if (rn_kstr_eq(mech, "PLAIN") && s->tls) {
        s->mech = RN_KSASL_PLAIN;
    } else if (rn_kstr_eq(mech, "PLAIN")) {            /* sasl.h invariant 1 */
        err = RN_KERR_UNSUPPORTED_SASL_MECHANISM;
        snprintf(s->why, sizeof s->why, "SASL PLAIN refused on a plaintext connection: it "
                 "would send the password in clear; use SASL_SSL, or SCRAM-SHA-256");
    } else {
        err = RN_KERR_UNSUPPORTED_SASL_MECHANISM;
        snprintf(s->why, sizeof s->why, "SASL mechanism '%.*s' is not supported; %s",
                 mech.len > 40 ? 40 : (mech.len < 0 ? 0 : (int)mech.len), mech.p ? mech.p : "",
                 s->tls ? "PLAIN and SCRAM-SHA-256 are" : "SCRAM-SHA-256 is (PLAIN over TLS)");
    }
    rn_kw_i16(w, err);
    rn_kw_array(w, s->tls ? 2 : 1);
    if (s->tls) rn_kw_str(w, "PLAIN");
    rn_kw_str(w, SCRAM_NAME);
    if (err) {
        s->state = RN_KSASL_FAILED;
        return RN_KH_DONE;
    }
    s->state = RN_KSASL_MECH;
    s->raw = q->version == 0;
    return RN_KH_DONE;
}

int rn_kh_sasl_authenticate(rn_kreq_t *q)
{
    rn_ksasl_t *s = rn_kreq_sasl(q);
    rn_kstr_t b = rn_kr_bytes(&q->in, "auth_bytes");
    rn_kr_tags(&q->in);
    if (q->in.err) return RN_KH_BAD;
    if (!s) return rn_kreq_bad(q, "no SASL state for this connection");
    if (s->raw && s->state != RN_KSASL_DONE)
        return fail(q, s, RN_KERR_ILLEGAL_SASL_STATE, "SaslAuthenticate after SaslHandshake v0",
                    "SaslAuthenticate after a SaslHandshake v0 (raw tokens expected)");
    return token(q, s, b.p, b.len);
}

int rn_ksasl_raw(rn_kreq_t *q)
{
    rn_ksasl_t *s = rn_kreq_sasl(q);
    if (!s) return rn_kreq_bad(q, "no SASL state for this connection");
    return token(q, s, (const char *)q->frame,
                 q->frame_len > RN_KSASL_MAX_TOKEN ? -1 : (int32_t)q->frame_len);
}
