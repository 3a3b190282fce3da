import { newId } from "../core/ids.ts";
import { AppError } from "../errors/index.ts";
import {
  type NewRuntime,
  type NewTool,
  type NewToolCall,
  RUNTIME_STATES,
  type RuntimeClaim,
  type RuntimeRecord,
  type RuntimeState,
  type ToolCallRecord,
  type ToolRecord,
} from "./contract.ts";

/** The agent pool's rows as every driver makes them (the pool's rules are src/agents/'s). */

export function startingRuntime(r: NewRuntime): RuntimeRecord {
  return {
    ...r,
    node: r.node ?? null,
    state: "starting",
    tenant: null,
    agent: null,
    template: null,
    templateVersion: null,
    userConfig: null,
    pid: null,
    readyAt: null,
    claimedAt: null,
    heartbeatAt: null,
    syncedAt: null,
    stuckAt: null,
    deletedAt: null,
    destroying: false,
    error: null,
  };
}

/** The columns a claim writes on the runtime it takes. */
export function claimedColumns(claim: RuntimeClaim, now: number) {
  return {
    state: "claimed" as const,
    tenant: claim.tenant,
    agent: claim.agent,
    template: claim.template,
    templateVersion: claim.templateVersion,
    userConfig: claim.userConfig,
    cold: claim.cold,
    claimedAt: now,
    syncedAt: now,
  };
}

/**
 * Refuse a claim of an agent name its tenant has claimed on another runtime: a conflict, not the
 * unique index's constraint failure (which would fail the whole unit obscurely).
 */
export function refuseTakenAgent(
  findClaimed: (tenant: string, agent: string) => RuntimeRecord | null,
  id: string | null,
  tenant?: string | null,
  agent?: string | null,
): void {
  if (!tenant || !agent) return;
  const taken = findClaimed(tenant, agent);
  if (taken && taken.id !== id) throw new AppError("conflict", `agent ${agent} is claimed in ${tenant} already`);
}

/** A transition with nothing to change: the row as it is, if it is in one of the states given. */
export function unchangedIn(row: RuntimeRecord | null, from: readonly RuntimeState[]): RuntimeRecord | null {
  return row && from.includes(row.state) ? row : null;
}

export function zeroCounts(): Record<RuntimeState, number> {
  return Object.fromEntries(RUNTIME_STATES.map((s) => [s, 0])) as Record<RuntimeState, number>;
}

export function newTool(t: NewTool, now: number): ToolRecord {
  return { ...t, id: t.id ?? newId("tl", now), createdAt: now, updatedAt: now };
}

export function newToolCall(c: NewToolCall, now: number): ToolCallRecord {
  return { ...c, id: c.id ?? newId("tc", now), createdAt: now, finishedAt: c.finishedAt ?? null };
}
