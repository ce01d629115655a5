/*
 * auth.c — the principal of each call (server/auth.h).
 *
 * Invariants:
 *  1. The credentials file is re-read when its identity changes (device,
 *     inode, size, mtime: every change is an atomic rename, client/users.c
 *     invariant 2), checked by one stat per authenticated call, so a removed
 *     user is refused from the next call on. The stat and the read happen
 *     outside mu; only the swap of the table is under it.
 *  2. The slow KDF runs once per token, not per call: a verified token is
 *     cached under the SHA-256 of the token (never the token itself), at most
 *     CACHE_MAX entries (a full cache is emptied), and the cache is emptied
 *     whenever the table is replaced, so a revocation is never outlived.
 *     The KDF (some tens of ms at 100000 iterations) runs on the caller's
 *     thread, one at a time in the whole broker (kdf_mu): however many
 *     wrong tokens arrive, key derivation takes at most one core.
 *  5. Failed derivations are limited per client address: after
 *     fail_limit failures (runneld --auth-failures, default
 *     RN_AUTH_FAIL_LIMIT; 0: no limit) within FAIL_WINDOW_MS, tokens from that address
 *     that are not in the cache are refused without a KDF for
 *     FAIL_BLOCK_MS (-EAGAIN; the caller says so). A verified (cached)
 *     token still passes, so clients already in are not locked out; a
 *     success clears the address's count. At most FAIL_HOSTS addresses are
 *     tracked (the stalest entry is reused).
 *  3. Under mutual TLS a call without a token is the client certificate's
 *     subject CN (gRPC verified the chain before the call existed). A token,
 *     when given, wins.
 *  4. A refusal is logged at warn with the peer's address and the reason,
 *     never the token. A file that cannot be read keeps the last table (or
 *     refuses every call when there never was one) and is logged.
 */
#include "server/auth.h"

#include "client/runnel.h"
#include "common/sys.h"
#include "server/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>

#define CACHE_MAX      1024
#define FAIL_WINDOW_MS 10000     /* invariant 5 */
#define FAIL_BLOCK_MS  10000
#define FAIL_HOSTS     256

typedef struct fentry {
    char    host[64];
    int64_t window_ms;           /* when the current window began */
    int64_t blocked_until_ms;
    int64_t last_ms;             /* for reuse of the stalest entry */
    int     fails;
} fentry_t;

typedef struct centry {
    uint8_t key[SHA256_DIGEST_LENGTH];
    char    name[RN_USER_NAME_MAX + 1];
} centry_t;

typedef struct fid { dev_t dev; ino_t ino; off_t size; struct timespec mtime; int present; } fid_t;

struct rn_auth {
    char            *path;
    int              require;
    pthread_mutex_t  mu;       /* users, id, loaded, cache */
    rn_users_t      *users;    /* NULL: never loaded */
    fid_t            id;
    int              loaded;
    centry_t        *cache;
    size_t           ncache;
    pthread_mutex_t  kdf_mu;   /* invariant 4: one key derivation at a time */
    uint32_t         fail_limit;                /* invariant 5; 0: none */
    fentry_t         fails[FAIL_HOSTS];   /* under mu (invariant 5) */
};

int rn_auth_create(const char *path, int require, uint32_t fail_limit, rn_auth_t **out)
{
    *out = NULL;
    rn_auth_t *a = calloc(1, sizeof *a);
    if (!a || !(a->path = strdup(path)) || !(a->cache = calloc(CACHE_MAX, sizeof *a->cache))) {
        if (a) { free(a->path); free(a); }
        return -ENOMEM;
    }
    a->require = require;
    a->fail_limit = fail_limit;
    pthread_mutex_init(&a->mu, NULL);
    pthread_mutex_init(&a->kdf_mu, NULL);
    *out = a;
    return 0;
}

void rn_auth_destroy(rn_auth_t *a)
{
    if (!a) return;
    rn_users_free(a->users);
    OPENSSL_cleanse(a->cache, CACHE_MAX * sizeof *a->cache);
    free(a->cache);
    free(a->path);
    pthread_mutex_destroy(&a->mu);
    pthread_mutex_destroy(&a->kdf_mu);
    free(a);
}

static fid_t file_id(const char *path)
{
    fid_t f;
    memset(&f, 0, sizeof f);
    struct stat st;
    if (stat(path, &st) == 0) {
        f.present = 1;
        f.dev = st.st_dev;
        f.ino = st.st_ino;
        f.size = st.st_size;
        f.mtime = st.st_mtim;
    }
    return f;
}

static int same_id(const fid_t *x, const fid_t *y)
{
    return x->present == y->present && x->dev == y->dev && x->ino == y->ino &&
           x->size == y->size && x->mtime.tv_sec == y->mtime.tv_sec &&
           x->mtime.tv_nsec == y->mtime.tv_nsec;
}

/* Invariant 1: the table current, re-read if the file changed. 0, or -1
 * when it never could be read. Returns the number of users in *nusers. */
static int refresh(rn_auth_t *a, size_t *nusers)
{
    fid_t now = file_id(a->path);
    pthread_mutex_lock(&a->mu);
    int fresh = a->loaded && same_id(&now, &a->id);
    pthread_mutex_unlock(&a->mu);
    if (!fresh) {
        char err[RN_ERRMSG_SIZE] = "";
        rn_users_t *u = NULL;
        if (rn_users_load(a->path, &u, err) != 0) {
            rn_slog(RN_SLOG_WARN, "auth: %s (keeping the users read before)", err);
        } else {
            pthread_mutex_lock(&a->mu);
            rn_users_t *old = a->users;
            a->users = u;
            a->id = now;
            a->loaded = 1;
            a->ncache = 0;                      /* invariant 2 */
            pthread_mutex_unlock(&a->mu);
            rn_users_free(old);
        }
    }
    pthread_mutex_lock(&a->mu);
    int rc = a->loaded ? 0 : -1;
    *nusers = a->users ? rn_users_count(a->users) : 0;
    pthread_mutex_unlock(&a->mu);
    return rc;
}

/* The bearer token of md: 0 and *tok, *len; or -1 when absent (*malformed
 * set when present but not "Bearer TOKEN"). */
static int bearer(const grpc_metadata_array *md, const char **tok, size_t *len, int *malformed)
{
    *malformed = 0;
    for (size_t i = 0; i < md->count; i++) {
        const grpc_metadata *m = &md->metadata[i];
        if (GRPC_SLICE_LENGTH(m->key) != 13 ||
            memcmp(GRPC_SLICE_START_PTR(m->key), "authorization", 13))
            continue;
        const char *v = (const char *)GRPC_SLICE_START_PTR(m->value);
        size_t n = GRPC_SLICE_LENGTH(m->value);
        if (n < 7 || strncasecmp(v, "Bearer ", 7) || n - 7 > RN_TOKEN_MAX) {
            *malformed = 1;
            return -1;
        }
        *tok = v + 7;
        *len = n - 7;
        return 0;
    }
    return -1;
}

/* Invariant 3: the verified client certificate's CN into name, or -1. */
static int cert_cn(grpc_call *call, char *name)
{
    grpc_auth_context *ctx = grpc_call_auth_context(call);
    if (!ctx) return -1;
    int rc = -1;
    if (grpc_auth_context_peer_is_authenticated(ctx)) {
        grpc_auth_property_iterator it =
            grpc_auth_context_find_properties_by_name(ctx, GRPC_X509_CN_PROPERTY_NAME);
        const grpc_auth_property *p = grpc_auth_property_iterator_next(&it);
        if (p && p->value_length > 0 && p->value_length <= RN_USER_NAME_MAX &&
            !memchr(p->value, 0, p->value_length)) {
            memcpy(name, p->value, p->value_length);
            name[p->value_length] = 0;
            rc = 0;
        }
    }
    grpc_auth_context_release(ctx);
    return rc;
}

static int refuse(grpc_call *call, char *msg, const char *why)
{
    char *peer = grpc_call_get_peer(call);
    rn_slog(RN_SLOG_WARN, "auth: refused a call from %s: %s", peer ? peer : "?", why);
    gpr_free(peer);
    snprintf(msg, 256, "%s", why);
    return -EACCES;
}

int rn_auth_required(rn_auth_t *a)
{
    size_t nusers = 0;
    int loaded = refresh(a, &nusers) == 0;
    return !loaded || nusers > 0 || a->require;
}

int rn_auth_user(rn_auth_t *a, const char *name, size_t len, rn_user_t *e)
{
    size_t nusers = 0;
    refresh(a, &nusers);
    char tok[RN_USER_NAME_MAX + 3];
    if (len == 0 || len > RN_USER_NAME_MAX || memchr(name, 0, len)) return RN_ENOTFOUND;
    memcpy(tok, name, len);                 /* rn_users_find takes "NAME.SECRET" */
    tok[len] = '.';
    tok[len + 1] = 0;
    const char *secret;
    pthread_mutex_lock(&a->mu);
    int rc = a->users ? rn_users_find(a->users, tok, e, &secret) : RN_EINVAL;
    pthread_mutex_unlock(&a->mu);
    return rc == 0 ? 0 : RN_ENOTFOUND;
}

/* The entry of host (created, reusing the stalest, when absent). Under mu. */
static fentry_t *fail_entry(rn_auth_t *a, const char *host, int64_t now)
{
    fentry_t *stalest = &a->fails[0];
    for (size_t i = 0; i < FAIL_HOSTS; i++) {
        fentry_t *f = &a->fails[i];
        if (f->host[0] && !strcmp(f->host, host)) return f;
        if (f->last_ms < stalest->last_ms) stalest = f;
    }
    memset(stalest, 0, sizeof *stalest);
    snprintf(stalest->host, sizeof stalest->host, "%s", host);
    stalest->window_ms = now;
    stalest->last_ms = now;
    return stalest;
}

/* Invariant 5: is host blocked now? Under mu. */
static int fail_blocked(rn_auth_t *a, const char *host, int64_t now)
{
    for (size_t i = 0; i < FAIL_HOSTS; i++)
        if (a->fails[i].host[0] && !strcmp(a->fails[i].host, host))
            return a->fails[i].blocked_until_ms > now;
    return 0;
}

/* Count a failed (ok = 0) or good (ok = 1) derivation for host. Under mu.
 * Returns the failures counted when this one blocked the host (the caller
 * logs it once mu is released), else 0. */
static int fail_count(rn_auth_t *a, const char *host, int ok, int64_t now)
{
    fentry_t *f = fail_entry(a, host, now);
    f->last_ms = now;
    if (ok) {
        f->fails = 0;
        return 0;
    }
    if (now - f->window_ms > FAIL_WINDOW_MS) {
        f->window_ms = now;
        f->fails = 0;
    }
    if (a->fail_limit && (uint32_t)++f->fails >= a->fail_limit && f->blocked_until_ms <= now) {
        f->blocked_until_ms = now + FAIL_BLOCK_MS;
        return f->fails;
    }
    return 0;
}

int rn_auth_token(rn_auth_t *a, const char *tok, size_t len, const char *peer, char *principal)
{
    principal[0] = 0;
    if (len > RN_TOKEN_MAX || memchr(tok, 0, len)) return -EACCES;
    char host[64];
    rn_auth_peer_host(peer, host, sizeof host);
    size_t nusers = 0;
    refresh(a, &nusers);
    char t[RN_TOKEN_MAX + 1];
    memcpy(t, tok, len);
    t[len] = 0;
    uint8_t key[SHA256_DIGEST_LENGTH];
    SHA256((const uint8_t *)t, len, key);
    pthread_mutex_lock(&a->mu);                                   /* invariant 2 */
    for (size_t i = 0; i < a->ncache; i++)
        if (!CRYPTO_memcmp(a->cache[i].key, key, sizeof key)) {
            snprintf(principal, RN_USER_NAME_MAX + 1, "%s", a->cache[i].name);
            pthread_mutex_unlock(&a->mu);
            OPENSSL_cleanse(t, sizeof t);
            return 0;
        }
    if (fail_blocked(a, host, rn_sys.now_ms())) {                 /* invariant 5 */
        pthread_mutex_unlock(&a->mu);
        OPENSSL_cleanse(t, sizeof t);
        return -EAGAIN;
    }
    /* The KDF runs outside mu on a copy of the user's line; the result is
     * cached only if the table was not replaced meanwhile. */
    fid_t id = a->id;
    rn_user_t e;
    const char *secret = NULL;
    int rc = a->users ? rn_users_find(a->users, t, &e, &secret) : RN_EINVAL;
    pthread_mutex_unlock(&a->mu);
    if (rc == 0) {
        pthread_mutex_lock(&a->kdf_mu);                           /* invariant 4 */
        rc = rn_user_check(&e, secret);
        pthread_mutex_unlock(&a->kdf_mu);
    }
    if (rc == 0) snprintf(principal, RN_USER_NAME_MAX + 1, "%s", e.name);
    OPENSSL_cleanse(t, sizeof t);
    OPENSSL_cleanse(&e, sizeof e);
    pthread_mutex_lock(&a->mu);
    int blocked = fail_count(a, host, rc == 0, rn_sys.now_ms());
    if (rc == 0 && same_id(&id, &a->id)) {
        if (a->ncache == CACHE_MAX) a->ncache = 0;
        memcpy(a->cache[a->ncache].key, key, sizeof key);
        snprintf(a->cache[a->ncache].name, sizeof a->cache[0].name, "%s", principal);
        a->ncache++;
    }
    pthread_mutex_unlock(&a->mu);
    if (blocked)                                                  /* no I/O under mu */
        rn_slog(RN_SLOG_WARN, "auth: %d failed authentications from %s within %d s: tokens "
                "from it that were not verified before are refused for %d s", blocked, host,
                FAIL_WINDOW_MS / 1000, FAIL_BLOCK_MS / 1000);
    return rc == 0 ? 0 : -EACCES;
}

void rn_auth_peer_host(const char *peer, char *host, size_t size)
{
    if (!peer || !peer[0]) {
        snprintf(host, size, "?");
        return;
    }
    if (!strncmp(peer, "ipv4:", 5) || !strncmp(peer, "ipv6:", 5)) peer += 5;
    const char *colon = strrchr(peer, ':');
    size_t n = colon && colon != peer ? (size_t)(colon - peer) : strlen(peer);
    if (n >= 2 && peer[0] == '[' && peer[n - 1] == ']') {      /* [::1]:port */
        peer++;
        n -= 2;
    }
    snprintf(host, size, "%.*s", (int)(n < size ? n : size - 1), peer);
}

int rn_auth_check(rn_auth_t *a, grpc_call *call, const grpc_metadata_array *md,
                  char *principal, char *msg)
{
    principal[0] = 0;
    size_t nusers = 0;
    int loaded = refresh(a, &nusers) == 0;
    const char *tok = NULL;
    size_t len = 0;
    int malformed;
    int has = bearer(md, &tok, &len, &malformed) == 0;
    if (!has && cert_cn(call, principal) == 0) return 0;           /* invariant 3 */
    if (!has && loaded && nusers == 0 && !a->require) return 0;
    if (malformed)
        return refuse(call, msg, "malformed authorization metadata: expected 'Bearer TOKEN'");
    if (!has) return refuse(call, msg, "no credentials: give --token or RUNNEL_TOKEN");
    char *peer = grpc_call_get_peer(call);
    int rc = rn_auth_token(a, tok, len, peer, principal);
    gpr_free(peer);
    if (rc == -EAGAIN)
        return refuse(call, msg, "too many failed authentications from this address: tokens "
                      "not verified before are refused for a few seconds; retry later");
    if (rc != 0) return refuse(call, msg, "unknown or wrong token");
    return 0;
}
