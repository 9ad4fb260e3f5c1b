import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { ApmScorer } from "../apm/score.js";
import type { Generator } from "../inference/generator.js";
import { SlotPool } from "../inference/pool.js";
import { InputError } from "../util/errors.js";
import { type Asset, loadAssets } from "./assets.js";
import { badRequest, HttpError, sendError } from "./errors.js";
import { chatCompletion, completion, scoreConversations } from "./handlers.js";
import { hostCheck } from "./host.js";
import { checkApiKey, readJson, sendJson } from "./http.js";
import { parseChatRequest, parseCompletionRequest, parseScoreRequest } from "./validate.js";

/** The server's defaults (`steerlm serve` shows them in its help). */
export const SERVE_DEFAULTS = {
  host: "127.0.0.1",
  port: 8080,
  maxTokensCap: 512,
  maxBodyBytes: 1024 * 1024,
  /** Open connections at once; more are closed as they arrive, so idle sockets cannot use up descriptors. */
  maxConnections: 512,
  /** Seconds a connection has to send a request's headers; one that sends nothing is closed after this. */
  headersTimeout: 5,
  /** Seconds to receive a whole request, headers and body. */
  requestTimeout: 30,
};

export interface ServeOptions {
  /** A model loaded here, or a remote engine's generator (`steerlm serve --upstream`). */
  model: Generator;
  /** Default 127.0.0.1: reachable from this machine only unless asked otherwise. */
  host?: string;
  /** Default 8080; 0 picks a free port. */
  port?: number;
  /** When set, every /v1 route needs `Authorization: Bearer <apiKey>`. */
  apiKey?: string;
  /** Upper bound (and default) for max_tokens. Default 512. */
  maxTokensCap?: number;
  /** Largest accepted request body in bytes. Default 1 MiB. */
  maxBodyBytes?: number;
  /** Connections open at once; beyond it new ones are closed at once. Default 512. */
  maxConnections?: number;
  /** Seconds to send a request's headers (from the connection or the first byte). Default 5. */
  headersTimeout?: number;
  /** Seconds to send a whole request, at least `headersTimeout`; the reply is not limited. Default 30. */
  requestTimeout?: number;
  /**
   * Host names answered besides localhost and IP addresses ("*": any). Default: none when bound to
   * loopback (against DNS rebinding), any name otherwise.
   */
  allowedHosts?: readonly string[];
  /**
   * An attribute prediction model: adds POST /v1/steerlm/score (queued like generations, up to the model's
   * maxQueue waiting) and the page's measured-attributes panel. The caller frees it after `close`.
   */
  apm?: ApmScorer;
}

export interface SteerServer {
  server: Server;
  url: string;
  close(): Promise<void>;
}

type Handler = (req: IncomingMessage, res: ServerResponse) => Promise<void> | void;

/** The request handler: routes, auth, and every error through `sendError`. */
export function createHandler(opts: ServeOptions): Handler {
  const { model } = opts;
  const maxTokensCap = opts.maxTokensCap ?? SERVE_DEFAULTS.maxTokensCap;
  const maxBody = opts.maxBodyBytes ?? SERVE_DEFAULTS.maxBodyBytes;
  const limits = { maxTokensCap, modelId: model.id };
  const assets = loadAssets();
  const checkHost = hostCheck(opts.host ?? SERVE_DEFAULTS.host, opts.allowedHosts);
  const { apm } = opts;
  const scorer = apm ? new SlotPool([apm], model.maxQueue) : undefined;

  const schema = () => ({
    object: "steerlm.schema",
    name: model.schema.name,
    source: model.schemaSource,
    attributes: model.schema.attributes.map((a) => ({ ...a })),
    control_tokens: model.controlMode,
    // also what a request without max_tokens gets, where the context has room (samplingOptions)
    max_tokens_cap: maxTokensCap,
    context_size: model.contextSize,
    // What POST /v1/steerlm/score measures; null without an APM (the page then shows no measured panel).
    // The checkpoint's SHA-256 lets `steerlm annotate --backend` refuse to resume against another APM.
    apm: apm
      ? {
          name: apm.schema.name,
          attributes: apm.schema.attributes.map((a) => ({ ...a })),
          sha256: apm.digest,
        }
      : null,
  });

  const modelCard = { id: model.id, object: "model", created: 0, owned_by: "steerlm" };
  const routes: Record<string, Record<string, Handler>> = {
    "/health": {
      // In front of an engine, healthy means the engine answers: 503 lets a load balancer route around it.
      GET: async (_req, res) => {
        const upstream = await model.upstream?.();
        const ok = upstream === undefined || upstream.status === "ok";
        sendJson(res, ok ? 200 : 503, {
          status: ok ? "ok" : "unavailable",
          model: model.id,
          ...model.load,
          parallel: model.parallel,
          ...(upstream ? { upstream } : {}),
        });
      },
    },
    "/v1/models": { GET: (_req, res) => sendJson(res, 200, { object: "list", data: [modelCard] }) },
    "/v1/steerlm/schema": { GET: (_req, res) => sendJson(res, 200, schema()) },
    "/v1/chat/completions": {
      POST: async (req, res) => {
        const request = parseChatRequest(await readJson(req, res, maxBody), model.schema, limits);
        await chatCompletion({ model, req, res, maxTokensCap, request });
      },
    },
    "/v1/completions": {
      POST: async (req, res) => {
        const request = parseCompletionRequest(await readJson(req, res, maxBody), limits);
        await completion({ model, req, res, maxTokensCap, request });
      },
    },
  };
  // models.retrieve: the id as sent (openai-node percent-encodes it, openai-python does not)
  for (const id of new Set([model.id, encodeURIComponent(model.id)]))
    routes[`/v1/models/${id}`] = { GET: (_req, res) => sendJson(res, 200, modelCard) };
  if (apm && scorer) {
    routes["/v1/steerlm/score"] = {
      POST: async (req, res) => {
        const request = parseScoreRequest(await readJson(req, res, maxBody));
        await scoreConversations({ scorer, schema: apm.schema, res, request });
      },
    };
  }
  for (const [path, asset] of assets) routes[path] = { GET: (_req, res) => sendAsset(res, asset) };

  return async (req, res) => {
    try {
      checkHost(req);
      const path = pathOf(req.url ?? "/");
      const route = routes[path];
      if (!route) throw new HttpError(404, `no route ${path}`, "not_found_error", null, "not_found");
      const method = req.method === "HEAD" ? "GET" : (req.method ?? "GET");
      const handler = route[method];
      if (!handler) {
        throw new HttpError(
          405,
          `${req.method} is not allowed on ${path}`,
          "invalid_request_error",
          null,
          "method_not_allowed",
          {
            allow: Object.keys(route).join(", "),
          },
        );
      }
      if (path.startsWith("/v1/")) checkApiKey(req, opts.apiKey);
      await handler(req, res);
    } catch (err) {
      sendError(res, err);
    }
  };
}

function pathOf(target: string): string {
  try {
    // `//v1/models` is that path (origin-form), not a URL of host v1
    return target.startsWith("//")
      ? new URL(`http://localhost${target}`).pathname
      : new URL(target, "http://localhost").pathname;
  } catch {
    const shown = target.length > 80 ? `${target.slice(0, 77)}...` : target;
    throw badRequest(`the request target ${JSON.stringify(shown)} is not a URL`, null, "bad_request_target");
  }
}

function sendAsset(res: ServerResponse, asset: Asset): void {
  res.writeHead(200, {
    "content-type": asset.type,
    "content-length": asset.body.length,
    "cache-control": "no-cache",
    // Everything is local: the page may only load its own files and talk to this server, and no other
    // site may frame it (clickjacking the sliders).
    "content-security-policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
  });
  res.end(asset.body);
}

/** Starts the server; resolves once it listens. */
export async function startServer(opts: ServeOptions): Promise<SteerServer> {
  const handler = createHandler(opts);
  const headersMs = 1000 * (opts.headersTimeout ?? SERVE_DEFAULTS.headersTimeout);
  const requestMs = 1000 * (opts.requestTimeout ?? SERVE_DEFAULTS.requestTimeout);
  if (requestMs < headersMs) {
    throw new InputError(
      `must be at least the headers timeout (${headersMs / 1000} s), got ${requestMs / 1000} s`,
      { setting: "requestTimeout" },
    );
  }
  // Bounds on receiving a request (headers, then the whole body), checked every second; a long generation
  // (the response) is not cut.
  const server = createServer(
    {
      keepAliveTimeout: 5000,
      headersTimeout: headersMs,
      requestTimeout: requestMs,
      connectionsCheckingInterval: 1000,
    },
    (req, res) => {
      // The request is here: from now on only requestTimeout bounds it, not the socket's idle timer below.
      req.socket.setTimeout(0);
      void handler(req, res);
    },
  );
  // A connection that never sends a byte is not a request yet: an idle timer closes it at the headers deadline.
  server.timeout = headersMs;
  server.maxConnections = opts.maxConnections ?? SERVE_DEFAULTS.maxConnections;
  const host = opts.host ?? SERVE_DEFAULTS.host;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? SERVE_DEFAULTS.port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const shown = host.includes(":") ? `[${host}]` : host;
  return {
    server,
    url: `http://${shown}:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
