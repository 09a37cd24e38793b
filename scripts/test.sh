#!/usr/bin/env bash
# Runs every check and test of the workspace. On a fresh machine it first installs what the
# tests need (Debian packages, a Python venv, npm packages, cargo-deny): scripts/install-test-deps.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "install test dependencies"
bash scripts/install-test-deps.sh

step "format"
cargo fmt --all --check

step "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "build binaries (the end-to-end tests spawn them)"
cargo build --workspace --bins --examples --locked

step "docs"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked

step "cargo deny (licenses, bans, sources; offline)"
cargo fetch --locked >/dev/null  # cargo-deny reads the metadata of every target's crates
cargo deny --offline check bans licenses sources

step "tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
  cargo test --workspace --doc --locked
else
  cargo test --workspace --locked --no-fail-fast
fi
