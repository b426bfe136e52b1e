// The library's error classes. UsageError: a bad input from the caller (option, file, value,
// model folder): the CLI prints the message on one line and exits 2. NetworkError: the model's
// bytes could not be fetched (connection, interrupted transfer, server error). GpuError: no
// adapter, a WebGPU validation error or a lost device. An abort rejects with the signal's
// reason, as fetch does. Anything else is a bug of ours.
//
// The exit-code contract (README "Exit status"): a UsageError — bad options, files, configs,
// weights — exits 2; a NetworkError, a GpuError or any other failure (the environment: network,
// GPU, disk; or a bug) exits 1, whatever phase it happens in. Messages may quote what a file
// holds; every class escapes control characters in its message (escapeControls), so no file
// can write terminal escape codes through an error.

/** C0 and C1 controls (but newline), DEL, and the bidirectional overrides and isolates, as
 *  \xNN or \uNNNN: text from a file or the network is then inert on a terminal. */
export function escapeControls(text: string): string {
  return text.replace(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, (c) => {
    const code = c.charCodeAt(0);
    return code < 0x100 ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
  });
}

/** A value or some file contents for a message: at most `max` characters (then "…"), escaped. */
export function excerpt(text: string, max = 60): string {
  const chars = [...text];
  return escapeControls(chars.length > max ? `${chars.slice(0, max).join('')}…` : text);
}

export class UsageError extends Error {
  override readonly name: string = 'UsageError';
  /** The API option at fault ('width', 'steps', …) when the message is about one; the CLI
   *  names the matching flag instead. */
  readonly option: string | undefined;

  constructor(message: string, options: ErrorOptions & { option?: string } = {}) {
    super(escapeControls(message), options);
    this.option = options.option;
  }
}

export class NetworkError extends Error {
  override readonly name: string = 'NetworkError';

  constructor(message: string, options?: ErrorOptions) {
    super(escapeControls(message), options);
  }
}

export class GpuError extends Error {
  override readonly name: string = 'GpuError';

  constructor(message: string, options?: ErrorOptions) {
    super(escapeControls(message), options);
  }
}

/** A generation whose output came out NaN or ±Inf from finite weights (the computation
 *  overflowed): no image is returned. */
export class NonFiniteError extends GpuError {
  override readonly name: string = 'NonFiniteError';
}

/** Throws a UsageError; `option` names the API option the message starts with. */
export function usage(message: string, option?: string): never {
  throw new UsageError(message, option === undefined ? {} : { option });
}

/** Re-throws any failure of `work` as a UsageError: for steps whose only way to fail is a
 *  bad input (a missing or malformed file the user named). Network failures stay what they are. */
export async function asUsage<T>(work: Promise<T> | (() => T)): Promise<T> {
  try {
    return await (typeof work === 'function' ? work() : work);
  } catch (e) {
    if (e instanceof UsageError || e instanceof NetworkError) throw e;
    throw new UsageError((e as Error).message, { cause: e });
  }
}

