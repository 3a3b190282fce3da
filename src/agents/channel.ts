/**
 * The appliance's end of one runtime's socket (docs/runtime-protocol.md): it listens on the
 * runtime's own Unix socket, says hello to whatever connects, and trusts the connection only after
 * it answered with this runtime's token. One authenticated connection at a time.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { chmodSync, lstatSync, mkdirSync, unlinkSync } from "node:fs";
import { createServer, type Socket } from "node:net";
import { dirname } from "node:path";
import { type Clock, systemClock } from "../core/clock.ts";
import { AppError, ERROR_KINDS, type ErrorKind, isAppError } from "../errors/index.ts";
import { encodeMessage, Peer, PROTOCOL_VERSION, ProtocolError, type WireError } from "./protocol.ts";
import type { RequestHandler, RuntimeChannel } from "./types.ts";

/** Longest Unix socket path the kernel takes (sun_path is 108 bytes with its NUL). */
const MAX_SOCKET_PATH = 107;

export interface ChannelOptions {
  runtimeId: string;
  socketPath: string;
  /** SHA-256 hex of the runtime's token (hashRuntimeToken). */
  tokenHash: string;
  clock?: Clock;
  /** How long the runtime has to connect and answer hello, from now. */
  helloTimeoutMs: number;
  /** A connection that was turned away (wrong token, a second connection, no answer to hello), for the audit log. */
  onRefused(reason: string): void;
}

/** A new per-runtime token: given to the runtime in its environment, kept only as its hash. */
export function newRuntimeToken(): string {
  return `rtt_${randomBytes(32).toString("base64url")}`;
}

export function hashRuntimeToken(token: string): string {
  return createHash("sha256").update(token).digest("hex");
}

function tokenMatches(token: unknown, tokenHash: string): boolean {
  if (typeof token !== "string") return false;
  const given = Buffer.from(hashRuntimeToken(token), "hex");
  const stored = Buffer.from(tokenHash, "hex");
  return given.length === stored.length && timingSafeEqual(given, stored);
}

/** What a runtime is told when its request failed: the AppError's kind and detail, never an internal message. */
function toWireError(e: unknown): WireError {
  if (isAppError(e)) return { code: e.kind, message: e.detail };
  if (e instanceof ProtocolError) return { code: e.code, message: e.message };
  return { code: "internal", message: "internal error" };
}

/** A failed request to the runtime, as the appliance's callers handle failures. */
function toAppError(runtimeId: string, type: string, e: unknown): AppError {
  if (!(e instanceof ProtocolError))
    return new AppError("internal", `${type} to runtime ${runtimeId} failed`, { cause: e });
  switch (e.code) {
    case "timeout":
      return new AppError("timeout", `runtime ${runtimeId}: ${e.message}`);
    case "closed":
      return new AppError("unavailable", `runtime ${runtimeId} disconnected before answering ${type}`);
    case "busy":
      return new AppError("rate_limited", `runtime ${runtimeId}: ${e.message}`);
    case "too_large":
      return new AppError("too_large", e.message);
  }
  const kind: ErrorKind = (ERROR_KINDS as readonly string[]).includes(e.code) ? (e.code as ErrorKind) : "unavailable";
  return new AppError(kind, `runtime ${runtimeId} answered ${type} with ${e.code}: ${e.message}`);
}

/** Removes a socket file a previous process left; anything else at that path is not ours to remove. */
function removeStaleSocket(path: string): void {
  let isSocket: boolean;
  try {
    isSocket = lstatSync(path).isSocket();
  } catch {
    return;
  }
  if (!isSocket) throw new AppError("conflict", `${path} exists and is not a socket`);
  unlinkSync(path);
}

/** Opens the runtime's socket and waits there for the runtime; see RuntimeChannel. */
export async function openChannel(opts: ChannelOptions): Promise<RuntimeChannel> {
  const { runtimeId, socketPath, tokenHash, onRefused } = opts;
  const clock = opts.clock ?? systemClock;
  if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH)
    throw new AppError(
      "config_invalid",
      `the socket path ${socketPath} is longer than the ${MAX_SOCKET_PATH} bytes a Unix socket allows: use a shorter data directory`,
    );
  const dir = dirname(socketPath);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  removeStaleSocket(socketPath);

  let handler: RequestHandler | null = null;
  const activity: ((at: number) => void)[] = [];
  let live: Peer | null = null;
  let authed: Peer | null = null;
  let everAuthenticated = false;
  let closed = false;

  let settle!: { resolve(): void; reject(e: AppError): void };
  const authenticated = new Promise<void>((resolve, reject) => (settle = { resolve, reject }));
  // Nobody may be waiting on it when it fails (a channel closed before its runtime came up).
  authenticated.catch(() => {});
  const helloTimer = setTimeout(
    () =>
      settle.reject(
        new AppError(
          "timeout",
          `runtime ${runtimeId} did not connect and answer hello within ${opts.helloTimeoutMs} ms`,
        ),
      ),
    opts.helloTimeoutMs,
  );

  const refuse = (socket: Socket, reason: string, error: WireError) => {
    onRefused(reason);
    socket.end(encodeMessage({ type: "error", ...error }));
    setTimeout(() => socket.destroy(), 1000).unref();
  };

  const accept = (socket: Socket) => {
    if (closed) return void socket.destroy();
    if (live) {
      refuse(socket, "a second connection while one is open", {
        code: "conflict",
        message: "this runtime already has a connection",
      });
      return;
    }
    const peer: Peer = new Peer(socket, {
      onRequest: (type, body) => {
        if (authed !== peer) throw new ProtocolError("unauthenticated", "answer hello with the runtime's token first");
        if (!handler) throw new ProtocolError("unavailable", `${type} is not being answered yet`);
        return handler(type, body);
      },
      onMessage: () => {
        if (authed !== peer) return;
        const at = clock.now();
        for (const fn of activity) fn(at);
      },
      onClose: () => {
        if (live === peer) live = null;
        if (authed === peer) authed = null;
      },
      toWireError,
    });
    live = peer;
    peer.request("hello", { protocol: PROTOCOL_VERSION, runtime: runtimeId }, opts.helloTimeoutMs).then(
      (answer) => {
        if (peer.closed) return;
        if (!tokenMatches((answer as { token?: unknown } | null)?.token, tokenHash)) {
          onRefused("wrong token");
          peer.close({ code: "unauthenticated", message: "wrong token" });
          if (!everAuthenticated) settle.reject(new AppError("unauthenticated", `runtime ${runtimeId}: wrong token`));
          return;
        }
        authed = peer;
        everAuthenticated = true;
        clearTimeout(helloTimer);
        settle.resolve();
        const at = clock.now();
        for (const fn of activity) fn(at);
      },
      (e: ProtocolError) => {
        if (e.code === "closed") return;
        onRefused(`no valid answer to hello: ${e.code}: ${e.message}`);
        peer.close({ code: "unauthenticated", message: "no valid answer to hello" });
      },
    );
  };

  const server = createServer(accept);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(socketPath, () => {
      server.off("error", reject);
      resolve();
    });
  });
  chmodSync(socketPath, 0o600);

  return {
    runtimeId,
    authenticated,
    async request(type, body, timeoutMs) {
      if (!authed) throw new AppError("unavailable", `runtime ${runtimeId} is not connected`);
      try {
        return await authed.request(type, body, timeoutMs);
      } catch (e) {
        throw toAppError(runtimeId, type, e);
      }
    },
    notify(type, body) {
      authed?.notify(type, body);
    },
    onRequest(fn) {
      handler = fn;
    },
    onActivity(fn) {
      activity.push(fn);
    },
    async close() {
      if (closed) return;
      closed = true;
      clearTimeout(helloTimer);
      settle.reject(new AppError("unavailable", `the channel of runtime ${runtimeId} was closed`));
      live?.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      try {
        unlinkSync(socketPath);
      } catch {
        // Already gone (the server removes it on close on some platforms).
      }
    },
  };
}
