/*
 * router_s3_suite.h - what test_router_s3.c shares with test_router_s3_objects.c: one test
 * program, one stack with the router on MEDIA_STORE=s3 and the S3 stand-in, split into files by
 * concern.
 */
#ifndef ROUTER_S3_SUITE_H
#define ROUTER_S3_SUITE_H

#include <stdbool.h>

#include "fakes3.h"
#include "stack.h"

#define BUCKET      "doms-router-media"
#define IMAGE_BYTES (600 * 1024) /* two chunks of router.attachment.get */
/* The router's ROUTER_MEDIA_SEGMENT: a chunk, and a segment of what is sealed. */
#define SEGMENT (512 * 1024)
#define MARKER  "JFIF-plaintext-marker-of-the-s3-image"

extern struct th_stack st;
extern struct fakes3 *fs;
extern struct th_proc router; /* MEDIA_STORE=s3 */
/* The image of test_e2e_stored (MARKER at its start) and its attachment, stored in S3. */
extern unsigned char image[IMAGE_BYTES];
extern char image_att[64];

/* Whether the query of att (fmt takes its id) answers want now. */
bool sql_is(const char *fmt, const char *att, const char *want);

/* test_router_s3_objects.c */
void test_e2e_legacy(void);
void test_e2e_sweep_many(void);

#endif
