import assert from "node:assert/strict";

/** One line of `outlook-presence doctor`'s report: `PASS  check  message`. */
export interface DoctorLine {
  verdict: string;
  check: string;
  message: string;
}

/** The report lines of doctor's stdout (anything else it printed is left out). */
export function doctorLines(stdout: string): DoctorLine[] {
  return stdout
    .split("\n")
    .map((l) => /^(PASS|WARN|FAIL|SKIP) {2}(\S+) +(.*)$/.exec(l))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({ verdict: m[1]!, check: m[2]!, message: m[3]! }));
}

/** The line of one check; fails the test when doctor printed none. */
export function doctorLine(out: DoctorLine[], check: string): DoctorLine {
  const l = out.find((x) => x.check === check);
  assert.ok(l, `no line for ${check}: ${JSON.stringify(out)}`);
  return l;
}
