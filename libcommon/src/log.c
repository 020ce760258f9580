/*
 * log.c - JSON-line (or text) logging to stderr.
 */
#include "common/log.h"
#include "common/mem.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

int cm_log_threshold = CM_LVL_INFO;

static const char *log_service = "doms";
static int log_json = 1;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void cm_log_init(const char *service, int level, int json)
{
    log_service = service;
    cm_log_threshold = level;
    log_json = json;
}

int cm_log_parse_level(const char *s, int *level)
{
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, level_names[i]) == 0) {
            *level = i;
            return CM_OK;
        }
    }
    return CM_INVALID;
}

/* Formats the current time as RFC 3339 UTC with milliseconds into out[32]. */
static void now_rfc3339(char out[32])
{
    struct timeval tv;
    struct tm tm;
    size_t n;

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03dZ", (int)(tv.tv_usec / 1000));
}

void cm_log_emit(int level, const char *id, const char *fmt, ...)
{
    char ts[32];
    char msg[2048];
    struct cm_buf line;
    va_list ap;
    int n;

    if (level < CM_LVL_DEBUG || level > CM_LVL_ERROR)
        level = CM_LVL_ERROR;
    va_start(ap, fmt);
    n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    now_rfc3339(ts);

    cm_buf_init(&line);
    if (log_json) {
        cm_buf_printf(&line, "{\"ts\":\"%s\",\"level\":\"%s\",\"service\":\"", ts,
                      level_names[level]);
        cm_buf_json_escape(&line, log_service, strlen(log_service));
        if (id != NULL) {
            cm_buf_puts(&line, "\",\"id\":\"");
            cm_buf_json_escape(&line, id, strlen(id));
        }
        cm_buf_puts(&line, "\",\"msg\":\"");
        cm_buf_json_escape(&line, msg, strlen(msg));
        cm_buf_puts(&line, "\"}\n");
    } else {
        cm_buf_printf(&line, "%s %-5s %s ", ts, level_names[level], log_service);
        if (id != NULL)
            cm_buf_printf(&line, "[%s] ", id);
        cm_buf_printf(&line, "%s\n", msg);
    }
    /* One write per line keeps lines whole across threads. */
    if (write(STDERR_FILENO, line.data, line.len) < 0) {
        /* Nowhere left to report a failing stderr. */
    }
    cm_buf_cleanup(&line);
}
