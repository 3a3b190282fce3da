/**
 * Sender authentication of an inbound message: SPF (RFC 7208), DKIM (RFC 6376, RFC 8463), ARC
 * (RFC 8617) and DMARC, all through mailauth and the resolver it is given.
 *
 * mailauth's authenticate() runs the same four checks but takes no clock for the DKIM time
 * checks (t= in the future, x= passed), so they are composed here the way it composes them:
 * DKIM and SPF side by side, ARC from what the DKIM pass parsed, DMARC from the three results.
 */
import type {
  ARCData,
  ARCResult,
  DKIMVerifyOptions,
  DKIMVerifyResult,
  DMARCResult,
  DNSResolver,
  ParsedHeader,
  SPFResult,
} from "mailauth";
import { isIP } from "node:net";
import { type Clock, systemClock } from "../core/clock.ts";
import type { DnsResolver } from "./dns.ts";

export type Verdict = "pass" | "fail" | "softfail" | "neutral" | "none" | "temperror" | "permerror" | "policy";

export interface SenderAuthInput {
  raw: Uint8Array;
  remoteIp: string;
  helo: string;
  /** Envelope sender; "" for a bounce (SPF then checks the HELO identity, RFC 7208 section 2.4). */
  mailFrom: string;
  /** Our host name: the authserv-id of Authentication-Results and the SPF comments. */
  mta: string;
}

export interface SenderAuthResult {
  spf: Verdict;
  /** Pass if any signature passes, aligned or not; else the first signature's result; none when unsigned. */
  dkim: Verdict;
  dmarc: Verdict;
  arc: Verdict;
  details: {
    spf: { domain: string; result: Verdict; comment?: string; explanation?: string };
    dkim: { domain: string; selector: string; algorithm: string; result: Verdict; comment?: string }[];
    dmarc: {
      domain: string;
      policy: string;
      result: Verdict;
      alignment?: { spf?: string; dkim?: string };
      comment?: string;
    };
    arc: { result: Verdict; instance?: number; comment?: string };
  };
  /** The Authentication-Results value (RFC 8601) built from mailauth's per-method results. */
  authentication_results: string;
  duration_ms: number;
}

export interface SenderAuthOptions {
  resolver: DnsResolver;
  /** For the DKIM signature time checks; tests pass a clock set to a vector's verify time. */
  clock?: Clock;
  totalTimeoutMs?: number;
}

export const DEFAULT_TOTAL_TIMEOUT_MS = 10_000;
const VERDICTS = new Set<string>(["pass", "fail", "softfail", "neutral", "none", "temperror", "permerror", "policy"]);
/** Lookups that found out there is no record; every other failure may go away on retry. */
const NO_RECORD = new Set(["ENOTFOUND", "ENODATA", "EBADNAME"]);

/** What the checks have produced so far: a deadline may cut them off half way. */
interface Checks {
  dkim?: DKIMVerifyResult;
  spf?: SPFResult;
  arc?: ARCResult;
  dmarc?: DMARCResult | false;
  /** Why a check has no result: the deadline or an exception inside mailauth. */
  unfinished: string;
}

/**
 * Never throws and never hangs: at `totalTimeoutMs` every DNS question still open fails as a
 * timeout and the call returns, each check that has not finished reported as temperror.
 */
export async function verifySender(input: SenderAuthInput, opts: SenderAuthOptions): Promise<SenderAuthResult> {
  const started = performance.now();
  const dns = boundedResolver(opts.resolver);
  const checks: Checks = { unfinished: "timed out" };
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const deadline = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, opts.totalTimeoutMs ?? DEFAULT_TOTAL_TIMEOUT_MS);
    });
    await Promise.race([runChecks(input, dns.resolve, (opts.clock ?? systemClock).now(), checks), deadline]);
  } catch (err) {
    checks.unfinished = `error: ${err instanceof Error ? err.message : String(err)}`;
  } finally {
    clearTimeout(timer);
    // Whatever still runs (after a timeout or an exception) gets no more answers.
    dns.close();
  }
  return { ...summarize(input, checks, dns.temporaryFailures), duration_ms: Math.round(performance.now() - started) };
}

/**
 * The result of a verification that produced nothing (its thread crashed or was stopped): every
 * verdict temperror, each check's comment `why`.
 */
export function unfinishedResult(input: SenderAuthInput, why: string, durationMs: number): SenderAuthResult {
  return { ...summarize(input, { unfinished: why }, new Set()), duration_ms: Math.round(durationMs) };
}

/**
 * At most this many DKIM-Signature fields of a message are verified, the first ones in the header
 * block (the newest); the rest are reported as neutral without a key lookup or a body hash. Each
 * signature may ask for a body hash of its own (canonicalization, algorithm and l= length make
 * it distinct), so without a bound 100 signatures over a 1 MiB body cost 100 passes over it and
 * over a second of CPU. Real mail carries one to three (author, sending service, mailing list);
 * OpenDKIM's MaximumSignaturesToVerify is 3 by default.
 */
export const MAX_DKIM_SIGNATURES = 5;

type DkimVerify = (input: Buffer, options: DKIMVerifyOptions) => Promise<DKIMVerifyResult>;

/** What the checks call: mailauth's SPF, ARC and DMARC checks and the bounded DKIM verifier. */
interface CheckModules {
  spf: typeof import("mailauth").spf;
  arc: typeof import("mailauth").arc;
  dmarc: typeof import("mailauth").dmarc;
  dkimVerify: DkimVerify;
}

let checkModules: Promise<CheckModules> | null = null;

/** A turn of the event loop: what is waiting (a socket, a timer) runs before the next step. */
const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * mailauth and what it needs, loaded by the first message, not at start-up: they cost an idle
 * appliance about 20 MB it need not spend (docs/performance.md). Evaluating them is synchronous
 * work, 130–200 ms from source (libmime's charset tables, joi and the schemas mailauth builds
 * with it, node:https, tldts), less from the compiled binary's precompiled modules. Required as
 * one chain it would hold the loop that serves ingress that long (guarantee 9,
 * docs/guarantees.md), so they are loaded a few at a time, dependencies first, with a turn of the
 * event loop between; each step then takes what its own modules cost, 40 ms at most from source.
 * Only the checks' own modules are loaded, not mailauth's index (signing, BIMI).
 */
async function loadCheckModules(): Promise<CheckModules> {
  // mailauth's dependencies, ahead of it: these steps only decide when each is evaluated (mailauth
  // requires them anyway), so one that fails to load here fails nothing.
  const ahead = (load: () => Promise<unknown>) => load().then(nextTurn, nextTurn);
  await ahead(() => import("node:https"));
  await ahead(() => Promise.all([import("punycode.js"), import("tldts"), import("ipaddr.js")]));
  await ahead(() => import("libmime"));
  await ahead(() => import("joi"));
  const tools = await import("mailauth/lib/tools.js");
  await nextTurn();
  const { DkimVerifier } = await import("mailauth/lib/dkim/dkim-verifier.js");
  await nextTurn();
  const { spf } = await import("mailauth/lib/spf/index.js");
  await nextTurn();
  const [{ arc }, { dmarc }] = await Promise.all([
    import("mailauth/lib/arc/index.js"),
    import("mailauth/lib/dmarc/index.js"),
  ]);
  return { spf, arc, dmarc, dkimVerify: boundedDkimVerify(DkimVerifier, tools.writeToStream) };
}

/**
 * mailauth's dkimVerify with MAX_DKIM_SIGNATURES: its verifier prepares every signature in turn
 * (`prepareSignature`), and one marked `invalid` there is reported as neutral, with the reason as
 * its comment, without its key or its body hash (mailauth 7.1.0; src/mail/sender-auth.test.ts
 * holds it to that).
 */
function boundedDkimVerify(
  DkimVerifier: typeof import("mailauth/lib/dkim/dkim-verifier.js").DkimVerifier,
  writeToStream: typeof import("mailauth/lib/tools.js").writeToStream,
): DkimVerify {
  class BoundedDkimVerifier extends DkimVerifier {
    private signatures = 0;
    override prepareSignature(header: { type: string; invalid?: string }): void {
      super.prepareSignature(header);
      if (header.type === "DKIM" && ++this.signatures > MAX_DKIM_SIGNATURES && !header.invalid)
        header.invalid = `not verified: only the first ${MAX_DKIM_SIGNATURES} signatures are`;
    }
  }
  return async (input, options) => {
    const verifier = new BoundedDkimVerifier(options);
    await writeToStream(verifier, input);
    // The fields dkimVerify returns; arc (what the ARC check reads) is not enumerable there either.
    const result = {
      headerFrom: verifier.headerFrom,
      fromFields: verifier.fromFields,
      envelopeFrom: verifier.envelopeFrom,
      results: verifier.results,
    };
    return Object.defineProperty(result, "arc", { value: verifier.arc }) as DKIMVerifyResult;
  };
}

async function runChecks(input: SenderAuthInput, resolver: DNSResolver, now: number, checks: Checks): Promise<void> {
  const { arc, dmarc, spf, dkimVerify } = await (checkModules ??= loadCheckModules());
  const message = Buffer.from(input.raw.buffer, input.raw.byteOffset, input.raw.byteLength);
  const sender = input.mailFrom || undefined;
  // As authenticate() does: without a HELO name the client's address stands in, and an address
  // is checked as the address literal a client would send (RFC 5321 section 4.1.3).
  const helo = input.helo || input.remoteIp;
  await Promise.all([
    dkimVerify(dkimInput(message), { resolver, sender, curTime: new Date(now) }).then((r) => (checks.dkim = r)),
    spf({ ip: input.remoteIp, helo: isIP(helo) ? `[${helo}]` : helo, sender, mta: input.mta, resolver }).then(
      (r) => (checks.spf = r),
    ),
  ]);
  const dkim = checks.dkim!;
  // The same resolver function lets ARC reuse the keys the DKIM pass fetched.
  checks.arc = await arc(dkim.arc as unknown as ARCData, { resolver });
  const spfPassed = checks.spf!.status.result === "pass" ? [checks.spf!.domain] : [];
  checks.dmarc = await dmarc({
    headerFrom: dkim.headerFrom,
    fromFields: dkim.fromFields,
    spfDomains: spfPassed,
    dkimDomains: dkim.results
      .filter((r) => r.status.result === "pass")
      .map((r) => ({ id: r.id, domain: r.signingDomain!, aligned: r.status.aligned, underSized: r.status.underSized })),
    arcResult: checks.arc,
    resolver,
  });
}

/**
 * The caller's resolver until `close()`: then every open and later question fails with ETIMEOUT.
 * It remembers the names whose lookups failed for a reason that may go away. A plain set of the
 * open questions, not an AbortSignal: a listener added and removed per question, and the
 * DOMException `abort()` makes, measured as 4% of the SMTP pipeline's main thread.
 */
function boundedResolver(resolver: DnsResolver): {
  resolve: DNSResolver;
  temporaryFailures: Set<string>;
  close: () => void;
} {
  const temporaryFailures = new Set<string>();
  const open = new Set<() => void>();
  let closed = false;
  const resolve = (name: string, rrtype: string) =>
    new Promise<unknown>((done, fail) => {
      const failed = (err: unknown): void => {
        if (!NO_RECORD.has((err as { code?: string } | null)?.code ?? "")) temporaryFailures.add(name.toLowerCase());
        fail(err);
      };
      const cutOff = (): void => failed(Object.assign(new Error(`ETIMEOUT ${rrtype} ${name}`), { code: "ETIMEOUT" }));
      if (closed) return cutOff();
      open.add(cutOff);
      // async: a resolver that throws instead of rejecting fails the same way.
      (async () => resolver(name, rrtype))()
        .then(done, failed)
        .finally(() => open.delete(cutOff));
    });
  const close = (): void => {
    closed = true;
    for (const cutOff of open) cutOff();
    open.clear();
  };
  return { resolve: resolve as DNSResolver, temporaryFailures, close };
}

type Details = SenderAuthResult["details"];

/** Each check's verdict, details and Authentication-Results rows; a check without a result is temperror. */
function summarize(
  input: SenderAuthInput,
  checks: Checks,
  temporaryFailures: Set<string>,
): Omit<SenderAuthResult, "duration_ms"> {
  const dkim = summarizeDkim(checks);
  const spf = summarizeSpf(input, checks);
  const arc = summarizeArc(checks, temporaryFailures);
  const dmarc = summarizeDmarc(checks);
  return {
    spf: spf.details.result,
    dkim: dkim.verdict,
    dmarc: dmarc.details.result,
    arc: arc.details.result,
    details: { spf: spf.details, dkim: dkim.details, dmarc: dmarc.details, arc: arc.details },
    authentication_results: [input.mta, ...dkim.rows, ...spf.rows, ...arc.rows, ...dmarc.rows].join(";\r\n "),
  };
}

const unfinishedRow = (method: string, checks: Checks) => `${method}=temperror (${checks.unfinished})`;

function summarizeDkim(checks: Checks): { verdict: Verdict; details: Details["dkim"]; rows: string[] } {
  if (!checks.dkim) return { verdict: "temperror", details: [], rows: [unfinishedRow("dkim", checks)] };
  // An unsigned message is one result without a signing domain ("dkim=none").
  const details = checks.dkim.results
    .filter((r) => r.signingDomain)
    .map((r) => ({
      domain: r.signingDomain!,
      selector: r.selector ?? "",
      algorithm: r.algo ?? "",
      result: verdict(r.status.result),
      ...(r.status.comment ? { comment: r.status.comment } : {}),
    }));
  const best = details.some((d) => d.result === "pass") ? "pass" : (details[0]?.result ?? "none");
  return { verdict: best, details, rows: checks.dkim.results.map((r) => r.info) };
}

function summarizeSpf(input: SenderAuthInput, checks: Checks): { details: Details["spf"]; rows: string[] } {
  if (!checks.spf) {
    return {
      details: { domain: domainOf(input.mailFrom || input.helo), result: "temperror", comment: checks.unfinished },
      rows: [unfinishedRow("spf", checks)],
    };
  }
  const { domain, status, explanation, info } = checks.spf;
  return {
    details: {
      domain,
      result: verdict(status.result),
      ...(status.comment ? { comment: status.comment } : {}),
      ...(explanation ? { explanation } : {}),
    },
    rows: [info],
  };
}

function summarizeArc(checks: Checks, temporaryFailures: Set<string>): { details: Details["arc"]; rows: string[] } {
  if (!checks.arc)
    return { details: { result: "temperror", comment: checks.unfinished }, rows: [unfinishedRow("arc", checks)] };
  const { status, i, info } = checks.arc;
  // mailauth counts every ARC failure as permanent; one that came from a key lookup that timed
  // out or failed is temperror here, so that it can be retried rather than taken for a forgery.
  // The Authentication-Results row keeps arc=fail: RFC 8617 defines no temperror for arc.
  const keyLookupFailed = status.result === "fail" && arcKeyNames(checks).some((name) => temporaryFailures.has(name));
  const result = keyLookupFailed ? "temperror" : verdict(status.result);
  return {
    details: { result, ...(i ? { instance: i } : {}), ...(status.comment ? { comment: status.comment } : {}) },
    rows: info ? [info] : [],
  };
}

function summarizeDmarc(checks: Checks): { details: Details["dmarc"]; rows: string[] } {
  const fromDomain = domainOf(checks.dkim?.headerFrom[0] ?? "");
  if (checks.dmarc === undefined) {
    return {
      details: { domain: fromDomain, policy: "none", result: "temperror", comment: checks.unfinished },
      rows: [unfinishedRow("dmarc", checks)],
    };
  }
  if (checks.dmarc === false) {
    // RFC 7489 section 6.6.1: DMARC needs exactly one author domain; with none or several there is nothing to align with.
    return {
      details: {
        domain: fromDomain,
        policy: "none",
        result: "permerror",
        comment: "not exactly one author domain in From",
      },
      rows: [],
    };
  }
  const { status, policy, alignment, info } = checks.dmarc;
  return {
    details: {
      domain: status.header?.from ?? fromDomain,
      policy: policy ?? "none",
      result: verdict(status.result),
      alignment: { spf: alignment?.spf?.result, dkim: alignment?.dkim?.result },
      ...(status.comment ? { comment: status.comment } : {}),
    },
    rows: [info],
  };
}

/** The key records the ARC check asks for: every ARC-Seal's and the newest ARC-Message-Signature's. */
function arcKeyNames(checks: Checks): string[] {
  const chain = (checks.dkim?.arc as unknown as ARCData | undefined)?.chain || [];
  const keyName = (header: ParsedHeader | undefined) =>
    `${header?.parsed?.s?.value}._domainkey.${header?.parsed?.d?.value}`.toLowerCase();
  return [...chain.map((entry) => keyName(entry["arc-seal"])), keyName(chain.at(-1)?.["arc-message-signature"])];
}

function verdict(result: string): Verdict {
  if (result === "temperr") return "temperror";
  // Anything else mailauth might say is not one of ours: treat it as a failure to decide.
  return VERDICTS.has(result) ? (result as Verdict) : "temperror";
}

function domainOf(address: string): string {
  return address.slice(address.lastIndexOf("@") + 1).toLowerCase();
}

/** A header field that makes the DKIM pass read the body: a signature (DKIM, ARC) hashes it. */
const SIGNATURE_FIELD = /^(?:dkim-signature|arc-[a-z-]+)[ \t]*:/im;

/**
 * What the DKIM pass reads: the whole message when its header block holds a DKIM or ARC field,
 * else only the header block. An unsigned message's body takes part in nothing the pass reports
 * (no signature hashes it; From and the ARC data are header fields), and mailauth would
 * otherwise canonicalize all of it for no use: a quarter of sender authentication's time for a
 * small plain message, more for a large one. A block that does not end in CRLF CRLF is read whole.
 */
export function dkimInput(message: Buffer): Buffer {
  const end = message.indexOf("\r\n\r\n");
  if (end < 0 || SIGNATURE_FIELD.test(message.toString("latin1", 0, end + 2))) return message;
  return message.subarray(0, end + 4);
}
