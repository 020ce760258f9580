/*
 * test_router_s3 - the conversation-router with MEDIA_STORE=s3 against the S3 stand-in
 * (fakes3): it starts and becomes ready (sending nothing to S3 before media comes, so an
 * S3 outage cannot stop a start), its configuration hides the secret, and it refuses to
 * start, exit 78, with one line naming the setting, when S3_BUCKET is missing or is no
 * name S3 accepts, or S3_REGION is malformed. Storing inbound media through S3 end to end
 * comes with the download worker; fakes3_start() is all such a test needs.
 */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common/mem.h"
#include "fakes3.h"
#include "stack.h"

#define AK     "AKIAROUTERS3TEST"
#define SECRET "router-s3-secret-value-0123456789"
#define BUCKET "doms-router-media"

static struct th_stack st;
static struct fakes3 *fs;
static struct th_proc router;
static char endpoint_env[128];

/* Counts the lines of text that contain needle. */
static int lines_with(const char *text, const char *needle)
{
    int n = 0;

    for (const char *line = text; line != NULL && *line != '\0';) {
        const char *end = strchr(line, '\n');
        size_t len = end != NULL ? (size_t)(end - line) : strlen(line);
        char *copy = cm_xstrndup(line, len);
        n += strstr(copy, needle) != NULL;
        free(copy);
        line = end != NULL ? end + 1 : NULL;
    }
    return n;
}

static void test_starts(void)
{
    const char *env[] = {"MEDIA_STORE=s3",
                         endpoint_env,
                         "S3_BUCKET=" BUCKET,
                         "S3_REGION=eu-central-1",
                         "S3_ACCESS_KEY_ID=" AK,
                         "S3_SECRET_ACCESS_KEY=" SECRET,
                         NULL};
    char *log;

    th_stack_start(&st, &router, "conversation-router", env);
    CHECK_INT(fakes3_count(fs, NULL), 0);
    CHECK_INT(th_proc_stop_clean(&router), 0);
    log = th_proc_output(&router);
    CHECK(strstr(log, SECRET) == NULL);
    free(log);
}

/* --print-config shows the S3 settings, the secret masked. */
static void test_print_config(void)
{
    char kek_env[600];
    const char *env[] = {"DATABASE_URL=postgresql://x@127.0.0.1:1/x",
                         kek_env,
                         "MEDIA_STORE=s3",
                         endpoint_env,
                         "S3_BUCKET=" BUCKET,
                         "S3_ACCESS_KEY_ID=" AK,
                         "S3_SECRET_ACCESS_KEY=" SECRET,
                         NULL};
    const char *args[] = {"--print-config", NULL};
    char *out = NULL;

    snprintf(kek_env, sizeof(kek_env), "DOMS_KEK_FILE=%s", st.kek);

    CHECK_INT(th_run("conversation-router", args, env, &out), 0);
    CHECK_CONTAINS(out, "MEDIA_STORE=s3");
    CHECK_CONTAINS(out, "S3_BUCKET=" BUCKET);
    CHECK_CONTAINS(out, "S3_REGION=us-east-1");
    CHECK_CONTAINS(out, "S3_SECRET_ACCESS_KEY=********");
    CHECK(out != NULL && strstr(out, SECRET) == NULL);
    free(out);
}

/*
 * Starts a router with the stack's settings and the S3 ones given (no S3_BUCKET unless
 * bucket is not NULL), expects it to refuse with exit 78 and needle on exactly one line,
 * the only line that names setting.
 */
static void expect_refusal(const char *bucket, const char *region, const char *setting,
                           const char *needle)
{
    char *url = th_db_url(&st.db, "doms_router"), *env[16], *out;
    struct th_proc p;
    int n = 0;

    env[n++] = cm_xasprintf("DATABASE_URL=%s", url);
    env[n++] = cm_xasprintf("NATS_URL=%s", st.nats.url);
    env[n++] = cm_xasprintf("DOMS_KEK_FILE=%s", st.kek);
    env[n++] = cm_xasprintf("CONVERSATION_ROUTER_HTTP_LISTEN=127.0.0.1:%d", th_free_port());
    env[n++] = cm_xstrdup("MEDIA_STORE=s3");
    env[n++] = cm_xstrdup(endpoint_env);
    env[n++] = cm_xstrdup("S3_ACCESS_KEY_ID=" AK);
    env[n++] = cm_xstrdup("S3_SECRET_ACCESS_KEY=" SECRET);
    if (bucket != NULL)
        env[n++] = cm_xasprintf("S3_BUCKET=%s", bucket);
    if (region != NULL)
        env[n++] = cm_xasprintf("S3_REGION=%s", region);
    env[n] = NULL;
    th_proc_start(&p, "conversation-router", NULL, (const char *const *)env);
    CHECK_INT(th_proc_wait(&p, 30000), 78);
    out = th_proc_output(&p);
    CHECK_CONTAINS(out, needle);
    if (strstr(out, needle) != NULL) {
        const char *at = strstr(out, needle), *start = at, *end = strchr(at, '\n');
        while (start > out && start[-1] != '\n')
            start--;
        printf("refused: %.*s\n", (int)(end != NULL ? end - start : (long)strlen(start)), start);
    }
    CHECK_MSG(lines_with(out, setting) == 1, "%s on %d lines: %s", setting,
              lines_with(out, setting), out);
    CHECK(strstr(out, SECRET) == NULL);
    free(out);
    for (int i = 0; i < n; i++)
        free(env[i]);
    free(url);
}

static void test_refusals(void)
{
    expect_refusal(NULL, NULL, "S3_BUCKET", "S3_BUCKET is required with MEDIA_STORE=s3");
    expect_refusal("Doms_Media", NULL, "S3_BUCKET",
                   "S3_BUCKET must be 3 to 63 lowercase letters, digits, dots or hyphens");
    expect_refusal(BUCKET, "eu central", "S3_REGION", "S3_REGION must be lowercase letters");
    CHECK_INT(fakes3_count(fs, NULL), 0);
}

int main(void)
{
    th_init("router_s3");
    th_stack_init(&st);
    if (fakes3_start(&fs, AK, SECRET, BUCKET) != 0) {
        printf("FAIL: fakes3_start\n");
        return 1;
    }
    fakes3_set_region(fs, "eu-central-1");
    snprintf(endpoint_env, sizeof(endpoint_env), "S3_ENDPOINT=%s", fakes3_url(fs));
    RUN(test_starts);
    RUN(test_print_config);
    RUN(test_refusals);
    th_stack_stop(&st);
    fakes3_stop(fs);
    return check_summary();
}
