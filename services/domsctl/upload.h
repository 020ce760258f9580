/*
 * upload.h - `domsctl reply C --file PATH`: the file's type, and its bytes to the router in
 * router.upload chunks before the reply (proto/router.md#routerupload).
 */
#ifndef DOMSCTL_UPLOAD_H
#define DOMSCTL_UPLOAD_H

#include <cjson/cJSON.h>
#include <nats/nats.h>
#include <stdio.h>

/* An open file to send. */
struct domsctl_file {
    FILE *fp;
    long long size;
    const char *type;         /* "image", "video", "audio" or "file" */
    const char *content_type; /* e.g. "image/png"; "application/octet-stream" when unknown */
};

/*
 * Opens path and tells its type from its first bytes, else its extension. Returns 0, or -1 with
 * one line in err (a missing, unreadable or empty file: a usage error). Close it with
 * domsctl_file_close().
 */
int domsctl_file_open(struct domsctl_file *f, const char *path, char *err, size_t cap);
void domsctl_file_close(struct domsctl_file *f);

/*
 * Sends f to the router for the reply req (its actor and conversation_id): the first chunk
 * opens the upload, which the router refuses at once, before any byte is sent, when the reply
 * could not carry it; then the chunks in order. On success req gains the "upload_id" and 0 is
 * returned; otherwise -1 with the reason in why.
 */
int domsctl_file_send(natsConnection *nc, const char *identity, struct domsctl_file *f, cJSON *req,
                      long timeout_ms, char *why, size_t cap);

#endif
