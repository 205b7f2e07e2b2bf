#!/usr/bin/env bash
# The seed's "Creating a Node for a system that already has an OS", with
# curl, checking each answer.
. "$(dirname "$0")/lib.sh"

out="$(api POST /api/v2/nodes -d "name=newtest.cr0wbar.com" -d "bootenv=local")"
expect "node created" '"name": ?"newtest.cr0wbar.com"' "$out"
expect "bootenv local" '"bootenv": ?"local"' "$out"

out="$(api PUT /api/v2/nodes/newtest.cr0wbar.com/attribs/hint-admin-v4addr -d '{"value": "192.168.124.99/24"}')"
expect "admin address hint" '"value": ?"192.168.124.99/24"' "$out"

out="$(api POST /api/v2/node_roles -d '{"node": "newtest.cr0wbar.com", "role": "crowbar-managed-node"}')"
expect "role bound, proposed" '"state": ?4' "$out"

out="$(api PUT /api/v2/nodes/newtest.cr0wbar.com/commit)"
expect "node committed and available" '"available": ?true' "$out"

out="$(api PUT /api/v2/nodes/newtest.cr0wbar.com -d 'alive=true')"
expect "node alive" '"alive": ?true' "$out"

for _ in $(seq 1 150); do
  out="$(api GET /api/v2/nodes/newtest.cr0wbar.com/node_roles)"
  if grep -Eq '"state_name": ?"active"' <<<"$out" && ! grep -Eq '"state_name": ?"(proposed|todo|transition|blocked|error)"' <<<"$out"; then
    break
  fi
  sleep 0.2
done
expect "every node-role active" '"state_name": ?"active"' "$out"
if grep -Eq '"state_name": ?"(proposed|todo|transition|blocked|error)"' <<<"$out"; then echo "FAIL: not converged: $out" >&2; exit 1; fi

out="$(api GET /api/v2/nodes/newtest.cr0wbar.com/attribs/network-admin-v4addr)"
expect "admin address from the hint" '"value": ?"192.168.124.99/24"' "$out"
