#!/usr/bin/env bash
# docs-check: runs the shell blocks of the documentation that are marked
# runnable (a fence opened with ```sh runnable) against what `make run`
# runs: bin/caddy with Caddyfile.example, here from a fresh directory so
# that ./data starts empty. The blocks of one file run in order in one
# bash (set -euo pipefail), README.md first, then docs/ in path order; a
# command that fails fails the check, naming the file and line of its
# block.
#
# usage: tools/docs-check.sh [path/to/bin/caddy]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$(realpath "${1:-$root/bin/caddy}")
for port in 2019 8443 8001 9080; do
	if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
		echo "docs-check: port $port is in use; stop what listens there (make run?) first" >&2
		exit 1
	fi
done
work=$(mktemp -d)
pid=""
cleanup() {
	if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
	rm -rf "$work"
}
trap cleanup EXIT
cp "$root/Caddyfile.example" "$work/"
(cd "$work" && exec "$bin" run --config Caddyfile.example --adapter caddyfile >caddy.log 2>&1) &
pid=$!
ready=""
for _ in $(seq 1 300); do
	if curl -sf -o /dev/null localhost:2019/gatehouse/roles && curl -sk -o /dev/null https://localhost:8443/healthz; then
		ready=1
		break
	fi
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.2
done
if [ -z "$ready" ]; then
	echo "docs-check: Caddy did not come up; its log:" >&2
	cat "$work/caddy.log" >&2
	exit 1
fi

# script FILE prints FILE's runnable blocks as one bash script; before each
# block it records the block's place for the error message.
script() {
	awk -v file="$1" '
		/^```sh runnable[ \t]*$/ { inside = 1; printf "__block=%s:%d\n", file, NR + 1; next }
		inside && /^```[ \t]*$/ { inside = 0; next }
		inside { print }
	' "$root/$1"
}
status=0
blocks=0
for file in README.md $(cd "$root" && find docs -name '*.md' | sort); do
	body=$(script "$file")
	[ -n "$body" ] || continue
	n=$(grep -c '^__block=' <<<"$body")
	blocks=$((blocks + n))
	printf '%s\n' "set -euo pipefail" "__block=$file" \
		'trap '\''echo "docs-check: a command of the block at $__block failed" >&2'\'' ERR' \
		"$body" >"$work/check.sh"
	echo "docs-check: $file ($n blocks)"
	if ! (cd "$work" && bash "$work/check.sh"); then
		status=1
	fi
done
if [ "$blocks" -eq 0 ]; then
	echo "docs-check: no runnable blocks found" >&2
	exit 1
fi
if [ "$status" -ne 0 ]; then
	echo "docs-check: failed; the last lines of Caddy's log:" >&2
	tail -n 20 "$work/caddy.log" >&2
fi
exit "$status"
