/*
 * vault_suite.h - what test_vault.c shares with test_vault_accounts.c, test_vault_lanes.c and
 * test_vault_batch.c: one test program, one token-vault (two replicas), one Meta stand-in,
 * split into files by concern.
 */
#ifndef VAULT_SUITE_H
#define VAULT_SUITE_H

#include <cjson/cJSON.h>
#include <nats/nats.h>

#include "fakemeta.h"
#include "harness.h"

extern struct fakemeta *meta;
/* The integrations test_connect_both connects (Instagram with --asid asid-77, the Page
 * without). */
extern char *ig_id, *page_id;

/* Runs domsctl as operator; its exit code, *out its JSON and *text its stderr (either may be
 * NULL; free them). */
int domsctl(cJSON **out, char **text, const char *const *args);
/* A NATS request as operator; the whole answer (free it). */
cJSON *request(const char *subject, const char *body);
/* o[a][b] as a string (b may be NULL), or NULL. */
const char *str_at(const cJSON *o, const char *a, const char *b);
/* result[name] as a number, -1 when absent. */
long result_num(const cJSON *r, const char *name);
/* The short-lived token Meta's Login would have given the business for account. */
void login(const char *platform, const char *account, const char *token);
/* Connects account in ws_1 (asid may be NULL); the integration id, "" after a failure. */
char *connect_ok(const char *platform, const char *account, const char *token, const char *asid,
                 char **expires);
/* A token served to requester (a new string) or NULL, *error_code the refusal's code. */
char *token_of(const char *id, const char *requester, char **error_code);
/* One value of a query on the suite's database (a new string), or NULL. */
char *vault_sql(const char *q);
/* Runs an UPDATE ... RETURNING 1 that must change a row. */
void update_one(const char *q);
/* The integration with id in a list answer, or NULL. */
const cJSON *find_integration(const cJSON *list, const char *id);

/* A replica that calls Meta at graph and ig, not waited for; its HTTP port (await_vault). */
int launch_vault_at(struct th_proc *p, const char *kek, const char *graph, const char *ig);
void await_vault(int port);
/* The key-encryption key file of every replica, and the tests' NATS connection. */
extern char kek_path[512];
extern natsConnection *nc;
/* test_vault_lanes.c */
void test_meta_lane(void);
/* test_vault_roles.c: conversation-router's router.workspace.get, played by the suite (on nc),
 * and the vault's role checks against it. */
void vault_roles_start(void);
void test_vault_roles(void);
/* test_vault_batch.c */
void test_token_burst(void);
/* test_vault_accounts.c */
void test_deauthorize(void);
void test_who_connected(void);
void test_subscription(void);
void test_find_and_purge(void);

#endif
