/**
 * A one-line progress bar on stderr, drawn only when stderr is a terminal (CI logs and pipes stay clean).
 * `fields` lets a caller show live figures such as loss or tokens/s next to the bar.
 */
export interface ProgressOptions {
  label: string;
  total?: number;
  /** Force drawing on or off; default: stderr is a TTY. */
  enabled?: boolean;
}

export class Progress {
  private done = 0;
  private readonly start = performance.now();
  private lastDraw = 0;
  private fields: Record<string, string | number> = {};
  private readonly on: boolean;

  constructor(private readonly opts: ProgressOptions) {
    this.on = opts.enabled ?? Boolean(process.stderr.isTTY);
  }

  tick(n = 1, fields?: Record<string, string | number>): void {
    this.done += n;
    if (fields) this.fields = fields;
    const now = performance.now();
    if (this.on && now - this.lastDraw > 100) {
      this.lastDraw = now;
      this.draw();
    }
  }

  finish(): void {
    if (this.on) {
      this.draw();
      process.stderr.write("\n");
    }
  }

  get count(): number {
    return this.done;
  }

  get elapsedSeconds(): number {
    return (performance.now() - this.start) / 1000;
  }

  private draw(): void {
    const secs = this.elapsedSeconds;
    const rate = secs > 0 ? this.done / secs : 0;
    const extra = Object.entries(this.fields)
      .map(([k, v]) => `${k} ${typeof v === "number" ? formatNumber(v) : v}`)
      .join("  ");
    let line: string;
    if (this.opts.total) {
      const frac = Math.min(1, this.done / this.opts.total);
      const width = 24;
      const filled = Math.round(frac * width);
      const eta = rate > 0 ? (this.opts.total - this.done) / rate : 0;
      line = `${this.opts.label} [${"#".repeat(filled)}${"-".repeat(width - filled)}] ${this.done}/${this.opts.total} eta ${formatDuration(eta)}`;
    } else {
      line = `${this.opts.label} ${this.done} (${formatNumber(rate)}/s)`;
    }
    process.stderr.write(`\r\x1b[2K${extra ? `${line}  ${extra}` : line}`);
  }
}

export function formatNumber(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  if (Math.abs(v) >= 1000) return v.toFixed(0);
  if (Math.abs(v) >= 10) return v.toFixed(1);
  return v.toFixed(4);
}

export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const m = Math.floor(s / 60);
  return m > 0 ? `${m}m${String(s % 60).padStart(2, "0")}s` : `${s}s`;
}
