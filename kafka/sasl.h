/*
 * sasl.h — SASL on the Kafka front: SaslHandshake (17) and SaslAuthenticate
 * (36), mechanisms PLAIN (RFC 4616) and SCRAM-SHA-256 (RFC 5802, 7677),
 * against the principals of the credentials file (client/users.h,
 * server/auth.h).
 *
 * Credentials: a runnel token is "NAME.SECRET"; the Kafka username is NAME
 * and the password is SECRET. The file stores PBKDF2-HMAC-SHA256(SECRET,
 * salt, iterations), which is SCRAM's SaltedPassword for that password, so
 * SCRAM's StoredKey and ServerKey derive from the stored line without any
 * KDF on the broker.
 *
 * Per connection (rn_ksasl_t, owned by the front's connection):
 *   NONE --SaslHandshake--> MECH --(PLAIN token ok)--> DONE
 *                           MECH --(SCRAM client-first)--> SCRAM1 --(client-final ok)--> DONE
 *   any wrong step, wrong password or unknown user --> FAILED (the
 *   connection is closed after the error response, with a log line).
 * A handshake v0 makes the next frames raw SASL tokens (no request header,
 * answered by a size-prefixed raw token, rn_ksasl_raw) until DONE; a
 * handshake v1 expects SaslAuthenticate requests.
 *
 * Invariants:
 *  1. PLAIN is offered and accepted only on a TLS connection (s->tls): its
 *     password crosses the wire as it is. SCRAM is offered on both.
 *  2. Bounded work per attempt: a PLAIN token is verified by rn_auth_token
 *     (the KDF once per distinct token, on the front's waiter thread, cached
 *     after success); a SCRAM exchange costs three HMAC/SHA-256 runs per
 *     message, never a KDF. A token is at most RN_KSASL_MAX_TOKEN bytes.
 *  3. An unknown user gets a SCRAM exchange indistinguishable from a known
 *     one's (a salt derived from the name and a per-process key, the usual
 *     iteration count) and fails at the proof, so names cannot be probed.
 *  4. The principal is set only in state DONE; the front copies it into
 *     each later request (rn_kreq_t.principal).
 */
#ifndef RN_KAFKA_SASL_H
#define RN_KAFKA_SASL_H

#include <stdint.h>

#include "client/users.h"
#include "kafka/api.h"

#define RN_KSASL_MAX_TOKEN 1024

enum { RN_KSASL_NONE, RN_KSASL_MECH, RN_KSASL_SCRAM1, RN_KSASL_DONE, RN_KSASL_FAILED };
enum { RN_KSASL_PLAIN = 1, RN_KSASL_SCRAM = 2 };

typedef struct rn_ksasl {
    int     state;
    int     mech;
    int     raw;            /* handshake v0: tokens come as raw frames */
    int     tls;            /* the connection is TLS (invariant 1) */
    char    principal[RN_USER_NAME_MAX + 1];   /* DONE: who */
    char    why[200];       /* FAILED: logged when the connection closes */
    /* SCRAM between client-first and client-final */
    char    gs2[80];        /* the client's GS2 header, for c= */
    char    nonce[128];     /* client nonce + server nonce */
    int     cnonce_len;     /* the client's part of nonce */
    char    msg[700];       /* client-first-bare "," server-first */
    uint8_t stored_key[32], server_key[32];
} rn_ksasl_t;

/* The connection's SASL state of request q (kafka/front.c; the fuzz stub
 * has its own). */
rn_ksasl_t *rn_kreq_sasl(rn_kreq_t *q);

int rn_kh_sasl_handshake(rn_kreq_t *q);
int rn_kh_sasl_authenticate(rn_kreq_t *q);
/* A raw token frame after a handshake v0: q->frame is the token; the
 * response body is the server's raw token (the front sends it with its size
 * only). RN_KH_DONE / RN_KH_LATER, or RN_KH_BAD on failure (Kafka closes
 * the connection without an answer there). */
int rn_ksasl_raw(rn_kreq_t *q);

#endif
