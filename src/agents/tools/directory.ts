import type { Envelope } from "../../events/envelope.ts";
import type { ToolRecord } from "../types.ts";

/**
 * Where the agents' inbound tools lead (docs/agents.md#tools), in memory: the pool keeps it
 * (loaded from the active tool rows at start, changed as tools are provisioned and destroyed).
 * It answers the SMTP recipient check (an active `email` tool's address is accepted: `lookup`,
 * the ingress's AgentAddresses) and routing (an event an active `email`, `webhook` or `sms` tool
 * receives goes to its agent: `routesFor`, part of dispatch's AgentTargets).
 */
export class AgentDirectory {
  /** tenant/agent → the tool ids of its active email tools. */
  private readonly emails = new Map<string, Set<string>>();
  /** tenant/binding → agents. */
  private readonly webhooks = new Map<string, Map<string, string>>();
  /** number → tenant/agent by tool. */
  private readonly numbers = new Map<string, Map<string, { tenant: string; agent: string }>>();
  private readonly byTool = new Map<string, () => void>();

  /** An active tool of `agent` (again: replaces what the same row said before). */
  add(tool: ToolRecord, agent: string): void {
    this.remove(tool.id);
    if (tool.state !== "active" || !tool.resourceId) return;
    const { id, tenant } = tool;
    if (tool.plugin === "email") {
      const key = `${tenant}/${agent}`;
      const set = this.emails.get(key) ?? new Set();
      set.add(id);
      this.emails.set(key, set);
      this.byTool.set(id, () => {
        set.delete(id);
        if (!set.size) this.emails.delete(key);
      });
    } else if (tool.plugin === "webhook") {
      const key = tool.resourceId;
      const map = this.webhooks.get(key) ?? new Map<string, string>();
      map.set(id, agent);
      this.webhooks.set(key, map);
      this.byTool.set(id, () => {
        map.delete(id);
        if (!map.size) this.webhooks.delete(key);
      });
    } else if (tool.plugin === "sms") {
      const key = tool.resourceId;
      const map = this.numbers.get(key) ?? new Map();
      map.set(id, { tenant, agent });
      this.numbers.set(key, map);
      this.byTool.set(id, () => {
        map.delete(id);
        if (!map.size) this.numbers.delete(key);
      });
    }
  }

  /** A tool that is no longer active. */
  remove(toolId: string): void {
    this.byTool.get(toolId)?.();
    this.byTool.delete(toolId);
  }

  /** AgentAddresses (src/ingress/smtp/recipients.ts): an active email tool's address. */
  lookup(tenant: string, agent: string): { binding: string } | null {
    return this.emails.has(`${tenant}/${agent}`) ? { binding: `agent:${agent}` } : null;
  }

  /** The agents whose active inbound tool receives this event, each once, in a stable order. */
  routesFor(e: Envelope): string[] {
    const out = new Set<string>();
    if (e.channel === "email") {
      const agents = (e.data as { agents?: unknown }).agents;
      for (const a of Array.isArray(agents) ? agents : [e.agent])
        if (typeof a === "string" && this.emails.has(`${e.tenant}/${a}`)) out.add(a);
    } else if (e.channel === "webhook") {
      for (const agent of this.webhooks.get(`${e.tenant}/${e.source.binding}`)?.values() ?? []) out.add(agent);
    } else if (e.channel === "sms") {
      const to = (e.data as { to?: unknown }).to;
      for (const n of Array.isArray(to) ? to : [to])
        for (const owner of (typeof n === "string" && this.numbers.get(n)?.values()) || [])
          if (owner.tenant === e.tenant) out.add(owner.agent);
    }
    return [...out].sort();
  }
}
