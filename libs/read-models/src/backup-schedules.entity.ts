import { Column, Entity, PrimaryColumn } from 'typeorm';

/** listBackupSchedule's rows; a deleted schedule keeps its row with `removed` set. */
@Entity('backup_schedules')
export class BackupScheduleView {
  @PrimaryColumn('uuid') id!: string;
  @Column('uuid', { name: 'vm_id' }) vmId!: string;
  @Column('text', { name: 'interval_type' }) intervalType!: string;
  @Column('text') schedule!: string;
  @Column('text') timezone!: string;
  @Column('int', { name: 'max_backups' }) maxBackups!: number;
  @Column('boolean') quiesce!: boolean;
  @Column('boolean') isolated!: boolean;
  @Column('text') cron!: string;
  @Column('int') version!: number;
  @Column('uuid', { name: 'user_id' }) userId!: string;
  @Column('timestamptz') created!: Date;
  @Column('timestamptz', { nullable: true }) removed!: Date | null;
}
