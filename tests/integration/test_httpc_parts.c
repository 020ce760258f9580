/*
 * test_httpc_parts - multipart/form-data bodies (part of test_httpc, httpc_suite.h): a part
 * read on demand arrives whole, once, also through a retry; a reader that fails ends the call.
 */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common/mem.h"
#include "httpc_suite.h"

/* A streamed part's source: pieces of at most 777 bytes, failing from fail_at on. */
struct stream_src {
    const unsigned char *data;
    size_t len, fail_at, calls, rewinds;
};

static size_t stream_read(void *arg, size_t offset, char *buf, size_t cap)
{
    struct stream_src *src = arg;
    size_t n = cap < 777 ? cap : 777;

    src->calls++;
    src->rewinds += offset == 0;
    if (offset >= src->fail_at)
        return 0;
    if (n > src->len - offset)
        n = src->len - offset;
    memcpy(buf, src->data + offset, n);
    return n;
}

/*
 * A part read as it is sent: the server gets every byte once, in order, also when a 500 makes
 * the client send the body again from its start; a reader that fails half-way ends the call
 * with CM_ERR, not retried, and no whole request reaches the server.
 */
void test_streamed_part(void)
{
    enum { LEN = 300000 };
    unsigned char *data = cm_xmalloc(LEN);
    struct stream_src src = {data, LEN, LEN, 0, 0};
    struct cm_httpc_part parts[2] = {
        {.name = "message", .data = "{\"kind\":\"file\"}", .len = 15},
        {.name = "filedata",
         .len = LEN,
         .read = stream_read,
         .read_arg = &src,
         .filename = "f.bin",
         .content_type = "application/octet-stream"},
    };
    const struct fakehttp_request *got;
    struct cm_httpc_request r;
    struct cm_httpc_response resp;
    struct cm_buf url;

    for (size_t i = 0; i < LEN; i++)
        data[i] = (unsigned char)(i * 7 + i / 251);
    req_init(&r, &url, "/500then200");
    r.method = "POST";
    r.parts = parts;
    r.nparts = 2;
    CHECK_INT(run(&r, &resp), CM_OK);
    CHECK_INT(resp.status, 200);
    CHECK_INT(resp.attempts, 2);
    CHECK_INT((long)src.rewinds, 2); /* each attempt read it from the start */
    CHECK(src.calls >= 2 * (LEN / 777));
    got = fakehttp_find(srv, "/500then200");
    CHECK(got != NULL);
    if (got != NULL) {
        const char *at = memmem(got->body, got->body_len, data, LEN);
        CHECK_MSG(at != NULL, "the part's %d bytes are in the body, in order", LEN);
        CHECK_MSG(got->body_len < LEN + 1000, "a body of %zu bytes: the part once", got->body_len);
        CHECK_CONTAINS(got->body, "{\"kind\":\"file\"}");
    }
    cm_httpc_response_cleanup(&resp);

    /* The reader fails a third of the way: the call ends, the server has no request. */
    src = (struct stream_src){data, LEN, LEN / 3, 0, 0};
    CHECK_INT(run(&r, &resp), CM_ERR);
    CHECK_INT(resp.attempts, 1);
    CHECK_INT((long)src.rewinds, 1);
    CHECK(fakehttp_find(srv, "/500then200") == NULL);
    cm_httpc_response_cleanup(&resp);
    cm_buf_cleanup(&url);
    free(data);
}
