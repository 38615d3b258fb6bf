import { formatCloudStackDate } from '@strata/application';
import { notFound } from '@strata/domain';
import { AsyncJobView } from '@strata/read-models';
import { CommandContext, CommandDefinition } from '../http/command-definition';
import { ApiServices, page } from './api-services';

function asyncJobResponse(j: AsyncJobView) {
  return {
    jobid: j.id,
    cmd: j.command,
    userid: j.userId,
    jobstatus: j.status,
    jobprocstatus: 0,
    jobresultcode: j.resultCode,
    jobresulttype: j.resultType ?? 'object',
    ...(j.result && { jobresult: j.result }),
    ...(j.instanceType && { jobinstancetype: j.instanceType }),
    ...(j.instanceId && { jobinstanceid: j.instanceId }),
    jobprogress: j.progress,
    ...(j.bytesDone !== null && { bytesdone: j.bytesDone }),
    ...(j.bytesTotal !== null && { bytestotal: j.bytesTotal }),
    created: formatCloudStackDate(j.created),
    ...(j.completed && { completed: formatCloudStackDate(j.completed) }),
  };
}

/** Users see their own jobs; admins see every job. */
const visibleTo = (ctx: CommandContext) => (ctx.user.role === 'Admin' ? null : ctx.user.id);

export function asyncJobCommands(s: ApiServices): CommandDefinition[] {
  const jobs = () => s.db.getRepository(AsyncJobView);
  return [
    {
      name: 'queryAsyncJobResult',
      description: 'Answers the status, progress and result of an async job.',
      isAsync: false,
      adminOnly: false,
      responseObject: 'asyncjobs',
      params: [{ name: 'jobid', type: 'uuid', required: true, description: 'the id of the job' }],
      async handle(params, ctx) {
        const job = await jobs().findOne({ where: { id: params.jobid as string } });
        const owner = visibleTo(ctx);
        if (!job || (owner && job.userId !== owner)) throw notFound(`there is no async job ${params.jobid}`, 'jobid');
        return { kind: 'raw', body: asyncJobResponse(job) };
      },
    },
    {
      name: 'listAsyncJobs',
      description: 'Lists async jobs.',
      isAsync: false,
      adminOnly: false,
      responseObject: 'asyncjobs',
      params: [{ name: 'startdate', type: 'date', description: 'only jobs created at or after this date' }],
      async handle(params, ctx) {
        const qb = jobs().createQueryBuilder('j').where('1 = 1');
        const owner = visibleTo(ctx);
        if (owner) qb.andWhere('j.user_id = :owner', { owner });
        if (params.startdate) qb.andWhere('j.created >= :start', { start: params.startdate });
        const { items, count } = await page(qb, params, 'command');
        return { kind: 'list', name: 'asyncjobs', items: items.map(asyncJobResponse), count };
      },
    },
  ];
}
