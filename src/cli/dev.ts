import { readFileSync } from "node:fs";
import { parseListen } from "../config/index.ts";
import { verifyRequest } from "../ingress/http/index.ts";
import { type Command, stringOpt } from "./command.ts";
import { EXIT, UsageError } from "./exit-codes.ts";

/**
 * `agentowl dev receiver`: a webhook receiver for trying the appliance out. It listens on
 * loopback (the example file's endpoints point at it), prints one line per delivery, and checks
 * the Standard Webhooks signature when it is given the endpoint's signing secret. Nothing is kept.
 */
const receiverCommand: Command = {
  name: ["dev", "receiver"],
  summary: "a local webhook receiver that prints each delivery (for trying things out)",
  help: `Usage: agentowl dev receiver [--listen HOST:PORT] [--secret-file FILE] [--status CODE] [--json]

Listens on 127.0.0.1:9000 (or --listen) and prints one line per POST it receives: the time, the
webhook-id, the event's type, tenant and agent, and a summary (a mail's sender and subject). With
--secret-file, the file holds the endpoint's signing secret (whsec_…, the value given to
'agentowl vault set') and each delivery's Standard Webhooks signature is checked: valid, or
INVALID with the reason. --status answers every delivery with that HTTP status (e.g. 503, to
watch the appliance retry); 200 by default. --json prints each delivery's headers and body as one
JSON line. Runs until Ctrl-C.`,
  options: {
    listen: { type: "string" },
    "secret-file": { type: "string" },
    status: { type: "string" },
    json: { type: "boolean" },
  },
  async run({ values }, io) {
    const listen = parseListen(stringOpt(values, "listen") ?? "127.0.0.1:9000");
    if (!listen) throw new UsageError("--listen takes HOST:PORT, e.g. 127.0.0.1:9000");
    const status = Number(stringOpt(values, "status") ?? 200);
    if (!Number.isInteger(status) || status < 200 || status > 599)
      throw new UsageError("--status takes an HTTP status from 200 to 599");
    const secretFile = stringOpt(values, "secret-file");
    let secret: string | undefined;
    if (secretFile !== undefined) {
      try {
        secret = readFileSync(secretFile, "utf8").trim();
      } catch (e) {
        throw new UsageError(
          `cannot read --secret-file ${secretFile}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
        );
      }
    }
    const server = Bun.serve({
      hostname: listen.host,
      port: listen.port,
      maxRequestBodySize: 64 * 1024 * 1024,
      async fetch(req) {
        const body = new Uint8Array(await req.arrayBuffer());
        const headers = Object.fromEntries(req.headers);
        io.out(
          values.json
            ? `${JSON.stringify({ method: req.method, path: new URL(req.url).pathname, headers, body: new TextDecoder().decode(body) })}\n`
            : `${describe(req, body, secret)}\n`,
        );
        return new Response(null, { status });
      },
    });
    io.err(
      `agentowl dev receiver: listening on http://${listen.host.includes(":") ? `[${listen.host}]` : listen.host}:${server.port}/ (Ctrl-C to stop)\n`,
    );
    const signal = io.untilInterrupted?.() ?? new AbortController().signal;
    await new Promise<void>((resolve) =>
      signal.aborted ? resolve() : signal.addEventListener("abort", () => resolve(), { once: true }),
    );
    await server.stop(true);
    return EXIT.ok;
  },
};

/** One line: time, webhook-id, type, tenant/agent, a summary, and the signature's verdict. */
function describe(req: Request, body: Uint8Array, secret: string | undefined): string {
  let event: Record<string, any> = {};
  try {
    event = JSON.parse(new TextDecoder().decode(body));
  } catch {
    // Not an envelope: the line says so below.
  }
  const data = (event.data ?? {}) as Record<string, any>;
  const from = data.from?.address ?? data.from?.text ?? (typeof data.from === "string" ? data.from : undefined);
  const summary =
    event.type === "email.received"
      ? `from ${from ?? "?"}: ${JSON.stringify(data.subject ?? "")}`
      : event.type
        ? ""
        : `${body.byteLength} bytes, not an event envelope`;
  let signature = "unchecked (no --secret-file)";
  if (secret !== undefined) {
    const v = verifyRequest({ scheme: "standard-webhooks", secret }, req.headers, body);
    signature = v.ok ? "valid" : `INVALID (${v.detail})`;
  }
  const who = event.tenant ? `${event.tenant}${event.agent ? `/${event.agent}` : ""}` : "-";
  return [
    new Date().toISOString().slice(11, 23),
    req.headers.get("webhook-id") ?? "-",
    event.type ?? "-",
    who,
    summary,
    `signature ${signature}`,
  ]
    .filter(Boolean)
    .join("  ");
}

export const DEV_COMMANDS: readonly Command[] = [receiverCommand];
