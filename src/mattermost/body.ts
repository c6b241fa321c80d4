/**
 * Reads an answer's body up to a byte limit. `Response.text()` buffers whatever arrives: a 400 MB
 * `/users` answer took the gateway to 1.69 GB RSS, and 400 MB error bodies were read in full on
 * every retry.
 */
export interface CappedBody {
  /** The body, or its first `limit` bytes when it is larger. */
  text: string;
  /** false: the body was larger than the limit; the rest was not read and the request is aborted. */
  complete: boolean;
}

/**
 * Counts the bytes as they arrive (decoded ones: a small gzip body that inflates past the limit
 * stops at the same place) and, past `limit`, cancels the body and aborts the request through
 * `aborter` so that the connection is closed rather than drained. A `Content-Length` over the
 * limit is refused before a byte is read.
 */
export async function readCapped(
  res: Response,
  limit: number,
  aborter: AbortController,
): Promise<CappedBody> {
  const declared = Number(res.headers.get("content-length") ?? "");
  const encoded = (res.headers.get("content-encoding") ?? "identity") !== "identity";
  if (!encoded && Number.isFinite(declared) && declared > limit) {
    await res.body?.cancel().catch(() => undefined);
    aborter.abort();
    return { text: "", complete: false };
  }
  if (!res.body) return { text: "", complete: true };
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (size + value.byteLength > limit) {
      chunks.push(value.subarray(0, limit - size));
      await reader.cancel().catch(() => undefined);
      aborter.abort();
      return { text: decode(chunks), complete: false };
    }
    chunks.push(value);
    size += value.byteLength;
  }
  return { text: decode(chunks), complete: true };
}

function decode(chunks: readonly Uint8Array[]): string {
  return new TextDecoder().decode(Buffer.concat(chunks));
}

/** The body as text, or undefined when it passes `limit` bytes (not read further) or fails. */
export async function textUpTo(res: Response, limit: number): Promise<string | undefined> {
  try {
    const { text, complete } = await readCapped(res, limit, new AbortController());
    return complete ? text : undefined;
  } catch {
    return undefined;
  }
}

/** The body as JSON; undefined when it passes `limit` bytes, fails, or is not JSON. */
export async function jsonUpTo(res: Response, limit: number): Promise<unknown> {
  const text = await textUpTo(res, limit);
  try {
    return text === undefined ? undefined : (JSON.parse(text) as unknown);
  } catch {
    return undefined;
  }
}
