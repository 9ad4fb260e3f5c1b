import { linkSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { tempDir } from "../../test/helpers.js";
import { AtomicFile, checkOutputs, removeLeftoverTemps, writeFileAtomic } from "./atomic.js";
import { InputError } from "./errors.js";

const tmp = tempDir("steerlm-atomic-");
afterAll(() => tmp.cleanup());

function folder(name: string): string {
  const dir = join(tmp.path, name);
  mkdirSync(dir);
  return dir;
}

describe("atomic files", () => {
  it("two writers of one path in the same millisecond each get their own temporary file", async () => {
    const dir = folder("two");
    const path = join(dir, "out.jsonl");
    const a = await AtomicFile.create(path);
    const b = await AtomicFile.create(path);
    await a.write("a\n".repeat(1000));
    await b.write("b\n".repeat(10));
    await a.commit();
    expect(readFileSync(path, "utf8")).toBe("a\n".repeat(1000));
    await b.commit();
    expect(readFileSync(path, "utf8")).toBe("b\n".repeat(10));
    expect(readdirSync(dir)).toEqual(["out.jsonl"]);
  });

  it("abort leaves the target as it was and no temporary file", async () => {
    const dir = folder("abort");
    const path = join(dir, "out.txt");
    writeFileSync(path, "old");
    const f = await AtomicFile.create(path);
    await f.write(Buffer.alloc(3 << 20, 1)); // past the 1 MB gathering: written straight through
    await f.abort();
    expect(readFileSync(path, "utf8")).toBe("old");
    expect(readdirSync(dir)).toEqual(["out.txt"]);
  });

  it("writeFileAtomic writes text, bytes and chunks whole; a missing folder is a located error", () => {
    const dir = folder("sync");
    const path = join(dir, "x.bin");
    writeFileAtomic(path, [Buffer.from("ab"), Buffer.from("cd")]);
    expect(readFileSync(path, "utf8")).toBe("abcd");
    writeFileAtomic(path, "é");
    expect(readFileSync(path, "utf8")).toBe("é");
    const missing = join(dir, "no", "x.bin");
    expect(() => writeFileAtomic(missing, "x")).toThrow(`${missing}: ENOENT: no such file or folder`);
    expect(readdirSync(dir)).toEqual(["x.bin"]);
  });

  it("removeLeftoverTemps removes what a killed writer left, nothing else", async () => {
    const dir = folder("left");
    const f = await AtomicFile.create(join(dir, "step-000001.ckpt"));
    await f.write("half");
    writeFileSync(join(dir, ".hidden"), "");
    writeFileSync(join(dir, "step-000002.ckpt"), "");
    removeLeftoverTemps(dir);
    expect(readdirSync(dir).sort()).toEqual([".hidden", "step-000002.ckpt"]);
    await f.abort();
  });
});

describe("checkOutputs", () => {
  it("refuses one file named twice: spelled differently, through a linked folder, as a folder", () => {
    const dir = folder("outs");
    const a = join(dir, "a.jsonl");
    expect(() => checkOutputs({ train: a, validation: join(dir, "x", "..", "a.jsonl") })).toThrow(
      "names the same file as train",
    );
    symlinkSync(dir, join(tmp.path, "outs-link"));
    expect(() => checkOutputs({ output: a, rejectsPath: join(tmp.path, "outs-link", "a.jsonl") })).toThrow(
      InputError,
    );
    expect(() => checkOutputs({ output: dir })).toThrow(`${dir}: output: is a folder, not a file`);
    expect(() =>
      checkOutputs({ train: a, validation: join(dir, "b.jsonl"), rejectsPath: undefined }),
    ).not.toThrow();
  });

  it("refuses an output that is the input, spelled differently or hard-linked", () => {
    const dir = folder("in-out");
    const input = join(dir, "in.jsonl");
    writeFileSync(input, "{}\n");
    linkSync(input, join(dir, "hard.jsonl"));
    for (const out of [input, join(dir, ".", "in.jsonl"), join(dir, "hard.jsonl")])
      expect(() => checkOutputs({ output: join(dir, "ok.jsonl"), rejectsPath: out }, { input })).toThrow(
        `${out}: rejectsPath: names the input file (input)`,
      );
    expect(() => checkOutputs({ output: join(dir, "ok.jsonl") }, { input, val: undefined })).not.toThrow();
    expect(readFileSync(input, "utf8")).toBe("{}\n");
  });
});
