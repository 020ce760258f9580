/*
 * deletion.h - what deletion.c (the requests) and deleter.c (the worker) share.
 */
#ifndef REAPER_DELETION_H
#define REAPER_DELETION_H

#include "reaper.h"

/* The reasons a status page shows. They never name the person. */
#define REAPER_NO_DATA_HELD "no data held"
#define REAPER_REFUSED_MALFORMED                                                                   \
    "the user id in Meta's request is not an app-scoped user id, so no data can be matched to it"
#define REAPER_REFUSED_UNKNOWN_ID "token-vault refused the user id in Meta's request as malformed"

/* The key id and additional data under which request id's user id is sealed. */
void reaper_deletion_names(long long id, char key_id[48], char aad[96]);

/* Starts and stops the worker that carries deletion requests out (deleter.c). */
int reaper_deleter_start(struct reaper *r) CM_MUST_CHECK;
void reaper_deleter_stop(struct reaper *r);

#endif
