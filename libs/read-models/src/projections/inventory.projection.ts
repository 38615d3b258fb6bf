import { RecordedEvent } from '@strata/event-store';
import { HostEvent, VmEvent } from '@strata/domain';
import { Projection, SqlExecutor } from './projection';

export const inventoryProjection: Projection = {
  name: 'inventory',
  handles: ['HostRegistered', 'HostHeartbeatRecorded', 'HostStateChanged', 'VmDiscovered', 'VmStateChanged', 'VmVolumesChanged', 'VmAssignedToOffering', 'VmRemovedFromOffering'],
  async apply(recorded: RecordedEvent, sql: SqlExecutor) {
    const event = { type: recorded.type, data: recorded.data } as HostEvent | VmEvent;
    switch (event.type) {
      case 'HostRegistered': {
        const d = event.data;
        await sql.query(
          `INSERT INTO hosts (id, name, zone_id, state, libvirt_version, qemu_version, capabilities, created)
           VALUES ($1, $2, $3, 'Down', $4, $5, $6, $7)
           ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, zone_id = EXCLUDED.zone_id, libvirt_version = EXCLUDED.libvirt_version,
             qemu_version = EXCLUDED.qemu_version, capabilities = EXCLUDED.capabilities`,
          [d.hostId, d.name, d.zoneId, d.libvirtVersion, d.qemuVersion, d.capabilities.join(','), d.registeredAt],
        );
        return;
      }
      case 'HostHeartbeatRecorded':
        await sql.query(`UPDATE hosts SET last_heartbeat = $2 WHERE id = $1`, [event.data.hostId, event.data.at]);
        return;
      case 'HostStateChanged':
        await sql.query(`UPDATE hosts SET state = $2 WHERE id = $1`, [event.data.hostId, event.data.state]);
        return;
      case 'VmDiscovered': {
        const d = event.data;
        await sql.query(
          `INSERT INTO virtual_machines (id, name, host_id, zone_id, state, volumes, created) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING`,
          [d.vmId, d.name, d.hostId, d.zoneId, d.state, JSON.stringify(d.volumes), d.at],
        );
        return;
      }
      case 'VmStateChanged':
        await sql.query(`UPDATE virtual_machines SET state = $2, host_id = $3 WHERE id = $1`, [event.data.vmId, event.data.state, event.data.hostId]);
        return;
      case 'VmVolumesChanged':
        await sql.query(`UPDATE virtual_machines SET volumes = $2 WHERE id = $1`, [event.data.vmId, JSON.stringify(event.data.volumes)]);
        return;
      case 'VmAssignedToOffering':
        await sql.query(`UPDATE virtual_machines SET backup_offering_id = $2 WHERE id = $1`, [event.data.vmId, event.data.offeringId]);
        return;
      case 'VmRemovedFromOffering':
        await sql.query(`UPDATE virtual_machines SET backup_offering_id = NULL WHERE id = $1`, [event.data.vmId]);
        return;
    }
  },
};
