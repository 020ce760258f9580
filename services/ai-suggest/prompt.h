/*
 * prompt.h - what the language model is asked: fixed instructions, then the newest
 * messages of the conversation that fit a character budget, as a transcript.
 *
 * The instructions ask for a short reply in the customer's language, in the business's
 * voice, using only facts present in the conversation, and explain the placeholders of the
 * masker. The transcript is data, not instructions: the model is told to ignore any it holds.
 */
#ifndef AI_PROMPT_H
#define AI_PROMPT_H

#include <stdbool.h>
#include <stddef.h>

#include "common/err.h"
#include "common/mem.h"

/* One message of the conversation, oldest first; both strings borrowed. */
struct ai_message {
    bool inbound;     /* written by the customer (direction "in") or by the business */
    const char *text; /* already masked when masking is on; NULL or "" for no text */
    size_t len;
};

/* What ai_prompt_build() produced. Embedded: ai_prompt_init(), ai_prompt_cleanup(). */
struct ai_prompt {
    struct cm_buf transcript; /* the user turn: transcript and the request */
    int used;                 /* messages included */
    int skipped;              /* messages without text (attachments only) */
    int dropped;              /* older messages left out by the budget */
    bool truncated;           /* the newest message alone was over the budget and was cut */
    size_t chars;             /* characters of message text included */
};

/* The fixed instructions (the system turn); static text. */
const char *ai_prompt_system(void);

/* Prepares p, empty; it owns nothing until ai_prompt_build(). */
void ai_prompt_init(struct ai_prompt *p);
/* Wipes (the transcript is message content) and frees; leaves p initialised. */
void ai_prompt_cleanup(struct ai_prompt *p);

/*
 * Builds the transcript from n messages (oldest first) into p (reset first): the newest
 * messages whose texts together hold at most budget characters (UTF-8 code points, not
 * bytes), in their order. When the newest message alone is longer than the budget, its last
 * budget characters are kept, after an ellipsis. Returns CM_OK, or CM_NOTFOUND when no
 * message has text (none at all, or attachments only): there is nothing to reply to.
 * CM_INVALID for a budget of 0.
 */
int ai_prompt_build(struct ai_prompt *p, const struct ai_message *msgs, size_t n,
                    size_t budget) CM_MUST_CHECK;

/* The number of UTF-8 code points in len bytes of s (continuation bytes are not counted). */
size_t ai_prompt_chars(const char *s, size_t len);

#endif
