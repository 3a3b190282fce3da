export {
  AppError,
  ERROR_KINDS,
  type ErrorKind,
  type FieldError,
  fromStorageError,
  isAppError,
  isStorageUnavailable,
} from "./app-error.ts";
export { type Problem, problemResponse, toProblem } from "./to-problem.ts";
export { type SmtpAnswer, toSmtp } from "./to-smtp.ts";
export { EXIT, toExitCode } from "./to-exit-code.ts";
export { closest } from "./suggest.ts";
