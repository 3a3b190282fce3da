declare module "*.sql" {
  const text: string;
  export default text;
}

/** smtp-server's connection class (not in @types/smtp-server); src/ingress/smtp/ (session.ts, listener.ts) uses the parts below. */
declare module "smtp-server/lib/smtp-connection.js" {
  import type { Socket } from "node:net";
  import type { SMTPServer } from "smtp-server";
  export class SMTPConnection {
    constructor(server: SMTPServer, socket: Socket, options: unknown);
    on(event: string, listener: (...args: any[]) => void): this;
    send(code: number, data?: string | string[], context?: string | false): void;
    connectionReady(next?: () => void): void;
    _setListeners(callback: () => void): void;
  }
}

/** The HTTP benchmark's load generator (bench/http.ts) ships no types. */
declare module "autocannon";

/** Files the console embeds as text (`with { type: "text" }`): src/console/assets.ts. */
declare module "*.css" {
  const text: string;
  export default text;
}
declare module "htmx.org/dist/htmx.min.js" {
  const text: string;
  export default text;
}
declare module "htmx-ext-sse/dist/sse.min.js" {
  const text: string;
  export default text;
}

/** mailauth's DKIM verifier class and stream helper (untyped): src/mail/sender-auth.ts bounds the signatures it verifies. */
declare module "mailauth/lib/dkim/dkim-verifier.js" {
  import type { Writable } from "node:stream";
  import type { DKIMVerifyOptions, DKIMVerifyResult } from "mailauth";
  export class DkimVerifier extends Writable {
    constructor(options?: DKIMVerifyOptions);
    prepareSignature(header: { type: string; invalid?: string }): void;
    headerFrom: DKIMVerifyResult["headerFrom"];
    fromFields: number;
    envelopeFrom: string | false;
    results: DKIMVerifyResult["results"];
    arc: unknown;
  }
}
declare module "mailauth/lib/tools.js" {
  import type { Writable } from "node:stream";
  export function writeToStream(stream: Writable, input: Buffer | string): Promise<void>;
}

/** mailauth's checks, loaded one by one (src/mail/sender-auth.ts), typed as its index exports them. */
declare module "mailauth/lib/spf/index.js" {
  export const spf: typeof import("mailauth").spf;
}
declare module "mailauth/lib/arc/index.js" {
  export const arc: typeof import("mailauth").arc;
}
declare module "mailauth/lib/dmarc/index.js" {
  export const dmarc: typeof import("mailauth").dmarc;
}
/** mailauth's own dependencies, loaded ahead of it in steps (src/mail/sender-auth.ts). */
declare module "libmime";
declare module "punycode.js";
