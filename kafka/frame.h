/*
 * frame.h — Kafka's size-prefixed frames and the request header, apart from
 * the sockets that carry them, so the front (kafka/front.c) and the fuzz
 * targets (tests/fuzz/fuzz_kafka_*.c) run the same code.
 *
 * A frame is an INT32 size then that many bytes; a request frame starts
 * with the request header: api_key INT16, api_version INT16,
 * correlation_id INT32, client_id NULLABLE_STRING (never compact), then,
 * for a flexible version (request header v2), a tagged-field section.
 *
 * Invariants:
 *  1. rn_kframer_take allocates a frame only after its size was checked
 *     against the limit (RN_KFRAME_MIN..max), so no input makes it hold more
 *     than one frame of at most max bytes.
 *  2. It never reads or writes outside the bytes given and the frame being
 *     assembled; a frame is handed over only when whole.
 *  3. rn_kreq_header refuses an unknown key and a version outside the API
 *     table (except ApiVersions, which answers any version itself, KIP-511),
 *     and leaves q->in over exactly the body and q->w ready, with q->flex
 *     from the table.
 */
#ifndef RN_KAFKA_FRAME_H
#define RN_KAFKA_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "kafka/api.h"

/* The smallest frame holding a request header (key, version, correlation id). */
#define RN_KFRAME_MIN 8

typedef struct rn_kframer {
    uint8_t  size[4];
    uint32_t size_have;
    uint8_t *frame;              /* the frame being assembled (malloc'd) */
    uint32_t frame_len, frame_have;
} rn_kframer_t;

enum { RN_KF_MORE = 0, RN_KF_FRAME = 1, RN_KF_BAD = -1 };

/* Take bytes from p[0..n) into fr; *used gets how many were taken.
 * RN_KF_FRAME: a whole frame is in fr->frame (fr->frame_len bytes), which the
 * caller now owns (call rn_kframer_release); RN_KF_MORE: every byte was
 * taken and no frame is whole; RN_KF_BAD: why (n bytes) says what (a size
 * outside RN_KFRAME_MIN..max, or out of memory). */
int  rn_kframer_take(rn_kframer_t *fr, uint32_t max, const uint8_t *p, size_t n, size_t *used,
                     char *why, size_t wn);
/* Hand over the whole frame (ownership to the caller) and start the next. */
uint8_t *rn_kframer_release(rn_kframer_t *fr, uint32_t *len);
/* Bytes of a frame (or its size) received and not yet whole. */
static inline int rn_kframer_mid(const rn_kframer_t *fr) { return fr->size_have || fr->frame; }
void rn_kframer_free(rn_kframer_t *fr);

/* Parse q->frame's request header (invariant 3): q->api, version, corr,
 * client_id, flex, q->in over the body and q->w over q->out. 0 with *api
 * set, or -1 with why. */
int  rn_kreq_header(rn_kreq_t *q, const rn_kapi_t **api, char *why, size_t wn);

#endif
