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
 * --cdn NAME=FILE (repeatable) puts FILE on the stand-in's CDN under NAME (letters, digits,
 * '-') and prints the URL a webhook's attachment carries, as Meta's CDN would serve it.
 * Replies with a file show as the Attachment Upload API's multipart POST, then a Send API
 * call naming Meta's attachment_id.
 *
 * usage: fakemeta_server [PORT [INSTAGRAM_PORT]] [--cdn NAME=FILE ...]   (default 9400)
 */
#include <cjson/cJSON.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
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
        const cJSON *msg = cJSON_GetObjectItem(body, "message");
        const char *text = cJSON_GetStringValue(cJSON_GetObjectItem(msg, "text"));
        const cJSON *att = cJSON_GetObjectItem(msg, "attachment");
        const char *att_id = cJSON_GetStringValue(
            cJSON_GetObjectItem(cJSON_GetObjectItem(att, "payload"), "attachment_id"));
        printf("%s%s %s", host, r->method, r->path);
        if (to != NULL && att_id != NULL)
            printf("  -> to %s: %s attachment %s", to,
                   cJSON_GetStringValue(cJSON_GetObjectItem(att, "type")), att_id);
        else if (to != NULL)
            printf("  -> to %s: %s", to, text ? text : "(no text)");
        else if (strstr(r->path, "/message_attachments") != NULL)
            printf("  (%zu bytes, multipart)", r->body_len);
        printf("\n");
        cJSON_Delete(body);
    }
}

/* The Content-Type of a file by its name's extension. */
static const char *type_of(const char *file)
{
    static const char *const types[][2] = {{".png", "image/png"},   {".jpg", "image/jpeg"},
                                           {".jpeg", "image/jpeg"}, {".gif", "image/gif"},
                                           {".mp4", "video/mp4"},   {".pdf", "application/pdf"}};
    const char *dot = strrchr(file, '.');

    for (size_t i = 0; dot != NULL && i < sizeof(types) / sizeof(types[0]); i++)
        if (strcasecmp(dot, types[i][0]) == 0)
            return types[i][1];
    return "application/octet-stream";
}

/* --cdn NAME=FILE: FILE on the CDN under NAME; its URL printed. Returns 0, or 1 (said). */
static int put_cdn(struct fakemeta *m, const char *arg)
{
    const char *eq = strchr(arg, '=');
    char name[64], *url;
    unsigned char *data;
    long len;
    FILE *f;

    if (eq == NULL || eq == arg || (size_t)(eq - arg) >= sizeof(name)) {
        fprintf(stderr, "fakemeta_server: --cdn takes NAME=FILE\n");
        return 1;
    }
    snprintf(name, sizeof(name), "%.*s", (int)(eq - arg), arg);
    f = fopen(eq + 1, "rb");
    if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0 ||
        fseek(f, 0, SEEK_SET) != 0) {
        fprintf(stderr, "fakemeta_server: cannot read %s\n", eq + 1);
        if (f != NULL)
            fclose(f);
        return 1;
    }
    data = malloc((size_t)len + 1);
    if (data == NULL || fread(data, 1, (size_t)len, f) != (size_t)len) {
        fprintf(stderr, "fakemeta_server: cannot read %s\n", eq + 1);
        free(data);
        fclose(f);
        return 1;
    }
    fclose(f);
    url = fakemeta_cdn_put(m, name, type_of(eq + 1), data, (size_t)len);
    free(data);
    if (url == NULL) {
        fprintf(stderr, "fakemeta_server: the CDN is full\n");
        return 1;
    }
    printf("CDN: %s (%ld bytes) at %s\n", name, len, url);
    free(url);
    return 0;
}

int main(int argc, char **argv)
{
    int port = 9400, ig_port = -1, ports = 0;
    int shown[2] = {0, 0};
    struct fakemeta *m = NULL;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--cdn") == 0)
            i++;
        else if (ports++ == 0)
            port = atoi(argv[i]);
        else
            ig_port = atoi(argv[i]);
    }
    if (fakemeta_start_at(&m, port, ig_port) != 0)
        return 1;
    fakemeta_set_open_login(m, true);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--cdn") != 0)
            continue;
        if (i + 1 >= argc || put_cdn(m, argv[++i]) != 0) {
            if (i + 1 >= argc)
                fprintf(stderr, "fakemeta_server: --cdn takes NAME=FILE\n");
            fakemeta_stop(m);
            return 2;
        }
    }
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
