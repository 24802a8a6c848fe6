// The problems loadConfig reports for an environment (none: []), as a caller of the service sees them.
import { ConfigError, loadConfig } from "../../src/server/config.js";

export function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  return [];
}
