import { createHash, randomBytes } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { gzip } from "node:zlib";
import { discardBody, readJsonBody } from "../body.js";
import { sendError } from "../errors.js";
import { acceptsGzip, type HttpRoute, type RequestUrl } from "../router.js";
import { presenceBearer } from "../route-auth.js";
import { OPENAPI } from "./openapi.js";
import { PresenceQuery, V2_BASE, describeIssue } from "./protocol.js";
import {
  FilterError,
  filterFromQuery,
  filterKey,
  makeFilter,
  type PresenceView,
  type UserFilter,
} from "./view.js";

/** A query body holds at most 50,000 ids or emails; 4 MiB is ample and bounds what we buffer. */
export const MAX_QUERY_BODY = 4 * 1024 * 1024;
const GZIP_MIN_BYTES = 1024;

export interface PresenceApiDeps {
  view: PresenceView;
  secrets: () => readonly string[];
  notReadyReason: () => string | undefined;
}

/** Tells every ETag of this process from another's (a restart resets the snapshot's version). */
const BOOT = randomBytes(4).toString("hex");

/**
 * GET /api/v2/presence, POST /api/v2/presence/query and GET /api/v2/openapi.json. Served from
 * memory like the compat pages: the unfiltered answer is built once per snapshot version. The
 * presence routes take the secret as a Bearer token, checked by the router (route-auth.ts).
 */
export function presenceRoutes(deps: PresenceApiDeps): HttpRoute[] {
  let gzipCache: { etag: string; body: Promise<Buffer> } | undefined;
  const openapi = Buffer.from(JSON.stringify(OPENAPI));

  const bearer = presenceBearer(deps.secrets);

  /** True when the snapshot can be served; otherwise the request has been answered 503. */
  function ready(res: ServerResponse): boolean {
    const notReady = deps.notReadyReason();
    if (notReady !== undefined) {
      sendError(res, "not_ready", notReady, { "Retry-After": "1" });
      return false;
    }
    return true;
  }

  function answer(req: IncomingMessage, res: ServerResponse, filter: UserFilter | undefined): void {
    const key = filterKey(filter);
    const keyHash = filter ? createHash("sha1").update(key).digest("base64url").slice(0, 12) : key;
    const etag = `"${BOOT}-${deps.view.version}-${keyHash}"`;
    const headers: Record<string, string | number> = {
      "Content-Type": "application/json",
      ETag: etag,
      "Cache-Control": "no-cache",
      Vary: "Accept-Encoding, Authorization",
    };
    const inm = req.headers["if-none-match"];
    if (inm !== undefined && inm.split(",").some((t) => t.trim().replace(/^W\//, "") === etag)) {
      res.writeHead(304, headers);
      res.end();
      return;
    }
    const body = Buffer.from(deps.view.body(filter).json);
    const wantsGzip = acceptsGzip(req.headers["accept-encoding"]);
    if (!wantsGzip || body.length < GZIP_MIN_BYTES) {
      headers["Content-Length"] = body.length;
      res.writeHead(200, headers);
      res.end(req.method === "HEAD" ? undefined : body);
      return;
    }
    // Everyone asks for the same unfiltered list: compress it once per version, off the event loop.
    let compressed: Promise<Buffer>;
    if (!filter && gzipCache?.etag === etag) compressed = gzipCache.body;
    else {
      compressed = new Promise((resolve, reject) =>
        gzip(body, (err, out) => (err ? reject(err) : resolve(out))),
      );
      if (!filter) gzipCache = { etag, body: compressed };
    }
    compressed.then(
      (gz) => {
        headers["Content-Encoding"] = "gzip";
        headers["Content-Length"] = gz.length;
        res.writeHead(200, headers);
        res.end(req.method === "HEAD" ? undefined : gz);
      },
      () => sendError(res, "internal", "compression failed"),
    );
  }

  function get(req: IncomingMessage, res: ServerResponse, url: RequestUrl): void {
    if (!ready(res)) return;
    let filter: UserFilter | undefined;
    try {
      filter = filterFromQuery(url.searchParams);
    } catch (err) {
      if (err instanceof FilterError) return sendError(res, "invalid_query", err.message);
      throw err;
    }
    answer(req, res, filter);
  }

  function query(req: IncomingMessage, res: ServerResponse): void {
    if (!ready(res)) {
      discardBody(req);
      return;
    }
    readJsonBody(req, res, MAX_QUERY_BODY, 'expected JSON {"emails"?: [...], "user_ids"?: [...]}', (json) => {
      const parsed = PresenceQuery.safeParse(json);
      if (!parsed.success) return sendError(res, "invalid_body", describeIssue(parsed.error, "body"));
      answer(req, res, makeFilter(parsed.data.emails, parsed.data.user_ids));
    });
  }

  return [
    { path: `${V2_BASE}/presence`, methods: ["GET", "HEAD"], auth: bearer, handle: get },
    { path: `${V2_BASE}/presence/query`, methods: ["POST"], auth: bearer, handle: query },
    {
      path: `${V2_BASE}/openapi.json`,
      methods: ["GET", "HEAD"],
      auth: "none",
      handle(req, res) {
        res.writeHead(200, {
          "Content-Type": "application/json",
          "Content-Length": openapi.length,
          "Cache-Control": "public, max-age=300",
        });
        res.end(req.method === "HEAD" ? undefined : openapi);
      },
    },
  ];
}
