/*
 * coord_pending.c — until the group coordinator (coord.c) lands: no groups,
 * nothing to time out. Replaced by coord.c.
 */
#include "kafka/coord.h"

int rn_kcoord_open(rn_kctx_t *ctx, struct rn_kcoord **out, char *errmsg)
{
    *out = NULL;
    return 0;
}

void rn_kcoord_close(struct rn_kcoord *c) {}

void rn_kgroup_tick(rn_kctx_t *ctx, int64_t now_ms) {}
