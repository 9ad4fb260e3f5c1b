import type { Command } from "commander";
import { ApmScorer } from "../../apm/score.js";
import { SERVE_DEFAULTS, startServer } from "../../serve/server.js";
import { InputError } from "../../util/errors.js";
import { log } from "../../util/log.js";
import { type Flags, integerFrom, numberOption, numFlag, strFlag } from "../flags.js";
import {
  addApmOption,
  addContextSizeOption,
  addModelOptions,
  addParallelOption,
  addThreadsOption,
  loadModel,
} from "../options.js";

export function register(program: Command): void {
  const cmd = program
    .command("serve")
    .description(
      "serve a model over an OpenAI-compatible HTTP API with SteerLM attribute controls, and a web page at /",
    );
  addModelOptions(cmd)
    .option(
      "--host <host>",
      "address to bind (0.0.0.0 exposes the server to the network)",
      SERVE_DEFAULTS.host,
    )
    .addOption(
      numberOption(
        "--port <n>",
        "port (0 picks a free one)",
        { integer: true, min: 0, max: 65535 },
        SERVE_DEFAULTS.port,
      ),
    )
    .option("--api-key <key>", "require Authorization: Bearer <key> on /v1 routes (or set STEERLM_API_KEY)")
    .addOption(
      numberOption(
        "--max-tokens-cap <n>",
        "upper bound and default for max_tokens",
        integerFrom(1),
        SERVE_DEFAULTS.maxTokensCap,
      ),
    );
  addParallelOption(cmd, "generations running at once", 4)
    .addOption(
      numberOption("--queue <n>", "requests allowed to wait for a slot; beyond it 429", integerFrom(0), 32),
    )
    .addOption(
      numberOption(
        "--max-body <bytes>",
        "largest accepted request body",
        integerFrom(1024),
        SERVE_DEFAULTS.maxBodyBytes,
      ),
    );
  addContextSizeOption(cmd, "tokens per generation (prompt + reply)", 16);
  addApmOption(
    cmd,
    "attribute prediction model (run directory or checkpoint): adds POST /v1/steerlm/score and the page's measured attributes",
    false,
  );
  addThreadsOption(cmd).action(async (flags: Flags) => {
    const host = flags.host as string;
    const apiKey = strFlag(flags, "apiKey") ?? process.env.STEERLM_API_KEY;
    if (apiKey !== undefined && apiKey.trim() === "")
      throw new InputError("the API key is empty", { field: "--api-key" });
    const model = await loadModel(flags, {
      parallel: numFlag(flags, "parallel"),
      maxQueue: numFlag(flags, "queue"),
      contextSize: numFlag(flags, "contextSize"),
      threads: numFlag(flags, "threads"),
    });
    const apmPath = strFlag(flags, "apm");
    const apm =
      apmPath === undefined
        ? undefined
        : await ApmScorer.load(apmPath, { threads: numFlag(flags, "threads") }).catch(
            async (err: unknown) => {
              await model.dispose();
              throw err;
            },
          );
    const server = await startServer({
      model,
      apm,
      host,
      port: numFlag(flags, "port"),
      apiKey,
      maxTokensCap: numFlag(flags, "maxTokensCap"),
      maxBodyBytes: numFlag(flags, "maxBody"),
    }).catch(async (err: Error) => {
      await apm?.free();
      await model.dispose();
      throw new InputError(`cannot listen: ${err.message}`, { field: "--port" });
    });
    const loopback = /^(127\.|::1$|localhost$)/.test(host);
    if (!loopback && apiKey === undefined)
      log.warn(`listening on ${host} without an API key: anyone who can reach it can use the model`);
    log.info(
      `serving ${model.id} (schema ${model.schema.name}, ${model.parallel} parallel, control tokens as ${model.controlMode}) at ${server.url}`,
    );
    if (apm) log.info(`scoring with the APM ${apm.checkpoint} at ${server.url}/v1/steerlm/score`);
    await new Promise<void>((resolve) => {
      const stop = () => resolve();
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
    });
    log.info("shutting down");
    await server.close();
    await apm?.free();
    await model.dispose();
  });
}
