/*
 * test_router_media - inbound attachments end to end (issue 12 item 5): signed webhooks
 * through ingest, token-vault and two router replicas, against the Meta stand-in's CDN and
 * Graph attachments edge (fakemeta_media.c). An image is downloaded promptly and `domsctl
 * attachment get` writes the same bytes (in several chunks), audited, also from one stored
 * before segments, which its first read seals again in segments; a CDN URL that expired
 * before the download is fetched again through Graph (Messenger and Instagram); one Meta no
 * longer has becomes unavailable with the reason; Instagram's lookaside URL is followed to the
 * CDN; one over MEDIA_MAX_BYTES is unavailable with
 * nothing kept; a CDN failing is tried again later; a story mention is a reference, never
 * downloaded, forgotten once expired; a duplicate webhook adds no row; messages list shows
 * attachments; a viewer outside the workspace is refused; a purge removes attachments and media;
 * and neither the media bytes, the CDN URLs nor the contact's name is in plaintext in the router's
 * schema or its log.
 */
#include <cjson/cJSON.h>
#include <nats/nats.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "common/crypto.h"
#include "common/keyring.h"
#include "common/mem.h"
#include "router_suite.h"

/* The definitions router_suite.h names, for this program. */
struct th_stack st;
struct th_proc ingest, vault, router1, router2, router1_first;
int router1_port, router2_port;
int64_t now_ms_;

#define MAX_BYTES   (1024 * 1024)
#define IMAGE_BYTES (600 * 1024) /* two chunks of router.attachment.get */
/* The router's ROUTER_MEDIA_SEGMENT: a chunk, and a segment of what is sealed. */
#define ROUTER_SEGMENT (512 * 1024)
const char *const router_env[] = {"MEDIA_MAX_BYTES=1MiB", "MEDIA_TIMEOUT=5s", "PROFILE_RATE=600",
                                  NULL};

static char ws[64], ig_integration[64], image_att[64], image_conv[64];
static unsigned char image[IMAGE_BYTES];
static char image_hex[33]; /* 16 bytes from the image's middle, in hex: what a scan looks for */

/*
 * A message mid from psid to the Page (or the Instagram account when ig) at Meta's time ts,
 * with attachments (a JSON array's text, may be NULL) and text (may be NULL).
 */
static void message(bool ig, const char *psid, const char *mid, int64_t ts, const char *atts,
                    const char *text)
{
    CHECK_MSG(th_stack_message(&st, ig, ig ? IG : PAGE, th_now_ms(), psid, ts, mid, text, atts) ==
                  200,
              "webhook refused for %s", mid);
}

/* One attachment of type at url, as Meta's webhook carries it (a new string). */
static char *one(const char *type, const char *url)
{
    struct cm_buf b;

    cm_buf_init(&b);
    cm_buf_printf(&b, "[{\"type\":\"%s\",\"payload\":{\"url\":\"%s\"}}]", type, url);
    return b.data;
}

/* The id of the attachment at position pos of message mid into out, once stored (10 s). */
static bool attachment_of(const char *mid, int pos, char out[64])
{
    char q[512], *id = NULL;

    snprintf(q, sizeof(q),
             "SELECT a.id FROM router.attachments a JOIN router.messages m ON m.id = a.message_id"
             " WHERE m.mid = '%s' AND a.position = %d",
             mid, pos);
    if (!WAIT_UNTIL((id = th_stack_sql(&st, q)) != NULL, 10000)) {
        CHECK_MSG(0, "no attachment %d of %s", pos, mid);
        snprintf(out, 64, "none");
        return false;
    }
    snprintf(out, 64, "%s", id);
    free(id);
    return true;
}

/* Whether att's state is want now. */
static bool state_is(const char *att, const char *want)
{
    char *s = th_stack_sqlf(&st, "SELECT state FROM router.attachments WHERE id = '%s'", att);
    bool ok = s != NULL && strcmp(s, want) == 0;

    free(s);
    return ok;
}

/* Waits until att is in state want (15 s); checks it. */
static void await_state(const char *att, const char *want)
{
    CHECK_MSG(WAIT_UNTIL(state_is(att, want), 15000), "attachment %s never became %s", att, want);
}

/* The last audit event of the router's, waiting until its subject is subject (free it). */
static cJSON *audit_of(const char *subject)
{
    cJSON *json = NULL;

    for (int i = 0; i < 100; i++) {
        json = th_stack_last_event(&st, "AUDIT", "audit.conversation-router");
        if (th_json_str(json, "subject", NULL) != NULL &&
            strcmp(th_json_str(json, "subject", NULL), subject) == 0)
            break;
        cJSON_Delete(json);
        json = NULL;
        check_pause_ms(100);
    }
    return json;
}

static void test_setup(void)
{
    th_stack_workspace(&st, "Media", false, ws);
    th_stack_connect(&st, ws, "messenger", PAGE, "short-media", NULL, NULL);
    th_stack_connect(&st, ws, "instagram", IG, "short-ig-media", NULL, ig_integration);
    randombytes_buf(image, sizeof(image));
    cm_hex_encode(image + IMAGE_BYTES / 2, 16, image_hex);
}

/* An image is downloaded promptly, and `attachment get` writes exactly its bytes (two chunks),
 * to a file of mode 0600, audited. */
static void test_image_downloaded(void)
{
    char *url = fakemeta_cdn_put(st.meta, "img-ada", "image/jpeg", image, sizeof(image));
    char *atts = one("image", url), *conv, path[256];
    const char *args[] = {"attachment", "get", image_att, "--out", path, NULL};
    struct stat sb;
    cJSON *out, *au;
    FILE *f;

    message(false, "cust-ada", "m_img_1", th_now_ms(), atts, "look at this");
    if (!attachment_of("m_img_1", 0, image_att))
        goto done;
    await_state(image_att, "stored");
    conv = th_stack_sqlf(&st, "SELECT conversation_id FROM router.attachments WHERE id = '%s'",
                         image_att);
    snprintf(image_conv, sizeof(image_conv), "%s", conv ? conv : "none");
    free(conv);
    {
        char *n =
            th_stack_sqlf(&st,
                          "SELECT size || '|' || content_type || '|' || store || '|'"
                          " || (source_sealed IS NULL) FROM router.attachments WHERE id = '%s'",
                          image_att);
        char want[64];
        snprintf(want, sizeof(want), "%d|image/jpeg|postgres|true", IMAGE_BYTES);
        CHECK_STR(n, want);
        free(n);
    }
    snprintf(path, sizeof(path), "%s/img-ada.jpg", th_tmpdir());
    out = th_stack_run(&st, 0, args);
    CHECK_STR(th_json_str(out, "attachment_id", NULL), image_att);
    CHECK_STR(th_json_str(out, "type", NULL), "image");
    CHECK_STR(th_json_str(out, "content_type", NULL), "image/jpeg");
    CHECK_STR(th_json_str(out, "file", NULL), path);
    CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(out, "size")) == IMAGE_BYTES);
    cJSON_Delete(out);
    CHECK(stat(path, &sb) == 0 && (sb.st_mode & 0777) == 0600 && sb.st_size == IMAGE_BYTES);
    f = fopen(path, "rb");
    if (f != NULL) {
        unsigned char *got = cm_xmalloc(IMAGE_BYTES + 1);
        size_t n = fread(got, 1, IMAGE_BYTES + 1, f);
        CHECK(n == IMAGE_BYTES && memcmp(got, image, IMAGE_BYTES) == 0);
        free(got);
        fclose(f);
    }
    {
        char tmp[300];
        snprintf(tmp, sizeof(tmp), "%s.tmp", path);
        CHECK(access(tmp, F_OK) != 0);
    }
    unlink(path);
    au = audit_of(image_att);
    CHECK_STR(th_json_str(au, "action", NULL), "attachments.read");
    CHECK_STR(th_json_str(au, "actor", NULL), "operator");
    cJSON_Delete(au);
    CHECK(fakemeta_cdn_gets(st.meta, "img-ada") == 1);
done:
    free(atts);
    free(url);
}

/* The image's row says two segments, and its sealed bytes are that long. */
static void check_segmented(void)
{
    char want[96], *n = th_stack_sqlf(&st,
                                      "SELECT a.segment_size || '|' || a.segment_stride || '|'"
                                      " || length(m.sealed) FROM router.attachments a JOIN"
                                      " router.media m ON m.attachment_id = a.id WHERE a.id = '%s'",
                                      image_att);

    snprintf(want, sizeof(want), "%d|%ld|%ld", ROUTER_SEGMENT,
             (long)ROUTER_SEGMENT + CM_KEYRING_OVERHEAD,
             (long)IMAGE_BYTES + 2 * CM_KEYRING_OVERHEAD);
    CHECK_STR(n, want);
    free(n);
}

/*
 * The image is larger than a chunk, so it is sealed in two segments laid end to end
 * (schema/012_media_segments.sql): the second holds the rest. A sealed segment put in another's
 * place is refused, as one of another attachment would be (its index and count are bound into
 * what it seals): the chunk it holds cannot be read, the other one still can. Put back, the
 * whole file reads again.
 */
static void test_segments(void)
{
    const long stride = ROUTER_SEGMENT + CM_KEYRING_OVERHEAD;
    const char *args[] = {"attachment", "get", image_att, "--out", NULL, NULL};
    char path[256];
    cJSON *out;

    check_segmented();
    snprintf(path, sizeof(path), "%s/img-seg.jpg", th_tmpdir());
    args[4] = path;

    /* Segment 0 sealed again in segment 1's place (the file: 0, 0, then 1 kept aside). */
    free(th_stack_sqlf(&st,
                       "UPDATE router.media SET sealed = substring(sealed FROM 1 FOR %ld)"
                       " || sealed WHERE attachment_id = '%s'",
                       stride, image_att));
    out = th_stack_run(&st, 1, args);
    cJSON_Delete(out);
    CHECK(access(path, F_OK) != 0);
    {
        char *l1 = th_proc_output(&router1), *l2 = th_proc_output(&router2);
        CHECK((l1 != NULL && strstr(l1, "the stored bytes could not be read") != NULL) ||
              (l2 != NULL && strstr(l2, "the stored bytes could not be read") != NULL));
        free(l1);
        free(l2);
    }
    {
        /* The first chunk alone still opens: only the moved segment is refused. */
        char req[160];
        cJSON *r;
        snprintf(req, sizeof(req), "{\"actor\":\"operator\",\"attachment_id\":\"%s\",\"offset\":0}",
                 image_att);
        r = th_stack_request(&st, "router.attachment.get", req);
        CHECK(r != NULL &&
              cJSON_IsFalse(cJSON_GetObjectItem(cJSON_GetObjectItem(r, "result"), "eof")));
        cJSON_Delete(r);
        snprintf(req, sizeof(req),
                 "{\"actor\":\"operator\",\"attachment_id\":\"%s\",\"offset\":%d}", image_att,
                 ROUTER_SEGMENT);
        r = th_stack_request(&st, "router.attachment.get", req);
        CHECK_STR(th_json_str(r, "error", "code"), "unavailable");
        cJSON_Delete(r);
    }

    /* Put back: the whole file reads again. */
    free(th_stack_sqlf(&st,
                       "UPDATE router.media SET sealed = substring(sealed FROM %ld)"
                       " WHERE attachment_id = '%s'",
                       stride + 1, image_att));
    out = th_stack_run(&st, 0, args);
    CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(out, "size")) == IMAGE_BYTES);
    cJSON_Delete(out);
    {
        char *got = th_read_file(path);
        CHECK(got != NULL && memcmp(got, image, IMAGE_BYTES) == 0);
        free(got);
    }
    unlink(path);
}

/*
 * An attachment stored before segments: the image sealed whole, in one piece, with the layout
 * columns empty, as schema/012 found them. It reads in chunks all the same, and its first read
 * seals it again in segments (the same layout a new one gets), so that no later chunk opens
 * the whole file; it still reads the same bytes after.
 */
/* The image stored in one piece again, as before segments; claimed for an hour (the media
 * worker leaves it alone) or not. */
static int make_legacy(const struct cm_buf *sealed, bool claimed)
{
    const char *values[3] = {image_att, sealed->data, claimed ? "1 hour" : NULL};
    const int lengths[3] = {0, (int)sealed->len, 0}, formats[3] = {0, 1, 0};
    char *url = th_db_url(&st.db, "doms_router");
    struct cm_pg *conn = NULL;
    int rc = cm_pg_connect(&conn, url, "router");

    if (rc == CM_OK)
        rc = cm_pg_exec_params(conn,
                               "WITH a AS (UPDATE attachments SET segment_size = NULL,"
                               " segment_stride = NULL, lease_until = now() + $3::interval"
                               " WHERE id = $1 RETURNING id) UPDATE media SET sealed = $2 FROM a"
                               " WHERE attachment_id = a.id",
                               3, values, lengths, formats, 0);
    cm_pg_destroy(conn);
    free(url);
    return rc;
}

/* Read in chunks, the image in one piece is sealed again in segments; left unread, the media
 * worker seals it again. */
static void test_legacy_piece(void)
{
    const char *args[] = {"attachment", "get", image_att, "--out", NULL, NULL};
    char path[256], want[96], *n, *got;
    struct cm_buf sealed;
    bool done;

    cm_buf_init(&sealed);
    CHECK_INT(th_stack_seal_media(&st, image_att, image, IMAGE_BYTES, &sealed), 0);
    CHECK_INT(make_legacy(&sealed, true), CM_OK);
    n = th_stack_sqlf(&st,
                      "SELECT (a.segment_size IS NULL) || '|' || length(m.sealed) FROM"
                      " router.attachments a JOIN router.media m ON m.attachment_id = a.id"
                      " WHERE a.id = '%s'",
                      image_att);
    snprintf(want, sizeof(want), "true|%d", IMAGE_BYTES + CM_KEYRING_OVERHEAD);
    CHECK_STR(n, want);
    free(n);

    /* Read in two chunks from the one piece, then sealed again in two segments. */
    snprintf(path, sizeof(path), "%s/img-legacy.jpg", th_tmpdir());
    args[4] = path;
    for (int round = 0; round < 3; round++) {
        if (round == 2) { /* in one piece again, unclaimed, and nobody reads it */
            CHECK_INT(make_legacy(&sealed, false), CM_OK);
            done = WAIT_UNTIL((n = th_stack_sqlf(&st,
                                                 "SELECT 1 FROM router.attachments WHERE id ="
                                                 " '%s' AND segment_size IS NOT NULL",
                                                 image_att)) != NULL,
                              10000);
            CHECK_MSG(done, "the media worker did not seal the piece again");
            free(n);
        }
        cJSON_Delete(th_stack_run(&st, 0, args));
        got = th_read_file(path);
        CHECK_MSG(got != NULL && memcmp(got, image, IMAGE_BYTES) == 0, "read %d", round);
        free(got);
        unlink(path);
        check_segmented();
    }
    cm_buf_cleanup(&sealed);
}

/* A CDN URL that expired before the download: Graph's attachments edge gives a fresh one, on
 * Messenger (with the Page token and its proof) and on Instagram. */
static void test_expired_refetched(void)
{
    static const unsigned char bytes[] = "fresh-bytes-of-a-video-0123456789";
    const char *fb_names[] = {"vid-exp"}, *ig_names[] = {"ig-exp"};
    char *fb_url = fakemeta_cdn_put(st.meta, "vid-exp", "video/mp4", bytes, sizeof(bytes));
    char *ig_url = fakemeta_cdn_put(st.meta, "ig-exp", "image/png", bytes, sizeof(bytes));
    char *fb_atts = one("video", fb_url), *ig_atts = one("image", ig_url);
    char fb_att[64], ig_att[64], proof[65];
    const struct fakehttp_request *r;

    fakemeta_cdn_expire(st.meta, "vid-exp");
    fakemeta_cdn_expire(st.meta, "ig-exp");
    fakemeta_media_message(st.meta, "m_vid_exp", fb_names, 1);
    fakemeta_media_message(st.meta, "m_ig_exp", ig_names, 1);
    message(false, "cust-ada", "m_vid_exp", th_now_ms(), fb_atts, NULL);
    message(true, "ig-grace", "m_ig_exp", th_now_ms(), ig_atts, NULL);
    if (attachment_of("m_vid_exp", 0, fb_att))
        await_state(fb_att, "stored");
    if (attachment_of("m_ig_exp", 0, ig_att))
        await_state(ig_att, "stored");
    CHECK(fakemeta_cdn_gets(st.meta, "vid-exp") == 2);
    CHECK(fakemeta_cdn_gets(st.meta, "ig-exp") == 2);
    r = fakehttp_find(fakemeta_server(st.meta, FAKEMETA_FACEBOOK), "/v23.0/m_vid_exp/attachments");
    CHECK(r != NULL);
    if (r != NULL) {
        char *p = fakehttp_query_param(r, "appsecret_proof");
        CHECK_STR(fakehttp_header(r, "Authorization"), "Bearer PAGE-" PAGE "-short-media");
        fakemeta_proof("PAGE-" PAGE "-short-media", proof);
        CHECK_STR(p, proof);
        free(p);
    }
    r = fakehttp_find(fakemeta_server(st.meta, FAKEMETA_INSTAGRAM), "/v23.0/m_ig_exp");
    CHECK(r != NULL);
    if (r != NULL) {
        char *fields = fakehttp_query_param(r, "fields");
        CHECK_STR(fields, "attachments");
        free(fields);
    }
    {
        char *n = th_stack_sqlf(&st,
                                "SELECT size || '|' || content_type FROM router.attachments"
                                " WHERE id = '%s'",
                                fb_att);
        char want[64];
        snprintf(want, sizeof(want), "%zu|video/mp4", sizeof(bytes));
        CHECK_STR(n, want);
        free(n);
    }
    free(fb_atts);
    free(ig_atts);
    free(fb_url);
    free(ig_url);
}

/* Expired, and Meta no longer has the message: unavailable with the reason, no URL kept. Over
 * MEDIA_MAX_BYTES: unavailable, nothing stored. Neither can be read. */
static void test_unavailable(void)
{
    static const unsigned char bytes[] = "bytes Meta has forgotten";
    unsigned char *big = cm_xcalloc(MAX_BYTES + 4096, 1);
    char *gone_url = fakemeta_cdn_put(st.meta, "gone-img", "image/jpeg", bytes, sizeof(bytes));
    char *big_url = fakemeta_cdn_put(st.meta, "big-file", "application/pdf", big, MAX_BYTES + 4096);
    char *gone_atts = one("image", gone_url), *big_atts = one("file", big_url);
    char gone[64], huge[64], path[256], *n;
    const char *args[] = {"attachment", "get", gone, "--out", path, NULL};

    snprintf(path, sizeof(path), "%s/never", th_tmpdir());
    fakemeta_cdn_expire(st.meta, "gone-img");
    message(false, "cust-ada", "m_gone", th_now_ms(), gone_atts, NULL);
    message(false, "cust-ada", "m_big", th_now_ms(), big_atts, NULL);
    if (attachment_of("m_gone", 0, gone)) {
        await_state(gone, "unavailable");
        n = th_stack_sqlf(&st,
                          "SELECT error || '|' || (source_sealed IS NULL) FROM router.attachments"
                          " WHERE id = '%s'",
                          gone);
        CHECK_CONTAINS(n, "Meta refused a fresh one");
        CHECK_CONTAINS(n, "|true");
        free(n);
        cJSON_Delete(th_stack_run(&st, 1, args));
        CHECK(access(path, F_OK) != 0);
    }
    if (attachment_of("m_big", 0, huge)) {
        await_state(huge, "unavailable");
        n = th_stack_sqlf(&st,
                          "SELECT error || '|' || (source_sealed IS NULL) || '|' ||"
                          " (SELECT count(*) FROM router.media WHERE attachment_id = a.id)"
                          " FROM router.attachments a WHERE id = '%s'",
                          huge);
        CHECK_STR(n, "over MEDIA_MAX_BYTES|true|0");
        free(n);
    }
    free(gone_atts);
    free(big_atts);
    free(gone_url);
    free(big_url);
    free(big);
}

/* Instagram's webhooks carry Meta's lookaside URL, which redirects to the CDN: followed. */
static void test_lookaside(void)
{
    static const unsigned char bytes[] = "an instagram photo behind a lookaside redirect";
    char *cdn = fakemeta_cdn_put(st.meta, "ig-look", "image/webp", bytes, sizeof(bytes));
    char *url = fakemeta_cdn_lookaside(st.meta, "ig-look"), *atts = one("image", url), att[64];

    message(true, "ig-grace", "m_ig_look", th_now_ms(), atts, NULL);
    if (attachment_of("m_ig_look", 0, att)) {
        char *n;
        await_state(att, "stored");
        n = th_stack_sqlf(&st, "SELECT content_type FROM router.attachments WHERE id = '%s'", att);
        CHECK_STR(n, "image/webp");
        free(n);
    }
    CHECK(fakemeta_cdn_gets(st.meta, "ig-look") == 1);
    free(atts);
    free(url);
    free(cdn);
}

/* The CDN failing (500): still pending, tried again after the first backoff (30 s), the
 * failure recorded; the URL kept for that attempt. */
static void test_transient(void)
{
    static const unsigned char bytes[] = "bytes behind a failing CDN";
    char *url = fakemeta_cdn_put(st.meta, "flaky-img", "image/jpeg", bytes, sizeof(bytes));
    char *atts = one("image", url), att[64], q[512], *n = NULL;

    fakemeta_cdn_fault(st.meta, "flaky-img", 500, 0);
    message(false, "cust-ada", "m_flaky", th_now_ms(), atts, NULL);
    if (attachment_of("m_flaky", 0, att)) {
        snprintf(q, sizeof(q),
                 "SELECT state || '|' || attempts || '|' || error || '|' ||"
                 " (due_at > now() + interval '20 seconds') || '|' || (source_sealed IS NOT NULL)"
                 " FROM router.attachments WHERE id = '%s' AND attempts > 0",
                 att);
        CHECK(WAIT_UNTIL((free(n), n = th_stack_sql(&st, q)) != NULL, 15000));
        CHECK_STR(n, "pending|1|the CDN answered HTTP 500|true|true");
        free(n);
    }
    CHECK(fakemeta_cdn_gets(st.meta, "flaky-img") == 1);
    free(atts);
    free(url);
}

/* A story mention is a reference, never downloaded; one whose 24 hours are over is forgotten
 * (its webhook carries Meta's time of 25 hours ago). */
static void test_story_mention(void)
{
    static const unsigned char bytes[] = "a story picture";
    char *url = fakemeta_cdn_put(st.meta, "story-1", "image/jpeg", bytes, sizeof(bytes));
    char *atts = one("story_mention", url), fresh[64], old[64], path[256], *n;
    const char *args[] = {"attachment", "get", fresh, "--out", path, NULL};

    snprintf(path, sizeof(path), "%s/story", th_tmpdir());
    message(true, "ig-grace", "m_story_new", th_now_ms(), atts, NULL);
    message(true, "ig-grace", "m_story_old", th_now_ms() - 25LL * 3600 * 1000, atts, NULL);
    if (attachment_of("m_story_old", 0, old)) {
        await_state(old, "unavailable");
        n = th_stack_sqlf(&st,
                          "SELECT error || '|' || (source_sealed IS NULL) FROM router.attachments"
                          " WHERE id = '%s'",
                          old);
        CHECK_STR(n, "story expired|true");
        free(n);
    }
    if (attachment_of("m_story_new", 0, fresh)) {
        CHECK(state_is(fresh, "reference"));
        n = th_stack_sqlf(
            &st,
            "SELECT (source_sealed IS NOT NULL) || '|' || (due_at > now() + interval '23 hours')"
            " FROM router.attachments WHERE id = '%s'",
            fresh);
        CHECK_STR(n, "true|true");
        free(n);
        cJSON_Delete(th_stack_run(&st, 1, args));
    }
    CHECK(fakemeta_cdn_gets(st.meta, "story-1") == 0);
    free(atts);
    free(url);
}

/* One Messenger event ev posted under field ("messaging" or "standby") of the Page's entry. */
static void post_event(const char *field, const char *ev)
{
    struct cm_buf b;

    cm_buf_init(&b);
    cm_buf_printf(&b,
                  "{\"object\":\"page\",\"entry\":[{\"id\":\"" PAGE "\",\"time\":%lld,"
                  "\"%s\":[%s]}]}",
                  (long long)th_now_ms(), field, ev);
    CHECK_MSG(th_stack_webhook(&st, b.data) == 200, "webhook refused: %s", field);
    cm_buf_cleanup(&b);
}

/* The business's echo from Meta's inbox and a contact's standby message carry attachments
 * too: captured and downloaded the same way (the echo's message is outbound). */
static void test_echo_and_standby(void)
{
    static const unsigned char bytes[] = "what the business sent from Meta's inbox";
    char *echo_url = fakemeta_cdn_put(st.meta, "echo-img", "image/jpeg", bytes, sizeof(bytes));
    char *sb_url = fakemeta_cdn_put(st.meta, "sb-file", "application/pdf", bytes, sizeof(bytes));
    char *echo_atts = one("image", echo_url), *sb_atts = one("file", sb_url), ev[2048], att[64];

    snprintf(ev, sizeof(ev),
             "{\"sender\":{\"id\":\"" PAGE "\"},\"recipient\":{\"id\":\"cust-ada\"},"
             "\"timestamp\":%lld,\"message\":{\"mid\":\"m_echo_img\",\"is_echo\":true,"
             "\"app_id\":" FAKEMETA_INBOX_APP_ID ",\"attachments\":%s}}",
             (long long)th_now_ms(), echo_atts);
    post_event("messaging", ev);
    snprintf(ev, sizeof(ev),
             "{\"sender\":{\"id\":\"cust-ada\"},\"recipient\":{\"id\":\"" PAGE "\"},"
             "\"timestamp\":%lld,\"message\":{\"mid\":\"m_sb_file\",\"attachments\":%s}}",
             (long long)th_now_ms(), sb_atts);
    post_event("standby", ev);
    if (attachment_of("m_echo_img", 0, att)) {
        char *n;
        await_state(att, "stored");
        n = th_stack_sqlf(&st,
                          "SELECT m.direction || '|' || a.type FROM router.attachments a JOIN"
                          " router.messages m ON m.id = a.message_id WHERE a.id = '%s'",
                          att);
        CHECK_STR(n, "out|image");
        free(n);
    }
    if (attachment_of("m_sb_file", 0, att)) {
        char *n;
        await_state(att, "stored");
        n = th_stack_sqlf(&st,
                          "SELECT m.standby || '|' || a.content_type FROM router.attachments a JOIN"
                          " router.messages m ON m.id = a.message_id WHERE a.id = '%s'",
                          att);
        CHECK_STR(n, "true|application/pdf");
        free(n);
    }
    free(echo_atts);
    free(sb_atts);
    free(echo_url);
    free(sb_url);
}

/* Meta's duplicate (the same mid again) adds no attachment. */
static void test_duplicate(void)
{
    char *url = fakemeta_cdn_put(st.meta, "img-ada", "image/jpeg", image, sizeof(image));
    char *atts = one("image", url), *n, *marker;

    message(false, "cust-ada", "m_img_1", th_now_ms(), atts, "look at this");
    message(false, "cust-ada", "m_after_dup", th_now_ms(), NULL, "after the duplicate");
    CHECK(WAIT_UNTIL((marker = th_stack_sql(&st, "SELECT 1 FROM router.messages"
                                                 " WHERE mid = 'm_after_dup'")) != NULL,
                     10000));
    free(marker);
    n = th_stack_sql(&st, "SELECT count(*) FROM router.attachments a JOIN router.messages m"
                          " ON m.id = a.message_id WHERE m.mid = 'm_img_1'");
    CHECK_STR(n, "1");
    free(n);
    free(atts);
    free(url);
}

/* messages list: each message with its attachments (none: an empty array). */
static void test_messages_list(void)
{
    const char *args[] = {"messages", "list", image_conv, "--all", NULL};
    cJSON *out = th_stack_run(&st, 0, args), *m;
    bool seen_image = false, seen_plain = false;

    cJSON_ArrayForEach(m, out)
    {
        const char *mid = th_json_str(m, "mid", NULL);
        cJSON *atts = cJSON_GetObjectItem(m, "attachments");
        CHECK(cJSON_IsArray(atts));
        if (mid != NULL && strcmp(mid, "m_img_1") == 0) {
            cJSON *a = cJSON_GetArrayItem(atts, 0);
            seen_image = true;
            CHECK(cJSON_GetArraySize(atts) == 1);
            CHECK_STR(th_json_str(a, "attachment_id", NULL), image_att);
            CHECK_STR(th_json_str(a, "type", NULL), "image");
            CHECK_STR(th_json_str(a, "state", NULL), "stored");
            CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(a, "size")) == IMAGE_BYTES);
            CHECK_STR(th_json_str(m, "text", NULL), "look at this");
        } else if (mid != NULL && strcmp(mid, "m_after_dup") == 0) {
            seen_plain = true;
            CHECK(cJSON_GetArraySize(atts) == 0);
        } else if (mid != NULL && strcmp(mid, "m_gone") == 0) {
            CHECK_STR(th_json_str(cJSON_GetArrayItem(atts, 0), "state", NULL), "unavailable");
            CHECK(cJSON_IsNull(cJSON_GetObjectItem(cJSON_GetArrayItem(atts, 0), "size")));
        }
    }
    CHECK(seen_image && seen_plain);
    cJSON_Delete(out);
}

/* A viewer of the workspace may read an attachment; a viewer of another workspace may not. */
static void test_viewers(void)
{
    char other[64], path[256];
    const char *add_out[] = {"member",   "add",    "--workspace", other, "--user",
                             "outsider", "--role", "viewer",      NULL};
    const char *add_in[] = {"member",  "add",    "--workspace", ws,  "--user",
                            "watcher", "--role", "viewer",      NULL};
    const char *denied[] = {"--actor", "outsider", "attachment", "get",
                            image_att, "--out",    path,         NULL};
    const char *allowed[] = {"--actor", "watcher", "attachment", "get",
                             image_att, "--out",   path,         NULL};
    const char *bad[] = {"attachment", "get", "att_'; DROP", "--out", path, NULL};
    const char *usage[] = {"attachment", "get", image_att, NULL};

    th_stack_workspace(&st, "Elsewhere", false, other);
    snprintf(path, sizeof(path), "%s/viewer.jpg", th_tmpdir());
    cJSON_Delete(th_stack_run(&st, 0, add_out));
    cJSON_Delete(th_stack_run(&st, 0, add_in));
    cJSON_Delete(th_stack_run(&st, 1, denied));
    CHECK(access(path, F_OK) != 0);
    cJSON_Delete(th_stack_run(&st, 0, allowed));
    CHECK(access(path, F_OK) == 0);
    unlink(path);
    cJSON_Delete(th_stack_run(&st, 1, bad));
    cJSON_Delete(th_stack_run(&st, 2, usage));
}

/* Nothing of the media, its URLs or the contact's name in plaintext in the router's schema. */
static void test_no_plaintext(void)
{
    const char *needles[] = {image_hex,  "t1.15752-9",     "_nc_cat",        "oh=03_",
                             "Lovelace", "fresh-bytes-of", "a story picture"};
    char *tables = th_stack_sql(&st, "SELECT string_agg(tablename, ',') FROM pg_tables"
                                     " WHERE schemaname = 'router'");
    char q[8192], *save = NULL, *t;
    size_t len;
    char *named;

    /* The name was fetched, so its absence below means something. */
    CHECK(WAIT_UNTIL((named = th_stack_sql(&st, "SELECT 1 FROM router.contacts"
                                                " WHERE profile_sealed IS NOT NULL")) != NULL,
                     15000));
    free(named);
    len = (size_t)snprintf(q, sizeof(q), "SELECT count(*) FROM (SELECT ''::text r");
    for (t = strtok_r(tables, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save))
        len += (size_t)snprintf(q + len, sizeof(q) - len,
                                " UNION ALL SELECT row_to_json(t)::text FROM router.%s t", t);
    for (size_t i = 0; i < sizeof(needles) / sizeof(needles[0]); i++) {
        char full[8400];
        snprintf(full, sizeof(full), "%s) s WHERE r LIKE '%%%s%%'", q, needles[i]);
        char *hits = th_stack_sql(&st, full);
        CHECK_MSG(hits != NULL && strcmp(hits, "0") == 0, "\"%s\" found in the router schema",
                  needles[i]);
        free(hits);
    }
    free(tables);
    /* The media are there, sealed, so the scan had something to miss. */
    {
        char *n = th_stack_sql(&st, "SELECT count(*) >= 3 FROM router.media");
        CHECK_STR(n, "t");
        free(n);
    }
}

/* The Instagram integration's purge removes its attachments and their media; Messenger's stay. */
static void test_purge(void)
{
    char body[256], *n;
    cJSON *r;

    snprintf(
        body, sizeof(body),
        "{\"actor\":\"retention-reaper\",\"scope\":\"integration\",\"integration_ids\":[\"%s\"]}",
        ig_integration);
    r = th_stack_request_as(&st, "retention-reaper", "router.purge", body);
    CHECK(th_json_str(r, "error", "code") == NULL);
    CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(
              cJSON_GetObjectItem(cJSON_GetObjectItem(r, "result"), "deleted"), "attachments")) ==
          4);
    CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(
              cJSON_GetObjectItem(cJSON_GetObjectItem(r, "result"), "remaining"), "attachments")) ==
          0);
    cJSON_Delete(r);
    n = th_stack_sqlf(&st, "SELECT count(*) FROM router.attachments WHERE integration_id = '%s'",
                      ig_integration);
    CHECK_STR(n, "0");
    free(n);
    n = th_stack_sql(&st,
                     "SELECT count(*) FROM router.media m LEFT JOIN router.attachments a"
                     " ON a.id = m.attachment_id WHERE a.id IS NULL OR a.type = 'story_mention'");
    CHECK_STR(n, "0");
    free(n);
    n = th_stack_sqlf(&st, "SELECT state FROM router.attachments WHERE id = '%s'", image_att);
    CHECK_STR(n, "stored");
    free(n);
}

/* No CDN URL (nor its signature) in the routers' logs; the attachments' ids are. */
static void test_logs_clean(void)
{
    struct th_proc *procs[] = {&router1, &router2};
    const char *needles[] = {"t1.15752-9", "_nc_cat", "oh=03_", "Lovelace", "fresh-bytes", NULL};
    bool ids_logged = false;

    for (size_t p = 0; p < sizeof(procs) / sizeof(procs[0]); p++) {
        char *log = th_proc_log_lacks(procs[p], needles);
        ids_logged = ids_logged || strstr(log, image_att) != NULL;
        free(log);
    }
    CHECK(ids_logged);
}

int main(void)
{
    th_init("router_media");
    if (sodium_init() < 0)
        return 1;
    th_stack_init(&st);
    now_ms_ = th_now_ms();
    th_stack_start(&st, &vault, "token-vault", NULL);
    th_stack_start(&st, &ingest, "webhook-ingest", NULL);
    router1_port = th_stack_start(&st, &router1, "conversation-router", router_env);
    router2_port = th_stack_start(&st, &router2, "conversation-router", router_env);

    RUN(test_setup);
    RUN(test_image_downloaded);
    RUN(test_segments);
    RUN(test_legacy_piece);
    RUN(test_expired_refetched);
    RUN(test_unavailable);
    RUN(test_lookaside);
    RUN(test_transient);
    RUN(test_story_mention);
    RUN(test_echo_and_standby);
    RUN(test_duplicate);
    RUN(test_messages_list);
    RUN(test_viewers);
    RUN(test_no_plaintext);
    RUN(test_purge);
    th_stack_stop(&st);
    RUN(test_logs_clean);
    return check_summary();
}
