import type { Agent } from "node:http";
import type { EndpointSpec } from "../control/resources/specs.ts";
import { keepAliveAgent } from "./post.ts";

/** A kept-alive connection nobody used for this long is closed. */
const IDLE_SOCKET_MS = 15_000;

/**
 * The kept-alive connections to each endpoint: one agent per endpoint, URL, egress setting and
 * in-flight limit. A connection is checked by the egress guard when it is made (src/dispatch/post.ts)
 * and reused while the endpoint keeps it open; one idle for 15 s is closed.
 */
export class Connections {
  private readonly agents = new Map<string, Agent>();

  /** @param drainMs how long an endpoint's replaced agent keeps serving the attempts still on it (the longest attempt). */
  constructor(
    private readonly defaultMaxInFlight: number,
    private readonly drainMs: number,
  ) {}

  /** The last agent handed out for each endpoint spec (specs are replaced, not changed): its key, without building it again per attempt. */
  private readonly bySpec = new WeakMap<EndpointSpec, { tenant: string; name: string; id: string; agent: Agent }>();

  /** The agent for attempts to `tenant/name` as `endpoint` now says. */
  for(tenant: string, name: string, endpoint: EndpointSpec): Agent {
    const known = this.bySpec.get(endpoint);
    if (known && known.tenant === tenant && known.name === name && this.agents.get(known.id) === known.agent)
      return known.agent;
    const maxSockets = endpoint.max_in_flight ?? this.defaultMaxInFlight;
    const id = `${tenant}/${name}|${endpoint.url}|${endpoint.allow_public === true}|${maxSockets}`;
    let agent = this.agents.get(id);
    if (!agent) {
      // The endpoint changed: its old connections serve the attempts still on them, then close.
      for (const [k, old] of this.agents) {
        if (k.startsWith(`${tenant}/${name}|`)) {
          this.agents.delete(k);
          setTimeout(() => old.destroy(), this.drainMs + IDLE_SOCKET_MS).unref();
        }
      }
      agent = keepAliveAgent(endpoint.url, { maxSockets, idleMs: IDLE_SOCKET_MS });
      this.agents.set(id, agent);
    }
    this.bySpec.set(endpoint, { tenant, name, id, agent });
    return agent;
  }

  /** Close every kept-alive connection (at shutdown). */
  close(): void {
    for (const a of this.agents.values()) a.destroy();
    this.agents.clear();
  }
}
