/*
 * router_suite.h - what test_router.c shares with test_router_dedup.c: one test program, one
 * stack (ingest, token-vault, two router replicas), split into files by concern.
 */
#ifndef ROUTER_SUITE_H
#define ROUTER_SUITE_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

#include "stack.h"

#define PAGE "106000000000001"
#define IG   "17841400000000051"

extern struct th_stack st;
extern struct th_proc ingest, vault, router1, router2, router1_first;
/* The replicas' HTTP ports (/metrics); router2_port is 0 until test_replicas starts it. */
extern int router1_port, router2_port;
/* Meta's timestamp of the run's events: the test's start. */
extern int64_t now_ms_;
extern const char *const router_env[];

/* Polls until a conversation holds text (the router stores asynchronously) and returns its id
 * (free it); fails the test after 10 s. */
char *await_conv(const char *text);
/* The same in another workspace than the suite's own. */
char *await_conv_in(const char *workspace, const char *text);

/* test_router.c's workspace, and its first conversation (the blue jacket's). */
extern char suite_ws[64];
extern char *suite_c1;
/* Posts a signed webhook of one text message from psid, Meta's timestamp ts. */
void suite_message(const char *psid, const char *mid, const char *text, int64_t ts);
/* Polls until conv's message with text has status; the message (free it), NULL after 10 s. */
cJSON *suite_await_status(const char *conv, const char *text, const char *status);
/* Replies text to conv as alice (human: --human-agent); the message id (free it). */
char *suite_reply_ok(const char *conv, const char *text, bool human);

/* test_router_send.c */
void test_send_outcomes(void);
void test_hosts(void);
void test_throttling(void);

/* test_router_reply.c */
void test_reply_setup(void);
void test_reply_limits(void);
void test_appsecret_proof(void);
void test_reply_refused_at_once(void);

/* test_router_lists.c */
void test_lists_setup(void);
void test_lists_paging(void);
void test_lists_newest(void);
void test_lists_filters(void);
void test_lists_refused(void);

/* test_router_thread.c */
void test_thread_setup(void);
void test_thread_standby(void);
void test_thread_handover(void);
void test_thread_meta_refusal(void);
void test_mark_seen(void);

/* test_router_dedup.c */
void test_duplicates_in_one_batch(void);
void test_duplicates_racing(void);
/* Frees what the de-duplication tests keep (their JetStream context). */
void router_dedup_cleanup(void);

#endif
