/*
 * tls.c — reading and checking TLS PEM files (client/tls.h) with OpenSSL's
 * PEM and X.509 parsers.
 *
 * Invariants:
 *  1. Nothing here keeps state: each call reads its files, parses them into
 *     OpenSSL objects that are freed before it returns, and hands back only
 *     the text.
 *  2. A file is accepted only when all of it that looks like PEM parses: a
 *     certificate file holds at least one certificate and nothing else that
 *     fails to parse; a key file holds a private key (unencrypted: runneld
 *     starts unattended); a key matches its certificate.
 *  3. OpenSSL's error queue is emptied after each check, so no error leaks
 *     into a later TLS handshake of gRPC in the same thread.
 */
#include "client/tls.h"

#include "client/rpc.h"
#include "common/addr.h"
#include "common/error.h"
#include "common/sys.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

/* The file's text, NUL-terminated, into *out (caller frees). */
static int read_text(const char *name, const char *path, char **out, char *errmsg)
{
    uint8_t *buf = NULL;
    size_t n = 0;
    *out = NULL;
    if (!*path) return rn_errf(errmsg, RN_EINVAL, "%s: the file name is empty", name);
    int rc = rn_read_file(path, RN_TLS_MAX_FILE, &buf, &n);
    if (rc == RN_ETOOBIG)
        return rn_errf(errmsg, rc, "%s %s: larger than %u bytes; not a PEM file", name, path,
                       RN_TLS_MAX_FILE);
    if (rc != 0) return rn_errf(errmsg, rc, "%s %s: cannot read it: %s", name, path,
                                rn_strerror(rc));
    char *text = malloc(n + 1);
    if (!text) {
        free(buf);
        return rn_errf(errmsg, -ENOMEM, "out of memory");
    }
    memcpy(text, buf, n);
    text[n] = '\0';
    free(buf);
    if (strlen(text) != n) {
        free(text);
        return rn_errf(errmsg, RN_EINVAL, "%s %s: holds a NUL byte; not a PEM file", name, path);
    }
    *out = text;
    return 0;
}

/* The last OpenSSL error's reason, for a message ("" when none). */
static const char *ssl_reason(void)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    return r ? r : "not PEM";
}

/* Invariant 2: every certificate in text parses; at least one. */
static int check_certs(const char *name, const char *path, const char *text, char *errmsg)
{
    BIO *b = BIO_new_mem_buf(text, -1);
    if (!b) return rn_errf(errmsg, -ENOMEM, "out of memory");
    int count = 0, rc = 0;
    for (;;) {
        X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
        if (!x) break;
        X509_free(x);
        count++;
    }
    unsigned long e = ERR_peek_last_error();
    /* The loop ends at the end of the text (PEM_R_NO_START_LINE) or at a
     * block that does not parse. */
    if (count == 0)
        rc = rn_errf(errmsg, RN_EINVAL, "%s %s: no PEM certificate in it (%s)", name, path,
                     ssl_reason());
    else if (e && !(ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE))
        rc = rn_errf(errmsg, RN_EINVAL, "%s %s: certificate %d does not parse (%s)", name, path,
                     count + 1, ssl_reason());
    ERR_clear_error();                 /* invariant 3 */
    BIO_free(b);
    return rc;
}

/* Invariant 2: the key parses; when cert is given, it matches cert's first
 * certificate. */
static int check_key(const rn_tls_names_t *nm, const rn_tls_files_t *f, const char *key,
                     const char *cert, char *errmsg)
{
    int rc = 0;
    X509 *x = NULL;
    BIO *kb = BIO_new_mem_buf(key, -1), *cb = cert ? BIO_new_mem_buf(cert, -1) : NULL;
    if (!kb || (cert && !cb)) {
        rc = rn_errf(errmsg, -ENOMEM, "out of memory");
        goto out;
    }
    /* A passphrase callback that gives none: an encrypted key fails here. */
    EVP_PKEY *pk = PEM_read_bio_PrivateKey(kb, NULL, NULL, (void *)"");
    if (!pk) {
        rc = rn_errf(errmsg, RN_EINVAL, "%s %s: no PEM private key in it (%s; an encrypted "
                     "key is not supported)", nm->key, f->key, ssl_reason());
        goto out;
    }
    if (cb && (x = PEM_read_bio_X509(cb, NULL, NULL, NULL)) != NULL &&
        X509_check_private_key(x, pk) != 1)
        rc = rn_errf(errmsg, RN_EINVAL, "%s %s: the key does not match the certificate in "
                     "%s %s", nm->key, f->key, nm->cert, f->cert);
    EVP_PKEY_free(pk);
out:
    X509_free(x);
    BIO_free(kb);
    BIO_free(cb);
    ERR_clear_error();                 /* invariant 3 */
    return rc;
}

void rn_tls_pem_free(rn_tls_pem_t *p)
{
    if (!p) return;
    free(p->ca);
    free(p->cert);
    free(p->key);
    memset(p, 0, sizeof *p);
}

int rn_tls_rpc_open(const char *target, const rn_tls_files_t *f, rn_rpc_t **out,
                    char *errmsg)
{
    *out = NULL;
    if (!f || (!f->ca && !f->cert && !f->key)) return rn_rpc_open(target, out, errmsg);
    static const rn_tls_names_t names = {"--tls-ca", "--tls-cert", "--tls-key"};
    rn_tls_pem_t pem;
    int rc = rn_tls_load(f, &names, &pem, errmsg);
    if (rc != 0) return rc;
    rn_rpc_tls_t t = {pem.ca, pem.cert, pem.key};
    rc = rn_rpc_open_tls(target, &t, out, errmsg);
    rn_tls_pem_free(&pem);             /* the channel's credentials hold a copy */
    return rc;
}

int rn_tls_load(const rn_tls_files_t *f, const rn_tls_names_t *nm, rn_tls_pem_t *out,
                char *errmsg)
{
    memset(out, 0, sizeof *out);
    int rc = 0;
    if (!f->cert != !f->key) {
        return rn_errf(errmsg, RN_EINVAL, "%s and %s go together: give both or neither",
                       nm->cert, nm->key);
    }
    if (f->ca && ((rc = read_text(nm->ca, f->ca, &out->ca, errmsg)) != 0 ||
                  (rc = check_certs(nm->ca, f->ca, out->ca, errmsg)) != 0))
        goto fail;
    if (f->cert && ((rc = read_text(nm->cert, f->cert, &out->cert, errmsg)) != 0 ||
                    (rc = check_certs(nm->cert, f->cert, out->cert, errmsg)) != 0 ||
                    (rc = read_text(nm->key, f->key, &out->key, errmsg)) != 0 ||
                    (rc = check_key(nm, f, out->key, out->cert, errmsg)) != 0))
        goto fail;
    return 0;
fail:
    rn_tls_pem_free(out);
    return rc;
}

int rn_tls_token_in_clear(const char *target, const rn_tls_files_t *f)
{
    if (f && (f->ca || f->cert || f->key)) return 0;
    char host[256], err[RN_ERRMSG_SIZE];
    int port;
    if (rn_addr_split(target, host, sizeof host, &port, 0, err) != 0) return 0;
    return !rn_addr_is_loopback(host);
}
