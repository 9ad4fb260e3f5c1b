/**
 * Named errors that carry where a problem is. The CLI prints `message` (plus `hint`) and exits 1 for
 * these; anything else is a bug and gets a stack trace.
 */
export class SteerlmError extends Error {
  override name = "SteerlmError";
  constructor(
    message: string,
    readonly hint?: string,
  ) {
    super(message);
  }
}

/** Where a bad value was found: `file:line: field: what is wrong`. Every part but `what` is optional. */
export interface Place {
  file?: string;
  line?: number;
  field?: string;
  /**
   * The library option the bad value came from (`batchSize`), printed where `field` is. Library code names
   * its settings, never a command-line flag: the CLI's error printer shows the flag the running command
   * declares for that setting (`--batch-size`), the server the request parameter.
   */
  setting?: string;
}

export function formatPlace(place: Place): string {
  const parts: string[] = [];
  if (place.file !== undefined)
    parts.push(place.line !== undefined ? `${place.file}:${place.line}` : place.file);
  else if (place.line !== undefined) parts.push(`line ${place.line}`);
  const name = placeName(place);
  if (name !== undefined) parts.push(name);
  return parts.join(": ");
}

/** The setting and field of a place as one name (`attributes.humor`); undefined when it has neither. */
export function placeName(place: Place): string | undefined {
  const name = [place.setting, place.field].filter((p) => p !== undefined).join(".");
  return name === "" ? undefined : name;
}

/** Bad user data or arguments: never a crash, always a place. */
export class InputError extends SteerlmError {
  override name = "InputError";
  constructor(
    readonly what: string,
    readonly place: Place = {},
    hint?: string,
  ) {
    const where = formatPlace(place);
    super(where ? `${where}: ${what}` : what, hint);
  }

  /** The same problem with its setting shown under the name the user knows (a CLI flag, a request field). */
  showSettingAs(name: string): InputError {
    return new InputError(this.what, { ...this.place, setting: name }, this.hint);
  }

  /** The same problem, located more precisely by an outer layer (e.g. a reader adding file and line). */
  at(place: Place): InputError {
    return new InputError(this.what, { ...place, ...definedOnly(this.place) }, this.hint);
  }
}

function definedOnly(place: Place): Place {
  const out: Place = {};
  if (place.file !== undefined) out.file = place.file;
  if (place.line !== undefined) out.line = place.line;
  if (place.field !== undefined) out.field = place.field;
  if (place.setting !== undefined) out.setting = place.setting;
  return out;
}

/** A value of the wrong shape where we can say what was expected and what arrived. */
export function expected(what: string, actual: unknown): string {
  return `expected ${what}, got ${describe(actual)}`;
}

export function describe(value: unknown): string {
  if (value === null) return "null";
  if (value === undefined) return "nothing";
  if (Array.isArray(value)) return `array of ${value.length}`;
  if (typeof value === "string")
    return JSON.stringify(value.length > 40 ? `${value.slice(0, 37)}...` : value);
  if (typeof value === "object") return "object";
  return `${typeof value} ${String(value)}`;
}
