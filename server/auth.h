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

#define RN_AUTH_FAIL_LIMIT 10   /* failed token checks per address within 10 s */

/* path: the credentials file (need not exist yet); require: refuse calls
 * without a principal even when it holds no user; fail_limit: failed token
 * checks per client address within 10 s after which that address's tokens
 * not verified before are refused for 10 s without a key derivation (0: no
 * limit; auth.c invariant 5). 0, or -ENOMEM. */
int  rn_auth_create(const char *path, int require, uint32_t fail_limit, rn_auth_t **out);
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
/* Verify the token "NAME.SECRET" (len bytes) presented by peer (an address
 * as gRPC or the Kafka front write it, "ipv4:H:P", "H:P", "[H]:P"; NULL:
 * unknown): 0 and principal (NAME), or -EACCES. A token verified before is
 * answered from the cache; otherwise the KDF runs once (tens of ms, one at
 * a time in the broker), on the caller's thread, unless the peer's address
 * failed too often lately: then -EAGAIN without a KDF (auth.c invariant
 * 5). Any thread. */
int  rn_auth_token(rn_auth_t *a, const char *tok, size_t len, const char *peer,
                   char *principal);
/* The address part of peer (no port, no "ipv4:" prefix, no brackets). */
void rn_auth_peer_host(const char *peer, char *host, size_t size);

#endif
