import { asyncJobDecider, AsyncJobState, backupChainDecider, RestoreRequested, Streams } from '@strata/domain';
import { AgentReport } from '@strata/jobs';
import { CommandHandler } from '../command-handler';
import { deterministicId } from '../ids';

type Report<T extends AgentReport['type']> = Extract<AgentReport, { type: T }>;

/** The async job that follows a quick restore's consolidation, derived from the restore. */
export const consolidationAsyncJobId = (restoreId: string) => deterministicId(restoreId, 'consolidation-job');

/**
 * What a host reports about a restore or a consolidation becomes events on the backup's VM stream and on
 * the async jobs. Every append has an id derived from the restore, so a redelivered report changes nothing.
 */
export class RestoreOutcomesUseCase {
  constructor(private readonly handler: CommandHandler) {}

  private async request(vmId: string, restoreId: string): Promise<RestoreRequested['data'] | null> {
    const { state } = await this.handler.load(Streams.vmBackups(vmId), {
      initialState: () => null as RestoreRequested['data'] | null,
      evolve: (s, e) => (e.type === 'RestoreRequested' && (e.data as RestoreRequested['data']).restoreId === restoreId ? (e.data as RestoreRequested['data']) : s),
    });
    return state;
  }

  private async requireRequest(vmId: string, restoreId: string): Promise<RestoreRequested['data']> {
    const req = await this.request(vmId, restoreId);
    if (!req) throw new Error(`restore ${restoreId} of VM ${vmId} was never requested`);
    return req;
  }

  private async progress(jobId: string, bytesDone: number, bytesTotal: number): Promise<void> {
    const progress = bytesTotal > 0 ? Math.floor((bytesDone / bytesTotal) * 100) : 0;
    await this.handler.handle(Streams.asyncJob(jobId), asyncJobDecider, { type: 'ReportProgress', data: { jobId, progress: Math.min(progress, 99), bytesDone, bytesTotal } });
  }

  async restoreProgressed(report: Report<'RestoreProgressed'>): Promise<void> {
    const req = await this.request(report.vmId, report.restoreId);
    if (req) await this.progress(req.jobId, report.bytesDone, report.bytesTotal);
  }

  async restoreSucceeded(report: Report<'RestoreSucceeded'>): Promise<void> {
    const req = await this.requireRequest(report.vmId, report.restoreId);
    const at = new Date(report.at);
    const consolidationJobId = req.quick ? consolidationAsyncJobId(req.restoreId) : null;
    if (consolidationJobId) {
      // Created before the event that dispatches the pull, so its progress always has a job to land on.
      const job = await this.handler.load<never, AsyncJobState>(Streams.asyncJob(consolidationJobId), asyncJobDecider);
      if (job.state.status === 'absent') {
        const userId = await this.userOf(req.jobId);
        await this.handler.handle(
          Streams.asyncJob(consolidationJobId),
          asyncJobDecider,
          { type: 'CreateAsyncJob', data: { jobId: consolidationJobId, command: 'consolidateQuickRestore', userId, instanceType: 'VirtualMachine', instanceId: req.targetVmId, at } },
          { eventId: () => deterministicId(req.restoreId, 'consolidation-job-created') },
        );
      }
    }
    await this.handler.handle(
      Streams.vmBackups(report.vmId),
      backupChainDecider,
      { type: 'CompleteRestore', data: { restoreId: req.restoreId, disks: report.disks, consolidation: consolidationJobId ? { consolidationJobId, domainName: req.domainName } : null, at } },
      { eventId: (_e, i) => deterministicId(req.restoreId, 'completed', String(i)) },
    );
    const result =
      req.kind === 'newVm'
        ? { virtualmachine: { id: req.targetVmId, name: req.newVmName, hostid: req.hostId, state: req.quick ? 'Running' : 'Stopped', backupid: req.backupId, ...(consolidationJobId && { consolidationjobid: consolidationJobId }) } }
        : { success: true, ...(consolidationJobId && { consolidationjobid: consolidationJobId }), volumes: report.disks.map((d) => ({ device: d.target, path: d.path })) };
    await this.handler.handle(
      Streams.asyncJob(req.jobId),
      asyncJobDecider,
      { type: 'SucceedAsyncJob', data: { jobId: req.jobId, resultType: req.kind === 'newVm' ? 'object' : 'success', result, at } },
      { eventId: () => deterministicId(req.restoreId, 'job-succeeded') },
    );
  }

  async restoreFailed(report: Report<'RestoreFailed'>): Promise<void> {
    const req = await this.requireRequest(report.vmId, report.restoreId);
    const at = new Date(report.at);
    await this.handler.handle(
      Streams.vmBackups(report.vmId),
      backupChainDecider,
      { type: 'FailRestore', data: { restoreId: req.restoreId, reason: report.reason, cleanedUp: report.cleanedUp, at } },
      { eventId: () => deterministicId(req.restoreId, 'failed') },
    );
    await this.handler.handle(
      Streams.asyncJob(req.jobId),
      asyncJobDecider,
      { type: 'FailAsyncJob', data: { jobId: req.jobId, errorCode: 530, errorText: `restore of backup ${req.backupId} failed: ${report.reason}`, at } },
      { eventId: () => deterministicId(req.restoreId, 'job-failed') },
    );
  }

  async consolidationProgressed(report: Report<'ConsolidationProgressed'>): Promise<void> {
    await this.progress(consolidationAsyncJobId(report.restoreId), report.bytesDone, report.bytesTotal);
  }

  async consolidationSucceeded(report: Report<'ConsolidationSucceeded'>): Promise<void> {
    const at = new Date(report.at);
    await this.handler.handle(Streams.vmBackups(report.vmId), backupChainDecider, { type: 'CompleteConsolidation', data: { restoreId: report.restoreId, at } }, { eventId: () => deterministicId(report.restoreId, 'consolidated') });
    const jobId = consolidationAsyncJobId(report.restoreId);
    await this.handler.handle(
      Streams.asyncJob(jobId),
      asyncJobDecider,
      { type: 'SucceedAsyncJob', data: { jobId, resultType: 'success', result: { success: true }, at } },
      { eventId: () => deterministicId(report.restoreId, 'consolidation-job-succeeded') },
    );
  }

  async consolidationFailed(report: Report<'ConsolidationFailed'>): Promise<void> {
    const at = new Date(report.at);
    await this.handler.handle(
      Streams.vmBackups(report.vmId),
      backupChainDecider,
      { type: 'FailConsolidation', data: { restoreId: report.restoreId, reason: report.reason, at } },
      { eventId: () => deterministicId(report.restoreId, 'consolidation-failed') },
    );
    const jobId = consolidationAsyncJobId(report.restoreId);
    await this.handler.handle(
      Streams.asyncJob(jobId),
      asyncJobDecider,
      { type: 'FailAsyncJob', data: { jobId, errorCode: 530, errorText: `consolidation of quick restore ${report.restoreId} failed: ${report.reason}`, at } },
      { eventId: () => deterministicId(report.restoreId, 'consolidation-job-failed') },
    );
  }

  private async userOf(jobId: string): Promise<string> {
    const { state } = await this.handler.load(Streams.asyncJob(jobId), {
      initialState: () => '',
      evolve: (s: string, e) => (e.type === 'AsyncJobCreated' ? String((e.data as { userId?: string }).userId ?? '') : s),
    });
    return state;
  }
}
