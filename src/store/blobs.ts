import { randomBytes } from "node:crypto";
import { existsSync, readdirSync, unlinkSync } from "node:fs";
import { mkdir, open, readFile, rename, unlink } from "node:fs/promises";
import { dirname, join } from "node:path";
import { AppError } from "../errors/index.ts";
import type { Blobs } from "./contract.ts";

const SHA256_HEX = /^[0-9a-f]{64}$/;
/** A put's temp file: `<64 hex>.<12 hex>.tmp` in the blob's shard. */
const TEMP_NAME = /^[0-9a-f]{64}\.[0-9a-f]{12}\.tmp$/;

/**
 * Attachments as content-addressed blobs (docs/architecture.md): `<dir>/sha256/<first 2 hex>/<64 hex>`. The
 * name is the content's hash, so a blob is written once, shared by every message that carries
 * it, and never changes; rows reference it by hash.
 *
 * A blob becomes visible under its final name only whole and on disk: it is written to a temp
 * file in the same directory, fsynced, renamed (atomic within a directory), and the directory is
 * fsynced so the rename itself survives a power cut. A crash leaves at worst a `*.tmp` file that
 * no row references; `removeTemps` deletes those at start-up.
 */
export class BlobStore implements Blobs {
  /** Shard directories whose own entries this process has made durable, or is making durable. */
  private readonly shards = new Map<string, Promise<void>>();

  constructor(private readonly dir: string) {}

  /** Durable before it resolves. Idempotent: an existing blob is not rewritten. */
  async put(bytes: Uint8Array): Promise<{ sha256: string; size: number }> {
    const sha256 = new Bun.CryptoHasher("sha256").update(bytes).digest("hex");
    const size = bytes.byteLength;
    const final = this.path(sha256);
    if (existsSync(final)) return { sha256, size };

    const shard = dirname(final);
    await this.shard(shard);

    const temp = join(shard, `${sha256}.${randomBytes(6).toString("hex")}.tmp`);
    const file = await open(temp, "wx", 0o600);
    try {
      await file.writeFile(bytes);
      await file.sync();
    } catch (e) {
      await file.close();
      await unlink(temp).catch(() => {});
      throw e;
    }
    await file.close();
    // Two puts of the same content may race here; both renames install identical bytes.
    await rename(temp, final);
    await fsyncDir(shard);
    return { sha256, size };
  }

  /**
   * A shard directory is itself an entry in sha256/, which is one in the store's directory: both
   * are fsynced once per shard and process, whoever created them (a process that crashed may
   * have), and every put into the shard waits for that.
   */
  private shard(dir: string): Promise<void> {
    let ready = this.shards.get(dir);
    if (!ready) {
      ready = mkdir(dir, { recursive: true, mode: 0o700 }).then(async () => {
        await fsyncDir(dirname(dir));
        await fsyncDir(this.dir);
      });
      // The failure (a full disk) is the caller's; the next put into this shard tries again.
      ready.catch(() => this.shards.delete(dir));
      this.shards.set(dir, ready);
    }
    return ready;
  }

  /**
   * Delete the temp files of puts that never finished (a crash between the temp file and its
   * rename). Only at start-up, under the data dir's lock: no put of this process is under way.
   * Returns how many it removed.
   */
  async removeTemps(): Promise<number> {
    const root = join(this.dir, "sha256");
    if (!existsSync(root)) return 0;
    let removed = 0;
    for (const shard of readdirSync(root)) {
      if (!/^[0-9a-f]{2}$/.test(shard)) continue;
      for (const name of readdirSync(join(root, shard))) {
        if (!TEMP_NAME.test(name)) continue;
        unlinkSync(join(root, shard, name));
        removed++;
      }
    }
    return removed;
  }

  async get(sha256: string): Promise<Uint8Array | null> {
    try {
      const file = await readFile(this.path(sha256));
      return new Uint8Array(file.buffer, file.byteOffset, file.byteLength);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
      throw e;
    }
  }

  async has(sha256: string): Promise<boolean> {
    return existsSync(this.path(sha256));
  }

  /** Refuses anything but 64 lower-case hex digits, so no caller can reach outside the store. */
  path(sha256: string): string {
    if (!SHA256_HEX.test(sha256)) throw new AppError("invalid_input", "a blob is named by 64 lower-case hex digits");
    return join(this.dir, "sha256", sha256.slice(0, 2), sha256);
  }

  /** For the retention job: deletes the blobs named in `sha256s` and returns how many existed. */
  async delete(sha256s: Iterable<string>): Promise<number> {
    const paths = [...sha256s].map((h) => this.path(h));
    let deleted = 0;
    for (const p of paths) {
      try {
        await unlink(p);
        deleted++;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
      }
    }
    return deleted;
  }
}

async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
