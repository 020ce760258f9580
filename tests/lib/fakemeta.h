/*
 * fakemeta.h - a local stand-in for Meta's Graph API, speaking its real wire format: the
 * token endpoints token-vault calls and the Send API conversation-router calls, with
 * Meta's error bodies and throttling. Built on fakehttp; every request is recorded there.
 *
 * Tokens: a short-lived token T becomes IGLL-T (Instagram) or EAAU-T then PAGE-<page>-T
 * (Messenger). Send API: the recipient id chooses the answer, so a test scripts Meta by
 * naming its contacts:
 *   fail-window*   400, code 10 subcode 2018278 (outside the allowed window)
 *   fail-token*    400, code 190 (invalid OAuth access token)
 *   fail-gone*     400, code 551 subcode 1545041 (this person isn't available)
 *   fail-param*    400, code 100 (invalid parameter)
 *   flaky*         500 on the first attempt for that recipient, then 200
 *   throttled*     400 code 613 on the first attempt, then 200
 *   down*          503 always
 *   anything else  200 {"recipient_id", "message_id": "m_sent_<n>"}
 */
#ifndef TESTS_FAKEMETA_H
#define TESTS_FAKEMETA_H

#include "fakehttp.h"

#define FAKEMETA_APP_ID     "app-123"
#define FAKEMETA_APP_SECRET "test-app-secret-0123"

/* Starts the stand-in; fakehttp_url() of *out is both META_GRAPH_URL and INSTAGRAM_GRAPH_URL. */
int fakemeta_start(struct fakehttp **out);
/* The same on a given port (for tests/tools/fakemeta_server). */
int fakemeta_start_at(struct fakehttp **out, int port);

/* The number of Send API requests received so far. */
int fakemeta_sends(struct fakehttp *srv);

/* The body of the last Send API request to recipient (a new string; free it), or NULL. */
char *fakemeta_last_send(struct fakehttp *srv, const char *recipient);

#endif
