import type { Command } from "commander";
import { loadSchema } from "../../data/attributes.js";
import { checkHfModelAgainstLlamaCpp } from "../../interop/check.js";
import { convertHfToGguf, parseConvertType } from "../../interop/convert.js";
import { log } from "../../util/log.js";
import { TOLERANCE } from "./model.js";

/**
 * `steerlm model convert <hf-dir> -o model.gguf [--type f16|bf16|f32]`. Registered on the `model` group that
 * commands/model.ts creates (`model check`); when that group is not there, it is created here.
 */
export function register(program: Command): void {
  const model =
    program.commands.find((c) => c.name() === "model") ??
    program.command("model").description("inspect, verify and convert Llama-family models");
  registerConvert(model);
}

export function registerConvert(model: Command): void {
  model
    .command("convert")
    .description(
      "convert a Hugging Face model directory (config.json, model.safetensors or sharded\n" +
        "model.safetensors.index.json, tokenizer.json) of the Llama, Mistral, Qwen2 or SmolLM family to GGUF",
    )
    .argument("<hf-dir>", "the Hugging Face model directory")
    .requiredOption("-o, --output <file>", "the GGUF to write")
    .option(
      "--type <type>",
      "storage type of the weight matrices: f16, bf16 or f32 (norms and biases stay f32)",
      "f16",
    )
    .option("--name <name>", "general.name in the GGUF (default: the directory name)")
    .option(
      "--schema <name|file>",
      "steer with this attribute schema: its chat template and steerlm.schema go into the GGUF\n" +
        "(a model another engine trained on SteerLM data; a job folder's schema.json)\n" +
        "(default: the schema of config.json's steerlm key, from `steerlm export hf`, else none)",
    )
    .option(
      "--check",
      "then compare steerlm's forward pass on the HF weights with llama.cpp's on an F32 conversion\n" +
        "(max |Δ log p| and top-1 agreement on a sample text); exit 1 above --tolerance",
      false,
    )
    .addOption(TOLERANCE("max allowed |Δ log p| for --check"))
    .action(
      async (
        dir: string,
        opts: {
          output: string;
          type: string;
          name?: string;
          schema?: string;
          check: boolean;
          tolerance: number;
        },
      ) => {
        const type = parseConvertType(opts.type);
        const r = await convertHfToGguf(dir, opts.output, {
          type,
          ...(opts.name !== undefined ? { name: opts.name } : {}),
          ...(opts.schema !== undefined ? { schema: loadSchema(opts.schema) } : {}),
        });
        const c = r.spec.config;
        process.stdout.write(
          `${r.out}: ${r.spec.family} -> GGUF ${r.spec.arch}, ${c.numLayers} layers, width ${c.hiddenSize}, ` +
            `${c.numHeads}/${c.numKvHeads} heads, vocab ${c.vocabSize}${r.paddedTokens ? ` (${r.paddedTokens} padding tokens)` : ""}, ` +
            `${r.tensors} tensors ${type}, ${(r.bytes / 1e6).toFixed(1)} MB\n`,
        );
        if (!opts.check) return;
        const { tolerance } = opts;
        const c2 = await checkHfModelAgainstLlamaCpp(dir);
        const pass = c2.maxAbsLogProbDiff <= tolerance && c2.top1Agreement === 1;
        process.stdout.write(
          `check: ${c2.tokens} tokens, max |Δ log p| = ${c2.maxAbsLogProbDiff.toExponential(3)} (tolerance ${tolerance}), ` +
            `top-1 agreement = ${(100 * c2.top1Agreement).toFixed(1)}%\n${pass ? "PASS" : "FAIL"}\n`,
        );
        if (!pass) {
          log.error("steerlm's forward pass on the HF weights disagrees with llama.cpp beyond the tolerance");
          process.exitCode = 1;
        }
      },
    );
}
