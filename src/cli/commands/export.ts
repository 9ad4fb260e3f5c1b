import type { Command } from "commander";
import { exportGguf, exportLoraAdapter } from "../../run/export.js";
import { InputError } from "../../util/errors.js";

const TYPES = ["F32", "F16", "BF16", "Q8_0"] as const;

export function register(program: Command): void {
  const exp = program
    .command("export")
    .summary("export trained models (gguf)")
    .description("Export trained models.");
  exp
    .command("gguf")
    .description(
      "Write an SFT run (its newest checkpoint) or a checkpoint file as a GGUF that llama.cpp / node-llama-cpp\n" +
        "loads, with the tokenizer and the SteerLM schema and template in its metadata. A LoRA run is merged\n" +
        "into its base by default (--merge); --lora writes only the adapter, to load next to the untouched base\n" +
        "(node-llama-cpp's `lora` context option, llama.cpp's --lora, `steerlm serve --lora`).",
    )
    .argument("<run-or-checkpoint>", "a `steerlm sft` run directory or a checkpoints/step-*.ckpt file")
    .requiredOption("-o, --output <file>", "the GGUF to write")
    .option(
      "--type <type>",
      `storage type of the weight matrices: ${TYPES.join(", ")} (adapters: F32, F16)`,
      "F32",
    )
    .option("--lora", "write only the LoRA adapter of a `steerlm sft --lora` run", false)
    .option("--merge", "merge a LoRA run's adapters into full weights (the default without --lora)", false)
    .action(async (input: string, opts: { output: string; type: string; lora: boolean; merge: boolean }) => {
      const type = opts.type.toUpperCase();
      if (!(TYPES as readonly string[]).includes(type)) {
        throw new InputError(`unknown type ${JSON.stringify(opts.type)} (one of ${TYPES.join(", ")})`, {
          field: "--type",
        });
      }
      if (opts.lora && opts.merge) {
        throw new InputError(
          "--lora writes the adapter alone and --merge writes merged weights: choose one",
          {
            field: "--lora",
          },
        );
      }
      if (opts.lora) {
        if (type !== "F32" && type !== "F16") {
          throw new InputError(`adapters are written as F32 or F16, not ${type}`, { field: "--type" });
        }
        const r = await exportLoraAdapter(input, opts.output, { type });
        process.stderr.write(
          `wrote adapter ${r.path} (${(r.bytes / 1e6).toFixed(2)} MB) from ${r.checkpoint}, step ${r.step}; ` +
            `base: ${r.baseModel}\n`,
        );
        return;
      }
      const r = await exportGguf(input, opts.output, { type: type as (typeof TYPES)[number] });
      process.stderr.write(
        `wrote ${r.path} (${(r.bytes / 1e6).toFixed(1)} MB) from ${r.checkpoint}, step ${r.step}\n`,
      );
    });
}
