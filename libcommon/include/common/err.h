/*
 * err.h - the one error vocabulary of the suite.
 *
 * A fallible function returns int: CM_OK (0) on success or one of the negative codes
 * below. Library statuses (natsStatus, libpq results, curl codes) are translated at the
 * call site, after being logged with their own text.
 */
#ifndef COMMON_ERR_H
#define COMMON_ERR_H

/* Marks a function whose result must be looked at. */
#define CM_MUST_CHECK __attribute__((warn_unused_result))

enum cm_err {
    CM_OK = 0,
    CM_ERR = -1,      /* unexpected failure; details were logged */
    CM_AGAIN = -2,    /* transient: try again later (dependency down, busy) */
    CM_NOTFOUND = -3, /* the thing asked for does not exist */
    CM_INVALID = -4,  /* the input is malformed; retrying will not help */
    CM_CONFLICT = -5, /* the state forbids it (already exists, wrong status) */
    CM_DENIED = -6,   /* the actor may not do this, or a signature did not verify */
    CM_UNAVAIL = -7,  /* a dependency (NATS, PostgreSQL, Meta) is unreachable */
    CM_TIMEOUT = -8,  /* a deadline passed */
    CM_TOOBIG = -9,   /* over a configured size limit */
};

/* Returns a static, human-readable name for an error code ("invalid", "unavailable", ...). */
const char *cm_err_str(int code);

#endif
