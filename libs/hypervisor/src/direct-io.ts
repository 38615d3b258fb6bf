import { randomUUID } from 'node:crypto';
import { constants } from 'node:fs';
import { open, rm } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * Whether files in `dir` can be opened with O_DIRECT (qemu-img's `cache=none`). tmpfs and some network
 * file systems refuse it, and qemu-img then fails to open its target at all, so a copy asks first.
 */
export async function supportsDirectIo(dir: string): Promise<boolean> {
  const probe = join(dir, `.strata-direct-io-probe-${randomUUID()}`);
  try {
    const fh = await open(probe, constants.O_CREAT | constants.O_WRONLY | constants.O_DIRECT, 0o600);
    await fh.close();
    return true;
  } catch {
    return false;
  } finally {
    await rm(probe, { force: true }).catch(() => undefined);
  }
}
