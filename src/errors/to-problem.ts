import { AppError, type ErrorKind, isAppError } from "./app-error.ts";

/** RFC 9457 problem details. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  instance?: string;
  errors?: { field: string; message: string; text?: string }[];
}

const PROBLEM_BASE = "https://agentowl.dev/problems/";

const HTTP: Record<ErrorKind, { status: number; title: string }> = {
  invalid_input: { status: 400, title: "Bad request" },
  unauthenticated: { status: 401, title: "Unauthenticated" },
  forbidden: { status: 403, title: "Forbidden" },
  not_found: { status: 404, title: "Not found" },
  conflict: { status: 409, title: "Conflict" },
  precondition_failed: { status: 412, title: "Precondition failed" },
  too_large: { status: 413, title: "Payload too large" },
  timeout: { status: 408, title: "Request timeout" },
  unsupported_media_type: { status: 415, title: "Unsupported media type" },
  rate_limited: { status: 429, title: "Too many requests" },
  storage_full: { status: 503, title: "Storage unavailable" },
  unavailable: { status: 503, title: "Service unavailable" },
  config_invalid: { status: 500, title: "Configuration invalid" },
  internal: { status: 500, title: "Internal error" },
};

export interface ProblemResponse {
  status: number;
  headers: Record<string, string>;
  body: Problem;
}

/**
 * The one mapping from any thrown value to an HTTP answer. Unexpected errors become a generic
 * 500 whose detail reveals nothing; the caller logs the real cause.
 */
export function toProblem(err: unknown, instance?: string): ProblemResponse {
  const e: AppError = isAppError(err) ? err : new AppError("internal", "internal error", { cause: err });
  const { status: base, title } = HTTP[e.kind];
  // Validation failures that list fields are 422 (the request parsed but its content is wrong).
  const status = e.kind === "invalid_input" && e.errors?.length ? 422 : base;
  const body: Problem = {
    type: PROBLEM_BASE + e.kind.replaceAll("_", "-"),
    title,
    status,
    detail: e.kind === "internal" ? "internal error" : e.detail,
    ...(instance ? { instance } : {}),
    ...(e.errors?.length ? { errors: e.errors } : {}),
  };
  const headers: Record<string, string> = { "content-type": "application/problem+json" };
  if (e.retryAfter !== undefined) headers["retry-after"] = String(Math.max(0, Math.ceil(e.retryAfter)));
  return { status, headers, body };
}

export function problemResponse(err: unknown, instance?: string): Response {
  const p = toProblem(err, instance);
  return new Response(JSON.stringify(p.body), { status: p.status, headers: p.headers });
}
