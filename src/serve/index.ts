// The OpenAI-compatible steerable HTTP server and its web page.

export {
  benchServe,
  formatServeBench,
  type ServeBenchOptions,
  type ServeBenchResult,
} from "./bench.js";
export { errorBody, HttpError } from "./errors.js";
export { createHandler, type ServeOptions, type SteerServer, startServer } from "./server.js";
