export {
  type Config,
  defaultDataDir,
  loadConfig,
  type RetentionDefaults,
  type SettingSource,
} from "./load.ts";
export { parseDuration, parseListen, type Listen, SETTING_NAMES, type Settings, settingMeta } from "./schema.ts";
export { MASK, maskedSettings, renderConfig, renderConfigDocs, renderConfigTemplate } from "./show.ts";
