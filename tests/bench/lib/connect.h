/*
 * connect.h - the load generators' NATS connection: over TLS as doms-test when the run has a
 * PKI (tests/run sets DOMS_TEST_PKI), in plaintext otherwise.
 */
#ifndef BENCH_CONNECT_H
#define BENCH_CONNECT_H

#include <nats/nats.h>

/*
 * Connects to url. With DOMS_TEST_PKI: TLS with doms-test's certificate (the bench's
 * nats-server allows that user everything) and its inbox prefix _INBOX.doms-test.
 */
natsStatus bench_connect(natsConnection **nc, const char *url);

#endif
