import { mkdirSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { PartResult } from "../bench/reliability/common.js";
import { type Fixtures, makeFixtures, PARTS, type PartName, SIZES } from "../bench/reliability/parts.js";
import { haveSharedData, tempDir } from "./helpers.js";

// The fast subset of the reliability suite (`npm run reliability` runs the full one): each part at the
// `quick` sizes (2 kills, 200 fuzzed lines, 20 model files, a 5-second soak), without its time bounds.
const tmp = tempDir("steerlm-reliability-");
let fixtures: Fixtures;
beforeAll(async () => {
  fixtures = await makeFixtures(`${tmp.path}/fixtures`);
}, 300_000);
afterAll(() => tmp.cleanup());

async function run(name: PartName): Promise<PartResult> {
  const dir = `${tmp.path}/${name}`;
  mkdirSync(dir);
  return PARTS[name].run({ dir, seed: 1, sizes: SIZES.quick, fixtures });
}

function expectHeld(r: PartResult): void {
  expect(r.failures).toEqual([]);
  expect(r.runs).toBeGreaterThan(0);
  expect(r.passed).toBe(r.runs);
  expect(r.ok).toBe(true);
}

describe("reliability (fast subset)", () => {
  it("sft killed twice with SIGKILL ends byte-identical to an uninterrupted run", async () => {
    expectHeld(await run("sft"));
  }, 300_000);

  it("annotate killed twice ends byte-identical", async () => {
    expectHeld(await run("annotate"));
  }, 300_000);

  it("bootstrap killed twice ends byte-identical", async () => {
    expectHeld(await run("bootstrap"));
  }, 300_000);

  it.skipIf(!haveSharedData)(
    "200 mutated lines of the real files: kept byte for byte or reported at file:line",
    async () => {
      expectHeld(await run("import"));
    },
    300_000,
  );

  it.skipIf(!haveSharedData)(
    "20 mutated model files: each accepted or a located error",
    async () => {
      expectHeld(await run("model"));
    },
    300_000,
  );

  it("a 5-second soak of the server: no 5xx, every malformed request a 4xx", async () => {
    expectHeld(await run("soak"));
  }, 300_000);
});
