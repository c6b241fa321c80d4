import type { ServerResponse } from "node:http";

/**
 * Every error the HTTP API answers with: a stable code (clients and tests match on it) and the
 * HTTP status. Bodies are `{"error":{"code","message"}}`.
 */
export const ERRORS = {
  invalid_secret: 403,
  unauthorized: 401,
  invalid_query: 400,
  invalid_page: 400,
  invalid_body: 400,
  not_websocket: 400,
  invalid_user_id: 400,
  invalid_status: 400,
  body_too_large: 413,
  rate_limited: 429,
  auth_rate_limited: 429,
  not_ready: 503,
  too_many_connections: 503,
  not_found: 404,
  method_not_allowed: 405,
  internal: 500,
} as const;

export type ErrorCode = keyof typeof ERRORS;

export function errorBody(code: ErrorCode, message: string): string {
  return JSON.stringify({ error: { code, message } });
}

export function sendError(
  res: ServerResponse,
  code: ErrorCode,
  message: string,
  headers: Record<string, string> = {},
): void {
  const body = errorBody(code, message);
  res.writeHead(ERRORS[code], {
    "Content-Type": "application/json",
    "Content-Length": Buffer.byteLength(body),
    "Cache-Control": "no-store",
    ...headers,
  });
  res.end(body);
}
