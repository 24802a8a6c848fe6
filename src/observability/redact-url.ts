// URLs as logs may show them. A base URL can carry credentials: `https://user:pass@host/v1`, or a
// key in the query (`?api-key=...`, as some OpenAI-compatible servers and proxies take it). The
// user info and every query value are replaced, so what is left says where, never with what.
export function redactUrl(text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    // Not a URL (the schema only lets valid ones through): say nothing of it.
    return "(not a URL)";
  }
  if (url.username) url.username = "redacted";
  if (url.password) url.password = "redacted";
  for (const name of new Set(url.searchParams.keys())) url.searchParams.set(name, "redacted");
  return url.toString();
}
