import { ConfigCache } from "../../control/resources/cache.ts";
import type { BindingSpec } from "../../control/resources/specs.ts";
import { type Clock, systemClock } from "../../core/clock.ts";
import type { MailRecipient, ResourceStore } from "../../store/index.ts";
import { RateLimiter } from "../rate-limit.ts";
import { SmtpReply } from "./guard.ts";

/**
 * Recipient validation at RCPT time (docs/architecture.md#the-smtp-pipeline): `agent[+tag]@tenant.<mail domain>`, compared
 * without regard to case, names an agent that an email binding of an existing tenant lists, or
 * one whose active `email` tool provisioned that address (`AgentAddresses`).
 * Anything else is unknown (550 5.1.1) — one answer for an unknown tenant and an unknown agent,
 * so that senders cannot probe which tenants exist. A known recipient then takes a token from
 * its tenant's rate limit (smtp_rate_per_tenant; 451 4.7.1 when there is none). The cap on
 * recipients per message (smtp_max_recipients, 452 4.5.3) is smtp-server's, set by the listener:
 * it answers before this stage runs.
 */

export interface ParsedAddress {
  agent: string;
  tag: string | null;
  tenant: string;
}

/** Split `agent+tag@tenant.<domain>`; null when it is not an address of this appliance. */
export function parseRecipient(address: string, mailDomain: string): ParsedAddress | null {
  const at = address.lastIndexOf("@");
  if (at <= 0) return null;
  const local = address.slice(0, at).toLowerCase();
  const domain = address
    .slice(at + 1)
    .toLowerCase()
    .replace(/\.$/, "");
  const suffix = `.${mailDomain}`;
  if (!domain.endsWith(suffix)) return null;
  const tenant = domain.slice(0, -suffix.length);
  if (!tenant || tenant.includes(".")) return null;
  const plus = local.indexOf("+");
  const agent = plus < 0 ? local : local.slice(0, plus);
  if (!agent) return null;
  return { agent, tag: plus < 0 ? null : local.slice(plus + 1) || null, tenant };
}

/**
 * Addresses an agent's active `email` tool provisioned (`<agent>@<tenant>.<mail domain>`), kept
 * in memory by the agent pool (src/agents/): accepted while the tool is active, as if a binding
 * listed them. `binding` is what the event's source names (the tool's, e.g. `agent:<agent>`).
 */
export interface AgentAddresses {
  lookup(tenant: string, agent: string): { binding: string } | null;
}

export class RecipientDirectory {
  /** Per tenant: agent → the email binding that lists it; read once per configuration change. */
  private readonly agents: ConfigCache<Map<string, string>>;

  constructor(
    resources: ResourceStore,
    private readonly mailDomain: string,
    private readonly agentAddresses?: AgentAddresses,
  ) {
    this.agents = new ConfigCache(resources, async (tenant) => {
      const out = new Map<string, string>();
      for (const row of await resources.list({ tenant, kind: "bindings", limit: 10_000 })) {
        const b = row.spec as BindingSpec;
        if (b.type === "email") for (const a of b.addresses ?? []) out.set(a, b.name);
      }
      return out;
    });
  }

  /** The recipient resolved to its tenant, agent and binding, or null when it is not ours. */
  async resolve(address: string): Promise<MailRecipient | null> {
    const parsed = parseRecipient(address, this.mailDomain);
    if (!parsed) return null;
    const binding =
      (await this.agents.get(parsed.tenant)).get(parsed.agent) ??
      this.agentAddresses?.lookup(parsed.tenant, parsed.agent)?.binding;
    return binding === undefined
      ? null
      : { address, tenant: parsed.tenant, agent: parsed.agent, tag: parsed.tag, binding };
  }
}

/** The RCPT stage: the recipient resolved and its tenant's rate limit taken, or the SmtpReply that refuses it. */
export class RecipientStage {
  private readonly directory: RecipientDirectory;
  private readonly tenantRate: RateLimiter;

  constructor(deps: {
    resources: ResourceStore;
    mailDomain: string;
    ratePerTenant: number;
    clock?: Clock;
    agentAddresses?: AgentAddresses;
  }) {
    this.directory = new RecipientDirectory(deps.resources, deps.mailDomain, deps.agentAddresses);
    this.tenantRate = new RateLimiter(deps.ratePerTenant, deps.ratePerTenant, deps.clock ?? systemClock);
  }

  async check(address: string): Promise<MailRecipient> {
    const recipient = await this.directory.resolve(address);
    if (!recipient) throw new SmtpReply(550, "5.1.1", `<${address}>: no such recipient here`);
    if (!this.tenantRate.take(recipient.tenant)) {
      throw new SmtpReply(
        451,
        "4.7.1",
        `<${address}>: too much mail for this recipient right now; try again later`,
        "rate_limited",
      );
    }
    return recipient;
  }
}
