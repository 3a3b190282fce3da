/**
 * The agent pool's test parts: a plain-process launcher (the runtime's command in its directory,
 * with its socket, token and id in the environment) and a tool provisioner that records what it
 * did, in order, on real rows.
 */
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import type { LaunchedRuntime, LaunchSpec, ToolProvisioner, ToolRecord } from "../../src/agents/types.ts";
import type { Storage } from "../../src/store/index.ts";

const MAIN = resolve(import.meta.dir, "..", "..", "src", "main.ts");

/** The reference runtime, as `agentowl runtime` from source. */
export const REFERENCE_RUNTIME = [process.execPath, MAIN, "runtime"] as const;

/** A runtime that answers hello and configure, then stays silent: no heartbeats. */
export const SILENT_RUNTIME = [
  process.execPath,
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

/** Runs each runtime as a plain child process (isolation `process`). */
export function processLauncher(command: readonly string[] = REFERENCE_RUNTIME): (spec: LaunchSpec) => LaunchedRuntime {
  return (spec) => {
    const proc = Bun.spawn([...(spec.command ?? command)], {
      cwd: spec.dir,
      env: {
        PATH: process.env.PATH ?? "/usr/bin:/bin",
        HOME: spec.dir,
        AGENTOWL_RUNTIME_SOCKET: spec.socket,
        AGENTOWL_RUNTIME_TOKEN: spec.token,
        AGENTOWL_RUNTIME_ID: spec.id,
      },
      stdout: "pipe",
      stderr: "pipe",
    });
    const lines: string[] = [];
    const read = async (stream: ReadableStream<Uint8Array>, name: "stdout" | "stderr") => {
      let rest = "";
      const decoder = new TextDecoder();
      for await (const chunk of stream) {
        rest += decoder.decode(chunk, { stream: true });
        let i: number;
        while ((i = rest.indexOf("\n")) >= 0) {
          const line = rest.slice(0, i);
          rest = rest.slice(i + 1);
          lines.push(line);
          spec.onOutput(name, line);
        }
      }
    };
    const reading = Promise.all([read(proc.stdout, "stdout"), read(proc.stderr, "stderr")]).catch(() => {});
    const exited = proc.exited.then(async (code) => {
      await reading;
      const signal = proc.signalCode ? String(proc.signalCode) : null;
      spec.onExit(signal ? null : code, signal);
      return { code: signal ? null : code, signal };
    });
    return {
      pid: proc.pid,
      isolation: "process",
      limitsBy: "none",
      lines: () => lines.slice(-500),
      async kill(graceMs = 2000) {
        proc.kill("SIGTERM");
        const t = setTimeout(() => proc.kill("SIGKILL"), graceMs);
        await exited;
        clearTimeout(t);
      },
      exited,
    };
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

/** Tools as rows only: each template tool becomes an active row; destroy marks them destroyed. */
export function recordingProvisioner(storage: Pick<Storage, "agents" | "committer">): ToolProvisioner & {
  events: ProvisionerEvent[];
} {
  const events: ProvisionerEvent[] = [];
  return {
    events,
    async provisionTools(req) {
      const rt = req.runtime;
      const tools = await storage.committer.run((tx) =>
        req.tools.map((t) =>
          storage.agents.insertToolTx(tx, {
            runtimeId: rt.id,
            tenant: rt.tenant!,
            tool: t.id,
            plugin: t.id.split(".")[0]!,
            provisioning: t.provisioning,
            state: "active",
            resourceId: `${rt.agent}@${rt.tenant}.test`,
            config: {},
            secretRef: null,
          }),
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
