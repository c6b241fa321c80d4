import { createHash } from "node:crypto";
import { gzipSync } from "node:zlib";
import { NO_CURSOR, type PresenceSnapshot } from "../presence/snapshot.js";
import { encodeStatus } from "../presence/wire.js";

/** One `/status` page, serialized once per change of its content. */
export interface BuiltPage {
  readonly body: Buffer;
  /** Strong ETag from the content, so it is the same on every replica and after a restart. */
  readonly etag: string;
  /** Filled on the first request that accepts gzip, then reused. */
  gzip?: Buffer;
}

function build(body: Buffer): BuiltPage {
  const hash = createHash("sha1").update(body).digest("base64url").slice(0, 22);
  return { body, etag: `"${hash}"` };
}

const EMPTY = build(Buffer.from("[]"));

/** The `[]` past the last page: where a provider stops reading. */
export const isEndPage = (page: BuiltPage): boolean => page === EMPTY;

/**
 * Pre-built `/status` pages. A page is rebuilt lazily, on the first request after the snapshot
 * changed it; requests in between are served from the same bytes.
 */
export class StatusPages {
  private pages: (BuiltPage | undefined)[] = [];
  /** How far this cache has followed the snapshot's changes (it may be one reader of several). */
  private cursor = NO_CURSOR;

  constructor(
    private readonly snapshot: PresenceSnapshot,
    private pageSize: number,
  ) {}

  setPageSize(size: number): void {
    if (size === this.pageSize) return;
    this.pageSize = size;
    this.pages = [];
  }

  get(page: number): BuiltPage {
    this.sync();
    const visible = this.snapshot.visible();
    const start = page * this.pageSize;
    if (!Number.isSafeInteger(start) || start >= visible.length) return EMPTY;
    let built = this.pages[page];
    if (!built) {
      const end = Math.min(start + this.pageSize, visible.length);
      const parts: string[] = [];
      for (let i = start; i < end; i++) {
        const u = visible[i]!;
        parts.push(encodeStatus(u.id, u.email, u.status!));
      }
      built = build(Buffer.from(`[${parts.join(",")}]`));
      this.pages[page] = built;
    }
    return built;
  }

  gzip(page: BuiltPage): Buffer {
    page.gzip ??= gzipSync(page.body, { level: 6 });
    return page.gzip;
  }

  /** Drops the pages the snapshot changed since the last request. */
  private sync(): void {
    const seen = this.snapshot.visibleChangesSince(this.cursor);
    this.cursor = seen.cursor;
    if (seen.all) {
      this.pages = [];
      return;
    }
    for (const i of seen.indices) this.pages[Math.floor(i / this.pageSize)] = undefined;
  }
}
