/** Errors the CLI maps to exit status 2: the command line or the input is wrong; nothing changed. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export class InputError extends Error {
  override readonly name = 'InputError';
}
