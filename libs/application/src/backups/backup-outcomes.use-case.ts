import { asyncJobDecider, backupChainDecider, BackupRequested, FullReason, Streams } from '@strata/domain';
import { AgentReport } from '@strata/jobs';
import { CommandHandler } from '../command-handler';
import { deterministicId } from '../ids';

type Report<T extends AgentReport['type']> = Extract<AgentReport, { type: T }>;

/** What a host reports about a backup becomes events on the VM's chain and on the request's async job. */
export class BackupOutcomesUseCase {
  constructor(private readonly handler: CommandHandler) {}

  private async request(vmId: string, backupId: string): Promise<BackupRequested['data'] | null> {
    const events = await this.handler.load(Streams.vmBackups(vmId), { initialState: () => null as BackupRequested['data'] | null, evolve: (s, e) => (e.type === 'BackupRequested' && (e.data as BackupRequested['data']).backupId === backupId ? (e.data as BackupRequested['data']) : s) });
    return events.state;
  }

  private async requireRequest(vmId: string, backupId: string): Promise<BackupRequested['data']> {
    const req = await this.request(vmId, backupId);
    if (!req) throw new Error(`backup ${backupId} of VM ${vmId} was never requested`);
    return req;
  }

  async started(vmId: string, backupId: string, hostId: string, at: Date): Promise<void> {
    await this.handler.handle(Streams.vmBackups(vmId), backupChainDecider, { type: 'StartBackup', data: { backupId, hostId, at } }, { eventId: () => deterministicId(backupId, 'started') });
  }

  async progressed(report: Report<'BackupProgressed'>): Promise<void> {
    const req = await this.request(report.vmId, report.backupId);
    if (!req) return;
    const progress = report.bytesTotal > 0 ? Math.floor((report.bytesDone / report.bytesTotal) * 100) : 0;
    await this.handler.handle(Streams.asyncJob(req.jobId), asyncJobDecider, { type: 'ReportProgress', data: { jobId: req.jobId, progress: Math.min(progress, 99), bytesDone: report.bytesDone, bytesTotal: report.bytesTotal } });
  }

  async succeeded(report: Report<'BackupSucceeded'>): Promise<void> {
    const vmId = report.vmId;
    const req = await this.requireRequest(vmId, report.backupId);
    const at = new Date(report.at);
    await this.handler.handle(
      Streams.vmBackups(vmId),
      backupChainDecider,
      { type: 'CompleteBackup', data: { backupId: report.backupId, type: report.backupType, fullReason: report.fullReason as FullReason | null, volumes: report.volumes, checkpointXml: report.checkpointXml, at } },
      { eventId: () => deterministicId(report.backupId, 'completed') },
    );
    await this.handler.handle(
      Streams.asyncJob(req.jobId),
      asyncJobDecider,
      { type: 'SucceedAsyncJob', data: { jobId: req.jobId, resultType: 'object', result: { backup: { id: report.backupId, virtualmachineid: vmId, status: 'BackedUp' } }, at } },
      { eventId: () => deterministicId(report.backupId, 'job-succeeded') },
    );
  }

  async failed(report: Report<'BackupFailed'>): Promise<void> {
    const vmId = report.vmId;
    const req = await this.requireRequest(vmId, report.backupId);
    const at = new Date(report.at);
    await this.handler.handle(
      Streams.vmBackups(vmId),
      backupChainDecider,
      { type: 'FailBackup', data: { backupId: report.backupId, reason: report.reason, cleanedUp: report.cleanedUp, checkpointTrusted: report.checkpointTrusted, at } },
      { eventId: () => deterministicId(report.backupId, 'failed') },
    );
    await this.handler.handle(
      Streams.asyncJob(req.jobId),
      asyncJobDecider,
      { type: 'FailAsyncJob', data: { jobId: req.jobId, errorCode: 530, errorText: `backup ${report.backupId} failed: ${report.reason}`, at } },
      { eventId: () => deterministicId(report.backupId, 'job-failed') },
    );
  }
}
