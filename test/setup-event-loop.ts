/**
 * Every test starts on a new turn of the event loop. Vitest's worker awaits each report to the main process
 * with a 60-second timer; a file of synchronous tests (native computes through koffi) never lets the worker
 * read the reply, and once its tests add up to a minute the timer fires first: "[vitest-worker]: Timeout
 * calling onTaskUpdate", a red run with every test passed. One turn between tests lets the reply in.
 */
import { beforeEach } from "vitest";

beforeEach(() => new Promise<void>((resolve) => setImmediate(resolve)));
