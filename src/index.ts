// The public library API: everything the CLI does is reachable from here.
export { InputError, SteerlmError } from "./util/errors.js";
export { version } from "./version.js";
