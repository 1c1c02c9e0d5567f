# Shared helpers for the peer scripts; sourced, never run.
#
# Every peer keeps what it downloads or builds in a cache OUTSIDE the clone, so that
# CI's fresh clone on the same machine reuses what an earlier run fetched, and keeps
# what a running instance needs (data, logs, PIDs) in a run folder that `start`
# makes fresh each time.

set -euo pipefail

ROCKETRY_CACHE="${ROCKETRY_CACHE:-$HOME/.cache/rocketry}"
PEERS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$PEERS_DIR/../.." && pwd)"
# Where cargo puts what it builds (CI keeps it in the cache: scripts/test).
TARGET_DIR="${CARGO_TARGET_DIR:-$REPO_DIR/target}"
mkdir -p "$ROCKETRY_CACHE"

log() { printf '[%s] %s\n' "${PEER_NAME:-peers}" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# A key that changes whenever one of the given files changes, so an install is
# redone exactly when its inputs move and is a no-op otherwise.
content_key() { cat "$@" | sha256sum | cut -c1-16; }

# The run folder of a peer holds its PID files and the path of its data folder; it is made
# here, so that a first `start` on a fresh cache has somewhere to write them.
run_dir() { mkdir -p "$ROCKETRY_CACHE/run/$1" && echo "$ROCKETRY_CACHE/run/$1"; }

# Start a command in the background in its own process group, with its output in
# LOGFILE, and record its PID in PIDFILE.
spawn() {
  local pidfile="$1" logfile="$2"; shift 2
  setsid "$@" >"$logfile" 2>&1 < /dev/null &
  echo $! >"$pidfile"
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# Stop only the process (and its group) recorded in PIDFILE; TERM first, then KILL.
stop_pid() {
  local pidfile="$1" pid i
  [ -f "$pidfile" ] || return 0
  pid="$(cat "$pidfile")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

# Wait until LOGFILE contains PATTERN, or fail after TIMEOUT seconds (or when PIDFILE's process dies).
wait_for_log() {
  local logfile="$1" pattern="$2" timeout="$3" pidfile="$4" start=$SECONDS
  until grep -q -- "$pattern" "$logfile" 2>/dev/null; do
    pid_alive "$pidfile" || { tail -n 30 "$logfile" >&2 || true; die "process of $pidfile exited before '$pattern'"; }
    (( SECONDS - start < timeout )) || { tail -n 30 "$logfile" >&2 || true; die "timed out after ${timeout}s waiting for '$pattern' in $logfile"; }
    sleep 0.2
  done
}

# Installs the Debian packages among PACKAGES that are missing (the test ground runs as root).
debian_packages() {
  local missing=() p
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || die "${missing[*]} (Debian packages) are needed and apt-get is missing"
  log "installing ${missing[*]} from Debian"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >"$ROCKETRY_CACHE/apt.log" 2>&1 \
    || { tail -n 20 "$ROCKETRY_CACHE/apt.log" >&2; die "apt-get install failed"; }
}

# buildah with its storage in the cache, so base and built images are kept between runs.
buildah_() {
  buildah --root "$ROCKETRY_CACHE/buildah/storage" --runroot "$ROCKETRY_CACHE/run/buildah" --storage-driver vfs "$@"
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Copy the dependencies of a pom-only Maven project into DEST/lib, once per pom content.
maven_lib() {
  local pom="$1" dest="$2" key
  key="$(content_key "$pom")"
  if [ -f "$dest/.installed-$key" ]; then return 0; fi
  log "fetching $(basename "$(dirname "$pom")") from Maven Central into $dest/lib"
  rm -rf "$dest"; mkdir -p "$dest"
  mvn -B -q -f "$pom" dependency:copy-dependencies -DoutputDirectory="$dest/lib" >"$dest/maven.log" 2>&1 \
    || { tail -n 30 "$dest/maven.log" >&2; die "maven failed for $pom"; }
  touch "$dest/.installed-$key"
}

peer_main() {
  local cmd="${1:-}"
  case "$cmd" in
    install|start|stop|status) shift; "peer_$cmd" "$@" ;;
    *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
  esac
}
