/*
 * id.h - the one format of the ids that travel in NATS requests (workspace, integration,
 * conversation ids).
 */
#ifndef COMMON_ID_H
#define COMMON_ID_H

#include <stdbool.h>
#include <stddef.h>

/* The longest id any service accepts. */
#define CM_ID_MAX 128

/*
 * True when s is an id: 1 to max bytes (at most CM_ID_MAX) of ASCII letters, digits, '_',
 * '-' and '.'. Nothing else: no ':' (the separator of key ids such as "ws:<id>:int:<id>"),
 * no '%', no space, no control or non-ASCII byte. Ids
 * are compared exactly, never as prefixes. False for NULL.
 */
bool cm_id_valid(const char *s, size_t max);

#endif
