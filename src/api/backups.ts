import { Elysia, t } from "elysia";
import { AppError } from "../errors/index.ts";
import type { Clock } from "../core/clock.ts";
import type { TokenStore } from "../store/index.ts";
import { authenticated } from "./http.ts";

/** What POST /v1/backups needs of the appliance's backups (src/backup/service.ts). */
export interface BackupTaker {
  take(
    onProgress?: (p: { phase?: string; done?: number; total?: number }) => void,
    opts?: { maxBytesPerSecond?: number },
  ): Promise<{
    path: string;
    bytes: number;
    files: number;
    schemaVersion: number;
    missing: { spool: number; blobs: number };
    createdAt: string;
  }>;
}

/**
 * POST /v1/backups (admin): takes a backup into the server's backup_dir and answers with
 * newline-delimited JSON as it goes: `{"progress":…}` lines, then one `{"backup":…}` (where it is,
 * its size) or `{"error":…}`. A second request while one runs gets 409. A body
 * `{"max_rate": MiB per second}` overrides `backup_max_rate` for this one (docs/operations.md#backups).
 */
export function backupRoutes(backups: BackupTaker, tokens: TokenStore, clock: Clock) {
  return new Elysia({ normalize: false }).use(authenticated(tokens, clock, { admin: true })).post(
    "/backups",
    ({ body }) => {
      const maxRate = maxRateOf(body);
      const encoder = new TextEncoder();
      const lines: unknown[] = [];
      let wake: (() => void) | null = null;
      const say = (line: unknown) => {
        lines.push(line);
        wake?.();
      };
      // Taken before the response: a backup already running throws here, a 409 rather than a 200.
      let ended = false;
      backups
        .take((p) => say({ progress: p }), maxRate === undefined ? {} : { maxBytesPerSecond: maxRate * 2 ** 20 })
        .then(
          (r) =>
            say({
              backup: {
                path: r.path,
                bytes: r.bytes,
                files: r.files,
                schema_version: r.schemaVersion,
                missing: r.missing,
                created_at: r.createdAt,
              },
            }),
          (e) => say({ error: (e as Error)?.message ?? String(e) }),
        )
        .finally(() => {
          ended = true;
          wake?.();
        });
      return new Response(
        new ReadableStream<Uint8Array>({
          async pull(controller) {
            while (!lines.length && !ended) await new Promise<void>((r) => (wake = r));
            wake = null;
            if (lines.length)
              controller.enqueue(
                encoder.encode(
                  lines
                    .splice(0)
                    .map((l) => `${JSON.stringify(l)}\n`)
                    .join(""),
                ),
              );
            else controller.close();
          },
        }),
        { headers: { "content-type": "application/x-ndjson", "cache-control": "no-store" } },
      );
    },
    {
      // Checked by maxRateOf, not by a schema: Elysia hands an array on as `{}` to the schema of an
      // all-optional object, which would take it as "nothing overridden".
      body: t.Optional(t.Unknown()),
    },
  );
}

/**
 * The body of POST /v1/backups: nothing, or `{"max_rate": MiB per second}` (an integer 0..100,000,
 * 0 = no cap) overriding `backup_max_rate` for this backup. Anything else is refused.
 */
export function maxRateOf(body: unknown): number | undefined {
  if (body === undefined || body === "") return undefined;
  if (body === null || typeof body !== "object" || Array.isArray(body))
    throw new AppError("invalid_input", "the body must be a JSON object, or nothing");
  const { max_rate: rate, ...rest } = body as Record<string, unknown>;
  const unknown = Object.keys(rest);
  if (unknown.length)
    throw new AppError("invalid_input", "the body takes max_rate only", {
      errors: unknown.map((k) => ({ field: `/${k}`, message: "unknown property" })),
    });
  if (rate === undefined) return undefined;
  if (typeof rate !== "number" || !Number.isInteger(rate) || rate < 0 || rate > 100_000)
    throw new AppError("invalid_input", "max_rate must be an integer from 0 to 100000 (MiB per second)", {
      errors: [{ field: "/max_rate", message: "an integer from 0 to 100000" }],
    });
  return rate;
}
