import type { Command } from "commander";
import { ApmScorer } from "../../apm/score.js";
import { isLoopbackHost } from "../../serve/host.js";
import { SERVE_DEFAULTS, startServer } from "../../serve/server.js";
import { InputError, SteerlmError } from "../../util/errors.js";
import { log } from "../../util/log.js";
import { type Flags, integerFrom, numberOption, numFlag, strFlag } from "../flags.js";
import {
  addApmOption,
  addBackendOptions,
  addContextSizeOption,
  addModelOptions,
  addParallelOption,
  addThreadsOption,
  openModel,
} from "../options.js";

export function register(program: Command): void {
  const cmd = program
    .command("serve")
    .description(
      "serve a model over an OpenAI-compatible HTTP API with SteerLM attribute controls, and a web page at /;\n" +
        "with --upstream, the same API, validation, attribute controls and page in front of an engine that\n" +
        "generates (any number of replicas behind one URL): -m is then read for its vocabulary only,\n" +
        "--parallel is the number of requests in flight to the engine, and /health reports the engine",
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
  addParallelOption(cmd, "generations running at once (with --upstream: requests in flight)", 4)
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
    )
    .addOption(
      numberOption(
        "--max-connections <n>",
        "connections open at once; more are closed as they arrive",
        integerFrom(1),
        SERVE_DEFAULTS.maxConnections,
      ),
    )
    .addOption(
      numberOption(
        "--headers-timeout <s>",
        "seconds a client has to send a request's headers (an idle connection is closed after this)",
        { above: 0 },
        SERVE_DEFAULTS.headersTimeout,
      ),
    )
    .addOption(
      numberOption(
        "--request-timeout <s>",
        "seconds a client has to send a whole request, body included (the reply is not limited)",
        { above: 0 },
        SERVE_DEFAULTS.requestTimeout,
      ),
    )
    .option(
      "--allowed-hosts <names>",
      "comma-separated Host names to answer besides localhost and IP addresses (* for any; default: none " +
        "on loopback, against DNS rebinding, else any)",
    )
    .option(
      "--require-control-tokens",
      "refuse a model whose vocabulary lacks the SteerLM control tokens (default when --host is not loopback)",
    )
    .option("--no-require-control-tokens", "serve such a model anyway, its control tokens as plain text")
    .option(
      "--no-prompt-cache",
      "evaluate every prompt whole (by default a request reuses the prefix it shares with what a sequence " +
        "holds: system prompt, earlier turns; same greedy outputs)",
    );
  addContextSizeOption(
    cmd,
    "tokens per generation (prompt + reply; with --upstream: default the engine's)",
    16,
  );
  addApmOption(
    cmd,
    "attribute prediction model (run directory or checkpoint): adds POST /v1/steerlm/score and the page's measured attributes",
    false,
  );
  addThreadsOption(cmd);
  addBackendOptions(cmd, { flag: "--upstream" }).action(async (flags: Flags) => {
    const host = flags.host as string;
    const apiKey = strFlag(flags, "apiKey") ?? process.env.STEERLM_API_KEY;
    if (apiKey !== undefined && apiKey.trim() === "")
      throw new InputError("the API key is empty", { field: "--api-key" });
    const model = await openModel(
      flags,
      {
        requireControlTokens: (flags.requireControlTokens as boolean | undefined) ?? !isLoopbackHost(host),
        parallel: numFlag(flags, "parallel"),
        maxQueue: numFlag(flags, "queue"),
        promptCache: flags.promptCache as boolean,
      },
      "--upstream",
    );
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
      maxConnections: numFlag(flags, "maxConnections"),
      headersTimeout: numFlag(flags, "headersTimeout"),
      requestTimeout: numFlag(flags, "requestTimeout"),
      allowedHosts: strFlag(flags, "allowedHosts")
        ?.split(",")
        .map((n) => n.trim())
        .filter((n) => n !== ""),
    }).catch(async (err: Error) => {
      await apm?.free();
      await model.dispose();
      if (err instanceof SteerlmError) throw err;
      throw new InputError(`cannot listen: ${err.message}`, { field: "--port" });
    });
    if (!isLoopbackHost(host) && apiKey === undefined)
      log.warn(`listening on ${host} without an API key: anyone who can reach it can use the model`);
    const where = strFlag(flags, "upstream");
    log.info(
      `serving ${model.id} (schema ${model.schema.name}, ${model.parallel} parallel, control tokens as ${model.controlMode}` +
        `${where ? `, generated by ${where}` : ""}) at ${server.url}`,
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
