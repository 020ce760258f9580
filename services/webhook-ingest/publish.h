/*
 * publish.h - publishing one POST's events and answering it when they are stored.
 */
#ifndef INGEST_PUBLISH_H
#define INGEST_PUBLISH_H

#include <event2/http.h>

struct ingest;
struct envelope;

#define REQUEST_ID_LEN 16

/*
 * Publishes every event of env (which must hold at least one) and answers req later, on
 * the loop: 200 once JetStream has acknowledged them all, 503 if any was not stored.
 * env is only read during the call. rid is the request id for logs.
 */
void ingest_publish(struct ingest *ing, struct evhttp_request *req, const char *rid,
                    const struct envelope *env);

#endif
