/*
 * httpc_suite.h - what test_httpc.c shares with test_httpc_parts.c: one test program, one
 * fakehttp server with one script of paths (test_httpc.c's handler), split into files by
 * concern.
 */
#ifndef HTTPC_SUITE_H
#define HTTPC_SUITE_H

#include "common/httpc.h"
#include "fakehttp.h"

extern struct fakehttp *srv;

/* A request to path on the fake server, with fast retries unless the test says otherwise. */
void req_init(struct cm_httpc_request *r, struct cm_buf *url, const char *path);
/* Runs a call on a fresh response (the server's record cleared first); the caller cleans resp
 * up. */
int run(struct cm_httpc_request *r, struct cm_httpc_response *resp);

/* test_httpc_parts.c */
void test_streamed_part(void);

#endif
