#!/usr/bin/env bash
# Regenerates the tables and heatmaps of results/mini-paper.md from a finished mini-paper sweep:
#
#   cargo run --release -- run experiments/mini-paper.toml      # ~40 min on 2 cores, cached afterwards
#   scripts/mini-paper-report.sh [STORE]                        # default store: results
#
# Rewrites the part of results/mini-paper.md between the `tables:begin` and `tables:end` markers
# (the main table, mean ± sample std over the 3 seeds, and one table per benchmark family) and the
# heatmaps results/mini-paper-<table>.png; the prose around them is written by hand and must be
# re-read against the new numbers.
set -euo pipefail
cd "$(dirname "$0")/.."
store=${1:-results}
mlvf=${MLVF:-target/release/mlvf}
doc=results/mini-paper.md
tables=$(mktemp)
trap 'rm -f "$tables"' EXIT

for t in main general ocr cv-centric hallucination; do
  {
    echo "### Table \`$t\`"
    echo
    "$mlvf" results experiments/mini-paper.toml --store "$store" --table "$t" --format md \
      --plot "results/mini-paper-$t.png"
    echo
    echo "![$t](mini-paper-$t.png)"
    echo
  } >>"$tables"
done

awk -v tables="$tables" '
  /<!-- tables:begin -->/ { print; while ((getline line < tables) > 0) print line; skip = 1; next }
  /<!-- tables:end -->/   { skip = 0 }
  !skip                   { print }
' "$doc" >"$doc.tmp"
mv "$doc.tmp" "$doc"
echo "updated $doc and results/mini-paper-*.png"
