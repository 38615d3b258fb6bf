import { cloneDomainXml, parseDomainXml, PLACEMENT_NS, withPlacement } from './libvirt-xml';

const original = `<domain type='kvm'>
  <name>web-1</name>
  <uuid>0b9a4f8e-1111-2222-3333-444455556666</uuid>
  <memory unit='KiB'>131072</memory>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' discard='unmap'/>
      <source file='/images/web-1-a.qcow2' index='2'/>
      <backingStore type='file' index='3'>
        <format type='qcow2'/>
        <source file='/images/base.qcow2'/>
        <backingStore/>
      </backingStore>
      <target dev='vda' bus='virtio'/>
      <alias name='ua-disk-a'/>
    </disk>
    <disk type='block' device='disk'>
      <driver name='qemu' type='raw'/>
      <source dev='/dev/vg/web-1-b'/>
      <target dev='vdb' bus='virtio'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/images/web-1-c.qcow2'/>
      <target dev='vdc' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'>
      <source file='/iso/tools.iso'/>
      <target dev='sda' bus='sata'/>
    </disk>
    <interface type='network'>
      <mac address='52:54:00:aa:bb:cc'/>
      <source network='default'/>
    </interface>
  </devices>
</domain>`;

describe('cloneDomainXml', () => {
  const clone = cloneDomainXml(original, {
    name: 'web-1-copy',
    uuid: '9f0e0d0c-aaaa-bbbb-cccc-ddddeeeeffff',
    disks: { vda: { path: '/images/web-1-copy-vda.qcow2', format: 'qcow2' }, vdb: { path: '/images/web-1-copy-vdb.img', format: 'raw' } },
  });
  const parsed = parseDomainXml(clone);

  it('gives the clone its own name and uuid', () => {
    expect(parsed.name).toBe('web-1-copy');
    expect(parsed.uuid).toBe('9f0e0d0c-aaaa-bbbb-cccc-ddddeeeeffff');
  });

  it('puts the kept disks on their new images, without the old backing chain, and drops the others', () => {
    const disks = parsed.disks.filter((d) => d.device === 'disk');
    expect(disks.map((d) => [d.target, d.type, d.sourcePath, d.format, d.backingPath])).toEqual([
      ['vda', 'file', '/images/web-1-copy-vda.qcow2', 'qcow2', null],
      ['vdb', 'file', '/images/web-1-copy-vdb.img', 'raw', null],
    ]);
    expect(clone).not.toContain('/images/web-1-c.qcow2');
    expect(clone).not.toContain('base.qcow2');
  });

  it('keeps what is not a disk image (the cdrom, the network) but lets libvirt choose a new MAC', () => {
    expect(parsed.disks.find((d) => d.device === 'cdrom')?.sourcePath).toBe('/iso/tools.iso');
    expect(clone).toContain("<source network='default'/>");
    expect(clone).not.toContain('52:54:00:aa:bb:cc');
  });

  it('escapes names that are not plain', () => {
    const odd = cloneDomainXml(original, { name: "a&b'<c>", uuid: '9f0e0d0c-aaaa-bbbb-cccc-ddddeeeeffff', disks: { vda: { path: "/images/x'y.qcow2", format: 'qcow2' } } });
    expect(parseDomainXml(odd).name).toBe("a&b'<c>");
    expect(parseDomainXml(odd).disks[0].sourcePath).toBe("/images/x'y.qcow2");
  });
});

describe('the same VM on another host', () => {
  it('keeps its MAC addresses when asked to (a move, not a clone)', () => {
    const moved = cloneDomainXml(original, { name: 'web-1', uuid: '0b9a4f8e-1111-2222-3333-444455556666', disks: { vda: { path: '/images/web-1-a.qcow2', format: 'qcow2' } }, keepMacs: true });
    expect(moved).toContain("<mac address='52:54:00:aa:bb:cc'/>");
    expect(cloneDomainXml(original, { name: 'web-2', uuid: '9f0e0d0c-aaaa-bbbb-cccc-ddddeeeeffff', disks: {} })).not.toContain('<mac');
  });

  it('is marked as placed on its host: added, replaced, next to metadata of others, and read back', () => {
    expect(parseDomainXml(original).placementHost).toBeNull();
    const placed = withPlacement(original, 'kvm-2');
    expect(parseDomainXml(placed).placementHost).toBe('kvm-2');
    expect(parseDomainXml(placed).disks).toEqual(parseDomainXml(original).disks);
    const again = withPlacement(placed, 'kvm-3');
    expect(parseDomainXml(again).placementHost).toBe('kvm-3');
    expect(again.match(/<[\w.-]+:placement\b/g)).toHaveLength(1);
    // As libvirt writes it back (its own prefix and quotes), beside another application's metadata.
    const fromLibvirt = original.replace(
      '<memory',
      `<metadata>\n    <app:x xmlns:app="urn:other"/>\n    <s:placement xmlns:s="${PLACEMENT_NS}" host="kvm-1"/>\n  </metadata>\n  <memory`,
    );
    expect(parseDomainXml(fromLibvirt).placementHost).toBe('kvm-1');
    const moved = withPlacement(fromLibvirt, 'kvm-2');
    expect(parseDomainXml(moved).placementHost).toBe('kvm-2');
    expect(moved).toContain('<app:x xmlns:app="urn:other"/>');
    expect(moved.match(/<[\w.-]+:placement\b/g)).toHaveLength(1);
    expect(parseDomainXml(withPlacement(original.replace('<memory', '<metadata/><memory'), "a'b")).placementHost).toBe("a'b");
  });
});
