#!/usr/bin/env bash
# Fuzz smoke test for CI (`.ci/run` calls it): replays every stored input
# (`cargo test`, stable), then builds and runs each cargo-fuzz target for
# FUZZ_SECONDS seconds (default 60) on stable Rust (`--sanitizer none`),
# starting from its seed corpus. Any finding (panic, broken budget, timeout,
# out of memory) fails the script; the input is left in
# fuzz/artifacts/<target>/.
#
#   bash fuzz/smoke.sh                 # 60 s per target
#   FUZZ_SECONDS=600 bash fuzz/smoke.sh
set -euo pipefail

cd "$(dirname "$0")"
seconds="${FUZZ_SECONDS:-60}"
targets=(segment_decode manifest_decode index_checkpoint_decode ops_model crash_recovery corrupt_open)

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
cargo fuzz --version

echo "==> replay: cargo test (corpus, regressions, artifacts)"
cargo test

echo "==> build: cargo fuzz build --sanitizer none"
cargo fuzz build --sanitizer none

# New corpus entries go to a scratch directory, so the tracked seed corpus
# is only read.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for target in "${targets[@]}"; do
    echo "==> fuzz: ${target} for ${seconds}s"
    mkdir -p "$work/$target"
    cargo fuzz run --sanitizer none "$target" "$work/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -timeout=30 -rss_limit_mb=2048 -print_final_stats=1
done
echo "==> fuzz smoke: all targets ran clean"
