/*
 * fuzz_acl.c — libFuzzer target for logical-queues/acl.h: the words of an
 * entry (as `runnel acl add` or an AddAcl request hands them over) and a
 * question asked of it. The input is split at '\n' into principal, resource
 * type, name, operation, then the question's principal and name; the first
 * byte's low bit is the prefix flag, the next bits the question's resource
 * type; the question is asked for every operation. Then:
 *  1. rn_acl_entry_make either refuses with RN_EINVAL and a message, or
 *     accepts an entry whose text form round-trips through
 *     rn_acl_entry_to_meta / rn_acl_entry_from_meta unchanged;
 *  2. with that one entry (and no super user), rn_acl_allowed agrees with
 *     an oracle written here from acl.h's rules;
 *  3. a refusal's message (rn_acl_check) is one line of printable bytes,
 *     whatever the question's name holds.
 * Any violation calls abort().
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "logical-queues/acl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NWORDS 6

/* Invariant 2's oracle: acl.h's rule 3 for one entry. */
static int oracle(const rn_acl_entry_t *e, const char *p, rn_acl_res_t res, const char *name,
                  rn_acl_op_t op)
{
    const char *who = p[0] ? p : "anonymous";
    if (e->res != res) return 0;
    if (strcmp(e->principal, "*") != 0 && strcmp(e->principal, who) != 0) return 0;
    int op_ok = e->op == op || e->op == RN_ACL_ALL ||
                (op == RN_ACL_DESCRIBE && e->op != RN_ACL_QUERY && e->op != RN_ACL_PIPELINE_OP);
    if (!op_ok) return 0;
    if (res == RN_ACL_CLUSTER) return 1;
    if (e->prefix) {
        size_t n = strlen(e->name);
        return strlen(name) >= n && memcmp(name, e->name, n) == 0;
    }
    return strcmp(e->name, "*") == 0 || strcmp(e->name, name) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 4096) return 0;
    uint8_t flags = data[0];
    char *buf = malloc(size);
    if (!buf) abort();
    memcpy(buf, data + 1, size - 1);
    buf[size - 1] = 0;
    char *w[NWORDS];
    char *at = buf;
    for (int i = 0; i < NWORDS; i++) {
        w[i] = at;
        char *nl = at ? strchr(at, '\n') : NULL;
        if (nl) { *nl = 0; at = nl + 1; } else { at = at + strlen(at); }
    }
    rn_acl_entry_t e;
    char err[RN_ERRMSG_SIZE] = "";
    int rc = rn_acl_entry_make(w[0], w[1], w[2], flags & 1, w[3], &e, err);
    if (rc != 0) {                                   /* invariant 1 */
        if (rc != RN_EINVAL || !err[0]) abort();
        free(buf);
        return 0;
    }
    rn_meta_acl_t m;
    rn_acl_entry_t back;
    rn_acl_entry_to_meta(&e, &m);
    if (rn_acl_entry_from_meta(&m, &back, err) != 0 || memcmp(&e, &back, sizeof e) != 0)
        abort();
    rn_acl_t *a = NULL;
    if (rn_acl_create(NULL, 0, &a, err) != 0 || rn_acl_set(a, &e, 1, err) != 0) abort();
    rn_acl_res_t qres = (rn_acl_res_t)((flags >> 1) % RN_ACL_NRES);
    for (int op = 0; op < RN_ACL_NOPS; op++) {         /* invariant 2 */
        int got = rn_acl_allowed(a, w[4], qres, w[5], (rn_acl_op_t)op, 0);
        if (got != oracle(&e, w[4], qres, w[5], (rn_acl_op_t)op)) abort();
        char msg[RN_ERRMSG_SIZE];
        rc = rn_acl_check(a, w[4], qres, w[5], (rn_acl_op_t)op, 0, msg, sizeof msg);
        if ((rc == 0) != got) abort();
        for (const char *c = msg; rc != 0 && *c; c++)  /* invariant 3 */
            if ((unsigned char)*c < 0x20 || *c == 0x7f) abort();
    }
    rn_acl_destroy(a);
    free(buf);
    return 0;
}
