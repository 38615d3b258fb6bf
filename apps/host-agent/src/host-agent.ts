import { Job, Queue, Worker } from 'bullmq';
import { AgentConfig, Logger } from '@strata/config';
import { AgentReport, AGENT_REPORTS_QUEUE, formatHostLastSeen, hostLastSeenKey, hostQueueName, HostJob, ReportedDomain } from '@strata/jobs';
import { HostHypervisor } from './host-hypervisor.port';

/** Domains are re-sent unchanged at least this often, so a restarted management plane catches up. */
const FULL_REPORT_EVERY_MS = 60_000;

/**
 * Registers the host, beats, and reports its domains. Reports go through a durable queue, so a
 * management plane that is down meanwhile receives them when it is back.
 */
export class HostAgent {
  private timer: NodeJS.Timeout | null = null;
  private lastDomains = '';
  private lastFullReport = 0;
  private running: Promise<void> = Promise.resolve();

  constructor(
    private readonly config: AgentConfig,
    private readonly hypervisor: HostHypervisor,
    private readonly reports: Queue,
    private readonly logger: Logger,
    /** Records that this host is alive, apart from the queued reports (see host-liveness.ts). */
    private readonly alive: (at: Date) => Promise<void>,
  ) {}

  async start(): Promise<void> {
    await this.tick();
    let ticking = false;
    this.timer = setInterval(() => {
      // A beat that takes longer than the interval (a loaded host, many domains) is not overtaken by the
      // next one: overlapping beats would only pile more virsh processes onto the host.
      if (ticking) return;
      ticking = true;
      this.running = this.tick().finally(() => (ticking = false));
    }, this.config.heartbeatSeconds * 1000);
    this.logger.log(`host ${this.config.hostName} reporting to zone ${this.config.zoneName} every ${this.config.heartbeatSeconds} s`);
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.running;
  }

  async send(report: AgentReport): Promise<void> {
    await this.reports.add(report.type, report, { removeOnComplete: true, removeOnFail: { age: 24 * 3600 }, attempts: 10, backoff: { type: 'exponential', delay: 1000 } });
  }

  /** Beats and reports the domains now (after a restore defined a VM or attached a disk). */
  async reportNow(): Promise<void> {
    await this.tick();
  }

  private async tick(): Promise<void> {
    try {
      const now = new Date();
      const at = now.toISOString();
      // libvirt answering is part of being alive: a host whose libvirtd hangs stops beating.
      const [versions, capabilities] = await Promise.all([this.hypervisor.versions(), this.hypervisor.capabilities()]);
      await this.send({ type: 'HostHeartbeat', hostName: this.config.hostName, zoneName: this.config.zoneName, libvirtVersion: versions.libvirt, qemuVersion: versions.qemu, capabilities, heartbeatSeconds: this.config.heartbeatSeconds, at });
      await this.alive(now);
      const domains: ReportedDomain[] = await this.hypervisor.domains();
      const key = JSON.stringify(domains);
      if (key !== this.lastDomains || Date.now() - this.lastFullReport > FULL_REPORT_EVERY_MS) {
        await this.send({ type: 'DomainsReported', hostName: this.config.hostName, domains, at });
        this.lastDomains = key;
        this.lastFullReport = Date.now();
      }
    } catch (error) {
      this.logger.error(`report failed: ${(error as Error).message}`);
    }
  }
}

/** The agent's own last-seen write, on the reports queue's Redis connection. */
export function redisHostLiveness(reports: Queue, config: AgentConfig, hostId: string): (at: Date) => Promise<void> {
  const key = hostLastSeenKey(config.queuePrefix);
  return async (at) => {
    const redis = await reports.client;
    await redis.hset(key, { [hostId]: formatHostLastSeen(at.getTime(), config.heartbeatSeconds) });
  };
}

export function reportsQueue(config: AgentConfig): Queue {
  return new Queue(AGENT_REPORTS_QUEUE, { connection: { url: config.redisUrl, maxRetriesPerRequest: null }, prefix: config.queuePrefix });
}

/**
 * How soon a job of an agent that died is handed out again: its lock lapses after three heartbeats (the
 * silence after which the host is Disconnected), but never sooner than 10 s, and the agents look for
 * lapsed locks once a heartbeat.
 */
export function stalledJobSettings(heartbeatSeconds: number): { lockDuration: number; stalledInterval: number } {
  return { lockDuration: Math.max(10, 3 * heartbeatSeconds) * 1000, stalledInterval: Math.max(1, heartbeatSeconds) * 1000 };
}

/** What the host does for each kind of job; each handler takes the job's data and reports its own outcome. */
export type HostJobHandlers = { [K in HostJob['name']]: (data: Extract<HostJob, { name: K }>['data'], job: Job) => Promise<void> };

/** The host's work queue. Thin: the job carries everything; the handler does the work and reports. */
export function createHostWorker(config: AgentConfig, hostId: string, handlers: HostJobHandlers, logger: Logger): Worker {
  const worker = new Worker(
    hostQueueName(hostId),
    async (job: Job) => {
      const handler = (handlers as Record<string, ((data: unknown, job: Job) => Promise<void>) | undefined>)[job.name];
      if (!handler) throw new Error(`unknown host job ${job.name}`);
      await handler(job.data, job);
    },
    { connection: { url: config.redisUrl, maxRetriesPerRequest: null }, prefix: config.queuePrefix, concurrency: 4, ...stalledJobSettings(config.heartbeatSeconds) },
  );
  worker.on('error', (error) => logger.error(`host worker: ${error.message}`));
  return worker;
}
