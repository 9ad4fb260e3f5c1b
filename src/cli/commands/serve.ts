import type { Command } from "commander";
import { SteerableModel } from "../../inference/model.js";
import { startServer } from "../../serve/server.js";
import { InputError } from "../../util/errors.js";
import { log } from "../../util/log.js";
import { intOption } from "./generate.js";

interface ServeFlags {
  model: string;
  lora?: string;
  schema?: string;
  host: string;
  port: string;
  apiKey?: string;
  maxTokensCap: string;
  parallel: string;
  queue: string;
  maxBody: string;
  contextSize?: string;
  threads?: string;
}

export function register(program: Command): void {
  program
    .command("serve")
    .description(
      "serve a model over an OpenAI-compatible HTTP API with SteerLM attribute controls, and a web page at /",
    )
    .requiredOption("-m, --model <gguf>", "model file")
    .option("--lora <gguf>", "LoRA adapter applied on top of the model")
    .option("--schema <name|file>", "attribute schema (default: the model's steerlm.schema, else steerlm)")
    .option("--host <host>", "address to bind (0.0.0.0 exposes the server to the network)", "127.0.0.1")
    .option("--port <n>", "port (0 picks a free one)", "8080")
    .option("--api-key <key>", "require Authorization: Bearer <key> on /v1 routes (or set STEERLM_API_KEY)")
    .option("--max-tokens-cap <n>", "upper bound and default for max_tokens", "512")
    .option("--parallel <n>", "generations running at once", "4")
    .option("--queue <n>", "requests allowed to wait for a slot; beyond it 429", "32")
    .option("--max-body <bytes>", "largest accepted request body", String(1024 * 1024))
    .option("--context-size <n>", "tokens per generation (prompt + reply)")
    .option("--threads <n>", "CPU threads")
    .action(async (flags: ServeFlags) => {
      const apiKey = flags.apiKey ?? process.env.STEERLM_API_KEY;
      if (apiKey !== undefined && apiKey.trim() === "")
        throw new InputError("the API key is empty", { field: "--api-key" });
      const model = await SteerableModel.load({
        modelPath: flags.model,
        loraPath: flags.lora,
        schema: flags.schema,
        parallel: intOption(flags.parallel, "--parallel", 1),
        maxQueue: intOption(flags.queue, "--queue", 0),
        contextSize:
          flags.contextSize === undefined ? undefined : intOption(flags.contextSize, "--context-size", 16),
        threads: flags.threads === undefined ? undefined : intOption(flags.threads, "--threads", 1),
      });
      const server = await startServer({
        model,
        host: flags.host,
        port: intOption(flags.port, "--port", 0),
        apiKey,
        maxTokensCap: intOption(flags.maxTokensCap, "--max-tokens-cap", 1),
        maxBodyBytes: intOption(flags.maxBody, "--max-body", 1024),
      }).catch(async (err: Error) => {
        await model.dispose();
        throw new InputError(`cannot listen: ${err.message}`, { field: "--port" });
      });
      const loopback = /^(127\.|::1$|localhost$)/.test(flags.host);
      if (!loopback && apiKey === undefined)
        log.warn(`listening on ${flags.host} without an API key: anyone who can reach it can use the model`);
      log.info(
        `serving ${model.id} (schema ${model.schema.name}, ${model.parallel} parallel, control tokens as ${model.controlMode}) at ${server.url}`,
      );
      await new Promise<void>((resolve) => {
        const stop = () => resolve();
        process.once("SIGINT", stop);
        process.once("SIGTERM", stop);
      });
      log.info("shutting down");
      await server.close();
      await model.dispose();
    });
}
