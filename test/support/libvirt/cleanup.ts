import { virsh } from './exec';
import {
  TEST_DOMAIN_PREFIX,
  TEST_METADATA_NS,
  destroyDomainByName,
  processStartTime,
  trackedDomains,
  type DomainOwner,
} from './test-domain';

/**
 * Removing what killed test runs left behind, without touching the domains of test runs that are still going
 * (Jest runs suites in parallel workers, and several engineers may run suites on the same libvirtd): a domain
 * is stale when the process recorded in its metadata no longer exists.
 */

export interface TestDomainInfo {
  name: string;
  owner?: DomainOwner;
  dir?: string;
}

function xmlUnescape(s: string): string {
  return s
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'")
    .replace(/&amp;/g, '&');
}

/** Every `strata-test-*` domain libvirt knows, with the owner and directory recorded in its metadata. */
export async function listTestDomains(): Promise<TestDomainInfo[]> {
  const r = await virsh(['list', '--all', '--name']);
  const names = r.stdout
    .split('\n')
    .map((l) => l.trim())
    .filter((n) => n.startsWith(TEST_DOMAIN_PREFIX));
  const out: TestDomainInfo[] = [];
  for (const name of names) {
    const m = await virsh(['metadata', name, TEST_METADATA_NS], { allowFailure: true });
    const attr = (a: string) => {
      const match = new RegExp(`\\s${a}='([^']*)'|\\s${a}="([^"]*)"`).exec(m.stdout);
      return match ? xmlUnescape(match[1] ?? match[2] ?? '') : undefined;
    };
    const pid = Number(attr('pid'));
    const startTime = Number(attr('start'));
    out.push({
      name,
      owner: m.code === 0 && Number.isInteger(pid) && pid > 0 ? { pid, startTime: Number.isFinite(startTime) ? startTime : 0 } : undefined,
      dir: m.code === 0 ? attr('dir') : undefined,
    });
  }
  return out;
}

export function ownerAlive(owner: DomainOwner | undefined): boolean {
  if (!owner) return false;
  const start = processStartTime(owner.pid);
  return start !== undefined && start === owner.startTime;
}

/**
 * Destroy and undefine every `strata-test-*` domain whose owning process is gone (or that records no owner),
 * and remove its directory. `all: true` removes live runs' domains too (only when nothing else runs).
 * Returns the names removed.
 */
export async function destroyStaleTestDomains(opts: { all?: boolean } = {}): Promise<string[]> {
  const removed: string[] = [];
  for (const d of await listTestDomains()) {
    if (!opts.all && ownerAlive(d.owner)) continue;
    await destroyDomainByName(d.name, d.dir);
    removed.push(d.name);
  }
  return removed;
}

/** Destroy every domain this test file created and has not destroyed yet (for afterAll). */
export async function destroyTrackedTestDomains(): Promise<void> {
  const errors: unknown[] = [];
  for (const d of [...trackedDomains]) {
    try {
      await d.destroy();
    } catch (e) {
      errors.push(e);
    }
  }
  if (errors.length) throw new AggregateError(errors, `could not destroy ${errors.length} test domain(s)`);
}

/**
 * Call at the top of a suite (or a describe): beforeAll removes stale domains of killed runs, afterAll destroys
 * every domain the suite created.
 */
export function useLibvirtCleanup(): void {
  beforeAll(async () => {
    await destroyStaleTestDomains();
  });
  afterAll(async () => {
    await destroyTrackedTestDomains();
  });
}
