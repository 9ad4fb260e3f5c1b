import { existsSync, statSync } from "node:fs";
import type { Command } from "commander";
import { checkHfModelAgainstLlamaCpp } from "../../interop/check.js";
import { checkModelAgainstLlamaCpp, DEFAULT_CHECK_TEXT } from "../../model/check.js";
import { InputError } from "../../util/errors.js";
import { log } from "../../util/log.js";

/**
 * `steerlm model check <model.gguf | hf-dir>`: our forward pass against llama.cpp's on the same tokens. A
 * directory is read as a Hugging Face checkpoint (compared with llama.cpp on its converted GGUF).
 */
export function register(program: Command): void {
  const model = program.command("model").description("inspect and verify Llama-family GGUF models");
  model
    .command("check <model>")
    .description(
      "run steerlm's forward pass and llama.cpp's (node-llama-cpp) on a sample text; print the max abs\n" +
        "next-token log-probability difference and the top-1 agreement; exit 1 above tolerance.\n" +
        "<model> is a GGUF file or a Hugging Face model directory (config.json + safetensors)",
    )
    .option("--text <text>", "sample text to tokenize and evaluate", DEFAULT_CHECK_TEXT)
    .option("--tolerance <x>", "max allowed |Δ log p|", "1e-3")
    .option("--min-top1 <x>", "min allowed top-1 agreement (0..1)", "1")
    .option("--threads <n>", "CPU threads for both engines (default: free cores)")
    .option("--json", "print one JSON object", false)
    .action(
      async (
        path: string,
        o: { text: string; tolerance: string; minTop1: string; threads?: string; json: boolean },
      ) => {
        if (!existsSync(path)) throw new InputError("no such file", { file: path });
        const tolerance = parsePositive(o.tolerance, "--tolerance");
        const minTop1 = Number(o.minTop1);
        if (!(minTop1 >= 0 && minTop1 <= 1))
          throw new InputError(`must be in [0, 1], got ${o.minTop1}`, { field: "--min-top1" });
        const threads = o.threads === undefined ? undefined : parsePositive(o.threads, "--threads");
        const r = statSync(path).isDirectory()
          ? await checkHfModelAgainstLlamaCpp(path, { text: o.text, threads })
          : await checkModelAgainstLlamaCpp(path, { text: o.text, threads });
        const pass = r.maxAbsLogProbDiff <= tolerance && r.top1Agreement >= minTop1;
        if (o.json) {
          process.stdout.write(`${JSON.stringify({ ...r, tolerance, pass })}\n`);
        } else {
          process.stdout.write(
            `${path}: ${r.tokens} tokens, vocab ${r.vocabSize}, weights ${r.weightType}\n` +
              `max |Δ log p| = ${r.maxAbsLogProbDiff.toExponential(3)} (tolerance ${tolerance})\n` +
              `top-1 agreement = ${(100 * r.top1Agreement).toFixed(1)}%\n` +
              `${pass ? "PASS" : "FAIL"}\n`,
          );
        }
        if (!pass) {
          log.error("steerlm's forward pass disagrees with llama.cpp beyond the tolerance");
          process.exitCode = 1;
        }
      },
    );
}

function parsePositive(v: string, field: string): number {
  const n = Number(v);
  if (!(n > 0)) throw new InputError(`must be a positive number, got ${JSON.stringify(v)}`, { field });
  return n;
}
