/*
 * harness.c - integration test support (see harness.h).
 */
#include "harness.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <openssl/crypto.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "common/crypto.h"

static char test_name[48] = "test";
static char tmp_dir[400];
static int proc_seq;

/* Settings a developer's shell may hold, each also as NAME_FILE; a daemon under test sees only
 * what the test sets. */
static const char *const scrubbed[] = {"DATABASE_URL",
                                       "NATS_URL",
                                       "NATS_CA_FILE",
                                       "NATS_CERT_FILE",
                                       "NATS_KEY_FILE",
                                       "LOG_LEVEL",
                                       "LOG_FORMAT",
                                       "DOMS_KEK_FILE",
                                       "INGEST_LISTEN",
                                       "WEBHOOK_INGEST_HTTP_LISTEN",
                                       "META_APP_SECRET",
                                       "META_APP_SECRET_PREVIOUS",
                                       "META_VERIFY_TOKEN",
                                       "PUBLIC_BASE_URL",
                                       "INGEST_MAX_BODY",
                                       "META_APP_ID",
                                       "META_GRAPH_URL",
                                       "INSTAGRAM_GRAPH_URL",
                                       "META_GRAPH_VERSION",
                                       "TOKEN_REFRESH_BEFORE",
                                       "SEND_MAX_ATTEMPTS",
                                       "RETENTION_TOKENS",
                                       "RETENTION_MESSAGES",
                                       "RETENTION_AUDIT",
                                       "REAPER_INTERVAL",
                                       "AI_PROVIDERS",
                                       "OPENAI_API_KEY",
                                       "OPENAI_BASE_URL",
                                       "OPENAI_MODEL",
                                       "GEMINI_API_KEY",
                                       "GEMINI_BASE_URL",
                                       "GEMINI_MODEL",
                                       "AI_TIMEOUT",
                                       "ELEVENLABS_API_KEY",
                                       "ELEVENLABS_BASE_URL",
                                       "CONVERSATION_ROUTER_HTTP_LISTEN",
                                       "TOKEN_VAULT_HTTP_LISTEN",
                                       "RETENTION_REAPER_HTTP_LISTEN",
                                       "AI_SUGGEST_HTTP_LISTEN",
                                       NULL};

const char *th_getenv(const char *name)
{
    const char *v = getenv(name);

    if (v == NULL || *v == '\0') {
        fprintf(stderr, "%s: %s is not set; run the suite with tests/run\n", test_name, name);
        exit(1);
    }
    return v;
}

void th_init(const char *name)
{
    snprintf(test_name, sizeof(test_name), "%s", name);
    /* A directory of its own each time, so that a repeated run (ctest --repeat) starts with
     * no JetStream store nor logs of the one before. */
    snprintf(tmp_dir, sizeof(tmp_dir), "%s/%s", th_getenv("DOMS_TEST_TMP"), name);
    for (int i = 2; mkdir(tmp_dir, 0755) != 0 && errno == EEXIST && i < 1000; i++)
        snprintf(tmp_dir, sizeof(tmp_dir), "%s/%s-%d", th_getenv("DOMS_TEST_TMP"), name, i);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    setvbuf(stdout, NULL, _IOLBF, 0);
}

const char *th_test_name(void)
{
    return test_name;
}

const char *th_tmpdir(void)
{
    return tmp_dir;
}

int th_free_port(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
        port = ntohs(sa.sin_port);
    if (fd >= 0)
        close(fd);
    if (port < 0) {
        perror("free port");
        exit(1);
    }
    return port;
}

int64_t th_now_ms(void)
{
    struct timeval tv;

    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

void th_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

char *th_read_file(const char *path)
{
    struct cm_buf b;
    char chunk[4096];
    size_t n;
    FILE *f = fopen(path, "rb");

    if (f == NULL)
        return NULL;
    cm_buf_init(&b);
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        cm_buf_append(&b, chunk, n);
    fclose(f);
    return cm_buf_steal(&b);
}

/* --- processes ------------------------------------------------------------------------- */

/* Connects to 127.0.0.1:port; true when something accepts. */
static bool port_open(int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    bool ok;

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

/*
 * In a child about to exec path: a daemon (or domsctl, as the operator) gets its own identity's
 * certificate for the test nats-server, unless the test set NATS_CA_FILE itself.
 */
static void give_identity(const char *path)
{
    static const char *const daemons[] = {"webhook-ingest",   "conversation-router", "token-vault",
                                          "retention-reaper", "ai-suggest",          NULL};
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    const char *pki = getenv("DOMS_TEST_PKI"), *identity = NULL;
    char v[700];

    if (pki == NULL || *pki == '\0' || getenv("NATS_CA_FILE") != NULL)
        return;
    if (strcmp(base, "domsctl") == 0)
        identity = "operator";
    for (int i = 0; daemons[i] != NULL; i++) {
        if (strcmp(base, daemons[i]) == 0)
            identity = daemons[i];
    }
    if (identity == NULL)
        return;
    snprintf(v, sizeof(v), "%s/ca.crt", pki);
    setenv("NATS_CA_FILE", v, 1);
    snprintf(v, sizeof(v), "%s/%s.crt", pki, identity);
    setenv("NATS_CERT_FILE", v, 1);
    snprintf(v, sizeof(v), "%s/%s.key", pki, identity);
    setenv("NATS_KEY_FILE", v, 1);
}

static pid_t spawn(const char *path, char *const argv[], const char *const *env, const char *log)
{
    pid_t pid = fork();

    if (pid < 0) {
        perror("fork");
        exit(1);
    }
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
            close(fd);
        }
        for (int i = 0; scrubbed[i] != NULL; i++) {
            char file_var[96];
            unsetenv(scrubbed[i]);
            snprintf(file_var, sizeof(file_var), "%s_FILE", scrubbed[i]);
            unsetenv(file_var);
        }
        for (int i = 0; env != NULL && env[i] != NULL; i++)
            putenv((char *)env[i]);
        give_identity(path);
        execv(path, argv);
        fprintf(stderr, "exec %s: %s\n", path, strerror(errno));
        _exit(127);
    }
    return pid;
}

static int reap(pid_t pid, int *status_out, int timeout_ms)
{
    for (int waited = 0;; waited += 20) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) {
            *status_out = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            return 0;
        }
        if (r < 0)
            return -1;
        if (waited >= timeout_ms)
            return -1;
        th_sleep_ms(20);
    }
}

/* Debian installs nats-server in /usr/sbin, which a non-root PATH may lack. */
static const char *nats_server_path(void)
{
    static const char *const candidates[] = {"/usr/sbin/nats-server", "/usr/bin/nats-server",
                                             "/usr/local/bin/nats-server", NULL};
    for (int i = 0; candidates[i] != NULL; i++) {
        if (access(candidates[i], X_OK) == 0)
            return candidates[i];
    }
    fprintf(stderr, "%s: nats-server not found\n", test_name);
    exit(1);
}

/* deploy/pki's directory for this run, or NULL: then the test nats-server is plaintext. */
static const char *test_pki(void)
{
    const char *pki = getenv("DOMS_TEST_PKI");

    return pki != NULL && *pki != '\0' ? pki : NULL;
}

/* Writes dir/authorization.conf from proto/permissions.tsv, doms-test allowed everything. */
static void write_authorization(const char *dir)
{
    char *cmd = cm_xasprintf("'%s/deploy/nats/authorization' --allow-all doms-test"
                             " '%s/proto/permissions.tsv' > '%s/authorization.conf'",
                             th_getenv("DOMS_SOURCE_DIR"), th_getenv("DOMS_SOURCE_DIR"), dir);

    if (system(cmd) != 0) {
        fprintf(stderr, "%s: %s failed\n", test_name, cmd);
        exit(1);
    }
    free(cmd);
}

void th_nats_start(struct th_nats *n)
{
    const char *pki = test_pki();
    char conf[600], *text, *tls = NULL;
    FILE *f;

    memset(n, 0, sizeof(*n));
    n->port = th_free_port();
    snprintf(n->dir, sizeof(n->dir), "%s/nats", tmp_dir);
    mkdir(n->dir, 0755);
    snprintf(n->url, sizeof(n->url), "%s://127.0.0.1:%d", pki ? "tls" : "nats", n->port);
    snprintf(conf, sizeof(conf), "%s/nats.conf", n->dir);
    if (pki != NULL) {
        /* As deploy/nats/tls.conf: TLS only, each certificate mapped to its user. */
        write_authorization(n->dir);
        tls = cm_xasprintf("tls {\n  cert_file: \"%s/nats-server.crt\"\n"
                           "  key_file: \"%s/nats-server.key\"\n  ca_file: \"%s/ca.crt\"\n"
                           "  verify_and_map: true\n  timeout: 5\n}\n"
                           "include ./authorization.conf\n",
                           pki, pki, pki);
    }
    text = cm_xasprintf("listen: 127.0.0.1:%d\n"
                        "jetstream {\n  store_dir: \"%s/js\"\n"
                        "  key: \"test-only-jetstream-key-0123456789\"\n  cipher: aes\n}\n%s",
                        n->port, n->dir, tls ? tls : "");
    f = fopen(conf, "w");
    if (f == NULL || fputs(text, f) < 0) {
        perror(conf);
        exit(1);
    }
    fclose(f);
    free(text);
    free(tls);
    th_nats_restart(n);
}

uint64_t th_stream_msgs(jsCtx *js, const char *stream)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    uint64_t n = 0;

    if (js_GetStreamInfo(&si, js, stream, NULL, &jerr) == NATS_OK) {
        n = si->State.Msgs;
        jsStreamInfo_Destroy(si);
    }
    return n;
}

bool th_nats_tls(void)
{
    return test_pki() != NULL;
}

natsStatus th_nats_connect_as(natsConnection **nc, const char *url, const char *identity)
{
    const char *pki = test_pki();
    char ca[600], cert[600], key[600], id[CM_NATS_IDENTITY_MAX], err[256];
    natsOptions *opts = NULL;
    natsStatus s;

    *nc = NULL;
    snprintf(ca, sizeof(ca), "%s/ca.crt", pki ? pki : "");
    snprintf(cert, sizeof(cert), "%s/%s.crt", pki ? pki : "", identity);
    snprintf(key, sizeof(key), "%s/%s.key", pki ? pki : "", identity);
    /* Also keeps OpenSSL's exit handler from freeing twice (see cm_nats_identity). */
    if (cm_nats_identity(pki ? ca : NULL, pki ? cert : NULL, pki ? key : NULL, identity, id, err,
                         sizeof(err)) != CM_OK) {
        fprintf(stderr, "%s: %s\n", test_name, err);
        return NATS_ERR;
    }
    s = natsOptions_Create(&opts);
    if (s == NATS_OK)
        s = natsOptions_SetURL(opts, url);
    if (s == NATS_OK)
        s = cm_nats_options_identity(opts, id, pki ? ca : NULL, pki ? cert : NULL,
                                     pki ? key : NULL);
    if (s == NATS_OK)
        s = natsConnection_Connect(nc, opts);
    natsOptions_Destroy(opts);
    return s;
}

natsStatus th_nats_connect(natsConnection **nc, const char *url)
{
    return th_nats_connect_as(nc, url, "doms-test");
}

void th_nats_identity(struct cm_nats *n)
{
    const char *pki = test_pki();
    char ca[600], cert[600], key[600];

    if (pki == NULL)
        return;
    snprintf(ca, sizeof(ca), "%s/ca.crt", pki);
    snprintf(cert, sizeof(cert), "%s/doms-test.crt", pki);
    snprintf(key, sizeof(key), "%s/doms-test.key", pki);
    OPENSSL_init_crypto(OPENSSL_INIT_NO_ATEXIT, NULL);
    cm_nats_set_identity(n, "doms-test", ca, cert, key);
}

void th_nats_restart(struct th_nats *n)
{
    char conf[600], log[600];
    char *argv[] = {"nats-server", "-c", conf, NULL};

    snprintf(conf, sizeof(conf), "%s/nats.conf", n->dir);
    snprintf(log, sizeof(log), "%s/nats.log", n->dir);
    n->pid = spawn(nats_server_path(), argv, NULL, log);
    for (int waited = 0; !port_open(n->port); waited += 20) {
        if (waited > 15000) {
            fprintf(stderr, "%s: nats-server did not start; see %s\n", test_name, log);
            exit(1);
        }
        th_sleep_ms(20);
    }
}

void th_nats_stop(struct th_nats *n)
{
    int st;

    if (n->pid <= 0)
        return;
    {
        /* Permission violations are refused silently to the client: show them here. */
        char *cmd = cm_xasprintf("grep -h 'Violation\\|uthorization' '%s/nats.log' | "
                                 "sed 's/^/%s: nats-server: /' | head -n 40 >&2",
                                 n->dir, test_name);
        if (system(cmd) < 0)
            perror("system");
        free(cmd);
    }
    kill(n->pid, SIGTERM);
    if (reap(n->pid, &st, 15000) != 0) {
        kill(n->pid, SIGKILL);
        reap(n->pid, &st, 5000);
    }
    n->pid = 0;
}

/* True once waitpid reports pid stopped: every thread of it has stopped. */
static bool reported_stopped(pid_t pid)
{
    int st;

    return waitpid(pid, &st, WNOHANG | WUNTRACED) == pid && WIFSTOPPED(st);
}

bool th_nats_freeze(struct th_nats *n)
{
    /* kill() returns before the stop has reached each of the server's threads: until then
     * it may still read, store and acknowledge. */
    if (n->pid <= 0 || kill(n->pid, SIGSTOP) != 0)
        return false;
    return WAIT_UNTIL(reported_stopped(n->pid), 10000);
}

void th_nats_thaw(struct th_nats *n)
{
    if (n->pid > 0)
        kill(n->pid, SIGCONT);
}

void th_proc_start(struct th_proc *p, const char *bin, const char *const *args,
                   const char *const *env)
{
    char path[600];
    char *argv[16];
    int argc = 1;

    memset(p, 0, sizeof(*p));
    p->status = -1;
    snprintf(p->name, sizeof(p->name), "%s", bin);
    snprintf(path, sizeof(path), "%s/%s", th_getenv("DOMS_BIN_DIR"), bin);
    snprintf(p->log, sizeof(p->log), "%s/%s-%d.log", tmp_dir, bin, ++proc_seq);
    argv[0] = p->name;
    for (int i = 0; args != NULL && args[i] != NULL && argc < 15; i++)
        argv[argc++] = (char *)args[i];
    argv[argc] = NULL;
    p->pid = spawn(path, argv, env, p->log);
}

void th_proc_signal(struct th_proc *p, int sig)
{
    if (p->pid > 0 && p->status < 0)
        kill(p->pid, sig);
}

/* What the sanitizers print first in a report (ASan, LSan, UBSan, TSan, MSan). */
static const char *const sanitizer_marks[] = {"ERROR: AddressSanitizer",
                                              "ERROR: LeakSanitizer",
                                              "runtime error:",
                                              "ERROR: UndefinedBehaviorSanitizer",
                                              "WARNING: ThreadSanitizer",
                                              "ERROR: ThreadSanitizer",
                                              "WARNING: MemorySanitizer",
                                              "ERROR: MemorySanitizer",
                                              "Sanitizer has encountered a fatal error",
                                              NULL};

int th_sanitizer_scan(const char *name, const char *log_path)
{
    char *text = th_read_file(log_path);
    int found = 0;

    for (int i = 0; text != NULL && sanitizer_marks[i] != NULL; i++) {
        const char *hit = strstr(text, sanitizer_marks[i]);
        const char *start, *end;
        if (hit == NULL)
            continue;
        /* The whole line of the first hit, so the failure names the bug. */
        for (start = hit; start > text && start[-1] != '\n'; start--)
            ;
        end = strchr(hit, '\n');
        check_report(0, __FILE__, __LINE__, "%s: sanitizer report in %s: %.*s", name, log_path,
                     (int)((end ? end : hit + strlen(hit)) - start), start);
        found++;
    }
    free(text);
    return found;
}

int th_proc_wait(struct th_proc *p, int timeout_ms)
{
    if (p->status >= 0)
        return p->status;
    if (p->pid <= 0 || reap(p->pid, &p->status, timeout_ms) != 0)
        return -1;
    /* Reaped just now: whatever the sanitizers had to say is in the log. */
    th_sanitizer_scan(p->name, p->log);
    return p->status;
}

int th_proc_stop(struct th_proc *p)
{
    if (p->status >= 0 || p->pid <= 0)
        return p->status;
    kill(p->pid, SIGTERM);
    if (th_proc_wait(p, 30000) < 0) {
        fprintf(stderr, "%s: %s ignored SIGTERM; killing it\n", test_name, p->name);
        kill(p->pid, SIGKILL);
        th_proc_wait(p, 5000);
    }
    return p->status;
}

int th_proc_stop_clean(struct th_proc *p)
{
    bool running = p->pid > 0 && p->status < 0;
    int status = th_proc_stop(p);

    if (running)
        check_report(status == 0, __FILE__, __LINE__,
                     "%s (pid %d) stopped with status %d%s; see %s", p->name, (int)p->pid, status,
                     status > 128 ? " (killed by a signal: 128 + its number)" : "", p->log);
    return status;
}

char *th_proc_output(const struct th_proc *p)
{
    char *s = th_read_file(p->log);
    return s ? s : cm_xstrdup("");
}

char *th_proc_log_lacks(const struct th_proc *p, const char *const *needles)
{
    char *log = th_proc_output(p);

    for (int i = 0; needles[i] != NULL; i++)
        CHECK_MSG(strstr(log, needles[i]) == NULL, "%s in the log of %s", needles[i], p->name);
    return log;
}

int th_run(const char *bin, const char *const *args, const char *const *env, char **output)
{
    struct th_proc p;
    int code;

    th_proc_start(&p, bin, args, env);
    code = th_proc_wait(&p, 60000);
    if (code < 0) {
        kill(p.pid, SIGKILL);
        th_proc_wait(&p, 5000);
    }
    if (output != NULL)
        *output = th_proc_output(&p);
    unlink(p.log);
    return code;
}

/* One GET of url; true when it answers want. */
static bool http_answers(const char *url, long want)
{
    struct th_resp r;
    long code = th_http(&r, "GET", url, NULL, NULL, 0);

    th_resp_cleanup(&r);
    return code == want;
}

bool th_wait_http(const char *url, long want, int timeout_ms)
{
    return WAIT_UNTIL(http_answers(url, want), timeout_ms);
}

/* --- HTTP ------------------------------------------------------------------------------ */

static size_t collect(char *data, size_t size, size_t n, void *arg)
{
    cm_buf_append(arg, data, size * n);
    return size * n;
}

long th_http(struct th_resp *r, const char *method, const char *url, const char *const *headers,
             const char *body, size_t len)
{
    CURL *c = curl_easy_init();
    struct curl_slist *list = NULL;

    memset(r, 0, sizeof(*r));
    cm_buf_init(&r->body);
    cm_buf_init(&r->headers);
    for (int i = 0; headers != NULL && headers[i] != NULL; i++)
        list = curl_slist_append(list, headers[i]);
    list = curl_slist_append(list, "Expect:");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 30000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r->body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &r->headers);
    if (body != NULL) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->code);
    curl_slist_free_all(list);
    curl_easy_cleanup(c);
    if (r->body.data == NULL)
        cm_buf_puts(&r->body, "");
    return r->code;
}

void th_resp_cleanup(struct th_resp *r)
{
    cm_buf_cleanup(&r->body);
    cm_buf_cleanup(&r->headers);
}

void th_sign(const char *secret, const char *body, size_t len, char out[80])
{
    unsigned char mac[CM_SHA256_LEN];
    char hex[2 * CM_SHA256_LEN + 1];

    cm_crypto_hmac_sha256(secret, strlen(secret), body, len, mac);
    cm_hex_encode(mac, sizeof(mac), hex);
    snprintf(out, 80, "sha256=%s", hex);
}
