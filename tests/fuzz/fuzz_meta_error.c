/*
 * fuzz_meta_error - libFuzzer driver for the Meta error body parser, which reads whatever a
 * server (or whatever sits in front of it) answers to a Graph API call.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common/httpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cm_meta_error e;

    if (cm_httpc_meta_parse((const char *)data, size, &e) == CM_OK) {
        /* Every text field is a terminated string within its array. */
        if (strnlen(e.type, sizeof(e.type)) == sizeof(e.type) ||
            strnlen(e.message, sizeof(e.message)) == sizeof(e.message) ||
            strnlen(e.fbtrace_id, sizeof(e.fbtrace_id)) == sizeof(e.fbtrace_id))
            __builtin_trap();
    } else if (e.code != 0 || e.subcode != 0 || e.message[0] != '\0') {
        /* A refused body leaves nothing half-parsed behind. */
        __builtin_trap();
    }
    return 0;
}
