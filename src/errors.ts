// The library's error classes. UsageError: a bad input from the caller (option, file, value,
// model folder): the CLI prints the message on one line and exits 2. NetworkError: the model's
// bytes could not be fetched (connection, interrupted transfer, server error). GpuError: no
// adapter, a WebGPU validation error or a lost device. An abort rejects with the signal's
// reason, as fetch does. Anything else is a bug of ours.

export class UsageError extends Error {
  override readonly name: string = 'UsageError';
  /** The API option at fault ('width', 'steps', …) when the message is about one; the CLI
   *  names the matching flag instead. */
  readonly option: string | undefined;

  constructor(message: string, options: ErrorOptions & { option?: string } = {}) {
    super(message, options);
    this.option = options.option;
  }
}

export class NetworkError extends Error {
  override readonly name: string = 'NetworkError';
}

export class GpuError extends Error {
  override readonly name: string = 'GpuError';
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

