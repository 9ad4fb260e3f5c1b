/** Child-process side of runIsolated: import the job module, run the export, report back, exit. */
interface Request {
  module: string;
  exportName: string;
  args: unknown;
}

let finished = false;
// the parent died (killed, crashed): stop too rather than run on as an orphan
process.on("disconnect", () => {
  if (!finished) process.exit(1);
});

process.once("message", async (req: Request) => {
  const send = (m: unknown) => process.send?.(m);
  try {
    const mod = (await import(req.module)) as Record<string, unknown>;
    const fn = mod[req.exportName];
    if (typeof fn !== "function") throw new Error(`${req.module} has no function ${req.exportName}`);
    const result = await (fn as (a: unknown, c: { send(m: unknown): void }) => unknown)(req.args, {
      send: (message) => send({ kind: "message", message }),
    });
    send({ kind: "result", result });
    finished = true;
    process.disconnect?.();
    process.exitCode = 0;
  } catch (e) {
    const err = e instanceof Error ? e : new Error(String(e));
    send({ kind: "error", message: err.message, stack: err.stack });
    finished = true;
    process.disconnect?.();
    process.exitCode = 1;
  }
});
