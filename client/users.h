/*
 * users.h — the credentials file of runnel's bearer tokens: who may call a
 * broker that requires authentication.
 *
 * The file (DIR/users by default, or runneld --users FILE) is text, one user
 * a line, written whole and atomically (common/sys.h rn_write_file_atomic):
 *
 *   # runnel users v1: NAME pbkdf2-sha256 ITERATIONS SALT(hex) HASH(hex)
 *   alice pbkdf2-sha256 100000 9f...(32 hex) 4c...(64 hex)
 *
 * A token is "NAME.SECRET", SECRET 32 random bytes in base64url; only
 * PBKDF2-HMAC-SHA256(SECRET, salt, ITERATIONS) is stored, never the token.
 * The name in the token picks the one line to check, so a verification
 * costs one KDF run whatever the number of users.
 */
#ifndef RN_USERS_H
#define RN_USERS_H

#include <stddef.h>
#include <stdint.h>

#define RN_USER_NAME_MAX   64       /* bytes of a user name, [A-Za-z0-9_-] */
#define RN_USERS_MAX       4096     /* lines a file may hold */
#define RN_USERS_ITER      100000   /* PBKDF2 iterations of a new user */
#define RN_TOKEN_MAX       160      /* bytes of a token, NAME "." SECRET */
#define RN_USERS_FILE      "users"  /* the file's name in a data directory */

typedef struct rn_users rn_users_t;

/* One user's line. */
typedef struct rn_user {
    char     name[RN_USER_NAME_MAX + 1];
    uint32_t iter;
    uint8_t  salt[16], hash[32];
} rn_user_t;

/* Load the file at path: 0 and *out (free with rn_users_free), an absent
 * file being an empty table; else a negative code and errmsg naming the
 * file and line. */
int  rn_users_load(const char *path, rn_users_t **out, char *errmsg);
void rn_users_free(rn_users_t *u);
size_t      rn_users_count(const rn_users_t *u);
const char *rn_users_name(const rn_users_t *u, size_t i);   /* borrowed: lives as u */

/* The line of the user token names, copied into *e (fast: no KDF), and
 * *secret pointing into token; RN_EINVAL when token names no user. */
int  rn_users_find(const rn_users_t *u, const char *token, rn_user_t *e, const char **secret);
/* 0 when secret is e's (the KDF, once; constant-time compare), else RN_EINVAL. */
int  rn_user_check(const rn_user_t *e, const char *secret);

/* Add NAME to the file dir/file with a new random token, written into token
 * (RN_TOKEN_MAX+1 bytes) and shown nowhere else; RN_EINVAL when the name
 * is malformed or taken. */
int  rn_users_add(const char *dir, const char *file, const char *name, char *token,
                  char *errmsg);
/* Remove NAME from dir/file; -ENOENT when there is no such user. */
int  rn_users_remove(const char *dir, const char *file, const char *name, char *errmsg);

#endif
