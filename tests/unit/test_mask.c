/*
 * test_mask - the masker on what customers really write: addresses, phone numbers in many
 * national formats, card numbers (valid by Luhn and not), IBANs (valid by mod-97 and not),
 * the contact's own ids; and on what must stay as it is: dates, amounts, order numbers,
 * ordinary long numbers, words, UTF-8 text.
 */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "mask.h"

static const char *const no_ids[] = {NULL};

/* Masks s with ids and returns a new string (free it); counts may be NULL. */
static char *mask_ids(const char *s, const char *const *ids, size_t nids, struct ai_mask_counts *c)
{
    struct cm_buf out;

    cm_buf_init(&out);
    ai_mask(s, strlen(s), ids, nids, &out, c);
    if (out.data == NULL)
        cm_buf_puts(&out, "");
    return cm_buf_steal(&out);
}

/* Checks that s masks to want. */
static void expect(const char *s, const char *want)
{
    char *got = mask_ids(s, no_ids, 0, NULL);

    CHECK_MSG(strcmp(got, want) == 0, "mask(\"%s\")\n     got \"%s\"\n    want \"%s\"", s, got,
              want);
    free(got);
}

static void test_luhn(void)
{
    CHECK(ai_mask_luhn("4111111111111111", 16));
    CHECK(ai_mask_luhn("5500005555555559", 16));
    CHECK(ai_mask_luhn("378282246310005", 15));  /* Amex */
    CHECK(ai_mask_luhn("6011111111111117", 16)); /* Discover */
    CHECK(ai_mask_luhn("79927398713", 11));      /* the textbook example */
    CHECK(!ai_mask_luhn("4111111111111112", 16));
    CHECK(!ai_mask_luhn("1234567812345678", 16));
    CHECK(!ai_mask_luhn("4111x11111111111", 16));
    CHECK(!ai_mask_luhn("0", 1));
}

static void test_iban_checksum(void)
{
    CHECK(ai_mask_iban("DE89370400440532013000", 22));
    CHECK(ai_mask_iban("GB29NWBK60161331926819", 22));
    CHECK(ai_mask_iban("FR1420041010050500013M02606", 27));
    CHECK(ai_mask_iban("NL91ABNA0417164300", 18));
    CHECK(ai_mask_iban("gb29nwbk60161331926819", 22));  /* case does not matter */
    CHECK(!ai_mask_iban("DE89370400440532013001", 22)); /* one digit off */
    CHECK(!ai_mask_iban("DE8937040044", 12));           /* too short */
    CHECK(!ai_mask_iban("1289370400440532013000", 22)); /* no country */
    CHECK(!ai_mask_iban("DE89-370400440532013000", 23));
}

static void test_email(void)
{
    expect("mail me at jane.doe+shop@example.co.uk please", "mail me at [email] please");
    expect("a@b.io", "[email]");
    expect("Contact: JOHN_SMITH@Mail.Example.COM.", "Contact: [email].");
    expect("(x-y@sub.domain.org)", "([email])");
    expect("0612345678@gmail.com", "[email]");
    expect("two: a@x.com,b@y.net", "two: [email],[email]");
    /* Not addresses. */
    expect("@shop", "@shop");
    expect("meet @ 5pm", "meet @ 5pm");
    expect("user@localhost", "user@localhost");
    expect("a@b.c", "a@b.c");
    expect("x@.com", "x@.com");
    expect("x@a..com", "x@a..com");
}

static void test_phone(void)
{
    expect("call +33 6 12 34 56 78 today", "call [phone] today");
    expect("+1 (555) 123-4567", "[phone]");
    expect("+44 20 7946 0958", "[phone]");
    expect("+4915123456789", "[phone]");
    expect("06 12 34 56 78", "[phone]");
    expect("06.12.34.56.78", "[phone]");
    expect("(555) 123-4567", "[phone]");
    expect("555-123-4567", "[phone]");
    expect("555-1234", "[phone]");
    expect("020 7946 0958", "[phone]");
    expect("0612345678", "[phone]");
    expect("my number is 13812345678, thanks", "my number is [phone], thanks");
    expect("电话13812345678谢谢", "电话[phone]谢谢");
    expect("tel:+33612345678", "tel:[phone]");
    /* Not phone numbers. */
    expect("order #123456789 is late", "order #123456789 is late");
    expect("on 2024-05-01 at 10:30", "on 2024-05-01 at 10:30");
    expect("on 2024-05-01 10 30", "on 2024-05-01 10 30");
    expect("01.05.2024", "01.05.2024");
    expect("total 1234567.50 EUR", "total 1234567.50 EUR");
    expect("1.234.567.890 views", "1.234.567.890 views");
    expect("12,345,678,901 likes", "12,345,678,901 likes");
    expect("pi is 3.14159265358", "pi is 3.14159265358");
    expect("size 42, qty 3", "size 42, qty 3");
    expect("postcode 75011", "postcode 75011");
    expect("order 12345678", "order 12345678");
    expect("+123", "+123");
    expect("SKU12345678901", "SKU12345678901");
    expect("12345678901abc", "12345678901abc");
}

static void test_card(void)
{
    expect("card 4111 1111 1111 1111 exp 12/27", "card [card] exp 12/27");
    expect("4111111111111111", "[card]");
    expect("4111-1111-1111-1111", "[card]");
    expect("amex 3782 822463 10005", "amex [card]");
    expect("5500 0055 5555 5559.", "[card].");
    /* Luhn fails: an ordinary long number, neither a card nor a phone (16 digits). */
    expect("ref 4111 1111 1111 1112", "ref 4111 1111 1111 1112");
    expect("tracking 1234567812345678", "tracking 1234567812345678");
    /* Passes Luhn but no payment network starts with 1, 7, 8, 9 or 0. */
    expect("id 7992739871300000", "id 7992739871300000");
    /* 20 digits: too long for a card or a phone, and not cut to fit either. */
    expect("41111111111111110000", "41111111111111110000");
    expect("1234 5678 9012 3456 7890 1", "1234 5678 9012 3456 7890 1");
    /* A card followed by more numbers keeps them. */
    expect("4111 1111 1111 1111 2", "[card] 2");
}

static void test_iban(void)
{
    expect("IBAN: DE89 3704 0044 0532 0130 00, thanks", "IBAN: [iban], thanks");
    expect("DE89370400440532013000", "[iban]");
    expect("pay to GB29 NWBK 6016 1331 9268 19 today", "pay to [iban] today");
    expect("fr14 2004 1010 0505 0001 3m02 606", "[iban]");
    expect("NL91ABNA0417164300.", "[iban].");
    /* Checksum fails: left alone (the digits are not a phone either, they follow letters). */
    expect("DE89 3704 0044 0532 0130 01", "DE89 3704 0044 0532 0130 01");
    expect("DE89370400440532013001", "DE89370400440532013001");
    expect("AB12 is a model", "AB12 is a model");
}

static void test_contact_ids(void)
{
    const char *const ids[] = {"7012345678901234", "17841400000000001", "ab", NULL};
    struct ai_mask_counts c = {0};
    char *got;

    got = mask_ids("I am 7012345678901234 and 17841400000000001", ids, 3, &c);
    CHECK_STR(got, "I am [contact] and [contact]");
    CHECK_INT(c.contacts, 2);
    free(got);
    /* Inside a longer number or word it is not the id; an id under 4 characters is ignored. */
    got = mask_ids("x70123456789012345 ab cab", ids, 3, NULL);
    CHECK_STR(got, "x70123456789012345 ab cab");
    free(got);
    /* Without the id it would have been a card or phone; the id wins. */
    got = mask_ids("psid:7012345678901234.", ids, 3, NULL);
    CHECK_STR(got, "psid:[contact].");
    free(got);
}

static void test_counts_and_mix(void)
{
    struct ai_mask_counts c = {0};
    const char *text = "Hi, I'm at jane@example.com or +33 6 12 34 56 78; card 4111111111111111, "
                       "IBAN DE89370400440532013000, order #5512.";
    char *got = mask_ids(text, no_ids, 0, &c);

    CHECK_STR(got, "Hi, I'm at [email] or [phone]; card [card], IBAN [iban], order #5512.");
    CHECK_INT(c.emails, 1);
    CHECK_INT(c.phones, 1);
    CHECK_INT(c.cards, 1);
    CHECK_INT(c.ibans, 1);
    CHECK_INT(ai_mask_total(&c), 4);
    free(got);
    /* Counts add up across calls. */
    got = mask_ids("b@c.de", no_ids, 0, &c);
    CHECK_INT(c.emails, 2);
    free(got);
}

static void test_passthrough(void)
{
    expect("", "");
    expect("Bonjour, la veste bleue est-elle disponible en taille M ?",
           "Bonjour, la veste bleue est-elle disponible en taille M ?");
    expect("こんにちは、在庫はありますか？", "こんにちは、在庫はありますか？");
    expect("Price: $129.99 (was $150)", "Price: $129.99 (was $150)");
    expect("++--..(())", "++--..(())");
    /* Invalid UTF-8 and NUL bytes are copied as they are. */
    {
        const char raw[] = {'a', (char)0xff, 0, 'b', (char)0xc3};
        struct cm_buf out;
        cm_buf_init(&out);
        ai_mask(raw, sizeof(raw), NULL, 0, &out, NULL);
        CHECK_INT(out.len, sizeof(raw));
        CHECK(memcmp(out.data, raw, sizeof(raw)) == 0);
        cm_buf_cleanup(&out);
    }
}

/* Masking what is already masked changes nothing. */
static void test_idempotent(void)
{
    const char *samples[] = {
        "Hi, I'm at jane@example.com or +33 6 12 34 56 78; card 4111111111111111",
        "IBAN DE89 3704 0044 0532 0130 00 and 555-1234",
        "[email] [phone] [card] [iban] [contact]",
        NULL,
    };

    for (int i = 0; samples[i] != NULL; i++) {
        char *once = mask_ids(samples[i], no_ids, 0, NULL);
        char *twice = mask_ids(once, no_ids, 0, NULL);
        CHECK_STR(twice, once);
        free(once);
        free(twice);
    }
}

/* A long hostile input finishes quickly (the pass is linear). */
static void test_large(void)
{
    size_t n = 2u << 20;
    char *s = malloc(n + 1);
    struct cm_buf out;

    for (size_t i = 0; i < n; i++)
        s[i] = "1a.@-+ 9("[i % 9];
    s[n] = '\0';
    cm_buf_init(&out);
    ai_mask(s, n, NULL, 0, &out, NULL);
    CHECK(out.len > 0);
    cm_buf_cleanup(&out);
    memset(s, '1', n);
    cm_buf_init(&out);
    ai_mask(s, n, NULL, 0, &out, NULL);
    CHECK_INT(out.len, n);
    cm_buf_cleanup(&out);
    free(s);
}

int main(void)
{
    RUN(test_luhn);
    RUN(test_iban_checksum);
    RUN(test_email);
    RUN(test_phone);
    RUN(test_card);
    RUN(test_iban);
    RUN(test_contact_ids);
    RUN(test_counts_and_mix);
    RUN(test_passthrough);
    RUN(test_idempotent);
    RUN(test_large);
    return check_summary();
}
