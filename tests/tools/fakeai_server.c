/*
 * fakeai_server - the tests' OpenAI, Gemini and ElevenLabs stand-in as a program, for trying
 * ai-suggest by hand (README: "AI suggestions"). It answers on 127.0.0.1:PORT in the
 * providers' formats and prints one line per request: the method, the path, and for the
 * language models what the prompt's transcript looked like once masked (the last user turn),
 * so that what would leave the suite can be seen. Ctrl-C stops it.
 *
 * usage: fakeai_server [-q] [PORT]   (default 9500; -q prints nothing per request, for the
 *                                    benchmark)
 */
#include <cjson/cJSON.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fakeai.h"

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

/* The transcript of an OpenAI or Gemini request body, borrowed from body, or NULL. */
static const char *transcript(const cJSON *body)
{
    const cJSON *msgs = cJSON_GetObjectItem(body, "messages");
    const cJSON *contents = cJSON_GetObjectItem(body, "contents");

    if (cJSON_IsArray(msgs))
        return cJSON_GetStringValue(
            cJSON_GetObjectItem(cJSON_GetArrayItem(msgs, cJSON_GetArraySize(msgs) - 1), "content"));
    return cJSON_GetStringValue(cJSON_GetObjectItem(
        cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetArrayItem(contents, 0), "parts"), 0),
        "text"));
}

int main(int argc, char **argv)
{
    int quiet = argc > 1 && strcmp(argv[1], "-q") == 0;
    int port = argc > 1 + quiet ? atoi(argv[1 + quiet]) : 9500, shown = 0;
    struct fakeai *f = NULL;

    if (fakeai_start_at(&f, port) != 0)
        return 1;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    printf("AI stand-in on %s\n  OPENAI_BASE_URL=%s/v1 OPENAI_API_KEY=%s\n"
           "  GEMINI_BASE_URL=%s/v1beta GEMINI_API_KEY=%s\n"
           "  ELEVENLABS_BASE_URL=%s ELEVENLABS_API_KEY=%s\n",
           fakeai_url(f), fakeai_url(f), FAKEAI_OPENAI_KEY, fakeai_url(f), FAKEAI_GEMINI_KEY,
           fakeai_url(f), FAKEAI_ELEVEN_KEY);
    fflush(stdout);
    while (!stop) {
        struct fakehttp *srv = fakeai_server(f);
        /* Quiet: forget what was recorded, so that a long benchmark does not grow memory. */
        if (quiet) {
            fakehttp_clear(srv);
            usleep(100000);
            continue;
        }
        for (; shown < fakehttp_count(srv); shown++) {
            const struct fakehttp_request *r = fakehttp_get(srv, shown);
            cJSON *body = cJSON_ParseWithLength(r->body, r->body_len);
            const char *t = transcript(body);
            printf("%s %s\n", r->method, r->path);
            if (t != NULL)
                printf("%s\n\n", t);
            cJSON_Delete(body);
        }
        fflush(stdout);
        usleep(100000);
    }
    fakeai_stop(f);
    return 0;
}
