// The OpenAI-compatible steerable HTTP server and its web page.

export {
  benchServe,
  formatServeBench,
  type ServeBenchOptions,
  type ServeBenchResult,
} from "./bench-load.js";
export {
  benchStream,
  formatStreamBench,
  type StreamBenchOptions,
  type StreamBenchResult,
} from "./bench-stream.js";
export { errorBody, HttpError } from "./errors.js";
export { createHandler, type ServeOptions, type SteerServer, startServer } from "./server.js";
