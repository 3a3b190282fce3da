import { parseDesired } from "./parse.ts";

/**
 * The desired-state parse, in a worker thread (parse-off-thread.ts supervises it): the yaml
 * library's work on a hostile file can take seconds, and it must never take them from the event
 * loop that serves ingress. This module may hang or crash; the supervisor terminates it.
 */
declare const self: Worker;

self.onmessage = ({ data }: MessageEvent<{ id: number; text: string; file: string }>) => {
  let reply;
  try {
    reply = { id: data.id, result: parseDesired(data.text, data.file) };
  } catch (e) {
    reply = { id: data.id, error: String(e).slice(0, 200) };
  }
  self.postMessage(reply);
};
