#!/usr/bin/env bash
# The seed's "Creating a Node for a system that already has an OS", with
# the crowbar CLI, checking each answer.
. "$(dirname "$0")/lib.sh"

out="$("$CROWBAR" nodes create '{"name": "newtest.cr0wbar.com", "bootenv": "local"}')"
expect "node created" '"name": "newtest.cr0wbar.com"' "$out"

out="$("$CROWBAR" nodes set newtest.cr0wbar.com attrib hint-admin-v4addr to '{"value": "192.168.124.99/24"}')"
expect "admin address hint" '"value": "192.168.124.99/24"' "$out"

out="$("$CROWBAR" roles bind crowbar-managed-node to newtest.cr0wbar.com)"
expect "role bound, proposed" '"state_name": "proposed"' "$out"

out="$("$CROWBAR" nodes commit newtest.cr0wbar.com)"
expect "node committed and available" '"available": true' "$out"

out="$("$CROWBAR" nodes update newtest.cr0wbar.com '{"alive": true}')"
expect "node alive" '"alive": true' "$out"

out="$("$CROWBAR" anneal wait --node newtest.cr0wbar.com --for 60s 2>/dev/null)"
expect "every node-role active" '"active": 2' "$out"

out="$("$CROWBAR" nodes get newtest.cr0wbar.com attrib network-admin-v4addr)"
expect "admin address from the hint" '"value": "192.168.124.99/24"' "$out"

out="$("$CROWBAR" nodes list --attributes name)"
expect "listed by name" '"name": "newtest.cr0wbar.com"' "$out"
