import { linkSync, mkdirSync, readdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { runCli, tempDir } from "./helpers.js";

// Outputs through the real CLI: two outputs that are one file are refused before any work, and every file
// error the user causes is a located, plain message (exit 1), never "internal error".
const tmp = tempDir("steerlm-files-");
afterAll(() => tmp.cleanup());
const at = (...parts: string[]) => join(tmp.path, ...parts);

const row = (i: number) =>
  JSON.stringify({
    system: "",
    conversations: [
      { from: "User", value: `q${i}`, label: null },
      { from: "Assistant", value: `a${i}`, label: "helpfulness:4,correctness:3,coherence:4" },
    ],
    mask: "User",
  });

/** A folder holding a small valid SteerLM file plus one bad row; returns both paths. */
function fresh(name: string): { dir: string; input: string } {
  const dir = at(name);
  mkdirSync(dir);
  const input = join(dir, "in.jsonl");
  writeFileSync(input, `${[row(1), row(2), "{not json", row(4)].join("\n")}\n`);
  return { dir, input };
}

function expectUserError(r: { code: number | null; stderr: string }, message: string): void {
  expect(r.code, r.stderr).toBe(1);
  expect(r.stderr).toContain(`steerlm: ${message}`);
  expect(r.stderr).not.toContain("internal error");
  expect(r.stderr).not.toMatch(/\n\s+at /);
}

describe("two outputs that are one file", () => {
  it("data split --train X --validation X is refused before any work", async () => {
    const { dir, input } = fresh("split");
    const same = join(dir, "same.jsonl");
    const r = await runCli(["data", "split", input, "--skip-invalid", "--train", same, "--validation", same]);
    expectUserError(r, `${same}: --validation: names the same file as train`);
    expect(r.stderr).toContain("hint: give each output its own file");
    expect(readdirSync(dir)).toEqual(["in.jsonl"]);
  });

  it("data convert --rejects X -o X is refused, and so is a hard link or a symbolic link to it", async () => {
    const { dir, input } = fresh("convert");
    const out = join(dir, "out.jsonl");
    const args = (o: string, rejects: string) => [
      "data",
      "convert",
      input,
      "--to",
      "chat",
      "--skip-invalid",
      "--rejects",
      rejects,
      "-o",
      o,
    ];
    expectUserError(await runCli(args(out, out)), `${out}: --rejects: names the same file as output`);
    writeFileSync(out, "old\n");
    linkSync(out, join(dir, "hard.jsonl"));
    symlinkSync(out, join(dir, "soft.jsonl"));
    for (const other of ["hard.jsonl", "soft.jsonl"]) {
      const r = await runCli(args(out, join(dir, other)));
      expectUserError(r, `${join(dir, other)}: --rejects: names the same file as output`);
    }
    expect(readdirSync(dir).sort()).toEqual(["hard.jsonl", "in.jsonl", "out.jsonl", "soft.jsonl"]);
    // distinct files still work, and the output is whole
    const ok = await runCli(args(join(dir, "a.jsonl"), join(dir, "b.jsonl")));
    expect(ok.code, ok.stderr).toBe(0);
  });
});

describe("file errors the user causes", () => {
  it("-o <a folder> names the folder", async () => {
    const { dir, input } = fresh("folder");
    const r = await runCli(["data", "convert", input, "--to", "chat", "--skip-invalid", "-o", dir]);
    expectUserError(r, `${dir}: --output: is a folder, not a file`);
    // checked before the model is loaded and the evaluation run, not when the report is written
    const json = await runCli(["eval", "adherence", "-m", join(dir, "no.gguf"), "--json", dir]);
    expectUserError(json, `${dir}: --json: is a folder, not a file`);
  });

  it("-o under a file, or in a folder that does not exist", async () => {
    const { dir, input } = fresh("notdir");
    const under = join(input, "x.jsonl");
    expectUserError(
      await runCli(["data", "convert", input, "--to", "chat", "--skip-invalid", "-o", under]),
      `${under}: --output: the output's folder is a file`,
    );
    const missing = join(dir, "no", "x.jsonl");
    expectUserError(
      await runCli(["data", "convert", input, "--to", "chat", "--skip-invalid", "-o", missing]),
      `${missing}: --output: the output's folder does not exist`,
    );
  });

  it("a run directory that is a file", async () => {
    const { dir, input } = fresh("runfile");
    const init = join(dir, "model.yaml");
    writeFileSync(init, "hiddenSize: 32\nnumLayers: 1\nnumHeads: 2\n");
    const r = await runCli(["sft", "--data", input, "--init", init, "--steps", "1", "-o", input]);
    expectUserError(r, `${input}: --output: is a file, not a run directory`);
  });

  it("reading a folder as data is a located error", async () => {
    const { dir } = fresh("readdir");
    expectUserError(await runCli(["data", "validate", dir]), `${dir}: cannot read: EISDIR: is a folder`);
    // read whole (not streamed): Node's error names no path, the reader must
    const bench = await runCli([
      "eval",
      "answer",
      "-m",
      join(dir, "no.gguf"),
      "--bench",
      dir,
      "-o",
      at("a.jsonl"),
    ]);
    expectUserError(bench, `${dir}: cannot read: EISDIR: is a folder, not a file`);
  });
});
