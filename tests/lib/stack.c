/*
 * stack.c - the whole suite for end-to-end tests (see stack.h).
 */
#include "stack.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "check.h"
#include "common/crypto.h"
#include "common/keyring.h"
#include "common/mem.h"
#include "common/nats.h"

struct role {
    const char *daemon;
    const char *role;
    const char *listen_var;   /* the address th_stack_start() returns and waits on */
    const char *internal_var; /* a second, internal address, or NULL */
};

static const struct role roles[] = {
    {"webhook-ingest", "doms_ingest", "INGEST_LISTEN", "WEBHOOK_INGEST_HTTP_LISTEN"},
    {"conversation-router", "doms_router", "CONVERSATION_ROUTER_HTTP_LISTEN", NULL},
    {"token-vault", "doms_vault", "TOKEN_VAULT_HTTP_LISTEN", NULL},
    {"retention-reaper", "doms_reaper", "RETENTION_REAPER_HTTP_LISTEN", NULL},
    {"ai-suggest", "doms_ai", "AI_SUGGEST_HTTP_LISTEN", NULL},
};

void th_stack_init(struct th_stack *s)
{
    th_stack_init_at(s, th_getenv("DOMS_TEST_PG_URL"));
}

void th_stack_init_at(struct th_stack *s, const char *admin_url)
{
    FILE *f;

    memset(s, 0, sizeof(*s));
    th_db_create_at(&s->db, admin_url);
    th_nats_start(&s->nats);
    if (fakemeta_start(&s->meta) != 0) {
        fprintf(stderr, "cannot start the Meta stand-in\n");
        exit(1);
    }
    snprintf(s->kek, sizeof(s->kek), "%s/stack.kek", th_tmpdir());
    f = fopen(s->kek, "w");
    if (f == NULL) {
        perror(s->kek);
        exit(1);
    }
    fputs("1:c3RhY2stdGVzdC1rZWstMDEyMzQ1Njc4OWFiY2RlZmc=\n", f);
    fclose(f);
    chmod(s->kek, 0600);
    if (th_nats_connect(&s->nc, s->nats.url) != NATS_OK) {
        fprintf(stderr, "cannot connect to the test nats-server\n");
        exit(1);
    }
}

int th_stack_start(struct th_stack *s, struct th_proc *p, const char *daemon,
                   const char *const *extra)
{
    const struct role *r = NULL;
    char *env[48], ready[128], *url;
    int n = 0, port = th_free_port();

    for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++) {
        if (strcmp(roles[i].daemon, daemon) == 0)
            r = &roles[i];
    }
    if (r == NULL) {
        fprintf(stderr, "unknown daemon %s\n", daemon);
        exit(1);
    }
    /* putenv in order: a later entry of the same name replaces an earlier one, so the
     * test's extras, last, win over these defaults. */
    url = th_db_url(&s->db, r->role);
    env[n++] = cm_xasprintf("DATABASE_URL=%s", url);
    free(url);
    env[n++] = cm_xasprintf("NATS_URL=%s", s->nats.url);
    env[n++] = cm_xasprintf("DOMS_KEK_FILE=%s", s->kek);
    env[n++] = cm_xasprintf("%s=127.0.0.1:%d", r->listen_var, port);
    /* Tests run in parallel: a default internal address would be taken by the first. */
    if (r->internal_var != NULL)
        env[n++] = cm_xasprintf("%s=127.0.0.1:%d", r->internal_var, th_free_port());
    env[n++] = cm_xasprintf("META_GRAPH_URL=%s", fakemeta_url(s->meta, FAKEMETA_FACEBOOK));
    env[n++] = cm_xasprintf("INSTAGRAM_GRAPH_URL=%s", fakemeta_url(s->meta, FAKEMETA_INSTAGRAM));
    env[n++] = cm_xstrdup("META_APP_ID=" FAKEMETA_APP_ID);
    env[n++] = cm_xstrdup("META_APP_SECRET=" FAKEMETA_APP_SECRET);
    env[n++] = cm_xstrdup("META_VERIFY_TOKEN=" STACK_VERIFY_TOKEN);
    env[n++] = cm_xstrdup("LOG_LEVEL=debug");
    /* Ingest's public URL, which the router's Instagram file links name, as deploy/local/up
     * gives every daemon. */
    if (strcmp(daemon, "webhook-ingest") == 0)
        snprintf(s->ingest_url, sizeof(s->ingest_url), "http://127.0.0.1:%d", port);
    if (s->ingest_url[0] != '\0')
        env[n++] = cm_xasprintf("PUBLIC_BASE_URL=%s", s->ingest_url);
    for (int i = 0; extra != NULL && extra[i] != NULL && n < 46; i++)
        env[n++] = cm_xstrdup(extra[i]);
    env[n] = NULL;
    th_proc_start(p, daemon, NULL, (const char *const *)env);
    snprintf(ready, sizeof(ready), "http://127.0.0.1:%d/readyz", port);
    CHECK_MSG(th_wait_http(ready, 200, 30000), "%s never became ready", daemon);
    for (int i = 0; i < n; i++)
        free(env[i]);
    /* A daemon restarted in the same struct is one entry. */
    for (int i = 0; i < s->nprocs; i++) {
        if (s->procs[i] == p)
            return port;
    }
    if (s->nprocs < 16)
        s->procs[s->nprocs++] = p;
    return port;
}

long th_stack_webhook(struct th_stack *s, const char *body)
{
    char sig[80], header[120], url[128];
    const char *headers[3] = {"Content-Type: application/json", header, NULL};
    struct th_resp r;
    long code;

    th_sign(FAKEMETA_APP_SECRET, body, strlen(body), sig);
    snprintf(header, sizeof(header), "X-Hub-Signature-256: %s", sig);
    snprintf(url, sizeof(url), "%s/api/v1/webhooks/meta", s->ingest_url);
    code = th_http(&r, "POST", url, headers, body, strlen(body));
    th_resp_cleanup(&r);
    return code;
}

int th_stack_domsctl(struct th_stack *s, cJSON **out, char **text, const char *const *args)
{
    char nats_env[96];
    const char *env[] = {nats_env, NULL};
    const char *argv[24] = {"--json"};
    char *output = NULL;
    int n = 1, code;

    snprintf(nats_env, sizeof(nats_env), "NATS_URL=%s", s->nats.url);
    for (int i = 0; args[i] != NULL && n < 23; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    code = th_run("domsctl", argv, env, &output);
    if (out != NULL)
        *out = cJSON_Parse(output);
    if (text != NULL)
        *text = output;
    else
        free(output);
    return code;
}

cJSON *th_stack_run(struct th_stack *s, int want, const char *const *args)
{
    cJSON *out = NULL;
    char *text = NULL;
    int code = th_stack_domsctl(s, &out, &text, args);

    CHECK_MSG(code == want, "domsctl %s %s: exit %d, want %d: %s", args[0], args[1], code, want,
              text);
    free(text);
    return out;
}

void th_stack_refused(struct th_stack *s, const char *const *args, const char *want)
{
    char *text = NULL;
    int code = th_stack_domsctl(s, NULL, &text, args);

    CHECK_MSG(code == 1 && text != NULL && strstr(text, want) != NULL,
              "domsctl %s %s: exit %d, want 1 with \"%s\": %s", args[0], args[1], code, want,
              text ? text : "");
    free(text);
}

long th_stack_message(struct th_stack *s, bool ig, const char *account, int64_t entry_ms,
                      const char *psid, int64_t ts_ms, const char *mid, const char *text,
                      const char *attachments)
{
    struct cm_buf b;
    long code;

    cm_buf_init(&b);
    cm_buf_printf(&b,
                  "{\"object\":\"%s\",\"entry\":[{\"id\":\"%s\",\"time\":%lld,\"messaging\":[{"
                  "\"sender\":{\"id\":\"%s\"},\"recipient\":{\"id\":\"%s\"},\"timestamp\":%lld,"
                  "\"message\":{\"mid\":\"%s\"",
                  ig ? "instagram" : "page", account, (long long)entry_ms, psid, account,
                  (long long)ts_ms, mid);
    if (text != NULL)
        cm_buf_printf(&b, ",\"text\":\"%s\"", text);
    if (attachments != NULL)
        cm_buf_printf(&b, ",\"attachments\":%s", attachments);
    cm_buf_printf(&b, "}}]}]}");
    code = th_stack_webhook(s, b.data);
    cm_buf_cleanup(&b);
    return code;
}

char *th_stack_await_conv(struct th_stack *s, const char *mid)
{
    char q[256], *id = NULL;

    snprintf(q, sizeof(q), "SELECT conversation_id FROM router.messages WHERE mid = '%s'", mid);
    if (!WAIT_UNTIL((id = th_stack_sql(s, q)) != NULL, 10000))
        CHECK_MSG(0, "message %s was never stored", mid);
    return id;
}

/* Copies the string at o.key into out (64 bytes), "none" when there is none. */
static void copy_id(const cJSON *o, const char *key, char out[64])
{
    const char *v = th_json_str(o, key, NULL);

    snprintf(out, 64, "%s", v != NULL ? v : "none");
}

void th_stack_workspace(struct th_stack *s, const char *name, bool ai, char ws[64])
{
    const char *args[] = {"workspace", "create", "--name", name, ai ? "--ai" : NULL, "on", NULL};
    cJSON *out = th_stack_run(s, 0, args);

    copy_id(out, "workspace_id", ws);
    cJSON_Delete(out);
}

bool th_stack_connect(struct th_stack *s, const char *ws, const char *platform, const char *account,
                      const char *token, const char *asid, char id[64])
{
    const char *args[] = {
        "integration", "connect", "--workspace", ws,    "--platform",           platform,
        "--account",   account,   "--token",     token, asid ? "--asid" : NULL, asid,
        NULL};
    bool ig = strcmp(platform, "instagram") == 0;
    cJSON *out;
    bool found;

    fakemeta_issue(s->meta, ig ? FAKEMETA_IG_SHORT : FAKEMETA_USER_SHORT, token,
                   ig ? account : NULL);
    out = th_stack_run(s, 0, args);
    found = th_json_str(out, "integration_id", NULL) != NULL;
    if (id != NULL)
        copy_id(out, "integration_id", id);
    cJSON_Delete(out);
    return found;
}

static cJSON *parse_reply(natsStatus st, natsMsg *reply)
{
    cJSON *json = NULL;

    if (st == NATS_OK) {
        json = cJSON_ParseWithLength(natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply));
        natsMsg_Destroy(reply);
    }
    return json;
}

cJSON *th_stack_request_as(struct th_stack *s, const char *identity, const char *subject,
                           const char *body)
{
    natsMsg *reply = NULL;
    natsStatus st = cm_nats_request_as(&reply, s->nc, identity, subject, body, 30000);

    return parse_reply(st, reply);
}

cJSON *th_stack_request(struct th_stack *s, const char *subject, const char *body)
{
    return th_stack_request_as(s, "operator", subject, body);
}

cJSON *th_stack_js(struct th_stack *s, const char *subject, const char *body)
{
    natsMsg *reply = NULL;
    natsStatus st = natsConnection_RequestString(&reply, s->nc, subject, body, 30000);

    return parse_reply(st, reply);
}

cJSON *th_stack_last_event(struct th_stack *s, const char *stream, const char *subject)
{
    jsCtx *js = NULL;
    natsMsg *m = NULL;
    jsErrCode jerr = 0;
    cJSON *json = NULL;

    natsConnection_JetStream(&js, s->nc, NULL);
    if (js_GetLastMsg(&m, js, stream, subject, NULL, &jerr) == NATS_OK) {
        json = cJSON_ParseWithLength(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m));
        natsMsg_Destroy(m);
        if (cJSON_IsArray(json)) {
            cJSON *all = json;
            json = cJSON_DetachItemFromArray(all, cJSON_GetArraySize(all) - 1);
            cJSON_Delete(all);
        }
    }
    jsCtx_Destroy(js);
    return json;
}

char *th_stack_sql(struct th_stack *s, const char *sql)
{
    return th_stack_sql_as(s, NULL, sql);
}

char *th_stack_sql_as(struct th_stack *s, const char *role, const char *sql)
{
    return th_db_sql(&s->db, role, sql);
}

char *th_stack_sqlf(struct th_stack *s, const char *fmt, ...)
{
    struct cm_buf q;
    va_list ap;
    char *v;

    cm_buf_init(&q);
    va_start(ap, fmt);
    cm_buf_vprintf(&q, fmt, ap);
    va_end(ap);
    v = th_stack_sql(s, q.data);
    cm_buf_cleanup(&q);
    return v;
}

long th_stack_count(struct th_stack *s, const char *sql)
{
    return th_db_count(&s->db, NULL, sql);
}

int th_stack_seal_media(struct th_stack *s, const char *att, const void *data, size_t len,
                        struct cm_buf *out)
{
    char *owner = th_stack_sqlf(s,
                                "SELECT workspace_id || ' ' || integration_id"
                                " FROM router.attachments WHERE id = '%s'",
                                att);
    char *url = th_db_url(&s->db, "doms_router"), *sp = owner != NULL ? strchr(owner, ' ') : NULL;
    char kid[CM_KEYRING_SCOPE_ID_LEN], aad[96], err[256];
    struct cm_keyring *kr = NULL;
    struct cm_pg *conn = NULL;
    int rc = CM_NOTFOUND;

    if (sp != NULL) {
        *sp = '\0';
        cm_keyring_scope_id(kid, owner, sp + 1);
        snprintf(aad, sizeof(aad), "router.media:%s", att);
        rc = cm_keyring_load(&kr, s->kek, err, sizeof(err));
        CHECK_MSG(rc == CM_OK, "keyring: %s", err);
    }
    if (rc == CM_OK)
        rc = cm_pg_connect(&conn, url, "router");
    if (rc == CM_OK)
        rc = cm_keyring_seal(kr, conn, kid, aad, data, len, out);
    CHECK_MSG(rc == CM_OK, "attachment %s not sealed as one piece: %s", att, cm_err_str(rc));
    cm_pg_destroy(conn);
    cm_keyring_destroy(kr);
    free(url);
    free(owner);
    return rc == CM_OK ? 0 : -1;
}

void th_stack_stop(struct th_stack *s)
{
    /* Those the test has not reaped itself: each must exit 0 (and its log is scanned). */
    for (int i = s->nprocs - 1; i >= 0; i--)
        th_proc_stop_clean(s->procs[i]);
    s->nprocs = 0;
    natsConnection_Destroy(s->nc);
    fakemeta_stop(s->meta);
    th_nats_stop(&s->nats);
}

const char *th_json_str(const cJSON *o, const char *a, const char *b)
{
    const cJSON *v = cJSON_GetObjectItem(o, a);

    if (b != NULL)
        v = cJSON_GetObjectItem(v, b);
    return cJSON_GetStringValue(v);
}
