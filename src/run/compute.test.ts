import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import {
  amxHint,
  BF16_NATIVE_CPU_VARIANTS,
  computeTypeWarning,
  formatSettings,
  resolveResumeConfig,
  resolveSftConfig,
  SETTINGS_FILE,
} from "./config.js";
import { COMPUTE_TYPES, flagName, SFT_DEFAULTS } from "./settings.js";

const dir = mkdtempSync(join(tmpdir(), "steerlm-compute-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, text: string) => {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
};
const BASE = "data: d.jsonl\noutput: run\ninit: model.yaml\n";

describe("computeType setting", () => {
  it("defaults to f32; a config file or --compute sets it, the flag winning", () => {
    expect(SFT_DEFAULTS.computeType).toBe("f32");
    expect(COMPUTE_TYPES).toEqual(["f32", "bf16"]);
    expect(resolveSftConfig({}, file("plain.yaml", BASE)).config.computeType).toBe("f32");
    const yaml = resolveSftConfig({}, file("bf16.yaml", `${BASE}computeType: bf16\n`));
    expect(yaml.config.computeType).toBe("bf16");
    expect(yaml.sources.computeType).toBe("config");
    expect(formatSettings(yaml).find((l) => l.includes("computeType"))).toMatch(
      /computeType\s+bf16 {2}\(config file\)/,
    );
    const json = file(
      "bf16.json",
      JSON.stringify({ data: "d", output: "r", init: "m", computeType: "bf16" }),
    );
    expect(resolveSftConfig({}, json).config.computeType).toBe("bf16");
    const flag = resolveSftConfig({ computeType: "f32" }, file("over.yaml", `${BASE}computeType: bf16\n`));
    expect(flag.config.computeType).toBe("f32");
    expect(flag.sources.computeType).toBe("flag");
  });

  it("refuses other values with the file, line and setting; its flag is --compute", () => {
    const bad = file("bad.yaml", `${BASE}computeType: fp16\n`);
    expect(() => resolveSftConfig({}, bad)).toThrow(
      `${bad}:4: computeType: expected one of f32, bf16, got "fp16"`,
    );
    const num = file("num.yaml", `${BASE}computeType: 16\n`);
    expect(() => resolveSftConfig({}, num)).toThrow(`${num}:4: computeType: expected one of f32, bf16`);
    expect(() => resolveSftConfig({ computeType: "BF16" }, file("ok.yaml", BASE))).toThrow(
      'computeType: expected one of f32, bf16, got "BF16"',
    );
    expect(flagName("computeType")).toBe("--compute");
    expect(flagName("seqLen")).toBe("--seq-len");
  });
});

describe("computeType on --resume", () => {
  it("a run stored before the setting existed resumes in f32; another compute type is refused", () => {
    const run = join(dir, "old-run");
    mkdirSync(run);
    // sft-config.json as runs wrote it before computeType: no such key
    const stored = { ...SFT_DEFAULTS, data: "d.jsonl", output: run, init: "m.yaml" } as Record<
      string,
      unknown
    >;
    delete stored.computeType;
    writeFileSync(join(run, SETTINGS_FILE), JSON.stringify(stored));
    expect(resolveResumeConfig(run, {}).config.computeType).toBe("f32");
    expect(resolveResumeConfig(run, { computeType: "f32" }).config.computeType).toBe("f32");
    expect(() => resolveResumeConfig(run, { computeType: "bf16" })).toThrow(
      `computeType: "bf16" differs from the run's "f32"`,
    );
  });
});

describe("amxHint", () => {
  it("points an f32 run at bf16 where the bf16 products run on AMX tiles, and says nothing otherwise", () => {
    expect(amxHint("f32", true)).toMatch(/AMX tiles .*: --compute bf16 .* trains faster still/);
    expect(amxHint("bf16", true)).toBeNull();
    expect(amxHint("f32", false)).toBeNull();
  });
});

describe("computeTypeWarning", () => {
  it("warns for bf16 on ggml CPU variants without AVX512-BF16 only", () => {
    for (const v of BF16_NATIVE_CPU_VARIANTS) expect(computeTypeWarning("bf16", v)).toBeNull();
    for (const v of ["haswell", "skylakex", "icelake", "alderlake", "x64", "sse42"]) {
      expect(computeTypeWarning("bf16", v)).toMatch(
        new RegExp(`CPU variant ${v} has no native bfloat16 instructions.*likely be slower`),
      );
      expect(computeTypeWarning("f32", v)).toBeNull();
    }
  });

  it("names only variants that node-llama-cpp ships", () => {
    const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
    const dir = join(root, "node_modules", "@node-llama-cpp", "linux-x64", "bins", "linux-x64");
    expect(existsSync(join(dir, "libggml-cpu-x64.so")), dir).toBe(true);
    const shipped = readdirSync(dir).flatMap((f) => /^libggml-cpu-(.+)\.so$/.exec(f)?.[1] ?? []);
    for (const v of BF16_NATIVE_CPU_VARIANTS) expect(shipped).toContain(v);
  });
});
