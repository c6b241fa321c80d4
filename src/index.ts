/**
 * The package's entry point: the API v2 client. The gateway itself is run with the
 * `outlook-presence` command (see the README).
 */
export * from "./client/index.js";
