#!/usr/bin/env node
// Builds steerlm's own CPU kernels (native/*.c) into build/native/libsteerlm-kernels.so.
// Runs at `npm install` / `npm ci`. It needs a C compiler ($CC, else cc); without one it says so and
// exits 0: the training engine then uses plain ggml ops (same results, slower backward pass).
// `--strict` (used by CI) fails instead of falling back.
import { spawnSync } from "node:child_process";
import { mkdirSync, readdirSync, renameSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const strict = process.argv.includes("--strict");
const outDir = join(root, "build", "native");
const out = join(outDir, "libsteerlm-kernels.so");
const tmp = `${out}.${process.pid}.tmp`;
const cc = process.env.CC || "cc";

if (process.platform !== "linux" || process.arch !== "x64") {
  process.stderr.write(
    `steerlm: native kernels are built for linux-x64 only (this is ${process.platform}-${process.arch})\n`,
  );
  process.exit(strict ? 1 : 0);
}
mkdirSync(outDir, { recursive: true });
const sources = readdirSync(join(root, "native"))
  .filter((f) => f.endsWith(".c"))
  .sort()
  .map((f) => join(root, "native", f));
// warnings fail only the strict (CI) build: a newer compiler's new warning must not cost a user the kernels
const args = [
  "-O3",
  "-std=c11",
  "-fPIC",
  "-shared",
  "-Wall",
  "-Wextra",
  ...(strict ? ["-Werror"] : []),
  "-o",
  tmp,
  ...sources,
];
const r = spawnSync(cc, args, { encoding: "utf8" });
if (r.status !== 0) {
  rmSync(tmp, { force: true });
  const why = r.error ? r.error.message : (r.stderr || "").trim();
  process.stderr.write(
    `steerlm: could not build the native kernels with \`${cc}\` (${why}).\n` +
      "steerlm: training still works on plain ggml ops, with a slower backward pass; install a C compiler and run `npm run build:native`.\n",
  );
  process.exit(strict ? 1 : 0);
}
renameSync(tmp, out);
