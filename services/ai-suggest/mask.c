/*
 * mask.c - personal data out of outgoing text (see mask.h).
 *
 * One left-to-right pass. At each position that can start an item (the byte before it is
 * not an ASCII letter or digit) the recognisers are tried in a fixed order: contact ids
 * first (a 16-digit PSID would otherwise pass for a card or a phone), then e-mail (its
 * local part may be all digits), IBAN, card, phone. A numeric candidate that no recogniser
 * takes is copied whole, so that a part of it (the tail of a long reference number) is not
 * mistaken for a phone number afterwards. Each recogniser looks at a bounded window or at
 * one run of characters it then skips, which keeps the pass linear on any input.
 */
#include <string.h>

#include "mask.h"

#define MAX_NUM_DIGITS 19 /* the longest card number */
#define MAX_PHONE      15 /* E.164 */
#define MAX_GROUPS     12

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static bool is_alpha(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_alnum(unsigned char c)
{
    return is_digit(c) || is_alpha(c);
}

static bool is_local(unsigned char c)
{
    return is_alnum(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-';
}

static unsigned char upper(unsigned char c)
{
    return c >= 'a' && c <= 'z' ? (unsigned char)(c - 'a' + 'A') : c;
}

/* True when an item may end at e: the text ends or an ASCII letter or digit does not follow. */
static bool ends_at(const unsigned char *s, size_t len, size_t e)
{
    return e >= len || !is_alnum(s[e]);
}

bool ai_mask_luhn(const char *digits, size_t n)
{
    unsigned sum = 0;

    if (n < 2)
        return false;
    for (size_t k = 0; k < n; k++) {
        unsigned char c = (unsigned char)digits[n - 1 - k];
        unsigned d;
        if (!is_digit(c))
            return false;
        d = (unsigned)(c - '0');
        /* Every second digit from the right is doubled; 2*d > 9 counts its digit sum. */
        if (k % 2 == 1)
            d = d * 2 > 9 ? d * 2 - 9 : d * 2;
        sum += d;
    }
    return sum % 10 == 0;
}

bool ai_mask_iban(const char *s, size_t n)
{
    unsigned rem = 0;

    if (n < 15 || n > 34 || !is_alpha((unsigned char)s[0]) || !is_alpha((unsigned char)s[1]) ||
        !is_digit((unsigned char)s[2]) || !is_digit((unsigned char)s[3]))
        return false;
    /* ISO 13616: move the first four characters to the end, letters count 10..35. */
    for (size_t k = 0; k < n; k++) {
        unsigned char c = upper((unsigned char)s[(k + 4) % n]);
        if (is_digit(c))
            rem = (rem * 10 + (unsigned)(c - '0')) % 97;
        else if (c >= 'A' && c <= 'Z')
            rem = (rem * 100 + (unsigned)(c - 'A' + 10)) % 97;
        else
            return false;
    }
    return rem == 1;
}

/* A contact id worth looking for: long enough, only letters, digits and "_-." (PSIDs and
 * IGSIDs are digits; anything else could match a placeholder or half the text). */
static bool usable_id(const char *id)
{
    size_t n = 0;
    bool digit = false;

    for (; id != NULL && id[n]; n++) {
        unsigned char c = (unsigned char)id[n];
        if (!is_alnum(c) && c != '_' && c != '-' && c != '.')
            return false;
        digit = digit || is_digit(c);
    }
    /* Starting and ending with a letter or digit, it matches whole words only; with a digit
     * in it, it is never a word of a placeholder. */
    return id != NULL && n >= AI_MASK_MIN_ID && digit && is_alnum((unsigned char)id[0]) &&
           is_alnum((unsigned char)id[n - 1]);
}

/* A contact id at i: returns its length, or 0. */
static size_t match_id(const unsigned char *s, size_t len, size_t i, const char *const *ids,
                       size_t nids)
{
    for (size_t k = 0; k < nids; k++) {
        size_t n = strlen(ids[k]);
        if (n <= len - i && memcmp(s + i, ids[k], n) == 0 && ends_at(s, len, i + n))
            return n;
    }
    return 0;
}

/*
 * An e-mail address whose local part starts at i: returns its length, or 0. Called only at
 * the start of a run of local-part characters, so each run is scanned once.
 *
 * The domain is the longest stretch of the run of letters, digits, '.' and '-' after the '@'
 * that ends before a '.', a '-' or the end of the run and is a domain (labels not empty, at
 * least one dot, a top-level label of two letters or more): "a@b.com." ends before its
 * last dot, "a@x.com-0612345678" before the '-'. Ending only there keeps the verdict the
 * same once a number after it is masked.
 */
static size_t match_email(const unsigned char *s, size_t len, size_t i)
{
    size_t at = i, d, k, best = 0, tld_len = 0;
    bool dot = false, empty = false, tld_alpha = true;

    while (at < len && is_local(s[at]))
        at++;
    if (at == i || at >= len || s[at] != '@')
        return 0;
    d = at + 1;
    for (k = d;; k++) {
        bool run_end = k >= len || !(is_alnum(s[k]) || s[k] == '.' || s[k] == '-');
        unsigned char c = run_end ? 0 : s[k];
        /* A candidate end: what precedes k must be a domain. */
        if ((run_end || c == '.' || c == '-') && dot && !empty && tld_alpha && tld_len >= 2)
            best = k;
        if (run_end)
            break;
        if (c == '.') {
            empty = empty || k == d || s[k - 1] == '.' || s[k - 1] == '-';
            dot = true;
            tld_alpha = true;
            tld_len = 0;
        } else {
            tld_alpha = tld_alpha && is_alpha(c);
            tld_len++;
        }
    }
    return best > 0 ? best - i : 0;
}

/*
 * An IBAN at i, compact or in groups of four: returns its length in the text, or 0. When
 * the text has the shape and length of one but the checksum fails, *shape receives the
 * length of that shape: its digits are not looked at again as a card or phone number.
 */
static size_t match_iban(const unsigned char *s, size_t len, size_t i, const char *const *ids,
                         size_t nids, size_t *shape)
{
    char compact[34];
    size_t ends[10], n = 0, ntok = 0, e = i;

    *shape = 0;
    if (len - i < 4 || !is_alpha(s[i]) || !is_alpha(s[i + 1]) || !is_digit(s[i + 2]) ||
        !is_digit(s[i + 3]))
        return 0;
    /* The first token: the whole compact form, or the first group "DE89". */
    while (e < len && is_alnum(s[e]) && n < sizeof(compact))
        compact[n++] = (char)s[e++];
    if (!ends_at(s, len, e))
        return 0;
    if (n > 4) {
        *shape = n >= 15 ? e - i : 0;
        return ai_mask_iban(compact, n) ? e - i : 0;
    }
    ends[ntok++] = e;
    /* Groups of four after single spaces; a shorter group is the last one. */
    while (ntok < 10 && e + 1 < len && s[e] == ' ' && is_alnum(s[e + 1]) &&
           match_id(s, len, e + 1, ids, nids) == 0) {
        size_t g = e + 1, glen;
        while (g < len && is_alnum(s[g]) && g - e - 1 < 5)
            g++;
        glen = g - e - 1;
        if (glen > 4 || !ends_at(s, len, g) || n + glen > sizeof(compact))
            break;
        memcpy(compact + n, s + e + 1, glen);
        n += glen;
        e = g;
        ends[ntok++] = e;
        if (glen < 4)
            break;
    }
    /* The longest run of groups that checks out: the text may go on with other numbers. */
    for (size_t t = ntok; t >= 2; t--) {
        size_t chars = 0;
        for (size_t k = i; k < ends[t - 1]; k++)
            chars += s[k] != ' ';
        if (chars >= 15 && ai_mask_iban(compact, chars))
            return ends[t - 1] - i;
    }
    *shape = n >= 15 ? ends[ntok - 1] - i : 0;
    return 0;
}

/* A numeric candidate: digit groups and what separates them. */
struct numeric {
    size_t end; /* one past its last digit */
    bool plus;  /* it starts with '+' */
    bool too_long;
    int ngroups;
    size_t group_end[MAX_GROUPS];  /* text offset after each group */
    size_t group_len[MAX_GROUPS];  /* digits in each group */
    unsigned char sep[MAX_GROUPS]; /* the separator before group k (0 for the first) */
    int ndigits;
    char digits[MAX_NUM_DIGITS + 1];
};

/*
 * Collects the digit groups from i (a '+', '(' or digit): groups of digits joined by one
 * or two separators among " -.()". Stops at the first byte that does not continue it, or
 * before a group that is one of the contact ids.
 */
static void scan_numeric(const unsigned char *s, size_t len, size_t i, const char *const *ids,
                         size_t nids, struct numeric *nm)
{
    size_t p = i;

    memset(nm, 0, sizeof(*nm));
    if (s[p] == '+') {
        nm->plus = true;
        p++;
    }
    /* A run too long for any item is still followed to its end, so that the whole of it is
     * skipped: a tail of it read as a phone number would change once the text around it is
     * masked, and masking twice must give what masking once gave. */
    for (;;) {
        size_t q = p, seps = 0, start;
        unsigned char sep = 0;
        /* The separators before this group (none before the first unless '(' opens it). */
        while (q < len && seps < 2 && s[q] != '\0' && strchr(" -.()", s[q]) != NULL) {
            if (sep == 0 || sep == '(' || sep == ')')
                sep = s[q];
            q++;
            seps++;
        }
        if (q >= len || !is_digit(s[q]))
            break;
        /* A contact id is an item of its own, not a group of this number ("+<id>"). */
        if (q > i && match_id(s, len, q, ids, nids) > 0)
            break;
        start = q;
        for (p = q; p < len && is_digit(s[p]); p++) {
            if (nm->ndigits < MAX_NUM_DIGITS)
                nm->digits[nm->ndigits++] = (char)s[p];
            else
                nm->too_long = true;
        }
        if (nm->ngroups < MAX_GROUPS) {
            nm->sep[nm->ngroups] = sep;
            nm->group_len[nm->ngroups] = p - start;
            nm->group_end[nm->ngroups] = p;
            nm->ngroups++;
        } else {
            nm->too_long = true;
        }
        nm->end = p;
    }
    /* Letters or digits glued to the end make it part of a word, such as "12345678abc". */
    if (nm->end > 0 && !ends_at(s, len, nm->end))
        nm->too_long = true;
}

/* A card number among the groups: returns its length in the text from i, or 0. */
static size_t match_card(const unsigned char *s, const struct numeric *nm, size_t i)
{
    int digits = 0;
    size_t best = 0;

    /* "(4111 ..." is not how a card number is written, and the '(' is not part of it. */
    if (nm->plus || s[i] == '(')
        return 0;
    for (int g = 0; g < nm->ngroups; g++) {
        if (g > 0 && nm->sep[g] != ' ' && nm->sep[g] != '-')
            break;
        digits += (int)nm->group_len[g];
        if (digits > MAX_NUM_DIGITS)
            break;
        if (digits >= 13 && nm->digits[0] >= '2' && nm->digits[0] <= '6' &&
            ai_mask_luhn(nm->digits, (size_t)digits))
            best = nm->group_end[g] - i;
    }
    return best;
}

/*
 * True when the first three groups have the shape of a date (2024-05-01, 01.05.2024,
 * 1-5-2024), possibly followed by a time ("2024-05-01 10 30" scans as more groups).
 */
static bool date_shape(const struct numeric *nm)
{
    size_t a, b, c;

    if (nm->ngroups < 3 || nm->sep[1] != nm->sep[2] || (nm->sep[1] != '-' && nm->sep[1] != '.'))
        return false;
    a = nm->group_len[0];
    b = nm->group_len[1];
    c = nm->group_len[2];
    return (a == 4 && b <= 2 && c <= 2) || (a <= 2 && b <= 2 && c == 4);
}

/* True for an amount: 1234567.50, or thousands grouped by dots (1.234.567.890). */
static bool amount_shape(const struct numeric *nm)
{
    if (nm->ngroups == 2 && nm->sep[1] == '.')
        return true;
    if (nm->ngroups < 3 || nm->group_len[0] > 3)
        return false;
    for (int g = 1; g < nm->ngroups; g++) {
        if (nm->sep[g] != '.' || nm->group_len[g] != 3)
            return false;
    }
    return true;
}

/* A phone number over the whole candidate: returns its length in the text from i, or 0. */
static size_t match_phone(const struct numeric *nm, size_t i)
{
    int d = nm->ndigits;
    bool hyphens_only = true;

    if (nm->too_long || d > MAX_PHONE)
        return 0;
    if (nm->plus)
        return d >= 8 ? nm->end - i : 0;
    if (date_shape(nm) || amount_shape(nm))
        return 0;
    if (nm->ngroups == 1)
        return d >= 9 && d <= 13 ? nm->end - i : 0;
    if (d >= 9)
        return nm->end - i;
    for (int g = 1; g < nm->ngroups; g++)
        hyphens_only = hyphens_only && nm->sep[g] == '-';
    return d >= 7 && hyphens_only && nm->group_len[0] >= 3 ? nm->end - i : 0;
}

/*
 * Whether a number may start at i, judging by what comes before it; masked_end is where the
 * last masked item ended (0 for none).
 */
static bool number_may_start(const unsigned char *s, size_t i, size_t masked_end)
{
    /* Right after a masked item: the placeholder's ']' is what a second pass will see. */
    if (i == 0 || (masked_end > 0 && i == masked_end))
        return true;
    if (is_alnum(s[i - 1]) || s[i - 1] == '#' || s[i - 1] == '+')
        return false;
    /* The digits after "3." or "1," belong to the number before them, unless that number
     * was masked: "<phone>,<phone>" is a list, and masking must not change the verdict on
     * what follows (masking twice gives what masking once gave). */
    if ((s[i - 1] == '.' || s[i - 1] == ',') && i >= 2 && is_digit(s[i - 2]) && masked_end != i - 1)
        return false;
    return true;
}

static void put(struct cm_buf *out, const char *what, int *count)
{
    cm_buf_puts(out, what);
    (*count)++;
}

void ai_mask(const char *text, size_t len, const char *const *ids, size_t nids, struct cm_buf *out,
             struct ai_mask_counts *counts)
{
    const unsigned char *s = (const unsigned char *)text;
    struct ai_mask_counts local = {0};
    struct ai_mask_counts *c = counts != NULL ? counts : &local;
    const char *usable[AI_MASK_MAX_IDS];
    size_t i = 0, copied = 0, nusable = 0;

    for (size_t k = 0; k < nids && nusable < AI_MASK_MAX_IDS; k++) {
        if (usable_id(ids[k]))
            usable[nusable++] = ids[k];
    }
    ids = usable;
    nids = nusable;

    cm_buf_reserve(out, len + 1);
    while (i < len) {
        size_t n = 0, shape = 0;
        const char *what = NULL;
        int *count = NULL;
        /* An item may start after a non-alphanumeric byte, or right after a masked item
         * (whose placeholder ends in ']'): masking twice must give what masking once gave. */
        bool after_mask = copied > 0 && i == copied;
        bool start = i == 0 || after_mask || !is_alnum(s[i - 1]);

        if (start && nids > 0 && (n = match_id(s, len, i, ids, nids)) > 0) {
            what = AI_MASK_CONTACT;
            count = &c->contacts;
        } else if ((i == 0 || after_mask || !is_local(s[i - 1])) && is_local(s[i]) &&
                   (n = match_email(s, len, i)) > 0) {
            what = AI_MASK_EMAIL;
            count = &c->emails;
        } else if (start && is_alpha(s[i]) && (n = match_iban(s, len, i, ids, nids, &shape)) > 0) {
            what = AI_MASK_IBAN;
            count = &c->ibans;
        } else if (shape > 0) {
            /* An IBAN with a wrong checksum (a typo): not to be read as a card or phone. */
            i += shape;
            continue;
        } else if (start && number_may_start(s, i, copied) &&
                   (is_digit(s[i]) ||
                    ((s[i] == '+' || s[i] == '(') && i + 1 < len && is_digit(s[i + 1])))) {
            struct numeric nm;
            scan_numeric(s, len, i, ids, nids, &nm);
            if ((n = match_card(s, &nm, i)) > 0) {
                what = AI_MASK_CARD;
                count = &c->cards;
            } else if ((n = match_phone(&nm, i)) > 0) {
                what = AI_MASK_PHONE;
                count = &c->phones;
            } else if (nm.end > i) {
                /* Not personal data: copy it whole, never a tail of it as a new candidate. */
                i = nm.end;
                continue;
            }
        }
        if (what == NULL) {
            i++;
            continue;
        }
        cm_buf_append(out, text + copied, i - copied);
        put(out, what, count);
        i += n;
        copied = i;
    }
    cm_buf_append(out, text + copied, len - copied);
}

int ai_mask_total(const struct ai_mask_counts *c)
{
    return c->emails + c->phones + c->cards + c->ibans + c->contacts;
}
