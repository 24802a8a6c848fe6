// Reading an OpenAI request body's JSON field by field: each reader returns the value or throws a
// Problem naming the field (`messages[0].role: required`), which the decoders turn into the
// request's caller-facing reason. Shared by the Chat Completions and Responses decoders.

export class Problem extends Error {}

export const fail = (field: string, why: string): never => {
  throw new Problem(`${field}: ${why}`);
};

export function numberField(name: string, value: unknown, field = name): Record<string, number> {
  if (value === undefined || value === null) return {};
  if (typeof value !== "number" || !Number.isFinite(value)) return fail(field, "must be a number");
  return { [name]: value };
}

export function integer(value: unknown, field: string): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value)) return fail(field, "must be an integer");
  return value;
}

export function optionalString(value: unknown, field: string): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "string") return fail(field, "must be a string");
  return value;
}

export function optionalObject(value: unknown, field: string): Record<string, unknown> | undefined {
  if (value === undefined || value === null) return undefined;
  if (!isObject(value)) return fail(field, "must be an object");
  return value as Record<string, unknown>;
}

export function isObject(value: unknown): boolean {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** The body as a JSON object, or the problem with it. */
export function parseBody(data: Uint8Array): Record<string, unknown> | string {
  let body: unknown;
  try {
    body = JSON.parse(Buffer.from(data).toString("utf8"));
  } catch {
    return "request body: not valid JSON";
  }
  if (!isObject(body)) return "request body: must be a JSON object";
  return body as Record<string, unknown>;
}
