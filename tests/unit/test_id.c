/*
 * test_id - the id format of NATS requests: exact characters and lengths, nothing that
 * could widen a key id or a pattern.
 */
#include <string.h>

#include "check.h"
#include "common/id.h"

static void test_valid(void)
{
    CHECK(cm_id_valid("ws_0123abcd", 64));
    CHECK(cm_id_valid("int-1.2", 64));
    CHECK(cm_id_valid("a", 1));
    CHECK(cm_id_valid("ab", 2));
}

static void test_invalid(void)
{
    char long_id[CM_ID_MAX + 2];

    CHECK(!cm_id_valid(NULL, 64));
    CHECK(!cm_id_valid("", 64));
    CHECK(!cm_id_valid("abc", 2));
    CHECK(!cm_id_valid("ws:a", 64));
    CHECK(!cm_id_valid("a:int:b", 64));
    CHECK(!cm_id_valid("w%", 64));
    CHECK(!cm_id_valid("w*", 64));
    CHECK(!cm_id_valid("a b", 64));
    CHECK(!cm_id_valid("a\nb", 64));
    CHECK(!cm_id_valid("a@b", 64));
    CHECK(!cm_id_valid("caf\xc3\xa9", 64));
    memset(long_id, 'a', sizeof(long_id) - 1);
    long_id[sizeof(long_id) - 1] = '\0';
    CHECK(!cm_id_valid(long_id, 1000)); /* CM_ID_MAX caps any max */
    long_id[CM_ID_MAX] = '\0';
    CHECK(cm_id_valid(long_id, 1000));
}

int main(void)
{
    RUN(test_valid);
    RUN(test_invalid);
    return check_summary();
}
