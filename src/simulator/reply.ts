/** Answers as values (so faults can rewrite them before they are written) and Mattermost error bodies. */

export const JSON_TYPE = "application/json";

export interface Reply {
  status: number;
  contentType: string;
  body: string | Buffer;
  headers?: Record<string, string>;
}

/** Mattermost writes `json.Marshal` output: no trailing newline, Content-Type exactly application/json. */
export function json(status: number, value: unknown): Reply {
  return { status, contentType: JSON_TYPE, body: JSON.stringify(value) };
}

/** A Mattermost AppError as its API serializes it (detailed_error wiped, as without developer mode). */
export function appError(status: number, id: string, message: string, requestId: string): Reply {
  return json(status, { id, message, detailed_error: "", request_id: requestId, status_code: status });
}

export const errors = {
  sessionExpired: (rid: string) =>
    appError(
      401,
      "api.context.session_expired.app_error",
      "Invalid or expired session, please login again.",
      rid,
    ),
  /** No route matched: Mattermost's router answers without a request_id, naming the path. */
  notFound: (path: string) =>
    json(404, {
      id: "api.context.404.app_error",
      message: "Sorry, we could not find the page.",
      detailed_error: `There doesn't appear to be an api call for the url='${path}'.  Typo? are you missing a team_id or user_id as part of the url?`,
      status_code: 404,
    }),
  methodNotAllowed: (rid: string) =>
    appError(405, "api.context.method_not_allowed.app_error", "Method not allowed.", rid),
  invalidBodyParam: (name: string, rid: string) =>
    appError(
      400,
      "api.context.invalid_body_param.app_error",
      `Invalid or missing ${name} in request body.`,
      rid,
    ),
  invalidUrlParam: (name: string, rid: string) =>
    appError(
      400,
      "api.context.invalid_url_param.app_error",
      `Invalid or missing ${name} parameter in request URL.`,
      rid,
    ),
  payloadParse: (rid: string) => appError(400, "api.payload.parse.error", "Error parsing the payload.", rid),
  bodyTooLarge: (rid: string) =>
    appError(413, "api.context.request_body_too_large.app_error", "Request body too large.", rid),
  userNotFound: (rid: string) =>
    appError(404, "app.user.missing_account.const", "Unable to find the user.", rid),
  statusNotFound: (rid: string) =>
    appError(404, "api.status.user_not_found.app_error", "User not found.", rid),
  forbidden: (rid: string) =>
    appError(403, "api.context.permissions.app_error", "You do not have the appropriate permissions.", rid),
};

const FAULT_MESSAGES: Record<number, [string, string]> = {
  500: ["app.simulator.internal_error", "We encountered an error."],
  502: ["app.simulator.bad_gateway", "Bad gateway."],
  503: [
    "api.context.server_busy.app_error",
    "Server is busy, non-critical services are temporarily unavailable.",
  ],
  504: ["app.simulator.gateway_timeout", "Gateway timeout."],
};

/** The body of an injected `http-error` fault. */
export function faultError(status: number, rid: string): Reply {
  const [id, message] = FAULT_MESSAGES[status] ?? ["app.simulator.fault", `Injected error ${status}.`];
  return appError(status, id, message, rid);
}
