import { Agent as HttpAgent, type ClientRequest, request as httpRequest, type IncomingMessage } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import type { Socket } from "node:net";
import { type Clock, systemClock } from "../core/clock.ts";
import { memoByText } from "../core/memo.ts";
import {
  checkAddress,
  classify,
  type Destination,
  EgressRefused,
  guardDestination,
  pinnedLookup,
  type Resolve,
  sameAddress,
} from "./egress.ts";

/**
 * One HTTP delivery attempt (docs/state-machines.md): POST a JSON body to an endpoint through the egress guard
 * (`guardDestination` decides the address before a socket exists; the connection is pinned to it
 * and the socket's own address is checked again), with a connect timeout and a total timeout, never following a redirect, and report everything
 * the attempt log keeps: status, latency, a capped excerpt of the response, Retry-After, and for
 * a failure its class (egress, dns, connect, tls, timeout) so an operator sees at once where it
 * broke. It never throws.
 */

export type ErrorClass = "egress" | "dns" | "connect" | "tls" | "timeout";

export interface Attempt {
  /** A 2xx answer. */
  ok: boolean;
  status: number | null;
  latencyMs: number;
  /** The start of the response body, at most `excerptBytes`, as text. */
  excerpt: string;
  errorClass: ErrorClass | null;
  error: string | null;
  /** From a Retry-After header (seconds or an HTTP date), when the endpoint sent one. */
  retryAfterMs: number | null;
  /** The address the request went to. */
  remoteAddress: string | null;
}

export interface PostOptions {
  allowPublic: boolean;
  connectTimeoutMs: number;
  timeoutMs: number;
  excerptBytes?: number;
  resolve?: Resolve;
  clock?: Clock;
  /** A keep-alive agent to reuse connections (each was checked by the guard when it was made); none: a connection per attempt. */
  agent?: HttpAgent;
}

/**
 * A keep-alive agent for attempts to `url`: node:https needs its own kind (an http Agent given to
 * an https request throws ERR_INVALID_PROTOCOL before anything is sent).
 */
export function keepAliveAgent(url: string, opts: { maxSockets: number; idleMs: number }): HttpAgent {
  const Kind = url.startsWith("https:") ? HttpsAgent : HttpAgent;
  return new Kind({ keepAlive: true, maxSockets: opts.maxSockets, timeout: opts.idleMs });
}

/**
 * HMACs keyed once and copied per signature, held by what holds the secret (the leased values an
 * attempt got, src/vault/leased.ts): the key's setup is not redone per attempt, and the keyed
 * state is dropped with the lease.
 */
const keyedBy = new WeakMap<object, { secret: string; hmac: Bun.CryptoHasher }>();

function keyedHmac(secret: string, holder?: object): Bun.CryptoHasher {
  const held = holder && keyedBy.get(holder);
  if (held && held.secret === secret) return held.hmac.copy();
  const key = Buffer.from(secret.startsWith("whsec_") ? secret.slice("whsec_".length) : secret, "base64");
  const hmac = new Bun.CryptoHasher("sha256", key);
  if (!holder) return hmac;
  keyedBy.set(holder, { secret, hmac });
  return hmac.copy();
}

/** Standard Webhooks headers for a delivery (docs/state-machines.md): the id stays the same across retries. */
export function signStandardWebhook(
  secret: string,
  id: string,
  timestampSeconds: number,
  body: string,
  /** What holds `secret` (its lease's values), to key the HMAC once for as long as it lives. */
  holder?: object,
): Record<string, string> {
  const signature = keyedHmac(secret, holder).update(`${id}.${timestampSeconds}.${body}`).digest("base64");
  return { "webhook-id": id, "webhook-timestamp": String(timestampSeconds), "webhook-signature": `v1,${signature}` };
}

export function parseRetryAfter(value: string | undefined, now: number): number | null {
  if (!value) return null;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? null : Math.max(0, at - now);
}

/**
 * Whether a proxy is configured in the environment: fetch would send plain HTTP through it, so
 * attempts keep to node:http, which connects only where the egress guard said.
 */
const PROXIED = ["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"].some((k) => !!process.env[k]);

/** The start of a response body, at most `cap` bytes, as text; the rest is not read. */
async function readExcerpt(res: Response, cap: number): Promise<string> {
  if (!res.body) return "";
  const length = Number(res.headers.get("content-length") ?? Number.NaN);
  if (length <= cap) return (await res.text()).slice(0, cap);
  const chunks: Uint8Array[] = [];
  let kept = 0;
  const reader = res.body.getReader();
  try {
    while (kept < cap) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value.subarray(0, cap - kept));
      kept += Math.min(value.length, cap - kept);
    }
  } finally {
    // The rest of a long answer is not needed.
    void reader.cancel().catch(() => {});
  }
  return Buffer.concat(chunks).toString("utf8");
}

/** Whether a TCP connection to `address`:`port` opens within `ms`. */
function canConnect(address: string, port: number, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    Bun.connect({
      hostname: address,
      port,
      socket: {
        open(s) {
          clearTimeout(timer);
          s.end();
          resolve(true);
        },
        data() {},
        connectError() {
          clearTimeout(timer);
          resolve(false);
        },
      },
    }).catch(() => {
      clearTimeout(timer);
      resolve(false);
    });
  });
}

const TLS_CODES = /^(ERR_TLS|ERR_SSL|CERT_|UNABLE_TO_|DEPTH_ZERO|SELF_SIGNED|ERR_OSSL|HOSTNAME_MISMATCH)/;

function classOf(e: NodeJS.ErrnoException): ErrorClass {
  if (e instanceof EgressRefused) return "egress";
  const code = e.code ?? "";
  if (code === "ENOTFOUND" || code === "EAI_AGAIN" || code === "ENODATA") return "dns";
  if (TLS_CODES.test(code) || /certificate|ssl|tls/i.test(e.message)) return "tls";
  return "connect";
}

/** Endpoint URLs parsed lately, by their text: every attempt to an endpoint parsed the same URL (read only; a bad URL throws and is not kept). */
const parsedUrl = memoByText(256, (url) => new URL(url));

export function postJson(
  url: string,
  body: string,
  headers: Record<string, string>,
  opts: PostOptions,
): Promise<Attempt> {
  const clock = opts.clock ?? systemClock;
  const started = performance.now();
  const cap = opts.excerptBytes ?? 1024;
  return new Promise((resolve) => {
    let settled = false;
    let remoteAddress: string | null = null;
    const done = (a: Omit<Attempt, "latencyMs" | "remoteAddress">) => {
      if (settled) return;
      settled = true;
      clearTimeout(total);
      clearTimeout(connecting);
      resolve({ ...a, latencyMs: Math.round((performance.now() - started) * 1000) / 1000, remoteAddress });
    };
    const fail = (errorClass: ErrorClass, error: string) =>
      done({ ok: false, status: null, excerpt: "", errorClass, error, retryAfterMs: null });

    let target: URL;
    try {
      target = parsedUrl(url);
      if (target.protocol !== "http:" && target.protocol !== "https:")
        throw new Error(`${target.protocol} is not http or https`);
    } catch (e) {
      return resolve({
        ok: false,
        status: null,
        latencyMs: 0,
        excerpt: "",
        errorClass: "connect",
        error: `bad endpoint URL: ${(e as Error).message}`,
        retryAfterMs: null,
        remoteAddress: null,
      });
    }
    let aborted: (() => void) | null = null;
    const total = setTimeout(() => {
      fail("timeout", `no complete answer within ${opts.timeoutMs} ms`);
      req?.destroy();
      aborted?.();
    }, opts.timeoutMs);
    const connecting = setTimeout(() => {
      // fetch does not say when it connected: an attempt still waiting then is cut off only when
      // a connection to the same address cannot be made either.
      if (aborted && remoteAddress) {
        const left = Math.max(1, Math.min(opts.connectTimeoutMs, opts.timeoutMs - opts.connectTimeoutMs));
        void canConnect(remoteAddress, Number(target.port || 80), left).then((ok) => {
          if (ok) return;
          fail("timeout", `no connection within ${opts.connectTimeoutMs} ms`);
          aborted?.();
        });
        return;
      }
      fail("timeout", `no connection within ${opts.connectTimeoutMs} ms`);
      req?.destroy();
    }, opts.connectTimeoutMs);
    let req: ClientRequest | undefined;
    const send = (to: Destination): ClientRequest => {
      const request = target.protocol === "https:" ? httpsRequest : httpRequest;
      const r = request(target, {
        method: "POST",
        headers: { "content-type": "application/json", "content-length": String(Buffer.byteLength(body)), ...headers },
        // A name is not resolved again: the connection goes to the address just checked.
        lookup: pinnedLookup(to) as never,
        agent: opts.agent ?? false,
      });
      r.on("socket", (socket: Socket) => {
        const connected = (fresh: boolean) => {
          clearTimeout(connecting);
          remoteAddress = socket.remoteAddress ?? null;
          // Belt and braces: the address actually connected to passes the same check, and a new
          // connection went where the guard said (a kept-alive one was checked when it was made).
          try {
            if (remoteAddress) checkAddress(remoteAddress, { allowPublic: opts.allowPublic });
            if (fresh && remoteAddress && !sameAddress(remoteAddress, to.address)) {
              throw new EgressRefused(
                remoteAddress,
                classify(remoteAddress),
                `connected to ${remoteAddress}, not to ${to.address} that the egress guard checked`,
              );
            }
          } catch (e) {
            fail("egress", (e as Error).message);
            r.destroy();
          }
        };
        if (socket.connecting === false && socket.remoteAddress) connected(false);
        else socket.once("connect", () => connected(true));
      });
      r.on("error", (e: NodeJS.ErrnoException) => fail(classOf(e), e.message));
      r.on("response", (res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        let kept = 0;
        res.on("data", (chunk: Buffer) => {
          if (kept < cap) {
            chunks.push(chunk.subarray(0, cap - kept));
            kept += Math.min(chunk.length, cap - kept);
          }
          // The rest of a long answer is not needed: stop reading it.
          if (kept >= cap) res.destroy();
        });
        const finish = () => {
          const status = res.statusCode ?? 0;
          done({
            ok: status >= 200 && status < 300,
            status,
            excerpt: Buffer.concat(chunks).toString("utf8"),
            errorClass: null,
            error: null,
            retryAfterMs: parseRetryAfter(res.headers["retry-after"], clock.now()),
          });
        };
        res.on("end", finish);
        res.on("close", finish);
        res.on("error", finish);
      });
      r.end(body);
      return r;
    };
    // Plain HTTP goes through fetch, pinned by URL: a third of node:http's CPU per attempt (docs/architecture.md#the-egress-guard).
    const viaFetch = (to: Destination) => {
      const controller = new AbortController();
      aborted = () => controller.abort();
      remoteAddress = to.address;
      const port = target.port || "80";
      const pinned = `http://${to.family === 6 ? `[${to.address}]` : to.address}:${port}${target.pathname}${target.search}`;
      fetch(pinned, {
        method: "POST",
        // The Host the endpoint's URL names; the connection goes to the address the guard checked.
        headers: { "content-type": "application/json", ...headers, host: target.host },
        body,
        redirect: "manual",
        signal: controller.signal,
        keepalive: true,
      })
        .then(async (res) => {
          // The endpoint answered: it was connected to.
          clearTimeout(connecting);
          const excerpt = await readExcerpt(res, cap);
          done({
            ok: res.status >= 200 && res.status < 300,
            status: res.status,
            excerpt,
            errorClass: null,
            error: null,
            retryAfterMs: parseRetryAfter(res.headers.get("retry-after") ?? undefined, clock.now()),
          });
        })
        .catch((e: NodeJS.ErrnoException) => fail(classOf(e), e.message));
    };
    // The egress guard decides the address before any socket exists (guarantee 8 (docs/guarantees.md)).
    guardDestination(target.hostname, { allowPublic: opts.allowPublic, resolve: opts.resolve })
      .then((to) => {
        if (settled) return;
        if (target.protocol === "http:" && !PROXIED) viaFetch(to);
        else req = send(to);
      })
      .catch((e: NodeJS.ErrnoException) => fail(classOf(e), e.message));
  });
}
