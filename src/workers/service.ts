/**
 * A part of the process that runs in the background between start-up and shutdown (a worker, a
 * maintenance task). `stop()` ends it and resolves once nothing it started is still running, so
 * whatever it uses (the database) can be closed next. src/app starts them in order and stops them
 * in the reverse order (docs/architecture.md#start-up-and-shutdown).
 */
export interface Service {
  readonly name: string;
  start(): void | Promise<void>;
  stop(): Promise<void>;
}
