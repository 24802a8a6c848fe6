// Environment variables, each declared once: its zod type with its default, a description and an
// example. From the declaration come the schema the environment is checked against, the plain-words
// problems a bad value gets, docs/config-reference.md and .env.example (`npm run docs:config`). The
// service's variables are declared in config-variables.ts, the local launcher's in src/dev/config.ts.
import { z } from "zod";

/** One environment variable. */
export interface Variable<T extends z.ZodType = z.ZodType> {
  /** How its value is read and checked, with `.default(...)`, or `.optional()` when unset means something. */
  type: T;
  /** One line: what it sets, and what unset means when it has no default. */
  description: string;
  /** A right value: quoted in start-up problems and shown in the reference. */
  example: string;
  /** More to know, after the description in the reference and in .env.example. */
  details?: string;
}

/** Variables that belong together: a table in the reference, a block in .env.example. */
export interface Section<V extends Record<string, Variable> = Record<string, Variable>> {
  title: string;
  /** Prose for the whole section. */
  about?: string;
  /** Settings read by a pattern rather than by name (UPSTREAM_<NAME>_...): shown as examples. */
  exampleLines?: readonly string[];
  variables: V;
}

/** A section, typed by its variables (so the schema built from it is typed too). */
export function section<V extends Record<string, Variable>>(s: Section<V>): Section<V> {
  return s;
}

type UnionToIntersection<U> = (U extends unknown ? (u: U) => void : never) extends (i: infer I) => void ? I : never;
type VariablesOf<S extends readonly Section[]> = UnionToIntersection<S[number]["variables"]>;
export type ShapeOf<S extends readonly Section[]> = {
  [K in keyof VariablesOf<S>]: VariablesOf<S>[K] extends Variable<infer T> ? T : never;
};

/** Every variable of these sections, by name, in declaration order. */
export function variablesOf(sections: readonly Section[]): Map<string, Variable> {
  return new Map(sections.flatMap((s) => Object.entries(s.variables)));
}

/** The zod object the environment is parsed with. */
export function schemaOf<const S extends readonly Section[]>(sections: S): z.ZodObject<ShapeOf<S>> {
  return z.object(Object.fromEntries([...variablesOf(sections)].map(([name, v]) => [name, v.type])) as ShapeOf<S>);
}

// Named types, for the kinds of value that recur. A label is what the reference's type column says
// when the zod type alone would not say it well.
const labels = z.registry<{ label: string }>();

export const port = z.coerce.number().int().min(0).max(65535);
export const positiveMs = z.coerce.number().int().positive();
/** 0 turns the limit off. */
export const optionalMs = z.coerce.number().int().min(0);
export const bytes = z.coerce.number().int().positive();
export const flag = z
  .enum(["true", "false", "1", "0", "yes", "no"])
  .transform((v) => v === "true" || v === "1" || v === "yes")
  .register(labels, { label: "boolean: `true`/`false`, `1`/`0`, `yes`/`no`" });
export const file = z.string().min(1).register(labels, { label: "path of a readable file" });
/** A URL of one of these schemes, named as such in problems and the reference. */
export function url(...schemes: string[]) {
  const words = `${schemes.map((s) => `${s}://`).join(" or ")} URL`;
  return z.url({ protocol: new RegExp(`^(${schemes.join("|")})$`) }).register(labels, { label: words });
}

/** The type with its default or optional wrapper taken off, and that default (undefined: none). */
function unwrap(type: z.ZodType): { base: z.ZodType; defaultValue: unknown } {
  if (type instanceof z.ZodDefault)
    return { base: unwrap(type.unwrap() as z.ZodType).base, defaultValue: type.def.defaultValue };
  if (type instanceof z.ZodOptional) return unwrap(type.unwrap() as z.ZodType);
  return { base: type, defaultValue: undefined };
}

/** The default as it would be written in the environment; "" when the variable has none. */
export function defaultText(v: Variable): string {
  const { defaultValue } = unwrap(v.type);
  return defaultValue === undefined ? "" : String(defaultValue);
}

/** What values the variable takes, in words: "integer 0–65535", "one of `a`, `b`", a label. */
export function typeText(v: Variable): string {
  const { base } = unwrap(v.type);
  const label = labels.get(base)?.label;
  if (label) return label;
  if (base instanceof z.ZodEnum) return `one of ${base.options.map((o) => `\`${String(o)}\``).join(", ")}`;
  if (base instanceof z.ZodString) return "text";
  if (base instanceof z.ZodNumber) {
    const integer = base.isInt;
    let min: number | undefined;
    let max: number | undefined;
    for (const check of base.def.checks ?? []) {
      const def = check._zod.def as { check: string; value?: number; inclusive?: boolean };
      // An integer above 0 is one of at least 1: said so.
      const step = integer && def.inclusive === false ? 1 : 0;
      if (def.check === "greater_than" && def.value !== undefined) min = def.value + step;
      if (def.check === "less_than" && def.value !== undefined) max = def.value - step;
    }
    const kind = integer ? "integer" : "number";
    if (min !== undefined && max !== undefined) return `${kind} ${min}–${max}`;
    if (min !== undefined) return `${kind} ≥ ${min}`;
    if (max !== undefined) return `${kind} ≤ ${max}`;
    return kind;
  }
  return base.def.type;
}

/** The label of a URL type ("http:// or https:// URL"), for the problem an invalid one gets. */
function urlWords(v: Variable | undefined): string | undefined {
  if (!v) return undefined;
  const { base } = unwrap(v.type);
  return base instanceof z.ZodURL ? labels.get(base)?.label : undefined;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    this.name = "ConfigError";
  }
}

/** For entry points: what `load` returns, or every problem on stderr and exit status 2. */
export function loadOrExit<T>(load: () => T): T {
  try {
    return load();
  } catch (error: unknown) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`${error.message}\n`);
    process.exit(2);
  }
}

/** The variables that are set: an empty one means "not set", as in most shells' `FOO= cmd` and compose files. */
export function presentOf(env: Record<string, string | undefined>): Record<string, string> {
  return Object.fromEntries(
    Object.entries(env).filter((entry): entry is [string, string] => entry[1] !== undefined && entry[1] !== ""),
  );
}

/**
 * A problem with one variable, with the declared example of a right value. Never echoes the value:
 * it may be a secret.
 */
export function problem(name: string, what: string, example: string | undefined): string {
  return `${name}: ${what}${example ? ` (for example ${name}=${example})` : ""}`;
}

/** Parses the set variables with the schema; each failed one becomes a problem in plain words. */
export function parseVariables<T extends z.ZodObject>(
  schema: T,
  variables: ReadonlyMap<string, Variable>,
  present: Record<string, string>,
  problems: string[],
): z.infer<T> | undefined {
  const parsed = schema.safeParse(present);
  if (parsed.success) return parsed.data;
  for (const issue of parsed.error.issues) {
    const name = String(issue.path[0] ?? "?");
    problems.push(problem(name, plainWords(issue, variables.get(name)), variables.get(name)?.example));
  }
  return undefined;
}

function plainWords(issue: z.core.$ZodIssue, variable: Variable | undefined): string {
  switch (issue.code) {
    case "invalid_type":
      return issue.expected === "number" ? "must be a number" : `must be a ${issue.expected}`;
    case "too_small":
      return `must be ${issue.inclusive ? "at least" : "more than"} ${String(issue.minimum)}`;
    case "too_big":
      return `must be ${issue.inclusive ? "at most" : "less than"} ${String(issue.maximum)}`;
    case "invalid_format": {
      const words = issue.format === "url" ? urlWords(variable) : undefined;
      if (!words) return `is not a valid ${issue.format}`;
      // "an http://", "a redis://": the article goes by the scheme's first sound.
      return `must be ${/^[aeioh]/.test(words) ? "an" : "a"} ${words}`;
    }
    case "invalid_value":
      return `must be one of ${issue.values.map(String).join(", ")}`;
    default:
      return issue.message;
  }
}
