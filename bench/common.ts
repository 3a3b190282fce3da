/** Small helpers every benchmark uses. */
import type { Subprocess } from "bun";

/** A port nothing listens on right now (127.0.0.1). */
export async function freePort(): Promise<number> {
  const s = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = s.port;
  s.stop(true);
  return port;
}

/** Poll `url` until it answers; fail when `proc` exits or after 20 s. */
export async function waitHttp(url: string, proc: Subprocess): Promise<void> {
  const t0 = performance.now();
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`process exited with ${proc.exitCode}`);
    if (await fetch(url).then(() => true, () => false)) return;
    if (performance.now() - t0 > 20_000) throw new Error(`${url} not up`);
    await Bun.sleep(50);
  }
}

/** The value at quantile `p` of an ascending array. */
export function quantile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? Number.NaN;
}
