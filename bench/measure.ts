/**
 * CPU and peak memory of the process doing a benchmark's work, for the report's "CPU ms per
 * 1,000 items" and "peak RSS" columns: process.cpuUsage() deltas for work in the bench's own
 * process, /proc/<pid>/stat utime + stime for a child (Linux; null elsewhere).
 */
import { readFileSync, writeFileSync } from "node:fs";
import { cpuSeconds } from "./common.ts";

export interface Meter {
  /** CPU milliseconds since the meter started, or undefined where it cannot be read. */
  cpuMs(): number | undefined;
  /** Peak RSS in MiB since the meter started (since the process started, for a child). */
  peakRssMiB(): number | undefined;
}

function statusKiB(pid: number | "self", field: "VmHWM" | "VmRSS"): number | undefined {
  try {
    const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** Resident set of `pid` now, MiB. */
export const rssMiB = (pid: number | "self" = "self"): number | undefined => {
  const k = statusKiB(pid, "VmRSS");
  return k === undefined ? undefined : k / 1024;
};

/** This process: its CPU from process.cpuUsage(), its peak RSS reset at the start (clear_refs 5). */
export function selfMeter(): Meter {
  const c0 = process.cpuUsage();
  let resettable = true;
  try {
    writeFileSync("/proc/self/clear_refs", "5");
  } catch {
    resettable = false;
  }
  return {
    cpuMs: () => {
      const d = process.cpuUsage(c0);
      return (d.user + d.system) / 1000;
    },
    peakRssMiB: () => {
      const k = statusKiB("self", "VmHWM");
      return k === undefined || !resettable ? undefined : k / 1024;
    },
  };
}

/** A child process: its CPU (all threads) from /proc/<pid>/stat, its peak RSS (VmHWM). */
export function procMeter(pid: number): Meter {
  const c0 = cpuSeconds(pid);
  return {
    cpuMs: () => {
      const c = cpuSeconds(pid);
      return c === null || c0 === null ? undefined : (c - c0) * 1000;
    },
    peakRssMiB: () => {
      const k = statusKiB(pid, "VmHWM");
      return k === undefined ? undefined : k / 1024;
    },
  };
}

/** `ms` of CPU spread over `items`, as milliseconds per 1,000 items. */
export const per1000 = (ms: number | undefined, items: number): number | undefined =>
  ms === undefined || !items ? undefined : (ms * 1000) / items;
