// An image part's URL: an `https:` URL the upstream fetches, or a `data:image/<type>;base64,<data>`
// URL carrying the image itself. Checked without decoding: the size of the decoded image follows
// from the base64 text, so a large image costs no copy here.

export type ImageSource = { kind: "https" } | { kind: "data"; mediaType: string; bytes: number };

/** What the URL holds, or a sentence saying what is wrong with it. */
export function parseImageUrl(url: string): ImageSource | string {
  if (/^data:/i.test(url)) return parseDataUrl(url);
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return "not a URL: send an https: URL or a data:image/...;base64, URL";
  }
  // Not http: or file:, which would have the upstream (perhaps a server inside this network)
  // fetch whatever the caller names.
  if (parsed.protocol !== "https:")
    return `${parsed.protocol} URLs are not accepted: send an https: URL or a data:image/...;base64, URL`;
  return { kind: "https" };
}

function parseDataUrl(url: string): ImageSource | string {
  const comma = url.indexOf(",");
  if (comma < 0) return "a data: URL needs a comma before its data (data:image/png;base64,...)";
  const [mediaType = "", ...parameters] = url.slice("data:".length, comma).split(";");
  const type = mediaType.trim().toLowerCase();
  if (!/^image\/[a-z0-9][a-z0-9.+-]*$/.test(type)) {
    return `${JSON.stringify(type.slice(0, 64))} is not an image media type (image/png, image/jpeg, image/webp, image/gif, ...)`;
  }
  if (parameters.at(-1)?.trim().toLowerCase() !== "base64") {
    return "a data: URL must be base64-encoded (data:image/png;base64,...)";
  }
  const bytes = base64Bytes(url, comma + 1);
  if (bytes === undefined) return "the data is not valid base64";
  if (bytes === 0) return "the image data is empty";
  return { kind: "data", mediaType: type, bytes };
}

/**
 * Decoded length of the standard, padded base64 in `text` from `start`, or undefined when it is
 * not (other characters, wrong length, misplaced padding). A plain character-class scan: no
 * backtracking, whatever the size.
 */
function base64Bytes(text: string, start: number): number | undefined {
  const length = text.length - start;
  if (length % 4 !== 0) return undefined;
  const padding = text.endsWith("==") ? 2 : text.endsWith("=") ? 1 : 0;
  if (padding > length) return undefined;
  const body = text.slice(start, text.length - padding);
  if (/[^A-Za-z0-9+/]/.test(body)) return undefined;
  return (length / 4) * 3 - padding;
}
