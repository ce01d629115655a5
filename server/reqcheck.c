/*
 * reqcheck.c — walk a packed protobuf message along its descriptor and
 * refuse string fields holding a NUL byte (server/reqcheck.h).
 *
 * Invariants:
 *  1. Every read stays inside buf[0..n): each varint, fixed field and
 *     length-delimited payload is bounds-checked before it is read or
 *     skipped; a length that runs past its message is "not a valid message".
 *  2. Only fields the descriptor types as PROTOBUF_C_TYPE_STRING are
 *     searched for NUL; PROTOBUF_C_TYPE_MESSAGE fields (map entries too) are
 *     walked with their own descriptor; every other field, and every field
 *     number the descriptor does not know, is skipped by its wire type.
 *  3. Recursion follows the schema's nesting and stops at
 *     RN_REQCHECK_MAX_DEPTH, so hostile bytes cannot exhaust the stack; no
 *     memory is allocated.
 *  4. The error names the field in words a user knows ("topic name",
 *     "SQL text") and, in parentheses, its path in the request
 *     (CommitOffsetsRequest.offsets[1].topic), and the NUL's 0-based byte
 *     position inside the string.
 */
#include "server/reqcheck.h"

#include <stdio.h>
#include <string.h>

#include "common/error.h"

#define PATH_MAX_LEN 200

typedef struct walk {
    char *errmsg;
    char  path[PATH_MAX_LEN];
} walk_t;

/* A varint at buf[*pos..n): 0 and *v, *pos past it; -1 when cut short or
 * longer than 10 bytes. */
static int varint(const uint8_t *buf, size_t n, size_t *pos, uint64_t *v)
{
    uint64_t x = 0;
    for (unsigned shift = 0; shift < 70; shift += 7) {
        if (*pos >= n) return -1;
        uint8_t b = buf[(*pos)++];
        x |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = x;
            return 0;
        }
    }
    return -1;
}

/* What users call a string field: the field's name, read in its message. */
static const char *field_words(const ProtobufCMessageDescriptor *d, const char *field)
{
    static const struct { const char *field, *words; } fixed[] = {
        {"topic", "topic name"},           {"group", "group name"},
        {"groups", "group name"},          {"checkpoint", "checkpoint name"},
        {"sql", "SQL text"},               {"store_path", "store path"},
        {"path", "store path"},            {"from", "start position"},
    };
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        if (strcmp(field, fixed[i].field) == 0) return fixed[i].words;
    if (strcmp(field, "name") == 0) {
        const char *m = d->short_name;
        if (strstr(m, "Checkpoint")) return "checkpoint name";
        if (strstr(m, "Pipeline")) return "pipeline name";
        if (strstr(m, "Topic")) return "topic name";
        return "name";
    }
    return field;
}

static int invalid(walk_t *w, const char *why)
{
    return rn_errf(w->errmsg, RN_EINVAL, "not a valid message (%s)", why);
}

static int walk_msg(walk_t *w, const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t n,
                    unsigned depth)
{
    if (depth >= RN_REQCHECK_MAX_DEPTH)
        return rn_errf(w->errmsg, RN_EINVAL, "request nests deeper than %d messages",
                       RN_REQCHECK_MAX_DEPTH);
    size_t plen = strlen(w->path);
    /* Occurrences so far of each field of d, to name repeated ones [i]. */
    unsigned seen[64] = {0};
    size_t pos = 0;
    while (pos < n) {
        uint64_t tag, len;
        if (varint(buf, n, &pos, &tag) != 0) return invalid(w, "truncated tag");
        uint32_t wt = (uint32_t)(tag & 7);
        uint64_t num = tag >> 3;
        switch (wt) {
        case 0:
            if (varint(buf, n, &pos, &len) != 0) return invalid(w, "truncated varint");
            continue;
        case 1:
            if (n - pos < 8) return invalid(w, "truncated fixed64");
            pos += 8;
            continue;
        case 5:
            if (n - pos < 4) return invalid(w, "truncated fixed32");
            pos += 4;
            continue;
        case 2:
            break;
        default:
            return invalid(w, "unsupported wire type");
        }
        if (varint(buf, n, &pos, &len) != 0 || len > n - pos)
            return invalid(w, "length past the end");
        const uint8_t *p = buf + pos;
        pos += (size_t)len;
        const ProtobufCFieldDescriptor *f =
            num <= UINT32_MAX ? protobuf_c_message_descriptor_get_field(d, (unsigned)num) : NULL;
        if (!f) continue;
        size_t fi = (size_t)(f - d->fields);
        unsigned idx = fi < 64 ? seen[fi]++ : 0;
        if (f->type != PROTOBUF_C_TYPE_STRING && f->type != PROTOBUF_C_TYPE_MESSAGE) continue;
        if (plen) snprintf(w->path + plen, sizeof w->path - plen, ".");
        size_t at = strlen(w->path);
        if (f->label == PROTOBUF_C_LABEL_REPEATED)
            snprintf(w->path + at, sizeof w->path - at, "%s[%u]", f->name, idx);
        else
            snprintf(w->path + at, sizeof w->path - at, "%s", f->name);
        if (f->type == PROTOBUF_C_TYPE_STRING) {
            const uint8_t *z = memchr(p, 0, (size_t)len);
            if (z)
                return rn_errf(w->errmsg, RN_EINVAL,
                               "%s contains a NUL byte at position %zu (%s)",
                               field_words(d, f->name), (size_t)(z - p), w->path);
        } else {
            int rc = walk_msg(w, f->descriptor, p, (size_t)len, depth + 1);
            if (rc != 0) return rc;
        }
        w->path[plen] = '\0';
    }
    return 0;
}

int rn_reqcheck_strings(const ProtobufCMessageDescriptor *desc, const uint8_t *buf, size_t n,
                        char *errmsg)
{
    walk_t w = {errmsg, ""};
    snprintf(w.path, sizeof w.path, "%s", desc->short_name);
    return walk_msg(&w, desc, buf, n, 0);
}
