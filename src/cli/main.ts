import { Command, CommanderError } from "commander";
import { SteerlmError } from "../util/errors.js";
import { setLogLevel } from "../util/log.js";
import { version } from "../version.js";
import { forUser } from "./flags.js";

// One line per command group; each module only parses arguments and calls the library.
const commandModules: Array<() => Promise<{ register(program: Command): void }>> = [
  () => import("./commands/tokenize.js"),
  () => import("./commands/sft.js"),
  () => import("./commands/export.js"),
  () => import("./commands/demo.js"),
  () => import("./commands/bench.js"),
  () => import("./commands/generate.js"),
  () => import("./commands/serve.js"),
  () => import("./commands/data.js"),
  () => import("./commands/model.js"),
  () => import("./commands/model-convert.js"),
  () => import("./commands/eval.js"),
  () => import("./commands/apm.js"),
  () => import("./commands/bootstrap.js"),
  () => import("./commands/steerlm2.js"),
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

  for (const load of commandModules) (await load()).register(program);

  try {
    await program.parseAsync(argv, { from: "user" });
    return typeof process.exitCode === "number" ? process.exitCode : 0;
  } catch (err) {
    return reportError(err instanceof SteerlmError ? forUser(err, running) : err);
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
