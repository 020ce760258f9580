# tests/bench/lib/cpu.sh: the CPU that a benchmark's processes spend in a phase (sourced by the
# runs that print it). With the machine's cores saturated, a phase's rate follows the sum of
# what each process spends per request or event, so the split says where a ratio's budget goes.

bench_hz=$(getconf CLK_TCK)

# bench_ticks PID [family]: the user and system time PID has used so far, in clock ticks; with
# "family", PID's children's too, living (their own time) or ended (counted in PID's). That is
# PostgreSQL whole: its postmaster, the backends and the background processes. A process gone
# counts nothing. The fields are read after the command name, which may hold spaces.
bench_ticks() {
    { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v pid="$1" -v family="${2:-}" '
        {
            self = $1 == pid
            sub(/^[0-9]+ \(.*\) /, "")
            if (self) t += $12 + $13 + (family ? $14 + $15 : 0)
            else if (family && $2 == pid) t += $12 + $13 + $14 + $15
        }
        END { print t + 0 }'
}

# bench_seconds TICKS_BEFORE TICKS_AFTER: the CPU seconds between two bench_ticks.
bench_seconds() { awk -v a="$1" -v b="$2" -v hz="$bench_hz" 'BEGIN { print (b - a) / hz }'; }

# bench_us_per CPU_SECONDS COUNT: microseconds of one core per request or event.
bench_us_per() { awk -v c="$1" -v n="$2" 'BEGIN { printf "%.1f", (n > 0 ? c * 1e6 / n : 0) }'; }

# bench_timed VAR COMMAND...: VAR=$(COMMAND...), and the user and system seconds it used
# (its children's included, from bash's time) in VAR_cpu; its standard error passes through.
# The output goes through $tmp/timed.out ($tmp: the run's own directory).
bench_timed() {
    local var=$1 t TIMEFORMAT='%3U %3S'
    shift
    exec 3>&2
    t=$({ time "$@" >"${tmp:?}/timed.out" 2>&3; } 2>&1)
    exec 3>&-
    printf -v "$var" '%s' "$(<"$tmp/timed.out")"
    printf -v "${var}_cpu" '%s' "$(awk '{ print $1 + $2 }' <<<"$t")"
}
