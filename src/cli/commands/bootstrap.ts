import type { Command } from "commander";
import { runBootstrap } from "../../bootstrap/run.js";
import { parseFormat } from "../../data/read.js";
import { type Flags, intFlag, numFlag, strFlag } from "../flags.js";

/** `steerlm bootstrap`: parse arguments, call src/bootstrap, print a JSON summary. */

const DESCRIPTION = `SteerLM step 4, bootstrapping with high-quality samples:
 1. collect the attribute combinations of the training responses whose
    quality attribute (--quality-key) has the top value of its scale;
 2. for each prompt (those of --data, or --prompts) draw one of them,
    uniformly over those responses and seeded per row, and sample a
    response from the SFT model at those values (top-k 50, temperature 1);
 3. re-annotate each response with the APM and write SteerLM JSONL
    (prompt, generated response, the APM's values) for a second round
    of \`steerlm sft\` (--mix-original appends the training data).
The drawn combination is kept in each row's "bootstrap" key. Resumable:
rerun the same command after an interruption and it continues after the
rows already written; the file is byte-identical to an uninterrupted run.`;

export function register(program: Command): void {
  program
    .command("bootstrap")
    .summary("SteerLM step 4: generate at top-quality values, re-annotate with the APM (-o <file>)")
    .description(DESCRIPTION)
    .requiredOption("-m, --model <gguf>", "the SFT model that generates")
    .requiredOption("--apm <run|file>", "APM run directory (newest checkpoint) or checkpoint file")
    .requiredOption("--data <file>", "labelled training data: the source of the top-quality combinations")
    .requiredOption("-o, --output <file>", "bootstrapped SteerLM JSONL")
    .option("--lora <gguf>", "LoRA adapter applied on top of the model")
    .option("--from <format>", "format of --data (default: detected)")
    .option(
      "--prompts <file>",
      "prompts to answer (default: those of --data); trailing responses are dropped",
    )
    .option("--prompts-from <format>", "format of --prompts (default: detected)")
    .option("--schema <name|file>", "the model's attribute schema (default: the GGUF's, else steerlm)")
    .option(
      "--quality-key <name>",
      "attribute whose top value selects combinations (default: quality, else helpfulness)",
    )
    .option("--seed <n>", "seeds each row's combination and sampling", "1")
    .option("-t, --temperature <t>", "sampling temperature", "1")
    .option("--top-k <k>", "sample from the k most likely tokens", "50")
    .option("--top-p <p>", "nucleus sampling threshold")
    .option("--max-tokens <n>", "most tokens per response (default: 256, or what fits)")
    .option("--context-size <n>", "tokens per sequence (default: the model's, at most 2048)")
    .option("--limit <n>", "only the first n prompts")
    .option("--unique-prompts", "answer each distinct prompt once")
    .option("--mix-original", "append the training data (as SteerLM JSONL) after the bootstrapped rows")
    .option("--batch-size <n>", "APM batch and rows per resumable group", "8")
    .option("--threads <n>", "CPU threads")
    .option("--overwrite", "replace an existing finished output")
    .action(async (flags: Flags) => {
      const throttle = Number(process.env.STEERLM_BOOTSTRAP_THROTTLE_MS ?? 0);
      const from = strFlag(flags, "from");
      const promptsFrom = strFlag(flags, "promptsFrom");
      const r = await runBootstrap({
        model: flags.model as string,
        lora: strFlag(flags, "lora"),
        apm: flags.apm as string,
        data: flags.data as string,
        dataFormat: from === undefined ? undefined : parseFormat(from),
        prompts: strFlag(flags, "prompts"),
        promptsFormat: promptsFrom === undefined ? undefined : parseFormat(promptsFrom),
        output: flags.output as string,
        schema: strFlag(flags, "schema"),
        qualityKey: strFlag(flags, "qualityKey"),
        seed: intFlag(flags, "seed", "--seed", 0),
        temperature: numFlag(flags, "temperature", "--temperature"),
        topK: intFlag(flags, "topK", "--top-k", 0),
        topP: numFlag(flags, "topP", "--top-p"),
        maxTokens: intFlag(flags, "maxTokens", "--max-tokens", 1),
        contextSize: intFlag(flags, "contextSize", "--context-size", 1),
        limit: intFlag(flags, "limit", "--limit", 1),
        uniquePrompts: Boolean(flags.uniquePrompts),
        mixOriginal: Boolean(flags.mixOriginal),
        batchSize: intFlag(flags, "batchSize", "--batch-size", 1),
        threads: intFlag(flags, "threads", "--threads", 1),
        overwrite: Boolean(flags.overwrite),
        throttleMs: throttle > 0 ? throttle : undefined,
      });
      process.stdout.write(`${JSON.stringify(r)}\n`);
    });
}
