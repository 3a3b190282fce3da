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
      // Nothing, or an object (Elysia lets an array through the schema).
      if (body !== undefined && (body === null || typeof body !== "object" || Array.isArray(body)))
        throw new AppError("invalid_input", "the body must be a JSON object, or nothing");
      const maxRate = body?.max_rate;
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
      body: t.Optional(
        t.Object(
          // MiB per second, overriding backup_max_rate for this backup; 0: no cap.
          { max_rate: t.Optional(t.Integer({ minimum: 0, maximum: 100_000 })) },
          { additionalProperties: false },
        ),
      ),
    },
  );
}
