import { createHash } from 'node:crypto';
import { accessSync, constants as fsConstants, existsSync } from 'node:fs';
import { mkdir, rmdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SecretBox } from '@strata/application';
import { Logger } from '@strata/config';
import { MountDriver, MountEntry, MountRequest, NotMountedError, withTempFiles } from '@strata/hypervisor';
import { RepositoryAccess } from '@strata/jobs';

/** A repository made reachable on this host; `release` once the job is done with it. */
export interface MountedRepository {
  /** The directory the repository's layout starts in. */
  root: string;
  release(): Promise<void>;
}

export class RepositoryMountError extends Error {
  override readonly name = 'RepositoryMountError';
}

const FS_TYPES: Record<Exclude<RepositoryAccess['type'], 'local'>, string> = { nfs: 'nfs', cifs: 'cifs', cephfs: 'ceph' };

/**
 * Where a repository is mounted: one directory per repository and mount configuration, so that a
 * repository whose address or options changed is mounted afresh beside a mount still in use.
 */
export function repositoryMountDir(mountRoot: string, repo: RepositoryAccess): string {
  const config = createHash('sha256').update(`${repo.type}\n${repo.address}\n${repo.mountOptions}`).digest('hex').slice(0, 12);
  if (!/^[0-9a-zA-Z-]{1,64}$/.test(repo.repositoryId)) throw new RepositoryMountError(`bad repository id ${JSON.stringify(repo.repositoryId)}`);
  return join(mountRoot, `${repo.repositoryId}-${config}`);
}

/** A file a mount helper reads a secret from (0600, removed right after mounting), and the option naming it. */
export interface CredentialFile {
  name: string;
  content: string;
  /** `credentials` (mount.cifs) or `secretfile` (mount.ceph): the option takes the file's path. */
  option: string;
  /** The secret values, which must never appear in argv or a log. */
  secrets: string[];
}

/**
 * The credentials of a repository (as stored: `password=...`, `pass=...` or `secret=...` items, see
 * validateMountOptions) as the files the mount helpers read: CIFS a `credentials=` file
 * (`password=...`), CephFS a `secretfile=` (the key alone). Never options: those end up in argv.
 */
export function repositoryCredentialFiles(type: RepositoryAccess['type'], credentials: string | null): CredentialFile[] {
  if (credentials === null || credentials === '') return [];
  const items = credentials.split(',').map((item) => {
    const i = item.indexOf('=');
    return { key: (i < 0 ? item : item.slice(0, i)).toLowerCase(), value: i < 0 ? '' : item.slice(i + 1) };
  });
  // Stored values hold no control characters (validateMountOptions): they cannot add a line to a file.
  // eslint-disable-next-line no-control-regex
  if (items.some((c) => c.value === '' || /[\u0000-\u001f\u007f]/.test(c.value))) throw new RepositoryMountError('the repository credentials are malformed');
  const keys = [...new Set(items.map((c) => c.key))].sort().join(', ');
  const only = (allowed: string[]) => {
    if (!items.every((c) => allowed.includes(c.key))) throw new RepositoryMountError(`a ${type} repository takes ${allowed.join(' or ')} as credentials, not ${keys}`);
    if (items.length > 1) throw new RepositoryMountError(`a ${type} repository takes one credential, got ${items.length}`);
    return items[0].value;
  };
  switch (type) {
    case 'cifs': {
      const password = only(['password', 'pass']);
      return [{ name: 'credentials', content: `password=${password}\n`, option: 'credentials', secrets: [password] }];
    }
    case 'cephfs': {
      const key = only(['secret']);
      return [{ name: 'secret', content: `${key}\n`, option: 'secretfile', secrets: [key] }];
    }
    default:
      throw new RepositoryMountError(`a ${type} repository takes no credentials (${keys} given)`);
  }
}

/** `mount -t nfs|cifs|ceph -o OPTIONS -- ADDRESS DIR`, credentials only as paths of their files. */
export function repositoryMountRequest(repo: RepositoryAccess, dir: string, credentialOptions: string[] = []): MountRequest {
  if (repo.type === 'local') throw new RepositoryMountError('a local repository is not mounted');
  const options = repo.mountOptions === '' ? [] : repo.mountOptions.split(',');
  // Stored options never hold credentials (they were split off); these keys would also name files.
  if (options.some((o) => /^(password|pass|secret)=/i.test(o))) throw new RepositoryMountError('credentials must not be in the visible mount options');
  return { fsType: FS_TYPES[repo.type], source: repo.address, target: dir, options: [...options, ...credentialOptions] };
}

/**
 * Opens repository credentials with the host key (`STRATA_AGENT_KEY_FILE`): the management plane
 * re-encrypts them under it for the hosts, so an agent never holds the master key. Read on first use.
 */
export function hostKeyCredentials(keyFile: string): (encrypted: string) => string {
  let box: SecretBox | null = null;
  return (encrypted) => {
    if (!box) {
      if (!existsSync(keyFile)) {
        throw new RepositoryMountError(
          `the repository has credentials and the host key ${keyFile} does not exist: write it on the management plane with "strata keys host --out FILE" and copy it here (mode 0600), or point STRATA_AGENT_KEY_FILE at it`,
        );
      }
      box = SecretBox.fromFile(keyFile);
    }
    try {
      return box.decrypt(encrypted);
    } catch {
      throw new RepositoryMountError(`the repository credentials cannot be opened with the host key ${keyFile}: it is not the host key of this management plane ("strata keys host")`);
    }
  };
}

/** /dev/shm when it can be written: secret files then never reach a disk. */
function secretTempDir(): string {
  try {
    accessSync('/dev/shm', fsConstants.W_OK);
    return '/dev/shm';
  } catch {
    return tmpdir();
  }
}

/** The mount that holds `path`: the entry with the longest mount point above it (the last one if stacked). */
function containingMount(mounts: MountEntry[], path: string): MountEntry | null {
  let best: MountEntry | null = null;
  for (const m of mounts) {
    const above = m.mountPoint === '/' || path === m.mountPoint || path.startsWith(`${m.mountPoint}/`);
    if (above && (!best || m.mountPoint.length >= best.mountPoint.length)) best = m;
  }
  return best;
}

export class UnsupportedRepositoryError extends Error {
  override readonly name = 'UnsupportedRepositoryError';
}

/**
 * The repository for one job: mounted (or found mounted) by the mounter; without one (tests, a host that
 * mounts nothing), only a `local` repository, a path the operator mounted on every host, can be used.
 */
export async function mountRepository(mounter: RepositoryMounter | null | undefined, repository: RepositoryAccess): Promise<MountedRepository> {
  if (mounter) return mounter.acquire(repository);
  if (repository.type !== 'local') throw new UnsupportedRepositoryError(`repository type ${repository.type} needs the RepositoryMounter`);
  return { root: repository.address, release: async () => undefined };
}

/**
 * Mounts repositories under the agent's mount root for the jobs that need them: one mount per
 * repository, shared by concurrent jobs (reference-counted) and unmounted when the last one is done. A
 * mount already there (an earlier agent's, after a crash) is reused. `local` repositories are paths
 * mounted on every host by the operator: nothing to do.
 */
export class RepositoryMounter {
  private readonly held = new Map<string, number>();
  private readonly queues = new Map<string, Promise<unknown>>();

  constructor(
    private readonly driver: MountDriver,
    private readonly mountRoot: string,
    private readonly openCredentials: (encrypted: string) => string,
    private readonly logger: Logger,
  ) {}

  /**
   * Makes the mount root reach the VMs' QEMU processes. libvirt starts each QEMU in its own mount
   * namespace, a copy of the host's taken at start; a repository mounted later is seen there only if
   * the mount it lands in is shared (systemd makes `/` shared; containers often leave it private). QEMU
   * opens the backup's target files itself, so without this a VM started before the mount cannot write
   * its backup ("Could not open ...: No such file or directory"). When the mount root's mount is not
   * shared, it is bound onto itself and made shared, which covers every VM started afterwards.
   */
  async prepare(): Promise<void> {
    await mkdir(this.mountRoot, { recursive: true, mode: 0o755 });
    const here = containingMount(await this.driver.mounts(), this.mountRoot);
    if (here?.propagation.some((p) => p.startsWith('shared:'))) return;
    if (here?.mountPoint !== this.mountRoot) {
      await this.driver.mount({ fsType: null, bind: true, source: this.mountRoot, target: this.mountRoot, options: [] });
    }
    await this.driver.makeShared(this.mountRoot);
    this.logger.log(`mount root ${this.mountRoot} is now a shared mount point (repository mounts reach VMs started from now on)`);
  }

  async acquire(repo: RepositoryAccess): Promise<MountedRepository> {
    if (repo.type === 'local') return { root: repo.address, release: async () => undefined };
    const dir = repositoryMountDir(this.mountRoot, repo);
    await this.serialized(dir, async () => {
      const count = this.held.get(dir) ?? 0;
      if (count === 0) await this.mountOrReuse(repo, dir);
      this.held.set(dir, count + 1);
    });
    let released = false;
    return {
      root: dir,
      release: async () => {
        if (released) return;
        released = true;
        await this.release(dir);
      },
    };
  }

  /** Runs `fn` with the repository's root, and releases it afterwards whatever happens. */
  async withRepository<T>(repo: RepositoryAccess, fn: (root: string) => Promise<T>): Promise<T> {
    const mounted = await this.acquire(repo);
    try {
      return await fn(mounted.root);
    } finally {
      await mounted.release();
    }
  }

  /** How many jobs hold each mounted repository directory (for tests and diagnostics). */
  holders(): ReadonlyMap<string, number> {
    return new Map(this.held);
  }

  private async mountOrReuse(repo: RepositoryAccess, dir: string): Promise<void> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    if (await this.driver.mountAt(dir)) {
      this.logger.log(`repository ${repo.repositoryId}: reusing the mount at ${dir}`);
      return;
    }
    try {
      await this.mount(repo, dir);
    } catch (error) {
      await rmdir(dir).catch(() => undefined);
      throw error;
    }
    this.logger.log(`repository ${repo.repositoryId}: mounted ${repo.type} ${repo.address} at ${dir}`);
  }

  private async mount(repo: RepositoryAccess, dir: string): Promise<void> {
    const files = repositoryCredentialFiles(repo.type, repo.encryptedCredentials ? this.openCredentials(repo.encryptedCredentials) : null);
    await withTempFiles(
      files.map((f) => ({ name: f.name, content: f.content })),
      async (paths) => {
        const request = repositoryMountRequest(repo, dir, files.map((f, i) => `${f.option}=${paths[i]}`));
        // By construction no secret is in argv; the runner also refuses to run if one were. A very short
        // secret could be a chance substring of a path, so only those long enough to mean it are checked.
        await this.driver.mount(request, { redact: files.flatMap((f) => f.secrets).filter((x) => x.length >= 8) });
      },
      { dir: secretTempDir() },
    );
  }

  private async release(dir: string): Promise<void> {
    await this.serialized(dir, async () => {
      const count = (this.held.get(dir) ?? 1) - 1;
      if (count > 0) {
        this.held.set(dir, count);
        return;
      }
      this.held.delete(dir);
      try {
        await this.driver.unmount(dir);
      } catch (error) {
        if (!(error instanceof NotMountedError)) {
          // Left mounted: the next job reuses it.
          this.logger.warn(`could not unmount ${dir}: ${(error as Error).message}`);
          return;
        }
      }
      await rmdir(dir).catch(() => undefined);
      this.logger.log(`unmounted ${dir}`);
    });
  }

  /** Mounting and unmounting one directory happen one at a time, in order. */
  private serialized<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.queues.get(key) ?? Promise.resolve();
    const next = previous.then(fn, fn);
    const settled = next.catch(() => undefined);
    this.queues.set(key, settled);
    void settled.then(() => {
      if (this.queues.get(key) === settled) this.queues.delete(key);
    });
    return next;
  }
}
