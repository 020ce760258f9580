/*
 * fuzz_mask - libFuzzer driver for the masker, which reads what customers write before it
 * goes to a language model. The input's first line is a comma-separated list of contact ids,
 * the rest is the text. Besides not crashing, the masker must be idempotent (masking its own
 * output changes nothing: no placeholder or leftover forms a new item), must never grow the
 * text beyond what the daemon reserves (twice the input and 16 bytes), and must leave no
 * contact id standing alone in its output.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mask.h"

#define EDGE_CHARS "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
#define ID_CHARS   EDGE_CHARS "_-."

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* True when id occurs in s (len bytes) with no ASCII letter or digit right around it. */
static int alone(const char *s, size_t len, const char *id)
{
    size_t n = strlen(id);

    for (size_t i = 0; n > 0 && i + n <= len; i++) {
        int before = i > 0 && ((s[i - 1] >= '0' && s[i - 1] <= '9') ||
                               ((s[i - 1] | 32) >= 'a' && (s[i - 1] | 32) <= 'z'));
        int after = i + n < len && ((s[i + n] >= '0' && s[i + n] <= '9') ||
                                    ((s[i + n] | 32) >= 'a' && (s[i + n] | 32) <= 'z'));
        if (!before && !after && memcmp(s + i, id, n) == 0)
            return 1;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    const char *nl = memchr(text, '\n', size);
    char *head = NULL, *ids[8];
    size_t nids = 0, len = size;
    struct cm_buf once, twice;

    if (nl != NULL && nl - text < 256) {
        head = strndup(text, (size_t)(nl - text));
        for (char *save = NULL, *w = strtok_r(head, ",", &save); w != NULL && nids < 8;
             w = strtok_r(NULL, ",", &save))
            ids[nids++] = w;
        len = size - (size_t)(nl - text) - 1;
        text = nl + 1;
    }
    cm_buf_init(&once);
    cm_buf_init(&twice);
    ai_mask(text, len, (const char *const *)ids, nids, &once, NULL);
    ai_mask(once.data != NULL ? once.data : "", once.len, (const char *const *)ids, nids, &twice,
            NULL);
    if (once.len > 2 * len + 16)
        __builtin_trap();
    if (once.len != twice.len || (once.len > 0 && memcmp(once.data, twice.data, once.len) != 0))
        __builtin_trap();
    for (size_t k = 0; k < nids; k++) {
        size_t n = strlen(ids[k]);
        if (n >= AI_MASK_MIN_ID && strspn(ids[k], ID_CHARS) == n && strpbrk(ids[k], "0123456789") &&
            strchr(EDGE_CHARS, ids[k][0]) && strchr(EDGE_CHARS, ids[k][n - 1]) && once.len > 0 &&
            alone(once.data, once.len, ids[k]))
            __builtin_trap();
    }
    cm_buf_cleanup(&once);
    cm_buf_cleanup(&twice);
    free(head);
    return 0;
}
