#!/usr/bin/env bash
# Runs a Docker engine (Debian's docker.io: dockerd + its own containerd) in the background on a
# host without systemd, for the tests. Run as root.
#
#   hack/docker.sh up       install docker.io if missing, start containerd + dockerd, wait for `docker info`
#   hack/docker.sh down     stop what `up` started (by the PIDs in its PID files, never by name)
#   hack/docker.sh status   print the state; exit 0 when `docker info` works, 1 otherwise
#
# Idempotent: `up` on a running engine only checks; `down` with nothing started does nothing.
# If a Docker engine that this script did not start already answers on /var/run/docker.sock,
# `up` uses it and `down` leaves it alone.
#
# The containerd started here is dockerd's private one: its own socket, root and state directories
# (under /run/kubectl-pytrace and /var/lib/kubectl-pytrace) and no CRI plugin, so a containerd that a
# Kubernetes set-up starts on the standard /run/containerd/containerd.sock does not collide with it.
# dockerd itself uses the standard places (/var/run/docker.sock, /var/lib/docker).
#
# Environment:
#   PYTRACE_DOCKER_RUN   state directory (PID files, sockets)    default /run/kubectl-pytrace/docker
#   PYTRACE_DOCKER_LIB   containerd root                          default /var/lib/kubectl-pytrace/containerd
#   PYTRACE_DOCKER_LOG   log directory                            default /var/log/kubectl-pytrace
#   PYTRACE_DOCKER_WAIT  seconds to wait for the engine           default 60
# The docker CLI used is Debian's /usr/bin/docker (same version as the daemon); another `docker` on
# PATH (e.g. a newer static one in /usr/local/bin) is not used.
set -euo pipefail

RUN_DIR=${PYTRACE_DOCKER_RUN:-/run/kubectl-pytrace/docker}
LIB_DIR=${PYTRACE_DOCKER_LIB:-/var/lib/kubectl-pytrace/containerd}
LOG_DIR=${PYTRACE_DOCKER_LOG:-/var/log/kubectl-pytrace}
WAIT=${PYTRACE_DOCKER_WAIT:-60}
CTRD_SOCK=$RUN_DIR/containerd.sock
CTRD_PID=$RUN_DIR/containerd.pid
DOCKERD_PID=$RUN_DIR/dockerd.pid
DOCKER=/usr/bin/docker

say() { echo "docker.sh: $*" >&2; }
die() { say "error: $*"; exit 1; }

# alive PIDFILE EXE: true when PIDFILE names a live process whose executable is called EXE.
# Checking the executable guards against a PID reused by an unrelated process.
alive() {
  local pidfile=$1 exe=$2 pid target
  [ -s "$pidfile" ] || return 1
  pid=$(cat "$pidfile")
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  target=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
  [ "$(basename "${target% (deleted)}")" = "$exe" ]
}

# lock: serialises concurrent up/down (parallel test sessions start one engine).
lock() {
  exec 9>"$RUN_DIR/lock"
  flock -w 300 9 || die "another docker.sh held $RUN_DIR/lock for 300s"
}

# gone PID: true once PID has exited (no longer exists, or is a zombie).
gone() {
  local state
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 0
  [ -z "$state" ] || [ "$state" = Z ] || [ "$state" = X ]
}

engine_ready() { "$DOCKER" info >/dev/null 2>&1; }

install_engine() {
  local missing=()
  command -v dockerd >/dev/null 2>&1 && [ -x "$DOCKER" ] || missing+=(docker.io)
  command -v containerd >/dev/null 2>&1 || missing+=(containerd)
  command -v runc >/dev/null 2>&1 || missing+=(runc)
  command -v iptables >/dev/null 2>&1 || missing+=(iptables)
  [ "${#missing[@]}" -eq 0 ] && return 0
  say "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# start NAME PIDFILE LOG CMD...: starts CMD in its own session, detached from this shell.
start() {
  local name=$1 pidfile=$2 log=$3
  shift 3
  say "starting $name (log: $log)"
  # 9>&-: the daemon must not inherit the lock, or it would hold it for its whole life.
  setsid "$@" </dev/null >>"$log" 2>&1 9>&- &
  echo $! >"$pidfile"
}

# wait_for WHAT SECONDS CHECK...: polls CHECK every 0.2 s.
wait_for() {
  local what=$1 secs=$2 i
  shift 2
  for ((i = 0; i < secs * 5; i++)); do
    "$@" && return 0
    sleep 0.2
  done
  return 1
}

# stop NAME PIDFILE EXE SECONDS: SIGTERM the recorded PID, SIGKILL it after SECONDS.
stop() {
  local name=$1 pidfile=$2 exe=$3 secs=$4 pid
  if ! alive "$pidfile" "$exe"; then
    rm -f "$pidfile"
    return 0
  fi
  pid=$(cat "$pidfile")
  say "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  if ! wait_for "$name exit" "$secs" gone "$pid"; then
    say "$name (pid $pid) did not exit after ${secs}s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    wait_for "$name exit" 5 gone "$pid" || die "$name (pid $pid) survived SIGKILL"
  fi
  rm -f "$pidfile"
}

cmd_up() {
  [ "$(id -u)" = 0 ] || die "must run as root"
  mkdir -p "$RUN_DIR" "$LIB_DIR" "$LOG_DIR"
  lock

  if engine_ready && ! alive "$DOCKERD_PID" dockerd; then
    say "a Docker engine not started by this script already runs; using it"
    return 0
  fi
  install_engine

  if ! alive "$CTRD_PID" containerd; then
    rm -f "$CTRD_SOCK" "$CTRD_SOCK.ttrpc"
    cat >"$RUN_DIR/containerd.toml" <<EOF
version = 2
root = "$LIB_DIR"
state = "$RUN_DIR/containerd-state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$CTRD_SOCK"
EOF
    start containerd "$CTRD_PID" "$LOG_DIR/containerd.log" \
      containerd --config "$RUN_DIR/containerd.toml"
    wait_for "containerd socket" "$WAIT" test -S "$CTRD_SOCK" ||
      die "containerd did not create $CTRD_SOCK within ${WAIT}s; see $LOG_DIR/containerd.log"
  fi

  if ! alive "$DOCKERD_PID" dockerd; then
    start dockerd "$DOCKERD_PID" "$LOG_DIR/dockerd.log" \
      dockerd --containerd "$CTRD_SOCK"
  fi
  local t0=$SECONDS
  wait_for "docker info" "$WAIT" engine_ready ||
    die "dockerd did not answer within ${WAIT}s; see $LOG_DIR/dockerd.log"
  alive "$DOCKERD_PID" dockerd ||
    die "dockerd exited; see $LOG_DIR/dockerd.log"
  say "ready: $("$DOCKER" version --format 'server {{.Server.Version}}') (containerd pid $(cat "$CTRD_PID"), dockerd pid $(cat "$DOCKERD_PID"), waited $((SECONDS - t0))s)"
}

cmd_down() {
  [ "$(id -u)" = 0 ] || die "must run as root"
  [ -d "$RUN_DIR" ] || return 0
  lock
  # dockerd stops its containers on SIGTERM (up to its 15 s shutdown timeout) before exiting.
  stop dockerd "$DOCKERD_PID" dockerd 60
  stop containerd "$CTRD_PID" containerd 30
}

cmd_status() {
  local rc=0
  if alive "$CTRD_PID" containerd; then
    echo "containerd: running (pid $(cat "$CTRD_PID"), started by docker.sh)"
  else
    echo "containerd: not started by docker.sh"
  fi
  if alive "$DOCKERD_PID" dockerd; then
    echo "dockerd: running (pid $(cat "$DOCKERD_PID"), started by docker.sh)"
  else
    echo "dockerd: not started by docker.sh"
  fi
  if [ -x "$DOCKER" ] && engine_ready; then
    echo "engine: ready ($("$DOCKER" version --format 'server {{.Server.Version}}'))"
  else
    echo "engine: not answering"
    rc=1
  fi
  return "$rc"
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
