/**
 * The reference runtime (`agentowl runtime`, docs/runtime-protocol.md): it connects to the socket
 * the appliance gave it, proves itself with its token, waits for its configuration, and answers
 * each task by a model conversation with the template's tools, every model and tool call going
 * through the appliance. It starts inside every sandbox, so it imports nothing but the protocol
 * and node builtins (measured in the sandbox test).
 */
import { createConnection } from "node:net";
import {
  type ChatMessage,
  type ChatToolCall,
  type ConfigureRequest,
  type ModelChatRequest,
  Peer,
  ProtocolError,
  type TaskRequest,
  type TaskResult,
  type ToolCallResult,
} from "../protocol.ts";

/** Model turns per task: a model that keeps asking for tools gets no more than this. */
export const MAX_TURNS = 8;
export const HEARTBEAT_MS = 5000;
/** A little over the appliance's model and tool timeouts (120 s), so that its answer arrives first. */
const CALL_TIMEOUT_MS = 130_000;
/** How much of an event the model is shown. */
const MAX_EVENT_CHARS = 64 * 1024;

export interface RuntimeEnv {
  socket: string;
  token: string;
  id: string;
}

interface ChatCompletion {
  choices?: { message?: { content?: string | null; tool_calls?: ChatToolCall[] } }[];
}

/** The event as the model reads it: what it is, then its data. */
export function renderEvent(event: Record<string, unknown>): string {
  const head = `A ${String(event.type ?? "event")} event on ${String(event.channel ?? "?")} (id ${String(event.id ?? "?")}).`;
  const data = JSON.stringify(event.data ?? event, null, 2);
  return `${head}\n\n${data.length > MAX_EVENT_CHARS ? `${data.slice(0, MAX_EVENT_CHARS)}\n[truncated]` : data}`;
}

/** A tool's answer as the `tool` message the model reads next. */
export function describeToolResult(r: ToolCallResult): string {
  switch (r.status) {
    case "done":
      return JSON.stringify(r.result ?? null);
    case "denied":
      return `denied by policy: ${r.reason}`;
    case "awaiting_approval":
      return `waiting for a human's approval (${r.approval_id}); the result will come later`;
    case "refused":
      return `refused: ${r.reason}`;
  }
}

/** Runs until the appliance closes the socket or says shutdown; resolves with the exit code. */
export function runRuntime(
  env: RuntimeEnv,
  log: (line: string) => void,
  opts: { heartbeatMs?: number } = {},
): Promise<number> {
  return new Promise((resolve) => {
    let config: ConfigureRequest | null = null;
    const socket = createConnection(env.socket);
    let connected = false;
    socket.once("connect", () => {
      connected = true;
    });
    socket.once("error", (e) => {
      if (!connected) log(`runtime ${env.id}: cannot connect to ${env.socket}: ${e.message}`);
    });

    const chat = async (body: ModelChatRequest & { task_id: string }) =>
      (await peer.request("model.chat", body, CALL_TIMEOUT_MS)) as ChatCompletion;
    /** OpenAI function names allow letters, digits, `_` and `-`: a tool id such as `http.crm` is offered as `http_crm`. */
    const functionName = (id: string) => id.replace(/[^A-Za-z0-9_-]/g, "_");

    const callTool = async (call: ChatToolCall, taskId: string, ids: Map<string, string>): Promise<string> => {
      let args: Record<string, unknown>;
      try {
        args = JSON.parse(call.function.arguments || "{}");
      } catch {
        return "error: the arguments are not JSON";
      }
      try {
        const r = (await peer.request(
          "tool.call",
          { tool: ids.get(call.function.name) ?? call.function.name, args, task_id: taskId },
          CALL_TIMEOUT_MS,
        )) as ToolCallResult;
        return describeToolResult(r);
      } catch (e) {
        return `error: ${e instanceof ProtocolError ? `${e.code}: ${e.message}` : String(e)}`;
      }
    };

    const task = async ({ task_id, event }: TaskRequest): Promise<TaskResult> => {
      if (!config) throw new ProtocolError("unavailable", "this runtime has not been configured yet");
      const { template } = config;
      const ids = new Map(template.tools.map((t) => [functionName(t.id), t.id]));
      const tools = template.tools.map((t) => ({
        type: "function" as const,
        function: { name: functionName(t.id), description: t.description, parameters: t.parameters },
      }));
      const messages: ChatMessage[] = [
        { role: "system", content: template.instructions },
        { role: "user", content: renderEvent(event) },
      ];
      for (let turn = 1; turn <= MAX_TURNS; turn++) {
        const answer = (await chat(tools.length ? { messages, tools, task_id } : { messages, task_id })).choices?.[0]
          ?.message;
        if (!answer) return { status: "failed", output: "the model's answer had no message" };
        const calls = answer.tool_calls ?? [];
        if (calls.length === 0) {
          log(`runtime ${env.id}: task ${task_id} done after ${turn} turn(s)`);
          return { status: "done", output: answer.content ?? "" };
        }
        messages.push({ role: "assistant", content: answer.content ?? null, tool_calls: calls });
        for (const call of calls)
          messages.push({ role: "tool", tool_call_id: call.id, content: await callTool(call, task_id, ids) });
      }
      log(`runtime ${env.id}: task ${task_id} has no final answer after ${MAX_TURNS} turns`);
      return { status: "failed", output: `no final answer after ${MAX_TURNS} turns` };
    };

    const peer = new Peer(socket, {
      async onRequest(type, body) {
        switch (type) {
          case "hello":
            return { token: env.token };
          case "configure": {
            const c = body as unknown as ConfigureRequest;
            if (typeof c.template?.instructions !== "string" || !Array.isArray(c.template.tools))
              throw new ProtocolError("invalid_input", "configure needs template.instructions and template.tools");
            config = c;
            // Logged once the answer is on its way: the claim waits for the answer, not the line.
            setImmediate(() =>
              log(
                `runtime ${env.id}: configured as ${c.agent} of ${c.tenant}, template ${c.template.name} v${c.template.version}, ${c.template.tools.length} tool(s)`,
              ),
            );
            return {};
          }
          case "task":
            // Awaited here: a rejection handed on unawaited counts as unhandled for a moment in Bun.
            return await task(body as unknown as TaskRequest);
          default:
            throw new ProtocolError("unsupported", `this runtime does not answer ${type}`);
        }
      },
      onNotification(type, body) {
        if (type === "shutdown") peer.close();
        else if (type === "tool.result")
          log(`runtime ${env.id}: tool call ${String(body.call_id)} ended ${String(body.status)}`);
        else if (type === "error")
          log(`runtime ${env.id}: the appliance closes: ${String(body.code)}: ${String(body.message)}`);
      },
      onClose() {
        clearInterval(heartbeat);
        resolve(connected ? 0 : 1);
      },
    });
    const heartbeat = setInterval(() => peer.notify("heartbeat"), opts.heartbeatMs ?? HEARTBEAT_MS);
  });
}
