/*
 * tls.h — the PEM files of a TLS connection (runneld's --tls-cert, --tls-key,
 * --tls-client-ca; the clients' --tls-ca, --tls-cert, --tls-key), read and
 * checked once, before anything connects or listens.
 *
 * A file is read whole (at most RN_TLS_MAX_FILE bytes) and parsed with
 * OpenSSL's PEM reader: every certificate of a certificate or CA file must
 * parse, a key file must hold a private key, and a key must match the first
 * certificate of its pair. gRPC's SSL credentials take the text as read;
 * checking here turns what would be a failed handshake on every connection
 * into one line at start naming the file and what is wrong with it.
 */
#ifndef RN_TLS_H
#define RN_TLS_H

#include <stddef.h>

#define RN_TLS_MAX_FILE (1u << 20)

/* File names, each NULL when not given. */
typedef struct rn_tls_files {
    const char *ca;       /* the CA certificates that sign the peer's certificate */
    const char *cert;     /* this side's certificate chain */
    const char *key;      /* its private key */
} rn_tls_files_t;

/* The PEM text of each file given (NUL-terminated, malloc'd; NULL when not
 * given). Freed by rn_tls_pem_free. */
typedef struct rn_tls_pem {
    char *ca, *cert, *key;
} rn_tls_pem_t;

/* The flag (or option) names used in messages, e.g. {"--tls-client-ca",
 * "--tls-cert", "--tls-key"}. */
typedef struct rn_tls_names {
    const char *ca, *cert, *key;
} rn_tls_names_t;

/* Read and check the files of f. cert and key go together (one without the
 * other is an error). 0, or a negative code with errmsg "NAME FILE: what is
 * wrong" (e.g. "--tls-key /etc/k.pem: no PEM private key in it"); on error
 * out holds nothing. */
int  rn_tls_load(const rn_tls_files_t *f, const rn_tls_names_t *names, rn_tls_pem_t *out,
                 char *errmsg);
void rn_tls_pem_free(rn_tls_pem_t *p);

/* A client connection (client/rpc.h) to target: over TLS when f gives a CA
 * or a certificate and key (their messages name --tls-ca, --tls-cert and
 * --tls-key), plaintext when f is NULL or gives none. */
struct rn_rpc;
int  rn_tls_rpc_open(const char *target, const rn_tls_files_t *f, struct rn_rpc **out,
                     char *errmsg);

/* 1 when a token sent to target with f would travel in clear: plaintext
 * (f gives no CA and no certificate) to a host that is not loopback. The
 * CLIs then print a one-line warning. */
int  rn_tls_token_in_clear(const char *target, const rn_tls_files_t *f);

#endif
