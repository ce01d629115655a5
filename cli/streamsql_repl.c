/*
 * streamsql_repl.c — a small line editor on termios for the streamsql REPL:
 * insert and delete, cursor moves (arrows, Home/End, Ctrl-A/E), Ctrl-U/K
 * kills, history with Up/Down, saved in ~/.streamsql_history. No readline
 * or libedit: the project's dependencies are fixed (DESIGN.md §2).
 *
 * Invariants:
 *  1. The terminal is in raw mode only inside sqlcli_readline and is always
 *     restored before it returns (also on Ctrl-C, which abandons the line
 *     rather than killing the process).
 *  2. Without a terminal, lines are read plainly (getline): scripts can be
 *     piped in; a signal while waiting abandons the line (as Ctrl-C in the
 *     editor does), it does not end the input.
 *  3. The history file only grows by appended lines; it is read once and
 *     the last SQLCLI_HISTORY_MAX entries are kept.
 *  4. Cursor moves step over whole UTF-8 sequences, so multi-byte
 *     characters are never split (display assumes one column each).
 */
#include "cli/streamsql_cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#define LINE_MAX_BYTES 65536

static void hist_push(sqlcli_editor_t *e, const char *s)
{
    if (!s[0]) return;
    if (e->nhist && strcmp(e->hist[e->nhist - 1], s) == 0) return;
    char *c = strdup(s);
    if (!c) return;
    if (e->nhist == SQLCLI_HISTORY_MAX) {
        free(e->hist[0]);
        memmove(e->hist, e->hist + 1, (e->nhist - 1) * sizeof *e->hist);
        e->nhist--;
    }
    e->hist[e->nhist++] = c;
}

void sqlcli_editor_init(sqlcli_editor_t *e)
{
    memset(e, 0, sizeof *e);
    e->tty = isatty(STDIN_FILENO) && isatty(STDOUT_FILENO);
    e->hist = calloc(SQLCLI_HISTORY_MAX, sizeof *e->hist);
    const char *home = getenv("HOME");
    if (!e->hist || !e->tty || !home) return;
    snprintf(e->path, sizeof e->path, "%s/.streamsql_history", home);
    FILE *f = fopen(e->path, "r");
    if (!f) return;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, f)) > 0) {
        if (line[n - 1] == '\n') line[n - 1] = '\0';
        hist_push(e, line);
    }
    free(line);
    fclose(f);
}

void sqlcli_editor_free(sqlcli_editor_t *e)
{
    for (size_t i = 0; i < e->nhist; i++) free(e->hist[i]);
    free(e->hist);
    e->hist = NULL;
    e->nhist = 0;
}

void sqlcli_history_add(sqlcli_editor_t *e, const char *stmt)
{
    char *flat = strdup(stmt);
    if (!flat || !e->hist) { free(flat); return; }
    for (char *p = flat; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    size_t n = strlen(flat);
    while (n && flat[n - 1] == ' ') flat[--n] = '\0';
    hist_push(e, flat);
    if (e->path[0]) {
        FILE *f = fopen(e->path, "a");
        if (f) {
            fprintf(f, "%s\n", flat);
            fclose(f);
        }
    }
    free(flat);
}

typedef struct line {
    char   buf[LINE_MAX_BYTES];
    size_t len, pos;
} line_t;

static void put(const char *s, size_t n)
{
    while (n) {
        ssize_t w = write(STDOUT_FILENO, s, n);
        if (w <= 0) { if (w < 0 && errno == EINTR) continue; return; }
        s += w;
        n -= (size_t)w;
    }
}

static size_t chars(const char *s, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80) c++;
    return c;
}

static void refresh(const char *prompt, const line_t *l)
{
    char seq[32];
    put("\r", 1);
    put(prompt, strlen(prompt));
    put(l->buf, l->len);
    put("\033[K", 3);
    size_t back = chars(l->buf + l->pos, l->len - l->pos);
    if (back) {
        int n = snprintf(seq, sizeof seq, "\033[%zuD", back);
        put(seq, (size_t)n);
    }
}

static void set_line(line_t *l, const char *s)
{
    size_t n = strlen(s);
    if (n >= sizeof l->buf) n = sizeof l->buf - 1;
    memcpy(l->buf, s, n);
    l->len = l->pos = n;
}

static size_t prev_char(const line_t *l, size_t p)
{
    if (p == 0) return 0;
    p--;
    while (p > 0 && ((unsigned char)l->buf[p] & 0xC0) == 0x80) p--;
    return p;
}

static size_t next_char(const line_t *l, size_t p)
{
    if (p >= l->len) return l->len;
    p++;
    while (p < l->len && ((unsigned char)l->buf[p] & 0xC0) == 0x80) p++;
    return p;
}

static void delete_range(line_t *l, size_t a, size_t b)
{
    memmove(l->buf + a, l->buf + b, l->len - b);
    l->len -= b - a;
    if (l->pos > a) l->pos = l->pos >= b ? l->pos - (b - a) : a;
}

/* A line without the editor. A signal (Ctrl-C) while waiting abandons the
 * line, as in the editor, rather than ending the input. */
static char *plain_read(const char *prompt, int *interrupted)
{
    char *line = NULL;
    size_t cap = 0;
    (void)prompt;
    errno = 0;
    ssize_t n = getline(&line, &cap, stdin);
    if (n < 0 && errno == EINTR && !feof(stdin)) {
        clearerr(stdin);
        free(line);
        *interrupted = 1;
        return strdup("");
    }
    if (n < 0) { free(line); return NULL; }
    if (n && line[n - 1] == '\n') line[n - 1] = '\0';
    return line;
}

char *sqlcli_readline(sqlcli_editor_t *e, const char *prompt, int *interrupted)
{
    *interrupted = 0;
    if (!e->tty) return plain_read(prompt, interrupted);
    struct termios orig, raw;
    if (tcgetattr(STDIN_FILENO, &orig) != 0) return plain_read(prompt, interrupted);
    raw = orig;
    raw.c_iflag &= ~(tcflag_t)(BRKINT | ICRNL | INPCK | ISTRIP | IXON);
    raw.c_lflag &= ~(tcflag_t)(ECHO | ICANON | IEXTEN | ISIG);
    raw.c_cc[VMIN] = 1;
    raw.c_cc[VTIME] = 0;
    if (tcsetattr(STDIN_FILENO, TCSANOW, &raw) != 0) return plain_read(prompt, interrupted);
    line_t *l = calloc(1, sizeof *l);
    char *result = NULL;
    size_t hidx = e->nhist;        /* e->nhist = the line being edited */
    char *saved = NULL;            /* the edited line while browsing history */
    if (!l) goto out;
    put(prompt, strlen(prompt));
    for (;;) {
        unsigned char c;
        ssize_t r = read(STDIN_FILENO, &c, 1);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) { if (l->len) break; goto out; }
        if (c == '\r' || c == '\n') break;
        if (c == 3) {                                   /* Ctrl-C */
            put("^C", 2);
            l->len = 0;
            *interrupted = 1;
            break;
        }
        if (c == 4) {                                   /* Ctrl-D */
            if (l->len == 0) { put("\r\n", 2); goto out; }
            delete_range(l, l->pos, next_char(l, l->pos));
        } else if (c == 127 || c == 8) {
            if (l->pos) delete_range(l, prev_char(l, l->pos), l->pos);
        } else if (c == 1) {
            l->pos = 0;
        } else if (c == 5) {
            l->pos = l->len;
        } else if (c == 21) {
            delete_range(l, 0, l->pos);
        } else if (c == 11) {
            l->len = l->pos;
        } else if (c == 12) {
            put("\033[H\033[2J", 7);
        } else if (c == 27) {
            unsigned char s[3];
            if (read(STDIN_FILENO, &s[0], 1) != 1 || read(STDIN_FILENO, &s[1], 1) != 1) continue;
            if (s[0] != '[' && s[0] != 'O') continue;
            if (s[1] >= '0' && s[1] <= '9') {
                if (read(STDIN_FILENO, &s[2], 1) != 1) continue;
                if (s[2] == '~' && s[1] == '3') delete_range(l, l->pos, next_char(l, l->pos));
                else if (s[2] == '~' && (s[1] == '1' || s[1] == '7')) l->pos = 0;
                else if (s[2] == '~' && (s[1] == '4' || s[1] == '8')) l->pos = l->len;
            } else if (s[1] == 'A' || s[1] == 'B') {
                if (s[1] == 'A' && hidx > 0) {
                    if (hidx == e->nhist) {
                        free(saved);
                        l->buf[l->len] = '\0';
                        saved = strdup(l->buf);
                    }
                    set_line(l, e->hist[--hidx]);
                } else if (s[1] == 'B' && hidx < e->nhist) {
                    hidx++;
                    set_line(l, hidx == e->nhist ? (saved ? saved : "") : e->hist[hidx]);
                }
            } else if (s[1] == 'C') {
                l->pos = next_char(l, l->pos);
            } else if (s[1] == 'D') {
                l->pos = prev_char(l, l->pos);
            } else if (s[1] == 'H') {
                l->pos = 0;
            } else if (s[1] == 'F') {
                l->pos = l->len;
            }
        } else if (c >= 32 || c == '\t') {
            if (l->len + 1 < sizeof l->buf) {
                memmove(l->buf + l->pos + 1, l->buf + l->pos, l->len - l->pos);
                l->buf[l->pos++] = c == '\t' ? ' ' : (char)c;
                l->len++;
            }
        }
        refresh(prompt, l);
    }
    put("\r\n", 2);
    l->buf[l->len] = '\0';
    result = strdup(l->buf);
out:
    tcsetattr(STDIN_FILENO, TCSANOW, &orig);
    free(saved);
    free(l);
    return result;
}
