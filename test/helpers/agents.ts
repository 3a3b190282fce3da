/**
 * The agent pool's test parts: the real launcher with a test's isolation, a runtime that goes
 * silent after its hello, and a tool provisioner that records what it did, in order, on real rows.
 */
import { existsSync, realpathSync } from "node:fs";
import { detectIsolation, launchRuntime } from "../../src/agents/sandbox/index.ts";
import type { Isolation, LaunchedRuntime, LaunchSpec, ToolProvisioner, ToolRecord } from "../../src/agents/types.ts";
import type { Storage } from "../../src/store/index.ts";

const BUN = realpathSync(process.execPath);

/** A runtime that answers hello and configure, then stays silent: no heartbeats. */
export const SILENT_RUNTIME = [
  BUN,
  "-e",
  `const s = require("node:net").createConnection(process.env.AGENTOWL_RUNTIME_SOCKET);
   let buf = "";
   s.on("data", (d) => {
     buf += d;
     let i;
     while ((i = buf.indexOf("\\n")) >= 0) {
       const m = JSON.parse(buf.slice(0, i));
       buf = buf.slice(i + 1);
       if (m.id === undefined) continue;
       const result = m.type === "hello" ? { token: process.env.AGENTOWL_RUNTIME_TOKEN } : {};
       s.write(JSON.stringify({ id: m.id, type: "result", ok: true, result }) + "\\n");
     }
   });
   s.on("close", () => process.exit(0));`,
] as const;

/**
 * The real launcher (src/agents/sandbox/) with the best isolation this machine has, or the one
 * asked for; a test's own command (Bun with a script) gets Bun bound into the sandbox.
 */
export function sandboxLauncher(isolation?: Isolation): {
  isolation: { isolation: Isolation; reason: string | null };
  launch: (spec: LaunchSpec) => LaunchedRuntime;
} {
  const info = isolation
    ? { isolation, reason: isolation === "process" ? "asked for by the test" : null }
    : detectIsolation();
  return {
    isolation: info,
    launch: (spec) =>
      launchRuntime(spec.command ? { ...spec, readOnlyPaths: [BUN] } : spec, { isolation: info.isolation }),
  };
}

/** True while a process with this pid exists. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export interface ProvisionerEvent {
  what: "provision" | "destroy";
  runtime: string;
  tools: string[];
  /** At destroy: whether the runtime's process and directory were still there. */
  processAlive?: boolean;
  dirExists?: boolean;
}

/** Tools as rows only: each template tool becomes a row, active once provisioned; destroy marks them destroyed. */
export function recordingProvisioner(storage: Pick<Storage, "agents" | "committer">): ToolProvisioner & {
  events: ProvisionerEvent[];
} {
  const events: ProvisionerEvent[] = [];
  return {
    events,
    planTools: (req) => ({ tools: req.tools, credentials: req.credentials }),
    recordToolsTx: (tx, rt, plan) =>
      plan.tools.map((t) =>
        storage.agents.insertToolTx(tx, {
          runtimeId: rt.id,
          tenant: rt.tenant!,
          tool: t.id,
          plugin: t.id.split(".")[0]!,
          provisioning: t.provisioning,
          state: "creating",
          resourceId: null,
          config: {},
          secretRef: null,
        }),
      ),
    async provisionTools(rt, _plan, rows) {
      const tools = !rows.length
        ? []
        : await storage.committer.run((tx) =>
            rows.map(
              (t) =>
                storage.agents.updateToolTx(
                  tx,
                  t.id,
                  { state: "active", resourceId: `${rt.agent}@${rt.tenant}.test` },
                  ["creating"],
                )!,
            ),
          );
      events.push({ what: "provision", runtime: rt.id, tools: tools.map((t) => t.id) });
      return { tools, addresses: Object.fromEntries(tools.map((t) => [t.tool, t.resourceId!])) };
    },
    async destroyTools(runtime, only) {
      const list: ToolRecord[] = only ? [...only] : await storage.agents.listTools(runtime.id);
      const left = list.filter((t) => t.state !== "destroyed");
      for (const t of left) await storage.agents.updateTool(t.id, { state: "destroyed" });
      events.push({
        what: "destroy",
        runtime: runtime.id,
        tools: left.map((t) => t.id),
        processAlive: runtime.pid ? alive(runtime.pid) : false,
        dirExists: runtime.dir ? existsSync(runtime.dir) : false,
      });
    },
    definitions: (tools) => tools.map((t) => ({ id: t.id, description: t.id, parameters: { type: "object" } })),
    addresses: (tools) => Object.fromEntries(tools.map((t) => [t.tool, t.resourceId ?? ""])),
  };
}
