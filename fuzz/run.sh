#!/usr/bin/env bash
# fuzz/run.sh TARGET SECONDS
#
# Builds one fuzz target with AFL++ instrumentation (cargo-afl, stable Rust, release)
# and fuzzes it for SECONDS, starting from fuzz/seeds/TARGET/, the saved
# regressions and the corpus earlier runs grew (fuzz/corpus/TARGET/, git-ignored).
# At the end every crash and hang input is copied to fuzz/regressions/TARGET/
# (git-tracked; tests/fuzz_regressions.rs replays them), the new queue entries go to
# the corpus, and the run's execs/s, total execs and crash count are printed.
# AFL++'s own output is in fuzz/out/TARGET/ and fuzz/out/TARGET.log (git-ignored).
set -euo pipefail

usage() {
    echo "usage: fuzz/run.sh TARGET SECONDS   (targets: $(cd "$(dirname "$0")/fuzz_targets" && ls | sed 's/\.rs$//' | tr '\n' ' '))" >&2
    exit 2
}
[ $# -eq 2 ] || usage
target=$1
seconds=$2
case "$seconds" in '' | *[!0-9]*) usage ;; esac
[ "$seconds" -gt 0 ] || usage

fuzz_dir=$(cd "$(dirname "$0")" && pwd)
cd "$fuzz_dir"
[ -f "fuzz_targets/$target.rs" ] || usage
if ! command -v cargo-afl >/dev/null; then
    echo "cargo-afl is not installed; see fuzz/README.md (cargo install cargo-afl)" >&2
    exit 2
fi

cargo afl build --release --bin "$target"

mkdir -p "corpus/$target" out "regressions/$target"
input=$(mktemp -d)
trap 'rm -rf "$input"' EXIT
# One file per distinct content: seeds, saved regressions, and the grown corpus.
for f in "seeds/$target"/* "regressions/$target"/* "corpus/$target"/*; do
    [ -f "$f" ] && [ -s "$f" ] || continue
    cp "$f" "$input/$(sha1sum "$f" | cut -c1-16)"
done
if [ -z "$(ls -A "$input")" ]; then
    echo "no seeds for $target: add a file to fuzz/seeds/$target/" >&2
    exit 2
fi

out="out/$target"
rm -rf "$out"
echo "fuzzing $target for ${seconds}s from $(ls "$input" | wc -l) inputs (log: fuzz/$out.log)"
status=0
# AFL_NO_AFFINITY: the machine is shared, do not pin a core. AFL_IGNORE_SEED_PROBLEMS:
# a saved regression that crashes again must not stop the run (it is reported).
AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_NO_AFFINITY=1 AFL_IGNORE_SEED_PROBLEMS=1 \
    AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 \
    cargo afl fuzz -V "$seconds" -i "$input" -o "$out" "target/release/$target" \
    >"$out.log" 2>&1 || status=$?

stats="$out/default/fuzzer_stats"
if [ ! -f "$stats" ]; then
    echo "afl-fuzz did not run (exit $status); last lines of fuzz/$out.log:" >&2
    tail -n 20 "$out.log" >&2
    exit 1
fi
stat() { sed -n "s/^$1 *: *//p" "$stats"; }

save() { # save KIND DIR: copy each input in DIR to regressions as KIND-<hash>
    local kind=$1 dir=$2 n=0 f name
    for f in "$dir"/id:*; do
        [ -f "$f" ] || continue
        name="$kind-$(sha1sum "$f" | cut -c1-16)"
        cp "$f" "regressions/$target/$name"
        echo "  saved fuzz/regressions/$target/$name" >&2
        n=$((n + 1))
    done
    echo "$n"
}
crashes=$(save crash "$out/default/crashes")
hangs=$(save hang "$out/default/hangs")
for f in "$out/default/queue"/id:*; do
    [ -f "$f" ] && cp "$f" "corpus/$target/$(sha1sum "$f" | cut -c1-16)"
done

run_time=$(stat run_time)
execs=$(stat execs_done)
echo "target:     $target"
echo "run time:   ${run_time}s"
echo "execs:      $execs"
echo "execs/s:    $((execs / (run_time > 0 ? run_time : 1)))"
echo "corpus:     $(stat corpus_count) entries, $(ls "corpus/$target" | wc -l) kept in fuzz/corpus/$target"
echo "coverage:   $(stat bitmap_cvg) of the map, $(stat edges_found) edges"
echo "stability:  $(stat stability)"
echo "crashes:    $crashes"
echo "hangs:      $hangs"
[ "$crashes" -eq 0 ] && [ "$hangs" -eq 0 ]
