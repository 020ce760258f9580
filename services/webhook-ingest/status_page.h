/*
 * status_page.h - the HTML of the data-deletion status page.
 */
#ifndef INGEST_STATUS_PAGE_H
#define INGEST_STATUS_PAGE_H

#include <cjson/cJSON.h>
#include <stdbool.h>

#include "common/mem.h"

/*
 * Renders status (the result of reaper.deletion.status: confirmation_code, status,
 * received_at, completed_at, deleted, reason) as a whole HTML page into out (reset first),
 * which the caller owns. Every value from status is escaped.
 */
void ingest_status_page(const cJSON *status, struct cm_buf *out);

/* The page for a code no request has (served with 404). */
void ingest_status_page_unknown(struct cm_buf *out);

/* The page for a request refused by the rate limit (served with 429). */
void ingest_status_page_busy(struct cm_buf *out);

#endif
