/*
 * tls.c — OpenSSL over memory BIOs for the Kafka front (kafka/tls.h).
 *
 * Each connection has one SSL in server mode between two memory BIOs:
 * rbio (ciphertext from the peer, written by rn_ktls_feed) and wbio
 * (ciphertext to the peer, drained by rn_ktls_take). The invariants are
 * tls.h's.
 */
#include "kafka/tls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "common/error.h"

struct rn_ktls_ctx {
    SSL_CTX *ctx;
    int      mtls;
};

struct rn_ktls {
    SSL *ssl;
    BIO *rbio, *wbio;
};

/* OpenSSL's first queued error (or fallback) into why; the queue emptied
 * (invariant 4). */
static void ossl_why(char *why, size_t wn, const char *fallback)
{
    unsigned long e = ERR_get_error();
    if (e) ERR_error_string_n(e, why, wn);
    else snprintf(why, wn, "%s", fallback);
    ERR_clear_error();
}

int rn_ktls_ctx_create(const char *cert, const char *key, const char *ca, rn_ktls_ctx_t **out,
                       char *errmsg)
{
    *out = NULL;
    char why[256];
    rn_ktls_ctx_t *x = calloc(1, sizeof *x);
    if (!x) return rn_errf(errmsg, -ENOMEM, "out of memory");
    BIO *b = NULL;
    X509 *c = NULL;
    EVP_PKEY *k = NULL;
    int rc = 0;
    x->ctx = SSL_CTX_new(TLS_server_method());
    if (!x->ctx) goto ossl;
    SSL_CTX_set_min_proto_version(x->ctx, TLS1_2_VERSION);           /* invariant 1 */
    SSL_CTX_set_options(x->ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(x->ctx, SSL_MODE_RELEASE_BUFFERS);
    /* The chain: the first certificate is the server's, the rest its chain. */
    if (!(b = BIO_new_mem_buf(cert, -1))) goto ossl;
    if (!(c = PEM_read_bio_X509(b, NULL, NULL, NULL)) || SSL_CTX_use_certificate(x->ctx, c) != 1)
        goto ossl;
    X509_free(c);
    c = NULL;
    X509 *more;
    while ((more = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL)
        if (SSL_CTX_add_extra_chain_cert(x->ctx, more) != 1) {   /* takes more on success */
            X509_free(more);
            goto ossl;
        }
    ERR_clear_error();                                             /* the end of the file */
    BIO_free(b);
    if (!(b = BIO_new_mem_buf(key, -1))) goto ossl;
    if (!(k = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL)) || SSL_CTX_use_PrivateKey(x->ctx, k) != 1 ||
        SSL_CTX_check_private_key(x->ctx) != 1)
        goto ossl;
    BIO_free(b);
    b = NULL;
    if (ca) {                                                      /* invariant 2 */
        X509_STORE *st = SSL_CTX_get_cert_store(x->ctx);
        STACK_OF(X509_NAME) *names = sk_X509_NAME_new_null();
        if (!(b = BIO_new_mem_buf(ca, -1)) || !names) {
            sk_X509_NAME_free(names);
            goto ossl;
        }
        int n = 0;
        X509 *a;
        while ((a = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
            X509_STORE_add_cert(st, a);
            X509_NAME *nm = X509_NAME_dup(X509_get_subject_name(a));
            if (nm) sk_X509_NAME_push(names, nm);
            X509_free(a);
            n++;
        }
        ERR_clear_error();
        SSL_CTX_set_client_CA_list(x->ctx, names);
        if (n == 0) {
            rc = rn_errf(errmsg, RN_EINVAL, "Kafka TLS: the client CA file holds no certificate");
            goto fail;
        }
        SSL_CTX_set_verify(x->ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
        x->mtls = 1;
    }
    BIO_free(b);
    EVP_PKEY_free(k);
    *out = x;
    return 0;
ossl:
    ossl_why(why, sizeof why, "unknown OpenSSL error");
    rc = rn_errf(errmsg, RN_EINVAL, "Kafka TLS: cannot use the certificate or key: %s", why);
fail:
    BIO_free(b);
    X509_free(c);
    EVP_PKEY_free(k);
    rn_ktls_ctx_free(x);
    return rc;
}

void rn_ktls_ctx_free(rn_ktls_ctx_t *x)
{
    if (!x) return;
    SSL_CTX_free(x->ctx);
    free(x);
}

int rn_ktls_ctx_mtls(const rn_ktls_ctx_t *x) { return x->mtls; }

rn_ktls_t *rn_ktls_new(rn_ktls_ctx_t *x)
{
    rn_ktls_t *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->ssl = SSL_new(x->ctx);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (!t->ssl || !t->rbio || !t->wbio) {
        SSL_free(t->ssl);
        BIO_free(t->rbio);
        BIO_free(t->wbio);
        free(t);
        ERR_clear_error();
        return NULL;
    }
    /* An empty read BIO says "retry", not "end of file". */
    BIO_set_mem_eof_return(t->rbio, -1);
    SSL_set_bio(t->ssl, t->rbio, t->wbio);        /* the SSL owns both now */
    SSL_set_accept_state(t->ssl);
    return t;
}

void rn_ktls_free(rn_ktls_t *t)
{
    if (!t) return;
    SSL_free(t->ssl);
    free(t);
}

int rn_ktls_feed(rn_ktls_t *t, const void *p, size_t n)
{
    if (n == 0) return 0;
    int w = BIO_write(t->rbio, p, (int)n);
    ERR_clear_error();
    return w == (int)n ? 0 : -1;
}

ssize_t rn_ktls_read(rn_ktls_t *t, void *buf, size_t cap, char *why, size_t wn)
{
    int r = SSL_read(t->ssl, buf, (int)cap);
    if (r > 0) return r;
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        ERR_clear_error();
        return 0;
    }
    if (e == SSL_ERROR_ZERO_RETURN) {
        snprintf(why, wn, "the peer closed TLS");
        ERR_clear_error();
        return -2;
    }
    char ow[200];
    ossl_why(ow, sizeof ow, "TLS failed");
    snprintf(why, wn, "%s: %s", SSL_is_init_finished(t->ssl) ? "TLS record" : "TLS handshake",
             ow);
    return -1;
}

int rn_ktls_write(rn_ktls_t *t, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {                  /* a memory BIO takes everything (invariant 3) */
        int chunk = n > (1u << 30) ? 1 << 30 : (int)n;
        int w = SSL_write(t->ssl, b, chunk);
        if (w <= 0) {
            ERR_clear_error();
            return -1;
        }
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

uint8_t *rn_ktls_take(rn_ktls_t *t, size_t *n)
{
    size_t have = BIO_ctrl_pending(t->wbio);
    *n = have;
    if (have == 0) return NULL;
    uint8_t *out = malloc(have);
    if (!out) return NULL;
    int r = BIO_read(t->wbio, out, (int)have);
    if (r != (int)have) {
        free(out);
        ERR_clear_error();
        return NULL;
    }
    return out;
}

int rn_ktls_ready(const rn_ktls_t *t) { return SSL_is_init_finished(t->ssl); }

int rn_ktls_peer_cn(rn_ktls_t *t, char *cn, size_t n)
{
    X509 *c = SSL_get1_peer_certificate(t->ssl);
    int rc = -1;
    if (c && SSL_get_verify_result(t->ssl) == X509_V_OK) {
        char tmp[256];
        int len = X509_NAME_get_text_by_NID(X509_get_subject_name(c), NID_commonName, tmp,
                                            sizeof tmp);
        if (len > 0 && (size_t)len < n && strlen(tmp) == (size_t)len) {
            memcpy(cn, tmp, (size_t)len + 1);
            rc = 0;
        }
    }
    X509_free(c);
    ERR_clear_error();
    return rc;
}
