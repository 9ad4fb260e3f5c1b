/**
 * One logger for the whole package. Everything human-facing goes to stderr so that stdout stays clean
 * for data (ids, JSON) that users pipe elsewhere.
 */
export type LogLevel = "debug" | "info" | "warn" | "error" | "silent";

const order: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

let current: LogLevel = (process.env.STEERLM_LOG as LogLevel | undefined) ?? "info";
let sink: (level: LogLevel, text: string) => void = (level, text) => {
  process.stderr.write(level === "info" ? `${text}\n` : `[${level}] ${text}\n`);
};

export function setLogLevel(level: LogLevel): void {
  current = level;
}

export function setLogSink(fn: (level: LogLevel, text: string) => void): void {
  sink = fn;
}

export function enabled(level: LogLevel): boolean {
  return order[level] >= order[current];
}

export const log = {
  debug: (text: string) => enabled("debug") && sink("debug", text),
  info: (text: string) => enabled("info") && sink("info", text),
  warn: (text: string) => enabled("warn") && sink("warn", text),
  error: (text: string) => enabled("error") && sink("error", text),
};
