/*
 * streamsql_cli.h — what the `streamsql` command files share: the small
 * line editor with history (streamsql_repl.c) used by the REPL in
 * streamsql.c.
 */
#ifndef RN_STREAMSQL_CLI_H
#define RN_STREAMSQL_CLI_H

#include <stddef.h>

#define SQLCLI_HISTORY_MAX 500

typedef struct sqlcli_editor {
    int     tty;                 /* stdin and stdout are terminals: edit; else plain reads */
    char  **hist;                /* oldest first, malloc'd strings */
    size_t  nhist;
    char    path[4096];          /* ~/.streamsql_history ("" when HOME is unset) */
} sqlcli_editor_t;

/* Load the history (tty only). Never fails: a missing file is no history. */
void sqlcli_editor_init(sqlcli_editor_t *e);
void sqlcli_editor_free(sqlcli_editor_t *e);

/* Read one line (without its newline) after printing prompt (tty only).
 * Returns a malloc'd string (caller frees), NULL at end of input (Ctrl-D
 * on an empty line, or EOF). *interrupted = 1 when Ctrl-C abandoned the
 * line (an empty string is returned). */
char *sqlcli_readline(sqlcli_editor_t *e, const char *prompt, int *interrupted);

/* Remember an entered statement (newlines become spaces), in memory and
 * appended to the history file. */
void sqlcli_history_add(sqlcli_editor_t *e, const char *stmt);

#endif
