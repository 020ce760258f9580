/*
 * status_page.c - the page at the URL given to Meta for a data-deletion request: plain
 * server-rendered HTML, readable on a phone, with no outside asset (inline CSS, no script,
 * no font or image), showing the state and nothing that identifies the person.
 */
#include <ctype.h>
#include <string.h>

#include "common/mem.h"
#include "status_page.h"

/* The kinds of proto/purge.md, as a person reads them. */
static const struct {
    const char *kind;
    const char *label;
} kinds[] = {
    {"messages", "Messages"},
    {"conversations", "Conversations"},
    {"contacts", "Contact profiles"},
    {"suggestions", "Suggested replies"},
    {"raw_events", "Webhook events"},
    {"tokens", "Access tokens"},
    {"integrations", "Connected accounts"},
};

static const char head[] =
    "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
    "<meta name=\"robots\" content=\"noindex\">"
    "<title>Data deletion request</title><style>"
    "body{margin:0;background:#f4f5f7;color:#1c1e21;line-height:1.5;"
    "font:16px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif}"
    "main{max-width:34rem;margin:0 auto;padding:1.5rem 1rem}"
    "h1{font-size:1.35rem;margin:0 0 1rem}h2{font-size:1.05rem;margin:1.25rem 0 .5rem}"
    ".card{background:#fff;border-radius:12px;padding:1.25rem;box-shadow:0 1px 3px #0002}"
    ".state{display:inline-block;padding:.15rem .75rem;border-radius:999px;font-weight:600}"
    ".received,.in_progress{background:#e8f0fe;color:#174ea6}"
    ".completed{background:#e6f4ea;color:#137333}.refused{background:#fce8e6;color:#a50e0e}"
    "dl{margin:1rem 0 0}dt{font-size:.8rem;color:#5f6368;text-transform:uppercase}"
    "dd{margin:0 0 .75rem;overflow-wrap:anywhere}ul{margin:0;padding-left:1.25rem}"
    "footer{font-size:.85rem;color:#5f6368;margin-top:1rem}"
    "</style></head><body><main><h1>Data deletion request</h1><div class=\"card\">";

static const char tail[] =
    "</div><footer>This page shows the state of a request that Meta sent on a person's behalf "
    "to delete the data this service received about them through Instagram or Messenger. It "
    "does not say whose data it was.</footer></main></body></html>\n";

/* "2026-11-29T10:00:00Z" as "2026-11-29 10:00:00 UTC"; anything else as it is, escaped.
 * Only digits and separators are copied unescaped: a value merely shaped like a time (the
 * right length, a T and a Z in place) is escaped like any other. */
static void put_time(struct cm_buf *b, const char *t)
{
    static const char shape[] = "dddd-dd-ddTdd:dd:ddZ";
    size_t n = strlen(t), i;

    for (i = 0; i < n && shape[i] != '\0'; i++) {
        if (shape[i] == 'd' ? !isdigit((unsigned char)t[i]) : t[i] != shape[i])
            break;
    }
    if (n == sizeof(shape) - 1 && i == n) {
        cm_buf_append(b, t, 10);
        cm_buf_puts(b, " ");
        cm_buf_append(b, t + 11, 8);
        cm_buf_puts(b, " UTC");
    } else {
        cm_buf_html_escape(b, t);
    }
}

static const char *str(const cJSON *o, const char *name)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, name));
}

/* The list of what went, only the kinds with a count: a reader wants what was held, not
 * the list of everything the service could hold. */
static void put_deleted(struct cm_buf *b, const cJSON *deleted)
{
    int shown = 0;

    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(deleted, kinds[i].kind);
        if (!cJSON_IsNumber(v) || v->valuedouble <= 0)
            continue;
        if (shown++ == 0)
            cm_buf_puts(b, "<h2>What was deleted</h2><ul>");
        cm_buf_printf(b, "<li>%s: %.0f</li>", kinds[i].label, v->valuedouble);
    }
    if (shown > 0)
        cm_buf_puts(b, "</ul>");
}

void ingest_status_page(const cJSON *status, struct cm_buf *out)
{
    const char *state = str(status, "status"), *reason = str(status, "reason");
    const char *code = str(status, "confirmation_code"), *received = str(status, "received_at");
    const char *completed = str(status, "completed_at");
    bool no_data = reason != NULL && strcmp(reason, "no data held") == 0;

    cm_buf_reset(out);
    cm_buf_puts(out, head);
    if (state == NULL)
        state = "received";
    /* Each state says what it means for the person, in words, beside the facts. */
    if (strcmp(state, "completed") == 0) {
        cm_buf_printf(out, "<p><span class=\"state completed\">%s</span></p>",
                      no_data ? "Completed: no data held" : "Completed");
        if (no_data)
            cm_buf_puts(out, "<p>We held no data about this person, so there was nothing to "
                             "delete.</p>");
        else
            cm_buf_puts(out, "<p>All the data we held about this person has been deleted.</p>");
    } else if (strcmp(state, "refused") == 0) {
        cm_buf_puts(out, "<p><span class=\"state refused\">Refused</span></p><p>We could not "
                         "carry out this request: ");
        cm_buf_html_escape(out, reason ? reason : "no reason was recorded");
        cm_buf_puts(out, ".</p>");
    } else if (strcmp(state, "in_progress") == 0) {
        cm_buf_puts(out, "<p><span class=\"state in_progress\">In progress</span></p><p>The "
                         "deletion is under way. It continues automatically until every part "
                         "of our service has removed the data.</p>");
    } else {
        cm_buf_puts(out, "<p><span class=\"state received\">Received</span></p><p>We have "
                         "received this request. The deletion starts at once; this page shows "
                         "when it is complete.</p>");
    }
    /* The code is in the address already; it names the request, never the person. */
    cm_buf_puts(out, "<dl><dt>Confirmation code</dt><dd>");
    cm_buf_html_escape(out, code ? code : "");
    cm_buf_puts(out, "</dd>");
    if (received != NULL) {
        cm_buf_puts(out, "<dt>Received</dt><dd>");
        put_time(out, received);
        cm_buf_puts(out, "</dd>");
    }
    if (completed != NULL && strcmp(state, "completed") == 0) {
        cm_buf_puts(out, "<dt>Completed</dt><dd>");
        put_time(out, completed);
        cm_buf_puts(out, "</dd>");
    }
    cm_buf_puts(out, "</dl>");
    if (strcmp(state, "completed") == 0 && !no_data)
        put_deleted(out, cJSON_GetObjectItemCaseSensitive(status, "deleted"));
    cm_buf_puts(out, tail);
}

void ingest_status_page_unknown(struct cm_buf *out)
{
    cm_buf_reset(out);
    cm_buf_puts(out, head);
    cm_buf_puts(out, "<p><span class=\"state refused\">Unknown code</span></p><p>No data "
                     "deletion request has this confirmation code. Check that the address was "
                     "copied in full.</p>");
    cm_buf_puts(out, tail);
}

void ingest_status_page_busy(struct cm_buf *out)
{
    cm_buf_reset(out);
    cm_buf_puts(out, head);
    cm_buf_puts(out, "<p><span class=\"state refused\">Busy</span></p><p>This page is being "
                     "asked for very often right now. Please reload it in a moment.</p>");
    cm_buf_puts(out, tail);
}
