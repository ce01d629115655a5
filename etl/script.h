/*
 * script.h — a pipelines file: one SQL script of definitions, as a user
 * writes it for `runneld --pipelines FILE` and `runnel pipeline run --file
 * FILE`:
 *
 *   -- web logs, cleaned
 *   CREATE STREAM logs (svc TEXT, ms INTEGER) WITH (topic = 'logs', format = 'json');
 *   CREATE PIPELINE slow AS INSERT INTO slow SELECT svc, ms FROM logs WHERE ms > 500;
 *
 * Statements: CREATE STREAM, DROP STREAM [IF EXISTS], CREATE FUNCTION, DROP
 * FUNCTION [IF EXISTS] (streamsql's), CREATE PIPELINE, DROP PIPELINE [IF
 * EXISTS] name; comments as in streamsql. They
 * are applied in order, and idempotently, so the same file applies again at
 * every start: a definition equal to the stored one changes nothing; one
 * that differs is reported with how to apply it and the stored one stays
 * (with a pipeline's checkpoint state); dropping what is absent is no error.
 * A DROP in the file runs at every start (remove it once applied).
 * The first statement that fails stops the application with
 * "FILE:LINE:COLUMN: why"; the statements before it stay applied.
 */
#ifndef RN_ETL_SCRIPT_H
#define RN_ETL_SCRIPT_H

#include <stddef.h>

#include "logical-queues/datadir.h"

typedef struct rn_etl_script_cb {
    /* one line per statement: what was done (warn = 1: a changed definition
     * that was not applied); may be NULL */
    void (*note)(void *ctx, int warn, const char *msg);
    /* each pipeline the file defines, in file order, once it is stored;
     * may be NULL */
    void (*pipeline)(void *ctx, const char *name);
    void *ctx;
} rn_etl_script_cb_t;

/* Apply text[0..len), named `name` in messages. 0 when every statement
 * applied (or was unchanged, or reported as changed); else the first
 * failure's code with errmsg "NAME:LINE:COLUMN: why". */
int rn_etl_script_apply(rn_datadir_t *d, const char *name, const char *text, size_t len,
                        const rn_etl_script_cb_t *cb, char *errmsg);

/* The same for a file (at most 16 MiB). A file that cannot be read: its
 * errno with errmsg "pipelines file PATH: why". */
int rn_etl_script_apply_file(rn_datadir_t *d, const char *path, const rn_etl_script_cb_t *cb,
                             char *errmsg);

#endif
