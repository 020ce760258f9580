/*
 * fakemeta_int.h - the stand-in's state and the checks its endpoint files share
 * (fakemeta.c: token exchanges, the Send API, routing; fakemeta_account.c: debug_token,
 * /me, subscribed_apps; fakemeta_profile.c: the User Profile API; fakemeta_thread.c:
 * thread control).
 * Not for tests: they use fakemeta.h.
 */
#ifndef TESTS_FAKEMETA_INT_H
#define TESTS_FAKEMETA_INT_H

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "fakehttp.h"
#include "fakemeta.h"

#define MAX_TOKENS  512
#define MAX_SEEN    256
#define MAX_SUBS    128
#define BOTH_HOSTS  (-1)
#define INVALID_190 "Invalid OAuth access token - Cannot parse access token"

struct token {
    char value[200];
    enum fakemeta_kind kind;
    char account[64]; /* the Page or Instagram account, "" for any */
    char person[80];  /* the app-scoped id of who granted it (GET /me) */
    int64_t issued_at;
    int64_t expires_at; /* 0: never */
    bool revoked;
};

/* The argument of one listener's handler. */
struct listener {
    struct fakemeta *m;
    int host; /* FAKEMETA_FACEBOOK, FAKEMETA_INSTAGRAM or BOTH_HOSTS */
};

struct fakemeta {
    struct fakehttp *srv[2]; /* srv[1] == srv[0] with one listener */
    struct listener on[2];

    pthread_mutex_t lock; /* guards what follows */
    struct token tokens[MAX_TOKENS];
    int ntokens;
    int64_t clock_offset;
    bool open_login;
    bool proof_optional; /* false: every call with a token must carry appsecret_proof */
    int throttle_code;
    int throttle_left; /* < 0: until turned off */
    int delay_ms;
    long calls;
    char seen[MAX_SEEN][80]; /* recipients that already had their first (failing) attempt */
    struct {
        char account[80];
        char fields[256];
    } subs[MAX_SUBS]; /* the app's webhook subscriptions, by account */
    int nsubs;
    int nseen;
    int sent_seq;
    struct fm_threads *threads; /* who holds each thread (fakemeta_thread.c) */
    struct fm_convs *convs;     /* fakemeta_conversations.c's, created on first use */
    struct fm_media *media;     /* fakemeta_media.c's CDN and attachments, created on first use */
    struct fm_uploads *uploads; /* fakemeta_upload.c's, created on first use */
};

/* The stand-in's clock (seconds); under m->lock. */
int64_t fm_now_locked(const struct fakemeta *m);
/* The host a token of kind belongs to. */
enum fakemeta_host fm_host_of(enum fakemeta_kind kind);
/* The token with value, or NULL; under m->lock. */
struct token *fm_find_locked(struct fakemeta *m, const char *value);
/*
 * Is value a live token of one of the kinds in mask (bits of enum fakemeta_kind) issued by
 * host (or either, BOTH_HOSTS)? Otherwise answers Meta's error into resp. *out (may be NULL)
 * receives a copy.
 */
bool fm_valid_token(struct fakemeta *m, int host, const char *value, unsigned mask,
                    struct fakehttp_response *resp, struct token *out);
/* Does the request carry token's appsecret_proof (as the app requires)? Else answers 100. */
bool fm_proof_ok(struct fakemeta *m, const struct fakehttp_request *req, const char *token,
                 struct fakehttp_response *resp);
/*
 * Is token (NULL: none was given) a live token of mask's kinds for account ("me" allowed for
 * an Instagram token), with its appsecret_proof? Otherwise answers Meta's error into resp.
 * *out receives a copy.
 */
bool fm_account_token(struct fakemeta *m, int host, const char *token, unsigned mask,
                      const char *account, const struct fakehttp_request *req,
                      struct fakehttp_response *resp, struct token *out);
/* Meta's usage headers: X-App-Usage, and the business use case one for account. */
void fm_usage_headers(struct fakemeta *m, struct fakehttp_response *resp, const char *account,
                      const char *use_case);

/* fakemeta_account.c */
void fm_debug_token(struct fakemeta *m, const struct fakehttp_request *req,
                    struct fakehttp_response *resp);
void fm_whoami(struct fakemeta *m, int host, const struct fakehttp_request *req,
               struct fakehttp_response *resp);
void fm_subscribed_apps(struct fakemeta *m, int host, const char *account,
                        const struct fakehttp_request *req, struct fakehttp_response *resp);

/* fakemeta_profile.c: answers a read of person id's profile and returns true, or returns false
 * (nothing answered) for a read that is not one (a Page token read). */
bool fm_profile(struct fakemeta *m, int host, const char *id, const struct fakehttp_request *req,
                struct fakehttp_response *resp);

/* fakemeta_thread.c */
struct fm_threads;
/*
 * A Send API call to `to` on account that passed the token checks: true when answered here (a
 * thread another app holds: 10/2018300; a sender action: 200 without a message_id).
 */
bool fm_thread_send(struct fakemeta *m, const char *account, const char *to, const cJSON *body,
                    struct fakehttp_response *resp);
void fm_take_thread_control(struct fakemeta *m, int host, const char *account,
                            const struct fakehttp_request *req, struct fakehttp_response *resp);
void fm_threads_free(struct fakemeta *m);

/* fakemeta_upload.c: POST /vX/<account>/message_attachments (the Facebook host). */
struct fm_uploads;
void fm_upload(struct fakemeta *m, const char *account, const struct fakehttp_request *req,
               struct fakehttp_response *resp);
/* A Send API call that passed the token checks: true when its attachment was refused here. */
bool fm_upload_send(struct fakemeta *m, const char *account, bool ig, const cJSON *body,
                    struct fakehttp_response *resp);
void fm_uploads_free(struct fakemeta *m);

/* fakemeta_conversations.c: true when it answered req (a Conversations API path). */
bool fm_conversations(struct fakemeta *m, int host, const char *rest,
                      const struct fakehttp_request *req, struct fakehttp_response *resp);
void fm_conversations_free(struct fakemeta *m);

/* fakemeta_media.c: true when it answered req (the CDN, or a message's attachments). */
struct fm_media;
bool fm_media(struct fakemeta *m, int host, const char *rest, const struct fakehttp_request *req,
              struct fakehttp_response *resp);
void fm_media_free(struct fakemeta *m);

#endif
