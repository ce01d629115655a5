/*
 * auth.h — who is calling: the principal of each gRPC call, from a bearer
 * token checked against the credentials file (client/users.h) or from the
 * client certificate's subject CN under mutual TLS.
 *
 * Authentication is required when the file has a user or when runneld was
 * started with --require-auth; otherwise every call passes as principal "".
 */
#ifndef RN_AUTH_H
#define RN_AUTH_H

#include "client/users.h"

#include <grpc/grpc.h>

typedef struct rn_auth rn_auth_t;

/* path: the credentials file (need not exist yet); require: refuse calls
 * without a principal even when it holds no user. 0, or -ENOMEM. */
int  rn_auth_create(const char *path, int require, rn_auth_t **out);
void rn_auth_destroy(rn_auth_t *a);

/* The principal of call (its request metadata md): 0 and principal
 * (RN_USER_NAME_MAX+1 bytes, "" when authentication is off), or -EACCES and
 * msg (at least 256 bytes) saying why: answer UNAUTHENTICATED. */
int  rn_auth_check(rn_auth_t *a, grpc_call *call, const grpc_metadata_array *md,
                   char *principal, char *msg);

#endif
