export {};
/**
 * `npm run bench -- <name...>`: runs the named benchmarks (all when none is named).
 * Each prints its figures beside a reference measured in the same run.
 */
const BENCHES: Record<string, () => Promise<unknown>> = {
  queue: async () => (await import("./queue.ts")).benchQueue(),
  startup: async () => (await import("./startup.ts")).benchStartup(),
  audit: async () => (await import("./audit.ts")).benchAudit(),
  policy: async () => (await import("./policy.ts")).benchPolicy(),
  smtp: async () => (await import("./smtp.ts")).benchSmtp(),
  http: async () => (await import("./http.ts")).benchHttp(),
  dispatch: async () => (await import("./dispatch.ts")).benchDispatch(),
  console: async () => (await import("./console.ts")).benchConsole(),
  ops: async () => (await import("./ops.ts")).benchOps(),
  postgres: async () => (await import("./postgres.ts")).benchPostgres(),
  agents: async () => (await import("./agents.ts")).benchAgents(),
};

const names = process.argv.slice(2);
for (const name of names) {
  if (!BENCHES[name]) {
    console.error(`bench: unknown benchmark '${name}' (known: ${Object.keys(BENCHES).join(", ")})`);
    process.exit(2);
  }
}
for (const name of names.length ? names : Object.keys(BENCHES)) {
  console.log(`\n=== ${name} ===`);
  await BENCHES[name]!();
}
process.exit(0);
