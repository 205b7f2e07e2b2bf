#!/usr/bin/env bash
# The seed's "Installing an operating system on a node", with the crowbar
# CLI: two discovered nodes, a deployment, the install and the callback.
. "$(dirname "$0")/lib.sh"

for n in 78e3be198029.smoke.test:78:e3:be:19:80:29 d52-54-05-3f-00-00.smoke.test:52:54:05:3f:00:00; do
  name="${n%%:*}" mac="${n#*:}"
  "$CROWBAR" nodes create "{\"name\": \"$name\", \"bootenv\": \"sledgehammer\", \"alive\": true, \"hint\": {\"admin_macs\": [\"$mac\"]}}" >/dev/null
  "$CROWBAR" roles bind crowbar-managed-node to "$name" >/dev/null
  "$CROWBAR" nodes commit "$name" >/dev/null
done

out="$("$CROWBAR" nodes list --attributes name)"
expect "names of the nodes" '"name": "d52-54-05-3f-00-00.smoke.test"' "$out"

out="$("$CROWBAR" deployments create '{"name": "test1"}')"
expect "deployment created, proposed" '"state": 0' "$out"

out="$("$CROWBAR" nodes move d52-54-05-3f-00-00.smoke.test to test1)"
expect "node moved" '"bootenv": "sledgehammer"' "$out"

out="$("$CROWBAR" roles bind crowbar-installed-node to d52-54-05-3f-00-00.smoke.test)"
expect "role bound, proposed" '"state": 4' "$out"

out="$("$CROWBAR" nodes set d52-54-05-3f-00-00.smoke.test attrib provisioner-target_os to '{"value": "ubuntu-12.04"}')"
expect "target OS" '"value": "ubuntu-12.04"' "$out"

out="$("$CROWBAR" deployments commit test1)"
expect "deployment committed" '"name": "test1"' "$out"

machine_installs d52-54-05-3f-00-00.smoke.test 52:54:05:3f:00:00

out="$("$CROWBAR" anneal wait --deployment test1 --for 60s 2>/dev/null)"
expect "every node-role of test1 active" '"active": [0-9]+' "$out"
expect "deployment active" '"state_name": "active"' "$("$CROWBAR" deployments show test1)"
expect "installed node boots locally" '"bootenv": "local"' "$("$CROWBAR" nodes show d52-54-05-3f-00-00.smoke.test)"
