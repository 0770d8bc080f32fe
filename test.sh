#!/usr/bin/env bash
# The test command: checks formatting and lints, installs the test peers from
# committed lockfiles, then runs every test. Usage: ./test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")"

# Formatting and lints first (the lints are configured in Cargo.toml and
# clippy.toml): every target, every feature, warnings are errors.
cargo fmt --check
cargo clippy -j2 --all-targets --all-features --locked -- -D warnings

# Test peers from committed lockfiles: the third-party authorization server
# (oidc-provider 8.x) the interop tests use, and a third-party JWT verifier.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "test.sh: node and npm are needed for the oidc-provider peer" >&2
  exit 1
fi
timeout 300 npm ci --prefix tests/peers/oidc-provider --no-audit --no-fund --loglevel=error
# A third-party JWT verifier (jose) for the issuer's tokens.
timeout 300 npm ci --prefix tests/peers/jose --no-audit --no-fund --loglevel=error

# The interop test refuses to skip when CI is set; set it here too so a
# missing peer is a failure, not a silent skip.
export CI="${CI:-true}"
cargo test -j2 --locked --all-targets "$@"
# The optional OpenTelemetry feature: built and its end-to-end test run.
cargo test -j2 --locked --features otel --test otel "$@"
