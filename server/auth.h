/*
 * auth.h — who is calling: the principal of each gRPC call, from a bearer
 * token checked against the credentials file (client/users.h) or from the
 * client certificate's subject CN under mutual TLS.
 *
 * Authentication is required when the file has a user or when runneld was
 * started with --require-auth; otherwise every call passes as principal "".
 * The Kafka front (kafka/sasl.h) and the metrics endpoint check their
 * clients against the same table through rn_auth_required, rn_auth_user and
 * rn_auth_token.
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

/* Whether a caller must authenticate now: the file holds a user, or
 * --require-auth, or the file never could be read (the file is re-read when
 * it changed). Any thread. */
int  rn_auth_required(rn_auth_t *a);
/* The current line of the user named name (len bytes, not NUL-terminated),
 * copied into *e: 0, or RN_ENOTFOUND. No KDF runs. Any thread. */
int  rn_auth_user(rn_auth_t *a, const char *name, size_t len, rn_user_t *e);
/* Verify the token "NAME.SECRET" (len bytes): 0 and principal (NAME), or
 * -EACCES. A token verified before is answered from the cache; otherwise
 * the KDF runs once (tens of ms), on the caller's thread. Any thread. */
int  rn_auth_token(rn_auth_t *a, const char *tok, size_t len, char *principal);

#endif
