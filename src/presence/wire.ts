import type { ProviderStatus } from "./status.js";

/**
 * The compat API's one message shape, serialized exactly as the old Go plugin did
 * (encoding/json): fields in this order, and `<`, `>`, `&`, U+2028 and U+2029 escaped.
 */
export interface WireStatus {
  user_id: string;
  email: string;
  status: ProviderStatus;
}

const GO_ESCAPES: Record<string, string> = {
  "<": "\\u003c",
  ">": "\\u003e",
  "&": "\\u0026",
  "\u2028": "\\u2028",
  "\u2029": "\\u2029",
};

/** JSON string literal as Go's encoding/json writes it (HTML-safe). */
export function goJsonString(s: string): string {
  const json = JSON.stringify(s);
  return /[<>&\u2028\u2029]/.test(json) ? json.replace(/[<>&\u2028\u2029]/g, (c) => GO_ESCAPES[c]!) : json;
}

export function encodeStatus(userId: string, email: string, status: ProviderStatus): string {
  return `{"user_id":${goJsonString(userId)},"email":${goJsonString(email)},"status":"${status}"}`;
}
