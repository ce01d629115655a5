/*
 * tests/util/util.h — helpers shared by the cmocka tests (tests/util/util.c):
 * temporary directories, the real system calls back, seeded randomness,
 * files and child processes, a real runneld, and batches of numbered text
 * records. Linked into every test binary.
 */
#ifndef RN_TEST_UTIL_H
#define RN_TEST_UTIL_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "batch/batch.h"

/* ---- temporary directories ---------------------------------------------- */

/* mkdtemp "/tmp/rn-<tag>-XXXXXX" into out (cap bytes). 0, or -1 with a
 * message on stderr (for fixture set-ups, which return -1). */
int rn_test_tmpdir(char *out, size_t cap, const char *tag);

/* The same, malloc'd; a failure fails the test. Free with
 * rn_test_tmpdir_free. */
char *rn_test_tmpdir_new(const char *tag);

/* Remove the tree at root, depth first, never following a symlink (a link
 * is removed, not what it points to; no other file system is entered). A
 * missing root is success, as with rm -rf. 0, or -1 after trying every
 * entry, each failure named on stderr. */
int rn_test_rmtree(const char *root);

/* rn_test_rmtree(d) then free(d); NULL is a no-op returning 0. */
int rn_test_tmpdir_free(char *d);

/* A cmocka set-up: restore the real system calls (rn_sys_reset), so every
 * test starts with them even after one that injected faults. Returns 0. */
int rn_test_reset_sys(void **state);

/* ---- seeded randomness -------------------------------------------------- */

/* The seed: RN_SEED when set, else from the clock; never 0. Printed as
 * "<name>: seed N (RN_SEED=N to replay)" on stdout. */
uint64_t rn_test_seed(const char *name);

/* xorshift64*: the next value; *state must not be 0. */
uint64_t rn_test_rng(uint64_t *state);

/* ---- files and child processes ------------------------------------------ */

/* The whole file, NUL-terminated, length in *len (when len is not NULL).
 * The caller frees it. A failure fails the test. */
char *rn_test_slurp(const char *path, size_t *len);

/* Create or truncate path with n bytes of data. A failure fails the test. */
void rn_test_write_file(const char *path, const void *data, size_t n);

/* Run prog with argv (NULL-terminated, argv[0] included), stdin from in_path
 * (NULL: /dev/null), stdout and stderr into out_path and err_path (created
 * or truncated), and wait for it. Its wait status (see WIFEXITED), or -1
 * with a message on stderr when it could not be forked or waited for. In the
 * child, an unopenable file exits 126 and a failed exec 127. */
int rn_test_run(const char *prog, const char *const *argv, const char *in_path,
                const char *out_path, const char *err_path);

/* Sleep ms milliseconds (nanosleep; an interrupted sleep is cut short). */
void rn_test_sleep_ms(int ms);

/* Make test certificates in dir with the `openssl` command: ca (CA "runnel
 * test CA"), ca2 ("another CA"); srv (from ca, CN localhost, subjectAltName
 * IP:127.0.0.1 and DNS:localhost), other (from ca, DNS:other.example only),
 * cli (client certificate from ca, CN client1), cli2 (from ca2, CN client2),
 * each as NAME.pem and NAME.key; and bad files garbage.pem, empty.pem and
 * cut.pem (the first 200 bytes of srv.pem). 0, or -1 with a message on
 * stderr (openssl's output is in dir/openssl.log). */
int rn_test_make_certs(const char *dir);

/* ---- a real runneld ----------------------------------------------------- */

/* RN_BIN_DIR/runneld on a free loopback port (--listen 127.0.0.1:0
 * --port-file FILE: the file appears once calls are accepted), stopped with
 * SIGTERM, which must end it with status 0. Every wait is bounded. */
typedef struct rn_test_runneld {
    pid_t pid;
    char  data[PATH_MAX];
    char  portfile[PATH_MAX + 16];
    char  log[PATH_MAX + 16];
    char  addr[64];                 /* "127.0.0.1:PORT" */
} rn_test_runneld_t;

/* Start runneld on data (created when absent; --store-root: data's parent
 * directory), its log "<data>.runneld.log"
 * beside it; fsync NULL = the broker's default. 0, or -1 with a message on
 * stderr (at most 10 s). */
int rn_test_runneld_start(rn_test_runneld_t *r, const char *data, const char *fsync);
/* The same with more flags (extra, NULL-terminated; the --listen, --data,
 * --port-file, --store-root and --allow-root above come first): 0 when it
 * listens; 1 when it exited first, its status (or 128 + signal) in
 * *exited, its log at r->log; -1 otherwise, with a message on stderr. */
int rn_test_runneld_start_args(rn_test_runneld_t *r, const char *data,
                               const char *const *extra, int *exited);

/* SIGTERM and wait (at most 20 s, then SIGKILL): its exit status, or -1 when
 * it was not running, died of a signal or had to be killed. */
int rn_test_runneld_stop(rn_test_runneld_t *r);

/* ---- batches of numbered text records ----------------------------------- */

/* Record i (0 <= i < n) of a batch: no key; value
 * "<prefix><first + i><suffix>" then 'x' up to pad bytes (values are capped
 * at 511 bytes); timestamp ts[i] when ts is not NULL, else ts0 + i * ts_step;
 * when header_key is not NULL, one header header_key = "<first + i>". */
typedef struct rn_test_records {
    const char    *prefix;          /* NULL = "" */
    const char    *suffix;          /* NULL = "" */
    int64_t        first;
    int            n;
    const int64_t *ts;
    int64_t        ts0, ts_step;
    size_t         pad;
    const char    *header_key;
} rn_test_records_t;

/* Initialise b with the default batch options and build the batch of spec
 * into it; *out and *len borrow b's buffer until rn_batch_builder_destroy(b),
 * which the caller does. A failure fails the test. */
void rn_test_batch_build(rn_batch_builder_t *b, const rn_test_records_t *spec,
                         const uint8_t **out, size_t *len);

/* Every record of the topic's logical queue q, read embedded from offset 0,
 * as "value[|hkey=hval...]\n" lines in a malloc'd string; *count records.
 * A failure fails the test. */
struct rn_datadir;
char *rn_test_read_queue(struct rn_datadir *d, const char *topic, uint32_t q, size_t *count);

/* A pipeline's output as one malloc'd text: the file (when file is not NULL)
 * or each queue of the sink topic, then each queue of the dead-letter topic,
 * every queue as "== sink|dlq queue Q: N" and its rn_test_read_queue lines. */
char *rn_test_pipeline_output(struct rn_datadir *d, const char *sink, const char *file,
                              const char *dlq);

/* Fork a child that opens the data directory at root (made if missing) and
 * runs pipeline `name` until caught up, then checkpoints; it is SIGKILLed
 * when it reaches the etl test hook `point` for the kill_at-th time ("none"
 * or 0: never). 1 when it was killed, 0 when it finished; anything else
 * fails the test. */
int rn_test_etl_child_run(const char *root, const char *name, const char *point, long kill_at);

#endif
