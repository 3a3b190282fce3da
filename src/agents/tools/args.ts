import { AppError } from "../../errors/index.ts";

/** A plugin's checks of a call's arguments and of its config: AppError invalid_input saying which field is wrong. */

export function text(args: Record<string, unknown>, name: string, max: number, required = true): string | undefined {
  const v = args[name];
  if (v === undefined || v === null || v === "") {
    if (required) throw new AppError("invalid_input", `${name} is required`);
    return undefined;
  }
  if (typeof v !== "string") throw new AppError("invalid_input", `${name} must be text`);
  if (v.length > max) throw new AppError("invalid_input", `${name} is longer than ${max} characters`);
  return v;
}

/** A mailbox as the email tool sends to: one address, no display name, no line breaks. */
export const MAILBOX = /^[^\s@<>(),;:"[\]\\]{1,64}@[A-Za-z0-9.-]{1,253}$/;
export const E164 = /^\+[1-9]\d{6,14}$/;
