/*
 * fakemeta_thread.c - thread control in the Meta stand-in (see fakemeta.h): which app holds
 * each contact's thread, the Send API's refusal of a message to a thread another app holds,
 * sender actions, and take_thread_control.
 *
 * Meta's answers, as Messenger gives them:
 *   a message or sender action to a thread another app holds:
 *     400 {"error": {"message": "(#10) Message failed to send because another app is
 *     controlling this thread now.", "type": "OAuthException", "code": 10,
 *     "error_subcode": 2018300, ...}}
 *   a sender action (mark_seen, typing_on, typing_off): 200 {"recipient_id"}, no message_id
 *   POST /vX/<page-id>/take_thread_control {"recipient": {"id"}, "metadata"?} with the Page
 *     token: 200 {"success": true}, and the app holds the thread; no recipient: code 100.
 * A thread nobody set is the suite's app's (or idle): sends pass.
 */
#include "fakemeta.h"
#include "fakemeta_int.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"

#define MAX_THREADS 128

struct fm_threads {
    int n;
    struct {
        char account[80];
        char recipient[80];
        char owner[40]; /* the app holding the thread */
    } t[MAX_THREADS];
};

/* The entry of (account, recipient), created when create is set; under m->lock. */
static int slot_locked(struct fakemeta *m, const char *account, const char *recipient, bool create)
{
    struct fm_threads *th;

    if (m->threads == NULL)
        m->threads = cm_xcalloc(1, sizeof(*m->threads));
    th = m->threads;
    for (int i = 0; i < th->n; i++) {
        if (strcmp(th->t[i].account, account) == 0 && strcmp(th->t[i].recipient, recipient) == 0)
            return i;
    }
    if (!create || th->n == MAX_THREADS)
        return -1;
    snprintf(th->t[th->n].account, sizeof(th->t[0].account), "%s", account);
    snprintf(th->t[th->n].recipient, sizeof(th->t[0].recipient), "%s", recipient);
    snprintf(th->t[th->n].owner, sizeof(th->t[0].owner), "%s", FAKEMETA_APP_ID);
    return th->n++;
}

void fakemeta_set_thread_owner(struct fakemeta *m, const char *account, const char *recipient,
                               const char *app_id)
{
    int i;

    pthread_mutex_lock(&m->lock);
    if ((i = slot_locked(m, account, recipient, true)) >= 0)
        snprintf(m->threads->t[i].owner, sizeof(m->threads->t[0].owner), "%s",
                 app_id != NULL ? app_id : FAKEMETA_APP_ID);
    pthread_mutex_unlock(&m->lock);
}

char *fakemeta_thread_owner(struct fakemeta *m, const char *account, const char *recipient)
{
    char *owner;
    int i;

    pthread_mutex_lock(&m->lock);
    i = slot_locked(m, account, recipient, false);
    owner = cm_xstrdup(i >= 0 ? m->threads->t[i].owner : FAKEMETA_APP_ID);
    pthread_mutex_unlock(&m->lock);
    return owner;
}

bool fm_thread_send(struct fakemeta *m, const char *account, const char *to, const cJSON *body,
                    struct fakehttp_response *resp)
{
    const char *action = cJSON_GetStringValue(cJSON_GetObjectItem(body, "sender_action"));
    bool elsewhere;
    int i;

    pthread_mutex_lock(&m->lock);
    i = slot_locked(m, account, to, false);
    elsewhere = i >= 0 && strcmp(m->threads->t[i].owner, FAKEMETA_APP_ID) != 0;
    pthread_mutex_unlock(&m->lock);
    if (elsewhere) {
        fakehttp_meta_error(resp, 400, 10, 2018300,
                            "(#10) Message failed to send because another app is controlling "
                            "this thread now.");
        return true;
    }
    if (action != NULL) {
        char ok[160];
        snprintf(ok, sizeof(ok), "{\"recipient_id\":\"%s\"}", to);
        fakehttp_json(resp, 200, ok);
        return true;
    }
    return false;
}

void fm_take_thread_control(struct fakemeta *m, int host, const char *account,
                            const struct fakehttp_request *req, struct fakehttp_response *resp)
{
    cJSON *body = cJSON_ParseWithLength(req->body, req->body_len);
    const char *auth = fakehttp_header(req, "Authorization");
    char *query_token = fakehttp_query_param(req, "access_token");
    const char *token = auth != NULL && strncmp(auth, "Bearer ", 7) == 0 ? auth + 7 : query_token;
    const char *to =
        cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(body, "recipient"), "id"));
    struct token t;
    int i;

    if (!fm_account_token(m, host, token, 1u << FAKEMETA_PAGE, account, req, resp, &t)) {
        /* answered */
    } else if (to == NULL) {
        fakehttp_meta_error(resp, 400, 100, 0, "(#100) The parameter recipient is required");
    } else {
        pthread_mutex_lock(&m->lock);
        if ((i = slot_locked(m, account, to, true)) >= 0)
            snprintf(m->threads->t[i].owner, sizeof(m->threads->t[0].owner), "%s", FAKEMETA_APP_ID);
        pthread_mutex_unlock(&m->lock);
        fm_usage_headers(m, resp, account, "messenger");
        fakehttp_json(resp, 200, "{\"success\":true}");
    }
    free(query_token);
    cJSON_Delete(body);
}

void fm_threads_free(struct fakemeta *m)
{
    free(m->threads);
    m->threads = NULL;
}

/* Counts recorded POSTs to a path ending in suffix whose body holds both needles. */
static int count_posts(struct fakemeta *m, const char *suffix, const char *a, const char *b)
{
    size_t slen = strlen(suffix);
    int n = 0;

    for (int h = 0; h < 2; h++) {
        if (h == 1 && m->srv[1] == m->srv[0])
            break;
        for (int i = 0; i < fakehttp_count(m->srv[h]); i++) {
            const struct fakehttp_request *r = fakehttp_get(m->srv[h], i);
            size_t plen = strlen(r->path);
            if (strcmp(r->method, "POST") == 0 && plen > slen &&
                strcmp(r->path + plen - slen, suffix) == 0 && r->body != NULL &&
                strstr(r->body, a) != NULL && strstr(r->body, b) != NULL)
                n++;
        }
    }
    return n;
}

int fakemeta_sender_actions(struct fakemeta *m, const char *recipient, const char *action)
{
    char who[160], what[80];

    snprintf(who, sizeof(who), "\"recipient\":{\"id\":\"%s\"}", recipient);
    snprintf(what, sizeof(what), "\"sender_action\":\"%s\"", action);
    return count_posts(m, "/messages", who, what);
}

int fakemeta_takes(struct fakemeta *m, const char *recipient)
{
    char who[160];

    snprintf(who, sizeof(who), "\"recipient\":{\"id\":\"%s\"}", recipient);
    return count_posts(m, "/take_thread_control", who, who);
}
