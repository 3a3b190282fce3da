import { type Clock, systemClock } from "../core/clock.ts";
import type { TemplateSpec } from "../control/resources/specs.ts";
import type { Resolve } from "../dispatch/egress.ts";
import { postJson } from "../dispatch/post.ts";
import { type Span, spanOf } from "../events/envelope.ts";
import { AppError } from "../errors/index.ts";
import type { Vault } from "../vault/vault.ts";

/**
 * The model proxy (docs/agents.md): a runtime's `model.chat` goes to its template's
 * OpenAI-compatible server (`<endpoint>/chat/completions`) through the appliance, which adds the
 * model's key from the vault (the runtime never holds it) and sends it through the egress guard
 * (loopback or the LAN unless the template says `allow_public`). Never streamed: Ollama drops
 * `tool_calls` from streamed answers, and the runtime protocol answers with one completion
 * object anyway. Each call is an `agent.model` span of the task it served.
 */

/** The largest answer taken from a model server. */
export const MAX_MODEL_RESPONSE_BYTES = 4 * 1024 * 1024;
export const DEFAULT_MODEL_TIMEOUT_MS = 120_000;
const CONNECT_TIMEOUT_MS = 5_000;
/** Bounds on what a runtime may send (its socket's 1 MiB line bounds the bytes). */
const MAX_MESSAGES = 1_000;
const MAX_TOOLS = 128;

export interface ModelProxyDeps {
  vault: Vault;
  clock?: Clock;
  /** agents_model_timeout. */
  timeoutMs?: number;
  /** Name resolution for the egress guard (tests). */
  resolve?: Resolve;
}

/** Who asks: the runtime, its claim's tenant, and its template with the tenant that declares it. */
export interface ModelCaller {
  runtimeId: string;
  tenant: string;
  template: TemplateSpec;
  /** The tenant that declares the template (another one for a `shared` template): its vault holds the key. */
  templateTenant: string;
  /** Where the call's `agent.model` span goes (the task's trace), when the call serves a task. */
  span?: (span: Span) => void;
}

export class ModelProxy {
  private readonly clock: Clock;
  private readonly timeoutMs: number;

  constructor(private readonly deps: ModelProxyDeps) {
    this.clock = deps.clock ?? systemClock;
    this.timeoutMs = deps.timeoutMs ?? DEFAULT_MODEL_TIMEOUT_MS;
  }

  /** One `model.chat`: the server's chat completion object, or an AppError saying what went wrong. */
  async chat(caller: ModelCaller, body: Record<string, unknown>): Promise<Record<string, unknown>> {
    const at = this.clock.now();
    const t0 = performance.now();
    const { model: spec } = caller.template;
    const model = spec.allow_override && typeof body.model === "string" && body.model ? body.model : spec.default;
    let outcome: Span["outcome"] = "error";
    let detail = `model ${model}`;
    try {
      const request = chatRequest(model, body);
      const headers: Record<string, string> = { accept: "application/json" };
      if (spec.api_key) headers.authorization = `Bearer ${await this.key(caller, spec.api_key)}`;
      const url = `${spec.endpoint.replace(/\/+$/, "")}/chat/completions`;
      const result = await postJson(url, JSON.stringify(request), headers, {
        allowPublic: spec.allow_public === true,
        connectTimeoutMs: Math.min(CONNECT_TIMEOUT_MS, this.timeoutMs),
        timeoutMs: this.timeoutMs,
        excerptBytes: MAX_MODEL_RESPONSE_BYTES + 1,
        resolve: this.deps.resolve,
        clock: this.clock,
      });
      if (result.errorClass === "egress")
        throw new AppError("forbidden", `the model server ${url} is not reachable from here: ${result.error}`);
      if (result.errorClass === "timeout")
        throw new AppError("timeout", `the model server did not answer within ${this.timeoutMs} ms`);
      if (result.errorClass) throw new AppError("unavailable", `the model server: ${result.error}`);
      if (Buffer.byteLength(result.excerpt) > MAX_MODEL_RESPONSE_BYTES)
        throw new AppError("too_large", `the model server's answer is larger than ${MAX_MODEL_RESPONSE_BYTES} bytes`);
      if (!result.ok)
        throw new AppError(
          "unavailable",
          `the model server answered HTTP ${result.status}: ${result.excerpt.slice(0, 300).trim()}`,
        );
      const completion = parseCompletion(result.excerpt);
      const calls = toolCallsOf(completion);
      detail = `model ${model}, ${(request.messages as unknown[]).length} messages${calls ? `, ${calls} tool calls` : ""}`;
      outcome = "ok";
      return completion;
    } catch (e) {
      detail = `${detail}: ${(e as Error).message}`;
      throw e;
    } finally {
      caller.span?.(spanOf("agent.model", at, performance.now() - t0, outcome, detail));
    }
  }

  /** The model's key, leased for this call by the appliance (audited by the vault), for the template's own tenant. */
  private async key(caller: ModelCaller, ref: string): Promise<string> {
    const lease = await this.deps.vault.lease(ref.slice("vault:".length), {
      forTenant: caller.templateTenant,
      consumer: `agent.model:${caller.runtimeId}`,
    });
    const [value] = this.deps.vault.redeem(lease.id);
    if (!value) throw new AppError("unavailable", `the model's key ${ref} has no valid version`);
    return value;
  }
}

/** What goes to the server: the runtime's fields that the API knows, the model chosen here, never streamed. */
function chatRequest(model: string, body: Record<string, unknown>): Record<string, unknown> {
  const { messages, tools, tool_choice, temperature } = body;
  if (!Array.isArray(messages) || messages.length === 0 || messages.length > MAX_MESSAGES)
    throw new AppError("invalid_input", `messages must be a list of 1 to ${MAX_MESSAGES} chat messages`);
  if (messages.some((m) => m === null || typeof m !== "object" || typeof (m as { role?: unknown }).role !== "string"))
    throw new AppError("invalid_input", "every message needs a role");
  if (tools !== undefined && (!Array.isArray(tools) || tools.length > MAX_TOOLS))
    throw new AppError("invalid_input", `tools must be a list of at most ${MAX_TOOLS} tools`);
  if (temperature !== undefined && typeof temperature !== "number")
    throw new AppError("invalid_input", "temperature must be a number");
  const request: Record<string, unknown> = { model, messages, stream: false };
  if (Array.isArray(tools) && tools.length) {
    request.tools = tools;
    if (tool_choice !== undefined) request.tool_choice = tool_choice;
  }
  if (temperature !== undefined) request.temperature = temperature;
  return request;
}

function parseCompletion(text: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new AppError("unavailable", "the model server's answer is not JSON");
  }
  if (!parsed || typeof parsed !== "object" || !Array.isArray((parsed as { choices?: unknown }).choices))
    throw new AppError("unavailable", "the model server's answer is not a chat completion (no choices)");
  return parsed as Record<string, unknown>;
}

function toolCallsOf(completion: Record<string, unknown>): number {
  const message = (completion.choices as { message?: { tool_calls?: unknown } }[])[0]?.message;
  return Array.isArray(message?.tool_calls) ? message.tool_calls.length : 0;
}
