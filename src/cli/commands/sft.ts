import type { Command } from "commander";
import { SFT_FIELDS } from "../../run/settings.js";
import { runSft } from "../../run/sft.js";
import { addSftSettingFlags, runTrainingJob } from "../sft-flags.js";

export function register(program: Command): void {
  const cmd = program
    .command("sft")
    .summary("attribute-conditioned SFT: train on SteerLM JSONL (new model, GGUF, LoRA), checkpoint, resume")
    .description(
      "Attribute-conditioned SFT: train a model on SteerLM JSONL with loss on the responses only.\n" +
        "Settings come from --config (YAML or JSON, camelCase keys as the flags below), flags override them;\n" +
        "every effective setting is printed at start. Ctrl-C, SIGTERM or SIGHUP writes a checkpoint and exits; --resume continues\n" +
        "bit-exactly from the newest checkpoint of -o.",
    )
    .option("--config <file>", "settings file (YAML or JSON)")
    .option("--resume", "continue the run in -o from its newest checkpoint (its stored settings apply)");
  const resolve = addSftSettingFlags(cmd, SFT_FIELDS);
  cmd.action((raw: Record<string, string | boolean | undefined>) => {
    const resolved = resolve(raw);
    return runTrainingJob("steerlm sft", (signal) =>
      runSft(resolved, { resume: Boolean(raw.resume), signal }),
    );
  });
}
