/*
 * frame.c — frames and request headers (frame.h).
 */
#include "kafka/frame.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/bytes.h"

int rn_kframer_take(rn_kframer_t *fr, uint32_t max, const uint8_t *p, size_t n, size_t *used,
                    char *why, size_t wn)
{
    size_t u = 0;
    *used = 0;
    if (!fr->frame) {
        while (fr->size_have < 4 && u < n) fr->size[fr->size_have++] = p[u++];
        *used = u;
        if (fr->size_have < 4) return RN_KF_MORE;
        int32_t len = (int32_t)rn_be32_get(fr->size);
        if (len < RN_KFRAME_MIN || (uint32_t)len > max) {       /* invariant 1 */
            snprintf(why, wn, "a frame of %d bytes is outside the valid %d..%u (runneld "
                     "--kafka-max-frame-bytes)", len, RN_KFRAME_MIN, max);
            return RN_KF_BAD;
        }
        fr->frame = malloc((size_t)len);
        if (!fr->frame) {
            snprintf(why, wn, "out of memory for a %d-byte frame", len);
            return RN_KF_BAD;
        }
        fr->frame_len = (uint32_t)len;
        fr->frame_have = 0;
    }
    size_t k = fr->frame_len - fr->frame_have;
    if (k > n - u) k = n - u;
    if (k) memcpy(fr->frame + fr->frame_have, p + u, k);
    fr->frame_have += (uint32_t)k;
    *used = u + k;
    return fr->frame_have == fr->frame_len ? RN_KF_FRAME : RN_KF_MORE;
}

uint8_t *rn_kframer_release(rn_kframer_t *fr, uint32_t *len)
{
    uint8_t *f = fr->frame;
    *len = fr->frame_len;
    fr->frame = NULL;
    fr->frame_len = fr->frame_have = 0;
    fr->size_have = 0;
    return f;
}

void rn_kframer_free(rn_kframer_t *fr)
{
    free(fr->frame);
    fr->frame = NULL;
    fr->frame_len = fr->frame_have = fr->size_have = 0;
}

int rn_kreq_header(rn_kreq_t *q, const rn_kapi_t **api, char *why, size_t wn)
{
    rn_kr_t h;
    rn_kr_init(&h, q->frame, q->frame_len, 0);
    q->api = rn_kr_i16(&h, "request api_key");
    q->version = rn_kr_i16(&h, "request api_version");
    q->corr = rn_kr_i32(&h, "request correlation_id");
    q->client_id = rn_kr_str(&h, "request client_id");     /* never compact */
    if (h.err) {
        snprintf(why, wn, "a %u-byte frame is too short for a request header (%s)", q->frame_len,
                 h.what);
        return -1;
    }
    const rn_kapi_t *a = rn_kapi_find(q->api);
    if (!a) {
        snprintf(why, wn, "unknown API key %d (this broker answers the keys ApiVersions lists)",
                 q->api);
        return -1;
    }
    /* ApiVersions answers any version itself (an unsupported one with
     * UNSUPPORTED_VERSION in the v0 layout, so the client can downgrade). */
    if (q->api != 18 && (q->version < a->min || q->version > a->max)) {
        snprintf(why, wn, "%s version %d is not supported (versions %d-%d)", a->name, q->version,
                 a->min, a->max);
        return -1;
    }
    q->flex = q->version >= a->flex_min;
    h.flex = q->flex;
    rn_kr_tags(&h);     /* request header v2 */
    if (h.err && q->api == 18 && (q->version < a->min || q->version > a->max)) {
        /* A version newer than ours may change the header: answered in the
         * v0 layout whatever follows (KIP-511). */
        q->flex = 0;
        rn_kr_init(&h, h.end, 0, 0);
    }
    if (h.err) {
        snprintf(why, wn, "%s v%d: the request header's tagged fields do not parse", a->name,
                 q->version);
        return -1;
    }
    rn_kr_init(&q->in, h.p, rn_kr_left(&h), q->flex);
    rn_kw_init(&q->w, &q->out, q->flex);
    *api = a;
    return 0;
}
