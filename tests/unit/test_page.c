/*
 * test_page - the cursors of the router's lists: what router_cursor_encode writes is read
 * back exactly, and anything else (another list's cursor, another spelling, a key that is
 * not an id or a sequence, garbage) is refused.
 */
#include <string.h>

#include "check.h"
#include "common/crypto.h"
#include "router.h"

static void test_round_trip(void)
{
    char cur[ROUTER_CURSOR_MAX], key[72];
    int64_t usec = 0;

    router_cursor_encode(ROUTER_CURSOR_CONVERSATIONS, 1764921600123456LL,
                         "conv_0123456789abcdef01234567", cur);
    CHECK_INT(router_cursor_decode(cur, ROUTER_CURSOR_CONVERSATIONS, &usec, key, sizeof(key)),
              CM_OK);
    CHECK(usec == 1764921600123456LL);
    CHECK_STR(key, "conv_0123456789abcdef01234567");
    /* Opaque, and safe in a URL or a shell word. */
    CHECK(strspn(cur, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") ==
          strlen(cur));

    router_cursor_encode(ROUTER_CURSOR_NEWEST, 0, "42", cur);
    CHECK_INT(router_cursor_decode(cur, ROUTER_CURSOR_NEWEST, &usec, key, sizeof(key)), CM_OK);
    CHECK(usec == 0);
    CHECK_STR(key, "42");
    /* One list's cursor is not another's. */
    CHECK_INT(router_cursor_decode(cur, ROUTER_CURSOR_OLDEST, &usec, key, sizeof(key)), CM_INVALID);
    CHECK_INT(router_cursor_decode(cur, ROUTER_CURSOR_CONVERSATIONS, &usec, key, sizeof(key)),
              CM_INVALID);
}

/* The cursor of a hand-written plaintext. */
static void cursor_of(const char *plain, char *out)
{
    cm_base64url_encode(plain, strlen(plain), out);
}

static void test_refused(void)
{
    const char *plains[] = {
        "m:1764921600123456",       /* no key */
        "m:1764921600123456:",      /* empty key */
        "m:-5:3",                   /* a sign */
        "m:+5:3",                   /* a sign */
        "m:01:3",                   /* another spelling of 1 */
        "m:99999999999999999999:3", /* past int64 */
        "m:5:3x",                   /* a seq that is not a number */
        "m:5:3:4",                  /* a seq that is not a number */
        "m: 5:3",                   /* a space */
        "c:5:conv'1",               /* a quote in an id */
        "c:5:conv 1",               /* a space in an id */
        "x:5:3",                    /* no such list */
        "m5:3",                     /* no separator */
    };
    char cur[ROUTER_CURSOR_MAX], key[72], long_cur[300];
    int64_t usec;

    for (size_t i = 0; i < sizeof(plains) / sizeof(plains[0]); i++) {
        char kind = plains[i][0] == 'c' ? ROUTER_CURSOR_CONVERSATIONS : ROUTER_CURSOR_OLDEST;
        cursor_of(plains[i], cur);
        CHECK_MSG(router_cursor_decode(cur, kind, &usec, key, sizeof(key)) == CM_INVALID,
                  "accepted %s", plains[i]);
    }
    CHECK_INT(router_cursor_decode("", ROUTER_CURSOR_OLDEST, &usec, key, sizeof(key)), CM_INVALID);
    CHECK_INT(router_cursor_decode("!!!!", ROUTER_CURSOR_OLDEST, &usec, key, sizeof(key)),
              CM_INVALID);
    CHECK_INT(router_cursor_decode(NULL, ROUTER_CURSOR_OLDEST, &usec, key, sizeof(key)),
              CM_INVALID);
    /* Padding is another spelling of the same cursor. */
    router_cursor_encode(ROUTER_CURSOR_OLDEST, 5, "3", cur);
    CHECK_INT(router_cursor_decode(cur, ROUTER_CURSOR_OLDEST, &usec, key, sizeof(key)), CM_OK);
    strcat(cur, "==");
    CHECK_INT(router_cursor_decode(cur, ROUTER_CURSOR_OLDEST, &usec, key, sizeof(key)), CM_INVALID);
    memset(long_cur, 'A', sizeof(long_cur) - 1);
    long_cur[sizeof(long_cur) - 1] = '\0';
    CHECK_INT(router_cursor_decode(long_cur, ROUTER_CURSOR_OLDEST, &usec, key, sizeof(key)),
              CM_INVALID);
}

static void test_page_size(void)
{
    const char *ok[] = {"{}", "{\"limit\":null}", "{\"limit\":1}", "{\"limit\":1000}"};
    const int want[] = {100, 100, 1, 1000};
    const char *bad[] = {"{\"limit\":0}",    "{\"limit\":1001}",  "{\"limit\":-1}",
                         "{\"limit\":2.5}",  "{\"limit\":\"5\"}", "{\"limit\":true}",
                         "{\"limit\":1e300}"};
    int n;

    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        cJSON *req = cJSON_Parse(ok[i]);
        n = -1;
        CHECK_INT(router_page_size(req, "limit", 100, 1000, &n), CM_OK);
        CHECK_INT(n, want[i]);
        cJSON_Delete(req);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cJSON *req = cJSON_Parse(bad[i]);
        CHECK_MSG(router_page_size(req, "limit", 100, 1000, &n) == CM_INVALID, "accepted %s",
                  bad[i]);
        cJSON_Delete(req);
    }
}

int main(void)
{
    RUN(test_round_trip);
    RUN(test_refused);
    RUN(test_page_size);
    return check_summary();
}
