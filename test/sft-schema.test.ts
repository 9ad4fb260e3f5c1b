import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { BUILTIN_SCHEMAS } from "../src/data/attributes.js";
import { metaString, readGguf } from "../src/gguf/reader.js";
import { STEERLM_SCHEMA_KEY } from "../src/gguf/types.js";
import { runCli, tempDir } from "./helpers.js";
import { tinySftArgs, tinySftInputs } from "./sft-helpers.js";

// A run keeps the schema it trained with: its checkpoints carry the schema itself, not the path of the file
// it came from, so the export writes it whatever became of that file.
describe("steerlm sft --schema <file> -> export gguf", () => {
  const tmp = tempDir("steerlm-sft-schema-");
  afterAll(() => tmp.cleanup());

  it("writes the run's schema into the GGUF after the schema file is gone", async () => {
    const inputs = tinySftInputs(tmp.path);
    const own = {
      name: "mine",
      attributes: BUILTIN_SCHEMAS.steerlm.attributes.map((a) => ({ ...a, description: `mine: ${a.name}` })),
    };
    const file = join(tmp.path, "mine.json");
    writeFileSync(file, JSON.stringify(own));
    const run = join(tmp.path, "run");
    const r = await runCli(tinySftArgs(inputs, run, ["--steps", "2", "--schema", file]));
    expect(r.code, r.stderr).toBe(0);
    rmSync(file);
    const out = join(tmp.path, "model.gguf");
    const e = await runCli(["export", "gguf", run, "-o", out]);
    expect(e.code, e.stderr).toBe(0);
    const written = JSON.parse(metaString(await readGguf(out), STEERLM_SCHEMA_KEY)) as typeof own;
    expect(written.name).toBe("mine");
    expect(written.attributes.map((a) => a.description)).toEqual(own.attributes.map((a) => a.description));
  }, 60_000);
});
