// What the request validators share: the problem they throw (always "<field>: <what is wrong>"),
// the input-size budget every field draws from, and checks used in more than one place.

/** A field of the request is wrong; the message names it. Caught by toUpstreamRequest. */
export class RequestProblem extends Error {
  constructor(
    readonly field: string,
    what: string,
  ) {
    super(`${field}: ${what}`);
    this.name = "RequestProblem";
  }
}

export function invalid(field: string, what: string): never {
  throw new RequestProblem(field, what);
}

/**
 * The bytes of everything the caller sends for the model to read (text, decoded images, tool
 * definitions, schemas, extra_body), against MAX_INPUT_BYTES. Each field adds its share; the
 * problem names the field where the total first went over, and the whole total.
 */
export class InputBudget {
  private used = 0;
  private overAt: string | undefined;

  constructor(private readonly limit: number) {}

  add(field: string, bytes: number): void {
    this.used += bytes;
    if (this.used > this.limit && this.overAt === undefined) this.overAt = field;
  }

  /** The problem, once every field has been counted; undefined within the limit. */
  problem(): string | undefined {
    if (this.overAt === undefined) return undefined;
    return `${this.overAt}: input is ${this.used} bytes, more than the limit of ${this.limit}`;
  }
}

export function utf8Bytes(text: string): number {
  return Buffer.byteLength(text);
}

/** A google.protobuf.Struct's size as the JSON the upstream will receive. */
export function jsonBytes(value: Record<string, unknown> | undefined): number {
  return value === undefined ? 0 : Buffer.byteLength(JSON.stringify(value));
}

/**
 * How deep the JSON of a google.protobuf.Struct field (extra_body, tools[].function.parameters,
 * response_format.json_schema.schema) may nest: each object or array is one level, the field's own
 * object the first. Real JSON schemas stay far below it (a schema of objects 31 deep, each in the `properties` of the one above, is 63 levels);
 * the bound keeps decoding a hostile request's recursion short.
 */
export const MAX_JSON_DEPTH = 64;

/** The problem with a field nested deeper than that, after its name. */
export const NESTED_TOO_DEEP = `nested deeper than ${MAX_JSON_DEPTH} levels (each object or array is one)`;

/** Refuses a Struct field nested deeper than MAX_JSON_DEPTH. */
export function checkNesting(field: string, value: Record<string, unknown> | undefined): void {
  if (value !== undefined && deeperThan(value, MAX_JSON_DEPTH)) invalid(field, NESTED_TOO_DEEP);
}

function deeperThan(value: unknown, levels: number): boolean {
  if (value === null || typeof value !== "object") return false;
  if (levels === 0) return true;
  for (const item of Object.values(value)) if (deeperThan(item, levels - 1)) return true;
  return false;
}

/** OpenAI's rule for function and schema names. */
const FUNCTION_NAME = /^[a-zA-Z0-9_-]{1,64}$/;

export function checkFunctionName(field: string, name: string): void {
  if (!FUNCTION_NAME.test(name)) {
    invalid(
      field,
      name === "" ? "must not be empty" : `${quote(name)} is not 1 to 64 letters, digits, underscores or dashes`,
    );
  }
}

/** `type` of a tool or a tool call: "function", the only kind (also when left empty). */
export function checkFunctionType(field: string, type: string): void {
  if (type !== "" && type !== "function") invalid(field, `${quote(type)} is not "function" (the only kind)`);
}

export function checkOneOf<T extends string>(field: string, value: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(value))
    invalid(field, `${quote(value)} is not one of ${allowed.join(", ")}`);
  return value as T;
}

/** A caller's value, quoted in a problem: short, and JSON-escaped so it cannot forge log lines. */
export function quote(value: string): string {
  return JSON.stringify(value.length > 64 ? `${value.slice(0, 64)}...` : value);
}
