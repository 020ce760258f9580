/*
 * harness.h - what integration tests need to drive the real daemons: a private database
 * provisioned like production, a private nats-server, daemon processes, HTTP, signatures.
 *
 * tests/run provides the environment: DOMS_TEST_PG_URL (an admin URL, TLS), DOMS_TEST_PKI,
 * DOMS_BIN_DIR, DOMS_SOURCE_DIR and DOMS_TEST_TMP. Each test binary gets its own database and
 * its own nats-server, so tests run in parallel without seeing each other's streams or rows.
 */
#ifndef TESTS_HARNESS_H
#define TESTS_HARNESS_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/mem.h"
#include "common/nats.h"

/* Returns the variable's value, or stops the test (exit 1) naming it when unset. */
const char *th_getenv(const char *name);

/* A directory private to this test binary under DOMS_TEST_TMP (created). Static storage. */
const char *th_tmpdir(void);
/* The name th_init was given. */
const char *th_test_name(void);

/* Sets the test's name (for directories and database names). Call first in main(). */
void th_init(const char *name);

/* A free TCP port on 127.0.0.1 (bound and released: good enough for tests). */
int th_free_port(void);

/* --- PostgreSQL ------------------------------------------------------------------------ */

struct th_db {
    char name[64];
    char host[128];
    char port[16];
};

/* Drops and recreates database t_<test>, provisioned by deploy/postgres/provision. */
void th_db_create(struct th_db *db);

/* The same on the PostgreSQL server of admin_url (a private one, see th_pg). */
void th_db_create_at(struct th_db *db, const char *admin_url);

/* URL for role (e.g. "doms_ingest") in this database, over TLS with the server's certificate
 * checked (sslmode=verify-full against DOMS_TEST_PKI's ca.crt); a service role presents its
 * identity's certificate and key (th_db_identity), the admin none. The caller frees it. */
char *th_db_url(const struct th_db *db, const char *role);

/* The same, presenting identity's certificate (NULL: none) whatever the role. Caller frees. */
char *th_db_url_as(const struct th_db *db, const char *role, const char *identity);

/* The identity (DOMS_TEST_PKI certificate) of a service role, e.g. "webhook-ingest" for
 * "doms_ingest"; NULL for any other role. Static storage. */
const char *th_db_identity(const char *role);

/* libpq URL parameters: sslmode=verify-full and sslrootcert, and with identity (or NULL) its
 * sslcert and sslkey, from DOMS_TEST_PKI. The caller frees it. */
char *th_pg_tls_query(const char *identity);

/* Connects as role (NULL: the admin); stops the test when it cannot. PQfinish() it. */
PGconn *th_db_connect(const struct th_db *db, const char *role);

/* Runs sql as the given connection and returns the first column of the first row as a
 * newly allocated string (free it), or NULL on an error or no rows; err gets the error. */
char *th_db_value(PGconn *c, const char *sql, char *err, size_t errlen);

/* Runs sql as role (NULL: the admin) on a connection of its own and returns the first value
 * (free it), or NULL when there is no row. A query that fails fails the test (and returns
 * NULL): NULL must mean "no row", never an error taken for an answer. */
char *th_db_sql(const struct th_db *db, const char *role, const char *sql);
/* th_db_sql's value as a number: a count; -1 when there is no row. */
long th_db_count(const struct th_db *db, const char *role, const char *sql);

/* Opens a transaction as the admin that runs select (a SELECT ... FOR SHARE or FOR UPDATE) and
 * keeps its row locks: a statement of the service that needs those rows then waits, where a
 * test wants it stopped. Fails the test unless the select held rows rows. Returns the
 * connection; th_db_release() commits and closes it. */
PGconn *th_db_hold(const struct th_db *db, const char *select, int rows);
void th_db_release(PGconn *c);

/* --- a private PostgreSQL, for tests that stop and restart it ------------------------ */

struct th_pg {
    char dir[512];
    int port;
    char admin_url[640]; /* TLS parameters included */
};

/* initdb and start a PostgreSQL of this test's own (deploy/local/lib.sh's doms_pg_start). */
void th_pg_start(struct th_pg *p);
/* Stops it (fast shutdown); its data stays. */
void th_pg_stop(struct th_pg *p);
/* Starts it again on the same port. */
void th_pg_restart(struct th_pg *p);

/* --- nats-server ----------------------------------------------------------------------- */

struct th_nats {
    int port;
    pid_t pid;
    char dir[512];
    char url[64];
};

/*
 * Starts a private JetStream server (encrypted file store) and waits until it listens. With
 * DOMS_TEST_PKI (tests/run sets it) it is the suite's server: TLS only, each client
 * certificate mapped to its identity, the permissions of proto/permissions.tsv, and a user
 * doms-test allowed everything (the tests' own connection, standing in for any daemon); its
 * URL is then tls://. Daemons started with th_proc_start() get their identity's certificate.
 */
void th_nats_start(struct th_nats *n);
/* True when the test nats-server speaks TLS (DOMS_TEST_PKI set). */
bool th_nats_tls(void);
/* Connects to url as doms-test (its certificate over TLS; plaintext without a PKI). */
natsStatus th_nats_connect(natsConnection **nc, const char *url);
/* Messages held in stream (0 when it cannot be read). */
uint64_t th_stream_msgs(jsCtx *js, const char *stream);
/* Connects to url with identity's certificate from DOMS_TEST_PKI (inbox _INBOX.<identity>). */
natsStatus th_nats_connect_as(natsConnection **nc, const char *url, const char *identity);
/* Gives a cm_nats connection the doms-test identity (over TLS; nothing without a PKI). */
void th_nats_identity(struct cm_nats *n);
/* Stops it (SIGTERM, wait). Its store stays for a restart. */
void th_nats_stop(struct th_nats *n);
/* Starts it again on the same port with the same store. */
void th_nats_restart(struct th_nats *n);
/* Freezes it (SIGSTOP) and waits (10 s at most) until every thread of it has stopped: its
 * clients stay connected, and nothing they send is read or answered. True once frozen. */
bool th_nats_freeze(struct th_nats *n);
/* Lets a frozen server run again (SIGCONT). */
void th_nats_thaw(struct th_nats *n);

/* --- daemons --------------------------------------------------------------------------- */

struct th_proc {
    pid_t pid;
    char name[64];
    char log[600];
    int status; /* exit status once reaped; -1 before */
};

/*
 * Starts DOMS_BIN_DIR/<bin> with the arguments args (NULL-terminated, or NULL) and env
 * ("NAME=value" entries, NULL-terminated) on top of a clean environment (the suite's own
 * settings removed; PATH and sanitizer options kept). Output goes to <tmpdir>/<bin>-N.log.
 */
void th_proc_start(struct th_proc *p, const char *bin, const char *const *args,
                   const char *const *env);
/* Sends sig. */
void th_proc_signal(struct th_proc *p, int sig);
/* Waits up to timeout_ms for the process to exit; returns its exit code, or -1 on timeout
 * (or 128+signal when killed by one). Once it has exited, its log is scanned for sanitizer
 * reports (th_sanitizer_scan): any report fails the test, whatever the exit code. */
int th_proc_wait(struct th_proc *p, int timeout_ms);
/* SIGTERM, then wait (30 s, then SIGKILL); returns the exit code. */
int th_proc_stop(struct th_proc *p);
/* th_proc_stop() for a daemon that must stop cleanly: when it was still running, an exit
 * code other than 0 (a signal included) fails the test, naming the daemon and its status.
 * Returns the exit code. */
int th_proc_stop_clean(struct th_proc *p);

/*
 * Fails the test (a check per report) when the log at log_path holds a sanitizer report:
 * ASan's, LSan's, UBSan's "runtime error:", TSan's or MSan's. name is the process's, for the
 * message. Returns the number of reports found. The daemons inherit ASAN_OPTIONS and
 * UBSAN_OPTIONS without a log_path, so their reports go to stderr, which is the log.
 */
int th_sanitizer_scan(const char *name, const char *log_path);
/* Returns the process's log so far (free it). */
char *th_proc_output(const struct th_proc *p);
/* Checks that the process's log so far holds none of needles (NULL-terminated): each one
 * found fails the test, naming it and the process. Returns the log (free it), for what the
 * test looks for in it next. */
char *th_proc_log_lacks(const struct th_proc *p, const char *const *needles);

/*
 * Runs DOMS_BIN_DIR/<bin> with args and env to completion (60 s at most) and returns its
 * exit code; *output (free it) receives what it printed, stdout and stderr together.
 */
int th_run(const char *bin, const char *const *args, const char *const *env, char **output);

/* Polls url until it answers want (e.g. /readyz and 200) or timeout_ms passes. */
bool th_wait_http(const char *url, long want, int timeout_ms);

/* --- HTTP ------------------------------------------------------------------------------ */

struct th_resp {
    long code; /* 0 when no answer */
    struct cm_buf body;
    struct cm_buf headers;
};

/* Performs a request; headers are "Name: value" strings, NULL-terminated (or NULL).
 * Returns the status code (0 for no answer). Clean up with th_resp_cleanup(). */
long th_http(struct th_resp *r, const char *method, const char *url, const char *const *headers,
             const char *body, size_t len);
void th_resp_cleanup(struct th_resp *r);

/* Writes "sha256=<hex>" of HMAC-SHA256(secret, body) into out (80 bytes). */
void th_sign(const char *secret, const char *body, size_t len, char out[80]);

/* Reads a whole file (free it), or NULL. */
char *th_read_file(const char *path);

/* The wall clock in milliseconds since the epoch: Meta's timestamps (webhooks' "time" and
 * "timestamp"), and times the tests compare with those the daemons store. For deadlines and
 * durations, check.h's check_now_ms() (the monotonic clock). */
int64_t th_now_ms(void);

/* Sleeps ms milliseconds (for pacing load, never for synchronisation: WAIT_UNTIL in check.h
 * waits for a condition). */
void th_sleep_ms(int ms);

#endif
