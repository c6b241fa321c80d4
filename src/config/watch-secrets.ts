import { unwatchFile, watch, watchFile, type FSWatcher } from "node:fs";
import { basename, dirname, resolve } from "node:path";

/**
 * Calls `onChange` (debounced) when one of `files` may have changed, so that a rotated secret or
 * token in a `*_FILE` takes effect without a restart or a SIGHUP.
 *
 * Each file's directory is watched rather than the file: editors and `mv` replace the file (a new
 * inode a file watch would lose), and Kubernetes swaps a `..data` symlink next to it. A slow stat
 * poll backs this up on file systems without change events (network mounts). Nothing here
 * decides whether anything changed: the caller re-reads and compares.
 */
export function watchSecretFiles(
  files: readonly string[],
  onChange: () => void,
  opts: { debounceMs?: number; pollMs?: number; onError?: (err: Error) => void } = {},
): () => void {
  const byDir = new Map<string, Set<string>>();
  for (const f of files) {
    const path = resolve(f);
    const dir = dirname(path);
    if (!byDir.has(dir)) byDir.set(dir, new Set());
    byDir.get(dir)!.add(basename(path));
  }
  let timer: NodeJS.Timeout | undefined;
  const changed = (): void => {
    clearTimeout(timer);
    timer = setTimeout(onChange, opts.debounceMs ?? 200);
    timer.unref();
  };
  const watchers: FSWatcher[] = [];
  for (const [dir, names] of byDir) {
    try {
      const w = watch(dir, { persistent: false }, (_event, name) => {
        const n = name === null ? null : String(name);
        if (n === null || names.has(n) || n.startsWith("..")) changed();
      });
      w.on("error", (err) => opts.onError?.(err));
      watchers.push(w);
    } catch (err) {
      opts.onError?.(err as Error);
    }
  }
  const polled = [...byDir].flatMap(([dir, names]) => [...names].map((n) => resolve(dir, n)));
  for (const path of polled) {
    watchFile(path, { persistent: false, interval: opts.pollMs ?? 5000 }, (cur, prev) => {
      if (cur.mtimeMs !== prev.mtimeMs || cur.ino !== prev.ino || cur.size !== prev.size) changed();
    });
  }
  return () => {
    clearTimeout(timer);
    for (const w of watchers) w.close();
    for (const path of polled) unwatchFile(path);
  };
}
