import { readdir, readFile } from 'node:fs/promises';

/**
 * Records which processes matching a filter run, by sampling /proc every few milliseconds: for each
 * process its pid, parent pid, arguments and first/last time seen, and for each sample how many ran at
 * once (overall and per parent process). The proof that limits on concurrent processes hold is the
 * largest sample.
 */
export interface SeenProcess {
  pid: number;
  ppid: number;
  argv: string[];
  firstSeen: number;
  lastSeen: number;
}

/** `qemu-img convert ...` (also while still `setpriv ... -- qemu-img convert ...`) whose arguments mention `pathPart`. */
export function qemuImgConvertOf(pathPart: string): (argv: string[]) => boolean {
  return (argv) => {
    const i = argv.findIndex((a) => a === 'qemu-img' || a.endsWith('/qemu-img'));
    return i >= 0 && argv[i + 1] === 'convert' && argv.some((a) => a.includes(pathPart));
  };
}

export class ProcessOverlapRecorder {
  readonly processes = new Map<string, SeenProcess>();
  /** Largest number of matching processes seen in one sample. */
  maxConcurrent = 0;
  /** The same, per parent pid. */
  readonly maxConcurrentByParent = new Map<number, number>();
  samples = 0;
  private timer: NodeJS.Timeout | null = null;
  private sampling: Promise<void> = Promise.resolve();
  private readonly argvCache = new Map<number, { argv: string[]; ppid: number; start: string; firstRead: number }>();

  constructor(
    private readonly matches: (argv: string[]) => boolean,
    private readonly intervalMs = 20,
  ) {}

  start(): void {
    const tick = () => {
      this.sampling = this.sample()
        .catch(() => undefined)
        .finally(() => {
          if (this.timer) this.timer = setTimeout(tick, this.intervalMs);
        });
    };
    this.timer = setTimeout(tick, 0);
  }

  async stop(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.sampling;
  }

  /** Processes whose parent is `ppid`. */
  byParent(ppid: number): SeenProcess[] {
    return [...this.processes.values()].filter((p) => p.ppid === ppid);
  }

  /** Matching processes alive in the last sample. */
  running(): SeenProcess[] {
    return [...this.processes.values()].filter((p) => p.lastSeen === this.lastSample);
  }

  private lastSample = 0;

  private async sample(): Promise<void> {
    const now = Date.now();
    const pids = (await readdir('/proc')).filter((n) => /^\d+$/.test(n)).map(Number);
    const alive = new Set(pids);
    for (const pid of this.argvCache.keys()) if (!alive.has(pid)) this.argvCache.delete(pid);
    const current: { key: string; pid: number; ppid: number; argv: string[] }[] = [];
    for (const pid of pids) {
      let info = this.argvCache.get(pid);
      // A new process may not have exec'd yet (between fork and exec its cmdline is its parent's, and setpriv
      // becomes qemu-img): read it again during its first second.
      if (!info || now - info.firstRead < 1000 || info.argv[0] === 'setpriv' || info.argv.length === 0) {
        try {
          const [cmdline, stat] = await Promise.all([readFile(`/proc/${pid}/cmdline`, 'utf8'), readFile(`/proc/${pid}/stat`, 'utf8')]);
          const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
          info = { argv: cmdline.split('\0').filter((a, i, all) => a !== '' || i < all.length - 1), ppid: Number(fields[1]), start: fields[19], firstRead: info?.firstRead ?? now };
          this.argvCache.set(pid, info);
        } catch {
          continue; // gone meanwhile
        }
      }
      if (this.matches(info.argv)) current.push({ key: `${pid}:${info.start}`, pid, ppid: info.ppid, argv: info.argv });
    }
    this.samples++;
    this.lastSample = now;
    this.maxConcurrent = Math.max(this.maxConcurrent, current.length);
    const perParent = new Map<number, number>();
    for (const p of current) {
      perParent.set(p.ppid, (perParent.get(p.ppid) ?? 0) + 1);
      const seen = this.processes.get(p.key);
      if (seen) seen.lastSeen = now;
      else this.processes.set(p.key, { pid: p.pid, ppid: p.ppid, argv: p.argv, firstSeen: now, lastSeen: now });
    }
    for (const [ppid, n] of perParent) this.maxConcurrentByParent.set(ppid, Math.max(this.maxConcurrentByParent.get(ppid) ?? 0, n));
  }
}
