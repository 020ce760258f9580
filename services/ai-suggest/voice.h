/*
 * voice.h - the optional spoken draft: ElevenLabs text-to-speech.
 *
 * POST {ELEVENLABS_BASE_URL}/v1/text-to-speech/{voice_id} with the key in the xi-api-key
 * header and {"text", "model_id"}; the answer is audio/mpeg. Errors come as
 * {"detail": {"status": "invalid_api_key", "message": "..."}} (or a list of validation
 * errors for a 422); only the status identifier reaches the reason line.
 *
 * The privacy policy shares no Meta Platform Data with ElevenLabs: what is spoken is the
 * business's own draft, and ai-suggest masks it again before sending, whatever the
 * workspace's masking setting, so that nothing the customer wrote can be read out.
 */
#ifndef AI_VOICE_H
#define AI_VOICE_H

#include <stddef.h>

#include "common/httpc.h"
#include "common/mem.h"
#include "provider.h"

/* Larger audio is refused (a short reply is tens of kilobytes). */
#define AI_VOICE_MAX_AUDIO ((size_t)4 << 20)

struct ai_voice {
    const char *base_url; /* ELEVENLABS_BASE_URL */
    const char *key;      /* ELEVENLABS_API_KEY (sodium memory); never logged */
    const char *voice_id; /* ELEVENLABS_VOICE_ID */
    const char *model;    /* ELEVENLABS_MODEL */
    long timeout_ms;      /* AI_TIMEOUT */
};

/*
 * Reads ElevenLabs' answer: status, its Content-Type (may be NULL) and len bytes of body.
 * Returns AI_FAIL_NONE for audio (status 2xx, an "audio/..." type, a non-empty body), else the
 * failure with the reason in why. Any bytes are safe.
 */
enum ai_fail ai_voice_parse(long status, const char *content_type, const char *body, size_t len,
                            char *why, size_t cap);

/*
 * Speaks text (already masked) with v. On success appends the audio to audio (the caller's,
 * cm_buf_wipe() it), writes its media type into type (tcap bytes) and returns AI_FAIL_NONE;
 * otherwise returns the failure with "elevenlabs: <reason>" in why. Retries like the
 * providers, within v->timeout_ms. http may be NULL.
 */
enum ai_fail ai_voice_call(const struct ai_voice *v, struct cm_httpc *http, const char *text,
                           const char *log_id, struct cm_buf *audio, char *type, size_t tcap,
                           char *why, size_t cap);

#endif
