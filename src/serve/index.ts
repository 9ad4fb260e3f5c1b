// The OpenAI-compatible steerable HTTP server and its web page.

export {
  benchServe,
  benchStream,
  formatServeBench,
  formatStreamBench,
  type ServeBenchOptions,
  type ServeBenchResult,
  type StreamBenchOptions,
  type StreamBenchResult,
} from "./bench.js";
export { errorBody, HttpError } from "./errors.js";
export { createHandler, type ServeOptions, type SteerServer, startServer } from "./server.js";
