import { Ajv2020, type ErrorObject, type ValidateFunction } from "ajv/dist/2020.js";
import { OPENAPI } from "../../src/http/v2/openapi.js";
import type { CONTRACT } from "../../src/http/v2/protocol.js";

/**
 * Validates values against the component schemas of the OpenAPI document the gateway publishes
 * (GET /api/v2/openapi.json), with ajv's JSON Schema 2020-12 validator (the dialect OpenAPI 3.1
 * names). Strict mode: a keyword ajv does not know (a typo, or something zod emitted that is not
 * JSON Schema) fails the compile instead of being ignored. OpenAPI's `discriminator` is honoured,
 * so a message with a known `type` is judged by that type's schema alone.
 */
export type SchemaName = keyof typeof CONTRACT.response | keyof typeof CONTRACT.request;

const DOC_ID = "openapi.json";

export interface DocumentValidator {
  /** The errors of `value` against the named component schema ([] when valid). */
  (name: SchemaName, value: unknown): string[];
}

/** A validator for one OpenAPI document (e.g. the one a running gateway served). */
export function documentValidator(doc: unknown): DocumentValidator {
  const ajv = new Ajv2020({ allErrors: true, strict: true, discriminator: true });
  // The document's own top-level fields are not JSON Schema keywords: declare them, so strict
  // mode applies to the schemas below them and nothing else.
  ajv.addVocabulary(["openapi", "info", "jsonSchemaDialect", "servers", "security", "paths", "components"]);
  ajv.addSchema(doc as object, DOC_ID);
  const compiled = new Map<string, ValidateFunction>();
  return (name, value) => {
    let check = compiled.get(name);
    if (!check) {
      check = ajv.getSchema(`${DOC_ID}#/components/schemas/${name}`);
      if (!check) throw new Error(`the document has no schema ${name}`);
      compiled.set(name, check);
    }
    return check(value) ? [] : (check.errors ?? []).map(describe);
  };
}

function describe(e: ErrorObject): string {
  return `${e.instancePath || "$"} ${e.message ?? e.keyword} ${JSON.stringify(e.params)}`;
}

/** The document exactly as the gateway serves it (the same serialization as its route). */
export const validate = documentValidator(JSON.parse(JSON.stringify(OPENAPI)));
