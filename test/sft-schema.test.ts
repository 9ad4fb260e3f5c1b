import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { BUILTIN_SCHEMAS } from "../src/data/attributes.js";
import { metaString, readGguf } from "../src/gguf/reader.js";
import { STEERLM_SCHEMA_KEY } from "../src/gguf/types.js";
import { SteerableModel } from "../src/inference/model.js";
import { runCli, tempDir } from "./helpers.js";
import { tinyLoraFlags, tinyRunFlags, tinySftArgs, tinySftInputs } from "./sft-helpers.js";

// A run keeps the schema it trained with: its checkpoints carry the schema itself, not the path of the file
// it came from, so the export writes it whatever became of that file.
describe("steerlm sft --schema <file> -> export gguf", () => {
  const tmp = tempDir("steerlm-sft-schema-");
  afterAll(() => tmp.cleanup());

  it("writes the run's schema into the GGUF after the schema file is gone, and into a LoRA adapter, which steers", async () => {
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

    // LoRA: the adapter carries the run's schema, and a model loaded with it steers with that one, not the
    // base's (here the built-in steerlm of the first run)
    writeFileSync(file, JSON.stringify(own));
    const lora = join(tmp.path, "lora");
    const l = await runCli([
      "sft",
      ...tinyRunFlags(inputs),
      ...["--model", out, ...tinyLoraFlags("q,v"), "--steps", "2", "--schema", file, "-o", lora],
    ]);
    expect(l.code, l.stderr).toBe(0);
    const base = join(tmp.path, "base.gguf");
    const adapter = join(tmp.path, "adapter.gguf");
    expect((await runCli(["export", "gguf", lora, "--lora", "-o", adapter])).code).toBe(0);
    const plain = join(tmp.path, "plain-run");
    expect((await runCli(tinySftArgs(inputs, plain, ["--steps", "1"]))).code).toBe(0);
    expect((await runCli(["export", "gguf", plain, "-o", base])).code).toBe(0);
    const model = await SteerableModel.load({ modelPath: base, loraPath: adapter });
    try {
      expect([model.schema.name, model.schemaSource]).toEqual(["mine", "adapter"]);
    } finally {
      await model.dispose();
    }
    const alone = await SteerableModel.load({ modelPath: base });
    try {
      expect([alone.schema.name, alone.schemaSource]).toEqual(["steerlm", "gguf"]);
    } finally {
      await alone.dispose();
    }
  }, 90_000);

  it("a run from a steerlm model without --schema trains and exports the model's own schema", async () => {
    // model.gguf (the first test's export) carries schema "mine"; the built-in default would be "steerlm"
    const inputs = tinySftInputs(tmp.path);
    const from = join(tmp.path, "model.gguf");
    const run = join(tmp.path, "second-round");
    const r = await runCli(["sft", ...tinyRunFlags(inputs), "--model", from, "--steps", "1", "-o", run]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(
      /schema +mine \(quality,toxicity,.*verbosity\) +\(decided from the base model\)/,
    );
    const out = join(tmp.path, "second-round.gguf");
    expect((await runCli(["export", "gguf", run, "-o", out])).code).toBe(0);
    expect(JSON.parse(metaString(await readGguf(out), STEERLM_SCHEMA_KEY)).name).toBe("mine");
    // the run stored the schema's JSON; naming the same schema again on --resume is no change
    const again = await runCli(["sft", "--resume", "-o", run, "--schema", join(tmp.path, "mine.json")]);
    expect(again.code, again.stderr).toBe(0);
    // an explicit --schema still wins
    const asked = join(tmp.path, "second-round-asked");
    const a = await runCli([
      "sft",
      ...tinyRunFlags(inputs),
      "--model",
      from,
      "--schema",
      "steerlm",
      "--steps",
      "1",
      "-o",
      asked,
    ]);
    expect(a.code, a.stderr).toBe(0);
    expect(a.stderr).toMatch(/schema +steerlm +\(flag\)/);
  }, 90_000);
});
