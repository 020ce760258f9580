# tests/bench/lib/nats.sh: the benchmarks' nats-server and identities (sourced by each run).
#
# With DOMS_TEST_PKI (tests/run sets it) the bench's nats-server is the suite's: TLS only,
# permissions from proto/permissions.tsv, and doms-test (the load generators, bench_connect)
# allowed everything; each daemon and domsctl then runs as its own identity. Without it,
# plaintext as before.

# bench_nats_start DIR: starts the bench's nats-server (doms_nats_start) in DIR; with
# BENCH_NATS_PROF_PORT, its Go profiler on that port (docs/benchmarks.md, "Profiling").
bench_nats_start() {
    if [[ -n ${DOMS_TEST_PKI:-} ]]; then
        DOMS_NATS_PROF_PORT=${BENCH_NATS_PROF_PORT:-} \
            doms_nats_start "$1" free "$DOMS_TEST_PKI" doms-test >/dev/null
    else
        DOMS_NATS_PROF_PORT=${BENCH_NATS_PROF_PORT:-} doms_nats_start "$1" free >/dev/null
    fi
}

# bench_env IDENTITY: prints IDENTITY's NATS_CA_FILE, NATS_CERT_FILE and NATS_KEY_FILE assignments
# for env (nothing without a PKI): env $(bench_env token-vault) ... "$bin/token-vault" &
bench_env() {
    [[ -n ${DOMS_TEST_PKI:-} ]] || return 0
    printf 'NATS_CA_FILE=%s NATS_CERT_FILE=%s NATS_KEY_FILE=%s' "$DOMS_TEST_PKI/ca.crt" \
        "$DOMS_TEST_PKI/$1.crt" "$DOMS_TEST_PKI/$1.key"
}
