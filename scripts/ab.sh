#!/usr/bin/env bash
# A/B timing of the working tree's memsentry against a git revision's, both linked into
# one binary (see scripts/ab/main.rs for why one binary). Not part of the test suite.
#
#   scripts/ab.sh [REV] [ROUNDS] [THREADS] [SIZE]   (defaults: HEAD, 61, 1, the mix's sizes)
#   AB_SHAPE=shim scripts/ab.sh …   calls every allocator out of line, as a program does
#
# Builds in a scratch directory: REV's memsentry and memsentry-macros, renamed
# memsentry_old and memsentry-macros-old, beside this tree's memsentry and benches.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
rev=${1:-HEAD}
rounds=${2:-61}
threads=${3:-1}
size=${4:-}

name=ab
. scripts/lib.sh
with_work
git archive "$rev" memsentry memsentry-macros | tar -x -C "$work"
mkdir -p "$work/.cargo" "$work/ab/src"
cp .cargo/config.toml "$work/.cargo/"
cp Cargo.lock "$work/"
cp scripts/ab/main.rs "$work/ab/src/main.rs"

python3 - "$repo" "$work" <<'PY'
import re, sys
repo, work = sys.argv[1], sys.argv[2]
root = open(f"{repo}/Cargo.toml").read()
# The root manifest's sections by header; the scratch workspace keeps what its members
# inherit (package fields, dependencies, lints).
sections, name = {}, None
for line in root.splitlines(keepends=True):
    header = re.match(r"^\[([^\]]+)\]", line)
    if header:
        name = header.group(1)
    if name:
        sections.setdefault(name, []).append(line)
kept = [n for n in sections if n == "workspace.package" or n == "workspace.dependencies"
        or n.startswith("workspace.lints")]
text = "".join("".join(sections[n]) for n in kept)
text = text.replace('memsentry = { path = "memsentry"', 'memsentry_old = { path = "memsentry"')
text = text.replace('memsentry-macros = { path = "memsentry-macros"',
                    'memsentry-macros = { package = "memsentry-macros-old", path = "memsentry-macros"')
open(f"{work}/Cargo.toml", "w").write(
    '[workspace]\nresolver = "3"\nmembers = ["memsentry", "memsentry-macros", "ab"]\n\n' + text)
for crate, old, new in [("memsentry", 'name = "memsentry"\n', 'name = "memsentry_old"\n'),
                        ("memsentry-macros", 'name = "memsentry-macros"\n',
                         'name = "memsentry-macros-old"\n')]:
    path = f"{work}/{crate}/Cargo.toml"
    text = open(path).read()
    open(path, "w").write(text.replace(old, new, 1))
open(f"{work}/ab/Cargo.toml", "w").write(f'''[package]
name = "ab"
version = "0.1.0"
edition = "2024"
publish = false

[dependencies]
memsentry_old = {{ path = "../memsentry" }}
memsentry = {{ path = "{repo}/memsentry" }}
memsentry-benches = {{ path = "{repo}/benches" }}
tikv-jemallocator = {{ workspace = true }}
''')
PY

(cd "$work" && cargo build --quiet --release -p ab)
echo "old: $(git rev-parse --short "$rev"); new: the working tree"
"$work/target/release/ab" "$rounds" "$threads" $size
