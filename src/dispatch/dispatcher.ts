import { OperatorActions } from "./actions.ts";
import { type AgentTargets, type DispatcherDeps, dispatchContext } from "./context.ts";
import { FastAttempts } from "./fast-path.ts";
import { approvalFollower, endpointFollower } from "./followers.ts";
import { Routing } from "./routing.ts";
import { deliveryRun } from "./run.ts";
import { DispatchStatus } from "./status.ts";

/**
 * The dispatcher (docs/architecture.md#dispatch, docs/state-machines.md): routing turns an event
 * into one delivery (the task) per target, and a `delivery.run` job takes each through policy, an
 * approval when the policy asks for one, and signed HTTP attempts with retries until it is
 * delivered, dead, denied or quarantined. The delivery row is the task's checkpoint: a job that
 * runs again (a crash, a retry) starts from the state it finds. Every attempt is preceded by its
 * audit entry, committed before the request leaves.
 *
 * This module wires the parts, each given the shared context (context.ts): routing.ts (and the
 * fast path's attempts, fast-path.ts), run.ts (the job), delivery.ts (the one writer of delivery
 * state), endpoint-slots.ts and gate.ts (an endpoint's places and circuit), connections.ts,
 * actions.ts (what operators do), followers.ts (approvals, endpoint changes), status.ts.
 */

export { AGENT_TARGET, type AgentTargets, agentOf, DELIVERY_JOB, type DispatcherDeps } from "./context.ts";
export { recoverFastAttempts } from "./fast-path.ts";
export type { Waiting } from "./status.ts";

export function dispatcher(deps: DispatcherDeps) {
  const ctx = dispatchContext(deps);
  const fast = new FastAttempts(ctx);
  const routing = new Routing(ctx, fast);
  const actions = new OperatorActions(ctx);
  const status = new DispatchStatus(ctx);
  return {
    router: routing.router,
    inline: routing.inline,
    approvals: approvalFollower(ctx),
    endpointChanges: endpointFollower(actions),
    run: deliveryRun(ctx),
    replay: (eventId: string, opts: { endpoint?: string; actor: string }) => actions.replay(eventId, opts),
    retry: (d: Parameters<OperatorActions["retry"]>[0], actor: string) => actions.retry(d, actor),
    discard: (d: Parameters<OperatorActions["discard"]>[0], actor: string) => actions.discard(d, actor),
    resetCircuit: (tenant: string, name: string, actor: string) => actions.resetCircuit(tenant, name, actor),
    waitingFor: (d: Parameters<DispatchStatus["waitingFor"]>[0]) => status.waitingFor(d),
    endpointStatus: (tenant: string, name: string) => status.endpointStatus(tenant, name),
    breakers: ctx.breakers,
    /** An endpoint's spec as configured now (the agents' http tool calls named endpoints). */
    endpoint: (tenant: string, name: string) => ctx.endpoint(tenant, name),
    /** The policies that decide for a tenant, compiled and cached (the agents' tool calls use them too). */
    policies: (tenant: string) => ctx.policies(tenant),
    /** The agent pool's side of `agent:<name>` targets (the pool starts after the dispatcher). */
    setAgentTargets: (targets: AgentTargets | null) => {
      ctx.targets = targets;
    },
    /** Wait up to `ms` for fast-path attempts in flight; false when some were cut off (recovered at the next start). */
    drain: (ms: number) => fast.drain(ms),
    /** Close the kept-alive connections (at shutdown). */
    close: () => ctx.connections.close(),
    inFlight: (key: string) => ctx.slots.inFlight(key),
  };
}
