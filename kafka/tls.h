/*
 * tls.h — TLS for the Kafka front (Kafka's SSL and SASL_SSL) with OpenSSL
 * over memory BIOs: the front's libuv loop moves the ciphertext, this module
 * turns it into plaintext and back, so no socket is touched here.
 *
 * A connection: rn_ktls_new → (rn_ktls_feed ciphertext received;
 * rn_ktls_read plaintext until it returns 0; rn_ktls_write plaintext to
 * send; rn_ktls_take the ciphertext to write, after each of these) →
 * rn_ktls_free. The handshake runs inside rn_ktls_read.
 *
 * Invariants:
 *  1. TLS 1.2 or newer, server side only; renegotiation is off.
 *  2. With a client CA, a client must present a certificate that chains to
 *     it (the handshake fails otherwise); its subject CN is then the
 *     connection's principal (as on gRPC, server/auth.h), and only then.
 *  3. Nothing blocks: the BIOs are memory, and ciphertext waiting to be
 *     sent is handed to the caller whole (rn_ktls_take), so what this
 *     module holds per connection is OpenSSL's state plus at most one read
 *     of ciphertext not yet decrypted.
 *  4. OpenSSL's error queue is emptied after every call, so one
 *     connection's error never shows on another's.
 */
#ifndef RN_KAFKA_TLS_H
#define RN_KAFKA_TLS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct rn_ktls_ctx rn_ktls_ctx_t;
typedef struct rn_ktls rn_ktls_t;

/* The server's context from PEM text (cert chain, unencrypted key, client
 * CAs or NULL): 0 and *out, or a negative code and errmsg. */
int  rn_ktls_ctx_create(const char *cert, const char *key, const char *ca, rn_ktls_ctx_t **out,
                        char *errmsg);
void rn_ktls_ctx_free(rn_ktls_ctx_t *x);
/* Client certificates are required (invariant 2). */
int  rn_ktls_ctx_mtls(const rn_ktls_ctx_t *x);

/* A connection's TLS state; NULL when out of memory. */
rn_ktls_t *rn_ktls_new(rn_ktls_ctx_t *x);
void rn_ktls_free(rn_ktls_t *t);
/* Hand over n bytes of ciphertext received. 0, or -1 (out of memory). */
int  rn_ktls_feed(rn_ktls_t *t, const void *p, size_t n);
/* Plaintext into buf (cap bytes): > 0 bytes read; 0 nothing more for now;
 * -1 the connection failed (the handshake or a record), why says what;
 * -2 the peer ended TLS (close_notify). */
ssize_t rn_ktls_read(rn_ktls_t *t, void *buf, size_t cap, char *why, size_t wn);
/* Encrypt n bytes of plaintext (queued for rn_ktls_take). 0, or -1. */
int  rn_ktls_write(rn_ktls_t *t, const void *p, size_t n);
/* The ciphertext waiting to be sent, malloc'd (the caller frees), *n its
 * size; NULL with *n == 0 when there is none (or out of memory: *n != 0). */
uint8_t *rn_ktls_take(rn_ktls_t *t, size_t *n);
/* The handshake is complete. */
int  rn_ktls_ready(const rn_ktls_t *t);
/* The verified client certificate's subject CN into cn (n bytes): 0, or -1
 * (no verified certificate, no CN, or a CN longer than n - 1). */
int  rn_ktls_peer_cn(rn_ktls_t *t, char *cn, size_t n);

#endif
