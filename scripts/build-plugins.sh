#!/usr/bin/env bash
# Builds the plugin SDKs' sample and test plugins into target/wasm32-wasip2/release/*.wasm
# (the proxy's tests and the demo load them from there): the Rust ones for wasm32-wasip2, and
# the TypeScript samples and test plugins (plugins/ts/NAME.ts, plugins/ts-tests/NAME.ts → NAME_ts.wasm) with plugins/sdk-ts, after
# checking that its generated types still match wit/.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
(cd plugins && cargo build --release --locked)

out=target/wasm32-wasip2/release
node plugins/sdk-ts/gen-types.mjs --check
plugins/sdk-ts/node_modules/.bin/tsc -p plugins/sdk-ts/tsconfig.json
for ts in plugins/ts/*.ts plugins/ts-tests/*.ts; do
  name=$(basename "$ts" .ts)
  node plugins/sdk-ts/build.mjs "$ts" -o "$out/${name//-/_}_ts.wasm" --no-check
done
