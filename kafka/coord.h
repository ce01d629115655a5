/*
 * coord.h — the Kafka group coordinator (JoinGroup, SyncGroup, Heartbeat,
 * LeaveGroup): its lifecycle as the front sees it.
 */
#ifndef RN_KAFKA_COORD_H
#define RN_KAFKA_COORD_H

#include "kafka/api.h"

struct rn_kcoord;
int  rn_kcoord_open(rn_kctx_t *ctx, struct rn_kcoord **out, char *errmsg);
void rn_kcoord_close(struct rn_kcoord *c);      /* NULL is a no-op */

#endif
