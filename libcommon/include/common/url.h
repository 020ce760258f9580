/*
 * url.h - URLs as they may be shown: in log lines, --print-config and error messages.
 */
#ifndef COMMON_URL_H
#define COMMON_URL_H

#include <stddef.h>

/*
 * Writes url into out (cap bytes, always NUL-terminated, truncated when too long) with every
 * credential replaced by "****": the password of the userinfo (postgresql://svc:pw@db/x shown with
 * pw as four asterisks, the last '@' of the authority ending it, so a password holding '@' is
 * masked whole), a userinfo without ':' entirely (NATS takes a token there: nats://TOKEN@host), and
 * the value of each query parameter whose name holds "pass", "secret", "token" or "key" in any case
 * (?sslpassword=...). A comma-separated list (NATS_URL) is redacted element by element.
 * Any text is accepted; what is not a URL is copied as it is.
 */
void cm_url_redact(const char *url, char *out, size_t cap);

#endif
