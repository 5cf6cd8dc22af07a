#!/usr/bin/env bash
# make vulncheck: govulncheck over every package, against the first
# vulnerability database that can be reached, then the modules that have a
# newer patch release. Needs the network (not part of make test).
#
# The database, in order:
#   1. FLASHSALE_VULNDB when set: a URL (https://...) or a directory of a v1
#      database (file:///path), e.g. a mirror of vuln.go.dev;
#   2. https://vuln.go.dev (VULNDB_URL), the Go team's database, when it
#      answers;
#   3. else one built here from the golang.org/x/vulndb module (the same
#      reports, as OSV files), fetched through the Go module proxy (GOPROXY)
#      like any module: its version says how recent it is.
# With none of them reachable it says so and exits 2: it never passes
# without having checked.
#
# Exit codes: 0 nothing affects the code, 3 govulncheck found a vulnerability
# the code reaches, 2 no database could be reached, 1 anything else.
# GOVULNCHECK_VERSION (default v1.9.0) and VULNDB_VERSION (default latest)
# pin the tools, which are built once into .cache/bin; FLASHSALE_VULNDB_DIR
# (default .cache/vulndb) holds the database built in case 3.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
govulncheck_version=${GOVULNCHECK_VERSION:-v1.9.0}
vulndb_version=${VULNDB_VERSION:-latest}
say() { echo "vulncheck: $*" >&2; }

# tool MODULE/CMD VERSION: the path of that command, built once into .cache/bin.
tool() {
	local bin=.cache/bin/$(basename "$1")@$2
	if [ ! -x "$bin" ]; then
		mkdir -p .cache/bin && GOBIN=$(pwd)/.cache/bin/tmp go install "$1@$2" && mv ".cache/bin/tmp/$(basename "$1")" "$bin" && rmdir .cache/bin/tmp || return 1
	fi
	echo "$bin"
}

reachable() { # URL: does it answer within 10 s?
	command -v curl >/dev/null || return 1
	curl -fsS --max-time 10 -o /dev/null "$1/index/db.json.gz" 2>/dev/null
}

db=${FLASHSALE_VULNDB:-}
if [ -n "$db" ]; then
	say "database: $db (FLASHSALE_VULNDB)"
elif reachable "${VULNDB_URL:=https://vuln.go.dev}"; then
	db=$VULNDB_URL
	say "database: $db"
else
	say "$VULNDB_URL does not answer; building a database from the golang.org/x/vulndb module (Go module proxy)"
	if ! info=$(go mod download -json "golang.org/x/vulndb@$vulndb_version" 2>&1); then
		say "no vulnerability database can be reached from here: neither $VULNDB_URL nor the module"
		say "golang.org/x/vulndb through GOPROXY=$(go env GOPROXY) ($(echo "$info" | grep -m1 -i error))."
		say "Run make vulncheck where one of them is reachable, or set FLASHSALE_VULNDB to a mirror (see docs/security.md)."
		exit 2
	fi
	src=$(echo "$info" | sed -n 's/.*"Dir": "\(.*\)",*/\1/p')
	version=$(echo "$info" | sed -n 's/.*"Version": "\(.*\)",*/\1/p')
	out=${FLASHSALE_VULNDB_DIR:-.cache/vulndb}/$version
	if [ ! -f "$out/index/modules.json" ]; then
		rm -rf "$out" && mkdir -p "$(dirname "$out")"
		if ! indexdb=$(tool golang.org/x/vulndb/cmd/indexdb "$version") || ! "$indexdb" -vulns "$src/data/osv" -out "$out"; then
			say "could not build the database from golang.org/x/vulndb@$version"
			exit 1
		fi
	fi
	db=file://$(cd "$out" && pwd)
	say "database: golang.org/x/vulndb@$version ($(ls "$src/data/osv" | wc -l) reports; the version's date is the reports' date), in $out"
fi

govulncheck=$(tool golang.org/x/vuln/cmd/govulncheck "$govulncheck_version") || { say "could not build govulncheck $govulncheck_version"; exit 1; }
"$govulncheck" -db "$db" ./...
rc=$?
case $rc in
0) say "no known vulnerability reached by the code" ;;
3) say "govulncheck found vulnerabilities the code reaches (above)" ;;
*) say "govulncheck failed (exit $rc)"; exit 1 ;;
esac

# Modules with a newer patch release (same major.minor; pseudo-versions left
# out), among those whose packages the project builds or tests: safe upgrades
# to consider. Needs the module proxy; without it this part is skipped.
used=$(go list -deps -test -f '{{with .Module}}{{.Path}}{{end}}' ./... 2>/dev/null | sort -u)
if updates=$(go list -m -u -f '{{if and .Update (not .Main)}}{{.Path}} {{.Version}} {{.Update.Version}}{{end}}' all 2>/dev/null); then
	patches=$(echo "$updates" | awk -v used="$used" 'BEGIN { n = split(used, u, "\n"); for (i = 1; i <= n; i++) inuse[u[i]] = 1 }
		NF == 3 && ($1 in inuse) && $2 !~ /-[0-9]{14}-/ {
			split($2, a, "."); split($3, b, ".")
			if (a[1] == b[1] && a[2] == b[2]) printf "  %s %s -> %s\n", $1, $2, $3
		}')
	if [ -n "$patches" ]; then
		say "modules the project uses with a newer patch release (go get MODULE@VERSION, then go mod tidy):"
		echo "$patches"
	else
		say "no module the project uses has a newer patch release"
	fi
else
	say "cannot list module updates (the module proxy does not answer): skipped"
fi
exit $rc
