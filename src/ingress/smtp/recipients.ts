import type { BindingSpec } from "../../control/resources/specs.ts";
import type { MailRecipient, SqliteResources } from "../../store/index.ts";
import { ConfigCache } from "../../control/resources/cache.ts";

/**
 * Recipient validation at RCPT time (docs/architecture.md#the-smtp-pipeline): `agent[+tag]@tenant.<mail domain>`, compared
 * without regard to case, names an agent that an email binding of an existing tenant lists.
 * Anything else is unknown (550 5.1.1) — one answer for an unknown tenant and an unknown agent,
 * so that senders cannot probe which tenants exist.
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

export class RecipientDirectory {
  /** Per tenant: agent → the email binding that lists it; read once per configuration change. */
  private readonly agents: ConfigCache<Map<string, string>>;

  constructor(
    resources: SqliteResources,
    private readonly mailDomain: string,
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
    const binding = (await this.agents.get(parsed.tenant)).get(parsed.agent);
    return binding === undefined
      ? null
      : { address, tenant: parsed.tenant, agent: parsed.agent, tag: parsed.tag, binding };
  }
}
