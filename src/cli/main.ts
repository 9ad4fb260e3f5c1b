import { Command, CommanderError } from "commander";
import { userFileError } from "../util/errno.js";
import { SteerlmError } from "../util/errors.js";
import { setLogLevel } from "../util/log.js";
import { version } from "../version.js";
import { forUser } from "./flags.js";

type CommandModule = () => Promise<{ register(program: Command): void }>;

// `steerlm --help` lists the commands in SteerLM's pipeline order, under one heading per step, with one-line
// summaries (`steerlm <command> --help` has the full description). Each module only parses arguments and
// calls the library; a module registers its commands under the heading it is listed in.
const pipeline: Array<{ heading: string; modules: CommandModule[]; summaries: Record<string, string> }> = [
  {
    heading: "Main job:",
    modules: [() => import("./commands/demo.js")],
    summaries: { demo: "SteerBench → SFT → GGUF → steerability table" },
  },
  {
    heading: "Data:",
    modules: [
      () => import("./commands/data.js"),
      () => import("./commands/tokenize.js"),
      () => import("./commands/bench.js"),
    ],
    summaries: {
      data: "import, convert, validate, inspect, split data",
      tokenize: "token ids of a text (tokenizer.json or GGUF)",
      bench: "SteerBench: synthetic data and its oracle",
    },
  },
  {
    heading: "Attribute model:",
    modules: [() => import("./commands/apm.js")],
    summaries: {
      apm: "step 1: train the attribute prediction model",
      annotate: "step 2: label data with the APM (resumable)",
    },
  },
  {
    heading: "Training:",
    modules: [
      () => import("./commands/sft.js"),
      () => import("./commands/bootstrap.js"),
      () => import("./commands/steerlm2.js"),
    ],
    summaries: {
      sft: "step 3: attribute-conditioned SFT, LoRA too",
      bootstrap: "step 4: data from top-quality samples",
      steerlm2: "SteerLM 2.0: weighted samples, then training",
    },
  },
  {
    heading: "Steering:",
    modules: [() => import("./commands/generate.js"), () => import("./commands/serve.js")],
    summaries: {
      generate: "one steered reply, streamed",
      chat: "interactive chat; /set k=v between turns",
      serve: "OpenAI-compatible server and web page",
    },
  },
  {
    heading: "Evaluation:",
    modules: [() => import("./commands/eval.js"), () => import("./commands/reproduce.js")],
    summaries: {
      eval: "attribute adherence, FastChat judge benchmarks",
      reproduce: "the paper's ablation on SteerBench",
    },
  },
  {
    heading: "Models and export:",
    modules: [
      () => import("./commands/export.js"),
      () => import("./commands/model.js"),
      () => import("./commands/model-convert.js"),
    ],
    summaries: {
      export: "a run as GGUF, HF or LoRA adapter; a TRL/NeMo job",
      model: "check and convert Llama-family models",
    },
  },
];

export async function main(argv: string[]): Promise<number> {
  // The command whose action runs: its options say which flag a library setting was given with.
  let running: Command | undefined;
  const program = new Command("steerlm")
    .description(
      "SteerLM in TypeScript: import attribute-labelled data, train attribute-conditioned models on ggml,\n" +
        "and steer them at inference time by choosing attribute values.",
    )
    .version(version)
    .option("--quiet", "only print errors", false)
    .option("--verbose", "print debug logs", false)
    .hook("preAction", (cmd, actionCommand) => {
      running = actionCommand;
      const opts = cmd.opts<{ quiet: boolean; verbose: boolean }>();
      if (opts.quiet) setLogLevel("error");
      if (opts.verbose) setLogLevel("debug");
    })
    .exitOverride()
    .showHelpAfterError("(run with --help for usage)");

  for (const { heading, modules, summaries } of pipeline) {
    program.commandsGroup(heading);
    for (const load of modules) (await load()).register(program);
    for (const [name, summary] of Object.entries(summaries))
      program.commands.find((command) => command.name() === name)?.summary(summary);
  }
  program.commandsGroup("Other:").helpCommand(true);

  try {
    await program.parseAsync(argv, { from: "user" });
    return typeof process.exitCode === "number" ? process.exitCode : 0;
  } catch (err) {
    // A file error the user caused (EISDIR, ENOSPC…) that no library call located is still theirs.
    const mapped = userFileError(err);
    return reportError(mapped instanceof SteerlmError ? forUser(mapped, running) : mapped);
  }
}

function reportError(err: unknown): number {
  if (err instanceof CommanderError) {
    // --help and --version also arrive here, with exit code 0.
    return err.exitCode;
  }
  if (err instanceof SteerlmError) {
    process.stderr.write(`steerlm: ${err.message}\n`);
    if (err.hint) process.stderr.write(`hint: ${err.hint}\n`);
    return 1;
  }
  process.stderr.write(
    `steerlm: internal error (please report): ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  return 2;
}
