/**
 * One error model for the whole appliance. Code that fails says *what kind* of failure it is;
 * the edges (HTTP problem+json, SMTP reply codes, CLI exit codes) pick the wire answer in one
 * place each. `detail` is safe to show to the caller; `cause` is for the logs only.
 */
export const ERROR_KINDS = [
  "invalid_input",
  "unauthenticated",
  "forbidden",
  "not_found",
  "conflict",
  "precondition_failed",
  "too_large",
  "timeout",
  "unsupported_media_type",
  "rate_limited",
  "storage_full",
  "unavailable",
  "config_invalid",
  "internal",
] as const;
export type ErrorKind = (typeof ERROR_KINDS)[number];

export interface FieldError {
  /** Where: a JSON pointer into the body (`/retry/max_attempts`), or `file:line:col` in a file. */
  field: string;
  message: string;
  /** The whole problem as one line for people, when `field` + `message` is not enough. */
  text?: string;
}

export interface AppErrorOptions {
  cause?: unknown;
  /** Validation failures: every field at fault. */
  errors?: FieldError[];
  /** Seconds a client should wait (rate_limited, storage_full, unavailable). */
  retryAfter?: number;
}

export class AppError extends Error {
  override readonly name = "AppError";
  readonly errors: FieldError[] | undefined;
  readonly retryAfter: number | undefined;

  constructor(
    readonly kind: ErrorKind,
    readonly detail: string,
    opts: AppErrorOptions = {},
  ) {
    super(detail, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.errors = opts.errors;
    this.retryAfter = opts.retryAfter;
  }
}

export function isAppError(e: unknown): e is AppError {
  return e instanceof AppError;
}

/** Filesystem errors that mean "the disk cannot take it now", not "our bug". */
const DISK_UNAVAILABLE = new Set(["ENOSPC", "EDQUOT", "EROFS", "EIO", "EFBIG", "EACCES", "EPERM", "ENOENT"]);
const SQLITE_UNAVAILABLE = /^SQLITE_(FULL|READONLY|IOERR|CANTOPEN)/;

/**
 * Whether a failure is the storage's (a full, read-only or failing disk, for the database or a
 * file): the one classifier every edge uses, so that such a failure reaches the client as "try
 * again later" (SMTP 452 4.3.1, HTTP 503), never as a permanent failure or a lost message.
 */
export function isStorageUnavailable(e: unknown): boolean {
  if (isAppError(e)) return e.kind === "storage_full";
  const code = (e as { code?: unknown })?.code;
  if (typeof code === "string") return DISK_UNAVAILABLE.has(code) || SQLITE_UNAVAILABLE.test(code);
  return /SQLITE_(FULL|READONLY|IOERR|CANTOPEN)|ENOSPC|EROFS/.test(String((e as Error)?.message ?? e));
}

/**
 * Classify a SQLite failure. A full or read-only disk must reach the client as "try again
 * later" (SMTP 452 4.3.1, HTTP 503), never as a permanent failure or a lost message.
 */
export function fromStorageError(e: unknown, doing: string): AppError {
  if (isAppError(e)) return e;
  const code = (e as { code?: unknown })?.code;
  const text = typeof code === "string" ? code : String((e as Error)?.message ?? e);
  if (isStorageUnavailable(e)) {
    return new AppError("storage_full", "storage is full or read-only", { cause: e, retryAfter: 60 });
  }
  if (/SQLITE_BUSY|SQLITE_LOCKED|database is locked/.test(text)) {
    return new AppError("unavailable", "storage is busy", { cause: e, retryAfter: 1 });
  }
  return new AppError("internal", `storage failure while ${doing}`, { cause: e });
}
