/*
 * mask.h - the personal data a drafted reply does not need, replaced before any text
 * leaves the suite for a language model or a voice service.
 *
 * What is masked, each by a placeholder the prompt explains to the model:
 *   [email]    an address local@domain.tld
 *   [iban]     an IBAN, compact or printed in groups of four, whose mod-97 checksum holds
 *   [card]     a payment card number: 13 to 19 digits, compact or grouped by spaces or
 *              hyphens, starting with 2 to 6 (the banking and travel industries of ISO/IEC
 *              7812) and passing the Luhn check, so an ordinary long number stays as it is
 *   [phone]    a telephone number: "+" and 8 to 15 digits; or 9 to 15 digits written with
 *              separators (space, "-", ".", parentheses); or 9 to 13 digits written compact;
 *              or 7 to 8 digits with hyphens (555-1234). Dates (2024-05-01, 01.05.2024),
 *              decimals (1234567.50) and numbers after "#" (order #123456789) are not phones.
 *   [contact]  any of the contact's own ids (PSID, IGSID) given by the caller: ids of at
 *              least AI_MASK_MIN_ID letters, digits, '_', '-' or '.', with a digit, starting
 *              and ending with a letter or digit (Meta's ids are digits); others are ignored
 *
 * A match must stand alone: the ASCII letters and digits around it end it, other bytes (any
 * UTF-8 text, such as CJK written without spaces) do not. Everything else is copied byte
 * for byte, so the masker is safe on any input, valid UTF-8 or not, and runs in linear time.
 */
#ifndef AI_MASK_H
#define AI_MASK_H

#include <stdbool.h>
#include <stddef.h>

#include "common/mem.h"

#define AI_MASK_EMAIL   "[email]"
#define AI_MASK_PHONE   "[phone]"
#define AI_MASK_CARD    "[card]"
#define AI_MASK_IBAN    "[iban]"
#define AI_MASK_CONTACT "[contact]"

/* Contact ids shorter than this are ignored: masking "12" everywhere would wreck the text. */
#define AI_MASK_MIN_ID 4
/* At most this many contact ids are looked for; further ones are ignored. */
#define AI_MASK_MAX_IDS 64

/* How many items of each kind one call replaced (counts only: no content). */
struct ai_mask_counts {
    int emails;
    int phones;
    int cards;
    int ibans;
    int contacts;
};

/*
 * Appends text (len bytes, any bytes) to out with the items above replaced by their
 * placeholders. ids (nids strings, may be NULL when nids is 0) are the contact's ids,
 * borrowed. counts (may be NULL) is added to, not reset. Never fails.
 */
void ai_mask(const char *text, size_t len, const char *const *ids, size_t nids, struct cm_buf *out,
             struct ai_mask_counts *counts);

/* The total of every kind in counts. */
int ai_mask_total(const struct ai_mask_counts *counts);

/* True when the n ASCII digits pass the Luhn check (n >= 2; any non-digit: false). */
bool ai_mask_luhn(const char *digits, size_t n);

/*
 * True when the n characters (letters and digits only, either case, no spaces) are an IBAN:
 * 15 to 34 long, two letters, two digits, and the ISO 13616 mod-97 remainder is 1.
 */
bool ai_mask_iban(const char *s, size_t n);

#endif
