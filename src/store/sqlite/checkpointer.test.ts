import { describe, expect, test } from "bun:test";
import { existsSync, statSync } from "node:fs";
import { tempStorages, until } from "../../../test/helpers/storage.ts";
import { BACKSTOP_PAGES } from "./checkpointer.ts";
import { WAL_START_BYTES } from "./index.ts";

describe("WAL checkpoints in the background", () => {
  const storage = tempStorages();

  test("a worker thread checkpoints the WAL; the committing connection keeps only a far backstop; close ends both", async () => {
    const s = storage();
    const autocheckpoint = () =>
      s.handle.sqlite.query<{ wal_autocheckpoint: number }, []>("PRAGMA wal_autocheckpoint").get()!.wal_autocheckpoint;
    expect(autocheckpoint()).toBe(1000);
    const errors: string[] = [];
    const ck = s.checkpointInBackground((m) => errors.push(m), 20);
    expect(autocheckpoint()).toBe(BACKSTOP_PAGES);
    for (let b = 0; b < 20; b++)
      await Promise.all(
        Array.from({ length: 50 }, (_, i) =>
          s.committer.run((tx) => tx.emit({ topic: "t", payload: { pad: "x".repeat(500), i } })),
        ),
      );
    // The worker copied every frame of the WAL into the database (PASSIVE: without the writer's help).
    await until("checkpointed", () => (ck.last?.frames ?? 0) > 100 && ck.last!.copied === ck.last!.frames, 5000);
    expect(errors).toEqual([]);
    const path = s.handle.path;
    await s.close();
    // The worker stopped first: the closing checkpoint could copy everything and truncate the WAL.
    expect(existsSync(`${path}-wal`) ? statSync(`${path}-wal`).size : 0).toBe(0);
  });

  test("background() starts no checkpoint thread for a small WAL (an idle appliance) and starts it once the WAL grew past WAL_START_BYTES", async () => {
    const s = storage();
    const autocheckpoint = () =>
      s.handle.sqlite.query<{ wal_autocheckpoint: number }, []>("PRAGMA wal_autocheckpoint").get()!.wal_autocheckpoint;
    const errors: string[] = [];
    const bg = s.background((m) => errors.push(m));
    await s.probeWrite();
    expect(autocheckpoint()).toBe(1000);
    const wal = () => statSync(`${s.handle.path}-wal`).size;
    for (let i = 0; wal() < WAL_START_BYTES; i++) {
      expect(autocheckpoint()).toBe(1000);
      await Promise.all(
        Array.from({ length: 50 }, (_, j) =>
          s.committer.run((tx) => tx.emit({ topic: "t", payload: { pad: "x".repeat(2000), i, j } })),
        ),
      );
    }
    // The commit that grew the WAL past the mark started the thread.
    expect(autocheckpoint()).toBe(BACKSTOP_PAGES);
    await bg.stop();
    expect(autocheckpoint()).toBe(1000);
    expect(errors).toEqual([]);
  });
});
