import {
  closeSync,
  fdatasyncSync,
  fstatSync,
  fsyncSync,
  openSync,
  readSync,
  renameSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { dirname } from "node:path";
import { fsyncPath } from "../core/durable-file.ts";
import { AppError } from "../errors/index.ts";
import { BLOCK, END_OF_ARCHIVE, entryBytes, paddingOf, parseHeader, safePath, tarHeader } from "./tar.ts";

/**
 * A backup archive (docs/operations.md#backups): a ustar file whose first entry is
 * `manifest.json`, then every file the manifest lists, in its order, each with the SHA-256 and
 * size the manifest gives. Written and read synchronously, in 1 MiB reads: the server writes one
 * on a worker thread (./worker.ts), the CLI reads one in its own process.
 */

export const MANIFEST = "manifest.json";
export const FORMAT = "agentowl-backup";
const MANIFEST_MAX = 64 * 1024 * 1024;
const CHUNK = 1024 * 1024;
/**
 * The archive is synced every this many bytes as it is written. Left to the kernel, gigabytes of
 * dirty pages are written back in bursts, and on ext4 (data=ordered) the journal commit that the
 * server's next COMMIT fsync waits for must first write the archive's newly allocated data: ingest
 * stalls behind the backup. Small syncs keep each of those commits small.
 */
const SYNC_EVERY = 8 * 1024 * 1024;
const SHA256_HEX = /^[0-9a-f]{64}$/;

export interface ManifestFile {
  path: string;
  size: number;
  sha256: string;
}

export interface Manifest {
  format: typeof FORMAT;
  format_version: 1;
  app_version: string;
  schema_version: number;
  created_at: string;
  /** How secrets are protected in this archive (docs/operations.md#backups). */
  encryption: string;
  files: ManifestFile[];
  /** Files the database refers to that were gone when the backup was taken (pruned by retention). */
  missing: { spool: string[]; blobs: string[] };
}

/** Bytes the whole archive of `manifestBytes` and `files` takes. */
export const archiveBytes = (manifestBytes: number, files: readonly { size: number }[]): number =>
  entryBytes(manifestBytes) + files.reduce((n, f) => n + entryBytes(f.size), 0) + END_OF_ARCHIVE.length;

/**
 * A file to archive: its path in the archive, where its bytes are, how many (a prefix of the file),
 * and its SHA-256 when it is known beforehand (a blob, named by it: checked as it is copied);
 * without one, the checksum is taken as the file is copied.
 */
export interface Source {
  path: string;
  file: string;
  size: number;
  sha256?: string;
}

export type Progress = (done: number, total: number) => void;

function writeAll(fd: number, bytes: Uint8Array, position?: number): void {
  let off = 0;
  while (off < bytes.length)
    off += writeSync(fd, bytes, off, bytes.length - off, position === undefined ? null : position + off);
}

/** Stands for a checksum not taken yet: as long as one, so the manifest keeps its size once it is filled in. */
const PENDING = "0".repeat(64);
const manifestJson = (m: Manifest) => new TextEncoder().encode(`${JSON.stringify(m, null, 1)}\n`);

export interface WriteOptions {
  progress?: Progress;
  /** Called with each write's size before it is made (a `RateLimit`'s `take`: ./throttle.ts). */
  beforeWrite?: (bytes: number) => void;
}

/**
 * Write the archive to `dest`: into `dest.partial`, fsynced, then renamed, so `dest` is whole or
 * absent. Each source is read once: the checksums not known beforehand are taken as the bytes are
 * copied and written into the manifest (the first entry, its size fixed in advance) at the end;
 * a source whose checksum is known (a blob) is checked, and one whose bytes no longer match (a blob
 * damaged on disk) fails the backup rather than archiving a lie. Returns the archive's size and
 * the manifest it holds.
 */
export function writeArchive(
  dest: string,
  head: Omit<Manifest, "files">,
  sources: readonly Source[],
  opts: WriteOptions = {},
): { bytes: number; manifest: Manifest } {
  const { progress, beforeWrite } = opts;
  const manifest: Manifest = {
    ...head,
    files: sources.map(({ path, size, sha256 }) => ({ path, size, sha256: sha256 ?? PENDING })),
  };
  const manifestSize = manifestJson(manifest).length;
  const total = archiveBytes(manifestSize, sources);
  const mtimeSec = Date.parse(manifest.created_at) / 1000;
  const partial = `${dest}.partial`;
  const fd = openSync(partial, "w", 0o600);
  let done = 0;
  let synced = 0;
  const out = (bytes: Uint8Array) => {
    beforeWrite?.(bytes.length);
    writeAll(fd, bytes);
    done += bytes.length;
    if (done - synced >= SYNC_EVERY) {
      fdatasyncSync(fd);
      synced = done;
    }
  };
  try {
    out(tarHeader({ path: MANIFEST, size: manifestSize }, { mtimeSec }));
    // Its bytes once every checksum is known; zeros until then.
    out(new Uint8Array(manifestSize + paddingOf(manifestSize)));
    const buf = Buffer.allocUnsafe(CHUNK);
    sources.forEach((s, i) => {
      out(tarHeader(s, { mtimeSec }));
      const src = openSync(s.file, "r");
      try {
        const hasher = new Bun.CryptoHasher("sha256");
        let pos = 0;
        while (pos < s.size) {
          const n = readSync(src, buf, 0, Math.min(CHUNK, s.size - pos), pos);
          if (n === 0) throw new AppError("internal", `${s.path} shrank while it was archived`);
          hasher.update(buf.subarray(0, n));
          out(buf.subarray(0, n));
          pos += n;
          progress?.(done, total);
        }
        const sha256 = hasher.digest("hex");
        if (s.sha256 === undefined) manifest.files[i]!.sha256 = sha256;
        else if (sha256 !== s.sha256)
          throw new AppError("internal", `${s.path} does not match its checksum on disk (damaged?); backup abandoned`);
      } finally {
        closeSync(src);
      }
      out(new Uint8Array(paddingOf(s.size)));
    });
    out(END_OF_ARCHIVE);
    const manifestBytes = manifestJson(manifest);
    if (manifestBytes.length !== manifestSize)
      throw new Error("the manifest changed size as its checksums were filled in");
    writeAll(fd, manifestBytes, BLOCK);
    fsyncSync(fd);
  } catch (e) {
    closeSync(fd);
    try {
      unlinkSync(partial);
    } catch {}
    throw e;
  }
  closeSync(fd);
  renameSync(partial, dest);
  fsyncPath(dirname(dest));
  progress?.(total, total);
  return { bytes: total, manifest };
}

/** An archive that failed verification: one line saying what is wrong (the CLI exits 1 with it). */
export class ArchiveRefused extends Error {
  override readonly name = "ArchiveRefused";
}

const damaged = (message: string) => new ArchiveRefused(`backup archive refused: ${message}`);

function parseManifest(bytes: Uint8Array): Manifest {
  let m: Manifest;
  try {
    m = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    throw damaged("its manifest is not valid JSON");
  }
  if (m?.format !== FORMAT || m.format_version !== 1) throw damaged("it is not an agentowl backup (format)");
  if (!Array.isArray(m.files) || typeof m.schema_version !== "number" || typeof m.created_at !== "string")
    throw damaged("its manifest lacks files, schema_version or created_at");
  const seen = new Set<string>();
  for (const f of m.files) {
    if (
      typeof f?.path !== "string" ||
      !safePath(f.path) ||
      f.path === MANIFEST ||
      seen.has(f.path) ||
      !Number.isSafeInteger(f.size) ||
      f.size < 0 ||
      typeof f.sha256 !== "string" ||
      !SHA256_HEX.test(f.sha256)
    )
      throw damaged(`its manifest has a bad file entry ${JSON.stringify(f?.path ?? f).slice(0, 100)}`);
    seen.add(f.path);
  }
  if (!seen.has("agentowl.db")) throw damaged("its manifest lists no agentowl.db");
  m.missing ??= { spool: [], blobs: [] };
  return m;
}

/** Where a verified entry's bytes go while it is read (restore extracts; verify hands the database only). */
export interface EntrySink {
  write(bytes: Uint8Array): void;
  /** The whole entry was read and its checksum matched. */
  close(): void;
  /** The archive failed: drop what was written. */
  abort(): void;
}

/**
 * Read an archive end to end and check it against its manifest: every entry in the manifest's
 * order, its size, its SHA-256, nothing missing, nothing after the end. `sink` receives each
 * entry's bytes as they are read. Any mismatch throws an AppError (`invalid_input`) with one line
 * saying what is wrong.
 */
export function readArchive(
  file: string,
  opts: { sink?: (f: ManifestFile) => EntrySink | null; progress?: Progress } = {},
): Manifest {
  let fd: number;
  try {
    fd = openSync(file, "r");
  } catch (e) {
    throw new AppError("not_found", `cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? e}`);
  }
  try {
    const total = fstatSync(fd).size;
    let pos = 0;
    const read = (buf: Buffer, len: number): number => {
      let got = 0;
      while (got < len) {
        const n = readSync(fd, buf, got, len - got, pos + got);
        if (n === 0) break;
        got += n;
      }
      pos += got;
      return got;
    };
    const header = Buffer.alloc(BLOCK);
    const nextHeader = (expect: string) => {
      if (read(header, BLOCK) < BLOCK) throw damaged(`it is truncated: it ends before ${expect}`);
      const h = parseHeader(header);
      if (h === null) throw damaged(`it ends before ${expect}`);
      if ("error" in h) throw damaged(`${h.error} (before ${expect})`);
      return h;
    };
    const first = nextHeader(MANIFEST);
    if (first.path !== MANIFEST) throw damaged(`its first entry is ${first.path}, not ${MANIFEST}`);
    if (first.size > MANIFEST_MAX) throw damaged(`its manifest is larger than ${MANIFEST_MAX} bytes`);
    const mbuf = Buffer.alloc(first.size + paddingOf(first.size));
    if (read(mbuf, mbuf.length) < mbuf.length) throw damaged("it is truncated inside its manifest");
    const manifest = parseManifest(mbuf.subarray(0, first.size));

    const buf = Buffer.allocUnsafe(CHUNK);
    const pad = Buffer.alloc(BLOCK);
    for (const f of manifest.files) {
      const h = nextHeader(f.path);
      if (h.path !== f.path) throw damaged(`it holds ${h.path} where the manifest lists ${f.path}`);
      if (h.size !== f.size) throw damaged(`${f.path} is ${h.size} bytes, the manifest says ${f.size}`);
      const sink = opts.sink?.(f) ?? null;
      try {
        const hasher = new Bun.CryptoHasher("sha256");
        let left = f.size;
        while (left > 0) {
          const n = read(buf, Math.min(CHUNK, left));
          if (n === 0) throw damaged(`it is truncated inside ${f.path}`);
          const chunk = buf.subarray(0, n);
          hasher.update(chunk);
          sink?.write(chunk);
          left -= n;
          opts.progress?.(pos, total);
        }
        const padding = paddingOf(f.size);
        if (read(pad, padding) < padding) throw damaged(`it is truncated after ${f.path}`);
        if (hasher.digest("hex") !== f.sha256) throw damaged(`${f.path} does not match its SHA-256 in the manifest`);
      } catch (e) {
        sink?.abort();
        throw e;
      }
      sink?.close();
    }
    // The end: two zero blocks, then nothing but zeros (tar pads to its record size).
    const tail = Buffer.alloc(2 * BLOCK);
    if (read(tail, tail.length) < tail.length || !tail.every((b) => b === 0))
      throw damaged(
        tail.some((b) => b !== 0)
          ? "it holds entries the manifest does not list"
          : "it is truncated: the end-of-archive blocks are missing",
      );
    while (pos < total) {
      const n = read(buf, Math.min(CHUNK, total - pos));
      if (!buf.subarray(0, n).every((b) => b === 0)) throw damaged("it has data after its end");
    }
    opts.progress?.(total, total);
    return manifest;
  } finally {
    closeSync(fd);
  }
}
