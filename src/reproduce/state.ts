import { existsSync } from "node:fs";
import { join } from "node:path";
import { writeFileAtomic } from "../util/atomic.js";
import { InputError } from "../util/errors.js";
import { readInputText } from "../util/files.js";

/**
 * Which stages of a reproduce run are done: `<dir>/state.json`, rewritten atomically (temp file + rename)
 * after each stage. A stage's own outputs are resumable by the code that writes them (SFT and APM runs
 * from their newest checkpoint, annotate and bootstrap from their sidecars); the state file only lets a
 * rerun skip what finished, and refuses to mix settings.
 */
export const STATE_FILE = "state.json";

export interface StageRecord {
  seconds: number;
  /** CPU seconds of the process that ran the stage (user + system). */
  cpuSeconds: number;
  /** What the stage reports (training figures, row counts). */
  result?: unknown;
}

interface StateDoc {
  format: "steerlm-reproduce-state";
  settings: unknown;
  done: Record<string, StageRecord>;
}

export class ReproduceState {
  private readonly doc: StateDoc;
  readonly path: string;

  constructor(dir: string, settings: unknown, resume: boolean) {
    this.path = join(dir, STATE_FILE);
    const exists = existsSync(this.path);
    if (exists && !resume)
      throw new InputError(
        "this directory already holds a reproduce run",
        { file: this.path },
        "continue it with --resume, or choose another -o",
      );
    if (!exists) {
      this.doc = { format: "steerlm-reproduce-state", settings, done: {} };
      this.save();
      return;
    }
    try {
      this.doc = JSON.parse(readInputText(this.path)) as StateDoc;
    } catch (err) {
      if (err instanceof InputError) throw err;
      throw new InputError(
        `is damaged: ${(err as Error).message}`,
        { file: this.path },
        "restore it, or start the run again in another -o",
      );
    }
    if (JSON.stringify(this.doc.settings) !== JSON.stringify(settings))
      throw new InputError(
        "--resume: the run in this directory was started with other settings",
        { file: this.path, field: "settings" },
        "rerun with the same --seeds and --quick as the first run, or choose another -o",
      );
  }

  done(stage: string): StageRecord | undefined {
    return this.doc.done[stage];
  }

  get stages(): Record<string, StageRecord> {
    return this.doc.done;
  }

  /** The finished stages whose names start with `prefix` (one seed's), names without the prefix. */
  stagesOf(prefix: string): Record<string, StageRecord> {
    return Object.fromEntries(
      Object.entries(this.doc.done)
        .filter(([k]) => k.startsWith(prefix))
        .map(([k, v]) => [k.slice(prefix.length), v]),
    );
  }

  /** Records a finished stage and saves the file. */
  record(stage: string, rec: StageRecord): void {
    this.doc.done[stage] = rec;
    this.save();
  }

  private save(): void {
    writeFileAtomic(this.path, `${JSON.stringify(this.doc, null, 2)}\n`);
  }
}
