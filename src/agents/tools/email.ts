import { isIP } from "node:net";
import type { BindingSpec } from "../../control/resources/specs.ts";
import { guardDestination, type Resolve } from "../../dispatch/egress.ts";
import { AppError } from "../../errors/index.ts";
import type { ResourceStore } from "../../store/index.ts";
import type { Provisioned, ToolCallContext, ToolContext, ToolPlugin } from "../types.ts";
import { MAILBOX, text } from "./args.ts";

/**
 * The `email` tool (docs/agents.md#tools): the address `<agent>@<tenant>.<mail_domain>`, which
 * the SMTP recipient check and routing accept while the tool is active (the pool's
 * AgentDirectory), and replies sent through the `agents_smarthost` relay, and only there: the
 * relay must be on loopback or the LAN (the egress guard decides its address, and the
 * connection goes to that address).
 */

export interface EmailDeps {
  mailDomain: string;
  /** agents_smarthost, host:port; null: the tool receives but cannot send. */
  smarthost: string | null;
  resources: ResourceStore;
  resolve?: Resolve;
  /** How long a send may take in all. */
  timeoutMs?: number;
}

const SEND_TIMEOUT_MS = 30_000;
const MAX_RECIPIENTS = 10;

export function emailPlugin(deps: EmailDeps): ToolPlugin {
  const provision = async (ctx: ToolContext): Promise<Provisioned> => {
    const address = `${ctx.agent}@${ctx.tenant}.${deps.mailDomain}`.toLowerCase();
    // A binding's address stays the binding's: the agent would never see its mail.
    for (const row of await deps.resources.list({ tenant: ctx.tenant, kind: "bindings", limit: 10_000 })) {
      const b = row.spec as BindingSpec;
      if (b.type === "email" && b.addresses?.includes(ctx.agent))
        throw new AppError("conflict", `${address} already belongs to the email binding ${b.name}`);
    }
    return { resourceId: address, config: { address } };
  };
  return {
    id: "email",
    description:
      "An address <agent>@<tenant>.<mail_domain>: its mail becomes the agent's tasks; the agent replies through the appliance's LAN smarthost.",
    provisioning: ["pool"],
    parameters: {
      type: "object",
      properties: {
        to: { type: "string", description: "the recipient's address" },
        subject: { type: "string" },
        text: { type: "string", description: "the message, plain text" },
        in_reply_to: { type: "string", description: "the Message-ID this answers, if any" },
      },
      required: ["to", "subject", "text"],
      additionalProperties: false,
    },
    create: provision,
    update: (ctx) => provision(ctx),
    // The address is the row's: once the row is destroyed, nothing accepts it.
    destroy: async () => {},
    async call(ctx: ToolCallContext): Promise<unknown> {
      if (!deps.smarthost)
        throw new AppError("unavailable", "no smarthost is configured (agents_smarthost): this email tool cannot send");
      const to = text(ctx.args, "to", 1000)!
        .split(",")
        .map((a) => a.trim())
        .filter(Boolean);
      if (!to.length || to.length > MAX_RECIPIENTS || to.some((a) => !MAILBOX.test(a)))
        throw new AppError("invalid_input", `to must be 1 to ${MAX_RECIPIENTS} plain addresses, comma-separated`);
      const subject = text(ctx.args, "subject", 998)!;
      if (/[\r\n]/.test(subject)) throw new AppError("invalid_input", "subject must be one line");
      const body = text(ctx.args, "text", 1_000_000)!;
      const inReplyTo = text(ctx.args, "in_reply_to", 998, false);
      if (inReplyTo && /[\r\n]/.test(inReplyTo)) throw new AppError("invalid_input", "in_reply_to must be one line");

      const { host, port } = splitHostPort(deps.smarthost);
      // Only the LAN: the guard picks the address, and the transport connects to it, never resolving again.
      const to_ = await guardDestination(host, { allowPublic: false, resolve: deps.resolve }).catch((e) => {
        throw new AppError("forbidden", `the smarthost ${deps.smarthost}: ${(e as Error).message}`);
      });
      const timeout = deps.timeoutMs ?? SEND_TIMEOUT_MS;
      // Loaded by the first send: an appliance whose agents send no mail never pays for nodemailer (about 3 MB).
      const { createTransport } = await import("nodemailer");
      const transport = createTransport({
        host: to_.address,
        port,
        secure: false,
        // STARTTLS when the relay offers it; a LAN relay's certificate is rarely one a public CA signed.
        tls: { rejectUnauthorized: false, ...(isIP(host) ? {} : { servername: host }) },
        connectionTimeout: timeout,
        greetingTimeout: timeout,
        socketTimeout: timeout,
      });
      try {
        const info = await transport.sendMail({
          from: ctx.resource.resourceId!,
          to,
          subject,
          text: body,
          ...(inReplyTo ? { inReplyTo, references: inReplyTo } : {}),
        });
        return { message_id: info.messageId, accepted: info.accepted, rejected: info.rejected };
      } finally {
        transport.close();
      }
    },
  };
}

function splitHostPort(value: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+))(?::(\d{1,5}))?$/.exec(value);
  if (!m) throw new AppError("config_invalid", `agents_smarthost ${value} is not host:port`);
  return { host: m[1] ?? m[2]!, port: m[3] ? Number(m[3]) : 25 };
}
