/*
 * backfill.h - what backfill.c (the jobs: request, claim, progress) and backfill_meta.c (the
 * Conversations API: pages, pacing, throttling) share. proto/router.md#backfill.
 */
#ifndef ROUTER_BACKFILL_H
#define ROUTER_BACKFILL_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/httpc.h"
#include "router.h"

/* Meta's documented limit of the Conversations API: 2 calls a second per Page or Instagram
 * professional account. One job per integration, run by one replica at a time, keeps it. */
#define BACKFILL_CALLS_PER_S 2
/* Conversations asked per page of the list, and messages per page of a conversation. */
#define BACKFILL_CONV_PAGE 25
#define BACKFILL_MSG_PAGE  50
/* The wait after a throttling answer that names none (Meta's windows are rolling). */
#define BACKFILL_THROTTLE_WAIT_S 60
/* Usage (percent of any of Meta's budgets) from which the job pauses before Meta throttles. */
#define BACKFILL_USAGE_PAUSE_PCT 90

/* A job's Graph context: the account, its token and proof, the pacing and what Meta said. */
struct bf_meta {
    struct router *r;
    struct cm_httpc *http;
    const char *platform;
    const char *account;
    char *token; /* sodium memory, from router_token_get() */
    char proof[ROUTER_PROOF_LEN];
    double last_call; /* epoch seconds of the account's last call (kept in the job's row, so
                         the pacing holds across runs, processes and replicas) */
    long calls;       /* calls made (counted into the job's row) */
    int wait_s;       /* > 0: Meta asked to wait this long (throttled, or usage at its limit) */
    char why[640];    /* the last failure's reason */
};

/* One conversation of a page of Meta's list. */
struct bf_conv {
    char id[160];
    int64_t updated_ms; /* Meta's updated_time: its latest message */
};

/* A page of Meta's conversation list, most recently updated first. */
struct bf_page {
    struct bf_conv convs[BACKFILL_CONV_PAGE];
    int n;
    char after[512]; /* the cursor of the page after this one */
    bool more;       /* Meta gave a next page */
};

/*
 * Reads the page of conversations after cursor after (NULL: the first) into page.
 * Returns CM_OK; CM_AGAIN when Meta throttled the call (m->wait_s set); CM_UNAVAIL for a
 * passing failure (5xx, no answer); CM_DENIED for a refusal that a retry will not change
 * (token, permission); CM_INVALID for an answer not of Meta's shape. m->why says why.
 */
int bf_conversations(struct bf_meta *m, const char *after, struct bf_page *page) CM_MUST_CHECK;

/*
 * Reads the messages of conversation conv created at or after since_ms, every page of them,
 * into *out: a new array (cJSON_Delete) of event wrappers of proto/meta-events.md (kind
 * "message" for the contact's, "echo" for the business's, source "backfill"), oldest first.
 * Returns as bf_conversations(); *out is NULL unless CM_OK.
 */
int bf_messages(struct bf_meta *m, const char *conv, int64_t since_ms, cJSON **out) CM_MUST_CHECK;

/* Meta's time "2026-12-05T10:00:00+0000" in epoch ms; 0 when it is not one. */
int64_t bf_meta_time_ms(const char *s);

#endif
