/*
 * fuzz_envelope - libFuzzer driver for the webhook body parser, the first code that reads
 * what an outsider sends (after the signature check, but the parser must not trust that).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "envelope.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct envelope env;

    envelope_parse(&env, (const char *)data, size);
    for (size_t i = 0; i < env.nevents; i++) {
        /* Every event must be publishable: a subject, an id and a payload. */
        if (env.events[i].subject == NULL || env.events[i].msg_id == NULL ||
            strlen(env.events[i].payload) != env.events[i].payload_len)
            __builtin_trap();
    }
    envelope_cleanup(&env);
    return 0;
}
