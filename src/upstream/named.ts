// Named upstreams from the environment: `UPSTREAM_<NAME>_BASE_URL` (required), `UPSTREAM_<NAME>_API_KEY`
// (optional) and `UPSTREAM_<NAME>_MODELS` (required: comma-separated model names; a trailing `*`
// matches by prefix, as in `claude-*`). <NAME> is letters and digits; it appears in logs and
// metrics in lower case.
export interface NamedUpstream {
  name: string;
  baseURL: string;
  apiKey: string | undefined;
  models: string[];
}

const VARIABLE = /^UPSTREAM_([A-Z0-9]+)_(BASE_URL|API_KEY|MODELS)$/;

/** `fixed`: the gateway's own settings (UPSTREAM_TIMEOUT_MS, ...), which are not named upstreams. */
export function parseNamedUpstreams(
  env: Record<string, string>,
  fixed: ReadonlySet<string>,
  report: (variable: string, problem: string) => void,
): NamedUpstream[] {
  const found = new Map<string, { baseURL?: string; apiKey?: string; models?: string }>();
  for (const [variable, value] of Object.entries(env)) {
    if (!variable.startsWith("UPSTREAM_") || fixed.has(variable)) continue;
    const match = VARIABLE.exec(variable);
    if (!match?.[1] || !match[2]) {
      report(
        variable,
        "not a setting: named upstreams take UPSTREAM_<NAME>_BASE_URL, _API_KEY and _MODELS, <NAME> in capital letters and digits",
      );
      continue;
    }
    const entry = found.get(match[1]) ?? {};
    if (match[2] === "BASE_URL") entry.baseURL = value;
    else if (match[2] === "API_KEY") entry.apiKey = value;
    else entry.models = value;
    found.set(match[1], entry);
  }

  const upstreams: NamedUpstream[] = [];
  const owner = new Map<string, string>();
  for (const [NAME, entry] of found) {
    const name = NAME.toLowerCase();
    let ok = true;
    if (entry.baseURL === undefined) {
      report(`UPSTREAM_${NAME}_BASE_URL`, `upstream "${name}" has no base URL`);
      ok = false;
    } else if (!isHttpUrl(entry.baseURL)) {
      report(`UPSTREAM_${NAME}_BASE_URL`, "must be an http:// or https:// URL");
      ok = false;
    }
    const models = (entry.models ?? "")
      .split(",")
      .map((m) => m.trim())
      .filter((m) => m !== "");
    if (models.length === 0) {
      report(`UPSTREAM_${NAME}_MODELS`, `upstream "${name}" serves no model: list the model names it serves`);
      ok = false;
    }
    for (const model of models) {
      const other = owner.get(model);
      if (other !== undefined) {
        report(
          `UPSTREAM_${NAME}_MODELS`,
          `model "${model}" is also served by upstream "${other}"; each model goes to one upstream`,
        );
        ok = false;
      }
      owner.set(model, name);
    }
    if (name === "default") {
      report(`UPSTREAM_${NAME}_BASE_URL`, `"default" is the name of the OPENAI_BASE_URL upstream; choose another name`);
      ok = false;
    }
    if (ok && entry.baseURL !== undefined)
      upstreams.push({ name, baseURL: entry.baseURL, apiKey: entry.apiKey, models });
  }
  return upstreams;
}

function isHttpUrl(value: string): boolean {
  try {
    const url = new URL(value);
    return url.protocol === "http:" || url.protocol === "https:";
  } catch {
    return false;
  }
}
