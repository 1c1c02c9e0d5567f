# The real node of the Kubernetes test ground; sourced by scripts/peers/kubernetes, never run.
#
# One node, `node-0`: containerd (with its own root, state and socket, no system service) running
# pods with runc; Debian's CNI bridge plugin on a bridge of its own; the kubelet; kube-scheduler;
# kube-proxy in iptables mode; CoreDNS answering cluster.local on the bridge's address. Images
# come from no registry: the pause image is built here, and scripts/image imports the rest.
#
# What it changes on the host, and how `node_stop` undoes it (everything runs as root, so it
# touches only what it made, found by name or recorded at start):
#   - the bridge $NODE_BRIDGE and its address: deleted;
#   - pods' network namespaces under /var/run/netns (the ones that appeared after start): unmounted
#     and removed, which also removes their veths;
#   - kube-proxy's KUBE-* iptables chains: `kube-proxy --cleanup`;
#   - the kubelet's kernel tunables (vm.overcommit_memory, kernel.panic, ...): put back to the
#     values recorded at start;
#   - the kubelet's symlinks in /var/log/containers: the ones pointing into the run folder;
#   - mounts under the run folder (volumes, tokens, containerd's rootfs): unmounted;
#   - processes: pods first (through the kubelet, so CNI tears their networks down), then the
#     kubelet, kube-proxy, CoreDNS, the scheduler and containerd with its shims.

NODE_NAME=node-0
NODE_BRIDGE=rocketry0
# The bridge's address is the node's: the kubelet, CoreDNS and (for pods) the apiserver listen on it.
NODE_IP=10.244.0.1
POD_SUBNET=10.244.0.0/24
KUBELET_PORT=10250
SCHEDULER_PORT="${KUBE_SCHEDULER_PORT:-17259}"
PROXY_METRICS_PORT="${KUBE_PROXY_METRICS_PORT:-17249}"
PROXY_HEALTH_PORT="${KUBE_PROXY_HEALTH_PORT:-17256}"
# Pre-made PersistentVolumes, one per claim a test run may make; hostPath has no provisioner.
NODE_VOLUMES="${KUBE_NODE_VOLUMES:-16}"
# The user the project's images run as; hostPath volumes are not given to a pod's fsGroup.
VOLUME_OWNER=10001
PAUSE_IMAGE=localhost/pause:3.10
# The kubelet's kernel tunables (pkg/kubelet/cm setupKernelTunables), put back at stop.
KUBELET_SYSCTLS=(vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops kernel/keys/root_maxkeys kernel/keys/root_maxbytes)

node_packages() {
  debian_packages containerd runc containernetworking-plugins iptables conntrack buildah
}

# The sandbox ("pause") image: no registry can serve one, so a static program that sleeps until
# it is told to stop, committed from scratch. Kept as an OCI archive keyed by its source.
pause_archive() {
  local src key out
  src='#include <signal.h>
#include <unistd.h>
static void done(int sig) { (void)sig; _exit(0); }
int main(void) { signal(SIGTERM, done); signal(SIGINT, done); for (;;) pause(); }'
  key="$(printf '%s' "$src" | sha256sum | cut -c1-12)"
  out="$ROCKETRY_CACHE/images/pause-$key.tar"
  if [ ! -f "$out" ]; then
    log "building $PAUSE_IMAGE"
    mkdir -p "$ROCKETRY_CACHE/images"
    local work; work="$(mktemp -d)"
    printf '%s\n' "$src" >"$work/pause.c"
    gcc -static -O2 -o "$work/pause" "$work/pause.c" || die "gcc -static failed (libc6-dev?)"
    local ctr; ctr="$(buildah_ from scratch)"
    buildah_ copy "$ctr" "$work/pause" /pause >/dev/null
    buildah_ config --entrypoint '["/pause"]' --user 65535:65535 "$ctr"
    buildah_ commit -q "$ctr" "$PAUSE_IMAGE" >/dev/null
    buildah_ rm "$ctr" >/dev/null
    rm -f "$out.part"
    buildah_ push -q "$PAUSE_IMAGE" "oci-archive:$out.part:$PAUSE_IMAGE"
    mv "$out.part" "$out"
    rm -rf "$work"
  fi
  echo "$out"
}

node_write_configs() {
  local data="$1" node="$1/node"
  mkdir -p "$node"/{containerd,cni,cni-ipam,kubelet,kubelet-certs,pod-logs,coredns,volumes}
  cat >"$node/containerd/config.toml" <<TOML
version = 2
root = "$node/containerd/root"
state = "$node/containerd/state"
[grpc]
  address = "$node/containerd/containerd.sock"
[ttrpc]
  address = "$node/containerd/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$node/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  stream_server_address = "127.0.0.1"
  # Without it runc fails with "can't get final child's PID from pipe": raising a container's
  # oom_score_adj needs CAP_SYS_RESOURCE, which this machine does not give.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$node/cni"
TOML
  cat >"$node/cni/10-rocketry.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "rocketry-testground",
  "plugins": [
    {"type": "bridge", "bridge": "$NODE_BRIDGE", "isGateway": true, "isDefaultGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": "$node/cni-ipam", "ranges": [[{"subnet": "$POD_SUBNET", "gateway": "$NODE_IP"}]]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
JSON
  cat >"$node/kubelet/config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This machine has cgroup v1 (hybrid); kubelet 1.35 and newer refuse it unless told otherwise.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
localStorageCapacityIsolation: false
containerRuntimeEndpoint: unix://$node/containerd/containerd.sock
address: $NODE_IP
port: $KUBELET_PORT
healthzBindAddress: 127.0.0.1
readOnlyPort: 0
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $data/pki/ca.crt}
authorization: {mode: AlwaysAllow}
tlsCertFile: $data/pki/kubelet.crt
tlsPrivateKeyFile: $data/pki/kubelet.key
clusterDNS: [$NODE_IP]
clusterDomain: cluster.local
podLogsDir: $node/pod-logs
# Tests that mark pods Ready by hand (no container runs) must keep their pods off the node;
# tests that run real pods tolerate this.
registerWithTaints:
- {key: rocketry.dev/real-node, value: "true", effect: NoSchedule}
# No registry can give an image back once garbage-collected.
imageGCHighThresholdPercent: 100
YAML
  cat >"$node/coredns/Corefile" <<COREFILE
.:53 {
    bind $NODE_IP
    errors
    kubernetes cluster.local in-addr.arpa {
        kubeconfig $RUN/kubeconfig
        pods insecure
    }
}
COREFILE
}

# The bridge exists before the apiserver starts, which advertises the bridge's address to pods.
node_bridge_up() {
  if ! ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then
    ip link add "$NODE_BRIDGE" type bridge || die "cannot create bridge $NODE_BRIDGE"
  fi
  ip addr replace "$NODE_IP/24" dev "$NODE_BRIDGE"
  ip link set "$NODE_BRIDGE" up
}

# Answers when CoreDNS resolves the apiserver's Service name. The host's resolver never asks
# CoreDNS, so the query is made by hand.
dns_answers() {
  python3 - "$NODE_IP" <<'PY'
import socket, struct, sys
name = "kubernetes.default.svc.cluster.local"
query = struct.pack(">HHHHHH", 0x5243, 0x0100, 1, 0, 0, 0)
query += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
query += struct.pack(">HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1)
try:
    s.sendto(query, (sys.argv[1], 53))
    reply = s.recv(512)
except OSError:
    sys.exit(1)
# An answer with the matching id, no error and at least one answer record.
sys.exit(0 if reply[:2] == query[:2] and reply[3] & 0x0F == 0 and struct.unpack(">H", reply[6:8])[0] > 0 else 1)
PY
}

node_ready() {
  "$BIN/kubectl" --kubeconfig "$RUN/kubeconfig" get node "$NODE_NAME" \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null | grep -qx True
}

# Local PersistentVolumes: the StorageClass `local` (the default) binds a claim to one of them
# when its pod is scheduled; each directory is owned by the images' user.
node_volumes() {
  local node="$1/node" i manifest=""
  manifest="apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: local
  annotations: {storageclass.kubernetes.io/is-default-class: \"true\"}
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
reclaimPolicy: Retain
"
  for i in $(seq 0 $((NODE_VOLUMES - 1))); do
    install -d -o "$VOLUME_OWNER" -g "$VOLUME_OWNER" -m 0750 "$node/volumes/pv-$i"
    manifest+="---
apiVersion: v1
kind: PersistentVolume
metadata: {name: testground-pv-$i}
spec:
  capacity: {storage: 100Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: local
  hostPath: {path: $node/volumes/pv-$i, type: Directory}
"
  done
  printf '%s' "$manifest" | "$BIN/kubectl" --kubeconfig "$RUN/kubeconfig" apply -f - >/dev/null \
    || die "cannot create the PersistentVolumes"
}

node_start() {
  local data="$1" node="$1/node" start=$SECONDS s
  node_write_configs "$data"
  ls /var/run/netns 2>/dev/null >"$RUN/netns-before" || true
  for s in "${KUBELET_SYSCTLS[@]}"; do echo "$s $(cat "/proc/sys/$s")"; done >"$RUN/sysctls-before"

  spawn "$RUN/containerd.pid" "$RUN/containerd.log" containerd --config "$node/containerd/config.toml"
  until [ -S "$node/containerd/containerd.sock" ] && ctr --address "$node/containerd/containerd.sock" version >/dev/null 2>&1; do
    pid_alive "$RUN/containerd.pid" || { tail -n 30 "$RUN/containerd.log" >&2; die "containerd exited"; }
    (( SECONDS - start < 30 )) || die "containerd not answering after 30 s"
    sleep 0.2
  done
  ctr --address "$node/containerd/containerd.sock" -n k8s.io images import "$(pause_archive)" >/dev/null \
    || die "cannot import the pause image"

  spawn "$RUN/kubelet.pid" "$RUN/kubelet.log" "$BIN/kubelet" --config "$node/kubelet/config.yaml" \
    --kubeconfig "$RUN/kubeconfig" --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" \
    --root-dir "$node/kubelet" --cert-dir "$node/kubelet-certs"
  spawn "$RUN/scheduler.pid" "$RUN/scheduler.log" "$BIN/kube-scheduler" --kubeconfig "$RUN/kubeconfig" \
    --authentication-kubeconfig "$RUN/kubeconfig" --authorization-kubeconfig "$RUN/kubeconfig" \
    --leader-elect=false --bind-address 127.0.0.1 --secure-port "$SCHEDULER_PORT"
  # No sysctl changes: conntrack limits are left as they are, and localhost NodePorts (which
  # need route_localnet) are off.
  spawn "$RUN/proxy.pid" "$RUN/proxy.log" "$BIN/kube-proxy" --kubeconfig "$RUN/kubeconfig" \
    --hostname-override "$NODE_NAME" --proxy-mode iptables --cluster-cidr 10.244.0.0/16 \
    --conntrack-max-per-core 0 --conntrack-tcp-timeout-established 0 --conntrack-tcp-timeout-close-wait 0 \
    --iptables-localhost-nodeports=false \
    --metrics-bind-address "127.0.0.1:$PROXY_METRICS_PORT" --healthz-bind-address "127.0.0.1:$PROXY_HEALTH_PORT"
  spawn "$RUN/coredns.pid" "$RUN/coredns.log" "$BIN/coredns-$COREDNS_VERSION" -conf "$node/coredns/Corefile"

  until node_ready; do
    pid_alive "$RUN/kubelet.pid" || { tail -n 30 "$RUN/kubelet.log" >&2; die "the kubelet exited"; }
    (( SECONDS - start < 120 )) || { tail -n 30 "$RUN/kubelet.log" >&2; die "node $NODE_NAME not Ready after 120 s"; }
    sleep 0.5
  done
  until dns_answers; do
    pid_alive "$RUN/coredns.pid" || { tail -n 30 "$RUN/coredns.log" >&2; die "CoreDNS exited"; }
    (( SECONDS - start < 120 )) || { tail -n 30 "$RUN/coredns.log" >&2; die "CoreDNS not answering after 120 s"; }
    sleep 0.5
  done
  pid_alive "$RUN/scheduler.pid" || { tail -n 30 "$RUN/scheduler.log" >&2; die "kube-scheduler exited"; }
  pid_alive "$RUN/proxy.pid" || { tail -n 30 "$RUN/proxy.log" >&2; die "kube-proxy exited"; }
  node_volumes "$data"
  log "node $NODE_NAME Ready and DNS answering in $((SECONDS - start)) s"
}

# Deletes every pod through the apiserver and waits until the kubelet has stopped them all, so
# that containerd tears each pod's network down through CNI. The controller manager is already
# stopped, so nothing recreates them.
node_drain() {
  pid_alive "$RUN/kubelet.pid" && pid_alive "$RUN/apiserver.pid" || return 0
  local sock="$1/node/containerd/containerd.sock" start=$SECONDS
  "$BIN/kubectl" --kubeconfig "$RUN/kubeconfig" delete pods --all --all-namespaces --wait=false \
    --grace-period=5 >/dev/null 2>&1 || true
  while [ -n "$(ctr --address "$sock" -n k8s.io tasks ls -q 2>/dev/null)" ]; do
    (( SECONDS - start < 60 )) || { log "pods still running after 60 s; stopping them by force"; break; }
    sleep 0.5
  done
  log "pods stopped in $((SECONDS - start)) s"
}

node_stop() {
  local data="${1:-}" node s name
  if [ -n "$data" ]; then node="$data/node"; node_drain "$data"; fi
  stop_pid "$RUN/kubelet.pid"
  stop_pid "$RUN/scheduler.pid"
  stop_pid "$RUN/coredns.pid"
  if [ -f "$RUN/proxy.pid" ]; then
    stop_pid "$RUN/proxy.pid"
    "$BIN/kube-proxy" --cleanup --proxy-mode iptables >/dev/null 2>&1 || true
  fi
  node_iptables_cleanup
  if [ -n "$data" ] && [ -S "$node/containerd/containerd.sock" ]; then
    local sock="$node/containerd/containerd.sock" t
    for t in $(ctr --address "$sock" -n k8s.io tasks ls -q 2>/dev/null); do
      ctr --address "$sock" -n k8s.io tasks kill -s KILL "$t" >/dev/null 2>&1 || true
    done
  fi
  stop_pid "$RUN/containerd.pid"
  # Shims outlive containerd by design; ours name our socket on their command line.
  if [ -n "$data" ]; then pkill -KILL -f -- "-address $node/containerd/containerd.sock" 2>/dev/null || true; fi
  # Network namespaces made while the node ran (CNI's, under /var/run/netns).
  if [ -f "$RUN/netns-before" ]; then
    for name in $(ls /var/run/netns 2>/dev/null); do
      grep -qx -- "$name" "$RUN/netns-before" && continue
      umount "/var/run/netns/$name" 2>/dev/null || true
      rm -f "/var/run/netns/$name"
    done
    rm -f "$RUN/netns-before"
  fi
  if [ -n "$data" ]; then
    # Deepest first, so nested mounts go before their parents.
    awk -v dir="$node/" 'index($2, dir) == 1 {print $2}' /proc/mounts | sort -r | while read -r s; do
      umount "$s" 2>/dev/null || umount -l "$s" 2>/dev/null || true
    done
    find /var/log/containers -maxdepth 1 -type l -lname "$node/*" -delete 2>/dev/null || true
  fi
  if [ -f "$RUN/sysctls-before" ]; then
    while read -r s value; do
      [ "$(cat "/proc/sys/$s")" = "$value" ] || echo "$value" >"/proc/sys/$s" 2>/dev/null || true
    done <"$RUN/sysctls-before"
    rm -f "$RUN/sysctls-before"
  fi
  if ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then ip link delete "$NODE_BRIDGE"; fi
}

# The kubelet's own chains (KUBE-FIREWALL, KUBE-KUBELET-CANARY, KUBE-IPTABLES-HINT), which
# `kube-proxy --cleanup` leaves, and anything else named KUBE-*: rules that jump to them first,
# then the chains themselves.
node_iptables_cleanup() {
  local tool table rule chain
  for tool in iptables ip6tables; do
    command -v "$tool" >/dev/null || continue
    for table in filter nat mangle raw; do
      "$tool" -t "$table" -S 2>/dev/null | grep -E '^-A [^ ]+ .*-j KUBE-' | while read -r rule; do
        # shellcheck disable=SC2086 # the saved rule is split back into its words on purpose
        eval "$tool -t $table ${rule/-A/-D}" 2>/dev/null || true
      done || true
      for chain in $("$tool" -t "$table" -S 2>/dev/null | sed -n 's/^-N \(KUBE-[^ ]*\)$/\1/p'); do
        "$tool" -t "$table" -F "$chain" 2>/dev/null || true
      done
      for chain in $("$tool" -t "$table" -S 2>/dev/null | sed -n 's/^-N \(KUBE-[^ ]*\)$/\1/p'); do
        "$tool" -t "$table" -X "$chain" 2>/dev/null || true
      done
    done
  done
}

node_status() {
  local piece ok=0
  for piece in containerd kubelet scheduler proxy coredns; do
    if pid_alive "$RUN/$piece.pid"; then echo "  $piece: running"; else echo "  $piece: stopped"; ok=1; fi
  done
  if node_ready; then echo "  node $NODE_NAME: Ready"; else echo "  node $NODE_NAME: not Ready"; ok=1; fi
  if dns_answers; then echo "  CoreDNS: answering on $NODE_IP:53"; else echo "  CoreDNS: not answering"; ok=1; fi
  return $ok
}
