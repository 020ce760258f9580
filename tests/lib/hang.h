/*
 * hang.h - a third party that hangs, for the tests of request lanes: a listener on 127.0.0.1
 * that takes connections and answers none of them until the test says so. Pointed at as Meta
 * or S3, it holds the workers that call it, however long their timeouts.
 */
#ifndef TESTS_HANG_H
#define TESTS_HANG_H

#define TH_HANG_MAX 64

struct th_hang {
    int lfd;
    int held[TH_HANG_MAX]; /* accepted, not answered */
    int nheld;
    int ntaken;   /* accepted in all */
    char url[64]; /* http://127.0.0.1:PORT */
};

/* Starts listening. Returns 0, or -1 (the reason on stderr). */
int th_hang_start(struct th_hang *h);

/* Takes connections until n are held or timeout_ms has passed; returns how many are held. */
int th_hang_hold(struct th_hang *h, int n, int timeout_ms);

/*
 * Answers every held connection with answer(fd) (which reads the request, writes an answer and
 * closes fd; th_hang_read_request() reads the request), then takes and answers more
 * until total connections were taken in all or timeout_ms has passed. Returns that total.
 */
int th_hang_answer(struct th_hang *h, void (*answer)(int fd), int total, int timeout_ms);

/*
 * Reads a request from fd: its head (to its blank line), then its body (Content-Length bytes)
 * unless the client waits for "100 Continue" before sending it, so that closing fd after the
 * answer resets nothing the client is still sending.
 */
void th_hang_read_request(int fd);

/* Closes the listener and whatever is still held. */
void th_hang_stop(struct th_hang *h);

#endif
