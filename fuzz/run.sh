#!/usr/bin/env bash
# Coverage-guided fuzzing of Osprey (cargo-fuzz, libFuzzer, nightly).
#
#   fuzz/run.sh TARGET|all SECONDS     e.g. fuzz/run.sh all 120
#
# Targets: see fuzz/Cargo.toml ([[bin]]) or `cargo +nightly fuzz list`.
# Reads seeds/TARGET/ (committed) and grows corpus/TARGET/ (ignored).
# Exits 1 when a target crashed, printing where the input was saved
# (artifacts/TARGET/); copy it to regressions/TARGET/ once understood (see
# README.md). Builds into fuzz/target/, apart from the workspace's target/,
# so it can run while the rest of the tree builds.
#
# Environment: FUZZ_ARGS adds libFuzzer flags (e.g. FUZZ_ARGS=-jobs=2 or
# -fork=2 for several processes), FUZZ_SANITIZER picks the sanitizer
# (address by default; none is about twice as fast).
set -euo pipefail

usage() { echo "usage: $0 TARGET|all SECONDS" >&2; exit 2; }
[ $# -eq 2 ] || usage
target=$1 secs=$2
[[ $secs =~ ^[0-9]+$ ]] || usage

here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
export CARGO_TARGET_DIR="$here/target"

if ! rustup toolchain list | grep -q '^nightly'; then
    echo "run.sh: the nightly toolchain is needed: rustup toolchain install nightly" >&2
    exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "run.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

all=$(cargo +nightly fuzz list)
if [ "$target" = all ]; then
    targets=$all
elif grep -qx "$target" <<<"$all"; then
    targets=$target
else
    echo "run.sh: no target '$target'; targets: $(echo $all)" >&2
    exit 2
fi

# Largest input per target: a little over the largest element limit for
# the framer (src/framer.rs LIMITS), a config file, short SASL/JID strings.
max_len() {
    case $1 in
        framer | framer_stanzas) echo 70000 ;;
        config | xml_roundtrip) echo 16384 ;;
        *) echo 4096 ;;
    esac
}

build=(--release --debug-assertions --sanitizer "${FUZZ_SANITIZER:-address}")
cargo +nightly fuzz build "${build[@]}"

failed=()
for t in $targets; do
    mkdir -p "corpus/$t" "artifacts/$t"
    before=$(ls "artifacts/$t")
    echo "== $t: ${secs}s" >&2
    set +e
    # shellcheck disable=SC2086
    cargo +nightly fuzz run "${build[@]}" "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -max_len="$(max_len "$t")" \
        -timeout=20 -print_final_stats=1 ${FUZZ_ARGS:-}
    rc=$?
    set -e
    # Inputs saved by this run (slow units are only a warning).
    new=$(comm -13 <(echo "$before") <(ls "artifacts/$t") | grep -v '^slow-unit-' || true)
    if [ $rc -ne 0 ] || [ -n "$new" ]; then
        failed+=("$t")
        echo "== $t FAILED (exit $rc); input(s):" >&2
        for f in $new; do echo "   fuzz/artifacts/$t/$f" >&2; done
        echo "   reproduce: cd fuzz && cargo +nightly fuzz run $t FILE" >&2
        echo "   keep it:   cp FILE fuzz/regressions/$t/ (tests/e2e/fuzz_regressions.rs replays it)" >&2
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "run.sh: crashes in: ${failed[*]}" >&2
    exit 1
fi
echo "run.sh: no crash in: $(echo $targets)" >&2
