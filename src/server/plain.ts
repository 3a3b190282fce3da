import type { Server } from "bun";
import { AppError, problemResponse } from "../errors/index.ts";
import { plainAccess } from "./tls.ts";

export interface PlainListenerOptions {
  hostname: string;
  port: number;
  /** The app's own handler: the plain listener serves the same app as the HTTPS one. */
  fetch: (request: Request) => Response | Promise<Response>;
  /** The main (HTTPS) listener's URL, named in the refusal. */
  mainUrl: string;
  /** Whether tenant/binding is a webhook binding with `plain_http: true`. */
  allowsPlain: (tenant: string, binding: string) => Promise<boolean>;
}

/** The raw path as the router sees it (no dot-segment folding), without the query. */
function rawPath(url: string): string {
  const start = url.indexOf("/", url.indexOf("//") + 2);
  const path = start < 0 ? "/" : url.slice(start);
  const q = path.search(/[?#]/);
  return q < 0 ? path : path.slice(0, q);
}

/**
 * The second, plain-HTTP listener (http_plain_listen) for LAN systems that cannot do HTTPS.
 * Loopback clients get the whole app; others only `/healthz` and the webhooks of bindings that
 * opted in. Everything else is refused before the app sees it, with the same 403 for a binding
 * that did not opt in and one that does not exist (no probing for names over plain HTTP).
 */
export function servePlain(opts: PlainListenerOptions): Server<undefined> {
  const main = new URL(opts.mainUrl);
  const wildcard = main.hostname === "0.0.0.0" || main.hostname === "[::]";
  const refuse = (request: Request, path: string): Response => {
    // A listener on every address is named by the host the client used to reach this one.
    const there = new URL(main);
    if (wildcard) there.hostname = new URL(request.url).hostname;
    return problemResponse(
      new AppError(
        "forbidden",
        `this plain-HTTP listener serves only /healthz and the webhooks of bindings with plain_http: true; use ${there.origin}`,
      ),
      path,
    );
  };
  return Bun.serve({
    hostname: opts.hostname,
    port: opts.port,
    // Elysia turns SO_REUSEPORT on for its listener; here too, a second process must not share the port.
    reusePort: false,
    idleTimeout: 30,
    async fetch(request, server) {
      const path = rawPath(request.url);
      const decision = plainAccess(request.method, path, server.requestIP(request)?.address ?? null);
      if (decision.kind === "allow") return opts.fetch(request);
      if (decision.kind === "binding" && (await opts.allowsPlain(decision.tenant, decision.binding)))
        return opts.fetch(request);
      return refuse(request, path);
    },
  });
}
