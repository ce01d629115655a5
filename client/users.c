/*
 * users.c — the credentials file (client/users.h): load, verify, add, remove.
 *
 * Invariants:
 *  1. No token is ever written anywhere: the file holds the salt and the
 *     PBKDF2-HMAC-SHA256 of the token's secret, and add() hands the token to
 *     its caller only.
 *  2. Every change rewrites the whole file through rn_write_file_atomic, so a
 *     reader (runneld) sees the old file or the new one, never a torn one,
 *     and each change is a new inode (runneld's reload check, server/auth.c).
 *  3. Every line read is validated (name, scheme, iteration bounds, hex
 *     lengths) and a bad one refuses the whole file with its line number:
 *     a half-read credentials file would let the wrong people in or out.
 *  4. Secrets compare with CRYPTO_memcmp (constant time).
 *  5. The file is made mode 0600 after each write. (The secrets are 256
 *     random bits, so a stolen hash cannot be reversed by guessing; the mode
 *     keeps the list of names private too.)
 */
#include "client/users.h"

#include "client/runnel.h"
#include "common/error.h"
#include "common/sys.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#define SALT_LEN   16
#define HASH_LEN   32
#define SECRET_LEN 32
#define ITER_MIN   1000
#define ITER_MAX   10000000
#define FILE_MAX   ((size_t)RN_USERS_MAX * 256 + 256)
#define HEADER     "# runnel users v1: NAME pbkdf2-sha256 ITERATIONS SALT(hex) HASH(hex)\n"

typedef rn_user_t user_t;
_Static_assert(sizeof ((user_t *)0)->salt == SALT_LEN && sizeof ((user_t *)0)->hash == HASH_LEN,
               "salt and hash sizes");

struct rn_users {
    user_t *v;
    size_t  n;
};

static int name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > RN_USER_NAME_MAX) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

static int unhex(const char *s, uint8_t *out, size_t n)
{
    if (strlen(s) != 2 * n) return -1;
    for (size_t i = 0; i < 2 * n; i++) {
        char c = s[i];
        int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (v < 0) return -1;
        if (i % 2) out[i / 2] = (uint8_t)(out[i / 2] | v);
        else out[i / 2] = (uint8_t)(v << 4);
    }
    return 0;
}

static void tohex(const uint8_t *p, size_t n, char *out)
{
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) { out[2 * i] = d[p[i] >> 4]; out[2 * i + 1] = d[p[i] & 15]; }
    out[2 * n] = 0;
}

static int kdf(const char *secret, const user_t *u, uint8_t *out)
{
    return PKCS5_PBKDF2_HMAC(secret, (int)strlen(secret), u->salt, SALT_LEN, (int)u->iter,
                             EVP_sha256(), HASH_LEN, out) == 1 ? 0 : -EIO;
}

/* Invariant 3: one line into *u. */
static int parse_line(char *line, user_t *u)
{
    char *save = NULL, *f[6];
    int nf = 0;
    for (char *t = strtok_r(line, " \t", &save); t; t = strtok_r(NULL, " \t", &save)) {
        if (nf == 5) return -1;
        f[nf++] = t;
    }
    if (nf != 5 || !name_ok(f[0]) || strcmp(f[1], "pbkdf2-sha256")) return -1;
    char *end;
    unsigned long it = strtoul(f[2], &end, 10);
    if (*end || it < ITER_MIN || it > ITER_MAX) return -1;
    snprintf(u->name, sizeof u->name, "%s", f[0]);
    u->iter = (uint32_t)it;
    if (unhex(f[3], u->salt, SALT_LEN) || unhex(f[4], u->hash, HASH_LEN)) return -1;
    return 0;
}

int rn_users_load(const char *path, rn_users_t **out, char *errmsg)
{
    *out = NULL;
    uint8_t *buf = NULL;
    size_t n = 0;
    rn_users_t *u = calloc(1, sizeof *u);
    if (!u) return rn_errf(errmsg, -ENOMEM, "out of memory");
    int rc = rn_read_file(path, FILE_MAX, &buf, &n);
    if (rc == -ENOENT) { *out = u; return 0; }
    if (rc != 0) {
        free(u);
        return rn_errf(errmsg, rc, "cannot read the users file %s: %s", path, rn_strerror(rc));
    }
    char *text = realloc(buf, n + 1);
    if (!text) { free(buf); free(u); return rn_errf(errmsg, -ENOMEM, "out of memory"); }
    text[n] = 0;
    if (memchr(text, 0, n)) {
        rc = rn_errf(errmsg, RN_ECORRUPT, "users file %s: holds a NUL byte", path);
        goto fail;
    }
    u->v = calloc(RN_USERS_MAX, sizeof *u->v);
    if (!u->v) { rc = rn_errf(errmsg, -ENOMEM, "out of memory"); goto fail; }
    int lineno = 0;
    char *save = NULL;
    for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        lineno++;
        if (l[0] == '#') continue;
        if (u->n == RN_USERS_MAX) {
            rc = rn_errf(errmsg, RN_ECORRUPT, "users file %s: more than %d users", path,
                         RN_USERS_MAX);
            goto fail;
        }
        if (parse_line(l, &u->v[u->n]) != 0) {
            rc = rn_errf(errmsg, RN_ECORRUPT, "users file %s: line %d is not "
                         "'NAME pbkdf2-sha256 ITERATIONS SALT HASH'", path, lineno);
            goto fail;
        }
        for (size_t i = 0; i < u->n; i++)
            if (!strcmp(u->v[i].name, u->v[u->n].name)) {
                rc = rn_errf(errmsg, RN_ECORRUPT, "users file %s: line %d: user %s twice", path,
                             lineno, u->v[i].name);
                goto fail;
            }
        u->n++;
    }
    free(text);
    *out = u;
    return 0;
fail:
    free(text);
    rn_users_free(u);
    return rc;
}

void rn_users_free(rn_users_t *u)
{
    if (!u) return;
    OPENSSL_cleanse(u->v, u->n * sizeof *u->v);
    free(u->v);
    free(u);
}

size_t rn_users_count(const rn_users_t *u) { return u->n; }
const char *rn_users_name(const rn_users_t *u, size_t i) { return u->v[i].name; }

static const user_t *find(const rn_users_t *u, const char *name, size_t len)
{
    for (size_t i = 0; i < u->n; i++)
        if (strlen(u->v[i].name) == len && !memcmp(u->v[i].name, name, len)) return &u->v[i];
    return NULL;
}

int rn_users_find(const rn_users_t *u, const char *token, rn_user_t *e, const char **secret)
{
    const char *dot = strrchr(token, '.');
    if (!dot || strlen(token) > RN_TOKEN_MAX) return RN_EINVAL;
    const user_t *f = find(u, token, (size_t)(dot - token));
    if (!f) return RN_EINVAL;
    *e = *f;
    *secret = dot + 1;
    return 0;
}

int rn_user_check(const rn_user_t *e, const char *secret)
{
    uint8_t h[HASH_LEN];
    if (kdf(secret, e, h) != 0) return RN_EINVAL;
    int same = CRYPTO_memcmp(h, e->hash, HASH_LEN) == 0;    /* invariant 4 */
    OPENSSL_cleanse(h, sizeof h);
    return same ? 0 : RN_EINVAL;
}

/* Invariant 2: the whole table into dir/file. */
static int save(const char *dir, const char *file, const rn_users_t *u, char *errmsg)
{
    size_t cap = sizeof HEADER + u->n * 256, len = 0;
    char *text = malloc(cap);
    if (!text) return rn_errf(errmsg, -ENOMEM, "out of memory");
    len += (size_t)snprintf(text, cap, "%s", HEADER);
    for (size_t i = 0; i < u->n; i++) {
        char salt[2 * SALT_LEN + 1], hash[2 * HASH_LEN + 1];
        tohex(u->v[i].salt, SALT_LEN, salt);
        tohex(u->v[i].hash, HASH_LEN, hash);
        len += (size_t)snprintf(text + len, cap - len, "%s pbkdf2-sha256 %u %s %s\n",
                                u->v[i].name, (unsigned)u->v[i].iter, salt, hash);
    }
    int rc = rn_write_file_atomic(dir, file, text, len);
    free(text);
    if (rc != 0)
        return rn_errf(errmsg, rc, "cannot write the users file %s/%s: %s", dir, file,
                       rn_strerror(rc));
    /* Invariant 5. */
    char path[4096];
    if (rn_path_buf(path, sizeof path, dir, file) == 0 && chmod(path, 0600) != 0)
        return rn_errf(errmsg, -errno, "cannot make %s readable by its owner only: %s", path,
                       strerror(errno));
    return 0;
}

static int load_in(const char *dir, const char *file, rn_users_t **u, char *errmsg)
{
    char path[4096];
    if (rn_path_buf(path, sizeof path, dir, file) != 0)
        return rn_errf(errmsg, -ENAMETOOLONG, "path too long: %s/%s", dir, file);
    return rn_users_load(path, u, errmsg);
}

static void base64url(const uint8_t *p, size_t n, char *out)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        acc = (acc << 8) | p[i];
        bits += 8;
        while (bits >= 6) { bits -= 6; out[o++] = a[(acc >> bits) & 63]; }
    }
    if (bits) out[o++] = a[(acc << (6 - bits)) & 63];
    out[o] = 0;
}

int rn_users_add(const char *dir, const char *file, const char *name, char *token,
                 char *errmsg)
{
    token[0] = 0;
    if (!name_ok(name))
        return rn_errf(errmsg, RN_EINVAL, "bad user name '%.80s': 1 to %d of A-Z a-z 0-9 _ -",
                       name, RN_USER_NAME_MAX);
    if (!strcmp(name, "anonymous"))        /* the ACLs' name for calls without a principal */
        return rn_errf(errmsg, RN_EINVAL, "bad user name 'anonymous': it names calls without "
                       "a principal in ACLs (runnel acl); choose another");
    rn_users_t *u;
    int rc = load_in(dir, file, &u, errmsg);
    if (rc != 0) return rc;
    if (find(u, name, strlen(name))) {
        rn_users_free(u);
        return rn_errf(errmsg, RN_EINVAL, "user %s exists (remove it first to give a new token)",
                       name);
    }
    if (u->n == RN_USERS_MAX) {
        rn_users_free(u);
        return rn_errf(errmsg, RN_EINVAL, "already %d users", RN_USERS_MAX);
    }
    if (!u->v && !(u->v = calloc(RN_USERS_MAX, sizeof *u->v))) {
        rn_users_free(u);
        return rn_errf(errmsg, -ENOMEM, "out of memory");
    }
    user_t *e = &u->v[u->n];
    uint8_t secret[SECRET_LEN];
    char s64[2 * SECRET_LEN];
    snprintf(e->name, sizeof e->name, "%s", name);
    e->iter = RN_USERS_ITER;
    if (RAND_bytes(secret, SECRET_LEN) != 1 || RAND_bytes(e->salt, SALT_LEN) != 1) {
        rn_users_free(u);
        return rn_errf(errmsg, -EIO, "cannot draw random bytes");
    }
    base64url(secret, SECRET_LEN, s64);
    OPENSSL_cleanse(secret, sizeof secret);
    if (kdf(s64, e, e->hash) != 0) {
        rn_users_free(u);
        return rn_errf(errmsg, -EIO, "PBKDF2 failed");
    }
    u->n++;
    rc = save(dir, file, u, errmsg);
    rn_users_free(u);
    if (rc == 0) snprintf(token, RN_TOKEN_MAX + 1, "%s.%s", name, s64);
    OPENSSL_cleanse(s64, sizeof s64);
    return rc;
}

int rn_users_remove(const char *dir, const char *file, const char *name, char *errmsg)
{
    rn_users_t *u;
    int rc = load_in(dir, file, &u, errmsg);
    if (rc != 0) return rc;
    const user_t *e = find(u, name, strlen(name));
    if (!e) {
        rn_users_free(u);
        return rn_errf(errmsg, -ENOENT, "no user %.80s", name);
    }
    size_t i = (size_t)(e - u->v);
    memmove(&u->v[i], &u->v[i + 1], (u->n - i - 1) * sizeof *u->v);
    u->n--;
    rc = save(dir, file, u, errmsg);
    rn_users_free(u);
    return rc;
}
