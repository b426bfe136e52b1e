// A bad input from the user (option, file, value): the CLI prints the message on one
// line and exits 2. Everything else is a failure of ours or of the GPU (exit 1).

export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export function usage(message: string): never {
  throw new UsageError(message);
}

/** Re-throws any failure of `work` as a UsageError: for steps whose only way to fail is a
 *  bad input (a missing or malformed file the user named). */
export async function asUsage<T>(work: Promise<T> | (() => T)): Promise<T> {
  try {
    return await (typeof work === 'function' ? work() : work);
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError((e as Error).message, { cause: e });
  }
}
