import { existsSync, statSync } from "node:fs";
import type { Command } from "commander";
import { checkHfModelAgainstLlamaCpp } from "../../interop/check.js";
import { checkModelAgainstLlamaCpp, DEFAULT_CHECK_TEXT } from "../../model/check.js";
import { InputError } from "../../util/errors.js";
import { log } from "../../util/log.js";
import { numberOption } from "../flags.js";
import { addThreadsOption } from "../options.js";

/** `--tolerance <x>`: the largest |Δ log p| a check passes with (model check, model convert --check). */
export const TOLERANCE = (help = "max allowed |Δ log p|") =>
  numberOption("--tolerance <x>", help, { above: 0 }, 1e-3);

/**
 * `steerlm model check <model.gguf | hf-dir>`: our forward pass against llama.cpp's on the same tokens. A
 * directory is read as a Hugging Face checkpoint (compared with llama.cpp on its converted GGUF).
 */
export function register(program: Command): void {
  const model = program.command("model").description("inspect and verify Llama-family GGUF models");
  const check = model
    .command("check <model>")
    .description(
      "run steerlm's forward pass and llama.cpp's (node-llama-cpp) on a sample text; print the max abs\n" +
        "next-token log-probability difference and the top-1 agreement; exit 1 above tolerance.\n" +
        "<model> is a GGUF file or a Hugging Face model directory (config.json + safetensors)",
    )
    .option("--text <text>", "sample text to tokenize and evaluate", DEFAULT_CHECK_TEXT)
    .addOption(TOLERANCE())
    .addOption(numberOption("--min-top1 <x>", "min allowed top-1 agreement (0..1)", { min: 0, max: 1 }, 1))
    .option("--json", "print one JSON object", false);
  addThreadsOption(check, "CPU threads for both engines (default: free cores)").action(
    async (
      path: string,
      o: { text: string; tolerance: number; minTop1: number; threads?: number; json: boolean },
    ) => {
      if (!existsSync(path)) throw new InputError("no such file", { file: path });
      const { tolerance, minTop1, threads } = o;
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
