#!/usr/bin/env node
// Runs the tests (`node --test test/`) with what this Node needs: a global WebSocket is behind
// --experimental-websocket on Node 20 (Node 22+ has it by default), and --test-force-exit
// (Node 20.14+) ends the run once the tests are done, even if a test left a socket or a timer.
// The tests talk to servers that tests/clients/test_typescript.py starts (see test/env.mjs).
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";

const [major, minor] = process.versions.node.split(".").map(Number);
if (major < 20 || (major === 20 && minor < 14)) {
  console.error(`node ${process.versions.node}: the tests need Node 20.14+ (node --test --test-force-exit)`);
  process.exit(2);
}
const root = fileURLToPath(new URL("..", import.meta.url));
const flags = typeof globalThis.WebSocket === "function" ? [] : ["--experimental-websocket"];
const args = process.argv.slice(2);
const files = args.filter((a) => !a.startsWith("-"));
const options = args.filter((a) => a.startsWith("-"));
const tests = files.length
  ? files
  : readdirSync(new URL("../test/", import.meta.url))
      .filter((name) => name.endsWith(".test.mjs"))
      .sort()
      .map((name) => `test/${name}`);
const run = spawnSync(process.execPath, [...flags, "--test", "--test-force-exit", ...options, ...tests], {
  cwd: root,
  stdio: "inherit",
});
process.exit(run.status ?? 1);
