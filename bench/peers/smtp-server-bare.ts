/**
 * The SMTP benchmark's library reference: smtp-server as it comes (its fixed 100 ms greeting
 * pause included), accepting every message and discarding it, no disk. `bun smtp-server-bare.ts PORT`.
 */
import { SMTPServer } from "smtp-server";

const port = Number(process.argv[2]);
const server = new SMTPServer({
  disabledCommands: ["AUTH", "STARTTLS"],
  logger: false,
  disableReverseLookup: true,
  onData(stream, _session, callback) {
    stream.on("data", () => {});
    stream.on("end", () => callback(null, "queued"));
  },
});
server.listen(port, "127.0.0.1");
