/*
 * fakemeta_server - the tests' Meta stand-in as a program, for trying the suite by hand
 * (README: "Try it end to end"). It speaks Meta's token endpoints and Send API on
 * 127.0.0.1:PORT and prints one line per request: method, path, and for the Send API the
 * recipient and text it was asked to deliver. Ctrl-C stops it.
 *
 * With one port, that listener plays both graph.facebook.com and graph.instagram.com (give
 * it as META_GRAPH_URL and INSTAGRAM_GRAPH_URL); with two, the second is Instagram's. Any
 * token typed into `domsctl integration connect` is taken as one Meta's Login just issued
 * (fakemeta_set_open_login); everything after that is as strict as in the tests.
 *
 * usage: fakemeta_server [PORT [INSTAGRAM_PORT]]   (default 9400, one listener)
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

/* Prints the requests of srv from *shown on, each with its host's name. */
static void show(struct fakehttp *srv, int *shown, const char *host)
{
    for (; *shown < fakehttp_count(srv); (*shown)++) {
        const struct fakehttp_request *r = fakehttp_get(srv, *shown);
        cJSON *body = cJSON_ParseWithLength(r->body, r->body_len);
        const char *to =
            cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(body, "recipient"), "id"));
        const char *text =
            cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(body, "message"), "text"));
        printf("%s%s %s", host, r->method, r->path);
        if (to != NULL)
            printf("  -> to %s: %s", to, text ? text : "(no text)");
        printf("\n");
        cJSON_Delete(body);
    }
}

int main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 9400, ig_port = argc > 2 ? atoi(argv[2]) : -1;
    int shown[2] = {0, 0};
    struct fakemeta *m = NULL;

    if (fakemeta_start_at(&m, port, ig_port) != 0)
        return 1;
    fakemeta_set_open_login(m, true);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    printf("Meta stand-in: graph.facebook.com on %s, graph.instagram.com on %s (app id %s, app "
           "secret %s)\n",
           fakemeta_url(m, FAKEMETA_FACEBOOK), fakemeta_url(m, FAKEMETA_INSTAGRAM), FAKEMETA_APP_ID,
           FAKEMETA_APP_SECRET);
    fflush(stdout);
    while (!stop) {
        if (ig_port < 0) {
            show(fakemeta_server(m, FAKEMETA_FACEBOOK), &shown[0], "");
        } else {
            show(fakemeta_server(m, FAKEMETA_FACEBOOK), &shown[0], "[facebook] ");
            show(fakemeta_server(m, FAKEMETA_INSTAGRAM), &shown[1], "[instagram] ");
        }
        fflush(stdout);
        usleep(100000);
    }
    fakemeta_stop(m);
    return 0;
}
