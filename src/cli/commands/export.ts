import type { Command } from "commander";
import { exportGguf } from "../../sft/export.js";
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
        "loads, with the tokenizer and the SteerLM schema and template in its metadata. LoRA runs are merged.",
    )
    .argument("<run-or-checkpoint>", "a `steerlm sft` run directory or a checkpoints/step-*.ckpt file")
    .requiredOption("-o, --output <file>", "the GGUF to write")
    .option("--type <type>", `storage type of the weight matrices: ${TYPES.join(", ")}`, "F32")
    .action(async (input: string, opts: { output: string; type: string }) => {
      const type = opts.type.toUpperCase();
      if (!(TYPES as readonly string[]).includes(type)) {
        throw new InputError(`unknown type ${JSON.stringify(opts.type)} (one of ${TYPES.join(", ")})`, {
          field: "--type",
        });
      }
      const r = await exportGguf(input, opts.output, { type: type as (typeof TYPES)[number] });
      process.stderr.write(
        `wrote ${r.path} (${(r.bytes / 1e6).toFixed(1)} MB) from ${r.checkpoint}, step ${r.step}\n`,
      );
    });
}
