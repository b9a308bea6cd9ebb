# shellcheck shell=bash
# scripts/lib.sh - shell helpers shared by scripts/cluster, scripts/token
# and scripts/run-tests. Sourced, never run.
#
# Processes are tracked by PID file only: every process a script starts
# gets NAME.pid (the PID) and NAME.start (its start time in clock ticks,
# field 22 of /proc/PID/stat) in a PID directory. A PID counts as ours only
# while both match, so a recycled PID is never signalled. Nothing here
# looks processes up by name.

# Repository root: the parent of the folder holding this file.
LIB_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Bounds of the stop sequence: SIGTERM, then SIGKILL after this long.
LIB_STOP_GRACE_S=10

lib_die() {
    echo "${LIB_PROG:-scripts}: $*" >&2
    exit 1
}

lib_say() {
    echo "${LIB_PROG:-scripts}: $*"
}

# Prints PATH made absolute against the repository root.
lib_abs_path() {
    case "$1" in
    /*) printf '%s\n' "${1%/}" ;;
    *) printf '%s\n' "$LIB_ROOT/${1%/}" ;;
    esac
}

# Fails unless $2 is a decimal integer in [$3, $4]; $1 names it.
lib_check_int() {
    case "$2" in
    '' | *[!0-9]*) lib_die "$1 must be an integer, got '$2'" ;;
    esac
    if [ "${#2}" -gt 9 ] || [ "$2" -lt "$3" ] || [ "$2" -gt "$4" ]; then
        lib_die "$1 must be in [$3, $4], got $2"
    fi
}

# Prints the start time of PID (field 22 of /proc/PID/stat), or nothing.
# The command name (field 2) may hold spaces, so fields are counted from
# the last ')'.
lib_proc_start() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
    stat=${stat##*) }
    # After the name: state is field 3, start time field 22, i.e. the
    # 20th word here (index 19).
    local fields
    read -r -a fields <<<"$stat"
    printf '%s\n' "${fields[19]:-}"
}

# True when PID exists and is not a zombie.
lib_proc_alive() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [ "${stat%% *}" != Z ]
}

# Records PID under NAME in DIR.
lib_pid_record() {
    local dir=$1 name=$2 pid=$3
    mkdir -p "$dir"
    lib_proc_start "$pid" >"$dir/$name.start"
    echo "$pid" >"$dir/$name.pid"
}

# Prints the recorded PID of NAME in DIR if that process still runs and
# is the one recorded; prints nothing otherwise.
lib_pid_live() {
    local dir=$1 name=$2 pid start
    [ -f "$dir/$name.pid" ] || return 0
    pid=$(cat "$dir/$name.pid" 2>/dev/null) || return 0
    case "$pid" in
    '' | *[!0-9]*) return 0 ;;
    esac
    lib_proc_alive "$pid" || return 0
    start=$(cat "$dir/$name.start" 2>/dev/null) || start=
    [ -z "$start" ] || [ "$start" = "$(lib_proc_start "$pid")" ] || return 0
    echo "$pid"
}

lib_pid_forget() {
    rm -f "$1/$2.pid" "$1/$2.start"
}

# Waits until every PID given has exited, for at most $1 seconds.
# Returns 1 if some still run.
lib_wait_gone() {
    local timeout=$1 i pid alive
    shift
    for ((i = 0; i < timeout * 10; i++)); do
        alive=0
        for pid in "$@"; do
            lib_proc_alive "$pid" && alive=1
        done
        [ "$alive" -eq 0 ] && return 0
        sleep 0.1
    done
    return 1
}

# Stops the processes recorded under the NAMEs in DIR, all at once:
# SIGTERM, up to LIB_STOP_GRACE_S seconds for them to finish in-flight
# work, then SIGKILL. Forgets their PID files. Safe when nothing runs.
lib_pid_stop() {
    local dir=$1 name pid
    shift
    local pids=()
    for name in "$@"; do
        pid=$(lib_pid_live "$dir" "$name")
        if [ -n "$pid" ]; then
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
        fi
    done
    if [ ${#pids[@]} -gt 0 ] && ! lib_wait_gone "$LIB_STOP_GRACE_S" "${pids[@]}"; then
        for pid in "${pids[@]}"; do
            if lib_proc_alive "$pid"; then
                echo "${LIB_PROG:-scripts}: pid $pid ignored SIGTERM; sending SIGKILL" >&2
                kill -KILL "$pid" 2>/dev/null || true
            fi
        done
        lib_wait_gone 5 "${pids[@]}" || true
    fi
    for name in "$@"; do
        lib_pid_forget "$dir" "$name"
    done
}

# True when something accepts TCP connections on 127.0.0.1:PORT.
lib_port_busy() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# True when GET URL answers 2xx within 2 s.
lib_http_ok() {
    curl -fsS -o /dev/null --max-time 2 "$1" 2>/dev/null
}
