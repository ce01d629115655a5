/*
 * mkcorpus_recovery.c — writes the seed corpus of fuzz_recovery: real stores
 * made by log/ (clean, crashed, empty, with LZ4 batches), packed in the
 * target's input format (see fuzz_recovery.c), plus damaged variants of each.
 * Not part of `make test`; run by hand when the format changes:
 *
 *   make build/librunnel-core.a
 *   cc -std=c11 -D_GNU_SOURCE -I. -o /tmp/mkcorpus tests/fuzz/mkcorpus_recovery.c \
 *      build/librunnel-core.a -lsqlite3 -llz4 -lpthread -lm
 *   /tmp/mkcorpus tests/fuzz/corpus/recovery
 *
 * Invariants:
 *  1. Every seed is a store the code itself wrote (or that store with one
 *     named, deliberate damage), so fuzzing starts from realistic states.
 *  2. Seeds stay small: segments and index files are packed without their
 *     zero tails (the format's padding bits restore them).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "batch/batch.h"
#include "common/error.h"
#include "log/log.h"

#define SEG_BYTES 2048u
#define MAX_BATCH 1024u
#define IDX_UNITS 8u
#define MAX_CHUNKS 64

typedef struct chunk {
    uint8_t kind, arg;
    uint8_t *p;
    size_t n;
} chunk_t;

typedef struct packed {
    chunk_t c[MAX_CHUNKS];
    int n;
} packed_t;

static void die(const char *what)
{
    fprintf(stderr, "mkcorpus_recovery: %s\n", what);
    exit(1);
}

static uint8_t *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) die(path);
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(sz > 0 ? (size_t)sz : 1);
    if (!b || fread(b, 1, (size_t)sz, f) != (size_t)sz) die(path);
    fclose(f);
    *n = (size_t)sz;
    return b;
}

static void add(packed_t *pk, uint8_t kind, uint8_t arg, uint8_t *p, size_t n)
{
    if (pk->n == MAX_CHUNKS) die("too many chunks");
    if (n > 65535) die("file too large for a chunk");
    pk->c[pk->n++] = (chunk_t){kind, arg, p, n};
}

/* Trailing zeros go (the padding bit restores them). */
static size_t trim(const uint8_t *p, size_t n)
{
    while (n > 0 && p[n - 1] == 0) n--;
    return n;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int list(const char *dir, char **names, int cap)
{
    DIR *d = opendir(dir);
    int n = 0;
    if (!d) return 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < cap)
        if (e->d_name[0] != '.') names[n++] = strdup(e->d_name);
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, by_name);
    return n;
}

static void pack(const char *dir, packed_t *pk)
{
    char path[PATH_MAX + 64], sub[PATH_MAX - 64];
    char *names[64];
    memset(pk, 0, sizeof *pk);
    snprintf(sub, sizeof sub, "%s/commitlog", dir);
    int n = list(sub, names, 64);
    for (int i = 0; i < n; i++) {
        size_t len;
        snprintf(path, sizeof path, "%s/%s", sub, names[i]);
        uint8_t *b = slurp(path, &len);
        if (len != SEG_BYTES) die("unexpected segment size");
        add(pk, 0, 1, b, trim(b, len));
        free(names[i]);
    }
    for (uint32_t q = 0; q < 4; q++) {
        snprintf(sub, sizeof sub, "%s/index/%010u", dir, q);
        n = list(sub, names, 64);
        for (int i = 0; i < n; i++) {
            size_t len;
            snprintf(path, sizeof path, "%s/%s", sub, names[i]);
            uint8_t *b = slurp(path, &len);
            add(pk, 1, (uint8_t)(q | 8), b, trim(b, len));
            free(names[i]);
        }
    }
    const char *meta[2] = {"checkpoint", "clean"};
    for (int k = 0; k < 2; k++) {
        snprintf(path, sizeof path, "%s/%s", dir, meta[k]);
        if (access(path, F_OK) != 0) continue;
        size_t len;
        uint8_t *b = slurp(path, &len);
        add(pk, (uint8_t)(2 + k), 0, b, len);
    }
}

static void emit(const char *out, const char *name, const packed_t *pk)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", out, name);
    FILE *f = fopen(path, "wb");
    if (!f) die(path);
    for (int i = 0; i < pk->n; i++) {
        const chunk_t *c = &pk->c[i];
        uint8_t h[4] = {c->kind, c->arg, (uint8_t)c->n, (uint8_t)(c->n >> 8)};
        fwrite(h, 1, 4, f);
        fwrite(c->p, 1, c->n, f);
    }
    fclose(f);
}

static packed_t copy(const packed_t *pk)
{
    packed_t c = *pk;
    for (int i = 0; i < c.n; i++) {
        c.c[i].p = malloc(c.c[i].n ? c.c[i].n : 1);
        memcpy(c.c[i].p, pk->c[i].p, c.c[i].n);
    }
    return c;
}

static void drop(packed_t *pk, int i)
{
    free(pk->c[i].p);
    memmove(pk->c + i, pk->c + i + 1, (size_t)(pk->n - i - 1) * sizeof *pk->c);
    pk->n--;
}

static int find(const packed_t *pk, uint8_t kind, int last)
{
    int at = -1;
    for (int i = 0; i < pk->n; i++)
        if (pk->c[i].kind == kind) { at = i; if (!last) break; }
    return at;
}

static void release(packed_t *pk)
{
    for (int i = 0; i < pk->n; i++) free(pk->c[i].p);
    pk->n = 0;
}

/* ---- making real stores ----------------------------------------------------- */

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st; (void)flag; (void)f;
    return remove(p);
}

static void opts(rn_log_opts_t *o)
{
    rn_log_opts_default(o);
    o->fsync = RN_FSYNC_ALWAYS;
    o->segment_bytes = SEG_BYTES;
    o->max_batch_bytes = MAX_BATCH;
    o->index_file_units = IDX_UNITS;
}

static void fill(rn_log_t *log, int nb, int codec)
{
    int64_t next[4] = {0};
    for (int i = 0; i < nb; i++) {
        uint32_t q = (uint32_t)(i % 3);
        rn_batch_opts_t bo;
        rn_batch_builder_t b;
        rn_batch_opts_default(&bo);
        bo.codec = codec;
        if (rn_batch_builder_init(&b, &bo) != 0) die("builder");
        int n = i % 4 + 1;
        for (int k = 0; k < n; k++) {
            char val[64], key[16];
            int vl = snprintf(val, sizeof val, "q%u-o%lld-value-value", q, (long long)(next[q] + k));
            int kl = snprintf(key, sizeof key, "k%d", k);
            rn_record_t r = {0};
            r.timestamp = 1700000000000 + i * 10 + k;
            r.key = (const uint8_t *)key;
            r.key_len = (k & 1) ? kl : -1;
            r.value = (const uint8_t *)val;
            r.value_len = vl;
            if (rn_batch_builder_add(&b, &r) != 0) die("add");
        }
        const uint8_t *out;
        size_t len;
        if (rn_batch_builder_finish(&b, &out, &len) != 0) die("finish");
        int64_t base;
        uint64_t ticket;
        char err[RN_ERRMSG_SIZE];
        if (rn_log_append(log, q, out, len, &base, &ticket, err) != 0) die(err);
        next[q] += n;
        rn_batch_builder_destroy(&b);
    }
}

/* A store with nb batches; crashed = the writer dies without closing. */
static void make_store(const char *dir, int nb, int codec, int crashed)
{
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    rn_log_opts_t o;
    opts(&o);
    pid_t pid = crashed ? fork() : 0;
    if (pid < 0) die("fork");
    if (pid == 0) {
        rn_log_t *log;
        char err[RN_ERRMSG_SIZE];
        if (rn_log_open(dir, &o, &log, err) != 0) die(err);
        fill(log, nb, codec);
        if (crashed) {
            uint32_t dropped;
            rn_log_retain(log, &dropped);    /* the last roll's checkpoint is on disk */
            _exit(0);
        }
        if (rn_log_close(log) != 0) die("close");
        return;
    }
    int st;
    waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) die("writer child");
}

int main(int argc, char **argv)
{
    if (argc != 2) die("usage: mkcorpus_recovery OUTDIR");
    const char *out = argv[1];
    char dir[] = "/tmp/rn-mkcorpus-XXXXXX";
    if (!mkdtemp(dir)) die("mkdtemp");
    char store[PATH_MAX];
    snprintf(store, sizeof store, "%s/s", dir);
    packed_t pk, v;

    make_store(store, 0, RN_BATCH_CODEC_NONE, 0);
    pack(store, &pk);
    emit(out, "seed-empty-clean", &pk);
    release(&pk);

    make_store(store, 10, RN_BATCH_CODEC_LZ4, 0);
    pack(store, &pk);
    emit(out, "seed-lz4-clean", &pk);
    release(&pk);

    const char *base_names[2] = {"clean", "crashed"};
    for (int crashed = 0; crashed < 2; crashed++) {
        char name[96];
        make_store(store, 30, RN_BATCH_CODEC_NONE, crashed);
        pack(store, &pk);
        snprintf(name, sizeof name, "seed-%s", base_names[crashed]);
        emit(out, name, &pk);
        int last_seg = find(&pk, 0, 1), first_idx = find(&pk, 1, 0);

#define VARIANT(tag, body)                                                   \
        do {                                                                 \
            v = copy(&pk);                                                   \
            body;                                                            \
            snprintf(name, sizeof name, "seed-%s-%s", base_names[crashed], tag); \
            emit(out, name, &v);                                             \
            release(&v);                                                     \
        } while (0)

        VARIANT("no-checkpoint", { int i = find(&v, 2, 0); if (i >= 0) drop(&v, i); });
        VARIANT("checkpoint-bad-crc", { int i = find(&v, 2, 0); if (i >= 0) v.c[i].p[v.c[i].n - 1] ^= 1; });
        VARIANT("no-clean-marker", { int i = find(&v, 3, 0); if (i >= 0) drop(&v, i); });
        VARIANT("clean-marker-wrong-end", { int i = find(&v, 3, 0); if (i >= 0) v.c[i].p[8] ^= 0x10; });
        VARIANT("last-entry-flipped", { chunk_t *c = &v.c[last_seg]; if (c->n > 40) c->p[c->n - 20] ^= 0x40; });
        VARIANT("torn-tail", { chunk_t *c = &v.c[last_seg]; if (c->n > 30) c->n -= 25; });
        /* Damage with intact entries after it: stepped over, marked damaged. */
        VARIANT("mid-entry-flipped", { chunk_t *c = &v.c[last_seg]; if (c->n > 400) c->p[c->n / 2] ^= 0x40; });
        VARIANT("mid-header-flipped", { chunk_t *c = &v.c[0]; if (c->n > 2) c->p[1] ^= 0x01; });
        VARIANT("garbage-tail", {
            chunk_t *c = &v.c[last_seg];
            uint8_t *g = realloc(c->p, c->n + 64);
            for (int k = 0; k < 64; k++) g[c->n + (size_t)k] = (uint8_t)(k * 37 + 11);
            c->p = g;
            c->n += 64;
        });
        VARIANT("entry-queue-changed", { v.c[0].p[4] ^= 2; });
        VARIANT("middle-segment-missing", { if (last_seg > 1) drop(&v, 1); });
        VARIANT("segment-gap", { if (last_seg > 0) v.c[last_seg].arg |= 2; });
        VARIANT("index-dropped", { for (int i = v.n - 1; i >= 0; i--) if (v.c[i].kind == 1 && (v.c[i].arg & 3) == 1) drop(&v, i); });
        VARIANT("index-unit-zeroed", { if (first_idx >= 0 && v.c[first_idx].n >= 96) memset(v.c[first_idx].p + 48, 0, 48); });
        VARIANT("index-unit-flipped", { if (first_idx >= 0 && v.c[first_idx].n >= 96) v.c[first_idx].p[60] ^= 1; });
        VARIANT("index-name-mismatch", { int i = find(&v, 1, 1); if (i >= 0) v.c[i].arg |= 4; });
        VARIANT("index-truncated", { int i = find(&v, 1, 1); if (i >= 0 && v.c[i].n > 70) { v.c[i].n = 70; v.c[i].arg &= (uint8_t)~8; } });
#undef VARIANT
        release(&pk);
    }
    /* A store whose index already marks a damaged batch (RN_IDX_DAMAGED):
     * crashed, a record byte of an entry mid-way through the last segment
     * flipped, reopened (recovery marks it) and closed. */
    {
        make_store(store, 30, RN_BATCH_CODEC_NONE, 1);
        char path[PATH_MAX * 2 + 32], cl[PATH_MAX + 16];
        snprintf(cl, sizeof cl, "%s/commitlog", store);
        char *names[64];
        int nn = list(cl, names, 64);
        if (nn > 0) {
            snprintf(path, sizeof path, "%s/%s", cl, names[nn - 1]);
            size_t n;
            uint8_t *b = slurp(path, &n);
            size_t at = 0, second = 0;
            for (int k = 0; k < 2 && at + 16 <= n; k++) {
                uint32_t len = (uint32_t)b[at] | (uint32_t)b[at + 1] << 8 |
                               (uint32_t)b[at + 2] << 16 | (uint32_t)b[at + 3] << 24;
                if (len == 0) break;
                if (k == 1) second = at;
                at += 16 + len;
            }
            free(b);
            if (second > 0) {
                int fd = open(path, O_RDWR);
                uint8_t x;
                if (fd < 0 || pread(fd, &x, 1, (off_t)(second + 40)) != 1) die("read segment");
                x ^= 0x10;
                if (pwrite(fd, &x, 1, (off_t)(second + 40)) != 1) die("write segment");
                close(fd);
            }
            for (int k = 0; k < nn; k++) free(names[k]);
        }
        rn_log_opts_t o;
        opts(&o);
        rn_log_t *log;
        char err[RN_ERRMSG_SIZE];
        if (rn_log_open(store, &o, &log, err) != 0) die(err);
        if (rn_log_close(log) != 0) die("close");
        pack(store, &pk);
        emit(out, "seed-damaged-marked", &pk);
        release(&pk);
    }
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}
