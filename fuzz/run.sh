#!/usr/bin/env bash
# Builds every fuzz target and runs each for SECONDS (default 15) from its committed corpus;
# fails if any target finds a crash (a panic, a failed invariant, a timeout or running out of
# memory). Usage: fuzz/run.sh [SECONDS] [TARGET...]   (no targets: all of them)
#
# The build is what `cargo fuzz build --sanitizer none` does, by hand, so that it needs only
# the stable toolchain and no extra tool: libFuzzer from the libfuzzer-sys crate, coverage
# instrumentation by LLVM's sancov pass (stable `-C passes`/`-C llvm-args`), release code with
# debug assertions and overflow checks on. No AddressSanitizer (that needs nightly's
# `-Zsanitizer`): the code under test forbids `unsafe`, so what the fuzzer looks for is panics,
# overflows and broken invariants. The layout is cargo-fuzz's, so `cargo fuzz run TARGET -s none`
# should run the same targets where cargo-fuzz is installed.
#
# New inputs the fuzzer finds go to a scratch directory, not into fuzz/corpus/; a crash is
# saved under fuzz/artifacts/TARGET/. FUZZ_TARGET_DIR moves the build (default fuzz/target);
# FUZZ_PROFILE=dev builds unoptimised (a third of the cold build time, fewer executions a
# second: what CI uses for its short runs), the default is release.
set -euo pipefail
cd "$(dirname "$0")"

seconds=${1:-15}
shift || true
if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^sekisho-fuzz$')
fi

host=$(rustc -vV | sed -n 's/^host: //p')
target_dir=${FUZZ_TARGET_DIR:-target}
profile=${FUZZ_PROFILE:-release}
out_dir=$([ "$profile" = dev ] && echo debug || echo "$profile")
# Only the targets' code is instrumented: `--target` keeps RUSTFLAGS off build scripts and
# proc macros, which run on the host.
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
bins=()
for t in "${targets[@]}"; do bins+=(--bin "$t"); done
cargo build --profile "$profile" --locked --target "$host" --target-dir "$target_dir" "${bins[@]}"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
failed=()
for t in "${targets[@]}"; do
  mkdir -p "artifacts/$t" "$scratch/$t"
  echo "== $t: ${seconds}s"
  # -rss_limit_mb and -timeout: a run that eats memory or hangs on one input is a finding too.
  if ! "$target_dir/$host/$out_dir/$t" "$scratch/$t" "corpus/$t" \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=16384 \
      -artifact_prefix="artifacts/$t/" -print_final_stats=1 2>"$scratch/$t.log"; then
    failed+=("$t")
    tail -n 60 "$scratch/$t.log"
  fi
  grep -E '^(stat::number_of_executed_units|stat::new_units_added)' "$scratch/$t.log" | tr '\n' ' '
  echo
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: crashes in ${failed[*]} (inputs under fuzz/artifacts/)"
  exit 1
fi
echo "fuzz: ${#targets[@]} targets, ${seconds}s each, no crash"
