import { chmodSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { type Clock, systemClock } from "../core/clock.ts";
import { newId } from "../core/ids.ts";
import type { Logger } from "../core/log.ts";
import { AppError } from "../errors/index.ts";
import type { RuntimeClaim, Storage, Tx } from "../store/index.ts";
import { type ChannelOptions, hashRuntimeToken, newRuntimeToken } from "./channel.ts";
import type { AgentMetrics } from "./metrics.ts";
import { type ResolvedTemplate, TemplateCache } from "./templates.ts";
import type {
  AgentPool,
  ClaimRequest,
  ClaimResult,
  Isolation,
  LaunchedRuntime,
  LaunchSpec,
  PoolStatus,
  RequestHandler,
  RuntimeChannel,
  RuntimeLimits,
  RuntimeRecord,
  RuntimeState,
  TemplateTool,
  ToolProvisioner,
  ToolRecord,
} from "./types.ts";

export interface PoolSettings {
  minIdle: number;
  maxRuntimes: number;
  onEmpty: "cold" | "429";
  retryAfterMs: number;
  stuckTimeoutMs: number;
  helloTimeoutMs: number;
  memoryBytes: number;
  /** How long a runtime may take to answer `configure`. */
  configureTimeoutMs?: number;
}

export interface PoolDeps {
  storage: Pick<Storage, "agents" | "audit" | "committer" | "resources">;
  /** The data dir: runtimes live under `<dataDir>/agents/rt/<id>`, their sockets under `<dataDir>/agents/run/`. */
  dataDir: string;
  settings: PoolSettings;
  isolation: { isolation: Isolation; reason: string | null };
  launch(spec: LaunchSpec): LaunchedRuntime | Promise<LaunchedRuntime>;
  /** The runtime's socket (src/agents/channel.ts's openChannel). */
  openChannel(opts: ChannelOptions): RuntimeChannel | Promise<RuntimeChannel>;
  tools: ToolProvisioner;
  /** Requests a runtime makes (model.chat, tool.call, tool.provision, secret.get). */
  handler?: (runtimeId: string) => RequestHandler;
  log: Logger;
  clock?: Clock;
  metrics?: AgentMetrics;
  /** Limits besides memory (defaults: one core, 256 open files, 64 processes). */
  limits?: Partial<RuntimeLimits>;
  /**
   * This node, on a database several nodes share (`nodeName`): its runtimes are the only ones it
   * claims, checks, reconciles and destroys; another node's it only marks for destroy. Null or
   * absent on SQLite, whose one process is the only node.
   */
  node?: string | null;
}

/** A node's name on a shared database: its host and its data dir (each node has its own; docs/agents.md#several-nodes). */
export function nodeName(dataDir: string): string {
  return `${hostname()}:${dataDir}`;
}

/** An agent's name in its tenant: an email tool's local part. */
const AGENT_NAME = /^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$/;
const LOG_LINES = 500;
const NOT_DELETED: readonly RuntimeState[] = ["starting", "ready", "claimed", "stuck"];

interface Live {
  id: string;
  proc: LaunchedRuntime | null;
  channel: RuntimeChannel | null;
  exited: { code: number | null; signal: string | null } | null;
  /** Last message from the runtime (any message is a heartbeat), and the last one written to its row. */
  activity: number;
  flushed: number;
  /** Started for the refill (counts as idle capacity while it starts). */
  warm: boolean;
}

export interface LogLine {
  at: number;
  stream: "stdout" | "stderr";
  line: string;
}

/**
 * The warm pool (docs/agents.md): runtimes started ahead, claimed atomically, configured over
 * their socket, destroyed (never reused) when released or stuck. The rows are the truth; this
 * object holds only what a process has: the children, their channels and their last output.
 */
export class Pool implements AgentPool {
  readonly clock: Clock;
  readonly rtDir: string;
  readonly runDir: string;
  private readonly live = new Map<string, Live>();
  private readonly outputs = new Map<string, LogLine[]>();
  private readonly destroys = new Map<string, Promise<RuntimeRecord | null>>();
  /** `tenant/agent` → the runtime claimed for it: what an `agent:<name>` route target leads to. */
  private readonly claimedAgents = new Map<string, string>();
  private refillChain: Promise<unknown> = Promise.resolve();
  private readonly templates: TemplateCache;
  private minIdle: number;
  private closed = false;

  /** This node on a shared database; null on SQLite (PoolDeps.node). */
  readonly node: string | null;

  constructor(private readonly deps: PoolDeps) {
    this.node = deps.node ?? null;
    this.clock = deps.clock ?? systemClock;
    this.rtDir = join(deps.dataDir, "agents", "rt");
    this.runDir = join(deps.dataDir, "agents", "run");
    this.minIdle = deps.settings.minIdle;
    this.templates = new TemplateCache(deps.storage.resources);
    for (const d of [join(deps.dataDir, "agents"), this.rtDir, this.runDir]) {
      mkdirSync(d, { recursive: true, mode: 0o700 });
      chmodSync(d, 0o700);
    }
  }

  private get store() {
    return this.deps.storage.agents;
  }

  // The surface

  async status(): Promise<PoolStatus> {
    return {
      minIdle: this.minIdle,
      isolation: this.deps.isolation.isolation,
      isolationReason: this.deps.isolation.reason,
      byState: await this.store.countByState(),
      onEmpty: this.deps.settings.onEmpty,
    };
  }

  /** Kept in memory until restart (the setting is the default again then); audited. */
  async setMinIdle(n: number, actor: string): Promise<void> {
    if (!Number.isInteger(n) || n < 0 || n > this.deps.settings.maxRuntimes)
      throw new AppError("invalid_input", `min_idle must be an integer from 0 to ${this.deps.settings.maxRuntimes}`);
    const was = this.minIdle;
    this.minIdle = n;
    await this.deps.storage.audit.append({ actor, action: "agents.pool", details: { min_idle: n, was } });
    void this.refill();
  }

  get(id: string): Promise<RuntimeRecord | null> {
    return this.store.getRuntime(id);
  }

  list(q: { tenants?: readonly string[]; state?: RuntimeState; after?: string; limit: number }) {
    return this.store.listRuntimes(q);
  }

  tools(runtimeId: string): Promise<ToolRecord[]> {
    return this.store.listTools(runtimeId);
  }

  logs(id: string): LogLine[] {
    return [...(this.outputs.get(id) ?? [])];
  }

  /** How runtimes are isolated here, and why not better when it is `process`. */
  get isolation(): { isolation: Isolation; reason: string | null } {
    return this.deps.isolation;
  }

  channel(id: string): RuntimeChannel | null {
    return this.live.get(id)?.channel ?? null;
  }

  /** The runtime claimed for `agent` in `tenant` (and not being destroyed), or null. */
  claimedAgent(tenant: string, agent: string): string | null {
    return this.claimedAgents.get(`${tenant}/${agent}`) ?? null;
  }

  private noteClaimed(row: RuntimeRecord): void {
    if (row.state === "claimed" && !row.destroying && row.tenant && row.agent)
      this.claimedAgents.set(`${row.tenant}/${row.agent}`, row.id);
  }

  private forgetClaimed(row: RuntimeRecord): void {
    const key = `${row.tenant}/${row.agent}`;
    if (this.claimedAgents.get(key) === row.id) this.claimedAgents.delete(key);
  }

  /** Runtimes this process runs (started and not destroyed). */
  get running(): number {
    return this.live.size;
  }

  // Claim

  async claim(req: ClaimRequest, actor: string): Promise<ClaimResult> {
    const started = performance.now();
    if (this.closed) throw new AppError("unavailable", "the agent pool is shutting down", { retryAfter: 5 });
    if (!AGENT_NAME.test(req.agent))
      throw new AppError("invalid_input", "agent must be 1-64 lower-case letters, digits, dots, dashes or underscores");
    try {
      return await this.claimRuntime(req, actor, started);
    } finally {
      // The refill starts at once, but after the claim answered: its row and process are not the
      // claim's work. From a timer, not setImmediate: the loop's I/O goes first (timed per stage:
      // the answer's way from the handler to an API client on the same machine, p90 1.1 → 0.37 ms).
      setTimeout(() => void this.refill(), 0);
    }
  }

  /**
   * One commit takes the runtime: its claim, the audit entry and every tool's row with its own
   * entry. Then the tools are made, and `configure` goes over the socket
   * (docs/agents.md#the-pool-claim-release-destroy-sync).
   */
  private async claimRuntime(req: ClaimRequest, actor: string, started: number): Promise<ClaimResult> {
    const tpl = await this.templates.resolve(req.tenant, req.template);
    const { isolation, reason } = this.deps.isolation;
    if (tpl.spec.sandbox === "required" && isolation === "process")
      throw new AppError(
        "conflict",
        `template ${tpl.ref} requires a sandbox, and agents on this host run as plain processes (${reason ?? "no sandbox available"})`,
      );
    const templateTools = (tpl.spec.tools ?? []) as TemplateTool[];
    const { stored, credentials } = splitUserConfig(req.userConfig ?? {});
    const plan = this.deps.tools.planTools({ tools: templateTools, userConfig: stored ?? {}, credentials });
    const claim: RuntimeClaim = {
      tenant: req.tenant,
      agent: req.agent,
      template: tpl.ref,
      templateVersion: tpl.version,
      userConfig: stored,
      cold: false,
      node: this.node,
    };
    const { committer, audit } = this.deps.storage;
    const recordTx = (tx: Tx, r: RuntimeRecord) => {
      audit.appendTx(tx, claimEntry(r, actor, tpl));
      return { row: r, tools: this.deps.tools.recordToolsTx(tx, r, plan, actor) };
    };
    // A template with its own program cannot use a warm runtime (started as the reference runtime).
    // The claim's unit refuses an agent claimed already. With no tools to make active first, the
    // runtime is configured while the claim's commit is written (the answer still waits for both).
    const early: { id: string; done: Promise<void> }[] = [];
    let claimed = tpl.spec.command
      ? null
      : await committer
          .run((tx) => {
            const r = this.store.claimReadyTx(tx, claim);
            if (r && templateTools.length === 0)
              tx.beforeCommit(() => {
                const done = this.configure(r, tpl);
                done.catch(() => {});
                early.push({ id: r.id, done });
              });
            return r ? recordTx(tx, r) : null;
          })
          .catch(async (e) => {
            await this.dropConfigured(early, null);
            throw e;
          });
    // A batch run again may have configured a runtime this claim did not take in the end.
    if (early.length) await this.dropConfigured(early, claimed?.row.id ?? null);
    const cold = claimed === null;
    if (!claimed) {
      const retryAfter = Math.ceil(this.deps.settings.retryAfterMs / 1000);
      if (this.deps.settings.onEmpty === "429" && !tpl.spec.command)
        throw new AppError("rate_limited", "no agent runtime is ready; try again shortly", { retryAfter });
      if (tpl.spec.command && (await this.store.findClaimed(req.tenant, req.agent)))
        throw new AppError("conflict", `agent ${req.agent} is claimed in ${req.tenant} already`);
      if (this.live.size >= this.deps.settings.maxRuntimes)
        throw new AppError("rate_limited", `the pool runs agents_max_runtimes (${this.deps.settings.maxRuntimes})`, {
          retryAfter,
        });
      const fresh = await this.spawn("cold", tpl.spec.command);
      try {
        claimed = await committer.run((tx) => {
          const r = this.store.transitionRuntimeTx(tx, fresh.id, ["starting"], {
            ...claim,
            state: "claimed",
            cold: true,
            claimedAt: tx.now,
            syncedAt: tx.now,
            heartbeatAt: tx.now,
          });
          return r ? recordTx(tx, r) : null;
        });
        if (!claimed) throw new AppError("unavailable", "the runtime started for this claim went away", { retryAfter });
      } catch (e) {
        await this.destroyQuietly(fresh.id, `claim failed: ${message(e)}`);
        throw e;
      }
    }
    const row = claimed.row;
    this.noteClaimed(row);
    try {
      // Configured only once its tools are active: a runtime may call one as soon as it is configured.
      const provisioned = await this.deps.tools.provisionTools(row, plan, claimed.tools, actor);
      await (early.findLast((e) => e.id === row.id)?.done ?? this.configure(row, tpl));
      const claimMs = performance.now() - started;
      this.deps.metrics?.claims.inc({ kind: cold ? "cold" : "warm" });
      this.deps.metrics?.claimSeconds.observe(claimMs / 1000);
      this.deps.log.info("agent claimed", {
        runtime: row.id,
        tenant: row.tenant,
        agent: row.agent,
        template: row.template,
        cold,
        ms: Math.round(claimMs),
      });
      return { runtime: row, cold, tools: provisioned.tools, addresses: provisioned.addresses, claimMs };
    } catch (e) {
      await this.destroyQuietly(row.id, `claim failed: ${message(e)}`);
      throw e;
    }
  }

  /**
   * Destroy the runtimes configured for a claim whose commit did not take them (`kept` aside):
   * they hold a tenant's configuration, so no other claim may have them.
   */
  private async dropConfigured(early: readonly { id: string }[], kept: string | null): Promise<void> {
    for (const id of new Set(early.map((e) => e.id)))
      if (id !== kept) await this.destroyQuietly(id, "configured for a claim that did not commit");
  }

  /** Send `configure` with the template as it is now. */
  private async configure(row: RuntimeRecord, tpl: ResolvedTemplate): Promise<void> {
    const channel = this.live.get(row.id)?.channel;
    if (!channel) throw new AppError("unavailable", `runtime ${row.id} has no connection`, { retryAfter: 1 });
    const tools = (tpl.spec.tools ?? []) as TemplateTool[];
    await channel.request(
      "configure",
      {
        tenant: row.tenant,
        agent: row.agent,
        template: {
          name: tpl.ref,
          version: tpl.version,
          instructions: tpl.spec.instructions,
          model: { default: tpl.spec.model.default, allow_override: tpl.spec.model.allow_override ?? false },
          tools: this.deps.tools.definitions(tools),
        },
        user_config: row.userConfig ?? {},
      },
      this.deps.settings.configureTimeoutMs ?? 10_000,
    );
  }

  async sync(tenant: string, target: { id: string } | { template: string }, actor: string): Promise<RuntimeRecord[]> {
    let rows: RuntimeRecord[];
    if ("id" in target) {
      const r = await this.store.getRuntime(target.id);
      if (!r || r.tenant !== tenant || r.state === "deleted") throw new AppError("not_found", "not found");
      if (r.state !== "claimed") throw new AppError("conflict", `runtime ${r.id} is ${r.state}, not claimed`);
      // Its template goes over its socket, which is on the node that runs it.
      if (!this.ours(r)) throw new AppError("conflict", `runtime ${r.id} runs on node ${r.node}: sync it there`);
      rows = [r];
    } else {
      const claimed = await this.store.listRuntimes({
        tenants: [tenant],
        state: "claimed",
        node: this.node,
        limit: 100_000,
      });
      const own = `${tenant}/${target.template}`;
      rows = claimed.filter(
        (r) => r.template === target.template || r.template === own || r.template?.endsWith(`/${target.template}`),
      );
    }
    const out: RuntimeRecord[] = [];
    for (const r of rows) {
      const tpl = await this.templates.recorded(tenant, r.template!);
      await this.configure(r, tpl);
      const synced = await this.deps.storage.committer.run((tx) => {
        const s = this.store.transitionRuntimeTx(tx, r.id, ["claimed"], {
          syncedAt: tx.now,
          templateVersion: tpl.version,
        });
        if (s)
          this.deps.storage.audit.appendTx(tx, {
            actor,
            tenant,
            action: "agent.sync",
            target: r.id,
            details: { agent: r.agent, template: tpl.ref, from: r.templateVersion, to: tpl.version },
          });
        return s;
      });
      if (synced) out.push(synced);
    }
    return out;
  }

  // Release and destroy

  async release(tenant: string, id: string, actor: string): Promise<RuntimeRecord> {
    const row = await this.store.getRuntime(id);
    if (!row || row.tenant !== tenant || row.state === "deleted") throw new AppError("not_found", "not found");
    if (row.state !== "claimed") throw new AppError("conflict", `runtime ${id} is ${row.state}, not claimed`);
    // A claimed runtime has seen the tenant's data: it is destroyed, never handed to another claim.
    return this.finish(await this.destroyRuntime(id, actor, "agent.release", "released"), id);
  }

  async destroy(tenant: string | null, id: string, actor: string): Promise<RuntimeRecord> {
    const row = await this.store.getRuntime(id);
    if (!row || (tenant !== null && row.tenant !== tenant)) throw new AppError("not_found", "not found");
    if (row.state === "deleted") return row;
    const destroyed = await this.finish(await this.destroyRuntime(id, actor, "agent.destroy", "destroyed"), id);
    // A warm runtime destroyed leaves the pool short of min_idle: refilled now, as after a claim,
    // not at the next tick (agents_tick_interval). A claimed one's claim refilled already.
    if (row.state !== "claimed") void this.refill().catch(() => {});
    return destroyed;
  }

  private async finish(row: RuntimeRecord | null, id: string): Promise<RuntimeRecord> {
    return row ?? (await this.store.getRuntime(id)) ?? Promise.reject(new AppError("not_found", "not found"));
  }

  /**
   * Destroy in the plan's order: mark destroying (committed, audited) → every tool → the process →
   * its directory and socket → the token revoked and the row deleted. A crash anywhere leaves the
   * flag set, and the next start (or tick) resumes from the top: every step is idempotent.
   */
  destroyRuntime(id: string, actor: string, action: string, reason: string): Promise<RuntimeRecord | null> {
    const running = this.destroys.get(id);
    if (running) return running;
    const run = this.runDestroy(id, actor, action, reason).finally(() => this.destroys.delete(id));
    this.destroys.set(id, run);
    return run;
  }

  /** Whether this node runs the runtime (always, on SQLite). */
  ours(row: Pick<RuntimeRecord, "node">): boolean {
    return this.node === null || row.node === this.node;
  }

  /**
   * A runtime whose row another node deleted (a destroy asked there, on a shared database) while its
   * process runs here: the process, its directory and socket go. Its tools went with the destroy.
   */
  async stopDeleted(row: RuntimeRecord): Promise<void> {
    if (row.state !== "deleted" || !this.ours(row)) return;
    await this.stopProcess(row);
    rmSync(row.dir, { recursive: true, force: true });
    rmSync(row.socket, { force: true });
    this.forgetClaimed(row);
    this.live.delete(row.id);
    this.deps.log.info("agent runtime destroyed", {
      runtime: row.id,
      reason: "deleted by another node",
      tenant: row.tenant,
    });
  }

  /** Ids of the runtimes this process runs. */
  liveIds(): string[] {
    return [...this.live.keys()];
  }

  /** Whether a destroy of this runtime is under way in this process. */
  isDestroying(id: string): boolean {
    return this.destroys.has(id);
  }

  private async runDestroy(id: string, actor: string, action: string, reason: string): Promise<RuntimeRecord | null> {
    const { committer, audit } = this.deps.storage;
    const marked = await committer.run((tx) => {
      const r = this.store.getRuntimeTx(tx, id);
      if (!r || r.state === "deleted" || r.destroying) return r;
      audit.appendTx(tx, {
        actor,
        tenant: r.tenant,
        action,
        target: id,
        details: { reason, state: r.state, agent: r.agent, template: r.template },
      });
      return this.store.transitionRuntimeTx(tx, id, NOT_DELETED, { destroying: true });
    });
    if (!marked || marked.state === "deleted") return marked;
    // Another node's runtime (a shared database): its process is there, and so is the rest of the
    // destroy, which that node's tick finishes within one tick (the row says destroying meanwhile).
    if (!this.ours(marked)) return marked;
    this.forgetClaimed(marked);
    await this.deps.tools.destroyTools(marked);
    await this.stopProcess(marked);
    rmSync(marked.dir, { recursive: true, force: true });
    rmSync(marked.socket, { force: true });
    const done = await this.store.transitionRuntime(id, NOT_DELETED, {
      state: "deleted",
      deletedAt: this.clock.now(),
      destroying: false,
      // Revoked: no token hashes to this.
      tokenHash: "revoked",
      pid: null,
    });
    this.live.delete(id);
    this.deps.log.info("agent runtime destroyed", { runtime: id, reason, tenant: marked.tenant });
    return done;
  }

  private async destroyQuietly(id: string, reason: string): Promise<void> {
    try {
      await this.destroyRuntime(id, "system", "agent.destroy", reason);
    } catch (e) {
      this.deps.log.error("agent runtime destroy failed; the tick retries it", { runtime: id, err: e });
    }
  }

  /** Kill the runtime's process: ours through its handle, a previous run's by its recorded pid when it is still one of ours. */
  private async stopProcess(row: RuntimeRecord): Promise<void> {
    const live = this.live.get(row.id);
    if (live) {
      await live.channel?.close().catch(() => {});
      if (live.proc && !live.exited) await live.proc.kill();
      return;
    }
    killLeftover(row);
  }

  // Starting runtimes

  /**
   * Start one runtime: its row (committed first, so that a crash leaves nothing the next start
   * cannot find), directory, socket and process; resolves once it answered hello with its token.
   * A warm one is then `ready`; a cold one stays `starting` for the claim that started it.
   */
  async spawn(kind: "warm" | "cold", command?: readonly string[]): Promise<RuntimeRecord> {
    const now = this.clock.now();
    const id = newId("rt", now);
    const token = newRuntimeToken();
    const tokenHash = hashRuntimeToken(token);
    const live = this.track(id, kind === "warm");
    try {
      const row = await this.store.insertRuntime({
        id,
        isolation: this.deps.isolation.isolation,
        tokenHash,
        dir: join(this.rtDir, id),
        socket: join(this.runDir, `${id}.sock`),
        cold: kind === "cold",
        createdAt: now,
        node: this.node,
      });
      await this.start(live, row, token, command);
      if (kind === "cold") return (await this.store.getRuntime(id)) ?? row;
      const at = this.clock.now();
      const ready = await this.store.transitionRuntime(id, ["starting"], {
        state: "ready",
        readyAt: at,
        heartbeatAt: at,
      });
      if (!ready) throw new AppError("unavailable", `runtime ${id} went away while starting`);
      return ready;
    } catch (e) {
      this.deps.log.warn("agent runtime failed to start", { runtime: id, err: e });
      await this.destroyQuietly(id, `start failed: ${message(e)}`);
      throw e;
    } finally {
      live.warm = false;
    }
  }

  private track(id: string, warm: boolean): Live {
    const live: Live = { id, proc: null, channel: null, exited: null, activity: 0, flushed: 0, warm };
    this.live.set(id, live);
    return live;
  }

  /** Open the socket, launch the process in its directory, wait for its hello. */
  private async start(live: Live, row: RuntimeRecord, token: string, command?: readonly string[]): Promise<void> {
    const { settings, log } = this.deps;
    mkdirSync(row.dir, { recursive: true, mode: 0o700 });
    chmodSync(row.dir, 0o700);
    rmSync(row.socket, { force: true });
    const channel = await this.deps.openChannel({
      runtimeId: row.id,
      socketPath: row.socket,
      tokenHash: row.tokenHash,
      clock: this.clock,
      helloTimeoutMs: settings.helloTimeoutMs,
      onRefused: (reason) => {
        void this.deps.storage.audit
          .append({ actor: "system", tenant: row.tenant, action: "agent.refused", target: row.id, details: { reason } })
          .catch((e) => log.error("audit of a refused runtime connection failed", { runtime: row.id, err: e }));
      },
    });
    live.channel = channel;
    channel.onActivity((at) => {
      if (at > live.activity) live.activity = at;
    });
    if (this.deps.handler) channel.onRequest(this.deps.handler(row.id));
    const runtimeLog = log.child({ runtime: row.id });
    const proc = await this.deps.launch({
      id: row.id,
      dir: row.dir,
      socket: row.socket,
      token,
      command,
      dataDir: this.deps.dataDir,
      limits: {
        memoryBytes: settings.memoryBytes,
        cpu: this.deps.limits?.cpu ?? 1,
        openFiles: this.deps.limits?.openFiles ?? 256,
        processes: this.deps.limits?.processes ?? 64,
      },
      onOutput: (stream, line) => {
        this.output(row.id, stream, line);
        runtimeLog.info(line, { stream });
      },
      onExit: (code, signal) => {
        live.exited = { code, signal };
        if (!this.destroys.has(row.id) && !this.closed)
          runtimeLog.warn("agent runtime exited", { code, signal: signal ?? undefined });
      },
    });
    live.proc = proc;
    if (this.closed) {
      await proc.kill();
      throw new AppError("unavailable", "the agent pool is shutting down");
    }
    await this.store.transitionRuntime(row.id, ["starting", "claimed"], { pid: proc.pid });
    // The channel times the hello out; a process that dies first need not be waited for.
    await Promise.race([
      channel.authenticated,
      proc.exited.then((x) => {
        throw new AppError("unavailable", `runtime exited before its hello (code ${x.code}, signal ${x.signal})`);
      }),
    ]);
    live.activity = Math.max(live.activity, this.clock.now());
  }

  private output(id: string, stream: "stdout" | "stderr", line: string): void {
    let lines = this.outputs.get(id);
    if (!lines) {
      lines = [];
      this.outputs.set(id, lines);
      // The output of runtimes gone long ago is dropped: the log has it.
      if (this.outputs.size > this.deps.settings.maxRuntimes * 2) {
        for (const k of this.outputs.keys()) {
          if (!this.live.has(k)) {
            this.outputs.delete(k);
            break;
          }
        }
      }
    }
    lines.push({ at: this.clock.now(), stream, line });
    if (lines.length > LOG_LINES) lines.splice(0, lines.length - LOG_LINES);
  }

  /**
   * Start enough warm runtimes for `min_idle` ready ones, within `agents_max_runtimes`; resolves
   * once those started (or failed to). Decisions are taken one at a time, so two refills never
   * both start the same missing runtime.
   */
  refill(): Promise<void> {
    const decided = this.refillChain.then(async () => {
      if (this.closed) return [];
      // Warm runtimes serve claims of templates: an appliance with none keeps none (and its memory).
      if (!(await this.deps.storage.resources.list({ kind: "templates", limit: 1 })).length) return [];
      // The ready ones, at most min_idle of them, from the ready index: not a count of the pool's whole history.
      const ready =
        this.minIdle > 0
          ? (
              await this.store.listRuntimes({
                state: "ready",
                node: this.node,
                limit: this.minIdle,
              })
            ).length
          : 0;
      let warming = 0;
      for (const l of this.live.values()) if (l.warm) warming++;
      const need = Math.min(this.minIdle - ready - warming, this.deps.settings.maxRuntimes - this.live.size);
      return Array.from({ length: Math.max(0, need) }, () =>
        this.spawn("warm").then(
          () => {},
          () => {},
        ),
      );
    });
    this.refillChain = decided.catch(() => []);
    return decided.then((spawns) => Promise.all(spawns)).then(() => {});
  }

  /**
   * Relaunch a claimed runtime whose process is gone (after a restart): same directory, same
   * claim and tools, a new token, configured again with its template as it is now.
   */
  async relaunch(row: RuntimeRecord): Promise<RuntimeRecord> {
    killLeftover(row);
    const tpl = await this.templates.recorded(row.tenant!, row.template!);
    const token = newRuntimeToken();
    const tokenHash = hashRuntimeToken(token);
    const live = this.track(row.id, false);
    const renewed = await this.store.transitionRuntime(row.id, ["claimed"], { tokenHash, pid: null });
    if (!renewed) throw new AppError("conflict", `runtime ${row.id} is no longer claimed`);
    this.noteClaimed(renewed);
    await this.start(live, renewed, token, tpl.spec.command);
    await this.configure(renewed, tpl);
    return (
      (await this.deps.storage.committer.run((tx) => {
        const r = this.store.transitionRuntimeTx(tx, row.id, ["claimed"], {
          heartbeatAt: tx.now,
          syncedAt: tx.now,
          templateVersion: tpl.version,
        });
        this.deps.storage.audit.appendTx(tx, {
          actor: "system",
          tenant: row.tenant,
          action: "agent.relaunch",
          target: row.id,
          details: { agent: row.agent, template: tpl.ref, version: tpl.version },
        });
        return r;
      })) ?? renewed
    );
  }

  // What the tick reads and does (src/agents/tick.ts)

  /** The in-process view of a runtime: whether it runs here, exited, and its last activity. */
  liveness(id: string): { running: boolean; exited: boolean; activity: number } {
    const l = this.live.get(id);
    return { running: !!l, exited: !!l?.exited, activity: l?.activity ?? 0 };
  }

  /** Write heartbeats seen since the last flush, in one unit. */
  async flushHeartbeats(): Promise<void> {
    const beats: { id: string; at: number }[] = [];
    for (const l of this.live.values())
      if (l.activity > l.flushed) {
        beats.push({ id: l.id, at: l.activity });
        l.flushed = l.activity;
      }
    await this.store.heartbeat(beats);
  }

  /** Mark a runtime stuck (audited with the reason); false when it was no longer in a state that can be. */
  async markStuck(row: RuntimeRecord, why: string): Promise<boolean> {
    const stuck = await this.deps.storage.committer.run((tx) => {
      const s = this.store.transitionRuntimeTx(tx, row.id, ["starting", "ready", "claimed"], {
        state: "stuck",
        stuckAt: tx.now,
        error: why,
      });
      if (s)
        this.deps.storage.audit.appendTx(tx, {
          actor: "system",
          tenant: row.tenant,
          action: "agent.stuck",
          target: row.id,
          details: { reason: why, was: row.state, agent: row.agent },
        });
      return s;
    });
    if (!stuck) return false;
    this.deps.metrics?.stuck.inc();
    this.deps.log.warn("agent runtime stuck", { runtime: row.id, reason: why, tenant: row.tenant ?? undefined });
    return true;
  }

  get settings(): PoolSettings {
    return this.deps.settings;
  }

  get metrics(): AgentMetrics | undefined {
    return this.deps.metrics;
  }

  get storage(): PoolDeps["storage"] {
    return this.deps.storage;
  }

  get provisioner(): ToolProvisioner {
    return this.deps.tools;
  }

  get log(): Logger {
    return this.deps.log;
  }

  /**
   * Shutdown: no new runtime starts; every process of this pool is killed and its socket closed.
   * The rows stay: the next start's reconcile destroys the warm ones and relaunches the claimed.
   */
  async close(): Promise<void> {
    this.closed = true;
    await this.refillChain;
    await Promise.allSettled(
      [...this.live.values()].map(async (l) => {
        await l.channel?.notify("shutdown", {});
        await l.channel?.close().catch(() => {});
        if (l.proc && !l.exited) await l.proc.kill();
      }),
    );
    this.live.clear();
  }
}

/** The claim's audit entry. */
function claimEntry(r: RuntimeRecord, actor: string, tpl: ResolvedTemplate) {
  return {
    actor,
    tenant: r.tenant,
    action: "agent.claim",
    target: r.id,
    details: { agent: r.agent, template: tpl.ref, version: tpl.version, cold: r.cold },
  };
}

/**
 * The claim's user config, split: per tool id, `{credentials, ...settings}`; the credentials are
 * handed to provisioning only (which keeps them in the vault), the settings are kept on the row.
 */
export function splitUserConfig(userConfig: Record<string, unknown>): {
  stored: Record<string, unknown> | null;
  credentials: Record<string, Record<string, unknown>>;
} {
  const stored: Record<string, unknown> = {};
  const credentials: Record<string, Record<string, unknown>> = {};
  for (const [k, v] of Object.entries(userConfig)) {
    if (!v || typeof v !== "object" || Array.isArray(v) || !("credentials" in v)) {
      stored[k] = v;
      continue;
    }
    const { credentials: secret, ...settings } = v as Record<string, unknown>;
    if (!secret || typeof secret !== "object" || Array.isArray(secret))
      throw new AppError("invalid_input", `user_config.${k}.credentials must be an object`);
    credentials[k] = secret as Record<string, unknown>;
    if (Object.keys(settings).length) stored[k] = settings;
  }
  return { stored: Object.keys(stored).length ? stored : null, credentials };
}

/**
 * Kill a previous run's process of this runtime, if its recorded pid still is one (Linux: its
 * command line or environment names the runtime; a reused pid of another program is left alone).
 * Under bwrap `--die-with-parent` has ended it already.
 */
export function killLeftover(row: Pick<RuntimeRecord, "id" | "pid">): boolean {
  if (!row.pid || row.pid === process.pid) return false;
  let ours = false;
  for (const f of ["cmdline", "environ"]) {
    try {
      if (readFileSync(`/proc/${row.pid}/${f}`, "latin1").includes(row.id)) ours = true;
    } catch {
      // Gone, or not readable: not ours to kill.
    }
  }
  if (!ours) return false;
  for (const target of [-row.pid, row.pid]) {
    try {
      process.kill(target, "SIGKILL");
    } catch {
      // Not a group leader, or gone already.
    }
  }
  return true;
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
