/**
 * The runtime protocol (docs/runtime-protocol.md): newline-delimited JSON over one Unix socket,
 * requests with ids answered by `result` messages, notifications without ids. Both ends use this
 * module: the appliance's channel (channel.ts) and the reference runtime (runtime/), which starts
 * inside every sandbox, so it imports nothing but node builtins.
 */
import type { Socket } from "node:net";

export const PROTOCOL_VERSION = 1;
/** The longest line either side accepts (the newline excluded); a longer one closes the connection. */
export const MAX_LINE_BYTES = 1024 * 1024;
/** Requests one side may have unanswered at the other at once. */
export const MAX_IN_FLIGHT = 64;

export interface WireError {
  code: string;
  message: string;
}

/** A request or a notification on the wire: the body's fields sit beside `id` and `type`. */
export interface Message {
  id?: number;
  type: string;
  [field: string]: unknown;
}

export type ResultMessage =
  | { id: number; type: "result"; ok: true; result: unknown }
  | { id: number; type: "result"; ok: false; error: WireError };

// The messages, by direction (their examples are in docs/runtime-protocol.md).

/** appliance → runtime, request; the runtime answers `HelloResult`. */
export interface HelloRequest {
  protocol: number;
  runtime: string;
}
export interface HelloResult {
  token: string;
}

export interface ToolOffer {
  id: string;
  description: string;
  /** JSON Schema of the arguments (an OpenAI function's `parameters`). */
  parameters: Record<string, unknown>;
}

/** appliance → runtime, request, at claim and at every sync; answered with `{}`. */
export interface ConfigureRequest {
  tenant: string;
  agent: string;
  template: {
    name: string;
    version: number;
    instructions: string;
    model: { default: string; allow_override: boolean };
    tools: ToolOffer[];
  };
  /** Non-secret settings only: credentials stay in the appliance's vault. */
  user_config: Record<string, unknown>;
}

/** appliance → runtime, request: one delivery of an event to the agent. */
export interface TaskRequest {
  task_id: string;
  delivery_id: string;
  event: Record<string, unknown>;
}
export interface TaskResult {
  status: "done" | "failed";
  output?: unknown;
}

/** appliance → runtime, notification: the outcome of a call that waited for approval. */
export interface ToolResultNotification {
  call_id: string;
  status: "done" | "denied" | "failed";
  result?: unknown;
  error?: string;
}

/** runtime → appliance, request: an OpenAI chat completion, answered with the completion object. */
export interface ModelChatRequest {
  model?: string;
  messages: ChatMessage[];
  tools?: { type: "function"; function: { name: string; description?: string; parameters?: unknown } }[];
  tool_choice?: unknown;
  temperature?: number;
}

export interface ChatMessage {
  role: "system" | "user" | "assistant" | "tool";
  content: string | null;
  tool_calls?: ChatToolCall[];
  tool_call_id?: string;
}

export interface ChatToolCall {
  id: string;
  type: "function";
  function: { name: string; arguments: string };
}

/** runtime → appliance, request: use a tool of the template. */
export interface ToolCallRequest {
  tool: string;
  args: Record<string, unknown>;
  task_id?: string;
}
export type ToolCallResult =
  | { call_id: string; status: "done"; result: unknown }
  | { call_id: string; status: "denied"; reason: string }
  | { call_id: string; status: "awaiting_approval"; approval_id: string }
  | { status: "refused"; reason: string };

/** A failure with a code that crosses the wire: an answer's `error`, or why a connection closed. */
export class ProtocolError extends Error {
  override readonly name = "ProtocolError";
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const NEWLINE = 0x0a;

/**
 * Splits a byte stream into JSON messages, one a line, holding at most MAX_LINE_BYTES of an
 * unfinished line. `push` throws ProtocolError `too_large` or `malformed`; the caller closes.
 */
export class LineFramer {
  private parts: Uint8Array[] = [];
  private size = 0;
  private readonly decoder = new TextDecoder("utf-8", { fatal: true });

  constructor(private readonly maxLineBytes = MAX_LINE_BYTES) {}

  push(chunk: Uint8Array): Message[] {
    const out: Message[] = [];
    let start = 0;
    for (let nl = chunk.indexOf(NEWLINE); nl >= 0; nl = chunk.indexOf(NEWLINE, start)) {
      this.take(chunk.subarray(start, nl));
      const line = this.parts.length === 1 ? this.parts[0]! : concat(this.parts, this.size);
      this.parts = [];
      this.size = 0;
      start = nl + 1;
      if (line.length > 0) out.push(this.parse(line));
    }
    this.take(chunk.subarray(start));
    return out;
  }

  private take(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    if (this.size + bytes.length > this.maxLineBytes)
      throw new ProtocolError("too_large", `a line is longer than ${this.maxLineBytes} bytes`);
    // A copy: the socket may reuse its buffer.
    this.parts.push(bytes.slice());
    this.size += bytes.length;
  }

  private parse(line: Uint8Array): Message {
    let value: unknown;
    try {
      value = JSON.parse(this.decoder.decode(line));
    } catch {
      throw new ProtocolError("malformed", "a line is not one UTF-8 JSON value");
    }
    return checkMessage(value);
  }
}

function concat(parts: Uint8Array[], size: number): Uint8Array {
  const out = new Uint8Array(size);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** The shape every message has: an object with a string `type`, a positive integer `id` when present. */
export function checkMessage(value: unknown): Message {
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw new ProtocolError("malformed", "a message must be a JSON object");
  const m = value as Message;
  if (typeof m.type !== "string" || m.type === "") throw new ProtocolError("malformed", "a message needs a `type`");
  if (m.id !== undefined && !(Number.isSafeInteger(m.id) && m.id > 0))
    throw new ProtocolError("malformed", "`id` must be a positive integer");
  if (m.type === "result") {
    if (m.id === undefined) throw new ProtocolError("malformed", "a result needs the `id` of its request");
    if (m.ok === false) {
      const e = m.error as WireError | undefined;
      if (typeof e?.code !== "string" || typeof e.message !== "string")
        throw new ProtocolError("malformed", "a failed result needs `error: {code, message}`");
    } else if (m.ok !== true) throw new ProtocolError("malformed", "a result needs `ok: true|false`");
  }
  return m;
}

/** One line on the wire; throws ProtocolError `too_large` rather than send what the peer would refuse. */
export function encodeMessage(message: Message): string {
  const line = JSON.stringify(message);
  // UTF-8 is at most 3 bytes per UTF-16 unit; measure only when it could be too long.
  if (line.length * 3 > MAX_LINE_BYTES && Buffer.byteLength(line) > MAX_LINE_BYTES)
    throw new ProtocolError("too_large", `a ${message.type} message is longer than ${MAX_LINE_BYTES} bytes`);
  return `${line}\n`;
}

export type PeerRequestHandler = (type: string, body: Record<string, unknown>) => Promise<unknown> | unknown;

export interface PeerOptions {
  /** Requests from the other side; what it throws becomes the answer's error (see `toWireError`). */
  onRequest?: PeerRequestHandler;
  onNotification?: (type: string, body: Record<string, unknown>) => void;
  /** Every well-formed message received (results included). */
  onMessage?: (message: Message) => void;
  /** Once, when the connection ended; `reason` when this side closed it over a protocol violation. */
  onClose?: (reason: WireError | null) => void;
  /** How a handler's failure is told to the other side; by default a ProtocolError's code, else `internal`. */
  toWireError?: (e: unknown) => WireError;
}

const defaultWireError = (e: unknown): WireError =>
  e instanceof ProtocolError ? { code: e.code, message: e.message } : { code: "internal", message: "internal error" };

/** The body of a message: everything but `id` and `type`. */
export function bodyOf(m: Message): Record<string, unknown> {
  const { id: _id, type: _type, ...body } = m;
  return body;
}

/**
 * One end of a connection: numbered requests with a timeout each (at most MAX_IN_FLIGHT
 * unanswered), notifications, and the other side's requests handed to `onRequest` (more than
 * MAX_IN_FLIGHT at once are answered `rate_limited`). A malformed or over-long line closes the
 * connection after an `error` notification that says why.
 */
export class Peer {
  private readonly framer = new LineFramer();
  private nextId = 1;
  private readonly pending = new Map<
    number,
    { resolve(v: unknown): void; reject(e: Error): void; timer: ReturnType<typeof setTimeout> }
  >();
  private incoming = 0;
  private ended = false;

  constructor(
    private readonly socket: Socket,
    private readonly opts: PeerOptions = {},
  ) {
    socket.on("data", (chunk: Buffer) => this.receive(chunk));
    socket.on("error", () => socket.destroy());
    socket.on("close", () => this.finish(null));
  }

  get closed(): boolean {
    return this.ended;
  }

  request(type: string, body: object, timeoutMs: number): Promise<unknown> {
    if (this.ended) return Promise.reject(new ProtocolError("closed", "the connection is closed"));
    if (this.pending.size >= MAX_IN_FLIGHT)
      return Promise.reject(new ProtocolError("busy", `${MAX_IN_FLIGHT} requests are already waiting for an answer`));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new ProtocolError("timeout", `no answer to ${type} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      try {
        this.write({ ...body, id, type });
      } catch (e) {
        clearTimeout(timer);
        this.pending.delete(id);
        reject(e as Error);
      }
    });
  }

  notify(type: string, body: object = {}): void {
    if (!this.ended) this.write({ ...body, type });
  }

  /** Ends the connection; with a reason, tells the other side first (an `error` notification). */
  close(reason?: WireError): void {
    if (this.ended) return;
    if (reason) {
      try {
        this.socket.write(encodeMessage({ type: "error", ...reason }));
      } catch {
        // The connection is going away either way.
      }
    }
    this.socket.end();
    // A peer that does not read must not keep the socket open.
    setTimeout(() => this.socket.destroy(), 1000).unref();
    this.finish(reason ?? null);
  }

  private write(message: Message): void {
    this.socket.write(encodeMessage(message));
  }

  private receive(chunk: Buffer): void {
    if (this.ended) return;
    let messages: Message[];
    try {
      messages = this.framer.push(chunk);
    } catch (e) {
      this.close(defaultWireError(e));
      return;
    }
    for (const m of messages) {
      if (this.ended) return;
      this.opts.onMessage?.(m);
      if (m.type === "result") this.settle(m as unknown as ResultMessage);
      else if (m.id !== undefined) void this.answer(m.id, m);
      else this.opts.onNotification?.(m.type, bodyOf(m));
    }
  }

  private settle(m: ResultMessage): void {
    const p = this.pending.get(m.id);
    // A late answer to a request that timed out is dropped.
    if (!p) return;
    this.pending.delete(m.id);
    clearTimeout(p.timer);
    if (m.ok) p.resolve(m.result);
    else p.reject(new ProtocolError(m.error.code, m.error.message));
  }

  private async answer(id: number, m: Message): Promise<void> {
    if (this.incoming >= MAX_IN_FLIGHT) {
      this.reply({
        id,
        type: "result",
        ok: false,
        error: { code: "rate_limited", message: `more than ${MAX_IN_FLIGHT} requests in flight` },
      });
      return;
    }
    this.incoming++;
    let answer: ResultMessage;
    try {
      if (!this.opts.onRequest) throw new ProtocolError("unsupported", `${m.type} is not a request this side answers`);
      const result = await this.opts.onRequest(m.type, bodyOf(m));
      answer = { id, type: "result", ok: true, result: result ?? {} };
    } catch (e) {
      answer = { id, type: "result", ok: false, error: (this.opts.toWireError ?? defaultWireError)(e) };
    } finally {
      this.incoming--;
    }
    this.reply(answer);
  }

  private reply(answer: ResultMessage): void {
    if (this.ended) return;
    try {
      this.write(answer as unknown as Message);
    } catch (e) {
      // A result too large to send is answered as a failure instead.
      this.write({ id: answer.id, type: "result", ok: false, error: defaultWireError(e) });
    }
  }

  private finish(reason: WireError | null): void {
    if (this.ended) return;
    this.ended = true;
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new ProtocolError("closed", "the connection closed before the answer"));
      this.pending.delete(id);
    }
    this.opts.onClose?.(reason);
  }
}
