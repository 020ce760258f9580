/*
 * test_router_reply_file - replies with a file end to end (issue 12 item 5): domsctl reply
 * --file through router.upload's chunks and router.reply to Messenger's Attachment Upload API
 * and the Send API of the Meta stand-in (fakemeta_upload.c), through ingest, token-vault and a
 * router. Meta receives exactly the file's bytes, then a send with its attachment_id; text and
 * a file are two sends, the text first; a file over Meta's limit is refused at once (exit 1)
 * with nothing sent; Meta's own refusal of an upload fails the message with Meta's reason; on
 * Instagram, Meta fetches the file through a public link on ingest (media links: only their
 * hash kept, expiring, 503 while the router is away), and what Instagram does not take is
 * refused at once, as is a reply on a disconnected integration; the chunk
 * protocol keeps order and its retries; and no byte of a file is in plaintext in the router's
 * tables or its log.
 */
#include <cjson/cJSON.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common/crypto.h"
#include "common/mem.h"
#include "stack.h"

#define PAGE_F "106000000000081"
#define IG_F   "17841400000000082"
/* In every file this test sends: absent from the router's tables and log, in plaintext. */
#define MARKER "DOMS-FILE-MARKER-7f3a9c"

static struct th_stack st;
static struct th_proc ingest, vault, router;
static char ws[64], fb_integration[64];
static char *fb_conv, *fb_conv2, *fb_conv3, *ig_conv;
static int64_t started_ms;

/* The library's helpers under the short names this file's tests use. */
static int64_t now_ms(void)
{
    return th_now_ms();
}

/* domsctl args, checking that it exits want; its JSON (free it). */
static cJSON *run(int want, const char *const *args)
{
    return th_stack_run(&st, want, args);
}

/* domsctl with its exit status and what it printed (*why: free it). */
static int domsctl(cJSON **out, char **why, const char *const *args)
{
    return th_stack_domsctl(&st, out, why, args);
}

/* A message from psid to the Page (or the Instagram account); its conversation (free it). */
static char *inbound(bool ig, const char *psid)
{
    char mid[128], text[128], *id;

    snprintf(mid, sizeof(mid), "m_%s", psid);
    snprintf(text, sizeof(text), "hello from %s", psid);
    CHECK_INT(th_stack_message(&st, ig, ig ? IG_F : PAGE_F, started_ms, psid, now_ms() - 60000, mid,
                               text, NULL),
              200);
    id = th_stack_await_conv(&st, mid);
    return id != NULL ? id : cm_xstrdup("none");
}

/*
 * Writes a file of size bytes named name in the scratch directory: head (hlen bytes) first,
 * then MARKER and a counter over and over. Returns its path (free it); *data a copy (free it).
 */
static char *make_file(const char *name, const void *head, size_t hlen, size_t size,
                       unsigned char **data)
{
    char *path = cm_xmalloc(strlen(th_tmpdir()) + strlen(name) + 2);
    unsigned char *b = cm_xmalloc(size);
    FILE *f;
    size_t at = hlen;

    sprintf(path, "%s/%s", th_tmpdir(), name);
    memcpy(b, head, hlen);
    for (unsigned n = 0; at < size; n++) {
        char piece[64];
        int len = snprintf(piece, sizeof(piece), MARKER "%08u|", n);
        size_t take = size - at < (size_t)len ? size - at : (size_t)len;
        memcpy(b + at, piece, take);
        at += take;
    }
    f = fopen(path, "wb");
    CHECK(f != NULL && fwrite(b, 1, size, f) == size);
    if (f != NULL)
        fclose(f);
    if (data != NULL)
        *data = b;
    else
        free(b);
    return path;
}

static const unsigned char png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

/* The status of message id, and its error (a new string "status|error"). */
static char *status_of(const char *id)
{
    char q[256];

    snprintf(q, sizeof(q),
             "SELECT status || '|' || coalesce(error, '') FROM router.messages WHERE id = '%s'",
             id);
    return th_stack_sql(&st, q);
}

static bool has_status(const char *id, const char *want)
{
    char *s = status_of(id);
    bool ok = s != NULL && strncmp(s, want, strlen(want)) == 0 && s[strlen(want)] == '|';

    free(s);
    return ok;
}

/* sql's value as a number (-1: no row). */
static long count(const char *sql)
{
    return th_stack_count(&st, sql);
}

/* Requests to Meta's Attachment Upload API received so far. */
static int upload_calls(void)
{
    struct fakehttp *fb = fakemeta_server(st.meta, FAKEMETA_FACEBOOK);
    int n = 0;

    for (int i = 0; i < fakehttp_count(fb); i++) {
        const char *p = fakehttp_get(fb, i)->path;
        n += strstr(p, "/message_attachments") != NULL;
    }
    return n;
}

static void test_setup(void)
{
    const char *create[] = {"workspace", "create", "--name", "Files", NULL};
    cJSON *out = run(0, create);
    const char *fb[] = {"integration", "connect",    "--workspace", ws,
                        "--platform",  "messenger",  "--account",   PAGE_F,
                        "--token",     "short-file", NULL};
    const char *ig[] = {"integration", "connect",       "--workspace", ws,
                        "--platform",  "instagram",     "--account",   IG_F,
                        "--token",     "short-ig-file", NULL};

    snprintf(ws, sizeof(ws), "%s", th_json_str(out, "workspace_id", NULL));
    cJSON_Delete(out);
    fakemeta_issue(st.meta, FAKEMETA_USER_SHORT, "short-file", NULL);
    fakemeta_issue(st.meta, FAKEMETA_IG_SHORT, "short-ig-file", IG_F);
    out = run(0, fb);
    snprintf(fb_integration, sizeof(fb_integration), "%s",
             th_json_str(out, "integration_id", NULL) ? th_json_str(out, "integration_id", NULL)
                                                      : "none");
    cJSON_Delete(out);
    cJSON_Delete(run(0, ig));
    fb_conv = inbound(false, "file-cust-1");
    fb_conv2 = inbound(false, "file-cust-2");
    fb_conv3 = inbound(false, "file-cust-3");
    ig_conv = inbound(true, "ig-file-1");
}

/*
 * An image of 1.2 MB (three chunks): Meta receives exactly its bytes, multipart with its type,
 * the Page token and its proof, then one send with the attachment_id it issued; the message is
 * sent, its attachment stored (sealed) with Meta's id, and the upload's parts are gone.
 */
static void test_file_reply(void)
{
    unsigned char *data = NULL, *got = NULL;
    char *path = make_file("img.png", png, sizeof(png), 1200000, &data);
    const char *args[] = {"reply", fb_conv, "--file", path, NULL};
    cJSON *out = run(0, args);
    const char *id = th_json_str(out, "message_id", NULL);
    char att[40] = "", type[16] = "", ctype[128] = "", needle[96], q[512], *sent = NULL, *v;
    size_t len = 0;

    CHECK_STR(th_json_str(out, "status", NULL), "queued");
    CHECK(id != NULL);
    CHECK_WAIT(fakemeta_uploads(st.meta) >= 1, 15000);
    got = fakemeta_upload_get(st.meta, 0, &len, att, type, ctype);
    CHECK(got != NULL && len == 1200000 && memcmp(got, data, len) == 0);
    CHECK_STR(type, "image");
    CHECK_STR(ctype, "image/png");
    snprintf(needle, sizeof(needle), "\"attachment_id\":\"%s\"", att);
    CHECK_WAIT((free(sent), sent = fakemeta_last_send(st.meta, "file-cust-1")) != NULL &&
                   strstr(sent, needle) != NULL,
               15000);
    CHECK_CONTAINS(sent, "\"type\":\"image\"");
    CHECK(sent != NULL && strstr(sent, "\"text\"") == NULL);
    CHECK_WAIT(id != NULL && has_status(id, "sent"), 10000);
    {
        const struct fakehttp_request *r = fakehttp_find(
            fakemeta_server(st.meta, FAKEMETA_FACEBOOK), "/v23.0/" PAGE_F "/message_attachments");
        unsigned char mac[CM_SHA256_LEN];
        char want[65], *proof;
        const char *tok = "PAGE-" PAGE_F "-short-file";
        CHECK(r != NULL);
        if (r != NULL) {
            cm_crypto_hmac_sha256(FAKEMETA_APP_SECRET, strlen(FAKEMETA_APP_SECRET), tok,
                                  strlen(tok), mac);
            cm_hex_encode(mac, sizeof(mac), want);
            proof = fakehttp_query_param(r, "appsecret_proof");
            CHECK_STR(proof, want);
            free(proof);
            CHECK_STR(fakehttp_header(r, "Authorization"), "Bearer PAGE-" PAGE_F "-short-file");
            CHECK_CONTAINS(fakehttp_header(r, "Content-Type"), "multipart/form-data; boundary=");
        }
    }
    snprintf(q, sizeof(q),
             "SELECT direction || '|' || state || '|' || type || '|' || size || '|' ||"
             " content_type || '|' || meta_attachment_id || '|' || position FROM"
             " router.attachments WHERE message_id = '%s'",
             id != NULL ? id : "");
    v = th_stack_sql(&st, q);
    snprintf(needle, sizeof(needle), "out|stored|image|1200000|image/png|%s|0", att);
    CHECK_STR(v, needle);
    free(v);
    CHECK_INT(count("SELECT count(*) FROM router.uploads"), 0);
    CHECK_INT(count("SELECT count(*) FROM router.upload_parts"), 0);
    free(sent);
    free(got);
    free(data);
    free(path);
    cJSON_Delete(out);
}

/* --text with --file: two messages, two sends, the text first; message_ids names both. */
static void test_text_and_file(void)
{
    char *path = make_file("doc.pdf", "%PDF-1.4\n", 9, 3000, NULL);
    const char *args[] = {"reply", fb_conv2, "--text", "see the document", "--file", path, NULL};
    cJSON *out = run(0, args);
    const cJSON *ids = cJSON_GetObjectItem(out, "message_ids");
    const char *text_id = cJSON_GetStringValue(cJSON_GetArrayItem(ids, 0));
    const char *file_id = cJSON_GetStringValue(cJSON_GetArrayItem(ids, 1));
    struct fakehttp *fb = fakemeta_server(st.meta, FAKEMETA_FACEBOOK);
    int text_at = -1, file_at = -1;

    CHECK_INT(cJSON_GetArraySize(ids), 2);
    CHECK_STR(th_json_str(out, "message_id", NULL), file_id);
    CHECK_WAIT(text_id != NULL && file_id != NULL && has_status(text_id, "sent") &&
                   has_status(file_id, "sent"),
               15000);
    for (int i = 0; i < fakehttp_count(fb); i++) {
        const struct fakehttp_request *r = fakehttp_get(fb, i);
        if (strstr(r->path, "/messages") == NULL || strstr(r->body, "file-cust-2") == NULL)
            continue;
        if (strstr(r->body, "see the document") != NULL)
            text_at = i;
        else if (strstr(r->body, "\"type\":\"file\"") != NULL)
            file_at = i;
    }
    CHECK_MSG(text_at >= 0 && file_at > text_at, "text sent at %d, file at %d", text_at, file_at);
    free(path);
    cJSON_Delete(out);
}

/* An image over Meta's 8 MB: refused before a byte travels, nothing stored or sent. */
static void test_over_limit(void)
{
    char *path = make_file("big.png", png, sizeof(png), 8000001, NULL);
    const char *args[] = {"reply", fb_conv, "--file", path, NULL};
    long out_before = count("SELECT count(*) FROM router.messages WHERE direction = 'out'");
    int uploads_before = upload_calls(), sends_before = fakemeta_sends(st.meta, FAKEMETA_FACEBOOK);
    char *why = NULL;

    CHECK_INT(domsctl(NULL, &why, args), 1);
    CHECK_CONTAINS(why, "8000001 bytes; Meta takes at most 8000000 bytes for an image");
    free(why);
    CHECK_INT(count("SELECT count(*) FROM router.uploads"), 0);
    CHECK_INT(count("SELECT count(*) FROM router.messages WHERE direction = 'out'"), out_before);
    CHECK_INT(upload_calls(), uploads_before);
    CHECK_INT(fakemeta_sends(st.meta, FAKEMETA_FACEBOOK), sends_before);
    free(path);
}

/* Meta refuses the upload (its limit lowered): the message fails with Meta's reason, once. */
static void test_meta_refuses(void)
{
    char *path = make_file("small.png", png, sizeof(png), 5000, NULL);
    const char *args[] = {"reply", fb_conv3, "--file", path, NULL};
    int calls = upload_calls();
    cJSON *out;
    const char *id;
    char *st_ = NULL;

    fakemeta_set_upload_limit(st.meta, 1000);
    out = run(0, args);
    id = th_json_str(out, "message_id", NULL);
    CHECK_WAIT(id != NULL && has_status(id, "failed"), 15000);
    st_ = id != NULL ? status_of(id) : NULL;
    CHECK_CONTAINS(st_, "Attachment size exceeds allowable limit");
    CHECK_CONTAINS(st_, "code 100, subcode 2018109");
    free(st_);
    CHECK_INT(upload_calls(), calls + 1);
    st_ = fakemeta_last_send(st.meta, "file-cust-3");
    CHECK(st_ == NULL);
    fakemeta_set_upload_limit(st.meta, 0);
    free(st_);
    free(path);
    cJSON_Delete(out);
}

/* Meta fails the upload once (500, code 2): the sender tries again after its backoff, and the
 * message is sent with the attachment_id of the second upload. */
static void test_upload_retried(void)
{
    char *path = make_file("retry.png", png, sizeof(png), 4000, NULL);
    const char *args[] = {"reply", fb_conv3, "--file", path, NULL};
    int calls = upload_calls(), accepted = fakemeta_uploads(st.meta);
    cJSON *out;
    const char *id;
    char q[256];

    fakemeta_fail_uploads(st.meta, 1);
    out = run(0, args);
    id = th_json_str(out, "message_id", NULL);
    CHECK_WAIT(id != NULL && has_status(id, "sent"), 20000);
    CHECK_INT(upload_calls(), calls + 2);
    CHECK_INT(fakemeta_uploads(st.meta), accepted + 1);
    snprintf(q, sizeof(q), "SELECT attempts FROM router.messages WHERE id = '%s'",
             id != NULL ? id : "");
    CHECK_INT(count(q), 2);
    free(path);
    cJSON_Delete(out);
}

/*
 * The router's tables whose rows hold needle as text or as the hex of its bytes (a bytea column
 * as text), comma-separated (a new string; "" or NULL for none).
 */
static char *plaintext_in(const char *needle)
{
    char q[1024];

    snprintf(q, sizeof(q),
             "SELECT string_agg(table_name, ',') FROM information_schema.tables"
             " WHERE table_schema = 'router' AND table_type = 'BASE TABLE' AND"
             " (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM router.%%I x"
             " WHERE strpos(x::text, %%L) > 0 OR strpos(x::text, %%L) > 0', table_name, '%s',"
             " encode(convert_to('%s', 'UTF8'), 'hex')), false, true, '')))[1]::text::int > 0",
             needle, needle);
    return th_stack_sql(&st, q);
}

/* router.upload for conv as identity (the operator when NULL); the parsed reply. */
static cJSON *chunk(const char *as, const char *body)
{
    return as == NULL ? th_stack_request(&st, "router.upload", body)
                      : th_stack_request_as(&st, as, "router.upload", body);
}

/*
 * The chunk protocol itself: a chunk again is a retry, a gap is invalid, another caller sees no
 * upload, an incomplete upload cannot be sent; the parts held meanwhile are sealed.
 */
static void test_chunks(void)
{
    char body[1024], b64[200], *v;
    const char *part = MARKER "-first-part";
    const char *rest = MARKER "-last";
    cJSON *r;
    char id[64] = "";

    snprintf(body, sizeof(body),
             "{\"conversation_id\":\"%s\",\"offset\":0,\"size\":%zu,\"type\":\"file\","
             "\"content_type\":\"text/plain\"}",
             fb_conv3, strlen(part) + strlen(rest));
    r = chunk(NULL, body);
    snprintf(id, sizeof(id), "%s",
             th_json_str(r, "result", "upload_id") ? th_json_str(r, "result", "upload_id") : "");
    cJSON_Delete(r);
    CHECK(id[0] != '\0');
    sodium_bin2base64(b64, sizeof(b64), (const unsigned char *)part, strlen(part),
                      sodium_base64_VARIANT_ORIGINAL);
    snprintf(body, sizeof(body), "{\"upload_id\":\"%s\",\"offset\":0,\"data\":\"%s\"}", id, b64);
    for (int i = 0; i < 2; i++) { /* the second time: a retry, the same answer */
        r = chunk(NULL, body);
        CHECK_MSG(cJSON_GetNumberValue(cJSON_GetObjectItem(cJSON_GetObjectItem(r, "result"),
                                                           "received")) == (double)strlen(part),
                  "chunk %d not taken", i);
        cJSON_Delete(r);
    }
    /* Another caller, and a gap. */
    r = chunk("ai-suggest", body);
    CHECK(th_json_str(r, "result", "upload_id") == NULL);
    cJSON_Delete(r);
    snprintf(body, sizeof(body), "{\"upload_id\":\"%s\",\"offset\":5,\"data\":\"%s\"}", id, b64);
    r = chunk(NULL, body);
    CHECK_STR(th_json_str(r, "error", "code"), "invalid");
    cJSON_Delete(r);
    /* Not complete: router.reply refuses it. */
    snprintf(body, sizeof(body), "{\"conversation_id\":\"%s\",\"upload_id\":\"%s\"}", fb_conv3, id);
    r = th_stack_request(&st, "router.reply", body);
    CHECK_STR(th_json_str(r, "error", "code"), "conflict");
    cJSON_Delete(r);
    /* The part held is sealed: no table of the router has the marker in plaintext. */
    CHECK_INT(count("SELECT count(*) FROM router.upload_parts"), 1);
    v = plaintext_in(MARKER);
    CHECK_MSG(v == NULL || *v == '\0', "the file's bytes in plaintext in router tables: %s", v);
    free(v);
    /* The rest, final; then the reply takes it. */
    sodium_bin2base64(b64, sizeof(b64), (const unsigned char *)rest, strlen(rest),
                      sodium_base64_VARIANT_ORIGINAL);
    snprintf(body, sizeof(body),
             "{\"upload_id\":\"%s\",\"offset\":%zu,\"data\":\"%s\",\"final\":true}", id,
             strlen(part), b64);
    r = chunk(NULL, body);
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetObjectItem(r, "result"), "complete")));
    cJSON_Delete(r);
    snprintf(body, sizeof(body), "{\"conversation_id\":\"%s\",\"upload_id\":\"%s\"}", fb_conv3, id);
    r = th_stack_request(&st, "router.reply", body);
    CHECK(th_json_str(r, "result", "message_id") != NULL);
    if (th_json_str(r, "result", "message_id") != NULL)
        CHECK_WAIT(has_status(th_json_str(r, "result", "message_id"), "sent"), 15000);
    cJSON_Delete(r);
    CHECK_INT(count("SELECT count(*) FROM router.upload_parts"), 0);
}

/* An upload expires an hour after it opened: then it is gone for its caller, and deleted when
 * the next upload opens. (The hour passes in the row: its expiry is moved back.) */
static void test_expiry(void)
{
    char open[512], body[256], q[256], id[64] = "";
    cJSON *r;

    snprintf(open, sizeof(open),
             "{\"conversation_id\":\"%s\",\"size\":10,\"type\":\"file\","
             "\"content_type\":\"text/plain\"}",
             fb_conv3);
    r = chunk(NULL, open);
    snprintf(id, sizeof(id), "%s",
             th_json_str(r, "result", "upload_id") ? th_json_str(r, "result", "upload_id") : "");
    cJSON_Delete(r);
    snprintf(q, sizeof(q),
             "UPDATE router.uploads SET expires_at = now() - interval '1 second' WHERE id = '%s'"
             " RETURNING 1",
             id);
    free(th_stack_sql(&st, q));
    snprintf(body, sizeof(body), "{\"upload_id\":\"%s\",\"offset\":0,\"data\":\"AAAA\"}", id);
    r = chunk(NULL, body);
    CHECK_STR(th_json_str(r, "error", "code"), "not_found");
    cJSON_Delete(r);
    r = chunk(NULL, open);
    CHECK(th_json_str(r, "result", "upload_id") != NULL);
    cJSON_Delete(r);
    snprintf(q, sizeof(q), "SELECT count(*) FROM router.uploads WHERE id = '%s'", id);
    CHECK_INT(count(q), 0);
}

static const unsigned char jpeg[] = {0xff, 0xd8, 0xff, 0xe0};

/* The payload.url of the last send to recipient (a new string), or NULL. */
static char *link_sent_to(const char *recipient)
{
    char *sent = fakemeta_last_send(st.meta, recipient);
    cJSON *o = sent != NULL ? cJSON_Parse(sent) : NULL;
    const cJSON *att = cJSON_GetObjectItem(cJSON_GetObjectItem(o, "message"), "attachment");
    const char *url =
        cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(att, "payload"), "url"));
    char *copy = url != NULL ? cm_xstrdup(url) : NULL;

    cJSON_Delete(o);
    free(sent);
    return copy;
}

/*
 * Instagram takes a file by URL: the send carries a link on ingest's public address, Meta
 * fetches exactly the file's bytes through it (two chunks from the router), and the message is
 * sent. Only the link's hash is kept; the link answers with the file until it expires, and a
 * token one character off, another method or an expired link get nothing.
 */
static void test_instagram_file(void)
{
    unsigned char *data = NULL, *got = NULL;
    char *path = make_file("photo.jpg", jpeg, sizeof(jpeg), 700000, &data);
    const char *args[] = {"reply", ig_conv, "--file", path, NULL};
    int before = fakemeta_uploads(st.meta);
    cJSON *out = run(0, args);
    const char *id = th_json_str(out, "message_id", NULL);
    char att[40] = "", type[16] = "", ctype[128] = "", prefix[160], *link = NULL, *sent, *v;
    struct th_resp r;
    size_t len = 0;

    CHECK(id != NULL);
    CHECK_WAIT(id != NULL && has_status(id, "sent"), 15000);
    CHECK_INT(fakemeta_uploads(st.meta), before + 1);
    got = fakemeta_upload_get(st.meta, before, &len, att, type, ctype);
    CHECK(got != NULL && len == 700000 && memcmp(got, data, len) == 0);
    CHECK_STR(type, "image");
    CHECK_STR(ctype, "image/jpeg");
    CHECK(strncmp(att, "url-", 4) == 0);
    sent = fakemeta_last_send(st.meta, "ig-file-1");
    CHECK(sent != NULL && strstr(sent, "attachment_id") == NULL);
    free(sent);
    snprintf(prefix, sizeof(prefix), "%s/api/v1/media?token=", st.ingest_url);
    link = link_sent_to("ig-file-1");
    CHECK(link != NULL && strncmp(link, prefix, strlen(prefix)) == 0 &&
          strlen(link) == strlen(prefix) + 43);
    if (link == NULL)
        link = cm_xstrdup(prefix);
    CHECK_INT(count("SELECT sum(fetches) FROM router.media_links"), 1);
    v = plaintext_in(link + strlen(prefix));
    CHECK_MSG(v == NULL || *v == '\0', "the link's token is stored: %s", v);
    free(v);

    /* Meta may fetch again while the link lives. */
    CHECK_INT(th_http(&r, "GET", link, NULL, NULL, 0), 200);
    CHECK(r.body.len == 700000 && memcmp(r.body.data, data, 700000) == 0);
    CHECK_CONTAINS(r.headers.data, "Content-Type: image/jpeg");
    CHECK_CONTAINS(r.headers.data, "Cache-Control: no-store");
    th_resp_cleanup(&r);
    CHECK_INT(th_http(&r, "POST", link, NULL, "x", 1), 405);
    th_resp_cleanup(&r);
    {
        char *other = cm_xstrdup(link);
        char *last = other + strlen(other) - 1;
        *last = *last == 'A' ? 'B' : 'A';
        CHECK_INT(th_http(&r, "GET", other, NULL, NULL, 0), 404);
        th_resp_cleanup(&r);
        free(other);
    }
    CHECK_INT(th_http(&r, "GET", prefix, NULL, NULL, 0), 404);
    th_resp_cleanup(&r);
    /* An hour later. */
    free(th_stack_sql(&st, "UPDATE router.media_links SET expires_at = now() - interval '1 s'"));
    CHECK_INT(th_http(&r, "GET", link, NULL, NULL, 0), 404);
    th_resp_cleanup(&r);

    free(link);
    free(got);
    free(data);
    free(path);
    cJSON_Delete(out);
}

/* Meta's fetch failed (subcode 2018008): a passing failure; the next attempt, with a link of
 * its own, sends it. */
static void test_instagram_fetch_failed(void)
{
    char *path = make_file("retry.jpg", jpeg, sizeof(jpeg), 5000, NULL);
    const char *args[] = {"reply", ig_conv, "--file", path, NULL};
    cJSON *out;
    const char *id;
    char q[256];

    fakemeta_fail_fetches(st.meta, 1);
    out = run(0, args);
    id = th_json_str(out, "message_id", NULL);
    CHECK_WAIT(id != NULL && has_status(id, "sent"), 20000);
    snprintf(q, sizeof(q), "SELECT attempts FROM router.messages WHERE id = '%s'",
             id != NULL ? id : "");
    CHECK_INT(count(q), 2);
    snprintf(q, sizeof(q),
             "SELECT count(*) FROM router.media_links l JOIN router.attachments a"
             " ON a.id = l.attachment_id WHERE a.message_id = '%s'",
             id != NULL ? id : "");
    CHECK_INT(count(q), 2);
    free(path);
    cJSON_Delete(out);
}

/* What Instagram does not take is refused at once: a PDF, a GIF; a missing file is exit 2. */
static void test_instagram_refused(void)
{
    char *pdf = make_file("ig.pdf", "%PDF-1.4\n", 9, 2000, NULL);
    char *gif = make_file("ig.gif", "GIF89a", 6, 2000, NULL);
    const char *a_pdf[] = {"reply", ig_conv, "--file", pdf, NULL};
    const char *a_gif[] = {"reply", ig_conv, "--file", gif, NULL};
    const char *missing[] = {"reply", ig_conv, "--file", "/nonexistent/x.png", NULL};
    long uploads = count("SELECT count(*) FROM router.uploads");
    char *why = NULL;

    CHECK_INT(domsctl(NULL, &why, a_pdf), 1);
    CHECK_CONTAINS(why, "not a file");
    free(why);
    why = NULL;
    CHECK_INT(domsctl(NULL, &why, a_gif), 1);
    CHECK_CONTAINS(why, "PNG or JPEG");
    free(why);
    why = NULL;
    CHECK_INT(domsctl(NULL, &why, missing), 2);
    CHECK_CONTAINS(why, "cannot read --file /nonexistent/x.png");
    free(why);
    CHECK_INT(count("SELECT count(*) FROM router.uploads"), uploads);
    free(pdf);
    free(gif);
}

/* Without the router, a live link is answered 503 (Meta retries), not 404. */
static void test_link_router_down(void)
{
    char *link = link_sent_to("ig-file-1");
    struct th_resp r;

    CHECK(link != NULL);
    th_proc_stop_clean(&router);
    if (link != NULL) {
        CHECK_INT(th_http(&r, "GET", link, NULL, NULL, 0), 503);
        CHECK_CONTAINS(r.headers.data, "Retry-After:");
        th_resp_cleanup(&r);
    }
    free(link);
}

/* Every file sent is kept sealed: no table of the router holds the marker in plaintext. */
static void test_sealed(void)
{
    char *v = plaintext_in(MARKER);

    CHECK_MSG(v == NULL || *v == '\0', "the file's bytes in plaintext in router tables: %s", v);
    free(v);
    CHECK(count("SELECT count(*) FROM router.media") >= 3);
    /* The query finds what is there: content types are kept as text. */
    v = plaintext_in("image/png");
    CHECK_CONTAINS(v, "attachments");
    free(v);
}

/* A reply with a file on a disconnected integration is refused at once. */
static void test_disconnected(void)
{
    const char *disc[] = {"integration", "disconnect", fb_integration, NULL};
    char *path = make_file("late.png", png, sizeof(png), 2000, NULL);
    const char *args[] = {"reply", fb_conv, "--file", path, NULL};
    char q[256], *why = NULL, *s = NULL;
    long uploads = count("SELECT count(*) FROM router.uploads");

    cJSON_Delete(run(0, disc));
    snprintf(q, sizeof(q), "SELECT status FROM router.routes WHERE integration_id = '%s'",
             fb_integration);
    CHECK_WAIT((free(s), s = th_stack_sql(&st, q)) != NULL && strcmp(s, "disconnected") == 0,
               10000);
    free(s);
    CHECK_INT(domsctl(NULL, &why, args), 1);
    CHECK_CONTAINS(why, "was disconnected");
    free(why);
    CHECK_INT(count("SELECT count(*) FROM router.uploads"), uploads);
    free(path);
}

/* Nothing of a file, nor the Page token, in the router's log. */
static void test_log_clean(void)
{
    char *log = th_proc_output(&router);

    CHECK(strstr(log, MARKER) == NULL);
    CHECK(strstr(log, "PAGE-" PAGE_F) == NULL);
    CHECK_CONTAINS(log, "uploaded to Meta");
    free(log);
}

int main(void)
{
    th_init("router_reply_file");
    th_stack_init(&st);
    started_ms = now_ms();
    th_stack_start(&st, &vault, "token-vault", NULL);
    th_stack_start(&st, &ingest, "webhook-ingest", NULL);
    th_stack_start(&st, &router, "conversation-router", NULL);

    RUN(test_setup);
    RUN(test_file_reply);
    RUN(test_text_and_file);
    RUN(test_over_limit);
    RUN(test_meta_refuses);
    RUN(test_upload_retried);
    RUN(test_instagram_file);
    RUN(test_instagram_fetch_failed);
    RUN(test_instagram_refused);
    RUN(test_chunks);
    RUN(test_expiry);
    RUN(test_sealed);
    RUN(test_disconnected);
    RUN(test_link_router_down);
    th_stack_stop(&st);
    RUN(test_log_clean);
    free(fb_conv);
    free(fb_conv2);
    free(fb_conv3);
    free(ig_conv);
    return check_summary();
}
