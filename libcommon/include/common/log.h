/*
 * log.h - one logging macro family for every daemon.
 *
 * Lines are JSON by default ({"ts","level","service","id","msg"}), or text with
 * LOG_FORMAT=text. The level is checked before the arguments are evaluated, so a debug
 * line costs one comparison when debug is off. Each line is written with a single
 * write(2), so lines from nats.c's threads never interleave.
 *
 * Never pass a token, a secret or message text to these macros.
 */
#ifndef COMMON_LOG_H
#define COMMON_LOG_H

#include "common/err.h"

enum cm_log_level {
    CM_LVL_DEBUG = 0,
    CM_LVL_INFO = 1,
    CM_LVL_WARN = 2,
    CM_LVL_ERROR = 3,
};

/* The current threshold; read by the macros, written only by cm_log_init(). */
extern int cm_log_threshold;

/*
 * Sets the service name that every line carries, the threshold and the format.
 * service is borrowed and must outlive logging (a string literal in practice).
 */
void cm_log_init(const char *service, int level, int json);

/* Parses "debug|info|warn|error" into *level. Returns CM_OK or CM_INVALID. */
int cm_log_parse_level(const char *s, int *level) CM_MUST_CHECK;

/* Writes one line; use the macros instead, which check the level first. */
void cm_log_emit(int level, const char *id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define CM_LOG(level, id, ...)                                                                     \
    do {                                                                                           \
        if ((level) >= cm_log_threshold)                                                           \
            cm_log_emit((level), (id), __VA_ARGS__);                                               \
    } while (0)

#define CM_DEBUG(...) CM_LOG(CM_LVL_DEBUG, NULL, __VA_ARGS__)
#define CM_INFO(...)  CM_LOG(CM_LVL_INFO, NULL, __VA_ARGS__)
#define CM_WARN(...)  CM_LOG(CM_LVL_WARN, NULL, __VA_ARGS__)
#define CM_ERROR(...) CM_LOG(CM_LVL_ERROR, NULL, __VA_ARGS__)

/* The same, tagged with a request or message id. */
#define CM_DEBUG_ID(id, ...) CM_LOG(CM_LVL_DEBUG, (id), __VA_ARGS__)
#define CM_INFO_ID(id, ...)  CM_LOG(CM_LVL_INFO, (id), __VA_ARGS__)
#define CM_WARN_ID(id, ...)  CM_LOG(CM_LVL_WARN, (id), __VA_ARGS__)
#define CM_ERROR_ID(id, ...) CM_LOG(CM_LVL_ERROR, (id), __VA_ARGS__)

#endif
