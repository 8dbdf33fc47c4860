# shellcheck shell=bash
# The harness shared by the shell suites (tests/test_*.sh). Each suite does
#
#   set -u
#   LIMIT=60                          # seconds for any single command
#   source "$(dirname "$0")/lib.sh"
#   setup ea-NAME [OPTION...]         # temporary directory, HOME, trap, counters
#   ... checks ...
#   finish                            # "N passed, M failed", exit status
#
# and keeps its own helpers (PKI, chips, brokers, daemons) in the script.
# This file only defines functions: nothing happens until setup.
#
# State, global in every suite:
#   T            the temporary directory; everything the suite writes lives
#                under it. Removed at exit unless EA_TEST_KEEP is set.
#   OUT, ERR     $T/out and $T/err: the captured output of the last command.
#   RC           the exit status of the last command (124: its time limit).
#   PASS, FAIL, SKIP   the counters that ok, bad and skip advance.
#   BG           pids of the background processes that the exit trap stops.
#   LIMIT        (set by the suite) the time limit of run and ea, in seconds.
#   EA           (set by the suites that call ea) the edgeauth binary.
#
# Two families of checks, both reading $RC, $OUT and $ERR, and both failing
# on a sanitizer report whatever the exit status:
#   check, check_fail      stdout or stderr alone (the CLI suites: a message
#                          on the wrong stream fails the check);
#   expect_ok, expect_fail, expect_exit   stdout and stderr together (the
#                          suites that judge tools such as openssl, curl and
#                          mosquitto, which print where they like).
# Every check prints one line: "ok   - NAME", "FAIL - NAME (exit RC)" followed
# by the captured output, or "skip - NAME: WHY".

# setup NAME [OPTION...]: make the temporary directory ${TMPDIR:-/tmp}/NAME.XXXXXX,
# point HOME inside it (never the user's own default chip), set the
# sanitizer options, start the counters, and arm the exit trap (cleanup).
# Options:
#   mkhome             create $HOME (otherwise the programs must create it)
#   plain-conf         a neutral OPENSSL_CONF, so that the caller's cannot
#                      load other providers into the cases
#   ignore-pipe        ignore SIGPIPE: a write to a fifo whose reader died
#                      fails instead of killing the script (inherited by
#                      every command the suite runs)
#   caller-sanitizers  keep ASAN_OPTIONS / UBSAN_OPTIONS if the caller set them
setup() {
    local name=$1 opt keep_san=
    shift
    T=$(mktemp -d "${TMPDIR:-/tmp}/$name.XXXXXX") || exit 1
    BG=()
    trap cleanup EXIT
    export HOME=$T/home
    for opt in "$@"; do
        case $opt in
        mkhome) mkdir -p "$HOME" ;;
        plain-conf)
            printf 'openssl_conf = openssl_init\n[openssl_init]\n' >"$T/plain.cnf"
            export OPENSSL_CONF=$T/plain.cnf
            ;;
        ignore-pipe) trap '' PIPE ;;
        caller-sanitizers) keep_san=1 ;;
        *)
            echo "lib.sh: setup: unknown option '$opt'" >&2
            exit 1
            ;;
        esac
    done
    if [ -n "$keep_san" ]; then
        export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
        export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
    else
        export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
        export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    fi
    PASS=0
    FAIL=0
    SKIP=0
    RC=0
    OUT=$T/out
    ERR=$T/err
    : >"$OUT"
    : >"$ERR"
}

# ---- exit ---------------------------------------------------------------------------
# cleanup: the exit trap. A suite with more to stop (brokers, open fifos)
# redefines it after setup and calls stop_bg and remove_tmp itself.
cleanup() {
    stop_bg
    remove_tmp
}

# stop_bg: SIGTERM every process in BG (SIGCONT first, for those a case
# stopped), then reap them.
stop_bg() {
    local p
    for p in "${BG[@]}"; do
        kill -CONT "$p" 2>/dev/null
        kill -TERM "$p" 2>/dev/null
    done
    for p in "${BG[@]}"; do
        wait "$p" 2>/dev/null
    done
}

# bg_forget PID: the suite stopped and reaped PID itself; the trap must not
# signal that pid again (it may belong to another process by then).
bg_forget() {
    local p keep=()
    for p in "${BG[@]}"; do
        [ "$p" = "$1" ] || keep+=("$p")
    done
    BG=("${keep[@]}")
}

# remove_tmp: remove $T, or keep it for a post-mortem when EA_TEST_KEEP is set.
remove_tmp() {
    if [ -n "${EA_TEST_KEEP:-}" ]; then echo "# kept $T"; else rm -rf "$T"; fi
}

# ---- counters and results ---------------------------------------------------------------
ok() {
    PASS=$((PASS + 1))
    echo "ok   - $1"
}

# bad NAME: a failure, with the last command's status and output. SHOW is
# how much output to print (a command line fed each stream; test_device.sh
# wants the end). A suite may define show_also to print more (test_offload.sh:
# the APDU log).
SHOW=(head -20)
bad() {
    FAIL=$((FAIL + 1))
    echo "FAIL - $1 (exit $RC)"
    sed 's/^/       out: /' "$OUT" | "${SHOW[@]}"
    sed 's/^/       err: /' "$ERR" | "${SHOW[@]}"
    if declare -F show_also >/dev/null; then show_also; fi
}

# skip NAME WHY: a case this machine cannot run (it counts as neither).
skip() {
    SKIP=$((SKIP + 1))
    echo "skip - $1: $2"
}

# verdict NAME STATUS: for checks computed by the caller (STATUS 0: passed).
verdict() {
    if [ "$2" -eq 0 ]; then ok "$1"; else bad "$1"; fi
}

# finish: the summary line, "N passed, M failed[, K skipped]", then exit,
# non-zero on any failure.
finish() {
    echo "$PASS passed, $FAIL failed$([ "$SKIP" -gt 0 ] && echo ", $SKIP skipped")"
    [ "$FAIL" -eq 0 ]
    exit $?
}

# give_up WHY: a prerequisite is missing or the stage could not be set up;
# one failure, the summary, exit.
give_up() {
    echo "FAIL - $1"
    FAIL=$((FAIL + 1))
    finish
}

# ---- running commands ------------------------------------------------------------------
# run CMD...: CMD with the time limit, output in $OUT / $ERR, status in $RC
# (and returned).
run() {
    timeout "$LIMIT" "$@" >"$OUT" 2>"$ERR"
    RC=$?
    return $RC
}

# ea ARGS...: run the edgeauth CLI ($EA).
ea() { run "$EA" "$@"; }

# sane: no sanitizer report in $ERR.
sane() {
    ! grep -qE 'AddressSanitizer|LeakSanitizer|runtime error:' "$ERR"
}

# ---- checks --------------------------------------------------------------------------------
# all_match WHERE ERE...: every ERE matches a line of stdout (WHERE=stdout)
# or of stdout or stderr (WHERE=output); else name the first that does not.
all_match() {
    local where=$1 re files=("$OUT")
    shift
    [ "$where" = output ] && files+=("$ERR")
    for re in "$@"; do
        if ! grep -qE -- "$re" "${files[@]}"; then
            echo "       ($where lacks /$re/)"
            return 1
        fi
    done
}

# succeeded WHERE NAME ERE...: the last command succeeded and every ERE
# matches (all_match WHERE).
succeeded() {
    local where=$1 name=$2
    shift 2
    if [ "$RC" -ne 0 ] || ! sane || ! all_match "$where" "$@"; then
        bad "$name"
        return 1
    fi
    ok "$name"
}

# check NAME ERE...: the last command succeeded and stdout matches every ERE.
check() { succeeded stdout "$@"; }

# check_fail NAME STATUS ERE: the last command exited STATUS and stderr
# matches ERE.
check_fail() {
    local name=$1 want=$2 re=$3
    if [ "$RC" -ne "$want" ] || ! sane || ! grep -qE -- "$re" "$ERR"; then
        echo "       (wanted exit $want and stderr /$re/)"
        bad "$name"
        return 1
    fi
    ok "$name"
}

# assert NAME COMMAND...: a shell condition (its stdout is dropped).
assert() {
    local name=$1
    shift
    if "$@" >/dev/null; then
        ok "$name"
    else
        RC=1
        bad "$name"
    fi
}

# expect_ok NAME ERE...: the last command succeeded and stdout+stderr match
# every ERE.
expect_ok() { succeeded output "$@"; }

# expect_fail NAME ERE: the last command failed, not by its time limit (124,
# or 137 when killed), and stdout+stderr match ERE.
expect_fail() {
    local name=$1 re=$2
    if [ "$RC" -eq 0 ] || [ "$RC" -eq 124 ] || [ "$RC" -eq 137 ] || ! sane ||
        ! grep -qE -- "$re" "$OUT" "$ERR"; then
        echo "       (wanted a failure, not a timeout, with /$re/)"
        bad "$name"
        return 1
    fi
    ok "$name"
}

# expect_exit NAME STATUS ERE...: the last command exited STATUS and
# stdout+stderr match every ERE.
expect_exit() {
    local name=$1 want=$2
    shift 2
    if [ "$RC" -ne "$want" ] || ! sane; then
        echo "       (wanted exit $want)"
        bad "$name"
        return 1
    fi
    if ! all_match output "$@"; then
        bad "$name"
        return 1
    fi
    ok "$name"
}

# ---- waiting, ports, time -----------------------------------------------------------------
# wait_for PATH [ERE [SECONDS]]: until PATH exists (no ERE), or has a line
# matching ERE; at most SECONDS (10). Fails on timeout.
wait_for() {
    for _ in $(seq 1 $((${3:-10} * 10))); do
        if [ $# -lt 2 ]; then
            [ -e "$1" ] && return 0
        else
            grep -qE -- "$2" "$1" 2>/dev/null && return 0
        fi
        sleep 0.1
    done
    return 1
}

# free_port: print a TCP port on 127.0.0.1 that nothing uses right now: no
# socket of any state on it (ss), or, without ss, no listener.
free_port() {
    local p
    for _ in $(seq 1 100); do
        p=$((20000 + RANDOM % 40000))
        if command -v ss >/dev/null; then
            ss -Htan "( sport = :$p or dport = :$p )" | grep -q . && continue
        else
            (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && continue
        fi
        echo "$p"
        return 0
    done
    return 1
}

# serve_on_free_port LOG READY-ERE CMD...: start a server in the background,
# stdout and stderr to LOG, stdin from /dev/null, every @PORT@ in its
# arguments replaced by a random port. It is up once LOG has a line matching
# READY-ERE (10 s); a try that dies or stays silent is killed and another
# port tried, 20 tries in all (a port probed free first could still be
# taken by the time the server binds it). Sets SERVER_PORT; the server's pid
# joins BG.
serve_on_free_port() {
    local log=$1 ready=$2 port pid
    shift 2
    for _ in $(seq 1 20); do
        port=$((20000 + RANDOM % 40000))
        "${@//@PORT@/$port}" >"$log" 2>&1 </dev/null &
        pid=$!
        for _ in $(seq 1 100); do
            grep -qE -- "$ready" "$log" 2>/dev/null && break
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if grep -qE -- "$ready" "$log"; then
            BG+=("$pid")
            SERVER_PORT=$port
            return 0
        fi
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    return 1
}

# now_ms: milliseconds since the epoch.
now_ms() { echo $(($(date +%s%N) / 1000000)); }
