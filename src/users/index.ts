/** Console users and their sessions (docs/console.md#users-and-sign-in). */
export {
  type ConsoleSession,
  type ConsoleUser,
  checkPassword,
  LOCK_AFTER,
  lockDuration,
  normalizeUsername,
  PASSWORD_MIN,
  SESSION_COOKIE,
  type SignInResult,
  type UserInfo,
  USERNAME_PATTERN,
  Users,
  type UsersDeps,
} from "./users.ts";
export { generatePassword } from "./password.ts";
