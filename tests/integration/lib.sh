# shellcheck shell=bash
# lib.sh: what every feedloop integration test stands on. Source it first:
#
#   source "$FL_SOURCE_DIR/tests/integration/lib.sh"   (or relative to the script)
#
# Sourcing creates a private temp dir and traps EXIT/INT/TERM so that everything started
# through these functions (redis-server, the broker, fl_spawn'ed processes) is stopped and the
# temp dir removed however the test ends; a watchdog does the same if the test's shell is
# killed outright (SIGKILL, e.g. a ctest timeout). Everything listens on 127.0.0.1 only.
#
# Environment read:
#   FL_BIN_DIR     build tree root (default: $FL_SOURCE_DIR/build)
#   FL_SOURCE_DIR  source tree root (default: two levels above this file)
#   FL_BROKER      mock | kafka (default: mock)
#   FL_KEEP_TMP=1  keep the temp dir after the test (for a post-mortem)
#
# Functions (all return non-zero on failure unless they exit):
#   fl_tmpdir [name]          print the private temp dir, or a new subdir <name> of it
#   fl_free_port              print a free loopback TCP port
#   fl_bin <name>             print the path of a built executable (feedloop-validator, ...)
#   fl_start_redis            private redis-server; exports FL_REDIS_HOST, FL_REDIS_PORT,
#                             FL_REDIS_PID
#   fl_stop_redis             stop it (e.g. to test a Redis outage); fl_start_redis again
#                             starts a fresh, empty one on a new port
#   fl_start_broker [args]    broker of kind $FL_BROKER; exports FL_BOOTSTRAP, FL_BROKER_KIND,
#                             FL_LOOP_TOPICS (space-separated), and for the mock
#                             FL_BROKER_CONTROL (FIFO) and FL_BROKER_PID; args go to
#                             feedloop-broker (mock only, e.g. --brokers 3)
#   fl_broker_ctl "<cmd>"     mock: send a fault-injection command and wait for its answer
#                             (fails on "error ..."); kafka: prints "skip" and returns 0
#   fl_stop_broker            stop the broker
#   fl_spawn <name> <cmd...>  run cmd in the background, output in $(fl_tmpdir)/<name>.log;
#                             sets FL_LAST_PID; stopped by fl_stop_all
#   fl_kill <pid> [signal]    signal a process and wait for it to end (default TERM)
#   fl_stop_all               stop everything started here, remove the temp dir (the EXIT trap
#                             calls it; calling it twice is fine)
#   fl_wait_for <timeout_s> <command...>
#                             run command every 0.1 s until it succeeds; 1 on timeout
#   fl_fail "<msg>"           print FAIL and exit 1 (from the test's own shell, not $(...))
#   fl_assert_eq <expected> <actual> [what]
#   fl_log "<msg>"            timestamped progress line on stderr

FL_SOURCE_DIR=${FL_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
FL_BIN_DIR=${FL_BIN_DIR:-$FL_SOURCE_DIR/build}
FL_BROKER=${FL_BROKER:-mock}
export FL_SOURCE_DIR FL_BIN_DIR FL_BROKER

fl_log() {
    printf '%s [%s] %s\n' "$(date +%H:%M:%S.%3N)" "${FL_TEST_NAME:-test}" "$*" >&2 || true
}

fl_fail() {
    printf 'FAIL [%s]: %s\n' "${FL_TEST_NAME:-test}" "$*" >&2
    exit 1
}

fl_assert_eq() {
    if [[ $1 != "$2" ]]; then
        fl_fail "${3:-value}: expected '$1', got '$2'"
    fi
}

fl_wait_for() {
    local timeout_s=$1
    shift
    local deadline=$((SECONDS + timeout_s))
    while ! "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            fl_log "timed out after ${timeout_s}s waiting for: $*"
            return 1
        fi
        sleep 0.1
    done
}

fl_tmpdir() {
    if [[ -n ${1:-} ]]; then
        mkdir -p "$FL_TMPDIR/$1" && echo "$FL_TMPDIR/$1"
    else
        echo "$FL_TMPDIR"
    fi
}

# Ports handed out are remembered in a file (fl_free_port runs in $(...) subshells) so that
# two calls in one test never return the same port before either is bound.
fl_free_port() {
    local p i
    for ((i = 0; i < 500; i++)); do
        p=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
        grep -qx "$p" "$FL_TMPDIR/.ports" 2>/dev/null && continue
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p" >>"$FL_TMPDIR/.ports"
            echo "$p"
            return 0
        fi
    done
    fl_log "no free port found"
    return 1
}

fl_bin() {
    local name=$1 c
    for c in "$FL_BIN_DIR/tools/$name" "$FL_BIN_DIR/workers/${name#feedloop-}/$name" \
        "$FL_BIN_DIR/tests/integration/$name" "$FL_BIN_DIR/bench/$name" "$FL_BIN_DIR/$name"; do
        if [[ -x $c && -f $c ]]; then
            echo "$c"
            return 0
        fi
    done
    c=$(find "$FL_BIN_DIR" -name "$name" -type f -perm -u+x -print -quit 2>/dev/null)
    if [[ -n $c ]]; then
        echo "$c"
        return 0
    fi
    fl_log "executable $name not found under FL_BIN_DIR=$FL_BIN_DIR (is it built?)"
    return 1
}

# --- process registry -------------------------------------------------------------------------

# Kept twice: in a file (the watchdog reads it; fl_spawn may run in a subshell) and in the
# shell's own list (cleanup still works if the temp dir was removed under the test's feet).
FL_PIDS=()

_fl_register() { # <pid> <name>
    FL_PIDS+=("$1")
    echo "$1 $2" >>"$FL_TMPDIR/.pids" 2>/dev/null || true
}

_fl_unregister() { # <pid>
    local i
    for i in "${!FL_PIDS[@]}"; do
        [[ ${FL_PIDS[$i]} == "$1" ]] && unset 'FL_PIDS[i]'
    done
    [[ -f $FL_TMPDIR/.pids ]] || return 0
    grep -v "^$1 " "$FL_TMPDIR/.pids" >"$FL_TMPDIR/.pids.tmp" || true
    mv "$FL_TMPDIR/.pids.tmp" "$FL_TMPDIR/.pids" 2>/dev/null || true
}

# Alive and not a zombie: a child of ours that exited stays visible to kill -0 until reaped.
_fl_alive() { # <pid>
    local state
    state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [[ -n $state && $state != Z ]]
}

fl_kill() {
    local pid=$1 sig=${2:-TERM} i
    if kill -"$sig" "$pid" 2>/dev/null; then
        # Up to 10 s for a clean exit, then SIGKILL: a test must never hang in its cleanup.
        for ((i = 0; i < 100; i++)); do
            _fl_alive "$pid" || break
            sleep 0.1
        done
        if _fl_alive "$pid"; then
            fl_log "pid $pid still running 10 s after SIG$sig, killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || true
    _fl_unregister "$pid"
}

fl_spawn() {
    local name=$1
    shift
    "$@" >"$FL_TMPDIR/$name.log" 2>&1 </dev/null &
    FL_LAST_PID=$!
    _fl_register "$FL_LAST_PID" "$name"
}

# --- redis ------------------------------------------------------------------------------------

fl_start_redis() {
    local dir port try
    command -v redis-server >/dev/null || fl_fail "redis-server not installed"
    for ((try = 0; try < 3; try++)); do
        port=$(fl_free_port) || return 1
        dir=$(fl_tmpdir "redis-$port") || return 1
        redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no --dir "$dir" \
            --daemonize no --logfile "$dir/redis.log" --protected-mode yes \
            >/dev/null 2>&1 </dev/null &
        FL_REDIS_PID=$!
        _fl_register "$FL_REDIS_PID" redis
        if fl_wait_for 10 _fl_redis_up "$port" "$FL_REDIS_PID"; then
            export FL_REDIS_HOST=127.0.0.1 FL_REDIS_PORT=$port FL_REDIS_PID
            fl_log "redis-server up on 127.0.0.1:$port (pid $FL_REDIS_PID)"
            return 0
        fi
        # Lost a port race, most likely: try another port.
        fl_log "redis-server on port $port did not come up:"
        tail -n 5 "$dir/redis.log" >&2 2>/dev/null || true
        fl_kill "$FL_REDIS_PID"
    done
    fl_fail "could not start redis-server"
}

_fl_redis_up() { # <port> <pid>
    kill -0 "$2" 2>/dev/null || return 1
    [[ $(redis-cli -h 127.0.0.1 -p "$1" PING 2>/dev/null) == PONG ]]
}

fl_stop_redis() {
    [[ -n ${FL_REDIS_PID:-} ]] || return 0
    fl_kill "$FL_REDIS_PID"
    fl_log "redis-server stopped"
    unset FL_REDIS_PID
}

# --- broker -----------------------------------------------------------------------------------

fl_start_broker() {
    local bin
    bin=$(fl_bin feedloop-broker) || fl_fail "feedloop-broker not built"
    # The loop's topics come from the broker itself: one list for both brokers.
    FL_LOOP_TOPICS=$("$bin" --list-topics | cut -d' ' -f1 | tr '\n' ' ')
    FL_LOOP_TOPICS=${FL_LOOP_TOPICS% }
    export FL_LOOP_TOPICS FL_BROKER_KIND=$FL_BROKER
    case $FL_BROKER in
    mock) _fl_start_mock "$bin" "$@" ;;
    kafka) _fl_start_kafka "$@" ;;
    *) fl_fail "FL_BROKER must be mock or kafka, not '$FL_BROKER'" ;;
    esac
}

_fl_start_mock() {
    local bin=$1
    shift
    local dir
    dir=$(fl_tmpdir broker) || return 1
    FL_BROKER_CONTROL=$dir/control
    rm -f "$dir/bootstrap"
    "$bin" --partitions 4 --control "$FL_BROKER_CONTROL" --bootstrap-file "$dir/bootstrap" "$@" \
        >"$dir/out" 2>"$dir/log" </dev/null &
    FL_BROKER_PID=$!
    _fl_register "$FL_BROKER_PID" broker
    if ! fl_wait_for 15 test -s "$dir/bootstrap"; then
        tail -n 20 "$dir/log" >&2
        fl_fail "mock broker did not start"
    fi
    FL_BOOTSTRAP=$(cat "$dir/bootstrap")
    export FL_BOOTSTRAP FL_BROKER_CONTROL FL_BROKER_PID
    fl_log "mock broker up at $FL_BOOTSTRAP (pid $FL_BROKER_PID)"
}

_fl_start_kafka() {
    local dir t0
    dir=$FL_TMPDIR/kafka
    echo "$dir" >>"$FL_TMPDIR/.kafka"
    FL_KAFKA_ADMIN=$(fl_bin feedloop-kafka-admin) || fl_fail "feedloop-kafka-admin not built"
    export FL_KAFKA_ADMIN
    t0=$SECONDS
    FL_BOOTSTRAP=$("$FL_SOURCE_DIR/tests/kafka/start.sh" "$dir") || fl_fail "kafka did not start"
    # shellcheck disable=SC2086 # FL_LOOP_TOPICS is a word list
    "$FL_SOURCE_DIR/tests/kafka/create-topics.sh" "$FL_BOOTSTRAP" 4 $FL_LOOP_TOPICS ||
        fl_fail "creating the loop's topics on kafka failed"
    FL_BROKER_PID=$(cat "$dir/pid")
    export FL_BOOTSTRAP FL_BROKER_PID
    unset FL_BROKER_CONTROL
    fl_log "kafka up at $FL_BOOTSTRAP with the loop's topics ($((SECONDS - t0)) s)"
}

fl_broker_ctl() {
    local cmd=$1 out before line
    if [[ $FL_BROKER != mock ]]; then
        fl_log "skip: fl_broker_ctl '$cmd' needs the mock broker (FL_BROKER=$FL_BROKER)"
        return 0
    fi
    [[ -n ${FL_BROKER_CONTROL:-} ]] || fl_fail "fl_broker_ctl: no mock broker started"
    out=$(dirname "$FL_BROKER_CONTROL")/out
    before=$(wc -l <"$out")
    # A FIFO write blocks while no reader has it open; bound it in case the broker died.
    if ! timeout 10 bash -c 'printf "%s\n" "$1" >"$2"' _ "$cmd" "$FL_BROKER_CONTROL"; then
        fl_fail "fl_broker_ctl '$cmd': could not write to the control FIFO"
    fi
    if ! fl_wait_for 10 _fl_lines_more_than "$out" "$before"; then
        fl_fail "fl_broker_ctl '$cmd': no answer from the broker"
    fi
    line=$(sed -n "$((before + 1))p" "$out")
    case $line in
    "ok "*) fl_log "broker: $line" ;;
    *)
        fl_log "broker: $line"
        return 1
        ;;
    esac
}

_fl_lines_more_than() { # <file> <n>
    (($(wc -l <"$1") > $2))
}

fl_stop_broker() {
    local dir
    case ${FL_BROKER_KIND:-} in
    mock)
        [[ -n ${FL_BROKER_PID:-} ]] && fl_kill "$FL_BROKER_PID"
        ;;
    kafka)
        if [[ -f $FL_TMPDIR/.kafka ]]; then
            while read -r dir; do
                "$FL_SOURCE_DIR/tests/kafka/stop.sh" "$dir"
            done <"$FL_TMPDIR/.kafka"
            rm -f "$FL_TMPDIR/.kafka"
        fi
        ;;
    esac
    unset FL_BROKER_PID FL_BOOTSTRAP FL_BROKER_CONTROL
}

# --- cleanup ----------------------------------------------------------------------------------

fl_stop_all() {
    local pid dir pids=() i
    [[ -n ${FL_TMPDIR:-} ]] || return 0
    # Cleanup must run to its end: no errexit, no second signal cutting it short.
    set +e
    trap '' INT TERM
    # Most recent first: workers before the broker and Redis they talk to.
    for ((i = ${#FL_PIDS[@]} - 1; i >= 0; i--)); do
        [[ -n ${FL_PIDS[i]:-} ]] && pids+=("${FL_PIDS[i]}")
    done
    if [[ -f $FL_TMPDIR/.pids ]]; then
        while read -r pid _; do
            [[ " ${pids[*]} " == *" $pid "* ]] || pids+=("$pid")
        done < <(tac "$FL_TMPDIR/.pids")
    fi
    for pid in "${pids[@]}"; do
        fl_kill "$pid"
    done
    if [[ -f $FL_TMPDIR/.kafka ]]; then
        while read -r dir; do
            "$FL_SOURCE_DIR/tests/kafka/stop.sh" "$dir"
        done <"$FL_TMPDIR/.kafka"
    elif [[ ${FL_BROKER_KIND:-} == kafka && -n ${FL_BROKER_PID:-} ]]; then
        fl_kill "$FL_BROKER_PID" # the workdir is gone: at least the JVM goes
    fi
    # Its whole process group (it leads its own session), so its `sleep` goes too. Its own
    # record is the sure one (setsid may fork); $! serves if the temp dir is gone.
    if [[ -s $FL_TMPDIR/.watchdog ]]; then
        kill -TERM -- "-$(cat "$FL_TMPDIR/.watchdog")" 2>/dev/null || true
    elif [[ -n ${_FL_WATCHDOG_PID:-} ]]; then
        kill -TERM -- "-$_FL_WATCHDOG_PID" 2>/dev/null || kill "$_FL_WATCHDOG_PID" 2>/dev/null
    fi
    if [[ ${FL_KEEP_TMP:-0} == 1 ]]; then
        fl_log "kept $FL_TMPDIR"
    else
        rm -rf "$FL_TMPDIR"
    fi
    FL_TMPDIR=
    FL_PIDS=()
    trap '_fl_on_signal INT 2' INT
    trap '_fl_on_signal TERM 15' TERM
}

# If the test's shell is killed outright, no trap runs: the watchdog (in its own session, so
# a process-group kill does not take it along) then stops what the registry lists.
_fl_watchdog() { # <test shell pid> <tmpdir> <source dir>
    local owner=$1 tmp=$2 src=$3 pid name dir
    echo "$BASHPID" >"$tmp/.watchdog"
    while kill -0 "$owner" 2>/dev/null; do sleep 1; done
    [[ -d $tmp ]] || exit 0
    if [[ -f $tmp/.pids ]]; then
        while read -r pid name; do kill -KILL "$pid" 2>/dev/null; done <"$tmp/.pids"
    fi
    if [[ -f $tmp/.kafka ]]; then
        while read -r dir; do "$src/tests/kafka/stop.sh" "$dir"; done <"$tmp/.kafka"
    fi
    rm -rf "$tmp"
}

_fl_on_signal() {
    fl_log "caught SIG$1, cleaning up"
    exit $((128 + $2))
}

FL_TEST_NAME=${FL_TEST_NAME:-$(basename "${BASH_SOURCE[1]:-$0}" .sh)}
FL_TMPDIR=$(mktemp -d "${TMPDIR:-/tmp}/feedloop-it.XXXXXX")
export FL_TMPDIR FL_TEST_NAME
trap fl_stop_all EXIT
trap '_fl_on_signal INT 2' INT
trap '_fl_on_signal TERM 15' TERM
# stdio to /dev/null: a watchdog holding the test's stdout open would make ctest wait for it.
setsid bash -c "$(declare -f _fl_watchdog); _fl_watchdog \"\$@\"" _ "$$" "$FL_TMPDIR" \
    "$FL_SOURCE_DIR" </dev/null >/dev/null 2>&1 &
_FL_WATCHDOG_PID=$!
