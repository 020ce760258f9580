/*
 * id.c - the format of ids in NATS requests (id.h).
 */
#include "common/id.h"

bool cm_id_valid(const char *s, size_t max)
{
    size_t n = 0;

    if (s == NULL)
        return false;
    if (max > CM_ID_MAX)
        max = CM_ID_MAX;
    for (; s[n] != '\0'; n++) {
        char c = s[n];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '-' || c == '.';
        if (!ok || n >= max)
            return false;
    }
    return n > 0;
}
