import { join } from "node:path";
import { type Config, loadConfig } from "../../src/config/index.ts";

/**
 * The settings of an appliance under test: its data dir under `root`, HTTP and SMTP on free
 * loopback ports, and the bootstrap token the test calls the API with; `env` adds or overrides.
 */
export function loopbackConfig(
  root: string,
  bootstrapToken: string,
  env: Record<string, string> = {},
  dataDir: string = join(root, "data"),
): Config {
  return loadConfig({
    env: {
      AGENTOWL_DATA_DIR: dataDir,
      AGENTOWL_HTTP_LISTEN: "127.0.0.1:0",
      AGENTOWL_SMTP_LISTEN: "127.0.0.1:0",
      AGENTOWL_BOOTSTRAP_TOKEN: bootstrapToken,
      ...env,
    },
    cwd: root,
  });
}
