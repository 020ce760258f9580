/*
 * fakemeta_server - the tests' Meta stand-in as a program, for trying the suite by hand
 * (README: "Try it end to end"). It speaks Meta's token endpoints and Send API on
 * 127.0.0.1:PORT and prints one line per request: method, path, and for the Send API the
 * recipient and text it was asked to deliver. Ctrl-C stops it.
 *
 * usage: fakemeta_server [PORT]   (default 9400)
 */
#include <cjson/cJSON.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fakemeta.h"

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

int main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 9400, shown = 0;
    struct fakehttp *srv = NULL;

    if (fakemeta_start_at(&srv, port) != 0)
        return 1;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    printf("Meta stand-in on %s (app id %s, app secret %s)\n", fakehttp_url(srv), FAKEMETA_APP_ID,
           FAKEMETA_APP_SECRET);
    fflush(stdout);
    while (!stop) {
        for (; shown < fakehttp_count(srv); shown++) {
            const struct fakehttp_request *r = fakehttp_get(srv, shown);
            cJSON *body = cJSON_ParseWithLength(r->body, r->body_len);
            const char *to = cJSON_GetStringValue(
                cJSON_GetObjectItem(cJSON_GetObjectItem(body, "recipient"), "id"));
            const char *text = cJSON_GetStringValue(
                cJSON_GetObjectItem(cJSON_GetObjectItem(body, "message"), "text"));
            printf("%s %s", r->method, r->path);
            if (to != NULL)
                printf("  -> to %s: %s", to, text ? text : "(no text)");
            printf("\n");
            cJSON_Delete(body);
        }
        fflush(stdout);
        usleep(100000);
    }
    fakehttp_stop(srv);
    return 0;
}
