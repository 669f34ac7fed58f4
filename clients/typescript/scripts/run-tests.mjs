#!/usr/bin/env node
// Runs the tests (`node --test test/`) with what this Node needs: a global WebSocket is behind
// --experimental-websocket on Node 20 (Node 22+ has it by default).
// The tests talk to servers that tests/clients/test_typescript.py starts (see test/env.mjs).
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";

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
const run = spawnSync(process.execPath, [...flags, "--test", ...options, ...tests], { cwd: root, stdio: "inherit" });
process.exit(run.status ?? 1);
