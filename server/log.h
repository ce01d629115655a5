/*
 * log.h — runneld's levelled log lines on stderr:
 *   2026-11-21T20:00:00.123Z warn  produce topic 'x' queue 0: batch 2 of 3: bad crc
 * Thread-safe (one fprintf per line, stderr unbuffered by the kernel's
 * write of a whole line). Lines above the current level are dropped.
 */
#ifndef RN_SLOG_H
#define RN_SLOG_H

typedef enum rn_slog_level {
    RN_SLOG_ERROR, RN_SLOG_WARN, RN_SLOG_INFO, RN_SLOG_DEBUG
} rn_slog_level_t;

/* Parse "error", "warn", "info" or "debug". RN_EINVAL with errmsg otherwise. */
int  rn_slog_parse(const char *s, rn_slog_level_t *out, char *errmsg);
void rn_slog_set_level(rn_slog_level_t l);
int  rn_slog_enabled(rn_slog_level_t l);
void rn_slog(rn_slog_level_t l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
