// src/openapi.ts is generated from the API's OpenAPI document (`npm run gen`); this test
// generates it again from the live server's /openapi.json and fails when the committed one
// differs, so the types cannot drift from the API.
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { test } from "node:test";
import { TARGET, generate, loadSpec } from "../scripts/gen.mjs";
import { env, needs } from "./env.mjs";

test("src/openapi.ts is what the live API's OpenAPI document generates", needs("url"), async () => {
  const spec = await loadSpec(env.url);
  assert.ok(spec.paths["/api/workflow/execute"], "the API's document");
  const expected = await generate(spec);
  const committed = await readFile(TARGET, "utf8");
  if (committed !== expected) {
    const a = committed.split("\n");
    const b = expected.split("\n");
    const line = a.findIndex((text, i) => text !== b[i]);
    assert.fail(
      `src/openapi.ts differs from the API's OpenAPI document (first at line ${line + 1}:\n` +
        `  committed: ${a[line]}\n  generated: ${b[line]}\n` +
        `run \`npm run gen -- ${env.url}\` (or from a file: see scripts/gen.mjs) and commit it`,
    );
  }
});
