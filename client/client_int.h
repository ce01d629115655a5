/*
 * client_int.h — what client.c, producer.c and consumer.c share: the client
 * handle and the unary-call helper. Not installed; users include runnel.h.
 */
#ifndef RN_CLIENT_INT_H
#define RN_CLIENT_INT_H

#include "client/rpc.h"
#include "client/runnel.h"
/* The embedded core, behind the public header. */
#include "batch/batch.h"
#include "etl/etl.h"
#include "log/log.h"
#include "logical-queues/consumer.h"
#include "logical-queues/datadir.h"
#include "logical-queues/group.h"
#include "logical-queues/meta.h"

struct rn_client {
    int           remote;
    rn_datadir_t *d;            /* embedded */
    rn_rpc_t     *rpc;          /* remote */
    uint32_t      timeout_ms;   /* remote admin calls */
    int           reached;      /* remote: a call was answered (client.c invariant 4) */
    char          where[1024];
};

/* A unary call on c (method: RN_RPC_METHOD("Name")); on success *resp is
 * the answer, freed with rn_client_free_msg. */
int  rn_client_call(rn_client_t *c, const char *method, const ProtobufCMessage *req,
                    const ProtobufCMessageDescriptor *desc, ProtobufCMessage **resp,
                    char *errmsg);
void rn_client_free_msg(void *msg);     /* NULL is a no-op */

/* "offset 9 is outside topic 't' queue 0's range [0, 5]" as the core says it. */
int  rn_client_range_error(char *errmsg, const char *topic, uint32_t queue, int64_t offset,
                           int64_t log_start, int64_t high_watermark);

/* Remote ListOffsets: spec 0 earliest, 1 latest, 2 timestamp ts. */
int  rn_client_list_offsets(rn_client_t *c, const char *topic, uint32_t queue, int spec,
                            int64_t ts, int64_t *offset, int64_t *log_start, int64_t *hw,
                            char *errmsg);

#endif
