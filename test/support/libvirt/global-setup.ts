import { destroyStaleTestDomains } from './cleanup';

/**
 * Jest `globalSetup` for suites that use libvirt: removes the domains of killed test runs. Tolerates a host
 * without libvirt (the suites that need it fail on their own, with a clearer message).
 */
export default async function globalSetup(): Promise<void> {
  try {
    const removed = await destroyStaleTestDomains();
    if (removed.length) console.log(`libvirt test rig: removed stale domains ${removed.join(', ')}`);
  } catch (e) {
    console.warn(`libvirt test rig: stale domain cleanup skipped: ${(e as Error).message}`);
  }
}
