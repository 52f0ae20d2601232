#!/usr/bin/env bash
# Per module of Sources/: Swift files, lines, public declarations and `@unchecked Sendable` uses (in
# hand-written files, and in Generated/ — the handle structs codegen emits), and the totals. Public declarations are counted from the source (a line that declares with `public` or
# `open`, attributes allowed before it; `public import` excluded), so that any commit can be measured
# without building it.
#   .ci/module-stats.sh [COMMIT]     (default: the working tree)
set -euo pipefail
cd "$(dirname "$0")/.."
rev=${1:-}
files() {  # the Swift files under $1
  if [ -n "$rev" ]; then git ls-tree -r --name-only "$rev" -- "$1" | grep '\.swift$' || true
  else find "$1" -name '*.swift' | sort; fi
}
content() { if [ -n "$rev" ]; then git show "$rev:$1"; else cat "$1"; fi; }
modules() {
  if [ -n "$rev" ]; then git ls-tree --name-only "$rev" Sources/ | sed 's#Sources/##'
  else ls Sources; fi
}
printf "%-16s %6s %7s %7s %9s %9s\n" module files lines public unchecked generated
tf=0; tl=0; tp=0; tu=0; tg=0
for m in $(modules); do
  list=$(files "Sources/$m")
  [ -n "$list" ] || continue
  all=$(for f in $list; do content "$f"; done)
  n=$(echo "$list" | wc -l)
  l=$(echo "$all" | wc -l)
  p=$(echo "$all" | grep -cE '^\s*(@[A-Za-z_]+(\([^)]*\))?\s+)*(public|open)\s' || true)
  pi=$(echo "$all" | grep -cE '^\s*(@[A-Za-z_]+\s+)*public\s+import\s' || true)
  hand=$(for f in $list; do case $f in */Generated/*) ;; *) content "$f";; esac; done)
  u=$(echo "$hand" | grep -c '@unchecked Sendable' || true)
  g=$(($(echo "$all" | grep -c '@unchecked Sendable' || true) - u))
  printf "%-16s %6d %7d %7d %9d %9d\n" "$m" "$n" "$l" "$((p - pi))" "$u" "$g"
  tf=$((tf + n)); tl=$((tl + l)); tp=$((tp + p - pi)); tu=$((tu + u)); tg=$((tg + g))
done
printf "%-16s %6d %7d %7d %9d %9d\n" total "$tf" "$tl" "$tp" "$tu" "$tg"
