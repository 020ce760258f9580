/*
 * ai_suite.h - what test_ai.c shares with test_ai_purge.c: one test program, one suite with
 * ai-suggest and a local OpenAI, Gemini and ElevenLabs, split into files by concern.
 */
#ifndef AI_SUITE_H
#define AI_SUITE_H

#include <cjson/cJSON.h>

#include "stack.h"

extern struct th_stack st;
/* Workspace Acme (AI on), its Page's integration, and the conversation of the PII text. */
extern char ws_a[64], int_a[64];
extern char *conv_pii;

/* Runs domsctl as operator, expecting exit code want; its JSON (free it), *text its stderr
 * (may be NULL). */
cJSON *run(int want, char **text, const char *const *args);
/* Requests the AI stand-ins received, every provider together. */
int all_requests(void);

/* test_ai_purge.c */
void test_deleted_workspace_purged(void);

#endif
