import { SCHEMAS } from "../../src/http/v2/openapi.js";

/**
 * A validator for the subset of JSON Schema that src/http/v2/openapi.ts uses: $ref to
 * #/components/schemas/*, type, enum, const, required, properties, additionalProperties: false,
 * items, oneOf, pattern, minimum. Anything else in a schema is an error here, so the document
 * cannot silently grow past what the tests check.
 */
type Schema = Record<string, unknown>;

const KNOWN = new Set([
  "$ref",
  "type",
  "enum",
  "const",
  "required",
  "properties",
  "additionalProperties",
  "items",
  "oneOf",
  "pattern",
  "minimum",
  "description",
]);

/** The errors of `value` against the named component schema ([] when valid). */
export function validate(name: keyof typeof SCHEMAS, value: unknown): string[] {
  const errors: string[] = [];
  check({ $ref: `#/components/schemas/${name}` }, value, "$", errors);
  return errors;
}

function resolve(ref: string): Schema {
  const m = /^#\/components\/schemas\/(\w+)$/.exec(ref);
  const s = m && (SCHEMAS as Record<string, Schema>)[m[1]!];
  if (!s) throw new Error(`unresolvable $ref ${ref}`);
  return s;
}

function typeOf(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  if (typeof v === "number") return Number.isInteger(v) ? "integer" : "number";
  return typeof v;
}

function check(schema: Schema, v: unknown, at: string, errors: string[]): void {
  for (const k of Object.keys(schema)) if (!KNOWN.has(k)) throw new Error(`validator does not know ${k}`);
  if (typeof schema.$ref === "string") return check(resolve(schema.$ref), v, at, errors);
  if (Array.isArray(schema.oneOf)) {
    const passing = (schema.oneOf as Schema[]).filter((s) => {
      const e: string[] = [];
      check(s, v, at, e);
      return e.length === 0;
    });
    if (passing.length !== 1) errors.push(`${at}: matches ${passing.length} of oneOf, expected 1`);
    return;
  }
  if (schema.type !== undefined) {
    const t = typeOf(v);
    const ok = schema.type === t || (schema.type === "number" && t === "integer");
    if (!ok) return void errors.push(`${at}: expected ${String(schema.type)}, got ${t}`);
  }
  if ("const" in schema && v !== schema.const) errors.push(`${at}: expected ${JSON.stringify(schema.const)}`);
  if (Array.isArray(schema.enum) && !schema.enum.includes(v))
    errors.push(`${at}: ${JSON.stringify(v)} not in enum`);
  if (typeof schema.pattern === "string" && typeof v === "string" && !new RegExp(schema.pattern).test(v)) {
    errors.push(`${at}: ${JSON.stringify(v)} does not match ${schema.pattern}`);
  }
  if (typeof schema.minimum === "number" && typeof v === "number" && v < schema.minimum) {
    errors.push(`${at}: ${v} < ${schema.minimum}`);
  }
  if (typeOf(v) === "object") {
    const obj = v as Record<string, unknown>;
    const props = (schema.properties ?? {}) as Record<string, Schema>;
    for (const r of (schema.required ?? []) as string[]) if (!(r in obj)) errors.push(`${at}: missing ${r}`);
    for (const [k, val] of Object.entries(obj)) {
      if (props[k]) check(props[k], val, `${at}.${k}`, errors);
      else if (schema.additionalProperties === false) errors.push(`${at}: unexpected property ${k}`);
    }
  }
  if (Array.isArray(v) && schema.items) {
    v.forEach((item, i) => check(schema.items as Schema, item, `${at}[${i}]`, errors));
  }
}
