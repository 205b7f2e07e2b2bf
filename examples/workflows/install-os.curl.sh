#!/usr/bin/env bash
# The seed's "Installing an operating system on a node", with curl: two
# discovered nodes, a deployment, the install and the machine's callback.
. "$(dirname "$0")/lib.sh"

# Discovery (what sledgehammer does for a new machine).
for n in 78e3be198029.smoke.test:78:e3:be:19:80:29 d52-54-05-3f-00-00.smoke.test:52:54:05:3f:00:00; do
  name="${n%%:*}" mac="${n#*:}"
  api POST /api/v2/nodes -d "{\"name\": \"$name\", \"bootenv\": \"sledgehammer\", \"alive\": true, \"hint\": {\"admin_macs\": [\"$mac\"]}}" >/dev/null
  api POST /api/v2/node_roles -d "{\"node\": \"$name\", \"role\": \"crowbar-managed-node\"}" >/dev/null
  api PUT "/api/v2/nodes/$name/commit" >/dev/null
done

out="$(api GET /api/v2/nodes -H 'x-return-attributes:["name"]')"
expect "names of the nodes" '"name": ?"d52-54-05-3f-00-00.smoke.test"' "$out"

out="$(api POST /api/v2/deployments -d '{"name": "test1"}')"
expect "deployment created, proposed" '"state": ?0' "$out"

out="$(api PUT /api/v2/nodes/d52-54-05-3f-00-00.smoke.test -d '{"deployment": "test1"}')"
expect "node moved" '"hint": ?\{"admin_macs": ?\["52:54:05:3f:00:00"\]\}' "$out"

out="$(api POST /api/v2/node_roles -d '{"node": "d52-54-05-3f-00-00.smoke.test", "role": "crowbar-installed-node"}')"
expect "role bound, proposed" '"state": ?4' "$out"

out="$(api PUT /api/v2/nodes/d52-54-05-3f-00-00.smoke.test/attribs/provisioner-target_os -d '{"value": "ubuntu-12.04"}')"
expect "target OS" '"value": ?"ubuntu-12.04"' "$out"
expect "target OS schema" '"type": ?"str"' "$out"

out="$(api PUT /api/v2/deployments/test1/commit)"
expect "deployment committed" '"name": ?"test1"' "$out"

machine_installs d52-54-05-3f-00-00.smoke.test 52:54:05:3f:00:00

for _ in $(seq 1 150); do
  out="$(api GET /api/v2/deployments/test1)"
  grep -Eq '"state": ?2' <<<"$out" && break
  sleep 0.2
done
expect "deployment active" '"state": ?2' "$out"
expect "installed node boots locally" '"bootenv": ?"local"' "$(api GET /api/v2/nodes/d52-54-05-3f-00-00.smoke.test)"
