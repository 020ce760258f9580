/*
 * test_router_s3 - the conversation-router with MEDIA_STORE=s3 against the S3 stand-in
 * (fakes3): it starts and becomes ready (sending nothing to S3 before media comes, so an
 * S3 outage cannot stop a start), its configuration hides the secret, and it refuses to
 * start, exit 78, with one line naming the setting, when S3_BUCKET is missing or is no
 * name S3 accepts, or S3_REGION is malformed.
 *
 * Then inbound media through S3 end to end, on the real stack (ingest, token-vault, the
 * router) against the Meta stand-in's CDN: an image from a signed webhook is stored with
 * store 's3', the bucket holding media/<id> sealed (the image's length plus the keyring's
 * overhead, none of its bytes in the clear) and the media table nothing, and `domsctl
 * attachment get` writes exactly the image. An S3 that hangs holds only the media lane's
 * workers, replies with a file included: conversations are still listed at once. S3
 * failing (SlowDown on every attempt) leaves the attachment pending with the failure
 * recorded, never unavailable, however many attempts it took, and it is stored once S3
 * answers; one InternalError is absorbed by the client's own retry. A router with a wrong secret
 * keeps the attachment pending and logs S3's error Code, never a secret; the router with the right
 * one stores it. An image stored before segments is sealed again by the media worker
 * (test_router_s3_objects.c). A reply's file goes to Messenger's upload a segment (one Range GET)
 * at a time. The integration's purge queues the objects' keys in media_doomed, the one that still
 * waited for readers due at once too, and the media worker's sweep deletes them from the bucket,
 * 250 more as fast as S3 takes them (test_router_s3_objects.c).
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "common/keyring.h"
#include "common/mem.h"
#include "common/nats.h"
#include "hang.h"
#include "router_s3_suite.h"

#define AK     "AKIAROUTERS3TEST"
#define SECRET "router-s3-secret-value-0123456789"
#define PAGE   "106000000000031"

struct th_stack st;
struct fakes3 *fs;
struct th_proc router;
static struct th_proc ingest, vault;
static char endpoint_env[128];

/* The router's S3 settings for the end-to-end tests (the endpoint filled in by main). */
static const char *s3_env[] = {"MEDIA_STORE=s3",       NULL,
                               "S3_BUCKET=" BUCKET,    "S3_REGION=eu-central-1",
                               "S3_ACCESS_KEY_ID=" AK, "S3_SECRET_ACCESS_KEY=" SECRET,
                               "MEDIA_TIMEOUT=10s",    NULL};

char image_att[64];
unsigned char image[IMAGE_BYTES];
static char ws[64], integration[64], slow_att[64], blip_att[64], denied_att[64], reply_att[64];

/* Counts the lines of text that contain needle. */
static int lines_with(const char *text, const char *needle)
{
    int n = 0;

    for (const char *line = text; line != NULL && *line != '\0';) {
        const char *end = strchr(line, '\n');
        size_t len = end != NULL ? (size_t)(end - line) : strlen(line);
        char *copy = cm_xstrndup(line, len);
        n += strstr(copy, needle) != NULL;
        free(copy);
        line = end != NULL ? end + 1 : NULL;
    }
    return n;
}

static void test_starts(void)
{
    const char *env[] = {"MEDIA_STORE=s3",
                         endpoint_env,
                         "S3_BUCKET=" BUCKET,
                         "S3_REGION=eu-central-1",
                         "S3_ACCESS_KEY_ID=" AK,
                         "S3_SECRET_ACCESS_KEY=" SECRET,
                         NULL};
    char *log;

    th_stack_start(&st, &router, "conversation-router", env);
    CHECK_INT(fakes3_count(fs, NULL), 0);
    CHECK_INT(th_proc_stop_clean(&router), 0);
    log = th_proc_output(&router);
    CHECK(strstr(log, SECRET) == NULL);
    free(log);
}

/* --print-config shows the S3 settings, the secret masked. */
static void test_print_config(void)
{
    char kek_env[600];
    const char *env[] = {"DATABASE_URL=postgresql://x@127.0.0.1:1/x",
                         kek_env,
                         "MEDIA_STORE=s3",
                         endpoint_env,
                         "S3_BUCKET=" BUCKET,
                         "S3_ACCESS_KEY_ID=" AK,
                         "S3_SECRET_ACCESS_KEY=" SECRET,
                         NULL};
    const char *args[] = {"--print-config", NULL};
    char *out = NULL;

    snprintf(kek_env, sizeof(kek_env), "DOMS_KEK_FILE=%s", st.kek);

    CHECK_INT(th_run("conversation-router", args, env, &out), 0);
    CHECK_CONTAINS(out, "MEDIA_STORE=s3");
    CHECK_CONTAINS(out, "S3_BUCKET=" BUCKET);
    CHECK_CONTAINS(out, "S3_REGION=us-east-1");
    CHECK_CONTAINS(out, "S3_SECRET_ACCESS_KEY=********");
    CHECK(out != NULL && strstr(out, SECRET) == NULL);
    free(out);
}

/*
 * Starts a router with the stack's settings and the S3 ones given (no S3_BUCKET unless
 * bucket is not NULL), expects it to refuse with exit 78 and needle on exactly one line,
 * the only line that names setting.
 */
static void expect_refusal(const char *bucket, const char *region, const char *setting,
                           const char *needle)
{
    char *url = th_db_url(&st.db, "doms_router"), *env[16], *out;
    struct th_proc p;
    int n = 0;

    env[n++] = cm_xasprintf("DATABASE_URL=%s", url);
    env[n++] = cm_xasprintf("NATS_URL=%s", st.nats.url);
    env[n++] = cm_xasprintf("DOMS_KEK_FILE=%s", st.kek);
    env[n++] = cm_xasprintf("CONVERSATION_ROUTER_HTTP_LISTEN=127.0.0.1:%d", th_free_port());
    env[n++] = cm_xstrdup("MEDIA_STORE=s3");
    env[n++] = cm_xstrdup(endpoint_env);
    env[n++] = cm_xstrdup("S3_ACCESS_KEY_ID=" AK);
    env[n++] = cm_xstrdup("S3_SECRET_ACCESS_KEY=" SECRET);
    if (bucket != NULL)
        env[n++] = cm_xasprintf("S3_BUCKET=%s", bucket);
    if (region != NULL)
        env[n++] = cm_xasprintf("S3_REGION=%s", region);
    env[n] = NULL;
    th_proc_start(&p, "conversation-router", NULL, (const char *const *)env);
    CHECK_INT(th_proc_wait(&p, 30000), 78);
    out = th_proc_output(&p);
    CHECK_CONTAINS(out, needle);
    if (strstr(out, needle) != NULL) {
        const char *at = strstr(out, needle), *start = at, *end = strchr(at, '\n');
        while (start > out && start[-1] != '\n')
            start--;
        printf("refused: %.*s\n", (int)(end != NULL ? end - start : (long)strlen(start)), start);
    }
    CHECK_MSG(lines_with(out, setting) == 1, "%s on %d lines: %s", setting,
              lines_with(out, setting), out);
    CHECK(strstr(out, SECRET) == NULL);
    free(out);
    for (int i = 0; i < n; i++)
        free(env[i]);
    free(url);
}

static void test_refusals(void)
{
    expect_refusal(NULL, NULL, "S3_BUCKET", "S3_BUCKET is required with MEDIA_STORE=s3");
    expect_refusal("Doms_Media", NULL, "S3_BUCKET",
                   "S3_BUCKET must be 3 to 63 lowercase letters, digits, dots or hyphens");
    expect_refusal(BUCKET, "eu central", "S3_REGION", "S3_REGION must be lowercase letters");
    CHECK_INT(fakes3_count(fs, NULL), 0);
}

/* --- inbound media through S3, end to end ------------------------------------------------ */

bool sql_is(const char *fmt, const char *att, const char *want)
{
    char *v;

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    v = th_stack_sqlf(&st, fmt, att);
#pragma GCC diagnostic pop
    bool ok = v != NULL && strcmp(v, want) == 0;

    free(v);
    return ok;
}

/* Posts a Messenger message mid from cust-s3 with one image at the CDN's name. */
static void image_message(const char *mid, const char *name, const void *bytes, size_t len)
{
    char *url = fakemeta_cdn_put(st.meta, name, "image/jpeg", bytes, len);
    struct cm_buf b;

    cm_buf_init(&b);
    cm_buf_printf(&b,
                  "{\"object\":\"page\",\"entry\":[{\"id\":\"" PAGE "\",\"time\":%lld,"
                  "\"messaging\":[{\"sender\":{\"id\":\"cust-s3\"},\"recipient\":{\"id\":\"" PAGE
                  "\"},\"timestamp\":%lld,\"message\":{\"mid\":\"%s\",\"attachments\":[{"
                  "\"type\":\"image\",\"payload\":{\"url\":\"%s\"}}]}}]}]}",
                  (long long)th_now_ms(), (long long)th_now_ms(), mid, url);
    CHECK_MSG(th_stack_webhook(&st, b.data) == 200, "webhook refused for %s", mid);
    cm_buf_cleanup(&b);
    free(url);
}

/* The id of message mid's attachment into out, once the router stored it (10 s). */
static bool attachment_of(const char *mid, char out[64])
{
    char *id = NULL;

    snprintf(out, 64, "none");
    if (!WAIT_UNTIL(
            (id = th_stack_sqlf(&st,
                                "SELECT a.id FROM router.attachments a JOIN router.messages m"
                                " ON m.id = a.message_id WHERE m.mid = '%s'",
                                mid)) != NULL,
            10000)) {
        CHECK_MSG(0, "no attachment of %s", mid);
        return false;
    }
    snprintf(out, 64, "%s", id);
    free(id);
    return true;
}

/* Waits (timeout_ms) until att is stored in S3, and checks it. */
static void await_stored(const char *att, int timeout_ms)
{
    CHECK_MSG(WAIT_UNTIL(sql_is("SELECT state || '|' || store FROM router.attachments"
                                " WHERE id = '%s'",
                                att, "stored|s3"),
                         timeout_ms),
              "attachment %s never stored in S3", att);
}

/*
 * Waits until att's failed attempts reach attempts, then checks that it is still pending, its
 * URL kept and the store's failure recorded.
 */
static void await_pending_after(const char *att, const char *attempts)
{
    char *n = NULL;

    CHECK_MSG(
        WAIT_UNTIL(sql_is("SELECT attempts FROM router.attachments WHERE id = '%s'", att, attempts),
                   20000),
        "attachment %s: no attempt %s", att, attempts);
    n = th_stack_sqlf(
        &st,
        "SELECT state || '|' || (source_sealed IS NOT NULL) || '|' || coalesce(store, '-')"
        " || '|' || coalesce(error, '') FROM router.attachments WHERE id = '%s'",
        att);
    CHECK_CONTAINS(n, "pending|true|-|the media store failed");
    printf("after attempt %s: %s\n", attempts, n != NULL ? n : "(none)");
    free(n);
}

static void test_e2e_setup(void)
{
    th_stack_start(&st, &vault, "token-vault", NULL);
    th_stack_start(&st, &ingest, "webhook-ingest", NULL);
    th_stack_start(&st, &router, "conversation-router", s3_env);
    th_stack_workspace(&st, "S3 media", false, ws);
    th_stack_connect(&st, ws, "messenger", PAGE, "short-s3", NULL, integration);
    randombytes_buf(image, sizeof(image));
    memcpy(image, MARKER, strlen(MARKER));
}

/* The image stored in S3, sealed, nothing of it in the media table; `attachment get` writes
 * exactly its bytes. */
static void test_e2e_stored(void)
{
    char path[256], key[96], want[64], *n;
    const char *args[] = {"attachment", "get", image_att, "--out", path, NULL};
    const struct fakehttp_request *put;
    struct cm_buf obj;
    cJSON *out;

    image_message("m_s3_img", "s3-img", image, sizeof(image));
    if (!attachment_of("m_s3_img", image_att))
        return;
    await_stored(image_att, 15000);
    n = th_stack_sqlf(
        &st,
        "SELECT size || '|' || content_type || '|' || (source_sealed IS NULL) || '|' ||"
        " (SELECT count(*) FROM router.media WHERE attachment_id = a.id)"
        " FROM router.attachments a WHERE id = '%s'",
        image_att);
    snprintf(want, sizeof(want), "%d|image/jpeg|true|0", IMAGE_BYTES);
    CHECK_STR(n, want);
    free(n);
    n = th_stack_sql(&st, "SELECT count(*) FROM router.media");
    CHECK_STR(n, "0");
    free(n);

    /* The bucket holds the sealed image only, in two segments (larger than a chunk): its
     * length plus two overheads, no plaintext. */
    n = th_stack_sqlf(&st,
                      "SELECT segment_size || '|' || segment_stride FROM router.attachments"
                      " WHERE id = '%s'",
                      image_att);
    snprintf(want, sizeof(want), "%d|%d", SEGMENT, SEGMENT + CM_KEYRING_OVERHEAD);
    CHECK_STR(n, want);
    free(n);
    snprintf(key, sizeof(key), "media/%s", image_att);
    cm_buf_init(&obj);
    CHECK_MSG(fakes3_object(fs, key, &obj) == 0, "no object %s", key);
    CHECK_INT((long)obj.len, (long)(IMAGE_BYTES + 2 * CM_KEYRING_OVERHEAD));
    CHECK(obj.data == NULL || memmem(obj.data, obj.len, MARKER, strlen(MARKER)) == NULL);
    CHECK(obj.data == NULL || memmem(obj.data, obj.len, image + IMAGE_BYTES / 2, 32) == NULL);
    cm_buf_cleanup(&obj);
    snprintf(path, sizeof(path), "/%s/%s", BUCKET, key);
    put = fakehttp_find(fakes3_http(fs), path);
    CHECK(put != NULL);
    if (put != NULL)
        CHECK_STR(fakehttp_header(put, "Content-Type"), "application/octet-stream");

    /* The user's path: domsctl reads it back through the router, from S3. */
    snprintf(path, sizeof(path), "%s/s3-img.jpg", th_tmpdir());
    out = th_stack_run(&st, 0, args);
    CHECK_STR(th_json_str(out, "attachment_id", NULL), image_att);
    CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(out, "size")) == IMAGE_BYTES);
    cJSON_Delete(out);
    {
        FILE *f = fopen(path, "rb");
        unsigned char *got = cm_xmalloc(IMAGE_BYTES + 1);
        size_t len = f != NULL ? fread(got, 1, IMAGE_BYTES + 1, f) : 0;
        CHECK_INT((long)len, IMAGE_BYTES);
        CHECK(len == IMAGE_BYTES && memcmp(got, image, IMAGE_BYTES) == 0);
        free(got);
        if (f != NULL)
            fclose(f);
    }
    unlink(path);
    /* Each chunk was one Range request for its segment, never the whole object. */
    CHECK(fakes3_count(fs, "GET") >= 2);
    CHECK_MSG(fakes3_largest_get(fs) <= (size_t)SEGMENT + CM_KEYRING_OVERHEAD,
              "a GET answered %zu bytes", fakes3_largest_get(fs));
}

/* Answers one held request (a read, a put or a delete) as S3 does a key it may not read or
 * write (403, not retried), and closes. */
static void refuse_as_s3(int fd)
{
    static const char doc[] = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>"
                              "AccessDenied</Code><Message>Access Denied</Message></Error>";
    char head[160];
    int len;

    th_hang_read_request(fd);
    len = snprintf(head, sizeof(head),
                   "HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\n"
                   "Connection: close\r\nContent-Length: %zu\r\n\r\n",
                   sizeof(doc) - 1);
    CHECK(write(fd, head, (size_t)len) == len);
    CHECK(write(fd, doc, sizeof(doc) - 1) == (ssize_t)(sizeof(doc) - 1));
    close(fd);
}

/* Opens an upload of a small picture on conv, complete in its one chunk; its id in id. */
static void small_upload(const char *conv, char id[64])
{
    static const char png[] = "PNG-a-small-picture-for-a-reply-while-S3-hangs";
    char body[512], b64[128];
    cJSON *r;

    sodium_bin2base64(b64, sizeof(b64), (const unsigned char *)png, sizeof(png) - 1,
                      sodium_base64_VARIANT_ORIGINAL);
    snprintf(body, sizeof(body),
             "{\"conversation_id\":\"%s\",\"offset\":0,\"size\":%zu,\"type\":\"image\","
             "\"content_type\":\"image/png\",\"data\":\"%s\",\"final\":true}",
             conv, sizeof(png) - 1, b64);
    r = th_stack_request(&st, "router.upload", body);
    snprintf(id, 64, "%s",
             th_json_str(r, "result", "upload_id") ? th_json_str(r, "result", "upload_id") : "");
    CHECK_MSG(cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetObjectItem(r, "result"), "complete")),
              "the upload for a reply is complete");
    cJSON_Delete(r);
}

/*
 * S3 hangs (a socket that takes connections and never answers) while more attachment reads
 * than the router's media lane has workers (2) wait on it, and more replies with a file (whose
 * file goes to S3) than the main lane has workers (4) are sent: conversations are still
 * listed at once, by the main lane. With one pool of workers the list waited for
 * MEDIA_TIMEOUT, and so it did while the main lane put the replies' files. Then S3 refuses
 * every read and every put, each is answered (a reply refused, its upload kept), and the
 * router with the real S3 comes back.
 */
static void test_e2e_media_lane(void)
{
    struct th_hang s3;
    char hung_endpoint[96], body[200];
    const char *hung_env[] = {"MEDIA_STORE=s3",       hung_endpoint,
                              "S3_BUCKET=" BUCKET,    "S3_REGION=eu-central-1",
                              "S3_ACCESS_KEY_ID=" AK, "S3_SECRET_ACCESS_KEY=" SECRET,
                              "MEDIA_TIMEOUT=10s",    NULL};
    struct th_proc hung;
    natsMsg *reply = NULL;
    cJSON *list = NULL;
    char *conv = th_stack_sql(&st, "SELECT id FROM router.conversations LIMIT 1");
    char uploads[4][64];
    natsSubscription *answers = NULL;
    int64_t t0;
    int held;

    for (int i = 0; i < 4; i++)
        small_upload(conv != NULL ? conv : "none", uploads[i]);
    CHECK(th_hang_start(&s3) == 0);
    snprintf(hung_endpoint, sizeof(hung_endpoint), "S3_ENDPOINT=%s", s3.url);
    CHECK_INT(th_proc_stop_clean(&router), 0);
    th_stack_start(&st, &hung, "conversation-router", hung_env);

    /* Six reads, more than all the workers of the main lane (4); nobody awaits them. */
    snprintf(body, sizeof(body), "{\"actor\":\"operator\",\"attachment_id\":\"%s\"}", image_att);
    for (int i = 0; i < 6; i++) {
        char inbox[40];
        snprintf(inbox, sizeof(inbox), "_INBOX.media-lane.unread.%d", i);
        CHECK(natsConnection_PublishRequestString(st.nc, "router.attachment.get.operator", inbox,
                                                  body) == NATS_OK);
    }
    CHECK(natsConnection_FlushTimeout(st.nc, 5000) == NATS_OK);
    /* Ready when S3 holds as many reads as the media lane has workers. */
    held = th_hang_hold(&s3, 2, 15000);
    CHECK_MSG(held >= 2, "only %d reads reached S3", held);
    /* Four replies with a file, as many as the main lane has workers; their answers are read
     * at the end. */
    CHECK(natsConnection_SubscribeSync(&answers, st.nc, "_INBOX.media-lane.reply.*") == NATS_OK);
    for (int i = 0; i < 4; i++) {
        char inbox[40];
        snprintf(inbox, sizeof(inbox), "_INBOX.media-lane.reply.%d", i);
        snprintf(body, sizeof(body),
                 "{\"actor\":\"operator\",\"conversation_id\":\"%s\",\"upload_id\":\"%s\"}",
                 conv != NULL ? conv : "none", uploads[i]);
        CHECK(natsConnection_PublishRequestString(st.nc, "router.reply.operator", inbox, body) ==
              NATS_OK);
    }
    CHECK(natsConnection_FlushTimeout(st.nc, 5000) == NATS_OK);

    t0 = th_now_ms();
    snprintf(body, sizeof(body), "{\"actor\":\"operator\",\"workspace_id\":\"%s\"}", ws);
    CHECK(cm_nats_request_as(&reply, st.nc, "operator", "router.conversations.list", body, 3000) ==
          NATS_OK);
    if (reply != NULL)
        list = cJSON_ParseWithLength(natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply));
    CHECK_MSG(cJSON_IsArray(cJSON_GetObjectItem(list, "result")),
              "conversations listed while S3 hangs");
    if (reply != NULL)
        printf("  conversations listed in %lld ms while %d reads wait on S3\n",
               (long long)(th_now_ms() - t0), held);
    cJSON_Delete(list);
    natsMsg_Destroy(reply);

    /* S3 refuses at last (403, not retried): every read is answered, and every reply's put,
     * and the delete that follows a failed put (best effort: a put that failed may still
     * have stored the object); then the router stops. */
    CHECK_INT(th_hang_answer(&s3, refuse_as_s3, 14, 15000), 14);
    th_hang_stop(&s3);
    /* Each reply answered once, by the media lane: refused, since its file could not be put. */
    for (int i = 0; i < 4; i++) {
        natsMsg *m = NULL;
        cJSON *r = NULL;
        CHECK_MSG(natsSubscription_NextMsg(&m, answers, 15000) == NATS_OK, "reply %d answered", i);
        if (m != NULL)
            r = cJSON_ParseWithLength(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m));
        CHECK_STR(th_json_str(r, "error", "code"), "unavailable");
        cJSON_Delete(r);
        natsMsg_Destroy(m);
    }
    natsSubscription_Destroy(answers);
    free(conv);
    CHECK_INT(th_proc_stop_clean(&hung), 0);
    th_stack_start(&st, &router, "conversation-router", s3_env);
}

/*
 * S3 answering SlowDown to every attempt: the attachment stays pending, tried again after the
 * backoff, the failure recorded. An outage long enough to spend the attempts a CDN failure has
 * (8) still loses nothing (the row is made due with 7 behind it, as after an hour of S3
 * down); once S3 answers, it is stored. One InternalError is absorbed by the client's retry.
 */
static void test_e2e_s3_failing(void)
{
    static const unsigned char slow[] = "JFIF an image that came while S3 was slowing down";
    static const unsigned char blip[] = "JFIF an image that met one InternalError";
    int puts = fakes3_count(fs, "PUT");
    char *n;

    fakes3_fail_next(fs, 1000, 503);
    image_message("m_s3_slow", "s3-slow", slow, sizeof(slow));
    if (attachment_of("m_s3_slow", slow_att)) {
        await_pending_after(slow_att, "1");
        /* The client's own attempts, then the worker's backoff (30 s). */
        CHECK_INT(fakes3_count(fs, "PUT") - puts, 3);
        CHECK(sql_is("SELECT due_at > now() + interval '20 seconds' FROM router.attachments"
                     " WHERE id = '%s'",
                     slow_att, "t"));
        free(th_stack_sqlf(
            &st, "UPDATE router.attachments SET attempts = 7, due_at = now() WHERE id = '%s'",
            slow_att));
        await_pending_after(slow_att, "8");
        CHECK(sql_is("SELECT count(*) FROM router.attachments WHERE id = '%s'"
                     " AND due_at > now() + interval '30 minutes'",
                     slow_att, "1"));
    }
    fakes3_fail_next(fs, 0, 0);
    free(th_stack_sqlf(&st, "UPDATE router.attachments SET due_at = now() WHERE id = '%s'",
                       slow_att));
    await_stored(slow_att, 15000);
    n = th_stack_sqlf(&st,
                      "SELECT size || '|' || coalesce(error, 'no error') FROM router.attachments"
                      " WHERE id = '%s'",
                      slow_att);
    {
        char want[64];
        snprintf(want, sizeof(want), "%zu|no error", sizeof(slow));
        CHECK_STR(n, want);
    }
    free(n);

    puts = fakes3_count(fs, "PUT");
    fakes3_fail_next(fs, 1, 500);
    image_message("m_s3_blip", "s3-blip", blip, sizeof(blip));
    if (attachment_of("m_s3_blip", blip_att)) {
        await_stored(blip_att, 15000);
        CHECK(sql_is("SELECT attempts FROM router.attachments WHERE id = '%s'", blip_att, "1"));
        CHECK_INT(fakes3_count(fs, "PUT") - puts, 2);
    }
}

/*
 * A router with a wrong secret: S3 refuses its signature, the attachment stays pending with its
 * URL, and the log names S3's Code, never a secret. The router with the right secret, back,
 * stores it at its next attempt (made due at once rather than after the 30 s backoff).
 */
static void test_e2e_wrong_secret(void)
{
    static const unsigned char bytes[] = "JFIF an image that met a wrong S3 secret";
    const char *bad_env[] = {
        "MEDIA_STORE=s3",       endpoint_env,
        "S3_BUCKET=" BUCKET,    "S3_REGION=eu-central-1",
        "S3_ACCESS_KEY_ID=" AK, "S3_SECRET_ACCESS_KEY=not-the-" SECRET "-at-all",
        "MEDIA_TIMEOUT=10s",    NULL};
    struct th_proc bad;
    int refused = fakes3_bad_signatures(fs);
    char *log, code[64];

    CHECK_INT(th_proc_stop_clean(&router), 0);
    th_stack_start(&st, &bad, "conversation-router", bad_env);
    image_message("m_s3_denied", "s3-denied", bytes, sizeof(bytes));
    if (attachment_of("m_s3_denied", denied_att))
        await_pending_after(denied_att, "1");
    CHECK(fakes3_bad_signatures(fs) > refused);
    fakes3_last_error(fs, code);
    CHECK_STR(code, "SignatureDoesNotMatch");
    CHECK_INT(th_proc_stop_clean(&bad), 0);
    log = th_proc_output(&bad);
    CHECK_CONTAINS(log, "SignatureDoesNotMatch");
    CHECK_CONTAINS(log, denied_att);
    CHECK(log != NULL && strstr(log, SECRET) == NULL);
    CHECK(log != NULL && strstr(log, "not-the-") == NULL);
    free(log);

    th_stack_start(&st, &router, "conversation-router", s3_env);
    free(th_stack_sqlf(&st, "UPDATE router.attachments SET due_at = now() WHERE id = '%s'",
                       denied_att));
    await_stored(denied_att, 15000);
}

/*
 * A reply whose transaction fails after its file was put in S3 (a trigger, for the test, makes
 * the upload's deletion fail): the reply is refused as unavailable and the object is deleted
 * again, so the bucket keeps no object of an attachment that never was.
 */
static void test_e2e_reply_rolled_back(void)
{
    char *conv = th_stack_sql(&st, "SELECT id FROM router.conversations LIMIT 1");
    char path[256], *why = NULL;
    const char *args[] = {"reply", conv != NULL ? conv : "none", "--file", path, NULL};
    int puts = fakes3_count(fs, "PUT"), deletes = fakes3_count(fs, "DELETE");
    struct cm_buf keys;
    FILE *f;

    snprintf(path, sizeof(path), "%s/rolled-back.png", th_tmpdir());
    f = fopen(path, "wb");
    CHECK(f != NULL && fwrite(image, 1, 4096, f) == 4096);
    if (f != NULL)
        fclose(f);
    free(th_stack_sql(&st, "CREATE FUNCTION router.test_fail_upload_delete() RETURNS trigger"
                           " LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'the test fails it';"
                           " END$$"));
    free(th_stack_sql(&st, "CREATE TRIGGER test_fail_upload_delete BEFORE DELETE ON"
                           " router.uploads FOR EACH ROW EXECUTE FUNCTION"
                           " router.test_fail_upload_delete()"));
    CHECK(th_stack_domsctl(&st, NULL, &why, args) != 0);
    CHECK_CONTAINS(why, "could not be queued");
    CHECK_INT(fakes3_count(fs, "PUT") - puts, 1);
    CHECK_INT(fakes3_count(fs, "DELETE") - deletes, 1);
    cm_buf_init(&keys);
    /* Four attachments' objects, and the one test_e2e_legacy left for readers: none more. */
    CHECK_INT(fakes3_keys(fs, &keys), 5);
    cm_buf_cleanup(&keys);
    free(th_stack_sql(&st, "DROP TRIGGER test_fail_upload_delete ON router.uploads"));
    free(th_stack_sql(&st, "DROP FUNCTION router.test_fail_upload_delete()"));
    free(why);
    free(conv);
}

/*
 * A reply's file in S3 to Messenger's Attachment Upload API: the sender reads it a segment at a
 * time (one Range GET each, inside the upload) and Meta receives exactly its bytes.
 */
static void test_e2e_reply_file(void)
{
    char *conv = th_stack_sql(&st, "SELECT id FROM router.conversations LIMIT 1");
    char path[256], got_id[40], type[16], ctype[128];
    const char *args[] = {"reply", conv != NULL ? conv : "none", "--file", path, NULL};
    int uploads = fakemeta_uploads(st.meta), gets = fakes3_count(fs, "GET");
    unsigned char *got = NULL;
    size_t len = 0;
    cJSON *out;
    char *v;
    FILE *f;

    snprintf(path, sizeof(path), "%s/reply.png", th_tmpdir());
    f = fopen(path, "wb");
    CHECK(f != NULL && fwrite(image, 1, IMAGE_BYTES, f) == IMAGE_BYTES);
    if (f != NULL)
        fclose(f);
    out = th_stack_run(&st, 0, args);
    cJSON_Delete(out);
    CHECK_WAIT(fakemeta_uploads(st.meta) > uploads, 15000);
    got = fakemeta_upload_get(st.meta, uploads, &len, got_id, type, ctype);
    CHECK_INT((long)len, IMAGE_BYTES);
    CHECK(got != NULL && len == IMAGE_BYTES && memcmp(got, image, IMAGE_BYTES) == 0);
    free(got);
    /* Two segments, two Range GETs, none larger than a segment. */
    CHECK(fakes3_count(fs, "GET") - gets >= 2);
    CHECK_MSG(fakes3_largest_get(fs) <= (size_t)SEGMENT + CM_KEYRING_OVERHEAD,
              "a GET answered %zu bytes", fakes3_largest_get(fs));
    v = th_stack_sql(&st, "SELECT id FROM router.attachments WHERE direction = 'out'"
                          " AND store = 's3' AND state = 'stored'");
    snprintf(reply_att, sizeof(reply_att), "%s", v != NULL ? v : "");
    free(v);
    CHECK(reply_att[0] != '\0');
    unlink(path);
    free(conv);
}

/*
 * The integration's purge deletes its attachments and queues their objects' keys in
 * media_doomed (S3 failing meanwhile, so the sweep cannot take them before they are seen; the
 * first refusal ends a sweep, its key due again 30 s later); once S3 answers, the sweep deletes
 * them from the bucket.
 */
static void test_e2e_purge(void)
{
    const char *atts[] = {image_att, slow_att, blip_att, denied_att, reply_att};
    char body[256], q[1024];
    struct cm_buf keys;
    size_t len;
    cJSON *r;
    char *n;

    cm_buf_init(&keys);
    /* Five attachments, and the image's object from before it was sealed again
     * (test_e2e_legacy), doomed and not yet due. */
    CHECK_INT(fakes3_keys(fs, &keys), 6);
    /* Every object sealed: the attachment's size plus an overhead a segment, none of its
     * plaintext. */
    for (size_t i = 0; i < sizeof(atts) / sizeof(atts[0]); i++) {
        char *size =
                 th_stack_sqlf(&st, "SELECT size FROM router.attachments WHERE id = '%s'", atts[i]),
             *key = th_stack_sqlf(&st,
                                  "SELECT coalesce(object_key, 'media/' || id)"
                                  " FROM router.attachments WHERE id = '%s'",
                                  atts[i]);
        struct cm_buf obj;
        cm_buf_init(&obj);
        CHECK_MSG(key != NULL && fakes3_object(fs, key, &obj) == 0, "no object %s", key);
        long long plain = size != NULL ? atoll(size) : -1;
        long long pieces = plain > SEGMENT ? (plain + SEGMENT - 1) / SEGMENT : 1;
        CHECK_INT((long long)obj.len, plain + pieces * CM_KEYRING_OVERHEAD);
        CHECK(obj.data == NULL || (memmem(obj.data, obj.len, "JFIF an image that", 18) == NULL &&
                                   memmem(obj.data, obj.len, MARKER, strlen(MARKER)) == NULL));
        cm_buf_cleanup(&obj);
        free(size);
        free(key);
    }
    fakes3_fail_next(fs, 100000, 503);
    snprintf(
        body, sizeof(body),
        "{\"actor\":\"retention-reaper\",\"scope\":\"integration\",\"integration_ids\":[\"%s\"]}",
        integration);
    r = th_stack_request_as(&st, "retention-reaper", "router.purge", body);
    CHECK(r != NULL && th_json_str(r, "error", "code") == NULL);
    CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(
              cJSON_GetObjectItem(cJSON_GetObjectItem(r, "result"), "deleted"), "attachments")) ==
          5);
    cJSON_Delete(r);
    n = th_stack_sqlf(&st, "SELECT count(*) FROM router.attachments WHERE integration_id = '%s'",
                      integration);
    CHECK_STR(n, "0");
    free(n);
    /* Every object due now, the one that was waiting for readers too (a sweep S3 refused
     * meanwhile makes one due 30 s later: still not the ten minutes readers get). */
    len = (size_t)snprintf(q, sizeof(q),
                           "SELECT count(*) FROM router.media_doomed WHERE due_at <"
                           " now() + interval '1 minute' AND attachment_id IN (''");
    for (size_t i = 0; i < sizeof(atts) / sizeof(atts[0]); i++)
        len += (size_t)snprintf(q + len, sizeof(q) - len, ", '%s'", atts[i]);
    snprintf(q + len, sizeof(q) - len, ")");
    n = th_stack_sql(&st, q);
    CHECK_STR(n, "6");
    free(n);
    CHECK_INT(fakes3_keys(fs, &keys), 6);

    /* The sweep the purge woke (not the next of every 30 s) meets S3 refusing: its first
     * refusal ends the batch, and that key is due again 30 s later; the others wait for the
     * next sweep as they were. */
    CHECK_MSG(WAIT_UNTIL(th_stack_count(&st, "SELECT count(*) FROM router.media_doomed"
                                             " WHERE attempts > 0") > 0,
                         8000),
              "no sweep met S3's refusal");
    n = th_stack_sql(&st, "SELECT count(*) || '|' || count(*) FILTER (WHERE due_at > now()"
                          " + interval '15 seconds') FROM router.media_doomed WHERE attempts > 0");
    CHECK_STR(n, "1|1");
    free(n);
    CHECK_INT(fakes3_keys(fs, &keys), 6);
    fakes3_fail_next(fs, 0, 0);
    bool gone = WAIT_UNTIL(fakes3_keys(fs, &keys) == 0, 75000);
    CHECK_MSG(gone, "the bucket still holds: %s", keys.data != NULL ? keys.data : "");
    CHECK(WAIT_UNTIL(sql_is("SELECT count(*) FROM router.media_doomed%s", "", "0"), 10000));
    cm_buf_cleanup(&keys);
}

/* Neither secret nor the images' plaintext in the router's log; the attachment ids are. */
static void test_e2e_log(void)
{
    char *log;

    CHECK_INT(th_proc_stop_clean(&router), 0);
    log = th_proc_output(&router);
    CHECK(log != NULL && strstr(log, SECRET) == NULL);
    CHECK(log != NULL && strstr(log, "JFIF") == NULL);
    CHECK_CONTAINS(log, denied_att);
    free(log);
}

int main(void)
{
    th_init("router_s3");
    if (sodium_init() < 0)
        return 1;
    th_stack_init(&st);
    if (fakes3_start(&fs, AK, SECRET, BUCKET) != 0) {
        printf("FAIL: fakes3_start\n");
        return 1;
    }
    fakes3_set_region(fs, "eu-central-1");
    snprintf(endpoint_env, sizeof(endpoint_env), "S3_ENDPOINT=%s", fakes3_url(fs));
    RUN(test_starts);
    RUN(test_print_config);
    RUN(test_refusals);
    s3_env[1] = endpoint_env;
    RUN(test_e2e_setup);
    RUN(test_e2e_stored);
    RUN(test_e2e_legacy);
    RUN(test_e2e_media_lane);
    RUN(test_e2e_s3_failing);
    RUN(test_e2e_wrong_secret);
    RUN(test_e2e_reply_rolled_back);
    RUN(test_e2e_reply_file);
    RUN(test_e2e_purge);
    RUN(test_e2e_sweep_many);
    RUN(test_e2e_log);
    th_stack_stop(&st);
    fakes3_stop(fs);
    return check_summary();
}
