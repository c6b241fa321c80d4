#!/usr/bin/env bash
# Everything CI checks against a real Mattermost. Runs inside test/helpers/real-mattermost-cli.ts,
# which started the server and exported MM_REAL_* and CONFORMANCE_* (see that file); the server
# is stopped and its database dropped when this script ends. Any failure here fails CI.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== conformance suite against Mattermost ${MM_REAL_VERSION} at ${MM_REAL_URL}"
node dist/test/conformance/run.js

# Tests under test/real/ need a real server (they read MM_REAL_*): the end-to-end test.
if [ -d dist/test/real ] && ls dist/test/real/*.test.js >/dev/null 2>&1; then
  echo "== end to end against Mattermost ${MM_REAL_VERSION}"
  node --test --test-concurrency=1 dist/test/real/
fi
