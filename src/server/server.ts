import type { Server } from "bun";
import { Elysia } from "elysia";
import type { Logger } from "../core/log.ts";
import type { Metrics } from "../core/metrics.ts";
import { AppError, type FieldError, isAppError, toProblem } from "../errors/index.ts";

export interface ReadyCheck {
  ok: boolean;
  detail?: string;
}

/** A Bun.serve route handler: the request with its path parameters, and the server (for the client's address). */
export type RawRoute = (
  request: Request & { params: Record<string, string> },
  server: Server<unknown>,
) => Response | Promise<Response>;

export interface HttpDeps {
  log: Logger;
  metrics: Metrics;
  version: string;
  /** Readiness: every check must be ok. */
  ready(): Promise<Record<string, ReadyCheck>>;
  /**
   * Bun.serve routes the listener serves ahead of the app (the webhook ingress: src/ingress/http/webhook.ts).
   * Each answers as the app would (problem+json, agentowl_http_requests_total); `app.handle` and
   * the plain listener do not see them, so the app mounts the same handlers as well.
   */
  routes?: Record<string, Partial<Record<"POST", RawRoute>>>;
}

/** Elysia's framework errors, turned into the appliance's error kinds. */
function fromFramework(code: string | number, error: unknown): unknown {
  switch (code) {
    case "NOT_FOUND":
      return new AppError("not_found", "no such route");
    case "PARSE": {
      // A parser of ours refuses with its own kind (401 before the body is read, 413, 415, 422).
      const cause = (error as { cause?: unknown }).cause;
      return isAppError(cause) ? cause : new AppError("invalid_input", "the request body could not be parsed");
    }
    case "VALIDATION": {
      const all = ((error as { all?: { path?: string; summary?: string; message?: string }[] }).all ?? []).map(
        (e): FieldError => ({ field: e.path || "/", message: e.summary ?? e.message ?? "invalid" }),
      );
      return new AppError("invalid_input", "the request is not valid", {
        errors: all.length ? all : [{ field: "/", message: "invalid" }],
      });
    }
    case "INVALID_COOKIE_SIGNATURE":
      return new AppError("unauthenticated", "invalid session");
    default:
      return error;
  }
}

/**
 * The one HTTP listener (docs/api.md). This issue serves health, readiness and metrics; the API,
 * ingress and console mount onto the same app. Every error leaves as RFC 9457 problem+json.
 */
export function createHttpApp(deps: HttpDeps) {
  // normalize: false everywhere in the API: by default Elysia strips unknown fields from a body
  // (and turns [] into {}) instead of refusing them; an unknown field must be a 422, not ignored.
  const errored = new WeakMap<Request, number>();
  return new Elysia({ normalize: false, ...(deps.routes ? { serve: { routes: deps.routes as never } } : {}) })
    .onError(({ code, error, request, path }) => {
      const p = toProblem(fromFramework(code, error), path);
      if (p.status >= 500) deps.log.error("request failed", { method: request.method, path, err: error });
      errored.set(request, p.status);
      return new Response(JSON.stringify(p.body), { status: p.status, headers: p.headers });
    })
    .onAfterResponse(({ request, route, set }) => {
      const status = errored.get(request) ?? (typeof set.status === "number" ? set.status : 200);
      deps.metrics.httpRequests.inc({ method: request.method, route: route || "unmatched", status: String(status) });
    })
    .get("/healthz", () => ({ status: "ok", version: deps.version }))
    .get("/readyz", async () => {
      const checks = await deps.ready();
      const ok = Object.values(checks).every((c) => c.ok);
      if (ok) return { status: "ready", checks };
      const failing = Object.entries(checks)
        .filter(([, c]) => !c.ok)
        .map(([name, c]) => `${name}: ${c.detail ?? "failing"}`);
      const p = toProblem(
        new AppError("unavailable", `not ready (${failing.join("; ")})`, { retryAfter: 5 }),
        "/readyz",
      );
      return new Response(JSON.stringify({ ...p.body, checks }), { status: p.status, headers: p.headers });
    })
    .get(
      "/metrics",
      async () => new Response(await deps.metrics.render(), { headers: { "content-type": deps.metrics.contentType } }),
    );
}

export type HttpApp = ReturnType<typeof createHttpApp>;
