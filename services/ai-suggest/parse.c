/*
 * parse.c - the request bodies of OpenAI and Gemini, and everything their answers can be:
 * a draft, an error body in the provider's own shape, a refusal, or garbage (provider.h).
 *
 * Error bodies as the providers send them:
 *   OpenAI  {"error": {"message": "...", "type": "invalid_request_error", "param": null,
 *            "code": "invalid_api_key"}}
 *   Gemini  {"error": {"code": 429, "message": "...", "status": "RESOURCE_EXHAUSTED",
 *            "details": [{"@type": "...ErrorInfo", "reason": "API_KEY_INVALID"}]}}
 * Only the identifiers (type, code, status, reason) reach the reason line; see provider.h.
 *
 * How long a rate-limited caller must wait, as each provider says it:
 *   OpenAI  Retry-After (seconds), retry-after-ms, and x-ratelimit-reset-requests /
 *           x-ratelimit-reset-tokens as Go durations ("1s", "6m0s", "20ms")
 *   Gemini  no header: google.rpc.RetryInfo in the body, {"@type":
 *           "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "provider.h"

const char *ai_fail_label(enum ai_fail f)
{
    static const char *const labels[AI_FAIL_KINDS] = {
        "none",    "auth",    "rate_limited", "server_error", "rejected",
        "timeout", "network", "malformed",    "empty",        "refused"};

    return (unsigned)f < AI_FAIL_KINDS ? labels[f] : "unknown";
}

bool ai_fail_counts(enum ai_fail f)
{
    return f != AI_FAIL_NONE && f != AI_FAIL_REFUSED;
}

void ai_completion_cleanup(struct ai_completion *c)
{
    if (c->text != NULL) {
        sodium_memzero(c->text, c->len);
        free(c->text);
    }
    memset(c, 0, sizeof(*c));
}

/* --- request bodies ------------------------------------------------------------------- */

static void append_json(struct cm_buf *out, cJSON *root)
{
    char *text = cJSON_PrintUnformatted(root);

    if (text == NULL)
        abort(); /* allocation only */
    cm_buf_puts(out, text);
    sodium_memzero(text, strlen(text));
    cJSON_free(text);
    cJSON_Delete(root);
}

void ai_openai_body(struct cm_buf *out, const char *model, const char *system, const char *user)
{
    cJSON *root = cJSON_CreateObject(), *msgs, *m;

    cJSON_AddStringToObject(root, "model", model);
    msgs = cJSON_AddArrayToObject(root, "messages");
    m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "role", "system");
    cJSON_AddStringToObject(m, "content", system);
    cJSON_AddItemToArray(msgs, m);
    m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "role", "user");
    cJSON_AddStringToObject(m, "content", user);
    cJSON_AddItemToArray(msgs, m);
    /* One draft; the providers' own default sampling otherwise. */
    cJSON_AddNumberToObject(root, "n", 1);
    append_json(out, root);
}

static cJSON *text_parts(const char *text)
{
    cJSON *parts = cJSON_CreateArray(), *p = cJSON_CreateObject();

    cJSON_AddStringToObject(p, "text", text);
    cJSON_AddItemToArray(parts, p);
    return parts;
}

void ai_gemini_body(struct cm_buf *out, const char *system, const char *user)
{
    cJSON *root = cJSON_CreateObject(), *si, *contents, *c;

    si = cJSON_AddObjectToObject(root, "systemInstruction");
    cJSON_AddItemToObject(si, "parts", text_parts(system));
    contents = cJSON_AddArrayToObject(root, "contents");
    c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "role", "user");
    cJSON_AddItemToObject(c, "parts", text_parts(user));
    cJSON_AddItemToArray(contents, c);
    cJSON_AddObjectToObject(root, "generationConfig");
    cJSON_AddNumberToObject(cJSON_GetObjectItem(root, "generationConfig"), "candidateCount", 1);
    append_json(out, root);
}

/* --- helpers ---------------------------------------------------------------------------- */

/* Copies an identifier (letters, digits, "_.:-", at most 48) of a JSON string or number. */
static void ident(const cJSON *v, char *out, size_t cap)
{
    char num[32];
    const char *s = NULL;
    size_t n = 0;

    if (cJSON_IsString(v))
        s = v->valuestring;
    else if (cJSON_IsNumber(v)) {
        snprintf(num, sizeof(num), "%d", v->valueint);
        s = num;
    }
    for (; s != NULL && *s && n + 1 < cap && n < 48; s++) {
        char c = *s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '_' || c == '.' || c == ':' || c == '-')
            out[n++] = c;
    }
    if (cap > 0)
        out[n] = '\0';
}

static const cJSON *path(const cJSON *o, const char *a, const char *b)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, a);

    return b != NULL ? cJSON_GetObjectItemCaseSensitive(v, b) : v;
}

static long number_or(const cJSON *v, long def)
{
    return cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < 1e12 ? (long)v->valuedouble
                                                                             : def;
}

/* Takes text (len bytes) as the draft, without surrounding white space. */
static bool take_text(struct ai_completion *out, const char *text, size_t len)
{
    while (len > 0 && strchr(" \t\r\n", text[0]) != NULL) {
        text++;
        len--;
    }
    while (len > 0 && strchr(" \t\r\n", text[len - 1]) != NULL)
        len--;
    if (len == 0)
        return false;
    out->text = cm_xmalloc(len + 1);
    memcpy(out->text, text, len);
    out->text[len] = '\0';
    out->len = len;
    return true;
}

static void set_model(struct ai_completion *out, const cJSON *v, const char *fallback)
{
    snprintf(out->model, sizeof(out->model), "%s",
             cJSON_IsString(v) && v->valuestring[0] ? v->valuestring
             : fallback                             ? fallback
                                                    : "");
}

/* The failure an HTTP error status stands for (refinements are the caller's). */
static enum ai_fail status_fail(long status)
{
    if (status == 401 || status == 403)
        return AI_FAIL_AUTH;
    if (status == 429)
        return AI_FAIL_RATE;
    if (status >= 500)
        return AI_FAIL_SERVER;
    if (status >= 400)
        return AI_FAIL_REJECTED;
    return AI_FAIL_MALFORMED;
}

static const char *fail_words(enum ai_fail f)
{
    switch (f) {
    case AI_FAIL_AUTH:
        return "the API key was refused";
    case AI_FAIL_RATE:
        return "rate limited";
    case AI_FAIL_SERVER:
        return "server error";
    case AI_FAIL_REJECTED:
        return "request refused";
    case AI_FAIL_REFUSED:
        return "refused by the content filter";
    default:
        return "unexpected answer";
    }
}

/* Writes "<words> (HTTP <status>[, <id1>[/<id2>]])". */
static void http_reason(char *why, size_t cap, enum ai_fail f, long status, const char *id1,
                        const char *id2)
{
    snprintf(why, cap, "%s (HTTP %ld%s%s%s%s)", fail_words(f), status, id1[0] ? ", " : "", id1,
             id1[0] && id2[0] ? "/" : "", id2);
}

/* --- OpenAI ----------------------------------------------------------------------------- */

static enum ai_fail openai_error(long status, const cJSON *root, char *why, size_t cap)
{
    const cJSON *err = path(root, "error", NULL);
    char type[64] = "", code[64] = "";
    enum ai_fail f = status_fail(status);

    ident(path(err, "type", NULL), type, sizeof(type));
    ident(path(err, "code", NULL), code, sizeof(code));
    if (f == AI_FAIL_RATE && strcmp(code, "insufficient_quota") == 0) {
        snprintf(why, cap, "out of quota (HTTP 429, insufficient_quota)");
        return AI_FAIL_RATE;
    }
    /* A prompt refused by the moderation layer comes back as a 400. */
    if (f == AI_FAIL_REJECTED &&
        (strcmp(code, "content_policy_violation") == 0 || strcmp(code, "content_filter") == 0))
        f = AI_FAIL_REFUSED;
    http_reason(why, cap, f, status, type, code);
    return f;
}

enum ai_fail ai_openai_parse(long status, const char *body, size_t len, const char *fallback_model,
                             struct ai_completion *out, char *why, size_t cap)
{
    cJSON *root = cJSON_ParseWithLength(body != NULL ? body : "", body != NULL ? len : 0);
    const cJSON *choices, *first, *msg, *content, *refusal, *finish;
    enum ai_fail f = AI_FAIL_NONE;

    memset(out, 0, sizeof(*out));
    if (status < 200 || status > 299) {
        f = openai_error(status, root, why, cap);
        goto done;
    }
    choices = path(root, "choices", NULL);
    if (!cJSON_IsObject(root) || !cJSON_IsArray(choices)) {
        snprintf(why, cap, "malformed answer (HTTP %ld, %s)", status,
                 cJSON_IsObject(root) ? "no choices" : "not JSON");
        f = AI_FAIL_MALFORMED;
        goto done;
    }
    first = cJSON_GetArrayItem(choices, 0);
    if (first == NULL) {
        snprintf(why, cap, "an empty list of choices");
        f = AI_FAIL_EMPTY;
        goto done;
    }
    msg = path(first, "message", NULL);
    content = path(msg, "content", NULL);
    refusal = path(msg, "refusal", NULL);
    finish = path(first, "finish_reason", NULL);
    if (cJSON_IsString(finish))
        ident(finish, out->finish, sizeof(out->finish));
    if (strcmp(out->finish, "content_filter") == 0 ||
        (cJSON_IsString(refusal) && refusal->valuestring[0] != '\0')) {
        snprintf(why, cap, "refused by the content filter (%s)",
                 out->finish[0] ? out->finish : "refusal");
        f = AI_FAIL_REFUSED;
        goto done;
    }
    /* content may be null (a refusal or a tool call), never another type. */
    if (!cJSON_IsObject(msg) ||
        (content != NULL && !cJSON_IsString(content) && !cJSON_IsNull(content))) {
        snprintf(why, cap, "malformed answer (HTTP %ld, no message in the first choice)", status);
        f = AI_FAIL_MALFORMED;
        goto done;
    }
    if (!cJSON_IsString(content) ||
        !take_text(out, content->valuestring, strlen(content->valuestring))) {
        snprintf(why, cap, "an empty draft (finish_reason %s)",
                 out->finish[0] ? out->finish : "absent");
        f = AI_FAIL_EMPTY;
        goto done;
    }
    set_model(out, path(root, "model", NULL), fallback_model);
    out->prompt_tokens = number_or(path(root, "usage", "prompt_tokens"), -1);
    out->completion_tokens = number_or(path(root, "usage", "completion_tokens"), -1);
done:
    if (f != AI_FAIL_NONE)
        ai_completion_cleanup(out);
    cJSON_Delete(root);
    return f;
}

/* --- Gemini ----------------------------------------------------------------------------- */

static enum ai_fail gemini_error(long status, const cJSON *root, char *why, size_t cap)
{
    const cJSON *err = path(root, "error", NULL), *d;
    char st[64] = "", reason[64] = "";
    enum ai_fail f = status_fail(status);

    ident(path(err, "status", NULL), st, sizeof(st));
    cJSON_ArrayForEach(d, path(err, "details", NULL))
    {
        if (reason[0] == '\0')
            ident(path(d, "reason", NULL), reason, sizeof(reason));
    }
    /* Google answers a wrong key with 400 INVALID_ARGUMENT and the reason API_KEY_INVALID. */
    if (strcmp(reason, "API_KEY_INVALID") == 0 || strcmp(st, "UNAUTHENTICATED") == 0 ||
        strcmp(st, "PERMISSION_DENIED") == 0)
        f = AI_FAIL_AUTH;
    http_reason(why, cap, f, status, st, reason);
    return f;
}

/* True for the finishReason values that mean the draft was withheld. */
static bool blocked_finish(const char *r)
{
    static const char *const blocked[] = {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT",
                                          "SPII",   NULL};

    for (int i = 0; blocked[i] != NULL; i++) {
        if (strcmp(r, blocked[i]) == 0)
            return true;
    }
    return false;
}

enum ai_fail ai_gemini_parse(long status, const char *body, size_t len, const char *fallback_model,
                             struct ai_completion *out, char *why, size_t cap)
{
    cJSON *root = cJSON_ParseWithLength(body != NULL ? body : "", body != NULL ? len : 0);
    const cJSON *cands, *first, *parts, *part, *block;
    struct cm_buf text;
    enum ai_fail f = AI_FAIL_NONE;
    char reason[48] = "";
    size_t size = 0;

    memset(out, 0, sizeof(*out));
    cm_buf_init(&text);
    if (status < 200 || status > 299) {
        f = gemini_error(status, root, why, cap);
        goto done;
    }
    if (!cJSON_IsObject(root)) {
        snprintf(why, cap, "malformed answer (HTTP %ld, not JSON)", status);
        f = AI_FAIL_MALFORMED;
        goto done;
    }
    /* The prompt itself was blocked: there are no candidates then. */
    block = path(root, "promptFeedback", "blockReason");
    if (cJSON_IsString(block)) {
        ident(block, reason, sizeof(reason));
        snprintf(why, cap, "refused by the safety filter (blockReason %s)", reason);
        f = AI_FAIL_REFUSED;
        goto done;
    }
    cands = path(root, "candidates", NULL);
    if (cands != NULL && !cJSON_IsArray(cands)) {
        snprintf(why, cap, "malformed answer (HTTP %ld, candidates is not a list)", status);
        f = AI_FAIL_MALFORMED;
        goto done;
    }
    first = cJSON_GetArrayItem(cands, 0);
    if (first == NULL) {
        snprintf(why, cap, "no candidates in the answer");
        f = AI_FAIL_EMPTY;
        goto done;
    }
    ident(path(first, "finishReason", NULL), out->finish, sizeof(out->finish));
    if (blocked_finish(out->finish)) {
        snprintf(why, cap, "refused by the safety filter (finishReason %s)", out->finish);
        f = AI_FAIL_REFUSED;
        goto done;
    }
    parts = path(first, "content", "parts");
    if (parts != NULL && !cJSON_IsArray(parts)) {
        snprintf(why, cap, "malformed answer (HTTP %ld, parts is not a list)", status);
        f = AI_FAIL_MALFORMED;
        goto done;
    }
    /* Thinking models may return their thoughts as parts marked "thought": not the draft.
     * The size is reserved first so that the draft is never left behind by a realloc. */
    cJSON_ArrayForEach(part, parts)
    {
        const cJSON *t = path(part, "text", NULL);
        if (cJSON_IsString(t))
            size += strlen(t->valuestring);
    }
    cm_buf_reserve(&text, size + 1);
    cJSON_ArrayForEach(part, parts)
    {
        const cJSON *t = path(part, "text", NULL);
        if (cJSON_IsString(t) && !cJSON_IsTrue(path(part, "thought", NULL)))
            cm_buf_puts(&text, t->valuestring);
    }
    if (!take_text(out, text.data != NULL ? text.data : "", text.len)) {
        snprintf(why, cap, "an empty draft (finishReason %s)",
                 out->finish[0] ? out->finish : "absent");
        f = AI_FAIL_EMPTY;
        goto done;
    }
    set_model(out, path(root, "modelVersion", NULL), fallback_model);
    out->prompt_tokens = number_or(path(root, "usageMetadata", "promptTokenCount"), -1);
    out->completion_tokens = number_or(path(root, "usageMetadata", "candidatesTokenCount"), -1);
done:
    if (f != AI_FAIL_NONE)
        ai_completion_cleanup(out);
    cm_buf_wipe(&text);
    cJSON_Delete(root);
    return f;
}

/* --- rate-limit delays ------------------------------------------------------------------ */

long ai_duration_ms(const char *text)
{
    static const struct {
        const char *name;
        double ms;
    } units[] = {{"ns", 1e-6}, {"us", 1e-3}, {"\xc2\xb5s", 1e-3}, {"ms", 1},
                 {"s", 1000},  {"m", 60000}, {"h", 3600000}};
    const char *s = text;
    double total = 0;

    if (s == NULL || *s == '\0')
        return -1;
    if (strcmp(s, "0") == 0)
        return 0; /* Go writes a zero duration without a unit */
    while (*s != '\0') {
        double v = 0, scale = 1;
        bool digits = false;
        size_t best = 0;
        double unit = 0;

        for (; *s >= '0' && *s <= '9'; s++, digits = true)
            v = v * 10 + (*s - '0');
        if (*s == '.') {
            for (s++; *s >= '0' && *s <= '9'; s++, digits = true) {
                scale /= 10;
                v += (*s - '0') * scale;
            }
        }
        if (!digits)
            return -1;
        /* The longest unit that matches: "ms" before "m". */
        for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
            size_t n = strlen(units[i].name);
            if (n > best && strncmp(s, units[i].name, n) == 0) {
                best = n;
                unit = units[i].ms;
            }
        }
        if (best == 0)
            return -1;
        s += best;
        total += v * unit;
        if (total > 1e12)
            return -1;
    }
    /* Up to the next millisecond, but not for the binary fraction in 0.3 * 1000. */
    return (long)ceil(total - 1e-6);
}

long ai_gemini_retry_ms(const char *body, size_t len)
{
    cJSON *root = cJSON_ParseWithLength(body != NULL ? body : "", body != NULL ? len : 0);
    const cJSON *d;
    long ms = -1;

    cJSON_ArrayForEach(d, path(path(root, "error", NULL), "details", NULL))
    {
        const char *type = cJSON_GetStringValue(path(d, "@type", NULL));
        const char *delay = cJSON_GetStringValue(path(d, "retryDelay", NULL));
        if (ms < 0 && type != NULL && delay != NULL &&
            strcmp(type, "type.googleapis.com/google.rpc.RetryInfo") == 0)
            ms = ai_duration_ms(delay);
    }
    cJSON_Delete(root);
    return ms;
}

/* The value of response header name as a duration in ms, or -1. */
static long header_duration(const struct cm_httpc_response *resp, const char *name)
{
    return ai_duration_ms(cm_httpc_header(resp, name));
}

/* ai_openai_reset_ms(), also naming the header it read (static text) in *name. */
static long openai_reset(const struct cm_httpc_response *resp, const char **name)
{
    long requests = header_duration(resp, "x-ratelimit-reset-requests");
    long tokens = header_duration(resp, "x-ratelimit-reset-tokens");
    cJSON *root = cJSON_ParseWithLength(resp->body.data != NULL ? resp->body.data : "",
                                        resp->body.data != NULL ? resp->body.len : 0);
    const char *type = cJSON_GetStringValue(path(root, "error", "type"));
    bool use_tokens;

    /* The 429 says which limit it hit; without that, the longer wait is the safe one. */
    if (type != NULL && strcmp(type, "requests") == 0)
        use_tokens = false;
    else if (type != NULL && strcmp(type, "tokens") == 0)
        use_tokens = true;
    else
        use_tokens = tokens > requests;
    cJSON_Delete(root);
    *name = use_tokens ? "x-ratelimit-reset-tokens" : "x-ratelimit-reset-requests";
    return use_tokens ? tokens : requests;
}

long ai_openai_reset_ms(const struct cm_httpc_response *resp)
{
    const char *name;

    return openai_reset(resp, &name);
}

/* Raises *best to ms when ms is longer, naming its source. */
static void longest(long *best, const char **source, long ms, const char *name)
{
    if (ms > *best) {
        *best = ms;
        *source = name;
    }
}

long ai_retry_delay_ms(enum ai_provider_kind kind, const struct cm_httpc_response *resp,
                       const char **source)
{
    const char *from = NULL;
    long best = -1;

    longest(&best, &from, resp->retry_after_ms, "Retry-After");
    if (kind == AI_PROVIDER_OPENAI) {
        const char *ms = cm_httpc_header(resp, "retry-after-ms"), *name;
        char *end = NULL;
        double v = ms != NULL ? strtod(ms, &end) : -1;
        long reset;
        if (ms != NULL && end != ms && *end == '\0' && v >= 0 && v < 1e12)
            longest(&best, &from, (long)ceil(v), "retry-after-ms");
        reset = openai_reset(resp, &name);
        longest(&best, &from, reset, name);
    } else {
        longest(&best, &from, ai_gemini_retry_ms(resp->body.data, resp->body.len), "retryDelay");
    }
    if (source != NULL)
        *source = from;
    return best;
}
