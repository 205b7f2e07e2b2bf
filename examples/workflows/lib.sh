# Shared by the walkthroughs: where the server is, the credentials, and a
# check that stops the script with what it got.
set -euo pipefail
ENDPOINT="${CROWBAR_ENDPOINT:-http://127.0.0.1:3000}"
KEYFILE="${CROWBAR_KEY_FILE:-/etc/crowbar.install.key}"
if [ -z "${CROWBAR_KEY:-}" ]; then
  CROWBAR_KEY="$(cat "$KEYFILE")"
fi
export CROWBAR_ENDPOINT="$ENDPOINT" CROWBAR_KEY
CROWBAR="${CROWBAR:-crowbar}"

# expect WHAT REGEX TEXT: TEXT must match REGEX (grep -E), or the script
# stops and shows it.
expect() {
  # A here-string, not a pipe: with pipefail, grep -q closing the pipe
  # early would fail the writer and turn a match into a miss.
  if ! grep -Eq -- "$2" <<<"$3"; then
    printf 'FAIL: %s: expected /%s/ in:\n%s\n' "$1" "$2" "$3" >&2
    exit 1
  fi
  echo "ok: $1"
}

# api METHOD PATH [curl args…]: the seed's curl, with digest credentials.
api() {
  local method=$1 path=$2
  shift 2
  curl -sS --fail-with-body --digest -u "$CROWBAR_KEY" -X "$method" -H "Content-Type:application/json" "$@" --url "$ENDPOINT$path"
}

# machine_installs NODE MAC: plays the machine being installed — it fetches
# its iPXE script by MAC (no credentials), the answer file it names, and
# calls back with its per-node token.
machine_installs() {
  local node=$1 mac=$2 script answer token id
  for _ in $(seq 1 100); do
    script="$(curl -sS "$ENDPOINT/provisioner/v2/nodes/$mac/ipxe")"
    case "$script" in *"/preseed?token="*|*"/kickstart?token="*) break ;; esac
    sleep 0.2
  done
  expect "$node boots the installer" '^#!ipxe' "$script"
  answer="$(printf '%s' "$script" | grep -Eo "$ENDPOINT/provisioner/v2/nodes/[0-9]+/(preseed|kickstart)\?token=[0-9a-f]+")"
  token="${answer##*token=}"
  id="$(printf '%s' "$answer" | sed -E 's|.*/nodes/([0-9]+)/.*|\1|')"
  expect "$node's answer file" "netcfg/hostname string $node|--hostname=$node" "$(curl -sS "$answer")"
  expect "$node calls back" '"bootenv": ?"local"' \
    "$(curl -sS --fail-with-body -X PUT -H "X-Provisioner-Token: $token" "$ENDPOINT/provisioner/v2/nodes/$id/installed")"
}
