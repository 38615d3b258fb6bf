import { readdir, stat } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { DataSource } from 'typeorm';

/**
 * `strata repository check`: what the repository holds against what the read models say, changing
 * nothing. Files under `<vmId>/` that no live backup references are listed as unreferenced (manifests,
 * volume files, left-over directories; strata's own markers and temp files starting with `.` too, as
 * they should not outlive their job); backups whose volume files or manifest are missing are listed as
 * broken.
 */
export interface RepositoryCheck {
  repositoryId: string;
  root: string;
  backups: number;
  usedBytes: number;
  unreferenced: string[];
  missing: { backupId: string; files: string[] }[];
}

async function walk(root: string, dir = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(join(root, dir), { withFileTypes: true }).catch(() => [])) {
    const rel = dir ? posix.join(dir, e.name) : e.name;
    if (e.isDirectory()) {
      const inner = await walk(root, rel);
      out.push(...(inner.length ? inner : [`${rel}/`]));
    } else out.push(rel);
  }
  return out;
}

/** Pure: the expected files of the live backups against the files found. */
export function compareRepository(expected: Map<string, string[]>, found: string[]): { unreferenced: string[]; missing: { backupId: string; files: string[] }[] } {
  const present = new Set(found);
  const referenced = new Set([...expected.values()].flat());
  return {
    unreferenced: found.filter((f) => !referenced.has(f)).sort(),
    missing: [...expected.entries()].map(([backupId, files]) => ({ backupId, files: files.filter((f) => !present.has(f)) })).filter((m) => m.files.length > 0),
  };
}

export async function checkRepository(db: DataSource, repositoryId: string, rootOverride?: string): Promise<RepositoryCheck> {
  const repo: { id: string; type: string; address: string }[] = await db.query(`SELECT id, type, address FROM backup_repositories WHERE id = $1 AND removed IS NULL`, [repositoryId]);
  if (!repo[0]) throw new Error(`backup repository ${repositoryId} does not exist`);
  const root = rootOverride ?? (repo[0].type === 'local' ? repo[0].address : null);
  if (!root) throw new Error(`repository ${repositoryId} is ${repo[0].type}: mount it and give its directory with --path`);
  const rows: { id: string; vm_id: string; chain_id: string; volumes: { volumeId: string }[]; size: string }[] = await db.query(
    `SELECT id, vm_id, chain_id, volumes, size FROM backups WHERE repository_id = $1 AND status NOT IN ('Expunged', 'Failed', 'Queued', 'BackingUp')`,
    [repositoryId],
  );
  const expected = new Map(rows.map((b) => [b.id, [...b.volumes.map((v) => `${b.vm_id}/${b.chain_id}/${b.id}/${v.volumeId}.qcow2`), `${b.vm_id}/${b.chain_id}/${b.id}/manifest.json`]]));
  const vmDirs = new Set(rows.map((b) => b.vm_id));
  const all = await walk(root);
  // Only strata's layout is judged: `<vmId>/...` of VMs with backups here, and every other directory that looks like one.
  // An empty `<vmId>/` (every backup of the VM deleted) holds nothing and is not reported.
  const found = all.filter((f) => (vmDirs.has(f.split('/')[0]) || /^[0-9a-f-]{36}\//.test(f)) && !/^[^/]+\/$/.test(f));
  const { unreferenced, missing } = compareRepository(expected, found);
  let usedBytes = 0;
  for (const files of expected.values()) for (const f of files) usedBytes += await stat(join(root, f)).then((s) => s.blocks * 512, () => 0);
  return { repositoryId, root, backups: rows.length, usedBytes, unreferenced, missing };
}
