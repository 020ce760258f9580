/*
 * test_router_s3_objects - the bucket's objects over time, beyond one attachment's storing.
 * Part of test_router_s3 (router_s3_suite.h).
 *  - An attachment stored in S3 before segments: one piece larger than a chunk, under
 *    media/<id>. It reads in chunks all the same, each chunk from the whole object. The media
 *    worker then seals it again in segments under a new key, which the row names; the old
 *    object stays for ten minutes for a reader that took its key just before. After that,
 *    each chunk is one Range GET of its segment. S3 refusing meanwhile changes nothing but
 *    a line in the log, and the claim is held for the hour.
 *  - More doomed objects than one sweep takes are deleted batch after batch, not a batch every
 *    30 s.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "common/keyring.h"
#include "common/mem.h"
#include "router_s3_suite.h"

/* Whether the router's log so far holds needle. */
static bool logged(const char *needle)
{
    char *log = th_proc_output(&router);
    bool found = log != NULL && strstr(log, needle) != NULL;

    free(log);
    return found;
}

/* Ends the worker's claim on image_att, so that it is claimed again at its next pass. */
static void release(void)
{
    char *n = th_stack_sqlf(&st,
                            "UPDATE router.attachments SET lease_until = NULL WHERE id = '%s'"
                            " RETURNING id",
                            image_att);
    CHECK_STR(n, image_att);
    free(n);
}

/* Reads image_att with domsctl and checks that it is exactly the image. */
static void read_back(const char *what)
{
    char path[256], *got;
    const char *args[] = {"attachment", "get", image_att, "--out", path, NULL};

    snprintf(path, sizeof(path), "%s/s3-legacy.jpg", th_tmpdir());
    cJSON_Delete(th_stack_run(&st, 0, args));
    got = th_read_file(path);
    CHECK_MSG(got != NULL && memcmp(got, image, IMAGE_BYTES) == 0, "%s: not the image", what);
    free(got);
    unlink(path);
}

void test_e2e_legacy(void)
{
    char old_key[96], want[160], *n;
    struct cm_buf sealed, obj, keys;
    int held;

    /* The image as the router stored it before segments: one piece under media/<id>. Its
     * claim is held for now, so that the worker leaves it to the first read. */
    cm_buf_init(&sealed);
    cm_buf_init(&obj);
    cm_buf_init(&keys);
    snprintf(old_key, sizeof(old_key), "media/%s", image_att);
    if (th_stack_seal_media(&st, image_att, image, IMAGE_BYTES, &sealed) != 0)
        goto done;
    fakes3_put_object(fs, old_key, sealed.data, sealed.len);
    n = th_stack_sqlf(&st,
                      "UPDATE router.attachments SET segment_size = NULL, segment_stride = NULL,"
                      " lease_until = now() + interval '1 hour' WHERE id = '%s' RETURNING id",
                      image_att);
    CHECK_STR(n, image_att);
    free(n);

    fakes3_reset_largest_get(fs);
    read_back("one piece");
    CHECK_INT((long)fakes3_largest_get(fs), (long)sealed.len);

    /* Released while S3 refuses: the worker's read fails, it says so, and holds its claim for
     * the hour; the row and the bucket are as they were. */
    held = fakes3_keys(fs, &keys);
    fakes3_fail_next(fs, 100000, 503);
    release();
    CHECK_MSG(WAIT_UNTIL(logged("not sealed again in segments"), 15000),
              "no failed attempt of %s logged", image_att);
    fakes3_fail_next(fs, 0, 0);
    n = th_stack_sqlf(&st,
                      "SELECT coalesce(segment_size::text, '-') || '|' || coalesce(object_key, '-')"
                      " || '|' || (lease_until > now() + interval '50 minutes')"
                      " FROM router.attachments WHERE id = '%s'",
                      image_att);
    CHECK_STR(n, "-|-|true");
    free(n);
    CHECK_INT(fakes3_keys(fs, &keys), held);

    /* Released with S3 answering: the worker seals it again, under a new key, within a pass
     * or two. */
    release();
    CHECK_MSG(WAIT_UNTIL(!sql_is("SELECT coalesce(object_key, '-') FROM router.attachments"
                                 " WHERE id = '%s'",
                                 image_att, "-"),
                         15000),
              "attachment %s never sealed again", image_att);
    n = th_stack_sqlf(&st,
                      "SELECT segment_size || '|' || segment_stride || '|' || (lease_until IS NULL)"
                      " || '|' || (object_key LIKE 'media/' || id || '.%%') FROM"
                      " router.attachments WHERE id = '%s'",
                      image_att);
    snprintf(want, sizeof(want), "%d|%d|true|true", SEGMENT, SEGMENT + CM_KEYRING_OVERHEAD);
    CHECK_STR(n, want);
    free(n);
    n = th_stack_sqlf(&st, "SELECT object_key FROM router.attachments WHERE id = '%s'", image_att);
    CHECK_MSG(n != NULL && fakes3_object(fs, n, &obj) == 0, "no new object %s", n ? n : "");
    CHECK_INT((long)obj.len, (long)(IMAGE_BYTES + 2 * CM_KEYRING_OVERHEAD));
    CHECK(obj.data == NULL || memmem(obj.data, obj.len, MARKER, strlen(MARKER)) == NULL);
    free(n);

    /* The old object is doomed, not yet due: a reader may still hold its key. */
    CHECK(fakes3_object(fs, old_key, &obj) == 0);
    n = th_stack_sqlf(&st,
                      "SELECT attachment_id || '|' || (due_at > now() + interval '9 minutes')"
                      " FROM router.media_doomed WHERE object_key = '%s'",
                      old_key);
    snprintf(want, sizeof(want), "%s|true", image_att);
    CHECK_STR(n, want);
    free(n);

    /* Now each chunk is one Range GET of its segment. */
    fakes3_reset_largest_get(fs);
    read_back("segments");
    CHECK_MSG(fakes3_largest_get(fs) <= (size_t)SEGMENT + CM_KEYRING_OVERHEAD,
              "a GET answered %zu bytes", fakes3_largest_get(fs));
    fakes3_reset_largest_get(fs);
done:
    cm_buf_cleanup(&keys);
    cm_buf_cleanup(&obj);
    cm_buf_cleanup(&sealed);
}

/*
 * 250 doomed objects, more than two sweeps take (ROUTER_SWEEP_BATCH, 100): they are all gone
 * within the next sweep's 30 s and a little more. One batch each 30 s took 90 s.
 */
void test_e2e_sweep_many(void)
{
    enum { MANY = 250 };
    struct cm_buf keys;
    char key[64], *n;

    for (int i = 0; i < MANY; i++) {
        snprintf(key, sizeof(key), "media/att_sweep%03d", i);
        fakes3_put_object(fs, key, "sealed", 6);
    }
    n = th_stack_sql(&st, "WITH d AS (INSERT INTO router.media_doomed (object_key, attachment_id)"
                          " SELECT 'media/att_sweep' || lpad(g::text, 3, '0'), 'att_sweep' || g"
                          " FROM generate_series(0, 249) g RETURNING 1) SELECT count(*) FROM d");
    CHECK_STR(n, "250");
    free(n);
    cm_buf_init(&keys);
    bool gone = WAIT_UNTIL(fakes3_keys(fs, &keys) == 0, 45000);
    CHECK_MSG(gone, "%d objects left", fakes3_keys(fs, &keys));
    /* The last batch's rows go when its transaction commits, after its deletes. */
    CHECK(WAIT_UNTIL(sql_is("SELECT count(*) FROM router.media_doomed%s", "", "0"), 10000));
    cm_buf_cleanup(&keys);
}
