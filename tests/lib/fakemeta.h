/*
 * fakemeta.h - a local stand-in for Meta's Graph API, as strict as the real one: two hosts,
 * graph.facebook.com and graph.instagram.com, each on a listener of its own (or both on one,
 * for fakemeta_server), each knowing only its own endpoints and the tokens it issued.
 *
 * Facebook host (META_GRAPH_URL):
 *   GET  /vX/oauth/access_token?grant_type=fb_exchange_token&client_id&client_secret
 *        &fb_exchange_token=<user token>            -> long-lived user token, 60 days
 *   GET  /vX/<page-id>?fields=access_token&access_token=<user token>
 *                                                   -> Page token (never expires when the
 *                                                      user token is long-lived, else 1 h)
 *   GET  /vX/debug_token?input_token&access_token=<app id>|<app secret>
 *                                                   -> {"data": {"is_valid", "type",
 *                                                      "expires_at", "scopes", ...}}
 *   GET  /vX/me?fields=id&access_token=<user token>  -> {"id": <app-scoped user id>}
 *   POST /vX/<page-id>/messages (Bearer <Page token of that page>)
 *   POST /vX/<page-id>/message_attachments (Bearer <Page token>), multipart/form-data
 *        message={"attachment":{"type","payload"}} and filedata -> {"attachment_id"}
 *                                                   (fakemeta_upload.c: Meta's size limits
 *                                                   and refusals)
 *   POST /vX/<page-id>/take_thread_control (Bearer <Page token>)  -> {"success": true}
 *                                                   (fakemeta_thread.c)
 *   GET|POST|DELETE /vX/<page-id>/subscribed_apps?[subscribed_fields]&access_token=<Page token>
 *                                                   -> the app's webhook subscription
 *   GET  /vX/<PSID>?fields=first_name,last_name,profile_pic (Page token, Bearer or
 *        access_token)                              -> the person's profile (User Profile API)
 * Instagram host (INSTAGRAM_GRAPH_URL):
 *   GET  /access_token?grant_type=ig_exchange_token&client_secret&access_token=<short>
 *                                                   -> long-lived Instagram token, 60 days
 *   GET  /refresh_access_token?grant_type=ig_refresh_token&access_token=<long-lived>
 *                                                   -> a new one, only once the token is at
 *                                                      least 24 hours old and unexpired
 *   GET  /vX/me?fields=id&access_token=<Instagram token> -> {"id", "user_id"}
 *   POST /vX/<ig-id>/messages or /vX/me/messages (Bearer <long-lived Instagram token>); a
 *        file by message.attachment.payload.url, which the stand-in fetches (fakemeta_upload.c)
 *   GET|POST|DELETE /vX/me/subscribed_apps?[subscribed_fields]&access_token=<Instagram token>
 *   GET  /vX/<IGSID>?fields=name,username,profile_pic (Instagram token) -> the person's profile
 *
 * The person who granted a token issued with fakemeta_issue() has the app-scoped id
 * "u-<token>"; the tokens derived from it (exchanged, refreshed, a Page's) are theirs too.
 *
 * Every call that presents an access token must carry appsecret_proof, the hex HMAC-SHA256
 * of that token under the app secret: missing or wrong, it is code 100 (HTTP 400) with
 * Meta's message.
 *
 * A token the host never issued, or of the wrong kind, answers OAuthException 190
 * "Invalid OAuth access token - Cannot parse access token" (HTTP 400); an expired one 190
 * with error_subcode 463; a revoked one 190 with subcode 460. A wrong grant_type, a missing
 * parameter or a refresh of a token younger than 24 hours is code 100 (Meta documents the
 * rule but not its exact error text). A wrong app id or secret is code 101.
 *
 * Rate limits: every answer carries X-App-Usage {"call_count","total_time","total_cputime"}
 * (percentages); a Send API call and a Page token read also carry
 * X-Business-Use-Case-Usage for the page or Instagram account. fakemeta_throttle() makes the
 * next calls it applies to answer a throttling code, with "is_transient": true (usage then
 * reads 100): 4 (the app's limit, HTTP 403: every call), 17 (a user's, 403: calls with a
 * user token: exchanges, refresh, Page token reads), 32 (a Page's, 403) and 613 (calls
 * within one hour, 400): Send API calls.
 *
 * Tokens that the business obtains through Meta's Login dialog (short-lived user or
 * Instagram tokens) never pass through the suite: a test issues them with fakemeta_issue().
 * With fakemeta_set_open_login() any unknown token presented to an exchange is taken as a
 * short-lived token just issued by that host (for fakemeta_server, where a person types it).
 *
 * Faults scripted by name, once the token or id passes every check above:
 *   Instagram exchange of a token garbage*   200 with an HTML page instead of JSON
 *   Instagram exchange of a token html502*   502 with an HTML page (a proxy's)
 *   Page token for a page id 999*            100/33: the object does not exist
 *   subscribed_apps for an account 998*      403, 200: a permission is missing
 *
 * User Profile API (fakemeta_profile.c): a person's profile is made from their id: Messenger
 * first_name "Ada", last_name "Lovelace-<id>"; Instagram name "Grace Hopper-<id>" (none for
 * an id nameless*), username "grace.<id>"; profile_pic a CDN URL naming the id. A field the
 * host's user node lacks (username on Messenger, first_name on Instagram) is code 100. The id
 * scripts Meta's refusals:
 *   noconsent*     400: Messenger code 100 subcode 2018218 (no profile available for this
 *                  user), Instagram code 230 (user consent is required to access user profile)
 *   unknown*       400, code 100 subcode 33 (the object does not exist)
 *   throttled*     400, code 613 (is_transient) for the first two reads of that id, then 200
 *
 * Send API: the recipient id also scripts Meta, so a test names its contacts:
 *   fail-window*   400, code 10 subcode 2018278 (outside the allowed window)
 *   fail-token*    400, code 190 (invalid OAuth access token)
 *   fail-gone*     400, code 551 subcode 1545041 (this person isn't available)
 *   fail-param*    400, code 100 (invalid parameter)
 *   flaky*         500 on the first attempt for that recipient, then 200
 *   throttled*     400 code 613 on the first attempt, then 200
 *   down*          503 always
 *   anything else  200 {"recipient_id", "message_id": "m_sent_<n>"}
 * A thread another app holds (fakemeta_set_thread_owner()) refuses first: 400, code 10
 * subcode 2018300; a sender action ("sender_action": "mark_seen") is answered 200
 * {"recipient_id"}.
 *
 * Media (fakemeta_media.c): Meta's CDN, on the Facebook host's listener, serves what a test
 * put there under URLs shaped like Meta's (GET /cdn/v/t1.15752-9/<name>_n.jpg?...&oh=..&oe=..),
 * 403 "URL signature expired" once fakemeta_cdn_expire() made them so; the Graph API's
 * message attachments hand out fresh URLs of a message's media:
 *   GET  /vX/<mid>/attachments                 (Facebook host, Page token)
 *   GET  /vX/<mid>?fields=attachments          (Instagram host, Instagram token)
 *        -> {"data": [{"id", "mime_type", "name", "size", "image_data": {"url", ...}}]}
 *           (Instagram: {"attachments": {"data": [...]}, "id"}); a mid never registered with
 *           fakemeta_media_message() is code 100 subcode 33.
 *
 * Conversations API (fakemeta_conversations.c), both hosts, each with its account's token:
 *   GET  /vX/<page-id>/conversations?platform=messenger      (Facebook host)
 *   GET  /vX/me/conversations?platform=instagram             (Instagram host)
 *                                  -> {"data": [{"id", "updated_time"}], "paging"}, most
 *                                     recently updated first
 *   GET  /vX/<conversation-id>/messages?fields=id,created_time,from,to,message
 *                                  -> {"data": [...], "paging"}, newest first
 *   Pages hold limit items (default 25, at most 100), with paging.cursors.after and
 *   paging.next while more remain. Meta's 2 calls a second per account is enforced (80006
 *   on Messenger, 80002 on Instagram); fakemeta_conv_throttle() scripts more.
 */
#ifndef TESTS_FAKEMETA_H
#define TESTS_FAKEMETA_H

#include <stdint.h>

#include "fakehttp.h"

#define FAKEMETA_APP_ID     "app-123"
#define FAKEMETA_APP_SECRET "test-app-secret-0123"

enum fakemeta_host {
    FAKEMETA_FACEBOOK = 0, /* graph.facebook.com */
    FAKEMETA_INSTAGRAM = 1 /* graph.instagram.com */
};

enum fakemeta_kind {
    FAKEMETA_USER_SHORT = 0, /* Facebook user token from Login, about 1 hour */
    FAKEMETA_USER_LONG,      /* Facebook user token, 60 days */
    FAKEMETA_PAGE,           /* Page token */
    FAKEMETA_IG_SHORT,       /* Instagram user token from Instagram Login, 1 hour */
    FAKEMETA_IG_LONG,        /* Instagram long-lived token, 60 days */
};

struct fakemeta;

/* Starts both hosts on two free ports of 127.0.0.1. Returns 0, or -1 (reason on stderr).
 * Stop and free it with fakemeta_stop(). */
int fakemeta_start(struct fakemeta **out);
/*
 * The same on given ports (0: a free one). ig_port -1: one listener on fb_port plays both
 * hosts, each endpoint answering as its own host would (fakemeta_server PORT).
 */
int fakemeta_start_at(struct fakemeta **out, int fb_port, int ig_port);
/* Stops both listeners and frees m; accepts NULL. */
void fakemeta_stop(struct fakemeta *m);

/* The hosts' base URLs ("http://127.0.0.1:PORT"), borrowed. Equal with one listener. */
const char *fakemeta_url(const struct fakemeta *m, enum fakemeta_host host);
/* The host's listener and its recorded requests, borrowed. */
struct fakehttp *fakemeta_server(struct fakemeta *m, enum fakemeta_host host);
/* Forgets every request recorded on both hosts. */
void fakemeta_clear(struct fakemeta *m);

/* --- test hooks (thread-safe) ---------------------------------------------------------- */

/*
 * Registers token as issued now by the host its kind belongs to. account binds it to a
 * Page (FAKEMETA_PAGE) or an Instagram account id (IG kinds), so that the Send API accepts
 * it for that account only; NULL for none. Issuing a token again renews it.
 */
void fakemeta_issue(struct fakemeta *m, enum fakemeta_kind kind, const char *token,
                    const char *account);
/* Revokes a token (the user removed the app or changed the password): then 190/460. */
void fakemeta_revoke(struct fakemeta *m, const char *token);
/* Makes a token seconds older: its issue time and its expiry move back by that much. */
void fakemeta_age(struct fakemeta *m, const char *token, int64_t seconds);
/* Moves the stand-in's clock (seconds, added to the real time) for every token at once. */
void fakemeta_set_clock(struct fakemeta *m, int64_t offset_seconds);
/* true: the exchanges accept any unknown token as a fresh short-lived one (see above). */
void fakemeta_set_open_login(struct fakemeta *m, bool open);
/*
 * The next count calls to either host that code applies to (see above; count < 0: every
 * one until called again with code 0) answer the throttling error code: 4, 17, 32 or 613.
 */
void fakemeta_throttle(struct fakemeta *m, int code, int count);

/*
 * By default every call that presents an access token must carry its appsecret_proof (the
 * app requires it, as the suite's app should); true: a call without one is accepted, as
 * Meta does for an app that does not require it. A wrong proof is refused either way.
 */
void fakemeta_set_proof_optional(struct fakemeta *m, bool optional);
/* Writes token's appsecret_proof into out (64 hex digits and a NUL): the hex HMAC-SHA256 of
 * the token under FAKEMETA_APP_SECRET, what a call must carry and what the stand-in checks. */
void fakemeta_proof(const char *token, char out[65]);

/* Every answer leaves this many ms after its request arrived (0: at once). */
void fakemeta_set_delay(struct fakemeta *m, int ms);

/* --- what the suite sent --------------------------------------------------------------- */

/* The fields account is subscribed to, comma-separated (a new string), or NULL. */
char *fakemeta_subscription(struct fakemeta *m, const char *account);
/* Meta forgets the app's subscription for account (as after a permission's removal). */
void fakemeta_forget_subscription(struct fakemeta *m, const char *account);

/*
 * The number of User Profile API reads of person id (NULL: of anyone) received so far on both
 * hosts; the arrival times (fakehttp's at_ms) of the first max of them into at_ms (may be NULL).
 */
int fakemeta_profile_reads(struct fakemeta *m, const char *id, long long *at_ms, int max);

/* The number of Send API requests received so far by host. */
int fakemeta_sends(struct fakemeta *m, enum fakemeta_host host);

/* The body of the last Send API request to recipient on either host (a new string; free
 * it), or NULL. */
char *fakemeta_last_send(struct fakemeta *m, const char *recipient);

/* --- thread control (fakemeta_thread.c) ------------------------------------------------- */

/* Meta's Page Inbox app: the app that holds a thread a person answers in Meta's inbox. */
#define FAKEMETA_INBOX_APP_ID "263902037430900"

/*
 * Makes app_id (NULL: the suite's app, FAKEMETA_APP_ID) hold the thread of recipient on
 * account. While another app holds it, a message or sender action to recipient is refused with
 * Meta's error (code 10, subcode 2018300); take_thread_control gives it back to the suite's app.
 */
void fakemeta_set_thread_owner(struct fakemeta *m, const char *account, const char *recipient,
                               const char *app_id);
/* The app holding the thread (a new string; free it): FAKEMETA_APP_ID when never set. */
char *fakemeta_thread_owner(struct fakemeta *m, const char *account, const char *recipient);
/* The number of sender actions (e.g. "mark_seen") posted for recipient on either host. */
int fakemeta_sender_actions(struct fakemeta *m, const char *recipient, const char *action);
/* The number of take_thread_control calls for recipient. */
int fakemeta_takes(struct fakemeta *m, const char *recipient);

/* --- media (fakemeta_media.c) ----------------------------------------------------------- */

/*
 * Puts len bytes of content_type at Meta's CDN under name (letters, digits, '-'); returns the
 * URL a webhook carries (a new string; free it). Putting a name again replaces it.
 */
char *fakemeta_cdn_put(struct fakemeta *m, const char *name, const char *content_type,
                       const void *data, size_t len);
/* The lookaside URL of name (a new string), as Instagram's webhooks carry: it answers 302 to
 * the CDN URL of name's current signature. */
char *fakemeta_cdn_lookaside(struct fakemeta *m, const char *name);
/* Every URL of name handed out so far answers 403 "URL signature expired" from now on. */
void fakemeta_cdn_expire(struct fakemeta *m, const char *name);
/* name's URLs answer status (e.g. 500; 0: the bytes again), each after delay_ms. */
void fakemeta_cdn_fault(struct fakemeta *m, const char *name, int status, int delay_ms);
/* The CDN requests for name so far. */
int fakemeta_cdn_gets(struct fakemeta *m, const char *name);
/* Meta knows message mid with the media of names (n of them, in order): its attachments edge
 * answers fresh URLs of them. */
void fakemeta_media_message(struct fakemeta *m, const char *mid, const char *const *names, int n);
/* --- the Attachment Upload API (fakemeta_upload.c) ---------------------------------------- */

/* Lowers Meta's upload limit of every type to bytes (0: Meta's own: 8 MB images, 25 MB else). */
void fakemeta_set_upload_limit(struct fakemeta *m, long long bytes);
/* The next count well-formed uploads answer 500, Meta's code 2 (a passing failure), before
 * the size is checked. */
void fakemeta_fail_uploads(struct fakemeta *m, int count);
/* The next count Send API messages with a payload.url fail as if the URL did not answer
 * (Meta's code 100, subcode 2018008), without fetching it. */
void fakemeta_fail_fetches(struct fakemeta *m, int count);
/* The number of uploads accepted so far, files fetched for a Send API payload.url included. */
int fakemeta_uploads(struct fakemeta *m);
/*
 * The i-th accepted upload: a copy of its bytes (free() it; *len bytes) with its attachment_id
 * ("url-<n>" for a file fetched from a payload.url), type and the Content-Type of its filedata
 * part (or of the fetch's answer); NULL when there is none.
 */
unsigned char *fakemeta_upload_get(struct fakemeta *m, int i, size_t *len, char id[40],
                                   char type[16], char content_type[128]);

/* --- the Conversations API (fakemeta_conversations.c) ------------------------------------ */

/*
 * Puts a message "at Meta" in the conversation of account and contact on host (created on
 * first use) that no webhook carried: from the contact, or from the business when
 * from_business (an echo sent from another tool). created_ms is Meta's created_time.
 */
void fakemeta_conv_add(struct fakemeta *m, enum fakemeta_host host, const char *account,
                       const char *contact, const char *mid, const char *text, int64_t created_ms,
                       bool from_business);
/* Gives message mid (fakemeta_conv_add()) one attachment of mime type, size bytes, at url
 * (e.g. fakemeta_cdn_put()'s), listed as Graph lists message attachments. */
void fakemeta_conv_attach(struct fakemeta *m, const char *mid, const char *mime, const char *url,
                          size_t size);
/*
 * After the next after calls of the Conversations API (either host), count calls (< 0: every
 * one until called again with count 0) answer throttling code (4, 17, 32, 613, 80002, 80006),
 * X-Business-Use-Case-Usage saying estimated_time_to_regain_access regain_minutes.
 */
void fakemeta_conv_throttle(struct fakemeta *m, int after, int code, int count, int regain_minutes);
/* The usage percentage the Conversations API's answers report (default 1). */
void fakemeta_conv_usage(struct fakemeta *m, int pct);
/* Calls of the Conversations API so far, and those past Meta's 2 a second per account. */
long fakemeta_conv_calls(struct fakemeta *m);
long fakemeta_conv_over_limit(struct fakemeta *m);

#endif
